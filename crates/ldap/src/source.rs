//! [`LdapSource`]: the only file here that opens sockets. It checks a
//! password by binding as the user (directly from a template, or after a
//! service-account search), reads the user's attributes and groups, fails
//! over between servers, and pools connections.
//!
//! It must never let a password reach the network unless it is non-empty and
//! NUL-free (an empty one makes an *unauthenticated* bind, which servers may
//! report as success), never put a password in an error or a log line, and
//! never treat "no answer" (unreachable, timeout, TLS failure) as a verdict.
//!
//! # Connection pools
//! Two pools, each of at most `pool_size` connections per source:
//! * **service** connections are bound once as the service account and then
//!   only search; they are never used for a user bind.
//! * **bind** connections carry user binds only. A bind replaces the
//!   connection's identity, and a failed one leaves it anonymous, so a
//!   leftover identity never matters: nothing runs on a bind connection
//!   except a bind and, right after a successful one, the read-back of that
//!   same user's entry (template mode has no service account, so the user
//!   reads their own entry and groups).
//!
//! Keeping the two apart costs one extra idle socket per slot, and saves a
//! re-bind as the service account after every login (which would double
//! the binds per login) or a new TCP+TLS connection per login. A connection
//! whose operation failed or timed out is dropped, never reused; an idle one
//! older than [`IDLE_MAX`] is dropped too (AD closes idle LDAP connections
//! after 15 minutes by default).
//!
//! # Failover
//! Servers are tried in order, starting with the one that last answered. A
//! connect error, a timeout, "busy"/"unavailable" or a TLS verification
//! failure moves on to the next server; a definite answer (wrong password,
//! unknown user, refused) does not. When every server fails the caller gets
//! [`LdapError::Unavailable`] listing each server's reason.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ldap3::exop::WhoAmI;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use rustls::ClientConfig;
use tokio::sync::{Semaphore, SemaphorePermit};

use tessera_tls::{CaptureVerifier, cert_sha256_hex};

use crate::config::{BindMode, GroupMode, LdapConfig, ServerUrl, parse_url, render_bind_name, render_filter};
use crate::verdict::{BindOutcome, classify_bind, short};
use crate::{DirectoryUser, LdapError, LdapVerdict, ServerCheck, escape_filter_value, first_rdn_value};

/// An idle pooled connection older than this is closed instead of reused.
pub const IDLE_MAX: Duration = Duration::from_secs(60);
/// Usernames longer than this (bytes) are refused before any I/O.
pub const MAX_USERNAME_LEN: usize = 256;
/// Passwords longer than this (bytes) are refused before any I/O.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// At most this many groups are read per user (a search size limit).
pub const MAX_GROUPS: i32 = 1000;

/// An LDAP / Active Directory first-factor source. Cheap to clone; clones
/// share the pools.
#[derive(Clone)]
pub struct LdapSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LdapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.inner.servers.iter().map(|s| s.url.as_str()).collect();
        f.debug_struct("LdapSource").field("urls", &urls).field("bind", &self.inner.bind).finish_non_exhaustive()
    }
}

struct Inner {
    servers: Vec<ServerUrl>,
    starttls: bool,
    /// `None` when no URL uses TLS.
    tls: Option<Arc<ClientConfig>>,
    bind: BindMode,
    groups: GroupMode,
    username_attribute: String,
    /// Attributes read for a user entry.
    user_attrs: Vec<String>,
    connect_timeout: Duration,
    op_timeout: Duration,
    /// Index of the server that last answered; tried first.
    preferred: AtomicUsize,
    service: Pool,
    binds: Pool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Service,
    Bind,
}

/// Why an operation on one server gave no answer.
enum OpError {
    /// The server could not answer: try the next one. `stale`: the
    /// connection was found closed (a pooled one may have idled out), so a
    /// fresh connection to the same server is worth one try.
    Server { reason: String, stale: bool },
    /// A definite error for the caller; do not try other servers.
    Fatal(LdapError),
}

impl From<LdapError> for OpError {
    fn from(e: LdapError) -> Self {
        OpError::Fatal(e)
    }
}

