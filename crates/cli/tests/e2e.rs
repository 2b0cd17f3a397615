//! End-to-end tests of the `tessera` binary: real processes, real HTTPS,
//! kill -9 and restart, the CLI's exit codes, corrupted files.

mod support;

#[path = "cases/backup.rs"]
mod backup;

#[path = "cases/radius.rs"]
mod radius;

#[path = "cases/radius_rotation.rs"]
mod radius_rotation;

#[path = "cases/realms.rs"]
mod realms;

#[path = "cases/inventory.rs"]
mod inventory;

#[path = "cases/keys.rs"]
mod keys;

#[path = "cases/transfer.rs"]
mod transfer;

#[path = "cases/audit.rs"]
mod audit;

#[path = "cases/ops.rs"]
mod ops;

#[path = "cases/oob.rs"]
mod oob;
#[path = "cases/replication.rs"]
mod replication;

#[path = "cases/cluster.rs"]
mod cluster;

#[path = "cases/ui.rs"]
mod ui;

#[path = "cases/ui_browser.rs"]
mod ui_browser;

#[path = "cases/shared_db.rs"]
mod shared_db;

#[path = "cases/cluster_keys.rs"]
mod cluster_keys;

#[path = "cases/health.rs"]
mod health;

#[path = "cases/first_hour_cli.rs"]
mod first_hour_cli;
#[path = "cases/first_hour_core.rs"]
mod first_hour_core;

#[path = "cases/login_engine.rs"]
mod login_engine;
#[path = "cases/timing.rs"]
mod timing;
#[path = "cases/tls_reload.rs"]
mod tls_reload;
#[path = "cases/upgrade.rs"]
mod upgrade;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestNode, codes, hotp_code, sha256_file, totp_now};

#[tokio::test]
async fn readme_walkthrough_serve_with_no_config() {
    // The README's first command, in an empty directory, with nothing but a
    // free port: embedded database, key file and certificate appear.
    let mut n = TestNode::in_empty_cwd();
    n.start();
    assert!(n.cwd().join("tessera-data/tessera.db").exists());
    assert!(n.cwd().join("tessera-data/tls/cert.pem").exists());
    let key = n.cwd().join("tessera.key");
    assert_eq!(support::mode(&key), 0o600, "key file must be private");
    assert_eq!(support::mode(&n.cwd().join("tessera-data/tessera.db")), 0o600);
    let h: Value = n.get("/healthz").await.json().await.unwrap();
    assert_eq!(h["status"], "ok");

    n.ok(&["user", "add", "alice"]);
    let e: Value = serde_json::from_str(&n.ok(&["token", "enroll", "alice", "--json"])).unwrap();
    let secret = e["secret"].as_str().unwrap().to_string();
    assert!(e["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/tessera:alice?secret="));
    n.ok(&["token", "confirm", "alice", &codes::oathtool_or_ours(&secret, 0)]);
    let code = codes::oathtool_or_ours(&secret, 30);
    assert_eq!(n.validate("alice", &code).await["result"], "accept");
    let again = n.validate("alice", &code).await;
    assert_eq!(again, json!({"result": "reject", "reason": "access_denied"}));
    let audit = n.ok(&["audit", "list", "--action", "validate", "--json"]);
    let audit: Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(audit[0]["reason"], "replayed_code");
    assert_eq!(audit[1]["result"], "accept");
    n.stop();
}

