//! Sans-IO parsers for hardware-token seed files: the Azure MFA OATH CSV
//! ([`azure`]), a plain CSV ([`plain`]) and PSKC key containers, RFC 6030
//! ([`pskc`]).
//!
//! Bytes go in, typed [`ImportedToken`]s and one [`RowReport`] per row (CSV
//! record or PSKC `KeyPackage`) come out. This crate must not read files,
//! open sockets, read the clock or touch a store: the caller decides what to
//! do with the report (import nothing when [`ImportReport::has_errors`], the
//! default, or import the good rows with `--skip-bad`). Error strings never
//! contain secret material: they name the field and the rule that was
//! broken, never the offending value (a serial number is not a secret and
//! is carried separately in [`RowReport::serial`]).
//!
//! Rules shared by every format:
//! * a secret must be [`MIN_SECRET_LEN`]..=[`MAX_SECRET_LEN`] bytes long
//!   (10..=128, the bounds of `tessera-otp`). RFC 4226 asks for 128 bits and
//!   recommends 160, but 80-bit seeds ship with older hardware tokens, so
//!   import accepts them;
//! * a serial may appear once per file: later rows with the same serial are
//!   errors, the first one stands;
//! * inputs are bounded ([`MAX_INPUT_LEN`], [`MAX_ROWS`], field lengths), and
//!   crossing a bound is an error that names it.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

pub mod azure;
mod csvutil;
pub mod plain;
pub mod pskc;
mod secret;
mod xml;

use core::fmt;
use std::collections::HashSet;

pub use tessera_otp::{Algorithm, Digits, MAX_SECRET_LEN, MIN_SECRET_LEN, Period};
use zeroize::Zeroizing;

/// Largest accepted input, in bytes. 100,000 PSKC key packages of about
/// 1.5 KiB each fit with room to spare; anything bigger is not a seed file.
pub const MAX_INPUT_LEN: usize = 256 * 1024 * 1024;

/// Most rows (CSV records or PSKC key packages) accepted in one file.
pub const MAX_ROWS: usize = 1_000_000;

/// Longest accepted serial number, manufacturer or model, in characters.
pub const MAX_LABEL_LEN: usize = 128;

/// Longest accepted user principal name, in characters (AD's UPN limit is
/// well below this).
pub const MAX_UPN_LEN: usize = 512;

/// Counter-based or time-based, with the state each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// RFC 6238 TOTP with its time step.
    Totp {
        /// Time step: 30 or 60 seconds.
        period: Period,
    },
    /// RFC 4226 HOTP with the next counter value the token will use.
    Hotp {
        /// The token's current counter.
        counter: u64,
    },
}

/// One token read from a seed file.
#[derive(Clone)]
pub struct ImportedToken {
    /// The serial number printed on the token (PSKC: `DeviceInfo/SerialNo`,
    /// or the `Key` `Id` when there is none).
    pub serial: String,
    /// The HMAC key, wiped on drop.
    pub secret: Zeroizing<Vec<u8>>,
    /// TOTP or HOTP.
    pub kind: TokenKind,
    /// HMAC hash function.
    pub algorithm: Algorithm,
    /// Code length.
    pub digits: Digits,
    /// Token manufacturer, when the file says.
    pub manufacturer: Option<String>,
    /// Token model, when the file says.
    pub model: Option<String>,
    /// The user to assign the token to (Azure CSV `upn`), when the file says.
    pub user: Option<String>,
}

impl fmt::Debug for ImportedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedToken")
            .field("serial", &self.serial)
            .field("secret", &format_args!("<{} bytes redacted>", self.secret.len()))
            .field("kind", &self.kind)
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("manufacturer", &self.manufacturer)
            .field("model", &self.model)
            .field("user", &self.user)
            .finish()
    }
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The row produced a token (in [`ImportReport::tokens`]).
    Ok,
    /// The row holds no OTP token and was passed over on purpose (for
    /// example a PSKC PIN key); not an error.
    Skipped(String),
    /// The row is invalid; the message names the rule, never the secret.
    Error(String),
}

/// The report for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReport {
    /// CSV: the 1-based line the record starts on. PSKC: the 1-based index of
    /// the `KeyPackage` in the container.
    pub line_or_index: usize,
    /// The row's serial number, when one could be read.
    pub serial: Option<String>,
    /// What happened.
    pub outcome: Outcome,
}

/// Everything one parse produced: the good tokens, in file order, and one
/// report per row, good or bad.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Tokens from the rows whose outcome is [`Outcome::Ok`].
    pub tokens: Vec<ImportedToken>,
    /// One entry per row, in file order.
    pub rows: Vec<RowReport>,
}

impl ImportReport {
    /// Whether any row is an [`Outcome::Error`]. Callers import nothing when
    /// this is true unless the administrator asked to skip bad rows.
    pub fn has_errors(&self) -> bool {
        self.rows.iter().any(|r| matches!(r.outcome, Outcome::Error(_)))
    }

