//! tessera's backup file: a tar archive, encrypted with age to a scrypt
//! passphrase recipient.
//!
//! ```text
//! age (scrypt passphrase, STREAM of 64 KiB ChaCha20-Poly1305 chunks)
//! └── tar (ustar)
//!     ├── manifest.json   always first: versions, node, key id, files with size + SHA-256
//!     ├── tessera.db      a consistent snapshot (VACUUM INTO), never the live file
//!     ├── tessera.toml    the configuration file, when one is used
//!     ├── tls/cert.pem, tls/key.pem
//!     └── master.key      only when asked for explicitly
//! ```
//!
//! Why age: it is a small, specified format with a standard CLI (Debian's
//! `age`), so an operator can open a backup without tessera
//! (`age -d backup.age | tar xv`). Its payload is authenticated chunk by
//! chunk and the last chunk is marked, so a flipped byte or a truncated file
//! is detected; the manifest's SHA-256 values check that the right files
//! were put in.
//!
//! This crate does no file-system work: it writes to a `Write` and reads
//! from a `Read`; the caller decides where bytes come from and go. It must
//! never let a file leave [`read_archive`] unchecked: every byte handed to
//! the sink is hashed and the whole age stream is authenticated before it
//! returns `Ok`.

use std::collections::BTreeSet;
use std::io::{self, BufReader, Read, Write};

pub use age::secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the archive layout and manifest. Bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_NAME: &str = "manifest.json";
pub const DATABASE_FILE: &str = "tessera.db";
pub const CONFIG_FILE: &str = "tessera.toml";
pub const TLS_CERT_FILE: &str = "tls/cert.pem";
pub const TLS_KEY_FILE: &str = "tls/key.pem";
pub const MASTER_KEY_FILE: &str = "master.key";

/// scrypt work factor for new files: N = 2^18, as `age -p` (the Go CLI)
/// uses. That costs 256 MiB and well under a second to open; the age crate's
/// own default calibrates to ~1 s of CPU, which here meant 2^20 and a 1 GiB
/// peak on every verify and restore, too much for a small appliance.
pub const SCRYPT_LOG_N: u8 = 18;

/// The manifest is small; anything bigger is not ours.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not an age-encrypted file (or its header is damaged)")]
    NotAge,
    #[error("the backup is encrypted to an age key, not a passphrase")]
    NotPassphrase,
    #[error("wrong passphrase (or the backup's header is damaged)")]
    WrongPassphrase,
    #[error("the backup's header is damaged (header MAC mismatch)")]
    HeaderDamaged,
    #[error("the backup needs scrypt work factor 2^{required}, far above this machine's ~1 s (2^{target}); refusing")]
    ExcessiveWork { required: u8, target: u8 },
    #[error("the backup is truncated or damaged: {0}")]
    Damaged(String),
    #[error("backup format version {found} is newer than this tessera supports ({supported})")]
    NewerFormat { found: u32, supported: u32 },
    #[error("invalid backup manifest: {0}")]
    Manifest(String),
    #[error("{file} does not match the manifest: {what}")]
    Mismatch { file: String, what: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a backup may contain, as named by `--include`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    Database,
    Config,
    Tls,
    MasterKey,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Database, Part::Config, Part::Tls, Part::MasterKey];
    /// What `backup create` takes when `--include` is not given: never the master key.
    pub const DEFAULT: [Part; 3] = [Part::Database, Part::Config, Part::Tls];

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Database => "database",
            Part::Config => "config",
            Part::Tls => "tls",
            Part::MasterKey => "master-key",
        }
    }

    /// The archive names this part may contribute.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Part::Database => &[DATABASE_FILE],
            Part::Config => &[CONFIG_FILE],
            Part::Tls => &[TLS_CERT_FILE, TLS_KEY_FILE],
            Part::MasterKey => &[MASTER_KEY_FILE],
        }
    }

    /// Parses a comma-separated `--include` list.
    pub fn parse_list(s: &str) -> Result<BTreeSet<Part>, String> {
        let mut out = BTreeSet::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            out.insert(item.parse()?);
        }
        if out.is_empty() {
            return Err("--include names nothing".into());
        }
        Ok(out)
    }
}