/// The README's walk-through as written: its shell blocks are read from
/// README.md and run in order against a fresh data directory (bash, with
/// `tessera` bound to this build and `localhost:8443` to the test server's
/// port; `123456` is the current code of the secret enrolled for the user
/// the command names, `654321` the next one), and every output the README shows in a `# {…}` comment is
/// checked, including "the same code again".
#[tokio::test]
async fn readme_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("## Five-minute walk-through").expect("walk-through section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut n = TestNode::in_empty_cwd();
    n.start();
    let port = n.https_port();
    let run = |cmd: &str| -> String {
        let script = format!("tessera() {{ {} \"$@\"; }}\n{cmd}", env!("CARGO_BIN_EXE_tessera"));
        let mut c = std::process::Command::new("bash");
        c.arg("-c").arg(&script).current_dir(n.cwd());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TESSERA_")) {
            c.env_remove(k);
        }
        let out = c.env("TESSERA_LOG", "warn").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "README command failed: {cmd}\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    // (user, secret) of every `token enroll` so far.
    let mut secrets: Vec<(String, String)> = Vec::new();
    let (mut last_cmd, mut last_out) = (String::new(), String::new());
    let mut ran = 0;
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let trimmed = line.trim_start();
        if let Some(shown) = trimmed.strip_prefix("# {") {
            // An output the README shows for the command above it.
            let (first, again) = match shown.split_once("-- the same code again:") {
                Some((a, b)) => (a, Some(b)),
                None => (shown, None),
            };
            let want: Value = serde_json::from_str(&format!("{{{}", first.trim())).unwrap();
            let got: Value = serde_json::from_str(last_out.trim()).unwrap_or(Value::Null);
            assert_eq!(got, want, "output of `{last_cmd}`");
            if let Some(again) = again {
                let want: Value = serde_json::from_str(again.trim()).unwrap();
                let got: Value = serde_json::from_str(run(&last_cmd).trim()).unwrap_or(Value::Null);
                assert_eq!(got, want, "`{last_cmd}` run again");
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("alias ") {
            continue;
        }
        // Continuation lines join; a trailing comment (after two spaces) goes.
        let code = line.split("  #").next().unwrap_or(line).trim_end();
        if let Some(part) = code.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        let mut cmd = std::mem::take(&mut pending) + code;
        cmd = cmd.replace("localhost:8443", &format!("localhost:{port}"));
        if cmd.contains("123456") || cmd.contains("654321") {
            // The code of the user the command names (by word, or in JSON).
            let named = |u: &String| cmd.split(|c: char| !c.is_alphanumeric()).any(|w| w == u);
            let (_, s) = secrets.iter().rev().find(|(u, _)| named(u)).expect("a code for a user who enrolled a token");
            cmd = cmd.replace("123456", &codes::oathtool_or_ours(s, 0));
            cmd = cmd.replace("654321", &codes::oathtool_or_ours(s, 30));
        }
        last_out = run(&cmd);
        if let Some(user) = cmd.strip_prefix("tessera token enroll ").and_then(|r| r.split_whitespace().next())
            && let Some(secret) = last_out.lines().find_map(|l| l.strip_prefix("secret:"))
        {
            secrets.push((user.to_string(), secret.trim().to_string()));
        }
        last_cmd = cmd;
        ran += 1;
    }
    assert!(ran >= 8, "the walk-through's commands ran: {ran}");
    n.stop();
}

#[tokio::test]
async fn regression_replayed_code_after_sigkill_restart() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "hk"]);
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    n.ok(&["token", "add", "hk", "--secret", secret, "--type", "hotp"]);
    n.ok(&["user", "add", "tk"]);
    n.ok(&["token", "add", "tk", "--secret", secret]);
    n.start();
    // Each round: a code is accepted, the server is killed at once, and
    // after the restart the same code is refused.
    for round in 0..5u64 {
        let code = hotp_code(secret, round);
        assert_eq!(n.validate("hk", &code).await["result"], "accept", "round {round}");
        n.kill9();
        n.start();
        assert_eq!(n.validate("hk", &code).await["result"], "reject", "round {round}: replay after kill -9");
    }
    let code = totp_now(secret, 0);
    assert_eq!(n.validate("tk", &code).await["result"], "accept");
    n.kill9();
    n.start();
    assert_eq!(n.validate("tk", &code).await["result"], "reject");
    n.stop();
}

#[tokio::test]
async fn fifty_parallel_wrong_attempts_lock_after_exactly_five() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "victim"]);
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    n.ok(&["token", "add", "victim", "--secret", secret]);
    n.start();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = n.client();
        let url = n.url("/api/v1/validate");
        tasks.push(tokio::spawn(async move {
            let body = json!({"username": "victim", "password": format!("{:06}", 100_000 + i)});
            c.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap()["result"], "reject");
    }
    let show: Value = serde_json::from_str(&n.ok(&["user", "show", "victim", "--json"])).unwrap();
    assert_eq!(show["user"]["status"], "locked");
    assert_eq!(show["user"]["failures"], 5);
    let audit: Value =
        serde_json::from_str(&n.ok(&["audit", "list", "--action", "validate", "--limit", "100", "--json"])).unwrap();
    let reasons: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 50);
    assert_eq!(reasons.iter().filter(|r| r.contains("failure")).count(), 5, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| **r == "locked").count(), 45);
    // a correct code does not get through a lock; an admin unlock lets it
    assert_eq!(n.validate("victim", &totp_now(secret, 0)).await["result"], "reject");
    n.ok(&["user", "unlock", "victim"]);
    assert_eq!(n.validate("victim", &totp_now(secret, 1)).await["result"], "accept");
    let show: Value = serde_json::from_str(&n.ok(&["user", "show", "victim", "--json"])).unwrap();
    assert_eq!((show["user"]["status"].as_str(), show["user"]["failures"].as_u64()), (Some("active"), Some(0)));
    assert_eq!(show["user"]["last_success"]["address"], "127.0.0.1");
    n.stop();
}

