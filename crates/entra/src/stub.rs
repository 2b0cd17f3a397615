//! A local HTTPS stub of Entra ID's v2.0 token endpoint, for tests (cargo
//! feature `stub`).
//!
//! It listens on a free loopback port with a certificate from its own
//! throw-away CA (hand [`Stub::ca_file`] to [`crate::EntraConfig::ca_file`],
//! or take [`Stub::config`]), checks each request the way the real endpoint
//! does (the tenant in the path, POST, a form body with `grant_type=password`,
//! `client_id`, `scope`, `username`, `password`, the client secret of a
//! confidential app) and answers from a table username → scripted
//! [`Behavior`], in the JSON shapes Microsoft documents. It records what it
//! received ([`Stub::requests`]) without the passwords: a password is only
//! compared with the scripted one, then dropped.
//!
//! Not for production: it trusts its table, keeps everything in memory and
//! serves HTTP/1.1 only.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::{EntraConfig, Url};

/// The resource Entra names in MFA errors for the `openid` scope (Microsoft
/// Graph's application ID).
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Largest request body read (Entra's own limit is larger; ours only keeps a
/// runaway test from eating memory).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What the stub answers for a user, once the password matched (a wrong
/// password is always AADSTS50126).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behavior {
    /// `interaction_required` with this AADSTS code: 50076, 50079, 50074,
    /// 50072 or 50158 (others are sent as given).
    MfaRequired(u32),
    /// HTTP 200 with a (fake) bearer token: an account without MFA.
    Success,
    /// `invalid_grant` 50126, whatever the password.
    WrongPassword,
    /// `invalid_grant` 50053.
    Locked,
    /// `invalid_grant` 50057.
    Disabled,
    /// `invalid_grant` 50055 (suberror `user_password_expired`).
    PasswordExpired,
    /// `invalid_grant` 53003 (blocked by Conditional Access).
    BlockedByConditionalAccess,
    /// HTTP 400 `invalid_request` 90002, as for an unknown tenant.
    TenantNotFound,
    /// HTTP 400 `unauthorized_client` 700016, as for an unknown client ID.
    AppNotFound,
    /// HTTP 400 `invalid_client` 7000218, as for a confidential app without a secret.
    ClientSecretRequired,
    /// HTTP 400 `invalid_scope` 70011.
    InvalidScope,
    /// HTTP 400 `invalid_grant` 65001 (suberror `consent_required`).
    ConsentRequired,
    /// Waits `delay`, then answers like `MfaRequired(50076)`: longer than the
    /// client's timeout, it tests the timeout.
    Slow(Duration),
    /// HTTP 400 with `application/json` that is cut off mid-way.
    MalformedJson,
    /// This status (500, 503, …) with an HTML body.
    ServerError(u16),
    /// HTTP 429 with `Retry-After`.
    Throttled,
    /// Exactly this answer.
    Raw {
        /// HTTP status.
        status: u16,
        /// `Content-Type`.
        content_type: String,
        /// Body.
        body: String,
    },
}

/// One request as the stub received it, minus the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// The tenant segment of the path.
    pub tenant: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// Form field `grant_type`.
    pub grant_type: Option<String>,
    /// Form field `client_id`.
    pub client_id: Option<String>,
    /// Form field `scope`.
    pub scope: Option<String>,
    /// Form field `username`.
    pub username: Option<String>,
    /// Whether a non-empty `password` field was present (its value is not kept).
    pub password_sent: bool,
    /// Whether a `client_secret` field was present (its value is not kept).
    pub client_secret_sent: bool,
}

/// A scripted user.
#[derive(Clone)]
struct StubUser {
    /// `None`: any password counts as right.
    password: Option<Zeroizing<String>>,
    behavior: Behavior,
}

/// Builds a [`Stub`]. Defaults: tenant `contoso.onmicrosoft.com`, client ID
/// `00001111-aaaa-2222-bbbb-3333cccc4444`, a public client (no secret), any
/// scope, unknown users answered with AADSTS50034.
pub struct StubBuilder {
    tenant: String,
    client_id: String,
    client_secret: Option<Zeroizing<String>>,
    scopes: Option<Vec<String>>,
    unknown_user_code: u32,
    users: HashMap<String, StubUser>,
}

