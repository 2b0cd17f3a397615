//! HOTP (RFC 4226): HMAC over a big-endian 64-bit counter, dynamic
//! truncation, reduction modulo `10^digits`.
//!
//! [`Keyed`] runs the HMAC key schedule once so that checking a window of
//! counters costs one key setup plus two compressions per counter. This
//! module must not compare codes (see `verify`), must not allocate on the
//! per-counter path, and must not expose key-derived state.

use core::fmt;

use hmac::digest::Key;
use hmac::digest::block_api::EagerHash;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use zeroize::Zeroize;

use crate::algorithm::Algorithm;
use crate::params::Digits;
use crate::secret::Secret;

/// HMAC with the key already absorbed: cloning it is much cheaper than
/// re-keying, because re-keying hashes both padded key blocks again.
#[derive(Clone)]
pub struct Keyed {
    mac: KeyedMac,
}

#[derive(Clone)]
enum KeyedMac {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl Keyed {
    /// Runs the HMAC key schedule for `secret`.
    pub fn new(secret: &Secret, algorithm: Algorithm) -> Keyed {
        let key = secret.as_bytes();
        let mac = match algorithm {
            Algorithm::Sha1 => KeyedMac::Sha1(keyed_mac(key)),
            Algorithm::Sha256 => KeyedMac::Sha256(keyed_mac(key)),
            Algorithm::Sha512 => KeyedMac::Sha512(keyed_mac(key)),
        };
        Keyed { mac }
    }

