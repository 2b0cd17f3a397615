//! [`TlsError`], the one error type of this crate. Messages name the file or
//! the bound that was broken and never carry key material.

use std::path::PathBuf;

use rustls::pki_types::pem;

/// Why a TLS configuration, pin or identity could not be had, or (as the
/// payload of a rustls certificate error) why a handshake was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A pin that is not 32 bytes of hex (colons and whitespace allowed).
    #[error("the pin must be the certificate's SHA-256 (64 hex digits)")]
    BadPin,
    /// The CA file could not be read or is not PEM.
    #[error("CA file {}: {source}", path.display())]
    CaFileUnreadable { path: PathBuf, source: pem::Error },
    /// A certificate in the CA file is not a usable trust anchor.
    #[error("CA file {}: {source}", path.display())]
    CaFileCertificate { path: PathBuf, source: rustls::Error },
    /// The CA file is readable but holds no certificate: almost certainly
    /// the wrong file (a key, an empty placeholder), so refuse rather than
    /// trust nothing and fail every handshake later.
    #[error("CA file {} holds no PEM certificate", path.display())]
    CaFileEmpty { path: PathBuf },
    /// [`crate::ServerTrust::System`] found no usable anchor in the OS
    /// store (a minimal container without `ca-certificates`). Callers add
    /// the setting that fixes it, which only they know.
    #[error("no trust anchors in the operating system store")]
    NoSystemRoots,
    /// rustls refused the configuration itself (protocol versions of the
    /// provider): a build problem, not an operator's.
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
    /// The client identity's key is unusable or is not the key of its
    /// certificate.
    #[error("client certificate: {0}")]
    ClientIdentity(rustls::Error),
    /// A node name that is empty or longer than
    /// [`crate::MAX_NODE_NAME_LEN`] bytes.
    #[error("the node name must be 1 to {max} bytes (got {len})", max = crate::MAX_NODE_NAME_LEN)]
    NodeName { len: usize },
    /// rcgen could not make the key or the certificate.
    #[error("generating the node certificate: {0}")]
    Generate(rcgen::Error),
    /// Handshake refusal: the server's certificate is not the pinned one.
    /// Carried inside `rustls::CertificateError::Other`.
    #[error("the server certificate does not match the pinned SHA-256")]
    PinMismatch,
    /// Handshake refusal by [`crate::CaptureVerifier`], on purpose.
    #[error("certificate captured for display; handshake deliberately aborted")]
    Captured,
}

impl TlsError {
    /// This error as the reason a rustls verifier refuses a certificate;
    /// rustls shows it by `Display` through `OtherError`, and callers can
    /// downcast it back.
    pub(crate) fn into_certificate_error(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
            self,
        ))))
    }
}
