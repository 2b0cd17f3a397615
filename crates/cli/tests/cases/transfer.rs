//! `tessera export users` → `tessera import users` into a fresh node:
//! the same users, tokens, statuses and groups; secrets only in an
//! encrypted file; codes used before the export stay used.

use super::support::{TestNode, hotp_code, totp_now};

const ALICE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const BOB_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn comparable(n: &TestNode, user: &str) -> serde_json::Value {
    let show: serde_json::Value = serde_json::from_str(&n.ok(&["user", "show", user, "--json"])).unwrap();
    let u = &show["user"];
    let tokens: Vec<serde_json::Value> = show["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            serde_json::json!([
                t["serial"],
                t["type"],
                t["algorithm"],
                t["digits"],
                t["period"],
                t["state"],
                t["counter"]
            ])
        })
        .collect();
    serde_json::json!({"status": u["status"], "realm": u["realm"], "has_password": u["has_password"], "tokens": tokens})
}

#[test]
fn users_export_import_round_trip() {
    let a = TestNode::new();
    a.ok(&["init"]);
    a.ok_stdin(&["user", "add", "alice", "--password-stdin"], "alice-secret-pw\n");
    a.ok(&["token", "add", "alice", "--secret", ALICE_SECRET, "--serial", "ALICE-1"]);
    a.ok(&["group", "add", "vpn-admins", "alice"]);
    a.ok(&["user", "add", "bob", "--realm", "corp"]);
    a.ok(&["token", "add", "bob", "--realm", "corp", "--secret", BOB_SECRET, "--type", "hotp", "--serial", "BOB-1"]);
    a.ok(&["user", "disable", "bob", "--realm", "corp"]);
    a.ok(&["user", "add", "carol"]);
    let used = format!("alice-secret-pw{}", totp_now(ALICE_SECRET, 0));
    assert!(a.ok(&["check", "alice", &used]).starts_with("accept"));

    let pass = a.cwd().join("pass");
    std::fs::write(&pass, "export-pass\n").unwrap();
    let plain = a.cwd().join("users.jsonl");
    let sealed = a.cwd().join("users.age");
    // a passphrase without --secrets, or secrets without a passphrase source, are refused
    a.fail(&["export", "users", "--out", plain.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()], &[], 2);
    a.fail(&["export", "users", "--out", sealed.to_str().unwrap(), "--secrets"], &[], 2);
    assert!(!sealed.exists());
    a.ok(&["export", "users", "--out", plain.to_str().unwrap()]);
    let text = std::fs::read_to_string(&plain).unwrap();
    assert!(!text.contains(ALICE_SECRET) && !text.contains("argon2"), "no secrets in a plain export: {text}");
    a.ok(&[
        "export",
        "users",
        "--out",
        sealed.to_str().unwrap(),
        "--secrets",
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    let raw = std::fs::read(&sealed).unwrap();
    assert!(raw.starts_with(b"age-encryption.org/"));
    assert!(!String::from_utf8_lossy(&raw).contains(ALICE_SECRET));

    let b = TestNode::new();
    b.ok(&["init"]);
    let wrong = b.cwd().join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    b.fail(&["import", "users", sealed.to_str().unwrap(), "--passphrase-file", wrong.to_str().unwrap()], &[], 2);
    assert!(b.ok(&["user", "list"]).lines().count() <= 1, "nothing imported with a wrong passphrase");
    let dry =
        b.ok(&["import", "users", sealed.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap(), "--dry-run"]);
    assert!(dry.contains("dry run") && dry.contains("3 users created"), "{dry}");
    let out = b.ok(&["import", "users", sealed.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()]);
    assert!(out.contains("3 users created") && out.contains("2 tokens added"), "{out}");
    for line in
        ["alice: created (1 token added)", "bob@corp: created (1 token added)", "carol: created (no tokens added)"]
    {
        assert!(out.lines().any(|l| l == line), "{line}: {out}");
    }

    assert_eq!(comparable(&a, "alice"), comparable(&b, "alice"));
    assert_eq!(comparable(&a, "carol"), comparable(&b, "carol"));
    let bob = |n: &TestNode| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&n.ok(&["user", "show", "bob", "--realm", "corp", "--json"])).unwrap()
            ["user"]["status"]
            .clone()
    };
    assert_eq!(bob(&a), bob(&b));
    assert!(b.ok(&["group", "list", "--json"]).contains("vpn-admins"));
    // the code used before the export stays used; the password and the next code work
    b.fail(&["check", "alice", &used], &[], 1);
    assert!(b.ok(&["check", "alice", &format!("alice-secret-pw{}", totp_now(ALICE_SECRET, 1))]).starts_with("accept"));
    b.ok(&["user", "enable", "bob", "--realm", "corp"]);
    assert!(b.ok(&["check", "bob", "--realm", "corp", &hotp_code(BOB_SECRET, 0)]).starts_with("accept"));
    // Issue 15: a second import says per user what exists, adds nothing,
    // and succeeds (users that exist already are not a failure)
    let again = b.ok(&["import", "users", sealed.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()]);
    for user in ["alice", "bob@corp", "carol"] {
        assert!(again.lines().any(|l| l.starts_with(&format!("{user}: exists; skipped"))), "{user}: {again}");
    }
    assert!(again.contains("0 users created, 0 merged, 3 skipped"), "{again}");
    let merged = b.ok(&[
        "import",
        "users",
        sealed.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--on-conflict",
        "merge",
    ]);
    assert!(merged.lines().any(|l| l == "alice: exists; merged (no tokens added)"), "{merged}");
}

