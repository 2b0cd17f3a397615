//! Primary/replica replication on the embedded database: the wire types
//! the primary's change stream and snapshot are made of. Sans-IO: the
//! store produces and applies them, the server moves them over HTTPS.
//!
//! A row travels as its *current image*: every column's value, or `None`
//! when the row is gone. Images are idempotent, so a page applied twice,
//! or a snapshot followed by changes it already contained, converges to
//! the primary's state.

use serde::{Deserialize, Serialize};

/// One column value, as SQLite stores it. Blobs travel as hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplValue {
    #[serde(rename = "n")]
    Null,
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "f")]
    Real(f64),
    #[serde(rename = "s")]
    Text(String),
    #[serde(rename = "b", with = "hex::serde")]
    Blob(Vec<u8>),
}

/// The current state of one replicated row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowImage {
    /// The primary's change sequence number of this row's latest change.
    pub seq: i64,
    pub table: String,
    /// The row's primary key as a JSON array (blobs as hex), as logged.
    pub key: String,
    /// Column name and value for every column; `None` when deleted.
    pub row: Option<Vec<(String, ReplValue)>>,
}

/// A page of the change stream: images with `seq > after`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePage {
    pub epoch: i64,
    /// The newest change on the primary when the page was read.
    pub head: i64,
    pub images: Vec<RowImage>,
    /// The primary's clock when it answered (Unix ms): replicas measure
    /// their offset from it, since TOTP depends on agreeing clocks.
    pub time_ms: i64,
}

/// What a node tells a peer before any data moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub node: String,
    pub role: Role,
    pub epoch: i64,
    pub head: i64,
    pub schema_version: i64,
    /// The master key's id (not secret): a replica with another key is
    /// refused before it copies anything it could not open.
    pub key_id: String,
    pub time_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Standalone,
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "standalone" => Some(Role::Standalone),
            "primary" => Some(Role::Primary),
            "replica" => Some(Role::Replica),
            _ => None,
        }
    }
}

/// This node's replication settings and progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplState {
    pub role: Role,
    pub epoch: i64,
    pub primary_url: Option<String>,
    pub primary_name: Option<String>,
    /// SHA-256 fingerprint (hex) the primary's certificate must have, when
    /// the administrator pinned one instead of relying on a CA.
    pub pin: Option<String>,
    /// The primary's change position this replica has applied.
    pub position: i64,
    /// Deletions at or below this position have been forgotten; a follower
    /// behind it needs a new snapshot.
    pub pruned_through: i64,
    pub last_contact_at: Option<i64>,
    pub clock_offset_ms: Option<i64>,
    pub lag_ms: Option<i64>,
}

/// The message a write refused on a replica carries.
pub fn read_only_message(primary: Option<&str>) -> String {
    match primary {
        Some(p) => format!("this node is a replica: make changes on the primary {p}"),
        None => "this node is a replica: make changes on the primary".into(),
    }
}

/// The digest a join token is stored as (hex SHA-256): the primary never
/// keeps the token itself.
pub fn join_token_digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` is one of the stored digests (a JSON array of hex), in
/// constant time per candidate.
pub fn join_token_allowed(stored: &[u8], token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(digests) = serde_json::from_slice::<Vec<String>>(stored) else { return false };
    let mine = join_token_digest(token);
    digests.iter().fold(false, |found, d| found | bool::from(d.as_bytes().ct_eq(mine.as_bytes())))
}

/// A replica forwarding the login state of one user to its primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStateForward {
    pub user: i64,
    #[serde(with = "hex::serde")]
    pub token_state: Vec<u8>,
    /// Used backup codes: (digest hex, used at).
    pub used_codes: Vec<(String, i64)>,
    /// Failed logins on the replica since the last forward, counted on the
    /// primary toward lockout (after `last_success_at`, when both).
    #[serde(default)]
    pub failures: u32,
    /// The replica's last successful login of the user (Unix ms); clears the
    /// primary's failure count like a login there would.
    #[serde(default)]
    pub last_success_at: Option<i64>,
}

/// Strict replay guard: a replica asks the primary to take a code's step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub user: i64,
    pub token: i64,
    pub step: i64,
    pub drift: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimAnswer {
    pub claimed: bool,
    /// The user's token state on the primary (hex), for a refused replica
    /// to merge so its own check refuses the code too.
    pub token_state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_match_only_their_digest() {
        let stored = serde_json::to_vec(&vec![join_token_digest("a"), join_token_digest("b")]).unwrap();
        assert!(join_token_allowed(&stored, "a"));
        assert!(join_token_allowed(&stored, "b"));
        assert!(!join_token_allowed(&stored, "c"));
        assert!(!join_token_allowed(b"not json", "a"));
    }

    #[test]
    fn values_round_trip_through_json() {
        let v = vec![ReplValue::Null, ReplValue::Int(-3), ReplValue::Text("x".into()), ReplValue::Blob(vec![0, 255])];
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(s, r#"["n",{"i":-3},{"s":"x"},{"b":"00ff"}]"#);
        assert_eq!(serde_json::from_str::<Vec<ReplValue>>(&s).unwrap(), v);
    }
}
