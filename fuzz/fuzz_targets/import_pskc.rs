//! Fuzzes the PSKC (RFC 6030) importer, without a key and with RFC 6030's
//! pre-shared key. Passphrase mode is left out on purpose: the document
//! chooses the PBKDF2 iteration count (up to 5 million), which would turn
//! the run into a benchmark of PBKDF2; its parameter parsing is reached
//! through the unit tests and proptests instead. Besides "never panics",
//! it checks one token per Ok row and secrets within the length bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_import::pskc::{self, PskcKey};
use tessera_import::{MAX_SECRET_LEN, MIN_SECRET_LEN, Outcome};
use zeroize::Zeroizing;

/// 0x1234567890 repeated: RFC 6030 §6.1's pre-shared key.
const PSK: [u8; 16] = [0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12];

fuzz_target!(|data: &[u8]| {
    for key in [None, Some(PskcKey::PreShared(Zeroizing::new(PSK)))] {
        if let Ok(report) = pskc::parse(data, key) {
            let ok = report.rows.iter().filter(|r| r.outcome == Outcome::Ok).count();
            assert_eq!(ok, report.tokens.len(), "one token per Ok row");
            for token in &report.tokens {
                assert!((MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&token.secret.len()));
            }
        }
    }
});
