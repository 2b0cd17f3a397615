//! The messages nodes exchange over HTTPS. Sans-IO: the store produces and
//! applies them, the server moves them.
//!
//! A row travels as its *current image*: every column's value, or `None`
//! when the row is gone. Images are idempotent, so a page applied twice,
//! or a snapshot followed by changes it already contained, converges to
//! the primary's state.

use serde::{Deserialize, Serialize};

/// The newest replication protocol this build speaks. Two nodes speak the
/// highest version both know ([`crate::replication::compat`]); a peer whose
/// range does not meet this build's is refused with a message naming both.
pub const PROTOCOL: u32 = 3;
/// The oldest replication protocol this build still speaks (protocol 3 is
/// the first that says its range, so it is the floor).
pub const MIN_PROTOCOL: u32 = 3;

/// This build's protocol range.
pub fn protocols() -> crate::replication::compat::ProtocolRange {
    crate::replication::compat::ProtocolRange { min: MIN_PROTOCOL, max: PROTOCOL }
}

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

/// What a node tells an enrolled peer (and, inside a join challenge, a
/// joining node) about itself before any data moves.
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
    /// Older keys this node still opens (during a master key rotation), so
    /// nodes part-way through the same rotation still recognise each other.
    #[serde(default)]
    pub previous_key_ids: Vec<String>,
    pub time_ms: i64,
    /// A replica's primary (URL and name), so a node that finds a peer
    /// following a newer primary knows where to go.
    #[serde(default)]
    pub primary_url: Option<String>,
    #[serde(default)]
    pub primary_name: Option<String>,
    /// Why this node takes no administrative write, if it is fenced.
    #[serde(default)]
    pub fenced: Option<String>,
    /// The newest protocol this node speaks.
    #[serde(default)]
    pub protocol: u32,
    /// The oldest protocol it still speaks (0: only `protocol`).
    #[serde(default)]
    pub min_protocol: u32,
    /// The oldest schema a build may have to follow this node (0: only
    /// `schema_version`).
    #[serde(default)]
    pub schema_compatible_from: i64,
    /// The release and its schema, for people (`tessera replica nodes`).
    #[serde(default)]
    pub version: String,
}

impl Hello {
    /// The protocol range the node announced.
    pub fn protocols(&self) -> crate::replication::compat::ProtocolRange {
        crate::replication::compat::ProtocolRange::announced(self.min_protocol, self.protocol)
    }

    /// The schema the node announced, with its window.
    pub fn schema(&self) -> crate::replication::compat::SchemaWindow {
        crate::replication::compat::SchemaWindow::announced(self.schema_version, self.schema_compatible_from)
    }

    /// Whether this node and one with `key_id`/`previous` share a master
    /// key: the same key, or one rotating to the other.
    pub fn shares_key_with(&self, key_id: &str, previous: &[String]) -> bool {
        let mine: Vec<&str> = std::iter::once(key_id).chain(previous.iter().map(String::as_str)).collect();
        std::iter::once(&self.key_id).chain(&self.previous_key_ids).any(|k| mine.contains(&k.as_str()))
    }
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
    /// Why this node refuses administrative writes although it is not a
    /// replica (see [`crate::replication::fencing`]); `None`: not fenced.
    pub fence: Option<String>,
    /// Why a replica's server cannot follow its primary now; `None` while
    /// it follows (or no server runs).
    pub follow_error: Option<String>,
}

/// The message a write refused on a replica carries.
pub fn read_only_message(primary: Option<&str>) -> String {
    match primary {
        Some(p) => format!("this node is a replica: make changes on the primary {p}"),
        None => "this node is a replica: make changes on the primary".into(),
    }
}

/// An enrolled node, as every node of the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub name: String,
    /// SHA-256 of the node's client certificate (its credential), hex.
    pub cert_sha256: String,
    /// Where its HTTPS listener is, as the node last reported it.
    pub url: Option<String>,
    /// SHA-256 of its HTTPS certificate (`ab:cd:…`), for peers to pin.
    pub https_pin: Option<String>,
    pub enrolled_at: i64,
    pub enrolled_by: String,
}

/// What a replica reports to its primary on every contact (and the
/// primary shows in `tessera replica nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub url: Option<String>,
    pub https_pin: Option<String>,
    pub role: Role,
    pub epoch: i64,
    pub position: i64,
    pub lag_ms: Option<i64>,
    pub following: bool,
    pub key_id: String,
    #[serde(default)]
    pub previous_key_ids: Vec<String>,
    pub version: String,
}

/// What a primary last heard from a peer (`tessera replica nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub last_contact_at: Option<i64>,
    pub address: Option<String>,
    pub role: Option<String>,
    pub epoch: Option<i64>,
    pub position: Option<i64>,
    pub lag_ms: Option<i64>,
    pub key_id: Option<String>,
    pub version: Option<String>,
    pub following: Option<bool>,
}

