//! Enrolling a node: single-use join tokens, and the proofs that both ends
//! hold the cluster's master key.
//!
//! A join token alone must not be enough to copy the database: it travels
//! by chat and e-mail. So the joining node also proves it holds the master
//! key: it seals a fixed text under the key, bound (as associated data) to
//! the primary's fresh nonce, its own name and its certificate's hash. Only
//! a holder of the key can produce a value that opens, and the value is
//! useless for any other nonce, name or certificate. The primary proves the
//! same the other way round over the joiner's nonce, so a joining node
//! never sends its proof to (or copies data from) an impostor that merely
//! has a valid-looking TLS certificate.

use serde::{Deserialize, Serialize};

use super::wire::Hello;
use crate::keys::{Keyring, Purpose};
use crate::random::Random;

/// How join tokens start (so they are recognisable in logs and configs).
pub const TOKEN_PREFIX: &str = "tsj_";
/// Default lifetime of a join token.
pub const DEFAULT_TOKEN_TTL_SECONDS: i64 = 3600;
/// Longest lifetime an administrator may give a join token.
pub const MAX_TOKEN_TTL_SECONDS: i64 = 7 * 86_400;
/// Failed proofs of the master key after which a token is revoked: whoever
/// holds it does not hold the key.
pub const MAX_FAILED_PROOFS: i64 = 3;
/// Nonces of join challenges, bytes.
pub const NONCE_LEN: usize = 16;

const PROOF_TEXT: &[u8] = b"tessera replication join proof v1";

/// A new join token: the prefix and 32 random bytes in hex.
pub fn new_token(rng: &dyn Random) -> String {
    let mut raw = [0u8; 32];
    rng.fill(&mut raw);
    format!("{TOKEN_PREFIX}{}", hex::encode(raw))
}

/// The digest a join token is stored as: the primary never keeps the token.
pub fn token_digest(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// Node names: what `replica nodes` lists and `replica remove` takes.
pub fn check_node_name(name: &str) -> Result<(), String> {
    if crate::names::is_short_name(name) {
        Ok(())
    } else {
        Err(format!(
            "node name `{}` must be 1-64 letters, digits, `.`, `-` or `_` (set [server] node_name)",
            name.chars().take(64).collect::<String>()
        ))
    }
}

fn joiner_row(server_nonce: &[u8], node: &str, cert_sha256: &[u8; 32]) -> String {
    format!("join/replica\0{}\0{node}\0{}", hex::encode(server_nonce), hex::encode(cert_sha256))
}

fn primary_row(client_nonce: &[u8], primary: &str) -> String {
    format!("join/primary\0{}\0{primary}", hex::encode(client_nonce))
}

/// The joining node's proof that it holds the master key.
pub fn joiner_proof(
    keys: &Keyring,
    rng: &dyn Random,
    server_nonce: &[u8],
    node: &str,
    cert_sha256: &[u8; 32],
) -> Vec<u8> {
    keys.seal(rng, Purpose::JoinProof, &joiner_row(server_nonce, node, cert_sha256), PROOF_TEXT)
}

/// Checks a joining node's proof (under this node's key or one it is
/// rotating away from).
pub fn check_joiner_proof(
    keys: &Keyring,
    server_nonce: &[u8],
    node: &str,
    cert_sha256: &[u8; 32],
    proof: &[u8],
) -> bool {
    keys.open(Purpose::JoinProof, &joiner_row(server_nonce, node, cert_sha256), proof)
        .is_ok_and(|p| p.as_slice() == PROOF_TEXT)
}

/// The primary's proof over the joiner's nonce.
pub fn primary_proof(keys: &Keyring, rng: &dyn Random, client_nonce: &[u8], primary: &str) -> Vec<u8> {
    keys.seal(rng, Purpose::JoinProof, &primary_row(client_nonce, primary), PROOF_TEXT)
}

pub fn check_primary_proof(keys: &Keyring, client_nonce: &[u8], primary: &str, proof: &[u8]) -> bool {
    keys.open(Purpose::JoinProof, &primary_row(client_nonce, primary), proof).is_ok_and(|p| p.as_slice() == PROOF_TEXT)
}

/// Step 1 of a join: the joiner's name and nonce (with the token as bearer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinChallengeRequest {
    pub node: String,
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
}

