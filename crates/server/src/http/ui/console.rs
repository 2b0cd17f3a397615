//! The admin console's pages besides sign-in and the users table: the
//! dashboard, a user's page, the token inventory (import, assign,
//! unassign), RADIUS clients, realms with their connection test, the
//! policy, the audit log, backups and replication status.
//!
//! Every handler starts with [`console`] (GET: the signed-in admin, else
//! the sign-in page) or [`console_post`] (POST: also the CSRF token, else
//! 403). Changes go through `tessera_core::admin` with the web actor, like
//! the CLI and REST API, so their rules, refusals and audit records are the
//! same. Refusals are shown with the core's message and change nothing.
//! Secrets (RADIUS shared secrets, realm bind passwords, token seeds,
//! backup passphrases) are never rendered, not even back into a form.

use std::path::{Path, PathBuf};

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, body::Body};
use serde::Deserialize;
use tessera_core::CoreError;
use tessera_core::audit::{AuditQuery, AuditResult, TargetMatch};
use tessera_core::clock::Timestamp;
use tessera_core::model::{MessageAuthenticatorMode, TokenId, User, UserId, UserStatus};
use tessera_core::store::{InventoryQuery, UserQuery};
use tessera_core::views::{AdminView, AuditView, TokenView};
use tessera_otp::OtpKind;
use zeroize::Zeroizing;

use super::admin::{ConfirmPage, access_text, first_factor_text, signed_in, stale, user_label, web_actor};
use super::session::Session;
use super::{message, render, see_other, with_status};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::inventory_import::{self, SeedKey};

/// Largest seed file the import form takes. Bigger files go through
/// `tessera token import` (the form's work must fit in a request).
pub const MAX_UPLOAD_BYTES: usize = 4 * 1024 * 1024;
/// Rows shown per page in the inventory and the audit log by default.
const PAGE: u32 = 50;
/// Page sizes offered by the audit log.
const AUDIT_LIMITS: [u32; 4] = [25, 50, 100, 500];
/// The dashboard counts users of each status up to this many, then says "more than".
const COUNT_CAP: u32 = 10_000;
/// Audit records shown on a user's page and the dashboard.
const RECENT: u32 = 20;
/// Unassigned inventory tokens offered in a user page's assign list.
const ASSIGN_CHOICES: u32 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/dashboard", get(dashboard))
        .route("/admin/users/{id}", get(user_page))
        .route("/admin/users/{id}/token", post(user_token))
        .route("/admin/users/{id}/group", post(user_group))
        .route("/admin/tokens", get(tokens_page))
        .route("/admin/tokens/import", post(tokens_import).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024)))
        .route("/admin/tokens/assign", post(tokens_assign))
        .route("/admin/tokens/unassign", post(tokens_unassign))
        .route("/admin/radius", get(radius_page))
        .route("/admin/radius/add", post(radius_add))
        .route("/admin/radius/delete", post(radius_delete))
        .route("/admin/radius/secret", post(radius_secret))
        .route("/admin/realms", get(realms_page))
        .route("/admin/realms/test", post(realm_test))
        .route("/admin/policy", get(policy_page).post(policy_save))
        .route("/admin/audit", get(audit_page))
        .route("/admin/backups", get(backups_page))
        .route("/admin/backups/create", post(backup_create))
        .route("/admin/backups/file/{name}", get(backup_download))
        .route("/admin/replication", get(replication_page))
}

// ------------------------------------------------------------------ common

/// What every console page needs for its header: the CSRF token of the
/// sign-out form, the admin's name, and which nav entry is current.
pub struct Chrome {
    pub csrf: String,
    pub admin_name: String,
    pub nav: &'static str,
}

impl Chrome {
    pub fn new(sess: &Session, admin_name: &str, nav: &'static str) -> Self {
        Chrome { csrf: sess.csrf.clone(), admin_name: admin_name.to_string(), nav }
    }
}

/// A signed-in admin's request.
struct Console {
    name: String,
    session: Session,
}

impl Console {
    fn chrome(&self, nav: &'static str) -> Chrome {
        Chrome::new(&self.session, &self.name, nav)
    }

    fn actor(&self, caller: &Caller) -> tessera_core::audit::Actor {
        web_actor(format!("admin:{}", self.name), caller)
    }
}

/// GET: the signed-in admin, or `None` (the caller sends to the sign-in page).
async fn console(s: &AppState, headers: &HeaderMap) -> Option<Console> {
    let (_, session, name) = signed_in(s, headers).await?;
    Some(Console { name, session })
}

