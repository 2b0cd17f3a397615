//! Admin REST endpoints (API key required): users, tokens, backup codes,
//! policy, audit. Every change goes through `tessera_core::admin::Admin`,
//! which validates it and writes the audit record.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Json;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use tessera_core::admin::{otp_params, parse_secret};
use tessera_core::audit::{AuditQuery, AuditResult, TargetMatch};
use tessera_core::clock::Timestamp;
use tessera_core::model::{OobChannel, User, UserStatus};
use tessera_core::policy::Policy;
use tessera_core::store::UserQuery;
use tessera_core::views::{AuditView, TokenView, UserView};
use tessera_core::wildcard::Wildcard;
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::AppState;
use super::auth::AdminCaller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{username}", get(show_user).delete(delete_user))
        .route("/api/v1/users/{username}/unlock", post(unlock_user))
        .route("/api/v1/users/{username}/reset", post(reset_user))
        .route("/api/v1/users/{username}/disable", post(disable_user))
        .route("/api/v1/users/{username}/enable", post(enable_user))
        .route("/api/v1/users/{username}/password", put(set_password))
        .route("/api/v1/users/{username}/tokens", get(list_user_tokens).post(add_token))
        .route("/api/v1/users/{username}/tokens/confirm", post(confirm_token))
        .route("/api/v1/users/{username}/backup-codes", post(backup_codes))
        .route("/api/v1/tokens/{serial}", get(show_token).delete(delete_token))
        .route("/api/v1/tokens/{serial}/resync", post(resync_token))
        .route("/api/v1/policy", get(show_policy).patch(patch_policy))
        .route("/api/v1/audit", get(audit_log))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RealmParam {
    /// The user's realm; the default realm when absent.
    pub realm: Option<String>,
}

async fn find(s: &AppState, realm: &RealmParam, username: &str) -> Result<User, ApiError> {
    Ok(s.node.admin.find_user(realm.realm.as_deref(), username).await?)
}

fn now(s: &AppState) -> Timestamp {
    s.node.ctx.clock.now()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserListParams {
    /// Case-sensitive username pattern; `*` matches any run of characters.
    pub search: Option<String>,
    /// unregistered, active, locked or disabled.
    pub status: Option<String>,
    pub realm: Option<String>,
    /// 1–10000, default 100.
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// An explicit `limit` must be 1–10000; absent means the default (0 to core).
fn list_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        Some(0) => Err(ApiError::invalid(format!("limit: must be 1–{}", tessera_core::admin::MAX_LIST_LIMIT))),
        l => Ok(l.unwrap_or(0)),
    }
}

