//! `tessera migrate`: brings the database to this release's schema, as
//! `serve` does at start, and says what it did. The Debian package runs it
//! on upgrade, before restarting the service, so a failed migration stops
//! the upgrade with its message (the database unchanged: every pending
//! migration runs in one transaction).

use std::collections::BTreeMap;

use tessera_server::config::Config;
use tessera_server::node::{self, StartupError};
use tessera_store::sqlite::schema as sqlite_schema;

pub async fn run(cfg: &Config, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let build = if cfg.uses_postgres() {
        tessera_store::postgres::schema::build_window()
    } else {
        sqlite_schema::build_window()
    };
    let before = if cfg.uses_postgres() { None } else { sqlite_schema::window_of_file(&cfg.database_path())? };
    if !cfg.uses_postgres() && before.is_none_or(|w| w.version == 0) {
        outln!("no database yet at {} (it is created at the first start)", cfg.database_display());
        return Ok(());
    }
    match super::open(cfg, env).await {
        Ok(_node) => {}
        Err(e) if matches!(e.downcast_ref::<StartupError>(), Some(StartupError::NotInitialised(_))) => {
            outln!("the database {} is not initialised yet (nothing to migrate)", cfg.database_display());
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    let version = node::build_version(cfg);
    match before {
        Some(b) if b.version < build.version => {
            outln!("database schema {} -> {} ({})", b.version, build.version, cfg.database_display());
        }
        Some(b) if b.version > build.version => outln!(
            "database schema {} is newer than this release's ({}) and compatible with it; nothing to do",
            b.version,
            build.version
        ),
        Some(_) => outln!("database schema is up to date for {version} ({})", cfg.database_display()),
        // PostgreSQL: the schema was read and migrated under the migration
        // lock inside `open`; it is now this release's or a newer compatible one.
        None => outln!(
            "database schema {} or a newer compatible one, up to date for {version} ({})",
            build.version,
            cfg.database_display()
        ),
    }
    Ok(())
}
