//! This node's own cluster credential: a client certificate made once,
//! whose private key is kept sealed under the master key (so a copy of the
//! database alone cannot impersonate the node), presented as mutual TLS on
//! every request to another node.

use tessera_core::keys::{Keyring, Purpose};
use tessera_core::random::Random;
use tessera_store::sqlite::cluster::{Cluster, StoredIdentity};
use tessera_tls::ClientIdentity;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("this node's cluster identity: {0}")]
    Tls(#[from] tessera_tls::TlsError),
    #[error("this node's cluster identity: {0}")]
    Store(#[from] tessera_core::store::StoreError),
    #[error("this node's cluster identity does not open with the master key: {0}")]
    Key(#[from] tessera_core::keys::KeyError),
}

/// A loaded identity: the name peers know this node by, and its certificate.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub cert_sha256: [u8; 32],
    pub tls: ClientIdentity,
}

fn open(keys: &Keyring, stored: StoredIdentity) -> Result<NodeIdentity, IdentityError> {
    let key = keys.open(Purpose::NodeIdentity, &stored.name, &stored.key_sealed)?;
    Ok(NodeIdentity {
        cert_sha256: tessera_tls::cert_sha256(&stored.cert),
        tls: ClientIdentity { cert_der: stored.cert, key_der: zeroize::Zeroizing::new(key.to_vec()) },
        name: stored.name,
    })
}

/// This node's identity, if it has one.
pub fn load(keys: &Keyring, cluster: &Cluster) -> Result<Option<NodeIdentity>, IdentityError> {
    cluster.identity()?.map(|s| open(keys, s)).transpose()
}

/// This node's identity, made now (named `name`) if it has none yet.
pub async fn ensure(
    keys: &Keyring,
    rng: &dyn Random,
    cluster: &Cluster,
    name: &str,
    now_ms: i64,
) -> Result<NodeIdentity, IdentityError> {
    if let Some(id) = load(keys, cluster)? {
        if id.name != name {
            tracing::warn!(
                identity = %id.name,
                node_name = %name,
                "this node joined the cluster as `{}`; peers keep knowing it by that name",
                id.name
            );
        }
        return Ok(id);
    }
    let fresh = tessera_tls::generate_node_identity(name)?;
    let stored = StoredIdentity {
        name: name.to_string(),
        key_sealed: keys.seal(rng, Purpose::NodeIdentity, name, &fresh.key_der),
        cert: fresh.cert_der.clone(),
        created_at: now_ms,
    };
    // Another process may have made one meanwhile: the stored one wins.
    let kept = cluster.ensure_identity(stored).await?;
    open(keys, kept)
}
