//! Syslog output (`[syslog]`): audit records and log events, alongside the
//! stderr log. Off by default.
//!
//! * **Audit records** are forwarded only once committed: a forwarder task
//!   reads the audit table after the newest id it has seen
//!   ([`AuditStore::audit_after`](tessera_core::store::AuditStore::audit_after)) every [`AUDIT_POLL`]. Reading what is
//!   committed (rather than hooking every write path) also forwards the
//!   records of CLI commands run against the same data directory, and a
//!   record rolled back with its change is never sent. Each record carries
//!   its hash-chain position and hash, so the syslog server holds an
//!   independent copy of the chain's progress.
//! * **Log events** go through a tracing layer ([`log_layer`]) at
//!   `[syslog] level`.
//! * Nothing waits on the network: both feed a bounded queue drained by one
//!   sender task (`transport.rs`). A full queue drops log events (counted
//!   in [`stats`]); the audit forwarder waits instead, because its records
//!   are safe in the database meanwhile.
//!
//! Audit records carry no secrets by design, and log events name users and
//! addresses, never secrets, codes or passwords; nothing else is sent.

pub mod format;
pub mod transport;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tessera_core::clock::{Clock, SystemClock};
use tessera_core::store::{MetaKey, Store};
use tokio::sync::{mpsc, watch};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context as LayerContext;

use crate::config::{Config, SyslogSection};
use format::{Format, Formatter, Severity};
use transport::{Stats, Target};

/// Messages waiting for the sender; beyond this, log events are dropped.
const QUEUE_DEPTH: usize = 4096;
/// How often the audit forwarder looks for newly committed records…
const AUDIT_POLL: Duration = Duration::from_millis(250);
/// …and how many it reads at once.
const AUDIT_BATCH: u32 = 512;

/// `[syslog]` checked and resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    pub formatter: Formatter,
    /// Log events at this level or more severe are sent; `None` = none.
    pub level: Option<tracing::Level>,
    pub audit: bool,
}

impl Settings {
    /// `node_name` is the default host name. `Ok(None)` when syslog is off.
    pub fn from_config(cfg: &SyslogSection, node_name: &str) -> Result<Option<Settings>, String> {
        let format: Format = cfg.format.parse()?;
        let facility = cfg.facility.parse()?;
        let level = match cfg.level.as_str() {
            "off" => None,
            l => Some(
                l.parse::<tracing::Level>()
                    .map_err(|_| format!("syslog.level must be error, warn, info, debug, trace or off (got `{l}`)"))?,
            ),
        };
        let target = match cfg.transport.as_str() {
            "udp" | "tcp" => {
                let (host, port) = cfg.address.rsplit_once(':').ok_or_else(|| {
                    format!("syslog.address `{}` must be host:port for {}", cfg.address, cfg.transport)
                })?;
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(format!("syslog.address `{}` must be host:port", cfg.address));
                }
                if cfg.transport == "udp" { Target::Udp(cfg.address.clone()) } else { Target::Tcp(cfg.address.clone()) }
            }
            "unix" => {
                if !cfg.address.starts_with('/') {
                    return Err(format!("syslog.address `{}` must be an absolute socket path for unix", cfg.address));
                }
                Target::Unix(PathBuf::from(&cfg.address))
            }
            other => return Err(format!("syslog.transport must be udp, tcp or unix (got `{other}`)")),
        };
        if cfg.app_name.is_empty() {
            return Err("syslog.app_name must not be empty".into());
        }
        if !cfg.enabled {
            return Ok(None);
        }
        let hostname = if cfg.hostname.is_empty() { node_name } else { &cfg.hostname };
        let local = matches!(target, Target::Unix(_));
        let formatter =
            Formatter::new(format, facility, hostname, &cfg.app_name, std::process::id(), !local, target.max_message());
        Ok(Some(Settings { target, formatter, level, audit: cfg.audit }))
    }
}

