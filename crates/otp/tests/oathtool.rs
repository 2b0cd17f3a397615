//! Cross-check against an independent implementation: the `oathtool`
//! binary from OATH Toolkit (Debian package `oathtool`).
//!
//! Cases come from a fixed-seed generator so failures reproduce. This test
//! must not silently pass when the tool is required: with
//! `TESSERA_REQUIRE_TOOLS=1` a missing `oathtool` is a failure.

use std::process::Command;

use tessera_otp::{Algorithm, Digits, Period, Secret, format_code, hotp, time_step};

/// Codes per invocation (`-w 4` prints the base counter/step and 4 more).
const WINDOW: u64 = 4;
const TOTP_CASES: usize = 150;
const HOTP_CASES: usize = 50;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn secret(&mut self) -> Secret {
        let len = 10 + self.below(55) as usize; // 10..=64 bytes
        let bytes = (0..len).map(|_| self.next() as u8).collect();
        Secret::from_bytes(bytes).unwrap()
    }
}

fn hex(secret: &Secret) -> String {
    secret.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn oathtool_available() -> bool {
    let found = Command::new("oathtool").arg("--version").output().is_ok();
    if !found {
        if std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("oathtool is required (TESSERA_REQUIRE_TOOLS=1) but not on PATH; apt-get install oathtool");
        }
        eprintln!("skipping: oathtool not installed");
    }
    found
}

fn run(args: &[String]) -> Vec<String> {
    let out = Command::new("oathtool").args(args).output().expect("run oathtool");
    assert!(out.status.success(), "oathtool {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output").lines().map(str::to_owned).collect()
}

#[test]
fn totp_matches_oathtool() {
    if !oathtool_available() {
        return;
    }
    let mut rng = SplitMix(0x7e55_e7a0_0001);
    for case in 0..TOTP_CASES {
        let secret = rng.secret();
        let alg = Algorithm::ALL[case % 3];
        let digits = if rng.below(2) == 0 { Digits::SIX } else { Digits::EIGHT };
        let period = if rng.below(2) == 0 { Period::THIRTY } else { Period::SIXTY };
        let now = rng.below(4_102_444_800) as i64;
        // Some cases go through oathtool's base32 input to check our encoder.
        let base32 = case % 10 == 0;
        let mut args = vec![
            format!("--totp={}", alg.as_str().to_ascii_lowercase()),
            format!("--digits={}", digits.get()),
            format!("--time-step-size={}s", period.get()),
            format!("--now=@{now}"),
            format!("--window={WINDOW}"),
        ];
        if base32 {
            args.push("--base32".to_owned());
            args.push(secret.to_base32());
        } else {
            args.push(hex(&secret));
        }
        let theirs = run(&args);
        let step = time_step(now, period).unsigned_abs();
        let ours: Vec<String> =
            (0..=WINDOW).map(|k| format_code(hotp(&secret, alg, step + k, digits), digits)).collect();
        assert_eq!(theirs, ours, "case {case}: {alg} digits {digits} period {period} now {now} len {}", secret.len());
    }
}

#[test]
fn hotp_matches_oathtool() {
    if !oathtool_available() {
        return;
    }
    let mut rng = SplitMix(0x7e55_e7a0_0002);
    for case in 0..HOTP_CASES {
        let secret = rng.secret();
        let digits = if rng.below(2) == 0 { Digits::SIX } else { Digits::EIGHT };
        let counter = match case % 3 {
            0 => rng.below(1_000),
            1 => rng.next() >> 1,
            _ => u64::MAX - WINDOW - rng.below(100),
        };
        let args = vec![
            "--hotp".to_owned(),
            format!("--counter={counter}"),
            format!("--digits={}", digits.get()),
            format!("--window={WINDOW}"),
            hex(&secret),
        ];
        let theirs = run(&args);
        let ours: Vec<String> =
            (0..=WINDOW).map(|k| format_code(hotp(&secret, Algorithm::Sha1, counter + k, digits), digits)).collect();
        assert_eq!(theirs, ours, "case {case}: counter {counter} digits {digits} len {}", secret.len());
    }
}
