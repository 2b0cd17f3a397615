//! The storage conformance suite. Every backend runs every case here; a
//! backend is correct when this file passes against it. Backend-specific
//! cases (file corruption, wrong key on open) follow at the end.

mod common;
use common::{T0, at, token, user};
use std::sync::Arc;

use tessera_core::audit::{Actor, AuditQuery, AuditRecord, AuditResult};
use tessera_core::clock::Timestamp;
use tessera_core::keys::{Keyring, MasterKey, Purpose};
use tessera_core::lockout::LockState;
use tessera_core::model::{
    AccessRecord, ApiKey, OobChannel, OobTarget, Token, TokenId, TokenState, User, UserId, UserStatus,
};
use tessera_core::oob::OobCode;
use tessera_core::policy::{LockoutMode, Policy};
use tessera_core::random::OsRandom;
use tessera_core::store::prelude::*;
use tessera_core::store::{
    AuthAttempt, AuthOutcome, AuthenticateRequest, Authentication, BackupCodeState, Evaluation, Factor, Snapshot,
    Store, StoreError, UserChange, UserQuery, Verdict,
};
use tessera_core::wildcard::Wildcard;
use tessera_otp::OtpParams;
use tessera_store::{PgOptions, PgStore, SqliteOptions, SqliteStore};

fn audit(action: &str) -> AuditRecord {
    AuditRecord::new(at(0), "test-node", &Actor::new("test"), action)
}

fn attempt(user: &User, verdict: Verdict, policy: &Policy, t: Timestamp) -> AuthAttempt {
    AuthAttempt {
        user_id: user.id,
        access: AccessRecord { at: t, address: Some("192.0.2.7".into()), client: Some("test".into()) },
        verdict,
        policy: policy.clone(),
        audit: audit("validate"),
    }
}

/// A fresh, empty store of one backend, with the keyring it was made with.
struct Fixture {
    store: Arc<dyn Store>,
    keys: Keyring,
    /// The master key behind `keys` (key rotation cases need it).
    master: MasterKey,
    _dir: tempfile::TempDir,
}

async fn sqlite_fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate(&OsRandom);
    let keys = Keyring::new(&master);
    let store = SqliteStore::create(&SqliteOptions::new(dir.path().join("t.db")), &keys, &OsRandom, at(0)).unwrap();
    Some(Fixture { store: Arc::new(store), keys, master, _dir: dir })
}

/// The embedded store as `serve` runs it: with the login engine (login
/// state in memory, the journal, the background fold).
async fn sqlite_engine_fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate(&OsRandom);
    let keys = Keyring::new(&master);
    let opts = SqliteOptions { login_engine: true, ..SqliteOptions::new(dir.path().join("t.db")) };
    let store = SqliteStore::create(&opts, &keys, &OsRandom, at(0)).unwrap();
    Some(Fixture { store: Arc::new(store), keys, master, _dir: dir })
}

/// A fresh database on the test process's private PostgreSQL (or on the
/// server `DATABASE_URL` names); `None` (the case is skipped, with a
/// message) when PostgreSQL is not installed and TESSERA_REQUIRE_TOOLS is unset.
async fn pg_fixture() -> Option<Fixture> {
    let cluster = tessera_store::postgres::testing::shared()?;
    let config = cluster.fresh_database().await;
    let master = MasterKey::generate(&OsRandom);
    let keys = Keyring::new(&master);
    let store = PgStore::create(&PgOptions::new(config), &keys, &OsRandom, at(0)).await.unwrap();
    Some(Fixture { store: Arc::new(store), keys, master, _dir: tempfile::tempdir().unwrap() })
}

macro_rules! conformance {
    ($backend:ident, $fixture:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(f) = $fixture.await else { return };
                    super::$case(&f).await;
                }
            )*
        }
    };
}

conformance!(
    sqlite,
    super::sqlite_fixture(),
    [
        users_create_find_conflict,
        users_list_wildcard_status_paging,
        users_changes_and_not_found,
        tokens_lifecycle_and_registration,
        token_accept_then_replay,
        parallel_same_code_accepts_once,
        parallel_wrong_attempts_lock_exactly,
        auto_unlock_and_admin_unlock,
        throttle_mode_blocks_until_delay,
        disabled_and_refused_not_counted,
        backup_codes_single_use_and_regenerate,
        activate_and_resync,
        policy_round_trip,
        api_keys_crud,
        audit_records_every_change_and_filters,
        audit_target_matches_the_bare_name,
        audit_pruning_keeps_recent_records,
        audit_chain_verifies_across_nodes_and_rollbacks,
        audit_chain_survives_pruning,
        token_listing_is_ordered_and_paged,
        authenticate_reads_evaluates_and_applies_in_one_step,
        logins_and_admin_resync_agree_on_the_floor,
        radius_clients_crud_and_signing_flag,
        radius_client_secret_rotation_and_edit,
        groups_and_reply_rules,
        realms_crud_and_cache_generation,
        parallel_grace_logins_stop_at_the_limit,
        single_factor_exception_accepts_without_a_token,
        inventory_assign_unassign_keeps_the_floor,
        key_rotation_reseals_everything_and_is_resumable,
        oob_tokens_round_trip,
        oob_code_single_use_under_concurrent_submits,
        oob_send_limit_per_user_holds_under_concurrency,
        admins_lifecycle_lockout_replay_and_sealing,
        node_key_reports_list_every_node,
        database_clock_is_measured_where_there_is_a_server,
    ]
);

conformance!(
    sqlite_engine,
    super::sqlite_engine_fixture(),
    [
        users_create_find_conflict,
        users_list_wildcard_status_paging,
        users_changes_and_not_found,
        tokens_lifecycle_and_registration,
        token_accept_then_replay,
        parallel_same_code_accepts_once,
        parallel_wrong_attempts_lock_exactly,
        auto_unlock_and_admin_unlock,
        throttle_mode_blocks_until_delay,
        disabled_and_refused_not_counted,
        backup_codes_single_use_and_regenerate,
        activate_and_resync,
        policy_round_trip,
        api_keys_crud,
        audit_records_every_change_and_filters,
        audit_target_matches_the_bare_name,
        audit_pruning_keeps_recent_records,
        audit_chain_verifies_across_nodes_and_rollbacks,
        audit_chain_survives_pruning,
        token_listing_is_ordered_and_paged,
        authenticate_reads_evaluates_and_applies_in_one_step,
        logins_and_admin_resync_agree_on_the_floor,
        radius_clients_crud_and_signing_flag,
        radius_client_secret_rotation_and_edit,
        groups_and_reply_rules,
        realms_crud_and_cache_generation,
        parallel_grace_logins_stop_at_the_limit,
        single_factor_exception_accepts_without_a_token,
        inventory_assign_unassign_keeps_the_floor,
        key_rotation_reseals_everything_and_is_resumable,
        oob_tokens_round_trip,
        oob_code_single_use_under_concurrent_submits,
        oob_send_limit_per_user_holds_under_concurrency,
        admins_lifecycle_lockout_replay_and_sealing,
        node_key_reports_list_every_node,
        database_clock_is_measured_where_there_is_a_server,
    ]
);

conformance!(
    postgres,
    super::pg_fixture(),
    [
        users_create_find_conflict,
        users_list_wildcard_status_paging,
        users_changes_and_not_found,
        tokens_lifecycle_and_registration,
        token_accept_then_replay,
        parallel_same_code_accepts_once,
        parallel_wrong_attempts_lock_exactly,
        auto_unlock_and_admin_unlock,
        throttle_mode_blocks_until_delay,
        disabled_and_refused_not_counted,
        backup_codes_single_use_and_regenerate,
        activate_and_resync,
        policy_round_trip,
        api_keys_crud,
        audit_records_every_change_and_filters,
        audit_target_matches_the_bare_name,
        audit_pruning_keeps_recent_records,
        audit_chain_verifies_across_nodes_and_rollbacks,
        audit_chain_survives_pruning,
        token_listing_is_ordered_and_paged,
        authenticate_reads_evaluates_and_applies_in_one_step,
        logins_and_admin_resync_agree_on_the_floor,
        radius_clients_crud_and_signing_flag,
        radius_client_secret_rotation_and_edit,
        groups_and_reply_rules,
        realms_crud_and_cache_generation,
        parallel_grace_logins_stop_at_the_limit,
        single_factor_exception_accepts_without_a_token,
        inventory_assign_unassign_keeps_the_floor,
        key_rotation_reseals_everything_and_is_resumable,
        oob_tokens_round_trip,
        oob_code_single_use_under_concurrent_submits,
        oob_send_limit_per_user_holds_under_concurrency,
        admins_lifecycle_lockout_replay_and_sealing,
        node_key_reports_list_every_node,
        database_clock_is_measured_where_there_is_a_server,
    ]
);

async fn users_create_find_conflict(f: &Fixture) {
    let s = &f.store;
    let u = user("alice");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let got = s.user_by_name("default", "alice").await.unwrap().unwrap();
    assert_eq!(got, u);
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap(), u);
    assert!(s.user_by_name("default", "Alice").await.unwrap().is_none(), "usernames are case-sensitive");
    assert!(s.user_by_name("other", "alice").await.unwrap().is_none());
    let dup = s.create_user(&user("alice"), audit("user.add")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let mut other_realm = user("alice");
    other_realm.realm = "corp".into();
    s.create_user(&other_realm, audit("user.add")).await.unwrap();
    assert_eq!(s.count_users().await.unwrap(), 2);
}

async fn users_list_wildcard_status_paging(f: &Fixture) {
    let s = &f.store;
    for n in ["john", "joanna", "Jo", "bob", "majo", "jo_x", "jo%y"] {
        s.create_user(&user(n), audit("user.add")).await.unwrap();
    }
    let names = |v: Vec<User>| v.into_iter().map(|u| u.username).collect::<Vec<_>>();
    let q = |p: &str| UserQuery { pattern: Some(Wildcard::parse(p).unwrap()), limit: 100, ..Default::default() };
    assert_eq!(names(s.list_users(&q("jo*"), at(0)).await.unwrap()), ["jo%y", "jo_x", "joanna", "john"]);
    assert_eq!(names(s.list_users(&q("*jo*"), at(0)).await.unwrap()), ["jo%y", "jo_x", "joanna", "john", "majo"]);
    assert_eq!(names(s.list_users(&q("jo_*"), at(0)).await.unwrap()), ["jo_x"], "_ is literal");
    assert_eq!(names(s.list_users(&q("Jo"), at(0)).await.unwrap()), ["Jo"]);
    let all = UserQuery { limit: 3, offset: 2, ..Default::default() };
    assert_eq!(s.list_users(&all, at(0)).await.unwrap().len(), 3);

    // status filters agree with User::status
    let bob = s.user_by_name("default", "bob").await.unwrap().unwrap();
    s.update_user(&bob.id, UserChange::SetDisabled(true), audit("user.disable")).await.unwrap();
    let john = s.user_by_name("default", "john").await.unwrap().unwrap();
    s.create_token(&token(&john, "T1", TokenState::Active, &f.keys), audit("token.add")).await.unwrap();
    let policy = Policy { lockout_threshold: 1, ..Policy::default() };
    let majo = s.user_by_name("default", "majo").await.unwrap().unwrap();
    s.commit_attempt(attempt(&majo, Verdict::Failed("wrong_code"), &policy, at(0))).await.unwrap();
    let st = |x: UserStatus| UserQuery { status: Some(x), limit: 100, ..Default::default() };
    assert_eq!(names(s.list_users(&st(UserStatus::Disabled), at(1)).await.unwrap()), ["bob"]);
    assert_eq!(names(s.list_users(&st(UserStatus::Active), at(1)).await.unwrap()), ["john"]);
    assert_eq!(names(s.list_users(&st(UserStatus::Locked), at(1)).await.unwrap()), ["majo"]);
    assert_eq!(
        names(s.list_users(&st(UserStatus::Unregistered), at(1)).await.unwrap()),
        ["Jo", "jo%y", "jo_x", "joanna"]
    );
    // after the lock expires majo is unregistered again
    let later = at(policy.auto_unlock_seconds as i64 + 1);
    assert!(names(s.list_users(&st(UserStatus::Unregistered), later).await.unwrap()).contains(&"majo".to_string()));
    for u in s.list_users(&UserQuery { limit: 100, ..Default::default() }, at(1)).await.unwrap() {
        let by_status = names(s.list_users(&st(u.status(at(1))), at(1)).await.unwrap());
        assert!(by_status.contains(&u.username), "{} has status {:?}", u.username, u.status(at(1)));
    }
}

