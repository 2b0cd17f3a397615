//! The node role of the storage port: values sealed under the master key
//! (for rotation), node-wide `meta` values and the nodes' key reports, the
//! database clock (shared database mode) and the health ping.

use async_trait::async_trait;

use crate::audit::AuditRecord;
use crate::clock::Timestamp;

use super::StoreError;

/// Master key rotation, node-wide values, clocks and health.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// A cheap read proving the store answers (for /healthz).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Up to `limit` values of `column`, in row order, after row `after`.
    async fn sealed_values(
        &self,
        column: SealedColumn,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError>;
    /// Replaces each sealed value only if it is still `old` (a concurrent
    /// change wins), all in one transaction; returns how many were replaced.
    async fn replace_sealed(&self, column: SealedColumn, changes: Vec<SealedChange>) -> Result<u64, StoreError>;
    /// A node-wide setting (rotation markers, stored keys, cursors); only
    /// keys under [`MetaKey`] are reachable.
    async fn meta_value(&self, key: MetaKey<'_>) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets (or with `None` removes) a [`MetaKey`] value, with its audit record if any.
    async fn set_meta_value(
        &self,
        key: MetaKey<'_>,
        value: Option<Vec<u8>>,
        audit: Option<AuditRecord>,
    ) -> Result<(), StoreError>;

    /// Every [`MetaKey::NodeKey`] value, by node name (in name order): which
    /// master key each node that shares this store has loaded, so a
    /// rotation can wait for all of them.
    ///
    /// The default is `Unsupported`, for wrappers that do not pass it on;
    /// callers then fall back to their own node's value
    /// (`rotation::node_reports`). Both backends implement it.
    async fn node_key_reports(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Err(StoreError::Unsupported("listing the nodes' key reports"))
    }

    /// Measures this node's clock against the database server's now, on a
    /// pooled connection. `None` for a store without a server (embedded).
    async fn measure_database_clock(&self) -> Result<Option<ClockSample>, StoreError> {
        Ok(None)
    }

    /// The latest measurement taken when a new connection was opened (every
    /// new connection is measured), if any.
    fn connection_clock_sample(&self) -> Option<ClockSample> {
        None
    }
}

/// This node's clock against the database server's, for the clock check
/// of shared database mode: TOTP codes depend on agreeing clocks, and the
/// database is the one clock every node talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// This node's clock minus the database server's, in milliseconds,
    /// with the node's reading taken halfway through the round trip
    /// (positive: this node is ahead).
    pub offset_ms: i64,
    /// How long the measuring query took; the offset is exact to within half of it.
    pub round_trip_ms: i64,
    /// When it was measured, by this node's clock.
    pub at: Timestamp,
}

/// A column holding values sealed under the master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedColumn {
    /// `tokens.secret`, row = token id.
    TokenSecret,
    /// `inventory.secret`, row = inventory id.
    InventorySecret,
    /// `radius_clients.secret`, row = client id.
    RadiusClientSecret,
    /// `radius_clients.old_secret` (during a secret rotation's overlap),
    /// row = client id; NULL values are skipped.
    RadiusClientOldSecret,
    /// `realms.secrets`, row = realm name.
    RealmSecrets,
    /// Sealed node-wide values in `meta`, row = [`MetaKey::KeyCheck`] or [`MetaKey::BackupMacKey`] name.
    Meta,
    /// `admins.totp_secret` (web console administrators), row = admin id;
    /// NULL values (not yet enrolled) are skipped.
    AdminTotpSecret,
    /// This node's replication identity key (`repl_identity.key_sealed`,
    /// embedded database only), row = node name.
    NodeIdentity,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 8] = [
        SealedColumn::TokenSecret,
        SealedColumn::InventorySecret,
        SealedColumn::RadiusClientSecret,
        SealedColumn::RadiusClientOldSecret,
        SealedColumn::RealmSecrets,
        SealedColumn::Meta,
        SealedColumn::AdminTotpSecret,
        SealedColumn::NodeIdentity,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SealedColumn::TokenSecret => "token secrets",
            SealedColumn::InventorySecret => "inventory secrets",
            SealedColumn::RadiusClientSecret => "RADIUS client secrets",
            SealedColumn::RadiusClientOldSecret => "RADIUS client old secrets (rotation overlap)",
            SealedColumn::RealmSecrets => "realm secrets",
            SealedColumn::Meta => "key check and backup code key",
            SealedColumn::AdminTotpSecret => "admin TOTP secrets",
            SealedColumn::NodeIdentity => "this node's cluster identity",
        }
    }
}

/// One sealed value and the row it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub row: String,
    pub sealed: Vec<u8>,
}

/// A re-sealed value to store in place of `old`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedChange {
    pub row: String,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// The `meta` entries the rotation machinery reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey<'a> {
    /// The master key check value (sealed).
    KeyCheck,
    /// The backup code MAC key (sealed), stored before the first rotation.
    BackupMacKey,
    /// The rotation marker (JSON) that running nodes watch.
    KeyRotation,
    /// Which key a node has loaded (JSON), by node name.
    NodeKey(&'a str),
    /// The last audit record id a node's syslog output has queued (decimal),
    /// so records committed while it was down go out when it is back.
    SyslogCursor(&'a str),
}

impl MetaKey<'_> {
    /// The prefix of every [`MetaKey::NodeKey`] name (the node name follows).
    pub const NODE_KEY_PREFIX: &'static str = "node_key:";

    /// Whether the value is the cluster's (replicated to replicas, so only
    /// the primary may set it) rather than one node's.
    pub fn replicated(&self) -> bool {
        matches!(self, MetaKey::KeyCheck | MetaKey::BackupMacKey | MetaKey::KeyRotation)
    }

    /// The `meta` table key.
    pub fn name(&self) -> String {
        match self {
            MetaKey::KeyCheck => "key_check".into(),
            MetaKey::BackupMacKey => "backup_mac_key".into(),
            MetaKey::KeyRotation => "key_rotation".into(),
            MetaKey::NodeKey(node) => format!("{}{node}", Self::NODE_KEY_PREFIX),
            MetaKey::SyslogCursor(node) => format!("syslog_cursor:{node}"),
        }
    }
}