impl fmt::Debug for StubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StubBuilder")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("confidential", &self.client_secret.is_some())
            .field("users", &self.users.len())
            .finish()
    }
}

impl StubBuilder {
    /// The tenant the stub serves (the path segment it accepts).
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.to_string();
        self
    }

    /// The one registered application (client) ID.
    pub fn client_id(mut self, client_id: &str) -> Self {
        self.client_id = client_id.to_string();
        self
    }

    /// Makes the app a confidential client with this secret: requests
    /// without it get 7000218, with a wrong one 7000215.
    pub fn client_secret(mut self, secret: &str) -> Self {
        self.client_secret = Some(Zeroizing::new(secret.to_string()));
        self
    }

    /// Accept only these scopes (others get 70011).
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The code for users not in the table: 50034 (default) or 50126 (what
    /// tenants that hide which accounts exist answer).
    pub fn unknown_user_code(mut self, code: u32) -> Self {
        self.unknown_user_code = code;
        self
    }

    /// Adds `username` (a UPN, compared case-insensitively) with its password
    /// and the answer to a right password.
    pub fn user(mut self, username: &str, password: &str, behavior: Behavior) -> Self {
        self.users.insert(
            username.to_ascii_lowercase(),
            StubUser { password: Some(Zeroizing::new(password.to_string())), behavior },
        );
        self
    }

    /// Adds `username` with an answer that does not depend on the password.
    pub fn user_any_password(mut self, username: &str, behavior: Behavior) -> Self {
        self.users.insert(username.to_ascii_lowercase(), StubUser { password: None, behavior });
        self
    }

    /// Generates the CA and the server certificate, binds `127.0.0.1:0` and
    /// starts serving (on the current tokio runtime).
    pub async fn start(self) -> io::Result<Stub> {
        let pki = Pki::generate()?;
        let mut ca_file = tempfile::Builder::new().prefix("tessera-entra-stub-ca-").suffix(".pem").tempfile()?;
        io::Write::write_all(&mut ca_file, pki.ca_pem.as_bytes())?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            tenant: self.tenant,
            client_id: self.client_id,
            client_secret: self.client_secret,
            scopes: self.scopes,
            unknown_user_code: self.unknown_user_code,
            users: Mutex::new(self.users),
            requests: Mutex::new(Vec::new()),
        });
        let acceptor = TlsAcceptor::from(pki.server_config()?);
        let task = tokio::spawn(accept_loop(listener, acceptor, state.clone()));
        Ok(Stub { addr, ca_pem: pki.ca_pem, ca_file, state, task })
    }
}

/// A running stub token endpoint. Dropping it stops the server.
pub struct Stub {
    addr: SocketAddr,
    ca_pem: String,
    ca_file: tempfile::NamedTempFile,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl fmt::Debug for Stub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stub").field("addr", &self.addr).field("tenant", &self.state.tenant).finish()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection task (a `Slow` answer included).
        self.task.abort();
    }
}

impl Stub {
    /// A builder with the defaults described on [`StubBuilder`].
    pub fn builder() -> StubBuilder {
        StubBuilder {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "00001111-aaaa-2222-bbbb-3333cccc4444".into(),
            client_secret: None,
            scopes: None,
            unknown_user_code: 50034,
            users: HashMap::new(),
        }
    }

    /// The listening address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:port/`: the authority to configure.
    pub fn authority(&self) -> Url {
        // An IP literal and a port always make a valid URL.
        #[allow(clippy::expect_used)]
        Url::parse(&format!("https://{}/", self.addr)).expect("loopback URL")
    }

    /// The stub CA's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A file holding [`Stub::ca_pem`], removed when the stub is dropped.
    pub fn ca_file(&self) -> &Path {
        self.ca_file.path()
    }

