//! Verification of submitted codes against windows of candidate counters,
//! and resynchronisation from two consecutive codes.
//!
//! Every candidate in a window is evaluated and compared in constant time,
//! and the winner is selected without branching on secret data, so response
//! timing reveals neither whether nor where a code matched. This module must
//! not allocate on the verification path, must not read a clock, and must not
//! keep state: replay protection is the caller's `min_step` / `next_counter`,
//! which the caller advances past every accepted match.

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::algorithm::Algorithm;
use crate::code::Code;
use crate::hotp::Keyed;
use crate::params::{Digits, Period};
use crate::secret::Secret;
use crate::totp::time_step;

/// Counters checked beyond the expected one for HOTP, covering button
/// presses that never reached the server (RFC 4226 section 7.4).
pub const DEFAULT_HOTP_LOOK_AHEAD: u32 = 10;

/// How far (in counters or time steps, each direction for TOTP) a
/// resynchronisation may search.
pub const DEFAULT_RESYNC_WINDOW: u32 = 100;

/// Largest clock skew a deployment should configure; RFC 6238 section 5.2
/// recommends at most one step of network delay, and anything beyond a few
/// minutes mostly widens the guessing window.
pub const MAX_SKEW_SECONDS: u32 = 300;

/// The candidate steps for a TOTP verification.
///
/// Candidates are `center - skew_steps ..= center + skew_steps` with
/// `center = time_step(now) + drift_steps`, excluding steps below `min_step`
/// and below 0. Cost is linear in `2 * skew_steps + 1`, so callers bound
/// `skew_steps` (see [`MAX_SKEW_SECONDS`] and [`skew_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TotpWindow {
    /// Current time, unix seconds.
    pub now: i64,
    /// Steps accepted on each side of the center.
    pub skew_steps: u32,
    /// Learned offset of this authenticator's clock, in steps.
    pub drift_steps: i32,
    /// Replay floor: the first step not yet consumed.
    pub min_step: i64,
}

impl TotpWindow {
    /// A window with no learned drift and no replay floor.
    pub fn new(now: i64, skew_steps: u32) -> TotpWindow {
        TotpWindow { now, skew_steps, drift_steps: 0, min_step: 0 }
    }
}

/// A successful TOTP verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TotpMatch {
    /// The matching step; the caller stores `step + 1` as its next `min_step`.
    pub step: i64,
    /// `step - time_step(now)`, saturated to `i32`. Uncapped: the caller
    /// decides how much drift to remember.
    pub drift_steps: i32,
}

/// A successful HOTP verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HotpMatch {
    /// The matching counter; the caller stores `counter + 1` as its next
    /// expected counter.
    pub counter: u64,
}

/// Steps needed to cover `skew_seconds` of clock error: rounds up, so any
/// non-zero skew yields at least one step.
pub fn skew_steps(skew_seconds: u32, period: Period) -> u32 {
    skew_seconds.div_ceil(period.get())
}

/// Checks `code` against the TOTP window. When several steps match, the
/// smallest wins, so a replayed older code can never push the replay floor
/// past a step the user has not used yet.
pub fn verify_totp(
    secret: &Secret,
    algorithm: Algorithm,
    digits: Digits,
    period: Period,
    code: &Code,
    window: &TotpWindow,
) -> Option<TotpMatch> {
    verify_totp_keyed(&Keyed::new(secret, algorithm), digits, period, code, window)
}

/// [`verify_totp`] with a caller-held key schedule.
pub fn verify_totp_keyed(
    keyed: &Keyed,
    digits: Digits,
    period: Period,
    code: &Code,
    window: &TotpWindow,
) -> Option<TotpMatch> {
    if code.digits() != digits {
        return None;
    }
    let current = time_step(window.now, period);
    let center = current.saturating_add(i64::from(window.drift_steps));
    let skew = i64::from(window.skew_steps);
    let lo = center.saturating_sub(skew).max(window.min_step).max(0);
    let hi = center.saturating_add(skew);
    let want = code.value();

    let mut found = Choice::from(0);
    let mut best: i64 = 0;
    for step in lo..=hi {
        // `lo >= 0`, so this is the identity conversion.
        let hit = keyed.hotp(step.unsigned_abs(), digits).ct_eq(&want);
        best.conditional_assign(&step, hit & !found);
        found |= hit;
    }
    bool::from(found).then(|| TotpMatch { step: best, drift_steps: saturate_i32(best.saturating_sub(current)) })
}

