//! The CSV plumbing both CSV formats share: bounds, BOM, trimming, and one
//! record at a time handed to the format's row parser.
//!
//! Records are read into one reused buffer and handed out as borrowed
//! fields, so secret text is not copied into per-row strings. The input
//! buffer itself holds the secrets in plain text; wiping it is the caller's
//! job.

use crate::{ImportError, check_input_len};

/// One field of a record: `None` when it is not UTF-8.
pub(crate) type Field<'a> = Option<&'a str>;

/// Calls `row(line, fields)` for every non-blank record of `input`, in
/// order. Fields are whitespace-trimmed; a UTF-8 byte-order mark is ignored;
/// records whose first field starts with `comment` (if given) are skipped.
/// (Not csv's own comment option: it leaves comment lines out of the line
/// numbers, and those numbers are what an administrator looks up.)
pub(crate) fn for_each_record(
    input: &[u8],
    comment: Option<u8>,
    mut row: impl FnMut(usize, &[Field<'_>]) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    check_input_len(input.len())?;
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(input);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(ImportError::Csv { line: e.position().map_or(0, csv::Position::line) }),
        }
        if record.iter().all(<[u8]>::is_empty) {
            continue;
        }
        if let (Some(c), Some(first)) = (comment, record.get(0))
            && first.first() == Some(&c)
        {
            continue;
        }
        let line = record.position().map_or(0, csv::Position::line);
        let line = usize::try_from(line).unwrap_or(usize::MAX);
        let fields: Vec<Field<'_>> = record.iter().map(|f| std::str::from_utf8(f).ok()).collect();
        row(line, &fields)?;
    }
}

/// The text of field `index`, or an error naming the column when the row
/// is too short or the field is not UTF-8.
pub(crate) fn text<'a>(fields: &[Field<'a>], index: usize, column: &str) -> Result<&'a str, String> {
    match fields.get(index) {
        None => Err(format!("the row has no {column} field")),
        Some(None) => Err(format!("{column} is not valid UTF-8")),
        Some(Some(text)) => Ok(text),
    }
}

/// Like [`text`], but a missing field reads as empty.
pub(crate) fn text_or_empty<'a>(fields: &[Field<'a>], index: usize, column: &str) -> Result<&'a str, String> {
    match fields.get(index) {
        None => Ok(""),
        Some(None) => Err(format!("{column} is not valid UTF-8")),
        Some(Some(text)) => Ok(text),
    }
}
