//! tessera's TLS trust decisions in one place, so the LDAP client, the
//! PostgreSQL connector and replication agree on what "verified" and
//! "pinned" mean.
//!
//! * `pin.rs`: certificate fingerprints (SHA-256 of the DER) and pin parsing.
//! * `client.rs`: [`ServerTrust`] and [`client_config`], the rustls client
//!   configuration (OS roots, a CA file, a pinned leaf, or PostgreSQL's
//!   unverified `require`), plus [`CaptureVerifier`] for diagnostics.
//! * `node.rs`: a node's own certificate ([`ClientIdentity`],
//!   [`generate_node_identity`]) and the DN every node certificate shares.
//! * `server.rs`: [`NodeClientVerifier`], the server side of optional node
//!   client certificates.
//!
//! What it must not do: open sockets, read anything but the CA file (and the
//! OS trust store for [`ServerTrust::System`]), or decide who is authorised.
//! Certificates are identified here; whether a fingerprint belongs to a
//! trusted node is the application's lookup, after the handshake.
//!
//! The crypto provider is aws-lc-rs, named explicitly in every configuration
//! so the process-wide default provider (or its absence) does not matter.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod client;
mod error;
mod node;
mod pin;
mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use client::{CaptureVerifier, ServerTrust, client_config};
pub use error::TlsError;
pub use node::{
    ClientIdentity, MAX_NODE_NAME_LEN, NODE_CERT_DN, NODE_CERT_VALIDITY, NODE_NAME_URN_PREFIX, generate_node_identity,
    generate_node_identity_at, node_cert_dn, node_name_of,
};
pub use pin::{cert_sha256, cert_sha256_hex, parse_pin};
pub use server::NodeClientVerifier;

/// aws-lc-rs, the provider every configuration here is built with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