/// POST: the signed-in admin whose form carried the session's CSRF token;
/// otherwise the 403 "session expired" page.
async fn console_post(s: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Console, Response> {
    match console(s, headers).await {
        Some(c) if c.session.csrf_ok(csrf) => Ok(c),
        _ => Err(stale()),
    }
}

fn to_login() -> Response {
    see_other("/admin/login")
}

fn unavailable(back: &str) -> Response {
    message(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "The database did not answer; try again.", back)
}

/// A refusal from the core: client errors show their message (it names the
/// field and rule, never a secret); anything else is logged and shown as
/// "not done".
fn refused(e: &CoreError, back: &str) -> Response {
    if e.is_client_error() {
        let status = match e {
            CoreError::NotFound(_) => StatusCode::NOT_FOUND,
            CoreError::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        message(status, "Not done", &e.to_string(), back)
    } else {
        tracing::error!(error = %e, "console action failed");
        message(StatusCode::INTERNAL_SERVER_ERROR, "Not done", "The change could not be made; see the log.", back)
    }
}

/// RFC 3339 without the milliseconds and zone, for tables.
fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}

fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// An empty or blank form/query field is "not given".
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

/// `name` or `name@realm`, as typed by an admin, to a user.
async fn find_user(s: &AppState, typed: &str) -> Result<User, CoreError> {
    let typed = typed.trim();
    match typed.rsplit_once('@') {
        Some((name, realm)) if !name.is_empty() && !realm.is_empty() => s.node.admin.find_user(Some(realm), name).await,
        _ => s.node.admin.find_user(None, typed).await,
    }
}

fn audit_rows(records: &[tessera_core::audit::AuditRecord]) -> Vec<AuditView> {
    records
        .iter()
        .map(|r| {
            let mut v = AuditView::from(r);
            v.at = short_time(&v.at);
            v
        })
        .collect()
}

fn notice_for(done: &Option<String>, table: &[(&str, &'static str)]) -> Option<&'static str> {
    let d = done.as_deref()?;
    table.iter().find(|(k, _)| *k == d).map(|(_, v)| *v)
}

#[derive(Deserialize, Default)]
struct DoneQuery {
    done: Option<String>,
}

// --------------------------------------------------------------- dashboard

/// Users of one status: exact up to [`COUNT_CAP`].
struct Count {
    n: u64,
    capped: bool,
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.capped { write!(f, "more than {}", self.n) } else { write!(f, "{}", self.n) }
    }
}

struct UserLink {
    id: String,
    label: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "ui/admin_dashboard.html")]
struct DashboardPage<'a> {
    c: &'a Chrome,
    node: &'a str,
    version: &'static str,
    role: &'static str,
    users: u64,
    active: String,
    unregistered: Count,
    locked: Count,
    disabled: Count,
    locked_users: Vec<UserLink>,
    listeners: Vec<(String, String)>,
    backup: String,
    admins: Vec<AdminView>,
    failures: Vec<AuditView>,
    recent: Vec<AuditView>,
}

async fn count_status(s: &AppState, status: UserStatus) -> Result<(Count, Vec<User>), CoreError> {
    let q = UserQuery { status: Some(status), limit: COUNT_CAP + 1, ..UserQuery::default() };
    let list = s.node.ctx.store.list_users(&q, s.node.ctx.clock.now()).await?;
    let capped = list.len() > COUNT_CAP as usize;
    Ok((Count { n: (list.len() as u64).min(u64::from(COUNT_CAP)), capped }, list))
}

/// The last scheduled (or console-started) backup, in words.
fn backup_summary(s: &AppState) -> String {
    let cfg = s.live.config();
    if cfg.backup.dir.is_empty() {
        return "no backup directory configured ([backup] dir)".into();
    }
    match crate::scheduled_backup::read_status(Path::new(&cfg.backup.dir)) {
        None => "none yet".into(),
        Some(st) if st.ok => format!(
            "{}: {} ({} bytes)",
            short_time(&st.last_run_at),
            st.file.unwrap_or_default(),
            st.bytes.unwrap_or_default()
        ),
        Some(st) => format!("{}: FAILED: {}", short_time(&st.last_run_at), st.error.unwrap_or_default()),
    }
}

async fn dashboard(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    let ctx = &s.node.ctx;
    let now = ctx.clock.now();
    let result: Result<_, CoreError> = async {
        let users = s.node.admin.count_users().await?;
        let (unregistered, _) = count_status(&s, UserStatus::Unregistered).await?;
        let (locked, locked_list) = count_status(&s, UserStatus::Locked).await?;
        let (disabled, _) = count_status(&s, UserStatus::Disabled).await?;
        let admins = ctx.store.list_admins().await?;
        let failures = s
            .node
            .admin
            .audit_log(AuditQuery { result: Some(AuditResult::Reject), limit: 10, ..Default::default() })
            .await?;
        let recent = s.node.admin.audit_log(AuditQuery { limit: RECENT, ..Default::default() }).await?;
        Ok((users, unregistered, locked, locked_list, disabled, admins, failures, recent))
    }
    .await;
    let Ok((users, unregistered, locked, locked_list, disabled, admins, failures, recent)) = result else {
        return unavailable("/admin/users");
    };
    let active = if unregistered.capped || locked.capped || disabled.capped {
        "not counted (too many users)".to_string()
    } else {
        users.saturating_sub(unregistered.n + locked.n + disabled.n).to_string()
    };
    // Every socket this node bound (HTTPS, portal, RADIUS auth and
    // accounting, RadSec), as bound: ports chosen by the OS included.
    let listeners: Vec<(String, String)> = s.ui.listeners.read().clone();
    let locked_users = locked_list
        .iter()
        .take(10)
        .map(|u| UserLink {
            id: u.id.to_string(),
            label: user_label(u),
            detail: format!("{} failures; last attempt {}", u.lock.failures, access_text(&u.last_attempt)),
        })
        .collect();
    render(&DashboardPage {
        c: &c.chrome("dashboard"),
        node: &ctx.node,
        version: env!("CARGO_PKG_VERSION"),
        role: replication_status(&s).role,
        users,
        active,
        unregistered,
        locked,
        disabled,
        locked_users,
        listeners,
        backup: backup_summary(&s),
        admins: admins.iter().map(|a| AdminView::new(a, now)).collect(),
        failures: audit_rows(&failures),
        recent: audit_rows(&recent),
    })
}

// --------------------------------------------------------------- user page

struct TokenRow {
    id: String,
    serial: String,
    kind: String,
    state: String,
    description: String,
    created: String,
    last_used: String,
}

impl From<&tessera_core::model::Token> for TokenRow {
    fn from(t: &tessera_core::model::Token) -> Self {
        let v = TokenView::from(t);
        let kind = match (v.kind.as_str(), v.period) {
            ("totp", Some(p)) => format!("TOTP {}s, {} digits, {}", p, v.digits, v.algorithm),
            ("hotp", _) => format!("HOTP, {} digits, {}", v.digits, v.algorithm),
            (k, _) => format!("{k} to {}", v.address.unwrap_or_default()),
        };
        TokenRow {
            id: v.id,
            serial: v.serial,
            kind,
            state: v.state,
            description: v.description,
            created: short_time(&v.created_at),
            last_used: v.last_used_at.as_deref().map(short_time).unwrap_or_else(|| "never".into()),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/admin_user.html")]
struct UserPage<'a> {
    c: &'a Chrome,
    id: String,
    label: String,
    realm: String,
    status: &'static str,
    failures: u32,
    locked_until: Option<String>,
    first_factor: String,
    created: String,
    last_attempt: String,
    last_success: String,
    disabled: bool,
    tokens: Vec<TokenRow>,
    backup_codes_left: u32,
    groups: Vec<String>,
    free_serials: Vec<String>,
    recent: Vec<AuditView>,
    audit_href: String,
    notice: Option<&'static str>,
}

const USER_NOTICES: &[(&str, &str)] = &[
    ("unlock", "User unlocked."),
    ("reset", "User reset: tokens and backup codes removed; the user registers again."),
    ("disable", "User disabled."),
    ("enable", "User enabled."),
    ("token-delete", "Token deleted."),
    ("assign", "Hardware token assigned."),
    ("unassign", "Hardware token unassigned; its seed is back in the inventory."),
    ("group-add", "Added to the group."),
    ("group-remove", "Removed from the group."),
];

async fn load_user(s: &AppState, id: &str) -> Result<User, Response> {
    let Ok(uid) = id.parse::<UserId>() else {
        return Err(message(StatusCode::NOT_FOUND, "No such user", "That user does not exist.", "/admin/users"));
    };
    match s.node.ctx.store.user_by_id(&uid).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(message(StatusCode::NOT_FOUND, "No such user", "That user does not exist.", "/admin/users")),
        Err(_) => Err(unavailable("/admin/users")),
    }
}

async fn user_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    let u = match load_user(&s, &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let admin = &s.node.admin;
    let now = s.node.ctx.clock.now();
    let label = user_label(&u);
    let loaded: Result<_, CoreError> = async {
        let tokens = admin.tokens(&u).await?;
        let left = admin.backup_codes_left(&u).await?;
        let groups = admin.groups_of(&u).await?;
        let free = admin
            .inventory(&InventoryQuery { assigned: Some(false), limit: ASSIGN_CHOICES, ..Default::default() })
            .await?;
        let audit = admin
            .audit_log(AuditQuery {
                target: Some(label.clone()),
                target_match: TargetMatch::User,
                limit: RECENT,
                ..Default::default()
            })
            .await?;
        Ok((tokens, left, groups, free, audit))
    }
    .await;
    let Ok((tokens, backup_codes_left, groups, free, audit)) = loaded else { return unavailable("/admin/users") };
    let status = u.status(now);
    render(&UserPage {
        c: &c.chrome("users"),
        id: u.id.to_string(),
        label,
        realm: u.realm.clone(),
        status: status.as_str(),
        failures: u.lock.current(now).failures,
        locked_until: (status == UserStatus::Locked)
            .then(|| u.lock.lock_until.map(|t| short_time(&t.to_rfc3339())))
            .flatten(),
        first_factor: first_factor_text(&u),
        created: short_time(&u.created_at.to_rfc3339()),
        last_attempt: access_text(&u.last_attempt),
        last_success: access_text(&u.last_success),
        disabled: u.disabled,
        tokens: tokens.iter().map(TokenRow::from).collect(),
        backup_codes_left,
        groups,
        free_serials: free.into_iter().map(|i| i.serial).collect(),
        recent: audit_rows(&audit),
        audit_href: format!("/admin/audit?user={}", pct(&user_label(&u))),
        notice: notice_for(&q.done, USER_NOTICES),
    })
}

#[derive(Deserialize)]
struct TokenForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    token: String,
    confirm: Option<String>,
}

/// Deletes one of the user's tokens (after a confirmation page).
async fn user_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<TokenForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let u = match load_user(&s, &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let back = format!("/admin/users/{}", u.id);
    let token = match f.token.parse::<i64>() {
        Ok(t) => s.node.ctx.store.token_by_id(&TokenId(t)).await.ok().flatten().filter(|t| t.user_id == u.id),
        Err(_) => None,
    };
    let Some(token) = token else {
        return message(StatusCode::NOT_FOUND, "No such token", "The user has no such token.", &back);
    };
    if f.confirm.as_deref() != Some("yes") {
        return render(&ConfirmPage {
            c: &c.chrome("users"),
            title: format!("Delete token {} of {}", token.serial, user_label(&u)),
            warning: "The token stops working at once. A hardware token's seed goes back to the inventory.",
            post_to: &format!("/admin/users/{}/token", u.id),
            fields: vec![("token", token.id.to_string())],
            button: format!("Yes, delete token {}", token.serial),
            cancel: back,
        });
    }
    match s.node.admin.delete_token(&c.actor(&caller), &token).await {
        Ok(()) => see_other(&format!("{back}?done=token-delete")),
        Err(e) => refused(&e, &back),
    }
}

#[derive(Deserialize)]
struct GroupForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    group: String,
    /// `add` or `remove`.
    op: String,
}

