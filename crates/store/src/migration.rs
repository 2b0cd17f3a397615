//! What both backends' migration lists are made of (`sqlite::schema`,
//! `postgres::schema`): a step, whether it keeps the previous release
//! working, and the window a list of steps gives the database.

use tessera_core::replication::compat::SchemaWindow;
use tessera_core::store::StoreError;

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub sql: &'static str,
    /// The oldest schema version a build may have and still use a database
    /// this migration was applied to: `version - 1` for an expanding
    /// migration, `version` (or more) for one that removes or changes what
    /// an older build reads.
    pub compatible_from: i64,
}

/// A migration that removes or changes what the previous release uses.
pub const fn breaking(version: i64, sql: &'static str) -> Migration {
    Migration { version, sql, compatible_from: version }
}

/// A migration that only adds what the previous release ignores.
pub const fn expanding(version: i64, sql: &'static str) -> Migration {
    Migration { version, sql, compatible_from: version - 1 }
}

/// The schema a build with `migrations` has, and the oldest it works beside.
pub fn window_of(migrations: &[Migration]) -> SchemaWindow {
    let last = migrations[migrations.len() - 1];
    SchemaWindow {
        version: last.version,
        compatible_from: migrations.iter().map(|m| m.compatible_from).max().unwrap_or(last.version),
    }
}

/// Whether a build with schema `build` can use a database with `db`'s
/// schema: an older one it migrates, a newer one only inside its window.
pub fn check_usable(db: SchemaWindow, build: i64) -> Result<(), StoreError> {
    if db.version > build && !db.usable_by(build) {
        return Err(StoreError::SchemaTooNew { found: db.version, supported: build });
    }
    Ok(())
}
