//! The rustls client configuration for LDAPS and StartTLS: trust anchors from
//! a CA file or the OS, or a pinned leaf certificate.
//!
//! Every path fails closed: a certificate that does not verify aborts the
//! handshake before a byte of LDAP (let alone a password) is sent. The
//! provider is aws-lc-rs, named explicitly so the process-wide default does
//! not matter.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::LdapError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the client configuration once, at `LdapSource::new`.
pub fn client_config(ca_file: Option<&Path>, pin: Option<[u8; 32]>) -> Result<Arc<ClientConfig>, LdapError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapError::Config(format!("TLS setup: {e}")))?;
    let config = if let Some(pin) = pin {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier { pin, algs }))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| LdapError::Config(format!("CA file {shown}: {e}")))?;
                for cert in certs {
                    let cert = cert.map_err(|e| LdapError::Config(format!("CA file {shown}: {e}")))?;
                    roots.add(cert).map_err(|e| LdapError::Config(format!("CA file {shown}: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(LdapError::Config(format!("CA file {shown} holds no PEM certificate")));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    // A malformed OS anchor is skipped, like every TLS client does.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(LdapError::Config(
                        "no trust anchors in the operating system store; set ca_file or pinned_sha256".into(),
                    ));
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Hex SHA-256 of a DER certificate, colon-separated (`ab:cd:…`), the form
/// `pinned_sha256` accepts and `openssl x509 -fingerprint -sha256` prints.
pub fn cert_sha256_hex(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[derive(Debug, thiserror::Error)]
#[error("the server certificate does not match the pinned SHA-256")]
struct PinMismatch;

/// Accepts exactly one leaf certificate (by SHA-256 of its DER), whoever
/// issued it and whatever name it carries, but still checks the handshake
/// signature: presenting the pinned certificate without its key fails.
#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = Sha256::digest(end_entity.as_ref());
        if bool::from(digest.as_slice().ct_eq(&self.pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(PinMismatch)))))
        }
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

/// For `LdapSource::test` only: records the certificate a server presents and
/// then *fails* the handshake, so an operator whose verification failed can
/// be shown what the server sent (to fix the CA file or pin it). Nothing is
/// ever sent over such a connection.
#[derive(Debug)]
pub(crate) struct CaptureVerifier {
    pub seen: Mutex<Option<Vec<u8>>>,
    algs: WebPkiSupportedAlgorithms,
}

#[derive(Debug, thiserror::Error)]
#[error("certificate captured for display; handshake deliberately aborted")]
struct Captured;

impl CaptureVerifier {
    /// `None` only if rustls rejects its own provider's defaults (then the
    /// capture is skipped; it is a diagnostic nicety).
    pub(crate) fn config() -> Option<(Arc<Self>, Arc<ClientConfig>)> {
        let provider = provider();
        let verifier =
            Arc::new(CaptureVerifier { seen: Mutex::new(None), algs: provider.signature_verification_algorithms });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Some((verifier, Arc::new(config)))
    }
}

impl ServerCertVerifier for CaptureVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.as_ref().to_vec());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Captured)))))
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
