//! The authentication engine and admin service over the real embedded
//! store, with a manual clock: windows, drift, replay, lockout and its
//! expiry, backup codes, HOTP resync, enrollment confirmation.

use std::sync::Arc;

use tessera_core::CoreError;
use tessera_core::admin::{Admin, otp_params};
use tessera_core::audit::{Actor, AuditQuery};
use tessera_core::auth::{Authenticator, Decision, ValidateRequest, Validation};
use tessera_core::clock::{Clock, ManualClock, Timestamp};
use tessera_core::context::Context;
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::model::{User, UserStatus};
use tessera_core::password::{InlineHasher, PasswordError, PasswordHasher};
use tessera_core::policy::{LockoutMode, Policy};
use tessera_core::random::OsRandom;
use tessera_otp::{Digits, Keyed, OtpKind, OtpParams, Secret, format_code, time_step};
use tessera_store::{SqliteOptions, SqliteStore};
use zeroize::Zeroizing;

const T0: i64 = 1_800_000_015; // mid-step for 30 s periods

struct H {
    auth: Authenticator,
    admin: Admin,
    ctx: Arc<Context>,
    clock: Arc<ManualClock>,
    actor: Actor,
    _dir: tempfile::TempDir,
}

fn harness() -> H {
    harness_with(Arc::new(InlineHasher))
}

fn harness_with(hasher: Arc<dyn PasswordHasher>) -> H {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(T0)));
    let store =
        SqliteStore::create(&SqliteOptions::new(dir.path().join("t.db")), &keys, &OsRandom, clock.now()).unwrap();
    let ctx = Arc::new(Context {
        store: Arc::new(store),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
        hasher,
        keys: Arc::new(keys),
        directory: Arc::new(tessera_core::realm::NoDirectory),
        node: "test".into(),
        issuer: "tessera".into(),
    });
    H {
        auth: Authenticator::new(ctx.clone()),
        admin: Admin::new(ctx.clone()),
        ctx,
        clock,
        actor: Actor::new("test"),
        _dir: dir,
    }
}

impl H {
    fn now_s(&self) -> i64 {
        self.clock.now().unix_seconds()
    }

    async fn user(&self, name: &str, password: Option<&str>) -> User {
        self.admin.add_user(&self.actor, None, name, password.map(|p| Zeroizing::new(p.to_string()))).await.unwrap()
    }

    async fn fresh(&self, u: &User) -> User {
        self.admin.find_user(None, &u.username).await.unwrap()
    }

    /// An active token with a known secret.
    async fn token(&self, u: &User, params: OtpParams) -> Secret {
        let secret =
            Secret::from_bytes((0..20u8).map(|i| i.wrapping_mul(7).wrapping_add(u.username.len() as u8)).collect())
                .unwrap();
        self.admin.add_token(&self.actor, u, &secret, params, 0, None, "", false).await.unwrap();
        secret
    }

