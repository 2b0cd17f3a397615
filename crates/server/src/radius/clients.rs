//! Which RADIUS clients may talk to us, matched by source address (the most
//! specific prefix wins), with their secrets opened once at load. Clients
//! come from the database (`tessera client add`, re-read every 2 s) and
//! from the config file (`[[radius.client]]`, re-read on SIGHUP); their
//! names must not clash.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::RwLock;
use tessera_core::admin::Admin;
use tessera_core::clock::Timestamp;
use tessera_core::model::{MessageAuthenticatorMode, RadiusClient};
use zeroize::Zeroizing;

use crate::config::RadiusClientConfig;

#[derive(Debug)]
pub struct Client {
    /// Database row; `None` for a client declared in the config file.
    pub id: Option<i64>,
    pub name: String,
    pub prefix_len: u8,
    pub address: tessera_core::cidr::Cidr,
    pub secret: Zeroizing<Vec<u8>>,
    /// During a secret rotation's overlap: the previous secret, accepted
    /// until its expiry (checked per request, so it is refused exactly then,
    /// whenever the table is next rebuilt).
    pub old: Option<OldSecret>,
    /// The last secret change, to record which secret requests use.
    pub rotation: Option<Arc<RotationUse>>,
    pub mode: MessageAuthenticatorMode,
    /// Realm of this client's users who name none.
    pub default_realm: Option<String>,
    /// `auto` mode: seen signing (kept here so the check needs no store read).
    pub signed: AtomicBool,
}

#[derive(Debug)]
pub struct OldSecret {
    pub secret: Zeroizing<Vec<u8>>,
    pub expires_at: Timestamp,
}

/// What this node has recorded of a client's secret change (kept across
/// the 2 s rebuilds while the change is the same): uses are written at
/// most once a minute per client, so the RADIUS path does one atomic load
/// per request, and a store write only then.
#[derive(Debug)]
pub struct RotationUse {
    pub changed_at: Timestamp,
    /// When a use of the old secret was last handed to the store (ms).
    old_recorded_ms: AtomicI64,
    /// The first use of the new secret is recorded (or was already).
    new_recorded: AtomicBool,
}

impl RotationUse {
    /// How often a client's use of the old secret is written, at most.
    pub const RECORD_EVERY_MS: i64 = 60_000;

    pub fn new(changed_at: Timestamp, new_recorded: bool) -> Self {
        RotationUse {
            changed_at,
            old_recorded_ms: AtomicI64::new(i64::MIN),
            new_recorded: AtomicBool::new(new_recorded),
        }
    }

    /// Whether a use of the old secret at `now_ms` is to be written: the
    /// first one, then at most one a minute (one caller wins a race).
    pub fn record_old(&self, now_ms: i64) -> bool {
        let last = self.old_recorded_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= Self::RECORD_EVERY_MS
            && self.old_recorded_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Whether this is the first use of the new secret seen (once).
    pub fn record_new(&self) -> bool {
        !self.new_recorded.load(Ordering::Relaxed) && !self.new_recorded.swap(true, Ordering::Relaxed)
    }
}

impl Client {
    pub fn mark_signed(&self) -> bool {
        !self.signed.swap(true, Ordering::Relaxed)
    }
    pub fn has_signed(&self) -> bool {
        self.signed.load(Ordering::Relaxed)
    }
}

/// A `[[radius.client]]` with its secret read (from the file, if any).
#[derive(Debug)]
pub struct ConfigClient {
    pub name: String,
    pub address: tessera_core::cidr::Cidr,
    pub secret: Zeroizing<Vec<u8>>,
    pub mode: MessageAuthenticatorMode,
    pub default_realm: Option<String>,
}

impl ConfigClient {
    /// Resolves the config entries; reads secret files. Errors name the
    /// client and the file, never the secret.
    pub fn load_all(list: &[RadiusClientConfig]) -> Result<Vec<ConfigClient>, String> {
        list.iter().map(Self::load).collect()
    }

    fn load(c: &RadiusClientConfig) -> Result<ConfigClient, String> {
        let bad = |m: String| format!("[[radius.client]] `{}`: {m}", c.name);
        let secret = match (&c.secret, &c.secret_file) {
            (Some(s), None) => Zeroizing::new(s.as_bytes().to_vec()),
            (None, Some(f)) => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(f).map_err(|e| bad(format!("cannot read {}: {e}", f.display())))?,
                );
                Zeroizing::new(text.lines().next().unwrap_or("").as_bytes().to_vec())
            }
            _ => return Err(bad("set exactly one of secret and secret_file".into())),
        };
        crate::config::check_radius_secret(&secret).map_err(bad)?;
        Ok(ConfigClient {
            name: c.name.clone(),
            address: tessera_core::cidr::Cidr::parse(&c.address).map_err(bad)?,
            secret,
            mode: c.message_authenticator.parse().map_err(bad)?,
            default_realm: c.default_realm.clone().filter(|r| !r.is_empty()),
        })
    }
}

