//! Versioned migrations for the embedded database.
//!
//! Every pending migration runs in **one** transaction with its version
//! rows, so an upgrade that fails anywhere (or a crash mid-upgrade) leaves
//! the database exactly as the previous release left it.
//!
//! Each migration says which builds can still use the database after it
//! (`compatible_from`, see `tessera_core::replication::compat`): an
//! *expanding* migration (only adds what older builds ignore) keeps the
//! previous release's number, so a database a newer build migrated still
//! opens with the previous build (a rollback, an old node on a shared
//! database, an old replica of a new primary).

use rusqlite::{Connection, OptionalExtension};
use tessera_core::replication::compat::SchemaWindow;
use tessera_core::store::StoreError;

use super::map_err;

pub use crate::migration::Migration;
use crate::migration::{breaking, check_usable, expanding, window_of};

/// Append only; never edit a released migration. Migrations 1-8 predate
/// the compatibility window and are recorded as breaking.
pub const MIGRATIONS: &[Migration] = &[
    breaking(1, include_str!("../../migrations/sqlite/0001_init.sql")),
    breaking(2, include_str!("../../migrations/sqlite/0002_realms.sql")),
    breaking(3, include_str!("../../migrations/sqlite/0003_inventory.sql")),
    breaking(4, include_str!("../../migrations/sqlite/0004_audit_chain.sql")),
    breaking(5, include_str!("../../migrations/sqlite/0005_oob.sql")),
    breaking(6, include_str!("../../migrations/sqlite/0006_admins.sql")),
    breaking(7, include_str!("../../migrations/sqlite/0007_replication.sql")),
    breaking(8, include_str!("../../migrations/sqlite/0008_cluster_trust.sql")),
    // RADIUS secret rotation: nullable columns only (an older release ignores them).
    expanding(9, include_str!("../../migrations/sqlite/0009_radius_secret_rotation.sql")),
];

/// The newest migration's version.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// This build's schema and the oldest schema it works beside.
pub fn build_window() -> SchemaWindow {
    window_of(MIGRATIONS)
}

/// The database's schema version; 0 for an empty (new) database.
pub fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(current_window(conn)?.version)
}

/// The database's schema version and the oldest build schema that may use
/// it; version 0 for an empty (new) database.
pub fn current_window(conn: &Connection) -> Result<SchemaWindow, StoreError> {
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
        return Ok(SchemaWindow { version: 0, compatible_from: 0 });
    }
    let version: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(map_err)?;
    // Rows written before the window existed have no `compatible_from`:
    // each counts as breaking (its own version).
    let compatible_from: i64 = if has_compat_column(conn)? {
        conn.query_row("SELECT COALESCE(MAX(COALESCE(compatible_from, version)), 0) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(map_err)?
    } else {
        version
    };
    Ok(SchemaWindow { version, compatible_from })
}

fn has_compat_column(conn: &Connection) -> Result<bool, StoreError> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('schema_migrations') WHERE name = 'compatible_from'",
            [],
            |r| r.get(0),
        )
        .map_err(map_err)?;
    Ok(n > 0)
}

/// Whether this build can use a database with `db`'s schema: an older one
/// it migrates, a newer one only inside that schema's window.
pub fn check_supported(db: SchemaWindow) -> Result<(), StoreError> {
    check_usable(db, SCHEMA_VERSION)
}

/// Applies every migration newer than the database, all in one transaction.
pub fn migrate(conn: &Connection, now_ms: i64) -> Result<(), StoreError> {
    migrate_with(conn, MIGRATIONS, now_ms)
}

/// [`migrate`] with a given migration list (tests make one fail half-way).
/// A failure names the step and says the database was left unchanged.
pub fn migrate_with(conn: &Connection, migrations: &[Migration], now_ms: i64) -> Result<(), StoreError> {
    let db = current_window(conn)?;
    let build = window_of(migrations);
    check_usable(db, build.version)?;
    let pending: Vec<&Migration> = migrations.iter().filter(|m| m.version > db.version).collect();
    let Some(last) = pending.last() else { return Ok(()) };
    let failed = |step: i64, e: StoreError| StoreError::MigrationFailed {
        from: db.version,
        to: last.version,
        step,
        reason: e.to_string(),
    };
    let tx = conn.unchecked_transaction().map_err(map_err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(|e| failed(pending[0].version, map_err(e)))?;
    if !has_compat_column(&tx)? {
        tx.execute_batch("ALTER TABLE schema_migrations ADD COLUMN compatible_from INTEGER")
            .map_err(|e| failed(pending[0].version, map_err(e)))?;
    }
    for m in &pending {
        tx.execute_batch(m.sql).map_err(|e| failed(m.version, map_err(e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at, compatible_from) VALUES (?1, ?2, ?3)",
            (m.version, now_ms, m.compatible_from),
        )
        .map_err(|e| failed(m.version, map_err(e)))?;
    }
    tx.commit().map_err(|e| failed(last.version, map_err(e)))?;
    tracing::info!(from = db.version, to = last.version, "applied database migrations");
    Ok(())
}

/// The schema of the database file at `path`, read without writing; `None`
/// when there is no file yet.
pub fn window_of_file(path: &std::path::Path) -> Result<Option<SchemaWindow>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(map_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(map_err)?;
    current_window(&conn).map(Some)
}
