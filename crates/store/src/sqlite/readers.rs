//! A small pool of read-only connections. WAL mode lets them read while the
//! writer commits. Reads are primary-key or unique-index lookups served from
//! SQLite's page cache in microseconds, so they run on the calling task's
//! thread: handing them to a blocking pool would cost more than the read.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use rusqlite::Connection;

#[derive(Debug)]
pub struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub fn new(conns: Vec<Connection>) -> Self {
        Readers { conns: conns.into_iter().map(Mutex::new).collect(), next: AtomicUsize::new(0) }
    }

    /// Runs `f` on a free connection (or waits for the next one in turn).
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Some(c) = self.conns[(start + i) % n].try_lock() {
                return f(&c);
            }
        }
        let c = self.conns[start % n].lock();
        f(&c)
    }
}