async fn user_group(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<GroupForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let u = match load_user(&s, &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let back = format!("/admin/users/{}", u.id);
    let actor = c.actor(&caller);
    let group = f.group.trim();
    let result = match f.op.as_str() {
        "add" => s.node.admin.add_to_group(&actor, group, &u).await.map(|_| "group-add"),
        "remove" => s.node.admin.remove_from_group(&actor, group, &u).await.map(|_| "group-remove"),
        _ => return message(StatusCode::BAD_REQUEST, "Unknown action", "That action does not exist.", &back),
    };
    match result {
        Ok(done) => see_other(&format!("{back}?done={done}")),
        Err(e) => refused(&e, &back),
    }
}

// ------------------------------------------------------------ token inventory

struct InventoryRow {
    serial: String,
    kind: String,
    manufacturer: String,
    model: String,
    assigned_to: Option<UserLink>,
    imported: String,
}

/// What an import did, shown on the inventory page.
#[derive(Default)]
struct ImportResult {
    summary: String,
    /// (row, serial, message): errors and skipped rows; never secrets.
    rows: Vec<(usize, String, String)>,
}

#[derive(Template)]
#[template(path = "ui/admin_tokens.html")]
struct TokensPage<'a> {
    c: &'a Chrome,
    filter: &'a str,
    rows: Vec<InventoryRow>,
    page: u32,
    prev_href: Option<String>,
    next_href: Option<String>,
    notice: Option<&'static str>,
    error: Option<String>,
    import: Option<ImportResult>,
    max_upload_mib: usize,
}

#[derive(Deserialize, Default)]
struct TokensQuery {
    assigned: Option<String>,
    page: Option<u32>,
    done: Option<String>,
}

const TOKEN_NOTICES: &[(&str, &str)] =
    &[("assign", "Token assigned."), ("unassign", "Token unassigned; its seed is back in the inventory.")];

fn kind_text(p: &tessera_otp::OtpParams) -> String {
    match p.kind {
        OtpKind::Totp { period } => format!("TOTP {}s, {} digits, {}", period.get(), p.digits.get(), p.algorithm),
        OtpKind::Hotp => format!("HOTP, {} digits, {}", p.digits.get(), p.algorithm),
    }
}

async fn tokens_view(
    s: &AppState,
    c: &Console,
    q: &TokensQuery,
    error: Option<String>,
    import: Option<ImportResult>,
    status: StatusCode,
) -> Response {
    let filter = match q.assigned.as_deref() {
        Some("yes") => "yes",
        Some("no") => "no",
        _ => "all",
    };
    let page = q.page.unwrap_or(1).clamp(1, 100_000);
    let query = InventoryQuery {
        assigned: match filter {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
        limit: PAGE + 1,
        offset: (page - 1) * PAGE,
        ..Default::default()
    };
    let Ok(mut items) = s.node.admin.inventory(&query).await else { return unavailable("/admin/dashboard") };
    let more = items.len() > PAGE as usize;
    items.truncate(PAGE as usize);
    let mut rows = Vec::with_capacity(items.len());
    for i in &items {
        let assigned_to = match i.assigned_to {
            Some(uid) => Some(match s.node.ctx.store.user_by_id(&uid).await {
                Ok(Some(u)) => UserLink { id: u.id.to_string(), label: user_label(&u), detail: String::new() },
                _ => UserLink { id: uid.to_string(), label: uid.to_string(), detail: String::new() },
            }),
            None => None,
        };
        rows.push(InventoryRow {
            serial: i.serial.clone(),
            kind: kind_text(&i.params),
            manufacturer: i.manufacturer.clone().unwrap_or_default(),
            model: i.model.clone().unwrap_or_default(),
            assigned_to,
            imported: short_time(&i.imported_at.to_rfc3339()),
        });
    }
    let href = |p: u32| format!("/admin/tokens?assigned={filter}&page={p}");
    with_status(
        status,
        render(&TokensPage {
            c: &c.chrome("tokens"),
            filter,
            rows,
            page,
            prev_href: (page > 1).then(|| href(page - 1)),
            next_href: more.then(|| href(page + 1)),
            notice: notice_for(&q.done, TOKEN_NOTICES),
            error,
            import,
            max_upload_mib: MAX_UPLOAD_BYTES / (1024 * 1024),
        }),
    )
}

async fn tokens_page(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<TokensQuery>) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    tokens_view(&s, &c, &q, None, None, StatusCode::OK).await
}

