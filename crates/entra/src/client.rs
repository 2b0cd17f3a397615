//! The socket side: one HTTPS POST of the password grant to the tenant's
//! token endpoint, bounded in time, size and concurrency, then the pure
//! classifier. Also the "test connection" check.
//!
//! Must not: keep, log or put into an error the password or a token; follow
//! redirects (a 307 would resend the password elsewhere); skip certificate
//! verification.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderValue};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::{EntraConfig, EntraError, Outcome, classify};

/// Largest token endpoint answer read. Entra's answers are a few KiB (a
/// token answer with an ID token stays under 16 KiB); a bigger body is not
/// Entra and is `Unavailable("body_too_large")`.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest password sent. Entra ID passwords are at most 256 characters; a
/// longer one cannot be right and is refused without a request.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Token requests in flight at once, per source. A login storm must not open
/// thousands of connections to Entra (which throttles per tenant anyway);
/// waiting for a slot counts against the timeout.
pub const MAX_IN_FLIGHT: usize = 64;

/// Upper bound of the TCP connect phase, below the whole-call timeout so a
/// black-holed address is reported as `connect` rather than `timeout` when
/// the call timeout is generous.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An Entra ID first-factor source: checks a username and password with the
/// ROPC grant. Cheap to share (`Arc`) between tasks; the HTTPS connections
/// are pooled.
pub struct EntraSource {
    cfg: EntraConfig,
    endpoint: Url,
    http: reqwest::Client,
    in_flight: Semaphore,
}

impl fmt::Debug for EntraSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraSource").field("endpoint", &self.endpoint.as_str()).field("config", &self.cfg).finish()
    }
}

/// The answer of [`EntraSource::test`]: whether tenant and app settings work,
/// in words for an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    /// The settings work: Entra refused a made-up user as a credential error.
    pub ok: bool,
    /// What was found and, if something is wrong, what to fix.
    pub message: String,
    /// The classified answer to the test sign-in.
    pub outcome: Outcome,
    /// The token endpoint asked.
    pub endpoint: String,
    /// How long the answer took.
    pub elapsed: Duration,
}

/// A classified answer plus, for failures before any answer, what the
/// transport said (for the log and the test report; never a secret).
struct Exchange {
    outcome: Outcome,
    detail: Option<String>,
}