/// Checks `code` against counters `next_counter ..= next_counter +
/// look_ahead` (saturating). The smallest matching counter wins.
pub fn verify_hotp(
    secret: &Secret,
    algorithm: Algorithm,
    digits: Digits,
    code: &Code,
    next_counter: u64,
    look_ahead: u32,
) -> Option<HotpMatch> {
    verify_hotp_keyed(&Keyed::new(secret, algorithm), digits, code, next_counter, look_ahead)
}

/// [`verify_hotp`] with a caller-held key schedule.
pub fn verify_hotp_keyed(
    keyed: &Keyed,
    digits: Digits,
    code: &Code,
    next_counter: u64,
    look_ahead: u32,
) -> Option<HotpMatch> {
    if code.digits() != digits {
        return None;
    }
    let hi = next_counter.saturating_add(u64::from(look_ahead));
    let want = code.value();

    let mut found = Choice::from(0);
    let mut best: u64 = 0;
    for counter in next_counter..=hi {
        let hit = keyed.hotp(counter, digits).ct_eq(&want);
        best.conditional_assign(&counter, hit & !found);
        found |= hit;
    }
    bool::from(found).then_some(HotpMatch { counter: best })
}

/// Re-establishes the counter of a token that has drifted beyond the
/// look-ahead: finds the smallest `c` in `next_counter ..= next_counter +
/// window` with `hotp(c) == first` and `hotp(c + 1) == second`, and returns
/// `c + 1`, the counter of the second code. Two consecutive codes make a
/// chance match over a wide window as unlikely as one code in a narrow one.
pub fn resync_hotp(
    secret: &Secret,
    algorithm: Algorithm,
    digits: Digits,
    first: &Code,
    second: &Code,
    next_counter: u64,
    window: u32,
) -> Option<HotpMatch> {
    if first.digits() != digits || second.digits() != digits {
        return None;
    }
    let keyed = Keyed::new(secret, algorithm);
    let hi = next_counter.saturating_add(u64::from(window));
    let (want_first, want_second) = (first.value(), second.value());

    let mut found = Choice::from(0);
    let mut best: u64 = 0;
    let mut c = next_counter;
    let mut value_c = keyed.hotp(c, digits);
    // Each counter is evaluated once and reused as the next pair's first.
    while let Some(next) = c.checked_add(1) {
        let value_next = keyed.hotp(next, digits);
        let hit = value_c.ct_eq(&want_first) & value_next.ct_eq(&want_second);
        best.conditional_assign(&next, hit & !found);
        found |= hit;
        if c >= hi {
            break;
        }
        c = next;
        value_c = value_next;
    }
    bool::from(found).then_some(HotpMatch { counter: best })
}

/// Re-establishes the drift of an authenticator whose clock is far off:
/// finds the smallest step `s` with `s >= min_step` such that `s` and `s + 1`
/// both lie within `time_step(now) ± window_steps` and match `first` and
/// `second`. Returns the match for `s + 1`, with drift `(s + 1) -
/// time_step(now)`.
#[allow(clippy::too_many_arguments)]
pub fn resync_totp(
    secret: &Secret,
    algorithm: Algorithm,
    digits: Digits,
    period: Period,
    first: &Code,
    second: &Code,
    now: i64,
    window_steps: u32,
    min_step: i64,
) -> Option<TotpMatch> {
    if first.digits() != digits || second.digits() != digits {
        return None;
    }
    let keyed = Keyed::new(secret, algorithm);
    let current = time_step(now, period);
    let width = i64::from(window_steps);
    let lo = current.saturating_sub(width).max(min_step).max(0);
    let hi = current.saturating_add(width);
    if lo >= hi {
        return None;
    }
    let (want_first, want_second) = (first.value(), second.value());

    let mut found = Choice::from(0);
    let mut best: i64 = 0;
    let mut value_s = keyed.hotp(lo.unsigned_abs(), digits);
    for next in (lo + 1)..=hi {
        let value_next = keyed.hotp(next.unsigned_abs(), digits);
        let hit = value_s.ct_eq(&want_first) & value_next.ct_eq(&want_second);
        best.conditional_assign(&next, hit & !found);
        found |= hit;
        value_s = value_next;
    }
    bool::from(found).then(|| TotpMatch { step: best, drift_steps: saturate_i32(best.saturating_sub(current)) })
}

