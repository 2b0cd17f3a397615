//! The realms' first-factor sources, live: LDAP and Entra ID clients built
//! from the realm records, the chain walk, and the directory cache.
//!
//! Realms are re-read from the database every few seconds (the CLI and
//! other nodes may change them), and a realm's clients are rebuilt only
//! when its record changed, so pooled LDAP connections survive reloads.

mod cache;
mod chain;
mod sources;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tessera_core::CoreError;
use tessera_core::admin::Admin;
use tessera_core::clock::Timestamp;
use tessera_core::realm::{Directory, DirectoryVerdict};

pub use chain::RealmRuntime;
pub use sources::{SourceCheck, build_sources};

/// Counters, for logs, tests and `/metrics`.
#[derive(Debug, Default)]
pub struct DirectoryStats {
    pub verifications: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub fallbacks: AtomicU64,
    pub unavailable: AtomicU64,
}

#[derive(Debug, Default)]
pub struct DirectoryService {
    realms: RwLock<HashMap<String, (Timestamp, Arc<RealmRuntime>)>>,
    generation: AtomicI64,
    pub stats: Arc<DirectoryStats>,
}

impl DirectoryService {
    pub fn new() -> Self {
        Self::default()
    }

    fn realm(&self, name: &str) -> Option<Arc<RealmRuntime>> {
        self.realms.read().get(name).map(|(_, r)| r.clone())
    }

    /// Re-reads the realms; rebuilds the ones that changed. A realm whose
    /// sources cannot be built (bad CA file, unreadable secret) keeps
    /// failing closed, with an error in the log, instead of stopping the node.
    pub async fn reload(&self, admin: &Admin) -> Result<(), CoreError> {
        let realms = admin.realms().await?;
        let generation = admin.directory_cache_generation().await?;
        let flush = self.generation.swap(generation, Ordering::Relaxed) != generation;
        let mut next = HashMap::with_capacity(realms.len());
        for realm in realms {
            let current = self.realms.read().get(&realm.name).cloned();
            let runtime = match current {
                Some((updated, rt)) if updated == realm.updated_at => rt,
                _ => {
                    let secrets = admin.realm_secrets(&realm);
                    let rt = match secrets {
                        Ok(secrets) => RealmRuntime::build(&realm, &secrets, self.stats.clone()),
                        Err(e) => {
                            tracing::error!(realm = %realm.name, error = %e, "realm secrets unreadable; its logins fail");
                            RealmRuntime::broken(&realm, self.stats.clone())
                        }
                    };
                    tracing::info!(realm = %realm.name, sources = rt.describe(), "realm loaded");
                    Arc::new(rt)
                }
            };
            if flush {
                runtime.flush_cache();
            }
            next.insert(realm.name.clone(), (realm.updated_at, runtime));
        }
        if flush {
            tracing::info!("directory cache flushed");
        }
        *self.realms.write() = next;
        Ok(())
    }

    /// Checks a realm's sources, for `tessera realm test`.
    pub async fn test(&self, realm: &str) -> Option<Vec<SourceCheck>> {
        Some(self.realm(realm)?.test().await)
    }

    /// Reloads every `interval` until `stop` fires.
    pub async fn watch(
        self: Arc<Self>,
        admin: Admin,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.reload(&admin).await {
                tracing::warn!(error = %e, "realms could not be re-read; keeping the loaded ones");
            }
        }
    }
}

#[async_trait::async_trait]
impl Directory for DirectoryService {
    fn knows_realm(&self, realm: &str) -> bool {
        self.realms.read().contains_key(realm)
    }

    fn has_sources(&self, realm: &str) -> bool {
        self.realm(realm).is_some_and(|r| r.has_sources())
    }

    fn auto_provision(&self, realm: &str) -> bool {
        self.realm(realm).is_some_and(|r| r.auto_provision())
    }

    async fn verify(&self, realm: &str, username: &str, password: &str) -> DirectoryVerdict {
        self.stats.verifications.fetch_add(1, Ordering::Relaxed);
        match self.realm(realm) {
            Some(r) => r.verify(username, password).await,
            None => DirectoryVerdict::Unavailable { reason: "realm_not_loaded" },
        }
    }

    async fn groups(&self, realm: &str, username: &str) -> Vec<String> {
        match self.realm(realm) {
            Some(r) => r.groups(username).await,
            None => Vec::new(),
        }
    }
}
