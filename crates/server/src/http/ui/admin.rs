//! The admin console: sign-in (password, then the admin's own TOTP, which
//! is enrolled at the first sign-in), and the users table with search,
//! paging and the unlock / reset / disable / enable / delete actions.
//!
//! Every POST needs a live session and its CSRF token; every privilege
//! change (password accepted, signed in, signed out) moves the session to a
//! new id. Failures show one generic message; reasons go to the audit log.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use tessera_core::admin::MAX_LIST_LIMIT;
use tessera_core::admins::{AdminAccounts, SignInStep};
use tessera_core::audit::Actor;
use tessera_core::model::{AccessRecord, User, UserId, UserStatus};
use tessera_core::names::DEFAULT_REALM;
use tessera_core::store::UserQuery;
use tessera_core::wildcard::Wildcard;
use zeroize::Zeroizing;

use super::console::Chrome;
use super::session::{self, ADMIN_COOKIE, Session, Stage};
use super::{message, render, see_other, with_cookie, with_status};
use crate::http::AppState;
use crate::http::auth::Caller;

const REFUSED: &str =
    "Sign-in refused. Check the name, password and code, and try again later if you tried several times.";
/// Page sizes offered by the users table.
const LIMITS: [u32; 5] = [25, 50, 100, 500, 1000];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/", get(home))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/totp", get(totp_page).post(totp))
        .route("/admin/enroll", get(enroll_page).post(enroll))
        .route("/admin/logout", post(logout))
        .route("/admin/users", get(users))
        .route("/admin/users/action", post(user_action))
}

fn accounts(s: &AppState) -> AdminAccounts {
    AdminAccounts::new(s.node.ctx.clone())
}

/// The live admin-console session of this request, with its id.
fn current(s: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = session::cookie(headers, ADMIN_COOKIE)?;
    s.ui.sessions.get(id, s.node.ctx.clock.now()).map(|sess| (id.to_string(), sess))
}

/// The actor recorded in audit lines for a browser request.
pub(super) fn web_actor(name: String, caller: &Caller) -> Actor {
    let client = caller.client.replacen("rest", "web", 1);
    Actor::new(name).with_address(caller.address.clone()).with_client(Some(client))
}

/// Moves the session to `stage` under a new id and redirects to `to`.
fn advance(s: &AppState, old_id: &str, stage: Stage, to: &str) -> Response {
    let (id, _) = s.ui.sessions.rotate(&*s.node.ctx.random, old_id, stage, s.node.ctx.clock.now());
    with_cookie(see_other(to), session::set_cookie(ADMIN_COOKIE, &id))
}

pub(super) fn stale() -> Response {
    message(StatusCode::FORBIDDEN, "Session expired", session::STALE, "/admin/login")
}

/// The signed-in admin, or `None` (then the caller redirects or refuses).
/// The account is re-read on every request: `tessera admin delete` or
/// `admin reset` run in another process, so they cannot reach this
/// process's sessions; a deleted, reset (TOTP forgotten) or locked admin's
/// session ends here.
pub(super) async fn signed_in(s: &AppState, headers: &HeaderMap) -> Option<(String, Session, String)> {
    let (id, sess) = current(s, headers)?;
    let Stage::Admin { admin, name } = &sess.stage else { return None };
    let live = match s.node.ctx.store.admin_by_id(admin).await {
        Ok(Some(a)) => a.enrolled() && a.lock.block(s.node.ctx.clock.now()).is_none(),
        Ok(None) => false,
        Err(e) => {
            tracing::error!(error = %e, "admin console: store error");
            false
        }
    };
    if !live {
        s.ui.sessions.remove(&id);
        return None;
    }
    let name = name.clone();
    Some((id, sess, name))
}

async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&s, &headers).await {
        Some(_) => see_other("/admin/users"),
        None => see_other("/admin/login"),
    }
}

// ------------------------------------------------------------------ sign-in

#[derive(Template)]
#[template(path = "ui/admin_login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
}

/// The sign-in form, with a fresh anonymous session for its CSRF token.
fn login_form(s: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    let (id, sess) = s.ui.sessions.create(&*s.node.ctx.random, Stage::Anonymous, s.node.ctx.clock.now());
    let page = render(&LoginPage { csrf: &sess.csrf, error });
    with_cookie(with_status(status, page), session::set_cookie(ADMIN_COOKIE, &id))
}

async fn login_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some((id, _)) = current(&s, &headers) {
        s.ui.sessions.remove(&id);
    }
    login_form(&s, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    /// `username`, as on the portal's sign-in form (password managers and
    /// people see one name for the same thing).
    username: String,
    /// Moved into `Zeroizing` as soon as it is read.
    password: String,
}