    /// The hash function this state was keyed for.
    pub fn algorithm(&self) -> Algorithm {
        match self.mac {
            KeyedMac::Sha1(_) => Algorithm::Sha1,
            KeyedMac::Sha256(_) => Algorithm::Sha256,
            KeyedMac::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// The 31-bit dynamically truncated value (RFC 4226 section 5.3, step 2)
    /// before reduction; exposed for test vectors and diagnostics.
    pub fn truncated(&self, counter: u64) -> u32 {
        match &self.mac {
            KeyedMac::Sha1(mac) => truncated_with(mac, counter),
            KeyedMac::Sha256(mac) => truncated_with(mac, counter),
            KeyedMac::Sha512(mac) => truncated_with(mac, counter),
        }
    }

    /// The HOTP value for `counter`.
    pub fn hotp(&self, counter: u64, digits: Digits) -> u32 {
        self.truncated(counter) % digits.modulus()
    }
}

impl fmt::Debug for Keyed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed").field("algorithm", &self.algorithm()).finish_non_exhaustive()
    }
}

/// One-shot HOTP value for `counter`. Prefer [`Keyed`] when evaluating
/// several counters with the same key.
pub fn hotp(secret: &Secret, algorithm: Algorithm, counter: u64, digits: Digits) -> u32 {
    Keyed::new(secret, algorithm).hotp(counter, digits)
}

/// Renders a code value with leading zeros, as authenticators display it.
pub fn format_code(value: u32, digits: Digits) -> String {
    format!("{value:0width$}", width = usize::from(digits.get()))
}

/// Keys an HMAC infallibly. `Mac::new_from_slice` returns a `Result` even
/// though HMAC accepts any key length; normalising the key to exactly one
/// block (RFC 2104: hash if longer, zero-pad if shorter) lets us use the
/// infallible `KeyInit::new` and keep this crate free of `expect`.
fn keyed_mac<D>(key: &[u8]) -> Hmac<D>
where
    D: EagerHash,
    Hmac<D>: KeyInit,
{
    let mut block = Key::<Hmac<D>>::default();
    if key.len() <= block.len() {
        block[..key.len()].copy_from_slice(key);
    } else {
        let mut hashed = D::digest(key);
        let n = hashed.len().min(block.len());
        block[..n].copy_from_slice(&hashed[..n]);
        hashed.as_mut_slice().zeroize();
    }
    let mac = <Hmac<D> as KeyInit>::new(&block);
    block.as_mut_slice().zeroize();
    mac
}

fn truncated_with<D>(keyed: &Hmac<D>, counter: u64) -> u32
where
    D: EagerHash,
    Hmac<D>: Mac + Clone,
{
    let mut mac = keyed.clone();
    mac.update(&counter.to_be_bytes());
    dynamic_truncation(&mac.finalize().into_bytes())
}

/// RFC 4226 section 5.3. Every supported hash has at least 20 output bytes
/// and the offset is at most 15, so the four bytes read are always in range.
fn dynamic_truncation(mac: &[u8]) -> u32 {
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let word = [mac[offset], mac[offset + 1], mac[offset + 2], mac[offset + 3]];
    u32::from_be_bytes(word) & 0x7fff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> Secret {
        Secret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
    }

    #[test]
    fn rfc4226_truncated_values() {
        // RFC 4226 appendix D, "Truncated" table (decimal column).
        let want = [
            1_284_755_224u32,
            1_094_287_082,
            137_359_152,
            1_726_969_429,
            1_640_338_314,
            868_254_676,
            1_918_287_922,
            82_162_583,
            673_399_871,
            645_520_489,
        ];
        let keyed = Keyed::new(&rfc_secret(), Algorithm::Sha1);
        for (counter, want) in want.into_iter().enumerate() {
            assert_eq!(keyed.truncated(counter as u64), want, "counter {counter}");
        }
    }

    #[test]
    fn rfc4226_section_5_4_example() {
        // The worked example: offset 10 selects 0x50ef7f19.
        let mac = [
            0x1f, 0x86, 0x98, 0x69, 0x0e, 0x02, 0xca, 0x16, 0x61, 0x85, 0x50, 0xef, 0x7f, 0x19, 0xda, 0x8e, 0x94, 0x5b,
            0x55, 0x5a,
        ];
        assert_eq!(dynamic_truncation(&mac), 0x50ef_7f19);
        assert_eq!(dynamic_truncation(&mac) % 1_000_000, 872_921);
    }

    #[test]
    fn keyed_matches_hmac_crate_for_every_key_length() {
        // Covers the zero-pad path and the hash-the-long-key path of
        // `keyed_mac` against the hmac crate's own key handling.
        for len in [10usize, 20, 63, 64, 65, 100, 127, 128] {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let secret = Secret::from_bytes(key.clone()).unwrap();
            for alg in Algorithm::ALL {
                let keyed = Keyed::new(&secret, alg);
                for counter in [0u64, 1, 0xdead_beef, u64::MAX] {
                    let msg = counter.to_be_bytes();
                    let reference = match alg {
                        Algorithm::Sha1 => {
                            let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(&key).unwrap();
                            m.update(&msg);
                            dynamic_truncation(&m.finalize().into_bytes())
                        }
                        Algorithm::Sha256 => {
                            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
                            m.update(&msg);
                            dynamic_truncation(&m.finalize().into_bytes())
                        }
                        Algorithm::Sha512 => {
                            let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(&key).unwrap();
                            m.update(&msg);
                            dynamic_truncation(&m.finalize().into_bytes())
                        }
                    };
                    assert_eq!(keyed.truncated(counter), reference, "{alg} len {len}");
                }
            }
        }
    }

    #[test]
    fn one_shot_equals_keyed() {
        let s = rfc_secret();
        let keyed = Keyed::new(&s, Algorithm::Sha256);
        for c in 0..20 {
            assert_eq!(hotp(&s, Algorithm::Sha256, c, Digits::EIGHT), keyed.hotp(c, Digits::EIGHT));
        }
        assert_eq!(keyed.algorithm(), Algorithm::Sha256);
        assert_eq!(format!("{keyed:?}"), "Keyed { algorithm: Sha256, .. }");
    }

    #[test]
    fn format_pads_with_zeros() {
        assert_eq!(format_code(0, Digits::SIX), "000000");
        assert_eq!(format_code(12_345, Digits::SIX), "012345");
        assert_eq!(format_code(7_081_804, Digits::EIGHT), "07081804");
        assert_eq!(format_code(999_999, Digits::SIX), "999999");
    }
}