/// The formal checks of `[syslog]`, also while it is off (so a section
/// that would fail when switched on is named now, not at that later start).
/// Run by `crate::node::startup_checks`.
pub fn check(cfg: &SyslogSection) -> Result<(), String> {
    Settings::from_config(cfg, "check").map(drop)
}

/// The process's syslog output. Set up once by [`install`] (before the
/// tracing subscriber, which is process-wide too); the queue's receiving
/// end waits here until [`start`] spawns the sender.
struct Output {
    settings: Settings,
    tx: mpsc::Sender<String>,
    rx: parking_lot::Mutex<Option<mpsc::Receiver<String>>>,
}

static OUTPUT: OnceLock<Option<Output>> = OnceLock::new();
static STATS: Stats = Stats::new();

/// Messages sent and dropped so far (for metrics).
pub fn stats() -> &'static Stats {
    &STATS
}

/// Resolves `[syslog]` for this process. Call before
/// [`crate::logging::init`] so log events can be sent too; a second call
/// changes nothing.
pub fn install(cfg: &Config) -> Result<(), crate::config::ConfigError> {
    let settings = Settings::from_config(&cfg.syslog, &cfg.node_name()).map_err(crate::config::ConfigError::Invalid)?;
    OUTPUT.get_or_init(|| {
        settings.map(|settings| {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            Output { settings, tx, rx: parking_lot::Mutex::new(Some(rx)) }
        })
    });
    Ok(())
}

/// The tracing layer sending log events, if syslog is on with a level.
pub fn log_layer() -> Option<LogLayer> {
    let out = OUTPUT.get()?.as_ref()?;
    let level = out.settings.level?;
    Some(LogLayer { tx: out.tx.clone(), formatter: out.settings.formatter.clone(), level, clock: SystemClock })
}

/// The running sender and audit forwarder.
#[derive(Debug)]
pub struct Running {
    forwarder: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    stop_sender: watch::Sender<bool>,
    sender: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Call after the listeners have drained: the forwarder queues what was
    /// committed up to now, then the sender flushes (briefly) and stops.
    pub async fn shutdown(self) {
        if let Some((stop, task)) = self.forwarder {
            let _ = stop.send(true);
            let _ = task.await;
        }
        let _ = self.stop_sender.send(true);
        let _ = self.sender.await;
    }
}

/// Starts sending (if `[syslog]` is on). Audit records go out from where
/// this node's forwarder left off (a cursor in the database), so records
/// committed while the server was stopped (CLI changes) are sent when it
/// is back; the first start sends from the newest record on.
pub async fn start(cfg: &Config, store: Arc<dyn Store>) -> anyhow::Result<Option<Running>> {
    install(cfg)?;
    let Some(out) = OUTPUT.get().and_then(Option::as_ref) else { return Ok(None) };
    let Some(rx) = out.rx.lock().take() else { return Ok(None) };
    let target = out.settings.target.clone();
    let forwarder = if out.settings.audit {
        let newest = store
            .audit_log(&tessera_core::audit::AuditQuery { limit: 1, ..Default::default() })
            .await?
            .first()
            .map_or(0, |r| r.id);
        let node = cfg.node_name();
        let saved = store
            .meta_value(MetaKey::SyslogCursor(&node))
            .await?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<i64>().ok());
        // Never ahead of the table (a restored older database), and without
        // a cursor (the first start) history is not sent.
        let cursor = saved.map_or(newest, |c| c.min(newest));
        let (stop, stop_rx) = watch::channel(false);
        let formatter = out.settings.formatter.clone();
        let task = forward_audit(store, node, cursor, formatter, out.tx.clone(), stop_rx);
        Some((stop, tokio::spawn(task)))
    } else {
        None
    };
    tracing::info!(dest = %target, audit = out.settings.audit, "syslog output on");
    let (stop_sender, stop_rx) = watch::channel(false);
    let sender = tokio::spawn(transport::run(target, rx, &STATS, stop_rx));
    Ok(Some(Running { forwarder, stop_sender, sender }))
}

