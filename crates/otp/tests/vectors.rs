//! Published test vectors (RFC 4226 appendix D, RFC 6238 appendix B) and
//! property tests over the public API.
//!
//! These tests must only use the public API, so they check exactly what
//! other crates can rely on.

use proptest::prelude::*;
use tessera_otp::{
    Algorithm, Code, Digits, HotpMatch, Keyed, OtpKind, OtpParams, OtpauthUri, Period, Secret, TotpWindow, format_code,
    hotp, resync_hotp, time_step, totp, verify_hotp, verify_totp,
};

const RFC4226_SECRET: &[u8] = b"12345678901234567890";

#[test]
fn rfc4226_appendix_d() {
    let secret = Secret::from_bytes(RFC4226_SECRET.to_vec()).unwrap();
    let want = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
    for (counter, want) in want.iter().enumerate() {
        let value = hotp(&secret, Algorithm::Sha1, counter as u64, Digits::SIX);
        assert_eq!(format_code(value, Digits::SIX), *want, "counter {counter}");
        let code = Code::parse(want, Digits::SIX).unwrap();
        assert_eq!(
            verify_hotp(&secret, Algorithm::Sha1, Digits::SIX, &code, counter as u64, 0),
            Some(HotpMatch { counter: counter as u64 })
        );
    }
    // Appendix D "Truncated" table, hexadecimal column.
    let keyed = Keyed::new(&secret, Algorithm::Sha1);
    let truncated = [
        0x4c93_cf18u32,
        0x4139_7eea,
        0x082f_ef30,
        0x66ef_7655,
        0x61c5_938a,
        0x33c0_83d4,
        0x7256_c032,
        0x04e5_b397,
        0x2823_443f,
        0x2679_dc69,
    ];
    for (counter, want) in truncated.into_iter().enumerate() {
        assert_eq!(keyed.truncated(counter as u64), want, "counter {counter}");
    }
}

const RFC6238_TIMES: [i64; 6] = [59, 1_111_111_109, 1_111_111_111, 1_234_567_890, 2_000_000_000, 20_000_000_000];

fn check_rfc6238(algorithm: Algorithm, seed: &[u8], want: [&str; 6]) {
    let secret = Secret::from_bytes(seed.to_vec()).unwrap();
    for (t, want) in RFC6238_TIMES.into_iter().zip(want) {
        let value = totp(&secret, algorithm, Digits::EIGHT, Period::THIRTY, t).unwrap();
        assert_eq!(format_code(value, Digits::EIGHT), want, "{algorithm} at {t}");
        let code = Code::parse(want, Digits::EIGHT).unwrap();
        let m = verify_totp(&secret, algorithm, Digits::EIGHT, Period::THIRTY, &code, &TotpWindow::new(t, 0)).unwrap();
        assert_eq!(m.step, time_step(t, Period::THIRTY));
        assert_eq!(m.drift_steps, 0);
    }
}

#[test]
fn rfc6238_appendix_b_steps() {
    // The "Value of T (hex)" column.
    let want = [0x1i64, 0x0235_23EC, 0x0235_23ED, 0x0273_EF07, 0x03F9_40AA, 0x27BC_86AA];
    for (t, want) in RFC6238_TIMES.into_iter().zip(want) {
        assert_eq!(time_step(t, Period::THIRTY), want, "T at {t}");
    }
}

#[test]
fn rfc6238_appendix_b_sha1() {
    check_rfc6238(
        Algorithm::Sha1,
        b"12345678901234567890",
        ["94287082", "07081804", "14050471", "89005924", "69279037", "65353130"],
    );
}

#[test]
fn rfc6238_appendix_b_sha256() {
    check_rfc6238(
        Algorithm::Sha256,
        b"12345678901234567890123456789012",
        ["46119246", "68084774", "67062674", "91819424", "90698825", "77737706"],
    );
}

#[test]
fn rfc6238_appendix_b_sha512() {
    check_rfc6238(
        Algorithm::Sha512,
        b"1234567890123456789012345678901234567890123456789012345678901234",
        ["90693936", "25091201", "99943326", "93441116", "38618901", "47863826"],
    );
}

#[test]
fn rfc4226_resync_via_public_api() {
    let secret = Secret::from_bytes(RFC4226_SECRET.to_vec()).unwrap();
    let first = Code::parse("399871", Digits::SIX).unwrap(); // counter 8
    let second = Code::parse("520489", Digits::SIX).unwrap(); // counter 9
    assert_eq!(
        resync_hotp(&secret, Algorithm::Sha1, Digits::SIX, &first, &second, 0, 100),
        Some(HotpMatch { counter: 9 })
    );
}

