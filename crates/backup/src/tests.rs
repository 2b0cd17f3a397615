//! Format and tamper-detection tests. A low scrypt work factor keeps them fast;
//! decryption accepts it like any other.

use std::collections::BTreeMap;

use super::*;

const PASS: &str = "correct horse battery staple";

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn fast_encryptor(p: &str) -> age::Encryptor {
    let mut r = age::scrypt::Recipient::new(pass(p));
    r.set_work_factor(10);
    age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap()
}

fn files() -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    m.insert(DATABASE_FILE.to_string(), (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect());
    m.insert(TLS_CERT_FILE.to_string(), b"-----BEGIN CERTIFICATE-----\n".to_vec());
    m.insert(TLS_KEY_FILE.to_string(), b"-----BEGIN PRIVATE KEY-----\n".to_vec());
    m
}

fn manifest(files: &BTreeMap<String, Vec<u8>>) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        tessera_version: "0.1.0".into(),
        created_at: "2026-11-22T21:00:00Z".into(),
        created_at_unix: 1_795_381_200,
        node: "n1".into(),
        schema_version: 2,
        key_id: "0123456789abcdef".into(),
        parts: vec![Part::Database, Part::Tls],
        files: files.iter().map(|(n, b)| file_entry(n, &mut &b[..]).unwrap()).collect(),
    }
}

fn make(files: &BTreeMap<String, Vec<u8>>, m: &Manifest) -> Vec<u8> {
    write_with(Vec::new(), fast_encryptor(PASS), m, |f| Ok(Box::new(io::Cursor::new(files[&f.name].clone())))).unwrap()
}

fn read_all(bytes: &[u8], p: &str) -> Result<(Manifest, BTreeMap<String, Vec<u8>>), Error> {
    let mut out = BTreeMap::new();
    let m = read_archive(bytes, pass(p), |f, r| {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        out.insert(f.name.clone(), v);
        Ok(())
    })?;
    Ok((m, out))
}

#[test]
fn round_trip_restores_every_file_and_the_manifest() {
    let f = files();
    let m = manifest(&f);
    let bytes = make(&f, &m);
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "), "a standard age passphrase file");
    let (m2, out) = read_all(&bytes, PASS).unwrap();
    assert_eq!(m2, m);
    assert_eq!(out, f);
}

#[test]
fn plaintext_is_a_tar_with_the_manifest_first() {
    let f = files();
    let bytes = make(&f, &manifest(&f));
    let plain = decrypt_bytes(&bytes[..], pass(PASS), 10 << 20).unwrap();
    let mut a = tar::Archive::new(&plain[..]);
    let names: Vec<String> =
        a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, [MANIFEST_NAME, DATABASE_FILE, TLS_CERT_FILE, TLS_KEY_FILE]);
}

#[test]
fn wrong_passphrase_is_named() {
    let f = files();
    let bytes = make(&f, &manifest(&f));
    assert!(matches!(read_all(&bytes, "nope"), Err(Error::WrongPassphrase)));
}

#[test]
fn flipped_payload_byte_is_detected() {
    let f = files();
    let mut bytes = make(&f, &manifest(&f));
    let at = bytes.len() - 10_000;
    bytes[at] ^= 0x01;
    assert!(matches!(read_all(&bytes, PASS), Err(Error::Damaged(_))));
}

#[test]
fn flipped_header_byte_is_detected() {
    let f = files();
    let mut bytes = make(&f, &manifest(&f));
    // Inside the header MAC line ("--- <base64>").
    let mac = bytes.windows(4).position(|w| w == b"--- ").unwrap() + 6;
    bytes[mac] = if bytes[mac] == b'A' { b'B' } else { b'A' };
    assert!(matches!(read_all(&bytes, PASS), Err(Error::HeaderDamaged | Error::NotAge)));
}

#[test]
fn truncation_anywhere_is_detected() {
    let f = files();
    let bytes = make(&f, &manifest(&f));
    for cut in [bytes.len() - 1, bytes.len() - 17, bytes.len() / 2, 300, 40] {
        let r = read_all(&bytes[..cut], PASS);
        assert!(matches!(r, Err(Error::Damaged(_) | Error::NotAge)), "cut at {cut}: {r:?}");
    }
}

#[test]
fn not_an_age_file() {
    assert!(matches!(read_all(b"SQLite format 3\0 and more", PASS), Err(Error::NotAge)));
    assert!(matches!(read_all(b"", PASS), Err(Error::NotAge)));
}

