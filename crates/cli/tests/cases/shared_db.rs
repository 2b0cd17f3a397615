//! Shared database mode end to end: `tessera serve` processes (each with
//! its own data directory, node name and copy of the master key) on one
//! real PostgreSQL, started by the store crate's harness on loopback.
//! Skipped with a message when PostgreSQL is not installed, unless
//! TESSERA_REQUIRE_TOOLS=1.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_store::postgres::testing::{self, TestCluster};

use super::support::{TestNode, on_database, radclient_pap, require_tool, totp_now};

const SECRET: &str = "shared-db-radius-secret";

/// A fresh database on the process's shared test PostgreSQL, as a URL.
async fn fresh_url() -> Option<String> {
    Some(testing::shared()?.fresh_database_url().await)
}

/// Node A runs `tessera init` (schema + master key); node B gets a copy of
/// the key file, as an operator would hand it over.
fn two_nodes(url: &str) -> (TestNode, TestNode) {
    let a = on_database(url, "node-a");
    let out = a.ok(&["init"]);
    assert!(out.contains("postgres://"), "{out}");
    let b = on_database(url, "node-b");
    std::fs::copy(a.key_file(), b.key_file()).unwrap();
    super::support::chmod(&b.key_file(), 0o600);
    (a, b)
}

fn radius_secret_file(n: &TestNode) -> String {
    let p = n.cwd().join("radius.secret");
    std::fs::write(&p, format!("{SECRET}\n")).unwrap();
    p.display().to_string()
}

fn add_radius_client(n: &TestNode, name: &str) {
    let f = radius_secret_file(n);
    n.ok(&["client", "add", name, "--address", "127.0.0.1", "--secret-file", &f]);
}

