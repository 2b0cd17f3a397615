//! Primary/replica replication on the embedded database (issues 5 and 13).
//!
//! - `identity`: this node's own credential (a client certificate whose
//!   key is sealed under the master key), made once;
//! - `directory`: the enrolled nodes, by certificate, for authorising
//!   every replication request (refreshed often, so a removed node is
//!   refused within a second);
//! - `client`: the mutual-TLS client nodes talk to each other with;
//! - `follower`: a replica's loop (snapshot, change stream, re-pointing to
//!   a newer primary, health);
//! - `forwarder`: sends a replica's journalled logins to the primary;
//! - `guard`: cluster-wide replay protection (claims, batched);
//! - `fencing`: a primary confirms its epoch with the other nodes before it
//!   takes a write, and keeps checking.
//!
//! The HTTP endpoints are `http/replication.rs`; the log itself (triggers,
//! images, apply) is `tessera_store::sqlite::replication`, the cluster's
//! tables `tessera_store::sqlite::cluster`.

pub mod client;
pub mod directory;
pub mod fencing;
pub mod follower;
pub mod forwarder;
pub mod guard;
pub mod identity;
pub mod link;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use parking_lot::RwLock;
use tessera_core::guarded_store::{GuardedStore, WriteGate};
use tessera_core::replication::{ReplState, Role};
use tessera_core::store::{Store, StoreError};
use tessera_store::SqliteStore;
use tessera_store::sqlite::cluster::Cluster;
use tessera_store::sqlite::replication::ReplicationLog;

/// A node's replication: the log of its database, its cluster tables, the
/// write gate its store is guarded by, and what the follower last saw.
#[derive(Debug)]
pub struct Replication {
    pub log: ReplicationLog,
    pub cluster: Cluster,
    pub gate: Arc<WriteGate>,
    pub store: Arc<SqliteStore>,
    pub directory: directory::NodeDirectory,
    pub status: FollowStatus,
    /// Woken when a login was journalled (the forwarder sends it promptly).
    pub forward_wake: tokio::sync::Notify,
    /// Woken when a peer shows a newer epoch (fencing checks at once).
    pub fence_wake: tokio::sync::Notify,
    /// Where this node's HTTPS listener can be reached, once it is bound.
    advertise: RwLock<Option<String>>,
    /// The role's facts the login path needs, kept in memory (reading
    /// them from the database for every claim would cost a connection).
    epoch: AtomicI64,
    primary: RwLock<Option<(String, Option<String>)>>,
    identity: RwLock<Option<identity::NodeIdentity>>,
}

/// A follower's progress, read by `/readyz`, `/metrics` and `replica status`.
#[derive(Debug, Default)]
pub struct FollowStatus {
    /// Whether the last contact with the primary succeeded.
    pub following: AtomicBool,
    /// When this replica last had everything the primary had (Unix ms).
    pub caught_up_at: AtomicI64,
    /// When the last successful contact with the primary ended (Unix ms).
    pub contact_at: AtomicI64,
    /// Why following failed, while it does.
    pub error: RwLock<Option<String>>,
}

impl FollowStatus {
    /// How far behind the primary this replica may be (ms): zero while it
    /// follows and was caught up at its last contact; otherwise the time
    /// since it last had everything, growing while it does not follow.
    pub fn lag_ms(&self, now_ms: i64) -> Option<i64> {
        let caught_up = self.caught_up_at.load(Ordering::Relaxed);
        if caught_up == 0 {
            return None;
        }
        let fresh = now_ms - self.contact_at.load(Ordering::Relaxed) <= follower::CONTACT_FRESH_MS;
        if self.following.load(Ordering::Relaxed) && fresh && self.contact_at.load(Ordering::Relaxed) <= caught_up {
            return Some(0);
        }
        Some((now_ms - caught_up).max(0))
    }
}

impl Replication {
    pub fn state(&self) -> Result<ReplState, StoreError> {
        self.log.state()
    }

    /// Re-reads the role and fence (a CLI command may have changed them)
    /// and sets the write gate, the replay guard's scope and the login
    /// journal accordingly.
    pub fn refresh_gate(&self) -> Result<ReplState, StoreError> {
        let s = self.log.state()?;
        self.gate.set_replica_of(match s.role {
            Role::Replica => Some(primary_label(&s)),
            _ => None,
        });
        self.gate.set_fence(s.fence.clone());
        self.store.set_login_journal(s.role == Role::Replica);
        self.epoch.store(s.epoch, Ordering::Relaxed);
        *self.primary.write() = match (&s.role, &s.primary_url) {
            (Role::Replica, Some(url)) => Some((url.clone(), s.pin.clone())),
            _ => None,
        };
        crate::metrics::set_replication_fenced(s.fence.is_some());
        Ok(s)
    }