async fn forward_audit(
    store: Arc<dyn Store>,
    node: String,
    mut cursor: i64,
    formatter: Formatter,
    tx: mpsc::Sender<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let stopping = *stop.borrow();
        match store.audit_after(cursor, AUDIT_BATCH).await {
            Ok(batch) => {
                failing = false;
                let full = batch.len() == AUDIT_BATCH as usize;
                for c in &batch {
                    cursor = c.record.id;
                    if stopping {
                        // The last pass never waits: shutdown must not hang
                        // on an unreachable destination.
                        if tx.try_send(formatter.audit(c)).is_err() {
                            return;
                        }
                        continue;
                    }
                    // Waits while the queue is full (the destination is
                    // down): the records are safe in the database.
                    tokio::select! {
                        sent = tx.send(formatter.audit(c)) => if sent.is_err() { return },
                        _ = stop.changed() => return,
                    }
                }
                if !batch.is_empty() {
                    save_cursor(&*store, &node, cursor).await;
                }
                if full && !stopping {
                    continue;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "syslog: reading new audit records failed; will retry");
                    failing = true;
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(AUDIT_POLL) => {}
            // One more pass when stopping: records committed until now go out.
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

/// Records how far the forwarder got. A failure only means some records
/// may be sent twice after a restart (they carry their id and chain hash).
async fn save_cursor(store: &dyn Store, node: &str, cursor: i64) {
    let value = Some(cursor.to_string().into_bytes());
    if let Err(e) = store.set_meta_value(MetaKey::SyslogCursor(node), value, None).await {
        tracing::debug!(error = %e, "syslog: cannot record the audit forwarding position");
    }
}

/// Sends tracing events at or above the configured level (among those the
/// `[log] level` filter lets through) to syslog. Never blocks: a full
/// queue drops the event and counts it.
#[derive(Debug)]
pub struct LogLayer {
    tx: mpsc::Sender<String>,
    formatter: Formatter,
    level: tracing::Level,
    clock: SystemClock,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        // `Level` orders more verbose as greater.
        if *meta.level() > self.level || meta.target().starts_with(module_path!()) {
            // The sender's own complaints stay on stderr: sending them
            // through the queue they are about would feed back.
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let line = self.formatter.log(Severity::of_level(meta.level()), self.clock.now(), &text.finish());
        if self.tx.try_send(line).is_err() {
            STATS.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An event as `message key=value …`, like the text log on stderr.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        if self.message.is_empty() { self.fields.trim_start().to_string() } else { self.message + &self.fields }
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            use std::fmt::Write as _;
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> SyslogSection {
        SyslogSection { enabled: true, ..SyslogSection::default() }
    }

    #[test]
    fn settings_are_checked() {
        assert!(Settings::from_config(&SyslogSection::default(), "n").unwrap().is_none(), "off by default");
        let s = Settings::from_config(&section(), "n").unwrap().unwrap();
        assert_eq!(s.target, Target::Udp("127.0.0.1:514".into()));
        assert_eq!(s.level, Some(tracing::Level::INFO));
        let bad = |f: fn(&mut SyslogSection)| {
            let mut c = section();
            f(&mut c);
            Settings::from_config(&c, "n").unwrap_err()
        };
        assert!(bad(|c| c.transport = "tls".into()).contains("udp, tcp or unix"));
        assert!(bad(|c| c.address = "nowhere".into()).contains("host:port"));
        assert!(bad(|c| c.address = "host:99999".into()).contains("host:port"));
        assert!(bad(|c| c.facility = "local9".into()).contains("facility"));
        assert!(bad(|c| c.level = "loud".into()).contains("syslog.level"));
        assert!(
            bad(|c| {
                c.transport = "unix".into();
                c.address = "dev/log".into();
            })
            .contains("absolute")
        );
        // checked even when off, so a typo shows before it is switched on
        let mut off = SyslogSection { format: "rfc5425".into(), ..SyslogSection::default() };
        assert!(Settings::from_config(&off, "n").is_err());
        off.format = "rfc3164".into();
        assert!(Settings::from_config(&off, "n").unwrap().is_none());
    }
}
