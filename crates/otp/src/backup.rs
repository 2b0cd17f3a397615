//! Single-use backup (recovery) codes: generation from caller-supplied
//! randomness and normalisation of what users type back in.
//!
//! Digits are drawn by rejection sampling so every digit is exactly uniform.
//! This module must not own a randomness source, must not print codes in
//! Debug output, and must not store or compare codes (the caller hashes them
//! at rest and compares hashes).

use core::fmt;

use zeroize::Zeroizing;

use crate::error::OtpError;

/// Codes issued per set.
pub const BACKUP_CODE_COUNT: usize = 10;

/// Digits per code: about 33 bits, enough for a single-use, rate-limited
/// credential while still easy to type.
pub const BACKUP_CODE_DIGITS: usize = 10;

/// Bytes at or above this are rejected: 250 is the largest multiple of 10
/// not exceeding 256, so `byte % 10` over the accepted range is uniform.
const REJECTION_BOUND: u8 = 250;

/// A fill function that produces no usable byte across this many refills,
/// or the same code this many times in a row, is not random; giving up
/// beats looping forever.
const MAX_FRUITLESS_ATTEMPTS: u32 = 64;

/// One backup code: [`BACKUP_CODE_DIGITS`] ASCII digits.
#[derive(Clone)]
pub struct BackupCode(Zeroizing<String>);

impl BackupCode {
    /// The bare digits, as [`normalize_backup_code`] produces them.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Grouped for display, e.g. `12345-67890`; [`normalize_backup_code`]
    /// strips the dash again.
    pub fn display(&self) -> String {
        match self.0.split_at_checked(BACKUP_CODE_DIGITS / 2) {
            Some((head, tail)) => format!("{head}-{tail}"),
            None => self.0.to_string(),
        }
    }
}

impl fmt::Debug for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupCode([REDACTED])")
    }
}

/// Generates `count` distinct codes from `fill`, which must be a CSPRNG.
///
/// Returns an empty vector if `fill` is evidently broken (see
/// [`try_generate_backup_codes`] for the error instead), so a caller can
/// never hand out a predictable set.
pub fn generate_backup_codes(count: usize, fill: &mut dyn FnMut(&mut [u8])) -> Vec<BackupCode> {
    try_generate_backup_codes(count, fill).unwrap_or_default()
}

