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
use std::sync::{Arc, RwLock};

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
const KEY_CHECK_TEXT: &[u8] = b"tessera key check";

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

    /// Parses a key file: the current key on the first line and, while a
    /// rotation is under way, the previous key(s) on further lines (so every
    /// node can still open values not yet re-sealed). Blank lines and `#`
    /// comments are ignored.
    pub fn parse_file(text: &str) -> Result<(MasterKey, Vec<MasterKey>), KeyError> {
        let mut keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(MasterKey::parse)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let primary = keys.next().ok_or(KeyError::Malformed)?;
        Ok((primary, keys.collect()))
    }

    /// A key file holding `primary` and, during a rotation, `previous` keys.
    pub fn file_text(primary: &MasterKey, previous: &[MasterKey]) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        out.push_str(&primary.to_text());
        if !previous.is_empty() {
            out.push_str("# previous key(s), kept until `tessera key rotate` has re-sealed every value:\n");
            for k in previous {
                out.push_str(&k.to_text());
            }
        }
        out
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
    /// A RADIUS client's previous secret, accepted during a rotation's
    /// overlap (row = client id). A purpose of its own, so the current and
    /// the old secret cannot be swapped between the two columns.
    RadiusOldSecret,
    KeyCheck,
    ChallengeState,
    RealmSecret,
    BackupMacKey,
    /// A web-console administrator's own TOTP secret (row = admin id).
    AdminTotp,
    /// Proof of holding the master key when a node joins a cluster (row =
    /// the nonce, node and certificate it is bound to); never stored.
    JoinProof,
    /// A node's own replication identity key (row = node name).
    NodeIdentity,
    /// The next master key during a rotation, sealed under the key being
    /// replaced (row = the next key's id), so every node holding the old key
    /// can take the new one from the database instead of a copied file.
    NextMasterKey,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::OtpSecret => "otp-secret",
            Purpose::RadiusSecret => "radius-secret",
            Purpose::RadiusOldSecret => "radius-old-secret",
            Purpose::KeyCheck => "key-check",
            Purpose::ChallengeState => "challenge-state",
            Purpose::RealmSecret => "realm-secret",
            Purpose::BackupMacKey => "backup-mac-key",
            Purpose::AdminTotp => "admin-totp",
            Purpose::JoinProof => "join-proof",
            Purpose::NodeIdentity => "node-identity",
            Purpose::NextMasterKey => "next-master-key",
        }
    }
}

/// One master key's sealing key and public id.
struct SealKey {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    fn new(master: &MasterKey) -> Self {
        let derived = master.derive("key id");
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&derived[..KEY_ID_LEN]);
        let seal_key = master.derive("seal");
        let cipher = XChaCha20Poly1305::new_from_slice(&seal_key[..]).unwrap_or_else(|_| unreachable!("32-byte key"));
        SealKey { id, cipher }
    }
}

impl Drop for SealKey {
    fn drop(&mut self) {
        self.id.zeroize();
    }
}

/// The keys in force: new values are sealed with `primary`; values sealed
/// with a `previous` key still open (during a master key rotation).
struct KeySet {
    primary: SealKey,
    previous: Vec<SealKey>,
    backup_mac: Zeroizing<[u8; 32]>,
}

impl KeySet {
    fn by_id(&self, id: &[u8]) -> Option<&SealKey> {
        std::iter::once(&self.primary).chain(self.previous.iter()).find(|k| k.id == id)
    }
}

/// Keys derived from the master key (and, during a rotation, the previous
/// one). Shared by every request; a running node swaps its keys in place when
/// a rotation starts or ends ([`Keyring::replace`]), so it is interior-mutable.
pub struct Keyring {
    set: RwLock<Arc<KeySet>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_id", &self.key_id())
            .field("previous", &self.previous_key_ids())
            .finish_non_exhaustive()
    }
}

/// The public id of a master key (what [`Keyring::key_id`] shows), without a keyring.
pub fn key_id_of(master: &MasterKey) -> String {
    hex::encode(SealKey::new(master).id)
}