async fn users_changes_and_not_found(f: &Fixture) {
    let s = &f.store;
    let u = user("carol");
    s.create_user(&u, audit("user.add")).await.unwrap();
    s.update_user(&u.id, UserChange::SetPassword(Some("$argon2id$x".into())), audit("user.password")).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$x"));
    s.update_user(&u.id, UserChange::SetDisabled(true), audit("user.disable")).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().status(at(0)), UserStatus::Disabled);
    s.update_user(&u.id, UserChange::SetDisabled(false), audit("user.enable")).await.unwrap();
    s.create_token(&token(&u, "C1", TokenState::Active, &f.keys), audit("token.add")).await.unwrap();
    s.replace_backup_codes(&u.id, &[[1; 32]], at(0), audit("backup")).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().status(at(0)), UserStatus::Active);
    s.update_user(&u.id, UserChange::Reset, audit("user.reset")).await.unwrap();
    let after = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(after.status(at(0)), UserStatus::Unregistered);
    assert!(after.password_hash.is_some(), "reset keeps the password");
    assert!(s.tokens_for_user(&u.id).await.unwrap().is_empty());
    assert_eq!(s.backup_codes_left(&u.id).await.unwrap(), 0);
    s.update_user(&u.id, UserChange::Delete, audit("user.delete")).await.unwrap();
    assert!(s.user_by_id(&u.id).await.unwrap().is_none());
    let missing = s.update_user(&u.id, UserChange::Unlock, audit("user.unlock")).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
}

async fn tokens_lifecycle_and_registration(f: &Fixture) {
    let s = &f.store;
    let u = user("dave");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let pending = token(&u, "P1", TokenState::Pending, &f.keys);
    s.create_token(&pending, audit("token.enroll")).await.unwrap();
    assert!(!s.user_by_id(&u.id).await.unwrap().unwrap().registered, "a pending token does not register");
    let active = token(&u, "A1", TokenState::Active, &f.keys);
    s.create_token(&active, audit("token.add")).await.unwrap();
    assert!(s.user_by_id(&u.id).await.unwrap().unwrap().registered);
    assert_eq!(s.token_by_serial("A1").await.unwrap().unwrap(), active);
    assert_eq!(s.token_by_id(&pending.id).await.unwrap().unwrap(), pending);
    assert_eq!(s.tokens_for_user(&u.id).await.unwrap().len(), 2);
    let dup = s.create_token(&token(&u, "A1", TokenState::Active, &f.keys), audit("token.add")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let orphan = s.create_token(&token(&user("ghost"), "G1", TokenState::Active, &f.keys), audit("token.add")).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    s.delete_token(&active.id, audit("token.delete")).await.unwrap();
    assert!(!s.user_by_id(&u.id).await.unwrap().unwrap().registered, "no active token left");
    let again = s.delete_token(&active.id, audit("token.delete")).await;
    assert!(matches!(again, Err(StoreError::NotFound(_))));
    // The sealed secret round-trips byte for byte.
    let stored = s.token_by_id(&pending.id).await.unwrap().unwrap();
    assert_eq!(
        f.keys.open(Purpose::OtpSecret, &stored.id.to_string(), &stored.sealed_secret).unwrap().as_slice(),
        b"12345678901234567890"
    );
}

async fn token_accept_then_replay(f: &Fixture) {
    let s = &f.store;
    let u = user("erin");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let t = token(&u, "E1", TokenState::Active, &f.keys);
    s.create_token(&t, audit("token.add")).await.unwrap();
    let p = Policy::default();
    let ok = Verdict::Verified(Factor::Token { token_id: t.id, matched: 100, drift: 1 });
    assert_eq!(s.commit_attempt(attempt(&u, ok.clone(), &p, at(1))).await.unwrap(), AuthOutcome::Accepted);
    let stored = s.token_by_id(&t.id).await.unwrap().unwrap();
    assert_eq!((stored.counter, stored.drift), (101, 1));
    assert_eq!(stored.last_used_at, Some(at(1)));
    let u1 = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(u1.last_success.as_ref().unwrap().at, at(1));
    assert_eq!(u1.last_success.as_ref().unwrap().address.as_deref(), Some("192.0.2.7"));
    // the same step again, or an older one: a replay, rejected and audited
    // but not counted (issue 15)
    let replay = s.commit_attempt(attempt(&u, ok, &p, at(2))).await.unwrap();
    assert_eq!(replay, AuthOutcome::Replayed);
    let older = Verdict::Verified(Factor::Token { token_id: t.id, matched: 99, drift: 0 });
    assert_eq!(s.commit_attempt(attempt(&u, older, &p, at(3))).await.unwrap(), AuthOutcome::Replayed);
    // the engine's own finding (the code no longer matched) is persisted the same way
    let found = Verdict::Replayed("replayed_code");
    assert_eq!(s.commit_attempt(attempt(&u, found, &p, at(3))).await.unwrap(), AuthOutcome::Replayed);
    let log = s.audit_log(&AuditQuery { action: Some("validate".into()), limit: 3, ..Default::default() }).await;
    let reasons: Vec<String> = log.unwrap().into_iter().filter_map(|a| a.reason).collect();
    assert_eq!(reasons, ["replayed_code"; 3]);
    let u2 = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(u2.lock.failures, 0);
    assert_eq!(u2.last_attempt.unwrap().at, at(3));
    assert_eq!(u2.last_success.unwrap().at, at(1));
    // a newer step succeeds and clears the failures
    let newer = Verdict::Verified(Factor::Token { token_id: t.id, matched: 101, drift: 0 });
    assert_eq!(s.commit_attempt(attempt(&u, newer, &p, at(4))).await.unwrap(), AuthOutcome::Accepted);
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().lock.failures, 0);
}

/// Issue 15: a double click or a retransmission sends one valid code (or
/// backup code) several times at once. One login gets it; the others are
/// replays, audited as such and not counted, so they cannot lock the user.
async fn parallel_same_code_accepts_once(f: &Fixture) {
    let s = &f.store;
    let u = user("frank");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let t = token(&u, "F1", TokenState::Active, &f.keys);
    s.create_token(&t, audit("token.add")).await.unwrap();
    s.replace_backup_codes(&u.id, &[[7; 32]], at(0), audit("backup")).await.unwrap();
    let p = Policy { lockout_threshold: 5, ..Policy::default() };
    for (v, reason) in [
        (Verdict::Verified(Factor::Token { token_id: t.id, matched: 7, drift: 0 }), "replayed_code"),
        (Verdict::Verified(Factor::BackupCode { digest: [7; 32] }), "replayed_backup_code"),
    ] {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                let a = attempt(&u, v.clone(), &p, at(1));
                tokio::spawn(async move { s.commit_attempt(a).await.unwrap() })
            })
            .collect();
        let outcomes: Vec<AuthOutcome> =
            futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == AuthOutcome::Accepted).count(), 1, "{outcomes:?}");
        assert_eq!(outcomes.iter().filter(|o| **o == AuthOutcome::Replayed).count(), 7, "{outcomes:?}");
        let f = s.user_by_id(&u.id).await.unwrap().unwrap();
        assert_eq!((f.lock.failures, f.status(at(2))), (0, UserStatus::Active), "replays are not counted");
        let log = s.audit_log(&AuditQuery { action: Some("validate".into()), limit: 8, ..Default::default() }).await;
        let mut reasons: Vec<String> = log.unwrap().into_iter().filter_map(|a| a.reason).collect();
        reasons.sort();
        let mut want = vec![reason.to_string(); 7];
        want.insert(0, if reason == "replayed_code" { "otp" } else { "backup_code" }.to_string());
        want.sort();
        assert_eq!(reasons, want);
    }
}

async fn parallel_wrong_attempts_lock_exactly(f: &Fixture) {
    let s = &f.store;
    let u = user("grace");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let p = Policy { lockout_threshold: 5, ..Policy::default() };
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            let a = attempt(&u, Verdict::Failed("wrong_code"), &p, at(1));
            tokio::spawn(async move { s.commit_attempt(a).await.unwrap() })
        })
        .collect();
    let outcomes: Vec<AuthOutcome> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    let counted = outcomes.iter().filter(|o| matches!(o, AuthOutcome::Failed { .. })).count();
    let locked = outcomes.iter().filter(|o| **o == AuthOutcome::Locked).count();
    assert_eq!((counted, locked), (5, 45), "{outcomes:?}");
    let g = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(g.lock.failures, 5);
    assert_eq!(g.status(at(2)), UserStatus::Locked);
    // a correct code while locked is refused and does not consume the token
    let t = token(&u, "G1", TokenState::Active, &f.keys);
    s.create_token(&t, audit("token.add")).await.unwrap();
    let v = Verdict::Verified(Factor::Token { token_id: t.id, matched: 3, drift: 0 });
    assert_eq!(s.commit_attempt(attempt(&u, v, &p, at(2))).await.unwrap(), AuthOutcome::Locked);
    assert_eq!(s.token_by_id(&t.id).await.unwrap().unwrap().counter, 0);
}

async fn auto_unlock_and_admin_unlock(f: &Fixture) {
    let s = &f.store;
    let u = user("heidi");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let p = Policy { lockout_threshold: 2, auto_unlock_seconds: 600, ..Policy::default() };
    for i in 0..2 {
        s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &p, at(i))).await.unwrap();
    }
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().status(at(2)), UserStatus::Locked);
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().status(at(601)), UserStatus::Unregistered);
    // after expiry the next failure counts from 1
    let o = s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &p, at(700))).await.unwrap();
    assert_eq!(o, AuthOutcome::Failed { failures: 1, locked: false, replay: false });
    s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &p, at(701))).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().status(at(702)), UserStatus::Locked);
    s.update_user(&u.id, UserChange::Unlock, audit("user.unlock")).await.unwrap();
    let h = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!((h.status(at(702)), h.lock.failures), (UserStatus::Unregistered, 0));
}