impl LdapSource {
    /// Validates the configuration and loads the CA file or the OS trust
    /// anchors. Makes no connection.
    pub fn new(cfg: LdapConfig) -> Result<Self, LdapError> {
        cfg.validate()?;
        let servers = cfg.urls.iter().map(|u| parse_url(u)).collect::<Result<Vec<_>, _>>()?;
        let tls = if cfg.uses_tls() { Some(tessera_tls::client_config(&cfg.server_trust()?, None)?) } else { None };
        for s in servers.iter().filter(|s| !s.ldaps && !cfg.starttls) {
            tracing::warn!(server = %s.url, "LDAP without TLS: passwords cross the network in clear text");
        }
        let mut user_attrs = vec![
            cfg.username_attribute.clone(),
            "displayName".to_string(),
            "cn".to_string(),
            "mail".to_string(),
            "mobile".to_string(),
            "telephoneNumber".to_string(),
        ];
        if let GroupMode::MemberOf { attribute } = &cfg.groups {
            user_attrs.push(attribute.clone());
        }
        Ok(LdapSource {
            inner: Arc::new(Inner {
                servers,
                starttls: cfg.starttls,
                tls,
                bind: cfg.bind,
                groups: cfg.groups,
                username_attribute: cfg.username_attribute,
                user_attrs,
                connect_timeout: cfg.connect_timeout,
                op_timeout: cfg.op_timeout,
                preferred: AtomicUsize::new(0),
                service: Pool::new(cfg.pool_size),
                binds: Pool::new(cfg.pool_size),
            }),
        })
    }

    /// Checks `password` for `username` by binding as the user.
    ///
    /// Refused before any I/O: an empty password or one containing NUL
    /// (`WrongPassword`), an empty username or one with control characters
    /// (`UnknownUser`), and either one over its length bound.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<LdapVerdict, LdapError> {
        if !username_is_plausible(username) {
            return Ok(LdapVerdict::UnknownUser);
        }
        // Never send an empty password: that is an unauthenticated bind
        // (RFC 4513 §5.1.2) which some servers answer with success. A NUL
        // could truncate the password in a C server into exactly that.
        if password.is_empty() || password.contains('\0') || password.len() > MAX_PASSWORD_LEN {
            return Ok(LdapVerdict::WrongPassword);
        }
        let inner = &*self.inner;
        match &inner.bind {
            BindMode::Template { template } => {
                let name = render_bind_name(template, username);
                let name = name.as_str();
                inner
                    .run(Kind::Bind, move |mut ldap| async move {
                        match inner.user_bind(&mut ldap, name, password).await? {
                            Some(verdict) => Ok(verdict),
                            None => inner.read_self(&mut ldap, name, username).await.map(LdapVerdict::Accepted),
                        }
                    })
                    .await
            }
            BindMode::Search { .. } => {
                let entry = match inner.find_user(username).await? {
                    Found::None => return Ok(LdapVerdict::UnknownUser),
                    Found::Many => return Ok(LdapVerdict::Refused("ambiguous")),
                    // An empty DN would make an anonymous bind.
                    Found::One(entry) if entry.dn.trim().is_empty() => return Ok(LdapVerdict::UnknownUser),
                    Found::One(entry) => entry,
                };
                let dn = entry.dn.as_str();
                let verdict = inner
                    .run(Kind::Bind, move |mut ldap| async move { inner.user_bind(&mut ldap, dn, password).await })
                    .await?;
                if let Some(verdict) = verdict {
                    return Ok(verdict);
                }
                inner.complete_with_service(&entry, username).await.map(LdapVerdict::Accepted)
            }
        }
    }

    /// Checks `password` by binding straight to `dn`, the entry an earlier
    /// login of `username` resolved to (a directory cache): no search, no
    /// attribute or group reads, one bind. The accepted user carries only
    /// `dn` and `username`; the caller keeps the cached attributes. Same
    /// refusals before any I/O as [`LdapSource::authenticate`].
    pub async fn authenticate_known(&self, dn: &str, username: &str, password: &str) -> Result<LdapVerdict, LdapError> {
        if !username_is_plausible(username) || dn.trim().is_empty() {
            return Ok(LdapVerdict::UnknownUser);
        }
        if password.is_empty() || password.contains('\0') || password.len() > MAX_PASSWORD_LEN {
            return Ok(LdapVerdict::WrongPassword);
        }
        let inner = &*self.inner;
        let verdict = inner
            .run(Kind::Bind, move |mut ldap| async move { inner.user_bind(&mut ldap, dn, password).await })
            .await?;
        Ok(verdict.unwrap_or_else(|| {
            LdapVerdict::Accepted(DirectoryUser {
                dn: dn.to_string(),
                username: username.to_string(),
                ..DirectoryUser::default()
            })
        }))
    }

    /// The user's attributes and groups, read with the service account (no
    /// password): for caches and the admin UI. `Ok(None)`: no such user.
    /// Needs [`BindMode::Search`]; template mode has no account to read with.
    pub async fn lookup(&self, username: &str) -> Result<Option<DirectoryUser>, LdapError> {
        let inner = &*self.inner;
        if !matches!(inner.bind, BindMode::Search { .. }) {
            return Err(LdapError::Config("lookup needs a service account (bind mode \"search\")".into()));
        }
        if !username_is_plausible(username) {
            return Ok(None);
        }
        match inner.find_user(username).await? {
            Found::None => Ok(None),
            Found::Many => {
                Err(LdapError::Protocol(format!("more than one directory entry matches {:?}", short(username))))
            }
            Found::One(entry) => inner.complete_with_service(&entry, username).await.map(Some),
        }
    }

    /// Checks every server in turn: TCP, TLS (with the presented
    /// certificate's SHA-256), and in search mode the service-account bind
    /// and the user search base. For `tessera realm test`; uses fresh
    /// connections, not the pools.
    pub async fn test(&self) -> Vec<ServerCheck> {
        let mut out = Vec::with_capacity(self.inner.servers.len());
        for idx in 0..self.inner.servers.len() {
            out.push(self.inner.check_server(idx).await);
        }
        out
    }
}