async fn login(State(s): State<AppState>, headers: HeaderMap, caller: Caller, Form(f): Form<LoginForm>) -> Response {
    let Some((id, sess)) = current(&s, &headers) else { return stale() };
    if !sess.csrf_ok(&f.csrf) || !matches!(sess.stage, Stage::Anonymous) {
        return stale();
    }
    let actor = web_actor(format!("admin:{}", f.username.chars().take(64).collect::<String>()), &caller);
    let admins = accounts(&s);
    match admins.check_password(&actor, &f.username, Zeroizing::new(f.password)).await {
        Ok(SignInStep::PasswordOk { admin, enrolled: true }) => {
            advance(&s, &id, Stage::AdminPassword { admin }, "/admin/totp")
        }
        Ok(SignInStep::PasswordOk { admin, enrolled: false }) => {
            let account = match admins.by_id(admin).await {
                Ok(Some(a)) => a,
                _ => return login_form(&s, Some(REFUSED), StatusCode::UNAUTHORIZED),
            };
            match admins.start_enrollment(&account) {
                Ok(e) => {
                    advance(&s, &id, Stage::AdminEnrolling { admin, secret: e.secret, uri: e.uri }, "/admin/enroll")
                }
                Err(e) => {
                    tracing::error!(error = %e, "admin TOTP enrollment could not start");
                    login_form(&s, Some(REFUSED), StatusCode::INTERNAL_SERVER_ERROR)
                }
            }
        }
        Ok(_) => {
            s.ui.sessions.remove(&id);
            login_form(&s, Some(REFUSED), StatusCode::UNAUTHORIZED)
        }
        Err(e) => {
            tracing::error!(error = %e, "admin sign-in failed");
            s.ui.sessions.remove(&id);
            login_form(&s, Some(REFUSED), StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[derive(Template)]
#[template(path = "ui/admin_totp.html")]
struct TotpPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
}

async fn totp_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match current(&s, &headers) {
        Some((_, sess)) if matches!(sess.stage, Stage::AdminPassword { .. }) => {
            render(&TotpPage { csrf: &sess.csrf, error: None })
        }
        _ => see_other("/admin/login"),
    }
}

#[derive(Deserialize)]
struct CodeForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    code: String,
}

async fn totp(State(s): State<AppState>, headers: HeaderMap, caller: Caller, Form(f): Form<CodeForm>) -> Response {
    let Some((id, sess)) = current(&s, &headers) else { return stale() };
    let Stage::AdminPassword { admin } = sess.stage else { return stale() };
    if !sess.csrf_ok(&f.csrf) {
        return stale();
    }
    let admins = accounts(&s);
    let name = match admins.by_id(admin).await {
        Ok(Some(a)) => a.name,
        _ => return stale(),
    };
    match admins.check_totp(&web_actor(format!("admin:{name}"), &caller), admin, &f.code).await {
        Ok(SignInStep::Accepted { admin }) => advance(&s, &id, Stage::Admin { admin, name }, "/admin/users"),
        Ok(_) => {
            // A mistyped code keeps the password step: each wrong code counts
            // toward the admin's lock like any failure, so this gives no more
            // tries than starting over would. Locked now: back to the start.
            let locked = matches!(admins.by_id(admin).await, Ok(Some(a)) if a.lock.is_locked(s.node.ctx.clock.now()));
            if locked {
                s.ui.sessions.remove(&id);
                return login_form(&s, Some(REFUSED), StatusCode::UNAUTHORIZED);
            }
            let page = render(&TotpPage {
                csrf: &sess.csrf,
                error: Some("That code did not match. Enter the current code from your authenticator."),
            });
            with_status(StatusCode::UNAUTHORIZED, page)
        }
        Err(e) => {
            tracing::error!(error = %e, "admin TOTP check failed");
            s.ui.sessions.remove(&id);
            login_form(&s, Some(REFUSED), StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[derive(Template)]
#[template(path = "ui/admin_enroll.html")]
struct EnrollPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
    secret: String,
    qr_svg: String,
}

async fn enroll_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match current(&s, &headers) {
        Some((_, sess)) => match &sess.stage {
            Stage::AdminEnrolling { secret, uri, .. } => render(&EnrollPage {
                csrf: &sess.csrf,
                error: None,
                secret: secret.to_base32(),
                qr_svg: crate::qr::svg(uri).unwrap_or_default(),
            }),
            _ => see_other("/admin/login"),
        },
        None => see_other("/admin/login"),
    }
}

async fn enroll(State(s): State<AppState>, headers: HeaderMap, caller: Caller, Form(f): Form<CodeForm>) -> Response {
    let Some((id, sess)) = current(&s, &headers) else { return stale() };
    let Stage::AdminEnrolling { admin, secret, uri } = &sess.stage else { return stale() };
    if !sess.csrf_ok(&f.csrf) {
        return stale();
    }
    let admins = accounts(&s);
    let name = match admins.by_id(*admin).await {
        Ok(Some(a)) => a.name,
        _ => return stale(),
    };
    match admins.finish_enrollment(&web_actor(format!("admin:{name}"), &caller), *admin, secret, &f.code).await {
        Ok(SignInStep::Accepted { admin }) => advance(&s, &id, Stage::Admin { admin, name }, "/admin/users"),
        Ok(_) => {
            let page = render(&EnrollPage {
                csrf: &sess.csrf,
                error: Some("That code did not match. Check the phone's clock and enter the current code."),
                secret: secret.to_base32(),
                qr_svg: crate::qr::svg(uri).unwrap_or_default(),
            });
            with_status(StatusCode::UNAUTHORIZED, page)
        }
        Err(e) => {
            tracing::error!(error = %e, "admin TOTP enrollment failed");
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

async fn logout(State(s): State<AppState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let Some((id, sess)) = current(&s, &headers) else { return see_other("/admin/login") };
    if !sess.csrf_ok(&f.csrf) {
        return stale();
    }
    s.ui.sessions.remove(&id);
    with_cookie(see_other("/admin/login"), session::clear_cookie(ADMIN_COOKIE))
}

// -------------------------------------------------------------------- users

/// One row of the users table: only what the page shows.
struct UserRow {
    id: String,
    username: String,
    realm: String,
    status: &'static str,
    failures: u32,
    first_factor: String,
    last_attempt: String,
    last_success: String,
    actions: Vec<&'static str>,
}

pub(super) fn access_text(a: &Option<AccessRecord>) -> String {
    match a {
        None => "never".into(),
        Some(a) => {
            let mut t = a.at.to_rfc3339();
            t.truncate(19);
            let mut s = t.replace('T', " ");
            if let Some(addr) = &a.address {
                s.push_str(&format!(" from {addr}"));
            }
            if let Some(c) = &a.client {
                s.push_str(&format!(" ({c})"));
            }
            s
        }
    }
}

/// Where the user's first factor is checked, in words.
pub(super) fn first_factor_text(u: &User) -> String {
    if u.password_hash.is_some() {
        "local password".into()
    } else if u.realm != DEFAULT_REALM {
        format!("realm {}", u.realm)
    } else {
        "none (code only)".into()
    }
}

/// `name`, or `name@realm` outside the default realm.
pub(super) fn user_label(u: &User) -> String {
    if u.realm == DEFAULT_REALM { u.username.clone() } else { format!("{}@{}", u.username, u.realm) }
}

impl UserRow {
    fn new(u: &User, now: tessera_core::clock::Timestamp) -> Self {
        let status = u.status(now);
        let mut actions = Vec::new();
        if status == UserStatus::Locked || u.lock.current(now).failures > 0 {
            actions.push("unlock");
        }
        actions.push("reset");
        actions.push(if u.disabled { "enable" } else { "disable" });
        actions.push("delete");
        UserRow {
            id: u.id.to_string(),
            username: u.username.clone(),
            realm: u.realm.clone(),
            status: status.as_str(),
            failures: u.lock.current(now).failures,
            first_factor: first_factor_text(u),
            last_attempt: access_text(&u.last_attempt),
            last_success: access_text(&u.last_success),
            actions,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/admin_users.html")]
struct UsersPage<'a> {
    c: &'a Chrome,
    q: &'a str,
    limit: u32,
    limits: &'a [u32],
    page: u32,
    rows: Vec<UserRow>,
    prev_href: Option<String>,
    next_href: Option<String>,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct UsersQuery {
    #[serde(default)]
    q: String,
    limit: Option<u32>,
    page: Option<u32>,
    done: Option<String>,
}

fn users_href(q: &str, limit: u32, page: u32) -> String {
    let q: String = form_urlencoded_q(q);
    format!("/admin/users?q={q}&limit={limit}&page={page}")
}

fn form_urlencoded_q(q: &str) -> String {
    percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn users(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<UsersQuery>) -> Response {
    let Some((_, sess, name)) = signed_in(&s, &headers).await else { return see_other("/admin/login") };
    let chrome = Chrome::new(&sess, &name, "users");
    let limit = q.limit.unwrap_or(LIMITS[0]).clamp(1, MAX_LIST_LIMIT - 1);
    let page = q.page.unwrap_or(1).max(1);
    let pattern = q.q.trim();
    let mut error = None;
    let wildcard = if pattern.is_empty() {
        None
    } else {
        match Wildcard::parse(pattern) {
            Ok(w) => Some(w),
            Err(e) => {
                error = Some(format!("Search: {e}"));
                None
            }
        }
    };
    let query = UserQuery {
        pattern: wildcard,
        limit: limit + 1,
        offset: (page - 1).saturating_mul(limit),
        ..UserQuery::default()
    };
    let now = s.node.ctx.clock.now();
    let mut list = if error.is_none() {
        match s.node.admin.list_users(query).await {
            Ok(l) => l,
            Err(e) => {
                error = Some(e.to_string());
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let more = list.len() > limit as usize;
    list.truncate(limit as usize);
    let notice = q.done.as_deref().and_then(|d| match d {
        "unlock" => Some("User unlocked."),
        "reset" => Some("User reset: tokens and backup codes removed; the user registers again."),
        "disable" => Some("User disabled."),
        "enable" => Some("User enabled."),
        "delete" => Some("User deleted."),
        _ => None,
    });
    render(&UsersPage {
        c: &chrome,
        q: pattern,
        limit,
        limits: &LIMITS,
        page,
        rows: list.iter().map(|u| UserRow::new(u, now)).collect(),
        prev_href: (page > 1).then(|| users_href(pattern, limit, page - 1)),
        next_href: more.then(|| users_href(pattern, limit, page + 1)),
        notice: notice.map(String::from),
        error,
    })
}

/// "Are you sure?" before a destructive POST: the same form again with
/// `confirm=yes`.
#[derive(Template)]
#[template(path = "ui/admin_confirm.html")]
pub(super) struct ConfirmPage<'a> {
    pub c: &'a Chrome,
    pub title: String,
    pub warning: &'a str,
    pub post_to: &'a str,
    pub fields: Vec<(&'a str, String)>,
    pub button: String,
    pub cancel: String,
}

#[derive(Deserialize)]
struct ActionForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    user: String,
    action: String,
    confirm: Option<String>,
    /// `detail`: back to the user's page afterwards (else the users table).
    back: Option<String>,
}

async fn user_action(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(f): Form<ActionForm>,
) -> Response {
    let Some((_, sess, name)) = signed_in(&s, &headers).await else { return stale() };
    if !sess.csrf_ok(&f.csrf) {
        return stale();
    }
    let Ok(user_id) = f.user.parse::<UserId>() else {
        return message(StatusCode::BAD_REQUEST, "No such user", "That user does not exist.", "/admin/users");
    };
    let user = match s.node.ctx.store.user_by_id(&user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return message(StatusCode::NOT_FOUND, "No such user", "That user does not exist.", "/admin/users");
        }
        Err(e) => {
            tracing::error!(error = %e, "users table: store error");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The database did not answer.",
                "/admin/users",
            );
        }
    };
    let action = f.action.as_str();
    let warning = match action {
        "reset" => Some("The user's tokens, backup codes and lock are removed; they must register again."),
        "delete" => Some("The user and everything they own are deleted. This cannot be undone."),
        "unlock" | "disable" | "enable" => None,
        _ => return message(StatusCode::BAD_REQUEST, "Unknown action", "That action does not exist.", "/admin/users"),
    };
    let detail = f.back.as_deref() == Some("detail");
    if let Some(warning) = warning
        && f.confirm.as_deref() != Some("yes")
    {
        let label = user_label(&user);
        let mut fields = vec![("user", user.id.to_string()), ("action", action.to_string())];
        if detail {
            fields.push(("back", "detail".into()));
        }
        return render(&ConfirmPage {
            c: &Chrome::new(&sess, &name, "users"),
            title: format!("Confirm: {action} {label}"),
            warning,
            post_to: "/admin/users/action",
            fields,
            button: format!("Yes, {action} {label}"),
            cancel: if detail { format!("/admin/users/{}", user.id) } else { "/admin/users".into() },
        });
    }
    let actor = web_actor(format!("admin:{name}"), &caller);
    let admin = &s.node.admin;
    let result = match action {
        "unlock" => admin.unlock(&actor, &user).await,
        "reset" => admin.reset(&actor, &user).await,
        "disable" => admin.set_disabled(&actor, &user, true).await,
        "enable" => admin.set_disabled(&actor, &user, false).await,
        _ => admin.delete_user(&actor, &user).await,
    };
    match result {
        Ok(()) if detail && action != "delete" => see_other(&format!("/admin/users/{}?done={action}", user.id)),
        Ok(()) => see_other(&format!("/admin/users?done={action}")),
        Err(e) => message(StatusCode::BAD_REQUEST, "Not done", &e.to_string(), "/admin/users"),
    }
}