/// The import form's fields, read from the multipart body with bounds.
#[derive(Default)]
struct ImportForm {
    csrf: String,
    format: String,
    file: Option<bytes::Bytes>,
    psk: Zeroizing<String>,
    passphrase: Zeroizing<String>,
    skip_bad: bool,
    realm: String,
}

/// Longest text field accepted in the import form (the file aside).
const MAX_IMPORT_FIELD: usize = 1024;

async fn read_import_form(mut mp: Multipart) -> Result<ImportForm, String> {
    let mut f = ImportForm::default();
    while let Some(field) = mp.next_field().await.map_err(|e| format!("the form could not be read: {e}"))? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let data = field.bytes().await.map_err(|e| format!("the file could not be read: {e}"))?;
            if data.len() > MAX_UPLOAD_BYTES {
                return Err(format!("the file is larger than {} MiB", MAX_UPLOAD_BYTES / (1024 * 1024)));
            }
            f.file = Some(data);
            continue;
        }
        let text = Zeroizing::new(field.text().await.map_err(|e| format!("the form could not be read: {e}"))?);
        if text.len() > MAX_IMPORT_FIELD {
            return Err(format!("the field `{}` is too long", name.chars().take(32).collect::<String>()));
        }
        match name.as_str() {
            "csrf" => f.csrf = text.to_string(),
            "format" => f.format = text.trim().to_string(),
            "psk" => f.psk = Zeroizing::new(text.trim().to_string()),
            "passphrase" => f.passphrase = text,
            "skip_bad" => f.skip_bad = !text.is_empty(),
            "realm" => f.realm = text.trim().to_string(),
            _ => {}
        }
    }
    Ok(f)
}

/// Imports a seed file: the same parser, rules and assignment code as
/// `tessera token import`. Bad rows import nothing unless "skip bad rows"
/// is ticked; the page then lists them (row, serial, rule; never a secret).
async fn tokens_import(State(s): State<AppState>, headers: HeaderMap, caller: Caller, mp: Multipart) -> Response {
    // The session is checked before the body is read.
    let Some(c) = console(&s, &headers).await else { return stale() };
    let f = match read_import_form(mp).await {
        Ok(f) => f,
        Err(e) => return tokens_view(&s, &c, &TokensQuery::default(), Some(e), None, StatusCode::BAD_REQUEST).await,
    };
    if !c.session.csrf_ok(&f.csrf) {
        return stale();
    }
    let none = TokensQuery::default();
    let bad = |e: String| tokens_view(&s, &c, &none, Some(e), None, StatusCode::BAD_REQUEST);
    let Some(data) = f.file.filter(|d| !d.is_empty()) else { return bad("Choose a file to import.".into()).await };
    let key = match (f.psk.is_empty(), f.passphrase.is_empty()) {
        (true, true) => SeedKey::None,
        (false, true) => SeedKey::PreSharedHex(f.psk.clone()),
        (true, false) => SeedKey::Passphrase(f.passphrase.clone()),
        (false, false) => return bad("Give either a pre-shared key or a passphrase, not both.".into()).await,
    };
    let realm = (!f.realm.is_empty()).then(|| f.realm.clone());
    let report = match inventory_import::parse(&f.format, &data, key) {
        Ok(r) => r,
        Err(e) => return bad(format!("Nothing imported: {e}")).await,
    };
    let mut result = ImportResult::default();
    for r in &report.rows {
        let serial = r.serial.clone().unwrap_or_else(|| "-".into());
        match &r.outcome {
            tessera_import::Outcome::Error(why) => result.rows.push((r.line_or_index, serial, format!("error: {why}"))),
            tessera_import::Outcome::Skipped(why) => {
                result.rows.push((r.line_or_index, serial, format!("skipped: {why}")))
            }
            _ => {}
        }
    }
    let bad_rows = report.errors().count();
    if bad_rows > 0 && !f.skip_bad {
        let good = report.tokens.len();
        let rows = if bad_rows == 1 { "1 bad row".to_string() } else { format!("{bad_rows} bad rows") };
        result.summary = match good {
            0 => format!("{rows}, no good one: nothing imported."),
            1 => format!("{rows}: nothing imported. Fix them, or tick \"skip bad rows\" to import the 1 good row."),
            n => format!("{rows}: nothing imported. Fix them, or tick \"skip bad rows\" to import the {n} good rows."),
        };
        return tokens_view(&s, &c, &TokensQuery::default(), None, Some(result), StatusCode::BAD_REQUEST).await;
    }
    let (items, owners) = match inventory_import::prepare(&report) {
        Ok(x) => x,
        Err(e) => return bad(format!("Nothing imported: {e}")).await,
    };
    let actor = c.actor(&caller);
    // In its own task: a request timeout must not cut the assignments short
    // half-way (the inventory import itself is all or nothing).
    let admin = s.node.admin.clone();
    let work = tokio::spawn(async move {
        let n = admin.import_inventory(&actor, items).await?;
        let done = inventory_import::assign_owners(&admin, &actor, realm.as_deref(), owners).await?;
        Ok::<_, CoreError>((n, done))
    });
    match work.await {
        Ok(Ok((n, done))) => {
            result.summary = format!(
                "Imported {n} token(s) into the inventory; assigned {} (created {} user(s)); {bad_rows} bad row(s) skipped.",
                done.assigned, done.created
            );
            tokens_view(&s, &c, &TokensQuery::default(), None, Some(result), StatusCode::OK).await
        }
        Ok(Err(e)) if e.is_client_error() => bad(format!("Nothing imported: {e}")).await,
        _ => bad("The import failed; see the log.".into()).await,
    }
}

#[derive(Deserialize)]
struct AssignForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    serial: String,
    /// A user name (`name` or `name@realm`) …
    user: Option<String>,
    /// … or a user id (from a user's page), which also sends back there.
    user_id: Option<String>,
}

async fn tokens_assign(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(f): Form<AssignForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (user, back) = match (given(&f.user_id), given(&f.user)) {
        (Some(id), _) => match load_user(&s, id).await {
            Ok(u) => {
                let back = format!("/admin/users/{}", u.id);
                (u, back)
            }
            Err(r) => return r,
        },
        (None, Some(name)) => match find_user(&s, name).await {
            Ok(u) => (u, "/admin/tokens".to_string()),
            Err(e) => return refused(&e, "/admin/tokens"),
        },
        (None, None) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Not done",
                "Name the user to assign the token to.",
                "/admin/tokens",
            );
        }
    };
    match s.node.admin.assign_inventory(&c.actor(&caller), f.serial.trim(), &user).await {
        Ok(_) => see_other(&format!("{back}?done=assign")),
        Err(e) => refused(&e, &back),
    }
}