    /// Client settings that reach this stub: its authority, tenant, client
    /// ID (and secret, if confidential), its CA as `ca_file`, a 5 s timeout.
    pub fn config(&self) -> EntraConfig {
        let mut cfg = EntraConfig::new(self.state.tenant.clone(), self.state.client_id.clone());
        cfg.authority = self.authority();
        cfg.client_secret = self.state.client_secret.clone();
        cfg.ca_file = Some(self.ca_file().to_path_buf());
        cfg.timeout = Duration::from_secs(5);
        cfg
    }

    /// Adds or replaces a scripted user while the stub runs.
    pub fn set_user(&self, username: &str, password: Option<&str>, behavior: Behavior) {
        lock(&self.state.users).insert(
            username.to_ascii_lowercase(),
            StubUser { password: password.map(|p| Zeroizing::new(p.to_string())), behavior },
        );
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// The PEM certificate of a fresh CA that signed nothing the stub serves:
    /// a client trusting only it must fail the TLS handshake.
    pub fn untrusted_ca_pem() -> io::Result<String> {
        Ok(Pki::generate()?.ca_pem)
    }
}

/// Poisoning only means another test thread panicked; the data is still fine.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct State {
    tenant: String,
    client_id: String,
    client_secret: Option<Zeroizing<String>>,
    scopes: Option<Vec<String>>,
    unknown_user_code: u32,
    users: Mutex<HashMap<String, StubUser>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// The stub's certificates: a CA and a leaf for 127.0.0.1 and localhost.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl Pki {
    fn generate() -> io::Result<Pki> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let err = |e: rcgen::Error| io::Error::other(format!("stub certificate: {e}"));
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "tessera Entra stub CA");
        let ca = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, "login.stub.invalid");
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok(Pki { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: Zeroizing::new(key.serialize_pem()) })
    }

    fn server_config(&self) -> io::Result<Arc<rustls::ServerConfig>> {
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io::Error::other(format!("stub certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| io::Error::other(format!("stub key: {e}")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(io::Error::other)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        connections.spawn(async move {
            // A client that does not trust the CA aborts here.
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    Ok(answer(&state, req).await)
}

async fn answer(state: &State, req: Request<Incoming>) -> Answer {
    // The path names the tenant: /{tenant}/oauth2/v2.0/token.
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let [tenant, "oauth2", "v2.0", "token"] = segments.as_slice() else {
        return html(404, "<html><body><h1>404 Not Found</h1></body></html>");
    };
    let tenant = tenant.to_string();
    let method = req.method().clone();
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES).collect().await {
        Ok(b) => Zeroizing::new(b.to_bytes().to_vec()),
        Err(_) => return html(413, "<html><body><h1>413 Request Entity Too Large</h1></body></html>"),
    };
    let is_form = content_type.as_deref().is_some_and(|ct| {
        ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    let mut form: HashMap<String, Zeroizing<String>> = HashMap::new();
    if is_form {
        for (k, v) in form_urlencoded::parse(&body) {
            form.insert(k.into_owned(), Zeroizing::new(v.into_owned()));
        }
    }
    let field = |name: &str| form.get(name).map(|v| v.as_str().to_string());
    lock(&state.requests).push(RecordedRequest {
        method: method.to_string(),
        tenant: tenant.clone(),
        content_type: content_type.clone(),
        grant_type: field("grant_type"),
        client_id: field("client_id"),
        scope: field("scope"),
        username: field("username"),
        password_sent: form.get("password").is_some_and(|p| !p.is_empty()),
        client_secret_sent: form.contains_key("client_secret"),
    });

    if method != Method::POST {
        return error(
            400,
            "invalid_request",
            900561,
            &format!("The endpoint only accepts POST, OPTIONS requests. Received a {method} request."),
            None,
        );
    }
    if !tenant.eq_ignore_ascii_case(&state.tenant) {
        return error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into \
                 the correct cloud. Check with your subscription administrator, this may happen if there are no active \
                 subscriptions for the tenant."
            ),
            None,
        );
    }
    let missing = |name: &str| {
        error(
            400,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{name}'."),
            None,
        )
    };
    let Some(grant_type) = form.get("grant_type") else { return missing("grant_type") };
    if grant_type.as_str() != "password" {
        return error(
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{}'.", grant_type.as_str()),
            None,
        );
    }
    let Some(client_id) = form.get("client_id") else { return missing("client_id") };
    if client_id.as_str() != state.client_id {
        return app_not_found(client_id, &tenant);
    }
    match (&state.client_secret, form.get("client_secret")) {
        (Some(_), None) => return secret_required(),
        (Some(expected), Some(given)) if expected.as_str() != given.as_str() => {
            return error(
                401,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret \
                     value, not the client secret ID, for a secret added to app '{}'.",
                    state.client_id
                ),
                None,
            );
        }
        (None, Some(_)) => {
            return error(
                400,
                "invalid_client",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
                None,
            );
        }
        _ => {}
    }
    let Some(scope) = form.get("scope") else { return missing("scope") };
    if let Some(allowed) = &state.scopes
        && let Some(bad) = scope.split(' ').filter(|s| !s.is_empty()).find(|s| !allowed.iter().any(|a| a == s))
    {
        return invalid_scope(bad);
    }
    let Some(username) = form.get("username") else { return missing("username") };
    let Some(password) = form.get("password") else { return missing("password") };

    let user = lock(&state.users).get(&username.to_ascii_lowercase()).cloned();
    let Some(user) = user else {
        return match state.unknown_user_code {
            50126 => wrong_password(),
            code => error(
                400,
                "invalid_grant",
                code,
                &format!(
                    "The user account {{EUII Hidden}} does not exist in the {} directory. To sign into this \
                     application, the account must be added to the directory.",
                    state.tenant
                ),
                None,
            ),
        };
    };
    if let Some(expected) = &user.password
        && expected.as_str() != password.as_str()
    {
        return wrong_password();
    }
    let granted = scope.as_str().to_string();
    // The password is not needed past this point.
    drop(form);
    scripted(&user.behavior, &state.client_id, &state.tenant, &granted).await
}

