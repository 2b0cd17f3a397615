//! Master key rotation: re-sealing every stored secret under a new master
//! key while nodes keep answering.
//!
//! The sequence (driven by `tessera key rotate`, resumable at every step):
//! 1. The backup code MAC key is stored sealed ([`ensure_backup_mac_key`]):
//!    backup code digests cannot be recomputed, so that key must outlive the
//!    master key it was derived from.
//! 2. The [`RotationMarker`] is set to `running` with the new key sealed
//!    under the old one in it ([`RotationMarker::next_key`]); then the key
//!    file gets the new key first and the old one after it. Every node
//!    watching the marker opens the new key with the old one, rewrites its
//!    own key file the same way, seals with the new key and still opens
//!    with the old one, and says so in its [`NodeKeyReport`]. The rotation
//!    goes on once every node alive ([`lagging_nodes`]) holds the new key.
//! 3. [`reseal_all`] walks every sealed column and replaces each old value
//!    with a new one, conditionally (a value changed meanwhile is left to its
//!    writer, who sealed it with the new key).
//! 4. [`census`] with the new key alone proves every value opens; then the key
//!    file keeps only the new key and the marker says `done`, without the
//!    sealed key (kept, it would let the old key recover the new one for
//!    ever); nodes then drop the old key from memory and from their files.
//!
//! Nothing here does I/O beyond the [`Store`] port; files are the caller's.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::keys::{KeyError, Keyring, MasterKey, Purpose, key_id_of, sealed_key_id};
use crate::model::InventoryToken;
use crate::random::Random;
use crate::store::{MetaKey, SealedChange, SealedColumn, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{column} row {row} cannot be opened: {error}")]
    Unreadable { column: &'static str, row: String, error: KeyError },
    #[error("the rotation marker in the database is unreadable: {0}")]
    BadMarker(String),
    /// The marker names a new key but carries none (a rotation started by
    /// an older tessera, or tampered with).
    #[error("the rotation to key {to} carries no sealed key; copy the key file from the node that started it")]
    NoNextKey { to: String },
    /// The sealed next key does not open with this node's keys, or what it
    /// holds is not the key the marker names.
    #[error("the rotation's new key {to} does not open with this node's key(s) {loaded}: {error}")]
    NextKeyUnreadable { to: String, loaded: String, error: KeyError },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationState {
    Running,
    Done,
}

/// The database's record of the last rotation; running nodes poll it and
/// re-read their key file whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationMarker {
    pub state: RotationState,
    /// Key id rotated away from.
    pub from: String,
    /// Key id rotated to.
    pub to: String,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// While running: key `to`, sealed under key `from`
    /// ([`Keyring::seal_master_key`]), hex. It lives in the marker rather than
    /// a meta value of its own so that the marker and the key it names are
    /// written (and replicated) in one step, and so that clearing it at
    /// `done` cannot be forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub next_key: Option<Vec<u8>>,
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(t) => hex::decode(t).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

impl RotationMarker {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The marker without its sealed key, for display.
    pub fn public(&self) -> RotationMarker {
        RotationMarker { next_key: None, ..self.clone() }
    }

    /// A running rotation from `keys`' primary key to `next`, carrying `next`
    /// sealed under the primary.
    pub fn running(keys: &Keyring, rng: &dyn Random, next: &MasterKey, started_at: Timestamp) -> RotationMarker {
        RotationMarker {
            state: RotationState::Running,
            from: keys.key_id(),
            to: key_id_of(next),
            started_at,
            finished_at: None,
            next_key: Some(keys.seal_master_key(rng, next)),
        }
    }

    /// Opens the new key this running marker carries with `keys` (the old
    /// key, or a keyring that still holds it).
    pub fn open_next_key(&self, keys: &Keyring) -> Result<MasterKey, RotationError> {
        let sealed = self.next_key.as_deref().ok_or_else(|| RotationError::NoNextKey { to: self.to.clone() })?;
        keys.open_master_key(&self.to, sealed).map_err(|error| RotationError::NextKeyUnreadable {
            to: self.to.clone(),
            loaded: std::iter::once(keys.key_id()).chain(keys.previous_key_ids()).collect::<Vec<_>>().join(", "),
            error,
        })
    }
}

pub async fn marker(store: &dyn Store) -> Result<Option<RotationMarker>, RotationError> {
    match store.meta_value(MetaKey::KeyRotation).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| RotationError::BadMarker(e.to_string())),
    }
}

/// Which key a node has loaded, written by the node's key watcher when it
/// (re)loads keys and then every [`NODE_REPORT_INTERVAL_SECONDS`] as a
/// heartbeat (`at`), so a rotation can tell live nodes from gone ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeyReport {
    pub key_id: String,
    pub previous: Vec<String>,
    pub at: Timestamp,
    /// The node's release and schema (`tessera status` lists them during a
    /// rolling upgrade); absent from releases before it was added.
    #[serde(default)]
    pub version: Option<String>,
}