/// Whether a username may be sent to the directory at all.
fn username_is_plausible(username: &str) -> bool {
    !username.is_empty() && username.len() <= MAX_USERNAME_LEN && !username.chars().any(char::is_control)
}

enum Found {
    None,
    One(SearchEntry),
    Many,
}

impl Inner {
    fn pool(&self, kind: Kind) -> &Pool {
        match kind {
            Kind::Service => &self.service,
            Kind::Bind => &self.binds,
        }
    }

    /// Server indexes in the order to try: the last one that answered, then
    /// the others in configuration order.
    fn order(&self) -> Vec<usize> {
        let n = self.servers.len();
        let first = self.preferred.load(Ordering::Relaxed).min(n - 1);
        std::iter::once(first).chain((0..n).filter(|i| *i != first)).collect()
    }

    /// Runs `op` on a connection of `kind`, failing over between servers.
    /// `op` gets a handle to the connection (a cheap clone); it must leave
    /// the connection in a state fit for the pool when it returns `Ok`.
    async fn run<T, F, Fut>(&self, kind: Kind, mut op: F) -> Result<T, LdapError>
    where
        F: FnMut(Ldap) -> Fut,
        Fut: Future<Output = Result<T, OpError>>,
    {
        let pool = self.pool(kind);
        let _slot = pool.slot(self.op_timeout, kind).await?;
        let mut failures = Vec::new();
        for idx in self.order() {
            let url = &self.servers[idx].url;
            loop {
                let (ldap, pooled) = match pool.take(idx) {
                    Some(ldap) => (ldap, true),
                    None => match self.open_kind(kind, idx).await {
                        Ok(ldap) => (ldap, false),
                        Err(OpError::Fatal(e)) => return Err(e),
                        Err(OpError::Server { reason, .. }) => {
                            tracing::debug!(server = %url, %reason, "LDAP server skipped");
                            failures.push(format!("{url}: {reason}"));
                            break;
                        }
                    },
                };
                match op(ldap.clone()).await {
                    Ok(value) => {
                        pool.put(idx, ldap);
                        self.preferred.store(idx, Ordering::Relaxed);
                        return Ok(value);
                    }
                    Err(OpError::Fatal(e)) => return Err(e),
                    Err(OpError::Server { reason, stale }) => {
                        drop(ldap);
                        if pooled && stale {
                            // An idle connection the server had closed:
                            // try again on another (or a new) one.
                            continue;
                        }
                        pool.purge(idx);
                        tracing::debug!(server = %url, %reason, "LDAP server failed");
                        failures.push(format!("{url}: {reason}"));
                        break;
                    }
                }
            }
        }
        Err(LdapError::Unavailable(failures.join("; ")))
    }

