//! Group commit: one thread owns the only writing connection; concurrent
//! write requests queue up and are applied in one transaction per batch,
//! each inside its own savepoint, then committed with one fsync. Replies go
//! out only after the commit, so whatever a caller is told is durable.
//!
//! Serialising every write through one thread is also what makes
//! conditional auth updates (lockout, replay) exact without extra locking.

use std::thread::JoinHandle;

use rusqlite::Connection;
use tessera_core::store::StoreError;
use tokio::sync::{mpsc, oneshot};

use super::map_err;

/// Most jobs per transaction. Large enough to amortise an fsync across a
/// burst at 64 concurrent clients, small enough to bound one commit's latency.
pub const MAX_BATCH: usize = 512;
/// Bound on queued jobs, so an overloaded writer pushes back on callers
/// instead of buffering without limit.
pub const QUEUE_DEPTH: usize = 8192;

trait Job: Send {
    /// Runs inside the batch's transaction; false means "roll my savepoint back".
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the result once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct WriteJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for WriteJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let r = f(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let out = match (commit, self.result) {
            // A job that failed on its own was rolled back; its error stands.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Err(e), _) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Unavailable("write was not executed".into())),
        };
        // The caller may have gone away (a dropped request); the write
        // itself stands either way.
        let _ = self.reply.send(out);
    }
}

#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(conn: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(QUEUE_DEPTH);
        let thread = std::thread::Builder::new().name("tessera-db-writer".into()).spawn(move || run(conn, rx))?;
        Ok(Writer { tx, thread: Some(thread) })
    }

    /// Queues `f` and waits until its batch is committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(WriteJob { f: Some(f), result: None, reply });
        self.tx.send(job).await.map_err(|_| StoreError::Unavailable("database writer has stopped".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("database writer has stopped".into()))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain what is queued and exit.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = apply_batch(&conn, &mut batch);
        if let Err(e) = &commit {
            tracing::error!(error = %e, jobs = batch.len(), "database batch failed; every write in it reported as failed");
        }
        for job in batch.drain(..) {
            job.finish(commit.as_ref().map(|_| ()));
        }
    }
}

/// Runs one cached control statement (BEGIN, SAVEPOINT, …): parsing them
/// afresh for every job showed up in profiles.
fn control(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(map_err)
}

fn apply_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    control(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        let step = (|| -> Result<(), StoreError> {
            control(conn, "SAVEPOINT job")?;
            if job.run(conn) {
                control(conn, "RELEASE job")
            } else {
                control(conn, "ROLLBACK TO job")?;
                control(conn, "RELEASE job")
            }
        })();
        if let Err(e) = step {
            let _ = control(conn, "ROLLBACK");
            return Err(e);
        }
    }
    if let Err(e) = control(conn, "COMMIT") {
        let _ = control(conn, "ROLLBACK");
        return Err(e);
    }
    Ok(())
}
