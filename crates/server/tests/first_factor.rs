//! The engine's first-factor rules with a scripted directory: realms and
//! `user@realm`, directory passwords with the OTP, fail-closed directory
//! outages, single-factor exceptions, grace logins, auto-provisioning.
//! (The real LDAP and Entra ID clients are tested in their crates and end
//! to end in crates/cli/tests.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tessera_core::admin::Admin;
use tessera_core::audit::{Actor, AuditQuery};
use tessera_core::auth::{Authenticator, Decision, ValidateRequest, Validation};
use tessera_core::clock::{Clock, ManualClock, Timestamp};
use tessera_core::context::Context;
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::model::User;
use tessera_core::password::InlineHasher;
use tessera_core::policy::Policy;
use tessera_core::random::OsRandom;
use tessera_core::realm::{Directory, DirectoryVerdict};
use tessera_otp::{Keyed, OtpParams, Secret, format_code, time_step};
use tessera_store::{SqliteOptions, SqliteStore};
use zeroize::Zeroizing;

const T0: i64 = 1_800_000_015;

/// A directory with one realm, `corp`: fixed passwords and groups, and a
/// switch that makes it unreachable. Counts password checks.
#[derive(Debug, Default)]
struct Scripted {
    users: HashMap<String, (String, Vec<String>)>,
    down: Mutex<bool>,
    auto_provision: bool,
    checks: AtomicUsize,
    seen_passwords: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Directory for Scripted {
    fn knows_realm(&self, realm: &str) -> bool {
        realm == "corp"
    }
    fn has_sources(&self, realm: &str) -> bool {
        realm == "corp"
    }
    fn auto_provision(&self, realm: &str) -> bool {
        realm == "corp" && self.auto_provision
    }
    async fn verify(&self, realm: &str, username: &str, password: &str) -> DirectoryVerdict {
        assert_eq!(realm, "corp");
        assert!(!password.is_empty(), "an empty password reached the directory");
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.seen_passwords.lock().push(password.to_string());
        if *self.down.lock() {
            return DirectoryVerdict::Unavailable { reason: "ldap_unavailable" };
        }
        match self.users.get(username) {
            Some((pw, groups)) if pw == password => {
                DirectoryVerdict::Accepted { source: "ldap:corp/ldap#1".into(), groups: groups.clone() }
            }
            Some(_) => DirectoryVerdict::WrongPassword { reason: "ldap_wrong_password" },
            None => DirectoryVerdict::UnknownUser { reason: "ldap_unknown_user" },
        }
    }
    async fn groups(&self, _realm: &str, username: &str) -> Vec<String> {
        self.users.get(username).map(|(_, g)| g.clone()).unwrap_or_default()
    }
}

struct H {
    auth: Authenticator,
    admin: Admin,
    dir: Arc<Scripted>,
    clock: Arc<ManualClock>,
    actor: Actor,
    _tmp: tempfile::TempDir,
}

fn harness(auto_provision: bool) -> H {
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(T0)));
    let store =
        SqliteStore::create(&SqliteOptions::new(tmp.path().join("t.db")), &keys, &OsRandom, clock.now()).unwrap();
    let mut users = HashMap::new();
    users.insert("alice".to_string(), ("alice-dir-pw".to_string(), vec!["vpn-admins".to_string()]));
    users.insert("bob".to_string(), ("bob-dir-pw".to_string(), vec!["staff".to_string()]));
    users.insert("svc".to_string(), ("svc-dir-pw".to_string(), vec!["service-accounts".to_string()]));
    users.insert("newbie".to_string(), ("newbie-dir-pw".to_string(), vec![]));
    let dir = Arc::new(Scripted { users, auto_provision, ..Scripted::default() });
    let ctx = Arc::new(Context {
        store: Arc::new(store),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
        hasher: Arc::new(InlineHasher),
        keys: Arc::new(keys),
        directory: dir.clone(),
        node: "test".into(),
        issuer: "tessera".into(),
    });
    H {
        auth: Authenticator::new(ctx.clone()),
        admin: Admin::new(ctx),
        dir,
        clock,
        actor: Actor::new("test"),
        _tmp: tmp,
    }
}

impl H {
    async fn corp_user(&self, name: &str) -> User {
        self.admin.add_user(&self.actor, Some("corp"), name, None).await.unwrap()
    }

    async fn token(&self, u: &User) -> Secret {
        let secret =
            Secret::from_bytes((0..20u8).map(|i| i.wrapping_mul(11).wrapping_add(u.username.len() as u8)).collect())
                .unwrap();
        self.admin.add_token(&self.actor, u, &secret, OtpParams::default(), 0, None, "", false).await.unwrap();
        secret
    }

    fn code(&self, s: &Secret, steps: i64) -> String {
        let p = OtpParams::default();
        let tessera_otp::OtpKind::Totp { period } = p.kind else { unreachable!() };
        let step = time_step(self.clock.now().unix_seconds(), period) + steps;
        format_code(Keyed::new(s, p.algorithm).hotp(step as u64, p.digits), p.digits)
    }

