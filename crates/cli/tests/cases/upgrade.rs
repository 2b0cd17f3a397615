//! Rolling upgrades (issue 19): the previous release's binary (built once
//! by `scripts/prev-release.sh` from the commit in
//! `scripts/prev-release.commit`) and this build in one cluster, with logins
//! every 20 ms on every node through the whole upgrade.
//!
//! Primary/replica: old primary + new replica, then new primary + old
//! replica, then both new. Shared PostgreSQL: old + new nodes on one
//! database the new one migrated. Each time: 0 failed logins (a login whose
//! node is restarting goes to the other node, as a NAS listing two servers
//! does), 0 codes accepted twice, and admin changes made during the upgrade
//! on every node at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::cluster::{join as join_cluster, status, with_key_of, within};
use super::support::{BIN, TestNode, hotp_code, on_database};

/// HOTP secrets (base32) of the load's users.
const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
/// Users per node's load (each user's codes are used in order).
const USERS_PER_NODE: usize = 12;
const TICK: Duration = Duration::from_millis(20);

/// The previous release's binary, or `None` (skipped with a message) when
/// it has not been built; with TESSERA_REQUIRE_TOOLS=1 its absence fails.
fn previous_release() -> Option<PathBuf> {
    let commit = include_str!("../../../../scripts/prev-release.commit").trim();
    let target = std::path::Path::new(BIN).parent()?.parent()?;
    let bin = target.join("prev-release").join(commit).join("tessera");
    if bin.exists() {
        return Some(bin);
    }
    // scripts/test.sh found the commit missing from a shallow clone and said so.
    if std::env::var("TESSERA_PREV_RELEASE_MISSING").as_deref() == Ok("1") {
        eprintln!("SKIPPED: the previous release's commit is not in this clone (see scripts/prev-release.sh)");
        return None;
    }
    assert!(
        std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "the previous release's binary is missing ({}): run scripts/prev-release.sh",
        bin.display()
    );
    eprintln!("skipping: the previous release's binary is missing; run scripts/prev-release.sh");
    None
}

