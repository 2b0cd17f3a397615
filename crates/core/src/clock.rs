//! Time as a port. Domain code never reads the wall clock itself: it is handed
//! a [`Clock`] (or a [`Timestamp`]) so that windows, drift, lockout and expiry
//! are tested with a [`ManualClock`] instead of sleeps.

use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. Millisecond resolution keeps audit
/// records ordered; OTP code works in whole seconds via [`Timestamp::unix_seconds`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_unix_seconds(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    /// Whole seconds, rounded down (also for times before 1970).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub fn plus_seconds(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }
    /// RFC 3339 in UTC with millisecond precision, for humans and JSON.
    pub fn to_rfc3339(self) -> String {
        let secs = self.unix_seconds();
        let millis = self.0.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", sod / 3600, (sod / 60) % 60, sod % 60)
    }
    /// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            if part.bytes().all(|c| c.is_ascii_digit()) && !part.is_empty() { part.parse().ok() } else { None }
        };
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        let mut secs = days_from_civil(y, m, d) * 86_400;
        let mut millis = 0;
        if b.len() > 10 {
            if b.len() < 20 || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
                return None;
            }
            let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
            if hh > 23 || mm > 59 || ss > 60 {
                return None;
            }
            secs += hh * 3600 + mm * 60 + ss;
            let rest = &s[19..];
            let rest = if let Some(frac) = rest.strip_prefix('.') {
                let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
                if digits.is_empty() {
                    return None;
                }
                let mut ms = digits.chars().take(3).collect::<String>();
                while ms.len() < 3 {
                    ms.push('0');
                }
                millis = ms.parse().ok()?;
                &frac[digits.len()..]
            } else {
                rest
            };
            if rest != "Z" && rest != "+00:00" {
                return None;
            }
        }
        Some(Timestamp(secs * 1000 + millis))
    }
}

// Howard Hinnant's public-domain civil calendar algorithms; they avoid a
// date-time dependency for the one format we print.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An age like `90s`, `15m`, `2h`, `7d` (or plain seconds), in seconds.
pub fn parse_age_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return (n >= 0).then_some(n);
    }
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    num.parse::<i64>().ok().filter(|n| *n >= 0).and_then(|n| n.checked_mul(mult))
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The real wall clock. The one sanctioned `SystemTime::now()` call.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }
}

/// A clock that only moves when told to; for tests of windows and expiry.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        ManualClock(AtomicI64::new(at.0))
    }
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }
    pub fn advance_seconds(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        for ms in [0, 1_111_111_109_000, 2_000_000_000_123, 1_700_000_000_999] {
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        }
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::parse_rfc3339("2026-11-22"), Timestamp::parse_rfc3339("2026-11-22T00:00:00Z"));
        assert_eq!(Timestamp::parse_rfc3339("2026-13-01"), None);
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }
}
