//! Duplicate detection (RFC 5080 §2.2.2): a retransmission — same source,
//! identifier and request authenticator within the window — gets the
//! cached reply, and one still being decided is dropped, so a client retry
//! never becomes a second decision (and never turns a good login into a
//! replay reject).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Upper bound on remembered requests; beyond it the oldest are forgotten
/// first (a flood must not grow memory without limit).
const MAX_ENTRIES: usize = 200_000;
const SHARDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub source: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

#[derive(Debug)]
enum Entry {
    InFlight(Instant),
    Done(Instant, Vec<u8>),
}

impl Entry {
    fn at(&self) -> Instant {
        match self {
            Entry::InFlight(t) | Entry::Done(t, _) => *t,
        }
    }
}

/// What to do with an incoming request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: decide it, then call [`DupCache::complete`].
    New,
    /// Being decided: drop this copy.
    InFlight,
    /// Already answered: send this again.
    Answered(Vec<u8>),
}

#[derive(Debug)]
pub struct DupCache {
    window: Duration,
    shards: Vec<Mutex<HashMap<Key, Entry>>>,
}

impl DupCache {
    pub fn new(window: Duration) -> Self {
        DupCache { window, shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Entry>> {
        let i = (key.authenticator[0] as usize ^ key.identifier as usize) % SHARDS;
        &self.shards[i]
    }

    pub fn check(&self, key: Key, now: Instant) -> Seen {
        let mut map = self.shard(&key).lock();
        if let Some(e) = map.get(&key)
            && now.duration_since(e.at()) < self.window
        {
            return match e {
                Entry::InFlight(_) => Seen::InFlight,
                Entry::Done(_, reply) => Seen::Answered(reply.clone()),
            };
        }
        if map.len() >= MAX_ENTRIES / SHARDS {
            let window = self.window;
            map.retain(|_, e| now.duration_since(e.at()) < window);
            if map.len() >= MAX_ENTRIES / SHARDS {
                // Still full of live entries: forget the oldest half.
                let mut ages: Vec<Instant> = map.values().map(Entry::at).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                map.retain(|_, e| e.at() > cut);
            }
        }
        map.insert(key, Entry::InFlight(now));
        Seen::New
    }

    /// Records the reply (or `None`: the request was dropped, forget it so
    /// a retry is decided afresh).
    pub fn complete(&self, key: &Key, reply: Option<&[u8]>, now: Instant) {
        let mut map = self.shard(key).lock();
        match reply {
            Some(r) => {
                map.insert(key.clone(), Entry::Done(now, r.to_vec()));
            }
            None => {
                map.remove(key);
            }
        }
    }

    /// Drops expired entries; called periodically.
    pub fn sweep(&self, now: Instant) {
        for s in &self.shards {
            s.lock().retain(|_, e| now.duration_since(e.at()) < self.window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_get_the_same_answer() {
        let d = DupCache::new(Duration::from_secs(30));
        let k = Key { source: "192.0.2.1:1000".parse().unwrap(), identifier: 7, authenticator: [1; 16] };
        let t0 = Instant::now();
        assert_eq!(d.check(k.clone(), t0), Seen::New);
        assert_eq!(d.check(k.clone(), t0), Seen::InFlight);
        d.complete(&k, Some(b"reply"), t0);
        assert_eq!(d.check(k.clone(), t0 + Duration::from_secs(29)), Seen::Answered(b"reply".to_vec()));
        assert_eq!(d.check(k.clone(), t0 + Duration::from_secs(31)), Seen::New, "outside the window");
        let other = Key { identifier: 8, ..k.clone() };
        assert_eq!(d.check(other.clone(), t0), Seen::New);
        d.complete(&other, None, t0);
        assert_eq!(d.check(other, t0), Seen::New, "dropped requests are decided again");
    }
}
