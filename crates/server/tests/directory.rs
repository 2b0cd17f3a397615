//! Realms with real sources: a private OpenLDAP slapd and the Entra ID
//! token-endpoint stub, through the server's DirectoryService and the
//! engine. Chain fallback only on unreachability, the attribute cache and
//! its flush, Entra answers mapped to decisions and audit reasons.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tessera_core::admin::Admin;
use tessera_core::audit::{Actor, AuditQuery};
use tessera_core::auth::{Authenticator, Decision, ValidateRequest, Validation};
use tessera_core::clock::{Clock, SystemClock};
use tessera_core::context::Context;
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::model::User;
use tessera_core::password::InlineHasher;
use tessera_core::random::OsRandom;
use tessera_core::realm::{EntraSettings, LdapSettings, RealmSecrets, RealmSettings, SourceSettings, secret_name};
use tessera_entra::stub::{Behavior, Stub};
use tessera_ldap::testing::{Slapd, fixtures};
use tessera_otp::{Keyed, OtpKind, OtpParams, Secret, format_code, time_step};
use tessera_server::directory::DirectoryService;
use tessera_store::{SqliteOptions, SqliteStore};
use zeroize::Zeroizing;

struct H {
    auth: Authenticator,
    admin: Admin,
    dir: Arc<DirectoryService>,
    actor: Actor,
    _tmp: tempfile::TempDir,
}

fn harness() -> H {
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let clock = Arc::new(SystemClock);
    let store =
        SqliteStore::create(&SqliteOptions::new(tmp.path().join("t.db")), &keys, &OsRandom, clock.now()).unwrap();
    let dir = Arc::new(DirectoryService::new());
    let ctx = Arc::new(Context {
        store: Arc::new(store),
        clock,
        random: Arc::new(OsRandom),
        hasher: Arc::new(InlineHasher),
        keys: Arc::new(keys),
        directory: dir.clone(),
        node: "test".into(),
        issuer: "tessera".into(),
    });
    H { auth: Authenticator::new(ctx.clone()), admin: Admin::new(ctx), dir, actor: Actor::new("test"), _tmp: tmp }
}

fn slapd() -> Option<&'static Slapd> {
    let s = Slapd::shared();
    if s.is_none() {
        assert!(std::env::var_os("TESSERA_REQUIRE_TOOLS").is_none(), "slapd is required (TESSERA_REQUIRE_TOOLS=1)");
        eprintln!("skipped: Debian slapd is not installed");
    }
    s
}

fn ldap_source(urls: Vec<String>, ca: &std::path::Path) -> LdapSettings {
    LdapSettings {
        urls,
        starttls: false,
        ca_file: Some(ca.display().to_string()),
        pinned_sha256: None,
        bind_template: None,
        bind_dn: Some(fixtures::SERVICE_DN.into()),
        base_dn: Some(fixtures::BASE_DN.into()),
        filter: Some(fixtures::USER_FILTER.into()),
        group_mode: "search".into(),
        member_of_attribute: "memberOf".into(),
        group_base_dn: Some(fixtures::GROUPS_DN.into()),
        group_filter: Some("(member={dn})".into()),
        group_name_attribute: "cn".into(),
        username_attribute: "uid".into(),
        connect_timeout_ms: 1000,
        timeout_ms: 2000,
        pool_size: 2,
    }
}

fn entra_source(stub: &Stub) -> EntraSettings {
    EntraSettings {
        authority: stub.authority().to_string(),
        tenant: stub.config().tenant,
        client_id: stub.config().client_id,
        scope: "openid".into(),
        upn_domain: Some("example.org".into()),
        allow_no_mfa: false,
        timeout_ms: 1500,
        ca_file: Some(stub.ca_file().display().to_string()),
    }
}

/// A port nothing listens on.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("ldap://127.0.0.1:{port}")
}

impl H {
    async fn realm(&self, sources: Vec<SourceSettings>, cache_ttl_seconds: u32) {
        let mut secrets = RealmSecrets::new();
        for (i, s) in sources.iter().enumerate() {
            if matches!(s, SourceSettings::Ldap(_)) {
                secrets.insert(secret_name(i, "bind_password"), Zeroizing::new(fixtures::SERVICE_PASSWORD.into()));
            }
        }
        let settings = RealmSettings { sources, cache_ttl_seconds, auto_provision: false };
        self.admin.put_realm(&self.actor, "corp", settings, Some(secrets)).await.unwrap();
        self.dir.reload(&self.admin).await.unwrap();
    }

