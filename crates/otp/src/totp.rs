//! TOTP (RFC 6238): HOTP with the counter derived from time.
//!
//! Time is always an argument in unix seconds; this module must not read a
//! clock. T0 is fixed at 0, as every deployed authenticator assumes.

use crate::algorithm::Algorithm;
use crate::hotp::hotp;
use crate::params::{Digits, Period};
use crate::secret::Secret;

/// The time step containing `unix_seconds`.
///
/// Uses floor division so that instants before 1970 map to negative steps
/// consistently (`-1` is in step `-1`, not step `0`); truncating division
/// would make step 0 twice as long and let one code cover two periods.
pub fn time_step(unix_seconds: i64, period: Period) -> i64 {
    unix_seconds.div_euclid(i64::from(period.get()))
}

/// First second of `step` (saturating at the ends of `i64`).
pub fn step_start(step: i64, period: Period) -> i64 {
    step.saturating_mul(i64::from(period.get()))
}

/// The TOTP value at `unix_seconds`, or `None` before the epoch, where no
/// non-negative counter exists.
pub fn totp(secret: &Secret, algorithm: Algorithm, digits: Digits, period: Period, unix_seconds: i64) -> Option<u32> {
    let counter = u64::try_from(time_step(unix_seconds, period)).ok()?;
    Some(hotp(secret, algorithm, counter, digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_uses_floor_division() {
        let p = Period::THIRTY;
        assert_eq!(time_step(0, p), 0);
        assert_eq!(time_step(29, p), 0);
        assert_eq!(time_step(30, p), 1);
        assert_eq!(time_step(59, p), 1);
        assert_eq!(time_step(-1, p), -1);
        assert_eq!(time_step(-30, p), -1);
        assert_eq!(time_step(-31, p), -2);
        assert_eq!(time_step(1_111_111_109, p), 0x0235_23EC);
        assert_eq!(time_step(20_000_000_000, p), 0x27BC_86AA);
        assert_eq!(time_step(119, Period::SIXTY), 1);
        assert_eq!(time_step(120, Period::SIXTY), 2);
        assert_eq!(time_step(i64::MIN, p), i64::MIN / 30 - 1);
        assert_eq!(time_step(i64::MAX, p), i64::MAX / 30);
    }

    #[test]
    fn step_start_inverts_time_step() {
        for t in [-61i64, -1, 0, 1, 29, 30, 1_234_567_890] {
            for p in [Period::THIRTY, Period::SIXTY] {
                let s = step_start(time_step(t, p), p);
                assert!(s <= t && t < s + i64::from(p.get()));
            }
        }
        assert_eq!(step_start(i64::MAX, Period::THIRTY), i64::MAX);
    }

    #[test]
    fn totp_before_epoch_is_none() {
        let s = Secret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(totp(&s, Algorithm::Sha1, Digits::SIX, Period::THIRTY, -1), None);
        assert_eq!(totp(&s, Algorithm::Sha1, Digits::EIGHT, Period::THIRTY, 59), Some(94_287_082));
    }
}
