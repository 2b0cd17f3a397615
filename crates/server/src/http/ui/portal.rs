//! The self-service portal under `/`: sign-in with the first factor of the
//! user's realm; an unregistered user then sees a new secret (text and QR
//! code), the registration message, 10 backup codes, and confirms with a
//! current code; a registered user gives a code (or a backup code) and may
//! then make new backup codes. The secret is kept only in the session
//! until it is confirmed and is never shown again after that.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use tessera_core::audit::Actor;
use tessera_core::model::User;
use tessera_core::portal::{FirstFactorOutcome, Portal};
use zeroize::Zeroizing;

use super::session::{self, PORTAL_COOKIE, Session, Stage};
use super::{Surface, message, render, see_other, with_cookie, with_status};
use crate::http::AppState;
use crate::http::auth::Caller;

const REFUSED: &str =
    "Sign-in refused. Check your user name, password and code; after several tries, wait and try again.";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/register", get(register_page).post(register))
        .route("/code", get(code_page).post(code))
        .route("/backup-codes", post(backup_codes))
        .route("/logout", post(logout))
}

fn portal(s: &AppState) -> Portal {
    Portal::new(s.node.ctx.clone(), s.node.auth.clone())
}

fn current(s: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = session::cookie(headers, PORTAL_COOKIE)?;
    s.ui.sessions.get(id, s.node.ctx.clock.now()).map(|sess| (id.to_string(), sess))
}

fn actor(label: &str, caller: &Caller) -> Actor {
    let client = caller.client.replacen("rest", "portal", 1);
    Actor::new(format!("portal:{label}")).with_address(caller.address.clone()).with_client(Some(client))
}

fn advance(s: &AppState, old_id: &str, stage: Stage, to: &str) -> Response {
    let (id, _) = s.ui.sessions.rotate(&*s.node.ctx.random, old_id, stage, s.node.ctx.clock.now());
    with_cookie(see_other(to), session::set_cookie(PORTAL_COOKIE, &id))
}

fn stale() -> Response {
    message(StatusCode::FORBIDDEN, "Session expired", session::STALE, "/")
}

fn label(u: &User) -> String {
    if u.realm == tessera_core::names::DEFAULT_REALM {
        u.username.clone()
    } else {
        format!("{}@{}", u.username, u.realm)
    }
}

/// The session's user, if it still exists and is not disabled.
async fn user(s: &AppState, id: tessera_core::model::UserId) -> Option<User> {
    s.node.ctx.store.user_by_id(&id).await.ok().flatten().filter(|u| !u.disabled)
}

#[derive(Template)]
#[template(path = "ui/portal_login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
}

fn login_form(s: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    let (id, sess) = s.ui.sessions.create(&*s.node.ctx.random, Stage::Anonymous, s.node.ctx.clock.now());
    with_cookie(
        with_status(status, render(&LoginPage { csrf: &sess.csrf, error })),
        session::set_cookie(PORTAL_COOKIE, &id),
    )
}

#[derive(Template)]
#[template(path = "ui/portal_home.html")]
struct HomePage<'a> {
    csrf: &'a str,
    label: &'a str,
    notice: Option<&'a str>,
    backup_codes: Vec<String>,
}

async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match current(&s, &headers) {
        Some((_, sess)) => match &sess.stage {
            Stage::Portal { label, .. } => {
                render(&HomePage { csrf: &sess.csrf, label, notice: None, backup_codes: Vec::new() })
            }
            Stage::PortalEnrolling { .. } => see_other("/register"),
            Stage::PortalCode { .. } => see_other("/code"),
            _ => login_form(&s, None, StatusCode::OK),
        },
        None => login_form(&s, None, StatusCode::OK),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    username: String,
    /// Moved into `Zeroizing` as soon as it is read.
    password: String,
}

