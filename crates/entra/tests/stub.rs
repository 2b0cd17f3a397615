//! The real client against the HTTPS stub of the token endpoint: every
//! scripted answer maps to the right outcome, timeouts and untrusted
//! certificates fail closed, usernames get the UPN domain, empty passwords
//! are never sent, and "test connection" explains configuration mistakes.

use std::time::{Duration, Instant};

use tessera_entra::stub::{Behavior, Stub};
use tessera_entra::{EntraConfig, EntraSource, Outcome};

const PW: &str = "Corr3ct horse!";

async fn stub_with_users() -> Stub {
    let mut b = Stub::builder();
    for (name, behavior) in [
        ("mfa50076@contoso.example", Behavior::MfaRequired(50076)),
        ("mfa50079@contoso.example", Behavior::MfaRequired(50079)),
        ("mfa50074@contoso.example", Behavior::MfaRequired(50074)),
        ("mfa50158@contoso.example", Behavior::MfaRequired(50158)),
        ("mfa50072@contoso.example", Behavior::MfaRequired(50072)),
        ("nomfa@contoso.example", Behavior::Success),
        ("locked@contoso.example", Behavior::Locked),
        ("disabled@contoso.example", Behavior::Disabled),
        ("expired@contoso.example", Behavior::PasswordExpired),
        ("blocked@contoso.example", Behavior::BlockedByConditionalAccess),
        ("consent@contoso.example", Behavior::ConsentRequired),
        ("tenant404@contoso.example", Behavior::TenantNotFound),
        ("app404@contoso.example", Behavior::AppNotFound),
        ("needsecret@contoso.example", Behavior::ClientSecretRequired),
        ("badscope@contoso.example", Behavior::InvalidScope),
        ("malformed@contoso.example", Behavior::MalformedJson),
        ("err500@contoso.example", Behavior::ServerError(500)),
        ("err503@contoso.example", Behavior::ServerError(503)),
        ("throttled@contoso.example", Behavior::Throttled),
        ("slow@contoso.example", Behavior::Slow(Duration::from_secs(30))),
    ] {
        b = b.user(name, PW, behavior);
    }
    b.user_any_password("alwayswrong@contoso.example", Behavior::WrongPassword).start().await.unwrap()
}

fn source(cfg: EntraConfig) -> EntraSource {
    EntraSource::new(cfg).unwrap()
}

#[tokio::test]
async fn every_scripted_answer_maps_to_its_outcome() {
    let stub = stub_with_users().await;
    let entra = source(stub.config());
    let cases: Vec<(&str, Outcome, &str)> = vec![
        ("mfa50076@contoso.example", Outcome::PasswordOk { code: Some(50076) }, "entra_mfa_required_password_ok"),
        ("mfa50079@contoso.example", Outcome::PasswordOk { code: Some(50079) }, "entra_mfa_required_password_ok"),
        ("mfa50074@contoso.example", Outcome::PasswordOk { code: Some(50074) }, "entra_mfa_required_password_ok"),
        ("mfa50158@contoso.example", Outcome::PasswordOk { code: Some(50158) }, "entra_mfa_required_password_ok"),
        ("mfa50072@contoso.example", Outcome::PasswordOk { code: Some(50072) }, "entra_mfa_required_password_ok"),
        ("nomfa@contoso.example", Outcome::NoMfa, "entra_no_mfa"),
        ("alwayswrong@contoso.example", Outcome::WrongPassword { code: Some(50126) }, "entra_wrong_password"),
        ("nobody@contoso.example", Outcome::UnknownUser { code: Some(50034) }, "entra_unknown_user"),
        ("locked@contoso.example", Outcome::Locked, "entra_locked"),
        ("disabled@contoso.example", Outcome::Disabled, "entra_disabled"),
        ("expired@contoso.example", Outcome::PasswordExpired { code: 50055 }, "entra_password_expired"),
        ("blocked@contoso.example", Outcome::Blocked { code: 53003 }, "entra_blocked_by_policy"),
        ("malformed@contoso.example", Outcome::Unavailable("malformed_json"), "entra_unavailable"),
        ("err500@contoso.example", Outcome::Unavailable("server_error"), "entra_unavailable"),
        ("err503@contoso.example", Outcome::Unavailable("server_error"), "entra_unavailable"),
        ("throttled@contoso.example", Outcome::Unavailable("throttled"), "entra_unavailable"),
    ];
    for (user, want, reason) in cases {
        let got = entra.authenticate(user, PW).await;
        assert_eq!(got, want, "{user}");
        assert_eq!(got.audit_reason(), reason, "{user}");
        let accepted = matches!(want, Outcome::PasswordOk { .. });
        assert_eq!(entra.password_ok(&got), accepted, "{user}");
    }
    for (user, code) in [
        ("consent@contoso.example", 65001),
        ("tenant404@contoso.example", 90002),
        ("app404@contoso.example", 700016),
        ("needsecret@contoso.example", 7000218),
        ("badscope@contoso.example", 70011),
    ] {
        let got = entra.authenticate(user, PW).await;
        assert!(matches!(got, Outcome::ConfigError { code: Some(c), .. } if c == code), "{user}: {got:?}");
        assert_eq!(got.audit_reason(), "entra_config_error");
        assert!(!entra.password_ok(&got));
    }
    // A wrong password for an MFA user is a wrong password, not "MFA required".
    assert_eq!(
        entra.authenticate("mfa50076@contoso.example", "not it").await,
        Outcome::WrongPassword { code: Some(50126) }
    );
    // Every request looked like the real thing.
    let requests = stub.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.tenant, "contoso.onmicrosoft.com");
        assert_eq!(r.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
        assert_eq!(r.grant_type.as_deref(), Some("password"));
        assert_eq!(r.client_id.as_deref(), Some("00001111-aaaa-2222-bbbb-3333cccc4444"));
        assert_eq!(r.scope.as_deref(), Some("openid"));
        assert!(r.password_sent);
        assert!(!r.client_secret_sent);
    }
}