    async fn user_with_token(&self, name: &str) -> (User, Secret) {
        let u = self.admin.add_user(&self.actor, Some("corp"), name, None).await.unwrap();
        let secret =
            Secret::from_bytes((0..20u8).map(|i| i.wrapping_mul(13).wrapping_add(name.len() as u8)).collect()).unwrap();
        self.admin.add_token(&self.actor, &u, &secret, OtpParams::default(), 0, None, "", false).await.unwrap();
        (u, secret)
    }

    async fn login(&self, user: &str, password: &str) -> Validation {
        self.auth
            .validate(ValidateRequest {
                username: format!("{user}@corp"),
                password: Zeroizing::new(password.into()),
                client: Some("test".into()),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    async fn last_reason(&self) -> String {
        let log = self.admin.audit_log(AuditQuery { limit: 1, ..AuditQuery::default() }).await.unwrap();
        log[0].reason.clone().unwrap_or_default()
    }
}

/// The current code (`steps` from now) of a default TOTP token.
fn code(secret: &Secret, steps: i64) -> String {
    let p = OtpParams::default();
    let OtpKind::Totp { period } = p.kind else { unreachable!() };
    let step = time_step(SystemClock.now().unix_seconds(), period) + steps;
    format_code(Keyed::new(secret, p.algorithm).hotp(step as u64, p.digits), p.digits)
}

#[tokio::test]
async fn ldap_password_and_code_with_groups() {
    let Some(ldap) = slapd() else { return };
    let h = harness();
    h.realm(vec![SourceSettings::Ldap(ldap_source(vec![ldap.ldaps_url.clone()], &ldap.ca_pem_path))], 0).await;
    let (_, s) = h.user_with_token(fixtures::ALICE).await;
    let v = h.login(fixtures::ALICE, &format!("{}{}", fixtures::ALICE_PASSWORD, code(&s, 0))).await;
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
    assert!(v.directory_groups.contains(&fixtures::VPN_ADMINS.to_string()), "{:?}", v.directory_groups);
    assert!(h.last_reason().await.contains("ldap:corp/ldap#1"));
    let v = h.login(fixtures::ALICE, &format!("wrong{}", code(&s, 1))).await;
    assert_eq!(v.decision, Decision::Reject);
    assert!(h.last_reason().await.starts_with("ldap_wrong_password"), "{}", h.last_reason().await);
    // the filter-injection name finds nobody (and no tessera user exists for it)
    let v = h.login("*)(uid=*", "anything123456").await;
    assert_eq!(v.decision, Decision::Reject);
}

#[tokio::test]
async fn chain_falls_back_to_entra_only_when_ldap_is_unreachable() {
    let Some(ldap) = slapd() else { return };
    let stub = Stub::builder()
        .user("alice@example.org", fixtures::ALICE_PASSWORD, Behavior::MfaRequired(50076))
        .start()
        .await
        .unwrap();
    let h = harness();
    // LDAP is up: a wrong LDAP password is final; Entra is never asked.
    h.realm(
        vec![
            SourceSettings::Ldap(ldap_source(vec![ldap.ldaps_url.clone()], &ldap.ca_pem_path)),
            SourceSettings::Entra(entra_source(&stub)),
        ],
        0,
    )
    .await;
    let (_, s) = h.user_with_token(fixtures::ALICE).await;
    let v = h.login(fixtures::ALICE, &format!("wrong{}", code(&s, 0))).await;
    assert_eq!(v.decision, Decision::Reject);
    assert!(stub.requests().is_empty(), "Entra must not be asked after LDAP said no");
    // Every LDAP server down: Entra answers (MFA required = the password is right).
    h.realm(
        vec![
            SourceSettings::Ldap(ldap_source(vec![dead_url(), dead_url()], &ldap.ca_pem_path)),
            SourceSettings::Entra(entra_source(&stub)),
        ],
        0,
    )
    .await;
    let v = h.login(fixtures::ALICE, &format!("{}{}", fixtures::ALICE_PASSWORD, code(&s, 0))).await;
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
    assert!(h.last_reason().await.contains("entra:corp/entra#2"), "{}", h.last_reason().await);
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].username.as_deref(), Some("alice@example.org"), "the UPN domain is appended");
    assert!(h.dir.stats.fallbacks.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_realm_with_users_cannot_be_deleted() {
    let stub = Stub::builder().start().await.unwrap();
    let h = harness();
    h.realm(vec![SourceSettings::Entra(entra_source(&stub))], 0).await;
    let (u, _) = h.user_with_token("dana").await;
    // deleting it would turn dana's password+code into code-only
    let e = h.admin.delete_realm(&h.actor, "corp").await.unwrap_err();
    assert!(matches!(e, tessera_core::CoreError::Conflict(_)), "{e}");
    h.admin.delete_user(&h.actor, &u).await.unwrap();
    h.admin.delete_realm(&h.actor, "corp").await.unwrap();
}

#[tokio::test]
async fn unknown_in_entra_while_ldap_is_down_is_an_outage_not_a_failure() {
    let Some(ldap) = slapd() else { return };
    let stub = Stub::builder().start().await.unwrap();
    let h = harness();
    h.realm(
        vec![
            SourceSettings::Ldap(ldap_source(vec![dead_url()], &ldap.ca_pem_path)),
            SourceSettings::Entra(entra_source(&stub)),
        ],
        0,
    )
    .await;
    let (_, s) = h.user_with_token(fixtures::CAROL).await;
    let v = h.login(fixtures::CAROL, &format!("{}{}", fixtures::CAROL_PASSWORD, code(&s, 0))).await;
    assert_eq!(v.decision, Decision::Reject);
    assert!(h.last_reason().await.starts_with("ldap_unavailable"), "{}", h.last_reason().await);
    assert_eq!(stub.requests().len(), 1, "Entra was asked (LDAP was down) and did not know carol");
    let carol = h.admin.find_user(Some("corp"), fixtures::CAROL).await.unwrap();
    assert_eq!(carol.lock.failures, 0, "LDAP, which may know carol, was down: not her failure");
}

#[tokio::test]
async fn a_fallback_is_not_cached_as_the_users_source() {
    let Some(ldap) = slapd() else { return };
    let stub = Stub::builder()
        .user("bob@example.org", fixtures::BOB_PASSWORD, Behavior::MfaRequired(50076))
        .start()
        .await
        .unwrap();
    let h = harness();
    // LDAP down, cache on: Entra answers, but bob must not be remembered as an Entra user
    h.realm(
        vec![
            SourceSettings::Ldap(ldap_source(vec![dead_url()], &ldap.ca_pem_path)),
            SourceSettings::Entra(entra_source(&stub)),
        ],
        300,
    )
    .await;
    let (_, s) = h.user_with_token(fixtures::BOB).await;
    let v = h.login(fixtures::BOB, &format!("{}{}", fixtures::BOB_PASSWORD, code(&s, -1))).await;
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
    let v = h.login(fixtures::BOB, &format!("{}{}", fixtures::BOB_PASSWORD, code(&s, 0))).await;
    assert_eq!(v.decision, Decision::Accept, "{}", v.reason);
    assert_eq!(h.dir.stats.cache_hits.load(Ordering::Relaxed), 0, "a fallback is not remembered");
    assert_eq!(h.dir.stats.cache_misses.load(Ordering::Relaxed), 2);
    // LDAP back (same realm, cache kept): a wrong LDAP password is final, Entra is not asked first
    let mut settings = h.admin.realm("corp").await.unwrap().settings;
    if let SourceSettings::Ldap(l) = &mut settings.sources[0] {
        l.urls = vec![ldap.ldaps_url.clone()];
    }
    h.admin.put_realm(&h.actor, "corp", settings, None).await.unwrap();
    h.dir.reload(&h.admin).await.unwrap();
    stub.clear_requests();
    let v = h.login(fixtures::BOB, &format!("not-bobs{}", code(&s, 1))).await;
    assert_eq!(v.decision, Decision::Reject);
    assert!(stub.requests().is_empty(), "Entra was asked although LDAP is up");
    assert!(h.last_reason().await.starts_with("ldap_wrong_password"), "{}", h.last_reason().await);
}

#[tokio::test]
async fn entra_answers_map_to_decisions_and_audit_reasons() {
    let stub = Stub::builder()
        .user("mfa@example.org", "pw-right", Behavior::MfaRequired(50079))
        .user_any_password("locked@example.org", Behavior::Locked)
        .user_any_password("nomfa@example.org", Behavior::Success)
        .user_any_password("slow@example.org", Behavior::Slow(std::time::Duration::from_secs(4)))
        .user_any_password("broken@example.org", Behavior::MalformedJson)
        .user_any_password("down@example.org", Behavior::ServerError(503))
        .start()
        .await
        .unwrap();
    let h = harness();
    h.realm(vec![SourceSettings::Entra(entra_source(&stub))], 0).await;
    let cases: &[(&str, &str, Decision, &str)] = &[
        ("mfa", "pw-right", Decision::Accept, "otp (via entra:corp/entra#1)"),
        ("mfa", "pw-wrong", Decision::Reject, "entra_wrong_password"),
        ("locked", "x", Decision::Reject, "entra_locked"),
        ("nomfa", "x", Decision::Reject, "entra_no_mfa"),
        ("slow", "x", Decision::Reject, "entra_unavailable"),
        ("broken", "x", Decision::Reject, "entra_unavailable"),
        ("down", "x", Decision::Reject, "entra_unavailable"),
    ];
    let mut secrets = std::collections::HashMap::new();
    for (user, pw, want, reason) in cases {
        if !secrets.contains_key(user) {
            secrets.insert(*user, h.user_with_token(user).await.1);
        }
        let s = &secrets[user];
        let started = std::time::Instant::now();
        let v = h.login(user, &format!("{pw}{}", code(s, 0))).await;
        assert_eq!(&v.decision, want, "{user}: {}", v.reason);
        let got = h.last_reason().await;
        assert!(got.starts_with(reason), "{user}: audit reason {got:?}, expected {reason:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(4), "{user}: bounded by the timeout");
    }
    // refusals and outages do not count toward tessera's lockout
    let locked = h.admin.find_user(Some("corp"), "locked").await.unwrap();
    assert_eq!(locked.lock.failures, 0);
}

#[tokio::test]
async fn the_cache_remembers_users_and_a_flush_clears_it() {
    let Some(ldap) = slapd() else { return };
    let h = harness();
    h.realm(vec![SourceSettings::Ldap(ldap_source(vec![ldap.ldap_url.clone()], &ldap.ca_pem_path))], 300).await;
    let (_, s) = h.user_with_token(fixtures::BOB).await;
    let hits = || h.dir.stats.cache_hits.load(Ordering::Relaxed);
    let misses = || h.dir.stats.cache_misses.load(Ordering::Relaxed);
    assert_eq!(
        h.login(fixtures::BOB, &format!("{}{}", fixtures::BOB_PASSWORD, code(&s, -1))).await.decision,
        Decision::Accept
    );
    assert_eq!((hits(), misses()), (0, 1));
    let v = h.login(fixtures::BOB, &format!("{}{}", fixtures::BOB_PASSWORD, code(&s, 0))).await;
    assert_eq!(v.decision, Decision::Accept);
    assert_eq!((hits(), misses()), (1, 1));
    assert!(v.directory_groups.contains(&fixtures::STAFF.to_string()), "cached groups: {:?}", v.directory_groups);
    // flush (as `tessera realm flush-cache` does) and reload: the next login misses
    h.admin.flush_directory_cache(&h.actor).await.unwrap();
    h.dir.reload(&h.admin).await.unwrap();
    let v = h.login(fixtures::BOB, &format!("{}{}", fixtures::BOB_PASSWORD, code(&s, 1))).await;
    assert_eq!(v.decision, Decision::Accept);
    assert_eq!((hits(), misses()), (1, 2));
    // a wrong password is still checked by the directory: verdicts are never cached
    let (_, s2) = h.user_with_token(fixtures::ALICE).await;
    assert_eq!(
        h.login(fixtures::ALICE, &format!("{}{}", fixtures::ALICE_PASSWORD, code(&s2, 0))).await.decision,
        Decision::Accept
    );
    assert_eq!(h.login(fixtures::ALICE, &format!("nope{}", code(&s2, 1))).await.decision, Decision::Reject);
}
