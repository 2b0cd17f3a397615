//! Implementations of [`tessera_core::store::Store`]: the embedded SQLite
//! backend (this crate's default) — PostgreSQL joins in the HA work — plus the
//! conformance suite every backend must pass (`tests/conformance.rs`).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod sqlite;

pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
