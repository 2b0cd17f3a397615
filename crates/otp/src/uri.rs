//! `otpauth://` provisioning URIs (Google Authenticator's Key Uri Format):
//! building them for QR codes and parsing them for import.
//!
//! Parsing is bounded ([`MAX_URI_LEN`]) and strict wherever leniency would
//! be ambiguous or unsafe (duplicate parameters, conflicting issuers, broken
//! percent-escapes, control characters). This module must not log or echo
//! any part of a URI, since it carries the secret, and must not do I/O.

use core::fmt;
use core::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use zeroize::Zeroizing;

use crate::algorithm::Algorithm;
use crate::error::OtpError;
use crate::params::{Digits, OtpKind, OtpParams, Period};
use crate::secret::Secret;

/// Longest URI accepted by [`OtpauthUri::parse`]; real ones are a few
/// hundred bytes and QR codes cannot carry much more anyway.
pub const MAX_URI_LEN: usize = 2048;

/// Everything except RFC 3986 unreserved characters. Encoding `:` matters:
/// it is the issuer/account separator in the label.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

const SCHEME: &str = "otpauth://";

/// A parsed or to-be-rendered `otpauth://` URI.
///
/// `Display` renders the full URI *including the secret*; only send it to
/// the enrolling user (e.g. as a QR code), never to logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpauthUri {
    /// Kind, algorithm and digits.
    pub params: OtpParams,
    /// The shared secret.
    pub secret: Secret,
    /// Account name shown in the authenticator, usually the login.
    pub account: String,
    /// Service name; `Some("")` is treated as absent.
    pub issuer: Option<String>,
    /// Initial counter; required for HOTP (rendered as 0 if missing),
    /// ignored for TOTP.
    pub counter: Option<u64>,
}

impl OtpauthUri {
    /// Parses a Key Uri Format URI.
    ///
    /// Accepted: scheme and type in any case; label `issuer:account` (a
    /// literal `:`, or `%3A` when it matches the `issuer` parameter) or just
    /// `account`, with spaces before the account ignored; parameters in any
    /// order, unknown ones ignored; `algorithm`, `digits` and `period`
    /// defaulting to SHA1, 6 and 30. Values are percent-decoded only (`+` is
    /// a literal plus). An `issuer` parameter that contradicts the label
    /// prefix, a repeated parameter, an empty account and control characters
    /// in the account or issuer are rejected.
    pub fn parse(input: &str) -> Result<OtpauthUri, OtpError> {
        if input.len() > MAX_URI_LEN {
            return Err(OtpError::UriTooLong { max: MAX_URI_LEN });
        }
        let rest = input
            .get(..SCHEME.len())
            .filter(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
            .and_then(|_| input.get(SCHEME.len()..))
            .ok_or(invalid("scheme must be otpauth://"))?;
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (kind, raw_label) = path.split_once('/').ok_or(invalid("missing label after type"))?;
        let hotp = if kind.eq_ignore_ascii_case("totp") {
            false
        } else if kind.eq_ignore_ascii_case("hotp") {
            true
        } else {
            return Err(invalid("type must be totp or hotp"));
        };

        let query = Query::parse(query)?;

        let param_issuer = query.issuer.map(decode_text).transpose()?.filter(|s| !s.is_empty());
        let (label_issuer, account) = split_label(raw_label, param_issuer.as_deref())?;
        let label_issuer = label_issuer.filter(|s| !s.is_empty());
        if account.is_empty() {
            return Err(invalid("account name must not be empty"));
        }
        let issuer = match (label_issuer, param_issuer) {
            (Some(label), Some(param)) if label != param => {
                return Err(invalid("issuer parameter differs from label prefix"));
            }
            (label, param) => param.or(label),
        };

        let secret = decode_secret(query.secret.ok_or(invalid("missing secret parameter"))?)?;
        let algorithm = match query.algorithm {
            Some(raw) => decode_text(raw)?.parse()?,
            None => Algorithm::Sha1,
        };
        let digits = match query.digits {
            Some(raw) => {
                let n = decimal(raw).ok_or(invalid("digits must be a decimal number"))?;
                Digits::new(u8::try_from(n).unwrap_or(u8::MAX))?
            }
            None => Digits::SIX,
        };
        let (kind, counter) = if hotp {
            let raw = query.counter.ok_or(invalid("hotp requires a counter parameter"))?;
            let counter = decimal(raw).ok_or(invalid("counter must be a decimal number"))?;
            (OtpKind::Hotp, Some(counter))
        } else {
            let period = match query.period {
                Some(raw) => {
                    let n = decimal(raw).ok_or(invalid("period must be a decimal number"))?;
                    Period::new(u32::try_from(n).unwrap_or(u32::MAX))?
                }
                None => Period::THIRTY,
            };
            (OtpKind::Totp { period }, None)
        };

        Ok(OtpauthUri { params: OtpParams { kind, algorithm, digits }, secret, account, issuer, counter })
    }
}

impl FromStr for OtpauthUri {
    type Err = OtpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OtpauthUri::parse(s)
    }
}

