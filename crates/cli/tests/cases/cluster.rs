//! Cluster trust (issue 13): the attacks and failures found against the
//! first replication, each reproduced against real `tessera serve`
//! processes on loopback: join tokens that worked for ever, state writes
//! and snapshot pulls with only a token, an old primary coming back
//! unfenced, codes, backup codes and challenge States accepted on two
//! nodes, and health that did not notice a dead primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::random::OsRandom;
use tessera_core::replication::join::{self, JoinChallenge};

use super::support::cluster::{active, audit, join as join_cluster, named, status, token, user, with_key_of, within};
use super::support::{TestNode, backup_codes, hotp_code};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// A node that is not one of ours: its own client certificate (never
/// enrolled, unless it performs a join itself), optionally the cluster's
/// master key (a compromised node would have it).
struct Rogue {
    name: String,
    identity: tessera_tls::ClientIdentity,
    http: reqwest::Client,
    keys: Option<Keyring>,
}

impl Rogue {
    fn new(name: &str, pin: &str, key_file: Option<&std::path::Path>) -> Rogue {
        let identity = tessera_tls::generate_node_identity(name).unwrap();
        Self::with_identity(name, identity, pin, key_file)
    }

    /// The same node, talking to a peer whose certificate has `pin`.
    fn towards(&self, pin: &str) -> Rogue {
        Self::with_identity(&self.name, self.identity.clone(), pin, None)
    }

    fn with_identity(
        name: &str,
        identity: tessera_tls::ClientIdentity,
        pin: &str,
        key_file: Option<&std::path::Path>,
    ) -> Rogue {
        let trust = tessera_tls::ServerTrust::Pinned(tessera_tls::parse_pin(pin).unwrap());
        let tls = tessera_tls::client_config(&trust, Some(&identity)).unwrap();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let keys = key_file.map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            Keyring::new(&MasterKey::parse_file(&text).unwrap().0)
        });
        Rogue { name: name.into(), identity, http, keys }
    }

    /// The same certificate, no client certificate at all.
    fn anonymous(pin: &str) -> reqwest::Client {
        let trust = tessera_tls::ServerTrust::Pinned(tessera_tls::parse_pin(pin).unwrap());
        let tls = tessera_tls::client_config(&trust, None).unwrap();
        reqwest::Client::builder().tls_backend_preconfigured((*tls).clone()).build().unwrap()
    }

    /// Runs the join protocol with `token`; with the master key the proof is
    /// real, without it a guess. Returns the status of the final step.
    async fn join(&self, node: &TestNode, token: &str) -> u16 {
        let nonce = vec![7u8; 16];
        let r = self
            .http
            .post(node.url("/api/v1/replication/join/challenge"))
            .bearer_auth(token)
            .json(&json!({"node": self.name, "nonce": hex::encode(&nonce)}))
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            return r.status().as_u16();
        }
        let challenge: JoinChallenge = r.json().await.unwrap();
        let cert_sha = tessera_tls::cert_sha256(&self.identity.cert_der);
        let proof = match &self.keys {
            Some(k) => join::joiner_proof(k, &OsRandom, &challenge.nonce, &self.name, &cert_sha),
            None => vec![1u8; 80],
        };
        let r = self
            .http
            .post(node.url("/api/v1/replication/join"))
            .bearer_auth(token)
            .json(&json!({
                "node": self.name,
                "nonce": hex::encode(&challenge.nonce),
                "cert": hex::encode(&self.identity.cert_der),
                "url": null,
                "https_pin": null,
                "proof": hex::encode(proof),
            }))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }

    async fn get(&self, node: &TestNode, path: &str) -> u16 {
        self.http.get(node.url(path)).send().await.unwrap().status().as_u16()
    }

    async fn post(&self, node: &TestNode, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(node.url(path)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }
}

/// The replication endpoints and a harmless body for each.
fn endpoints() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("GET", "/api/v1/replication/hello", Value::Null),
        ("GET", "/api/v1/replication/snapshot", Value::Null),
        ("GET", "/api/v1/replication/changes?after=0", Value::Null),
        ("POST", "/api/v1/replication/claims", json!({"epoch": 1, "items": []})),
        ("POST", "/api/v1/replication/logins", json!([])),
        (
            "POST",
            "/api/v1/replication/checkin",
            json!({"url": null, "https_pin": null, "role": "replica", "epoch": 9, "position": 0, "lag_ms": null,
                   "following": true, "key_id": "x", "version": "0"}),
        ),
    ]
}

