//! Implementations of [`tessera_core::store::Store`]: the embedded SQLite
//! backend (this crate's default), the PostgreSQL backend for several nodes
//! (`postgres`, issue 5, in progress), plus the
//! conformance suite every backend must pass (`tests/conformance.rs`).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod migration;
pub mod postgres;
pub mod sqlite;

pub use postgres::{PgOptions, PgStore, PgTls, redact_url};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