// ---------------------------------------------------------------- proptest

fn secret_strategy() -> impl Strategy<Value = Secret> {
    prop::collection::vec(any::<u8>(), 10..=128).prop_map(|b| Secret::from_bytes(b).unwrap())
}

fn algorithm_strategy() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

fn digits_strategy() -> impl Strategy<Value = Digits> {
    prop::sample::select(vec![Digits::SIX, Digits::EIGHT])
}

fn period_strategy() -> impl Strategy<Value = Period> {
    prop::sample::select(vec![Period::THIRTY, Period::SIXTY])
}

fn time_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -1_000i64..4_102_444_800,
        1 => any::<i64>(),
    ]
}

fn window_strategy() -> impl Strategy<Value = TotpWindow> {
    (
        time_strategy(),
        0u32..=10,
        prop_oneof![4 => -20i32..=20, 1 => any::<i32>()],
        prop_oneof![
            2 => Just(0i64),
            2 => -1_000i64..200_000_000,
            1 => any::<i64>(),
        ],
    )
        .prop_map(|(now, skew_steps, drift_steps, min_step)| TotpWindow { now, skew_steps, drift_steps, min_step })
}

fn code_input_strategy() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[0-9]{6}", "[0-9]{8}", "[0-9 -]{5,9}", "\\PC{6}",]
}

fn in_window(step: i64, w: &TotpWindow, period: Period) -> bool {
    let center = time_step(w.now, period).saturating_add(i64::from(w.drift_steps));
    let skew = i64::from(w.skew_steps);
    step >= 0 && step >= w.min_step && step >= center.saturating_sub(skew) && step <= center.saturating_add(skew)
}

fn code_for(secret: &Secret, alg: Algorithm, counter: u64, digits: Digits) -> String {
    format_code(hotp(secret, alg, counter, digits), digits)
}

fn account_strategy() -> impl Strategy<Value = String> {
    "\\PC{1,24}".prop_filter("leading spaces are not preserved after an issuer", |s| !s.starts_with(' '))
}

