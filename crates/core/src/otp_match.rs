//! Checking a submitted code against one stored token, without changing
//! anything. Consumption (advancing the token's floor) is the store's job.

use tessera_otp::{Code, OtpKind, Secret, TotpWindow};

use crate::clock::Timestamp;
use crate::keys::{KeyError, Keyring, Purpose};
use crate::model::Token;
use crate::policy::Policy;

/// Where a code matched: the counter/step, and the drift to remember.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeMatch {
    pub matched: i64,
    pub drift: i32,
}

pub fn open_secret(keys: &Keyring, token: &Token) -> Result<Secret, KeyError> {
    let plain = keys.open(Purpose::OtpSecret, &token.id.to_string(), &token.sealed_secret)?;
    Secret::from_bytes(plain.to_vec()).map_err(|_| KeyError::Corrupt)
}

fn cap(drift: i32, max: u32) -> i32 {
    let max = max.min(i32::MAX as u32) as i32;
    drift.clamp(-max, max)
}

/// Checks `code` against `token` under `policy` at `now`.
pub fn match_code(secret: &Secret, token: &Token, code: &str, policy: &Policy, now: Timestamp) -> Option<CodeMatch> {
    let p = token.params;
    let code = Code::parse(code, p.digits).ok()?;
    match p.kind {
        OtpKind::Totp { period } => {
            let window = TotpWindow {
                now: now.unix_seconds(),
                skew_steps: tessera_otp::skew_steps(policy.skew_seconds, period),
                drift_steps: token.drift,
                min_step: token.counter,
            };
            tessera_otp::verify_totp(secret, p.algorithm, p.digits, period, &code, &window)
                .map(|m| CodeMatch { matched: m.step, drift: cap(m.drift_steps, policy.max_drift_steps) })
        }
        OtpKind::Hotp => {
            let floor = u64::try_from(token.counter).ok()?;
            tessera_otp::verify_hotp(secret, p.algorithm, p.digits, &code, floor, policy.hotp_look_ahead)
                .and_then(|m| i64::try_from(m.counter).ok())
                .map(|matched| CodeMatch { matched, drift: 0 })
        }
    }
}

/// Why two codes did not resync a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncRefusal {
    /// The codes are not two consecutive codes of this token in the window.
    NoMatch,
    /// The codes match, but the device's clock is further off than the
    /// policy lets a token drift: the floor would move past every code the
    /// capped drift lets the login window reach, leaving the token unusable.
    DriftBeyondPolicy {
        /// The measured drift, in steps (positive: the device runs ahead).
        drift: i64,
        max: u32,
    },
}

/// Two consecutive codes anywhere in the resync window; for `token resync`.
/// A TOTP match further from this clock than `max_drift` steps is refused
/// rather than capped (see [`ResyncRefusal::DriftBeyondPolicy`]).
pub fn resync_match(
    secret: &Secret,
    token: &Token,
    first: &str,
    second: &str,
    now: Timestamp,
    max_drift: u32,
) -> Result<CodeMatch, ResyncRefusal> {
    let p = token.params;
    let first = Code::parse(first, p.digits).map_err(|_| ResyncRefusal::NoMatch)?;
    let second = Code::parse(second, p.digits).map_err(|_| ResyncRefusal::NoMatch)?;
    let window = tessera_otp::DEFAULT_RESYNC_WINDOW;
    match p.kind {
        OtpKind::Totp { period } => {
            let m = tessera_otp::resync_totp(
                secret,
                p.algorithm,
                p.digits,
                period,
                &first,
                &second,
                now.unix_seconds(),
                window,
                token.counter,
            )
            .ok_or(ResyncRefusal::NoMatch)?;
            let drift = i64::from(m.drift_steps);
            if drift.unsigned_abs() > u64::from(max_drift) {
                return Err(ResyncRefusal::DriftBeyondPolicy { drift, max: max_drift });
            }
            Ok(CodeMatch { matched: m.step, drift: m.drift_steps })
        }
        OtpKind::Hotp => {
            let floor = u64::try_from(token.counter).map_err(|_| ResyncRefusal::NoMatch)?;
            tessera_otp::resync_hotp(secret, p.algorithm, p.digits, &first, &second, floor, window)
                .and_then(|m| i64::try_from(m.counter).ok())
                .map(|matched| CodeMatch { matched, drift: 0 })
                .ok_or(ResyncRefusal::NoMatch)
        }
    }
}
