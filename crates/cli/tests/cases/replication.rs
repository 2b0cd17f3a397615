//! Primary/replica replication (issue 5): a primary and two replicas on
//! loopback, each its own `tessera serve` process and data directory,
//! sharing the master key file.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::cluster::{active as active_on, join as join_cluster, named, token, with_key_of, within};
use super::support::{TestNode, totp_now};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn active(n: &TestNode, name: &str) -> impl std::future::Future<Output = bool> {
    let a = active_on(n, name);
    async move { a }
}

async fn user_known(n: &TestNode, api_key: &str, name: &str) -> bool {
    n.client()
        .get(n.url(&format!("/api/v1/users/{name}")))
        .bearer_auth(api_key)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test]
async fn primary_and_two_replicas_follow_refuse_writes_and_share_used_codes() {
    let mut p = named("p");
    let api_key = p.ok(&["api-key", "create", "ops"]).trim().to_string();
    p.start();
    let (token1, pin) = token(&p);
    let primary_url = p.url("");

    // Bad peers are refused clearly, and nothing is copied.
    let mut r1 = with_key_of(&p, "r1");
    let out = r1.fail(&["replica", "join", &primary_url, "--token", "tsj_wrong", "--pin", &pin], &[], 1);
    assert!(out.contains("join token was refused"), "{out}");
    let wrong_pin = "00".repeat(32);
    let out = r1.fail(&["replica", "join", &primary_url, "--token", &token1, "--pin", &wrong_pin], &[], 1);
    assert!(out.contains("cannot reach"), "{out}");
    let stranger = named("stranger");
    let out = stranger.fail(&["replica", "join", &primary_url, "--token", &token1, "--pin", &pin], &[], 1);
    assert!(out.contains("master key"), "{out}");

    let mut r2 = with_key_of(&p, "r2");
    let out = r1.ok(&["replica", "join", &primary_url, "--token", &token1, "--pin", &pin]);
    assert!(out.starts_with("joined "), "{out}");
    join_cluster(&p, &r2);
    r1.start();
    r2.start();

    // A user added on the primary authenticates on each replica within 1 s.
    p.ok(&["user", "add", "alice"]);
    p.ok(&["token", "add", "alice", "--secret", SECRET]);
    for r in [&r1, &r2] {
        let took = within(Duration::from_secs(5), || user_known(r, &api_key, "alice")).await.expect("replicated");
        eprintln!("user visible on a replica after {took:?}");
        assert!(within(Duration::from_secs(5), || active(r, "alice")).await.is_some(), "token replicated");
        assert!(took < Duration::from_secs(2), "replication took {took:?}");
    }

    // Writes on a replica are refused, naming the primary (CLI and API).
    let out = r1.fail(&["user", "add", "bob"], &[], 1);
    assert!(out.contains("replica") && out.contains(&primary_url), "{out}");
    let r = r1
        .client()
        .post(r1.url("/api/v1/users"))
        .bearer_auth(&api_key)
        .json(&json!({"username": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "read_only_replica", "{body}");
    assert!(body["message"].as_str().unwrap().contains(&primary_url), "{body}");

    // A code used on a replica is refused on the primary and the other replica.
    let code = totp_now(SECRET, 0);
    assert_eq!(r1.validate("alice", &code).await["result"], "accept");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.validate("alice", &code).await["result"], "reject", "replayed on the primary");
    assert_eq!(r2.validate("alice", &code).await["result"], "reject", "replayed on another replica");

    // Failures on a replica count toward the lock on the primary, and the
    // lock reaches every replica: 3 wrong codes on r1 + 2 on the primary
    // lock dave at the default limit of 5.
    p.ok(&["user", "add", "dave"]);
    p.ok(&["token", "add", "dave", "--secret", SECRET]);
    let status = |n: &TestNode| -> Value { serde_json::from_str(&n.ok(&["user", "show", "dave", "--json"])).unwrap() };
    for r in [&r1, &r2] {
        assert!(within(Duration::from_secs(5), || active(r, "dave")).await.is_some(), "dave and his token replicated");
    }
    for _ in 0..3 {
        assert_eq!(r1.validate("dave", "000000").await["result"], "reject");
    }
    let counted = within(Duration::from_secs(5), || {
        let f = status(&p)["user"]["failures"].as_u64();
        async move { f == Some(3) }
    })
    .await;
    assert!(counted.is_some(), "replica failures counted on the primary: {}", status(&p));
    for _ in 0..2 {
        assert_eq!(p.validate("dave", "000000").await["result"], "reject");
    }
    assert_eq!(status(&p)["user"]["status"], "locked", "{}", status(&p));
    let locked = within(Duration::from_secs(5), || {
        let st = status(&r2)["user"]["status"].clone();
        async move { st == "locked" }
    })
    .await;
    assert!(locked.is_some(), "the lock reached the other replica: {}", status(&r2));
    assert_eq!(r2.validate("dave", &totp_now(SECRET, 0)).await["result"], "reject", "locked on every node");

    // Status shows the role, primary and position.
    let s: Value = serde_json::from_str(&r1.ok(&["replica", "status", "--json"])).unwrap();
    assert_eq!(s["role"], "replica");
    assert!(s["primary"].as_str().unwrap().starts_with("https://127.0.0.1:"));
    assert!(s["position"].as_i64().unwrap() > 0);
    let s: Value = serde_json::from_str(&p.ok(&["replica", "status", "--json"])).unwrap();
    assert_eq!(s["role"], "primary");
    assert_eq!(s["epoch"], 1);
    r1.stop();
    r2.stop();
    p.stop();
}

/// The reference failover scenario: pam_radius lists the primary and a
/// replica; the primary is SIGKILLed; logins keep working through the
/// replica; `replica promote` makes it writable; the old primary, restarted
/// as it was, finds the newer epoch, fences itself and follows the new
/// primary: nothing the new primary acknowledged is lost.
#[tokio::test]
async fn failover_with_pam_radius_promote_fence_and_demote() {
    const HOTP: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    const RADIUS_SECRET: &str = "failover-secret";
    let mut p = named("p");
    let secret_file = p.cwd().join("radius.secret");
    std::fs::write(&secret_file, RADIUS_SECRET).unwrap();
    let sf = secret_file.display().to_string();
    // Debian 12's pam_radius does not send Message-Authenticator.
    p.ok(&[
        "client",
        "add",
        "ssh-hosts",
        "--address",
        "127.0.0.1",
        "--secret-file",
        &sf,
        "--message-authenticator",
        "off",
    ]);
    p.ok_stdin(&["user", "add", "bob", "--password-stdin"], "bob-password\n");
    p.ok(&["token", "add", "bob", "--secret", HOTP, "--type", "hotp"]);
    p.start();
    let mut r = with_key_of(&p, "r");
    join_cluster(&p, &r);
    r.start();
    let servers = [
        format!("{} {RADIUS_SECRET} 2", p.listening("radius")),
        format!("{} {RADIUS_SECRET} 2", r.listening("radius")),
    ];
    let Some(pam) = super::support::PamRadius::new(&servers) else { return };
    let login =
        |counter: u64| pam.authenticate("bob", &format!("bob-password{}", super::support::hotp_code(HOTP, counter)));

    let (ok, out) = login(0);
    assert!(ok, "login through the primary: {out}");
    // The replica has the used counter before the primary dies.
    let used_on_r = within(Duration::from_secs(10), || {
        let counter = r
            .fail_or_ok(&["user", "show", "bob", "--json"])
            .and_then(|o| serde_json::from_str::<Value>(&o).ok())
            .and_then(|v| v["tokens"][0]["counter"].as_i64());
        async move { counter.is_some_and(|c| c >= 1) }
    })
    .await;
    assert!(used_on_r.is_some(), "the primary's login reached the replica");
    p.kill9();
    let (ok, out) = login(0);
    assert!(!ok, "a code used on the dead primary is refused by the replica: {out}");
    let (ok, out) = login(1);
    assert!(ok, "login through the replica after the primary died: {out}");
    let (ok, out) = login(1);
    assert!(!ok, "replay refused by the replica: {out}");
    let out = r.fail(&["user", "add", "carol"], &[], 1);
    assert!(out.contains("replica"), "{out}");

    // Promote: the replica takes writes, with a new epoch.
    let out = r.ok(&["replica", "promote"]);
    assert!(out.contains("epoch 2"), "{out}");
    r.ok(&["user", "add", "carol"]);
    r.ok(&["token", "add", "carol", "--secret", SECRET]);

    // The old primary comes back as it was (epoch 1, no demote): it finds
    // the newer epoch, takes no change, and follows the new primary.
    p.restart_same_ports();
    let out = p.fail(&["user", "add", "dave"], &[], 1);
    assert!(out.contains("replica") || out.contains("takes no change"), "{out}");
    let s: Value = serde_json::from_str(&p.ok(&["replica", "status", "--json"])).unwrap();
    assert_eq!(s["role"], "replica", "{s}");
    assert_eq!(s["epoch"], 2);
    let carol = within(Duration::from_secs(10), || {
        let known = p.ok(&["user", "list", "--json"]).contains("carol");
        async move { known }
    })
    .await;
    assert!(carol.is_some(), "carol, added on the new primary, reached the old one");
    assert_eq!(p.validate("carol", &totp_now(SECRET, 0)).await["result"], "accept");
    let replay = format!("bob-password{}", super::support::hotp_code(HOTP, 1));
    assert_eq!(p.validate("bob", &replay).await["result"], "reject", "a code used during the failover stays used");
    p.stop();
    r.stop();
}

/// A replica that was stopped catches up when it returns; one away past
/// the primary's log retention (a deletion it has not seen was forgotten)
/// takes a new snapshot by itself.
#[tokio::test]
async fn a_replica_away_catches_up_or_resnapshots_past_retention() {
    let mut p = named("p");
    let key = p.ok(&["api-key", "create", "watcher"]).trim().to_string();
    p.start_with(&[("TESSERA_REPLICATION_LOG_RETENTION_SECONDS", "2")]);
    let mut r = with_key_of(&p, "r");
    join_cluster(&p, &r);
    r.start();
    p.ok(&["user", "add", "u1"]);
    assert!(within(Duration::from_secs(5), || user_known(&r, &key, "u1")).await.is_some());

    // Away briefly: additions and changes are never forgotten.
    r.stop();
    p.ok(&["user", "add", "u2"]);
    r.start();
    assert!(within(Duration::from_secs(5), || user_known(&r, &key, "u2")).await.is_some(), "caught up");

    // Away past the retention: the deletion of u1 is forgotten on the
    // primary, so only a new snapshot can bring the replica right.
    r.stop();
    let position: Value = serde_json::from_str(&r.ok(&["replica", "status", "--json"])).unwrap();
    p.ok(&["user", "delete", "u1"]);
    p.ok(&["user", "add", "u3"]);
    let pruned = within(Duration::from_secs(10), || {
        let s: Value = serde_json::from_str(&p.ok(&["replica", "status", "--json"])).unwrap();
        let past = s["pruned_through"].as_i64().unwrap() > position["position"].as_i64().unwrap();
        async move { past }
    })
    .await;
    assert!(pruned.is_some(), "the primary forgot the deletion");
    r.start();
    assert!(within(Duration::from_secs(5), || user_known(&r, &key, "u3")).await.is_some(), "re-snapshotted");
    assert!(!user_known(&r, &key, "u1").await, "the deletion reached the replica through the snapshot");
    r.stop();
    p.stop();
}

/// Cluster-wide replay protection (the default): the primary takes a
/// code's step before the replica accepts it, so the code is refused on the
/// primary at once (not within the replication lag), and the other way
/// round; with the primary gone, the replica decides alone after the
/// timeout. `replay_guard = "local"` turns it off.
#[tokio::test]
async fn cluster_wide_replay_guard_claims_steps_at_the_primary() {
    let mut p = named("p");
    p.ok(&["user", "add", "erin"]);
    p.ok(&["token", "add", "erin", "--secret", SECRET, "--type", "hotp"]);
    p.start();
    let mut r = with_key_of(&p, "r");
    join_cluster(&p, &r);
    r.start_with(&[("TESSERA_REPLICATION_STRICT_TIMEOUT_MS", "300")]);
    let code = |n: u64| super::support::hotp_code(SECRET, n);

    // Used on the replica: refused on the primary immediately after.
    assert_eq!(r.validate("erin", &code(0)).await["result"], "accept");
    assert_eq!(p.validate("erin", &code(0)).await["result"], "reject", "the primary took the step synchronously");
    // Used on the primary: the replica asks before accepting, so it refuses
    // even before the change stream brings the new floor.
    assert_eq!(p.validate("erin", &code(1)).await["result"], "accept");
    assert_eq!(r.validate("erin", &code(1)).await["result"], "reject", "claimed at the primary first");
    // The primary is gone: the replica decides alone after the timeout.
    p.kill9();
    let started = Instant::now();
    assert_eq!(r.validate("erin", &code(2)).await["result"], "accept", "local decision without the primary");
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by the strict timeout: {:?}", started.elapsed());
    assert_eq!(r.validate("erin", &code(2)).await["result"], "reject", "and replay still refused locally");
    r.stop();
}