    async fn policy(&self, f: impl FnOnce(&mut Policy)) {
        let mut p = self.admin.policy().await.unwrap();
        f(&mut p);
        self.admin.set_policy(&self.actor, &p).await.unwrap();
    }

    async fn login(&self, user: &str, password: &str, client: Option<&str>) -> Validation {
        self.auth
            .validate(ValidateRequest {
                username: user.into(),
                password: Zeroizing::new(password.into()),
                address: Some("192.0.2.1".into()),
                client: Some("test".into()),
                radius_client: client.map(str::to_string),
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn directory_password_and_code_with_user_at_realm() {
    let h = harness(false);
    let u = h.corp_user("alice").await;
    let s = h.token(&u).await;
    let v = h.login("alice@corp", &format!("alice-dir-pw{}", h.code(&s, 0)), None).await;
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
    assert_eq!((v.username.as_str(), v.realm.as_str()), ("alice", "corp"));
    assert_eq!(v.directory_groups, vec!["vpn-admins".to_string()], "groups come back for reply rules");
    // the audit record names the source
    let log = h.admin.audit_log(AuditQuery { limit: 5, ..AuditQuery::default() }).await.unwrap();
    assert!(log.iter().any(|a| a.reason.as_deref().is_some_and(|r| r.contains("ldap:corp"))), "{log:?}");
    // wrong directory password, right code
    let v = h.login("alice@corp", &format!("nope{}", h.code(&s, 1)), None).await;
    assert_eq!(v.decision, Decision::Reject);
    assert!(v.reason.starts_with("ldap_wrong_password"), "{}", v.reason);
    // without @corp the default realm is used, where alice does not exist
    let v = h.login("alice", &format!("alice-dir-pw{}", h.code(&s, 1)), None).await;
    assert_eq!((v.decision, v.reason.as_str()), (Decision::Reject, "unknown_user"));
    // the default realm can be switched to corp
    h.policy(|p| p.default_realm = "corp".into()).await;
    let v = h.login("alice", &format!("alice-dir-pw{}", h.code(&s, 1)), None).await;
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
}

#[tokio::test]
async fn an_empty_password_never_reaches_the_directory() {
    let h = harness(false);
    let u = h.corp_user("alice").await;
    let s = h.token(&u).await;
    h.policy(|p| p.challenge_response = false).await;
    // the code alone: the password part is empty
    let v = h.login("alice@corp", &h.code(&s, 0), None).await;
    assert_eq!(v.decision, Decision::Reject);
    let v = h.login("alice@corp", "", None).await;
    assert_eq!(v.decision, Decision::Reject);
    assert!(h.dir.seen_passwords.lock().iter().all(|p| !p.is_empty()));
}

#[tokio::test]
async fn the_password_alone_gets_a_challenge() {
    let h = harness(false);
    let u = h.corp_user("bob").await;
    let s = h.token(&u).await;
    let v = h.login("bob@corp", "bob-dir-pw", None).await;
    let Decision::Challenge { state, .. } = v.decision else { panic!("expected a challenge: {}", v.reason) };
    let v = h
        .auth
        .validate(ValidateRequest {
            username: "bob@corp".into(),
            password: Zeroizing::new(h.code(&s, 0)),
            state: Some(state),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
}

#[tokio::test]
async fn an_unreachable_directory_fails_closed_and_does_not_count() {
    let h = harness(false);
    let u = h.corp_user("bob").await;
    let s = h.token(&u).await;
    *h.dir.down.lock() = true;
    for i in 0..7 {
        let v = h.login("bob@corp", &format!("bob-dir-pw{}", h.code(&s, 0)), None).await;
        assert_eq!(v.decision, Decision::Reject, "attempt {i}");
        assert!(v.reason.starts_with("ldap_unavailable"), "{}", v.reason);
    }
    let bob = h.admin.find_user(Some("corp"), "bob").await.unwrap();
    assert_eq!(bob.lock.failures, 0, "outages are not the user's failures");
    *h.dir.down.lock() = false;
    let v = h.login("bob@corp", &format!("bob-dir-pw{}", h.code(&s, 0)), None).await;
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
}

#[tokio::test]
async fn single_factor_exceptions_apply_only_to_whom_they_name() {
    let h = harness(false);
    let svc = h.corp_user("svc").await;
    let bob = h.corp_user("bob").await;
    h.token(&bob).await;
    let _ = svc;
    // by user
    h.policy(|p| p.single_factor_users = vec!["svc@corp".into()]).await;
    assert_eq!(h.login("svc@corp", "svc-dir-pw", None).await.decision, Decision::Accept);
    let v = h.login("svc@corp", "wrong", None).await;
    assert_eq!(v.decision, Decision::Reject);
    // bob is not named: his password alone gets a challenge, not an accept
    assert!(matches!(h.login("bob@corp", "bob-dir-pw", None).await.decision, Decision::Challenge { .. }));
    // by RADIUS client
    h.policy(|p| {
        p.single_factor_users.clear();
        p.single_factor_clients = vec!["legacy-switch".into()];
    })
    .await;
    assert_eq!(h.login("bob@corp", "bob-dir-pw", Some("legacy-switch")).await.decision, Decision::Accept);
    assert!(matches!(h.login("bob@corp", "bob-dir-pw", Some("vpn")).await.decision, Decision::Challenge { .. }));
    assert_ne!(h.login("svc@corp", "svc-dir-pw", Some("vpn")).await.decision, Decision::Accept);
    // by directory group, and by local group
    h.policy(|p| {
        p.single_factor_clients.clear();
        p.single_factor_groups = vec!["service-accounts".into(), "break-glass".into()];
    })
    .await;
    assert_eq!(h.login("svc@corp", "svc-dir-pw", None).await.decision, Decision::Accept);
    assert!(matches!(h.login("bob@corp", "bob-dir-pw", None).await.decision, Decision::Challenge { .. }));
    h.admin.add_to_group(&h.actor, "break-glass", &bob).await.unwrap();
    assert_eq!(h.login("bob@corp", "bob-dir-pw", None).await.decision, Decision::Accept);
    let log = h.admin.audit_log(AuditQuery { limit: 3, ..AuditQuery::default() }).await.unwrap();
    assert!(log[0].reason.as_deref().unwrap_or("").starts_with("single_factor_exception"), "{:?}", log[0]);
}

#[tokio::test]
async fn grace_logins_by_count_and_by_days() {
    let h = harness(false);
    let u = h.corp_user("newbie").await;
    // off by default: no token, no entry
    let v = h.login("newbie@corp", "newbie-dir-pw", None).await;
    assert_eq!((v.decision, v.reason.as_str()), (Decision::Reject, "no_active_token"));
    h.policy(|p| p.grace_logins = 2).await;
    assert_eq!(h.login("newbie@corp", "newbie-dir-pw", None).await.decision, Decision::Accept);
    assert_eq!(h.login("newbie@corp", "wrong-pw", None).await.decision, Decision::Reject);
    assert_eq!(h.login("newbie@corp", "newbie-dir-pw", None).await.decision, Decision::Accept);
    let v = h.login("newbie@corp", "newbie-dir-pw", None).await;
    assert_eq!(v.decision, Decision::Reject, "the third grace login is refused");
    // by days: a new window, counted from the user's creation
    h.policy(|p| {
        p.grace_logins = 0;
        p.grace_days = 2;
    })
    .await;
    assert_eq!(h.login("newbie@corp", "newbie-dir-pw", None).await.decision, Decision::Accept);
    h.clock.advance_seconds(3 * 86_400);
    assert_eq!(h.login("newbie@corp", "newbie-dir-pw", None).await.decision, Decision::Reject);
    // once a token is enrolled, grace no longer applies
    h.clock.advance_seconds(-3 * 86_400);
    let s = h.token(&u).await;
    let v = h.login("newbie@corp", "newbie-dir-pw", None).await;
    assert!(matches!(v.decision, Decision::Challenge { .. }), "{}", v.reason);
    let v = h.login("newbie@corp", &format!("newbie-dir-pw{}", h.code(&s, 0)), None).await;
    assert_eq!(v.decision, Decision::Accept);
}

#[tokio::test]
async fn unknown_directory_users_are_provisioned_on_their_first_login() {
    let h = harness(true);
    h.policy(|p| p.grace_logins = 1).await;
    // a wrong password creates nothing
    assert_eq!(h.login("newbie@corp", "nope", None).await.decision, Decision::Reject);
    assert!(h.admin.find_user(Some("corp"), "newbie").await.is_err());
    // the right one creates the user (unregistered) and the grace login lets them in once
    let v = h.login("newbie@corp", "newbie-dir-pw", None).await;
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
    let u = h.admin.find_user(Some("corp"), "newbie").await.unwrap();
    assert!(!u.registered);
    assert_eq!(u.grace_used, 1);
    assert_eq!(h.login("newbie@corp", "newbie-dir-pw", None).await.decision, Decision::Reject);
    // someone the directory does not know is not created
    assert_eq!(h.login("mallory@corp", "x", None).await.decision, Decision::Reject);
    assert!(h.admin.find_user(Some("corp"), "mallory").await.is_err());
}

#[tokio::test]
async fn a_wrong_password_with_a_code_binds_once_when_challenges_are_off() {
    let h = harness(false);
    let u = h.corp_user("alice").await;
    let s = h.token(&u).await;
    h.policy(|p| p.challenge_response = false).await;
    let before = h.dir.checks.load(Ordering::SeqCst);
    let v = h.login("alice@corp", &format!("bad-pw{}", h.code(&s, 0)), None).await;
    assert_eq!(v.decision, Decision::Reject);
    assert_eq!(h.dir.checks.load(Ordering::SeqCst) - before, 1, "one failed bind per wrong attempt");
}