    /// The rows that are errors.
    pub fn errors(&self) -> impl Iterator<Item = &RowReport> {
        self.rows.iter().filter(|r| matches!(r.outcome, Outcome::Error(_)))
    }
}

/// A problem with the whole file: nothing in it can be trusted, so there is
/// no per-row report. Messages never contain secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The input is larger than [`MAX_INPUT_LEN`].
    #[error("input is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More rows than [`MAX_ROWS`].
    #[error("more than {max} rows")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// The file has no header (Azure CSV) or no content.
    #[error("the file is empty")]
    Empty,
    /// The Azure CSV header lacks a required column.
    #[error("the header has no \"{0}\" column")]
    MissingColumn(&'static str),
    /// The Azure CSV header names a column twice.
    #[error("the header names the \"{0}\" column twice")]
    DuplicateColumn(&'static str),
    /// The CSV could not be split into records.
    #[error("malformed CSV near line {line}")]
    Csv {
        /// Line of the problem.
        line: u64,
    },
    /// The input is not well-formed XML (or not UTF-8).
    #[error("malformed XML near byte {position}")]
    Xml {
        /// Byte offset of the problem.
        position: u64,
    },
    /// The XML nests deeper than the parser allows.
    #[error("XML nested deeper than {max} elements")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The document is not a PSKC `KeyContainer`, or not version 1.0.
    #[error("not a PSKC 1.0 KeyContainer")]
    NotPskc,
    /// The container is encrypted and no key or passphrase was given.
    #[error("the container is encrypted: a pre-shared key or passphrase is needed")]
    KeyRequired,
    /// A pre-shared key was given for a passphrase-protected container, or
    /// the other way round.
    #[error("the container wants a {wanted}, not a {given}")]
    KeyKindMismatch {
        /// What the container uses.
        wanted: &'static str,
        /// What the caller gave.
        given: &'static str,
    },
    /// The container's key protection is not supported.
    #[error("unsupported key protection: {0}")]
    Unsupported(&'static str),
    /// The container's key protection is malformed.
    #[error("malformed key protection: {0}")]
    BadKeyProtection(&'static str),
    /// The key or passphrase does not open the container: the MAC key does
    /// not decrypt, or no encrypted secret's MAC matches.
    #[error("wrong key or passphrase (MAC check failed)")]
    WrongKey,
}

/// Collects rows and tokens, enforcing the shared rules (row bound, unique
/// serials) in one place.
pub(crate) struct ReportBuilder {
    report: ImportReport,
    serials: HashSet<String>,
}

impl ReportBuilder {
    pub(crate) fn new() -> Self {
        ReportBuilder { report: ImportReport::default(), serials: HashSet::new() }
    }

    /// Fails once the file has more rows than [`MAX_ROWS`].
    pub(crate) fn check_row_bound(&self) -> Result<(), ImportError> {
        if self.report.rows.len() >= MAX_ROWS {
            return Err(ImportError::TooManyRows { max: MAX_ROWS });
        }
        Ok(())
    }

    /// Records a parsed row: the token if it is good and its serial is new,
    /// an error otherwise.
    pub(crate) fn push(&mut self, line_or_index: usize, serial: Option<String>, row: Result<ImportedToken, String>) {
        let outcome = match row {
            Ok(token) => {
                if self.serials.insert(token.serial.clone()) {
                    self.report.tokens.push(token);
                    Outcome::Ok
                } else {
                    Outcome::Error("duplicate serial number: an earlier row in this file has it".into())
                }
            }
            Err(message) => Outcome::Error(message),
        };
        self.report.rows.push(RowReport { line_or_index, serial, outcome });
    }

    pub(crate) fn skip(&mut self, line_or_index: usize, serial: Option<String>, why: &str) {
        self.report.rows.push(RowReport { line_or_index, serial, outcome: Outcome::Skipped(why.into()) });
    }

    pub(crate) fn finish(self) -> ImportReport {
        self.report
    }
}

pub(crate) fn check_input_len(len: usize) -> Result<(), ImportError> {
    if len > MAX_INPUT_LEN {
        return Err(ImportError::TooLarge { len, max: MAX_INPUT_LEN });
    }
    Ok(())
}

/// Validates a label (serial, manufacturer, model, UPN): trimmed, bounded,
/// no control characters. `what` names the field in the error.
pub(crate) fn label(value: &str, what: &str, max: usize) -> Result<String, String> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(format!("{what} is longer than {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(value.to_owned())
}

/// An optional label: empty means absent.
pub(crate) fn optional_label(value: &str, what: &str, max: usize) -> Result<Option<String>, String> {
    let value = label(value, what, max)?;
    Ok(if value.is_empty() { None } else { Some(value) })
}

/// A required serial number.
pub(crate) fn serial(value: &str) -> Result<String, String> {
    let value = label(value, "serial number", MAX_LABEL_LEN)?;
    if value.is_empty() {
        return Err("serial number is empty".into());
    }
    Ok(value)
}