#[derive(Deserialize)]
struct SerialForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    serial: String,
}

async fn tokens_unassign(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(f): Form<SerialForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match s.node.admin.unassign_inventory(&c.actor(&caller), f.serial.trim()).await {
        Ok(()) => see_other("/admin/tokens?done=unassign"),
        Err(e) => refused(&e, "/admin/tokens"),
    }
}

// ------------------------------------------------------------ RADIUS clients

struct ClientRow {
    name: String,
    address: String,
    mode: String,
    signs: bool,
    default_realm: String,
    created: String,
    /// Which secret it uses, after a secret change (empty if none).
    secret: String,
    /// Declared in `[[radius.client]]`: changed in the file, not here.
    from_config: bool,
}

#[derive(Template)]
#[template(path = "ui/admin_radius.html")]
struct RadiusPage<'a> {
    c: &'a Chrome,
    rows: Vec<ClientRow>,
    notice: Option<&'static str>,
    error: Option<String>,
    /// The add form's fields after a refusal (never the secret).
    name: String,
    address: String,
    default_realm: String,
    min_secret: usize,
}

const RADIUS_NOTICES: &[(&str, &str)] = &[
    ("add", "RADIUS client added."),
    ("delete", "RADIUS client deleted."),
    ("secret", "Secret changed. Running nodes use it within 2 seconds; the table tells which secret the client uses."),
];

async fn radius_view(
    s: &AppState,
    c: &Console,
    form: Option<&RadiusAddForm>,
    notice: Option<&'static str>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let Ok(clients) = s.node.admin.radius_clients().await else { return unavailable("/admin/dashboard") };
    let now = s.node.ctx.clock.now();
    let mut rows: Vec<ClientRow> = clients
        .iter()
        .map(|cl| ClientRow {
            secret: tessera_core::views::SecretChangeView::new(&cl.rotation, now)
                .map(|v| v.summary)
                .unwrap_or_default(),
            name: cl.name.clone(),
            address: cl.address.to_string(),
            mode: cl.message_authenticator.as_str().into(),
            signs: cl.ma_seen,
            default_realm: cl.default_realm.clone().unwrap_or_default(),
            created: short_time(&cl.created_at.to_rfc3339()),
            from_config: false,
        })
        .collect();
    for cl in &s.live.config().radius.client {
        rows.push(ClientRow {
            name: cl.name.clone(),
            address: cl.address.clone(),
            mode: cl.message_authenticator.clone(),
            signs: false,
            default_realm: cl.default_realm.clone().unwrap_or_default(),
            created: "-".into(),
            secret: String::new(),
            from_config: true,
        });
    }
    with_status(
        status,
        render(&RadiusPage {
            c: &c.chrome("radius"),
            rows,
            notice,
            error,
            name: form.map(|f| f.name.clone()).unwrap_or_default(),
            address: form.map(|f| f.address.clone()).unwrap_or_default(),
            default_realm: form.and_then(|f| f.default_realm.clone()).unwrap_or_default(),
            min_secret: tessera_core::admin::MIN_RADIUS_SECRET_LEN,
        }),
    )
}

async fn radius_page(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<DoneQuery>) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    radius_view(&s, &c, None, notice_for(&q.done, RADIUS_NOTICES), None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct RadiusAddForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    name: String,
    address: String,
    /// Moved into `Zeroizing` as soon as it is read; never rendered back.
    secret: String,
    message_authenticator: String,
    default_realm: Option<String>,
}

async fn radius_add(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(mut f): Form<RadiusAddForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let secret = Zeroizing::new(std::mem::take(&mut f.secret));
    let name = f.name.trim().to_string();
    // A file client with the same name would clash at the next reload.
    if s.live.config().radius.client.iter().any(|cl| cl.name == name) {
        let e = format!("a client named `{name}` is declared in the configuration file ([[radius.client]])");
        return radius_view(&s, &c, Some(&f), None, Some(e), StatusCode::CONFLICT).await;
    }
    let mode = match f.message_authenticator.parse::<MessageAuthenticatorMode>() {
        Ok(m) => m,
        Err(e) => return radius_view(&s, &c, Some(&f), None, Some(e), StatusCode::BAD_REQUEST).await,
    };
    let realm = given(&f.default_realm).map(str::to_string);
    let r = s
        .node
        .admin
        .add_radius_client(&c.actor(&caller), &name, f.address.trim(), secret.as_bytes(), mode, realm.as_deref())
        .await;
    match r {
        Ok(_) => see_other("/admin/radius?done=add"),
        Err(e) if e.is_client_error() => {
            radius_view(&s, &c, Some(&f), None, Some(e.to_string()), StatusCode::BAD_REQUEST).await
        }
        Err(e) => refused(&e, "/admin/radius"),
    }
}

#[derive(Deserialize)]
struct RadiusSecretForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    name: String,
    /// Moved into `Zeroizing` as soon as it is read; never rendered back.
    secret: String,
    /// `24h`, `7d`, … (0 or empty: no overlap).
    keep_old_for: Option<String>,
}

async fn radius_secret(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(mut f): Form<RadiusSecretForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let secret = Zeroizing::new(std::mem::take(&mut f.secret));
    let keep = match given(&f.keep_old_for).map(tessera_core::clock::parse_age_seconds) {
        None => 0,
        Some(Some(k)) => k,
        Some(None) => {
            let e = "Keep the old secret for: a duration such as 30m, 24h or 7d (at most 30d), or 0".to_string();
            return radius_view(&s, &c, None, None, Some(e), StatusCode::BAD_REQUEST).await;
        }
    };
    let name = f.name.trim();
    if s.live.config().radius.client.iter().any(|cl| cl.name == name) {
        let e = format!("client `{name}` is declared in the configuration file ([[radius.client]]); change it there");
        return radius_view(&s, &c, None, None, Some(e), StatusCode::CONFLICT).await;
    }
    match s.node.admin.set_radius_client_secret(&c.actor(&caller), name, secret.as_bytes(), keep).await {
        Ok(_) => see_other("/admin/radius?done=secret"),
        Err(e) if e.is_client_error() => {
            radius_view(&s, &c, None, None, Some(e.to_string()), StatusCode::BAD_REQUEST).await
        }
        Err(e) => refused(&e, "/admin/radius"),
    }
}

#[derive(Deserialize)]
struct NameForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    name: String,
    confirm: Option<String>,
}

