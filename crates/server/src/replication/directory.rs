//! The enrolled nodes, by the SHA-256 of their client certificate: who may
//! call the replication endpoints. Re-read from the database every
//! [`REFRESH`] (a `tessera replica remove` from the CLI, or a removal that
//! arrived in the change stream, takes effect within it) and at once after
//! this process changes the list.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::RwLock;
use tessera_core::replication::ClusterNode;
use tessera_core::store::StoreError;
use tessera_store::sqlite::cluster::Cluster;

/// How often the list is re-read: a removed node is refused within this.
pub const REFRESH: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub struct NodeDirectory {
    by_cert: RwLock<HashMap<[u8; 32], ClusterNode>>,
}

impl NodeDirectory {
    pub fn refresh(&self, cluster: &Cluster) -> Result<(), StoreError> {
        let nodes = cluster.nodes()?;
        let map = nodes
            .into_iter()
            .filter_map(|n| {
                let fp: [u8; 32] = hex::decode(&n.cert_sha256).ok()?.try_into().ok()?;
                Some((fp, n))
            })
            .collect();
        *self.by_cert.write() = map;
        Ok(())
    }

    /// The enrolled node presenting this certificate.
    pub fn node(&self, cert_sha256: &[u8; 32]) -> Option<ClusterNode> {
        self.by_cert.read().get(cert_sha256).cloned()
    }

    pub fn by_name(&self, name: &str) -> Option<ClusterNode> {
        self.by_cert.read().values().find(|n| n.name == name).cloned()
    }

    pub fn all(&self) -> Vec<ClusterNode> {
        let mut v: Vec<ClusterNode> = self.by_cert.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// Re-reads the enrolled list every [`REFRESH`] for the life of the server.
pub async fn watch(repl: std::sync::Arc<super::Replication>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        if tokio::time::timeout(REFRESH, stop.changed()).await.is_ok() {
            return;
        }
        match repl.directory.refresh(&repl.cluster) {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %e, "cannot read the enrolled nodes; keeping the last list");
            }
            Err(_) => {}
        }
    }
}
