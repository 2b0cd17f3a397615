//! Benchmark accounts (deterministic secrets) and the per-worker supply of
//! one-time codes that are valid, in increasing step order per account, and
//! never repeated.

use std::path::Path;

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};
use tessera_otp::{Algorithm, Digits, Keyed, Secret};

pub const PERIOD_S: i64 = 30;

/// Name and keyed HMAC of one account: a tessera user, a privacyIDEA token
/// or a FreeRADIUS user.
pub struct Account {
    pub index: u64,
    pub name: String,
    /// First factor sent before the code (RADIUS peer users); empty for
    /// tessera bench users, which are OTP-only.
    pub password: String,
    pub key: Keyed,
}

impl Account {
    pub fn code(&self, step: i64) -> u32 {
        self.key.hotp(u64::try_from(step).unwrap_or(0), Digits::SIX)
    }
}

/// Secret of bench user `i`: the first 20 bytes of SHA-256("tessera-bench-{seed}-{i}").
pub fn bench_secret(seed: &str, i: u64) -> anyhow::Result<Secret> {
    let digest = Sha256::digest(format!("tessera-bench-{seed}-{i}").as_bytes());
    Secret::from_bytes(digest[..20].to_vec()).map_err(|e| anyhow::anyhow!("bench secret: {e}"))
}

pub fn bench_username(i: u64) -> String {
    format!("bench{i:06}")
}

pub fn bench_serial(i: u64) -> String {
    format!("BENCH{i:06}")
}

/// Tessera bench users `[first, first + count)`.
pub fn tessera_accounts(seed: &str, first: u64, count: u64) -> anyhow::Result<Vec<Account>> {
    (first..first + count)
        .map(|i| {
            Ok(Account {
                index: i,
                name: bench_username(i),
                password: String::new(),
                key: Keyed::new(&bench_secret(seed, i)?, Algorithm::Sha1),
            })
        })
        .collect()
}

/// privacyIDEA tokens from a `serial,hexkey[,...]` CSV (no header), rows `[first, first + count)`.
pub fn csv_accounts(path: &Path, first: u64, count: Option<u64>) -> anyhow::Result<Vec<Account>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n as u64;
        if line.trim().is_empty() || n < first || count.is_some_and(|c| n >= first + c) {
            continue;
        }
        let mut cols = line.split(',');
        let (Some(serial), Some(hexkey)) = (cols.next(), cols.next()) else {
            bail!("{}:{}: expected `serial,hexkey`", path.display(), n + 1);
        };
        let serial = serial.trim();
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            bail!("{}:{}: serial `{serial}` needs URL encoding; not supported", path.display(), n + 1);
        }
        let secret = Secret::from_hex(hexkey.trim())
            .map_err(|e| anyhow::anyhow!("{}:{}: bad hex key: {e}", path.display(), n + 1))?;
        out.push(Account {
            index: n,
            name: serial.to_string(),
            password: String::new(),
            key: Keyed::new(&secret, Algorithm::Sha1),
        });
    }
    if out.is_empty() {
        bail!("{}: no tokens in the selected range", path.display());
    }
    Ok(out)
}

/// FreeRADIUS peer users from its `users.csv` (`name,password,hexkey[,base32]`,
/// no header; written by `peers/freeradius/setup.sh`), rows `[first, first + count)`.
pub fn peer_accounts(path: &Path, first: u64, count: Option<u64>) -> anyhow::Result<Vec<Account>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n as u64;
        if line.trim().is_empty() || n < first || count.is_some_and(|c| n >= first + c) {
            continue;
        }
        let mut cols = line.split(',').map(str::trim);
        let (Some(name), Some(password), Some(hexkey)) = (cols.next(), cols.next(), cols.next()) else {
            bail!("{}:{}: expected `name,password,hexkey`", path.display(), n + 1);
        };
        if name.is_empty() || name.len() > 64 || password.len() > 64 {
            bail!("{}:{}: name must be 1..=64 and password 0..=64 octets", path.display(), n + 1);
        }
        let secret =
            Secret::from_hex(hexkey).map_err(|e| anyhow::anyhow!("{}:{}: bad hex key: {e}", path.display(), n + 1))?;
        out.push(Account {
            index: n,
            name: name.to_string(),
            password: password.to_string(),
            key: Keyed::new(&secret, Algorithm::Sha1),
        });
    }
    if out.is_empty() {
        bail!("{}: no users in the selected range", path.display());
    }
    Ok(out)
}

/// Which steps a server accepts, relative to the current step.
#[derive(Debug, Clone, Copy)]
pub struct StepRule {
    /// Oldest acceptable step relative to now (tessera: -1; privacyIDEA as used here: 0).
    pub lower: i64,
    /// Newest acceptable step relative to now (+1 for both).
    pub upper: i64,
    /// A code for step `now + lower` is only handed out while it stays
    /// acceptable for at least this many more seconds, so a request that is
    /// slow to arrive is not rejected for having gone stale.
    pub margin_s: f64,
    /// A code for the newest acceptable step is only handed out this many
    /// seconds after that step begins. For servers whose clock reading lags
    /// (FreeRADIUS 3.2.1 rejected codes sent 2 ms after their step began:
    /// it evaluated them with the previous step); 0 for tessera.
    pub lead_s: f64,
    /// The server accepts the same code again (FreeRADIUS 3.2.1 rlm_totp
    /// keeps no state): hand out the oldest acceptable step every time
    /// instead of each step once. Never set for tessera, which rejects
    /// replays.
    pub reuse: bool,
}