/// How often a running node refreshes its [`NodeKeyReport`].
pub const NODE_REPORT_INTERVAL_SECONDS: i64 = 10;
/// A node whose report is younger than this counts as alive: a rotation
/// waits for it (several heartbeats, so a busy node is not missed).
pub const NODE_ALIVE_SECONDS: i64 = 120;

/// Every node's last report, by node name. Stores that cannot list them
/// (see [`KeyStore::node_key_reports`](crate::store::KeyStore::node_key_reports)) give only `this_node`'s. Reports that
/// do not parse are skipped (a node of another version).
pub async fn node_reports(store: &dyn Store, this_node: &str) -> Result<Vec<(String, NodeKeyReport)>, RotationError> {
    let raw = match store.node_key_reports().await {
        Ok(all) => all,
        Err(StoreError::Unsupported(_)) => match store.meta_value(MetaKey::NodeKey(this_node)).await? {
            Some(v) => vec![(this_node.to_string(), v)],
            None => Vec::new(),
        },
        Err(e) => return Err(e.into()),
    };
    Ok(raw.into_iter().filter_map(|(n, v)| Some((n, serde_json::from_slice(&v).ok()?))).collect())
}

/// The nodes alive at `now` (reported within [`NODE_ALIVE_SECONDS`]) whose
/// primary key is not `to`: those a rotation to `to` still waits for.
pub fn lagging_nodes<'a>(
    reports: &'a [(String, NodeKeyReport)],
    to: &str,
    now: Timestamp,
) -> Vec<&'a (String, NodeKeyReport)> {
    reports.iter().filter(|(_, r)| r.at > now.plus_seconds(-NODE_ALIVE_SECONDS) && r.key_id != to).collect()
}

/// Purpose and associated-data row of a sealed value.
fn binding(column: SealedColumn, row: &str) -> (Purpose, String) {
    match column {
        SealedColumn::TokenSecret => (Purpose::OtpSecret, row.to_string()),
        SealedColumn::InventorySecret => {
            (Purpose::OtpSecret, row.parse::<i64>().map(InventoryToken::seal_row).unwrap_or_default())
        }
        SealedColumn::RadiusClientSecret => (Purpose::RadiusSecret, row.to_string()),
        SealedColumn::RadiusClientOldSecret => (Purpose::RadiusOldSecret, row.to_string()),
        SealedColumn::RealmSecrets => (Purpose::RealmSecret, row.to_string()),
        SealedColumn::Meta if row == "key_check" => (Purpose::KeyCheck, String::new()),
        SealedColumn::Meta => (Purpose::BackupMacKey, String::new()),
        SealedColumn::AdminTotpSecret => (Purpose::AdminTotp, row.to_string()),
        SealedColumn::NodeIdentity => (Purpose::NodeIdentity, row.to_string()),
    }
}

/// Stores the backup code MAC key (sealed) if the database has none yet.
/// Must run while every node still uses the key the MAC key came from.
pub async fn ensure_backup_mac_key(store: &dyn Store, keys: &Keyring, rng: &dyn Random) -> Result<bool, RotationError> {
    if store.meta_value(MetaKey::BackupMacKey).await?.is_some() {
        return Ok(false);
    }
    store.set_meta_value(MetaKey::BackupMacKey, Some(keys.sealed_backup_mac_key(rng)), None).await?;
    Ok(true)
}

/// Progress after each batch, for the caller to print (or to pause on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Values re-sealed under the primary key.
    pub resealed: u64,
    /// Values already under the primary key.
    pub current: u64,
    /// Values changed or deleted by someone else between read and write.
    pub raced: u64,
}

/// Re-seals, under `keys`' primary key, every value not already under it.
/// Idempotent: a run cut short is finished by running it again.
pub async fn reseal_all(
    store: &dyn Store,
    keys: &Keyring,
    rng: &dyn Random,
    batch: u32,
    progress: &mut (dyn FnMut(SealedColumn, &ResealReport) + Send),
) -> Result<ResealReport, RotationError> {
    let mut report = ResealReport::default();
    for column in SealedColumn::ALL {
        let mut after: Option<String> = None;
        loop {
            let values = store.sealed_values(column, after.as_deref(), batch.max(1)).await?;
            let Some(last) = values.last() else { break };
            after = Some(last.row.clone());
            let mut changes = Vec::with_capacity(values.len());
            for v in &values {
                if keys.is_current(&v.sealed) {
                    report.current += 1;
                    continue;
                }
                let (purpose, aad_row) = binding(column, &v.row);
                let new = keys
                    .reseal(rng, purpose, &aad_row, &v.sealed)
                    .map_err(|error| RotationError::Unreadable { column: column.label(), row: v.row.clone(), error })?;
                changes.push(SealedChange { row: v.row.clone(), old: v.sealed.clone(), new });
            }
            let attempted = changes.len() as u64;
            if attempted > 0 {
                let replaced = store.replace_sealed(column, changes).await?;
                report.resealed += replaced;
                report.raced += attempted - replaced;
            }
            progress(column, &report);
            if values.len() < batch.max(1) as usize {
                break;
            }
        }
    }
    Ok(report)
}