async fn radius_delete(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(f): Form<NameForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if f.confirm.as_deref() != Some("yes") {
        return render(&ConfirmPage {
            c: &c.chrome("radius"),
            title: format!("Delete RADIUS client {}", f.name),
            warning: "Requests from its address are dropped from then on.",
            post_to: "/admin/radius/delete",
            fields: vec![("name", f.name.clone())],
            button: format!("Yes, delete {}", f.name),
            cancel: "/admin/radius".into(),
        });
    }
    match s.node.admin.delete_radius_client(&c.actor(&caller), f.name.trim()).await {
        Ok(()) => see_other("/admin/radius?done=delete"),
        Err(e) => refused(&e, "/admin/radius"),
    }
}

// ------------------------------------------------------------------ realms

struct RealmRow {
    name: String,
    sources: String,
    cache_ttl: u32,
    auto_provision: bool,
    is_default: bool,
    /// Which secrets are set (names only, e.g. `source1.bind_password`).
    secrets: String,
}

struct TestResult {
    realm: String,
    ok: bool,
    /// (source, ok, lines)
    checks: Vec<(String, bool, Vec<String>)>,
}

#[derive(Template)]
#[template(path = "ui/admin_realms.html")]
struct RealmsPage<'a> {
    c: &'a Chrome,
    rows: Vec<RealmRow>,
    default_realm: String,
    default_listed: bool,
    test: Option<TestResult>,
}

async fn realms_view(s: &AppState, c: &Console, test: Option<TestResult>, status: StatusCode) -> Response {
    let admin = &s.node.admin;
    let (Ok(realms), Ok(policy)) = (admin.realms().await, admin.policy().await) else {
        return unavailable("/admin/dashboard");
    };
    let rows: Vec<RealmRow> = realms
        .iter()
        .map(|r| {
            let kinds: Vec<&str> = r.settings.sources.iter().map(|x| x.kind()).collect();
            let secrets: Vec<String> = admin.realm_secrets(r).map(|m| m.into_keys().collect()).unwrap_or_default();
            RealmRow {
                name: r.name.clone(),
                sources: if kinds.is_empty() { "local passwords only".into() } else { kinds.join(" → ") },
                cache_ttl: r.settings.cache_ttl_seconds,
                auto_provision: r.settings.auto_provision,
                is_default: r.name == policy.default_realm,
                secrets: if secrets.is_empty() { "none".into() } else { secrets.join(", ") },
            }
        })
        .collect();
    let default_listed = rows.iter().any(|r| r.is_default);
    with_status(
        status,
        render(&RealmsPage { c: &c.chrome("realms"), rows, default_realm: policy.default_realm, default_listed, test }),
    )
}

async fn realms_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    realms_view(&s, &c, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct RealmTestForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    name: String,
}

/// "Test connection": the same check as `tessera realm test NAME`, run by
/// this node against the realm's live directory clients.
async fn realm_test(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(f): Form<RealmTestForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(e) = s.node.admin.realm(&f.name).await {
        return refused(&e, "/admin/realms");
    }
    let checks = s.node.directory.test(&f.name).await.unwrap_or_default();
    let ok = checks.iter().all(|c| c.ok);
    let audit = tessera_core::audit::AuditRecord::new(
        s.node.ctx.clock.now(),
        &s.node.ctx.node,
        &c.actor(&caller),
        "realm.test",
    )
    .target(f.name.clone())
    .result(if ok { AuditResult::Ok } else { AuditResult::Error }, (!ok).then_some("a source failed its check"));
    if let Err(e) = s.node.ctx.store.append_audit(audit).await {
        tracing::warn!(error = %e, "could not record a realm test");
    }
    let test = TestResult {
        realm: f.name.clone(),
        ok: checks.iter().all(|c| c.ok),
        checks: checks.into_iter().map(|c| (c.source, c.ok, c.lines)).collect(),
    };
    realms_view(&s, &c, Some(test), StatusCode::OK).await
}

// ------------------------------------------------------------------ policy

#[derive(Template)]
#[template(path = "ui/admin_policy.html")]
struct PolicyPage<'a> {
    c: &'a Chrome,
    p: tessera_core::policy::Policy,
    throttle: bool,
    /// Every key and its value as JSON, for the read-only listing.
    all: Vec<(String, String)>,
    notice: Option<&'static str>,
    error: Option<String>,
}

async fn policy_view(
    s: &AppState,
    c: &Console,
    notice: Option<&'static str>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let Ok(p) = s.node.admin.policy().await else { return unavailable("/admin/dashboard") };
    let all = match serde_json::to_value(&p) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().map(|(k, v)| (k, v.to_string())).collect(),
        _ => Vec::new(),
    };
    with_status(
        status,
        render(&PolicyPage {
            c: &c.chrome("policy"),
            throttle: p.lockout_mode == tessera_core::policy::LockoutMode::Throttle,
            p,
            all,
            notice,
            error,
        }),
    )
}

async fn policy_page(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<DoneQuery>) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    policy_view(&s, &c, notice_for(&q.done, &[("saved", "Policy saved.")]), None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct PolicyForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
    skew_seconds: String,
    lockout_mode: String,
    lockout_threshold: String,
    auto_unlock_seconds: String,
    /// Checkboxes: present when ticked.
    backup_codes_enabled: Option<String>,
    registration_qr: Option<String>,
    registration_message: String,
}

/// Saves the form through `Policy::with_setting`, key by key, as `tessera
/// policy set` does: the first refused value stops it and nothing is saved.
async fn policy_save(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(f): Form<PolicyForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(mut p) = s.node.admin.policy().await else { return unavailable("/admin/policy") };
    // Browsers send CRLF line ends from a textarea; the policy takes LF.
    let msg = f.registration_message.replace("\r\n", "\n");
    let settings = [
        ("skew_seconds", f.skew_seconds.trim().to_string()),
        ("lockout_mode", f.lockout_mode.trim().to_string()),
        ("lockout_threshold", f.lockout_threshold.trim().to_string()),
        ("auto_unlock_seconds", f.auto_unlock_seconds.trim().to_string()),
        ("backup_codes_enabled", f.backup_codes_enabled.is_some().to_string()),
        ("registration_qr", f.registration_qr.is_some().to_string()),
        // As a JSON string, so text that looks like a number stays text.
        ("registration_message", serde_json::Value::String(msg).to_string()),
    ];
    for (key, value) in &settings {
        match p.with_setting(key, value) {
            Ok(next) => p = next,
            Err(e) => return policy_view(&s, &c, None, Some(format!("Not saved: {e}")), StatusCode::BAD_REQUEST).await,
        }
    }
    match s.node.admin.set_policy(&c.actor(&caller), &p).await {
        Ok(()) => see_other("/admin/policy?done=saved"),
        Err(e) if e.is_client_error() => {
            policy_view(&s, &c, None, Some(format!("Not saved: {e}")), StatusCode::BAD_REQUEST).await
        }
        Err(e) => refused(&e, "/admin/policy"),
    }
}