impl EntraSource {
    /// Validates `cfg`, reads the extra CA file and builds the HTTPS client
    /// (rustls; the operating system's roots plus `ca_file`; no redirects;
    /// HTTP/2 when the server offers it).
    pub fn new(cfg: EntraConfig) -> Result<Self, EntraError> {
        cfg.validate()?;
        let endpoint = cfg.token_endpoint()?;
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(CONNECT_TIMEOUT))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let shown = path.display().to_string();
            let pem =
                std::fs::read(path).map_err(|e| EntraError::CaFile { path: shown.clone(), reason: e.to_string() })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| EntraError::CaFile { path: shown.clone(), reason: e.to_string() })?;
            if certs.is_empty() {
                return Err(EntraError::CaFile { path: shown, reason: "no PEM certificate in the file".into() });
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| EntraError::Client(error_chain(&e)))?;
        Ok(EntraSource { cfg, endpoint, http, in_flight: Semaphore::new(MAX_IN_FLIGHT) })
    }

    /// The settings in use.
    pub fn config(&self) -> &EntraConfig {
        &self.cfg
    }

    /// The token endpoint asked.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The UPN that would be sent for `username` (see [`EntraConfig::upn`]).
    pub fn upn(&self, username: &str) -> Option<String> {
        self.cfg.upn(username)
    }

    /// Whether `outcome` accepts the first factor under this source's policy
    /// ([`EntraConfig::allow_no_mfa`]).
    pub fn password_ok(&self, outcome: &Outcome) -> bool {
        outcome.password_ok(self.cfg.allow_no_mfa)
    }

    /// Checks `username` and `password` with Entra.
    ///
    /// An empty or over-long password is [`Outcome::WrongPassword`] and a
    /// name that cannot be a UPN is [`Outcome::UnknownUser`], both without a
    /// request. The whole call, including waiting for a free request slot, is
    /// bounded by the configured timeout: `Unavailable("timeout")`.
    /// Unavailable answers and configuration errors are logged (endpoint,
    /// reason, code; never the username's password or a token).
    pub async fn authenticate(&self, username: &str, password: &str) -> Outcome {
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Outcome::WrongPassword { code: None };
        }
        let Some(upn) = self.cfg.upn(username) else {
            return Outcome::UnknownUser { code: None };
        };
        let exchange = self.exchange(&upn, password).await;
        match &exchange.outcome {
            Outcome::Unavailable(reason) => tracing::warn!(
                endpoint = %self.endpoint,
                reason,
                detail = exchange.detail.as_deref().unwrap_or(""),
                "Entra ID token endpoint unavailable"
            ),
            Outcome::ConfigError { code, reason } => tracing::error!(
                endpoint = %self.endpoint,
                code = code.unwrap_or(0),
                reason,
                "Entra ID rejected tessera's settings"
            ),
            _ => {}
        }
        exchange.outcome
    }

    /// "Test connection": signs in as a made-up user with a random password
    /// and explains the answer. A credential refusal (unknown user or wrong
    /// password) proves that the endpoint is reachable, the tenant exists and
    /// the app registration accepts the password grant. Consent and MFA
    /// settings are only checked for real users, so they are not covered.
    pub async fn test(&self) -> TestReport {
        let started = Instant::now();
        let (username, password) = match test_credentials(self.cfg.upn_domain.as_deref(), &self.cfg.tenant) {
            Ok(c) => c,
            Err(message) => {
                return TestReport {
                    ok: false,
                    message,
                    outcome: Outcome::Unavailable("request"),
                    endpoint: self.endpoint.to_string(),
                    elapsed: started.elapsed(),
                };
            }
        };
        let exchange = self.exchange(&username, &password).await;
        let (ok, message) = explain(&self.cfg, &exchange);
        TestReport {
            ok,
            message,
            outcome: exchange.outcome,
            endpoint: self.endpoint.to_string(),
            elapsed: started.elapsed(),
        }
    }

    /// One bounded request and its classification.
    async fn exchange(&self, upn: &str, password: &str) -> Exchange {
        match tokio::time::timeout(self.cfg.timeout, self.request(upn, password)).await {
            Ok(exchange) => exchange,
            Err(_) => Exchange {
                outcome: Outcome::Unavailable("timeout"),
                detail: Some(format!("no answer within {} ms", self.cfg.timeout.as_millis())),
            },
        }
    }

    async fn request(&self, upn: &str, password: &str) -> Exchange {
        let Ok(_slot) = self.in_flight.acquire().await else {
            return Exchange { outcome: Outcome::Unavailable("busy"), detail: None };
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "password"),
            ("client_id", &self.cfg.client_id),
            ("scope", &self.cfg.scope),
            ("username", upn),
            ("password", password),
        ];
        if let Some(secret) = &self.cfg.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let sent = self
            .http
            .post(self.endpoint.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .form(&form)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return transport_failure(&e),
        };
        let status = response.status().as_u16();
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Exchange { outcome: Outcome::Unavailable("body_too_large"), detail: None };
        }
        // The body may hold a token: it goes into a buffer that is wiped when
        // dropped. (hyper's own read buffers are not under our control.)
        let mut body = Zeroizing::new(Vec::with_capacity(4096));
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Exchange { outcome: Outcome::Unavailable("body_too_large"), detail: None };
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return transport_failure(&e),
            }
        }
        let outcome = classify(status, &body);
        let detail = outcome.is_unavailable().then(|| format!("HTTP {status}"));
        Exchange { outcome, detail }
    }
}