    async fn validate(&self, user: &str, password: &str) -> Validation {
        self.auth
            .validate(ValidateRequest {
                username: user.into(),
                realm: None,
                password: Zeroizing::new(password.into()),
                state: None,
                address: Some("198.51.100.9".into()),
                client: Some("test".into()),
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

fn code_at(secret: &Secret, p: OtpParams, counter: i64) -> String {
    format_code(Keyed::new(secret, p.algorithm).hotp(counter as u64, p.digits), p.digits)
}

fn totp_code(secret: &Secret, p: OtpParams, unix: i64, steps: i64) -> String {
    let OtpKind::Totp { period } = p.kind else { panic!("totp only") };
    code_at(secret, p, time_step(unix, period) + steps)
}

#[tokio::test]
async fn totp_window_is_one_step_each_side_by_default() {
    let h = harness();
    let u = h.user("win", None).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    let now = h.now_s();
    assert_eq!(h.validate("win", &totp_code(&s, p, now, -2)).await.decision, Decision::Reject);
    assert_eq!(h.validate("win", &totp_code(&s, p, now, 2)).await.decision, Decision::Reject);
    assert_eq!(h.validate("win", &totp_code(&s, p, now, -1)).await.decision, Decision::Accept);
    assert_eq!(h.validate("win", &totp_code(&s, p, now, 0)).await.decision, Decision::Accept);
    assert_eq!(h.validate("win", &totp_code(&s, p, now, 1)).await.decision, Decision::Accept);
    // Accepting +1 taught the token a drift of one step: the window follows the phone.
    assert_eq!(h.admin.tokens(&u).await.unwrap()[0].drift, 1);
}

#[tokio::test]
async fn replayed_and_older_codes_are_refused() {
    let h = harness();
    let u = h.user("rep", None).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    let now = h.now_s();
    let c0 = totp_code(&s, p, now, 0);
    assert_eq!(h.validate("rep", &c0).await.decision, Decision::Accept);
    let again = h.validate("rep", &c0).await;
    assert_eq!((again.decision, again.reason.as_str()), (Decision::Reject, "replayed_code"));
    assert_eq!(h.fresh(&u).await.lock.failures, 0, "a replay is not counted");
    // an older step after a newer one was used
    assert_eq!(h.validate("rep", &totp_code(&s, p, now, 1)).await.decision, Decision::Accept);
    let older = h.validate("rep", &c0).await;
    assert_eq!(older.decision, Decision::Reject);
    assert!(older.reason.starts_with("replayed_code"), "{}", older.reason);
}

#[tokio::test]
async fn drift_is_learned_capped_and_reset_by_resync() {
    let h = harness();
    let u = h.user("drift", None).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    h.admin.set_policy(&h.actor, &Policy { max_drift_steps: 2, ..Policy::default() }).await.unwrap();
    // The phone runs one step fast, then two, then three: each accepted code
    // moves the window, but never beyond the cap.
    for ahead in 1..=3 {
        h.clock.advance_seconds(30);
        let v = h.validate("drift", &totp_code(&s, p, h.now_s(), ahead.min(3))).await;
        assert_eq!(v.decision, Decision::Accept, "ahead {ahead}");
    }
    let t = &h.admin.tokens(&u).await.unwrap()[0];
    assert_eq!(t.drift, 2, "capped at max_drift_steps");
    // with drift 2 and skew 1, a code 3 steps ahead is inside the window
    h.clock.advance_seconds(30);
    assert_eq!(h.validate("drift", &totp_code(&s, p, h.now_s(), 3)).await.decision, Decision::Accept);
    let t = h.admin.resync_token(&h.actor, t, None).await.unwrap();
    assert_eq!(t.drift, 0);
    h.clock.advance_seconds(300);
    assert_eq!(h.validate("drift", &totp_code(&s, p, h.now_s(), 3)).await.decision, Decision::Reject);
}

#[tokio::test]
async fn password_and_code_split_and_factor_errors_look_alike() {
    let h = harness();
    let u = h.user("pw", Some("correct horse")).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    let now = h.now_s();
    let c = totp_code(&s, p, now, 0);
    let wrong_pw = h.validate("pw", &format!("wrong horse{c}")).await;
    assert_eq!((wrong_pw.decision, wrong_pw.reason.as_str()), (Decision::Reject, "wrong_password; failure 1"));
    // the code was not consumed by the failed attempt
    assert_eq!(h.validate("pw", &format!("correct horse{c}")).await.decision, Decision::Accept);
    let c1 = totp_code(&s, p, now, 1);
    assert_eq!(h.validate("pw", &c1).await.decision, Decision::Reject, "code alone is not enough");
    let wrong_code = h.validate("pw", "correct horse000000").await;
    assert!(
        wrong_code.reason.starts_with("wrong_code") || wrong_code.reason.starts_with("replayed"),
        "{}",
        wrong_code.reason
    );
    assert!(matches!(h.validate("pw", "correct horse").await.decision, Decision::Challenge { .. }), "password alone");
    assert_eq!(h.validate("pw", "").await.decision, Decision::Reject);
}

#[tokio::test]
async fn unknown_disabled_and_pending_are_rejected() {
    let h = harness();
    assert_eq!(h.validate("ghost", "123456").await.reason, "unknown_user");
    let u = h.user("dis", None).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    h.admin.set_disabled(&h.actor, &u, true).await.unwrap();
    let v = h.validate("dis", &totp_code(&s, p, h.now_s(), 0)).await;
    assert_eq!((v.decision, v.reason.as_str()), (Decision::Reject, "disabled"));
    assert_eq!(h.fresh(&u).await.lock.failures, 0, "refusals are not counted");

    let pend = h.user("pend", None).await;
    let e = h.admin.enroll_token(&h.actor, &pend, OtpParams::default(), "phone").await.unwrap();
    let code = totp_code(&e.secret, e.token.params, h.now_s(), 0);
    assert_eq!(h.validate("pend", &code).await.reason, "no_active_token");
    assert_eq!(h.fresh(&pend).await.status(h.clock.now()), UserStatus::Unregistered);
    assert!(matches!(h.admin.confirm_token(&h.actor, &pend, "000000").await, Err(CoreError::CodeMismatch)));
    h.admin.confirm_token(&h.actor, &pend, &code).await.unwrap();
    assert_eq!(h.fresh(&pend).await.status(h.clock.now()), UserStatus::Active);
    // the confirming code is used up; the next one logs in
    assert_eq!(h.validate("pend", &code).await.decision, Decision::Reject);
    assert_eq!(
        h.validate("pend", &totp_code(&e.secret, e.token.params, h.now_s(), 1)).await.decision,
        Decision::Accept
    );
    assert!(e.uri.starts_with("otpauth://totp/tessera:pend?secret="), "{}", e.uri);
}

#[tokio::test]
async fn lockout_then_auto_unlock_with_the_clock() {
    let h = harness();
    let u = h.user("lock", None).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    h.admin
        .set_policy(&h.actor, &Policy { lockout_threshold: 3, auto_unlock_seconds: 600, ..Policy::default() })
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(h.validate("lock", "000000").await.decision, Decision::Reject);
    }
    assert_eq!(h.fresh(&u).await.status(h.clock.now()), UserStatus::Locked);
    let good = totp_code(&s, p, h.now_s(), 0);
    let v = h.validate("lock", &good).await;
    assert_eq!((v.decision, v.reason.as_str()), (Decision::Reject, "locked"));
    h.clock.advance_seconds(599);
    assert_eq!(h.validate("lock", &totp_code(&s, p, h.now_s(), 0)).await.reason, "locked");
    h.clock.advance_seconds(1);
    assert_eq!(h.fresh(&u).await.status(h.clock.now()), UserStatus::Active);
    assert_eq!(h.validate("lock", &totp_code(&s, p, h.now_s(), 0)).await.decision, Decision::Accept);
    let f = h.fresh(&u).await;
    assert_eq!(f.lock.failures, 0);
    assert_eq!(f.last_success.unwrap().address.as_deref(), Some("198.51.100.9"));
}

#[tokio::test]
async fn fifty_parallel_wrong_codes_count_exactly_the_threshold() {
    let h = Arc::new(harness());
    let u = h.user("par", None).await;
    h.token(&u, OtpParams::default()).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.validate("par", &format!("{:06}", 100_000 + i)).await })
        })
        .collect();
    let results = futures::future::join_all(tasks).await;
    let reasons: Vec<String> = results.into_iter().map(|r| r.unwrap().reason).collect();
    let counted = reasons.iter().filter(|r| r.contains("failure")).count();
    assert_eq!(counted, 5, "{reasons:?}");
    let f = h.fresh(&u).await;
    assert_eq!((f.lock.failures, f.status(h.clock.now())), (5, UserStatus::Locked));
    h.admin.unlock(&h.actor, &f).await.unwrap();
    assert_eq!(h.fresh(&u).await.status(h.clock.now()), UserStatus::Active);
}

