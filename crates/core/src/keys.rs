//! The master key and what is derived from it.
//!
//! The master key never lives in the database. Everything secret that does
//! (OTP seeds, later RADIUS secrets) is sealed with XChaCha20-Poly1305 under a
//! key derived from it, with associated data that binds each ciphertext to its
//! purpose and row, so a ciphertext copied into another row does not open.
//! Backup codes are stored as keyed MACs under another derived key, so a stolen
//! database alone does not allow offline guessing.
//!
//! This module does no I/O: reading the key file is the caller's business.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::random::Random;

pub const MASTER_KEY_LEN: usize = 32;
const SEALED_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// Marker prefix of the key file format, so a random file is not mistaken for a key.
const KEY_TEXT_PREFIX: &str = "tessera-master-key-v1:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    #[error(
        "master key is malformed: expected 64 hexadecimal characters, optionally prefixed with `{KEY_TEXT_PREFIX}`"
    )]
    Malformed,
    #[error("sealed value was made with master key {found}, but the loaded key is {loaded}")]
    WrongKey { found: String, loaded: String },
    #[error("sealed value is corrupt or was moved from another record")]
    Corrupt,
    #[error("sealed value has unsupported format version {0}")]
    UnsupportedVersion(u8),
}

/// The 256-bit root key. Zeroized on drop; its Debug output is redacted.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    pub fn generate(rng: &dyn Random) -> Self {
        let mut k = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        rng.fill(&mut k[..]);
        MasterKey(k)
    }

    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        MasterKey(Zeroizing::new(bytes))
    }

    /// Parses the key file / environment format: 64 hex characters, with or
    /// without the `tessera-master-key-v1:` prefix, surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        let t = t.strip_prefix(KEY_TEXT_PREFIX).unwrap_or(t).trim();
        if t.len() != MASTER_KEY_LEN * 2 {
            return Err(KeyError::Malformed);
        }
        let mut k = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        hex::decode_to_slice(t, &mut k[..]).map_err(|_| KeyError::Malformed)?;
        Ok(MasterKey(k))
    }

    /// The key file format. The returned string is itself secret.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{KEY_TEXT_PREFIX}{}\n", hex::encode(&self.0[..])))
    }

    fn derive(&self, info: &str) -> Zeroizing<[u8; 32]> {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"tessera master key v1"), &self.0[..]);
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(info.as_bytes(), &mut out[..]);
        out
    }
}

/// What a sealed value is for. Part of the associated data, so a token seed
/// cannot be opened as, say, a RADIUS secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    OtpSecret,
    RadiusSecret,
    KeyCheck,
    ChallengeState,
    RealmSecret,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::OtpSecret => "otp-secret",
            Purpose::RadiusSecret => "radius-secret",
            Purpose::KeyCheck => "key-check",
            Purpose::ChallengeState => "challenge-state",
            Purpose::RealmSecret => "realm-secret",
        }
    }
}

/// Keys derived from one master key.
pub struct Keyring {
    key_id: [u8; KEY_ID_LEN],
    seal: XChaCha20Poly1305,
    backup_mac: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

impl Keyring {
    pub fn new(master: &MasterKey) -> Self {
        let id = master.derive("key id");
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&id[..KEY_ID_LEN]);
        let seal_key = master.derive("seal");
        let seal = XChaCha20Poly1305::new_from_slice(&seal_key[..]).unwrap_or_else(|_| unreachable!("32-byte key"));
        Keyring { key_id, seal, backup_mac: master.derive("backup code mac") }
    }

    /// A public fingerprint of the master key (16 hex chars). Safe to log and
    /// to compare between nodes; reveals nothing about the key.
    pub fn key_id(&self) -> String {
        hex::encode(self.key_id)
    }

    fn aad(&self, purpose: Purpose, row: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(40 + row.len());
        aad.extend_from_slice(b"tessera/sealed/v1\0");
        aad.extend_from_slice(purpose.label().as_bytes());
        aad.push(0);
        aad.extend_from_slice(row.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.key_id);
        aad
    }

    /// Encrypts `plaintext` for `purpose` and the record `row` (usually its id).
    pub fn seal(&self, rng: &dyn Random, purpose: Purpose, row: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce);
        let aad = self.aad(purpose, row);
        let ct = self
            .seal
            .encrypt((&nonce).into(), Payload { msg: plaintext, aad: &aad })
            .unwrap_or_else(|_| unreachable!("encryption of in-memory data cannot fail"));
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a value made by [`Keyring::seal`] with the same purpose and row.
    pub fn open(&self, purpose: Purpose, row: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(KeyError::Corrupt);
        }
        if sealed[0] != SEALED_VERSION {
            return Err(KeyError::UnsupportedVersion(sealed[0]));
        }
        let found = &sealed[1..1 + KEY_ID_LEN];
        if found != self.key_id {
            return Err(KeyError::WrongKey { found: hex::encode(found), loaded: self.key_id() });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        let aad = self.aad(purpose, row);
        self.seal
            .decrypt((&nonce).into(), Payload { msg: &sealed[HEADER_LEN..], aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Corrupt)
    }

    /// A value stored beside the data that proves which key it was written with.
    pub fn make_check_value(&self, rng: &dyn Random) -> Vec<u8> {
        self.seal(rng, Purpose::KeyCheck, "", b"tessera key check")
    }

    /// Confirms that `check` was made by this key. A wrong key gives
    /// [`KeyError::WrongKey`] naming both key ids.
    pub fn verify_check_value(&self, check: &[u8]) -> Result<(), KeyError> {
        let plain = self.open(Purpose::KeyCheck, "", check)?;
        if plain.as_slice() == b"tessera key check" { Ok(()) } else { Err(KeyError::Corrupt) }
    }

    /// Non-reversible, keyed digest of a backup code, bound to its user.
    pub fn backup_code_digest(&self, user_id: &str, code: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.backup_mac[..])
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(user_id.as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        self.key_id.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::OsRandom;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = Keyring::new(&MasterKey::generate(&OsRandom));
        let s = k.seal(&OsRandom, Purpose::OtpSecret, "tok1", b"secret");
        assert_eq!(k.open(Purpose::OtpSecret, "tok1", &s).unwrap().as_slice(), b"secret");
        assert_eq!(k.open(Purpose::OtpSecret, "tok2", &s), Err(KeyError::Corrupt));
        assert_eq!(k.open(Purpose::RadiusSecret, "tok1", &s), Err(KeyError::Corrupt));
        let mut flipped = s.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(k.open(Purpose::OtpSecret, "tok1", &flipped), Err(KeyError::Corrupt));
        assert_eq!(k.open(Purpose::OtpSecret, "tok1", &s[..10]), Err(KeyError::Corrupt));
    }

    #[test]
    fn wrong_key_is_named() {
        let a = Keyring::new(&MasterKey::generate(&OsRandom));
        let b = Keyring::new(&MasterKey::generate(&OsRandom));
        let check = a.make_check_value(&OsRandom);
        assert!(a.verify_check_value(&check).is_ok());
        match b.verify_check_value(&check) {
            Err(KeyError::WrongKey { found, loaded }) => {
                assert_eq!(found, a.key_id());
                assert_eq!(loaded, b.key_id());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn key_text_round_trip() {
        let k = MasterKey::generate(&OsRandom);
        let t = k.to_text();
        let k2 = MasterKey::parse(&t).unwrap();
        assert_eq!(Keyring::new(&k).key_id(), Keyring::new(&k2).key_id());
        assert!(MasterKey::parse("abc").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
        assert!(format!("{k:?}").contains("REDACTED"));
    }
}