/// Names a failure before (or while) reading the answer.
fn transport_failure(e: &reqwest::Error) -> Exchange {
    let reason = if e.is_timeout() {
        "timeout"
    } else if is_tls_failure(e) {
        "tls"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    Exchange { outcome: Outcome::Unavailable(reason), detail: Some(error_chain(e)) }
}

/// Whether a rustls error is somewhere in the chain. `io::Error::source`
/// skips the error it wraps, so wrapped errors are looked into explicitly.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_tls_failure(inner)
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// "a: b: c" from an error and its sources. reqwest's messages name the URL,
/// which holds no secret (the credentials travel in the body).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = err.source();
    }
    out
}

/// A made-up username in the tenant's domain and a random password: nobody's
/// account, so the test never counts against a real user's lockout.
fn test_credentials(upn_domain: Option<&str>, tenant: &str) -> Result<(String, Zeroizing<String>), String> {
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness for the test sign-in: {e}"))?;
    let domain = match upn_domain {
        Some(d) => d.trim_start_matches('@').to_string(),
        None if tenant.contains('.') => tenant.to_string(),
        None => "example.invalid".to_string(),
    };
    let user = format!("tessera-connection-test-{}@{domain}", hex::encode(&random[..8]));
    let password = Zeroizing::new(format!("T{}!", hex::encode(&random[8..])));
    Ok((user, password))
}

/// The administrator's reading of a test sign-in's answer.
fn explain(cfg: &EntraConfig, exchange: &Exchange) -> (bool, String) {
    let who = format!("tenant '{}', application (client) ID '{}'", cfg.tenant, cfg.client_id);
    match &exchange.outcome {
        o @ (Outcome::UnknownUser { .. } | Outcome::WrongPassword { .. }) => (
            true,
            format!(
                "OK: Entra ID answered for {who}; a sign-in with a made-up user was refused as expected: {o}. \
                 Consent and MFA policies are only checked when real users sign in."
            ),
        ),
        Outcome::ConfigError { code, reason } => {
            let code = code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default();
            (false, format!("Entra ID rejected the settings for {who}: {reason}{code}"))
        }
        Outcome::Unavailable(reason) => {
            let hint = match *reason {
                "tls" => " — the server certificate is not trusted (check ca_file, or a TLS-inspecting proxy)",
                "timeout" => " — no answer in time (firewall or proxy?)",
                "connect" => " — cannot connect (DNS, firewall or proxy?)",
                _ => "",
            };
            let detail = exchange.detail.as_deref().map(|d| format!(" [{d}]")).unwrap_or_default();
            (false, format!("the token endpoint is unavailable: {reason}{hint}{detail}"))
        }
        other => (false, format!("unexpected answer for a made-up user with {who}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_can_be_shared_between_tasks() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<EntraSource>();
        shared::<Outcome>();
    }

    #[test]
    fn test_credentials_are_random_and_in_the_tenant_domain() {
        let (u1, p1) = test_credentials(Some("@corp.example.com"), "x").unwrap();
        let (u2, p2) = test_credentials(None, "contoso.onmicrosoft.com").unwrap();
        assert!(u1.ends_with("@corp.example.com"), "{u1}");
        assert!(u2.ends_with("@contoso.onmicrosoft.com"), "{u2}");
        assert_ne!(*p1, *p2);
        let (u3, _) = test_credentials(None, "aaaabbbb-0000-cccc-1111-dddd2222eeee").unwrap();
        assert!(u3.ends_with("@example.invalid"), "{u3}");
    }

    #[test]
    fn new_rejects_bad_settings_and_missing_ca_files() {
        let mut cfg = EntraConfig::new("common", "id");
        assert!(matches!(EntraSource::new(cfg.clone()), Err(EntraError::InvalidConfig { field: "tenant", .. })));
        cfg.tenant = "contoso.onmicrosoft.com".into();
        cfg.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(EntraSource::new(cfg), Err(EntraError::CaFile { .. })));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let mut cfg = EntraConfig::new("contoso.onmicrosoft.com", "id");
        cfg.client_secret = Some(Zeroizing::new("s3cr3t-value".into()));
        let source = EntraSource::new(cfg).unwrap();
        let d = format!("{source:?}");
        assert!(!d.contains("s3cr3t-value"), "{d}");
        assert!(d.contains("oauth2/v2.0/token"));
    }
}