#[tokio::test]
async fn throttle_mode_delays_instead_of_locking() {
    let h = harness();
    let u = h.user("thr", None).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    let policy = Policy {
        lockout_mode: LockoutMode::Throttle,
        lockout_threshold: 2,
        throttle_base_seconds: 10,
        ..Policy::default()
    };
    h.admin.set_policy(&h.actor, &policy).await.unwrap();
    h.validate("thr", "000000").await;
    h.validate("thr", "000001").await;
    let v = h.validate("thr", &totp_code(&s, p, h.now_s(), 0)).await;
    assert_eq!(v.reason, "throttled");
    h.clock.advance_seconds(10);
    assert_eq!(h.validate("thr", &totp_code(&s, p, h.now_s(), 0)).await.decision, Decision::Accept);
    assert_ne!(h.fresh(&u).await.status(h.clock.now()), UserStatus::Locked);
}

#[tokio::test]
async fn backup_codes_work_once_and_regeneration_voids_them() {
    let h = harness();
    let u = h.user("bk", Some("pass phrase")).await;
    h.token(&u, OtpParams::default()).await;
    let set1 = h.admin.regenerate_backup_codes(&h.actor, &u).await.unwrap();
    assert_eq!(set1.len(), 10);
    let c = set1[3].as_str();
    assert_eq!(h.validate("bk", c).await.decision, Decision::Reject, "password required");
    let v = h.validate("bk", &format!("pass phrase{c}")).await;
    assert_eq!((v.decision, v.reason.as_str()), (Decision::Accept, "backup_code"));
    let again = h.validate("bk", &format!("pass phrase{c}")).await;
    assert_eq!((again.decision, again.reason.as_str()), (Decision::Reject, "replayed_backup_code"));
    // with a wrong password it is an ordinary, counted failure
    let wrong = h.validate("bk", &format!("pass frase{c}")).await;
    assert_eq!(wrong.reason, "wrong_password_and_code; failure 1");
    assert_eq!(h.admin.backup_codes_left(&u).await.unwrap(), 9);
    let printed = set1[6].display();
    assert_eq!(h.validate("bk", &format!("pass phrase{printed}")).await.decision, Decision::Accept, "{printed}");
    let set2 = h.admin.regenerate_backup_codes(&h.actor, &u).await.unwrap();
    assert_eq!(h.validate("bk", &format!("pass phrase{}", set1[4].as_str())).await.decision, Decision::Reject);
    assert_eq!(h.validate("bk", &format!("pass phrase{}", set2[4].as_str())).await.decision, Decision::Accept);
    // a policy that disables backup codes refuses them
    let off = Policy { backup_codes_enabled: false, ..Policy::default() };
    h.admin.set_policy(&h.actor, &off).await.unwrap();
    assert_eq!(h.validate("bk", &format!("pass phrase{}", set2[5].as_str())).await.decision, Decision::Reject);
    assert!(h.admin.regenerate_backup_codes(&h.actor, &u).await.is_err());
}

