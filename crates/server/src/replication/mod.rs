//! Primary/replica replication on the embedded database (issue 5):
//! - `http`: the primary's endpoints (hello, snapshot, change stream,
//!   forwarded login state), authenticated by a join token;
//! - `client`: a replica's HTTPS client for them (CA-verified or pinned);
//! - `follower`: the replica's loop that applies the stream and forwards
//!   its own logins' state.
//!
//! The log itself (triggers, images, apply) is `tessera_store::sqlite::replication`.

pub mod client;
pub mod follower;
pub mod http;

use std::sync::Arc;

use tessera_core::guarded_store::{GuardedStore, WriteGate};
use tessera_core::replication::{ReplState, Role};
use tessera_core::store::{Store, StoreError};
use tessera_store::sqlite::replication::ReplicationLog;
use tokio::sync::mpsc;

/// A node's replication: the log of its database and the write gate its
/// store is guarded by.
#[derive(Debug)]
pub struct Replication {
    pub log: ReplicationLog,
    pub gate: Arc<WriteGate>,
    /// Logins decided on this replica (user, accepted), to forward.
    pub forward_tx: mpsc::Sender<(i64, bool)>,
    forward_rx: tokio::sync::Mutex<Option<mpsc::Receiver<(i64, bool)>>>,
}

/// Most users queued for forwarding; beyond it a login still succeeds
/// locally and its state reaches the primary with the user's next login.
const FORWARD_QUEUE: usize = 4096;

impl Replication {
    pub fn state(&self) -> Result<ReplState, StoreError> {
        self.log.state()
    }

    /// Re-reads the role (a CLI command may have changed it) and opens or
    /// closes the write gate accordingly.
    pub fn refresh_gate(&self) -> Result<ReplState, StoreError> {
        let s = self.log.state()?;
        self.gate.set_replica_of(match s.role {
            Role::Replica => Some(primary_label(&s)),
            _ => None,
        });
        Ok(s)
    }

    pub async fn take_forward_rx(&self) -> Option<mpsc::Receiver<(i64, bool)>> {
        self.forward_rx.lock().await.take()
    }
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

/// Wraps an embedded store so a replica refuses administrative writes.
pub fn guard(path: &std::path::Path, store: Arc<dyn Store>) -> Result<(Arc<dyn Store>, Arc<Replication>), StoreError> {
    let log = ReplicationLog::new(path);
    let gate = Arc::new(WriteGate::default());
    let (forward_tx, forward_rx) = mpsc::channel(FORWARD_QUEUE);
    let repl = Arc::new(Replication {
        log,
        gate: gate.clone(),
        forward_tx,
        forward_rx: tokio::sync::Mutex::new(Some(forward_rx)),
    });
    repl.refresh_gate()?;
    let guarded: Arc<dyn Store> = Arc::new(GuardedStore::new(store, gate));
    Ok((guarded, repl))
}

/// The SHA-256 fingerprint (`ab:cd:…`) of this node's HTTPS certificate:
/// what a replica pins with `--pin` when the certificate is self-signed.
pub fn certificate_pin(cfg: &crate::config::Config) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let (cert, _, _) = cfg.tls_files();
    let der = CertificateDer::from_pem_file(cert).ok()?;
    Some(tessera_ldap::cert_sha256_hex(der.as_ref()))
}
