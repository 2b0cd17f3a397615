//! The rustls client configuration: which server certificates are trusted
//! ([`ServerTrust`]) and, optionally, which certificate this side presents.
//!
//! Every verifying mode fails closed: a certificate that does not verify
//! aborts the handshake before a byte of application data (a password, a
//! query, a join token) is sent. Every verifier here, including the ones that
//! take any certificate, still checks the handshake signature with the
//! presented certificate's key, so replaying someone's certificate without
//! its private key fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use subtle::ConstantTimeEq;

use crate::{ClientIdentity, TlsError, cert_sha256, provider};

/// Which server certificates a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// The operating system's trust anchors; the chain and the host name are
    /// verified (webpki).
    System,
    /// The PEM trust anchors in this file instead of the OS ones; the chain
    /// and the host name are verified.
    CaFile(PathBuf),
    /// Exactly one leaf certificate, by the SHA-256 of its DER, whoever
    /// issued it and whatever name it carries (self-signed peers). Takes the
    /// place of chain verification; an expired pinned certificate still
    /// works, because the operator chose that very certificate.
    Pinned([u8; 32]),
    /// Any certificate: encrypted but **not authenticated**. Only for
    /// PostgreSQL's `sslmode=require` (libpq's meaning: no root file), which
    /// stops passive eavesdropping and nothing else; anyone who can intercept
    /// the connection can present a certificate of their own. Never use it
    /// where a password or token crosses the connection to an unknown peer
    /// by choice of the code rather than of the operator.
    Unverified,
}

/// Builds a client configuration (aws-lc-rs, rustls' safe default protocol
/// versions) that trusts servers as `trust` says and, with `identity`,
/// presents that certificate when the server asks (mutual TLS). Reads the CA
/// file (or the OS store) once, here; build it once and share the `Arc`.
pub fn client_config(trust: &ServerTrust, identity: Option<&ClientIdentity>) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let builder =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(TlsError::Setup)?;
    let builder = match trust {
        ServerTrust::System => builder.with_root_certificates(system_roots()?),
        ServerTrust::CaFile(path) => builder.with_root_certificates(file_roots(path)?),
        ServerTrust::Pinned(pin) => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedVerifier { pin: *pin, algs }))
        }
        ServerTrust::Unverified => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(UnverifiedVerifier { algs }))
        }
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(certified_key(identity)?))),
    };
    Ok(Arc::new(config))
}

/// The identity as rustls' signing key and certificate, checked to belong
/// together. Built from a borrowed key (rather than through
/// `with_client_auth_cert`, which wants an owned `PrivateKeyDer`) so no
/// second, never-zeroized copy of the key DER is left on the heap.
fn certified_key(identity: &ClientIdentity) -> Result<Arc<CertifiedKey>, TlsError> {
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.as_slice()));
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der).map_err(TlsError::ClientIdentity)?;
    let certified = CertifiedKey::new(vec![CertificateDer::from(identity.cert_der.clone())], key);
    // A key that is not the certificate's would only fail at the peer, as a
    // vague bad signature; say so at configuration time instead.
    certified.keys_match().map_err(TlsError::ClientIdentity)?;
    Ok(Arc::new(certified))
}

/// Presents the one identity whatever the server's hint: the servers this
/// configuration talks to are tessera nodes, whose hint names this very
/// certificate's issuer anyway.
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A malformed OS anchor is skipped, like every TLS client does; an
        // operator cannot fix the distribution's bundle.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}

fn file_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|source| TlsError::CaFileUnreadable { path: path.to_path_buf(), source })?;
    for cert in certs {
        // Unlike the OS store, a bad certificate in the operator's own file
        // is an error: silently trusting fewer anchors than configured
        // would show up much later as unexplained handshake failures.
        let cert = cert.map_err(|source| TlsError::CaFileUnreadable { path: path.to_path_buf(), source })?;
        roots.add(cert).map_err(|source| TlsError::CaFileCertificate { path: path.to_path_buf(), source })?;
    }
    if roots.is_empty() {
        return Err(TlsError::CaFileEmpty { path: path.to_path_buf() });
    }
    Ok(roots)
}

/// [`ServerTrust::Pinned`]: accepts exactly one leaf certificate.
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
        // Constant time out of habit: the pin is not secret, but this keeps
        // every digest comparison in the code base the same shape.
        if bool::from(cert_sha256(end_entity.as_ref()).ct_eq(&self.pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(TlsError::PinMismatch.into_certificate_error())
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

/// [`ServerTrust::Unverified`]: any certificate is taken (libpq's
/// `sslmode=require` without a root file), but the handshake signatures are
/// still checked, so the session keys belong to whoever holds the presented
/// certificate's key.
#[derive(Debug)]
struct UnverifiedVerifier {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for UnverifiedVerifier {
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

/// Records the certificate a server presents and then *fails* the
/// handshake, so an operator whose verification failed can be shown what
/// the server sent (to fix the CA file or pin it). Nothing is ever sent over
/// a connection using it: the refusal comes before any application data.
#[derive(Debug)]
pub struct CaptureVerifier {
    seen: Mutex<Option<Vec<u8>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl CaptureVerifier {
    /// A fresh verifier and a client configuration that uses it. One per
    /// capture: the verifier keeps the last certificate it saw.
    pub fn config() -> Result<(Arc<Self>, Arc<ClientConfig>), TlsError> {
        let provider = provider();
        let verifier =
            Arc::new(CaptureVerifier { seen: Mutex::new(None), algs: provider.signature_verification_algorithms });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok((verifier, Arc::new(config)))
    }

    /// The DER of the end-entity certificate the server presented, if a
    /// handshake got that far.
    pub fn take(&self) -> Option<Vec<u8>> {
        // A poisoned lock only means a panic elsewhere mid-store; the
        // capture is a diagnostic, so give up on it quietly.
        self.seen.lock().ok()?.take()
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
        Err(TlsError::Captured.into_certificate_error())
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