#[tokio::test]
async fn hotp_look_ahead_and_two_code_resync() {
    let h = harness();
    let u = h.user("hotp", None).await;
    let p = otp_params(Some("hotp"), None, Some(8), None).unwrap();
    let s = h.token(&u, p).await;
    assert_eq!(h.validate("hotp", &code_at(&s, p, 0)).await.decision, Decision::Accept);
    assert_eq!(h.validate("hotp", &code_at(&s, p, 0)).await.decision, Decision::Reject);
    assert_eq!(h.validate("hotp", &code_at(&s, p, 11)).await.decision, Decision::Accept, "within look-ahead 10");
    assert_eq!(h.validate("hotp", &code_at(&s, p, 30)).await.decision, Decision::Reject, "beyond look-ahead");
    let t = h.admin.tokens(&u).await.unwrap().remove(0);
    let (a, b) = (code_at(&s, p, 60), code_at(&s, p, 61));
    assert!(matches!(h.admin.resync_token(&h.actor, &t, Some((&b, &a))).await, Err(CoreError::CodeMismatch)));
    let t = h.admin.resync_token(&h.actor, &t, Some((&a, &b))).await.unwrap();
    assert_eq!(t.counter, 62);
    assert_eq!(h.validate("hotp", &code_at(&s, p, 61)).await.decision, Decision::Reject);
    assert_eq!(h.validate("hotp", &code_at(&s, p, 62)).await.decision, Decision::Accept);
}

#[tokio::test]
async fn all_hashes_digits_and_periods_work_end_to_end() {
    let h = harness();
    let mut n = 0;
    for alg in ["SHA1", "SHA256", "SHA512"] {
        for digits in [6u8, 8] {
            for period in [30u32, 60] {
                n += 1;
                let name = format!("u{n}");
                let u = h.user(&name, None).await;
                let p = otp_params(None, Some(alg), Some(digits), Some(period)).unwrap();
                let s = h.token(&u, p).await;
                assert_eq!(p.digits, Digits::new(digits).unwrap());
                let v = h.validate(&name, &totp_code(&s, p, h.now_s(), 0)).await;
                assert_eq!(v.decision, Decision::Accept, "{alg} {digits} {period}");
            }
        }
    }
}

#[tokio::test]
async fn every_decision_and_change_is_audited_without_secrets() {
    let h = harness();
    let u = h.user("aud", Some("s3cret-pass")).await;
    let s = h.token(&u, OtpParams::default()).await;
    let code = totp_code(&s, OtpParams::default(), h.now_s(), 0);
    h.validate("aud", &format!("s3cret-pass{code}")).await;
    h.validate("aud", "s3cret-pass000000").await;
    let log = h.admin.audit_log(AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["validate", "validate", "token.add", "user.add"]);
    let dump = format!("{log:?}");
    for secret in ["s3cret-pass", code.as_str(), &s.to_base32()] {
        assert!(!dump.contains(secret), "audit log leaks {secret}");
    }
}