async fn throttle_mode_blocks_until_delay(f: &Fixture) {
    let s = &f.store;
    let u = user("ivan");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let p = Policy {
        lockout_mode: LockoutMode::Throttle,
        lockout_threshold: 1,
        throttle_base_seconds: 10,
        ..Policy::default()
    };
    let o = s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &p, at(0))).await.unwrap();
    assert_eq!(o, AuthOutcome::Failed { failures: 1, locked: false, replay: false });
    assert_eq!(
        s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &p, at(5))).await.unwrap(),
        AuthOutcome::Throttled
    );
    let o = s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &p, at(10))).await.unwrap();
    assert_eq!(o, AuthOutcome::Failed { failures: 2, locked: false, replay: false });
    assert_eq!(
        s.user_by_id(&u.id).await.unwrap().unwrap().status(at(11)),
        UserStatus::Unregistered,
        "throttle is not a lock"
    );
}

async fn disabled_and_refused_not_counted(f: &Fixture) {
    let s = &f.store;
    let u = user("judy");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let p = Policy::default();
    assert_eq!(
        s.commit_attempt(attempt(&u, Verdict::Refused("no_active_token"), &p, at(1))).await.unwrap(),
        AuthOutcome::Refused
    );
    s.update_user(&u.id, UserChange::SetDisabled(true), audit("user.disable")).await.unwrap();
    assert_eq!(
        s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &p, at(2))).await.unwrap(),
        AuthOutcome::Disabled
    );
    let j = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(j.lock.failures, 0);
    assert_eq!(j.last_attempt.unwrap().at, at(2), "refusals still record the attempt");
    let gone = attempt(&user("nobody"), Verdict::Failed("wrong_code"), &p, at(3));
    assert_eq!(s.commit_attempt(gone).await.unwrap(), AuthOutcome::Refused);
}

async fn backup_codes_single_use_and_regenerate(f: &Fixture) {
    let s = &f.store;
    let u = user("ken");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let set1: Vec<[u8; 32]> = (0..10u8).map(|i| [i; 32]).collect();
    s.replace_backup_codes(&u.id, &set1, at(0), audit("backup_codes.generate")).await.unwrap();
    assert_eq!(s.backup_codes_left(&u.id).await.unwrap(), 10);
    assert_eq!(s.backup_code(&u.id, &[3; 32]).await.unwrap(), Some(BackupCodeState::Unused));
    let p = Policy::default();
    let v = Verdict::Verified(Factor::BackupCode { digest: [3; 32] });
    assert_eq!(s.commit_attempt(attempt(&u, v.clone(), &p, at(1))).await.unwrap(), AuthOutcome::Accepted);
    assert_eq!(s.backup_code(&u.id, &[3; 32]).await.unwrap(), Some(BackupCodeState::Used));
    assert_eq!(s.commit_attempt(attempt(&u, v, &p, at(2))).await.unwrap(), AuthOutcome::Replayed);
    let found = Verdict::Replayed("replayed_backup_code");
    assert_eq!(s.commit_attempt(attempt(&u, found, &p, at(2))).await.unwrap(), AuthOutcome::Replayed);
    let log = s.audit_log(&AuditQuery { action: Some("validate".into()), limit: 2, ..Default::default() }).await;
    let reasons: Vec<String> = log.unwrap().into_iter().filter_map(|a| a.reason).collect();
    assert_eq!(reasons, ["replayed_backup_code"; 2], "not wrong_password_and_code");
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().lock.failures, 0);
    assert_eq!(s.backup_codes_left(&u.id).await.unwrap(), 9);
    let set2: Vec<[u8; 32]> = (100..110u8).map(|i| [i; 32]).collect();
    s.replace_backup_codes(&u.id, &set2, at(3), audit("backup_codes.generate")).await.unwrap();
    assert_eq!(s.backup_code(&u.id, &[4; 32]).await.unwrap(), None, "old set is void");
    assert_eq!(s.backup_codes_left(&u.id).await.unwrap(), 10);
    let other = user("leo");
    s.create_user(&other, audit("user.add")).await.unwrap();
    assert_eq!(s.backup_code(&other.id, &[100; 32]).await.unwrap(), None, "codes are per user");
    let missing = s.replace_backup_codes(&UserId::new_random(), &set2, at(3), audit("x")).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

async fn activate_and_resync(f: &Fixture) {
    let s = &f.store;
    let u = user("mallory");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let t = token(&u, "M1", TokenState::Pending, &f.keys);
    s.create_token(&t, audit("token.enroll")).await.unwrap();
    assert!(s.activate_token(&t.id, 50, -1, audit("token.confirm")).await.unwrap());
    assert!(!s.activate_token(&t.id, 60, 0, audit("token.confirm")).await.unwrap(), "only once");
    let got = s.token_by_id(&t.id).await.unwrap().unwrap();
    assert_eq!((got.state, got.counter, got.drift), (TokenState::Active, 51, -1));
    assert!(s.user_by_id(&u.id).await.unwrap().unwrap().registered);
    s.resync_token(&t.id, 10, 0, audit("token.resync")).await.unwrap();
    let got = s.token_by_id(&t.id).await.unwrap().unwrap();
    assert_eq!((got.counter, got.drift), (51, 0), "resync never moves the floor back");
    s.resync_token(&t.id, 80, 2, audit("token.resync")).await.unwrap();
    let got = s.token_by_id(&t.id).await.unwrap().unwrap();
    assert_eq!((got.counter, got.drift), (80, 2));
    assert!(matches!(s.resync_token(&TokenId::new_random(), 1, 0, audit("x")).await, Err(StoreError::NotFound(_))));
}

async fn policy_round_trip(f: &Fixture) {
    let s = &f.store;
    assert_eq!(s.policy().await.unwrap(), Policy::default());
    let p = Policy { lockout_threshold: 3, backup_codes_enabled: false, ..Policy::default() };
    s.set_policy(&p, audit("policy.set")).await.unwrap();
    assert_eq!(s.policy().await.unwrap(), p);
}

async fn api_keys_crud(f: &Fixture) {
    let s = &f.store;
    let k = ApiKey {
        id: "k1".into(),
        name: "ops".into(),
        prefix: "tsk_abcd".into(),
        digest: [9; 32],
        created_at: at(0),
        last_used_at: None,
    };
    s.create_api_key(&k, audit("api_key.create")).await.unwrap();
    assert_eq!(s.api_key_by_digest(&[9; 32]).await.unwrap().unwrap(), k);
    assert!(s.api_key_by_digest(&[8; 32]).await.unwrap().is_none());
    let dup = ApiKey { id: "k2".into(), digest: [7; 32], ..k.clone() };
    assert!(matches!(s.create_api_key(&dup, audit("api_key.create")).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.list_api_keys().await.unwrap().len(), 1);
    s.delete_api_key("ops", audit("api_key.delete")).await.unwrap();
    assert!(matches!(s.delete_api_key("ops", audit("api_key.delete")).await, Err(StoreError::NotFound(_))));
}

async fn audit_records_every_change_and_filters(f: &Fixture) {
    let s = &f.store;
    let u = user("nina");
    s.create_user(&u, audit("user.add").target("nina")).await.unwrap();
    // a failed change writes nothing, not even its audit record
    let _ = s.create_user(&user("nina"), audit("user.add").target("dup")).await;
    s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &Policy::default(), at(5))).await.unwrap();
    s.append_audit(audit("custom").result(AuditResult::Error, Some("why"))).await.unwrap();
    let all = s.audit_log(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    let actions: Vec<&str> = all.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["custom", "validate", "user.add"], "newest first");
    assert!(all.iter().all(|a| a.target.as_deref() != Some("dup")));
    let v = &all[1];
    assert_eq!(v.result, AuditResult::Reject);
    assert_eq!(v.reason.as_deref(), Some("wrong_code; failure 1"));
    let only =
        s.audit_log(&AuditQuery { action: Some("user.add".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(only.len(), 1);
    let rejects =
        s.audit_log(&AuditQuery { result: Some(AuditResult::Reject), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(rejects.len(), 1);
    let page = s.audit_log(&AuditQuery { before_id: Some(all[0].id), limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(page[0].id, all[1].id);
    let none = s.audit_log(&AuditQuery { since: Some(at(1000)), limit: 10, ..Default::default() }).await.unwrap();
    assert!(none.is_empty());
}

/// Issue 15: `audit list --target lena` finds the realm user `lena@corp`
/// and token actions on lena's token; not other names that merely start
/// with `lena`. A user's own page (`TargetMatch::User`) leaves namesakes in
/// other realms out.
async fn audit_target_matches_the_bare_name(f: &Fixture) {
    use tessera_core::audit::TargetMatch;
    let s = &f.store;
    for target in ["lena", "lena@corp", "lena T-1", "lena@corp T-2", "lenart", "lenart@corp", "x lena", "ünï@corp"] {
        s.append_audit(audit("probe").target(target)).await.unwrap();
    }
    let find = |target: &str, how: TargetMatch| {
        let q = AuditQuery { target: Some(target.into()), target_match: how, limit: 100, ..Default::default() };
        async move {
            let mut t: Vec<String> = s.audit_log(&q).await.unwrap().into_iter().filter_map(|a| a.target).collect();
            t.sort();
            t
        }
    };
    assert_eq!(find("lena", TargetMatch::Name).await, ["lena", "lena T-1", "lena@corp", "lena@corp T-2"]);
    assert_eq!(find("lena@corp", TargetMatch::Name).await, ["lena@corp", "lena@corp T-2"]);
    assert_eq!(find("lena", TargetMatch::User).await, ["lena", "lena T-1"]);
    assert_eq!(find("LENA", TargetMatch::Name).await, Vec::<String>::new(), "case-sensitive, like usernames");
    assert_eq!(find("len", TargetMatch::Name).await, Vec::<String>::new(), "a name, not any prefix");
    assert_eq!(find("ünï", TargetMatch::Name).await, ["ünï@corp"], "prefixes count characters, not bytes");
    assert_eq!(find("lena%", TargetMatch::Name).await, Vec::<String>::new(), "no LIKE wildcards");
}

// ------------------------------------------------------------ SQLite only

mod sqlite_file {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn create(dir: &std::path::Path, keys: &Keyring) -> std::path::PathBuf {
        let path = dir.join("t.db");
        let s = SqliteStore::create(&SqliteOptions::new(&path), keys, &OsRandom, at(0)).unwrap();
        drop(s);
        path
    }

    fn digest(path: &std::path::Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[tokio::test]
    async fn regression_wrong_master_key_refused_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let path = create(dir.path(), &keys);
        let before = digest(&path);
        let other = Keyring::new(&MasterKey::generate(&OsRandom));
        let err = SqliteStore::open(&SqliteOptions::new(&path), &other, at(1)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::WrongKey(_)), "{err:?}");
        assert!(msg.contains(&keys.key_id()) && msg.contains(&other.key_id()), "{msg}");
        assert_eq!(digest(&path), before);
        SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap();
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let path = create(dir.path(), &keys);
        let u = user("olga");
        {
            let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap();
            s.create_user(&u, audit("user.add")).await.unwrap();
        }
        let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(2)).unwrap();
        assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap(), u);
    }

    #[tokio::test]
    async fn truncated_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let path = create(dir.path(), &keys);
        {
            let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap();
            for i in 0..300 {
                s.create_user(&user(&format!("user{i:04}")), audit("user.add")).await.unwrap();
            }
        }
        // fold the WAL into the main file, then cut the file in half
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;").unwrap();
        drop(c);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
        let before = digest(&path);
        let err = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(2)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert_eq!(digest(&path), before);
    }

    #[tokio::test]
    async fn corrupted_pages_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let path = create(dir.path(), &keys);
        {
            let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap();
            for i in 0..300 {
                s.create_user(&user(&format!("user{i:04}")), audit("user.add")).await.unwrap();
            }
        }
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;").unwrap();
        drop(c);
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for page in [2u64, 3, 5, 8] {
            f.seek(SeekFrom::Start(page * 4096)).unwrap();
            f.write_all(&[0xA5; 512]).unwrap();
        }
        drop(f);
        let err = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(2)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn garbage_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
        let err = SqliteStore::open(&SqliteOptions::new(&garbage), &keys, at(0)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert_eq!(std::fs::read(&garbage).unwrap(), vec![0x42u8; 8192]);

        let foreign = dir.path().join("foreign.db");
        rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE x (y)").unwrap();
        let err = SqliteStore::open(&SqliteOptions::new(&foreign), &keys, at(0)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

        let missing = dir.path().join("missing.db");
        let err = SqliteStore::open(&SqliteOptions::new(&missing), &keys, at(0)).unwrap_err();
        assert!(matches!(err, StoreError::NotInitialised(_)), "{err:?}");
        assert!(!missing.exists());
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let path = create(dir.path(), &keys);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)", [])
            .unwrap();
        let err = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(0)).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err:?}");
    }

    #[tokio::test]
    async fn create_refuses_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let path = create(dir.path(), &keys);
        let err = SqliteStore::create(&SqliteOptions::new(&path), &keys, &OsRandom, at(0)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)));
    }

    /// Turns a fresh database back into schema 3 (no chain) with `legacy`
    /// audit rows, as a database from before the migration.
    fn schema_3_with_audit(path: &std::path::Path, legacy: usize) {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch(
            "DROP TABLE audit_chain; DELETE FROM meta WHERE key = 'audit_chain_start'; \
             ALTER TABLE audit DROP COLUMN seq; ALTER TABLE audit DROP COLUMN prev_hash; \
             ALTER TABLE audit DROP COLUMN hash; \
             ALTER TABLE radius_clients DROP COLUMN old_secret; \
             ALTER TABLE radius_clients DROP COLUMN old_secret_expires_at; \
             ALTER TABLE radius_clients DROP COLUMN old_secret_last_used_at; \
             ALTER TABLE radius_clients DROP COLUMN secret_changed_at; \
             ALTER TABLE radius_clients DROP COLUMN new_secret_first_used_at; \
             DELETE FROM schema_migrations WHERE version >= 4;",
        )
        .unwrap();
        for i in 0..legacy {
            c.execute(
                "INSERT INTO audit (at, node, actor, action, result) VALUES (?1, 'old-node', 'cli:root', 'user.add', 'ok')",
                [T0 + i as i64],
            )
            .unwrap();
        }
    }

    #[tokio::test]
    async fn records_from_before_the_migration_are_unchained_not_tampered() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let path = create(dir.path(), &keys);
        schema_3_with_audit(&path, 3);
        assert_eq!(tessera_store::sqlite::audit_chain::verify_file(&path).unwrap(), None, "nothing to verify yet");
        let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap();
        s.append_audit(audit("after.migration")).await.unwrap();
        s.append_audit(AuditRecord::new(at(2), "old-node", &Actor::new("test"), "after.migration")).await.unwrap();
        let r = s.verify_audit_chain().await.unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.unchained, r.chained(), r.chain_start), (3, 2, 3));
        // legacy rows are pruned like any other; the chain is unaffected
        assert_eq!(s.prune_audit(at(1), 2).await.unwrap(), 2);
        assert!(s.verify_audit_chain().await.unwrap().ok());
    }

    #[tokio::test]
    async fn edited_and_deleted_rows_are_named() {
        use tessera_core::audit::chain::ProblemKind;
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let path = create(dir.path(), &keys);
        let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap();
        for i in 0..6 {
            s.append_audit(audit(&format!("a{i}")).target("alice")).await.unwrap();
        }
        let ids: Vec<i64> = s.audit_after(0, 10).await.unwrap().iter().map(|c| c.record.id).collect();
        let found = |path: &std::path::Path| {
            let r = tessera_store::sqlite::audit_chain::verify_file(path).unwrap().unwrap();
            r.problems.iter().map(|p| (p.kind, p.id)).collect::<Vec<_>>()
        };
        assert_eq!(found(&path), []);
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute("UPDATE audit SET target = 'mallory' WHERE id = ?1", [ids[1]]).unwrap();
        raw.execute("DELETE FROM audit WHERE id = ?1", [ids[3]]).unwrap();
        raw.execute("UPDATE audit SET at = 'yesterday' WHERE id = ?1", [ids[5]]).unwrap();
        assert_eq!(
            found(&path),
            [
                (ProblemKind::Changed, Some(ids[1])),
                (ProblemKind::Missing, Some(ids[4])),
                (ProblemKind::Changed, Some(ids[5]))
            ]
        );
    }
}

