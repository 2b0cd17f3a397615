//! Versioned migrations for PostgreSQL (`migrations/postgres/`). Each runs
//! in one transaction with its version row, under an advisory lock, so
//! nodes starting together migrate once.

use deadpool_postgres::Client;
use tessera_core::store::StoreError;

use super::db::{map_err, opt};

/// (version, SQL). Append only; never edit a released migration.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_admins.sql")),
    (3, include_str!("../../migrations/postgres/0003_radius_secret_rotation.sql")),
];

/// The newest migration's version.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// An arbitrary constant: the advisory lock key for migrations.
const MIGRATION_LOCK: i64 = 0x7465_7373_6572_6101;

/// The database's schema version; 0 for an empty database.
pub async fn current_version(c: &Client) -> Result<i64, StoreError> {
    let has = opt(c, "SELECT to_regclass('schema_migrations')::text", &[]).await?;
    let has: Option<String> = match has {
        Some(r) => r.try_get(0).map_err(map_err)?,
        None => None,
    };
    if has.is_none() {
        let tables =
            opt(c, "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()", &[]).await?;
        let n: i64 = match tables {
            Some(r) => r.try_get(0).map_err(map_err)?,
            None => 0,
        };
        if n > 0 {
            return Err(StoreError::Corrupt("the database has tables but is not a tessera database".into()));
        }
        return Ok(0);
    }
    let r = opt(c, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?;
    Ok(match r {
        Some(r) => r.try_get(0).map_err(map_err)?,
        None => 0,
    })
}

pub fn check_supported(version: i64) -> Result<(), StoreError> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
    }
    Ok(())
}

/// Applies every migration newer than the database, each atomically.
pub async fn migrate(c: &mut Client, now_ms: i64) -> Result<(), StoreError> {
    for (v, sql) in MIGRATIONS {
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(map_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(map_err)?;
        let row =
            tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await.map_err(map_err)?;
        let current: i64 = row.try_get(0).map_err(map_err)?;
        check_supported(current)?;
        if *v <= current {
            tx.commit().await.map_err(map_err)?;
            continue;
        }
        tx.batch_execute(sql).await.map_err(map_err)?;
        tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", &[v, &now_ms])
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        tracing::info!(version = v, "applied PostgreSQL migration");
    }
    Ok(())
}
