//! The one mapping from failures to HTTP: every error is a JSON body
//! `{"code": "...", "message": "..."}` with a stable code. Store and
//! internal failures are logged in full here and answered generically.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_core::CoreError;
use tessera_core::store::StoreError;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `invalid_request`, `malformed_json`,
    /// `payload_too_large`, `unsupported_media_type`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `code_mismatch`, `unavailable`, `internal`.
    pub code: &'static str,
    /// For humans; wording may change between versions.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid API key is required (Authorization: Bearer tsk_…)")
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the service is temporarily unavailable; retry later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { code: self.code, message: self.message })).into_response()
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { .. } | CoreError::Password(_) => ApiError::invalid(e.to_string()),
            CoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            CoreError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            CoreError::CodeMismatch => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "code_mismatch", e.to_string()),
            // The codes were right; the policy cannot honour them (the message says what to do).
            CoreError::DriftBeyondPolicy { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            CoreError::Store(StoreError::ReadOnly(m)) => ApiError::new(StatusCode::CONFLICT, "read_only_replica", m),
            CoreError::Store(StoreError::Fenced(m)) => ApiError::new(StatusCode::CONFLICT, "fenced", m),
            // Logged once per token where it was found (tessera_core::auth).
            CoreError::SecretUnreadable => ApiError::unavailable(),
            CoreError::Store(StoreError::Unavailable(_)) => {
                tracing::error!(error = %e, "store unavailable");
                ApiError::unavailable()
            }
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        CoreError::from(e).into()
    }
}

/// `Json<T>` whose rejections speak our error format.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a body with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => {
            ApiError::invalid(format!("the JSON does not match the schema: {}", e.body_text()))
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        }
        other => ApiError::new(other.status(), "invalid_request", other.body_text()),
    }
}

/// `Query<T>` with our error format.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}

/// `Path<T>` with our error format.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::invalid(e.body_text()))
    }
}