    /// A new connection of `kind` to server `idx` (service connections come
    /// bound as the service account).
    async fn open_kind(&self, kind: Kind, idx: usize) -> Result<Ldap, OpError> {
        let mut ldap = self.open(idx, None).await.map_err(|e| self.transport(idx, "connect", e))?;
        if kind == Kind::Bind {
            return Ok(ldap);
        }
        let BindMode::Search { bind_dn, bind_password, .. } = &self.bind else {
            return Err(LdapError::Config("no service account in template bind mode".into()).into());
        };
        let res = ldap
            .with_timeout(self.op_timeout)
            .simple_bind(bind_dn, bind_password)
            .await
            .map_err(|e| self.transport(idx, "service bind", e))?;
        match classify_bind(res.rc, &res.text) {
            BindOutcome::Success => Ok(ldap),
            BindOutcome::Busy(reason) => Err(OpError::Server { reason, stale: false }),
            BindOutcome::Config(msg) => Err(LdapError::Config(msg).into()),
            BindOutcome::Denied(_) | BindOutcome::Unexpected(_) => Err(LdapError::Config(format!(
                "{} refused the service account {bind_dn:?}: result {} ({})",
                self.servers[idx].url,
                res.rc,
                short(&res.text)
            ))
            .into()),
        }
    }

    /// TCP (+ TLS or StartTLS), bounded by the connect timeout; the
    /// connection's driver runs on its own task until the last handle drops.
    async fn open(&self, idx: usize, tls: Option<Arc<ClientConfig>>) -> Result<Ldap, ldap3::LdapError> {
        let server = &self.servers[idx];
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.connect_timeout);
        if let Some(tls) = tls.or_else(|| self.tls.clone()) {
            settings = settings.set_config(tls);
        }
        if !server.ldaps && self.starttls {
            settings = settings.set_starttls(true);
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &server.url).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// Classifies a client-side error on server `idx` (connect, I/O,
    /// timeout, TLS). Only the error's Display is used: it never holds the
    /// request (and so never a password).
    fn transport(&self, idx: usize, stage: &str, e: ldap3::LdapError) -> OpError {
        let url = &self.servers[idx].url;
        let (reason, stale) = match failure(&e) {
            Failure::Tls(why) => {
                tracing::warn!(server = %url, error = %why, "LDAP server failed TLS verification; not used");
                (format!("{stage}: TLS verification failed: {why}"), false)
            }
            Failure::Closed => (format!("{stage}: connection closed"), true),
            Failure::Timeout => {
                let limit = if stage == "connect" { self.connect_timeout } else { self.op_timeout };
                (format!("{stage}: no answer within {limit:?}"), false)
            }
            Failure::Other(why) => (format!("{stage}: {why}"), false),
        };
        OpError::Server { reason, stale }
    }

    /// A user bind: `None` on success, else the verdict.
    async fn user_bind(&self, ldap: &mut Ldap, name: &str, password: &str) -> Result<Option<LdapVerdict>, OpError> {
        let res = ldap.with_timeout(self.op_timeout).simple_bind(name, password).await.map_err(op_failure("bind"))?;
        match classify_bind(res.rc, &res.text) {
            BindOutcome::Success => Ok(None),
            BindOutcome::Denied(verdict) => Ok(Some(verdict)),
            BindOutcome::Busy(reason) => Err(OpError::Server { reason, stale: false }),
            BindOutcome::Config(msg) => Err(LdapError::Config(msg).into()),
            BindOutcome::Unexpected(msg) => Err(LdapError::Protocol(msg).into()),
        }
    }

    /// Search mode: the entry matching the user filter, via the service pool.
    async fn find_user(&self, username: &str) -> Result<Found, LdapError> {
        let BindMode::Search { base_dn, filter, scope_subtree, .. } = &self.bind else {
            return Err(LdapError::Config("no user search in template bind mode".into()));
        };
        let filter = render_filter(filter, username, "");
        let (filter, scope) = (filter.as_str(), if *scope_subtree { Scope::Subtree } else { Scope::OneLevel });
        let attrs = &self.user_attrs;
        self.run(Kind::Service, move |mut ldap| async move {
            // Size limit 2: enough to tell "one" from "several".
            let (entries, rc, text) = search(&mut ldap, self.op_timeout, base_dn, scope, filter, attrs, 2).await?;
            match rc {
                0 | 4 => {}
                32 => return Err(LdapError::Config(format!("the user search base {base_dn:?} does not exist")).into()),
                51 | 52 => return Err(OpError::Server { reason: format!("search: result {rc}"), stale: false }),
                _ => return Err(LdapError::Protocol(format!("user search: result {rc} ({})", short(&text))).into()),
            }
            let mut entries = entries.into_iter();
            Ok(match (entries.next(), entries.next()) {
                (None, _) => Found::None,
                (Some(entry), None) => Found::One(entry),
                (Some(_), Some(_)) => Found::Many,
            })
        })
        .await
    }