pub fn step_of(unix: f64) -> i64 {
    (unix.floor() as i64).div_euclid(PERIOD_S)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Correct,
    Wrong,
}

/// What the supply hands out next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Send `code` for the account at `slot` (an index into the worker's
    /// account list) at `step` (for wrong codes: the step at hand-out time).
    Code { slot: usize, step: i64, code: u32 },
    /// Every account is used up to `now + upper`: nothing valid until this unix time.
    WaitUntil(f64),
}

/// One worker's accounts and the next unused step of each. Only one worker
/// ever sends for an account, one request at a time, so steps reach the
/// server in the order they are handed out.
pub struct Supply {
    slots: Vec<usize>,
    next_step: Vec<i64>,
    /// Precomputed codes: `table[slot * width + (step - base)]`.
    table: Vec<u32>,
    base: i64,
    width: usize,
    wrong: Vec<u32>,
    pos: usize,
    rule: StepRule,
    mode: Mode,
}

impl Supply {
    /// `slots` index `accounts`; codes are precomputed for the steps that can
    /// be valid between `now` and `now + horizon_s`.
    pub fn new(
        accounts: &[Account],
        slots: Vec<usize>,
        rule: StepRule,
        mode: Mode,
        now: f64,
        horizon_s: f64,
    ) -> Supply {
        let first = step_of(now) + rule.lower;
        let last = step_of(now + horizon_s.max(0.0)) + rule.upper;
        let base = first;
        let width = match mode {
            Mode::Correct => usize::try_from(last - first + 1).unwrap_or(1).clamp(1, 64),
            Mode::Wrong => 0,
        };
        let mut table = Vec::with_capacity(slots.len() * width);
        let mut wrong = Vec::new();
        for &s in &slots {
            let a = &accounts[s];
            match mode {
                Mode::Correct => table.extend((0..width as i64).map(|k| a.code(base + k))),
                Mode::Wrong => wrong.push(wrong_code(a, first - 7, last + 8)),
            }
        }
        // Start one before the oldest acceptable step; `next` moves it up to the window.
        let next_step = vec![first; slots.len()];
        Supply { slots, next_step, table, base, width, wrong, pos: 0, rule, mode }
    }

    /// Global account index of a slot.
    pub fn account(&self, slot: usize) -> usize {
        self.slots[slot]
    }

    /// The next code to send at unix time `now`, round robin over this worker's accounts.
    pub fn next(&mut self, accounts: &[Account], now: f64) -> Next {
        let n = self.slots.len();
        if n == 0 {
            return Next::WaitUntil(f64::INFINITY);
        }
        if self.mode == Mode::Wrong {
            let slot = self.pos;
            self.pos = (self.pos + 1) % n;
            return Next::Code { slot, step: step_of(now), code: self.wrong[slot] };
        }
        let lower = step_of(now + self.rule.margin_s) + self.rule.lower;
        let upper = step_of(now - self.rule.lead_s) + self.rule.upper;
        for _ in 0..n {
            let slot = self.pos;
            self.pos = (self.pos + 1) % n;
            let step = if self.rule.reuse { lower } else { self.next_step[slot].max(lower) };
            if step <= upper {
                self.next_step[slot] = step + 1;
                let k = step - self.base;
                let code = if k >= 0 && (k as usize) < self.width {
                    self.table[slot * self.width + k as usize]
                } else {
                    accounts[self.slots[slot]].code(step)
                };
                return Next::Code { slot, step, code };
            }
        }
        // Everyone has used `upper`; the next step opens at the next boundary (plus the lead).
        Next::WaitUntil(((step_of(now - self.rule.lead_s) + 1) * PERIOD_S) as f64 + self.rule.lead_s)
    }
}

/// A 6-digit code that matches none of the account's steps in `[lo, hi]`.
pub fn wrong_code(a: &Account, lo: i64, hi: i64) -> u32 {
    let window: Vec<u32> = (lo..=hi).map(|s| a.code(s)).collect();
    let mut c = (a.index.wrapping_mul(7919) % 1_000_000) as u32;
    while window.contains(&c) {
        c = (c + 1) % 1_000_000;
    }
    c
}