/// Like [`generate_backup_codes`], but reports a degenerate fill function as
/// [`OtpError::DegenerateRandomness`].
pub fn try_generate_backup_codes(count: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<Vec<BackupCode>, OtpError> {
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut next = pool.len();
    let mut codes: Vec<BackupCode> = Vec::new();
    let mut duplicates = 0u32;
    while codes.len() < count {
        let mut digits = Zeroizing::new(String::with_capacity(BACKUP_CODE_DIGITS));
        let mut empty_refills = 0u32;
        while digits.len() < BACKUP_CODE_DIGITS {
            if next == pool.len() {
                if empty_refills >= MAX_FRUITLESS_ATTEMPTS {
                    return Err(OtpError::DegenerateRandomness);
                }
                fill(&mut pool[..]);
                next = 0;
                empty_refills += 1;
            }
            let byte = pool[next];
            next += 1;
            if let Some(digit) = digit_from_byte(byte) {
                digits.push(char::from(digit));
                empty_refills = 0;
            }
        }
        if codes.iter().any(|c| c.as_str() == digits.as_str()) {
            duplicates += 1;
            if duplicates >= MAX_FRUITLESS_ATTEMPTS {
                return Err(OtpError::DegenerateRandomness);
            }
            continue;
        }
        duplicates = 0;
        codes.push(BackupCode(digits));
    }
    Ok(codes)
}

/// Maps a random byte to an ASCII digit, or `None` if it must be rejected.
fn digit_from_byte(byte: u8) -> Option<u8> {
    (byte < REJECTION_BOUND).then_some(b'0' + byte % 10)
}

/// Turns user input into the canonical form: spaces and `-` are dropped
/// (people copy the grouped display form), and exactly
/// [`BACKUP_CODE_DIGITS`] ASCII digits must remain.
pub fn normalize_backup_code(input: &str) -> Option<String> {
    let mut out = String::with_capacity(BACKUP_CODE_DIGITS);
    for ch in input.chars() {
        match ch {
            ' ' | '-' => {}
            '0'..='9' if out.len() < BACKUP_CODE_DIGITS => out.push(ch),
            _ => return None,
        }
    }
    (out.len() == BACKUP_CODE_DIGITS).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a tiny deterministic generator standing in for a CSPRNG.
    fn splitmix(seed: u64) -> impl FnMut(&mut [u8]) {
        let mut state = seed;
        move |buf: &mut [u8]| {
            for chunk in buf.chunks_mut(8) {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
            }
        }
    }

    #[test]
    fn count_length_and_distinctness() {
        let codes = generate_backup_codes(BACKUP_CODE_COUNT, &mut splitmix(1));
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.as_str().len(), BACKUP_CODE_DIGITS);
            assert!(c.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
        for (i, a) in codes.iter().enumerate() {
            for b in &codes[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
        assert!(generate_backup_codes(0, &mut splitmix(1)).is_empty());
        assert_eq!(generate_backup_codes(100, &mut splitmix(2)).len(), 100);
    }

    #[test]
    fn rejection_sampling_is_exactly_uniform_over_all_bytes() {
        // Each digit comes from exactly 25 of the 256 byte values; plain
        // `% 10` would give digits 0-5 one extra value (26 vs 25).
        let mut counts = [0u32; 10];
        for b in 0..=u8::MAX {
            if let Some(d) = digit_from_byte(b) {
                counts[usize::from(d - b'0')] += 1;
            }
        }
        assert_eq!(counts, [25; 10]);
    }

    #[test]
    fn bytes_at_or_above_bound_are_rejected() {
        // Bytes 250..=255 would map to digits 0..=5 without rejection.
        let mut toggle = false;
        let mut src = |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                *b = if toggle { 9 } else { 250 + (*b % 6) };
                toggle = !toggle;
            }
        };
        let codes = try_generate_backup_codes(1, &mut src).unwrap();
        assert_eq!(codes[0].as_str(), "9999999999");
    }

    #[test]
    fn digit_distribution_is_loosely_uniform() {
        let codes = generate_backup_codes(2000, &mut splitmix(42));
        let mut counts = [0f64; 10];
        for c in &codes {
            for b in c.as_str().bytes() {
                counts[usize::from(b - b'0')] += 1.0;
            }
        }
        let expected = 2000.0 * 10.0 / 10.0;
        let chi2: f64 = counts.iter().map(|&o| (o - expected).powi(2) / expected).sum();
        // 9 degrees of freedom: p = 0.001 at 27.9. Loose on purpose.
        assert!(chi2 < 40.0, "chi2 {chi2}, counts {counts:?}");
    }

    #[test]
    fn degenerate_fill_is_refused() {
        assert_eq!(
            try_generate_backup_codes(2, &mut |buf: &mut [u8]| buf.fill(0xff)).map(|v| v.len()),
            Err(OtpError::DegenerateRandomness)
        );
        // Constant accepted bytes: the first code is fine, the second can
        // never differ from it.
        assert_eq!(
            try_generate_backup_codes(2, &mut |buf: &mut [u8]| buf.fill(7)).map(|v| v.len()),
            Err(OtpError::DegenerateRandomness)
        );
        assert!(generate_backup_codes(2, &mut |buf: &mut [u8]| buf.fill(7)).is_empty());
        assert_eq!(try_generate_backup_codes(1, &mut |buf: &mut [u8]| buf.fill(7)).unwrap()[0].as_str(), "7777777777");
    }

    #[test]
    fn display_and_debug() {
        let codes = try_generate_backup_codes(1, &mut |buf: &mut [u8]| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = i as u8;
            }
        })
        .unwrap();
        assert_eq!(codes[0].as_str(), "0123456789");
        assert_eq!(codes[0].display(), "01234-56789");
        assert_eq!(format!("{:?}", codes[0]), "BackupCode([REDACTED])");
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_backup_code("01234-56789").as_deref(), Some("0123456789"));
        assert_eq!(normalize_backup_code(" 0123 4567 89 ").as_deref(), Some("0123456789"));
        assert_eq!(normalize_backup_code("0123456789").as_deref(), Some("0123456789"));
        for bad in [
            "",
            "012345678",
            "01234567890",
            "01234_56789",
            "01234\t56789",
            "0123456789a",
            "０１２３４５６７８９",
            "01234–56789", // en dash
        ] {
            assert_eq!(normalize_backup_code(bad), None, "{bad:?}");
        }
    }
}