impl std::str::FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Part::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown backup part `{s}` (expected database, config, tls or master-key)"))
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// `manifest.json`, the archive's first member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tessera_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Seconds since the Unix epoch (also the tar members' mtime).
    pub created_at_unix: i64,
    pub node: String,
    /// `schema_migrations` version of the database snapshot (0 without one).
    pub schema_version: i64,
    /// The id (public fingerprint) of the master key the database is sealed with.
    pub key_id: String,
    pub parts: Vec<Part>,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Structural checks: known format, known and unique file names that
    /// belong to the listed parts, well-formed digests.
    pub fn validate(&self) -> Result<(), Error> {
        if self.format > FORMAT_VERSION {
            return Err(Error::NewerFormat { found: self.format, supported: FORMAT_VERSION });
        }
        if self.format == 0 {
            return Err(Error::Manifest("format version 0".into()));
        }
        let allowed: BTreeSet<&str> = self.parts.iter().flat_map(|p| p.files().iter().copied()).collect();
        let mut seen = BTreeSet::new();
        for f in &self.files {
            if !allowed.contains(f.name.as_str()) {
                return Err(Error::Manifest(format!("unexpected file `{}`", f.name)));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(Error::Manifest(format!("`{}` is listed twice", f.name)));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(Error::Manifest(format!("`{}` has a malformed SHA-256", f.name)));
            }
        }
        Ok(())
    }
}

/// Size and SHA-256 of everything `r` yields (the first pass of `backup create`).
pub fn file_entry(name: &str, r: &mut dyn Read) -> io::Result<FileEntry> {
    let mut h = HashingReader::new(r);
    io::copy(&mut h, &mut io::sink())?;
    Ok(FileEntry { name: name.to_string(), size: h.count, sha256: hex::encode(h.hasher.finalize()) })
}

/// Writes the encrypted archive: `manifest` first, then each of its files as
/// `open` supplies them. Every file is hashed again on the way in, so a file
/// that changed since [`file_entry`] fails the backup instead of producing
/// one that will not verify. On error, `out` holds garbage: write to a
/// temporary file and rename it only on success.
pub fn write_archive<W: Write>(
    out: W,
    passphrase: SecretString,
    manifest: &Manifest,
    open: impl FnMut(&FileEntry) -> io::Result<Box<dyn Read>>,
) -> Result<W, Error> {
    write_with(out, encryptor(passphrase)?, manifest, open)
}

fn encryptor(passphrase: SecretString) -> Result<age::Encryptor, Error> {
    let mut r = age::scrypt::Recipient::new(passphrase);
    r.set_work_factor(SCRYPT_LOG_N);
    age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        .map_err(|e| Error::Io(io::Error::other(e.to_string())))
}

fn write_with<W: Write>(
    out: W,
    encryptor: age::Encryptor,
    manifest: &Manifest,
    mut open: impl FnMut(&FileEntry) -> io::Result<Box<dyn Read>>,
) -> Result<W, Error> {
    manifest.validate()?;
    let stream = encryptor.wrap_output(out)?;
    let mut tar = tar::Builder::new(stream);
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Manifest(e.to_string()))?;
    let mtime = manifest.created_at_unix.max(0) as u64;
    tar.append_data(&mut header(json.len() as u64, mtime), MANIFEST_NAME, &json[..])?;
    for f in &manifest.files {
        let mut src = open(f)?;
        let mut h = HashingReader::new((&mut src).take(f.size));
        tar.append_data(&mut header(f.size, mtime), &f.name, &mut h)?;
        let (count, digest) = (h.count, hex::encode(h.hasher.finalize()));
        let more = src.read(&mut [0u8; 1])?;
        if count != f.size || more != 0 {
            return Err(Error::Mismatch { file: f.name.clone(), what: "its size changed while backing up".into() });
        }
        if digest != f.sha256 {
            return Err(Error::Mismatch { file: f.name.clone(), what: "it changed while backing up".into() });
        }
    }
    let stream = tar.into_inner()?;
    Ok(stream.finish()?)
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Encrypts a single small secret (the master key for `tessera key export`)
/// to a passphrase, as a plain age file: `age -d` gives back `plaintext`.
pub fn encrypt_bytes<W: Write>(out: W, passphrase: SecretString, plaintext: &[u8]) -> Result<W, Error> {
    let mut w = encryptor(passphrase)?.wrap_output(out)?;
    w.write_all(plaintext)?;
    Ok(w.finish()?)
}

