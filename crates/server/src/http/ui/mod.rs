//! The web UI (issue 7): the admin console under `/admin` and, later, the
//! self-service portal under `/`. Server-rendered HTML (askama templates in
//! `crates/server/templates/ui`, autoescaped), one embedded stylesheet, no
//! script, no third-party origin.
//!
//! Every UI response carries the security headers of [`security_headers`]
//! (a strict CSP with no inline script or style, framing denied, no
//! referrer, no caching). Sessions and CSRF are in [`session`]; who may sign
//! in is decided by `tessera_core::admins`, and user changes go through
//! `tessera_core::admin` like the CLI and REST API, so the audit log reads
//! the same whichever door was used. Handlers never show why a sign-in
//! failed: the reason goes to the audit log.

pub mod admin;
pub mod console;
pub mod portal;
pub mod session;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

use super::AppState;

/// The Content-Security-Policy of every UI page: only this origin, no
/// inline script or style (the QR code is inline SVG markup, which needs
/// neither), forms post only here, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const CSS: &str = include_str!("../../../assets/ui.css");

/// UI state shared by the handlers (inside [`AppState`]) and by every
/// listener of the node.
#[derive(Debug, Default)]
pub struct UiShared {
    pub sessions: session::Sessions,
    pub registrations: session::RegistrationLimit,
    /// A backup started from the console is running (one at a time).
    pub backup_running: std::sync::atomic::AtomicBool,
    /// The addresses bound at start, by kind (`https`, `portal`), for the dashboard.
    pub listeners: parking_lot::RwLock<Vec<(String, String)>>,
}

impl UiShared {
    pub fn new(cfg: &crate::config::UiSection) -> Self {
        UiShared { sessions: session::Sessions::new(cfg.idle_timeout_seconds), ..UiShared::default() }
    }
}

/// Which pages a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `[http] listen`: the API, and the console and portal as `[ui]` allows.
    Main,
    /// `[ui] portal_listen`: the portal only.
    PortalOnly,
}

/// The UI routes for a listener (wrap them in [`secure`] last).
pub fn routes(surface: Surface, cfg: &crate::config::UiSection) -> Router<AppState> {
    let mut r = Router::new().route("/ui/assets/ui.css", get(css));
    if surface == Surface::Main && cfg.console {
        r = r.merge(admin::routes()).merge(console::routes());
    }
    if surface == Surface::PortalOnly || cfg.portal {
        r = r.merge(portal::routes());
    }
    if surface == Surface::PortalOnly {
        r = r.fallback(not_found);
    }
    r
}

/// The UI's security headers on every response of `r`, refusals from
/// inner layers (CSRF, body limit, timeout) included: apply outermost.
pub fn secure<S: Clone + Send + Sync + 'static>(r: Router<S>) -> Router<S> {
    r.layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
}

/// Checks the CSRF token of every UI POST before any handler runs, so no
/// form can be added without it: the `csrf` field of a url-encoded body
/// must equal the token of the session named by the cookie of that area
/// (`/admin…`: the console's, else the portal's). Anything else (no
/// session, no field, a wrong token, a JSON or text body) gets the 403
/// "session expired" page. Multipart bodies (the seed-file upload) are
/// left to their handler, which reads the field from the parts and checks
/// it the same way before using anything else. Handlers check again.
pub async fn csrf_guard(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    if multipart {
        return next.run(req).await;
    }
    let admin_area = req.uri().path().starts_with("/admin");
    let (parts, body) = req.into_parts();
    let refuse = || {
        let back = if admin_area { "/admin/login" } else { "/" };
        message(StatusCode::FORBIDDEN, "Session expired", session::STALE, back)
    };
    let Ok(bytes) = axum::body::to_bytes(body, s.node.config.http.max_body_bytes).await else {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "The form is too large.", "/");
    };
    let submitted = form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
    let cookie_name = if admin_area { session::ADMIN_COOKIE } else { session::PORTAL_COOKIE };
    let ok = match (submitted, session::cookie(&parts.headers, cookie_name)) {
        (Some(token), Some(id)) => {
            s.ui.sessions.get(id, s.node.ctx.clock.now()).is_some_and(|sess| sess.csrf_ok(&token))
        }
        _ => false,
    };
    if !ok {
        return refuse();
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found", "There is no such page here.", "/")
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"))], CSS).into_response()
}

/// Renders a template; a render error (a bug) is a plain 500 page.
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "UI template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "ui/message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub back: &'a str,
}

/// A short page with a status (refusals: bad CSRF token, expired session).
pub fn message(status: StatusCode, title: &str, message: &str, back: &str) -> Response {
    with_status(status, render(&MessagePage { title, message, back }))
}

/// 303 See Other: after a POST, the browser GETs the next page.
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The response with another status code.
pub fn with_status(status: StatusCode, mut r: Response) -> Response {
    *r.status_mut() = status;
    r
}

/// Adds a `Set-Cookie` header to a response.
pub fn with_cookie(mut r: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub type Shared = Arc<UiShared>;
