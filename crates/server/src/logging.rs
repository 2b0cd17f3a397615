//! Process logging to standard error, as text or JSON lines. Log lines name
//! users, tokens and addresses, never secrets, codes or passwords.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogSection;

/// Swaps the level filter at run time (`[log] level` on SIGHUP); set once
/// by [`init`]. `None` inside: `TESSERA_LOG` fixed the filter.
static LEVEL: OnceLock<Option<reload::Handle<EnvFilter, Registry>>> = OnceLock::new();

/// Installs the global subscriber. `TESSERA_LOG` (a filter directive)
/// overrides the configured level, for one-off debugging.
pub fn init(cfg: &LogSection, override_filter: Option<&str>) {
    let overridden = override_filter.and_then(|f| EnvFilter::try_new(f).ok());
    let fixed = overridden.is_some();
    let filter = overridden.or_else(|| EnvFilter::try_new(&cfg.level).ok()).unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // `[syslog]` log events (if on), among those the filter lets through.
    let registry = tracing_subscriber::registry().with(filter).with(crate::syslog::log_layer());
    let installed =
        if cfg.format == "json" { registry.with(fmt.json()).try_init() } else { registry.with(fmt).try_init() };
    if installed.is_ok() {
        let _ = LEVEL.set((!fixed).then_some(handle));
    }
}

/// Whether the level can change at run time (not fixed by `TESSERA_LOG`).
#[derive(Debug, PartialEq, Eq)]
pub enum LevelChange {
    Applied,
    /// `TESSERA_LOG` is set (or logging was not initialised): unchanged.
    Fixed,
}

/// Checks a `[log] level` value without applying it.
pub fn check_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level).map(drop).map_err(|e| format!("log.level `{level}`: {e}"))
}

/// Applies a new `[log] level` (SIGHUP).
pub fn set_level(level: &str) -> Result<LevelChange, String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level `{level}`: {e}"))?;
    match LEVEL.get() {
        Some(Some(handle)) => {
            handle.reload(filter).map_err(|e| e.to_string())?;
            Ok(LevelChange::Applied)
        }
        _ => Ok(LevelChange::Fixed),
    }
}
