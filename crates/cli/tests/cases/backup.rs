//! Encrypted backups end to end: a backup taken while the server validates
//! codes, restored onto a fresh node with the separately kept master key;
//! each way a backup can be unusable, refused with nothing written; the
//! file opened with Debian's `age` and `tar`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tessera_backup::{FileEntry, SecretString};

use super::support::{TestNode, chmod, hotp_code, require_tool, sha256_file};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const PASSPHRASE: &str = "a long backup passphrase";
/// HOTP counters validated before the backup: they must stay used after the restore.
const USED_BEFORE: u64 = 2;
/// Counters `USED_BEFORE..LOAD_END` are validated while the backup runs
/// (within the default look-ahead of 10, so `LOAD_END` works after the
/// restore whatever the snapshot caught).
const LOAD_END: u64 = 9;
const USERS: usize = 30;

fn secret(i: usize) -> String {
    // 32 base32 characters, different per user.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..32).map(|j| alphabet[(i * 7 + j * 13 + j * j) % 32] as char).collect()
}

fn passphrase_file(n: &TestNode, text: &str) -> PathBuf {
    let p = n.cwd().join(format!("pass-{}", text.len()));
    std::fs::write(&p, format!("{text}\n")).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every path under `dir` with its fingerprint (files) — to show "unchanged".
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.push((p.display().to_string(), "dir".into()));
            out.extend(tree(&p));
        } else {
            out.push((p.display().to_string(), sha256_file(&p)));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_round_trip_under_load_restores_secrets_and_used_codes() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    for i in 0..USERS {
        n.ok(&["user", "add", &format!("u{i}")]);
        n.ok(&["token", "add", &format!("u{i}"), "--secret", &secret(i), "--type", "hotp"]);
    }
    n.start();
    for i in 0..USERS {
        for c in 0..USED_BEFORE {
            assert_eq!(n.validate(&format!("u{i}"), &hotp_code(&secret(i), c)).await["result"], "accept");
        }
    }
    let pass = passphrase_file(&n, PASSPHRASE);
    let out = n.cwd().join("full.age");

    // The backup runs as its own process while validations keep coming.
    let running = AtomicBool::new(true);
    let during = AtomicUsize::new(0);
    let backup = async {
        let o = tokio::process::Command::new(BIN)
            .current_dir(n.cwd())
            .arg("--data")
            .arg(n.data())
            .args(["backup", "create", "--out", s(&out), "--passphrase-file", s(&pass)])
            .env_remove("TESSERA_MASTER_KEY")
            .output()
            .await
            .unwrap();
        running.store(false, Ordering::SeqCst);
        o
    };
    let load = async {
        for c in USED_BEFORE..LOAD_END {
            for i in 0..USERS {
                let r = n.validate(&format!("u{i}"), &hotp_code(&secret(i), c)).await;
                assert_eq!(r["result"], "accept", "u{i} counter {c} during the backup");
                if running.load(Ordering::SeqCst) {
                    during.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    let (o, ()) = tokio::join!(backup, load);
    assert!(o.status.success(), "backup create: {}", String::from_utf8_lossy(&o.stderr));
    assert!(during.load(Ordering::SeqCst) > 0, "no validation overlapped the backup");
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains("tessera.db") && report.contains("tls/cert.pem"), "{report}");
    assert!(!report.contains("master.key"), "the master key is never in a default backup");
    assert_eq!(super::support::mode(&out), 0o600);
    let verify = n.ok(&["backup", "verify", s(&out), "--passphrase-file", s(&pass)]);
    assert!(verify.contains("is intact") && verify.contains("integrity ok"), "{verify}");

    // The master key is kept apart; the node is lost.
    let key_text = std::fs::read_to_string(n.key_file()).unwrap();
    let backup_bytes = std::fs::read(&out).unwrap();
    n.kill9();
    drop(n);

    let mut m = TestNode::new();
    std::fs::write(m.key_file(), &key_text).unwrap();
    chmod(&m.key_file(), 0o600);
    let file = m.cwd().join("full.age");
    std::fs::write(&file, &backup_bytes).unwrap();
    let pass = passphrase_file(&m, PASSPHRASE);
    let restored = m.ok(&["backup", "restore", s(&file), "--passphrase-file", s(&pass)]);
    assert!(restored.contains("restored"), "{restored}");
    assert_eq!(super::support::mode(&m.data().join("tessera.db")), 0o600);
    m.start();
    for i in 0..USERS {
        let u = format!("u{i}");
        for c in 0..USED_BEFORE {
            let r = m.validate(&u, &hotp_code(&secret(i), c)).await;
            assert_eq!(r["result"], "reject", "{u}: code {c} was used before the backup; it must stay used");
        }
        assert_eq!(m.validate(&u, &hotp_code(&secret(i), LOAD_END)).await["result"], "accept", "{u}: same secret");
    }
    m.stop();
}

#[tokio::test]
async fn the_backup_is_a_standard_age_file_holding_a_tar() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "alice"]);
    let pass = passphrase_file(&n, PASSPHRASE);
    let out = n.cwd().join("b.age");
    n.ok(&["backup", "create", "--out", s(&out), "--include", "database,master-key", "--passphrase-file", s(&pass)]);
    assert!(std::fs::read(&out).unwrap().starts_with(b"age-encryption.org/v1\n-> scrypt "));

    // The plaintext is a tar that the tar tool lists.
    let plain = tessera_backup::decrypt_bytes(
        std::fs::File::open(&out).unwrap(),
        SecretString::from(PASSPHRASE.to_string()),
        1 << 30,
    )
    .unwrap();
    let tar_file = n.cwd().join("b.tar");
    std::fs::write(&tar_file, &plain).unwrap();
    if require_tool("tar") {
        let o = Command::new("tar").arg("tvf").arg(&tar_file).output().unwrap();
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success());
        for name in ["manifest.json", "tessera.db", "master.key"] {
            assert!(listing.contains(name), "{listing}");
        }
    }
    // Debian's age asks for the passphrase on a terminal only; `script` lends it one.
    if require_tool("age") && require_tool("script") {
        let decrypted = n.cwd().join("by-age.tar");
        let cmd = format!("age -d -o {} {}", s(&decrypted), s(&out));
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            std::thread::sleep(std::time::Duration::from_millis(500));
            child.stdin.take().unwrap().write_all(format!("{PASSPHRASE}\n").as_bytes()).unwrap();
        }
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "age -d: {}", String::from_utf8_lossy(&o.stdout));
        assert_eq!(std::fs::read(&decrypted).unwrap(), plain, "age CLI and the age crate agree");
    }
    // The included master key is the node's.
    let key = std::fs::read_to_string(n.key_file()).unwrap();
    let mut a = tar::Archive::new(&plain[..]);
    let mut found = false;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("master.key") {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut e, &mut t).unwrap();
            assert_eq!(t.trim(), key.trim());
            found = true;
        }
    }
    assert!(found);
}

