//! Decoding secrets from text (base32, hex, base64) into zeroizing buffers,
//! with the length rule every format shares.
//!
//! Error strings name the encoding or the length, never the text: the text
//! is the secret.

use data_encoding::BASE64_NOPAD;
use tessera_otp::{MAX_SECRET_LEN, MIN_SECRET_LEN, OtpError, Secret};
use zeroize::Zeroizing;

fn from_otp(secret: Result<Secret, OtpError>, encoding: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    match secret {
        Ok(secret) => Ok(Zeroizing::new(secret.as_bytes().to_vec())),
        Err(OtpError::SecretLength { len, min, max }) => {
            Err(format!("secret read as {encoding} is {len} bytes; a secret is {min} to {max} bytes"))
        }
        Err(_) => Err(format!("secret is not valid {encoding}")),
    }
}

/// RFC 4648 base32: case-insensitive, spaces and `-` ignored, `=` padding
/// optional (the rules of `tessera_otp::Secret::from_base32`).
pub(crate) fn base32(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    from_otp(Secret::from_base32(text), "base32")
}

/// Hexadecimal, either case, no separators.
pub(crate) fn hex(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    from_otp(Secret::from_hex(text), "hex")
}

/// Checks the shared length rule on raw secret bytes.
pub(crate) fn check_len(bytes: &[u8]) -> Result<(), String> {
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
        return Err(format!("secret is {} bytes; a secret is {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes", bytes.len()));
    }
    Ok(())
}

/// Standard base64 as XML carries it: whitespace (line breaks) ignored,
/// padding optional. `None` when it is not base64.
pub(crate) fn base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let compact: Zeroizing<Vec<u8>> =
        Zeroizing::new(text.bytes().filter(|b| !b.is_ascii_whitespace()).collect::<Vec<u8>>());
    let trimmed = compact.strip_suffix(b"==").or_else(|| compact.strip_suffix(b"=")).unwrap_or(&compact);
    let len = BASE64_NOPAD.decode_len(trimmed.len()).ok()?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    let written = BASE64_NOPAD.decode_mut(trimmed, &mut out).ok()?;
    out.truncate(written);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_tolerates_whitespace_and_missing_padding() {
        assert_eq!(base64("MTIz\n NA==\n").as_deref().map(Vec::as_slice), Some(&b"1234"[..]));
        assert_eq!(base64("MTIzNA").as_deref().map(Vec::as_slice), Some(&b"1234"[..]));
        assert!(base64("MTIzNA===").is_none());
        assert!(base64("M!").is_none());
    }

    #[test]
    fn errors_do_not_echo_the_secret() {
        let e = base32("JBSWY3DPEHPK3PXP!").unwrap_err();
        assert!(!e.contains("JBSW"), "{e}");
        assert_eq!(hex("0011").unwrap_err(), "secret read as hex is 2 bytes; a secret is 10 to 128 bytes");
    }
}
