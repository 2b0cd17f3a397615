//! Primary/replica replication (issue 5): a primary and two replicas on
//! loopback, each its own `tessera serve` process and data directory,
//! sharing the master key file.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::{TestNode, totp_now};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// A node with the primary's key file, initialised, not yet started.
fn node_with_key_of(primary: &TestNode) -> TestNode {
    let n = TestNode::new();
    std::fs::copy(primary.key_file(), n.key_file()).unwrap();
    super::support::chmod(&n.key_file(), 0o600);
    n.ok(&["init"]);
    n
}

/// Polls `f` every 50 ms until it is true, at most `limit`; the time it took.
async fn within<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn user_known(n: &TestNode, api_key: &str, name: &str) -> bool {
    n.client()
        .get(n.url(&format!("/api/v1/users/{name}")))
        .bearer_auth(api_key)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// Whether `name` is an active user (with a confirmed token) on `n`.
async fn active(n: &TestNode, name: &str) -> bool {
    n.fail_or_ok(&["user", "show", name, "--json"])
        .and_then(|o| serde_json::from_str::<Value>(&o).ok())
        .is_some_and(|v| v["user"]["status"] == "active")
}

#[tokio::test]
async fn primary_and_two_replicas_follow_refuse_writes_and_share_used_codes() {
    let mut p = TestNode::new();
    p.ok(&["init"]);
    let api_key = p.ok(&["api-key", "create", "ops"]).trim().to_string();
    p.start();
    let t: Value = serde_json::from_str(&p.ok(&["replica", "token", "--json"])).unwrap();
    let (token, pin) = (t["token"].as_str().unwrap().to_string(), t["pin"].as_str().unwrap().to_string());
    let primary_url = p.url("");

    // Bad peers are refused clearly, and nothing is copied.
    let mut r1 = node_with_key_of(&p);
    let out = r1.fail(&["replica", "join", &primary_url, "--token", "tsj_wrong", "--pin", &pin], &[], 1);
    assert!(out.contains("refused the join token"), "{out}");
    let wrong_pin = "00".repeat(32);
    let out = r1.fail(&["replica", "join", &primary_url, "--token", &token, "--pin", &wrong_pin], &[], 1);
    assert!(out.contains("cannot reach the primary"), "{out}");
    let stranger = TestNode::new();
    stranger.ok(&["init"]);
    let out = stranger.fail(&["replica", "join", &primary_url, "--token", &token, "--pin", &pin], &[], 1);
    assert!(out.contains("master key"), "{out}");

    let mut r2 = node_with_key_of(&p);
    for r in [&r1, &r2] {
        let out = r.ok(&["replica", "join", &primary_url, "--token", &token, "--pin", &pin]);
        assert!(out.starts_with("joined "), "{out}");
    }
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

    // Bad forwarded state is refused whole and changes nothing; a wrong
    // token is refused before anything is read.
    let before = status(&p)["user"].clone();
    let dave_id: i64 = before["id"].as_str().unwrap().parse().unwrap();
    let forward = |key: &str, body: Value| {
        p.client().post(p.url("/api/v1/replication/auth-state")).bearer_auth(key.to_string()).json(&body).send()
    };
    let bad = json!([{"user": dave_id, "token_state": "", "used_codes": [["zz", 1]], "failures": 3}]);
    assert_eq!(forward(&token, bad.clone()).await.unwrap().status(), 400);
    let bad_state = json!([{"user": dave_id, "token_state": "ff00", "used_codes": [], "failures": 3}]);
    assert_eq!(forward(&token, bad_state).await.unwrap().status(), 400);
    assert_eq!(forward("tsj_wrong", bad).await.unwrap().status(), 401);
    assert_eq!(status(&p)["user"], before, "refused input changed nothing");

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
/// replica; `replica promote` makes it writable; the old primary, still
/// believing it is the primary, is refused as stale; demoted, it catches up
/// and nothing the new primary acknowledged is lost.
#[tokio::test]
async fn failover_with_pam_radius_promote_fence_and_demote() {
    const HOTP: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    const RADIUS_SECRET: &str = "failover-secret";
    let mut p = TestNode::new();
    p.ok(&["init"]);
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
    let t: Value = serde_json::from_str(&p.ok(&["replica", "token", "--json"])).unwrap();
    let (token, pin) = (t["token"].as_str().unwrap().to_string(), t["pin"].as_str().unwrap().to_string());
    let p_url = p.url("");
    let mut r = node_with_key_of(&p);
    r.ok(&["replica", "join", &p_url, "--token", &token, "--pin", &pin]);
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
    let r_url = r.url("");

    // The old primary comes back believing it is the primary (epoch 1):
    // the new primary refuses to follow it.
    p.start();
    let out = r.fail(&["replica", "demote", "--primary", &p.url(""), "--token", &token, "--pin", &pin], &[], 1);
    assert!(out.contains("stale primary"), "{out}");
    p.stop();

    // Demoted (offline, before it serves again), it copies the new
    // primary's data: nothing the new primary acknowledged is lost.
    let r_pin = r.ok(&["replica", "token", "--json"]);
    let r_pin: Value = serde_json::from_str(&r_pin).unwrap();
    let out =
        p.ok(&["replica", "demote", "--primary", &r_url, "--token", &token, "--pin", r_pin["pin"].as_str().unwrap()]);
    assert!(out.contains("epoch 2"), "{out}");
    p.start();
    let s: Value = serde_json::from_str(&p.ok(&["replica", "status", "--json"])).unwrap();
    assert_eq!(s["role"], "replica");
    assert_eq!(s["epoch"], 2);
    assert!(
        p.ok(&["user", "list", "--json"]).contains("carol"),
        "carol, added on the new primary, reached the old one"
    );
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
    let mut p = TestNode::new();
    p.ok(&["init"]);
    let key = p.ok(&["api-key", "create", "watcher"]).trim().to_string();
    p.start_with(&[("TESSERA_REPLICATION_LOG_RETENTION_SECONDS", "2")]);
    let t: Value = serde_json::from_str(&p.ok(&["replica", "token", "--json"])).unwrap();
    let (token, pin) = (t["token"].as_str().unwrap(), t["pin"].as_str().unwrap());
    let mut r = node_with_key_of(&p);
    r.ok(&["replica", "join", &p.url(""), "--token", token, "--pin", pin]);
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

/// `replay_guard = "strict"`: the primary takes a code's step before the
/// replica accepts it, so the code is refused on the primary at once (not
/// within the replication lag), and the other way round; with the primary
/// gone, the replica decides alone after the timeout.
#[tokio::test]
async fn strict_replay_guard_claims_steps_at_the_primary() {
    let mut p = TestNode::new();
    p.ok(&["init"]);
    p.ok(&["user", "add", "erin"]);
    p.ok(&["token", "add", "erin", "--secret", SECRET, "--type", "hotp"]);
    p.start();
    let t: Value = serde_json::from_str(&p.ok(&["replica", "token", "--json"])).unwrap();
    let mut r = node_with_key_of(&p);
    r.ok(&[
        "replica",
        "join",
        &p.url(""),
        "--token",
        t["token"].as_str().unwrap(),
        "--pin",
        t["pin"].as_str().unwrap(),
    ]);
    r.start_with(&[("TESSERA_REPLICATION_REPLAY_GUARD", "strict"), ("TESSERA_REPLICATION_STRICT_TIMEOUT_MS", "300")]);
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
