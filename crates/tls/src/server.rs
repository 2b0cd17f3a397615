//! The server side of node client certificates: [`NodeClientVerifier`].
//!
//! It asks for a client certificate without requiring one, so the HTTPS
//! listener can serve browsers and API clients (no certificate) and tessera
//! nodes (a node certificate) on the same port. It authenticates possession
//! of the presented certificate's key and nothing more; which fingerprints
//! belong to trusted nodes is decided by the application after the
//! handshake, from `peer_certificates()`.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::{node_cert_dn, provider};

/// Offers client authentication, hinting [`crate::NODE_CERT_DN`], and takes
/// any well-formed end-entity certificate whose key signs the handshake.
#[derive(Debug)]
pub struct NodeClientVerifier {
    /// Exactly `[node_cert_dn()]`. Browsers only offer certificates whose
    /// issuer is in the hint, so an administrator with smart-card or
    /// corporate certificates is not prompted to pick one; an empty hint
    /// would mean "any certificate" and prompt them.
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl NodeClientVerifier {
    /// For `ServerConfig::builder…().with_client_cert_verifier(…)`.
    pub fn new() -> Arc<Self> {
        Arc::new(NodeClientVerifier { hints: vec![node_cert_dn()], algs: provider().signature_verification_algorithms })
    }
}

impl ClientCertVerifier for NodeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// Optional: clients without a certificate connect as before.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    /// No chain, name or date checks: node certificates are self-signed and
    /// recognised by fingerprint, so there is nothing to chain to. Only the
    /// encoding is checked, so garbage is refused here with a clear reason
    /// rather than later as a failed signature.
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match x509_parser::parse_x509_certificate(end_entity.as_ref()) {
            Ok(([], _)) => Ok(ClientCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(CertificateError::BadEncoding)),
        }
    }

    /// The real check: the client proves it holds the certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    /// The real check: the client proves it holds the certificate's key.
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