// --------------------------------------------------------------- audit log

#[derive(Deserialize, Default)]
struct AuditParams {
    action: Option<String>,
    user: Option<String>,
    result: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "ui/admin_audit.html")]
struct AuditPage<'a> {
    c: &'a Chrome,
    action: String,
    user: String,
    since: String,
    until: String,
    limit: u32,
    limits: &'a [u32],
    /// (result, selected)
    results: Vec<(&'static str, bool)>,
    recent: Vec<AuditView>,
    first_href: Option<String>,
    older_href: Option<String>,
    error: Option<String>,
}

/// A time from a `datetime-local` or date field (UTC): `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MM`, `…:SS`, or full RFC 3339. A bare date as the end
/// of a range means the end of that day.
fn parse_time(text: &str, end_of_day: bool) -> Result<Timestamp, String> {
    let t = text.trim();
    let full = match t.len() {
        10 => t.to_string(),
        16 => format!("{t}:00Z"),
        19 => format!("{t}Z"),
        _ => t.to_string(),
    };
    let ts = Timestamp::parse_rfc3339(&full).ok_or_else(|| {
        format!(
            "`{}` is not a date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM, UTC)",
            t.chars().take(40).collect::<String>()
        )
    })?;
    Ok(if end_of_day && t.len() == 10 { ts.plus_seconds(86_400) } else { ts })
}

