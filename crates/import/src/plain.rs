//! tessera's plain token CSV: `serial,secret[,type,algorithm,digits,period_or_counter]`.
//!
//! * An optional header line is recognised by its first field being
//!   `serial` (any case). Lines starting with `#` are comments. Fields are
//!   whitespace-trimmed.
//! * `secret` is hex or base32. A `hex:` or `base32:` prefix (any case)
//!   says which. Without a prefix the rule is: only `0-9a-fA-F` and an even
//!   length means hex, anything else base32. Base32 text made only of hex
//!   digits (e.g. `ABCDEF23…` of even length) is therefore read as hex:
//!   such secrets need the `base32:` prefix.
//! * `type` is `totp` (default) or `hotp`; `algorithm` `SHA1` (default),
//!   `SHA256` or `SHA512` (also `SHA-256`…); `digits` 6 (default) or 8; the
//!   last field is the period for TOTP (30, the default, or 60) and the
//!   current counter for HOTP (default 0). Empty fields take the default.
//!
//! This module must not do I/O, nor put secret text in an error.

use tessera_otp::{Algorithm, Digits, Period};
use zeroize::Zeroizing;

use crate::csvutil::{Field, for_each_record, text, text_or_empty};
use crate::{ImportError, ImportReport, ImportedToken, ReportBuilder, TokenKind, secret, serial};

/// Most fields a row may have.
const MAX_FIELDS: usize = 6;

/// Parses a plain token CSV.
///
/// Whole-file errors: oversized input, too many rows, unsplittable CSV. An
/// empty file gives an empty report. Everything else is reported per row.
pub fn parse(input: &[u8]) -> Result<ImportReport, ImportError> {
    let mut report = ReportBuilder::new();
    let mut first = true;
    for_each_record(input, Some(b'#'), |line, fields| {
        let is_header = first && fields.first().copied().flatten().is_some_and(|f| f.eq_ignore_ascii_case("serial"));
        first = false;
        if is_header {
            return Ok(());
        }
        report.check_row_bound()?;
        let serial = fields.first().copied().flatten().filter(|s| !s.is_empty()).map(str::to_owned);
        report.push(line, serial, row(fields));
        Ok(())
    })?;
    Ok(report.finish())
}

/// Decodes a secret by the prefix-or-autodetect rule in the module docs.
pub fn decode_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let prefixed = |prefix: &str| {
        text.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| &text[prefix.len()..])
    };
    if let Some(rest) = prefixed("hex:") {
        return secret::hex(rest.trim());
    }
    if let Some(rest) = prefixed("base32:") {
        return secret::base32(rest.trim());
    }
    // Guessed: say so when the guess does not work out, and how to choose.
    let guessed = if !text.is_empty() && text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        secret::hex(text)
    } else {
        secret::base32(text)
    };
    guessed.map_err(|e| format!("{e} (write hex: or base32: before the secret to say which it is)"))
}

fn row(fields: &[Field<'_>]) -> Result<ImportedToken, String> {
    if fields.len() > MAX_FIELDS {
        return Err(format!("the row has {} fields, at most {MAX_FIELDS} are allowed", fields.len()));
    }
    let serial = serial(text(fields, 0, "serial")?)?;
    let secret_text = text(fields, 1, "secret")?;
    if secret_text.is_empty() {
        return Err("secret is empty".into());
    }
    let secret = decode_secret(secret_text)?;
    let kind = text_or_empty(fields, 2, "type")?;
    let algorithm = match text_or_empty(fields, 3, "algorithm")? {
        "" => Algorithm::Sha1,
        name => name.parse::<Algorithm>().map_err(|_| "algorithm must be SHA1, SHA256 or SHA512".to_owned())?,
    };
    let digits = match text_or_empty(fields, 4, "digits")? {
        "" => Digits::SIX,
        d => {
            d.parse::<u8>().ok().and_then(|d| Digits::new(d).ok()).ok_or_else(|| "digits must be 6 or 8".to_owned())?
        }
    };
    let last = text_or_empty(fields, 5, "period or counter")?;
    let kind = if kind.is_empty() || kind.eq_ignore_ascii_case("totp") {
        let period = match last {
            "" => Period::THIRTY,
            p => p
                .parse::<u32>()
                .ok()
                .and_then(|p| Period::new(p).ok())
                .ok_or_else(|| "period must be 30 or 60".to_owned())?,
        };
        TokenKind::Totp { period }
    } else if kind.eq_ignore_ascii_case("hotp") {
        let counter = match last {
            "" => 0,
            c => c.parse::<u64>().map_err(|_| "counter must be a whole number".to_owned())?,
        };
        TokenKind::Hotp { counter }
    } else {
        return Err("type must be totp or hotp".into());
    };
    Ok(ImportedToken { serial, secret, kind, algorithm, digits, manufacturer: None, model: None, user: None })
}
