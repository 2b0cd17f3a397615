//! The LDAP / Active Directory first-factor source: checks a user's
//! password by binding as the user (from a DN/UPN template, or after a
//! service-account search), over LDAPS or StartTLS with a CA file, the OS
//! trust anchors or a pinned certificate, with failover between servers,
//! pooled connections, and the user's attributes and group names.
//!
//! It answers with an [`LdapVerdict`] (accepted / wrong password / unknown
//! user / refused) or an [`LdapError`] when no verdict could be had. It does
//! not decide policy, cache anything or know about OTPs; the server adapts
//! it to the core's `Directory` port.
//!
//! * `config.rs`: [`LdapConfig`] and its validation (no I/O).
//! * `escape.rs`: RFC 4515 / RFC 4514 escaping (pure).
//! * `verdict.rs`: result types and bind-result mapping (pure).
//! * `source.rs`: [`LdapSource`], the only code with sockets.
//! * `testing` (feature `test-support`): a private OpenLDAP `slapd` for tests.
//!
//! TLS trust (CA file, OS anchors, pin) and its verifiers live in
//! tessera-tls, shared with the PostgreSQL connector; `config.rs` only says
//! which [`tessera_tls::ServerTrust`] the settings amount to.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod config;
mod escape;
mod source;
mod verdict;

#[cfg(feature = "test-support")]
pub mod testing;

pub use config::{
    BindMode, DEFAULT_CONNECT_TIMEOUT, DEFAULT_OP_TIMEOUT, DEFAULT_POOL_SIZE, GroupMode, LdapConfig, MAX_POOL_SIZE,
    MAX_URLS,
};
pub use escape::{escape_dn_value, escape_filter_value, first_rdn_value};
pub use source::{IDLE_MAX, LdapSource, MAX_GROUPS, MAX_PASSWORD_LEN, MAX_USERNAME_LEN};
pub use verdict::{DirectoryUser, LdapError, LdapVerdict, ServerCheck};
