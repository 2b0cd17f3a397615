//! The HMAC hash functions an OTP may be computed with.
//!
//! This module only names algorithms; it must not compute anything (see
//! `hotp`) and must not accept hash functions outside RFC 6238's set.

use core::fmt;
use core::str::FromStr;

use crate::error::OtpError;

/// Hash function used inside HMAC. RFC 6238 allows exactly these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// HMAC-SHA-1: the RFC 4226 default and what nearly every authenticator
    /// app assumes when nothing is said.
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    /// Every supported algorithm, in a stable order.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512];

    /// Canonical name, as written in `otpauth://` URIs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = OtpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Both spellings occur in the wild ("SHA-256" comes from RFC prose,
        // "SHA256" from the Key Uri Format), and casing varies by issuer.
        const NAMES: [(&str, Algorithm); 6] = [
            ("SHA1", Algorithm::Sha1),
            ("SHA-1", Algorithm::Sha1),
            ("SHA256", Algorithm::Sha256),
            ("SHA-256", Algorithm::Sha256),
            ("SHA512", Algorithm::Sha512),
            ("SHA-512", Algorithm::Sha512),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, alg)| alg)
            .ok_or(OtpError::UnknownAlgorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_spellings_case_insensitively() {
        for (s, alg) in [
            ("SHA1", Algorithm::Sha1),
            ("sha1", Algorithm::Sha1),
            ("Sha-1", Algorithm::Sha1),
            ("SHA256", Algorithm::Sha256),
            ("sha-256", Algorithm::Sha256),
            ("SHA512", Algorithm::Sha512),
            ("sHa-512", Algorithm::Sha512),
        ] {
            assert_eq!(s.parse::<Algorithm>(), Ok(alg), "{s}");
        }
    }

    #[test]
    fn rejects_other_names() {
        for s in ["", "SHA", "MD5", "SHA384", "SHA 1", " SHA1", "SHA1 ", "SHA_1", "SHA-1-"] {
            assert_eq!(s.parse::<Algorithm>(), Err(OtpError::UnknownAlgorithm), "{s:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.to_string(), alg.as_str());
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
        assert_eq!(Algorithm::default(), Algorithm::Sha1);
        assert_eq!(Algorithm::Sha256.to_string(), "SHA256");
    }
}