/// The primary's answer: its nonce, who it is, and its proof of the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinChallenge {
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
    pub hello: Hello,
    #[serde(with = "hex::serde")]
    pub proof: Vec<u8>,
}

/// Step 2: the joiner's certificate, where it can be reached, and its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node: String,
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
    /// The joiner's client certificate (DER): its credential from now on.
    #[serde(with = "hex::serde")]
    pub cert: Vec<u8>,
    pub url: Option<String>,
    pub https_pin: Option<String>,
    #[serde(with = "hex::serde")]
    pub proof: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinAnswer {
    pub primary: String,
    pub epoch: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_age_seconds;
    use crate::keys::MasterKey;
    use crate::random::OsRandom;

    #[test]
    fn proofs_open_only_for_their_nonce_node_and_certificate() {
        let key = MasterKey::generate(&OsRandom);
        let keys = Keyring::new(&key);
        let other = Keyring::new(&MasterKey::generate(&OsRandom));
        let (nonce, cert) = ([7u8; 16], [9u8; 32]);
        let proof = joiner_proof(&keys, &OsRandom, &nonce, "r1", &cert);
        assert!(check_joiner_proof(&keys, &nonce, "r1", &cert, &proof));
        assert!(!check_joiner_proof(&keys, &[8u8; 16], "r1", &cert, &proof), "another nonce");
        assert!(!check_joiner_proof(&keys, &nonce, "r2", &cert, &proof), "another name");
        assert!(!check_joiner_proof(&keys, &nonce, "r1", &[1u8; 32], &proof), "another certificate");
        assert!(!check_joiner_proof(&other, &nonce, "r1", &cert, &proof), "another master key");
        let forged = joiner_proof(&other, &OsRandom, &nonce, "r1", &cert);
        assert!(!check_joiner_proof(&keys, &nonce, "r1", &cert, &forged), "made without the key");
        assert!(!check_joiner_proof(&keys, &nonce, "r1", &cert, b"garbage"));
        // A primary's proof is not a joiner's, and the other way round.
        let p = primary_proof(&keys, &OsRandom, &nonce, "p");
        assert!(check_primary_proof(&keys, &nonce, "p", &p));
        assert!(!check_primary_proof(&keys, &nonce, "q", &p));
        assert!(!check_primary_proof(&other, &nonce, "p", &p));
    }

    #[test]
    fn a_proof_made_with_the_old_key_opens_during_a_rotation() {
        let old = MasterKey::generate(&OsRandom);
        let new = MasterKey::generate(&OsRandom);
        let rotating = Keyring::with_previous(&new, std::slice::from_ref(&old));
        let proof = joiner_proof(&Keyring::new(&old), &OsRandom, &[1; 16], "r", &[2; 32]);
        assert!(check_joiner_proof(&rotating, &[1; 16], "r", &[2; 32], &proof));
    }

    #[test]
    fn tokens_and_ages() {
        let t = new_token(&OsRandom);
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(token_digest(&t), token_digest("tsj_other"));
        assert_eq!(parse_age_seconds("90s"), Some(90));
        assert_eq!(parse_age_seconds("15m"), Some(900));
        assert_eq!(parse_age_seconds("2h"), Some(7200));
        assert_eq!(parse_age_seconds("7d"), Some(604_800));
        assert_eq!(parse_age_seconds("3600"), Some(3600));
        for bad in ["", "h", "-5m", "1w", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_age_seconds(bad), None, "{bad}");
        }
        assert!(check_node_name("node-1.example_x").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }
}
