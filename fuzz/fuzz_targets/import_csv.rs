//! Fuzzes the two CSV token importers (Azure MFA OATH CSV and tessera's
//! plain CSV) on the same bytes. Besides "never panics", it checks the
//! report's invariants: one token per Ok row, secrets within the length
//! bounds, no serial imported twice.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use tessera_import::{ImportReport, MAX_SECRET_LEN, MIN_SECRET_LEN, Outcome, azure, plain};

fn check(report: &ImportReport) {
    let ok = report.rows.iter().filter(|r| r.outcome == Outcome::Ok).count();
    assert_eq!(ok, report.tokens.len(), "one token per Ok row");
    let mut serials = HashSet::new();
    for token in &report.tokens {
        assert!((MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&token.secret.len()));
        assert!(!token.serial.is_empty());
        assert!(serials.insert(token.serial.as_str()), "serial imported twice");
    }
    assert_eq!(report.has_errors(), report.errors().next().is_some());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = azure::parse(data) {
        check(&report);
    }
    if let Ok(report) = plain::parse(data) {
        check(&report);
    }
});
