//! tessera's I/O edge: configuration, node start-up (master key, data
//! directory, TLS), the HTTPS API, and the runtime that serves it.
//! Domain logic lives in `tessera-core`; storage in `tessera-store`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod clock_watch;
pub mod config;
pub mod directory;
pub mod hasher;
pub mod health;
pub mod http;
pub mod inventory_import;
pub mod key_watch;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod oob;
pub mod qr;
pub mod radius;
pub mod reload;
pub mod replication;
pub mod runtime;
pub mod scheduled_backup;
pub mod sd_notify;
pub mod syslog;
pub mod tls_reload;