#[tokio::test]
async fn key_export_is_the_master_key_alone_under_its_own_passphrase() {
    let n = TestNode::new();
    n.ok(&["init"]);
    let pass = passphrase_file(&n, "another passphrase for the key");
    let out = n.cwd().join("key.age");
    let o = n.ok(&["key", "export", "--out", s(&out), "--passphrase-file", s(&pass)]);
    assert!(o.contains("age -d"), "{o}");
    assert_eq!(super::support::mode(&out), 0o600);
    let plain = tessera_backup::decrypt_bytes(
        std::fs::File::open(&out).unwrap(),
        SecretString::from("another passphrase for the key".to_string()),
        4096,
    )
    .unwrap();
    assert_eq!(plain, std::fs::read(n.key_file()).unwrap());
    let wrong = tessera_backup::decrypt_bytes(
        std::fs::File::open(&out).unwrap(),
        SecretString::from(PASSPHRASE.to_string()),
        4096,
    );
    assert!(matches!(wrong, Err(tessera_backup::Error::WrongPassphrase)));
}

/// Rewrites a backup with its database's schema version raised to `version`
/// (as a newer tessera would have made it), re-encrypted and re-hashed.
fn with_schema_version(src: &Path, dst: &Path, version: i64, work: &Path) -> PathBuf {
    let pass = || SecretString::from(PASSPHRASE.to_string());
    std::fs::create_dir_all(work).unwrap();
    let mut names = Vec::new();
    let mut manifest = tessera_backup::read_archive(std::fs::File::open(src).unwrap(), pass(), |f, r| {
        let p = work.join(f.name.replace('/', "_"));
        std::io::copy(r, &mut std::fs::File::create(&p)?)?;
        names.push((f.name.clone(), p));
        Ok(())
    })
    .unwrap();
    let db = work.join("tessera.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)", [version]).unwrap();
    drop(c);
    manifest.schema_version = version;
    manifest.files = names
        .iter()
        .map(|(n, p)| tessera_backup::file_entry(n, &mut std::fs::File::open(p).unwrap()).unwrap())
        .collect();
    let lookup = names.clone();
    tessera_backup::write_archive(std::fs::File::create(dst).unwrap(), pass(), &manifest, |e: &FileEntry| {
        let p = &lookup.iter().find(|(n, _)| *n == e.name).unwrap().1;
        Ok(Box::new(std::fs::File::open(p)?) as Box<dyn std::io::Read>)
    })
    .unwrap();
    dst.to_path_buf()
}