/// Decrypts a whole (small) age file made by [`encrypt_bytes`].
pub fn decrypt_bytes<R: Read>(input: R, passphrase: SecretString, limit: u64) -> Result<Vec<u8>, Error> {
    let mut r = decryptor(input, passphrase)?;
    let mut out = Vec::new();
    (&mut r).take(limit + 1).read_to_end(&mut out).map_err(|e| Error::Damaged(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(Error::Damaged(format!("the content is larger than {limit} bytes")));
    }
    Ok(out)
}

fn decryptor<R: Read>(input: R, passphrase: SecretString) -> Result<impl Read, Error> {
    use age::DecryptError as D;
    let d = age::Decryptor::new_buffered(BufReader::new(input)).map_err(|e| match e {
        D::Io(e) if e.kind() != io::ErrorKind::UnexpectedEof && e.kind() != io::ErrorKind::InvalidData => Error::Io(e),
        _ => Error::NotAge,
    })?;
    if !d.is_scrypt() {
        return Err(Error::NotPassphrase);
    }
    let identity = age::scrypt::Identity::new(passphrase);
    d.decrypt(std::iter::once(&identity as &dyn age::Identity)).map_err(|e| match e {
        D::DecryptionFailed | D::KeyDecryptionFailed | D::NoMatchingKeys => Error::WrongPassphrase,
        D::InvalidMac => Error::HeaderDamaged,
        D::ExcessiveWork { required, target } => Error::ExcessiveWork { required, target },
        D::Io(e) => Error::Damaged(e.to_string()),
        _ => Error::NotAge,
    })
}

/// Decrypts and checks a backup, handing each file to `sink` as it streams
/// by (`sink` must read the reader to the end, or the rest is skipped).
/// Returns the manifest only when every file matched its size and SHA-256,
/// no file was missing or extra, and the age stream authenticated to its
/// final chunk. On `Err`, anything `sink` wrote must be thrown away.
pub fn read_archive<R: Read>(
    input: R,
    passphrase: SecretString,
    mut sink: impl FnMut(&FileEntry, &mut dyn Read) -> io::Result<()>,
) -> Result<Manifest, Error> {
    let damaged = |e: io::Error| Error::Damaged(e.to_string());
    let mut archive = tar::Archive::new(decryptor(input, passphrase)?);
    let manifest = {
        let mut entries = archive.entries().map_err(damaged)?;
        let first = entries.next().ok_or_else(|| Error::Manifest("the archive is empty".into()))?;
        let mut first = first.map_err(damaged)?;
        if first.path_bytes().as_ref() != MANIFEST_NAME.as_bytes() {
            return Err(Error::Manifest(format!("the first member is not {MANIFEST_NAME}")));
        }
        if first.size() > MAX_MANIFEST_BYTES {
            return Err(Error::Manifest("too large".into()));
        }
        let mut json = Vec::new();
        first.read_to_end(&mut json).map_err(damaged)?;
        let manifest: Manifest = serde_json::from_slice(&json).map_err(|e| {
            // A newer format may not parse as ours: say so rather than "invalid".
            match serde_json::from_slice::<serde_json::Value>(&json).ok().and_then(|v| v["format"].as_u64()) {
                Some(f) if f > FORMAT_VERSION as u64 => {
                    Error::NewerFormat { found: f as u32, supported: FORMAT_VERSION }
                }
                _ => Error::Manifest(e.to_string()),
            }
        })?;
        manifest.validate()?;

        let mut expected = manifest.files.iter();
        for entry in entries {
            let mut entry = entry.map_err(damaged)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(f) = expected.next() else {
                return Err(Error::Manifest(format!("`{name}` is in the archive but not in the manifest")));
            };
            if f.name != name {
                return Err(Error::Mismatch { file: f.name.clone(), what: format!("found `{name}` in its place") });
            }
            if entry.size() != f.size {
                return Err(Error::Mismatch {
                    file: name,
                    what: format!("{} bytes in the archive, {} in the manifest", entry.size(), f.size),
                });
            }
            let mut h = HashingReader::new(&mut entry);
            if let Err(e) = sink(f, &mut h) {
                return Err(match h.read_error.take() {
                    Some(read) => Error::Damaged(read),
                    None => Error::Io(e),
                });
            }
            io::copy(&mut h, &mut io::sink()).map_err(damaged)?;
            if h.count != f.size || hex::encode(h.hasher.finalize()) != f.sha256 {
                return Err(Error::Mismatch { file: name, what: "SHA-256 differs".into() });
            }
        }
        if let Some(missing) = expected.next() {
            return Err(Error::Mismatch { file: missing.name.clone(), what: "missing from the archive".into() });
        }
        manifest
    };
    // tar stops at its end-of-archive blocks; read the age stream to its end
    // so its final-chunk check catches a truncation after them.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(damaged)?;
    Ok(manifest)
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    read_error: Option<String>,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), count: 0, read_error: None }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.read_error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