#[test]
fn config_export_import_round_trip() {
    let a = TestNode::new();
    a.ok(&["init"]);
    let secret = a.cwd().join("radius.secret");
    std::fs::write(&secret, "a-long-radius-secret\n").unwrap();
    a.ok(&[
        "client",
        "add",
        "vpn",
        "--address",
        "10.0.0.0/24",
        "--secret-file",
        secret.to_str().unwrap(),
        "--default-realm",
        "corp",
    ]);
    let realm = a.cwd().join("corp.toml");
    std::fs::write(
        &realm,
        "cache_ttl_seconds = 60\n[[source]]\ntype = \"ldap\"\nurls = [\"ldaps://dc1.example.org\"]\n\
         bind_dn = \"cn=svc,dc=example,dc=org\"\nbind_password = \"svc-pw\"\nbase_dn = \"dc=example,dc=org\"\n\
         filter = \"(uid={user})\"\n",
    )
    .unwrap();
    a.ok(&["realm", "add", "corp", "--file", realm.to_str().unwrap()]);
    a.ok(&["reply", "add", "--group", "vpn-admins", "Filter-Id=admins"]);
    a.ok(&["policy", "set", "lockout_threshold=3", "grace_logins=2"]);
    let pass = a.cwd().join("pass");
    std::fs::write(&pass, "cfg-pass\n").unwrap();
    let sealed = a.cwd().join("config.age");
    let plain = a.cwd().join("config.json");
    a.ok(&[
        "export",
        "config",
        "--out",
        sealed.to_str().unwrap(),
        "--secrets",
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    a.ok(&["export", "config", "--out", plain.to_str().unwrap()]);
    let text = std::fs::read_to_string(&plain).unwrap();
    assert!(!text.contains("a-long-radius-secret") && !text.contains("svc-pw"), "{text}");

    let b = TestNode::new();
    b.ok(&["init"]);
    let out = b.ok(&["import", "config", sealed.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()]);
    assert!(out.contains("1 RADIUS clients, 1 realms and 1 reply rules added"), "{out}");
    for args in [&["client", "list", "--json"][..], &["reply", "list", "--json"][..], &["policy", "show", "--json"][..]]
    {
        let strip = |s: String| -> serde_json::Value {
            let mut v: serde_json::Value = serde_json::from_str(&s).unwrap();
            if let Some(list) = v.as_array_mut() {
                for item in list {
                    if let Some(o) = item.as_object_mut() {
                        o.remove("id");
                        o.remove("created_at");
                    }
                }
            }
            v
        };
        assert_eq!(strip(a.ok(args)), strip(b.ok(args)), "{args:?}");
    }
    let shown = b.ok(&["realm", "show", "corp", "--json"]);
    assert!(shown.contains("source.0.bind_password") && shown.contains("dc1.example.org"), "{shown}");
    // the plain export brings no secrets: the client is reported, not created
    let c = TestNode::new();
    c.ok(&["init"]);
    let out = c.ok(&["import", "config", plain.to_str().unwrap()]);
    assert!(out.contains("no secret in the file"), "{out}");
}

#[test]
fn scheduled_backups_rotate_and_show_in_status() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "sched"]);
    let dir = n.cwd().join("backups");
    let pass = n.cwd().join("backup.pass");
    std::fs::write(&pass, "sched-pass\n").unwrap();
    let (d, p) = (dir.display().to_string(), pass.display().to_string());
    let env = [
        ("TESSERA_BACKUP_INTERVAL_SECONDS", "1"),
        ("TESSERA_BACKUP_DIR", d.as_str()),
        ("TESSERA_BACKUP_KEEP", "2"),
        ("TESSERA_BACKUP_PASSPHRASE_FILE", p.as_str()),
    ];
    // a schedule without a passphrase file is a start-up error, not silence
    let out = n.serve_expect_failure(&[("TESSERA_BACKUP_INTERVAL_SECONDS", "1"), ("TESSERA_BACKUP_DIR", d.as_str())]);
    assert!(out.contains("passphrase_file"), "{out}");
    n.start_with(&env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut runs = std::collections::BTreeSet::new();
    while runs.len() < 3 && std::time::Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(dir.join("backup-status.json")) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["ok"], true, "{text}");
            runs.insert(v["file"].as_str().unwrap().to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(runs.len() >= 3, "three scheduled backups within 60 s: {runs:?}");
    n.stop();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".age"))
        .collect();
    assert!(files.len() <= 2, "keep = 2: {files:?}");
    let status = n.ok_env(&["status"], &env);
    assert!(status.contains("last backup:     ok"), "{status}");
    let newest = runs.iter().next_back().unwrap();
    let out = n.ok(&["backup", "verify", dir.join(newest).to_str().unwrap(), "--passphrase-file", &p]);
    assert!(out.contains("tessera.db"), "{out}");
}