    /// The epoch this node last read (in memory).
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// A replica's primary: URL and pin (in memory).
    pub fn primary(&self) -> Option<(String, Option<String>)> {
        self.primary.read().clone()
    }

    /// This node's cluster identity, loaded once it exists.
    pub fn identity(&self) -> Option<identity::NodeIdentity> {
        self.identity.read().clone()
    }

    /// Re-seals this node's identity key under the current master key when
    /// a rotation moved on (the identity is node-local: the rotation run on
    /// the primary does not reach a replica's). Called when the keys change.
    pub async fn reseal_identity(
        &self,
        keys: &tessera_core::keys::Keyring,
        rng: &dyn tessera_core::random::Random,
    ) -> Result<(), identity::IdentityError> {
        use tessera_core::store::{KeyStore as _, SealedChange, SealedColumn};
        let Some(stored) = self.cluster.identity()? else { return Ok(()) };
        if keys.is_current(&stored.key_sealed) {
            return Ok(());
        }
        let new = keys.reseal(rng, tessera_core::keys::Purpose::NodeIdentity, &stored.name, &stored.key_sealed)?;
        let change = SealedChange { row: stored.name.clone(), old: stored.key_sealed, new };
        self.store.replace_sealed(SealedColumn::NodeIdentity, vec![change]).await?;
        tracing::info!("re-sealed this node's cluster identity under master key {}", keys.key_id());
        Ok(())
    }

    /// Loads this node's identity (after a join made it, or at start).
    pub fn load_identity(&self, keys: &tessera_core::keys::Keyring) -> Result<bool, identity::IdentityError> {
        let id = identity::load(keys, &self.cluster)?;
        let found = id.is_some();
        *self.identity.write() = id;
        Ok(found)
    }

    pub fn set_advertise(&self, url: Option<String>) {
        *self.advertise.write() = url;
    }

    pub fn advertise(&self) -> Option<String> {
        self.advertise.read().clone()
    }
}

/// This build as nodes show it to each other and to administrators
/// (`tessera status`, `tessera replica nodes`): the release, the embedded
/// database schema and the newest replication protocol.
pub fn build_version() -> String {
    tessera_core::replication::compat::describe_build(
        env!("CARGO_PKG_VERSION"),
        tessera_store::sqlite::SCHEMA_VERSION,
        tessera_core::replication::PROTOCOL,
    )
}

/// How a replica names its primary in refusals: its node name and URL.
pub fn primary_label(s: &ReplState) -> String {
    match (&s.primary_name, &s.primary_url) {
        (Some(n), Some(u)) => format!("{n} ({u})"),
        (None, Some(u)) => u.clone(),
        (Some(n), None) => n.clone(),
        (None, None) => "(unknown)".into(),
    }
}

/// Wraps an embedded store so a replica (or a fenced node) refuses
/// administrative writes.
pub fn guard(
    path: &std::path::Path,
    store: Arc<SqliteStore>,
) -> Result<(Arc<dyn Store>, Arc<Replication>), StoreError> {
    let gate = Arc::new(WriteGate::default());
    let repl = Arc::new(Replication {
        log: ReplicationLog::new(path),
        cluster: Cluster::new(store.clone()),
        gate: gate.clone(),
        store: store.clone(),
        directory: directory::NodeDirectory::default(),
        status: FollowStatus::default(),
        forward_wake: tokio::sync::Notify::new(),
        fence_wake: tokio::sync::Notify::new(),
        advertise: RwLock::new(None),
        epoch: AtomicI64::new(0),
        primary: RwLock::new(None),
        identity: RwLock::new(None),
    });
    repl.refresh_gate()?;
    repl.directory.refresh(&repl.cluster)?;
    let inner: Arc<dyn Store> = store;
    let guarded: Arc<dyn Store> = Arc::new(GuardedStore::new(inner, gate));
    Ok((guarded, repl))
}

