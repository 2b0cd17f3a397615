//! Submitted one-time codes, checked for shape before any HMAC is computed.
//!
//! Parsing is strict (no trimming, no separators) so that exactly one string
//! corresponds to each code. This module must not compare codes (that is the
//! constant-time job of `verify`) and must not reveal a code in Debug output
//! or error messages.

use core::fmt;

use crate::error::OtpError;
use crate::params::Digits;

/// A syntactically valid code: exactly `digits` ASCII digits.
///
/// The numeric value is computed once here so verification compares
/// integers without allocating or formatting anything.
#[derive(Clone)]
pub struct Code {
    text: String,
    value: u32,
    digits: Digits,
}

impl Code {
    /// Accepts exactly `digits` ASCII digits and nothing else.
    pub fn parse(input: &str, digits: Digits) -> Result<Code, OtpError> {
        let bytes = input.as_bytes();
        if bytes.len() != usize::from(digits.get()) || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(OtpError::InvalidCode { expected: digits.get() });
        }
        // At most 8 digits, so this fits in u32 without overflow.
        let value = bytes.iter().fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
        Ok(Code { text: input.to_owned(), value, digits })
    }

    /// The code as submitted.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The digit count this code was parsed for.
    pub fn digits(&self) -> Digits {
        self.digits
    }

    /// Numeric value, for constant-time comparison with a computed code.
    pub(crate) fn value(&self) -> u32 {
        self.value
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code([REDACTED; {} digits])", self.digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exact_digits() {
        let c = Code::parse("012345", Digits::SIX).unwrap();
        assert_eq!(c.as_str(), "012345");
        assert_eq!(c.value(), 12345);
        assert_eq!(c.digits(), Digits::SIX);
        let c = Code::parse("99999999", Digits::EIGHT).unwrap();
        assert_eq!(c.value(), 99_999_999);
        assert_eq!(Code::parse("000000", Digits::SIX).unwrap().value(), 0);
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "12345",
            "1234567",
            " 123456",
            "123456 ",
            "123 456",
            "123-456",
            "12345a",
            "+12345",
            "-12345",
            "１２３４５６", // full-width digits
            "12345\u{0}",
            "12345٣", // Arabic-Indic digit
        ] {
            assert_eq!(
                Code::parse(bad, Digits::SIX).map(|c| c.value()),
                Err(OtpError::InvalidCode { expected: 6 }),
                "{bad:?}"
            );
        }
        assert!(Code::parse("123456", Digits::EIGHT).is_err());
        assert!(Code::parse("12345678", Digits::SIX).is_err());
    }

    #[test]
    fn debug_and_errors_hide_the_code() {
        let c = Code::parse("424242", Digits::SIX).unwrap();
        assert_eq!(format!("{c:?}"), "Code([REDACTED; 6 digits])");
        let e = Code::parse("42424x", Digits::SIX).unwrap_err();
        assert_eq!(e.to_string(), "code must be exactly 6 ASCII digits");
    }
}
