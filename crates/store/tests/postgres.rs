//! PostgreSQL-only cases (the shared ones are in conformance.rs): several
//! nodes on one database, opening and initialising, and connection loss.
//! Run against the test process's private PostgreSQL, or the server
//! `DATABASE_URL` names; skipped with a message when PostgreSQL is not
//! installed (unless TESSERA_REQUIRE_TOOLS=1).

mod common;
use common::{active_token, at, user};
use std::sync::Arc;
use std::time::Duration;

use tessera_core::audit::{Actor, AuditRecord};
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::model::{AccessRecord, User};
use tessera_core::policy::Policy;
use tessera_core::random::OsRandom;
use tessera_core::store::prelude::*;
use tessera_core::store::{AuthAttempt, AuthOutcome, Factor, StoreError, Verdict};
use tessera_store::postgres::testing;
use tessera_store::{PgOptions, PgStore};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn on(node: &str, action: &str) -> AuditRecord {
    AuditRecord::new(at(0), node, &Actor::new("test"), action)
}

fn attempt(node: &str, user: &User, verdict: Verdict, policy: &Policy) -> AuthAttempt {
    AuthAttempt {
        user_id: user.id,
        access: AccessRecord { at: at(1), address: Some("192.0.2.7".into()), client: Some(node.into()) },
        verdict,
        policy: policy.clone(),
        audit: on(node, "validate"),
    }
}

/// Two nodes (each with its own pool) on one fresh database.
async fn two_nodes() -> Option<(Arc<PgStore>, Arc<PgStore>, Keyring, tokio_postgres::Config)> {
    let cluster = testing::shared()?;
    let config = cluster.fresh_database().await;
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let a = PgStore::create(&PgOptions::new(config.clone()), &keys, &OsRandom, at(0)).await.unwrap();
    let b = PgStore::open(&PgOptions::new(config.clone()), &keys, at(0)).await.unwrap();
    Some((Arc::new(a), Arc::new(b), keys, config))
}