async fn call(
    http: &reqwest::Client,
    node: &TestNode,
    method: &str,
    path: &str,
    body: &Value,
    bearer: Option<&str>,
) -> u16 {
    let mut r = if method == "GET" { http.get(node.url(path)) } else { http.post(node.url(path)).json(body) };
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    r.send().await.unwrap().status().as_u16()
}

/// Reproductions 1 and 2: a join token works once, expires, can be
/// revoked; without a node credential nothing is read or written; a token
/// holder without the master key gets nothing; a removed node is refused
/// within a second; a compromised node cannot push steps outside the window;
/// every join, pull, removal and forwarded batch is audited.
#[tokio::test]
async fn join_tokens_node_credentials_and_forwarded_state() {
    let mut p = named("p");
    p.ok(&["user", "add", "alice"]);
    p.ok(&["token", "add", "alice", "--secret", SECRET]);
    p.start();
    let (t1, pin) = token(&p);

    // A token works once.
    let mut r1 = with_key_of(&p, "r1");
    let out = r1.ok(&["replica", "join", &p.url(""), "--token", &t1, "--pin", &pin]);
    assert!(out.starts_with("joined "), "{out}");
    let r2 = with_key_of(&p, "r2");
    let out = r2.fail(&["replica", "join", &p.url(""), "--token", &t1, "--pin", &pin], &[], 1);
    assert!(out.contains("used already"), "{out}");

    // It expires, and can be revoked.
    let t: Value = serde_json::from_str(&p.ok(&["replica", "token", "--ttl", "1s", "--json"])).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = r2.fail(&["replica", "join", &p.url(""), "--token", t["token"].as_str().unwrap(), "--pin", &pin], &[], 1);
    assert!(out.contains("expired"), "{out}");
    let t: Value = serde_json::from_str(&p.ok(&["replica", "token", "--json"])).unwrap();
    p.ok(&["replica", "token", "revoke", &t["id"].to_string()]);
    let out = r2.fail(&["replica", "join", &p.url(""), "--token", t["token"].as_str().unwrap(), "--pin", &pin], &[], 1);
    assert!(out.contains("revoked"), "{out}");
    let list: Value = serde_json::from_str(&p.ok(&["replica", "token", "list", "--json"])).unwrap();
    let statuses: Vec<&str> = list.as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["used", "expired", "revoked"], "{list}");

    // Nothing answers without a node certificate, even with a valid join
    // token as the bearer (the old attack), on the primary and on a replica.
    r1.start();
    let (valid_token, _) = token(&p);
    let anonymous = Rogue::anonymous(&pin);
    let before = user(&p, "alice").unwrap();
    for (method, path, body) in endpoints() {
        let status = call(&anonymous, &p, method, path, &body, Some(&valid_token)).await;
        assert_eq!(status, 401, "{method} {path} with only a join token");
    }
    let r1_pin = serde_json::from_str::<Value>(&r1.ok(&["replica", "pin", "--json"])).unwrap()["pin"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path, body) in endpoints() {
        let status = call(&Rogue::anonymous(&r1_pin), &r1, method, path, &body, Some(&valid_token)).await;
        assert_eq!(status, 401, "{method} {path} on the replica");
    }
    // A certificate of its own that was never enrolled: 403.
    let stranger = Rogue::new("stranger", &pin, None);
    for (method, path, body) in endpoints() {
        let status = call(&stranger.http, &p, method, path, &body, None).await;
        assert_eq!(status, 403, "{method} {path} from a certificate that never joined");
    }
    assert_eq!(user(&p, "alice").unwrap()["user"], before["user"], "refused requests changed nothing");

    // A holder of a valid token without the master key is refused before
    // any data is sent, and after three tries the token is revoked.
    for attempt in 0..3 {
        assert_eq!(stranger.join(&p, &valid_token).await, 403, "attempt {attempt}");
    }
    assert_eq!(stranger.get(&p, "/api/v1/replication/snapshot").await, 403, "still not enrolled");
    assert_eq!(stranger.join(&p, &valid_token).await, 401, "the token was revoked after failed proofs");
    let failed = audit(&p, "replica.join");
    assert!(
        failed
            .iter()
            .filter(|a| a["result"] == "reject" && a["reason"].as_str().unwrap_or("").contains("master key"))
            .count()
            >= 3,
        "{failed:?}"
    );

    // A compromised node (it holds the master key and a token) enrols…
    let (t3, _) = token(&p);
    let rogue = Rogue::new("rogue", &pin, Some(&p.key_file()));
    assert_eq!(rogue.join(&p, &t3).await, 200);
    assert_eq!(rogue.get(&p, "/api/v1/replication/snapshot").await, 200);
    // A request made in a protocol this release does not speak (a node two
    // releases away, or garbage) is refused before it is read.
    let hello =
        |v: String| rogue.http.get(p.url("/api/v1/replication/hello")).header("tessera-replication-protocol", v).send();
    assert_eq!(hello(tessera_core::replication::PROTOCOL.to_string()).await.unwrap().status(), 200);
    for bad in ["99", "0", "garbage", ""] {
        let r = hello(bad.to_string()).await.unwrap();
        assert_eq!(r.status(), 409, "protocol {bad:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "protocol_unsupported", "{body}");
    }
    assert!(audit(&p, "replication.snapshot").iter().any(|a| a["actor"] == "node:rogue"), "snapshot pull audited");
    // …but cannot move a token beyond any code's step (the old attack made
    // TOTP unusable for ever with step 9·10¹²), by claim or by forward.
    let alice = user(&p, "alice").unwrap();
    let (uid, tid) = (
        alice["user"]["id"].as_str().unwrap().parse::<i64>().unwrap(),
        alice["tokens"][0]["id"].as_str().unwrap().parse::<i64>().unwrap(),
    );
    let claim = json!({"epoch": 1, "items": [{"kind": "step", "user": uid, "token": tid, "step": 9_000_000_000_000i64, "drift": 0}]});
    let (status, results) = rogue.post(&p, "/api/v1/replication/claims", claim).await;
    assert_eq!(status, 200);
    assert_eq!(results[0]["claimed"], false, "{results}");
    assert_eq!(results[0]["reason"], "outside_window", "{results}");
    let forward = json!([{"id": 1, "user": uid, "at": 1, "accepted": true, "counted": true,
                          "factors": [{"kind": "step", "token": tid, "step": 9_000_000_000_000i64, "drift": 0}]}]);
    let (status, answer) = rogue.post(&p, "/api/v1/replication/logins", forward).await;
    assert_eq!(status, 200);
    assert_eq!(answer["refused"], 1, "{answer}");
    assert_eq!(p.validate("alice", &super::support::totp_now(SECRET, 0)).await["result"], "accept", "TOTP still works");
    let refusals = audit(&p, "replication.claim");
    assert!(
        refusals
            .iter()
            .any(|a| a["actor"] == "node:rogue" && a["reason"].as_str().unwrap_or("").contains("outside_window")),
        "{refusals:?}"
    );
    let forwards = audit(&p, "replication.forward");
    assert!(
        forwards
            .iter()
            .any(|a| a["actor"] == "node:rogue" && a["reason"].as_str().unwrap_or("").contains("outside_window")),
        "{forwards:?}"
    );
    // A replica takes no state writes at all: they go to the primary.
    assert!(
        within(Duration::from_secs(5), || {
            let known = r1.ok(&["replica", "nodes", "--json"]).contains("\"rogue\"");
            async move { known }
        })
        .await
        .is_some(),
        "the enrolment reached the replica"
    );
    let (status, body) = rogue.towards(&r1_pin).post(&r1, "/api/v1/replication/logins", json!([])).await;
    assert_eq!(status, 409, "{body}");

    // Removed: refused within a second, on the primary.
    let out = p.ok(&["replica", "remove", "rogue"]);
    assert!(out.contains("removed rogue"), "{out}");
    let refused = within(Duration::from_secs(1), || {
        let rogue = &rogue;
        let p = &p;
        async move { rogue.get(p, "/api/v1/replication/hello").await == 403 }
    })
    .await;
    assert!(refused.is_some(), "a removed node was refused within 1 s");
    assert_eq!(audit(&p, "replica.remove").len(), 1);

    // Every join and pull is in the audit log, and the chain verifies.
    let joins = audit(&p, "replica.join");
    assert!(joins.iter().any(|a| a["actor"] == "node:r1" && a["result"] == "ok"), "{joins:?}");
    p.ok(&["audit", "verify"]);

    // `replica nodes` on the primary lists the enrolled nodes with their state.
    let nodes: Value = serde_json::from_str(&p.ok(&["replica", "nodes", "--json"])).unwrap();
    let names: Vec<&str> = nodes.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["p", "r1"], "{nodes}");
    let r1_row = nodes.as_array().unwrap().iter().find(|n| n["name"] == "r1").unwrap();
    assert!(
        within(Duration::from_secs(5), || {
            let seen =
                serde_json::from_str::<Value>(&p.ok(&["replica", "nodes", "--json"])).unwrap()[1]["last_contact_at"]
                    .is_i64();
            async move { seen }
        })
        .await
        .is_some(),
        "{r1_row}"
    );
    r1.stop();
    p.stop();
}

