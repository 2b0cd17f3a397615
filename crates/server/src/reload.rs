//! What changes while `serve` runs, and SIGHUP.
//!
//! [`Live`] holds the configuration in effect (swapped on SIGHUP), the
//! `/metrics` access rules and the readiness flags `/readyz` reports.
//! [`Reloader::reload`] re-reads the config file `serve` was started with
//! (plus the same environment overrides), checks everything it would use
//! (dictionaries, secret files, log level, backup settings, client names
//! against the database) and only then applies it, so a bad file changes
//! nothing and the running configuration stays. RADIUS keeps answering
//! throughout: clients and reply rules are swapped under a lock between
//! two packets, never torn down.
//!
//! Settings applied live are listed in [`LIVE_KEYS`]; any other changed key
//! (listen addresses, TLS file paths, database, data directory, …) is logged as
//! needing a restart and keeps its running value. A new section added to
//! [`Config`] is therefore "restart needed" until its owner adds it here.
//! The *content* of the TLS files is another matter: SIGHUP re-reads the
//! certificates, keys and RadSec client CA at their running paths
//! (`tls_reload.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use parking_lot::RwLock;
use tessera_core::cidr::Cidr;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::config::{Config, MetricsSection};
use crate::node::Node;
use crate::radius::handler::RadiusService;
use crate::tls_reload::{CertSource, Trigger};

/// `section.key` settings applied without a restart (`section.*`: all of
/// the section). Everything else needs a restart.
pub const LIVE_KEYS: &[&str] = &[
    "log.level",
    "radius.reply",
    "radius.dictionaries",
    "radius.client",
    "metrics.*",
    "backup.*",
    "audit.retention_days",
    "http.validate_requires_api_key",
];

/// The running node's changeable state.
#[derive(Debug)]
pub struct Live {
    config: watch::Sender<Arc<Config>>,
    metrics: RwLock<Arc<MetricsAccess>>,
    pub ready: Readiness,
    /// The file `serve` was started with, and its environment: a reload
    /// reads the same sources.
    config_file: Option<PathBuf>,
    env: BTreeMap<String, String>,
    /// Keys the command line set over the file (`--data`): kept on reload.
    cli_overrides: Vec<String>,
}

impl Live {
    pub fn new(cfg: &Config, config_file: Option<PathBuf>, env: BTreeMap<String, String>) -> anyhow::Result<Arc<Live>> {
        let metrics = MetricsAccess::load(&cfg.metrics).map_err(anyhow::Error::msg)?;
        let cli_overrides = match Config::load(config_file.as_deref(), &env) {
            Ok(from_sources) => changed_keys(&from_sources, cfg)?,
            Err(_) => Vec::new(),
        };
        Ok(Arc::new(Live {
            config: watch::Sender::new(Arc::new(cfg.clone())),
            metrics: RwLock::new(Arc::new(metrics)),
            ready: Readiness::default(),
            config_file,
            env,
            cli_overrides,
        }))
    }

    /// The configuration in effect.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// The configuration file `serve` was started with, if any.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.config_file.as_deref()
    }

    /// Sees every configuration swap.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.config.subscribe()
    }

    pub fn metrics_access(&self) -> Arc<MetricsAccess> {
        self.metrics.read().clone()
    }
}

/// What `/readyz` checks besides the store.
#[derive(Debug, Default)]
pub struct Readiness {
    pub realms_loaded: AtomicBool,
    pub listeners_up: AtomicBool,
    /// Set on SIGTERM/SIGINT: load balancers should stop sending.
    pub stopping: AtomicBool,
}

impl Readiness {
    /// Why the node is not ready (empty: ready, as far as these flags go).
    pub fn problems(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.stopping.load(Ordering::Relaxed) {
            out.push("shutting down");
        }
        if !self.realms_loaded.load(Ordering::Relaxed) {
            out.push("realms not loaded");
        }
        if !self.listeners_up.load(Ordering::Relaxed) {
            out.push("listeners not up");
        }
        out
    }
}

