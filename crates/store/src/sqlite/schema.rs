//! Versioned migrations for the embedded database. Each migration runs in
//! one transaction with its version row, so a crash mid-upgrade leaves the
//! previous version intact.

use rusqlite::{Connection, OptionalExtension};
use tessera_core::store::StoreError;

use super::map_err;

/// (version, SQL). Append only; never edit a released migration.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_realms.sql")),
    (3, include_str!("../../migrations/sqlite/0003_inventory.sql")),
    (4, include_str!("../../migrations/sqlite/0004_audit_chain.sql")),
    (5, include_str!("../../migrations/sqlite/0005_oob.sql")),
    (6, include_str!("../../migrations/sqlite/0006_admins.sql")),
    (7, include_str!("../../migrations/sqlite/0007_replication.sql")),
    (8, include_str!("../../migrations/sqlite/0008_cluster_trust.sql")),
    (9, include_str!("../../migrations/sqlite/0009_radius_secret_rotation.sql")),
];

/// The newest migration's version.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The database's schema version; 0 for an empty (new) database.
pub fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    let has_table: Option<String> = conn
        .query_row("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(map_err)?;
    if has_table.is_none() {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(map_err)?;
        if tables > 0 {
            return Err(StoreError::Corrupt("the file is a SQLite database but not a tessera one".into()));
        }
        return Ok(0);
    }
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(map_err)
}

pub fn check_supported(version: i64) -> Result<(), StoreError> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
    }
    Ok(())
}

/// Applies every migration newer than the database, each atomically.
pub fn migrate(conn: &Connection, now_ms: i64) -> Result<(), StoreError> {
    let version = current_version(conn)?;
    check_supported(version)?;
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
        let tx = conn.unchecked_transaction().map_err(map_err)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .map_err(map_err)?;
        tx.execute_batch(sql).map_err(map_err)?;
        tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", (v, now_ms))
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        tracing::info!(version = v, "applied database migration");
    }
    Ok(())
}