async fn audit_pruning_keeps_recent_records(f: &Fixture) {
    let s = &f.store;
    for i in 0..10 {
        let mut a = audit("old");
        a.at = at(i);
        s.append_audit(a).await.unwrap();
    }
    let mut recent = audit("recent");
    recent.at = at(100);
    s.append_audit(recent).await.unwrap();
    assert_eq!(s.prune_audit(at(50), 4).await.unwrap(), 4, "bounded batch");
    assert_eq!(s.prune_audit(at(50), 100).await.unwrap(), 6);
    let left = s.audit_log(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(left.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["recent"]);
}

async fn audit_chain_verifies_across_nodes_and_rollbacks(f: &Fixture) {
    let s = &f.store;
    let on = |node: &str, action: &str| AuditRecord::new(at(1), node, &Actor::new("test"), action);
    let u = user("chain");
    s.create_user(&u, on("node-a", "user.add")).await.unwrap();
    // a failed change is rolled back with its audit record: the chain must not keep it
    assert!(s.create_user(&user("chain"), on("node-a", "user.add")).await.is_err());
    s.commit_attempt(attempt(&u, Verdict::Failed("wrong_code"), &Policy::default(), at(2))).await.unwrap();
    // concurrent appends from two nodes, serialised by the store
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        let node = if i % 2 == 0 { "node-a" } else { "node-b" };
        tasks.push(tokio::spawn(async move { s.append_audit(on(node, &format!("custom.{i}"))).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let report = s.verify_audit_chain().await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.chained(), 42);
    assert_eq!(report.unchained, 0);
    let nodes: Vec<(&str, u64)> = report.nodes.iter().map(|n| (n.node.as_str(), n.records)).collect();
    assert_eq!(nodes, [("node-a", 21), ("node-b", 20), ("test-node", 1)]);

    // forwarding reads: every committed record, oldest first, linked in order
    let all = s.audit_after(0, 1000).await.unwrap();
    assert_eq!(all.len(), 42);
    assert!(all.windows(2).all(|w| w[0].record.id < w[1].record.id));
    let seqs: Vec<i64> =
        all.iter().filter(|c| c.record.node == "node-b").map(|c| c.link.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    let head = report.nodes.iter().find(|n| n.node == "node-b").unwrap().head.unwrap();
    assert_eq!(all.iter().rfind(|c| c.record.node == "node-b").unwrap().link.unwrap().hash, head.hash);
    let tail = s.audit_after(all[39].record.id, 10).await.unwrap();
    assert_eq!(tail.iter().map(|c| c.record.id).collect::<Vec<_>>(), [all[40].record.id, all[41].record.id]);
    let newest = s.audit_log(&AuditQuery { limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(newest[0].id, all[41].record.id);
}

async fn audit_chain_survives_pruning(f: &Fixture) {
    let s = &f.store;
    for i in 0..10 {
        let mut a = audit("old");
        a.at = at(i);
        s.append_audit(a).await.unwrap();
    }
    for i in 0..3 {
        let mut a = audit("recent");
        a.at = at(100 + i);
        s.append_audit(a).await.unwrap();
    }
    assert_eq!(s.prune_audit(at(50), 4).await.unwrap(), 4);
    assert!(s.verify_audit_chain().await.unwrap().ok());
    assert_eq!(s.prune_audit(at(50), 100).await.unwrap(), 6);
    let report = s.verify_audit_chain().await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.chained(), 3);
    assert_eq!(report.nodes[0].anchor.seq, 10, "anchored at the last pruned record");
    // the chain goes on from there
    s.append_audit(audit("after")).await.unwrap();
    assert!(s.verify_audit_chain().await.unwrap().ok());
    // everything pruned: the anchor is the head, still consistent
    assert_eq!(s.prune_audit(at(1000), 100).await.unwrap(), 4);
    let report = s.verify_audit_chain().await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.chained(), 0);
    s.append_audit(audit("fresh")).await.unwrap();
    let fresh = s.audit_after(0, 10).await.unwrap();
    assert_eq!(fresh[0].link.unwrap().seq, 15, "positions continue after a full prune");
    assert!(s.verify_audit_chain().await.unwrap().ok());
}

async fn token_listing_is_ordered_and_paged(f: &Fixture) {
    let s = &f.store;
    let u = user("tina");
    s.create_user(&u, audit("user.add")).await.unwrap();
    for serial in ["C", "A", "B"] {
        s.create_token(&token(&u, serial, TokenState::Active, &f.keys), audit("token.add")).await.unwrap();
    }
    let serials = |v: Vec<Token>| v.into_iter().map(|t| t.serial).collect::<Vec<_>>();
    assert_eq!(serials(s.list_tokens(10, 0).await.unwrap()), ["A", "B", "C"]);
    assert_eq!(serials(s.list_tokens(1, 1).await.unwrap()), ["B"]);
}

fn auth_request(name: &str, evaluate: tessera_core::store::Evaluator) -> AuthenticateRequest {
    AuthenticateRequest {
        realm: "default".into(),
        username: name.into(),
        access: AccessRecord { at: at(1), address: Some("192.0.2.1".into()), client: Some("t".into()) },
        policy: Policy::default(),
        audit: audit("validate").target(name),
        state: None,
        evaluate,
    }
}

async fn authenticate_reads_evaluates_and_applies_in_one_step(f: &Fixture) {
    let s = &f.store;
    // unknown user: audited, nothing else
    let r = s.authenticate(auth_request("nobody", Box::new(|_| unreachable!("no user, no evaluation")))).await.unwrap();
    assert!(matches!(r, Authentication::UnknownUser));
    let log = s.audit_log(&AuditQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!((log[0].target.as_deref(), log[0].reason.as_deref()), (Some("nobody"), Some("unknown_user")));

    let u = user("uma");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let t = token(&u, "U1", TokenState::Active, &f.keys);
    s.create_token(&t, audit("token.add")).await.unwrap();
    s.replace_backup_codes(&u.id, &[[5; 32]], at(0), audit("backup")).await.unwrap();

    // the evaluator sees the user, tokens and backup codes; its verdict is applied
    let tid = t.id;
    let r = s
        .authenticate(auth_request(
            "uma",
            Box::new(move |snap: &dyn Snapshot| {
                assert_eq!(snap.user().username, "uma");
                assert_eq!(snap.tokens().len(), 1);
                assert_eq!(snap.backup_code(&[5; 32]).unwrap(), Some(BackupCodeState::Unused));
                assert_eq!(snap.backup_code(&[6; 32]).unwrap(), None);
                Evaluation::Decided(Verdict::Verified(Factor::Token { token_id: tid, matched: 10, drift: 0 }))
            }),
        ))
        .await
        .unwrap();
    assert!(matches!(r, Authentication::Decided { outcome: AuthOutcome::Accepted, .. }), "{r:?}");
    assert_eq!(s.token_by_id(&t.id).await.unwrap().unwrap().counter, 11);
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().last_success.unwrap().address.as_deref(), Some("192.0.2.1"));

    // deferred: nothing written
    let before = s.audit_log(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap().len();
    let r = s.authenticate(auth_request("uma", Box::new(|_| Evaluation::Deferred))).await.unwrap();
    match r {
        Authentication::Deferred { user, tokens } => {
            assert_eq!(user.id, u.id);
            assert_eq!(tokens[0].counter, 11);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.audit_log(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap().len(), before);

    // a replay is refused and not counted; a failure verdict counts like commit_attempt
    let r = s.authenticate(auth_request("uma", Box::new(|_| Evaluation::Decided(Verdict::Replayed("replayed_code")))));
    assert!(matches!(r.await, Ok(Authentication::Decided { outcome: AuthOutcome::Replayed, .. })));
    let r = s.authenticate(auth_request("uma", Box::new(|_| Evaluation::Decided(Verdict::Failed("wrong_code"))))).await;
    assert!(matches!(r, Ok(Authentication::Decided { outcome: AuthOutcome::Failed { failures: 1, .. }, .. })));
}

async fn logins_and_admin_resync_agree_on_the_floor(f: &Fixture) {
    let s = &f.store;
    let u = user("vic");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let t = token(&u, "V1", TokenState::Active, &f.keys);
    s.create_token(&t, audit("token.add")).await.unwrap();
    let p = Policy::default();
    let at50 = Verdict::Verified(Factor::Token { token_id: t.id, matched: 50, drift: 2 });
    assert_eq!(s.commit_attempt(attempt(&u, at50.clone(), &p, at(5))).await.unwrap(), AuthOutcome::Accepted);
    // every read path sees the login's state
    for got in [
        s.token_by_id(&t.id).await.unwrap().unwrap(),
        s.token_by_serial("V1").await.unwrap().unwrap(),
        s.tokens_for_user(&u.id).await.unwrap().remove(0),
        s.list_tokens(10, 0).await.unwrap().into_iter().find(|x| x.id == t.id).unwrap(),
        s.auth_subject("default", "vic").await.unwrap().unwrap().1.remove(0),
    ] {
        assert_eq!((got.counter, got.drift, got.last_used_at), (51, 2, Some(at(5))));
    }
    // an admin resync to an older floor resets the drift but never re-opens used codes
    s.resync_token(&t.id, 10, 0, audit("token.resync")).await.unwrap();
    let got = s.token_by_id(&t.id).await.unwrap().unwrap();
    assert_eq!((got.counter, got.drift, got.last_used_at), (51, 0, Some(at(5))));
    assert_eq!(s.commit_attempt(attempt(&u, at50, &p, at(6))).await.unwrap(), AuthOutcome::Replayed);
    let at51 = Verdict::Verified(Factor::Token { token_id: t.id, matched: 51, drift: 0 });
    assert_eq!(s.commit_attempt(attempt(&u, at51, &p, at(7))).await.unwrap(), AuthOutcome::Accepted);
    // a token that does not belong to the user is never accepted
    let other = user("wendy");
    s.create_user(&other, audit("user.add")).await.unwrap();
    let foreign = Verdict::Verified(Factor::Token { token_id: t.id, matched: 99, drift: 0 });
    assert_eq!(s.commit_attempt(attempt(&other, foreign, &p, at(8))).await.unwrap(), AuthOutcome::Replayed);
    // deleting the token forgets its state; reset forgets all
    s.delete_token(&t.id, audit("token.delete")).await.unwrap();
    assert!(s.token_by_id(&t.id).await.unwrap().is_none());
    s.update_user(&u.id, UserChange::Reset, audit("user.reset")).await.unwrap();
}

async fn radius_clients_crud_and_signing_flag(f: &Fixture) {
    use tessera_core::cidr::Cidr;
    use tessera_core::model::{MessageAuthenticatorMode, RadiusClient};
    let s = &f.store;
    let c = RadiusClient {
        id: 42,
        name: "vpn1".into(),
        address: Cidr::parse("10.1.0.0/16").unwrap(),
        sealed_secret: f.keys.seal(&OsRandom, Purpose::RadiusSecret, "42", b"s3cret-s3cret"),
        message_authenticator: MessageAuthenticatorMode::Auto,
        ma_seen: false,
        default_realm: Some("corp".into()),
        created_at: at(0),
        rotation: Default::default(),
    };
    s.create_radius_client(&c, audit("radius_client.add")).await.unwrap();
    assert!(matches!(
        s.create_radius_client(&RadiusClient { id: 43, ..c.clone() }, audit("x")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.radius_clients().await.unwrap(), vec![c.clone()]);
    s.mark_radius_client_signed(42).await.unwrap();
    assert!(s.radius_clients().await.unwrap()[0].ma_seen);
    let got = &s.radius_clients().await.unwrap()[0];
    assert_eq!(f.keys.open(Purpose::RadiusSecret, "42", &got.sealed_secret).unwrap().as_slice(), b"s3cret-s3cret");
    s.delete_radius_client("vpn1", audit("radius_client.delete")).await.unwrap();
    assert!(matches!(s.delete_radius_client("vpn1", audit("x")).await, Err(StoreError::NotFound(_))));
}

/// Issue 19: a RADIUS client's secret change with overlap, the record of
/// which secret is used, the expiry clean-up, and `client edit`'s update.
async fn radius_client_secret_rotation_and_edit(f: &Fixture) {
    use tessera_core::audit::AuditQuery;
    use tessera_core::cidr::Cidr;
    use tessera_core::model::{MessageAuthenticatorMode, RadiusClient, SecretRotation, SecretSlot};
    let s = &f.store;
    let c = RadiusClient {
        id: 51,
        name: "fw".into(),
        address: Cidr::parse("10.9.0.1/32").unwrap(),
        sealed_secret: f.keys.seal(&OsRandom, Purpose::RadiusSecret, "51", b"first-secret"),
        message_authenticator: MessageAuthenticatorMode::Require,
        ma_seen: false,
        default_realm: None,
        created_at: at(0),
        rotation: SecretRotation::default(),
    };
    s.create_radius_client(&c, audit("radius_client.add")).await.unwrap();
    s.create_radius_client(
        &RadiusClient { id: 52, name: "other".into(), address: Cidr::parse("10.9.0.2/32").unwrap(), ..c.clone() },
        audit("radius_client.add"),
    )
    .await
    .unwrap();
    let fw = |all: Vec<RadiusClient>| all.into_iter().find(|c| c.id == 51).unwrap();
    // A fresh client has no rotation.
    assert_eq!(fw(s.radius_clients().await.unwrap()).rotation, SecretRotation::default());

    // The change: conditional on the secret read before.
    let new_sealed = f.keys.seal(&OsRandom, Purpose::RadiusSecret, "51", b"second-secret");
    let rot = SecretRotation {
        sealed_old_secret: Some(f.keys.seal(&OsRandom, Purpose::RadiusOldSecret, "51", b"first-secret")),
        old_expires_at: Some(at(100_000)),
        old_last_used_at: None,
        changed_at: Some(at(1_000)),
        new_first_used_at: None,
    };
    let stale = f.keys.seal(&OsRandom, Purpose::RadiusSecret, "51", b"not-what-is-stored");
    assert!(matches!(
        s.set_radius_client_secret(51, &stale, &new_sealed, &rot, audit("x")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.set_radius_client_secret(999, &c.sealed_secret, &new_sealed, &rot, audit("x")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(fw(s.radius_clients().await.unwrap()).sealed_secret, c.sealed_secret, "nothing changed");
    s.set_radius_client_secret(51, &c.sealed_secret, &new_sealed, &rot, audit("radius_client.set_secret"))
        .await
        .unwrap();
    let got = fw(s.radius_clients().await.unwrap());
    assert_eq!((got.sealed_secret.clone(), got.rotation.clone()), (new_sealed.clone(), rot.clone()));
    let old = got.rotation.sealed_old_secret.as_deref().unwrap();
    assert_eq!(f.keys.open(Purpose::RadiusOldSecret, "51", old).unwrap().as_slice(), b"first-secret");
    // Sealed for its own column: not openable as the current secret, nor for another row.
    assert!(f.keys.open(Purpose::RadiusSecret, "51", old).is_err());
    assert!(f.keys.open(Purpose::RadiusOldSecret, "52", old).is_err());

    // Uses: the first of each secret is audited once; the old one's last
    // use only moves forward; a use of an earlier change is ignored.
    let uses = |action: &'static str| async move {
        let q = AuditQuery { action: Some(action.into()), limit: 100, ..Default::default() };
        s.audit_log(&q).await.unwrap().len()
    };
    assert!(s.record_radius_secret_use(51, at(1_000), SecretSlot::Old, at(5_000), audit("old_used")).await.unwrap());
    assert!(!s.record_radius_secret_use(51, at(1_000), SecretSlot::Old, at(9_000), audit("old_used")).await.unwrap());
    assert!(!s.record_radius_secret_use(51, at(1_000), SecretSlot::Old, at(7_000), audit("old_used")).await.unwrap());
    assert!(!s.record_radius_secret_use(51, at(999), SecretSlot::Old, at(20_000), audit("old_used")).await.unwrap());
    assert!(
        s.record_radius_secret_use(51, at(1_000), SecretSlot::Current, at(8_000), audit("new_used")).await.unwrap()
    );
    assert!(
        !s.record_radius_secret_use(51, at(1_000), SecretSlot::Current, at(9_500), audit("new_used")).await.unwrap()
    );
    assert_eq!((uses("old_used").await, uses("new_used").await), (1, 1));
    let got = fw(s.radius_clients().await.unwrap());
    assert_eq!(got.rotation.old_last_used_at, Some(at(9_000)));
    assert_eq!(got.rotation.new_first_used_at, Some(at(8_000)));
    // A client without a change records nothing.
    assert!(!s.record_radius_secret_use(52, at(1_000), SecretSlot::Old, at(9_000), audit("old_used")).await.unwrap());

    // Expiry clean-up: not before the expiry; once, audited once.
    assert!(!s.drop_expired_radius_secret(51, at(99_999), audit("expired")).await.unwrap());
    assert!(s.drop_expired_radius_secret(51, at(100_000), audit("expired")).await.unwrap());
    assert!(!s.drop_expired_radius_secret(51, at(200_000), audit("expired")).await.unwrap());
    assert_eq!(uses("expired").await, 1);
    let got = fw(s.radius_clients().await.unwrap());
    assert_eq!(got.rotation.sealed_old_secret, None);
    assert_eq!(got.rotation.old_expires_at, Some(at(100_000)), "kept as history");
    assert_eq!(got.sealed_secret, new_sealed);
    // Once dropped, an old-secret use is no longer recorded.
    assert!(!s.record_radius_secret_use(51, at(1_000), SecretSlot::Old, at(300_000), audit("old_used")).await.unwrap());
    assert_eq!(fw(s.radius_clients().await.unwrap()).rotation.old_last_used_at, Some(at(9_000)));

    // Edit: address, mode and realm only; the secret and the rotation stay.
    let edited = RadiusClient {
        address: Cidr::parse("10.9.1.0/24").unwrap(),
        message_authenticator: MessageAuthenticatorMode::Off,
        default_realm: Some("corp".into()),
        sealed_secret: b"ignored".to_vec(),
        ..got.clone()
    };
    s.update_radius_client(&edited, audit("radius_client.edit")).await.unwrap();
    let after = fw(s.radius_clients().await.unwrap());
    assert_eq!(after, RadiusClient { sealed_secret: got.sealed_secret.clone(), ..edited.clone() });
    assert!(matches!(
        s.update_radius_client(&RadiusClient { id: 999, ..edited }, audit("x")).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn groups_and_reply_rules(f: &Fixture) {
    use tessera_core::model::{ReplyRule, RuleScope};
    let s = &f.store;
    let a = user("ann");
    let b = user("ben");
    s.create_user(&a, audit("user.add")).await.unwrap();
    s.create_user(&b, audit("user.add")).await.unwrap();
    s.add_group_member("vpn admins", a.id, audit("group.add")).await.unwrap();
    s.add_group_member("staff", a.id, audit("group.add")).await.unwrap();
    s.add_group_member("staff", b.id, audit("group.add")).await.unwrap();
    assert!(matches!(s.add_group_member("staff", b.id, audit("x")).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.add_group_member("staff", UserId(1), audit("x")).await, Err(StoreError::NotFound(_))));
    assert_eq!(s.groups_of(a.id).await.unwrap(), ["staff", "vpn admins"]);
    let groups = s.groups().await.unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].0, "staff");
    assert_eq!(groups[0].1.len(), 2);
    s.remove_group_member("staff", b.id, audit("group.remove")).await.unwrap();
    assert!(s.groups_of(b.id).await.unwrap().is_empty());
    // deleting a user drops their memberships
    s.update_user(&a.id, UserChange::Delete, audit("user.delete")).await.unwrap();
    assert!(s.groups().await.unwrap().is_empty());

    let r1 = ReplyRule {
        id: 1,
        scope: RuleScope::Group("staff".into()),
        attribute: "Filter-Id".into(),
        value: "staff".into(),
        created_at: at(1),
    };
    let r2 = ReplyRule {
        id: 2,
        scope: RuleScope::All,
        attribute: "Session-Timeout".into(),
        value: "3600".into(),
        created_at: at(2),
    };
    s.create_reply_rule(&r1, audit("reply_rule.add")).await.unwrap();
    s.create_reply_rule(&r2, audit("reply_rule.add")).await.unwrap();
    assert_eq!(s.reply_rules().await.unwrap(), vec![r1, r2]);
    s.delete_reply_rule(1, audit("reply_rule.delete")).await.unwrap();
    assert_eq!(s.reply_rules().await.unwrap().len(), 1);
    assert!(matches!(s.delete_reply_rule(1, audit("x")).await, Err(StoreError::NotFound(_))));
}

async fn realms_crud_and_cache_generation(f: &Fixture) {
    use tessera_core::realm::{LdapSettings, Realm, RealmSettings, SourceSettings};
    let s = &f.store;
    assert!(s.realms().await.unwrap().is_empty());
    let ldap = LdapSettings {
        urls: vec!["ldaps://dc1.example.org".into()],
        starttls: false,
        ca_file: None,
        pinned_sha256: None,
        bind_template: Some("uid={user},dc=example,dc=org".into()),
        bind_dn: None,
        base_dn: None,
        filter: None,
        group_mode: "none".into(),
        member_of_attribute: "memberOf".into(),
        group_base_dn: None,
        group_filter: None,
        group_name_attribute: "cn".into(),
        username_attribute: "uid".into(),
        connect_timeout_ms: 1000,
        timeout_ms: 1000,
        pool_size: 2,
    };
    let mut r = Realm {
        name: "corp".into(),
        settings: RealmSettings {
            sources: vec![SourceSettings::Ldap(ldap)],
            cache_ttl_seconds: 60,
            auto_provision: true,
        },
        sealed_secrets: vec![1, 2, 3],
        created_at: at(0),
        updated_at: at(0),
    };
    s.put_realm(&r, audit("realm.put")).await.unwrap();
    assert_eq!(s.realms().await.unwrap(), vec![r.clone()]);
    // put replaces, keeping the creation time it is given
    r.settings.cache_ttl_seconds = 0;
    r.updated_at = at(5);
    s.put_realm(&r, audit("realm.put")).await.unwrap();
    assert_eq!(s.realms().await.unwrap(), vec![r.clone()]);
    assert_eq!(s.directory_cache_generation().await.unwrap(), 0);
    assert_eq!(s.bump_directory_cache_generation(audit("directory.flush_cache")).await.unwrap(), 1);
    assert_eq!(s.bump_directory_cache_generation(audit("directory.flush_cache")).await.unwrap(), 2);
    assert_eq!(s.directory_cache_generation().await.unwrap(), 2);
    s.delete_realm("corp", audit("realm.delete")).await.unwrap();
    assert!(matches!(s.delete_realm("corp", audit("realm.delete")).await, Err(StoreError::NotFound(_))));
    assert!(s.realms().await.unwrap().is_empty());
}

async fn parallel_grace_logins_stop_at_the_limit(f: &Fixture) {
    let s = &f.store;
    let u = user("newbie");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let p = Policy { grace_logins: 3, ..Policy::default() };
    let v = Verdict::Verified(Factor::Grace { limit: Some(3) });
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let s = s.clone();
            let a = attempt(&u, v.clone(), &p, at(1));
            tokio::spawn(async move { s.commit_attempt(a).await.unwrap() })
        })
        .collect();
    let outcomes: Vec<AuthOutcome> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == AuthOutcome::Accepted).count(), 3, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, AuthOutcome::Accepted | AuthOutcome::Refused)));
    let got = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.grace_used, 3);
    // the refusals are audited as such
    let log = s.audit_log(&AuditQuery { limit: 100, ..AuditQuery::default() }).await.unwrap();
    assert_eq!(log.iter().filter(|a| a.reason.as_deref() == Some("grace_exhausted")).count(), 9);
    // a reset gives a new grace
    s.update_user(&u.id, UserChange::Reset, audit("user.reset")).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().grace_used, 0);
}

async fn single_factor_exception_accepts_without_a_token(f: &Fixture) {
    let s = &f.store;
    let u = user("svc");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let p = Policy::default();
    let out = s.commit_attempt(attempt(&u, Verdict::Verified(Factor::FirstFactorOnly), &p, at(1))).await.unwrap();
    assert_eq!(out, AuthOutcome::Accepted);
    let got = s.user_by_id(&u.id).await.unwrap().unwrap();
    assert!(got.last_success.is_some());
    // a disabled user stays out
    s.update_user(&u.id, UserChange::SetDisabled(true), audit("user.disable")).await.unwrap();
    let out = s.commit_attempt(attempt(&u, Verdict::Verified(Factor::FirstFactorOnly), &p, at(2))).await.unwrap();
    assert_eq!(out, AuthOutcome::Disabled);
}

async fn inventory_assign_unassign_keeps_the_floor(f: &Fixture) {
    use tessera_core::model::InventoryToken;
    use tessera_core::store::InventoryQuery;
    let s = &f.store;
    let item = |id: i64, serial: &str, model: &str| InventoryToken {
        id,
        serial: serial.into(),
        params: OtpParams::default(),
        sealed_secret: vec![7; 40],
        counter: 0,
        manufacturer: Some("Acme".into()),
        model: Some(model.into()),
        token_id: None,
        assigned_to: None,
        imported_at: at(0),
    };
    s.add_inventory(&[item(1, "HW-1", "K1"), item(2, "HW-2", "K2")], audit("inventory.import")).await.unwrap();
    // all or none: one duplicate serial adds nothing
    let dup = s.add_inventory(&[item(3, "HW-3", "K1"), item(4, "HW-1", "K1")], audit("inventory.import")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(s.inventory_item("HW-3").await.unwrap().is_none());
    let all = InventoryQuery { limit: 100, ..InventoryQuery::default() };
    assert_eq!(s.inventory(&all).await.unwrap().len(), 2);
    let k1 = InventoryQuery { model: Some("K1".into()), ..all.clone() };
    assert_eq!(s.inventory(&k1).await.unwrap().len(), 1);

    let u = user("hw-user");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let mut t = token(&u, "HW-1", TokenState::Active, &f.keys);
    t.counter = 0;
    s.assign_inventory(1, &t, audit("inventory.assign")).await.unwrap();
    let got = s.inventory_item("HW-1").await.unwrap().unwrap();
    assert_eq!((got.token_id, got.assigned_to), (Some(t.id), Some(u.id)));
    assert!(s.user_by_id(&u.id).await.unwrap().unwrap().registered);
    // twice is a conflict
    let mut t2 = token(&u, "HW-1b", TokenState::Active, &f.keys);
    t2.serial = "HW-1".into();
    assert!(matches!(s.assign_inventory(1, &t2, audit("inventory.assign")).await, Err(StoreError::Conflict(_))));
    let assigned = InventoryQuery { assigned: Some(true), ..all.clone() };
    assert_eq!(s.inventory(&assigned).await.unwrap().len(), 1);
    // a login moves the floor; unassigning keeps it with the seed
    let p = Policy::default();
    let v = Verdict::Verified(Factor::Token { token_id: t.id, matched: 41, drift: 0 });
    assert_eq!(s.commit_attempt(attempt(&u, v, &p, at(1))).await.unwrap(), AuthOutcome::Accepted);
    s.unassign_inventory(1, audit("inventory.unassign")).await.unwrap();
    let got = s.inventory_item("HW-1").await.unwrap().unwrap();
    assert_eq!((got.token_id, got.assigned_to, got.counter), (None, None, 42));
    assert!(s.token_by_id(&t.id).await.unwrap().is_none());
    assert!(!s.user_by_id(&u.id).await.unwrap().unwrap().registered);
    assert!(matches!(s.unassign_inventory(1, audit("inventory.unassign")).await, Err(StoreError::NotFound(_))));
    // deleting an assigned token (or its user) returns the seed too
    let mut t3 = token(&u, "HW-2", TokenState::Active, &f.keys);
    t3.serial = "HW-2".into();
    s.assign_inventory(2, &t3, audit("inventory.assign")).await.unwrap();
    let v = Verdict::Verified(Factor::Token { token_id: t3.id, matched: 7, drift: 0 });
    s.commit_attempt(attempt(&u, v, &p, at(2))).await.unwrap();
    s.delete_token(&t3.id, audit("token.delete")).await.unwrap();
    let got = s.inventory_item("HW-2").await.unwrap().unwrap();
    assert_eq!((got.token_id, got.counter), (None, 8));
    // a serial used by a user's token cannot be imported
    s.create_token(&token(&u, "USR-1", TokenState::Active, &f.keys), audit("token.add")).await.unwrap();
    let taken = s.add_inventory(&[item(5, "USR-1", "K1")], audit("inventory.import")).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
}

/// Master key rotation through the store port: every sealed column re-sealed,
/// conditional replacement, resumption, and the new key alone opens it all.
async fn key_rotation_reseals_everything_and_is_resumable(f: &Fixture) {
    use tessera_core::cidr::Cidr;
    use tessera_core::model::{InventoryToken, MessageAuthenticatorMode, RadiusClient};
    use tessera_core::rotation::{self, ResealReport};
    use tessera_core::store::{MetaKey, SealedChange, SealedColumn};
    let s = &f.store;
    let old = &f.keys;
    let code_digest = old.backup_code_digest("u1", "11112222");
    for i in 0..25 {
        let u = user(&format!("rot{i}"));
        s.create_user(&u, audit("user.add")).await.unwrap();
        s.create_token(&token(&u, &format!("ROT-{i}"), TokenState::Active, old), audit("token.add")).await.unwrap();
    }
    let inv = InventoryToken {
        id: 77,
        serial: "INV-77".into(),
        params: OtpParams::default(),
        sealed_secret: old.seal(&OsRandom, Purpose::OtpSecret, &InventoryToken::seal_row(77), b"inventory-seed"),
        counter: 0,
        manufacturer: None,
        model: None,
        token_id: None,
        assigned_to: None,
        imported_at: at(0),
    };
    s.add_inventory(&[inv], audit("inventory.import")).await.unwrap();
    let client = RadiusClient {
        id: 9,
        name: "nas".into(),
        address: Cidr::parse("127.0.0.1/32").unwrap(),
        sealed_secret: old.seal(&OsRandom, Purpose::RadiusSecret, "9", b"radius-secret"),
        message_authenticator: MessageAuthenticatorMode::Require,
        ma_seen: false,
        default_realm: None,
        created_at: at(0),
        rotation: Default::default(),
    };
    s.create_radius_client(&client, audit("radius_client.add")).await.unwrap();
    // A client in a secret rotation's overlap: its old secret is sealed too.
    let overlap = tessera_core::model::SecretRotation {
        sealed_old_secret: Some(old.seal(&OsRandom, Purpose::RadiusOldSecret, "9", b"radius-secret")),
        old_expires_at: Some(at(3_600_000)),
        changed_at: Some(at(0)),
        ..Default::default()
    };
    let new_sealed = old.seal(&OsRandom, Purpose::RadiusSecret, "9", b"radius-secret-2");
    s.set_radius_client_secret(9, &client.sealed_secret, &new_sealed, &overlap, audit("radius_client.set_secret"))
        .await
        .unwrap();
    rotation::ensure_backup_mac_key(&**s, old, &OsRandom).await.unwrap();

    let before = rotation::census(&**s, old, true, 7).await.unwrap();
    assert_eq!(before.unreadable_count, 0);
    // 25 tokens, 1 inventory seed, 1 client and its old secret, key check,
    // backup code key.
    assert_eq!(before.total(), 30);
    assert_eq!(before.by_key.get(&old.key_id()), Some(&30));
    let first = s.sealed_values(SealedColumn::TokenSecret, None, 1).await.unwrap().remove(0);

    // The rotation's keyring: new primary, the old key still opens.
    let new_master = MasterKey::generate(&OsRandom);
    let both = Keyring::with_previous(&new_master, std::slice::from_ref(&f.master));
    let mut batches = 0;
    let done = rotation::reseal_all(&**s, &both, &OsRandom, 5, &mut |_, _: &ResealReport| batches += 1).await.unwrap();
    assert!(batches >= 6, "{batches}");
    assert_eq!((done.resealed, done.current, done.raced), (30, 0, 0));
    // Running it again (resuming an interrupted rotation) changes nothing.
    let again = rotation::reseal_all(&**s, &both, &OsRandom, 5, &mut |_, _| {}).await.unwrap();
    assert_eq!((again.resealed, again.current, again.raced), (0, 30, 0));
    // A stale value is never written over a newer one.
    let stale = SealedChange { row: first.row.clone(), old: first.sealed.clone(), new: b"x".to_vec() };
    assert_eq!(s.replace_sealed(SealedColumn::TokenSecret, vec![stale]).await.unwrap(), 0);

    // The new key alone opens every value, the backup code key included.
    let rotated = Keyring::new(&new_master);
    rotated.set_backup_mac_key(&s.meta_value(MetaKey::BackupMacKey).await.unwrap().unwrap()).unwrap();
    let after = rotation::census(&**s, &rotated, true, 3).await.unwrap();
    assert_eq!(after.unreadable_count, 0, "{:?}", after.unreadable);
    assert_eq!((after.total(), after.not_under(&rotated.key_id())), (30, 0));
    let nas = &s.radius_clients().await.unwrap()[0];
    let old_secret = nas.rotation.sealed_old_secret.as_deref().unwrap();
    assert_eq!(rotated.open(Purpose::RadiusOldSecret, "9", old_secret).unwrap().as_slice(), b"radius-secret");
    assert_eq!(rotated.backup_code_digest("u1", "11112222"), code_digest);
    let check = s.meta_value(MetaKey::KeyCheck).await.unwrap().unwrap();
    rotated.verify_check_value(&check).unwrap();
    assert!(matches!(old.verify_check_value(&check), Err(tessera_core::keys::KeyError::WrongKey { .. })));
    let old_id = old.key_id();

    // Markers and node reports round-trip.
    let m = rotation::RotationMarker {
        state: rotation::RotationState::Running,
        from: old_id.clone(),
        to: rotated.key_id(),
        started_at: at(1),
        finished_at: None,
        next_key: Some(old.seal_master_key(&OsRandom, &new_master)),
    };
    s.set_meta_value(MetaKey::KeyRotation, Some(m.to_bytes()), Some(audit("key.rotate"))).await.unwrap();
    let read = rotation::marker(&**s).await.unwrap().unwrap();
    assert_eq!(read, m);
    // Every node holding the old key takes the new one from the marker.
    assert_eq!(tessera_core::keys::key_id_of(&read.open_next_key(old).unwrap()), rotated.key_id());
    s.set_meta_value(MetaKey::NodeKey("n1"), Some(b"{}".to_vec()), None).await.unwrap();
    assert_eq!(s.meta_value(MetaKey::NodeKey("n1")).await.unwrap().as_deref(), Some(&b"{}"[..]));
    s.set_meta_value(MetaKey::NodeKey("n1"), None, None).await.unwrap();
    assert_eq!(s.meta_value(MetaKey::NodeKey("n1")).await.unwrap(), None);
}

async fn node_key_reports_list_every_node(f: &Fixture) {
    use tessera_core::rotation::{self, NodeKeyReport};
    use tessera_core::store::MetaKey;
    let s = &f.store;
    assert_eq!(s.node_key_reports().await.unwrap(), vec![]);
    let report =
        |key: &str, secs: i64| NodeKeyReport { key_id: key.into(), previous: vec![], at: at(secs), version: None };
    // Node names are free text: an underscore or percent sign must not act
    // as a pattern, and a name that merely starts like the prefix is not one.
    for (node, r) in [("node-b", report("bbbb", 100)), ("node_a", report("aaaa", 100)), ("n%", report("cccc", 100))] {
        s.set_meta_value(MetaKey::NodeKey(node), Some(serde_json::to_vec(&r).unwrap()), None).await.unwrap();
    }
    s.set_meta_value(MetaKey::SyslogCursor("node-b"), Some(b"17".to_vec()), None).await.unwrap();
    let listed: Vec<String> = s.node_key_reports().await.unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(listed, vec!["n%", "node-b", "node_a"]);
    // An update replaces the node's one report.
    s.set_meta_value(MetaKey::NodeKey("node-b"), Some(serde_json::to_vec(&report("dddd", 200)).unwrap()), None)
        .await
        .unwrap();
    let reports = rotation::node_reports(&**s, "node-b").await.unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports.iter().find(|(n, _)| n == "node-b").unwrap().1, report("dddd", 200));
    // Who a rotation to `dddd` still waits for at t = 200 s: the two others
    // (alive); at t = 300 s nobody, they have been silent for 2 minutes.
    let waiting: Vec<&str> =
        rotation::lagging_nodes(&reports, "dddd", at(200)).iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(waiting, vec!["n%", "node_a"]);
    assert!(rotation::lagging_nodes(&reports, "dddd", at(300)).is_empty());
    s.set_meta_value(MetaKey::NodeKey("node_a"), None, None).await.unwrap();
    assert_eq!(s.node_key_reports().await.unwrap().len(), 2);
}

async fn database_clock_is_measured_where_there_is_a_server(f: &Fixture) {
    // The store's first connection was measured when it was made.
    let on_connect = f.store.connection_clock_sample();
    match f.store.measure_database_clock().await.unwrap() {
        // Embedded: no other clock to compare with.
        None => assert_eq!(on_connect, None),
        Some(sample) => {
            let first = on_connect.expect("a sample from the first connection");
            // Same machine: the two clocks agree to within the round trip.
            for s in [first, sample] {
                assert!(s.offset_ms.abs() <= s.round_trip_ms / 2 + 50, "{s:?}");
                assert!(s.round_trip_ms < 5_000, "{s:?}");
            }
            assert!(sample.at >= first.at);
            assert_eq!(f.store.connection_clock_sample(), Some(sample), "the latest sample is kept");
        }
    }
}

fn oob_token(user: &User, serial: &str, channel: OobChannel, address: &str, keys: &Keyring) -> Token {
    Token {
        oob: Some(OobTarget { channel, address: address.into() }),
        params: OtpParams { kind: tessera_otp::OtpKind::Hotp, ..OtpParams::default() },
        ..token(user, serial, TokenState::Active, keys)
    }
}

fn oob_code(user: &User, token: &Token, created: Timestamp, ttl_s: i64) -> OobCode {
    OobCode {
        id: TokenId::new_random().0,
        user_id: user.id,
        token_id: token.id,
        digest: [9; 32],
        created_at: created,
        expires_at: created.plus_seconds(ttl_s),
        attempts: 0,
        used_at: None,
    }
}

async fn oob_tokens_round_trip(f: &Fixture) {
    let s = &f.store;
    let u = user("olga");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let mail = oob_token(&u, "MAIL1", OobChannel::Email, "olga@example.com", &f.keys);
    let sms = oob_token(&u, "SMS1", OobChannel::Sms, "+4915112345678", &f.keys);
    s.create_token(&mail, audit("token.add_email")).await.unwrap();
    s.create_token(&sms, audit("token.add_sms")).await.unwrap();
    assert_eq!(s.token_by_serial("MAIL1").await.unwrap().unwrap(), mail);
    assert_eq!(s.tokens_for_user(&u.id).await.unwrap().len(), 2);
    assert_eq!(s.token_by_id(&sms.id).await.unwrap().unwrap().oob, sms.oob);
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap().status(at(1)), UserStatus::Active);
    let (_, tokens) = s.auth_subject("default", "olga").await.unwrap().unwrap();
    assert!(tokens.iter().all(|t| t.oob.is_some()));
    s.delete_token(&mail.id, audit("token.delete")).await.unwrap();
    assert_eq!(s.tokens_for_user(&u.id).await.unwrap(), vec![sms]);
}

async fn oob_code_single_use_under_concurrent_submits(f: &Fixture) {
    let s = &f.store;
    let u = user("oscar");
    s.create_user(&u, audit("user.add")).await.unwrap();
    let t = oob_token(&u, "MAIL2", OobChannel::Email, "oscar@example.com", &f.keys);
    s.create_token(&t, audit("token.add_email")).await.unwrap();
    let code = oob_code(&u, &t, at(1), 300);
    assert!(s.reserve_oob_code(&code, at(-600), 3).await.unwrap());
    assert_eq!(s.oob_codes(&u.id, at(0)).await.unwrap(), vec![code.clone()]);
    assert!(s.oob_codes(&u.id, at(1)).await.unwrap().is_empty(), "created after `since` only");

    // the evaluator sees the codes inside the serialised step
    let seen = s
        .authenticate(auth_request(
            "oscar",
            Box::new(|snap: &dyn Snapshot| {
                assert_eq!(snap.oob_codes(at(0)).unwrap().len(), 1);
                Evaluation::Deferred
            }),
        ))
        .await
        .unwrap();
    assert!(matches!(seen, Authentication::Deferred { .. }));

    // 20 parallel submits of the same code: one accept, the rest replays
    let p = Policy { lockout_threshold: 10, ..Policy::default() };
    let v = Verdict::Verified(Factor::OobCode { id: code.id, channel: OobChannel::Email });
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            let a = attempt(&u, v.clone(), &p, at(2));
            tokio::spawn(async move { s.commit_attempt(a).await.unwrap() })
        })
        .collect();
    let outcomes: Vec<AuthOutcome> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == AuthOutcome::Accepted).count(), 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(o, AuthOutcome::Accepted | AuthOutcome::Replayed | AuthOutcome::Locked)),
        "{outcomes:?}"
    );
    assert_eq!(s.oob_codes(&u.id, at(0)).await.unwrap()[0].used_at, Some(at(2)));
    s.update_user(&u.id, UserChange::Unlock, audit("user.unlock")).await.unwrap();

    // an expired code is refused
    let late = oob_code(&u, &t, at(10), 5);
    assert!(s.reserve_oob_code(&late, at(-600), 3).await.unwrap());
    let v = Verdict::Verified(Factor::OobCode { id: late.id, channel: OobChannel::Email });
    assert_eq!(s.commit_attempt(attempt(&u, v, &p, at(15))).await.unwrap(), AuthOutcome::Replayed);

    // wrong codes wear a pending code out
    let worn = oob_code(&u, &t, at(20), 300);
    assert!(s.reserve_oob_code(&worn, at(-600), 3).await.unwrap());
    for i in 0..tessera_core::oob::MAX_CODE_ATTEMPTS {
        let a = attempt(&u, Verdict::Failed("wrong_code"), &p, at(21 + i64::from(i)));
        assert!(matches!(s.commit_attempt(a).await.unwrap(), AuthOutcome::Failed { .. }));
    }
    let row = s.oob_codes(&u.id, at(19)).await.unwrap().into_iter().find(|c| c.id == worn.id).unwrap();
    assert_eq!(row.attempts, tessera_core::oob::MAX_CODE_ATTEMPTS);
    let v = Verdict::Verified(Factor::OobCode { id: worn.id, channel: OobChannel::Email });
    assert_eq!(s.commit_attempt(attempt(&u, v, &p, at(30))).await.unwrap(), AuthOutcome::Replayed);

    // reset forgets them
    s.update_user(&u.id, UserChange::Reset, audit("user.reset")).await.unwrap();
    assert!(s.oob_codes(&u.id, at(-1000)).await.unwrap().is_empty());
}

