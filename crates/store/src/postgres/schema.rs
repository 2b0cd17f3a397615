//! Versioned migrations for PostgreSQL (`migrations/postgres/`): every
//! pending one in one transaction with their version rows, under an
//! advisory lock, so nodes starting together migrate once. Each migration
//! says which builds can still use the database (see `sqlite::schema`).

use tessera_core::replication::compat::SchemaWindow;
use tessera_core::store::StoreError;
use tokio_postgres::GenericClient;

pub use crate::migration::Migration;
use crate::migration::{breaking, check_usable, expanding, window_of};

use super::db::map_err;

/// Append only; never edit a released migration. 1-2 predate the
/// compatibility window and are recorded as breaking (see
/// `crate::migration`).
pub const MIGRATIONS: &[Migration] = &[
    breaking(1, include_str!("../../migrations/postgres/0001_init.sql")),
    breaking(2, include_str!("../../migrations/postgres/0002_admins.sql")),
    // RADIUS secret rotation: nullable columns only (an older release ignores them).
    expanding(3, include_str!("../../migrations/postgres/0003_radius_secret_rotation.sql")),
];

/// The newest migration's version.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// An arbitrary constant: the advisory lock key for migrations.
const MIGRATION_LOCK: i64 = 0x7465_7373_6572_6101;

/// This build's schema and the oldest schema it works beside.
pub fn build_window() -> SchemaWindow {
    window_of(MIGRATIONS)
}

/// The database's schema version; 0 for an empty database.
pub async fn current_version(c: &impl GenericClient) -> Result<i64, StoreError> {
    Ok(current_window(c).await?.version)
}

/// The database's schema version and the oldest build schema that may use
/// it; version 0 for an empty database.
pub async fn current_window(c: &impl GenericClient) -> Result<SchemaWindow, StoreError> {
    let has = c.query_opt("SELECT to_regclass('schema_migrations')::text", &[]).await.map_err(map_err)?;
    let has: Option<String> = match has {
        Some(r) => r.try_get(0).map_err(map_err)?,
        None => None,
    };
    if has.is_none() {
        let n: i64 = c
            .query_one("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()", &[])
            .await
            .map_err(map_err)?
            .try_get(0)
            .map_err(map_err)?;
        if n > 0 {
            return Err(StoreError::Corrupt("the database has tables but is not a tessera database".into()));
        }
        return Ok(SchemaWindow { version: 0, compatible_from: 0 });
    }
    let version: i64 = c
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await
        .map_err(map_err)?
        .try_get(0)
        .map_err(map_err)?;
    // Rows written before the window existed have no `compatible_from`.
    let compatible_from = if has_compat_column(c).await? {
        c.query_one("SELECT COALESCE(MAX(COALESCE(compatible_from, version)), 0) FROM schema_migrations", &[])
            .await
            .map_err(map_err)?
            .try_get(0)
            .map_err(map_err)?
    } else {
        version
    };
    Ok(SchemaWindow { version, compatible_from })
}

async fn has_compat_column(c: &impl GenericClient) -> Result<bool, StoreError> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations' AND column_name = 'compatible_from'",
            &[],
        )
        .await
        .map_err(map_err)?
        .try_get(0)
        .map_err(map_err)?;
    Ok(n > 0)
}

/// Whether this build can use a database with `db`'s schema: an older one
/// it migrates, a newer one only inside that schema's window.
pub fn check_supported(db: SchemaWindow) -> Result<(), StoreError> {
    check_usable(db, SCHEMA_VERSION)
}

/// Applies every migration newer than the database in one transaction,
/// under an advisory lock, so nodes starting together migrate once and an
/// upgrade that fails leaves the database as the previous release left it.
pub async fn migrate(c: &mut tokio_postgres::Client, now_ms: i64) -> Result<(), StoreError> {
    migrate_with(c, MIGRATIONS, now_ms).await
}

/// [`migrate`] with a given migration list (tests make one fail half-way).
pub async fn migrate_with(
    c: &mut tokio_postgres::Client,
    migrations: &[Migration],
    now_ms: i64,
) -> Result<(), StoreError> {
    let build = window_of(migrations);
    let tx = c.transaction().await.map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(map_err)?;
    let db = current_window(&tx).await?;
    check_usable(db, build.version)?;
    let pending: Vec<&Migration> = migrations.iter().filter(|m| m.version > db.version).collect();
    let Some(last) = pending.last() else {
        tx.commit().await.map_err(map_err)?;
        return Ok(());
    };
    let failed = |step: i64, e: StoreError| StoreError::MigrationFailed {
        from: db.version,
        to: last.version,
        step,
        reason: e.to_string(),
    };
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL); \
         ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS compatible_from BIGINT",
    )
    .await
    .map_err(|e| failed(pending[0].version, map_err(e)))?;
    for m in &pending {
        tx.batch_execute(m.sql).await.map_err(|e| failed(m.version, map_err(e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at, compatible_from) VALUES ($1, $2, $3)",
            &[&m.version, &now_ms, &m.compatible_from],
        )
        .await
        .map_err(|e| failed(m.version, map_err(e)))?;
    }
    tx.commit().await.map_err(|e| failed(last.version, map_err(e)))?;
    tracing::info!(from = db.version, to = last.version, "applied PostgreSQL migrations");
    Ok(())
}
