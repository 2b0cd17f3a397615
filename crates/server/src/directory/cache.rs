//! The directory cache: per realm, which source a user resolved to and
//! their attributes and groups, for a TTL. Password verdicts are never
//! cached: every login still binds (or asks Entra ID).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Bound on entries per realm; past it, expired entries are swept and, if
/// still full, the cache is cleared (simple, and a cold cache is correct).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// Index of the source in the realm's chain.
    pub source: usize,
    /// The user's DN (LDAP), so a login can bind without searching first.
    pub dn: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Debug)]
pub struct DirectoryCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Cached)>>,
}

impl DirectoryCache {
    pub fn new(ttl: Duration) -> Self {
        DirectoryCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    pub fn get(&self, username: &str) -> Option<Cached> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.entries.lock();
        match entries.get(username) {
            Some((at, c)) if at.elapsed() < self.ttl => Some(c.clone()),
            Some(_) => {
                entries.remove(username);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, username: &str, value: Cached) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(username.to_string(), (Instant::now(), value));
    }

    pub fn remove(&self, username: &str) {
        self.entries.lock().remove(username);
    }

    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_when_ttl_is_zero() {
        let c = DirectoryCache::new(Duration::ZERO);
        c.put("a", Cached { source: 0, dn: None, groups: vec![] });
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn expires_and_clears() {
        let c = DirectoryCache::new(Duration::from_millis(30));
        let v = Cached { source: 1, dn: Some("uid=a".into()), groups: vec!["g".into()] };
        c.put("a", v.clone());
        assert_eq!(c.get("a"), Some(v.clone()));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get("a"), None);
        c.put("a", v);
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
