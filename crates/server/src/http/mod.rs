//! The HTTPS API: `POST /api/v1/validate`, the admin REST endpoints,
//! `/healthz`, `/readyz` and the OpenAPI document. Handlers are thin: they
//! parse, call `tessera-core`, and map the result; sockets live in `serve`.

pub mod admin;
pub mod auth;
pub mod error;
pub mod openapi;
pub mod serve;
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
use error::ApiError;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Behind an Arc: the state is cloned for every request.
    pub node: std::sync::Arc<Node>,
}

/// The TCP peer, inserted per connection by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

pub fn router(node: std::sync::Arc<Node>) -> Router {
    let max_body = node.config.http.max_body_bytes;
    let timeout = Duration::from_secs(node.config.http.request_timeout_seconds.max(1));
    let state = AppState { node };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/openapi.json", get(openapi::serve))
        .route("/api/v1/validate", post(validate::validate))
        .merge(admin::routes())
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
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
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
    /// `ok` when the node can serve authentications.
    pub status: &'static str,
    pub node: String,
}

/// Liveness and storage health: 200 when the store answers, 503 otherwise.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = error::ErrorBody)))]
pub async fn healthz(State(s): State<AppState>) -> Response {
    match s.node.ctx.store.ping().await {
        Ok(()) => Json(Health { status: "ok", node: s.node.ctx.node.clone() }).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unavailable");
            ApiError::unavailable().into_response()
        }
    }
}

/// Readiness: the node can take traffic (same checks as `/healthz` for a
/// single node; replication state joins in with HA).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = error::ErrorBody)))]
pub async fn readyz(state: State<AppState>) -> Response {
    healthz(state).await
}
