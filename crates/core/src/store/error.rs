//! The storage port's error, in a module of its own so that code which only
//! reports or maps store failures need not import the port itself.

use crate::keys::KeyError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database is corrupt or not a tessera database: {0}")]
    Corrupt(String),
    #[error(
        "database schema version {found} is newer than this tessera supports ({supported}) and not compatible with it; use a newer tessera"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// An upgrade's migrations failed; they run in one transaction, so the
    /// database is as the previous release left it.
    #[error(
        "upgrading the database from schema {from} to {to} failed at step {step}: {reason}; nothing was changed (the database is still at schema {from}, usable by the previous release)"
    )]
    MigrationFailed { from: i64, to: i64, step: i64, reason: String },
    #[error("master key does not match this database: {0}")]
    WrongKey(KeyError),
    #[error("database not initialised (run `tessera init`): {0}")]
    NotInitialised(String),
    #[error("database error: {0}")]
    Backend(String),
    /// A change refused because this node is a replica (the message names
    /// the primary; see `replication::read_only_message`).
    #[error("{0}")]
    ReadOnly(String),
    /// A change refused because this node is fenced: it may have been
    /// replaced as primary and has not confirmed its role (the message says
    /// why and what to run; see `replication::fencing`).
    #[error("{0}")]
    Fenced(String),
    /// The operation is not available through this store (a wrapper that
    /// does not pass it on).
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
}