/// Reproduction 3 and the fencing acceptance: promote a replica, SIGKILL
/// and restart the old primary without demote: it refuses administrative
/// writes and a code the new primary accepted, and a replica that pointed
/// at it moves to the new primary. A node restored from a backup of a
/// primary starts fenced.
#[tokio::test]
async fn an_old_primary_restarted_without_demote_is_fenced() {
    let mut p = named("p");
    p.ok(&["user", "add", "erin"]);
    p.ok(&["token", "add", "erin", "--secret", SECRET, "--type", "hotp"]);
    p.start();
    let mut r1 = with_key_of(&p, "r1");
    let mut r2 = with_key_of(&p, "r2");
    join_cluster(&p, &r1);
    join_cluster(&p, &r2);
    r1.start();
    r2.start();
    for r in [&r1, &r2] {
        assert!(
            within(Duration::from_secs(10), || {
                let a = active(r, "erin");
                async move { a }
            })
            .await
            .is_some()
        );
    }
    // Let every node learn the others' addresses (check-ins).
    assert!(
        within(Duration::from_secs(10), || {
            let n: Value = serde_json::from_str(&r2.ok(&["replica", "nodes", "--json"])).unwrap();
            let all = n.as_array().unwrap().iter().all(|x| x["url"].is_string());
            async move { all }
        })
        .await
        .is_some()
    );

    p.kill9();
    r1.ok(&["replica", "promote"]);
    assert_eq!(r1.validate("erin", &hotp_code(SECRET, 0)).await["result"], "accept", "used on the new primary");
    r1.ok(&["user", "add", "frank"]);

    // The old primary comes back as it was (the systemd unit restarts it).
    p.restart_same_ports();
    let out = p.fail(&["user", "add", "mallory"], &[], 1);
    assert!(out.contains("replica") || out.contains("takes no change"), "admin writes refused: {out}");
    assert_eq!(
        p.validate("erin", &hotp_code(SECRET, 0)).await["result"],
        "reject",
        "the code the new primary accepted"
    );
    let s = status(&p);
    assert_eq!(s["role"], "replica", "{s}");
    assert_eq!(s["epoch"], 2, "{s}");
    assert!(
        within(Duration::from_secs(10), || {
            let u = user(&p, "frank").is_some();
            async move { u }
        })
        .await
        .is_some(),
        "follows r1"
    );
    assert!(audit(&p, "replica.fence").iter().any(|a| a["reason"].as_str().unwrap_or("").contains("replaced by r1")));

    // r2 still pointed at the old primary: it moves to the new one by itself.
    let moved = within(Duration::from_secs(30), || {
        let s = status(&r2);
        async move { s["primary_name"] == "r1" && s["epoch"] == 2 }
    })
    .await;
    assert!(moved.is_some(), "r2 follows r1: {}", status(&r2));
    assert!(
        within(Duration::from_secs(10), || {
            let u = user(&r2, "frank").is_some();
            async move { u }
        })
        .await
        .is_some()
    );
    assert_eq!(r2.validate("erin", &hotp_code(SECRET, 0)).await["result"], "reject");
    assert_eq!(r1.validate("erin", &hotp_code(SECRET, 1)).await["result"], "accept", "the cluster works on");

    // A backup of the live primary, restored on a fresh machine, comes up
    // fenced (it may be an old copy of a cluster whose primary lives on)
    // until an administrator names its role.
    let pass = r1.cwd().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let file = r1.cwd().join("b.age");
    let (f, pf) = (file.display().to_string(), pass.display().to_string());
    r1.ok(&["backup", "create", "--out", &f, "--passphrase-file", &pf]);
    r1.stop();
    r2.stop();
    p.stop();
    let mut restored = TestNode::new();
    restored.set_env("TESSERA_SERVER_NODE_NAME", "r1");
    std::fs::copy(r1.key_file(), restored.key_file()).unwrap();
    super::support::chmod(&restored.key_file(), 0o600);
    let out = restored.ok(&["backup", "restore", &f, "--passphrase-file", &pf]);
    assert!(out.contains("fenced"), "{out}");
    restored.start();
    let out = restored.fail(&["user", "add", "zed"], &[], 1);
    assert!(out.contains("restored from a backup"), "{out}");
    let ready: Value = restored.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    restored.ok(&["replica", "confirm-primary"]);
    restored.ok(&["user", "add", "zed"]);
    restored.stop();
}