/// The key id a sealed value names in its header (no key needed).
pub fn sealed_key_id(sealed: &[u8]) -> Option<String> {
    (sealed.len() > KEY_ID_LEN).then(|| hex::encode(&sealed[1..1 + KEY_ID_LEN]))
}

impl Keyring {
    pub fn new(master: &MasterKey) -> Self {
        Self::with_previous(master, &[])
    }

    /// A keyring sealing with `primary` that still opens values sealed with
    /// any of `previous`. Backup codes keep the MAC key of the first key
    /// until [`Keyring::set_backup_mac_key`] installs the stored one.
    pub fn with_previous(primary: &MasterKey, previous: &[MasterKey]) -> Self {
        Keyring { set: RwLock::new(Arc::new(Self::key_set(primary, previous, primary.derive("backup code mac")))) }
    }

    fn key_set(primary: &MasterKey, previous: &[MasterKey], backup_mac: Zeroizing<[u8; 32]>) -> KeySet {
        KeySet { primary: SealKey::new(primary), previous: previous.iter().map(SealKey::new).collect(), backup_mac }
    }

    fn current(&self) -> Arc<KeySet> {
        // A poisoned lock means a panic while swapping two Arcs; the value is intact.
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in new master keys (a rotation started or finished). The backup
    /// code MAC key is kept: it does not change with the master key.
    pub fn replace(&self, primary: &MasterKey, previous: &[MasterKey]) {
        let mut guard = self.set.write().unwrap_or_else(|e| e.into_inner());
        let next = Self::key_set(primary, previous, guard.backup_mac.clone());
        *guard = Arc::new(next);
    }

    /// A public fingerprint of the master key (16 hex chars). Safe to log and
    /// to compare between nodes; reveals nothing about the key.
    pub fn key_id(&self) -> String {
        hex::encode(self.current().primary.id)
    }

    /// Ids of the older keys still accepted for opening (empty outside a rotation).
    pub fn previous_key_ids(&self) -> Vec<String> {
        self.current().previous.iter().map(|k| hex::encode(k.id)).collect()
    }

    fn aad(purpose: Purpose, row: &str, key_id: &[u8; KEY_ID_LEN]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(40 + row.len());
        aad.extend_from_slice(b"tessera/sealed/v1\0");
        aad.extend_from_slice(purpose.label().as_bytes());
        aad.push(0);
        aad.extend_from_slice(row.as_bytes());
        aad.push(0);
        aad.extend_from_slice(key_id);
        aad
    }

    /// Encrypts `plaintext` for `purpose` and the record `row` (usually its id).
    pub fn seal(&self, rng: &dyn Random, purpose: Purpose, row: &str, plaintext: &[u8]) -> Vec<u8> {
        let set = self.current();
        let key = &set.primary;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce);
        let aad = Self::aad(purpose, row, &key.id);
        let ct = key
            .cipher
            .encrypt((&nonce).into(), Payload { msg: plaintext, aad: &aad })
            .unwrap_or_else(|_| unreachable!("encryption of in-memory data cannot fail"));
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a value made by [`Keyring::seal`] with the same purpose and
    /// row, under the primary key or a previous one.
    pub fn open(&self, purpose: Purpose, row: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(KeyError::Corrupt);
        }
        if sealed[0] != SEALED_VERSION {
            return Err(KeyError::UnsupportedVersion(sealed[0]));
        }
        let found = &sealed[1..1 + KEY_ID_LEN];
        let set = self.current();
        let Some(key) = set.by_id(found) else {
            return Err(KeyError::WrongKey { found: hex::encode(found), loaded: hex::encode(set.primary.id) });
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        let aad = Self::aad(purpose, row, &key.id);
        key.cipher
            .decrypt((&nonce).into(), Payload { msg: &sealed[HEADER_LEN..], aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Corrupt)
    }

    /// Whether `sealed` is already under the primary key (nothing to re-seal).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.len() > KEY_ID_LEN && sealed[1..1 + KEY_ID_LEN] == self.current().primary.id
    }

    /// Re-encrypts a sealed value under the primary key (same purpose and row).
    pub fn reseal(&self, rng: &dyn Random, purpose: Purpose, row: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let plain = self.open(purpose, row, sealed)?;
        Ok(self.seal(rng, purpose, row, &plain))
    }

    /// A value stored beside the data that proves which key it was written with.
    pub fn make_check_value(&self, rng: &dyn Random) -> Vec<u8> {
        self.seal(rng, Purpose::KeyCheck, "", KEY_CHECK_TEXT)
    }

    /// Confirms that `check` was made by a key of this keyring. A wrong key
    /// gives [`KeyError::WrongKey`] naming both key ids.
    pub fn verify_check_value(&self, check: &[u8]) -> Result<(), KeyError> {
        let plain = self.open(Purpose::KeyCheck, "", check)?;
        if plain.as_slice() == KEY_CHECK_TEXT { Ok(()) } else { Err(KeyError::Corrupt) }
    }

    /// The backup code MAC key sealed for storage. Stored once, before the
    /// first rotation, because digests cannot be recomputed without the
    /// codes: the MAC key must outlive the master key it came from.
    pub fn sealed_backup_mac_key(&self, rng: &dyn Random) -> Vec<u8> {
        let set = self.current();
        self.seal(rng, Purpose::BackupMacKey, "", &set.backup_mac[..])
    }

    /// Installs the stored backup code MAC key (see [`Keyring::sealed_backup_mac_key`]).
    pub fn set_backup_mac_key(&self, sealed: &[u8]) -> Result<(), KeyError> {
        let plain = self.open(Purpose::BackupMacKey, "", sealed)?;
        let mut mac = Zeroizing::new([0u8; 32]);
        if plain.len() != mac.len() {
            return Err(KeyError::Corrupt);
        }
        mac.copy_from_slice(&plain);
        let mut guard = self.set.write().unwrap_or_else(|e| e.into_inner());
        let current = &**guard;
        let next = KeySet {
            primary: SealKey { id: current.primary.id, cipher: current.primary.cipher.clone() },
            previous: current.previous.iter().map(|k| SealKey { id: k.id, cipher: k.cipher.clone() }).collect(),
            backup_mac: mac,
        };
        *guard = Arc::new(next);
        Ok(())
    }

    /// `next` sealed under the primary key for a rotation (see
    /// [`Purpose::NextMasterKey`]); bound to `next`'s key id, so the value
    /// does not open under a marker that names another key.
    pub fn seal_master_key(&self, rng: &dyn Random, next: &MasterKey) -> Vec<u8> {
        self.seal(rng, Purpose::NextMasterKey, &key_id_of(next), &next.0[..])
    }

    /// Opens a value made by [`Keyring::seal_master_key`] that claims to hold
    /// key `key_id`, and checks that the key inside really has that id.
    pub fn open_master_key(&self, key_id: &str, sealed: &[u8]) -> Result<MasterKey, KeyError> {
        let plain = self.open(Purpose::NextMasterKey, key_id, sealed)?;
        let mut k = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        if plain.len() != MASTER_KEY_LEN {
            return Err(KeyError::Corrupt);
        }
        k.copy_from_slice(&plain);
        let key = MasterKey(k);
        if key_id_of(&key) != key_id {
            return Err(KeyError::Corrupt);
        }
        Ok(key)
    }

    /// Non-reversible, keyed digest of a backup code, bound to its user.
    pub fn backup_code_digest(&self, user_id: &str, code: &str) -> [u8; 32] {
        let set = self.current();
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&set.backup_mac[..])
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(user_id.as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
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
    fn rotation_keyring_opens_old_and_seals_new() {
        let old = MasterKey::generate(&OsRandom);
        let new = MasterKey::generate(&OsRandom);
        let before = Keyring::new(&old);
        let sealed_old = before.seal(&OsRandom, Purpose::OtpSecret, "t", b"seed");
        let code = before.backup_code_digest("u", "12345678");
        let stored_mac = before.sealed_backup_mac_key(&OsRandom);

        let during = Keyring::with_previous(&new, std::slice::from_ref(&old));
        during.set_backup_mac_key(&stored_mac).unwrap();
        assert_eq!(during.key_id(), key_id_of(&new));
        assert_eq!(during.previous_key_ids(), vec![key_id_of(&old)]);
        assert!(!during.is_current(&sealed_old));
        let resealed = during.reseal(&OsRandom, Purpose::OtpSecret, "t", &sealed_old).unwrap();
        assert!(during.is_current(&resealed));
        assert_eq!(sealed_key_id(&resealed), Some(key_id_of(&new)));
        assert_eq!(during.open(Purpose::OtpSecret, "t", &sealed_old).unwrap().as_slice(), b"seed");
        // The backup code MAC survives the change of master key.
        assert_eq!(during.backup_code_digest("u", "12345678"), code);
        let mac_under_new = during.sealed_backup_mac_key(&OsRandom);

        let after = Keyring::new(&new);
        assert!(matches!(after.open(Purpose::OtpSecret, "t", &sealed_old), Err(KeyError::WrongKey { .. })));
        assert_eq!(after.open(Purpose::OtpSecret, "t", &resealed).unwrap().as_slice(), b"seed");
        assert!(after.set_backup_mac_key(&stored_mac).is_err(), "old key's seal must not open");
        after.set_backup_mac_key(&mac_under_new).unwrap();
        assert_eq!(after.backup_code_digest("u", "12345678"), code);

        // A running node swaps keys in place and keeps its MAC key.
        before.replace(&new, &[]);
        assert_eq!(before.key_id(), key_id_of(&new));
        assert_eq!(before.backup_code_digest("u", "12345678"), code);
    }

    #[test]
    fn next_master_key_travels_sealed_under_the_old_one() {
        let old = MasterKey::generate(&OsRandom);
        let next = MasterKey::generate(&OsRandom);
        let next_id = key_id_of(&next);
        let ring = Keyring::new(&old);
        let sealed = ring.seal_master_key(&OsRandom, &next);
        assert_eq!(sealed_key_id(&sealed), Some(key_id_of(&old)));
        let opened = ring.open_master_key(&next_id, &sealed).unwrap();
        assert_eq!(key_id_of(&opened), next_id);
        // Bound to the id it claims: another id does not open it.
        let other = key_id_of(&MasterKey::generate(&OsRandom));
        assert_eq!(ring.open_master_key(&other, &sealed).err(), Some(KeyError::Corrupt));
        // Only a holder of the old key opens it.
        let stranger = Keyring::new(&MasterKey::generate(&OsRandom));
        assert!(matches!(stranger.open_master_key(&next_id, &sealed), Err(KeyError::WrongKey { .. })));
        // A value sealed for another purpose is not a key.
        let otp = ring.seal(&OsRandom, Purpose::OtpSecret, &next_id, &[7u8; 32]);
        assert_eq!(ring.open_master_key(&next_id, &otp).err(), Some(KeyError::Corrupt));
        // A 32-byte value under the right label but holding another key is refused.
        let wrong = ring.seal(&OsRandom, Purpose::NextMasterKey, &next_id, &[7u8; 32]);
        assert_eq!(ring.open_master_key(&next_id, &wrong).err(), Some(KeyError::Corrupt));
    }

    #[test]
    fn key_file_with_previous_keys() {
        let a = MasterKey::generate(&OsRandom);
        let b = MasterKey::generate(&OsRandom);
        let text = MasterKey::file_text(&a, std::slice::from_ref(&b));
        let (p, prev) = MasterKey::parse_file(&text).unwrap();
        assert_eq!(key_id_of(&p), key_id_of(&a));
        assert_eq!(prev.len(), 1);
        assert_eq!(key_id_of(&prev[0]), key_id_of(&b));
        let (p, prev) = MasterKey::parse_file(&a.to_text()).unwrap();
        assert_eq!(key_id_of(&p), key_id_of(&a));
        assert!(prev.is_empty());
        assert_eq!(MasterKey::parse_file("\n# nothing\n").err(), Some(KeyError::Malformed));
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
