//! Shared-secret key material: import (base32, hex, raw), generation from a
//! caller-supplied fill function, and export as base32.
//!
//! Secrets live only in zeroizing buffers. This module must not print key
//! bytes (Debug is redacted), must not hold a randomness source of its own,
//! and must not leave decoded key bytes in unzeroized temporaries.

use core::fmt;
use std::sync::LazyLock;

use data_encoding::{BASE32_NOPAD, Encoding, Specification};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::OtpError;

/// Smallest accepted secret. RFC 4226 demands 128 bits, but 80-bit keys are
/// what many legacy hardware tokens and early authenticator enrolments used,
/// and refusing them would strand those users on import.
pub const MIN_SECRET_LEN: usize = 10;

/// Largest accepted secret: a full SHA-512 block, beyond which HMAC hashes the
/// key down anyway, so longer keys only cost memory.
pub const MAX_SECRET_LEN: usize = 128;

/// Length of newly generated secrets: the 160 bits RFC 4226 recommends.
pub const GENERATED_SECRET_LEN: usize = 20;

/// Longest base32 text (without padding) that can decode to an acceptable
/// secret; bounds the scratch buffer so it is never reallocated.
const MAX_BASE32_SYMBOLS: usize = (MAX_SECRET_LEN * 8).div_ceil(5);

/// Base32 decoder that ignores the unused low bits of the last symbol.
/// Issuers that draw secrets as random base32 text (rather than encoding
/// random bytes) produce non-zero trailing bits, and authenticator apps
/// accept those, so import must too.
static LENIENT_BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    spec.check_trailing_bits = false;
    // The specification is a constant, so this cannot fail; falling back to
    // the strict decoder keeps the crate panic-free regardless.
    spec.encoding().unwrap_or_else(|_| BASE32_NOPAD.clone())
});