/// Reproduction 4: the same code, the same backup code and the same
/// challenge State sent to the primary and a replica at once, 100 times
/// each: exactly one accept each time.
#[tokio::test]
async fn the_same_code_backup_code_and_state_are_accepted_once_across_nodes() {
    let mut p = named("p");
    p.ok(&["policy", "set", "lockout_threshold=10", "hotp_look_ahead=5"]);
    p.ok(&["user", "add", "hank"]);
    p.ok(&["token", "add", "hank", "--secret", SECRET, "--type", "hotp"]);
    p.ok_stdin(&["user", "add", "sam", "--password-stdin"], "sam-password\n");
    p.ok(&["token", "add", "sam", "--secret", SECRET, "--type", "hotp"]);
    let mut backup: Vec<(String, String)> = Vec::new();
    for i in 0..10 {
        let name = format!("bc{i}");
        p.ok(&["user", "add", &name]);
        p.ok(&["token", "add", &name, "--secret", SECRET]);
        for code in backup_codes(&p.ok(&["backup-codes", &name])) {
            backup.push((name.clone(), code));
        }
    }
    assert_eq!(backup.len(), 100);
    p.start();
    let mut r = with_key_of(&p, "r");
    join_cluster(&p, &r);
    r.start();
    assert!(
        within(Duration::from_secs(10), || {
            let a = active(&r, "bc9");
            async move { a }
        })
        .await
        .is_some()
    );
    let (p, r) = (Arc::new(p), Arc::new(r));
    let both = |user: String, a: String, b: String, state: Option<String>| {
        let (p, r) = (p.clone(), r.clone());
        async move {
            let body = |pw: String| json!({"username": user, "password": pw, "state": state});
            let (x, y) = tokio::join!(post(&p, body(a)), post(&r, body(b)));
            [x, y].iter().filter(|v| v["result"] == "accept").count()
        }
    };
    for i in 0..100u64 {
        let code = hotp_code(SECRET, i);
        assert_eq!(both("hank".into(), code.clone(), code, None).await, 1, "code {i}");
    }
    for (i, (name, code)) in backup.iter().enumerate() {
        assert_eq!(both(name.clone(), code.clone(), code.clone(), None).await, 1, "backup code {i}");
    }
    // One State, two different valid codes: only the State can refuse one.
    let mut counter = 0u64;
    for i in 0..100 {
        let first = post(&p, json!({"username": "sam", "password": "sam-password"})).await;
        assert_eq!(first["result"], "challenge", "{first}");
        let state = first["state"].as_str().unwrap().to_string();
        let (a, b) = (hotp_code(SECRET, counter), hotp_code(SECRET, counter + 1));
        counter += 2;
        assert_eq!(both("sam".into(), a, b, Some(state)).await, 1, "state {i}");
    }
    let m = r.get("/metrics").await.text().await.unwrap();
    assert!(m.contains("tessera_replication_claims_total{outcome=\"claimed\"}"), "{m}");
}