fn saturate_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotp::{format_code, hotp};

    const T: i64 = 1_700_000_000; // step 56_666_666 at 30 s, 20 s into it

    fn secret() -> Secret {
        Secret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
    }

    fn code_at(step: i64, digits: Digits) -> Code {
        let v = hotp(&secret(), Algorithm::Sha1, step as u64, digits);
        Code::parse(&format_code(v, digits), digits).unwrap()
    }

    fn verify(code: &Code, window: TotpWindow) -> Option<TotpMatch> {
        verify_totp(&secret(), Algorithm::Sha1, Digits::SIX, Period::THIRTY, code, &window)
    }

    fn current() -> i64 {
        time_step(T, Period::THIRTY)
    }

    #[test]
    fn skew_zero_accepts_only_current_step() {
        let w = TotpWindow::new(T, 0);
        let m = verify(&code_at(current(), Digits::SIX), w).unwrap();
        assert_eq!(m, TotpMatch { step: current(), drift_steps: 0 });
        assert_eq!(verify(&code_at(current() - 1, Digits::SIX), w), None);
        assert_eq!(verify(&code_at(current() + 1, Digits::SIX), w), None);
    }

    #[test]
    fn skew_one_accepts_neighbours() {
        let w = TotpWindow::new(T, 1);
        for d in -1..=1 {
            let m = verify(&code_at(current() + d, Digits::SIX), w).unwrap();
            assert_eq!(m.step, current() + d);
            assert_eq!(m.drift_steps, d as i32);
        }
        assert_eq!(verify(&code_at(current() - 2, Digits::SIX), w), None);
        assert_eq!(verify(&code_at(current() + 2, Digits::SIX), w), None);
    }

    #[test]
    fn skew_ten() {
        let w = TotpWindow::new(T, 10);
        for d in [-10, -5, 0, 7, 10] {
            assert_eq!(verify(&code_at(current() + d, Digits::SIX), w).map(|m| m.step), Some(current() + d));
        }
        assert_eq!(verify(&code_at(current() - 11, Digits::SIX), w), None);
        assert_eq!(verify(&code_at(current() + 11, Digits::SIX), w), None);
    }

    #[test]
    fn drift_moves_the_window() {
        let w = TotpWindow { drift_steps: 5, ..TotpWindow::new(T, 1) };
        for d in 4..=6 {
            let m = verify(&code_at(current() + d, Digits::SIX), w).unwrap();
            assert_eq!(m.drift_steps, d as i32, "drift is relative to now");
        }
        assert_eq!(verify(&code_at(current(), Digits::SIX), w), None);
        let w = TotpWindow { drift_steps: -3, ..TotpWindow::new(T, 0) };
        assert_eq!(
            verify(&code_at(current() - 3, Digits::SIX), w),
            Some(TotpMatch { step: current() - 3, drift_steps: -3 })
        );
    }

    #[test]
    fn min_step_blocks_replay() {
        let w = TotpWindow::new(T, 1);
        let c = code_at(current(), Digits::SIX);
        let m = verify(&c, w).unwrap();
        let after = TotpWindow { min_step: m.step + 1, ..w };
        assert_eq!(verify(&c, after), None, "same code twice");
        assert_eq!(verify(&code_at(current() - 1, Digits::SIX), after), None, "older code after a newer one");
        assert!(verify(&code_at(current() + 1, Digits::SIX), after).is_some());
        // A floor beyond the whole window rejects everything.
        let far = TotpWindow { min_step: current() + 2, ..w };
        assert_eq!(verify(&code_at(current() + 1, Digits::SIX), far), None);
    }

    #[test]
    fn negative_steps_are_never_candidates() {
        // At t = 10 the window with skew 1 is steps -1..=1; step -1 has no
        // counter and is skipped rather than wrapped to u64::MAX.
        let w = TotpWindow::new(10, 1);
        assert!(verify(&code_at(0, Digits::SIX), w).is_some());
        assert!(verify(&code_at(1, Digits::SIX), w).is_some());
        let wrapped = hotp(&secret(), Algorithm::Sha1, u64::MAX, Digits::SIX);
        let wrapped = Code::parse(&format_code(wrapped, Digits::SIX), Digits::SIX).unwrap();
        assert_eq!(verify(&wrapped, w), None);
        // Entirely before the epoch.
        assert_eq!(verify(&code_at(0, Digits::SIX), TotpWindow::new(-3600, 1)), None);
        // Even with a negative replay floor.
        let w = TotpWindow { min_step: -100, ..TotpWindow::new(-30, 1) };
        assert_eq!(verify(&code_at(0, Digits::SIX), w).map(|m| m.step), Some(0));
        assert_eq!(verify(&wrapped, w), None);
    }

    #[test]
    fn step_boundaries() {
        let step = current();
        let start = step * 30;
        let c = code_at(step, Digits::SIX);
        for t in [start, start + 29] {
            assert!(verify(&c, TotpWindow::new(t, 0)).is_some(), "t={t}");
        }
        assert_eq!(verify(&c, TotpWindow::new(start - 1, 0)), None);
        assert_eq!(verify(&c, TotpWindow::new(start + 30, 0)), None);
        // One step late, accepted with skew 1 and reported as drift -1.
        assert_eq!(verify(&c, TotpWindow::new(start + 30, 1)).map(|m| m.drift_steps), Some(-1));
    }

    #[test]
    fn extreme_inputs_do_not_overflow() {
        let c = code_at(0, Digits::SIX);
        for w in [
            TotpWindow { now: i64::MAX, skew_steps: 3, drift_steps: i32::MAX, min_step: 0 },
            TotpWindow { now: i64::MIN, skew_steps: 3, drift_steps: i32::MIN, min_step: i64::MIN },
            TotpWindow { now: 0, skew_steps: 3, drift_steps: 0, min_step: i64::MAX },
        ] {
            let _ = verify(&c, w);
        }
    }

    #[test]
    fn smallest_matching_step_wins() {
        // Find two steps in a window that share a 6-digit code, then check
        // the earlier one is reported.
        let keyed = Keyed::new(&secret(), Algorithm::Sha1);
        let mut seen = std::collections::HashMap::new();
        let (a, b) = (0u64..)
            .find_map(|s| {
                let v = keyed.hotp(s, Digits::SIX);
                seen.insert(v, s).map(|earlier| (earlier, s))
            })
            .unwrap();
        let code = code_at(a as i64, Digits::SIX);
        let mid = ((a + b) / 2) as i64;
        let w = TotpWindow::new(mid * 30, (b - a) as u32);
        assert_eq!(verify(&code, w).map(|m| m.step), Some(a as i64));
        let m = verify_hotp(&secret(), Algorithm::Sha1, Digits::SIX, &code, a, (b - a) as u32);
        assert_eq!(m, Some(HotpMatch { counter: a }));
        let m = verify_hotp(&secret(), Algorithm::Sha1, Digits::SIX, &code, a + 1, (b - a) as u32);
        assert_eq!(m, Some(HotpMatch { counter: b }));
    }

    #[test]
    fn digits_mismatch_never_matches() {
        let c8 = code_at(current(), Digits::EIGHT);
        assert_eq!(verify(&c8, TotpWindow::new(T, 1)), None);
    }

    #[test]
    fn hotp_look_ahead() {
        let s = secret();
        let c = |n: u64| code_at(n as i64, Digits::SIX);
        let v = |code: &Code, next: u64, ahead: u32| verify_hotp(&s, Algorithm::Sha1, Digits::SIX, code, next, ahead);
        assert_eq!(v(&c(5), 5, 0), Some(HotpMatch { counter: 5 }));
        assert_eq!(v(&c(6), 5, 0), None);
        assert_eq!(v(&c(15), 5, DEFAULT_HOTP_LOOK_AHEAD), Some(HotpMatch { counter: 15 }));
        assert_eq!(v(&c(16), 5, DEFAULT_HOTP_LOOK_AHEAD), None);
        assert_eq!(v(&c(4), 5, DEFAULT_HOTP_LOOK_AHEAD), None, "no look-behind");
        // RFC 4226 appendix D codes via the public API.
        let code = Code::parse("520489", Digits::SIX).unwrap();
        assert_eq!(v(&code, 0, 10), Some(HotpMatch { counter: 9 }));
        // Saturation at the top of the counter space.
        let top = hotp(&s, Algorithm::Sha1, u64::MAX, Digits::SIX);
        let top = Code::parse(&format_code(top, Digits::SIX), Digits::SIX).unwrap();
        assert_eq!(v(&top, u64::MAX - 1, 10), Some(HotpMatch { counter: u64::MAX }));
    }

    #[test]
    fn hotp_resync() {
        let s = secret();
        let c = |n: u64| code_at(n as i64, Digits::SIX);
        let r = |a: &Code, b: &Code, next: u64, window: u32| {
            resync_hotp(&s, Algorithm::Sha1, Digits::SIX, a, b, next, window)
        };
        assert_eq!(r(&c(60), &c(61), 10, 100), Some(HotpMatch { counter: 61 }));
        assert_eq!(r(&c(10), &c(11), 10, 0), Some(HotpMatch { counter: 11 }));
        assert_eq!(r(&c(110), &c(111), 10, 100), Some(HotpMatch { counter: 111 }));
        assert_eq!(r(&c(111), &c(112), 10, 100), None, "beyond window");
        assert_eq!(r(&c(60), &c(62), 10, 100), None, "not consecutive");
        assert_eq!(r(&c(61), &c(60), 10, 100), None, "wrong order");
        assert_eq!(r(&c(5), &c(6), 10, 100), None, "behind next_counter");
        let top = |n: u64| {
            let v = hotp(&s, Algorithm::Sha1, n, Digits::SIX);
            Code::parse(&format_code(v, Digits::SIX), Digits::SIX).unwrap()
        };
        assert_eq!(r(&top(u64::MAX - 1), &top(u64::MAX), u64::MAX - 5, 100), Some(HotpMatch { counter: u64::MAX }));
        assert_eq!(r(&top(u64::MAX), &top(0), u64::MAX, 100), None);
    }

    #[test]
    fn totp_resync() {
        let s = secret();
        let r = |a: &Code, b: &Code, now: i64, window: u32, min_step: i64| {
            resync_totp(&s, Algorithm::Sha1, Digits::SIX, Period::THIRTY, a, b, now, window, min_step)
        };
        let cur = current();
        let c = |st: i64| code_at(st, Digits::SIX);
        assert_eq!(r(&c(cur + 40), &c(cur + 41), T, 100, 0), Some(TotpMatch { step: cur + 41, drift_steps: 41 }));
        assert_eq!(r(&c(cur - 80), &c(cur - 79), T, 100, 0), Some(TotpMatch { step: cur - 79, drift_steps: -79 }));
        assert_eq!(r(&c(cur + 99), &c(cur + 100), T, 100, 0).map(|m| m.step), Some(cur + 100));
        assert_eq!(r(&c(cur + 100), &c(cur + 101), T, 100, 0), None, "second beyond window");
        assert_eq!(r(&c(cur - 101), &c(cur - 100), T, 100, 0), None, "first beyond window");
        assert_eq!(r(&c(cur), &c(cur + 2), T, 100, 0), None);
        assert_eq!(r(&c(cur - 10), &c(cur - 9), T, 100, cur - 9), None, "first below min_step");
        assert!(r(&c(cur - 10), &c(cur - 9), T, 100, cur - 10).is_some());
        assert_eq!(r(&c(0), &c(1), 15, 0, 0), None, "window of one step");
        assert_eq!(r(&c(0), &c(1), 15, 2, i64::MIN).map(|m| m.step), Some(1), "negative steps skipped");
    }

    #[test]
    fn skew_steps_rounds_up() {
        assert_eq!(skew_steps(0, Period::THIRTY), 0);
        assert_eq!(skew_steps(1, Period::THIRTY), 1);
        assert_eq!(skew_steps(30, Period::THIRTY), 1);
        assert_eq!(skew_steps(31, Period::THIRTY), 2);
        assert_eq!(skew_steps(30, Period::SIXTY), 1);
        assert_eq!(skew_steps(90, Period::SIXTY), 2);
        assert_eq!(skew_steps(MAX_SKEW_SECONDS, Period::THIRTY), 10);
        assert_eq!(skew_steps(MAX_SKEW_SECONDS, Period::SIXTY), 5);
        assert_eq!(skew_steps(u32::MAX, Period::THIRTY), 143_165_577);
    }
}
