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