async fn login(State(s): State<AppState>, headers: HeaderMap, caller: Caller, Form(f): Form<LoginForm>) -> Response {
    let Some((id, sess)) = current(&s, &headers) else { return stale() };
    if !sess.csrf_ok(&f.csrf) || !matches!(sess.stage, Stage::Anonymous) {
        return stale();
    }
    s.ui.sessions.remove(&id);
    let typed = f.username.trim();
    let (username, realm) = match typed.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() && s.node.ctx.directory.knows_realm(r) => (u.to_string(), r.to_string()),
        _ => {
            let realm = match s.node.ctx.store.policy().await {
                Ok(p) => p.default_realm,
                Err(_) => return login_form(&s, Some(REFUSED), StatusCode::SERVICE_UNAVAILABLE),
            };
            (typed.to_string(), realm)
        }
    };
    let shown: String = typed.chars().take(64).collect();
    let p = portal(&s);
    let who = actor(&shown, &caller);
    let password = Zeroizing::new(f.password);
    match p.first_factor(&who, &realm, &username, password).await {
        Ok(FirstFactorOutcome::Unregistered(_)) if !registration_here(&s) => message(
            StatusCode::FORBIDDEN,
            "Registration not available here",
            "Your account has no authenticator yet, and registration is not offered at this address. \
             Register from the internal network, or ask your administrator.",
            "/",
        ),
        Ok(FirstFactorOutcome::Unregistered(u)) => {
            if let Err(wait) = s.ui.registrations.start(u.id, s.node.ctx.clock.now()) {
                let text = format!(
                    "Registration was started too often for this account. Try again in {} minute(s).",
                    (wait + 59) / 60
                );
                return message(StatusCode::TOO_MANY_REQUESTS, "Try again later", &text, "/");
            }
            match p.register(&who, &u).await {
                Ok(reg) => {
                    let stage = Stage::PortalEnrolling {
                        user: u.id,
                        label: label(&u),
                        secret_b32: reg.enrollment.secret.to_base32(),
                        uri: reg.enrollment.uri,
                        backup_codes: reg.backup_codes.iter().map(|c| c.display()).collect(),
                    };
                    advance(&s, &id, stage, "/register")
                }
                Err(e) => {
                    tracing::error!(error = %e, "portal registration could not start");
                    login_form(&s, Some(REFUSED), StatusCode::INTERNAL_SERVER_ERROR)
                }
            }
        }
        Ok(FirstFactorOutcome::Registered(u)) => {
            let state = p.code_ticket(&u);
            advance(&s, &id, Stage::PortalCode { user: u.id, label: label(&u), state }, "/code")
        }
        Ok(_) => login_form(&s, Some(REFUSED), StatusCode::UNAUTHORIZED),
        Err(e) => {
            tracing::error!(error = %e, "portal sign-in failed");
            login_form(&s, Some(REFUSED), StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[derive(Template)]
#[template(path = "ui/portal_register.html")]
struct RegisterPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
    custom_message: &'a str,
    secret: &'a str,
    qr_svg: String,
    backup_codes: &'a [String],
}

fn register_view(sess: &Session, error: Option<&str>, settings: &(String, bool)) -> Option<Response> {
    let Stage::PortalEnrolling { secret_b32, uri, backup_codes, .. } = &sess.stage else { return None };
    let (custom_message, show_qr) = settings;
    Some(render(&RegisterPage {
        csrf: &sess.csrf,
        error,
        custom_message,
        secret: secret_b32,
        qr_svg: if *show_qr { crate::qr::svg(uri).unwrap_or_default() } else { String::new() },
        backup_codes,
    }))
}

/// Whether this listener may start registrations: always on `[http]
/// listen`; on `[ui] portal_listen` only with `portal_listen_registration`.
fn registration_here(s: &AppState) -> bool {
    s.surface == Surface::Main || s.node.config.ui.portal_listen_registration
}

/// The policy's registration message and whether the QR code is shown.
async fn registration_settings(s: &AppState) -> (String, bool) {
    match s.node.ctx.store.policy().await {
        Ok(p) => (p.registration_message, p.registration_qr),
        Err(_) => (String::new(), true),
    }
}

async fn register_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some((_, sess)) = current(&s, &headers) else { return see_other("/") };
    let msg = registration_settings(&s).await;
    register_view(&sess, None, &msg).unwrap_or_else(|| see_other("/"))
}

#[derive(Deserialize)]
struct CodeForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    code: String,
}