/// List users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserListParams), security(("api_key" = [])),
    responses((status = 200, body = Vec<UserView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_users(
    State(s): State<AppState>,
    _: AdminCaller,
    ApiQuery(p): ApiQuery<UserListParams>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let pattern = p.search.as_deref().map(Wildcard::parse).transpose().map_err(ApiError::invalid)?;
    let status = p.status.as_deref().map(str::parse::<UserStatus>).transpose().map_err(ApiError::invalid)?;
    let q = UserQuery { realm: p.realm, pattern, status, limit: list_limit(p.limit)?, offset: p.offset.unwrap_or(0) };
    let now = now(&s);
    Ok(Json(s.node.admin.list_users(q).await?.iter().map(|u| UserView::new(u, now)).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    pub username: String,
    pub realm: Option<String>,
    /// Optional local password (at least 8 characters, not only digits up to
    /// 10: that would read as a one-time code); stored as argon2id.
    pub password: Option<String>,
}

/// Create a user (unregistered until a token is confirmed).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUserBody, security(("api_key" = [])),
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_user(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiJson(b): ApiJson<NewUserBody>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let u = s.node.admin.add_user(&actor, b.realm.as_deref(), &b.username, b.password.map(Zeroizing::new)).await?;
    Ok((StatusCode::CREATED, Json(UserView::new(&u, now(&s)))))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDetail {
    pub user: UserView,
    pub tokens: Vec<TokenView>,
    /// Unused backup codes left.
    pub backup_codes_left: u32,
}

/// Show a user with their tokens.
#[utoipa::path(get, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path), RealmParam),
    security(("api_key" = [])), responses((status = 200, body = UserDetail), (status = 404, body = ErrorBody)))]
pub async fn show_user(
    State(s): State<AppState>,
    _: AdminCaller,
    ApiPath(username): ApiPath<String>,
    ApiQuery(r): ApiQuery<RealmParam>,
) -> Result<Json<UserDetail>, ApiError> {
    let u = find(&s, &r, &username).await?;
    let tokens = s.node.admin.tokens(&u).await?;
    Ok(Json(UserDetail {
        user: UserView::new(&u, now(&s)),
        tokens: tokens.iter().map(TokenView::from).collect(),
        backup_codes_left: s.node.admin.backup_codes_left(&u).await?,
    }))
}

/// Delete a user and their tokens.
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users", params(("username" = String, Path), RealmParam),
    security(("api_key" = [])), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiPath(username): ApiPath<String>,
    ApiQuery(r): ApiQuery<RealmParam>,
) -> Result<StatusCode, ApiError> {
    let u = find(&s, &r, &username).await?;
    s.node.admin.delete_user(&actor, &u).await?;
    Ok(StatusCode::NO_CONTENT)
}

macro_rules! user_action {
    ($name:ident, $path:literal, $doc:literal, |$admin:ident, $actor:ident, $user:ident| $call:expr) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "users", params(("username" = String, Path), RealmParam),
            security(("api_key" = [])), responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
        pub async fn $name(
            State(s): State<AppState>,
            AdminCaller($actor): AdminCaller,
            ApiPath(username): ApiPath<String>,
            ApiQuery(r): ApiQuery<RealmParam>,
        ) -> Result<Json<UserView>, ApiError> {
            let $user = find(&s, &r, &username).await?;
            let $admin = &s.node.admin;
            $call.await?;
            let fresh = find(&s, &r, &username).await?;
            Ok(Json(UserView::new(&fresh, now(&s))))
        }
    };
}

user_action!(
    unlock_user,
    "/api/v1/users/{username}/unlock",
    "Unlock a locked user (clears failures).",
    |a, actor, u| a.unlock(&actor, &u)
);
user_action!(
    reset_user,
    "/api/v1/users/{username}/reset",
    "Reset a user: remove tokens, backup codes and lock state; the user is unregistered again.",
    |a, actor, u| a.reset(&actor, &u)
);
user_action!(
    disable_user,
    "/api/v1/users/{username}/disable",
    "Disable a user: every login is refused.",
    |a, actor, u| a.set_disabled(&actor, &u, true)
);
user_action!(enable_user, "/api/v1/users/{username}/enable", "Enable a disabled user.", |a, actor, u| a
    .set_disabled(&actor, &u, false));

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// The new local password, or null to remove it.
    pub password: Option<String>,
}