async fn audit_page(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<AuditParams>) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    const RESULTS: [&str; 5] = ["accept", "reject", "challenge", "ok", "error"];
    let limit = q.limit.filter(|l| AUDIT_LIMITS.contains(l)).unwrap_or(PAGE);
    let mut query = AuditQuery {
        action: given(&q.action).map(str::to_string),
        target: given(&q.user).map(str::to_string),
        before_id: q.before.filter(|b| *b > 0),
        limit: limit + 1,
        ..Default::default()
    };
    let mut error = None;
    if let Some(r) = given(&q.result) {
        match r.parse::<AuditResult>() {
            Ok(r) => query.result = Some(r),
            Err(_) => error = Some(format!("result must be one of {}", RESULTS.join(", "))),
        }
    }
    for (text, end, slot) in [(given(&q.since), false, &mut query.since), (given(&q.until), true, &mut query.until)] {
        if let Some(t) = text {
            match parse_time(t, end) {
                Ok(ts) => *slot = Some(ts),
                Err(e) => error = Some(e),
            }
        }
    }
    let mut records = if error.is_none() {
        match s.node.admin.audit_log(query).await {
            Ok(r) => r,
            Err(e) => {
                error = Some(e.to_string());
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let filters = |before: Option<i64>| {
        let mut h = format!(
            "/admin/audit?action={}&user={}&result={}&since={}&until={}&limit={limit}",
            pct(given(&q.action).unwrap_or("")),
            pct(given(&q.user).unwrap_or("")),
            pct(given(&q.result).unwrap_or("")),
            pct(given(&q.since).unwrap_or("")),
            pct(given(&q.until).unwrap_or("")),
        );
        if let Some(b) = before {
            h.push_str(&format!("&before={b}"));
        }
        h
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    with_status(
        status,
        render(&AuditPage {
            c: &c.chrome("audit"),
            action: given(&q.action).unwrap_or("").into(),
            user: given(&q.user).unwrap_or("").into(),
            since: given(&q.since).unwrap_or("").into(),
            until: given(&q.until).unwrap_or("").into(),
            limit,
            limits: &AUDIT_LIMITS,
            results: RESULTS.iter().map(|r| (*r, given(&q.result) == Some(*r))).collect(),
            first_href: q.before.is_some().then(|| filters(None)),
            older_href: if more { records.last().map(|r| filters(Some(r.id))) } else { None },
            recent: audit_rows(&records),
            error,
        }),
    )
}

// ----------------------------------------------------------------- backups

struct BackupFile {
    name: String,
    bytes: u64,
}

#[derive(Template)]
#[template(path = "ui/admin_backups.html")]
struct BackupsPage<'a> {
    c: &'a Chrome,
    dir: String,
    configured: bool,
    schedule: String,
    keep: u32,
    include: String,
    running: bool,
    last: String,
    files: Vec<BackupFile>,
    notice: Option<&'static str>,
}

/// A backup file name the console lists and serves: `*.age` of plain
/// characters, no path, not hidden. Anything else in the directory (the
/// status file, partial files) is not offered.
fn is_backup_name(name: &str) -> bool {
    name.len() <= 128
        && name.ends_with(".age")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn backup_files(dir: &Path) -> Vec<BackupFile> {
    let mut files: Vec<BackupFile> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let meta = e.metadata().ok()?;
                    (meta.is_file() && is_backup_name(&name)).then_some(BackupFile { name, bytes: meta.len() })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort_by(|a, b| b.name.cmp(&a.name));
    files
}

async fn backups_page(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<DoneQuery>) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    let cfg = s.live.config();
    let b = &cfg.backup;
    render(&BackupsPage {
        c: &c.chrome("backups"),
        dir: b.dir.clone(),
        configured: !b.dir.is_empty() && !b.passphrase_file.is_empty(),
        schedule: if b.interval_seconds == 0 {
            "off (no scheduled backups)".into()
        } else {
            format!("every {} s", b.interval_seconds)
        },
        keep: b.keep,
        include: b.include.clone(),
        running: s.ui.backup_running.load(std::sync::atomic::Ordering::Acquire),
        last: backup_summary(&s),
        files: if b.dir.is_empty() { Vec::new() } else { backup_files(Path::new(&b.dir)) },
        notice: notice_for(&q.done, &[("started", "Backup started; reload this page to see when it is written.")]),
    })
}

#[derive(Deserialize)]
struct CsrfForm {
    /// Missing counts as wrong: the 403 page, not a form error.
    #[serde(default)]
    csrf: String,
}

/// "Back up now": the scheduled backup's job run once, which runs this
/// binary's `tessera backup create` (the same code as a manual backup).
/// The passphrase comes from `[backup] passphrase_file`: it is never typed
/// into the console, so it cannot end up in a request, log or page.
async fn backup_create(
    State(s): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(f): Form<CsrfForm>,
) -> Response {
    let c = match console_post(&s, &headers, &f.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let cfg = s.live.config();
    if cfg.backup.dir.is_empty() || cfg.backup.passphrase_file.is_empty() {
        return message(
            StatusCode::CONFLICT,
            "Not configured",
            "Set [backup] dir and passphrase_file in the configuration first (the passphrase is read from that file).",
            "/admin/backups",
        );
    }
    use std::sync::atomic::Ordering;
    if s.ui.backup_running.swap(true, Ordering::AcqRel) {
        return message(
            StatusCode::CONFLICT,
            "Already running",
            "A backup is being written; wait for it.",
            "/admin/backups",
        );
    }
    let actor = c.actor(&caller);
    let audit =
        tessera_core::audit::AuditRecord::new(s.node.ctx.clock.now(), &s.node.ctx.node, &actor, "backup.create")
            .target(cfg.backup.dir.clone())
            .result(AuditResult::Ok, Some("started from the console"));
    if let Err(e) = s.node.ctx.store.append_audit(audit).await {
        s.ui.backup_running.store(false, Ordering::Release);
        return refused(&CoreError::from(e), "/admin/backups");
    }
    let (ui, live) = (s.ui.clone(), s.live.clone());
    tokio::spawn(async move {
        let status = crate::scheduled_backup::run_now(&live.config(), live.config_file()).await;
        if !status.ok {
            tracing::error!(error = status.error.as_deref().unwrap_or("-"), "backup from the console failed");
        }
        ui.backup_running.store(false, Ordering::Release);
    });
    see_other("/admin/backups?done=started")
}

async fn backup_download(State(s): State<AppState>, headers: HeaderMap, UrlPath(name): UrlPath<String>) -> Response {
    let Some(_c) = console(&s, &headers).await else { return to_login() };
    let cfg = s.live.config();
    let not_found =
        || message(StatusCode::NOT_FOUND, "No such backup", "That backup file does not exist.", "/admin/backups");
    if cfg.backup.dir.is_empty() || !is_backup_name(&name) {
        return not_found();
    }
    let path: PathBuf = Path::new(&cfg.backup.dir).join(&name);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) if f.metadata().await.is_ok_and(|m| m.is_file()) => f,
        _ => return not_found(),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

// ------------------------------------------------------------- replication

/// What the replication page shows. Kept behind [`replication_status`] so
/// the primary/replica mode (being built) only has to fill it in.
pub struct ReplicationStatus {
    pub node: String,
    /// `standalone` or `shared database`.
    pub role: &'static str,
    pub backend: String,
    /// Further (label, value) lines.
    pub details: Vec<(String, String)>,
}

/// This node's place in a cluster. Today the server runs on the embedded
/// SQLite database only, so it is standalone; several nodes on one shared
/// database (PostgreSQL) report `shared database`.
pub fn replication_status(s: &AppState) -> ReplicationStatus {
    let cfg = &s.node.config;
    if cfg.uses_postgres() {
        return ReplicationStatus {
            node: s.node.ctx.node.clone(),
            role: "shared database",
            backend: "PostgreSQL".into(),
            details: vec![
                ("Database".into(), cfg.database_display()),
                ("TLS to the database".into(), cfg.database.tls.clone()),
                ("Master key id".into(), s.node.ctx.keys.key_id()),
            ],
        };
    }
    let mut details = vec![
        ("Database file".into(), cfg.database_path().display().to_string()),
        ("Synchronous".into(), cfg.database.synchronous.clone()),
        ("Master key id".into(), s.node.ctx.keys.key_id()),
    ];
    let mut role = "standalone";
    if let Some(repl) = &s.node.replication {
        match repl.state() {
            Ok(st) => {
                use tessera_core::replication::Role;
                role = st.role.as_str();
                details.push(("Epoch".into(), st.epoch.to_string()));
                if let Some(why) = &st.fence {
                    details.push(("Fenced (takes no change)".into(), why.clone()));
                }
                let now = crate::replication::now_ms();
                if st.role == Role::Replica {
                    use std::sync::atomic::Ordering;
                    details.push(("Primary".into(), crate::replication::primary_label(&st)));
                    let following = repl.status.following.load(Ordering::Relaxed);
                    let why = repl.status.error.read().clone().unwrap_or_default();
                    details.push(("Following".into(), if following { "yes".into() } else { format!("no: {why}") }));
                    details.push(("Applied position".into(), st.position.to_string()));
                    let ms = |v: Option<i64>| v.map_or("unknown".to_string(), |v| format!("{v} ms"));
                    details.push(("Lag".into(), ms(repl.status.lag_ms(now))));
                    details.push(("Clock offset from the primary".into(), ms(st.clock_offset_ms)));
                    details.push((
                        "Last contact".into(),
                        st.last_contact_at.map_or("never".into(), |t| {
                            format!("{} ({} s ago)", Timestamp(t).to_rfc3339(), (now - t).max(0) / 1000)
                        }),
                    ));
                    if let Ok(n) = repl.cluster.outbox_len() {
                        details.push(("Logins not yet taken by the primary".into(), n.to_string()));
                    }
                } else if let Ok(head) = repl.log.head() {
                    details.push(("Change log position".into(), head.to_string()));
                }
                let peers = repl.cluster.peers().unwrap_or_default();
                for n in repl.directory.all() {
                    let p = peers.iter().find(|p| p.name == n.name);
                    let seen = p.and_then(|p| p.last_contact_at).map_or("no contact".to_string(), |t| {
                        format!("last contact {} s ago", (now - t).max(0) / 1000)
                    });
                    let what = format!(
                        "{} — {}, epoch {}, {seen}",
                        n.url.clone().unwrap_or_else(|| "address unknown".into()),
                        p.and_then(|p| p.role.clone()).unwrap_or_else(|| "?".into()),
                        p.and_then(|p| p.epoch).map_or("?".into(), |e| e.to_string()),
                    );
                    details.push((format!("Node {}", n.name), what));
                }
            }
            Err(e) => details.push(("Replication state".into(), format!("unreadable: {e}"))),
        }
    }
    ReplicationStatus { node: s.node.ctx.node.clone(), role, backend: "SQLite (embedded)".into(), details }
}

#[derive(Template)]
#[template(path = "ui/admin_replication.html")]
struct ReplicationPage<'a> {
    c: &'a Chrome,
    r: ReplicationStatus,
}

async fn replication_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(c) = console(&s, &headers).await else { return to_login() };
    render(&ReplicationPage { c: &c.chrome("replication"), r: replication_status(&s) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_backup_names_are_served() {
        assert!(is_backup_name("tessera-2024-01-02T03-04-05.678Z.age"));
        for bad in ["../tessera.key", ".hidden.age", "backup-status.json", "a/b.age", "x.age\0", "%2e%2e.age", ""] {
            assert!(!is_backup_name(bad), "{bad}");
        }
    }

    #[test]
    fn audit_times_from_form_fields() {
        let day = parse_time("2024-03-01", false).unwrap();
        assert_eq!(parse_time("2024-03-01", true).unwrap(), day.plus_seconds(86_400));
        assert_eq!(parse_time("2024-03-01T01:02", false).unwrap(), day.plus_seconds(3720));
        assert_eq!(parse_time("2024-03-01T01:02:03", true).unwrap(), day.plus_seconds(3723));
        assert!(parse_time("yesterday", false).is_err());
        assert!(parse_time("2024-13-01", false).is_err());
    }
}