async fn post(n: &TestNode, body: Value) -> Value {
    let r = n.client().post(n.url("/api/v1/validate")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Reproduction 6 (replica mode): `/readyz` and the lag metric turn
/// within 5 s of the primary dying and recover when it is back.
#[tokio::test]
async fn health_tells_the_truth_when_the_primary_dies() {
    let mut p = named("p");
    p.start();
    let mut r = with_key_of(&p, "r");
    join_cluster(&p, &r);
    r.start();
    let ready = |n: &TestNode| {
        let c = n.client();
        let url = n.url("/readyz");
        async move { c.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert!(
        within(Duration::from_secs(10), || {
            let f = ready(&r);
            async move { f.await["status"] == "ok" }
        })
        .await
        .is_some()
    );
    let metric = |n: &TestNode, name: &str| {
        let c = n.client();
        let url = n.url("/metrics");
        let name = name.to_string();
        async move {
            let text = c.get(url).send().await.unwrap().text().await.unwrap();
            text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse::<f64>().ok())
        }
    };
    p.kill9();
    let degraded = within(Duration::from_secs(5), || {
        let f = ready(&r);
        async move {
            let v = f.await;
            v["status"] == "degraded" && v["reasons"].to_string().contains("not following")
        }
    })
    .await;
    assert!(degraded.is_some(), "degraded within 5 s: {}", ready(&r).await);
    assert_eq!(metric(&r, "tessera_replication_following").await, Some(0.0));
    let lag1 = metric(&r, "tessera_replication_lag_seconds").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lag2 = metric(&r, "tessera_replication_lag_seconds").await.unwrap();
    assert!(lag2 > lag1 && lag2 >= 1.0, "the lag keeps growing while not following: {lag1} then {lag2}");
    let s = status(&r);
    assert_eq!(s["following"], false, "{s}");

    p.restart_same_ports();
    let back = within(Duration::from_secs(10), || {
        let f = ready(&r);
        async move { f.await["status"] == "ok" }
    })
    .await;
    assert!(back.is_some(), "recovered: {}", ready(&r).await);
    assert_eq!(metric(&r, "tessera_replication_following").await, Some(1.0));
    assert_eq!(metric(&r, "tessera_replication_lag_seconds").await, Some(0.0));
    r.stop();
    p.stop();
}

/// Failures counted on replicas while the primary is down combine into a
/// lock when it returns, and a replica's journal survives its own kill -9.
#[tokio::test]
async fn failures_on_replicas_while_the_primary_is_down_combine_into_a_lock() {
    let mut p = named("p");
    p.ok(&["user", "add", "dave"]);
    p.ok(&["token", "add", "dave", "--secret", SECRET]);
    p.start();
    let mut r1 = with_key_of(&p, "r1");
    let mut r2 = with_key_of(&p, "r2");
    join_cluster(&p, &r1);
    join_cluster(&p, &r2);
    r1.start();
    r2.start();
    for r in [&r1, &r2] {
        assert!(
            within(Duration::from_secs(10), || {
                let a = active(r, "dave");
                async move { a }
            })
            .await
            .is_some()
        );
    }
    p.kill9();
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(r1.validate("dave", "000000").await["result"], "reject");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "the replica decided alone, quickly");
    assert_eq!(status(&r1)["journalled_logins"], 3);
    r1.kill9();
    for _ in 0..2 {
        assert_eq!(r2.validate("dave", "000000").await["result"], "reject");
    }
    r1.restart_same_ports();
    p.restart_same_ports();
    let locked = within(Duration::from_secs(15), || {
        let u = user(&p, "dave");
        async move { u.is_some_and(|u| u["user"]["status"] == "locked") }
    })
    .await;
    assert!(locked.is_some(), "3 + 2 failures on two replicas lock at 5: {}", user(&p, "dave").unwrap());
    for r in [&r1, &r2] {
        assert!(
            within(Duration::from_secs(10), || {
                let u = user(r, "dave");
                async move { u.is_some_and(|u| u["user"]["status"] == "locked") }
            })
            .await
            .is_some()
        );
        assert_eq!(status(r)["journalled_logins"], 0);
    }
    let forwards = audit(&p, "replication.forward");
    assert!(forwards.iter().any(|a| a["actor"] == "node:r1"), "{forwards:?}");
    r1.stop();
    r2.stop();
    p.stop();
}