#[tokio::test]
async fn backup_code_works_once_and_regeneration_voids_the_set() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "bob"]);
    n.ok(&["token", "add", "bob", "--secret", "JBSWY3DPEHPK3PXP"]);
    let set1 = support::backup_codes(&n.ok(&["backup-codes", "bob"]));
    assert_eq!(set1.len(), 10);
    n.start();
    assert_eq!(n.validate("bob", &set1[0]).await["result"], "accept");
    assert_eq!(n.validate("bob", &set1[0]).await["result"], "reject");
    // dashes as printed are accepted too
    let dashed = format!("{}-{}", &set1[1][..5], &set1[1][5..]);
    assert_eq!(n.validate("bob", &dashed).await["result"], "accept");
    let set2 = support::backup_codes(&n.ok(&["backup-codes", "bob"]));
    assert_eq!(n.validate("bob", &set1[2]).await["result"], "reject", "old set void");
    assert_eq!(n.validate("bob", &set2[2]).await["result"], "accept");
    let show: Value = serde_json::from_str(&n.ok(&["user", "show", "bob", "--json"])).unwrap();
    assert_eq!(show["backup_codes_left"], 9);
    n.stop();
}

#[tokio::test]
async fn wrong_or_missing_master_key_is_a_clear_error_and_changes_nothing() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "carol"]);
    let db = n.data().join("tessera.db");
    let before = sha256_file(&db);
    let other = "tessera-master-key-v1:".to_string() + &"ab".repeat(32);

    let out = n.serve_expect_failure(&[("TESSERA_MASTER_KEY", other.as_str())]);
    assert!(out.contains("master key does not match this database"), "{out}");
    let out = n.fail(&["user", "list"], &[("TESSERA_MASTER_KEY", other.as_str())], 1);
    assert!(out.contains("master key does not match"), "{out}");
    let out = n.fail(&["user", "list"], &[("TESSERA_MASTER_KEY", "not-a-key")], 1);
    assert!(out.contains("malformed"), "{out}");
    assert_eq!(sha256_file(&db), before);

    let key = n.key_file();
    support::chmod(&key, 0o644);
    let out = n.fail(&["user", "list"], &[], 1);
    assert!(out.contains("chmod 600"), "{out}");
    support::chmod(&key, 0o600);
    std::fs::rename(&key, key.with_extension("moved")).unwrap();
    let out = n.fail(&["user", "list"], &[], 1);
    assert!(out.contains("master key file") && out.contains("not found"), "{out}");
    std::fs::rename(key.with_extension("moved"), &key).unwrap();
    assert!(n.ok(&["user", "list"]).contains("carol"));
}

#[tokio::test]
async fn bad_http_input_gets_clear_errors_and_changes_nothing() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "dave"]);
    n.ok(&["token", "add", "dave", "--secret", "JBSWY3DPEHPK3PXP"]);
    n.start();
    let audit_before = n.ok(&["audit", "list", "--json"]);
    let c = n.client();
    let url = n.url("/api/v1/validate");
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (c.post(&url).header("content-type", "application/json").body("{\"username\": "), 400, "malformed_json"),
        (c.post(&url).header("content-type", "application/json").body("[1,2,3]"), 400, "invalid_request"),
        (c.post(&url).json(&json!({"username": "dave"})), 400, "invalid_request"),
        (c.post(&url).json(&json!({"username": "dave", "password": "1", "extra": 1})), 400, "invalid_request"),
        (c.post(&url).body("username=dave&password=1"), 415, "unsupported_media_type"),
        (c.post(&url).json(&json!({"username": "dave", "password": "x".repeat(100_000)})), 413, "payload_too_large"),
        (c.get(&url), 405, "method_not_allowed"),
        (c.get(n.url("/api/v1/nothing")), 404, "not_found"),
        (c.get(n.url("/api/v1/users")), 401, "unauthorized"),
        (c.get(n.url("/api/v1/users")).bearer_auth("tsk_0000"), 401, "unauthorized"),
    ];
    for (i, (req, status, code)) in cases.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "case {i}");
        assert_eq!(r.headers()["content-type"], "application/json", "case {i}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], code, "case {i}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "case {i}");
    }
    assert_eq!(n.ok(&["audit", "list", "--json"]), audit_before, "malformed requests change nothing");
    // A value of the wrong type is named by its field and kind, never echoed
    // (a password sent as a number is still a password).
    let r = c.post(&url).json(&json!({"username": "dave", "password": 987_654_321_123u64})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("password") && message.contains("invalid type"), "{body}");
    assert!(!message.contains("987654321123"), "the value is not echoed: {body}");
    // An explicit limit outside 1–10000 is refused, not silently defaulted.
    let key = n.ok(&["api-key", "create", "lister"]).trim().to_string();
    for bad in ["0", "10001", "-1", "x"] {
        let r = c.get(n.url(&format!("/api/v1/users?limit={bad}"))).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 400, "limit={bad}");
        let r = c.get(n.url(&format!("/api/v1/audit?limit={bad}"))).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 400, "audit limit={bad}");
    }
    let r = c.get(n.url("/api/v1/users?limit=1")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // an unknown user is a normal reject, indistinguishable from a wrong code
    assert_eq!(n.validate("nobody", "123456").await, json!({"result": "reject", "reason": "access_denied"}));
    assert_eq!(n.validate("dave", "000000").await, json!({"result": "reject", "reason": "access_denied"}));
    let r = n.get("/healthz").await;
    for h in ["strict-transport-security", "x-content-type-options", "cache-control", "content-security-policy"] {
        assert!(r.headers().contains_key(h), "missing {h}");
    }
    n.stop();
}