/// An HMAC key shared with the user's authenticator.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of raw key bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Secret, OtpError> {
        // Wrap first so the bytes are wiped even when rejected.
        let bytes = Zeroizing::new(bytes);
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(OtpError::SecretLength { len: bytes.len(), min: MIN_SECRET_LEN, max: MAX_SECRET_LEN });
        }
        Ok(Secret(bytes))
    }

    /// Decodes RFC 4648 base32 the way people paste it: case-insensitive,
    /// spaces and `-` ignored (apps display secrets in groups), trailing `=`
    /// padding optional. Any other character is an error.
    pub fn from_base32(input: &str) -> Result<Secret, OtpError> {
        let mut symbols = Zeroizing::new(Vec::with_capacity(MAX_BASE32_SYMBOLS));
        let mut count: usize = 0;
        let mut seen_padding = false;
        for b in input.bytes() {
            match b {
                b' ' | b'-' => {}
                b'=' => seen_padding = true,
                b'A'..=b'Z' | b'a'..=b'z' | b'2'..=b'7' => {
                    if seen_padding {
                        return Err(OtpError::InvalidBase32);
                    }
                    count = count.saturating_add(1);
                    if symbols.len() < MAX_BASE32_SYMBOLS {
                        symbols.push(b.to_ascii_uppercase());
                    }
                }
                _ => return Err(OtpError::InvalidBase32),
            }
        }
        if count > MAX_BASE32_SYMBOLS {
            return Err(OtpError::SecretLength {
                len: count / 8 * 5 + count % 8 * 5 / 8,
                min: MIN_SECRET_LEN,
                max: MAX_SECRET_LEN,
            });
        }
        let encoding = &*LENIENT_BASE32;
        let len = encoding.decode_len(symbols.len()).map_err(|_| OtpError::InvalidBase32)?;
        let mut out = Zeroizing::new(vec![0u8; len]);
        let written = encoding.decode_mut(&symbols, &mut out).map_err(|_| OtpError::InvalidBase32)?;
        out.truncate(written);
        Secret::from_bytes(core::mem::take(&mut *out))
    }

    /// Decodes hexadecimal (either case, no separators).
    pub fn from_hex(input: &str) -> Result<Secret, OtpError> {
        if !input.len().is_multiple_of(2) {
            return Err(OtpError::InvalidHex);
        }
        let len = input.len() / 2;
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&len) {
            return Err(OtpError::SecretLength { len, min: MIN_SECRET_LEN, max: MAX_SECRET_LEN });
        }
        let mut out = Zeroizing::new(vec![0u8; len]);
        hex::decode_to_slice(input, &mut out[..]).map_err(|_| OtpError::InvalidHex)?;
        Secret::from_bytes(core::mem::take(&mut *out))
    }

    /// Draws a new secret of `len` bytes from `fill`, which must be a CSPRNG.
    ///
    /// Lengths below [`GENERATED_SECRET_LEN`] are refused: short keys are
    /// tolerated on import only. Output whose bytes are all equal is refused
    /// too, since a real CSPRNG produces that with negligible probability and
    /// a broken one (e.g. a zero-filling stub) produces it every time.
    pub fn generate(len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<Secret, OtpError> {
        if !(GENERATED_SECRET_LEN..=MAX_SECRET_LEN).contains(&len) {
            return Err(OtpError::SecretLength { len, min: GENERATED_SECRET_LEN, max: MAX_SECRET_LEN });
        }
        let mut buf = Zeroizing::new(vec![0u8; len]);
        fill(&mut buf);
        if buf.windows(2).all(|w| w[0] == w[1]) {
            return Err(OtpError::DegenerateRandomness);
        }
        Secret::from_bytes(core::mem::take(&mut *buf))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base32 for authenticator apps: uppercase, unpadded (padding confuses
    /// some apps when typed in by hand).
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    /// Key length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false` for a constructed secret; present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([REDACTED; {} bytes])", self.0.len())
    }
}

/// Constant-time in the key contents (the length is not secret).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(format!("{s:?}"), "Secret([REDACTED; 20 bytes])");
        assert_eq!(format!("{s:#?}"), "Secret([REDACTED; 20 bytes])");
    }

    #[test]
    fn length_bounds() {
        assert!(Secret::from_bytes(vec![1; MIN_SECRET_LEN]).is_ok());
        assert!(Secret::from_bytes(vec![1; MAX_SECRET_LEN]).is_ok());
        assert_eq!(
            Secret::from_bytes(vec![1; MIN_SECRET_LEN - 1]),
            Err(OtpError::SecretLength { len: 9, min: 10, max: 128 })
        );
        assert!(Secret::from_bytes(vec![1; MAX_SECRET_LEN + 1]).is_err());
        assert!(Secret::from_bytes(Vec::new()).is_err());
    }

    #[test]
    fn base32_known_values() {
        let s = Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        assert_eq!(s.as_bytes(), b"12345678901234567890");
        assert_eq!(s.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let s = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(s.as_bytes(), b"Hello!\xde\xad\xbe\xef");
    }

    #[test]
    fn base32_is_lenient_about_presentation() {
        let want = b"12345678901234567890";
        for input in [
            "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
            "gezd-gnbv-gy3t-qojq-gezd-gnbv-gy3t-qojq",
            " GeZd GnBv-GY3T QOJQ GEZDGNBVGY3TQOJQ ",
        ] {
            assert_eq!(Secret::from_base32(input).unwrap().as_bytes(), want, "{input}");
        }
        // 11 bytes -> 18 symbols, padded to 24.
        let s = Secret::from_bytes(b"hello world".to_vec()).unwrap();
        let b32 = s.to_base32();
        assert_eq!(b32, "NBSWY3DPEB3W64TMMQ");
        assert_eq!(Secret::from_base32("NBSWY3DPEB3W64TMMQ======").unwrap(), s);
        assert_eq!(Secret::from_base32("NBSWY3DPEB3W64TMMQ").unwrap(), s);
    }

    #[test]
    fn base32_ignores_nonzero_trailing_bits() {
        // 26 symbols = 130 bits: 16 bytes plus 2 unused bits set to 1.
        let s = Secret::from_base32("AAAAAAAAAAAAAAAAAAAAAAAAAD").unwrap();
        assert_eq!(s.as_bytes(), &[0u8; 16]);
    }

    #[test]
    fn base32_rejections() {
        for bad in [
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1",  // '1' not in alphabet
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ0",  // '0'
            "GEZDGNBVGY3TQOJQ=GEZDGNBVGY3TQOJQ", // data after padding
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n",
            "GEZDGNBVGY3TQOJQ_GEZDGNBVGY3TQOJQ",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQé",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQG", // 33 symbols: impossible length
        ] {
            assert_eq!(Secret::from_base32(bad), Err(OtpError::InvalidBase32), "{bad:?}");
        }
        assert!(matches!(Secret::from_base32(""), Err(OtpError::SecretLength { len: 0, .. })));
        assert!(matches!(Secret::from_base32("GEZDGNBV"), Err(OtpError::SecretLength { len: 5, .. })));
        let long = "A".repeat(10_000);
        assert!(matches!(Secret::from_base32(&long), Err(OtpError::SecretLength { len: 6250, .. })));
    }

    #[test]
    fn base32_max_length_accepted() {
        let s = Secret::from_bytes(vec![0xA5; MAX_SECRET_LEN]).unwrap();
        let b32 = s.to_base32();
        assert_eq!(b32.len(), MAX_BASE32_SYMBOLS);
        assert_eq!(Secret::from_base32(&b32).unwrap(), s);
    }

    #[test]
    fn hex_import() {
        let s = Secret::from_hex("3132333435363738393031323334353637383930").unwrap();
        assert_eq!(s.as_bytes(), b"12345678901234567890");
        let s = Secret::from_hex("DEADBEEFdeadbeef0102").unwrap();
        assert_eq!(s.len(), 10);
        assert_eq!(Secret::from_hex("abc"), Err(OtpError::InvalidHex));
        assert_eq!(Secret::from_hex("zz32333435363738393031323334353637383930"), Err(OtpError::InvalidHex));
        assert!(matches!(Secret::from_hex("0102"), Err(OtpError::SecretLength { len: 2, .. })));
    }

    #[test]
    fn generate_uses_fill_and_enforces_length() {
        let mut next = 0u8;
        let mut fill = |buf: &mut [u8]| {
            for b in buf {
                next = next.wrapping_add(37);
                *b = next;
            }
        };
        let s = Secret::generate(GENERATED_SECRET_LEN, &mut fill).unwrap();
        assert_eq!(s.len(), 20);
        assert_eq!(s.as_bytes()[0], 37);
        assert!(matches!(Secret::generate(19, &mut fill), Err(OtpError::SecretLength { len: 19, min: 20, .. })));
        assert!(Secret::generate(MAX_SECRET_LEN + 1, &mut fill).is_err());
        assert!(Secret::generate(64, &mut fill).is_ok());
    }

    #[test]
    fn generate_refuses_degenerate_fill() {
        assert_eq!(Secret::generate(20, &mut |_buf: &mut [u8]| {}), Err(OtpError::DegenerateRandomness));
        assert_eq!(Secret::generate(20, &mut |buf: &mut [u8]| buf.fill(0xff)), Err(OtpError::DegenerateRandomness));
    }

    #[test]
    fn lenient_decoder_was_built() {
        // The fallback would reject non-zero trailing bits.
        assert!(LENIENT_BASE32.decode(b"AD").is_ok());
    }

    #[test]
    fn errors_do_not_echo_input() {
        let err = Secret::from_base32("SECRETSECRET!").unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
        let err = Secret::from_hex("SECRETSECRETSECRETSECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
    }
}