impl fmt::Display for OtpauthUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuer = self.issuer.as_deref().filter(|s| !s.is_empty());
        write!(f, "{SCHEME}{}/", self.params.kind.as_str())?;
        if let Some(issuer) = issuer {
            write!(f, "{}:", utf8_percent_encode(issuer, COMPONENT))?;
        }
        write!(f, "{}", utf8_percent_encode(&self.account, COMPONENT))?;
        let secret = Zeroizing::new(self.secret.to_base32());
        write!(f, "?secret={}", secret.as_str())?;
        if let Some(issuer) = issuer {
            write!(f, "&issuer={}", utf8_percent_encode(issuer, COMPONENT))?;
        }
        // Explicit even when default: some apps mis-handle omitted values.
        write!(f, "&algorithm={}&digits={}", self.params.algorithm, self.params.digits)?;
        match self.params.kind {
            OtpKind::Totp { period } => write!(f, "&period={period}"),
            OtpKind::Hotp => write!(f, "&counter={}", self.counter.unwrap_or(0)),
        }
    }
}

/// Raw (still percent-encoded) values of the parameters we understand.
#[derive(Default)]
struct Query<'a> {
    secret: Option<&'a str>,
    issuer: Option<&'a str>,
    algorithm: Option<&'a str>,
    digits: Option<&'a str>,
    period: Option<&'a str>,
    counter: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Result<Query<'a>, OtpError> {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                k if k.eq_ignore_ascii_case("secret") => &mut q.secret,
                k if k.eq_ignore_ascii_case("issuer") => &mut q.issuer,
                k if k.eq_ignore_ascii_case("algorithm") => &mut q.algorithm,
                k if k.eq_ignore_ascii_case("digits") => &mut q.digits,
                k if k.eq_ignore_ascii_case("period") => &mut q.period,
                k if k.eq_ignore_ascii_case("counter") => &mut q.counter,
                // Other apps add e.g. `image` or `color`; they do not change the code.
                _ => continue,
            };
            if slot.replace(value).is_some() {
                // Two secrets or issuers would make the result depend on
                // which one a given parser happens to keep.
                return Err(invalid("a parameter appears more than once"));
            }
        }
        Ok(q)
    }
}

/// Splits the label into issuer prefix and account, both decoded.
fn split_label(raw: &str, param_issuer: Option<&str>) -> Result<(Option<String>, String), OtpError> {
    let split = raw.split_once(':').or_else(|| split_on_encoded_colon(raw, param_issuer));
    match split {
        Some((raw_issuer, raw_account)) => {
            let issuer = decode_text(raw_issuer)?;
            let account = decode_text(raw_account)?;
            Ok((Some(issuer), account.trim_start_matches(' ').to_owned()))
        }
        None => Ok((None, decode_text(raw)?)),
    }
}

/// The format allows `%3A` as the separator, but `%3A` is also how a colon
/// inside an account name is written. Treat it as the separator only when
/// the prefix it yields is the issuer the parameter names.
fn split_on_encoded_colon<'a>(raw: &'a str, param_issuer: Option<&str>) -> Option<(&'a str, &'a str)> {
    let param_issuer = param_issuer?;
    let at = raw.to_ascii_lowercase().find("%3a")?;
    let (prefix, rest) = (raw.get(..at)?, raw.get(at + 3..)?);
    let decoded = decode_text(prefix).ok()?;
    (decoded == param_issuer).then_some((prefix, rest))
}

