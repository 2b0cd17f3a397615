//! Certificate fingerprints and pins: the SHA-256 of a certificate's DER,
//! the value `openssl x509 -fingerprint -sha256` prints. Pure.

use sha2::{Digest, Sha256};

use crate::TlsError;

/// Parses a pin: 64 hex digits, either case, optionally separated by colons
/// (`ab:cd:…`, as openssl prints it). Whitespace is ignored too, so a value
/// pasted across lines still parses (the LDAP setting always allowed it).
pub fn parse_pin(s: &str) -> Result<[u8; 32], TlsError> {
    let digits: String = s.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    let mut out = [0u8; 32];
    // decode_to_slice insists on exactly 64 digits: a truncated or doubled
    // pin is refused, not silently shortened.
    hex::decode_to_slice(&digits, &mut out).map_err(|_| TlsError::BadPin)?;
    Ok(out)
}

/// SHA-256 of a DER certificate: what a pin is compared with.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// [`cert_sha256`] as colon-separated lowercase hex (`ab:cd:…`), the form
/// shown to operators and accepted by [`parse_pin`].
pub fn cert_sha256_hex(der: &[u8]) -> String {
    cert_sha256(der).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_accepts_colons_plain_hex_and_case() {
        let colons = "AB:".repeat(31) + "ab";
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert_eq!(parse_pin(&"cd".repeat(32)).unwrap(), [0xcd; 32]);
        assert_eq!(parse_pin(&format!(" {}\n{} ", "01".repeat(16), "01".repeat(16))).unwrap(), [0x01; 32]);
    }

    #[test]
    fn pin_refuses_garbage() {
        for bad in [
            "",
            "abcd",
            &"ab".repeat(31),
            &"ab".repeat(33),
            &("a".to_string() + &"b".repeat(63) + "c"),
            &"zz".repeat(32),
            &("é".repeat(32)),
        ] {
            let e = parse_pin(bad).unwrap_err();
            assert!(matches!(e, TlsError::BadPin), "{bad:?}: {e:?}");
            assert_eq!(e.to_string(), "the pin must be the certificate's SHA-256 (64 hex digits)");
        }
    }

    #[test]
    fn fingerprint_round_trips_through_parse_pin() {
        let der = b"not really a certificate, but bytes all the same";
        let shown = cert_sha256_hex(der);
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(shown, shown.to_lowercase());
        assert_eq!(parse_pin(&shown).unwrap(), cert_sha256(der));
    }
}