#[test]
fn file_that_does_not_match_its_manifest_digest_is_rejected() {
    let f = files();
    let mut m = manifest(&f);
    // Write an archive whose manifest promises other content than it holds.
    m.files[1].sha256 = hex::encode([7u8; 32]);
    let bytes = write_tampered(&f, &m);
    match read_all(&bytes, PASS) {
        Err(Error::Mismatch { file, .. }) => assert_eq!(file, TLS_CERT_FILE),
        other => panic!("{other:?}"),
    }
}

#[test]
fn file_missing_from_the_archive_is_rejected() {
    let f = files();
    let m = manifest(&f);
    let mut fewer = f.clone();
    fewer.remove(TLS_KEY_FILE);
    let mut short = m.clone();
    short.files.retain(|e| e.name != TLS_KEY_FILE);
    let bytes = write_tampered_with(&fewer, &m, &short);
    assert!(matches!(read_all(&bytes, PASS), Err(Error::Mismatch { .. })));
}

#[test]
fn writer_refuses_a_file_that_changed_after_hashing() {
    let f = files();
    let m = manifest(&f);
    let r = write_with(Vec::new(), fast_encryptor(PASS), &m, |e| {
        let mut b = f[&e.name].clone();
        b[0] ^= 1;
        Ok(Box::new(io::Cursor::new(b)))
    });
    assert!(matches!(r, Err(Error::Mismatch { .. })));
}

#[test]
fn manifest_checks() {
    let f = files();
    let mut m = manifest(&f);
    m.format = FORMAT_VERSION + 1;
    assert!(matches!(m.validate(), Err(Error::NewerFormat { .. })));
    let mut m = manifest(&f);
    m.files[0].name = "../etc/passwd".into();
    assert!(matches!(m.validate(), Err(Error::Manifest(_))));
    let mut m = manifest(&f);
    m.parts = vec![Part::Database];
    assert!(matches!(m.validate(), Err(Error::Manifest(_))), "tls files without the tls part");
    let mut m = manifest(&f);
    m.files.push(m.files[0].clone());
    assert!(matches!(m.validate(), Err(Error::Manifest(_))));
    let mut m = manifest(&f);
    m.files[0].sha256 = "XYZ".into();
    assert!(matches!(m.validate(), Err(Error::Manifest(_))));
}

#[test]
fn include_lists_parse() {
    let p = Part::parse_list("database, tls,master-key").unwrap();
    assert_eq!(p.into_iter().collect::<Vec<_>>(), [Part::Database, Part::Tls, Part::MasterKey]);
    assert!(Part::parse_list("database,keys").is_err());
    assert!(Part::parse_list(",").is_err());
}

#[test]
fn single_secret_round_trip() {
    let c = encrypt_bytes(Vec::new(), pass(PASS), b"tessera-master-key-v1:00\n").unwrap();
    assert_eq!(decrypt_bytes(&c[..], pass(PASS), 1024).unwrap(), b"tessera-master-key-v1:00\n");
    assert!(matches!(decrypt_bytes(&c[..], pass("x"), 1024), Err(Error::WrongPassphrase)));
}

/// An archive whose manifest is written as given, with the files as given,
/// bypassing the writer's own checks (what a corrupted or forged backup
/// would look like after decryption).
fn write_tampered(files: &BTreeMap<String, Vec<u8>>, m: &Manifest) -> Vec<u8> {
    write_tampered_with(files, m, m)
}

fn write_tampered_with(files: &BTreeMap<String, Vec<u8>>, m: &Manifest, members: &Manifest) -> Vec<u8> {
    let stream = fast_encryptor(PASS).wrap_output(Vec::new()).unwrap();
    let mut tar = tar::Builder::new(stream);
    let json = serde_json::to_vec(m).unwrap();
    tar.append_data(&mut header(json.len() as u64, 0), MANIFEST_NAME, &json[..]).unwrap();
    for e in &members.files {
        let b = &files[&e.name];
        tar.append_data(&mut header(b.len() as u64, 0), &e.name, &b[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn new_files_use_the_age_cli_work_factor() {
    let c = encrypt_bytes(Vec::new(), pass(PASS), b"x").unwrap();
    let header = String::from_utf8_lossy(&c[..c.iter().position(|b| *b == b'\n').unwrap() + 80]).into_owned();
    let stanza = header.lines().nth(1).unwrap();
    assert!(stanza.starts_with("-> scrypt ") && stanza.ends_with(&format!(" {SCRYPT_LOG_N}")), "{stanza}");
}
