//! The crate's error: only set-up can fail. Everything that goes wrong while
//! talking to Entra is an [`crate::Outcome`] (usually `Unavailable`), never an
//! error, so a caller cannot mistake it for a verdict.

/// A configuration or set-up problem found by [`crate::EntraSource::new`].
/// Messages name the setting and the rule it broke; they never contain the
/// client secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntraError {
    /// A setting breaks its rule.
    #[error("entra: invalid {field}: {reason}")]
    InvalidConfig {
        /// The setting, as named in [`crate::EntraConfig`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The extra CA file cannot be read or holds no certificate.
    #[error("entra: CA file {path}: {reason}")]
    CaFile {
        /// The file, as configured.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// reqwest refused to build the HTTPS client.
    #[error("entra: cannot build the HTTPS client: {0}")]
    Client(String),
}

impl EntraError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        EntraError::InvalidConfig { field, reason: reason.into() }
    }
}
