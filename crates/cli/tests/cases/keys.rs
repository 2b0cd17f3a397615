//! Master key rotation end to end: a rotation while the server validates
//! codes (no login may fail), every secret readable with the new key alone
//! afterwards, and a rotation killed halfway that resumes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{TestNode, backup_codes, chmod, hotp_code, radclient_pap, require_tool};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const RADIUS_SECRET: &str = "rotation-test-radius-secret";

fn secret(i: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..32).map(|j| alphabet[(i * 11 + j * 7 + j * j) % 32] as char).collect()
}

fn key_lines(n: &TestNode) -> Vec<String> {
    std::fs::read_to_string(n.key_file())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn status(n: &TestNode) -> Value {
    serde_json::from_str(&n.ok(&["key", "status", "--verify", "--json"])).unwrap()
}

fn setup(n: &TestNode, users: usize) {
    n.ok(&["init"]);
    for i in 0..users {
        n.ok(&["user", "add", &format!("u{i}")]);
        n.ok(&["token", "add", &format!("u{i}"), "--secret", &secret(i), "--type", "hotp"]);
    }
}

/// One PAP request through FreeRADIUS's radclient; the reply code name.
fn radius_auth(addr: &str, user: &str, password: &str) -> Option<String> {
    radclient_pap(addr, RADIUS_SECRET, user, password, "", 3).code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_fails_no_login_and_leaves_only_the_new_key() {
    const USERS: usize = 40;
    let mut n = TestNode::new();
    setup(&n, USERS);
    let codes = backup_codes(&n.ok(&["backup-codes", "u0"]));
    let radius = require_tool("radclient");
    if radius {
        let f = n.cwd().join("radius.secret");
        std::fs::write(&f, RADIUS_SECRET).unwrap();
        n.ok(&["client", "add", "nas", "--address", "127.0.0.1", "--secret-file", f.to_str().unwrap()]);
    }
    let before = status(&n);
    let old_id = before["key_id"].as_str().unwrap().to_string();
    let old_key = std::fs::read_to_string(n.key_file()).unwrap();
    n.start();
    let radius_addr = n.listening("radius");

    // Logins keep coming, each with a fresh HOTP code, all through the rotation.
    let rotating = AtomicBool::new(true);
    let during = AtomicUsize::new(0);
    let counters: Vec<AtomicUsize> = (0..USERS).map(|_| AtomicUsize::new(0)).collect();
    let rotate = async {
        let o = tokio::process::Command::new(BIN)
            .current_dir(n.cwd())
            .arg("--data")
            .arg(n.data())
            .args(["key", "rotate", "--batch", "7"])
            .env("TESSERA_LOG", "warn")
            .output()
            .await
            .unwrap();
        rotating.store(false, Ordering::SeqCst);
        o
    };
    let load = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut round = 0;
        // Until the rotation is over, and two rounds after.
        while (rotating.load(Ordering::SeqCst) || round < 2) && Instant::now() < deadline {
            if !rotating.load(Ordering::SeqCst) {
                round += 1;
            }
            for (i, c) in counters.iter().enumerate() {
                let k = c.fetch_add(1, Ordering::SeqCst) as u64;
                let r = n.validate(&format!("u{i}"), &hotp_code(&secret(i), k)).await;
                assert_eq!(r["result"], "accept", "u{i} counter {k} during the rotation: {r}");
                if rotating.load(Ordering::SeqCst) {
                    during.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    let (o, ()) = tokio::join!(rotate, load);
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "key rotate: {}\n{report}", String::from_utf8_lossy(&o.stderr));
    assert!(during.load(Ordering::SeqCst) >= USERS, "too few logins overlapped the rotation");
    assert!(report.contains("rotated:"), "{report}");

    // The key file holds the new key only; every value opens with it.
    let lines = key_lines(&n);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let after = status(&n);
    let new_id = after["key_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, old_id);
    assert_eq!(after["previous_key_ids"], serde_json::json!([]));
    assert_eq!(after["unreadable"], 0);
    let by_key = after["sealed_values"].as_object().unwrap();
    assert_eq!(by_key.len(), 1, "{by_key:?}");
    assert!(by_key[&new_id].as_u64().unwrap() > USERS as u64);
    assert_eq!(after["rotation"]["state"], "done");
    // The running server follows: still accepting, over RADIUS too.
    let k = counters[1].fetch_add(1, Ordering::SeqCst) as u64;
    assert_eq!(n.validate("u1", &hotp_code(&secret(1), k)).await["result"], "accept");
    if radius {
        let k = counters[2].fetch_add(1, Ordering::SeqCst) as u64;
        assert_eq!(radius_auth(&radius_addr, "u2", &hotp_code(&secret(2), k)).as_deref(), Some("Access-Accept"));
    }

    // A restart with only the new key: logins, backup codes, RADIUS secret.
    n.stop();
    n.start();
    let k = counters[3].fetch_add(1, Ordering::SeqCst) as u64;
    assert_eq!(n.validate("u3", &hotp_code(&secret(3), k)).await["result"], "accept");
    assert_eq!(n.validate("u0", &codes[0]).await["result"], "accept", "backup codes survive the rotation");
    assert_eq!(n.validate("u0", &codes[0]).await["result"], "reject", "and stay single-use");
    if radius {
        let radius_addr = n.listening("radius");
        let k = counters[4].fetch_add(1, Ordering::SeqCst) as u64;
        assert_eq!(radius_auth(&radius_addr, "u4", &hotp_code(&secret(4), k)).as_deref(), Some("Access-Accept"));
    }
    // The audit trail records the start and the end.
    let audit = n.ok(&["audit", "list", "--action", "key.rotate"]);
    assert!(audit.contains("started") && audit.contains("finished"), "{audit}");
    n.stop();

    // The old key no longer opens this database.
    std::fs::write(n.key_file(), &old_key).unwrap();
    chmod(&n.key_file(), 0o600);
    let refused = n.fail(&["key", "status"], &[], 1);
    assert!(refused.contains("master key") && refused.contains(&new_id), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_killed_halfway_resumes_while_logins_continue() {
    const USERS: usize = 60;
    let mut n = TestNode::new();
    setup(&n, USERS);
    let old_id = status(&n)["key_id"].as_str().unwrap().to_string();
    n.start();

    // Slow batches of 5 so the rotation can be killed in the middle.
    let mut child = Command::new(BIN)
        .current_dir(n.cwd())
        .arg("--data")
        .arg(n.data())
        .args(["key", "rotate", "--batch", "5", "--wait-seconds", "0", "--pause-ms", "300"])
        .env("TESSERA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(l)) = lines.next() else { break };
        let resealing = l.starts_with("re-sealed ");
        seen.push(l);
        if resealing && seen.iter().filter(|l| l.starts_with("re-sealed ")).count() >= 3 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(seen.iter().any(|l| l.starts_with("re-sealed ")), "{seen:?}");

    // Halfway: two keys in the file, values under both, the server fine.
    assert_eq!(key_lines(&n).len(), 2);
    let mid = status(&n);
    assert_eq!(mid["rotation"]["state"], "running");
    assert_eq!(mid["unreadable"], 0);
    let by_key = mid["sealed_values"].as_object().unwrap();
    assert_eq!(by_key.len(), 2, "values under both keys: {by_key:?}");
    assert!(by_key[&old_id].as_u64().unwrap() > 0);
    for i in 0..USERS {
        assert_eq!(n.validate(&format!("u{i}"), &hotp_code(&secret(i), 0)).await["result"], "accept", "u{i}");
    }
    // No backup of a half-rotated database.
    let out = n.cwd().join("mid.age");
    let pass = n.cwd().join("pass");
    std::fs::write(&pass, "a long backup passphrase\n").unwrap();
    let refused = n.fail(
        &["backup", "create", "--out", out.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()],
        &[],
        1,
    );
    assert!(refused.contains("rotation is under way"), "{refused}");

    // Running it again finishes the job.
    let resumed = n.ok(&["key", "rotate", "--wait-seconds", "0"]);
    assert!(resumed.contains("resuming the rotation"), "{resumed}");
    assert!(resumed.contains("rotated:"), "{resumed}");
    assert_eq!(key_lines(&n).len(), 1);
    let done = status(&n);
    let new_id = done["key_id"].as_str().unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(done["sealed_values"].as_object().unwrap().len(), 1);
    assert_eq!(done["unreadable"], 0);
    for i in 0..USERS {
        assert_eq!(n.validate(&format!("u{i}"), &hotp_code(&secret(i), 1)).await["result"], "accept", "u{i}");
    }
    n.stop();
    n.start();
    assert_eq!(n.validate("u7", &hotp_code(&secret(7), 2)).await["result"], "accept");
    n.stop();
}

#[test]
fn rotation_needs_the_key_in_a_file() {
    let n = TestNode::new();
    n.ok(&["init"]);
    let key = std::fs::read_to_string(n.key_file()).unwrap();
    std::fs::remove_file(n.key_file()).unwrap();
    let out = n.fail(&["key", "rotate"], &[("TESSERA_MASTER_KEY", key.trim())], 2);
    assert!(out.contains("TESSERA_MASTER_KEY"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_follow_the_key_file_but_never_to_a_key_that_cannot_open_the_database() {
    let mut n = TestNode::new();
    setup(&n, 2);
    let old = std::fs::read_to_string(n.key_file()).unwrap();
    let old_id = status(&n)["key_id"].as_str().unwrap().to_string();
    n.start();
    let node_report = |n: &TestNode| status(n)["this_node_server"].clone();
    let wait_for = |want: &dyn Fn(&Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = node_report(&n);
            if want(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "the server did not follow the key file: {r}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // A key that cannot open the database is refused; the server goes on.
    let stranger = format!("tessera-master-key-v1:{}\n", "ab".repeat(32));
    std::fs::write(n.key_file(), &stranger).unwrap();
    chmod(&n.key_file(), 0o600);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(n.validate("u0", &hotp_code(&secret(0), 0)).await["result"], "accept");
    std::fs::write(n.key_file(), &old).unwrap();
    chmod(&n.key_file(), 0o600);
    assert_eq!(node_report(&n)["key_id"], old_id.as_str());

    // A two-key file (as a rotation that died before setting its marker
    // leaves it) is followed without any marker: new first, old still opening.
    let two = format!("{stranger}{old}");
    std::fs::write(n.key_file(), &two).unwrap();
    chmod(&n.key_file(), 0o600);
    let r = wait_for(&|r: &Value| r["previous"] == serde_json::json!([old_id.clone()]));
    assert_ne!(r["key_id"], old_id.as_str());
    assert_eq!(n.validate("u1", &hotp_code(&secret(1), 0)).await["result"], "accept");
    // …and the rotation, run again, finishes from there.
    let out = n.ok(&["key", "rotate", "--wait-seconds", "0"]);
    assert!(out.contains("resuming the rotation") && out.contains("rotated:"), "{out}");
    wait_for(&|r: &Value| r["previous"] == serde_json::json!([]));
    assert_eq!(n.validate("u0", &hotp_code(&secret(0), 1)).await["result"], "accept");
    n.stop();
}