async fn scripted(behavior: &Behavior, client_id: &str, tenant: &str, granted: &str) -> Answer {
    match behavior {
        Behavior::MfaRequired(code) => mfa_required(*code),
        Behavior::Success => success(granted),
        Behavior::WrongPassword => wrong_password(),
        Behavior::Locked => error(
            400,
            "invalid_grant",
            50053,
            "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
            None,
        ),
        Behavior::Disabled => error(400, "invalid_grant", 50057, "The user account is disabled.", None),
        Behavior::PasswordExpired => {
            error(400, "invalid_grant", 50055, "The password is expired.", Some("user_password_expired"))
        }
        Behavior::BlockedByConditionalAccess => error(
            400,
            "invalid_grant",
            53003,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
            None,
        ),
        Behavior::TenantNotFound => error(
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
            None,
        ),
        Behavior::AppNotFound => app_not_found(client_id, tenant),
        Behavior::ClientSecretRequired => secret_required(),
        Behavior::InvalidScope => invalid_scope("openid"),
        Behavior::ConsentRequired => error(
            400,
            "invalid_grant",
            65001,
            &format!(
                "The user or administrator has not consented to use the application with ID '{client_id}'. Send an \
                 interactive authorization request for this user and resource."
            ),
            Some("consent_required"),
        ),
        Behavior::Slow(delay) => {
            tokio::time::sleep(*delay).await;
            mfa_required(50076)
        }
        Behavior::MalformedJson => raw(
            400,
            "application/json; charset=utf-8",
            r#"{"error":"invalid_grant","error_description":"AADSTS50126: Err"#,
        ),
        Behavior::ServerError(status) => html(
            *status,
            "<!DOCTYPE html><html><head><title>Service Unavailable</title></head>\
             <body><h1>Service Unavailable</h1><p>The service is temporarily unavailable.</p></body></html>",
        ),
        Behavior::Throttled => {
            let mut r = error(
                429,
                "temporarily_unavailable",
                90055,
                "There are too many incoming requests for this tenant. Please try again later.",
                None,
            );
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        Behavior::Raw { status, content_type, body } => raw(*status, content_type, body),
    }
}

fn mfa_required(code: u32) -> Answer {
    let text = match code {
        50076 => format!(
            "Due to a configuration change made by your administrator, or because you moved to a new location, you \
             must use multi-factor authentication to access '{GRAPH_APP_ID}'."
        ),
        50079 => format!(
            "Due to a configuration change made by your administrator, or because you moved to a new location, you \
             must enroll in multi-factor authentication to access '{GRAPH_APP_ID}'."
        ),
        50074 => "Strong Authentication is required.".to_string(),
        50072 => "User needs to enroll for second factor authentication.".to_string(),
        50158 => "External security challenge not satisfied. User will be redirected to another page or \
                  authentication provider to satisfy additional authentication challenges."
            .to_string(),
        _ => "Interaction is required.".to_string(),
    };
    let suberror = matches!(code, 50076 | 50079 | 50074).then_some("basic_action");
    error(400, "interaction_required", code, &text, suberror)
}

fn wrong_password() -> Answer {
    error(400, "invalid_grant", 50126, "Error validating credentials due to invalid username or password.", None)
}

fn app_not_found(client_id: &str, tenant: &str) -> Answer {
    error(
        400,
        "unauthorized_client",
        700016,
        &format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if \
             the application has not been installed by the administrator of the tenant or consented to by any user in \
             the tenant. You may have sent your authentication request to the wrong tenant."
        ),
        None,
    )
}

