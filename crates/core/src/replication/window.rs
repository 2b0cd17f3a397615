//! How far login state another node sends may move a token.
//!
//! A replica asks the primary to take a code's step, and forwards the steps
//! of logins it decided alone. A node holding the cluster's credential is
//! trusted to report logins, not to rewrite a token: a step beyond what any
//! code could match at that moment would make the token unusable (a floor
//! of 9·10¹² refuses every future code). So a step is taken only if a code
//! for it could have been accepted: for TOTP, at most the current step plus
//! the skew window and the largest drift the policy lets a token learn (one
//! step more for the clocks of two nodes); for HOTP, at most the look-ahead
//! window past the primary's floor. Lower steps are harmless (they are in
//! the past or already used) and are merged as usual.

use tessera_otp::{OtpKind, skew_steps};

use crate::policy::Policy;

/// Why a step was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepRefusal {
    /// Beyond any step a valid code could match now.
    OutsideWindow,
}

impl StepRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            StepRefusal::OutsideWindow => "outside_window",
        }
    }
}

/// The highest step (TOTP) or counter (HOTP) a code could match for a token
/// of `kind` whose floor is `floor`, at `at_ms` (Unix ms).
pub fn highest_step(kind: OtpKind, floor: i64, at_ms: i64, policy: &Policy) -> i64 {
    match kind {
        OtpKind::Totp { period } => {
            let now = at_ms.div_euclid(1000).div_euclid(i64::from(period.get()));
            now + i64::from(skew_steps(policy.skew_seconds, period)) + i64::from(policy.max_drift_steps) + 1
        }
        OtpKind::Hotp => floor.max(0).saturating_add(i64::from(policy.hotp_look_ahead)),
    }
}

/// Whether `step` may be taken (see the module docs).
pub fn check_step(kind: OtpKind, floor: i64, step: i64, at_ms: i64, policy: &Policy) -> Result<(), StepRefusal> {
    if step < 0 || step > highest_step(kind, floor, at_ms, policy) {
        return Err(StepRefusal::OutsideWindow);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_otp::Period;

    fn totp() -> OtpKind {
        OtpKind::Totp { period: Period::new(30).unwrap() }
    }

    #[test]
    fn totp_steps_up_to_skew_plus_drift_cap_are_taken() {
        let policy = Policy { skew_seconds: 30, max_drift_steps: 2, ..Policy::default() };
        let at = 1_700_000_000_000i64;
        let now = at / 1000 / 30;
        // skew 1 step + drift 2 + 1 for the clocks of two nodes.
        assert_eq!(highest_step(totp(), 0, at, &policy), now + 4);
        assert!(check_step(totp(), 0, now, at, &policy).is_ok());
        assert!(check_step(totp(), 0, now + 4, at, &policy).is_ok());
        assert_eq!(check_step(totp(), 0, now + 5, at, &policy), Err(StepRefusal::OutsideWindow));
        assert_eq!(check_step(totp(), 0, 9_000_000_000_000, at, &policy), Err(StepRefusal::OutsideWindow));
        assert_eq!(check_step(totp(), 0, -1, at, &policy), Err(StepRefusal::OutsideWindow));
        // Old steps are harmless.
        assert!(check_step(totp(), 0, now - 1000, at, &policy).is_ok());
    }

    #[test]
    fn hotp_counters_stay_within_the_look_ahead_of_the_floor() {
        let policy = Policy { hotp_look_ahead: 10, ..Policy::default() };
        assert!(check_step(OtpKind::Hotp, 100, 110, 0, &policy).is_ok());
        assert!(check_step(OtpKind::Hotp, 100, 111, 0, &policy).is_err());
        assert!(check_step(OtpKind::Hotp, 100, 5, 0, &policy).is_ok());
    }
}
