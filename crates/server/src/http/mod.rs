//! The HTTPS API: `POST /api/v1/validate`, the admin REST endpoints,
//! `/healthz`, `/readyz`, `/metrics` and the OpenAPI document. Handlers are
//! thin: they parse, call `tessera-core`, and map the result; sockets live
//! in `serve`.

pub mod admin;
pub mod auth;
pub mod error;
pub mod openapi;
pub mod replication;
pub mod serve;
pub mod ui;
pub mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::ToSchema;

use crate::node::Node;
use crate::reload::{Live, MetricsDenied};
use error::ApiError;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Behind an Arc: the state is cloned for every request.
    pub node: std::sync::Arc<Node>,
    /// Settings that change on SIGHUP, `/metrics` access, readiness.
    pub live: std::sync::Arc<Live>,
    /// Web UI sessions (see `ui::session`), shared by every listener.
    pub ui: ui::Shared,
    /// Which listener the request came through.
    pub surface: ui::Surface,
    /// Outstanding join challenges (replication).
    pub challenges: std::sync::Arc<replication::Challenges>,
    /// Enrolled nodes' last reports, written to the database now and then.
    pub peer_reports: std::sync::Arc<replication::PeerReports>,
}

/// The TCP peer, inserted per connection by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The router of an `[http] listen` address: the API, plus the console and
/// portal as `[ui]` allows.
pub fn router(node: std::sync::Arc<Node>, live: std::sync::Arc<Live>, ui: ui::Shared) -> Router {
    let max_body = node.config.http.max_body_bytes;
    let timeout = Duration::from_secs(node.config.http.request_timeout_seconds.max(1));
    let ui_cfg = node.config.ui.clone();
    let state = AppState {
        node,
        live,
        ui,
        surface: ui::Surface::Main,
        challenges: Default::default(),
        peer_reports: Default::default(),
    };
    // The API's headers (CSP `default-src 'none'`, …) are layered on the API
    // routes only; the UI routes, merged after, carry their own (ui::CSP).
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi::serve))
        .route("/api/v1/validate", post(validate::validate))
        .merge(admin::routes())
        .merge(replication::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")));
    let ui = ui::secure(
        ui::routes(ui::Surface::Main, &ui_cfg)
            .layer(axum::middleware::from_fn_with_state(state.clone(), ui::csrf_guard))
            .layer(DefaultBodyLimit::max(max_body))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout)),
    );
    api.merge(ui).with_state(state)
}

/// The router of a `[ui] portal_listen` address: the self-service portal
/// and nothing else (no console, no API, no metrics).
pub fn portal_router(node: std::sync::Arc<Node>, live: std::sync::Arc<Live>, ui: ui::Shared) -> Router {
    let max_body = node.config.http.max_body_bytes;
    let timeout = Duration::from_secs(node.config.http.request_timeout_seconds.max(1));
    let ui_cfg = node.config.ui.clone();
    let state = AppState {
        node,
        live,
        ui,
        surface: ui::Surface::PortalOnly,
        challenges: Default::default(),
        peer_reports: Default::default(),
    };
    ui::secure(
        ui::routes(ui::Surface::PortalOnly, &ui_cfg)
            .layer(axum::middleware::from_fn_with_state(state.clone(), ui::csrf_guard))
            .layer(DefaultBodyLimit::max(max_body))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout)),
    )
    .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed for this endpoint")
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the node can serve authentications; from `/readyz` also
    /// `degraded`: it serves, but something needs an operator (see `reasons`).
    pub status: &'static str,
    pub node: String,
    /// With `degraded`: what is wrong, one line each (e.g. `clock: …`,
    /// `secrets: …`). Absent when `ok`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// Liveness: 200 while the process serves HTTP (nothing else is checked,
/// so a restart is not triggered by a database hiccup; see `/readyz`).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz(State(s): State<AppState>) -> Response {
    Json(Health { status: "ok", node: s.node.ctx.node.clone(), reasons: Vec::new() }).into_response()
}

/// Readiness: 200 when the node can take traffic — the store answers,
/// realms are loaded, every listener is up and it is not shutting down;
/// otherwise 503 `unavailable` whose message lists what is missing. A
/// ready node with a degradation (`crate::health`: its clock is off from
/// the database's, a secret does not open, replication is not following)
/// answers 200 with `status` `degraded` and the `reasons`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready: `ok`, or `degraded` with reasons", body = Health),
        (status = 503, description = "Not ready", body = error::ErrorBody),
    ))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    let mut problems: Vec<String> = s.live.ready.problems().into_iter().map(String::from).collect();
    if let Err(e) = s.node.ctx.store.ping().await {
        tracing::error!(error = %e, "readiness check: store unavailable");
        problems.insert(0, "store unreachable".into());
    }
    if problems.is_empty() {
        let reasons = crate::health::reasons();
        let status = if reasons.is_empty() { "ok" } else { "degraded" };
        Json(Health { status, node: s.node.ctx.node.clone(), reasons }).into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("not ready: {}", problems.join("; ")))
            .into_response()
    }
}

/// Prometheus metrics (text exposition format 0.0.4). Allowed to the
/// sources in `[metrics] allow` (default: loopback), with the bearer token
/// of `[metrics] bearer_token_file` when one is set; others get 403.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", content_type = "text/plain", body = String),
        (status = 403, description = "Source address not allowed, or token missing", body = error::ErrorBody),
        (status = 404, description = "Metrics are disabled", body = error::ErrorBody),
    ))]
pub async fn metrics(State(s): State<AppState>, caller: auth::Caller) -> Response {
    let access = s.live.metrics_access();
    let peer = caller.address.as_deref().and_then(|a| a.parse::<std::net::IpAddr>().ok());
    match access.check(peer, caller.bearer.as_deref()) {
        Ok(()) => {}
        Err(MetricsDenied::Disabled) => return not_found().await.into_response(),
        Err(why) => {
            tracing::debug!(peer = ?peer, reason = ?why, "metrics scrape refused");
            let message = match why {
                MetricsDenied::Token => "a valid metrics bearer token is required",
                _ => "this address may not read the metrics ([metrics] allow)",
            };
            return ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response();
        }
    }
    let cfg = s.live.config();
    let backup = (!cfg.backup.dir.is_empty())
        .then(|| crate::scheduled_backup::read_status(std::path::Path::new(&cfg.backup.dir)))
        .flatten();
    let text = crate::metrics::render(&crate::metrics::External {
        directory: Some(&s.node.directory.stats),
        backup_interval_seconds: cfg.backup.interval_seconds,
        backup,
    });
    ([(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE))], text).into_response()
}