/// Starts a node's replication (before its listeners answer): loads its
/// identity, records where it is when it is a primary, confirms a
/// primary's role with its peers, sets up cluster-wide replay protection,
/// and spawns the follower, the forwarder, fencing, health and the
/// enrolled-list refresher.
pub async fn start(
    node: Arc<crate::node::Node>,
    repl: Arc<Replication>,
    bound: Option<std::net::SocketAddr>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let cfg = &node.config;
    repl.set_advertise(advertise_url(cfg, bound));
    match repl.log.note_build_schema(tessera_store::sqlite::SCHEMA_VERSION) {
        Ok(true) => tracing::info!(
            schema = tessera_store::sqlite::SCHEMA_VERSION,
            "this replica runs another tessera release than when it last followed: taking a fresh snapshot"
        ),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "cannot record this build's schema"),
    }
    if let Err(e) = repl.load_identity(&node.ctx.keys) {
        tracing::error!(error = %e, "cannot load this node's cluster identity");
    }
    if let Ok(s) = repl.state()
        && s.role != Role::Replica
        && let Err(e) = enrol_self(&node, &repl).await
    {
        tracing::warn!(error = %e, "cannot record this node in the cluster's node list");
    }
    fencing::confirm_at_start(&node, &repl).await;
    let link = Arc::new(link::PrimaryLink::default());
    if cfg.replication.cluster_wide_replay() {
        let timeout = std::time::Duration::from_millis(cfg.replication.strict_timeout_ms);
        repl.gate.set_replay_guard(guard::ClaimBatcher::start(repl.clone(), link.clone(), timeout));
    }
    let wake = Arc::downgrade(&repl);
    repl.gate.on_login(move |_| {
        if let Some(r) = wake.upgrade() {
            r.forward_wake.notify_one();
        }
    });
    vec![
        tokio::spawn(follower::run(node.clone(), repl.clone(), link.clone(), stop.clone())),
        tokio::spawn(forwarder::run(repl.clone(), link, stop.clone())),
        tokio::spawn(fencing::watch(node.clone(), repl.clone(), stop.clone())),
        tokio::spawn(follower::report_health(node.clone(), repl.clone(), stop.clone())),
        tokio::spawn(directory::watch(repl, stop)),
    ]
}

/// Makes this node's identity if it has none, and records the node in the
/// enrolled list with its current URL and certificate pin (a primary's
/// replicas, and a promoted replica, find it there).
pub async fn enrol_self(node: &crate::node::Node, repl: &Replication) -> Result<(), identity::IdentityError> {
    let now = now_ms();
    let id = identity::ensure(&node.ctx.keys, &*node.ctx.random, &repl.cluster, &node.ctx.node, now).await?;
    let me = tessera_core::replication::ClusterNode {
        name: id.name.clone(),
        cert_sha256: hex::encode(id.cert_sha256),
        url: repl.advertise(),
        https_pin: certificate_pin(&node.config),
        enrolled_at: now,
        enrolled_by: "itself".into(),
    };
    repl.cluster.enrol_self(me, id.cert_sha256).await?;
    *repl.identity.write() = Some(id);
    repl.directory.refresh(&repl.cluster)?;
    Ok(())
}

/// The SHA-256 fingerprint (`ab:cd:…`) of this node's HTTPS certificate:
/// what a replica pins with `--pin` when the certificate is self-signed.
pub fn certificate_pin(cfg: &crate::config::Config) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let (cert, _, _) = cfg.tls_files();
    let der = CertificateDer::from_pem_file(cert).ok()?;
    Some(tessera_tls::cert_sha256_hex(der.as_ref()))
}

/// This node's URL for its peers: `[replication] advertise_url`, else the
/// first HTTPS listener (its host name when it listens on every address).
pub fn advertise_url(cfg: &crate::config::Config, bound: Option<std::net::SocketAddr>) -> Option<String> {
    if !cfg.replication.advertise_url.is_empty() {
        return Some(cfg.replication.advertise_url.trim_end_matches('/').to_string());
    }
    let addr = bound.or_else(|| cfg.listen_addrs().first().copied()).filter(|a| a.port() != 0)?;
    let host = if addr.ip().is_unspecified() {
        cfg.node_name()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    Some(format!("https://{host}:{}", addr.port()))
}

/// Wall-clock Unix ms (replication compares clocks across nodes, so this is
/// the system clock, not an injected one).
pub fn now_ms() -> i64 {
    use tessera_core::clock::Clock;
    tessera_core::clock::SystemClock.now().0
}