    /// Search mode, after the password was accepted (or for `lookup`):
    /// the user built from the entry the service account found, with groups.
    async fn complete_with_service(&self, entry: &SearchEntry, typed: &str) -> Result<DirectoryUser, LdapError> {
        let mut user = self.user_from_entry(entry, typed);
        user.groups = match &self.groups {
            GroupMode::Search { .. } => {
                let user = &user;
                self.run(Kind::Service, move |mut ldap| async move { self.search_groups(&mut ldap, user).await })
                    .await?
            }
            _ => self.groups_from_entry(entry),
        };
        Ok(user)
    }

    /// Template mode, right after a successful bind on `ldap`: the user's own
    /// entry read with the user's rights. If it cannot be read, the login
    /// still succeeds with what is known (the password was verified).
    async fn read_self(&self, ldap: &mut Ldap, bind_name: &str, typed: &str) -> Result<DirectoryUser, OpError> {
        let entry = self.find_own_entry(ldap, bind_name).await?;
        let Some(entry) = entry else {
            tracing::debug!("LDAP: bound as the user but could not read the user's entry");
            return Ok(DirectoryUser {
                dn: if crate::config::template_is_dn(bind_name) { bind_name.to_string() } else { String::new() },
                username: typed.to_string(),
                ..DirectoryUser::default()
            });
        };
        let mut user = self.user_from_entry(&entry, typed);
        user.groups = match &self.groups {
            GroupMode::Search { .. } => self.search_groups(ldap, &user).await?,
            _ => self.groups_from_entry(&entry),
        };
        Ok(user)
    }

    async fn find_own_entry(&self, ldap: &mut Ldap, bind_name: &str) -> Result<Option<SearchEntry>, OpError> {
        let attrs = &self.user_attrs;
        let dn = if crate::config::template_is_dn(bind_name) {
            bind_name.to_string()
        } else {
            // A UPN or DOMAIN\name: ask the server who we are (RFC 4532).
            let res = ldap.with_timeout(self.op_timeout).extended(WhoAmI).await.map_err(op_failure("whoami"))?;
            let authzid = res.0.val.as_deref().and_then(|v| std::str::from_utf8(v).ok()).unwrap_or("");
            match authzid.strip_prefix("dn:") {
                Some(dn) if res.1.rc == 0 && !dn.is_empty() => dn.to_string(),
                // AD answers `u:DOMAIN\name`: search the default naming
                // context for the login name instead.
                _ => return self.find_own_entry_by_name(ldap, bind_name).await,
            }
        };
        let (entries, _, _) = search(ldap, self.op_timeout, &dn, Scope::Base, "(objectClass=*)", attrs, 1).await?;
        Ok(entries.into_iter().next())
    }

    async fn find_own_entry_by_name(&self, ldap: &mut Ldap, bind_name: &str) -> Result<Option<SearchEntry>, OpError> {
        let root = ["defaultNamingContext"];
        let (entries, _, _) = search(ldap, self.op_timeout, "", Scope::Base, "(objectClass=*)", &root, 1).await?;
        let Some(base) = entries.first().and_then(|e| attr(e, "defaultNamingContext")).and_then(|v| v.first()) else {
            return Ok(None);
        };
        // `alice@corp.example.com` → alice, `CORP\alice` → alice.
        let name = bind_name.split('@').next().unwrap_or(bind_name);
        let name = name.rsplit('\\').next().unwrap_or(name);
        let filter = format!("({}={})", self.username_attribute, escape_filter_value(name));
        let (entries, _, _) = search(ldap, self.op_timeout, base, Scope::Subtree, &filter, &self.user_attrs, 2).await?;
        Ok(if entries.len() == 1 { entries.into_iter().next() } else { None })
    }

