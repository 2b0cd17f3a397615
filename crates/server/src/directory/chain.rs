//! One realm's chain of first-factor sources.
//!
//! The chain moves on to the next source only when a source cannot answer
//! (every server down, timed out) or does not know the user. A definite
//! "wrong password", a refusal (locked, disabled, expired) or a
//! configuration error stops it: falling back then would let an attacker
//! pick the weaker directory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tessera_core::realm::{DirectoryVerdict, Realm, RealmSecrets};
use tessera_entra::Outcome;
use tessera_ldap::{LdapError, LdapVerdict};

use super::DirectoryStats;
use super::cache::{Cached, DirectoryCache};
use super::sources::{Source, SourceCheck, build_sources};

#[derive(Debug)]
pub struct RealmRuntime {
    name: String,
    sources: Vec<(String, Source)>,
    auto_provision: bool,
    cache: DirectoryCache,
    stats: Arc<DirectoryStats>,
    /// Outage logs are rate-limited: a dead directory under load must not
    /// flood the log (the counters in `stats` keep the totals).
    log_gate: LogGate,
}

/// Opens at most once per `LOG_EVERY`.
#[derive(Debug, Default)]
struct LogGate {
    last: parking_lot::Mutex<Option<std::time::Instant>>,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl LogGate {
    fn open(&self) -> bool {
        let mut last = self.last.lock();
        match *last {
            Some(t) if t.elapsed() < LOG_EVERY => false,
            _ => {
                *last = Some(std::time::Instant::now());
                true
            }
        }
    }
}

/// What one source said.
enum Step {
    Done(DirectoryVerdict, Option<Cached>),
    /// Ask the next source; the reason stands if none answers.
    Next {
        unknown: bool,
        reason: &'static str,
    },
}

fn ldap_refusal(r: &str) -> &'static str {
    match r {
        "account_disabled" => "ldap_account_disabled",
        "account_locked" => "ldap_account_locked",
        "account_expired" => "ldap_account_expired",
        "password_expired" => "ldap_password_expired",
        "ambiguous" => "ldap_ambiguous_user",
        "logon_hours" => "ldap_logon_hours",
        "workstation_restricted" => "ldap_workstation_restricted",
        _ => "ldap_refused",
    }
}

impl RealmRuntime {
    pub fn build(realm: &Realm, secrets: &RealmSecrets, stats: Arc<DirectoryStats>) -> Self {
        RealmRuntime {
            name: realm.name.clone(),
            sources: build_sources(&realm.name, &realm.settings.sources, secrets),
            auto_provision: realm.settings.auto_provision,
            cache: DirectoryCache::new(Duration::from_secs(u64::from(realm.settings.cache_ttl_seconds))),
            stats,
            log_gate: LogGate::default(),
        }
    }

    /// A realm whose sources could not be built: every login fails closed.
    pub fn broken(realm: &Realm, stats: Arc<DirectoryStats>) -> Self {
        let sources = realm
            .settings
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{}#{}", s.kind(), i + 1), Source::Broken("realm secrets unreadable".into())))
            .collect();
        RealmRuntime {
            name: realm.name.clone(),
            sources,
            auto_provision: false,
            cache: DirectoryCache::new(Duration::ZERO),
            stats,
            log_gate: LogGate::default(),
        }
    }

    pub fn has_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    pub fn auto_provision(&self) -> bool {
        self.auto_provision
    }

    pub fn describe(&self) -> String {
        if self.sources.is_empty() {
            return "local".into();
        }
        self.sources.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>().join(" → ")
    }

    pub fn flush_cache(&self) {
        self.cache.clear();
    }