#[tokio::test]
async fn unusable_backups_and_missing_keys_are_refused_with_nothing_written() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "alice"]);
    let pass = passphrase_file(&n, PASSPHRASE);
    let good = n.cwd().join("good.age");
    n.ok(&["backup", "create", "--out", s(&good), "--passphrase-file", s(&pass)]);
    let bytes = std::fs::read(&good).unwrap();

    // A fresh node that holds the right key, and the damaged variants.
    let m = TestNode::new();
    std::fs::copy(n.key_file(), m.key_file()).unwrap();
    chmod(&m.key_file(), 0o600);
    let mpass = passphrase_file(&m, PASSPHRASE);
    let wrong = passphrase_file(&m, "not the passphrase");
    let put = |name: &str, b: &[u8]| {
        let p = m.cwd().join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    let good_m = put("good.age", &bytes);
    let truncated = put("truncated.age", &bytes[..bytes.len() - 100]);
    let mut flipped_bytes = bytes.clone();
    let at = bytes.len() / 2;
    flipped_bytes[at] ^= 0x20;
    let flipped = put("flipped.age", &flipped_bytes);
    let not_age = put("not.age", b"SQLite format 3\0 this is not a backup\n");
    let newer = with_schema_version(&good_m, &m.cwd().join("newer.age"), 999, &n.cwd().join("work"));

    let before = tree(m.cwd());
    let cases: [(&Path, &Path, &str); 5] = [
        (&good_m, &wrong, "wrong passphrase"),
        (&truncated, &mpass, "truncated or damaged"),
        (&flipped, &mpass, "truncated or damaged"),
        (&not_age, &mpass, "not an age-encrypted file"),
        (&newer, &mpass, "schema version 999 is newer"),
    ];
    for (file, p, expect) in cases {
        for cmd in ["verify", "restore"] {
            let out = m.fail(&["backup", cmd, s(file), "--passphrase-file", s(p)], &[], 1);
            assert!(out.contains(expect), "backup {cmd} {}: expected `{expect}` in: {out}", file.display());
            assert_eq!(tree(m.cwd()), before, "backup {cmd} {} wrote something", file.display());
            assert!(!m.data().exists());
        }
    }

    // Without the master key (and it is not in the backup): refused, naming the key id.
    let k = TestNode::new();
    let kfile = k.cwd().join("good.age");
    std::fs::write(&kfile, &bytes).unwrap();
    let kpass = passphrase_file(&k, PASSPHRASE);
    let before = tree(k.cwd());
    let key_id = n.ok(&["backup", "verify", s(&good), "--passphrase-file", s(&pass)]);
    let key_id = key_id.lines().find_map(|l| l.trim().strip_prefix("master key id:")).unwrap().trim().to_string();
    let out = k.fail(&["backup", "restore", s(&kfile), "--passphrase-file", s(&kpass)], &[], 1);
    assert!(out.contains("no master key was found") && out.contains(&key_id), "{out}");
    assert_eq!(tree(k.cwd()), before);
    // With another key: refused, naming both.
    let other = "tessera-master-key-v1:".to_string() + &"ab".repeat(32);
    let out = k.fail(
        &["backup", "restore", s(&kfile), "--passphrase-file", s(&kpass)],
        &[("TESSERA_MASTER_KEY", other.as_str())],
        1,
    );
    assert!(out.contains(&key_id) && out.contains("but the master key from TESSERA_MASTER_KEY is"), "{out}");
    assert_eq!(tree(k.cwd()), before);

    // Over existing data: refused without --force; with --force while the
    // server runs: refused; stopped: the old database is moved aside.
    let db = n.data().join("tessera.db");
    let out = n.fail(&["backup", "restore", s(&good), "--passphrase-file", s(&pass)], &[], 1);
    assert!(out.contains("already holds a database") && out.contains("--force"), "{out}");
    n.start();
    let out = n.fail(&["backup", "restore", s(&good), "--force", "--passphrase-file", s(&pass)], &[], 1);
    assert!(out.contains("is in use"), "{out}");
    n.stop();
    n.ok(&["user", "add", "after-backup"]);
    let out = n.ok(&["backup", "restore", s(&good), "--force", "--passphrase-file", s(&pass)]);
    assert!(out.contains("moved aside"), "{out}");
    let aside: Vec<String> = std::fs::read_dir(n.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("tessera.db.before-restore-"))
        .collect();
    assert!(!aside.is_empty(), "the old database is kept");
    assert!(db.exists());
    let users = n.ok(&["user", "list"]);
    assert!(users.contains("alice") && !users.contains("after-backup"), "{users}");
}
