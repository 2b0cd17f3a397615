//! `POST /api/v1/validate`: the same decision as RADIUS, over JSON.

use axum::extract::State;
use axum::response::Json;
use serde::{Deserialize, Serialize};
use tessera_core::auth::{Decision, ValidateRequest};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson};
use crate::metrics::{self, Outcome, Protocol};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    pub username: String,
    /// The static password followed by the one-time code (`secret123456`), or
    /// the code alone for users without a password; a backup code works in
    /// place of the one-time code.
    pub password: String,
    /// Realm of the user; default realm when absent.
    pub realm: Option<String>,
    /// State from an earlier `challenge` answer; `password` then carries
    /// only the one-time code (or a backup code).
    pub state: Option<String>,
}

#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ValidateResult {
    Accept,
    Reject,
    Challenge,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateReply {
    pub result: ValidateResult,
    /// On reject: always `access_denied`. Which factor failed, or whether the
    /// user exists, is never told; it is in the audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// On challenge: send it back with the next request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// On challenge: the prompt to show the user. On reject, rarely: a
    /// message for the user (no email or SMS code could be sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Check a login (first factor and one-time code).
///
/// Answers `accept`, `reject` or `challenge` with HTTP 200; errors (bad
/// JSON, too large, store down) are non-200 with an error body.
#[utoipa::path(post, path = "/api/v1/validate", tag = "validate", request_body = ValidateBody,
    responses(
        (status = 200, description = "The decision", body = ValidateReply),
        (status = 400, description = "Malformed request", body = super::error::ErrorBody),
        (status = 401, description = "API key required by configuration", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 503, description = "Not decided, fail closed: the store is unavailable, or a token secret of the user does not open with this node's master key (code `unavailable`; retry on another node)", body = super::error::ErrorBody),
    ))]
pub async fn validate(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ValidateBody>,
) -> Result<Json<ValidateReply>, ApiError> {
    let started = std::time::Instant::now();
    if s.live.config().http.validate_requires_api_key {
        let ok = match &caller.bearer {
            Some(t) => s.node.admin.authenticate_api_key(t).await?.is_some(),
            None => false,
        };
        if !ok {
            metrics::request(Protocol::Rest, Outcome::Unauthorized, started.elapsed());
            return Err(ApiError::unauthorized());
        }
    }
    // An undecodable state is passed on as is: the engine refuses it (and
    // audits it) like any state it did not issue.
    let state = body.state.map(|s| data_encoding::BASE64URL_NOPAD.decode(s.as_bytes()).unwrap_or_default());
    let req = ValidateRequest {
        username: body.username,
        realm: body.realm,
        password: Zeroizing::new(body.password),
        state,
        address: caller.address,
        client: Some(caller.client),
        ..Default::default()
    };
    let result = s.node.auth.validate(req).await;
    crate::health::observe_login(&result);
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            metrics::request(Protocol::Rest, Outcome::Error, started.elapsed());
            return Err(e.into());
        }
    };
    metrics::decided(Protocol::Rest, &v, started.elapsed());
    Ok(Json(match v.decision {
        Decision::Accept => ValidateReply { result: ValidateResult::Accept, reason: None, state: None, message: None },
        Decision::Reject => ValidateReply {
            result: ValidateResult::Reject,
            reason: Some("access_denied"),
            state: None,
            message: v.message,
        },
        Decision::Challenge { state, message } => ValidateReply {
            result: ValidateResult::Challenge,
            reason: None,
            state: Some(data_encoding::BASE64URL_NOPAD.encode(&state)),
            message: Some(message),
        },
    }))
}
