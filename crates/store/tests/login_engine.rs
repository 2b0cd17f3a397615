//! The embedded store's login engine (login state in memory, the journal):
//! what the shared conformance suite cannot show, because it needs a
//! restart or a second process on the same database.

mod common;
use common::{at, token, user};

use tessera_core::audit::{Actor, AuditRecord};
use tessera_core::clock::Timestamp;
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::model::{AccessRecord, TokenState, User};
use tessera_core::policy::Policy;
use tessera_core::random::OsRandom;
use tessera_core::store::prelude::*;
use tessera_core::store::{AuthAttempt, AuthOutcome, Factor, UserChange, Verdict};
use tessera_store::{SqliteOptions, SqliteStore};

fn audit(action: &str) -> AuditRecord {
    AuditRecord::new(at(0), "test-node", &Actor::new("test"), action)
}

fn attempt(user: &User, verdict: Verdict, t: Timestamp) -> AuthAttempt {
    AuthAttempt {
        user_id: user.id,
        access: AccessRecord { at: t, address: Some("192.0.2.7".into()), client: Some("test".into()) },
        verdict,
        policy: Policy::default(),
        audit: audit("validate"),
    }
}

fn engine(path: &std::path::Path) -> SqliteOptions {
    SqliteOptions { login_engine: true, ..SqliteOptions::new(path) }
}

fn journal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("-login-journal-"))
        .count()
}

/// Acknowledged logins live only in the journal until the fold; a process
/// that ends before it (here: dropped at once, no fold ran) loses nothing:
/// the next start replays them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_logins_survive_a_stop_before_the_fold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let u = user("ann");
    let t = token(&u, "A1", TokenState::Active, &keys);
    {
        let s = SqliteStore::create(&engine(&path), &keys, &OsRandom, at(0)).unwrap();
        s.create_user(&u, audit("user.add")).await.unwrap();
        s.create_token(&t, audit("token.add")).await.unwrap();
        let ok = Verdict::Verified(Factor::Token { token_id: t.id, matched: 100, drift: 0 });
        assert_eq!(s.commit_attempt(attempt(&u, ok, at(1))).await.unwrap(), AuthOutcome::Accepted);
        for i in 0..3 {
            let out = s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), at(2 + i))).await.unwrap();
            assert!(matches!(out, AuthOutcome::Failed { .. }));
        }
        assert!(journal_files(dir.path()) >= 1);
    }
    // A process without the engine (the CLI) replays what no server holds.
    let cli = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(10)).unwrap();
    let seen = cli.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(seen.lock.failures, 3, "failures acknowledged before the stop are kept");
    assert_eq!(cli.token_by_id(&t.id).await.unwrap().unwrap().counter, 101);
    assert_eq!(journal_files(dir.path()), 0, "replayed files are removed");
    drop(cli);
    let s = SqliteStore::open(&engine(&path), &keys, at(10)).unwrap();
    let replay = Verdict::Verified(Factor::Token { token_id: t.id, matched: 100, drift: 0 });
    assert_eq!(s.commit_attempt(attempt(&u, replay, at(11))).await.unwrap(), AuthOutcome::Replayed);
    let report = s.verify_audit_chain().await.unwrap();
    assert!(report.ok(), "{report:?}");
}

/// The CLI writes ordinary transactions on the database a server's engine
/// holds in memory: the engine must see them (an unlock stands at once), and
/// its fold must not write the old lock back over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_another_process_stands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let u = user("bob");
    let t = token(&u, "B1", TokenState::Active, &keys);
    let server = SqliteStore::create(&engine(&path), &keys, &OsRandom, at(0)).unwrap();
    server.create_user(&u, audit("user.add")).await.unwrap();
    server.create_token(&t, audit("token.add")).await.unwrap();
    let limit = Policy::default().lockout_threshold;
    for i in 0..limit {
        server.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), at(1 + i64::from(i)))).await.unwrap();
    }
    let ok = |m| Verdict::Verified(Factor::Token { token_id: t.id, matched: m, drift: 0 });
    assert_eq!(server.commit_attempt(attempt(&u, ok(100), at(20))).await.unwrap(), AuthOutcome::Locked);

    let cli = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(21)).unwrap();
    cli.update_user(&u.id, UserChange::Unlock, audit("user.unlock")).await.unwrap();
    // A code the CLI's own login took is used for the server too.
    assert_eq!(cli.commit_attempt(attempt(&u, ok(100), at(22))).await.unwrap(), AuthOutcome::Accepted);
    assert_eq!(server.commit_attempt(attempt(&u, ok(100), at(23))).await.unwrap(), AuthOutcome::Replayed);
    assert_eq!(server.commit_attempt(attempt(&u, ok(101), at(24))).await.unwrap(), AuthOutcome::Accepted);
    let seen = server.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(seen.lock.failures, 0);
    assert!(!seen.lock.is_locked(at(25)));
    assert_eq!(server.token_by_id(&t.id).await.unwrap().unwrap().counter, 102);
}