#[derive(Debug, Default)]
pub struct ClientTable {
    /// Sorted by prefix length, longest first. Read for every packet on
    /// every core and replaced whole every 2 s: an atomic swap of the
    /// table keeps the readers from ever waiting on (or bouncing the cache
    /// line of) a lock.
    clients: ArcSwap<Vec<Arc<Client>>>,
    /// From the config file; replaced on SIGHUP (not read per packet).
    configured: RwLock<Arc<Vec<ConfigClient>>>,
    /// Database clients already reported as clashing with a config client
    /// (reported once, not every 2 s).
    clash_reported: parking_lot::Mutex<std::collections::BTreeSet<String>>,
}

impl ClientTable {
    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<Client>> {
        self.clients.load().iter().find(|c| c.address.contains(ip)).cloned()
    }

    pub fn len(&self) -> usize {
        self.clients.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Installs a new set of config-file clients (SIGHUP, start-up) and
    /// rebuilds the table. Refused, changing nothing, when a name is also
    /// used by a database client.
    pub async fn set_configured(&self, admin: &Admin, configured: Vec<ConfigClient>) -> anyhow::Result<usize> {
        let stored = admin.radius_clients().await?;
        if let Some(c) = stored.iter().find(|s| configured.iter().any(|c| c.name == s.name)) {
            anyhow::bail!(
                "RADIUS client `{}` is declared in the config file ([[radius.client]]) and also exists in the database \
                 (`tessera client delete {}` or rename one of them)",
                c.name,
                c.name
            );
        }
        *self.configured.write() = Arc::new(configured);
        Ok(self.rebuild(admin, stored))
    }

    /// Replaces the table with the store's current clients plus the config
    /// file's. A client whose secret cannot be opened is skipped and logged
    /// (it cannot be served).
    pub async fn reload(&self, admin: &Admin) -> Result<usize, tessera_core::CoreError> {
        let stored: Vec<RadiusClient> = admin.radius_clients().await?;
        let now = admin.context().clock.now();
        if stored.iter().any(|c| c.rotation.old_expired_not_dropped(now)) {
            // Expired old secrets are refused already (see `Client::old`);
            // this removes them from the database. A replica leaves that
            // to its primary (its store refuses the write).
            match admin.drop_expired_radius_secrets(&stored).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "RADIUS old secrets expired and removed"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "expired RADIUS old secrets not removed here"),
            }
        }
        Ok(self.rebuild(admin, stored))
    }

    fn rebuild(&self, admin: &Admin, stored: Vec<RadiusClient>) -> usize {
        let now = admin.context().clock.now();
        let previous = self.clients.load_full();
        let configured = self.configured.read().clone();
        let mut next = Vec::with_capacity(stored.len() + configured.len());
        for c in &*configured {
            // `auto` mode: remembered across SIGHUP (in memory only: there
            // is no database row to record it in).
            let seen = previous.iter().any(|p| p.id.is_none() && p.name == c.name && p.has_signed());
            next.push(Arc::new(Client {
                id: None,
                name: c.name.clone(),
                prefix_len: c.address.prefix_len(),
                address: c.address,
                secret: c.secret.clone(),
                old: None,
                rotation: None,
                mode: c.mode,
                default_realm: c.default_realm.clone(),
                signed: AtomicBool::new(seen),
            }));
        }
        for c in stored {
            if configured.iter().any(|k| k.name == c.name) {
                // Added with `tessera client add` after the config file
                // declared the name: the config file's client is served.
                if self.clash_reported.lock().insert(c.name.clone()) {
                    tracing::error!(client = %c.name, "RADIUS client in the database has the name of a [[radius.client]] in the config file; the database one is ignored");
                }
                continue;
            }
            let secret = match admin.radius_secret(&c) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(client = %c.name, error = %e, "RADIUS client secret cannot be opened; client skipped");
                    continue;
                }
            };
            // Keep the learned `auto` flag across reloads even before the
            // store has recorded it.
            let seen = c.ma_seen || previous.iter().any(|p| p.id == Some(c.id) && p.has_signed());
            let old = match admin.radius_old_secret(&c, now) {
                Ok(s) => s.zip(c.rotation.old_expires_at).map(|(secret, expires_at)| OldSecret { secret, expires_at }),
                Err(e) => {
                    tracing::error!(client = %c.name, error = %e, "RADIUS client old secret cannot be opened; only the current one is accepted");
                    None
                }
            };
            // Same change as before: keep what this node already recorded.
            let rotation = c.rotation.changed_at.map(|changed| {
                previous
                    .iter()
                    .filter(|p| p.id == Some(c.id))
                    .find_map(|p| p.rotation.clone().filter(|r| r.changed_at == changed))
                    .unwrap_or_else(|| Arc::new(RotationUse::new(changed, c.rotation.new_first_used_at.is_some())))
            });
            next.push(Arc::new(Client {
                id: Some(c.id),
                name: c.name,
                prefix_len: c.address.prefix_len(),
                address: c.address,
                secret,
                old,
                rotation,
                mode: c.message_authenticator,
                default_realm: c.default_realm,
                signed: AtomicBool::new(seen),
            }));
        }
        next.sort_by(|a, b| b.prefix_len.cmp(&a.prefix_len).then_with(|| a.name.cmp(&b.name)));
        let n = next.len();
        self.clients.store(Arc::new(next));
        crate::metrics::set_radius_clients(n);
        n
    }
}