fn version_of(bin: &std::path::Path) -> String {
    let out = std::process::Command::new(bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One load: a NAS sending a login every 20 ms to its home node, falling
/// back to the other nodes when the home node does not answer.
struct Load {
    stop: Arc<AtomicBool>,
    /// When set, every 5th accepted code is sent again at once to another
    /// node, which must refuse it (set while every node is up and following).
    replay_now: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<LoadReport>,
}

#[derive(Debug, Default)]
struct LoadReport {
    accepted: u64,
    /// Logins no node accepted (with why, for the failure message).
    failed: Vec<String>,
    /// Codes accepted a second time on another node.
    accepted_twice: Vec<String>,
    replays_refused: u64,
    /// Per user: the last accepted counter.
    last_counter: Vec<(String, u64)>,
    by_node: Vec<u64>,
}

async fn validate(client: &reqwest::Client, url: &str, user: &str, code: &str) -> Result<String, String> {
    let r = client
        .post(format!("{url}/api/v1/validate"))
        .json(&json!({"username": user, "password": code}))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err(format!("{url}: {status} {body}"));
    }
    Ok(body["result"].as_str().unwrap_or("?").to_string())
}

impl Load {
    /// `urls[home]` first, then the others; users `prefix-0..` with HOTP.
    fn start(client: reqwest::Client, urls: Vec<String>, home: usize, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let replay_now = Arc::new(AtomicBool::new(false));
        let (s, r) = (stop.clone(), replay_now.clone());
        let users: Vec<String> = (0..USERS_PER_NODE).map(|i| format!("{prefix}-{i}")).collect();
        let task = tokio::spawn(async move {
            let mut report = LoadReport { by_node: vec![0; urls.len()], ..Default::default() };
            let mut counters = vec![0u64; users.len()];
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let started = Instant::now();
            let mut n = 0usize;
            // Bounded: the test stops it; 10 minutes at most regardless.
            while !s.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600) {
                tick.tick().await;
                let i = n % users.len();
                n += 1;
                let code = hotp_code(SECRET, counters[i]);
                let order: Vec<usize> = std::iter::once(home).chain((0..urls.len()).filter(|&k| k != home)).collect();
                let mut why = Vec::new();
                let mut accepted_on = None;
                for &k in &order {
                    match validate(&client, &urls[k], &users[i], &code).await {
                        Ok(result) if result == "accept" => {
                            accepted_on = Some(k);
                            break;
                        }
                        // A fresh code refused is a failed login: no retry elsewhere.
                        Ok(result) => {
                            why.push(format!("{}: {result}", urls[k]));
                            break;
                        }
                        Err(e) => why.push(e),
                    }
                }
                let Some(k) = accepted_on else {
                    report.failed.push(format!("{} counter {}: {}", users[i], counters[i], why.join("; ")));
                    counters[i] += 1;
                    continue;
                };
                report.accepted += 1;
                report.by_node[k] += 1;
                if r.load(Ordering::Relaxed) && n.is_multiple_of(5) {
                    let other = (k + 1) % urls.len();
                    match validate(&client, &urls[other], &users[i], &code).await {
                        Ok(result) if result == "accept" => report
                            .accepted_twice
                            .push(format!("{} counter {} on {} and {}", users[i], counters[i], urls[k], urls[other])),
                        Ok(_) => report.replays_refused += 1,
                        Err(_) => {}
                    }
                }
                counters[i] += 1;
            }
            report.last_counter =
                users.iter().zip(&counters).filter(|(_, c)| **c > 0).map(|(u, c)| (u.clone(), c - 1)).collect();
            report
        });
        Load { stop, replay_now, task }
    }

    async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// One HTTPS client trusting every node's certificate.
fn client_for(nodes: &[&TestNode]) -> reqwest::Client {
    let certs = nodes
        .iter()
        .map(|n| reqwest::Certificate::from_pem(&std::fs::read(n.data().join("tls/cert.pem")).unwrap()).unwrap());
    reqwest::Client::builder().tls_certs_only(certs).build().unwrap()
}

/// The load moves each user's HOTP counter ~4 times a second, far faster
/// than a person pressing a token's button; a node coming back from a
/// restart decides on its own (older) data until it has caught up, so the
/// look-ahead is widened to the policy's maximum to recognise codes used
/// elsewhere during a restart of up to ~25 s.
fn widen_hotp_window(n: &TestNode) {
    n.ok(&["policy", "set", "hotp_look_ahead=100"]);
}

fn add_load_users(n: &TestNode, prefix: &str) {
    for i in 0..USERS_PER_NODE {
        let name = format!("{prefix}-{i}");
        n.ok(&["user", "add", &name]);
        n.ok(&["token", "add", &name, "--type", "hotp", "--secret", SECRET]);
    }
}

/// Restarts `n` on its ports with `binary` (the previous release or, with
/// `None`, this build): SIGTERM, then start.
fn restart_with(n: &mut TestNode, binary: Option<&std::path::Path>) {
    n.stop();
    n.set_binary(binary);
    n.restart_same_ports();
}

async fn following(n: &TestNode) -> bool {
    let s = status(n);
    s["following"] == true && s["journalled_logins"] == 0
}

/// After the load: no login failed, none accepted twice, and the last code
/// each user used is refused by every node (so every earlier one is too:
/// HOTP codes only move forward).
async fn check_load(client: &reqwest::Client, urls: &[String], reports: Vec<LoadReport>) {
    let mut total = 0;
    for r in &reports {
        eprintln!(
            "load: {} accepted (per node {:?}), {} failed, {} replays refused, {} accepted twice",
            r.accepted,
            r.by_node,
            r.failed.len(),
            r.replays_refused,
            r.accepted_twice.len()
        );
        assert!(r.failed.is_empty(), "failed logins: {:?}", r.failed);
        assert!(r.accepted_twice.is_empty(), "codes accepted twice: {:?}", r.accepted_twice);
        total += r.accepted;
    }
    assert!(total > 200, "the load ran ({total} logins)");
    assert!(reports.iter().map(|r| r.replays_refused).sum::<u64>() > 0, "replays were tried");
    for r in &reports {
        for (user, counter) in &r.last_counter {
            let code = hotp_code(SECRET, *counter);
            for url in urls {
                let result = validate(client, url, user, &code).await.unwrap();
                assert_eq!(result, "reject", "{user}'s last code (counter {counter}) replayed on {url}");
            }
        }
    }
}

fn user_on(n: &TestNode, name: &str) -> bool {
    n.fail_or_ok(&["user", "show", name, "--json"]).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replicated_cluster_is_upgraded_one_node_at_a_time() {
    let Some(old) = previous_release() else { return };
    let (old_version, new_version) = (version_of(&old), version_of(std::path::Path::new(BIN)));
    eprintln!("upgrading from {old_version} to {new_version}");

    // The cluster as the previous release made it: a primary and a replica.
    let mut a = TestNode::new();
    a.set_binary(Some(&old));
    a.set_env("TESSERA_SERVER_NODE_NAME", "a");
    a.ok(&["init"]);
    widen_hotp_window(&a);
    a.start();
    let mut b = with_key_of(&a, "b");
    b.set_binary(Some(&old));
    join_cluster(&a, &b);
    b.start();
    add_load_users(&a, "la");
    add_load_users(&a, "lb");
    let settled = within(Duration::from_secs(15), || following(&b)).await;
    assert!(settled.is_some(), "the old replica follows: {}", status(&b));
    assert!(within(Duration::from_secs(10), || async { user_on(&b, "lb-5") }).await.is_some());

    let client = client_for(&[&a, &b]);
    let urls = vec![a.url(""), b.url("")];
    let load_a = Load::start(client.clone(), urls.clone(), 0, "la");
    let load_b = Load::start(client.clone(), urls.clone(), 1, "lb");
    let replay = |on: bool| {
        load_a.replay_now.store(on, Ordering::Relaxed);
        load_b.replay_now.store(on, Ordering::Relaxed);
    };
    replay(true);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. The replica first: old primary + new replica.
    replay(false);
    restart_with(&mut b, None);
    assert!(within(Duration::from_secs(20), || following(&b)).await.is_some(), "new replica follows: {}", status(&b));
    replay(true);
    a.ok(&["user", "add", "written-old-primary"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nodes: Value = serde_json::from_str(&a.ok(&["replica", "nodes", "--json"])).unwrap();
    let b_row = nodes.as_array().unwrap().iter().find(|n| n["name"] == "b").cloned().unwrap_or_default();
    assert!(b_row["version"].as_str().is_some_and(|v| v.starts_with(env!("CARGO_PKG_VERSION"))), "{nodes}");
    let st: Value = serde_json::from_str(&b.ok(&["status", "--json"])).unwrap();
    assert!(st["version"].as_str().unwrap().starts_with(env!("CARGO_PKG_VERSION")), "{st}");

    // 2. Move the primary to the upgraded node: stop a, promote b, start
    //    a again on the old release: it fences itself and follows b.
    replay(false);
    a.stop();
    b.ok(&["replica", "promote"]);
    a.restart_same_ports();
    let a_follows = within(Duration::from_secs(30), || async {
        let s = status(&a);
        s["role"] == "replica" && s["following"] == true
    })
    .await;
    assert!(a_follows.is_some(), "the old node follows the new primary: {}", status(&a));
    assert!(within(Duration::from_secs(15), || following(&a)).await.is_some(), "{}", status(&a));
    replay(true);
    // new primary + old replica
    b.ok(&["user", "add", "written-new-primary"]);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 3. The last node: both new.
    replay(false);
    restart_with(&mut a, None);
    assert!(within(Duration::from_secs(20), || following(&a)).await.is_some(), "{}", status(&a));
    replay(true);
    b.ok(&["user", "add", "written-after"]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let reports = vec![load_a.finish().await, load_b.finish().await];
    assert!(within(Duration::from_secs(10), || following(&a)).await.is_some(), "{}", status(&a));
    check_load(&client, &urls, reports).await;
    for name in ["written-old-primary", "written-new-primary", "written-after"] {
        let seen = within(Duration::from_secs(10), || async { user_on(&a, name) && user_on(&b, name) }).await;
        assert!(seen.is_some(), "{name} is on every node");
    }
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_postgres_nodes_are_upgraded_one_at_a_time() {
    let Some(old) = previous_release() else { return };
    let Some(cluster) = tessera_store::postgres::testing::shared() else { return };
    let url = cluster.fresh_database_url().await;
    let mut x = on_database(&url, "node-x");
    x.set_binary(Some(&old));
    x.ok(&["init"]);
    widen_hotp_window(&x);
    let mut y = on_database(&url, "node-y");
    y.set_binary(Some(&old));
    std::fs::copy(x.key_file(), y.key_file()).unwrap();
    super::support::chmod(&y.key_file(), 0o600);
    add_load_users(&x, "px");
    add_load_users(&x, "py");
    x.start();
    y.start();
    let client = client_for(&[&x, &y]);
    let urls = vec![x.url(""), y.url("")];
    let load_x = Load::start(client.clone(), urls.clone(), 0, "px");
    let load_y = Load::start(client.clone(), urls.clone(), 1, "py");
    load_x.replay_now.store(true, Ordering::Relaxed);
    load_y.replay_now.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // y first: at start it migrates the shared database while x (old) serves.
    restart_with(&mut y, None);
    x.ok(&["user", "add", "written-by-old"]);
    y.ok(&["user", "add", "written-by-new"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The old node's commands still open the migrated database.
    assert!(user_on(&x, "written-by-new"));
    let st: Value = serde_json::from_str(&y.ok(&["status", "--json"])).unwrap();
    let versions: Vec<String> =
        st["nodes"].as_array().unwrap().iter().map(|n| n["version"].as_str().unwrap_or("").to_string()).collect();
    eprintln!("nodes' versions: {versions:?}");
    assert!(versions.iter().any(|v| v.starts_with(env!("CARGO_PKG_VERSION"))), "{st}");

    restart_with(&mut x, None);
    y.ok(&["user", "add", "written-after"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports = vec![load_x.finish().await, load_y.finish().await];
    check_load(&client, &urls, reports).await;
    for name in ["written-by-old", "written-by-new", "written-after"] {
        assert!(user_on(&x, name) && user_on(&y, name), "{name} is on every node");
    }
    x.stop();
    y.stop();
}

/// The pinned commit is another release than this build.
#[test]
fn the_previous_release_reports_its_version() {
    let Some(old) = previous_release() else { return };
    let v = version_of(&old);
    assert!(v.starts_with("tessera "), "{v}");
    assert_ne!(v, version_of(std::path::Path::new(BIN)), "the previous release is another version");
}

/// Every table, index and trigger, and the recorded migrations: what an
/// upgrade could have changed.
fn schema_dump(db: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut out: Vec<String> = c
        .prepare("SELECT type || ' ' || name || ' ' || COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    out.extend(
        c.prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get::<_, i64>(0).map(|v| v.to_string()))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
    );
    out
}

/// The upgrade's migration fails half-way (here: the 4th of its 5 column
/// additions collides with a column an operator's script added by hand):
/// the new release refuses to start and says the database is unchanged,
/// the database is exactly as before, and the previous release serves on
/// it as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_failing_half_way_leaves_the_database_to_the_previous_release() {
    let Some(old) = previous_release() else { return };
    let mut n = TestNode::new();
    n.set_binary(Some(&old));
    n.ok(&["init"]);
    n.ok(&["user", "add", "carol"]);
    n.ok(&["token", "add", "carol", "--type", "hotp", "--secret", SECRET]);
    let db = n.data().join("tessera.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("ALTER TABLE radius_clients ADD COLUMN secret_changed_at TEXT")
        .unwrap();
    let before = schema_dump(&db);

    n.set_binary(None);
    let out = n.serve_expect_failure(&[]);
    assert!(
        out.contains("upgrading the database from schema") && out.contains("nothing was changed"),
        "the refusal says what happened: {out}"
    );
    assert!(out.contains("secret_changed_at"), "and why: {out}");
    let out = n.fail(&["migrate"], &[], 1);
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(schema_dump(&db), before, "the failed upgrade changed nothing");

    n.set_binary(Some(&old));
    n.start();
    assert_eq!(n.validate("carol", &hotp_code(SECRET, 0)).await["result"], "accept");
    assert_eq!(n.validate("carol", &hotp_code(SECRET, 0)).await["result"], "reject", "used once");
    n.stop();
}
