//! Who is calling: the peer address and client label recorded in audit
//! lines, and API keys for admin endpoints.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;
use tessera_core::audit::Actor;

use super::error::ApiError;
use super::{AppState, PeerAddr};

/// Facts about the caller that every handler may record.
#[derive(Debug, Clone)]
pub struct Caller {
    pub address: Option<String>,
    /// `rest`, plus the caller's User-Agent, bounded and printable.
    pub client: String,
    pub bearer: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let address = parts.extensions.get::<PeerAddr>().map(|p| p.0.ip().to_string());
        let client = match parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok()) {
            Some(ua) if !ua.is_empty() => {
                let ua: String = ua.chars().filter(|c| !c.is_control()).take(64).collect();
                format!("rest ({ua})")
            }
            _ => "rest".into(),
        };
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string());
        Ok(Caller { address, client, bearer })
    }
}

/// An authenticated admin caller; the audit actor is `api-key:<name>`.
#[derive(Debug, Clone)]
pub struct AdminCaller(pub Actor);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(caller) = Caller::from_request_parts(parts, state).await;
        let Some(token) = caller.bearer else { return Err(ApiError::unauthorized()) };
        match state.node.admin.authenticate_api_key(&token).await? {
            Some(key) => Ok(AdminCaller(
                Actor::new(format!("api-key:{}", key.name))
                    .with_address(caller.address)
                    .with_client(Some(caller.client)),
            )),
            None => {
                tracing::warn!(peer = ?caller.address, "admin API call with an unknown API key");
                Err(ApiError::unauthorized())
            }
        }
    }
}