async fn register(State(s): State<AppState>, headers: HeaderMap, caller: Caller, Form(f): Form<CodeForm>) -> Response {
    let Some((id, sess)) = current(&s, &headers) else { return stale() };
    let Stage::PortalEnrolling { user: uid, label: l, .. } = &sess.stage else { return stale() };
    if !sess.csrf_ok(&f.csrf) {
        return stale();
    }
    let Some(u) = user(&s, *uid).await else { return stale() };
    match portal(&s).confirm(&actor(l, &caller), &u, &f.code).await {
        Ok(true) => advance(&s, &id, Stage::Portal { user: u.id, label: l.clone() }, "/"),
        Ok(false) => {
            let msg = registration_settings(&s).await;
            let page = register_view(&sess, Some("That code did not match. Enter the current code."), &msg);
            with_status(StatusCode::UNAUTHORIZED, page.unwrap_or_else(stale))
        }
        Err(e) => {
            tracing::error!(error = %e, "portal registration failed");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Not done", "Registration failed; try again later.", "/")
        }
    }
}

#[derive(Template)]
#[template(path = "ui/portal_code.html")]
struct CodePage<'a> {
    csrf: &'a str,
    label: &'a str,
}

async fn code_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match current(&s, &headers) {
        Some((_, sess)) => match &sess.stage {
            Stage::PortalCode { label, .. } => render(&CodePage { csrf: &sess.csrf, label }),
            _ => see_other("/"),
        },
        None => see_other("/"),
    }
}

async fn code(State(s): State<AppState>, headers: HeaderMap, caller: Caller, Form(f): Form<CodeForm>) -> Response {
    let Some((id, sess)) = current(&s, &headers) else { return stale() };
    let Stage::PortalCode { user: uid, label: l, state } = &sess.stage else { return stale() };
    if !sess.csrf_ok(&f.csrf) {
        return stale();
    }
    let Some(u) = user(&s, *uid).await else { return stale() };
    // The ticket is single-use: whatever the answer, this session is done with it.
    match portal(&s).sign_in(&actor(l, &caller), &u, state, &f.code).await {
        Ok(true) => advance(&s, &id, Stage::Portal { user: u.id, label: l.clone() }, "/"),
        Ok(false) => {
            s.ui.sessions.remove(&id);
            login_form(&s, Some(REFUSED), StatusCode::UNAUTHORIZED)
        }
        Err(e) => {
            tracing::error!(error = %e, "portal sign-in failed");
            s.ui.sessions.remove(&id);
            login_form(&s, Some(REFUSED), StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
}

async fn backup_codes(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(f): Form<CsrfForm>,
) -> Response {
    let Some((_, sess)) = current(&s, &headers) else { return stale() };
    let Stage::Portal { user: uid, label: l } = &sess.stage else { return stale() };
    if !sess.csrf_ok(&f.csrf) {
        return stale();
    }
    let Some(u) = user(&s, *uid).await else { return stale() };
    match portal(&s).regenerate_backup_codes(&actor(l, &caller), &u).await {
        Ok(codes) => render(&HomePage {
            csrf: &sess.csrf,
            label: l,
            notice: Some("New backup codes made."),
            backup_codes: codes.iter().map(|c| c.display()).collect(),
        }),
        Err(e) => message(StatusCode::BAD_REQUEST, "Not done", &e.to_string(), "/"),
    }
}

async fn logout(State(s): State<AppState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let Some((id, sess)) = current(&s, &headers) else { return see_other("/") };
    if !sess.csrf_ok(&f.csrf) {
        return stale();
    }
    s.ui.sessions.remove(&id);
    with_cookie(see_other("/"), session::clear_cookie(PORTAL_COOKIE))
}