#[tokio::test]
async fn bad_cli_input_exits_2_and_changes_nothing() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "erin"]);
    let db = n.data().join("tessera.db");
    let before = n.ok(&["user", "show", "erin", "--json"]);
    let cases: &[&[&str]] = &[
        &["token", "enroll", "erin", "--digits", "7"],
        &["token", "enroll", "erin", "--period", "45"],
        &["token", "enroll", "erin", "--algorithm", "MD5"],
        &["token", "enroll", "erin", "--type", "motp"],
        &["token", "add", "erin", "--secret", "not*base32!"],
        &["token", "add", "erin", "--secret", "MZXW6"],
        &["token", "add", "erin", "--secret-hex", "xyz"],
        &["user", "list", "--status", "sleepy"],
        &["user", "list", "--limit", "0"],
        &["user", "add", "bad\u{7}name"],
        &["policy", "set", "lockout_threshold=11"],
        &["policy", "set", "no_such_setting=1"],
        &["policy", "set", "lockout_threshold"],
        &["audit", "list", "--since", "yesterday-ish"],
        &["token", "resync", "X", "123456"],
        &["no-such-command"],
        &["user", "add"],
    ];
    for args in cases {
        let out = n.fail(args, &[], 2);
        assert!(!out.trim().is_empty(), "{args:?} printed no message");
        assert!(!out.contains("panicked"), "{args:?}: {out}");
    }
    assert_eq!(n.ok(&["user", "show", "erin", "--json"]), before);
    let policy: Value = serde_json::from_str(&n.ok(&["policy", "show", "--json"])).unwrap();
    assert_eq!(policy["lockout_threshold"], 5);
    let out = n.fail(&["user", "show", "nobody"], &[], 1);
    assert!(out.contains("not found"), "{out}");
    assert!(db.exists());
}

#[tokio::test]
async fn truncated_or_corrupted_database_is_a_clear_error() {
    let n = TestNode::new();
    n.ok(&["init"]);
    for i in 0..200 {
        n.ok(&["user", "add", &format!("user{i:03}")]);
        if i == 199 {
            break;
        }
    }
    let db = n.data().join("tessera.db");
    support::checkpoint(&db);
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let before = sha256_file(&db);
    let out = n.serve_expect_failure(&[]);
    assert!(out.contains("corrupt"), "{out}");
    let out = n.fail(&["user", "list"], &[], 1);
    assert!(out.contains("corrupt"), "{out}");
    assert_eq!(sha256_file(&db), before, "a failed start must not write");

    std::fs::write(&db, b"this is not a database at all, just text. ".repeat(200)).unwrap();
    let out = n.fail(&["user", "list"], &[], 1);
    assert!(out.contains("corrupt") || out.contains("not a tessera database"), "{out}");
}