/// A join token as `tessera replica token list` shows it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenInfo {
    pub id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub created_by: String,
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
    pub revoked_at: Option<i64>,
    pub failed_proofs: i64,
}

impl JoinTokenInfo {
    pub fn status(&self, now_ms: i64) -> &'static str {
        if self.used_at.is_some() {
            "used"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now_ms {
            "expired"
        } else {
            "valid"
        }
    }
}

/// Login state a replica asks the primary to take before it accepts a
/// login (cluster-wide replay protection). Each item is taken at most once
/// across the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClaimItem {
    /// A TOTP step or HOTP counter of a user's token.
    Step { user: i64, token: i64, step: i64, drift: i32 },
    /// A backup code (its keyed digest, hex).
    BackupCode {
        user: i64,
        #[serde(with = "hex::serde")]
        digest: Vec<u8>,
    },
    /// A challenge State's nonce (hex), valid until `expires_at` (Unix ms).
    State {
        #[serde(with = "hex::serde")]
        nonce: Vec<u8>,
        expires_at: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// The epoch the replica follows; a primary that sees a newer one
    /// learns it was replaced.
    pub epoch: i64,
    pub items: Vec<ClaimItem>,
}

/// The primary's answer to one claim item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimResult {
    /// Taken now by this request.
    pub claimed: bool,
    /// Why not (`used`: another node took it first; `outside_window`,
    /// `unknown`: refused and audited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a refused step: the user's token state on the primary (hex), for
    /// the replica to merge so its own check refuses the code too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_state: Option<String>,
}

/// The factor a forwarded login consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForwardedFactor {
    Step {
        token: i64,
        step: i64,
        drift: i32,
    },
    BackupCode {
        #[serde(with = "hex::serde")]
        digest: Vec<u8>,
    },
    State {
        #[serde(with = "hex::serde")]
        nonce: Vec<u8>,
        expires_at: i64,
    },
}

/// One login a replica decided, forwarded to the primary from its durable
/// outbox: the primary counts failures toward the lock with its own policy,
/// clears them on a success, and keeps what was consumed consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginEvent {
    /// The replica's outbox id: increasing, so a batch sent twice counts once.
    pub id: i64,
    pub user: i64,
    /// When the replica decided it (Unix ms).
    pub at: i64,
    pub accepted: bool,
    /// Whether it counts toward the lock (accepted or failed); `false`
    /// when the login only consumed a challenge State (asked for a code).
    pub counted: bool,
    #[serde(default)]
    pub factors: Vec<ForwardedFactor>,
}

/// The primary's answer to a batch of forwarded logins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardAnswer {
    /// Every event up to this id has been handled (applied or refused).
    pub through: i64,
    pub applied: u32,
    /// Already applied earlier (a batch sent again).
    pub duplicates: u32,
    /// Refused (audited): a consumed factor outside what the policy allows.
    pub refused: u32,
    /// Users the primary does not have (deleted meanwhile).
    pub unknown_users: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_json() {
        let v = vec![ReplValue::Null, ReplValue::Int(-3), ReplValue::Text("x".into()), ReplValue::Blob(vec![0, 255])];
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(s, r#"["n",{"i":-3},{"s":"x"},{"b":"00ff"}]"#);
        assert_eq!(serde_json::from_str::<Vec<ReplValue>>(&s).unwrap(), v);
    }

    #[test]
    fn claims_are_tagged_and_refuse_garbage() {
        let c = ClaimItem::BackupCode { user: 7, digest: vec![1, 2] };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"kind":"backup_code","user":7,"digest":"0102"}"#);
        assert_eq!(serde_json::from_str::<ClaimItem>(&s).unwrap(), c);
        for bad in [
            r#"{"kind":"step","user":1}"#,
            r#"{"kind":"backup_code","user":7,"digest":"zz"}"#,
            r#"{"kind":"other"}"#,
            r#"{"kind":"step","user":1,"token":2,"step":"9","drift":0}"#,
        ] {
            assert!(serde_json::from_str::<ClaimItem>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nodes_share_a_key_during_a_rotation_but_not_otherwise() {
        let h = Hello {
            node: "p".into(),
            role: Role::Primary,
            epoch: 1,
            head: 0,
            schema_version: 8,
            key_id: "new".into(),
            previous_key_ids: vec!["old".into()],
            time_ms: 0,
            primary_url: None,
            primary_name: None,
            fenced: None,
            protocol: PROTOCOL,
            min_protocol: MIN_PROTOCOL,
            schema_compatible_from: 8,
            version: String::new(),
        };
        assert!(h.shares_key_with("old", &[]));
        assert!(h.shares_key_with("new", &[]));
        assert!(h.shares_key_with("other", &["new".into()]));
        assert!(!h.shares_key_with("other", &[]));
    }
}