fn uri_strategy() -> impl Strategy<Value = OtpauthUri> {
    (
        secret_strategy(),
        algorithm_strategy(),
        digits_strategy(),
        prop::option::of(period_strategy()),
        any::<u64>(),
        account_strategy(),
        prop::option::of("\\PC{1,16}"),
    )
        .prop_map(|(secret, algorithm, digits, period, counter, account, issuer)| {
            let (kind, counter) = match period {
                Some(period) => (OtpKind::Totp { period }, None),
                None => (OtpKind::Hotp, Some(counter)),
            };
            OtpauthUri { params: OtpParams { kind, algorithm, digits }, secret, account, issuer, counter }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn verify_never_panics_on_arbitrary_input(
        secret in secret_strategy(),
        alg in algorithm_strategy(),
        digits in digits_strategy(),
        period in period_strategy(),
        input in code_input_strategy(),
        window in window_strategy(),
        next_counter in any::<u64>(),
        look_ahead in 0u32..=20,
    ) {
        if let Ok(code) = Code::parse(&input, digits) {
            let _ = verify_totp(&secret, alg, digits, period, &code, &window);
            let _ = verify_hotp(&secret, alg, digits, &code, next_counter, look_ahead);
        }
    }

    #[test]
    fn generated_totp_code_in_window_verifies(
        secret in secret_strategy(),
        alg in algorithm_strategy(),
        digits in digits_strategy(),
        period in period_strategy(),
        now in time_strategy(),
        skew_steps in 0u32..=10,
        drift_steps in prop_oneof![4 => -20i32..=20, 1 => any::<i32>()],
        position in any::<u32>(),
        floor in prop_oneof![Just(None), (0i64..=25).prop_map(Some)],
    ) {
        // Pick a step inside the window first, then a replay floor at or
        // below it, so that nearly every case is a real positive.
        let center = time_step(now, period).saturating_add(i64::from(drift_steps));
        let offset = i64::from(position % (2 * skew_steps + 1)) - i64::from(skew_steps);
        let step = center.saturating_add(offset);
        let min_step = floor.map_or(0, |back| step.saturating_sub(back));
        let window = TotpWindow { now, skew_steps, drift_steps, min_step };
        prop_assume!(in_window(step, &window, period));
        let text = code_for(&secret, alg, step.unsigned_abs(), digits);
        let code = Code::parse(&text, digits).unwrap();
        let m = verify_totp(&secret, alg, digits, period, &code, &window);
        let m = m.expect("in-window code must verify");
        // The earliest match wins, which may be an earlier step with the same code.
        prop_assert!(m.step <= step);
        prop_assert!(in_window(m.step, &window, period));
        prop_assert_eq!(code_for(&secret, alg, m.step.unsigned_abs(), digits), text);
        let expected_drift = m.step - time_step(window.now, period);
        prop_assert_eq!(
            i64::from(m.drift_steps),
            expected_drift.clamp(i64::from(i32::MIN), i64::from(i32::MAX))
        );
    }

    #[test]
    fn no_false_accept_totp(
        secret in secret_strategy(),
        alg in algorithm_strategy(),
        digits in digits_strategy(),
        period in period_strategy(),
        input in code_input_strategy(),
        window in window_strategy(),
    ) {
        match Code::parse(&input, digits) {
            Err(_) => prop_assert!(
                input.len() != usize::from(digits.get())
                    || !input.bytes().all(|b| b.is_ascii_digit())
            ),
            Ok(code) => {
                prop_assert_eq!(code.as_str(), input.as_str());
                if let Some(m) = verify_totp(&secret, alg, digits, period, &code, &window) {
                    prop_assert!(in_window(m.step, &window, period));
                    prop_assert_eq!(code_for(&secret, alg, m.step.unsigned_abs(), digits), input);
                }
            }
        }
    }

    #[test]
    fn hotp_look_ahead_properties(
        secret in secret_strategy(),
        alg in algorithm_strategy(),
        digits in digits_strategy(),
        next_counter in prop_oneof![0u64..1_000_000, any::<u64>()],
        look_ahead in 0u32..=20,
        offset in 0u64..=20,
        input in code_input_strategy(),
    ) {
        let hi = next_counter.saturating_add(u64::from(look_ahead));
        let counter = next_counter.saturating_add(offset);
        if counter <= hi {
            let text = code_for(&secret, alg, counter, digits);
            let code = Code::parse(&text, digits).unwrap();
            let m = verify_hotp(&secret, alg, digits, &code, next_counter, look_ahead)
                .expect("in-window counter must verify");
            prop_assert!(m.counter >= next_counter && m.counter <= counter);
            prop_assert_eq!(code_for(&secret, alg, m.counter, digits), text);
        }
        if let Ok(code) = Code::parse(&input, digits)
            && let Some(m) = verify_hotp(&secret, alg, digits, &code, next_counter, look_ahead)
        {
            prop_assert!(m.counter >= next_counter && m.counter <= hi);
            prop_assert_eq!(code_for(&secret, alg, m.counter, digits), input);
        }
    }

    #[test]
    fn base32_never_panics(input in prop_oneof![".{0,300}", "[A-Za-z2-7 =-]{0,260}"]) {
        if let Ok(secret) = Secret::from_base32(&input) {
            prop_assert_eq!(Secret::from_base32(&secret.to_base32()).unwrap(), secret);
        }
    }

    #[test]
    fn base32_round_trips(secret in secret_strategy()) {
        let text = secret.to_base32();
        prop_assert!(!text.contains('='));
        prop_assert!(text.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        let back = Secret::from_base32(&text).unwrap();
        prop_assert_eq!(back.as_bytes(), secret.as_bytes());
        let lower = Secret::from_base32(&text.to_ascii_lowercase()).unwrap();
        prop_assert_eq!(lower.as_bytes(), secret.as_bytes());
        let hex: String = secret.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        prop_assert_eq!(Secret::from_hex(&hex).unwrap(), secret);
    }

    #[test]
    fn uri_parse_never_panics(input in prop_oneof![
        ".{0,200}",
        "(?i:otpauth)://(totp|hotp|x|)/[^?#]{0,20}(\\?((secret|issuer|digits|period|counter|algorithm)=[A-Za-z0-9%:+=]{0,24}|&){0,8})?(#.*)?",
    ]) {
        let _ = OtpauthUri::parse(&input);
    }

    #[test]
    fn uri_round_trips(uri in uri_strategy()) {
        let text = uri.to_string();
        prop_assert!(text.len() <= tessera_otp::MAX_URI_LEN);
        let parsed = OtpauthUri::parse(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&uri), "{}", text);
        let again = parsed.map(|u| u.to_string());
        prop_assert_eq!(again, Ok(text));
    }
}
