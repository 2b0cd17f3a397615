//! Master key rotation across nodes (issue 13): the new key travels in the
//! database, sealed under the old one; every node takes it, rewrites its
//! own key file and reports; `tessera key rotate` waits for every live node
//! before re-sealing anything. And what goes wrong: a node that never
//! catches up, a sealed key that does not open or names another key, a
//! node that missed a finished rotation.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_core::keys::{Keyring, MasterKey, key_id_of};
use tessera_core::random::OsRandom;
use tessera_core::rotation::RotationMarker;
use tessera_store::postgres::testing;

use super::support::{TestNode, chmod, hotp_code, on_database};

fn secret(i: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..32).map(|j| alphabet[(i * 13 + j * 5 + j * j * 3) % 32] as char).collect()
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

/// Polls `f` every 200 ms for up to `within`; the last value.
async fn eventually<T>(within: Duration, mut f: impl FnMut() -> T, ok: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + within;
    loop {
        let v = f();
        if ok(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn users(n: &TestNode) -> Vec<Value> {
    serde_json::from_str::<Value>(&n.ok(&["user", "list", "--limit", "1000", "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `/readyz` polled (up to 5 s) until `want` holds; the last answer.
async fn readyz_until(n: &TestNode, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r: Value = n.get("/readyz").await.json().await.unwrap();
        if want(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A login every 20 ms for 30 s alternating between `a` and `b`, each a
/// fresh HOTP code (user i % users at counter i / users: with an odd user
/// count every user's logins alternate between the nodes too).
async fn logins_every_20ms(a: &TestNode, b: &TestNode, users: usize) -> Vec<(usize, u16, Value)> {
    let mut results: Vec<(usize, u16, Value)> = Vec::new();
    let began = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = 0usize;
    while began.elapsed() < Duration::from_secs(30) {
        tick.tick().await;
        let n = if i.is_multiple_of(2) { a } else { b };
        let (user, counter) = (i % users, (i / users) as u64);
        let (code, body) = n.try_validate(&format!("u{user}"), &hotp_code(&secret(user), counter)).await;
        results.push((i, code, body));
        i += 1;
    }
    results
}

/// `tessera key rotate` on `n`, started after `delay`: its output and how long it took.
async fn rotate_after(n: &TestNode, delay: Duration) -> (Output, Duration) {
    let cmd = n.cli(&["key", "rotate"]);
    tokio::time::sleep(delay).await;
    let began = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let mut c = cmd;
        c.output().unwrap()
    })
    .await
    .unwrap();
    (out, began.elapsed())
}

fn output_text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The acceptance of issue 13 for shared PostgreSQL mode: two nodes on one
/// database, each with its own copy of the key file in its own directory;
/// a login every 20 ms for 30 s alternating between them, with `tessera key
/// rotate` run on node A meanwhile. No login fails, both key files end with
/// the new key only, every value opens with it, nobody is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_on_shared_postgres_reaches_every_node_under_load() {
    let Some(cluster) = testing::shared() else { return };
    let url = cluster.fresh_database_url().await;
    const USERS: usize = 25;
    let mut a = on_database(&url, "node-a");
    a.ok(&["init"]);
    let mut b = on_database(&url, "node-b");
    std::fs::copy(a.key_file(), b.key_file()).unwrap();
    chmod(&b.key_file(), 0o600);
    for i in 0..USERS {
        a.ok(&["user", "add", &format!("u{i}")]);
        a.ok(&["token", "add", &format!("u{i}"), "--secret", &secret(i), "--type", "hotp"]);
    }
    let old_key = std::fs::read_to_string(a.key_file()).unwrap();
    let old_id = status(&a)["key_id"].as_str().unwrap().to_string();
    // A third node takes its key from TESSERA_MASTER_KEY (no key file): it
    // follows in memory and says the variable must change.
    let mut e = on_database(&url, "node-env");
    e.set_env("TESSERA_MASTER_KEY", old_key.trim());
    a.start();
    b.start();
    e.start();

    // A login every 20 ms for 30 s, alternating nodes; each a fresh HOTP
    // code (user i % 25 at counter i / 25: 25 is odd, so every user's
    // logins alternate between the nodes too).
    let load = logins_every_20ms(&a, &b, USERS);
    let rotate = rotate_after(&a, Duration::from_secs(3));
    let (results, (out, took)) = tokio::join!(load, rotate);
    let report = output_text(&out);
    assert!(out.status.success(), "key rotate: {report}");
    assert!(report.contains("rotated:"), "{report}");
    assert!(report.contains("nodes on key") && report.contains("node-a") && report.contains("node-b"), "{report}");
    let failed: Vec<&(usize, u16, Value)> =
        results.iter().filter(|(_, code, body)| *code != 200 || body["result"] != "accept").collect();
    eprintln!(
        "rotation under load (shared PostgreSQL): {} logins in 30 s, {} failed; `key rotate` took {:.1} s",
        results.len(),
        failed.len(),
        took.as_secs_f64()
    );
    assert!(failed.is_empty(), "{} failed logins, first: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(results.len() > 300, "too few logins: {}", results.len());

    // Both key files end holding only the new key (node B rewrote its own).
    let b_lines = eventually(Duration::from_secs(5), || key_lines(&b), |l| l.len() == 1).await;
    assert_eq!(b_lines.len(), 1, "{b_lines:?}");
    assert_eq!(key_lines(&a), b_lines);
    assert_ne!(std::fs::read_to_string(a.key_file()).unwrap(), old_key);
    for n in [&a, &b] {
        let st = status(n);
        let new_id = st["key_id"].as_str().unwrap().to_string();
        assert_ne!(new_id, old_id);
        assert_eq!(st["previous_key_ids"], json!([]));
        assert_eq!(st["unreadable"], 0, "{st}");
        assert_eq!(st["sealed_values"].as_object().unwrap().len(), 1, "{st}");
        assert_eq!(st["rotation"]["state"], "done");
        assert!(st["rotation"].get("next_key").is_none(), "the sealed key is gone at done: {st}");
        let nodes = st["nodes"].as_array().unwrap();
        for name in ["node-a", "node-b", "node-env"] {
            let r = nodes.iter().find(|r| r["node"] == name).unwrap_or_else(|| panic!("{name} in {st}"));
            assert_eq!(r["key_id"], new_id.as_str(), "{st}");
        }
    }
    // The environment node holds the new key alone, in memory, and wrote no file.
    let env_node = eventually(
        Duration::from_secs(5),
        || status(&a)["nodes"].as_array().unwrap().iter().find(|r| r["node"] == "node-env").unwrap().clone(),
        |r| r["previous"] == json!([]),
    )
    .await;
    assert_eq!(env_node["previous"], json!([]), "{env_node}");
    assert!(!e.key_file().exists());
    let (code, body) = e.try_validate("u1", &hotp_code(&secret(1), (results.len() / USERS + 2) as u64)).await;
    assert_eq!((code, &body["result"]), (200, &json!("accept")), "{body}");
    e.stop();
    // Nobody locked, no failure counted.
    for u in users(&a) {
        assert_eq!(u["failures"], 0, "{u}");
        assert_ne!(u["status"], "locked", "{u}");
    }
    let audit = a.ok(&["audit", "list", "--action", "key.rotate"]);
    assert!(audit.contains("started") && audit.contains("finished"), "{audit}");

    // Both nodes restart on their own key files.
    b.stop();
    b.start();
    let n = results.len();
    let (code, body) = b.try_validate("u0", &hotp_code(&secret(0), (n / USERS + 1) as u64)).await;
    assert_eq!((code, &body["result"]), (200, &json!("accept")), "{body}");

    // A node that was away for the whole rotation, with only the old key:
    // a clear start-up error naming both keys and what to do.
    let c = on_database(&url, "node-c");
    std::fs::write(c.key_file(), &old_key).unwrap();
    chmod(&c.key_file(), 0o600);
    let new_id = status(&a)["key_id"].as_str().unwrap().to_string();
    let refused = c.serve_expect_failure(&[]);
    assert!(
        refused.contains(&old_id) && refused.contains(&new_id) && refused.contains("Copy the key file"),
        "{refused}"
    );
    a.stop();
    b.stop();
}

/// A node that reported recently but never loads the new key stops the
/// rotation before anything is re-sealed, named; the rotation stays
/// running (every node opens both keys) and finishes once that node has
/// been silent for two minutes. (Shared database: the nodes' reports are
/// the cluster's; on the embedded database only the node's own is seen.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_catches_up_stops_the_rotation_by_name() {
    let Some(cluster) = testing::shared() else { return };
    let url = cluster.fresh_database_url().await;
    let mut n = on_database(&url, "node-a");
    n.ok(&["init"]);
    for i in 0..3 {
        n.ok(&["user", "add", &format!("u{i}")]);
        n.ok(&["token", "add", &format!("u{i}"), "--secret", &secret(i), "--type", "hotp"]);
    }
    let old_id = status(&n)["key_id"].as_str().unwrap().to_string();
    n.start();
    // The ghost's report goes in through the store, with the cluster's key.
    let (key, previous) = MasterKey::parse_file(&std::fs::read_to_string(n.key_file()).unwrap()).unwrap();
    let keys = Keyring::with_previous(&key, &previous);
    let opts = tessera_store::PgOptions::from_url(&url).unwrap();
    #[allow(clippy::disallowed_methods)]
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let store = tessera_store::PgStore::open(&opts, &keys, tessera_core::clock::Timestamp(now_ms())).await.unwrap();
    let ghost = |at_ms: i64| {
        let report = json!({"key_id": old_id, "previous": [], "at": at_ms});
        let store = &store;
        async move {
            use tessera_core::store::{KeyStore, MetaKey};
            store.set_meta_value(MetaKey::NodeKey("ghost"), Some(serde_json::to_vec(&report).unwrap()), None).await
        }
    };
    ghost(now_ms()).await.unwrap();

    let out = n.fail(&["key", "rotate", "--wait-seconds", "3"], &[], 1);
    assert!(out.contains("ghost") && out.contains(&old_id) && out.contains("Nothing was re-sealed"), "{out}");
    // Running, both keys everywhere, logins fine; the live server is on the new key.
    let mid = status(&n);
    assert_eq!(mid["rotation"]["state"], "running");
    assert!(mid["rotation"].get("next_key").is_none(), "never shown: {mid}");
    assert_eq!(mid["sealed_values"].as_object().unwrap().len(), 1, "nothing re-sealed: {mid}");
    assert_eq!(key_lines(&n).len(), 2);
    let new_id = mid["key_id"].as_str().unwrap().to_string();
    let server = mid["nodes"].as_array().unwrap().iter().find(|r| r["node"] == "node-a").unwrap().clone();
    assert_eq!(server["key_id"], new_id.as_str(), "{mid}");
    assert_eq!(server["previous"], json!([old_id]), "{mid}");
    assert_eq!(n.validate("u0", &hotp_code(&secret(0), 0)).await["result"], "accept");

    // The ghost's last word is now three minutes old: it no longer counts.
    ghost(now_ms() - 180_000).await.unwrap();
    let done = n.ok(&["key", "rotate", "--wait-seconds", "5"]);
    assert!(done.contains("resuming the rotation") && done.contains("rotated:"), "{done}");
    assert_eq!(key_lines(&n).len(), 1);
    let after = status(&n);
    assert_eq!(after["key_id"], new_id.as_str());
    assert_eq!(after["unreadable"], 0);
    let server = eventually(
        Duration::from_secs(5),
        || status(&n)["nodes"].as_array().unwrap().iter().find(|r| r["node"] == "node-a").unwrap().clone(),
        |r| r["previous"] == json!([]),
    )
    .await;
    assert_eq!(server["previous"], json!([]), "the server dropped the old key");
    assert_eq!(n.validate("u1", &hotp_code(&secret(1), 0)).await["result"], "accept");
    n.stop();
}

/// A rotation marker whose sealed key does not open (sealed under a key
/// this node lacks), or names another key than the one sealed in it: the
/// node keeps its key, keeps answering, says so in `/readyz`, and `key
/// rotate` refuses to build on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_with_a_key_that_does_not_open_or_does_not_match_is_refused() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "u0"]);
    n.ok(&["token", "add", "u0", "--secret", &secret(0), "--type", "hotp"]);
    let key_text = std::fs::read_to_string(n.key_file()).unwrap();
    let (old, _) = MasterKey::parse_file(&key_text).unwrap();
    let old_ring = Keyring::new(&old);
    n.start();
    let db = n.data().join("tessera.db");
    let put_marker = |m: Option<&RotationMarker>| {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        match m {
            Some(m) => {
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('key_rotation', ?1)", [m.to_bytes()])
            }
            None => c.execute("DELETE FROM meta WHERE key = 'key_rotation'", []),
        }
        .unwrap();
    };
    let next = MasterKey::generate(&OsRandom);
    let stranger = Keyring::new(&MasterKey::generate(&OsRandom));
    #[allow(clippy::disallowed_methods)]
    let now = tessera_core::clock::Timestamp(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
    );
    // 1. `to` names another key than the one sealed inside.
    let mut renamed = RotationMarker::running(&old_ring, &OsRandom, &next, now);
    renamed.to = key_id_of(&MasterKey::generate(&OsRandom));
    // 2. The new key sealed under a key this node does not hold.
    let mut foreign = RotationMarker::running(&old_ring, &OsRandom, &next, now);
    foreign.next_key = Some(stranger.seal_master_key(&OsRandom, &next));
    let mut counter = 0u64;
    for bad in [&renamed, &foreign] {
        put_marker(Some(bad));
        let ready = readyz_until(&n, |r| r["reasons"].to_string().contains(&bad.to)).await;
        assert_eq!(ready["status"], "degraded", "{ready}");
        let why = ready["reasons"].to_string();
        assert!(why.contains("cannot take the new key") && why.contains(&bad.to), "{why}");
        // Still on the old key, still answering, key file untouched.
        assert_eq!(n.validate("u0", &hotp_code(&secret(0), counter)).await["result"], "accept");
        counter += 1;
        assert_eq!(std::fs::read_to_string(n.key_file()).unwrap(), key_text);
        let st = status(&n);
        assert_eq!(st["key_id"], old_ring.key_id().as_str());
        let refused = n.fail(&["key", "rotate", "--wait-seconds", "0"], &[], 1);
        assert!(refused.contains("cannot take the new key") || refused.contains("does not open"), "{refused}");
        assert_eq!(std::fs::read_to_string(n.key_file()).unwrap(), key_text, "nothing written on refusal");
    }
    // Gone again: the node is no longer degraded, and a real rotation works.
    put_marker(None);
    let ready = readyz_until(&n, |r| r["status"] == "ok").await;
    assert_eq!(ready["status"], "ok", "{ready}");
    let out = n.ok(&["key", "rotate", "--wait-seconds", "5"]);
    assert!(out.contains("rotated:"), "{out}");
    assert_eq!(n.validate("u0", &hotp_code(&secret(0), counter)).await["result"], "accept");
    n.stop();
}

/// The same acceptance in primary/replica mode: the primary rotates while
/// a login every 20 ms for 30 s alternates between it and a replica. The
/// new key reaches the replica in the change stream (sealed under the old
/// one), the replica rewrites its own key file and reports its key at its
/// check-ins, and the rotation waits for it. No login fails; both key
/// files end with the new key only; the replica, restarted, still follows
/// (its own cluster identity was re-sealed too).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_on_primary_and_replica_reaches_every_node_under_load() {
    use super::support::cluster;
    const USERS: usize = 25;
    let mut a = cluster::named("primary");
    for i in 0..USERS {
        a.ok(&["user", "add", &format!("u{i}")]);
        a.ok(&["token", "add", &format!("u{i}"), "--secret", &secret(i), "--type", "hotp"]);
    }
    let old_key = std::fs::read_to_string(a.key_file()).unwrap();
    let old_id = status(&a)["key_id"].as_str().unwrap().to_string();
    a.start();
    let mut b = cluster::with_key_of(&a, "replica");
    cluster::join(&a, &b);
    b.start();
    let replicated = cluster::within(Duration::from_secs(10), || {
        let ok = cluster::active(&b, &format!("u{}", USERS - 1));
        async move { ok }
    })
    .await;
    assert!(replicated.is_some(), "the users reached the replica");
    // The primary has heard from the replica (its key report arrives at check-ins).
    let reported = eventually(
        Duration::from_secs(10),
        || status(&a)["nodes"].as_array().unwrap().iter().any(|r| r["node"] == "replica"),
        |seen| *seen,
    )
    .await;
    assert!(reported, "the replica's key report reached the primary: {}", status(&a));

    let load = logins_every_20ms(&a, &b, USERS);
    let rotate = rotate_after(&a, Duration::from_secs(3));
    let (results, (out, took)) = tokio::join!(load, rotate);
    let report = output_text(&out);
    assert!(out.status.success(), "key rotate: {report}");
    assert!(report.contains("replica"), "the rotation waited for the replica: {report}");
    let failed: Vec<&(usize, u16, Value)> =
        results.iter().filter(|(_, code, body)| *code != 200 || body["result"] != "accept").collect();
    eprintln!(
        "rotation under load (primary/replica): {} logins in 30 s, {} failed; `key rotate` took {:.1} s",
        results.len(),
        failed.len(),
        took.as_secs_f64()
    );
    if !failed.is_empty() {
        eprintln!("replica audit:\n{}", b.ok(&["audit", "list", "--result", "reject", "--limit", "20"]));
        eprintln!("primary audit:\n{}", a.ok(&["audit", "list", "--result", "reject", "--limit", "20"]));
    }
    assert!(failed.is_empty(), "{} failed logins, first: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(results.len() > 300, "too few logins: {}", results.len());

    // Both key files end holding only the new key.
    let b_lines = eventually(Duration::from_secs(10), || key_lines(&b), |l| l.len() == 1).await;
    assert_eq!(b_lines.len(), 1, "{b_lines:?}");
    assert_eq!(key_lines(&a), b_lines);
    assert_ne!(std::fs::read_to_string(a.key_file()).unwrap(), old_key);
    for n in [&a, &b] {
        let st = eventually(Duration::from_secs(10), || status(n), |st| st["unreadable"] == 0).await;
        assert_ne!(st["key_id"], old_id.as_str(), "{st}");
        assert_eq!(st["unreadable"], 0, "every value opens with the new key alone: {st}");
    }
    for u in users(&a) {
        assert_eq!(u["failures"], 0, "{u}");
        assert_ne!(u["status"], "locked", "{u}");
    }
    // Restarted on its new key file alone, the replica still follows.
    b.stop();
    b.start();
    let n = results.len();
    let (code, body) = b.try_validate("u0", &hotp_code(&secret(0), (n / USERS + 1) as u64)).await;
    assert_eq!((code, &body["result"]), (200, &json!("accept")), "{body}");
    let following = cluster::within(Duration::from_secs(10), || {
        let s = cluster::status(&b);
        async move { s["following"] == true }
    })
    .await;
    assert!(following.is_some(), "{}", cluster::status(&b));
    b.stop();
    a.stop();
}
