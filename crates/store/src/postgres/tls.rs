//! TLS to PostgreSQL: the connector handed to the pool.
//!
//! Three modes, named after libpq's `sslmode` values with the same meaning:
//!
//! * `disable`: plain TCP (loopback or a trusted network only).
//! * `require`: TLS is mandatory (a server without TLS is refused, never
//!   silently used in clear), but the certificate is not checked. This stops
//!   passive eavesdropping only: anyone who can intercept the connection can
//!   impersonate the server. For a CA-less setup on a private network.
//! * `verify-full`: TLS, and the server certificate must chain to the CA file
//!   (or the operating system's trust anchors) and name the host of the URL.
//!
//! The verifiers, CA loading and the aws-lc-rs provider are tessera-tls's
//! (shared with the LDAP client); this file only maps `sslmode` names onto
//! its [`ServerTrust`] and its errors onto [`StoreError`].

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;
use tessera_core::store::StoreError;
use tessera_tls::{ServerTrust, TlsError};

/// How the pool's connections are protected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PgTls {
    /// Plain TCP.
    #[default]
    Disable,
    /// Encrypted, certificate not verified.
    Require,
    /// Encrypted; chain and host name verified against `ca_file` (PEM), or
    /// the operating system's trust anchors when `None`.
    VerifyFull { ca_file: Option<PathBuf> },
}

impl std::str::FromStr for PgTls {
    type Err = String;

    /// `disable`, `require` or `verify-full` (the CA file is set apart).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(PgTls::Disable),
            "require" => Ok(PgTls::Require),
            "verify-full" => Ok(PgTls::VerifyFull { ca_file: None }),
            other => Err(format!("database.tls must be disable, require or verify-full (got `{other}`)")),
        }
    }
}

/// The rustls client configuration for `mode`; `None` for `Disable`.
pub(crate) fn client_config(mode: &PgTls) -> Result<Option<Arc<ClientConfig>>, StoreError> {
    let trust = match mode {
        PgTls::Disable => return Ok(None),
        PgTls::Require => ServerTrust::Unverified,
        PgTls::VerifyFull { ca_file: Some(path) } => ServerTrust::CaFile(path.clone()),
        PgTls::VerifyFull { ca_file: None } => ServerTrust::System,
    };
    tessera_tls::client_config(&trust, None).map(Some).map_err(tls_err)
}

/// The store's edge for TLS errors: the backend error the operator sees,
/// prefixed like every other database TLS message.
fn tls_err(e: TlsError) -> StoreError {
    match e {
        // Only the database settings know what fixes an empty OS store.
        TlsError::NoSystemRoots => StoreError::Backend(format!("database TLS: {e}; set database.ca_file")),
        e => StoreError::Backend(format!("database TLS: {e}")),
    }
}