/// `[metrics]`, ready to check requests against.
#[derive(Debug)]
pub struct MetricsAccess {
    pub enabled: bool,
    allow: Vec<Cidr>,
    token: Option<Zeroizing<String>>,
}

/// Why a scrape is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsDenied {
    /// `enabled = false`.
    Disabled,
    /// The peer is not in `allow`.
    Source,
    /// A token is configured and the request did not carry it.
    Token,
}

impl MetricsAccess {
    /// Parses the allow list and reads the token file.
    pub fn load(m: &MetricsSection) -> Result<MetricsAccess, String> {
        let allow = m
            .allow
            .iter()
            .map(|a| Cidr::parse(a).map_err(|e| format!("metrics.allow: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let token = if m.bearer_token_file.as_os_str().is_empty() {
            None
        } else {
            let f = &m.bearer_token_file;
            let text = Zeroizing::new(
                std::fs::read_to_string(f).map_err(|e| format!("metrics.bearer_token_file {}: {e}", f.display()))?,
            );
            let line = text.lines().next().unwrap_or("").trim();
            if line.len() < 16 {
                return Err(format!(
                    "metrics.bearer_token_file {}: the token must be at least 16 characters",
                    f.display()
                ));
            }
            Some(Zeroizing::new(line.to_string()))
        };
        Ok(MetricsAccess { enabled: m.enabled, allow, token })
    }

    /// Whether a scrape from `peer` carrying `bearer` may see the metrics.
    pub fn check(&self, peer: Option<IpAddr>, bearer: Option<&str>) -> Result<(), MetricsDenied> {
        if !self.enabled {
            return Err(MetricsDenied::Disabled);
        }
        if !peer.is_some_and(|ip| self.allow.iter().any(|c| c.contains(ip))) {
            return Err(MetricsDenied::Source);
        }
        if let Some(token) = &self.token {
            use subtle::ConstantTimeEq as _;
            let ok = bearer.is_some_and(|b| bool::from(b.as_bytes().ct_eq(token.as_bytes())));
            if !ok {
                return Err(MetricsDenied::Token);
            }
        }
        Ok(())
    }
}

/// What a reload did, for the log and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Changed keys now in effect.
    pub applied: Vec<String>,
    /// Changed keys that keep their running value until a restart.
    pub need_restart: Vec<String>,
}

/// Changed `section.key` names between two configurations.
pub fn changed_keys(old: &Config, new: &Config) -> anyhow::Result<Vec<String>> {
    let (old, new) = (toml::Table::try_from(old)?, toml::Table::try_from(new)?);
    let mut out = Vec::new();
    let sections: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for section in sections {
        let empty = toml::Table::new();
        let o = old.get(section).and_then(|v| v.as_table()).unwrap_or(&empty);
        let n = new.get(section).and_then(|v| v.as_table()).unwrap_or(&empty);
        let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for key in keys {
            if o.get(key) != n.get(key) {
                out.push(format!("{section}.{key}"));
            }
        }
    }
    Ok(out)
}

/// Whether `section.key` is applied without a restart.
pub fn is_live(key: &str) -> bool {
    LIVE_KEYS.iter().any(|k| match k.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => key == *k,
    })
}

/// `new` with every key in `keep_old` set back to its value in `old`.
fn with_running_values(old: &Config, new: &Config, keep_old: &[String]) -> anyhow::Result<Config> {
    let old_t = toml::Table::try_from(old)?;
    let mut new_t = toml::Table::try_from(new)?;
    for key in keep_old {
        let Some((section, name)) = key.split_once('.') else { continue };
        let previous = old_t.get(section).and_then(|s| s.as_table()).and_then(|s| s.get(name)).cloned();
        let Some(table) =
            new_t.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut()
        else {
            continue;
        };
        match previous {
            Some(v) => {
                table.insert(name.to_string(), v);
            }
            None => {
                table.remove(name);
            }
        }
    }
    Ok(toml::Value::Table(new_t).try_into()?)
}