fn secret_required() -> Answer {
    error(
        400,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        None,
    )
}

fn invalid_scope(scope: &str) -> Answer {
    error(
        400,
        "invalid_scope",
        70011,
        &format!("The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."),
        None,
    )
}

fn success(scope: &str) -> Answer {
    let body = serde_json::json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": format!("stub-access-token.{}", random_hex(24)),
        "id_token": format!("stub-id-token.{}", random_hex(24)),
    });
    raw(200, "application/json; charset=utf-8", &body.to_string())
}

/// An error answer in Microsoft's documented shape.
fn error(status: u16, error: &str, code: u32, text: &str, suberror: Option<&str>) -> Answer {
    let trace_id = random_guid();
    let correlation_id = random_guid();
    let timestamp = utc_timestamp();
    let mut body = serde_json::json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    if let (Some(sub), Some(obj)) = (suberror, body.as_object_mut()) {
        obj.insert("suberror".into(), sub.into());
    }
    raw(status, "application/json; charset=utf-8", &body.to_string())
}

fn html(status: u16, body: &str) -> Answer {
    raw(status, "text/html; charset=utf-8", body)
}

fn raw(status: u16, content_type: &str, body: &str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store, no-cache"));
    r
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // A test stub: predictable ids after an RNG failure harm nobody.
    let _ = getrandom::fill(&mut buf);
    hex::encode(buf)
}

fn random_guid() -> String {
    let h = random_hex(16);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `YYYY-MM-DD hh:mm:ssZ`, the format of Entra's `timestamp`.
// The stub stamps its answers like the real service; it is test equipment at
// the I/O edge, not domain code that should take a clock.
#[allow(clippy::disallowed_methods)]
fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn error_bodies_have_the_documented_fields() {
        let r = error(400, "interaction_required", 50076, "x", Some("basic_action"));
        assert_eq!(r.status(), 400);
        let body = futures_free_body(r);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for field in
            ["error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"]
        {
            assert!(v.get(field).is_some(), "{field} missing in {v}");
        }
        assert_eq!(v["error_codes"][0], 50076);
        assert_eq!(v["suberror"], "basic_action");
        assert!(v["error_description"].as_str().unwrap().starts_with("AADSTS50076: "));
        assert_eq!(crate::classify(400, &body), crate::Outcome::PasswordOk { code: Some(50076) });
    }

    fn futures_free_body(r: Answer) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { r.into_body().collect().await.unwrap().to_bytes().to_vec() })
    }
}
