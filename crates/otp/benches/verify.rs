//! Verification cost: what one login attempt spends in the OTP engine.
//!
//! Fixed inputs only; this bench must not read the clock for its inputs, so
//! runs are comparable.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera_otp::{
    Algorithm, Code, DEFAULT_HOTP_LOOK_AHEAD, Digits, Keyed, Period, Secret, TotpWindow, format_code, hotp, time_step,
    verify_hotp, verify_totp, verify_totp_keyed,
};

const NOW: i64 = 1_700_000_000;

fn secret(len: usize) -> Secret {
    Secret::from_bytes((0..len).map(|i| (i * 31 + 7) as u8).collect()).unwrap()
}

/// A well-formed code that matches no candidate, i.e. the full cost of a
/// wrong guess.
fn miss(secret: &Secret, alg: Algorithm, counters: impl Iterator<Item = u64>) -> Code {
    let used: Vec<u32> = counters.map(|c| hotp(secret, alg, c, Digits::SIX)).collect();
    let value = (0..).find(|v| !used.contains(v)).unwrap();
    Code::parse(&format_code(value, Digits::SIX), Digits::SIX).unwrap()
}

fn benches(c: &mut Criterion) {
    let s20 = secret(20);
    let s32 = secret(32);
    let window = TotpWindow::new(NOW, 1);
    let step = time_step(NOW, Period::THIRTY) as u64;

    let hit =
        Code::parse(&format_code(hotp(&s20, Algorithm::Sha1, step, Digits::SIX), Digits::SIX), Digits::SIX).unwrap();
    c.bench_function("verify_totp_sha1_window1_hit", |b| {
        b.iter(|| {
            verify_totp(
                black_box(&s20),
                Algorithm::Sha1,
                Digits::SIX,
                Period::THIRTY,
                black_box(&hit),
                black_box(&window),
            )
        })
    });

    let miss_sha1 = miss(&s20, Algorithm::Sha1, step - 1..=step + 1);
    c.bench_function("verify_totp_sha1_window1_miss", |b| {
        b.iter(|| {
            verify_totp(
                black_box(&s20),
                Algorithm::Sha1,
                Digits::SIX,
                Period::THIRTY,
                black_box(&miss_sha1),
                black_box(&window),
            )
        })
    });

    // Same miss with the key schedule hoisted out, as a caller holding a
    // `Keyed` per account would see it.
    let keyed = Keyed::new(&s20, Algorithm::Sha1);
    c.bench_function("verify_totp_keyed_sha1_window1_miss", |b| {
        b.iter(|| {
            verify_totp_keyed(black_box(&keyed), Digits::SIX, Period::THIRTY, black_box(&miss_sha1), black_box(&window))
        })
    });

    let miss_sha256 = miss(&s32, Algorithm::Sha256, step - 1..=step + 1);
    c.bench_function("verify_totp_sha256_window1_miss", |b| {
        b.iter(|| {
            verify_totp(
                black_box(&s32),
                Algorithm::Sha256,
                Digits::SIX,
                Period::THIRTY,
                black_box(&miss_sha256),
                black_box(&window),
            )
        })
    });

    let next = 1_000u64;
    let miss_hotp = miss(&s20, Algorithm::Sha1, next..=next + u64::from(DEFAULT_HOTP_LOOK_AHEAD));
    c.bench_function("verify_hotp_lookahead10_miss", |b| {
        b.iter(|| {
            verify_hotp(
                black_box(&s20),
                Algorithm::Sha1,
                Digits::SIX,
                black_box(&miss_hotp),
                black_box(next),
                DEFAULT_HOTP_LOOK_AHEAD,
            )
        })
    });

    c.bench_function("hotp_sha1_single", |b| {
        b.iter(|| hotp(black_box(&s20), Algorithm::Sha1, black_box(step), Digits::SIX))
    });
}

criterion_group!(verify, benches);
criterion_main!(verify);