impl H {
    async fn validate_state(&self, user: &str, password: &str, state: Option<Vec<u8>>) -> Validation {
        self.auth
            .validate(ValidateRequest {
                username: user.into(),
                realm: None,
                password: Zeroizing::new(password.into()),
                state,
                address: Some("198.51.100.9".into()),
                client: Some("test".into()),
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn challenge_then_code_completes_a_two_step_login() {
    let h = harness();
    let u = h.user("two", Some("step one pass")).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    let v = h.validate("two", "step one pass").await;
    let Decision::Challenge { state, message } = v.decision else { panic!("expected a challenge, got {v:?}") };
    assert_eq!(message, "Enter your one-time code");
    assert_eq!(h.fresh(&u).await.lock.failures, 0, "a challenge is not a failure");
    // the state is single-use and bound to the user
    let code = totp_code(&s, p, h.now_s(), 0);
    assert_eq!(h.validate_state("other", &code, Some(state.clone())).await.reason, "bad_state");
    let ok = h.validate_state("two", &code, Some(state.clone())).await;
    assert_eq!(ok.decision, Decision::Accept, "{}", ok.reason);
    let again = h.validate_state("two", &totp_code(&s, p, h.now_s(), 1), Some(state)).await;
    assert_eq!((again.decision, again.reason.as_str()), (Decision::Reject, "state_reused"));
    // a tampered state is refused
    let Decision::Challenge { state, .. } = h.validate("two", "step one pass").await.decision else { panic!() };
    let mut bad = state.clone();
    bad[20] ^= 1;
    assert_eq!(h.validate_state("two", &totp_code(&s, p, h.now_s(), 1), Some(bad)).await.reason, "bad_state");
    // a wrong code in step two counts as a failure
    let wrong = h.validate_state("two", "000000", Some(state)).await;
    assert!(wrong.reason.starts_with("wrong_code") || wrong.reason.starts_with("replayed"), "{}", wrong.reason);
    assert_eq!(h.fresh(&u).await.lock.failures, 1);
    // states expire
    let Decision::Challenge { state, .. } = h.validate("two", "step one pass").await.decision else { panic!() };
    h.clock.advance_seconds(121);
    assert_eq!(h.validate_state("two", &totp_code(&s, p, h.now_s(), 0), Some(state)).await.reason, "state_expired");
    // a wrong password alone is a plain failure, and the policy can turn challenges off
    assert_eq!(h.validate("two", "step one pasz").await.decision, Decision::Reject);
    let off = Policy { challenge_response: false, ..Policy::default() };
    h.admin.set_policy(&h.actor, &off).await.unwrap();
    assert_eq!(h.validate("two", "step one pass").await.decision, Decision::Reject);
}

#[tokio::test]
async fn code_can_come_before_the_password() {
    let h = harness();
    let u = h.user("first", Some("password after")).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    h.admin.set_policy(&h.actor, &Policy { code_first: true, ..Policy::default() }).await.unwrap();
    let code = totp_code(&s, p, h.now_s(), 0);
    assert_eq!(h.validate("first", &format!("password after{code}")).await.decision, Decision::Reject);
    assert_eq!(h.validate("first", &format!("{code}password after")).await.decision, Decision::Accept);
}

/// A token secret that does not open (here: sealed under a key this node
/// lacks) fails the login closed on both paths — decided in the store's
/// step (no password) and deferred (local password, right or wrong) — and
/// never counts: more tries than the lockout threshold lock nobody. A
/// backup code, which needs no token secret, still works.
#[tokio::test]
async fn a_secret_that_does_not_open_fails_closed_and_never_counts() {
    use tessera_core::keys::Purpose;
    use tessera_core::store::{SealedChange, SealedColumn};
    let h = harness();
    let plain = h.user("plain", None).await;
    let pw = h.user("pw", Some("correct horse battery")).await;
    let p = OtpParams::default();
    let s_plain = h.token(&plain, p).await;
    let s_pw = h.token(&pw, p).await;
    let backup = h.admin.regenerate_backup_codes(&h.actor, &plain).await.unwrap();
    let store = h.auth.context().store.clone();
    let stranger = Keyring::new(&MasterKey::generate(&OsRandom));
    for v in store.sealed_values(SealedColumn::TokenSecret, None, 10).await.unwrap() {
        let new = stranger.seal(&OsRandom, Purpose::OtpSecret, &v.row, &[7u8; 20]);
        let change = SealedChange { row: v.row.clone(), old: v.sealed.clone(), new };
        assert_eq!(store.replace_sealed(SealedColumn::TokenSecret, vec![change]).await.unwrap(), 1);
    }
    let now = h.now_s();
    let right = totp_code(&s_plain, p, now, 0);
    let right_pw = totp_code(&s_pw, p, now, 0);
    let attempts = [
        ("plain", right.clone()),
        ("plain", "000000".to_string()),
        ("pw", format!("correct horse battery{right_pw}")),
        // A wrong password is not told apart: no oracle on a broken node.
        ("pw", format!("wrong horse battery{right_pw}")),
    ];
    for (user, input) in &attempts {
        for _ in 0..6 {
            let r = h
                .auth
                .validate(ValidateRequest {
                    username: (*user).into(),
                    password: Zeroizing::new(input.clone()),
                    ..Default::default()
                })
                .await;
            assert!(matches!(r, Err(CoreError::SecretUnreadable)), "{user}: {r:?}");
        }
    }
    for u in [&plain, &pw] {
        let u = h.fresh(u).await;
        assert_eq!((u.lock.failures, u.status(h.clock.now())), (0, UserStatus::Active), "{}", u.username);
    }
    let log = h.admin.audit_log(AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    let why = log.iter().filter(|a| a.action == "validate" && a.reason.as_deref() == Some("secret_unreadable")).count();
    assert_eq!(why, attempts.len() * 6);
    // A backup code does not need the token's secret.
    let v = h.validate("plain", backup[0].as_str()).await;
    assert_eq!(v.decision, Decision::Accept, "{v:?}");
}

/// Issue 15, item 2: codes from a device 600 s ahead match 20–21 steps
/// away, beyond `max_drift_steps` (10). Resyncing there used to move the
/// floor 21 steps while capping the drift at 10, so neither the device's
/// codes nor the in-window ones worked afterwards. Refused now, with what to
/// do, and nothing changes; a resync within the cap still works.
#[tokio::test]
async fn regression_resync_beyond_max_drift_steps_is_refused_and_changes_nothing() {
    let h = harness();
    let u = h.user("fast", None).await;
    let p = OtpParams::default();
    let s = h.token(&u, p).await;
    let before = h.admin.tokens(&u).await.unwrap().remove(0);
    let now = h.now_s();
    let (a, b) = (totp_code(&s, p, now + 600, 0), totp_code(&s, p, now + 630, 0));
    let e = h.admin.resync_token(&h.actor, &before, Some((&a, &b))).await.unwrap_err();
    let CoreError::DriftBeyondPolicy { steps, max, .. } = &e else { panic!("{e:?}") };
    assert_eq!((*steps, *max), (21, 10));
    let msg = e.to_string();
    for part in ["max_drift_steps = 10", "nothing was changed", "device's clock", "max_drift_steps=21", "ahead of"] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert!(e.is_client_error());
    let after = h.admin.tokens(&u).await.unwrap().remove(0);
    assert_eq!((after.counter, after.drift), (before.counter, before.drift), "nothing changed");
    let log = h.admin.audit_log(AuditQuery { action: Some("token.resync".into()), limit: 5, ..Default::default() });
    let log = log.await.unwrap();
    assert_eq!(log[0].result.as_str(), "error", "the refusal is audited");
    // the token still works with an in-window code
    assert_eq!(h.validate("fast", &totp_code(&s, p, h.now_s(), 0)).await.decision, Decision::Accept);

    // the same device 150 s ahead: 5–6 steps, within the cap
    h.clock.advance_seconds(30);
    let now = h.now_s();
    let t = h.admin.tokens(&u).await.unwrap().remove(0);
    let (a, b) = (totp_code(&s, p, now + 150, 0), totp_code(&s, p, now + 180, 0));
    let t = h.admin.resync_token(&h.actor, &t, Some((&a, &b))).await.unwrap();
    assert_eq!(t.drift, 6);
    // the device's next code logs in, and so does the one after, later
    assert_eq!(h.validate("fast", &totp_code(&s, p, now + 210, 0)).await.decision, Decision::Accept);
    h.clock.advance_seconds(60);
    assert_eq!(h.validate("fast", &totp_code(&s, p, h.now_s() + 180, 0)).await.decision, Decision::Accept);

    // a policy that allows the drift lets the far resync through
    h.admin.set_policy(&h.actor, &Policy { max_drift_steps: 25, ..Policy::default() }).await.unwrap();
    let now = h.now_s();
    let t = h.admin.tokens(&u).await.unwrap().remove(0);
    let (a, b) = (totp_code(&s, p, now + 600, 0), totp_code(&s, p, now + 630, 0));
    let t = h.admin.resync_token(&h.actor, &t, Some((&a, &b))).await.unwrap();
    assert_eq!(t.drift, 21);
    h.clock.advance_seconds(30);
    assert_eq!(h.validate("fast", &totp_code(&s, p, h.now_s() + 630, 0)).await.decision, Decision::Accept);
}

/// Issue 15, item 4: a double click or a client's retransmission submits
/// one valid code several times at once. One login gets it; the rest are
/// audited `replayed_code` and not counted, so they cannot lock the user.
/// Both engine paths: decided in the store's step (code alone) and deferred
/// (a password first, then the store's conditional update finds it used).
#[tokio::test]
async fn regression_same_valid_code_eight_times_in_parallel_does_not_lock() {
    let h = Arc::new(harness());
    let p = OtpParams::default();
    for (name, password) in [("dbl", None), ("dblpw", Some("double click"))] {
        let u = h.user(name, password).await;
        let s = h.token(&u, p).await;
        let input = format!("{}{}", password.unwrap_or(""), totp_code(&s, p, h.now_s(), 0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (h, input) = (h.clone(), input.clone());
                tokio::spawn(async move { h.validate(name, &input).await })
            })
            .collect();
        let results: Vec<Validation> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
        let accepted = results.iter().filter(|v| v.decision == Decision::Accept).count();
        let reasons: Vec<&str> =
            results.iter().filter(|v| v.decision == Decision::Reject).map(|v| v.reason.as_str()).collect();
        assert_eq!((accepted, reasons), (1, vec!["replayed_code"; 7]), "{name}");
        let f = h.fresh(&u).await;
        assert_eq!((f.lock.failures, f.status(h.clock.now())), (0, UserStatus::Active), "{name}");
        let log = h.admin.audit_log(AuditQuery { target: Some(name.into()), limit: 100, ..Default::default() });
        let replays = log.await.unwrap().iter().filter(|a| a.reason.as_deref() == Some("replayed_code")).count();
        assert_eq!(replays, 7, "{name}: every replay is in the audit log");
    }
    // wrong codes still count, exactly
    let u = h.user("wrong", None).await;
    h.token(&u, p).await;
    for i in 0..3 {
        let v = h.validate("wrong", &format!("{:06}", 100_000 + i)).await;
        assert_eq!(v.reason, format!("wrong_code; failure {}", i + 1));
    }
}

/// Issue 15, item 5: after an auto-unlock the stored count stays until the
/// next attempt writes the row; what is shown (views, status) is the truth.
#[tokio::test]
async fn regression_failures_show_zero_once_the_lock_has_lifted() {
    use tessera_core::views::UserView;
    let h = harness();
    let u = h.user("lifted", None).await;
    h.token(&u, OtpParams::default()).await;
    h.admin
        .set_policy(&h.actor, &Policy { lockout_threshold: 3, auto_unlock_seconds: 600, ..Policy::default() })
        .await
        .unwrap();
    for _ in 0..3 {
        h.validate("lifted", "000000").await;
    }
    let view = UserView::new(&h.fresh(&u).await, h.clock.now());
    assert_eq!((view.status, view.failures, view.locked_until.is_some()), (UserStatus::Locked, 3, true));
    h.clock.advance_seconds(600);
    let f = h.fresh(&u).await;
    assert_eq!(f.lock.failures, 3, "the row is not rewritten by the clock");
    let view = UserView::new(&f, h.clock.now());
    assert_eq!((view.status, view.failures, view.locked_until), (UserStatus::Active, 0, None));
    // and the next failure counts from one, as shown
    assert_eq!(h.validate("lifted", "000001").await.reason, "wrong_code; failure 1");
}

/// Issue 15, item 3: backup codes handed out at enrolment (the portal's,
/// or `backup-codes` before `token confirm`) are not a second factor of
/// their own: they work once a token is confirmed, not before.
#[tokio::test]
async fn regression_backup_codes_wait_for_the_first_confirmed_token() {
    let h = harness();
    for password in [None, Some("bobs password")] {
        let name = if password.is_some() { "bobpw" } else { "bob" };
        let u = h.user(name, password).await;
        let e = h.admin.enroll_token(&h.actor, &u, OtpParams::default(), "phone").await.unwrap();
        let codes = h.admin.regenerate_backup_codes(&h.actor, &u).await.unwrap();
        let with = |c: &str| format!("{}{c}", password.unwrap_or(""));
        let v = h.validate(name, &with(codes[0].as_str())).await;
        assert_eq!((v.decision, v.reason.as_str()), (Decision::Reject, "no_active_token"), "{name}");
        assert_eq!(h.fresh(&u).await.lock.failures, 0, "{name}: refused, not counted");
        assert_eq!(h.admin.backup_codes_left(&u).await.unwrap(), 10, "{name}: the code was not used up");
        let code = totp_code(&e.secret, e.token.params, h.now_s(), 0);
        h.admin.confirm_token(&h.actor, &u, &code).await.unwrap();
        let v = h.validate(name, &with(codes[0].as_str())).await;
        assert_eq!((v.decision, v.reason.as_str()), (Decision::Accept, "backup_code"), "{name}");
        // deleting the only token makes the user unregistered again, and the codes wait again
        let t = h.admin.tokens(&u).await.unwrap().remove(0);
        h.admin.delete_token(&h.actor, &t).await.unwrap();
        let v = h.validate(name, &with(codes[1].as_str())).await;
        assert_eq!(v.reason, "no_active_token", "{name}");
    }
}

/// Counts the argon2 verifications the engine asks for: real (a stored
/// hash) and dummy (none).
#[derive(Debug, Default)]
struct CountingHasher {
    real: std::sync::atomic::AtomicUsize,
    dummy: std::sync::atomic::AtomicUsize,
}

impl CountingHasher {
    /// (real, dummy) since the last call.
    fn take(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.real.swap(0, Relaxed), self.dummy.swap(0, Relaxed))
    }
}

#[async_trait::async_trait]
impl PasswordHasher for CountingHasher {
    async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError> {
        InlineHasher.hash(password).await
    }
    async fn verify(&self, phc: Option<String>, password: Zeroizing<String>) -> Result<bool, PasswordError> {
        let n = if phc.is_some() { &self.real } else { &self.dummy };
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InlineHasher.verify(phc, password).await
    }
}

/// Username enumeration by timing (issue 14): the argon2 work of a login
/// follows from its input's shape only. A code-shaped input costs none for
/// anyone; a longer one exactly one verification for everyone (real for a
/// user with a local password, dummy for unknown, locked, disabled and
/// code-only users), and logins still work: password + code, the challenge,
/// a single-factor exception, a backup code, a code alone.
#[tokio::test]
async fn regression_password_work_follows_the_input_shape_only() {
    let counter = Arc::new(CountingHasher::default());
    let h = harness_with(counter.clone());
    let p = OtpParams::default();
    let pw = h.user("pw", Some("correct horse")).await;
    let pw_secret = h.token(&pw, p).await;
    let code_only = h.user("codeonly", None).await;
    let code_secret = h.token(&code_only, p).await;
    let locked = h.user("lockedpw", Some("correct horse")).await;
    h.token(&locked, p).await;
    let disabled = h.user("disabledpw", Some("correct horse")).await;
    h.token(&disabled, p).await;
    h.admin.set_disabled(&h.actor, &disabled, true).await.unwrap();
    let locked_code_only = h.user("lockedcode", None).await;
    h.token(&locked_code_only, p).await;
    for name in ["lockedpw", "lockedcode"] {
        for i in 0..5 {
            h.validate(name, &format!("00000{i}")).await;
        }
        assert_eq!(h.validate(name, "000009").await.reason, "locked", "{name}");
    }
    counter.take();

    let inputs = [
        "000000",
        "00000000",
        "12345-67890",
        "",
        "correct horse000000",
        "wrong horse000000",
        "correct horse",
        "garbage",
        "1234567890123456",
    ];
    for input in inputs {
        let owed = usize::from(!tessera_core::password::code_shaped(input));
        for user in ["ghost", "pw", "codeonly", "lockedpw", "lockedcode", "disabledpw"] {
            let v = h.validate(user, input).await;
            let expected = if user == "pw" { (owed, 0) } else { (0, owed) };
            assert_eq!(counter.take(), expected, "{user} with {input:?}: (real, dummy) verifications ({})", v.reason);
            // Keep the counted users unlocked, so each stays what it is.
            if matches!(user, "pw" | "codeonly") {
                let u = h.admin.find_user(None, user).await.unwrap();
                h.admin.unlock(&h.actor, &u).await.unwrap();
            }
        }
    }

    // Logins still work, each with the one verification the shape asks for.
    let c = totp_code(&pw_secret, p, h.now_s(), 0);
    assert_eq!(h.validate("pw", &format!("correct horse{c}")).await.decision, Decision::Accept);
    assert_eq!(counter.take(), (1, 0));
    let wrong_code = h.validate("pw", "correct horse000000").await;
    assert!(wrong_code.reason.starts_with("wrong_code"), "{}", wrong_code.reason);
    assert_eq!(counter.take(), (1, 0));
    assert!(matches!(h.validate("pw", "correct horse").await.decision, Decision::Challenge { .. }));
    assert_eq!(counter.take(), (1, 0), "the challenge's first step: one verification, not two");
    // A right code alone: read as the code, the password missing (not
    // consumed, counted).
    let alone = h.validate("pw", &totp_code(&pw_secret, p, h.now_s(), 1)).await;
    assert_eq!(alone.decision, Decision::Reject);
    assert!(alone.reason.starts_with("wrong_password; failure"), "{}", alone.reason);
    assert_eq!(counter.take(), (0, 0), "a code alone holds no password: never hashed");
    let wrong_alone = h.validate("pw", "000000").await;
    assert!(wrong_alone.reason.starts_with("wrong_password_and_code"), "{}", wrong_alone.reason);
    assert_eq!(counter.take(), (0, 0));
    let c = totp_code(&code_secret, p, h.now_s(), 0);
    assert_eq!(h.validate("codeonly", &c).await.decision, Decision::Accept);
    assert_eq!(counter.take(), (0, 0));
    let backup = h.admin.regenerate_backup_codes(&h.actor, &code_only).await.unwrap();
    assert_eq!(h.validate("codeonly", &backup[0].display()).await.reason, "backup_code");
    assert_eq!(counter.take(), (0, 0), "a printed backup code is code-shaped");

    // A single-factor exception with a local password: the password alone,
    // or with a code, one verification either way.
    let mut policy = h.admin.policy().await.unwrap();
    policy.single_factor_users = vec!["pw".into()];
    h.admin.set_policy(&h.actor, &policy).await.unwrap();
    let u = h.admin.find_user(None, "pw").await.unwrap();
    h.admin.unlock(&h.actor, &u).await.unwrap();
    assert_eq!(h.validate("pw", "correct horse").await.reason, "single_factor_exception");
    assert_eq!(counter.take(), (1, 0));
    h.clock.advance_seconds(30);
    let c = totp_code(&pw_secret, p, h.now_s(), 0);
    assert_eq!(h.validate("pw", &format!("correct horse{c}")).await.decision, Decision::Accept);
    assert_eq!(counter.take(), (1, 0));
}

/// A local password set before passwords that look like codes were refused
/// (`12345678`): it still works with the code appended (the input is then
/// longer than any code), while sent alone it is read as a code, never
/// hashed, and refused like a missing password.
#[tokio::test]
async fn regression_a_code_shaped_legacy_password_works_with_its_code() {
    use tessera_core::audit::AuditRecord;
    let counter = Arc::new(CountingHasher::default());
    let h = harness_with(counter.clone());
    assert!(h.admin.add_user(&h.actor, None, "new", Some(Zeroizing::new("12345678".into()))).await.is_err());
    let hash = tessera_core::password::hash_password("12345678").unwrap();
    let user = User::new("default", "legacy", Some(hash), h.clock.now());
    let audit = AuditRecord::new(h.clock.now(), "test", &h.actor, "user.add");
    h.ctx.store.create_user(&user, audit).await.unwrap();
    let p = OtpParams::default();
    let s = h.token(&user, p).await;
    counter.take();
    let alone = h.validate("legacy", "12345678").await;
    assert_eq!(alone.decision, Decision::Reject, "{}", alone.reason);
    assert_eq!(counter.take(), (0, 0));
    let c = totp_code(&s, p, h.now_s(), 0);
    assert_eq!(h.validate("legacy", &format!("12345678{c}")).await.decision, Decision::Accept);
    assert_eq!(counter.take(), (1, 0));
}
