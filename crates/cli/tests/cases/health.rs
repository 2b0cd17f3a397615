//! Truthful health (issue 13): a login whose token secret does not open
//! fails closed (REST 503 `unavailable`, no RADIUS answer, never counted,
//! audited, a metric, `/readyz` degraded), and in shared PostgreSQL mode a
//! node whose clock is off from the database server's says so (a gauge,
//! `/readyz` degraded) — tested with Debian's `faketime` running a node
//! 120 s in the future.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_core::keys::{Keyring, MasterKey, Purpose};
use tessera_core::random::OsRandom;
use tessera_store::postgres::testing;

use super::support::{TestNode, chmod, hotp_code, radclient_pap, require_tool};

const RADIUS_SECRET: &str = "health-test-radius-secret";
const BROKEN: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const FINE: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

async fn readyz(n: &TestNode) -> Value {
    n.get("/readyz").await.json().await.unwrap()
}

async fn metrics(n: &TestNode) -> String {
    n.get("/metrics").await.text().await.unwrap()
}

/// The value of one sample line (`name{labels} value`), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_does_not_open_fails_closed_and_is_never_counted() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "broken"]);
    n.ok(&["token", "add", "broken", "--secret", BROKEN, "--type", "hotp", "--serial", "BROKEN-1"]);
    n.ok(&["user", "add", "fine"]);
    n.ok(&["token", "add", "fine", "--secret", FINE, "--type", "hotp"]);
    let radius = require_tool("radclient");
    if radius {
        let f = n.cwd().join("radius.secret");
        std::fs::write(&f, RADIUS_SECRET).unwrap();
        n.ok(&["client", "add", "nas", "--address", "127.0.0.1", "--secret-file", f.to_str().unwrap()]);
    }
    n.start();

    // Seal broken's secret under a key this node does not have (what a
    // node missing a rotation's key sees), straight in the database.
    let db = n.data().join("tessera.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let (id, original): (i64, Vec<u8>) = conn
        .query_row("SELECT id, secret FROM tokens WHERE serial = 'BROKEN-1'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let stranger = Keyring::new(&MasterKey::generate(&OsRandom));
    let seed = tessera_otp::Secret::from_base32(BROKEN).unwrap();
    let foreign = stranger.seal(&OsRandom, Purpose::OtpSecret, &id.to_string(), seed.as_bytes());
    conn.execute("UPDATE tokens SET secret = ?1 WHERE id = ?2", rusqlite::params![foreign, id]).unwrap();
    let before = metrics(&n).await;
    let unreadable_before = sample(&before, "tessera_secrets_unreadable_total").unwrap();

    // Ten logins with the user's valid code: each 503 `unavailable`.
    let code = hotp_code(BROKEN, 0);
    for i in 0..10 {
        let (status, body) = n.try_validate("broken", &code).await;
        assert_eq!((status, &body["code"]), (503, &json!("unavailable")), "login {i}: {body}");
        assert!(!body.to_string().contains(BROKEN), "no secret in the answer");
    }
    // RADIUS: no answer at all, so the NAS fails over.
    let radius_tries = if radius { 3 } else { 0 };
    for _ in 0..radius_tries {
        let r = radclient_pap(&n.listening("radius"), RADIUS_SECRET, "broken", &code, "", 1);
        assert_eq!(r.code, None, "{}", r.output);
    }
    // Never counted, never locked; the audit says why.
    let show: Value = serde_json::from_str(&n.ok(&["user", "show", "broken", "--json"])).unwrap();
    let user = if show.get("user").is_some() { &show["user"] } else { &show };
    assert_eq!(user["failures"], 0, "{show}");
    assert_eq!(user["status"], "active", "{show}");
    let audit: Value = serde_json::from_str(
        &n.ok(&["audit", "list", "--action", "validate", "--target", "broken", "--limit", "100", "--json"]),
    )
    .unwrap();
    let unreadable = audit.as_array().unwrap().iter().filter(|r| r["reason"] == "secret_unreadable").count();
    assert_eq!(unreadable, 10 + radius_tries, "{audit}");
    assert!(!audit.to_string().contains(&hex::encode(&foreign)), "no sealed bytes in the audit");
    // Counted in the metric, and /readyz says degraded, naming secrets.
    let after = metrics(&n).await;
    assert_eq!(
        sample(&after, "tessera_secrets_unreadable_total").unwrap() - unreadable_before,
        (10 + radius_tries) as f64
    );
    let ready = readyz(&n).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(ready["reasons"][0].as_str().unwrap().starts_with("secrets:"), "{ready}");

    // Other users are unaffected; their login opens a secret, which ends
    // the degraded state until the broken token is tried again.
    assert_eq!(n.validate("fine", &hotp_code(FINE, 0)).await["result"], "accept");
    assert_eq!(readyz(&n).await["status"], "ok");
    assert_eq!(n.try_validate("broken", &code).await.0, 503);
    assert_eq!(readyz(&n).await["status"], "degraded");

    // The secret back: the same code is accepted (it was never consumed).
    // The server keeps users it saw in memory; a write from outside
    // tessera is noticed by its poll of `external_rev` (what every tessera
    // process bumps when it writes), within a tick: retried, bounded.
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn.execute("UPDATE tokens SET secret = ?1 WHERE id = ?2", rusqlite::params![original, id]).unwrap();
    conn.execute("UPDATE login_journal SET external_rev = external_rev + 1", []).unwrap();
    conn.execute_batch("COMMIT").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let (status, body) = n.try_validate("broken", &code).await;
        if status != 503 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((status, &body["result"]), (200, &json!("accept")), "{body}");
    assert_eq!(readyz(&n).await["status"], "ok");
    n.stop();
}

/// Shared PostgreSQL mode: node B runs 120 s in the future (faketime; its
/// monotonic clock untouched, so timers run normally). B measures the
/// offset against the database server's clock, exports it, and `/readyz`
/// says degraded naming the clock; node A, with the right clock, is ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_is_off_from_the_database_says_so() {
    let Some(cluster) = testing::shared() else { return };
    if !require_tool("faketime") {
        return;
    }
    let url = cluster.fresh_database_url().await;
    let node = |name: &str| {
        let mut n = TestNode::new();
        n.set_env("TESSERA_DATABASE_URL", &url);
        n.set_env("TESSERA_SERVER_NODE_NAME", name);
        n
    };
    let mut a = node("node-a");
    a.ok(&["init"]);
    let mut b = node("node-b");
    std::fs::copy(a.key_file(), b.key_file()).unwrap();
    chmod(&b.key_file(), 0o600);
    a.start();
    // `-m`: the thread-safe libfaketime (tokio runs several threads).
    b.start_wrapped(&["faketime", "-m", "-f", "+120s"], &[("FAKETIME_DONT_FAKE_MONOTONIC", "1")]);

    let offset = |text: &str| sample(text, "tessera_database_clock_offset_seconds");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut a_metrics, mut b_metrics) = (metrics(&a).await, metrics(&b).await);
    while (offset(&a_metrics).is_none() || offset(&b_metrics).is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (a_metrics, b_metrics) = (metrics(&a).await, metrics(&b).await);
    }
    let b_offset = offset(&b_metrics).expect("node B exports its clock offset");
    let a_offset = offset(&a_metrics).expect("node A exports its clock offset");
    eprintln!("clock offsets from the database: node A {a_offset:.3} s, node B (faketime +120 s) {b_offset:.3} s");
    assert!((115.0..125.0).contains(&b_offset), "faketime +120 s shows as {b_offset}");
    assert!(a_offset.abs() < 2.0, "{a_offset}");

    let ready = readyz(&b).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["node"], "node-b");
    let why = ready["reasons"].as_array().unwrap();
    assert!(
        why.iter().any(|r| r.as_str().unwrap().starts_with("clock:") && r.as_str().unwrap().contains("ahead")),
        "{ready}"
    );
    assert_eq!(readyz(&a).await, json!({"status": "ok", "node": "node-a"}));
    b.stop_wrapped();
    a.stop();
}
