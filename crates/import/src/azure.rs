//! The Azure MFA (Entra ID) OATH hardware token CSV.
//!
//! Microsoft documents the header `upn,serial number,secret key,time
//! interval,manufacturer,model`. Column names are matched case-insensitively
//! after trimming and may come in any order; unknown columns are ignored.
//! `upn`, `serial number`, `secret key` and `time interval` are required
//! (a header without one of them fails the whole file); `manufacturer` and
//! `model` may be absent or empty.
//!
//! Per row: the secret is base32 (spaces and `-` ignored, any case, `=`
//! padding optional) of 10 to 128 bytes; the time interval is 30 or 60;
//! codes are 6 digits of HMAC-SHA1 (Azure supports nothing else). An empty
//! `upn` leaves the token unassigned (`user: None`).
//!
//! This module must not do I/O, nor put secret text in an error.

use tessera_otp::{Algorithm, Digits, Period};

use crate::csvutil::{Field, for_each_record, text, text_or_empty};
use crate::{
    ImportError, ImportReport, ImportedToken, MAX_LABEL_LEN, MAX_UPN_LEN, ReportBuilder, TokenKind, optional_label,
    secret, serial,
};

/// The documented column names, in Microsoft's order.
pub const COLUMNS: [&str; 6] = ["upn", "serial number", "secret key", "time interval", "manufacturer", "model"];

/// Columns a header must have.
const REQUIRED: [usize; 4] = [0, 1, 2, 3];

/// Parses an Azure MFA OATH CSV file.
///
/// Whole-file errors: oversized input, no header, a header missing a
/// required column or naming one twice, unsplittable CSV. Everything else is
/// reported per row.
pub fn parse(input: &[u8]) -> Result<ImportReport, ImportError> {
    let mut columns: Option<[Option<usize>; 6]> = None;
    let mut report = ReportBuilder::new();
    for_each_record(input, None, |line, fields| {
        let Some(columns) = columns else {
            columns = Some(header(fields)?);
            return Ok(());
        };
        report.check_row_bound()?;
        let serial = columns[1].and_then(|i| fields.get(i).copied().flatten()).map(str::trim);
        let serial = serial.filter(|s| !s.is_empty()).map(str::to_owned);
        report.push(line, serial, row(&columns, fields));
        Ok(())
    })?;
    if columns.is_none() {
        return Err(ImportError::Empty);
    }
    Ok(report.finish())
}

fn header(fields: &[Field<'_>]) -> Result<[Option<usize>; 6], ImportError> {
    let mut columns = [None; 6];
    for (index, name) in fields.iter().enumerate() {
        // Collapse inner runs of whitespace: "serial  number" is a typo, not
        // a different column.
        let name = name.unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
        if let Some(column) = COLUMNS.iter().position(|c| *c == name) {
            if columns[column].is_some() {
                return Err(ImportError::DuplicateColumn(COLUMNS[column]));
            }
            columns[column] = Some(index);
        }
    }
    for required in REQUIRED {
        if columns[required].is_none() {
            return Err(ImportError::MissingColumn(COLUMNS[required]));
        }
    }
    Ok(columns)
}

fn row(columns: &[Option<usize>; 6], fields: &[Field<'_>]) -> Result<ImportedToken, String> {
    // Required columns are present in the header (checked above); a row may
    // still be too short.
    let field = |column: usize| match columns[column] {
        Some(index) => text(fields, index, COLUMNS[column]),
        None => Ok(""),
    };
    let optional = |column: usize| match columns[column] {
        Some(index) => text_or_empty(fields, index, COLUMNS[column]),
        None => Ok(""),
    };
    let serial = serial(field(1)?)?;
    let user = optional_label(field(0)?, "upn", MAX_UPN_LEN)?;
    let secret = secret::base32(field(2)?)?;
    let interval = field(3)?;
    let period = interval
        .parse::<u32>()
        .ok()
        .and_then(|p| Period::new(p).ok())
        .ok_or_else(|| "time interval must be 30 or 60".to_owned())?;
    let manufacturer = optional_label(optional(4)?, "manufacturer", MAX_LABEL_LEN)?;
    let model = optional_label(optional(5)?, "model", MAX_LABEL_LEN)?;
    Ok(ImportedToken {
        serial,
        secret,
        kind: TokenKind::Totp { period },
        algorithm: Algorithm::Sha1,
        digits: Digits::SIX,
        manufacturer,
        model,
        user,
    })
}