fn audit(n: &TestNode, target: &str) -> Vec<Value> {
    let out = n.ok(&["audit", "list", "--action", "validate", "--target", target, "--limit", "200", "--json"]);
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

#[tokio::test]
async fn a_code_accepted_on_one_node_is_a_replay_on_the_other() {
    let Some(url) = fresh_url().await else { return };
    let (mut a, mut b) = two_nodes(&url);
    // A second init, from either node, is refused and changes nothing.
    for n in [&a, &b] {
        let again = n.fail(&["init"], &[], 1);
        assert!(again.contains("already initialised"), "{again}");
    }
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    a.ok(&["user", "add", "alice"]);
    b.ok(&["token", "add", "alice", "--secret", secret]);
    let radius = require_tool("radclient");
    if radius {
        add_radius_client(&a, "loopback");
    }
    a.start();
    b.start();

    let code = totp_now(secret, 0);
    assert_eq!(a.validate("alice", &code).await["result"], "accept");
    assert_eq!(b.validate("alice", &code).await["result"], "reject");
    assert_eq!(a.validate("alice", &code).await["result"], "reject");
    if radius {
        let code = totp_now(secret, 1);
        let r = radclient_pap(&a.listening("radius"), SECRET, "alice", &code, "", 3);
        assert_eq!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
        let r = radclient_pap(&b.listening("radius"), SECRET, "alice", &code, "", 3);
        assert_eq!(r.code.as_deref(), Some("Access-Reject"), "{}", r.output);
    }
    // One audit log for the cluster: the replays are recorded by the node
    // that refused them, and both nodes' hash chains verify.
    let records = audit(&b, "alice");
    let replays: Vec<&Value> =
        records.iter().filter(|r| r["reason"].as_str().unwrap_or("").starts_with("replayed_code")).collect();
    assert_eq!(replays.len(), if radius { 3 } else { 2 }, "{records:?}");
    assert!(replays.iter().any(|r| r["node"] == "node-b") && replays.iter().any(|r| r["node"] == "node-a"));
    let verify = a.ok(&["audit", "verify"]);
    assert!(verify.contains("OK") && verify.contains("node-a") && verify.contains("node-b"), "{verify}");
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_wrong_attempts_on_two_nodes_lock_after_exactly_the_limit() {
    let Some(url) = fresh_url().await else { return };
    let (mut a, mut b) = two_nodes(&url);
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    a.ok(&["user", "add", "victim"]);
    a.ok(&["token", "add", "victim", "--secret", secret]);
    let limit = 5; // the default lockout_threshold
    a.start();
    b.start();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let n = if i % 2 == 0 { &a } else { &b };
        let (c, url) = (n.client(), n.url("/api/v1/validate"));
        tasks.push(tokio::spawn(async move {
            let body = json!({"username": "victim", "password": format!("{:06}", 100_000 + i)});
            c.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap()["result"], "reject");
    }
    let show: Value = serde_json::from_str(&b.ok(&["user", "show", "victim", "--json"])).unwrap();
    assert_eq!(show["user"]["status"], "locked");
    assert_eq!(show["user"]["failures"], limit);
    let records = audit(&a, "victim");
    assert_eq!(records.len(), 50);
    let counted = records.iter().filter(|r| r["reason"].as_str().unwrap().contains("failure")).count();
    let locked = records.iter().filter(|r| r["reason"] == "locked").count();
    assert_eq!((counted, locked), (limit as usize, 50 - limit as usize), "{records:?}");
    for node in ["node-a", "node-b"] {
        assert!(records.iter().any(|r| r["node"] == node), "no attempt recorded by {node}");
    }
    // The lock holds on both nodes: the correct code is refused.
    assert_eq!(a.validate("victim", &totp_now(secret, 0)).await["result"], "reject");
    assert_eq!(b.validate("victim", &totp_now(secret, 1)).await["result"], "reject");
    let show: Value = serde_json::from_str(&a.ok(&["user", "show", "victim", "--json"])).unwrap();
    assert_eq!(show["user"]["failures"], limit, "a locked user's refusals are not counted");
    a.stop();
    b.stop();
}

#[tokio::test]
async fn admin_changes_on_one_node_are_seen_by_the_other() {
    let Some(url) = fresh_url().await else { return };
    let (mut a, mut b) = two_nodes(&url);
    let secret = "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU";
    a.ok(&["user", "add", "carol"]);
    a.ok(&["token", "add", "carol", "--secret", secret]);
    let key = a.ok(&["api-key", "create", "ops"]).trim().to_string();
    a.start();
    b.start();

    // disabled through node A's admin API: node B refuses the user at once
    let r = a.client().post(a.url("/api/v1/users/carol/disable")).bearer_auth(&key).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(b.validate("carol", &totp_now(secret, 0)).await["result"], "reject");
    assert_eq!(audit(&b, "carol")[0]["reason"], "disabled");
    // the API key made on A works on B too; enabled there, A accepts
    let r = b.client().post(b.url("/api/v1/users/carol/enable")).bearer_auth(&key).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(a.validate("carol", &totp_now(secret, 1)).await["result"], "accept");

    // a RADIUS client added with A's CLI while both run: B answers it
    // within its 2 s reload (before that, its packets are dropped)
    if require_tool("radclient") {
        let addr = b.listening("radius");
        let r = radclient_pap(&addr, SECRET, "nobody", "000000", "", 1);
        assert_eq!(r.code, None, "unknown client must be dropped: {}", r.output);
        add_radius_client(&a, "late-nas");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = radclient_pap(&addr, SECRET, "nobody", "000000", "", 1);
            if r.code.as_deref() == Some("Access-Reject") {
                break;
            }
            assert!(Instant::now() < deadline, "node B never knew the new client: {}", r.output);
        }
    }
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fails_closed_while_postgresql_is_down_and_recovers_by_itself() {
    // A private server: this test stops it, which must not disturb the others.
    if testing::shared().is_none() {
        return;
    }
    let cluster = TestCluster::start().expect("a private PostgreSQL");
    let url = cluster.fresh_database_url().await;
    let (mut a, _) = two_nodes(&url);
    a.set_env("TESSERA_DATABASE_CONNECT_TIMEOUT_SECONDS", "2");
    let secret = "MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK";
    a.ok(&["user", "add", "dave"]);
    a.ok(&["token", "add", "dave", "--secret", secret]);
    let radius = require_tool("radclient");
    if radius {
        add_radius_client(&a, "loopback");
    }
    a.start();
    assert_eq!(a.validate("dave", &totp_now(secret, -1)).await["result"], "accept");

    cluster.hold();
    // While the database is down a valid, unused code is never accepted
    // (nor counted as a failure): REST answers 503, RADIUS does not answer.
    let code = totp_now(secret, 0);
    for _ in 0..3 {
        let (status, body) = a.try_validate("dave", &code).await;
        assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "{body}");
    }
    if radius {
        let r = radclient_pap(&a.listening("radius"), SECRET, "dave", &code, "", 2);
        assert_ne!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
    }
    assert_eq!(a.get("/readyz").await.status(), 503);
    assert!(a.is_running(), "the node must survive the database going away");

    cluster.resume();
    // Recovery needs nobody: the pool reconnects on the next request.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = a.try_validate("dave", &code).await;
        if status == 200 {
            // Not a reject: nothing of the outage consumed the code.
            assert_eq!(body["result"], "accept", "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "no recovery within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(a.validate("dave", &code).await["result"], "reject", "replay state survived the restart");
    assert_eq!(a.get("/readyz").await.status(), 200);
    let show: Value = serde_json::from_str(&a.ok(&["user", "show", "dave", "--json"])).unwrap();
    assert_eq!(show["user"]["failures"], 0, "nothing counted: not the outage, not the replay");
    a.stop();
}

#[tokio::test]
async fn wrong_key_unreachable_and_uninitialised_databases_are_clear_errors() {
    let Some(url) = fresh_url().await else { return };
    // not initialised: serve refuses (it never initialises a shared database itself)
    let fresh = on_database(&url, "node-a");
    let out = fresh.serve_expect_failure(&[]);
    assert!(out.contains("not initialised") && out.contains("tessera init"), "{out}");
    assert!(!fresh.key_file().exists(), "serve made no key");

    let (a, b) = two_nodes(&url);
    // another master key: a clear start-up error, nothing written
    let other = TestNode::new();
    other.ok(&["init"]); // a key of its own (embedded database, discarded)
    std::fs::copy(other.key_file(), b.key_file()).unwrap();
    let out = b.serve_expect_failure(&[]);
    assert!(out.contains("master key does not match"), "{out}");

    // unreachable (a closed port), with a password in the URL: refused
    // after the bounded wait, and the password appears nowhere
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("postgres://tessera:pw-do-not-print@127.0.0.1:{port}/tessera");
    let started = Instant::now();
    let out = a.serve_expect_failure(&[
        ("TESSERA_DATABASE_URL", &dead),
        ("TESSERA_DATABASE_STARTUP_WAIT_SECONDS", "2"),
        ("TESSERA_LOG", "info"),
    ]);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(out.contains("database unavailable") && out.contains("<redacted>"), "{out}");
    assert!(!out.contains("pw-do-not-print"), "{out}");
    let shown = a.ok_env(&["config", "show"], &[("TESSERA_DATABASE_URL", &dead)]);
    assert!(!shown.contains("pw-do-not-print") && shown.contains("tessera:<redacted>@"), "{shown}");
    let out = a.fail(&["user", "list"], &[("TESSERA_DATABASE_URL", &dead)], 1);
    assert!(!out.contains("pw-do-not-print") && out.contains("<redacted>"), "{out}");

    // the embedded database's file commands refuse with what to use instead
    let out = a.fail(&["backup", "create", "--out", "x.age", "--include", "database"], &[("P", "pass")], 2);
    assert!(out.contains("pg_dump"), "{out}");
}