/// Applies SIGHUP. One per server; reloads never overlap (the signal loop
/// awaits each).
#[derive(Debug)]
pub struct Reloader {
    pub live: Arc<Live>,
    pub node: Arc<Node>,
    /// `None` when no RADIUS listener runs.
    pub radius: Option<Arc<RadiusService>>,
    /// The listeners' certificates, re-read on every SIGHUP whatever the
    /// configuration reload decides (`tls_reload.rs`).
    pub certificates: Vec<Arc<CertSource>>,
}

impl Reloader {
    /// Re-reads the config file and the database-held settings (clients,
    /// reply rules, realms). Logs the outcome; an error leaves everything
    /// as it was.
    pub async fn reload(&self) -> anyhow::Result<ReloadReport> {
        let source = match &self.live.config_file {
            Some(f) => f.display().to_string(),
            None => "(no config file: defaults and environment)".to_string(),
        };
        tracing::info!(config = %source, "SIGHUP: reloading the configuration");
        let now = self.node.ctx.clock.now().unix_seconds();
        // Certificates first, and whatever becomes of the configuration:
        // a refused pair keeps the old one and says so itself.
        crate::tls_reload::check_all(&self.certificates, Trigger::Signal, &self.node.ctx.clock).await;
        match self.try_reload().await {
            Ok(report) => {
                crate::metrics::config_reload(true, now, !report.need_restart.is_empty());
                if report.applied.is_empty() && report.need_restart.is_empty() {
                    tracing::info!(config = %source, "configuration reloaded: no setting changed; RADIUS clients, reply rules and realms re-read");
                } else if !report.applied.is_empty() {
                    tracing::info!(config = %source, applied = %report.applied.join(", "), "configuration reloaded; RADIUS clients, reply rules and realms re-read");
                }
                if !report.need_restart.is_empty() {
                    tracing::warn!(
                        keys = %report.need_restart.join(", "),
                        "changed settings take effect only after a restart; they keep their running values until then"
                    );
                }
                Ok(report)
            }
            Err(e) => {
                crate::metrics::config_reload(false, now, false);
                tracing::error!(config = %source, error = %format!("{e:#}"), "configuration reload failed; the running configuration is kept");
                Err(e)
            }
        }
    }

    async fn try_reload(&self) -> anyhow::Result<ReloadReport> {
        let old = self.live.config();
        let new = crate::node::load_config(self.live.config_file.as_deref(), &self.live.env)?;
        let changed = changed_keys(&old, &new)?;
        let (overridden, changed): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|k| self.live.cli_overrides.contains(k));
        let (applied, need_restart): (Vec<String>, Vec<String>) = changed.into_iter().partition(|k| is_live(k));
        let keep: Vec<String> = need_restart.iter().chain(&overridden).cloned().collect();
        let effective = with_running_values(&old, &new, &keep).context("merging the configuration")?;
        effective.validate()?;
        crate::node::startup_checks(&effective)?;

        // Check everything before changing anything.
        crate::logging::check_level(&effective.log.level).map_err(anyhow::Error::msg)?;
        let metrics = MetricsAccess::load(&effective.metrics).map_err(anyhow::Error::msg)?;
        crate::scheduled_backup::check(&effective)?;
        let radius = RadiusService::prepare_config(&effective)?;