async fn oob_send_limit_per_user_holds_under_concurrency(f: &Fixture) {
    let s = &f.store;
    let u = user("petra");
    let other = user("quentin");
    s.create_user(&u, audit("user.add")).await.unwrap();
    s.create_user(&other, audit("user.add")).await.unwrap();
    let t = oob_token(&u, "SMS2", OobChannel::Sms, "+4915112345670", &f.keys);
    s.create_token(&t, audit("token.add_sms")).await.unwrap();
    // 10 parallel sends with a limit of 3 per 600 s: exactly 3 go out
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = s.clone();
            let c = oob_code(&u, &t, at(100), 300);
            tokio::spawn(async move { s.reserve_oob_code(&c, at(100 - 600), 3).await.unwrap() })
        })
        .collect();
    let sent = futures::future::join_all(tasks).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(sent, 3);
    assert_eq!(s.oob_codes(&u.id, at(0)).await.unwrap().len(), 3);
    // the limit is per user
    assert!(s.reserve_oob_code(&oob_code(&other, &t, at(100), 300), at(100 - 600), 3).await.unwrap());
    // once the window has moved past them, sending works again (and the old rows go)
    assert!(!s.reserve_oob_code(&oob_code(&u, &t, at(650), 300), at(650 - 600), 3).await.unwrap());
    assert!(s.reserve_oob_code(&oob_code(&u, &t, at(701), 300), at(701 - 600), 3).await.unwrap());
    assert_eq!(s.oob_codes(&u.id, at(0)).await.unwrap().len(), 1);
    // a missing user is NotFound
    let ghost = user("ghost");
    assert!(matches!(
        s.reserve_oob_code(&oob_code(&ghost, &t, at(1), 300), at(0), 3).await,
        Err(StoreError::NotFound(_))
    ));
    // old rows are pruned with used states
    s.prune_states(at(701 + 2 * 86_400)).await.unwrap();
    assert!(s.oob_codes(&u.id, at(-1)).await.unwrap().is_empty());
}