/// How many sealed values each key id holds, and (with `open`) which ones
/// `keys` cannot open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Census {
    pub by_key: std::collections::BTreeMap<String, u64>,
    /// Values that did not open (only counted with `open`).
    pub unreadable_count: u64,
    /// The first few of them, named.
    pub unreadable: Vec<String>,
}

impl Census {
    pub fn total(&self) -> u64 {
        self.by_key.values().sum()
    }
    /// Values under any key but `key_id`.
    pub fn not_under(&self, key_id: &str) -> u64 {
        self.by_key.iter().filter(|(k, _)| k.as_str() != key_id).map(|(_, n)| n).sum()
    }
}

/// Counts sealed values by key id; with `open`, also decrypts each with
/// `keys` and lists the ones that fail (at most 20 named).
pub async fn census(store: &dyn Store, keys: &Keyring, open: bool, batch: u32) -> Result<Census, RotationError> {
    let mut out = Census::default();
    for column in SealedColumn::ALL {
        let mut after: Option<String> = None;
        loop {
            let values = store.sealed_values(column, after.as_deref(), batch.max(1)).await?;
            let Some(last) = values.last() else { break };
            after = Some(last.row.clone());
            for v in &values {
                let id = sealed_key_id(&v.sealed).unwrap_or_else(|| "malformed".into());
                *out.by_key.entry(id).or_default() += 1;
                if open {
                    let (purpose, aad_row) = binding(column, &v.row);
                    if let Err(e) = keys.open(purpose, &aad_row, &v.sealed) {
                        out.unreadable_count += 1;
                        if out.unreadable.len() < 20 {
                            out.unreadable.push(format!("{} {}: {e}", column.label(), v.row));
                        }
                    }
                }
            }
            if values.len() < batch.max(1) as usize {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::OsRandom;

    #[test]
    fn marker_carries_the_next_key_sealed_and_hides_it_for_display() {
        let old = MasterKey::generate(&OsRandom);
        let next = MasterKey::generate(&OsRandom);
        let ring = Keyring::new(&old);
        let m = RotationMarker::running(&ring, &OsRandom, &next, Timestamp(5));
        assert_eq!((m.from.as_str(), m.to.as_str()), (ring.key_id().as_str(), key_id_of(&next).as_str()));
        let back: RotationMarker = serde_json::from_slice(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(key_id_of(&back.open_next_key(&ring).unwrap()), m.to);
        // Shown without it.
        let shown = serde_json::to_string(&m.public()).unwrap();
        assert!(!shown.contains("next_key"), "{shown}");
        // A marker written before markers carried keys still reads.
        let legacy = r#"{"state":"running","from":"aa","to":"bb","started_at":1}"#;
        let legacy: RotationMarker = serde_json::from_str(legacy).unwrap();
        assert!(matches!(legacy.open_next_key(&ring), Err(RotationError::NoNextKey { .. })));
        // `to` changed after sealing: does not open, and says which keys were tried.
        let mut renamed = m.clone();
        renamed.to = key_id_of(&MasterKey::generate(&OsRandom));
        let err = renamed.open_next_key(&ring).unwrap_err().to_string();
        assert!(err.contains(&renamed.to) && err.contains(&ring.key_id()), "{err}");
        // A node without the old key cannot take it.
        let stranger = Keyring::new(&MasterKey::generate(&OsRandom));
        assert!(matches!(m.open_next_key(&stranger), Err(RotationError::NextKeyUnreadable { .. })));
        // During the rotation (new primary, old previous) it still opens.
        let during = Keyring::with_previous(&next, std::slice::from_ref(&old));
        assert_eq!(key_id_of(&m.open_next_key(&during).unwrap()), m.to);
    }

    #[test]
    fn nodes_alive_and_behind() {
        let r = |key: &str, secs: i64| NodeKeyReport {
            key_id: key.into(),
            previous: vec![],
            at: Timestamp(secs * 1000),
            version: None,
        };
        let reports = vec![("a".to_string(), r("new", 100)), ("b".into(), r("old", 100)), ("c".into(), r("old", 1))];
        let behind: Vec<&str> =
            lagging_nodes(&reports, "new", Timestamp(130_000)).iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(behind, vec!["b"], "c has been silent for over 2 minutes");
    }
}