/// Appends `code` as six ASCII digits.
pub fn push_code(out: &mut Vec<u8>, code: u32) {
    let mut d = [0u8; 6];
    let mut c = code;
    for b in d.iter_mut().rev() {
        *b = b'0' + (c % 10) as u8;
        c /= 10;
    }
    out.extend_from_slice(&d);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(n: u64) -> Vec<Account> {
        tessera_accounts("t", 0, n).unwrap()
    }

    const TESSERA: StepRule = StepRule { lower: -1, upper: 1, margin_s: 3.0, lead_s: 0.0, reuse: false };
    /// FreeRADIUS 3.2.1 rlm_totp: the current step only, again and again.
    const PEER: StepRule = StepRule { lower: 0, upper: 0, margin_s: 0.25, lead_s: 0.1, reuse: true };

    #[test]
    fn codes_match_rfc_totp() {
        let secret = bench_secret("1", 0).unwrap();
        let a = Account {
            index: 0,
            name: bench_username(0),
            password: String::new(),
            key: Keyed::new(&secret, Algorithm::Sha1),
        };
        let now = 1_700_000_000i64;
        let expect =
            tessera_otp::totp(&secret, Algorithm::Sha1, Digits::SIX, tessera_otp::Period::THIRTY, now).unwrap();
        assert_eq!(a.code(step_of(now as f64)), expect);
        let mut v = Vec::new();
        push_code(&mut v, 42);
        assert_eq!(v, b"000042");
    }

    #[test]
    fn each_account_gets_increasing_steps_within_the_window_and_no_repeats() {
        let acc = accounts(5);
        let now0 = 1_700_000_000.0; // 20 s into a step
        let mut s = Supply::new(&acc, vec![0, 2, 4], TESSERA, Mode::Correct, now0, 100.0);
        let mut seen = std::collections::HashSet::new();
        let mut last = std::collections::HashMap::new();
        let mut now = now0;
        let mut waits = 0;
        while now < now0 + 100.0 {
            match s.next(&acc, now) {
                Next::Code { slot, step, code } => {
                    let cur = step_of(now);
                    assert!(step >= step_of(now + 3.0) - 1 && step <= cur + 1, "step {step} at {now}");
                    assert!(seen.insert((slot, step)), "repeat");
                    if let Some(prev) = last.insert(slot, step) {
                        assert!(step > prev);
                    }
                    assert_eq!(code, acc[s.account(slot)].code(step));
                    now += 0.5;
                }
                Next::WaitUntil(t) => {
                    assert!(t > now);
                    waits += 1;
                    now = t;
                }
            }
        }
        assert!(waits >= 3);
        // 3 accounts x (3 steps at start + 1 per later boundary)
        assert!(seen.len() >= 3 * 5);
    }

    #[test]
    fn margin_skips_the_step_about_to_expire() {
        let acc = accounts(1);
        let now = 1_700_000_008.0; // 28 s into step S
        let mut s = Supply::new(&acc, vec![0], TESSERA, Mode::Correct, now, 10.0);
        let Next::Code { step, .. } = s.next(&acc, now) else { panic!() };
        assert_eq!(step, step_of(now)); // S-1 would expire within the margin
    }

    #[test]
    fn wrong_codes_are_outside_the_window() {
        let acc = accounts(50);
        let now = 1_700_000_000.0;
        let mut s = Supply::new(&acc, (0..50).collect(), TESSERA, Mode::Wrong, now, 10.0);
        for _ in 0..100 {
            let Next::Code { slot, code, .. } = s.next(&acc, now) else { panic!() };
            let cur = step_of(now);
            for st in cur - 7..=cur + 8 {
                assert_ne!(acc[slot].code(st), code);
            }
        }
    }

    #[test]
    fn peer_rule_repeats_the_current_step_and_pauses_before_the_boundary() {
        let acc = accounts(2);
        let now = 1_700_000_000.0; // 20 s into step S
        let mut s = Supply::new(&acc, vec![0, 1], PEER, Mode::Correct, now, 40.0);
        for _ in 0..10 {
            let Next::Code { slot, step, code } = s.next(&acc, now) else { panic!() };
            assert_eq!(step, step_of(now));
            assert_eq!(code, acc[s.account(slot)].code(step));
        }
        // 0.1 s before the boundary: a code would go stale in flight.
        let boundary = ((step_of(now) + 1) * PERIOD_S) as f64;
        assert_eq!(s.next(&acc, boundary - 0.1), Next::WaitUntil(boundary + 0.1));
        // Just after it: the server may still be reading the old step.
        assert_eq!(s.next(&acc, boundary + 0.05), Next::WaitUntil(boundary + 0.1));
        let Next::Code { step, .. } = s.next(&acc, boundary + 0.15) else { panic!() };
        assert_eq!(step, step_of(now) + 1);
    }

    #[test]
    fn peer_csv_rows() {
        let dir = std::env::temp_dir().join(format!("loadgen-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("users.csv");
        let key = "3132333435363738393031323334353637383930";
        std::fs::write(&f, format!("u00000,pw00000,{key},GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\nu00001,pw00001,{key},X\n"))
            .unwrap();
        let a = peer_accounts(&f, 1, Some(5)).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].index, a[0].name.as_str(), a[0].password.as_str()), (1, "u00001", "pw00001"));
        // RFC 6238 appendix B, SHA-1, T = 59 s.
        assert_eq!(a[0].code(1), 287_082);
        std::fs::write(&f, "u00000,pw00000\n").unwrap();
        assert!(peer_accounts(&f, 0, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
