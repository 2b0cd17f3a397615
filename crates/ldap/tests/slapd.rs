//! `LdapSource` against a real OpenLDAP slapd (Debian `slapd`), one shared
//! instance per test process (see `tessera_ldap::testing`). Skipped with a
//! message when slapd is not installed, unless `TESSERA_REQUIRE_TOOLS=1`.

use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings};
use tessera_ldap::testing::Slapd;
use tessera_ldap::testing::fixtures::*;
use tessera_ldap::{BindMode, GroupMode, LdapConfig, LdapError, LdapSource, LdapVerdict};
use zeroize::Zeroizing;

macro_rules! slapd {
    () => {
        match Slapd::shared() {
            Some(s) => s,
            None => return,
        }
    };
}

fn source(cfg: LdapConfig) -> LdapSource {
    LdapSource::new(cfg).expect("valid config")
}

fn accepted(v: LdapVerdict) -> tessera_ldap::DirectoryUser {
    match v {
        LdapVerdict::Accepted(u) => u,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[tokio::test]
async fn bind_template_accepts_and_reads_the_user() {
    let s = slapd!();
    let mut cfg = s.template_config(&s.ldap_url);
    cfg.groups = GroupMode::MemberOf { attribute: "memberOf".into() };
    let user = accepted(source(cfg).authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
    assert_eq!(user.dn, user_dn(ALICE));
    assert_eq!(user.username, ALICE);
    assert_eq!(user.display_name.as_deref(), Some(ALICE_DISPLAY_NAME));
    assert_eq!(user.email.as_deref(), Some(ALICE_MAIL));
    assert_eq!(user.phone.as_deref(), Some(ALICE_MOBILE));
    assert_eq!(user.groups, [STAFF, VPN_ADMINS]);
}

#[tokio::test]
async fn search_then_bind_accepts_with_group_search() {
    let s = slapd!();
    let mut cfg = s.search_config(&s.ldap_url);
    cfg.groups = Slapd::group_search();
    let src = source(cfg);
    let alice = accepted(src.authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
    assert_eq!(alice.dn, user_dn(ALICE));
    assert_eq!(alice.groups, [STAFF, VPN_ADMINS]);
    let bob = accepted(src.authenticate(BOB, BOB_PASSWORD).await.unwrap());
    assert_eq!(bob.groups, [STAFF]);
    assert_eq!(bob.display_name.as_deref(), Some("Bob Builder"), "falls back to cn");
}

#[tokio::test]
async fn groups_from_member_of_and_from_posix_member_uid() {
    let s = slapd!();
    let mut cfg = s.search_config(&s.ldap_url);
    cfg.groups = GroupMode::MemberOf { attribute: "memberOf".into() };
    assert_eq!(accepted(source(cfg).authenticate(ALICE, ALICE_PASSWORD).await.unwrap()).groups, [STAFF, VPN_ADMINS]);

    let mut cfg = s.search_config(&s.ldap_url);
    cfg.groups = GroupMode::Search {
        base_dn: GROUPS_DN.into(),
        filter: "(&(objectClass=posixGroup)(memberUid={user}))".into(),
        name_attribute: "cn".into(),
    };
    assert_eq!(accepted(source(cfg).authenticate(ALICE, ALICE_PASSWORD).await.unwrap()).groups, [DEVELOPERS]);
}

#[tokio::test]
async fn case_of_the_typed_name_is_canonicalised() {
    let s = slapd!();
    let src = source(s.search_config(&s.ldap_url));
    let user = accepted(src.authenticate("ALICE", ALICE_PASSWORD).await.unwrap());
    assert_eq!(user.username, ALICE);
}

#[tokio::test]
async fn wrong_password_is_wrong_password_in_both_modes() {
    let s = slapd!();
    for cfg in [s.search_config(&s.ldap_url), s.template_config(&s.ldap_url)] {
        let src = source(cfg);
        assert_eq!(src.authenticate(ALICE, "not-her-password").await.unwrap(), LdapVerdict::WrongPassword);
        assert_eq!(src.authenticate(ALICE, BOB_PASSWORD).await.unwrap(), LdapVerdict::WrongPassword);
    }
}

#[tokio::test]
async fn unknown_user() {
    let s = slapd!();
    let src = source(s.search_config(&s.ldap_url));
    assert_eq!(src.authenticate("mallory", "whatever").await.unwrap(), LdapVerdict::UnknownUser);
    // Template mode cannot tell: slapd answers "invalid credentials" for a
    // DN that does not exist.
    let src = source(s.template_config(&s.ldap_url));
    assert_eq!(src.authenticate("mallory", "whatever").await.unwrap(), LdapVerdict::WrongPassword);
}

/// The client must never send an empty password: this slapd (`allow
/// bind_anon_dn`) answers such an unauthenticated bind with success.
#[tokio::test]
async fn empty_password_never_reaches_a_bind() {
    let s = slapd!();
    let carol = format!("dn=\"{}\"", user_dn(CAROL));
    for cfg in [s.search_config(&s.ldap_url), s.template_config(&s.ldap_url)] {
        let src = source(cfg);
        for pw in ["", "\0", "\0\0\0\0", "\0carol-Pa55"] {
            assert_eq!(src.authenticate(CAROL, pw).await.unwrap(), LdapVerdict::WrongPassword, "{pw:?}");
        }
    }
    assert!(!s.log().contains(&carol), "a bind as carol reached slapd");

    // Control: the same bind sent by hand *succeeds* on this server, and it
    // shows up in the log, so the check above can see one.
    let (conn, mut ldap) = LdapConnAsync::with_settings(LdapConnSettings::new(), &s.ldap_url).await.unwrap();
    ldap3::drive!(conn);
    let res = ldap.simple_bind(&user_dn(CAROL), "").await.unwrap();
    assert_eq!(res.rc, 0, "slapd should accept an unauthenticated bind: {res}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !s.log().contains(&carol) {
        assert!(Instant::now() < deadline, "the hand-made bind is not in the slapd log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn filter_injection_matches_nothing() {
    let s = slapd!();
    let src = source(s.search_config(&s.ldap_url));
    for user in ["*)(uid=*", "*", "alice)(uid=*", "*)(|(uid=*", "alice*", "(uid=alice)"] {
        assert_eq!(src.authenticate(user, ALICE_PASSWORD).await.unwrap(), LdapVerdict::UnknownUser, "{user:?}");
        assert_eq!(src.lookup(user).await.unwrap(), None, "{user:?}");
    }
    // In a DN template the same input is an escaped RDN value: no such entry.
    let src = source(s.template_config(&s.ldap_url));
    for user in ["*)(uid=*", "alice,ou=people", "alice+cn=x"] {
        assert_eq!(src.authenticate(user, ALICE_PASSWORD).await.unwrap(), LdapVerdict::WrongPassword, "{user:?}");
    }
}

#[tokio::test]
async fn special_characters_in_the_uid_work_in_both_modes() {
    let s = slapd!();
    for mut cfg in [s.search_config(&s.ldap_url), s.template_config(&s.ldap_url)] {
        cfg.groups = Slapd::group_search();
        let src = source(cfg);
        let user = accepted(src.authenticate(SPECIAL, SPECIAL_PASSWORD).await.unwrap());
        assert_eq!(user.username, SPECIAL);
        assert_eq!(user.groups, [VPN_ADMINS]);
        assert_eq!(src.authenticate(SPECIAL, "nope").await.unwrap(), LdapVerdict::WrongPassword);
    }
    let mut cfg = s.search_config(&s.ldap_url);
    cfg.groups = GroupMode::MemberOf { attribute: "memberOf".into() };
    assert_eq!(accepted(source(cfg).authenticate(SPECIAL, SPECIAL_PASSWORD).await.unwrap()).groups, [VPN_ADMINS]);
}

#[tokio::test]
async fn two_matching_entries_are_refused_as_ambiguous() {
    let s = slapd!();
    let src = source(s.search_config(&s.ldap_url));
    assert_eq!(src.authenticate(TWIN, TWIN_PASSWORD).await.unwrap(), LdapVerdict::Refused("ambiguous"));
    assert!(matches!(src.lookup(TWIN).await, Err(LdapError::Protocol(_))));
}

#[tokio::test]
async fn lookup_reads_without_a_password() {
    let s = slapd!();
    let mut cfg = s.search_config(&s.ldap_url);
    cfg.groups = Slapd::group_search();
    let src = source(cfg);
    let alice = src.lookup(ALICE).await.unwrap().expect("alice exists");
    assert_eq!(alice.email.as_deref(), Some(ALICE_MAIL));
    assert_eq!(alice.groups, [STAFF, VPN_ADMINS]);
    assert_eq!(src.lookup("mallory").await.unwrap(), None);
    let template = source(s.template_config(&s.ldap_url));
    assert!(matches!(template.lookup(ALICE).await, Err(LdapError::Config(_))));
}

#[tokio::test]
async fn ldaps_with_the_test_ca() {
    let s = slapd!();
    for cfg in [s.search_config(&s.ldaps_url), s.template_config(&s.ldaps_url)] {
        accepted(source(cfg).authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
    }
}

/// A certificate that does not verify is an error, never a verdict: the
/// password is not sent.
fn assert_fails_closed(r: Result<LdapVerdict, LdapError>) {
    match r {
        Err(LdapError::Unavailable(msg)) => assert!(msg.contains("TLS"), "{msg}"),
        other => panic!("expected Unavailable (TLS), got {other:?}"),
    }
}

#[tokio::test]
async fn ldaps_with_a_wrong_ca_fails_closed() {
    let s = slapd!();
    for mut cfg in [s.search_config(&s.ldaps_url), s.template_config(&s.ldaps_url)] {
        cfg.ca_file = Some(s.other_ca_pem_path.clone());
        let src = source(cfg);
        assert_fails_closed(src.authenticate(ALICE, ALICE_PASSWORD).await);
        assert_fails_closed(src.authenticate(ALICE, "wrong").await);
    }
}

#[tokio::test]
async fn pinned_certificate_right_works_wrong_fails_closed() {
    let s = slapd!();
    let mut cfg = s.search_config(&s.ldaps_url);
    cfg.ca_file = None;
    cfg.pinned_sha256 = Some(s.server_cert_sha256.to_uppercase());
    accepted(source(cfg.clone()).authenticate(ALICE, ALICE_PASSWORD).await.unwrap());

    // The pin replaces CA verification: a CA file that would fail is ignored.
    cfg.ca_file = Some(s.other_ca_pem_path.clone());
    accepted(source(cfg.clone()).authenticate(ALICE, ALICE_PASSWORD).await.unwrap());

    cfg.pinned_sha256 = Some("00".repeat(32));
    let r = source(cfg).authenticate(ALICE, ALICE_PASSWORD).await;
    assert!(matches!(&r, Err(LdapError::Unavailable(m)) if m.contains("pinned")), "{r:?}");
    assert_fails_closed(r);
}

#[tokio::test]
async fn starttls_works_and_fails_closed_with_a_wrong_ca() {
    let s = slapd!();
    let mut cfg = s.search_config(&s.ldap_url);
    cfg.starttls = true;
    accepted(source(cfg.clone()).authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
    let mut pinned = cfg.clone();
    pinned.pinned_sha256 = Some(s.server_cert_sha256.clone());
    accepted(source(pinned).authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
    cfg.ca_file = Some(s.other_ca_pem_path.clone());
    assert_fails_closed(source(cfg).authenticate(ALICE, ALICE_PASSWORD).await);
}

#[tokio::test]
async fn failover_skips_a_dead_first_server() {
    let s = slapd!();
    let dead = format!("ldap://127.0.0.1:{}", closed_port());
    for mut cfg in [s.search_config(&s.ldap_url), s.template_config(&s.ldap_url)] {
        cfg.urls = vec![dead.clone(), s.ldap_url.clone()];
        let src = source(cfg);
        accepted(src.authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
        // A definite answer from the live server stays definite.
        assert_eq!(src.authenticate(ALICE, "wrong").await.unwrap(), LdapVerdict::WrongPassword);
    }
    // A server failing TLS is skipped like a dead one.
    let mut cfg = s.search_config(&s.ldaps_url);
    cfg.urls = vec![dead, s.ldaps_url.clone()];
    accepted(source(cfg).authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
}

#[tokio::test]
async fn all_servers_dead_is_unavailable_quickly() {
    let s = slapd!();
    let mut cfg = s.search_config(&s.ldap_url);
    cfg.urls = vec![format!("ldap://127.0.0.1:{}", closed_port()), format!("ldaps://127.0.0.1:{}", closed_port())];
    let started = Instant::now();
    let r = source(cfg).authenticate(ALICE, ALICE_PASSWORD).await;
    assert!(matches!(r, Err(LdapError::Unavailable(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());

    // A server that accepts TCP but never speaks: bounded by the connect
    // timeout (TLS handshake) per server.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("ldaps://{}", hung.local_addr().unwrap());
    let mut cfg = s.template_config(&s.ldaps_url);
    cfg.urls = vec![hung_url.clone(), hung_url];
    cfg.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let r = source(cfg).authenticate(ALICE, ALICE_PASSWORD).await;
    let took = started.elapsed();
    match r {
        Err(LdapError::Unavailable(msg)) => assert!(msg.contains("300ms"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_wrong_service_password_is_a_configuration_error() {
    let s = slapd!();
    let mut cfg = s.search_config(&s.ldap_url);
    if let BindMode::Search { bind_password, .. } = &mut cfg.bind {
        *bind_password = Zeroizing::new("wrong".into());
    }
    let r = source(cfg).authenticate(ALICE, ALICE_PASSWORD).await;
    match r {
        Err(LdapError::Config(msg)) => {
            assert!(msg.contains("service account"), "{msg}");
            assert!(!msg.contains("wrong"), "the password leaked into the error: {msg}");
        }
        other => panic!("{other:?}"),
    }
}

/// Pooled connections under concurrency: bind connections are reused for
/// other users and wrong passwords, and each verdict stays the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_share_a_small_pool() {
    let s = slapd!();
    for mut cfg in [s.search_config(&s.ldaps_url), s.template_config(&s.ldap_url)] {
        cfg.pool_size = 2;
        cfg.groups = Slapd::group_search();
        let src = source(cfg);
        let mut tasks = Vec::new();
        for i in 0..60 {
            let src = src.clone();
            tasks.push(tokio::spawn(async move {
                match i % 3 {
                    0 => {
                        let u = accepted(src.authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
                        assert_eq!((u.username.as_str(), u.groups.len()), (ALICE, 2));
                    }
                    1 => assert_eq!(src.authenticate(BOB, ALICE_PASSWORD).await.unwrap(), LdapVerdict::WrongPassword),
                    _ => {
                        let u = accepted(src.authenticate(BOB, BOB_PASSWORD).await.unwrap());
                        assert_eq!(u.groups, [STAFF]);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}

#[tokio::test]
async fn test_reports_each_server() {
    let s = slapd!();
    let dead = format!("ldap://127.0.0.1:{}", closed_port());
    let mut cfg = s.search_config(&s.ldaps_url);
    cfg.urls = vec![s.ldaps_url.clone(), dead.clone()];
    let checks = source(cfg.clone()).test().await;
    assert_eq!(checks.len(), 2);
    let ok = &checks[0];
    assert!(ok.ok(), "{ok:?}");
    assert_eq!((ok.reachable, ok.tls, ok.service_bind), (true, Some(true), Some(true)));
    assert_eq!(ok.peer_sha256.as_deref(), Some(s.server_cert_sha256.as_str()));
    let down = &checks[1];
    assert!(!down.ok() && !down.reachable, "{down:?}");
    assert_eq!(down.url, dead);

    // A CA that does not match: reported with the certificate's fingerprint.
    cfg.urls = vec![s.ldaps_url.clone()];
    cfg.ca_file = Some(s.other_ca_pem_path.clone());
    let bad = &source(cfg).test().await[0];
    assert_eq!((bad.reachable, bad.tls, bad.service_bind), (true, Some(false), None), "{bad:?}");
    assert_eq!(bad.peer_sha256.as_deref(), Some(s.server_cert_sha256.as_str()));
    assert!(bad.message.contains("TLS"), "{}", bad.message);
}

/// Pooled connections to a server that went away are not trusted: the next
/// login reports Unavailable instead of hanging or retrying forever.
#[tokio::test]
async fn server_gone_after_pooling_is_unavailable() {
    let Some(own) = Slapd::start_or_skip() else { return };
    let src = source(own.search_config(&own.ldap_url));
    accepted(src.authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
    drop(own);
    let r = src.authenticate(ALICE, ALICE_PASSWORD).await;
    assert!(matches!(r, Err(LdapError::Unavailable(_))), "{r:?}");
}

/// A server that closes idle connections (AD does after 15 minutes): the
/// pooled connection it closed is replaced, and the login still succeeds.
#[tokio::test]
async fn idle_connections_closed_by_the_server_are_replaced() {
    let Some(own) = Slapd::or_skip(Slapd::start_with("idletimeout 1")) else { return };
    // Search mode pools both kinds (service and bind connections).
    let mut cfg = own.search_config(&own.ldaps_url);
    cfg.pool_size = 1;
    let src = source(cfg);
    accepted(src.authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
    // slapd checks for idle connections every idletimeout/2 seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    while own.log().matches("closed (idletimeout)").count() < 2 {
        assert!(Instant::now() < deadline, "slapd did not close the idle connections:\n{}", own.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    accepted(src.authenticate(ALICE, ALICE_PASSWORD).await.unwrap());
    assert_eq!(src.authenticate(BOB, "wrong").await.unwrap(), LdapVerdict::WrongPassword);
}

#[tokio::test]
async fn a_known_dn_is_checked_with_one_bind_and_no_search() {
    let s = slapd!();
    let mut cfg = s.search_config(&s.ldap_url);
    cfg.groups = Slapd::group_search();
    let src = source(cfg);
    let dn = user_dn(BOB);
    let bob = accepted(src.authenticate_known(&dn, BOB, BOB_PASSWORD).await.unwrap());
    assert_eq!((bob.dn.as_str(), bob.username.as_str()), (dn.as_str(), BOB));
    assert!(bob.groups.is_empty(), "nothing is read: the caller keeps its cached groups");
    assert_eq!(src.authenticate_known(&dn, BOB, "wrong").await.unwrap(), LdapVerdict::WrongPassword);
    // empty passwords never reach a bind, even with a known DN
    assert_eq!(src.authenticate_known(&dn, BOB, "").await.unwrap(), LdapVerdict::WrongPassword);
    assert_eq!(src.authenticate_known("", BOB, BOB_PASSWORD).await.unwrap(), LdapVerdict::UnknownUser);
}
