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
//! The provider is aws-lc-rs, named explicitly (as in the LDAP client) so the
//! process-wide default does not matter.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tessera_core::store::StoreError;

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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_err(msg: String) -> StoreError {
    StoreError::Backend(format!("database TLS: {msg}"))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| tls_err(format!("CA file {shown}: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_err(format!("CA file {shown}: {e}")))?;
                roots.add(cert).map_err(|e| tls_err(format!("CA file {shown}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(tls_err(format!("CA file {shown} holds no PEM certificate")));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A malformed OS anchor is skipped, like every TLS client does.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(tls_err("no trust anchors in the operating system store; set database.ca_file".into()));
            }
        }
    }
    Ok(roots)
}

/// The rustls client configuration for `mode`; `None` for `Disable`.
pub(crate) fn client_config(mode: &PgTls) -> Result<Option<ClientConfig>, StoreError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let builder = || {
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))
    };
    Ok(match mode {
        PgTls::Disable => None,
        PgTls::Require => Some(
            builder()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified { algs }))
                .with_no_client_auth(),
        ),
        PgTls::VerifyFull { ca_file } => {
            Some(builder()?.with_root_certificates(roots(ca_file.as_deref())?).with_no_client_auth())
        }
    })
}

/// `require`: any certificate is taken (libpq's `sslmode=require` without a
/// root file), but the handshake signatures are still checked, so the
/// session keys belong to whoever holds the presented certificate's key.
#[derive(Debug)]
struct Unverified {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