    fn user_from_entry(&self, entry: &SearchEntry, typed: &str) -> DirectoryUser {
        let first = |name: &str| attr(entry, name).and_then(|v| v.first()).cloned();
        let username = attr(entry, &self.username_attribute)
            .and_then(|vals| vals.iter().find(|v| v.eq_ignore_ascii_case(typed)).or_else(|| vals.first()))
            .cloned()
            .unwrap_or_else(|| typed.to_string());
        DirectoryUser {
            dn: entry.dn.clone(),
            username,
            display_name: first("displayName").or_else(|| first("cn")),
            email: first("mail"),
            phone: first("mobile").or_else(|| first("telephoneNumber")),
            groups: Vec::new(),
        }
    }

    fn groups_from_entry(&self, entry: &SearchEntry) -> Vec<String> {
        let GroupMode::MemberOf { attribute } = &self.groups else {
            return Vec::new();
        };
        let names = attr(entry, attribute).into_iter().flatten().filter_map(|dn| first_rdn_value(dn));
        sorted_unique(names.collect())
    }

    async fn search_groups(&self, ldap: &mut Ldap, user: &DirectoryUser) -> Result<Vec<String>, OpError> {
        let GroupMode::Search { base_dn, filter, name_attribute } = &self.groups else {
            return Ok(Vec::new());
        };
        let filter = render_filter(filter, &user.username, &user.dn);
        let attrs = [name_attribute.as_str()];
        let (entries, rc, text) =
            search(ldap, self.op_timeout, base_dn, Scope::Subtree, &filter, &attrs, MAX_GROUPS).await?;
        match rc {
            0 => {}
            4 => tracing::warn!(user = %user.username, "more than {MAX_GROUPS} groups; the rest are ignored"),
            32 => return Err(LdapError::Config(format!("the group search base {base_dn:?} does not exist")).into()),
            51 | 52 => return Err(OpError::Server { reason: format!("group search: result {rc}"), stale: false }),
            _ => return Err(LdapError::Protocol(format!("group search: result {rc} ({})", short(&text))).into()),
        }
        let names = entries.iter().filter_map(|e| attr(e, name_attribute).and_then(|v| v.first()).cloned());
        Ok(sorted_unique(names.collect()))
    }

    async fn check_server(&self, idx: usize) -> ServerCheck {
        let started = Instant::now();
        let server = &self.servers[idx];
        let uses_tls = server.ldaps || self.starttls;
        let mut check = ServerCheck {
            url: server.url.clone(),
            reachable: false,
            tls: None,
            service_bind: None,
            peer_sha256: None,
            elapsed: Duration::ZERO,
            message: String::new(),
        };
        match self.open(idx, None).await {
            Err(e) => match failure(&e) {
                Failure::Tls(why) => {
                    check.reachable = true;
                    check.tls = Some(false);
                    check.peer_sha256 = self.capture_certificate(idx).await;
                    check.message = format!("TLS verification failed: {why}");
                    if let Some(fp) = &check.peer_sha256 {
                        check.message.push_str(&format!(
                            "; the server presented a certificate with SHA-256 {fp} (check it, then trust its CA or pin it)"
                        ));
                    }
                }
                Failure::Timeout => check.message = format!("no connection within {:?}", self.connect_timeout),
                Failure::Closed => check.message = "the server closed the connection".into(),
                Failure::Other(why) => check.message = format!("cannot connect: {why}"),
            },
            Ok(mut ldap) => {
                check.reachable = true;
                if uses_tls {
                    check.tls = Some(true);
                    if let Ok(Some(der)) = ldap.get_peer_certificate().await {
                        check.peer_sha256 = Some(cert_sha256_hex(&der));
                    }
                }
                check.message = match &self.bind {
                    BindMode::Template { .. } => {
                        "connected; template bind mode has no service account to test (try a user login)".into()
                    }
                    BindMode::Search { bind_dn, bind_password, base_dn, .. } => {
                        self.check_service(&mut ldap, &mut check, bind_dn, bind_password, base_dn).await
                    }
                };
                let _ = ldap.unbind().await;
            }
        }
        check.elapsed = started.elapsed();
        check
    }

