//! Duplicate detection (RFC 5080 §2.2.2): a retransmission — same source,
//! identifier and request authenticator within the window — gets the
//! cached reply, and one still being decided is dropped, so a client retry
//! never becomes a second decision (and never turns a good login into a
//! replay reject).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Upper bound on remembered requests, over all shards and both
/// generations (~150 bytes each): a flood must not grow memory without
/// limit. At 16,000 requests/s this still keeps every request the full
/// window; beyond that, generations turn over early (see `Shard::rotate`).
const MAX_ENTRIES: usize = 500_000;
const SHARDS: usize = 16;
const MAX_PER_GENERATION: usize = MAX_ENTRIES / SHARDS / 2;

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

/// Two generations of entries: new ones go into `current`; every window
/// `current` becomes `previous` and the old `previous` is dropped whole.
/// An entry is so kept between one and two windows, and expiry costs no
/// scan or sort under the lock.
#[derive(Debug)]
struct Shard {
    current: HashMap<Key, Entry>,
    previous: HashMap<Key, Entry>,
    rotated_at: Instant,
}

impl Shard {
    fn rotate(&mut self, now: Instant, window: Duration) {
        let age = now.saturating_duration_since(self.rotated_at);
        if age >= window + window {
            self.previous.clear();
            self.current.clear();
            self.rotated_at = now;
        } else if age >= window || self.current.len() >= MAX_PER_GENERATION {
            // The size bound turns generations over early under a flood:
            // memory stays bounded, retention shrinks.
            self.previous = std::mem::take(&mut self.current);
            self.rotated_at = now;
        }
    }

    fn get(&self, key: &Key) -> Option<&Entry> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }
}

#[derive(Debug)]
pub struct DupCache {
    window: Duration,
    shards: Vec<Mutex<Shard>>,
}

impl DupCache {
    pub fn new(window: Duration) -> Self {
        let now = Instant::now();
        DupCache {
            window,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard { current: HashMap::new(), previous: HashMap::new(), rotated_at: now }))
                .collect(),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let i = (key.authenticator[0] as usize ^ key.identifier as usize) % SHARDS;
        &self.shards[i]
    }

    pub fn check(&self, key: Key, now: Instant) -> Seen {
        let mut shard = self.shard(&key).lock();
        shard.rotate(now, self.window);
        if let Some(e) = shard.get(&key)
            && now.saturating_duration_since(e.at()) < self.window
        {
            return match e {
                Entry::InFlight(_) => Seen::InFlight,
                Entry::Done(_, reply) => Seen::Answered(reply.clone()),
            };
        }
        shard.previous.remove(&key);
        shard.current.insert(key, Entry::InFlight(now));
        Seen::New
    }

    /// Records the reply (or `None`: the request was dropped, forget it so
    /// a retry is decided afresh).
    pub fn complete(&self, key: &Key, reply: Option<&[u8]>, now: Instant) {
        let mut shard = self.shard(key).lock();
        shard.previous.remove(key);
        match reply {
            Some(r) => {
                shard.current.insert(key.clone(), Entry::Done(now, r.to_vec()));
            }
            None => {
                shard.current.remove(key);
            }
        }
    }

    /// Turns over generations that are due while no traffic does it.
    pub fn sweep(&self, now: Instant) {
        for s in &self.shards {
            s.lock().rotate(now, self.window);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.current.len() + s.previous.len()
            })
            .sum()
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

    #[test]
    fn entries_live_at_least_one_window_and_memory_is_bounded() {
        let w = Duration::from_secs(30);
        let d = DupCache::new(w);
        let t0 = Instant::now();
        let key = |i: u32| Key {
            source: "192.0.2.1:1000".parse().unwrap(),
            identifier: (i % 256) as u8,
            authenticator: {
                let mut a = [0u8; 16];
                a[..4].copy_from_slice(&i.to_be_bytes());
                a[4] = (i % 251) as u8;
                a
            },
        };
        let k = key(1);
        assert_eq!(d.check(k.clone(), t0 + Duration::from_secs(25)), Seen::New);
        d.complete(&k, Some(b"r"), t0 + Duration::from_secs(25));
        // a rotation at 30 s keeps it (previous generation) …
        assert_eq!(d.check(key(2), t0 + Duration::from_secs(31)), Seen::New);
        assert_eq!(d.check(k.clone(), t0 + Duration::from_secs(50)), Seen::Answered(b"r".to_vec()));
        // … and it is answered fresh once its window is over
        assert_eq!(d.check(k, t0 + Duration::from_secs(56)), Seen::New);
        // a flood within one window stays bounded
        let d = DupCache::new(w);
        for i in 0..(MAX_ENTRIES as u32 + 50_000) {
            assert_eq!(d.check(key(i), t0), Seen::New);
        }
        assert!(d.len() <= MAX_ENTRIES + SHARDS, "{} entries", d.len());
    }
}
