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
use tessera_core::password::PasswordError;
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
            // Refused unchecked under a flood of password checks: try later.
            CoreError::Password(PasswordError::Busy) => ApiError::unavailable(),
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
            format!("the body is not valid JSON: {}", without_values(&e.body_text())),
        ),
        JsonRejection::JsonDataError(e) => {
            ApiError::invalid(format!("the JSON does not match the schema: {}", without_values(&e.body_text())))
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        }
        other => ApiError::new(other.status(), "invalid_request", other.body_text()),
    }
}

/// A serde error message without the values it quotes. serde names the
/// offending value after "invalid type"/"invalid value" and in "unknown
/// variant" (`integer \`123456\``, `string "hunter2"`): in a login or
/// password field that is a secret, so error bodies (and logs) keep the
/// kind and the field, never the value.
pub fn without_values(msg: &str) -> String {
    const PHRASES: [&str; 3] = ["invalid type: ", "invalid value: ", "unknown variant "];
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some((at, phrase)) = PHRASES.iter().filter_map(|p| rest.find(p).map(|i| (i, *p))).min() {
        out.push_str(&rest[..at + phrase.len()]);
        rest = &rest[at + phrase.len()..];
        // The kind words (`integer`, `string`, …) stay; the quoted literal goes.
        let quote = rest.find(['`', '"']).filter(|q| !rest[..*q].contains(','));
        let Some(q) = quote else { continue };
        match rest[..q].trim_end() {
            "" => out.truncate(out.trim_end().len()),
            kind => out.push_str(kind),
        }
        rest = skip_literal(&rest[q..]);
    }
    out.push_str(rest);
    out
}

/// The text after one quoted literal at the start of `s`: a backtick
/// literal ends at the next backtick; a double-quoted one is Rust-escaped
/// (`\"` inside), so escapes are skipped.
fn skip_literal(s: &str) -> &str {
    let mut chars = s.char_indices();
    let Some((_, open)) = chars.next() else { return s };
    let mut escaped = false;
    for (i, c) in chars {
        if open == '"' && !escaped && c == '\\' {
            escaped = true;
            continue;
        }
        if c == open && !escaped {
            return &s[i + c.len_utf8()..];
        }
        escaped = false;
    }
    ""
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
            .map_err(|e: QueryRejection| ApiError::invalid(without_values(&e.body_text())))
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

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn serde_messages_keep_the_field_and_kind_but_not_the_value() {
        let cases = [
            (
                "password: invalid type: integer `123456`, expected a string at line 1 column 30",
                "password: invalid type: integer, expected a string at line 1 column 30",
            ),
            (
                r#"password: invalid type: string "hunter2 \"quoted\", expected x", expected a map"#,
                "password: invalid type: string, expected a map",
            ),
            (
                "status: unknown variant `secretish`, expected one of `a`, `b`",
                "status: unknown variant, expected one of `a`, `b`",
            ),
            ("code: invalid value: integer `-1`, expected u32", "code: invalid value: integer, expected u32"),
            ("invalid type: map, expected a string", "invalid type: map, expected a string"),
            ("unknown field `passwrd`, expected `username`", "unknown field `passwrd`, expected `username`"),
            (r#"x: invalid type: string "unterminated"#, "x: invalid type: string"),
        ];
        for (input, want) in cases {
            assert_eq!(without_values(input), want, "{input}");
        }
    }
}