    async fn check_service(
        &self,
        ldap: &mut Ldap,
        check: &mut ServerCheck,
        bind_dn: &str,
        bind_password: &str,
        base_dn: &str,
    ) -> String {
        let res = match ldap.with_timeout(self.op_timeout).simple_bind(bind_dn, bind_password).await {
            Ok(res) => res,
            Err(e) => return format!("service bind: {}", failure(&e).describe()),
        };
        check.service_bind = Some(res.rc == 0);
        if res.rc != 0 {
            return format!("the service account {bind_dn:?} was refused: result {} ({})", res.rc, short(&res.text));
        }
        match search(ldap, self.op_timeout, base_dn, Scope::Base, "(objectClass=*)", &["1.1"], 1).await {
            Ok((entries, 0, _)) if !entries.is_empty() => "service bind ok; the user search base exists".into(),
            Ok((_, rc, text)) => {
                check.service_bind = Some(false);
                format!(
                    "service bind ok, but the user search base {base_dn:?} is not readable: result {rc} ({})",
                    short(&text)
                )
            }
            Err(OpError::Server { reason, .. }) => format!("service bind ok; search base check: {reason}"),
            Err(OpError::Fatal(e)) => format!("service bind ok; search base check: {e}"),
        }
    }

    /// The certificate server `idx` presents, fetched over a handshake that
    /// is deliberately aborted (nothing is sent). For `test` messages only.
    async fn capture_certificate(&self, idx: usize) -> Option<String> {
        let (verifier, config) = CaptureVerifier::config().ok()?;
        let _ = self.open(idx, Some(config)).await;
        let der = verifier.take()?;
        Some(cert_sha256_hex(&der))
    }
}

/// A client-side failure, classified.
enum Failure {
    Tls(String),
    Timeout,
    /// The connection is gone (closed by the peer, reset).
    Closed,
    Other(String),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Tls(why) => format!("TLS verification failed: {why}"),
            Failure::Timeout => "timed out".into(),
            Failure::Closed => "connection closed".into(),
            Failure::Other(why) => why.clone(),
        }
    }
}

fn failure(e: &ldap3::LdapError) -> Failure {
    use std::io::ErrorKind;
    match e {
        ldap3::LdapError::Io { source } => {
            if let Some(tls) = source.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return Failure::Tls(tls_reason(tls));
            }
            match source.kind() {
                ErrorKind::BrokenPipe
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::UnexpectedEof
                | ErrorKind::NotConnected => Failure::Closed,
                ErrorKind::TimedOut => Failure::Timeout,
                _ => Failure::Other(source.to_string()),
            }
        }
        ldap3::LdapError::Rustls { source } => Failure::Tls(tls_reason(source)),
        ldap3::LdapError::DNSName { source } => Failure::Other(format!("bad TLS server name: {source}")),
        ldap3::LdapError::Timeout { .. } => Failure::Timeout,
        ldap3::LdapError::OpSend { .. }
        | ldap3::LdapError::ResultRecv { .. }
        | ldap3::LdapError::IdScrubSend { .. }
        | ldap3::LdapError::MiscSend { .. }
        | ldap3::LdapError::EndOfStream => Failure::Closed,
        ldap3::LdapError::LdapResult { result } => {
            // Only StartTLS reaches here during connect.
            Failure::Other(format!("result {} ({})", result.rc, short(&result.text)))
        }
        other => Failure::Other(other.to_string()),
    }
}

/// rustls shows a custom certificate error with its Debug form; show ours
/// (e.g. the pin mismatch) by its message.
fn tls_reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            format!("invalid peer certificate: {}", other.0)
        }
        e => e.to_string(),
    }
}

/// Maps a client error during an operation to "try another server".
fn op_failure(stage: &'static str) -> impl Fn(ldap3::LdapError) -> OpError {
    move |e| {
        let f = failure(&e);
        let stale = matches!(f, Failure::Closed);
        if let Failure::Tls(why) = &f {
            tracing::warn!(error = %why, "LDAP TLS failure during {stage}");
        }
        OpError::Server { reason: format!("{stage}: {}", f.describe()), stale }
    }
}

