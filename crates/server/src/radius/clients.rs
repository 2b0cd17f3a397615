//! Which RADIUS clients may talk to us, matched by source address (the most
//! specific prefix wins), with their secrets opened once at load.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use tessera_core::admin::Admin;
use tessera_core::model::{MessageAuthenticatorMode, RadiusClient};
use zeroize::Zeroizing;

#[derive(Debug)]
pub struct Client {
    pub id: i64,
    pub name: String,
    pub prefix_len: u8,
    pub address: tessera_core::cidr::Cidr,
    pub secret: Zeroizing<Vec<u8>>,
    pub mode: MessageAuthenticatorMode,
    /// Realm of this client's users who name none.
    pub default_realm: Option<String>,
    /// `auto` mode: seen signing (kept here so the check needs no store read).
    pub signed: AtomicBool,
}

impl Client {
    pub fn mark_signed(&self) -> bool {
        !self.signed.swap(true, Ordering::Relaxed)
    }
    pub fn has_signed(&self) -> bool {
        self.signed.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct ClientTable {
    /// Sorted by prefix length, longest first.
    clients: RwLock<Vec<Arc<Client>>>,
}

impl ClientTable {
    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<Client>> {
        self.clients.read().iter().find(|c| c.address.contains(ip)).cloned()
    }

    pub fn len(&self) -> usize {
        self.clients.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the table with the store's current clients. A client whose
    /// secret cannot be opened is skipped and logged (it cannot be served).
    pub async fn reload(&self, admin: &Admin) -> Result<usize, tessera_core::CoreError> {
        let stored: Vec<RadiusClient> = admin.radius_clients().await?;
        let previous: Vec<Arc<Client>> = self.clients.read().clone();
        let mut next = Vec::with_capacity(stored.len());
        for c in stored {
            let secret = match admin.radius_secret(&c) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(client = %c.name, error = %e, "RADIUS client secret cannot be opened; client skipped");
                    continue;
                }
            };
            // Keep the learned `auto` flag across reloads even before the
            // store has recorded it.
            let seen = c.ma_seen || previous.iter().any(|p| p.id == c.id && p.has_signed());
            next.push(Arc::new(Client {
                id: c.id,
                name: c.name,
                prefix_len: c.address.prefix_len(),
                address: c.address,
                secret,
                mode: c.message_authenticator,
                default_realm: c.default_realm,
                signed: AtomicBool::new(seen),
            }));
        }
        next.sort_by(|a, b| b.prefix_len.cmp(&a.prefix_len).then_with(|| a.name.cmp(&b.name)));
        let n = next.len();
        *self.clients.write() = next;
        Ok(n)
    }
}