/// Set or remove a user's local password.
#[utoipa::path(put, path = "/api/v1/users/{username}/password", tag = "users", request_body = PasswordBody,
    params(("username" = String, Path), RealmParam), security(("api_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_password(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiPath(username): ApiPath<String>,
    ApiQuery(r): ApiQuery<RealmParam>,
    ApiJson(b): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let u = find(&s, &r, &username).await?;
    s.node.admin.set_password(&actor, &u, b.password.map(Zeroizing::new)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List a user's tokens.
#[utoipa::path(get, path = "/api/v1/users/{username}/tokens", tag = "tokens", params(("username" = String, Path), RealmParam),
    security(("api_key" = [])), responses((status = 200, body = Vec<TokenView>), (status = 404, body = ErrorBody)))]
pub async fn list_user_tokens(
    State(s): State<AppState>,
    _: AdminCaller,
    ApiPath(username): ApiPath<String>,
    ApiQuery(r): ApiQuery<RealmParam>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let u = find(&s, &r, &username).await?;
    Ok(Json(s.node.admin.tokens(&u).await?.iter().map(TokenView::from).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// `totp` (default), `hotp`, or `email` / `sms` (codes sent to
    /// `address` after the first factor, where policy `oob_realms` /
    /// `oob_users` enables them).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Email and SMS tokens: the email address or the phone number
    /// (international, `+49 151 …`).
    pub address: Option<String>,
    /// SHA1 (default), SHA256 or SHA512.
    pub algorithm: Option<String>,
    /// 6 (default) or 8.
    pub digits: Option<u8>,
    /// TOTP period: 30 (default) or 60 seconds.
    pub period: Option<u32>,
    /// A known secret in base32 (hardware tokens, migrations). Without a
    /// secret, one is generated and the token is pending until confirmed.
    pub secret: Option<String>,
    /// A known secret in hex, instead of base32.
    pub secret_hex: Option<String>,
    /// HOTP: the next counter value (default 0).
    pub counter: Option<u64>,
    /// Serial number; generated when absent.
    pub serial: Option<String>,
    pub description: Option<String>,
    /// With a known secret: require confirmation with a code first.
    pub pending: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    pub token: TokenView,
    /// Generated secret (base32), shown once. Absent when the secret was supplied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `otpauth://` URI for authenticator apps, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otpauth_uri: Option<String>,
    /// The URI as an SVG QR code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<String>,
}

/// Enroll a new token (server-generated secret; pending until confirmed) or
/// add a token with a known secret.
#[utoipa::path(post, path = "/api/v1/users/{username}/tokens", tag = "tokens", request_body = TokenBody,
    params(("username" = String, Path), RealmParam), security(("api_key" = [])),
    responses((status = 201, body = TokenCreated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn add_token(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiPath(username): ApiPath<String>,
    ApiQuery(r): ApiQuery<RealmParam>,
    ApiJson(b): ApiJson<TokenBody>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    if let Some(channel) = b.kind.as_deref().and_then(|k| k.parse::<OobChannel>().ok()) {
        return add_oob_token(&s, &actor, &r, &username, channel, b).await;
    }
    if b.address.is_some() {
        return Err(ApiError::invalid("address applies only to email and sms tokens"));
    }
    let params = otp_params(b.kind.as_deref(), b.algorithm.as_deref(), b.digits, b.period)?;
    let description = b.description.unwrap_or_default();
    let has_secret = b.secret.is_some() || b.secret_hex.is_some();
    if !has_secret && (b.counter.is_some() || b.serial.is_some() || b.pending.is_some()) {
        return Err(ApiError::invalid("counter, serial and pending apply only to tokens with a known secret"));
    }
    let u = find(&s, &r, &username).await?;
    let created = if has_secret {
        let secret = parse_secret(b.secret.as_deref(), b.secret_hex.as_deref())?;
        let t = s
            .node
            .admin
            .add_token(
                &actor,
                &u,
                &secret,
                params,
                b.counter.unwrap_or(0),
                b.serial.as_deref(),
                &description,
                b.pending.unwrap_or(false),
            )
            .await?;
        TokenCreated { token: TokenView::from(&t), secret: None, otpauth_uri: None, qr_svg: None }
    } else {
        let e = s.node.admin.enroll_token(&actor, &u, params, &description).await?;
        TokenCreated {
            token: TokenView::from(&e.token),
            secret: Some(e.secret.to_base32()),
            qr_svg: crate::qr::svg(&e.uri),
            otpauth_uri: Some(e.uri),
        }
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// `POST …/tokens` with `type` `email` or `sms`.
async fn add_oob_token(
    s: &AppState,
    actor: &tessera_core::audit::Actor,
    r: &RealmParam,
    username: &str,
    channel: OobChannel,
    b: TokenBody,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let Some(address) = b.address.as_deref() else {
        return Err(ApiError::invalid("email and sms tokens need an address"));
    };
    let otp_only = b.algorithm.is_some()
        || b.period.is_some()
        || b.secret.is_some()
        || b.secret_hex.is_some()
        || b.counter.is_some()
        || b.pending.is_some();
    if otp_only {
        return Err(ApiError::invalid(
            "algorithm, period, secret, secret_hex, counter and pending do not apply to email and sms tokens",
        ));
    }
    let u = find(s, r, username).await?;
    let description = b.description.unwrap_or_default();
    let t =
        s.node.admin.add_oob_token(actor, &u, channel, address, b.digits, b.serial.as_deref(), &description).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated { token: TokenView::from(&t), secret: None, otpauth_uri: None, qr_svg: None }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    /// A current code from the new token.
    pub code: String,
}

/// Confirm a pending token with a current code; it becomes active.
#[utoipa::path(post, path = "/api/v1/users/{username}/tokens/confirm", tag = "tokens", request_body = CodeBody,
    params(("username" = String, Path), RealmParam), security(("api_key" = [])),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn confirm_token(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiPath(username): ApiPath<String>,
    ApiQuery(r): ApiQuery<RealmParam>,
    ApiJson(b): ApiJson<CodeBody>,
) -> Result<Json<TokenView>, ApiError> {
    let u = find(&s, &r, &username).await?;
    let t = s.node.admin.confirm_token(&actor, &u, &b.code).await?;
    Ok(Json(TokenView::from(&t)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupCodes {
    /// Ten single-use codes, shown once; the previous set is void.
    pub codes: Vec<String>,
}

/// Generate a fresh set of backup codes (voids the old set).
#[utoipa::path(post, path = "/api/v1/users/{username}/backup-codes", tag = "users",
    params(("username" = String, Path), RealmParam), security(("api_key" = [])),
    responses((status = 200, body = BackupCodes), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn backup_codes(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiPath(username): ApiPath<String>,
    ApiQuery(r): ApiQuery<RealmParam>,
) -> Result<Json<BackupCodes>, ApiError> {
    let u = find(&s, &r, &username).await?;
    let codes = s.node.admin.regenerate_backup_codes(&actor, &u).await?;
    Ok(Json(BackupCodes { codes: codes.iter().map(|c| c.as_str().to_string()).collect() }))
}

/// Show a token by serial (or id).
#[utoipa::path(get, path = "/api/v1/tokens/{serial}", tag = "tokens", params(("serial" = String, Path)),
    security(("api_key" = [])), responses((status = 200, body = TokenView), (status = 404, body = ErrorBody)))]
pub async fn show_token(
    State(s): State<AppState>,
    _: AdminCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<TokenView>, ApiError> {
    Ok(Json(TokenView::from(&s.node.admin.find_token(&serial).await?)))
}

/// Delete a token.
#[utoipa::path(delete, path = "/api/v1/tokens/{serial}", tag = "tokens", params(("serial" = String, Path)),
    security(("api_key" = [])), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_token(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiPath(serial): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let t = s.node.admin.find_token(&serial).await?;
    s.node.admin.delete_token(&actor, &t).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncBody {
    /// Two consecutive codes; omit to only reset the learned drift.
    pub codes: Option<[String; 2]>,
}

/// Resynchronise a token.
#[utoipa::path(post, path = "/api/v1/tokens/{serial}/resync", tag = "tokens", params(("serial" = String, Path)),
    request_body = ResyncBody, security(("api_key" = [])),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn resync_token(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiPath(serial): ApiPath<String>,
    ApiJson(b): ApiJson<ResyncBody>,
) -> Result<Json<TokenView>, ApiError> {
    let t = s.node.admin.find_token(&serial).await?;
    let codes = b.codes.as_ref().map(|[a, b]| (a.as_str(), b.as_str()));
    Ok(Json(TokenView::from(&s.node.admin.resync_token(&actor, &t, codes).await?)))
}

/// Show the authentication policy.
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy", security(("api_key" = [])),
    responses((status = 200, body = Policy)))]
pub async fn show_policy(State(s): State<AppState>, _: AdminCaller) -> Result<Json<Policy>, ApiError> {
    Ok(Json(s.node.admin.policy().await?))
}

/// Change policy settings: send only the keys to change.
#[utoipa::path(patch, path = "/api/v1/policy", tag = "policy", security(("api_key" = [])),
    request_body(content = Object, description = "Policy keys to change, e.g. {\"lockout_threshold\": 3}"),
    responses((status = 200, body = Policy), (status = 400, body = ErrorBody)))]
pub async fn patch_policy(
    State(s): State<AppState>,
    AdminCaller(actor): AdminCaller,
    ApiJson(changes): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<Policy>, ApiError> {
    let mut p = s.node.admin.policy().await?;
    for (k, v) in &changes {
        p = p.with_setting(k, &v.to_string()).map_err(ApiError::invalid)?;
    }
    s.node.admin.set_policy(&actor, &p).await?;
    Ok(Json(p))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// RFC 3339 time or date (UTC): records at or after.
    pub since: Option<String>,
    /// RFC 3339 time or date (UTC): records before.
    pub until: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// accept, reject, challenge, ok or error.
    pub result: Option<String>,
    /// Only records with an id below this (paging).
    pub before: Option<i64>,
    /// 1–10000, default 100.
    pub limit: Option<u32>,
}

/// Read the audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams), security(("api_key" = [])),
    responses((status = 200, body = Vec<AuditView>), (status = 400, body = ErrorBody)))]
pub async fn audit_log(
    State(s): State<AppState>,
    _: AdminCaller,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    let time = |v: Option<String>, name: &str| -> Result<Option<Timestamp>, ApiError> {
        v.map(|t| {
            Timestamp::parse_rfc3339(&t).ok_or_else(|| ApiError::invalid(format!("{name}: expected an RFC 3339 time")))
        })
        .transpose()
    };
    let q = AuditQuery {
        since: time(p.since, "since")?,
        until: time(p.until, "until")?,
        actor: p.actor,
        action: p.action,
        target: p.target,
        result: p.result.as_deref().map(str::parse::<AuditResult>).transpose().map_err(ApiError::invalid)?,
        target_match: TargetMatch::Name,
        before_id: p.before,
        limit: list_limit(p.limit)?,
    };
    Ok(Json(s.node.admin.audit_log(q).await?.iter().map(AuditView::from).collect()))
}
