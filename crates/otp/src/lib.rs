//! Sans-IO one-time-password engine: HOTP (RFC 4226), TOTP (RFC 6238),
//! backup codes and `otpauth://` provisioning URIs.
//!
//! This crate must not read the clock, own a randomness source, perform I/O
//! or depend on an async runtime. Time is always an argument (unix seconds as
//! `i64`) and randomness always comes from a caller-supplied fill function,
//! so every result here is a pure function of its inputs and can be tested
//! and replayed exactly.
//!
//! ```
//! use tessera_otp::{
//!     Algorithm, Code, Digits, Period, Secret, TotpWindow, format_code, totp, verify_totp,
//! };
//!
//! let secret = Secret::from_base32("GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ")?;
//! let now = 1_111_111_109; // supplied by the caller's clock
//! let shown = totp(&secret, Algorithm::Sha1, Digits::EIGHT, Period::THIRTY, now).unwrap();
//! assert_eq!(format_code(shown, Digits::EIGHT), "07081804");
//!
//! // The server side: parse what the user typed, check it against a window
//! // of one step either side, and remember the step to block replays.
//! let code = Code::parse("07081804", Digits::EIGHT)?;
//! let window = TotpWindow { now: now + 20, skew_steps: 1, drift_steps: 0, min_step: 0 };
//! let m = verify_totp(&secret, Algorithm::Sha1, Digits::EIGHT, Period::THIRTY, &code, &window)
//!     .expect("code is within the window");
//! assert_eq!(m.drift_steps, -1);
//! let next_min_step = m.step + 1;
//! let replay = TotpWindow { min_step: next_min_step, ..window };
//! assert!(verify_totp(&secret, Algorithm::Sha1, Digits::EIGHT, Period::THIRTY, &code, &replay).is_none());
//! # Ok::<(), tessera_otp::OtpError>(())
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

pub mod algorithm;
pub mod backup;
pub mod code;
pub mod error;
pub mod hotp;
pub mod params;
pub mod secret;
pub mod totp;
pub mod uri;
pub mod verify;

pub use algorithm::Algorithm;
pub use backup::{
    BACKUP_CODE_COUNT, BACKUP_CODE_DIGITS, BackupCode, generate_backup_codes, normalize_backup_code,
    try_generate_backup_codes,
};
pub use code::Code;
pub use error::OtpError;
pub use hotp::{Keyed, format_code, hotp};
pub use params::{Digits, OtpKind, OtpParams, Period};
pub use secret::{GENERATED_SECRET_LEN, MAX_SECRET_LEN, MIN_SECRET_LEN, Secret};
pub use totp::{step_start, time_step, totp};
pub use uri::{MAX_URI_LEN, OtpauthUri};
pub use verify::{
    DEFAULT_HOTP_LOOK_AHEAD, DEFAULT_RESYNC_WINDOW, HotpMatch, MAX_SKEW_SECONDS, TotpMatch, TotpWindow, resync_hotp,
    resync_totp, skew_steps, verify_hotp, verify_hotp_keyed, verify_totp, verify_totp_keyed,
};