#[tokio::test]
async fn no_mfa_accounts_are_refused_unless_allowed() {
    let stub = stub_with_users().await;
    let strict = source(stub.config());
    let o = strict.authenticate("nomfa@contoso.example", PW).await;
    assert_eq!(o, Outcome::NoMfa);
    assert!(!strict.password_ok(&o));
    let mut cfg = stub.config();
    cfg.allow_no_mfa = true;
    let lax = source(cfg);
    let o = lax.authenticate("nomfa@contoso.example", PW).await;
    assert_eq!(o, Outcome::NoMfa);
    assert!(lax.password_ok(&o));
    // The token never shows up in what the caller gets.
    assert!(!format!("{o:?} {o}").contains("stub-access-token"));
}

#[tokio::test]
async fn a_slow_endpoint_fails_closed_within_the_timeout() {
    let stub = stub_with_users().await;
    let mut cfg = stub.config();
    cfg.timeout = Duration::from_millis(400);
    let entra = source(cfg);
    let started = Instant::now();
    let o = entra.authenticate("slow@contoso.example", PW).await;
    let elapsed = started.elapsed();
    assert_eq!(o, Outcome::Unavailable("timeout"));
    assert!(!entra.password_ok(&o));
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(400) + Duration::from_millis(1500), "took {elapsed:?}");
    // The request did reach the stub (the slowness is the answer's).
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable_never_password_ok() {
    let stub = stub_with_users().await;
    // No extra CA: only the OS roots, which do not know the stub's CA.
    let mut cfg = stub.config();
    cfg.ca_file = None;
    let o = source(cfg).authenticate("mfa50076@contoso.example", PW).await;
    assert_eq!(o, Outcome::Unavailable("tls"));
    // A different CA does not help either.
    let dir = tempfile_dir();
    let other = dir.join("other-ca.pem");
    std::fs::write(&other, Stub::untrusted_ca_pem().unwrap()).unwrap();
    let mut cfg = stub.config();
    cfg.ca_file = Some(other);
    let entra = source(cfg);
    let o = entra.authenticate("mfa50076@contoso.example", PW).await;
    assert_eq!(o, Outcome::Unavailable("tls"));
    assert!(!entra.password_ok(&o));
    // The handshake failed, so no request (and no password) got through.
    assert!(stub.requests().is_empty());
    let report = entra.test().await;
    assert!(!report.ok);
    assert!(report.message.contains("not trusted"), "{}", report.message);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let stub = stub_with_users().await;
    // Built while the stub's CA file still exists.
    let entra = source(stub.config());
    drop(stub);
    // Give the aborted listener a moment to close.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let o = entra.authenticate("mfa50076@contoso.example", PW).await;
    assert_eq!(o, Outcome::Unavailable("connect"));
}