/// One search, bounded as a whole by `timeout`; referrals are dropped (AD
/// returns them for the other partitions of a subtree search).
async fn search<S: AsRef<str> + Send + Sync>(
    ldap: &mut Ldap,
    timeout: Duration,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[S],
    size_limit: i32,
) -> Result<(Vec<SearchEntry>, u32, String), OpError> {
    let secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
    let fut = ldap
        .with_timeout(timeout)
        .with_search_options(SearchOptions::new().sizelimit(size_limit).timelimit(secs))
        .search(base, scope, filter, attrs);
    let result = match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(op_failure("search"))?,
        Err(_) => {
            return Err(OpError::Server { reason: format!("search: no answer within {timeout:?}"), stale: false });
        }
    };
    let mut entries = Vec::with_capacity(result.0.len());
    for raw in result.0 {
        if raw.is_ref() || raw.is_intermediate() {
            continue;
        }
        // ldap3 panics on an entry it cannot parse; a bad answer from the
        // server must not take the process down.
        match std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(raw))) {
            Ok(entry) => entries.push(entry),
            Err(_) => return Err(LdapError::Protocol("a search result entry could not be parsed".into()).into()),
        }
    }
    Ok((entries, result.1.rc, result.1.text))
}

/// Attribute values by case-insensitive name (servers return the schema's
/// spelling, which need not be the one asked for).
fn attr<'a>(entry: &'a SearchEntry, name: &str) -> Option<&'a Vec<String>> {
    entry.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn sorted_unique(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

/// A bounded set of pooled connections of one kind.
struct Pool {
    idle: std::sync::Mutex<Vec<Idle>>,
    /// One permit per connection in use: bounds concurrent operations (and
    /// so connections) against the directory.
    slots: Semaphore,
    size: usize,
}

struct Idle {
    server: usize,
    ldap: Ldap,
    since: Instant,
}

impl Pool {
    fn new(size: usize) -> Self {
        Pool { idle: std::sync::Mutex::new(Vec::with_capacity(size)), slots: Semaphore::new(size), size }
    }

    async fn slot(&self, wait: Duration, kind: Kind) -> Result<SemaphorePermit<'_>, LdapError> {
        match tokio::time::timeout(wait, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(LdapError::Unavailable(format!(
                "all {} {} connections stayed busy for {wait:?}",
                self.size,
                if kind == Kind::Service { "service" } else { "bind" }
            ))),
        }
    }

    fn take(&self, server: usize) -> Option<Ldap> {
        let mut idle = self.idle.lock().ok()?;
        idle.retain_mut(|c| c.since.elapsed() < IDLE_MAX && !c.ldap.is_closed());
        let at = idle.iter().position(|c| c.server == server)?;
        Some(idle.swap_remove(at).ldap)
    }

    fn put(&self, server: usize, ldap: Ldap) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.size
        {
            idle.push(Idle { server, ldap, since: Instant::now() });
        }
    }

    /// Drops the idle connections to a server that just failed.
    fn purge(&self, server: usize) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|c| c.server != server);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_source() -> LdapSource {
        // Port 1 on loopback: nothing listens there.
        let cfg = LdapConfig::new(
            vec!["ldap://127.0.0.1:1".into()],
            BindMode::Template { template: "uid={user},dc=example,dc=org".into() },
        );
        LdapSource::new(cfg).unwrap()
    }

    #[tokio::test]
    async fn empty_or_nul_password_never_touches_the_network() {
        let src = dead_source();
        // A network attempt would give Unavailable, not a verdict.
        for pw in ["", "\0", "\0\0\0", "abc\0", "\0abc"] {
            assert_eq!(src.authenticate("alice", pw).await.unwrap(), LdapVerdict::WrongPassword, "{pw:?}");
        }
        assert!(matches!(src.authenticate("alice", "pw").await, Err(LdapError::Unavailable(_))));
    }

    #[tokio::test]
    async fn implausible_usernames_never_touch_the_network() {
        let src = dead_source();
        let long = "a".repeat(MAX_USERNAME_LEN + 1);
        for user in ["", "a\0b", "a\nb", "\r", "a\u{7f}", long.as_str()] {
            assert_eq!(src.authenticate(user, "pw").await.unwrap(), LdapVerdict::UnknownUser, "{user:?}");
        }
    }

    #[test]
    fn futures_are_send() {
        fn is_send<T: Send>(_: T) {}
        let src = dead_source();
        is_send(src.authenticate("a", "b"));
        is_send(src.lookup("a"));
        is_send(src.test());
    }
}