#[tokio::test]
async fn admin_api_manages_users_and_tokens_with_an_api_key() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    let key = n.ok(&["api-key", "create", "ops"]).trim().to_string();
    assert!(key.starts_with("tsk_"));
    n.start();
    let c = n.client();
    let post = |path: &str, body: Value| c.post(n.url(path)).bearer_auth(&key).json(&body);
    let r = post("/api/v1/users", json!({"username": "frank", "password": "frank's long pass"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = post("/api/v1/users", json!({"username": "frank"})).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let r = post("/api/v1/users/frank/tokens", json!({"digits": 7})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = post("/api/v1/users/frank/tokens", json!({"secret": "!!"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let created: Value =
        post("/api/v1/users/frank/tokens", json!({"type": "totp", "digits": 8, "algorithm": "SHA256"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(created["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(created["token"]["state"], "pending");
    let p = support::Params { digits: 8, sha: "SHA256", period: 30 };
    let r = post("/api/v1/users/frank/tokens/confirm", json!({"code": "00000000"})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let r = post("/api/v1/users/frank/tokens/confirm", json!({"code": codes::totp_with(secret, p, 0)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pw = format!("frank's long pass{}", codes::totp_with(secret, p, 30));
    assert_eq!(n.validate("frank", &pw).await["result"], "accept");
    let detail: Value =
        c.get(n.url("/api/v1/users/frank")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(detail["user"]["status"], "active");
    assert_eq!(detail["tokens"][0]["digits"], 8);
    let listed: Value =
        c.get(n.url("/api/v1/users?search=fr*")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let r =
        c.patch(n.url("/api/v1/policy")).bearer_auth(&key).json(&json!({"lockout_threshold": 3})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .patch(n.url("/api/v1/policy"))
        .bearer_auth(&key)
        .json(&json!({"lockout_threshold": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post("/api/v1/users/frank/disable", json!({})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "disabled");
    let audit: Value = c
        .get(n.url("/api/v1/audit?actor=api-key:ops&limit=50"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"user.add") && actions.contains(&"token.enroll") && actions.contains(&"user.disable"));
    let r = c.delete(n.url("/api/v1/users/frank")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(n.url("/api/v1/users/frank")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let served = n.get("/api/openapi.json").await.text().await.unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json")).unwrap();
    assert!(
        served == committed,
        "the served OpenAPI document differs from docs/openapi.json: `UPDATE_OPENAPI=1 cargo test -p tessera-server openapi`"
    );
    n.stop();
}

#[tokio::test]
async fn validate_can_require_an_api_key() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    let key = n.ok(&["api-key", "create", "vpn"]).trim().to_string();
    n.ok(&["user", "add", "gina"]);
    n.ok(&["token", "add", "gina", "--secret", "JBSWY3DPEHPK3PXP"]);
    n.start_with(&[("TESSERA_HTTP_VALIDATE_REQUIRES_API_KEY", "true")]);
    let body = json!({"username": "gina", "password": totp_now("JBSWY3DPEHPK3PXP", 0)});
    let r = n.client().post(n.url("/api/v1/validate")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = n.client().post(n.url("/api/v1/validate")).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["result"], "accept");
    n.stop();
}

#[tokio::test]
async fn check_command_runs_the_full_decision() {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["user", "add", "hal", "--password-stdin"], "open the pod bay\n");
    n.ok(&["token", "add", "hal", "--secret", "JBSWY3DPEHPK3PXP"]);
    let out = n.ok(&["check", "hal", &format!("open the pod bay{}", totp_now("JBSWY3DPEHPK3PXP", 0))]);
    assert!(out.starts_with("accept"), "{out}");
    let out = n.fail(&["check", "hal", &format!("open the pod bax{}", totp_now("JBSWY3DPEHPK3PXP", 1))], &[], 1);
    assert!(out.contains("reject (wrong_password"), "{out}");
    let list = n.ok(&["user", "list", "--search", "h*"]);
    assert!(list.contains("hal") && list.contains("active"), "{list}");
}

#[tokio::test]
async fn sigterm_stops_gracefully() {
    let mut n = TestNode::new();
    n.start();
    let status = n.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn rest_challenge_then_code() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok_stdin(&["user", "add", "ivy", "--password-stdin"], "ivy's long password\n");
    n.ok(&["token", "add", "ivy", "--secret", "JBSWY3DPEHPK3PXP"]);
    n.start();
    let c = n.client();
    let url = n.url("/api/v1/validate");
    let first: Value = c
        .post(&url)
        .json(&json!({"username": "ivy", "password": "ivy's long password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["result"], "challenge", "{first}");
    assert_eq!(first["message"], "Enter your one-time code");
    let state = first["state"].as_str().unwrap().to_string();
    let second = json!({"username": "ivy", "password": totp_now("JBSWY3DPEHPK3PXP", 0), "state": state});
    let r: Value = c.post(&url).json(&second).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["result"], "accept");
    let r: Value = c.post(&url).json(&second).send().await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({"result": "reject", "reason": "access_denied"}), "a state works once");
    let garbage = json!({"username": "ivy", "password": "123456", "state": "not-a-state!"});
    let r: Value = c.post(&url).json(&garbage).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["result"], "reject");
    n.stop();
}