/// A journal whose last record was torn by a crash mid-write: the intact
/// records are replayed, the torn one (never acknowledged) is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_journal_tail_is_dropped_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let u = user("cy");
    let t = token(&u, "C1", TokenState::Active, &keys);
    {
        let s = SqliteStore::create(&engine(&path), &keys, &OsRandom, at(0)).unwrap();
        s.create_user(&u, audit("user.add")).await.unwrap();
        s.create_token(&t, audit("token.add")).await.unwrap();
        let ok = Verdict::Verified(Factor::Token { token_id: t.id, matched: 7, drift: 0 });
        assert_eq!(s.commit_attempt(attempt(&u, ok, at(1))).await.unwrap(), AuthOutcome::Accepted);
    }
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("-login-journal-") && std::fs::metadata(p).unwrap().len() > 0)
        .max()
        .expect("a journal file with the login");
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    drop(f);
    let s = SqliteStore::open(&engine(&path), &keys, at(2)).unwrap();
    let again = Verdict::Verified(Factor::Token { token_id: t.id, matched: 7, drift: 0 });
    assert_eq!(s.commit_attempt(attempt(&u, again, at(3))).await.unwrap(), AuthOutcome::Replayed);
}

fn token_login(name: &str, matched: i64, t: Timestamp) -> tessera_core::store::AuthenticateRequest {
    use tessera_core::store::{Evaluation, Snapshot};
    tessera_core::store::AuthenticateRequest {
        realm: "default".into(),
        username: name.into(),
        access: AccessRecord { at: t, address: Some("192.0.2.9".into()), client: Some("test".into()) },
        policy: Policy::default(),
        audit: audit("validate").target(name),
        state: None,
        evaluate: Box::new(move |snap: &dyn Snapshot| {
            match snap.tokens().iter().find(|t| t.state == TokenState::Active) {
                Some(t) => Evaluation::Decided(Verdict::Verified(Factor::Token { token_id: t.id, matched, drift: 0 })),
                None => Evaluation::Decided(Verdict::Failed("no_token")),
            }
        }),
    }
}

async fn login_outcome(s: &SqliteStore, name: &str, matched: i64, t: Timestamp) -> Option<AuthOutcome> {
    match s.authenticate(token_login(name, matched, t)).await.unwrap() {
        tessera_core::store::Authentication::Decided { outcome, .. } => Some(outcome),
        _ => None,
    }
}

/// A user who logged in recently is decided from memory, without reading
/// the database. What another process (the CLI) changes meanwhile must
/// stand at the server's very next login: a disabled user is refused, a
/// deleted token no longer accepts codes, a used code stays used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_change_reaches_a_user_held_in_memory_at_the_next_login() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let u = user("dora");
    let t = token(&u, "D1", TokenState::Active, &keys);
    let server = SqliteStore::create(&engine(&path), &keys, &OsRandom, at(0)).unwrap();
    server.create_user(&u, audit("user.add")).await.unwrap();
    server.create_token(&t, audit("token.add")).await.unwrap();
    assert_eq!(login_outcome(&server, "dora", 100, at(1)).await, Some(AuthOutcome::Accepted));
    // From memory now: the same code again is a replay, the next one is fine.
    let stats = &tessera_store::sqlite::login::journal::STATS;
    let hits = stats.memory_hits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(login_outcome(&server, "dora", 100, at(2)).await, Some(AuthOutcome::Replayed));
    assert_eq!(login_outcome(&server, "dora", 101, at(3)).await, Some(AuthOutcome::Accepted));
    assert!(stats.memory_hits.load(std::sync::atomic::Ordering::Relaxed) >= hits + 2, "decided from memory");
    let resyncs = stats.resyncs.load(std::sync::atomic::Ordering::Relaxed);

    let cli = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(4)).unwrap();
    cli.update_user(&u.id, UserChange::SetDisabled(true), audit("user.disable")).await.unwrap();
    let out = login_outcome(&server, "dora", 102, at(5)).await;
    assert_ne!(out, Some(AuthOutcome::Accepted), "a user the CLI disabled is refused at once");
    assert!(stats.resyncs.load(std::sync::atomic::Ordering::Relaxed) > resyncs, "the hint emptied memory");
    cli.update_user(&u.id, UserChange::SetDisabled(false), audit("user.enable")).await.unwrap();
    assert_eq!(login_outcome(&server, "dora", 102, at(6)).await, Some(AuthOutcome::Accepted));
    assert_eq!(login_outcome(&server, "dora", 102, at(7)).await, Some(AuthOutcome::Replayed));

    cli.delete_token(&t.id, audit("token.delete")).await.unwrap();
    let out = login_outcome(&server, "dora", 103, at(8)).await;
    assert_ne!(out, Some(AuthOutcome::Accepted), "a token the CLI deleted accepts nothing");
}

/// A command that died between its commit and its hint to the server (a
/// crash, `kill -9`): the server's background poll notices the database
/// changed and the next login reads it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_hint_is_noticed_by_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let u = user("eve");
    let t = token(&u, "E1", TokenState::Active, &keys);
    let server = SqliteStore::create(&engine(&path), &keys, &OsRandom, at(0)).unwrap();
    server.create_user(&u, audit("user.add")).await.unwrap();
    server.create_token(&t, audit("token.add")).await.unwrap();
    assert_eq!(login_outcome(&server, "eve", 100, at(1)).await, Some(AuthOutcome::Accepted));
    // What a command's transaction does, without the hint that follows it.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    raw.execute_batch(
        "BEGIN IMMEDIATE; UPDATE users SET disabled = 1; \
         UPDATE login_journal SET external_rev = external_rev + 1; COMMIT;",
    )
    .unwrap();
    drop(raw);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = login_outcome(&server, "eve", 101, at(2)).await;
    assert_ne!(out, Some(AuthOutcome::Accepted), "the poll saw the change");
}