    pub async fn verify(&self, username: &str, password: &str) -> DirectoryVerdict {
        // A cached resolution starts the walk at the source the user was
        // found in (and lets LDAP bind with the known DN, skipping the search).
        let cached = self.cache.get(username);
        match &cached {
            Some(_) => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(realm = %self.name, "directory cache hit");
            }
            None if self.cache.enabled() => {
                self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(realm = %self.name, "directory cache miss");
            }
            None => {}
        }
        let order: Vec<usize> = match &cached {
            Some(c) if c.source < self.sources.len() => {
                std::iter::once(c.source).chain((0..self.sources.len()).filter(|i| *i != c.source)).collect()
            }
            _ => (0..self.sources.len()).collect(),
        };
        let mut unknown = false;
        // A user reached past an unreachable source is not cached as
        // belonging to the later one: once the first is back, it must be
        // asked first again (fallback only while it is down).
        let mut fell_back = false;
        let mut last = "directory_unavailable";
        let mut down = "directory_unavailable";
        for (n, i) in order.into_iter().enumerate() {
            let hint = cached.as_ref().filter(|c| c.source == i);
            if n > 0 {
                self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
            }
            match self.ask(i, username, password, hint).await {
                Step::Done(verdict, entry) => {
                    // A hit is not refreshed: groups must be re-read once
                    // the TTL is over, however often the user logs in.
                    let hit = hint.is_some() && matches!(verdict, DirectoryVerdict::Accepted { .. });
                    match entry {
                        _ if hit => {}
                        Some(_) if fell_back => {}
                        Some(e) => self.cache.put(username, e),
                        None if hint.is_some() => self.cache.remove(username),
                        None => {}
                    }
                    return verdict;
                }
                Step::Next { unknown: u, reason } => {
                    if hint.is_some() {
                        self.cache.remove(username);
                    }
                    unknown |= u;
                    fell_back |= !u;
                    last = reason;
                    if !u {
                        down = reason;
                    }
                    tracing::debug!(realm = %self.name, source = %self.sources[i].0, reason, "first-factor source did not answer for this user; trying the next");
                }
            }
        }
        // "Unknown" only if every source answered so: one that was down
        // may know the user, and an outage must not count as a failure.
        if unknown && !fell_back {
            DirectoryVerdict::UnknownUser { reason: last }
        } else {
            self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
            DirectoryVerdict::Unavailable { reason: down }
        }
    }

    async fn ask(&self, i: usize, username: &str, password: &str, hint: Option<&Cached>) -> Step {
        let (label, source) = &self.sources[i];
        match source {
            Source::Broken(_) => Step::Done(DirectoryVerdict::Unavailable { reason: "source_misconfigured" }, None),
            Source::Ldap(ldap) => {
                let answer = match hint.and_then(|c| c.dn.as_deref()) {
                    Some(dn) => ldap.authenticate_known(dn, username, password).await,
                    None => ldap.authenticate(username, password).await,
                };
                match answer {
                    Ok(LdapVerdict::Accepted(user)) => {
                        // With a cached DN only the bind ran: the groups are the cached ones.
                        let groups = match hint {
                            Some(h) if h.dn.is_some() => h.groups.clone(),
                            _ => user.groups,
                        };
                        let entry = Cached { source: i, dn: Some(user.dn), groups: groups.clone() };
                        Step::Done(
                            DirectoryVerdict::Accepted { source: format!("ldap:{}", self.label(label)), groups },
                            Some(entry),
                        )
                    }
                    Ok(LdapVerdict::WrongPassword) => {
                        Step::Done(DirectoryVerdict::WrongPassword { reason: "ldap_wrong_password" }, None)
                    }
                    Ok(LdapVerdict::UnknownUser) => Step::Next { unknown: true, reason: "ldap_unknown_user" },
                    Ok(LdapVerdict::Refused(r)) => {
                        Step::Done(DirectoryVerdict::Refused { reason: ldap_refusal(r) }, None)
                    }
                    Err(LdapError::Unavailable(e)) => {
                        if self.log_gate.open() {
                            tracing::warn!(realm = %self.name, source = %label, error = %e, "LDAP unavailable (logged at most every 10 s)");
                        }
                        Step::Next { unknown: false, reason: "ldap_unavailable" }
                    }
                    Err(e) => {
                        if self.log_gate.open() {
                            tracing::error!(realm = %self.name, source = %label, error = %e, "LDAP error; login refused (logged at most every 10 s)");
                        }
                        Step::Done(DirectoryVerdict::Unavailable { reason: "ldap_error" }, None)
                    }
                }
            }
            Source::Entra(entra) => {
                let outcome = entra.authenticate(username, password).await;
                let reason = outcome.audit_reason();
                match outcome {
                    Outcome::PasswordOk { .. } => {
                        let entry = Cached { source: i, dn: None, groups: Vec::new() };
                        Step::Done(
                            DirectoryVerdict::Accepted {
                                source: format!("entra:{}", self.label(label)),
                                groups: Vec::new(),
                            },
                            Some(entry),
                        )
                    }
                    Outcome::NoMfa if entra.config().allow_no_mfa => {
                        let entry = Cached { source: i, dn: None, groups: Vec::new() };
                        Step::Done(
                            DirectoryVerdict::Accepted {
                                source: format!("entra:{}", self.label(label)),
                                groups: Vec::new(),
                            },
                            Some(entry),
                        )
                    }
                    Outcome::WrongPassword { .. } => Step::Done(DirectoryVerdict::WrongPassword { reason }, None),
                    Outcome::UnknownUser { .. } => Step::Next { unknown: true, reason },
                    Outcome::Unavailable(why) => {
                        if self.log_gate.open() {
                            tracing::warn!(realm = %self.name, source = %label, why, "Entra ID unavailable (logged at most every 10 s)");
                        }
                        Step::Next { unknown: false, reason }
                    }
                    Outcome::ConfigError { code, reason: what } => {
                        if self.log_gate.open() {
                            tracing::error!(realm = %self.name, source = %label, ?code, problem = what, "Entra ID configuration error; login refused (logged at most every 10 s)");
                        }
                        Step::Done(DirectoryVerdict::Unavailable { reason }, None)
                    }
                    _ => Step::Done(DirectoryVerdict::Refused { reason }, None),
                }
            }
        }
    }

    fn label(&self, source: &str) -> String {
        format!("{}/{source}", self.name)
    }

    /// Directory groups of a user: cached, else looked up with the service
    /// account where the source can (LDAP search mode).
    pub async fn groups(&self, username: &str) -> Vec<String> {
        if let Some(c) = self.cache.get(username) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return c.groups;
        }
        if self.cache.enabled() {
            self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
        for (i, (label, source)) in self.sources.iter().enumerate() {
            if let Source::Ldap(ldap) = source {
                match ldap.lookup(username).await {
                    Ok(Some(user)) => {
                        self.cache.put(username, Cached { source: i, dn: Some(user.dn), groups: user.groups.clone() });
                        return user.groups;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(realm = %self.name, source = %label, error = %e, "group lookup failed");
                        continue;
                    }
                }
            }
        }
        Vec::new()
    }

    pub async fn test(&self) -> Vec<SourceCheck> {
        let mut out = Vec::new();
        for (label, source) in &self.sources {
            out.push(match source {
                Source::Broken(e) => SourceCheck { source: label.clone(), ok: false, lines: vec![e.clone()] },
                Source::Ldap(ldap) => {
                    let checks = ldap.test().await;
                    SourceCheck {
                        source: label.clone(),
                        ok: checks.iter().any(|c| c.ok()),
                        lines: checks.iter().map(|c| format!("{}: {}", c.url, c.message)).collect(),
                    }
                }
                Source::Entra(entra) => {
                    let report = entra.test().await;
                    SourceCheck { source: label.clone(), ok: report.ok, lines: vec![report.message.clone()] }
                }
            });
        }
        out
    }
}