        // Apply. Only the RADIUS step can still refuse (a config client
        // named like a database client), and it goes first.
        match &self.radius {
            Some(svc) => svc.install_config(radius).await?,
            None => drop(radius),
        }
        if old.log.level != effective.log.level {
            match crate::logging::set_level(&effective.log.level) {
                Ok(crate::logging::LevelChange::Applied) => {}
                Ok(crate::logging::LevelChange::Fixed) => {
                    tracing::info!("log.level changed, but TESSERA_LOG fixes the log filter; unchanged")
                }
                Err(e) => tracing::warn!(error = %e, "log.level could not be applied"),
            }
        }
        *self.live.metrics.write() = Arc::new(metrics);
        self.live.config.send_replace(Arc::new(effective));
        if let Err(e) = self.node.load_directory().await {
            tracing::warn!(error = %e, "realms could not be re-read; keeping the loaded ones");
        }
        Ok(ReloadReport { applied, need_restart })
    }
}

/// Runs scheduled backups per the live `[backup]` settings: restarts the
/// schedule when they change (a backup in progress finishes first).
pub async fn backup_schedule(live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    let mut configs = live.subscribe();
    loop {
        let cfg = configs.borrow_and_update().clone();
        let (stop_one, stop_rx) = watch::channel(false);
        let task = (cfg.backup.interval_seconds > 0)
            .then(|| tokio::spawn(crate::scheduled_backup::run((*cfg).clone(), live.config_file.clone(), stop_rx)));
        let finished = loop {
            tokio::select! {
                r = configs.changed() => {
                    if r.is_err() {
                        break true;
                    }
                    if configs.borrow().backup != cfg.backup {
                        tracing::info!("scheduled backup settings changed; schedule restarted");
                        break false;
                    }
                }
                _ = stop.changed() => break true,
            }
        };
        let _ = stop_one.send(true);
        if let Some(t) = task {
            let _ = t.await;
        }
        if finished {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_split_into_live_and_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.log.level = "debug".into();
        new.http.listen = vec!["0.0.0.0:8443".into()];
        new.metrics.allow = vec!["10.0.0.0/8".into()];
        new.backup.keep = 3;
        let changed = changed_keys(&old, &new).unwrap();
        assert_eq!(changed, ["backup.keep", "http.listen", "log.level", "metrics.allow"]);
        let (live, restart): (Vec<_>, Vec<_>) = changed.into_iter().partition(|k| is_live(k));
        assert_eq!(restart, ["http.listen"]);
        let eff = with_running_values(&old, &new, &restart).unwrap();
        assert_eq!(eff.http.listen, old.http.listen, "restart keys keep their running value");
        assert_eq!(eff.log.level, "debug");
        assert_eq!(live.len(), 3);
    }

    #[test]
    fn metrics_access_checks_source_then_token() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetricsSection::default();
        let a = MetricsAccess::load(&m).unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let v6lo: IpAddr = "::1".parse().unwrap();
        let far: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(a.check(Some(lo), None), Ok(()));
        assert_eq!(a.check(Some(v6lo), None), Ok(()));
        assert_eq!(a.check(Some(far), None), Err(MetricsDenied::Source));
        assert_eq!(a.check(None, None), Err(MetricsDenied::Source));
        let f = dir.path().join("token");
        std::fs::write(&f, "0123456789abcdef-token\n").unwrap();
        let m = MetricsSection { bearer_token_file: f.clone(), ..MetricsSection::default() };
        let a = MetricsAccess::load(&m).unwrap();
        assert_eq!(a.check(Some(lo), None), Err(MetricsDenied::Token));
        assert_eq!(a.check(Some(lo), Some("wrong")), Err(MetricsDenied::Token));
        assert_eq!(a.check(Some(lo), Some("0123456789abcdef-token")), Ok(()));
        assert_eq!(a.check(Some(far), Some("0123456789abcdef-token")), Err(MetricsDenied::Source));
        std::fs::write(&f, "short\n").unwrap();
        assert!(MetricsAccess::load(&m).unwrap_err().contains("16"));
        let off = MetricsAccess::load(&MetricsSection { enabled: false, ..MetricsSection::default() }).unwrap();
        assert_eq!(off.check(Some(lo), None), Err(MetricsDenied::Disabled));
    }
}
