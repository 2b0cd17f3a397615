//! Primary/replica replication at the storage level: a snapshot and the
//! change stream make a replica's replicated tables equal to the primary's,
//! deletions included, and login state never moves backwards on apply.

mod common;
use common::{active_token, at, user};
use tessera_core::audit::{Actor, AuditRecord};
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::random::OsRandom;
use tessera_core::replication::ChangePage;
use tessera_core::store::UserChange;
use tessera_core::store::prelude::*;
use tessera_store::sqlite::replication::ReplicationLog;
use tessera_store::{SqliteOptions, SqliteStore};

fn audit(action: &str) -> AuditRecord {
    AuditRecord::new(at(0), "n", &Actor::new("test"), action)
}

fn sync(from: &ReplicationLog, to: &ReplicationLog) {
    let mut pos = to.state().unwrap().position;
    for _ in 0..100 {
        let (head, images) = from.changes_after(pos, 7).unwrap().expect("within retention");
        let Some(last) = images.last().map(|i| i.seq) else { return };
        to.apply(&ChangePage { epoch: 1, head, images, time_ms: 0 }, last).unwrap();
        pos = last;
    }
    panic!("did not catch up in 100 pages");
}

#[tokio::test]
async fn snapshot_then_changes_converge_including_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let p = SqliteStore::create(&SqliteOptions::new(dir.path().join("p.db")), &keys, &OsRandom, at(0)).unwrap();
    let r = SqliteStore::create(&SqliteOptions::new(dir.path().join("r.db")), &keys, &OsRandom, at(0)).unwrap();
    let (plog, rlog) = (ReplicationLog::new(&dir.path().join("p.db")), ReplicationLog::new(&dir.path().join("r.db")));

    let alice = user("alice");
    p.create_user(&alice, audit("user.add")).await.unwrap();
    p.create_token(&active_token(&alice, "T1", &keys), audit("token.add")).await.unwrap();
    let mut images = Vec::new();
    let head = plog
        .snapshot(|i| {
            images.push(i);
            Ok(())
        })
        .unwrap();
    assert!(head > 0);
    rlog.install_snapshot(images, head, 1).unwrap();
    let on_primary = p.user_by_name("default", "alice").await.unwrap().unwrap();
    assert_eq!(r.user_by_name("default", "alice").await.unwrap().unwrap(), on_primary);
    assert_eq!(r.tokens_for_user(&alice.id).await.unwrap().len(), 1);

    // Changes after the snapshot: a new user with a token, a disabled user,
    // a deleted token; a child created before its parent's later update.
    let bob = user("bob");
    p.create_user(&bob, audit("user.add")).await.unwrap();
    p.create_token(&active_token(&bob, "T2", &keys), audit("token.add")).await.unwrap();
    p.update_user(&bob.id, UserChange::SetDisabled(true), audit("user.disable")).await.unwrap();
    let t1 = p.tokens_for_user(&alice.id).await.unwrap().remove(0);
    p.delete_token(&t1.id, audit("token.delete")).await.unwrap();
    sync(&plog, &rlog);
    assert!(r.user_by_name("default", "bob").await.unwrap().unwrap().disabled);
    assert_eq!(r.tokens_for_user(&bob.id).await.unwrap().len(), 1);
    assert!(r.tokens_for_user(&alice.id).await.unwrap().is_empty(), "deletion replicated");

    // A user deleted on the primary takes its tokens on the replica too.
    p.update_user(&bob.id, UserChange::Delete, audit("user.delete")).await.unwrap();
    sync(&plog, &rlog);
    assert!(r.user_by_name("default", "bob").await.unwrap().is_none());
    assert!(r.token_by_serial("T2").await.unwrap().is_none());
    assert_eq!(r.policy().await.unwrap(), p.policy().await.unwrap());

    // Deletions pruned: a follower behind the horizon must re-snapshot.
    let head = plog.head().unwrap();
    plog.prune_deletions(i64::MAX).unwrap();
    assert!(plog.changes_after(0, 10).unwrap().is_none());
    assert!(plog.changes_after(head, 10).unwrap().is_some());
}