/// Percent-decodes a label part or parameter value into UTF-8 text.
fn decode_text(raw: &str) -> Result<String, OtpError> {
    check_escapes(raw)?;
    let text = percent_decode_str(raw).decode_utf8().map_err(|_| invalid("percent-decoded text is not UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(invalid("control characters are not allowed"));
    }
    Ok(text.into_owned())
}

fn decode_secret(raw: &str) -> Result<Secret, OtpError> {
    check_escapes(raw)?;
    // Decoded text is never longer than the input, so the buffer is never
    // reallocated and no unzeroized copy of the secret is left behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(raw.len()));
    bytes.extend(percent_decode_str(raw));
    let text = core::str::from_utf8(&bytes).map_err(|_| OtpError::InvalidBase32)?;
    Secret::from_base32(text)
}

/// `percent_decode_str` passes malformed escapes through unchanged; reject
/// them instead so that one URI cannot mean different things to different
/// parsers.
fn check_escapes(raw: &str) -> Result<(), OtpError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !ok {
                return Err(invalid("malformed percent-escape"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Plain decimal digits only: `str::parse` would also accept a leading `+`.
fn decimal(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

fn invalid(reason: &'static str) -> OtpError {
    OtpError::InvalidUri { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B32: &str = "JBSWY3DPEHPK3PXP";

    fn secret() -> Secret {
        Secret::from_base32(B32).unwrap()
    }

    fn reason(input: &str) -> &'static str {
        match OtpauthUri::parse(input) {
            Err(OtpError::InvalidUri { reason }) => reason,
            other => panic!("expected InvalidUri for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn google_example_totp() {
        let u = OtpauthUri::parse("otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example")
            .unwrap();
        assert_eq!(u.account, "alice@google.com");
        assert_eq!(u.issuer.as_deref(), Some("Example"));
        assert_eq!(u.params, OtpParams::default());
        assert_eq!(u.secret, secret());
        assert_eq!(u.counter, None);
        assert_eq!(
            u.to_string(),
            "otpauth://totp/Example:alice%40google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn google_example_all_parameters() {
        let u = OtpauthUri::parse(
            "otpauth://totp/ACME%20Co:john.doe@email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30",
        )
        .unwrap();
        assert_eq!(u.issuer.as_deref(), Some("ACME Co"));
        assert_eq!(u.account, "john.doe@email.com");
        assert_eq!(u.secret.len(), 20);
        assert_eq!(
            u.to_string(),
            "otpauth://totp/ACME%20Co:john.doe%40email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn hotp_with_counter() {
        let u = OtpauthUri::parse("otpauth://hotp/alice?secret=JBSWY3DPEHPK3PXP&counter=42&digits=8&algorithm=SHA256")
            .unwrap();
        assert_eq!(u.params.kind, OtpKind::Hotp);
        assert_eq!(u.params.digits, Digits::EIGHT);
        assert_eq!(u.params.algorithm, Algorithm::Sha256);
        assert_eq!(u.counter, Some(42));
        assert_eq!(u.issuer, None);
        assert_eq!(u.to_string(), "otpauth://hotp/alice?secret=JBSWY3DPEHPK3PXP&algorithm=SHA256&digits=8&counter=42");
    }

    #[test]
    fn lenient_forms() {
        let u = OtpauthUri::parse(
            "OTPAUTH://TOTP/Example:%20%20alice?period=60&Secret=jbswy3dpehpk3pxp&algorithm=sha-512&image=x&&",
        )
        .unwrap();
        assert_eq!(u.account, "alice", "spaces before the account are dropped");
        assert_eq!(u.issuer.as_deref(), Some("Example"));
        assert_eq!(u.params.kind.period(), Some(Period::SIXTY));
        assert_eq!(u.params.algorithm, Algorithm::Sha512);
        // Issuer only as a parameter, and an encoded-colon separator.
        let u = OtpauthUri::parse("otpauth://totp/bob?secret=JBSWY3DPEHPK3PXP&issuer=Corp").unwrap();
        assert_eq!((u.issuer.as_deref(), u.account.as_str()), (Some("Corp"), "bob"));
        let u = OtpauthUri::parse("otpauth://totp/Corp%3Abob?secret=JBSWY3DPEHPK3PXP&issuer=Corp").unwrap();
        assert_eq!((u.issuer.as_deref(), u.account.as_str()), (Some("Corp"), "bob"));
        // Without a matching issuer parameter %3A stays part of the account.
        let u = OtpauthUri::parse("otpauth://totp/Corp%3abob?secret=JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!((u.issuer, u.account.as_str()), (None, "Corp:bob"));
        // '+' is not a space; fragments are ignored; padding in the secret is fine.
        let u = OtpauthUri::parse("otpauth://totp/a+b?secret=JBSWY3DPEHPK3PXP%3D%3D#frag").unwrap();
        assert_eq!(u.account, "a+b");
        assert_eq!(u.secret, secret());
        // Same issuer in label and parameter is fine; empty issuer parameter is absent.
        let u = OtpauthUri::parse("otpauth://totp/X:a?secret=JBSWY3DPEHPK3PXP&issuer=").unwrap();
        assert_eq!(u.issuer.as_deref(), Some("X"));
        // Params for the other kind are ignored.
        let u = OtpauthUri::parse("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&counter=5").unwrap();
        assert_eq!(u.counter, None);
        let u = OtpauthUri::parse("otpauth://hotp/a?secret=JBSWY3DPEHPK3PXP&counter=0&period=17").unwrap();
        assert_eq!(u.counter, Some(0));
    }

    #[test]
    fn encoding_of_special_characters() {
        let u = OtpauthUri {
            params: OtpParams::default(),
            secret: secret(),
            account: "a b:c&d=e#f/g?h%i+j ü 🦀".to_owned(),
            issuer: Some("Big: Co & Sons=#1".to_owned()),
            counter: None,
        };
        let s = u.to_string();
        assert_eq!(
            s,
            "otpauth://totp/Big%3A%20Co%20%26%20Sons%3D%231:a%20b%3Ac%26d%3De%23f%2Fg%3Fh%25i%2Bj%20%C3%BC%20%F0%9F%A6%80?secret=JBSWY3DPEHPK3PXP&issuer=Big%3A%20Co%20%26%20Sons%3D%231&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(OtpauthUri::parse(&s).unwrap(), u);
        // Unreserved characters stay literal.
        let u = OtpauthUri { account: "A-z.0_9~".to_owned(), issuer: None, ..u };
        assert!(u.to_string().starts_with("otpauth://totp/A-z.0_9~?secret="));
    }

    #[test]
    fn colon_in_account_without_issuer_round_trips() {
        let u = OtpauthUri {
            params: OtpParams::default(),
            secret: secret(),
            account: "corp:bob".to_owned(),
            issuer: None,
            counter: None,
        };
        assert_eq!(OtpauthUri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn hotp_without_counter_renders_zero() {
        let u = OtpauthUri {
            params: OtpParams { kind: OtpKind::Hotp, ..OtpParams::default() },
            secret: secret(),
            account: "a".to_owned(),
            issuer: Some(String::new()),
            counter: None,
        };
        assert_eq!(u.to_string(), "otpauth://hotp/a?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&counter=0");
    }

    #[test]
    fn rejections() {
        let ok = "otpauth://totp/a?secret=JBSWY3DPEHPK3PXP";
        assert!(OtpauthUri::parse(ok).is_ok());
        assert_eq!(reason("http://totp/a?secret=JBSWY3DPEHPK3PXP"), "scheme must be otpauth://");
        assert_eq!(reason("otpauth:/totp/a?secret=JBSWY3DPEHPK3PXP"), "scheme must be otpauth://");
        assert_eq!(reason(""), "scheme must be otpauth://");
        assert_eq!(reason("otpauth://motp/a?secret=JBSWY3DPEHPK3PXP"), "type must be totp or hotp");
        assert_eq!(reason("otpauth:///a?secret=JBSWY3DPEHPK3PXP"), "type must be totp or hotp");
        assert_eq!(reason("otpauth://totp?secret=JBSWY3DPEHPK3PXP"), "missing label after type");
        assert_eq!(reason("otpauth://totp/?secret=JBSWY3DPEHPK3PXP"), "account name must not be empty");
        assert_eq!(reason("otpauth://totp/X:%20?secret=JBSWY3DPEHPK3PXP"), "account name must not be empty");
        assert_eq!(reason("otpauth://totp/a"), "missing secret parameter");
        assert_eq!(reason("otpauth://totp/a?issuer=x"), "missing secret parameter");
        assert_eq!(reason("otpauth://hotp/a?secret=JBSWY3DPEHPK3PXP"), "hotp requires a counter parameter");
        assert_eq!(reason("otpauth://hotp/a?secret=JBSWY3DPEHPK3PXP&counter=-1"), "counter must be a decimal number");
        assert_eq!(
            reason("otpauth://hotp/a?secret=JBSWY3DPEHPK3PXP&counter=18446744073709551616"),
            "counter must be a decimal number"
        );
        assert_eq!(reason("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&digits=six"), "digits must be a decimal number");
        assert_eq!(reason("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&digits=+6"), "digits must be a decimal number");
        assert_eq!(reason("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&period="), "period must be a decimal number");
        assert_eq!(
            reason("otpauth://totp/A:a?secret=JBSWY3DPEHPK3PXP&issuer=B"),
            "issuer parameter differs from label prefix"
        );
        assert_eq!(
            reason("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&secret=GEZDGNBVGY3TQOJQ"),
            "a parameter appears more than once"
        );
        assert_eq!(
            reason("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&issuer=x&ISSUER=x"),
            "a parameter appears more than once"
        );
        assert_eq!(reason("otpauth://totp/a%2?secret=JBSWY3DPEHPK3PXP"), "malformed percent-escape");
        assert_eq!(reason("otpauth://totp/a%zz?secret=JBSWY3DPEHPK3PXP"), "malformed percent-escape");
        assert_eq!(reason("otpauth://totp/a%FF?secret=JBSWY3DPEHPK3PXP"), "percent-decoded text is not UTF-8");
        assert_eq!(reason("otpauth://totp/a%0Ab?secret=JBSWY3DPEHPK3PXP"), "control characters are not allowed");
        assert_eq!(reason("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&issuer=%00"), "control characters are not allowed");

        let p = |s: &str| OtpauthUri::parse(s).map(|u| u.account);
        assert_eq!(p("otpauth://totp/a?secret=JBSWY3DPEHPK3PX1"), Err(OtpError::InvalidBase32));
        assert_eq!(p("otpauth://totp/a?secret=JBSW%"), Err(invalid("malformed percent-escape")));
        assert_eq!(p("otpauth://totp/a?secret=%FF"), Err(OtpError::InvalidBase32));
        assert!(matches!(p("otpauth://totp/a?secret="), Err(OtpError::SecretLength { len: 0, .. })));
        assert!(matches!(p("otpauth://totp/a?secret=GEZDGNBV"), Err(OtpError::SecretLength { .. })));
        assert_eq!(p("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&digits=7"), Err(OtpError::InvalidDigits(7)));
        assert_eq!(p("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&digits=1000"), Err(OtpError::InvalidDigits(255)));
        assert_eq!(p("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&period=15"), Err(OtpError::InvalidPeriod(15)));
        assert_eq!(p("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP&algorithm=MD5"), Err(OtpError::UnknownAlgorithm));

        let long = format!("{ok}&x={}", "a".repeat(MAX_URI_LEN));
        assert_eq!(OtpauthUri::parse(&long).map(|u| u.account), Err(OtpError::UriTooLong { max: 2048 }));
        let exact = format!("{ok}&x={}", "a".repeat(MAX_URI_LEN - ok.len() - 3));
        assert_eq!(exact.len(), MAX_URI_LEN);
        assert!(OtpauthUri::parse(&exact).is_ok());
    }

    #[test]
    fn errors_never_echo_the_uri() {
        for bad in [
            "otpauth://totp/SECRETACCOUNT?secret=JBSWY3DPEHPK3PX1",
            "otpauth://totp/SECRETACCOUNT?secret=JBSWY3DPEHPK3PXP&digits=SECRET",
            "otpauth://xotp/SECRETACCOUNT?secret=JBSWY3DPEHPK3PXP",
        ] {
            let msg = OtpauthUri::parse(bad).unwrap_err().to_string();
            assert!(!msg.contains("SECRET") && !msg.contains("JBSW"), "{msg}");
        }
    }

    #[test]
    fn from_str_matches_parse() {
        let u: OtpauthUri = "otpauth://totp/a?secret=JBSWY3DPEHPK3PXP".parse().unwrap();
        assert_eq!(u.account, "a");
    }
}