#[tokio::test]
async fn the_upn_domain_is_appended_to_bare_names_only() {
    let stub = Stub::builder()
        .user("alice@corp.example.com", PW, Behavior::MfaRequired(50076))
        .user("bob@other.example", PW, Behavior::MfaRequired(50076))
        .start()
        .await
        .unwrap();
    let mut cfg = stub.config();
    cfg.upn_domain = Some("corp.example.com".into());
    let entra = source(cfg);
    assert_eq!(entra.authenticate("alice", PW).await, Outcome::PasswordOk { code: Some(50076) });
    assert_eq!(entra.authenticate("bob@other.example", PW).await, Outcome::PasswordOk { code: Some(50076) });
    let sent: Vec<_> = stub.requests().into_iter().map(|r| r.username.unwrap_or_default()).collect();
    assert_eq!(sent, ["alice@corp.example.com", "bob@other.example"]);
    // Without a UPN domain a bare name goes out bare (and is unknown).
    let entra = source(stub.config());
    assert_eq!(entra.authenticate("alice", PW).await, Outcome::UnknownUser { code: Some(50034) });
    assert_eq!(stub.requests().last().and_then(|r| r.username.clone()).as_deref(), Some("alice"));
}

#[tokio::test]
async fn empty_passwords_and_junk_names_are_never_sent() {
    let stub = stub_with_users().await;
    let entra = source(stub.config());
    assert_eq!(entra.authenticate("mfa50076@contoso.example", "").await, Outcome::WrongPassword { code: None });
    let long = "x".repeat(tessera_entra::MAX_PASSWORD_BYTES + 1);
    assert_eq!(entra.authenticate("mfa50076@contoso.example", &long).await, Outcome::WrongPassword { code: None });
    for name in ["", "a b@contoso.example", "x\u{7}@contoso.example"] {
        assert_eq!(entra.authenticate(name, PW).await, Outcome::UnknownUser { code: None }, "{name:?}");
    }
    assert!(stub.requests().is_empty(), "{:?}", stub.requests());
}

#[tokio::test]
async fn confidential_clients_send_their_secret() {
    let stub = Stub::builder()
        .client_secret("app-s3cret")
        .user("carol@contoso.example", PW, Behavior::MfaRequired(50076))
        .start()
        .await
        .unwrap();
    let entra = source(stub.config());
    assert_eq!(entra.authenticate("carol@contoso.example", PW).await, Outcome::PasswordOk { code: Some(50076) });
    assert!(stub.requests()[0].client_secret_sent);
    // A wrong secret is a configuration error, not a wrong password.
    let mut cfg = stub.config();
    cfg.client_secret = Some(zeroize::Zeroizing::new("wrong".into()));
    let o = source(cfg).authenticate("carol@contoso.example", PW).await;
    assert!(matches!(o, Outcome::ConfigError { code: Some(7000215), .. }), "{o:?}");
    // No secret at all: 7000218.
    let mut cfg = stub.config();
    cfg.client_secret = None;
    let o = source(cfg).authenticate("carol@contoso.example", PW).await;
    assert!(matches!(o, Outcome::ConfigError { code: Some(7000218), .. }), "{o:?}");
}

#[tokio::test]
async fn a_scope_the_tenant_refuses_is_a_configuration_error() {
    let stub = Stub::builder()
        .scopes(&["openid", "profile"])
        .user("dave@contoso.example", PW, Behavior::MfaRequired(50076))
        .start()
        .await
        .unwrap();
    let mut cfg = stub.config();
    cfg.scope = "openid https://graph.microsoft.com/.default".into();
    let o = source(cfg).authenticate("dave@contoso.example", PW).await;
    assert!(matches!(o, Outcome::ConfigError { code: Some(70011), .. }), "{o:?}");
    let o = source(stub.config()).authenticate("dave@contoso.example", PW).await;
    assert_eq!(o, Outcome::PasswordOk { code: Some(50076) });
}

#[tokio::test]
async fn test_connection_ok_for_a_made_up_user() {
    let stub = stub_with_users().await;
    let report = source(stub.config()).test().await;
    assert!(report.ok, "{report:?}");
    assert!(report.message.starts_with("OK"), "{}", report.message);
    assert_eq!(report.outcome, Outcome::UnknownUser { code: Some(50034) });
    assert!(report.endpoint.ends_with("/contoso.onmicrosoft.com/oauth2/v2.0/token"));
    // The made-up user is nobody from the table, with a random password.
    let r = &stub.requests()[0];
    assert!(r.username.as_deref().unwrap_or_default().starts_with("tessera-connection-test-"));
    assert!(r.password_sent);

    // Tenants that answer 50126 for unknown accounts are fine too.
    let stub = Stub::builder().unknown_user_code(50126).start().await.unwrap();
    let report = source(stub.config()).test().await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.outcome, Outcome::WrongPassword { code: Some(50126) });
}

