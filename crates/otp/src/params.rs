//! Validated OTP parameters: digit count, time step and OTP kind.
//!
//! The newtypes here make unsupported values unrepresentable, so the rest of
//! the crate never re-checks them. This module must not accept values that
//! common authenticator apps silently mishandle (e.g. 7 digits, 15 s steps).

use core::fmt;

use crate::algorithm::Algorithm;
use crate::error::OtpError;

/// Number of digits in a code: 6 or 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digits(u8);

impl Digits {
    /// Six digits, the near-universal default.
    pub const SIX: Digits = Digits(6);
    /// Eight digits.
    pub const EIGHT: Digits = Digits(8);

    /// Validates a digit count.
    pub const fn new(digits: u8) -> Result<Digits, OtpError> {
        match digits {
            6 | 8 => Ok(Digits(digits)),
            other => Err(OtpError::InvalidDigits(other)),
        }
    }

    /// The digit count.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// `10^digits`, the modulus of RFC 4226 step 3.
    pub const fn modulus(self) -> u32 {
        10u32.pow(self.0 as u32)
    }
}

impl Default for Digits {
    fn default() -> Self {
        Digits::SIX
    }
}

impl TryFrom<u8> for Digits {
    type Error = OtpError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Digits::new(value)
    }
}

impl fmt::Display for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// TOTP time step in seconds: 30 or 60.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period(u32);

impl Period {
    /// Thirty seconds, the RFC 6238 recommendation.
    pub const THIRTY: Period = Period(30);
    /// Sixty seconds.
    pub const SIXTY: Period = Period(60);

    /// Validates a period.
    pub const fn new(seconds: u32) -> Result<Period, OtpError> {
        match seconds {
            30 | 60 => Ok(Period(seconds)),
            other => Err(OtpError::InvalidPeriod(other)),
        }
    }

    /// The period in seconds.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for Period {
    fn default() -> Self {
        Period::THIRTY
    }
}

impl TryFrom<u32> for Period {
    type Error = OtpError;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Period::new(value)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Counter-based or time-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtpKind {
    /// RFC 6238: the counter is the time step.
    Totp {
        /// Length of one time step.
        period: Period,
    },
    /// RFC 4226: the counter is stored and advanced by the server.
    Hotp,
}

impl OtpKind {
    /// The URI type name: `"totp"` or `"hotp"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OtpKind::Totp { .. } => "totp",
            OtpKind::Hotp => "hotp",
        }
    }

    /// The period, for TOTP.
    pub const fn period(self) -> Option<Period> {
        match self {
            OtpKind::Totp { period } => Some(period),
            OtpKind::Hotp => None,
        }
    }
}

impl Default for OtpKind {
    fn default() -> Self {
        OtpKind::Totp { period: Period::THIRTY }
    }
}

/// Everything needed to compute a code besides the secret and the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OtpParams {
    /// TOTP (with its period) or HOTP.
    pub kind: OtpKind,
    /// HMAC hash function.
    pub algorithm: Algorithm,
    /// Code length.
    pub digits: Digits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_bounds() {
        assert_eq!(Digits::new(6), Ok(Digits::SIX));
        assert_eq!(Digits::new(8), Ok(Digits::EIGHT));
        for bad in [0, 1, 5, 7, 9, 10, 255] {
            assert_eq!(Digits::new(bad), Err(OtpError::InvalidDigits(bad)));
        }
        assert_eq!(Digits::SIX.modulus(), 1_000_000);
        assert_eq!(Digits::EIGHT.modulus(), 100_000_000);
        assert_eq!(Digits::try_from(8u8).map(Digits::get), Ok(8));
    }

    #[test]
    fn period_bounds() {
        assert_eq!(Period::new(30), Ok(Period::THIRTY));
        assert_eq!(Period::new(60), Ok(Period::SIXTY));
        for bad in [0, 1, 15, 29, 31, 59, 61, 90, u32::MAX] {
            assert_eq!(Period::new(bad), Err(OtpError::InvalidPeriod(bad)));
        }
        assert_eq!(Period::SIXTY.get(), 60);
    }

    #[test]
    fn defaults_are_google_authenticator_defaults() {
        let p = OtpParams::default();
        assert_eq!(p.kind, OtpKind::Totp { period: Period::THIRTY });
        assert_eq!(p.algorithm, Algorithm::Sha1);
        assert_eq!(p.digits, Digits::SIX);
        assert_eq!(p.kind.period(), Some(Period::THIRTY));
        assert_eq!(OtpKind::Hotp.period(), None);
    }

    #[test]
    fn error_messages_name_the_bound() {
        assert_eq!(Digits::new(7).map(Digits::get).unwrap_err().to_string(), "digits must be 6 or 8, got 7");
        assert_eq!(
            Period::new(45).map(Period::get).unwrap_err().to_string(),
            "period must be 30 or 60 seconds, got 45"
        );
    }
}
