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

/// Two consecutive codes anywhere in the resync window; for `token resync`.
pub fn resync_match(
    secret: &Secret,
    token: &Token,
    first: &str,
    second: &str,
    now: Timestamp,
    max_drift: u32,
) -> Option<CodeMatch> {
    let p = token.params;
    let first = Code::parse(first, p.digits).ok()?;
    let second = Code::parse(second, p.digits).ok()?;
    let window = tessera_otp::DEFAULT_RESYNC_WINDOW;
    match p.kind {
        OtpKind::Totp { period } => tessera_otp::resync_totp(
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
        .map(|m| CodeMatch { matched: m.step, drift: cap(m.drift_steps, max_drift) }),
        OtpKind::Hotp => {
            let floor = u64::try_from(token.counter).ok()?;
            tessera_otp::resync_hotp(secret, p.algorithm, p.digits, &first, &second, floor, window)
                .and_then(|m| i64::try_from(m.counter).ok())
                .map(|matched| CodeMatch { matched, drift: 0 })
        }
    }
}