#[tokio::test]
async fn test_connection_explains_configuration_mistakes() {
    let stub = Stub::builder().client_secret("app-s3cret").start().await.unwrap();

    let mut cfg = stub.config();
    cfg.tenant = "fabrikam.onmicrosoft.com".into();
    let report = source(cfg).test().await;
    assert!(!report.ok);
    assert!(matches!(report.outcome, Outcome::ConfigError { code: Some(90002), .. }), "{report:?}");
    assert!(
        report.message.contains("tenant not found") && report.message.contains("AADSTS90002"),
        "{}",
        report.message
    );

    let mut cfg = stub.config();
    cfg.client_id = "99998888-ffff-7777-eeee-6666dddd5555".into();
    let report = source(cfg).test().await;
    assert!(!report.ok);
    assert!(matches!(report.outcome, Outcome::ConfigError { code: Some(700016), .. }), "{report:?}");
    assert!(report.message.contains("client_id") && report.message.contains("AADSTS700016"), "{}", report.message);

    let mut cfg = stub.config();
    cfg.client_secret = None;
    let report = source(cfg).test().await;
    assert!(!report.ok);
    assert!(matches!(report.outcome, Outcome::ConfigError { code: Some(7000218), .. }), "{report:?}");
    assert!(
        report.message.contains("Allow public client flows") && report.message.contains("client_secret"),
        "{}",
        report.message
    );

    let report = source(stub.config()).test().await;
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn test_connection_reports_an_unreachable_endpoint() {
    let stub = stub_with_users().await;
    let entra = source(stub.config());
    drop(stub);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = entra.test().await;
    assert!(!report.ok);
    assert_eq!(report.outcome, Outcome::Unavailable("connect"));
    assert!(report.message.contains("unavailable"), "{}", report.message);
}

#[tokio::test]
async fn the_stub_checks_requests_like_the_real_endpoint() {
    let stub = stub_with_users().await;
    // A hand-made client that trusts the stub, to send broken requests.
    let ca = reqwest::Certificate::from_pem(stub.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();
    let url = format!("{}contoso.onmicrosoft.com/oauth2/v2.0/token", stub.authority());
    let codes = |body: serde_json::Value| body["error_codes"][0].as_u64().unwrap_or(0);

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(codes(r.json().await.unwrap()), 900561);

    let r = http.post(&url).form(&[("client_id", "x")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(codes(body.clone()), 900144);
    assert!(body["error_description"].as_str().unwrap().contains("'grant_type'"));

    let r = http.post(&url).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(codes(r.json().await.unwrap()), 70003);

    let full = [
        ("grant_type", "password"),
        ("client_id", "00001111-aaaa-2222-bbbb-3333cccc4444"),
        ("scope", "openid"),
        ("username", "mfa50076@contoso.example"),
        ("password", PW),
    ];
    for skip in ["client_id", "scope", "username", "password"] {
        let partial: Vec<_> = full.iter().filter(|(k, _)| *k != skip).collect();
        let r = http.post(&url).form(&partial).send().await.unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(codes(body.clone()), 900144, "{skip}");
        assert!(body["error_description"].as_str().unwrap().contains(&format!("'{skip}'")), "{skip}");
    }
    // Not a form: Entra cannot read the body.
    let r = http.post(&url).json(&serde_json::json!({"grant_type": "password"})).send().await.unwrap();
    assert_eq!(codes(r.json().await.unwrap()), 900144);
    // Another tenant in the path.
    let other = format!("{}fabrikam.example/oauth2/v2.0/token", stub.authority());
    let r = http.post(&other).form(&full).send().await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!((codes(body.clone()), body["error"].as_str()), (90002, Some("invalid_request")));
    // The complete request gets the scripted answer in the documented shape.
    let r = http.post(&url).form(&full).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "interaction_required");
    assert_eq!(body["error_codes"], serde_json::json!([50076]));
    assert_eq!(body["suberror"], "basic_action");
    for field in ["error_description", "timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[field].is_string(), "{field}");
    }
    assert!(body["error_description"].as_str().unwrap().starts_with(
        "AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new \
         location, you must use multi-factor authentication"
    ));
    // Unknown paths are not the token endpoint.
    let r = http.post(format!("{}contoso.onmicrosoft.com/oauth2/token", stub.authority())).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_stub_success_answer_has_the_documented_fields() {
    let stub = stub_with_users().await;
    let ca = reqwest::Certificate::from_pem(stub.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();
    let url = format!("{}contoso.onmicrosoft.com/oauth2/v2.0/token", stub.authority());
    let r = http
        .post(&url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", "00001111-aaaa-2222-bbbb-3333cccc4444"),
            ("scope", "openid"),
            ("username", "nomfa@contoso.example"),
            ("password", PW),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["expires_in"].is_u64());
    assert_eq!(body["scope"], "openid");
}

fn tempfile_dir() -> std::path::PathBuf {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).unwrap();
    let dir = std::env::temp_dir().join(format!("tessera-entra-test-{}", hex::encode(random)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