/// Runs `n` attempts, alternating between the nodes, all at once.
async fn race(a: &Arc<PgStore>, b: &Arc<PgStore>, n: usize, make: impl Fn(&str) -> AuthAttempt) -> Vec<AuthOutcome> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (s, node) = if i % 2 == 0 { (a.clone(), "node-a") } else { (b.clone(), "node-b") };
            let at = make(node);
            tokio::spawn(async move { s.commit_attempt(at).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_stay_exact() {
    let Some((a, b, keys, _)) = two_nodes().await else { return };
    let u = user("shared");
    a.create_user(&u, on("node-a", "user.add")).await.unwrap();
    let t = active_token(&u, "S1", &keys);
    b.create_token(&t, on("node-b", "token.add")).await.unwrap();

    // the same code on both nodes at once: accepted once
    let p = Policy { lockout_threshold: 100, ..Policy::default() };
    let v = Verdict::Verified(Factor::Token { token_id: t.id, matched: 7, drift: 0 });
    let outcomes = race(&a, &b, 20, |node| attempt(node, &u, v.clone(), &p)).await;
    assert_eq!(outcomes.iter().filter(|o| **o == AuthOutcome::Accepted).count(), 1, "{outcomes:?}");
    assert_eq!(a.token_by_id(&t.id).await.unwrap().unwrap().counter, 8);
    // the others are replays, on either node: audited, not counted (issue 15)
    assert_eq!(outcomes.iter().filter(|o| **o == AuthOutcome::Replayed).count(), 19, "{outcomes:?}");
    assert_eq!(b.user_by_id(&u.id).await.unwrap().unwrap().lock.failures, 0);

    // grace logins: exactly the limit across nodes
    let g = user("grace");
    b.create_user(&g, on("node-b", "user.add")).await.unwrap();
    let grace = Verdict::Verified(Factor::Grace { limit: Some(3) });
    let outcomes = race(&a, &b, 12, |node| attempt(node, &g, grace.clone(), &Policy::default())).await;
    assert_eq!(outcomes.iter().filter(|o| **o == AuthOutcome::Accepted).count(), 3, "{outcomes:?}");
    assert_eq!(b.user_by_id(&g.id).await.unwrap().unwrap().grace_used, 3);

    // wrong codes: locked after exactly the threshold
    let w = user("wrong");
    a.create_user(&w, on("node-a", "user.add")).await.unwrap();
    let p = Policy { lockout_threshold: 5, ..Policy::default() };
    let outcomes = race(&a, &b, 40, |node| attempt(node, &w, Verdict::Failed("wrong_code"), &p)).await;
    let counted = outcomes.iter().filter(|o| matches!(o, AuthOutcome::Failed { .. })).count();
    let locked = outcomes.iter().filter(|o| **o == AuthOutcome::Locked).count();
    assert_eq!((counted, locked), (5, 35), "{outcomes:?}");

    // each node's audit chain is intact
    let report = a.verify_audit_chain().await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let nodes: Vec<&str> = report.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(nodes, ["node-a", "node-b"]);
    assert_eq!(report.chained(), 4 + 20 + 12 + 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_checks_the_database_and_the_key() {
    let Some(cluster) = testing::shared() else { return };
    let config = cluster.fresh_database().await;
    let opts = PgOptions::new(config);
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let r = PgStore::open(&opts, &keys, at(0)).await;
    assert!(matches!(r, Err(StoreError::NotInitialised(_))), "{r:?}");
    PgStore::create(&opts, &keys, &OsRandom, at(0)).await.unwrap();
    let again = PgStore::create(&opts, &keys, &OsRandom, at(0)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let other = Keyring::new(&MasterKey::generate(&OsRandom));
    let wrong = PgStore::open(&opts, &other, at(0)).await;
    assert!(matches!(wrong, Err(StoreError::WrongKey(_))), "{wrong:?}");
    PgStore::open(&opts, &keys, at(0)).await.unwrap().ping().await.unwrap();
}

/// A TCP relay in front of the server whose connections can be cut and
/// whose listener can be closed, to play a network failure.
struct Relay {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(target: (String, u16)) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = inbound.shutdown().await;
                    continue;
                }
                let target = target.clone();
                let mut cut = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect((target.0.as_str(), target.1)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay { port, up, cut }
    }

    /// Drops every relayed connection and refuses new ones (or accepts again).
    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_loss_fails_closed_and_the_pool_recovers() {
    let Some(cluster) = testing::shared() else { return };
    let config = cluster.fresh_database().await;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let relay = Relay::start((host, port)).await;
    // (Config::host/port add to the list: build a new one.)
    let mut relayed = tokio_postgres::Config::new();
    relayed.host("127.0.0.1").port(relay.port).dbname(config.get_dbname().unwrap());
    if let Some(user) = config.get_user() {
        relayed.user(user);
    }
    if let Some(pw) = config.get_password() {
        relayed.password(pw);
    }
    let mut opts = PgOptions::new(relayed);
    opts.timeout = Duration::from_secs(2);
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let s = PgStore::create(&opts, &keys, &OsRandom, at(0)).await.unwrap();
    let u = user("netsplit");
    s.create_user(&u, on("node-a", "user.add")).await.unwrap();

    relay.set_up(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // every request fails closed while the database cannot be reached
    for _ in 0..3 {
        let r = s.user_by_id(&u.id).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        let r = s.commit_attempt(attempt("node-a", &u, Verdict::Failed("wrong_code"), &Policy::default())).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
    assert!(matches!(s.ping().await, Err(StoreError::Unavailable(_))));

    // back up: the pool reconnects by itself
    relay.set_up(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match s.ping().await {
            Ok(()) => break,
            Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the pool did not recover: {e:?}"),
        }
    }
    let got = s.user_by_id(&u.id).await.unwrap().unwrap();
    // none of the failed attempts was applied
    assert_eq!(got.lock.failures, 0);
    let r = s.commit_attempt(attempt("node-a", &u, Verdict::Failed("wrong_code"), &Policy::default())).await;
    assert!(matches!(r, Ok(AuthOutcome::Failed { failures: 1, .. })), "{r:?}");
    assert!(s.verify_audit_chain().await.unwrap().ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_stuck_behind_a_lock_fails_closed() {
    let Some(cluster) = testing::shared() else { return };
    let config = cluster.fresh_database().await;
    let mut opts = PgOptions::new(config.clone());
    opts.statement_timeout = Some(Duration::from_millis(300));
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let s = PgStore::create(&opts, &keys, &OsRandom, at(0)).await.unwrap();
    let u = user("stuck");
    s.create_user(&u, on("node-a", "user.add")).await.unwrap();

    // another session holds the user's row lock and does not let go
    let (mut holder, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&u.id.0]).await.unwrap();
    let started = std::time::Instant::now();
    let r = s.commit_attempt(attempt("node-a", &u, Verdict::Failed("wrong_code"), &Policy::default())).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    tx.rollback().await.unwrap();

    let r = s.commit_attempt(attempt("node-a", &u, Verdict::Failed("wrong_code"), &Policy::default())).await;
    assert!(matches!(r, Ok(AuthOutcome::Failed { failures: 1, .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_after_never_skips_a_lower_id_that_commits_late() {
    let Some((a, b, _, config)) = two_nodes().await else { return };
    a.append_audit(on("node-a", "first")).await.unwrap();
    let first = a.audit_after(0, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    let cursor = first[0].record.id;

    // A writer on another connection draws an id the way every audit
    // insert does (under the draw lock), and is slow to commit.
    let (mut slow, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let tx = slow.transaction().await.unwrap();
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&tessera_store::postgres::audit_chain::DRAW_LOCK])
        .await
        .unwrap();
    let low: i64 = tx.query_one("SELECT nextval('audit_id_seq')", &[]).await.unwrap().get(0);
    tx.execute(
        "INSERT INTO audit (id, at, node, actor, action, target, source, client, result, reason) \
         VALUES ($1, $2, 'node-x', 'test', 'late', NULL, NULL, NULL, 'ok', NULL)",
        &[&low, &at(0).0],
    )
    .await
    .unwrap();

    // Meanwhile a higher id commits on the other node.
    b.append_audit(on("node-b", "early")).await.unwrap();
    for _ in 0..3 {
        let seen = a.audit_after(cursor, 10).await.unwrap();
        assert!(seen.is_empty(), "delivered past an id still in flight: {:?}", ids(&seen));
    }

    tx.commit().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        got = a.audit_after(cursor, 10).await.unwrap();
        if got.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let actions: Vec<&str> = got.iter().map(|c| c.record.action.as_str()).collect();
    assert_eq!(actions, ["late", "early"], "ids {:?}", ids(&got));
    assert_eq!(got[0].record.id, low);
}

fn ids(v: &[tessera_core::audit::chain::ChainedAudit]) -> Vec<i64> {
    v.iter().map(|c| c.record.id).collect()
}

/// A CA and a server certificate for 127.0.0.1 only, signed by it (PEMs:
/// CA, certificate, key).
fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "tessera pg test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_encrypt_and_verify_full_checks_chain_and_name() {
    use tessera_store::PgTls;
    // The plain shared cluster first: `require` never falls back to clear text.
    let Some(plain) = testing::shared() else { return };
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let mut opts = PgOptions::new(plain.fresh_database().await);
    opts.tls = PgTls::Require;
    let r = PgStore::create(&opts, &keys, &OsRandom, at(0)).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "a server without TLS must be refused: {r:?}");

    let (ca, cert, key) = pki();
    let cluster = testing::TestCluster::start_tls(&cert, &key).expect("a TLS PostgreSQL");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let (other_ca, _, _) = pki();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, &other_ca).unwrap();

    let config = cluster.fresh_database().await;
    let with = |tls: PgTls, host: &str| {
        // `Config::host` adds a host; a new config names only this one.
        let mut c = tokio_postgres::Config::new();
        c.host(host).port(config.get_ports()[0]).user(config.get_user().unwrap());
        c.dbname(config.get_dbname().unwrap());
        let mut o = PgOptions::new(c);
        o.tls = tls;
        o.timeout = Duration::from_secs(3);
        o
    };
    // verify-full with the right CA and the certificate's name: works, and
    // the session really is encrypted (pg_stat_ssl).
    let good = with(PgTls::VerifyFull { ca_file: Some(ca_file.clone()) }, "127.0.0.1");
    let s = PgStore::create(&good, &keys, &OsRandom, at(0)).await.unwrap();
    let c = s.pool().get().await.unwrap();
    let ssl: bool = c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl);
    drop(c);
    // require: encrypted, the certificate is not checked
    PgStore::open(&with(PgTls::Require, "127.0.0.1"), &keys, at(0)).await.unwrap();
    // another CA: refused
    let r = PgStore::open(&with(PgTls::VerifyFull { ca_file: Some(other_ca_file) }, "127.0.0.1"), &keys, at(0)).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    // the right CA but a name the certificate does not carry: refused
    let r = PgStore::open(&with(PgTls::VerifyFull { ca_file: Some(ca_file) }, "localhost"), &keys, at(0)).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    // disable against a server that allows clear text: works
    PgStore::open(&with(PgTls::Disable, "127.0.0.1"), &keys, at(0)).await.unwrap();
}