/// A login a replica accepted (and may not have forwarded yet) stays used
/// through a new snapshot from a primary that has not seen it.
#[tokio::test]
async fn a_new_snapshot_keeps_codes_used_locally() {
    use tessera_core::model::AccessRecord;
    use tessera_core::store::{AuthAttempt, AuthOutcome, Factor, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let p = SqliteStore::create(&SqliteOptions::new(dir.path().join("p.db")), &keys, &OsRandom, at(0)).unwrap();
    let r = SqliteStore::create(&SqliteOptions::new(dir.path().join("r.db")), &keys, &OsRandom, at(0)).unwrap();
    let (plog, rlog) = (ReplicationLog::new(&dir.path().join("p.db")), ReplicationLog::new(&dir.path().join("r.db")));
    let snapshot = || {
        let mut images = Vec::new();
        let head = plog
            .snapshot(|i| {
                images.push(i);
                Ok(())
            })
            .unwrap();
        rlog.install_snapshot(images, head, 1).unwrap();
    };
    let alice = user("alice");
    p.create_user(&alice, audit("user.add")).await.unwrap();
    let t = active_token(&alice, "T1", &keys);
    p.create_token(&t, audit("token.add")).await.unwrap();
    snapshot();

    let verdict = Verdict::Verified(Factor::Token { token_id: t.id, matched: 5, drift: 0 });
    let attempt = AuthAttempt {
        user_id: alice.id,
        access: AccessRecord { at: at(1), address: None, client: None },
        verdict,
        policy: r.policy().await.unwrap(),
        audit: audit("validate"),
    };
    assert_eq!(r.commit_attempt(attempt).await.unwrap(), AuthOutcome::Accepted);
    snapshot();
    let floor = r.tokens_for_user(&alice.id).await.unwrap()[0].counter;
    assert_eq!(floor, 6, "the locally used step stays used after the re-snapshot");
}

mod cluster {
    //! The cluster side (issue 13): claims and forwarded logins applied on
    //! the primary, the login journal of a replica, enrolment with tokens.

    use std::sync::Arc;

    use super::audit;
    use super::common::{active_token, at, user};
    use tessera_core::audit::AuditQuery;
    use tessera_core::keys::{Keyring, MasterKey};
    use tessera_core::model::AccessRecord;
    use tessera_core::random::OsRandom;
    use tessera_core::replication::{ClaimItem, ClusterNode, ForwardedFactor, LoginEvent};
    use tessera_core::store::prelude::*;
    use tessera_core::store::{AuthAttempt, AuthOutcome, Factor, Verdict};
    use tessera_store::sqlite::cluster::{Cluster, TokenCheck};
    use tessera_store::{SqliteOptions, SqliteStore};

    /// The TOTP step of `at(s)` (30 s period).
    fn step(s: i64) -> i64 {
        at(s).0 / 1000 / 30
    }

    async fn primary() -> (tempfile::TempDir, Arc<SqliteStore>, Cluster, Keyring) {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let s = SqliteStore::create(&SqliteOptions::new(dir.path().join("p.db")), &keys, &OsRandom, at(0)).unwrap();
        let s = Arc::new(s);
        (dir, s.clone(), Cluster::new(s), keys)
    }

    #[tokio::test]
    async fn claims_take_each_factor_once_and_only_within_the_window() {
        let (_dir, s, c, keys) = primary().await;
        let alice = user("alice");
        s.create_user(&alice, audit("user.add")).await.unwrap();
        let t = active_token(&alice, "T1", &keys);
        s.create_token(&t, audit("token.add")).await.unwrap();
        s.replace_backup_codes(&alice.id, &[[7; 32]], at(0), audit("codes")).await.unwrap();
        let now = at(0).0;
        let claim = |item| {
            let c = c.clone();
            async move { c.claim(vec![item], now, audit("replication.claim")).await.unwrap().remove(0) }
        };
        let st = ClaimItem::Step { user: alice.id.0, token: t.id.0, step: step(0), drift: 0 };
        assert!(claim(st.clone()).await.claimed);
        let again = claim(st).await;
        assert_eq!((again.claimed, again.reason.as_deref()), (false, Some("used")));
        assert!(again.token_state.is_some(), "the refused replica gets the primary's state to merge");
        // Beyond the skew window plus the drift cap: refused, audited.
        let far = claim(ClaimItem::Step { user: alice.id.0, token: t.id.0, step: 9_000_000_000_000, drift: 0 }).await;
        assert_eq!(far.reason.as_deref(), Some("outside_window"));
        let unknown = claim(ClaimItem::Step { user: alice.id.0, token: 42, step: step(0), drift: 0 }).await;
        assert_eq!(unknown.reason.as_deref(), Some("unknown"));
        // Backup codes and States: once.
        let bc = ClaimItem::BackupCode { user: alice.id.0, digest: vec![7; 32] };
        assert!(claim(bc.clone()).await.claimed);
        assert_eq!(claim(bc).await.reason.as_deref(), Some("used"));
        let nope = claim(ClaimItem::BackupCode { user: alice.id.0, digest: vec![8; 32] }).await;
        assert_eq!(nope.reason.as_deref(), Some("unknown"));
        let state = ClaimItem::State { nonce: vec![1; 16], expires_at: now + 60_000 };
        assert!(claim(state.clone()).await.claimed);
        assert_eq!(claim(state).await.reason.as_deref(), Some("used"));
        // The primary's own login of the claimed step is a replay now.
        let attempt = AuthAttempt {
            user_id: alice.id,
            access: AccessRecord { at: at(0), address: None, client: None },
            verdict: Verdict::Verified(Factor::Token { token_id: t.id, matched: step(0), drift: 0 }),
            policy: s.policy().await.unwrap(),
            audit: audit("validate"),
        };
        assert_eq!(s.commit_attempt(attempt).await.unwrap(), AuthOutcome::Replayed);
        let q = AuditQuery { action: Some("replication.claim".into()), limit: 100, ..Default::default() };
        assert_eq!(
            s.audit_log(&q).await.unwrap().len(),
            3,
            "outside_window and the two unknowns are audited; `used` is not"
        );
    }

    #[tokio::test]
    async fn forwarded_logins_apply_once_lock_and_refuse_steps_outside_the_window() {
        let (_dir, s, c, keys) = primary().await;
        let dave = user("dave");
        s.create_user(&dave, audit("user.add")).await.unwrap();
        let t = active_token(&dave, "T1", &keys);
        s.create_token(&t, audit("token.add")).await.unwrap();
        let now = at(10).0;
        let fail =
            |id| LoginEvent { id, user: dave.id.0, at: at(1).0, accepted: false, counted: true, factors: vec![] };
        let events: Vec<LoginEvent> = (1..=3).map(fail).collect();
        let a = c.apply_forwarded("r1", events.clone(), now, audit("replication.forward")).await.unwrap();
        assert_eq!((a.applied, a.through), (3, 3));
        // Sent again (the answer was lost): nothing counts twice.
        let again = c.apply_forwarded("r1", events, now, audit("replication.forward")).await.unwrap();
        assert_eq!((again.applied, again.duplicates), (0, 3));
        // Two more from another replica lock at the default limit of 5.
        let other: Vec<LoginEvent> = (1..=2).map(fail).collect();
        c.apply_forwarded("r2", other, now, audit("replication.forward")).await.unwrap();
        let u = s.user_by_id(&dave.id).await.unwrap().unwrap();
        assert!(u.lock.is_locked(at(10)), "{:?}", u.lock);
        // A locked user's code is refused to every replica at once.
        let claim = ClaimItem::Step { user: dave.id.0, token: t.id.0, step: step(10), drift: 0 };
        let r = c.claim(vec![claim], now, audit("replication.claim")).await.unwrap().remove(0);
        assert_eq!((r.claimed, r.reason.as_deref()), (false, Some("locked")));
        // A step no code could match is refused, audited, and moves nothing.
        let bad = LoginEvent {
            id: 4,
            user: dave.id.0,
            at: at(2).0,
            accepted: true,
            counted: true,
            factors: vec![ForwardedFactor::Step { token: t.id.0, step: 9_000_000_000_000, drift: 0 }],
        };
        let a = c.apply_forwarded("r1", vec![bad], now, audit("replication.forward")).await.unwrap();
        assert_eq!(a.refused, 1);
        assert_eq!(s.tokens_for_user(&dave.id).await.unwrap()[0].counter, 0);
        let q = AuditQuery { action: Some("replication.forward".into()), limit: 100, ..Default::default() };
        assert_eq!(s.audit_log(&q).await.unwrap().len(), 5, "one record per batch, one per refusal");
    }

    #[tokio::test]
    async fn a_replica_journals_its_logins_in_their_own_transaction() {
        let (_dir, s, c, keys) = primary().await;
        let erin = user("erin");
        s.create_user(&erin, audit("user.add")).await.unwrap();
        let t = active_token(&erin, "T1", &keys);
        s.create_token(&t, audit("token.add")).await.unwrap();
        let attempt = |verdict| AuthAttempt {
            user_id: erin.id,
            access: AccessRecord { at: at(0), address: None, client: None },
            verdict,
            policy: tessera_core::policy::Policy::default(),
            audit: audit("validate"),
        };
        s.commit_attempt(attempt(Verdict::Failed("wrong_code"))).await.unwrap();
        assert_eq!(c.outbox_len().unwrap(), 0, "not journalled while not a replica");
        s.set_login_journal(true);
        s.commit_attempt(attempt(Verdict::Failed("wrong_code"))).await.unwrap();
        let ok = Verdict::Verified(Factor::Token { token_id: t.id, matched: 3, drift: 0 });
        assert_eq!(s.commit_attempt(attempt(ok)).await.unwrap(), AuthOutcome::Accepted);
        s.commit_attempt(attempt(Verdict::Refused("disabled"))).await.unwrap();
        let journal = c.outbox(10).unwrap();
        assert_eq!(journal.len(), 2, "a failure and a success; refusals are not counted: {journal:?}");
        assert!(!journal[0].accepted && journal[0].counted);
        assert!(journal[1].accepted);
        assert_eq!(journal[1].factors, vec![ForwardedFactor::Step { token: t.id.0, step: 3, drift: 0 }]);
        // A step the primary took for this very login may be here before the
        // login is applied (floor = matched + 1): still accepted, once.
        let claimed =
            Verdict::Verified(Factor::Claimed(Box::new(Factor::Token { token_id: t.id, matched: 3, drift: 0 })));
        assert_eq!(s.commit_attempt(attempt(claimed.clone())).await.unwrap(), AuthOutcome::Accepted);
        let older =
            Verdict::Verified(Factor::Claimed(Box::new(Factor::Token { token_id: t.id, matched: 2, drift: 0 })));
        assert_eq!(s.commit_attempt(attempt(older)).await.unwrap(), AuthOutcome::Replayed);
        c.outbox_done(journal[1].id).await.unwrap();
        let rest = c.outbox(10).unwrap();
        assert!(
            rest.is_empty(),
            "the claimed login was recorded by the primary, and a replay is not counted, so not forwarded: {rest:?}"
        );
    }

    #[tokio::test]
    async fn a_join_token_enrols_one_node_once() {
        let (_dir, _s, c, _keys) = primary().await;
        let digest = [5u8; 32];
        let now = at(0).0;
        c.mint_join_token(digest, 1, now, now + 60_000, "cli:root", audit("replica.token")).await.unwrap();
        assert_eq!(c.check_join_token(&digest, now).unwrap(), TokenCheck::Valid(1));
        assert_eq!(c.check_join_token(&digest, now + 60_000).unwrap(), TokenCheck::Expired);
        assert_eq!(c.check_join_token(&[6u8; 32], now).unwrap(), TokenCheck::Unknown);
        let node = |name: &str| ClusterNode {
            name: name.into(),
            cert_sha256: String::new(),
            url: None,
            https_pin: None,
            enrolled_at: now,
            enrolled_by: "test".into(),
        };
        c.enrol(node("r1"), [1; 32], 1, now, audit("replica.join")).await.unwrap();
        assert_eq!(c.check_join_token(&digest, now).unwrap(), TokenCheck::Used);
        assert!(c.enrol(node("r2"), [2; 32], 1, now, audit("replica.join")).await.is_err(), "used once");
        c.mint_join_token([9; 32], 2, now, now + 60_000, "cli:root", audit("replica.token")).await.unwrap();
        assert!(c.enrol(node("r1"), [3; 32], 2, now, audit("replica.join")).await.is_err(), "the name is taken");
        assert!(c.enrol(node("r3"), [1; 32], 2, now, audit("replica.join")).await.is_err(), "the certificate is taken");
        assert_eq!(
            c.check_join_token(&[9; 32], now).unwrap(),
            TokenCheck::Valid(2),
            "a refused enrolment keeps the token"
        );
        // The same node (name and certificate) joining again keeps its enrolment.
        c.enrol(node("r1"), [1; 32], 2, now, audit("replica.join")).await.unwrap();
        assert_eq!(c.check_join_token(&[9; 32], now).unwrap(), TokenCheck::Used);
        assert_eq!(c.nodes().unwrap().len(), 1);
        assert!(c.remove_node("r1", audit("replica.remove")).await.unwrap());
        assert!(c.nodes().unwrap().is_empty());
    }
}
