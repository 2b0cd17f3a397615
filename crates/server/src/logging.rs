//! Process logging to standard error, as text or JSON lines. Log lines name
//! users, tokens and addresses, never secrets, codes or passwords.

use tracing_subscriber::EnvFilter;

use crate::config::LogSection;

/// Installs the global subscriber. `TESSERA_LOG` (a filter directive)
/// overrides the configured level, for one-off debugging.
pub fn init(cfg: &LogSection, override_filter: Option<&str>) {
    let filter = override_filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if cfg.format == "json" { builder.json().try_init() } else { builder.try_init() };
}
