//! The single error type of the OTP engine.
//!
//! Messages name the bound that was broken and must never contain secret
//! material, a submitted code or any other caller input: these errors end up
//! in logs and API responses.

use thiserror::Error;

/// Everything that can go wrong while building OTP inputs.
///
/// Verification itself never errors: a code that does not match is `None`,
/// not an error, so callers cannot accidentally tell "malformed" from "wrong"
/// apart in a way that leaks through differing responses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OtpError {
    /// Digit count outside the supported set.
    #[error("digits must be 6 or 8, got {0}")]
    InvalidDigits(u8),

    /// Time step outside the supported set.
    #[error("period must be 30 or 60 seconds, got {0}")]
    InvalidPeriod(u32),

    /// Algorithm name not recognised.
    #[error("algorithm must be one of SHA1, SHA256, SHA512")]
    UnknownAlgorithm,

    /// Secret (decoded) length outside the accepted range.
    #[error("secret must be {min} to {max} bytes long, got {len}")]
    SecretLength {
        /// Decoded length that was offered.
        len: usize,
        /// Smallest accepted length.
        min: usize,
        /// Largest accepted length.
        max: usize,
    },

    /// Secret text is not RFC 4648 base32.
    #[error("secret is not valid base32 (alphabet A-Z and 2-7, optional '=' padding at the end)")]
    InvalidBase32,

    /// Secret text is not hexadecimal.
    #[error("secret is not valid hex (an even number of 0-9, a-f, A-F characters)")]
    InvalidHex,

    /// The caller's fill function produced output that cannot be random.
    #[error("randomness source returned degenerate output")]
    DegenerateRandomness,

    /// A submitted code does not have the expected shape.
    #[error("code must be exactly {expected} ASCII digits")]
    InvalidCode {
        /// Number of digits expected.
        expected: u8,
    },

    /// An `otpauth://` URI longer than the accepted bound.
    #[error("otpauth URI must be at most {max} bytes")]
    UriTooLong {
        /// Largest accepted length in bytes.
        max: usize,
    },

    /// An `otpauth://` URI that breaks the Key Uri Format.
    #[error("invalid otpauth URI: {reason}")]
    InvalidUri {
        /// Which rule was broken.
        reason: &'static str,
    },
}