fn admin_account(name: &str) -> tessera_core::model::AdminAccount {
    tessera_core::model::AdminAccount {
        id: tessera_core::model::AdminId::new_random(),
        name: name.into(),
        password_hash: "$argon2id$placeholder".into(),
        totp_secret: None,
        totp_floor: 0,
        lock: LockState::default(),
        created_at: at(0),
        last_login_at: None,
        last_login_from: None,
    }
}

fn admin_attempt(
    a: &tessera_core::model::AdminAccount,
    verdict: tessera_core::store::AdminVerdict,
    policy: &Policy,
    t: Timestamp,
) -> tessera_core::store::AdminAttempt {
    tessera_core::store::AdminAttempt {
        admin: a.id,
        verdict,
        policy: policy.clone(),
        at: t,
        from: Some("198.51.100.4".into()),
        audit: audit("admin.signin"),
    }
}

async fn admins_lifecycle_lockout_replay_and_sealing(f: &Fixture) {
    use tessera_core::store::{AdminChange, AdminVerdict, SealedChange, SealedColumn};
    let s = &f.store;
    let root = admin_account("root");
    let other = admin_account("ops");
    s.create_admin(&root, audit("admin.add")).await.unwrap();
    s.create_admin(&other, audit("admin.add")).await.unwrap();
    assert!(matches!(s.create_admin(&admin_account("root"), audit("admin.add")).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.admin_by_name("root").await.unwrap().as_ref(), Some(&root));
    assert_eq!(s.admin_by_id(&other.id).await.unwrap().as_ref(), Some(&other));
    assert_eq!(s.admin_by_name("nobody").await.unwrap(), None);
    let names: Vec<String> = s.list_admins().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["ops", "root"]);

    // 10 parallel wrong passwords with a threshold of 3 count exactly 3 and lock.
    let policy = Policy { lockout_threshold: 3, auto_unlock_seconds: 600, ..Policy::default() };
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = s.clone();
            let a = admin_attempt(&root, AdminVerdict::Failed("wrong_password"), &policy, at(10));
            tokio::spawn(async move { s.commit_admin_attempt(a).await.unwrap() })
        })
        .collect();
    let outcomes: Vec<AuthOutcome> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| matches!(o, AuthOutcome::Failed { .. })).count(), 3);
    assert_eq!(outcomes.iter().filter(|o| **o == AuthOutcome::Locked).count(), 7);
    let locked = s.admin_by_id(&root.id).await.unwrap().unwrap();
    assert_eq!(locked.lock.failures, 3);
    assert!(locked.lock.is_locked(at(11)));
    // Locked: even a verified step is refused and consumes nothing.
    let v = admin_attempt(&root, AdminVerdict::Verified { step: 5 }, &policy, at(20));
    assert_eq!(s.commit_admin_attempt(v).await.unwrap(), AuthOutcome::Locked);

    // Reset unlocks; enrolling stores the sealed secret and floor once.
    s.update_admin(&root.id, AdminChange::Reset { password_hash: None }, audit("admin.reset")).await.unwrap();
    let sealed = f.keys.seal(&OsRandom, Purpose::AdminTotp, &root.id.to_string(), b"admin-totp-secret-20b");
    let enroll =
        |sealed: Vec<u8>| AdminChange::EnrollTotp { sealed, floor: 100, at: at(30), from: Some("198.51.100.4".into()) };
    s.update_admin(&root.id, enroll(sealed.clone()), audit("admin.totp_enroll")).await.unwrap();
    assert!(matches!(
        s.update_admin(&root.id, enroll(b"other".to_vec()), audit("admin.totp_enroll")).await,
        Err(StoreError::Conflict(_))
    ));
    let enrolled = s.admin_by_id(&root.id).await.unwrap().unwrap();
    assert_eq!((enrolled.totp_secret.as_deref(), enrolled.totp_floor), (Some(&sealed[..]), 100));
    assert_eq!((enrolled.lock, enrolled.last_login_at), (LockState::default(), Some(at(30))));

    // A step below the floor is a replay (counted); at or above it is accepted once.
    let replay = admin_attempt(&root, AdminVerdict::Verified { step: 99 }, &policy, at(40));
    assert!(matches!(
        s.commit_admin_attempt(replay).await.unwrap(),
        AuthOutcome::Failed { replay: true, failures: 1, .. }
    ));
    let ok = admin_attempt(&root, AdminVerdict::Verified { step: 101 }, &policy, at(41));
    assert_eq!(s.commit_admin_attempt(ok.clone()).await.unwrap(), AuthOutcome::Accepted);
    assert!(matches!(s.commit_admin_attempt(ok).await.unwrap(), AuthOutcome::Failed { replay: true, .. }));
    let after = s.admin_by_id(&root.id).await.unwrap().unwrap();
    assert_eq!((after.totp_floor, after.last_login_from.as_deref()), (102, Some("198.51.100.4")));

    // Key rotation sees enrolled admins only, and replaces conditionally.
    let values = s.sealed_values(SealedColumn::AdminTotpSecret, None, 10).await.unwrap();
    assert_eq!(values.len(), 1);
    assert_eq!((values[0].row.as_str(), &values[0].sealed), (root.id.to_string().as_str(), &sealed));
    let change = SealedChange { row: values[0].row.clone(), old: sealed.clone(), new: b"resealed".to_vec() };
    assert_eq!(s.replace_sealed(SealedColumn::AdminTotpSecret, vec![change.clone()]).await.unwrap(), 1);
    assert_eq!(s.replace_sealed(SealedColumn::AdminTotpSecret, vec![change]).await.unwrap(), 0);

    // New password; delete; a deleted admin is NotFound and its attempts refused.
    s.update_admin(&other.id, AdminChange::SetPassword("$argon2id$new".into()), audit("admin.passwd")).await.unwrap();
    assert_eq!(s.admin_by_id(&other.id).await.unwrap().unwrap().password_hash, "$argon2id$new");
    s.update_admin(&other.id, AdminChange::Delete, audit("admin.delete")).await.unwrap();
    assert!(matches!(
        s.update_admin(&other.id, AdminChange::Delete, audit("admin.delete")).await,
        Err(StoreError::NotFound(_))
    ));
    let gone = admin_attempt(&other, AdminVerdict::Failed("wrong_password"), &policy, at(50));
    assert_eq!(s.commit_admin_attempt(gone).await.unwrap(), AuthOutcome::Refused);

    // Every attempt was audited with its outcome.
    let q = AuditQuery { action: Some("admin.signin".into()), limit: 100, ..AuditQuery::default() };
    let log = s.audit_log(&q).await.unwrap();
    assert_eq!(log.len(), 15);
    assert!(log.iter().any(|r| r.result == AuditResult::Accept && r.reason.as_deref() == Some("password_and_otp")));
    assert!(log.iter().any(|r| r.reason.as_deref() == Some("wrong_password; failure 3, now locked")));
}
