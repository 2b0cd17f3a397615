//! Primary/replica replication at the storage level: a snapshot and the
//! change stream make a replica's replicated tables equal to the primary's,
//! deletions included, and login state never moves backwards on apply.

mod common;
use common::{active_token, at, user};
use tessera_core::audit::{Actor, AuditRecord};
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::random::OsRandom;
use tessera_core::replication::ChangePage;
use tessera_core::store::{Store, UserChange};
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
