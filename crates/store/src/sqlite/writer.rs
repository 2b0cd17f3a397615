//! Group commit.
//!
//! One thread owns the only writing connection. Write requests queue up;
//! the writer takes everything queued, applies it in one transaction and
//! commits it with one fsync (`synchronous=FULL`), then replies. While it
//! waits for the disk, new requests queue, so the batch size follows the
//! load: one fsync per batch, not per login. A caller is never told
//! anything that a crash or power loss could undo.
//!
//! Checkpoints (copying the WAL back into the database file) run on a
//! separate thread and connection, so the writer never stalls behind one.
//!
//! Serialising every write through one thread is also what makes
//! conditional auth updates (lockout, replay) exact without extra locking.
//!
//! Measured alternatives, kept out on purpose: committing without fsync and
//! syncing the WAL from a second thread (so the writer never waits on the
//! disk) made batches smaller and cost more CPU per login than it saved.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tessera_core::store::StoreError;
use tokio::sync::{mpsc, oneshot};

use super::{Synchronous, map_err};

/// Most jobs per transaction. Large enough to amortise an fsync across a
/// burst at 64 concurrent clients, small enough to bound one commit's latency.
pub const MAX_BATCH: usize = 512;
/// Bound on queued jobs, so an overloaded writer pushes back on callers
/// instead of buffering without limit.
pub const QUEUE_DEPTH: usize = 8192;
/// See the commit delay in `write_loop`.
const COMMIT_DELAY: Duration = Duration::from_micros(100);
const COMMIT_DELAY_BATCH: usize = 16;
/// The checkpointer copies the WAL into the database once it is this large…
const CHECKPOINT_WAL_BYTES: u64 = 8 * 1024 * 1024;
/// …or this often while anything is in it.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
/// How often the checkpointer looks at the WAL's size.
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);

trait Job: Send {
    /// Runs inside the batch's transaction; false means it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the job runs inside its own savepoint (so its failure rolls
    /// back only itself). Hot-path jobs skip it: they fail only on I/O
    /// errors, which abort the whole batch anyway.
    fn guarded(&self) -> bool;
    /// Whether the job has been run (its closure consumed).
    fn ran(&self) -> bool;
    /// Delivers the result once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct WriteJob<T, F> {
    f: Option<F>,
    guarded: bool,
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

    fn guarded(&self) -> bool {
        self.guarded
    }

    fn ran(&self) -> bool {
        self.f.is_none()
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

/// Where the writer's files are and how durable a commit must be.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub db_path: PathBuf,
    pub synchronous: Synchronous,
}

type Stop = Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>;

#[derive(Debug)]
pub struct Writer {
    tx: Option<mpsc::Sender<Box<dyn Job>>>,
    writer: Option<JoinHandle<()>>,
    checkpointer: Option<JoinHandle<()>>,
    stop_checkpointer: Stop,
}

impl Writer {
    /// Takes the writing connection; `checkpoint_conn` is a second
    /// read-write connection used only for checkpoints.
    pub fn start(conn: Connection, checkpoint_conn: Connection, opts: WriterOptions) -> Result<Writer, StoreError> {
        let sync = match opts.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(map_err)?;
        // Checkpoints are the checkpointer's job, off the writer's thread.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(map_err)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024).map_err(map_err)?;
        checkpoint_conn.pragma_update(None, "synchronous", sync).map_err(map_err)?;

        let spawn_err = |e: std::io::Error| StoreError::Unavailable(format!("cannot start database thread: {e}"));
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(QUEUE_DEPTH);
        let writer = std::thread::Builder::new()
            .name("tessera-db-writer".into())
            .spawn(move || write_loop(conn, rx))
            .map_err(spawn_err)?;
        let stop: Stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let stop2 = stop.clone();
        let checkpointer = std::thread::Builder::new()
            .name("tessera-db-ckpt".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, opts.db_path, stop2))
            .map_err(spawn_err)?;
        Ok(Writer { tx: Some(tx), writer: Some(writer), checkpointer: Some(checkpointer), stop_checkpointer: stop })
    }

    /// Queues `f` inside its own savepoint and waits until its batch is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// Like [`Writer::write`] without a savepoint, for hot-path jobs whose
    /// only failures are I/O errors (which abort the whole batch).
    pub async fn write_hot<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, guarded: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let stopped = || StoreError::Unavailable("database writer has stopped".into());
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        submit(tx, f, guarded).await
    }

    /// A sender for jobs, for a part of the store that outlives a borrow of
    /// it (the login journal's fold).
    pub fn handle(&self) -> Option<WriterHandle> {
        self.tx.as_ref().map(|tx| WriterHandle { tx: tx.downgrade() })
    }
}

async fn submit<T, F>(tx: &mpsc::Sender<Box<dyn Job>>, f: F, guarded: bool) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let stopped = || StoreError::Unavailable("database writer has stopped".into());
    let (reply, rx) = oneshot::channel();
    let job: Box<dyn Job> = Box::new(WriteJob { f: Some(f), guarded, result: None, reply });
    tx.send(job).await.map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())?
}

/// Queues writes like [`Writer::write`]; does not keep the writer alive
/// past the store's own shutdown (jobs then fail as "stopped").
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::WeakSender<Box<dyn Job>>,
}

impl WriterHandle {
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let tx = self.tx.upgrade().ok_or_else(|| StoreError::Unavailable("database writer has stopped".into()))?;
        submit(&tx, f, true).await
    }

    /// Like [`Writer::write_hot`]: no savepoint. For the journal fold, whose
    /// thousands of statements inside a savepoint each pay for a statement
    /// journal (measured: the fold then took seconds); it fails only on
    /// I/O errors, which abort the whole batch anyway.
    pub async fn write_hot<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let tx = self.tx.upgrade().ok_or_else(|| StoreError::Unavailable("database writer has stopped".into()))?;
        submit(&tx, f, false).await
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain it and exit; then the
        // checkpointer does a last pass and exits too.
        drop(self.tx.take());
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
        let (lock, cv) = &*self.stop_checkpointer;
        if let Ok(mut stop) = lock.lock() {
            *stop = true;
        }
        cv.notify_all();
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut last_batch = 0usize;
    loop {
        if batch.is_empty() {
            match rx.blocking_recv() {
                Some(job) => batch.push(job),
                None => break,
            }
        }
        drain(&mut rx, &mut batch);
        // Commit delay: under concurrent load (the last batch had company),
        // a small batch waits a moment for more, because each commit has a
        // fixed cost (WAL frames of shared pages, cache bookkeeping, fsync)
        // that otherwise dominates. A lone request never waits.
        if last_batch >= 3 && batch.len() < COMMIT_DELAY_BATCH {
            std::thread::sleep(COMMIT_DELAY);
            drain(&mut rx, &mut batch);
        }
        last_batch = batch.len();
        let commit = apply_batch(&conn, &mut batch);
        if let Err(e) = &commit {
            tracing::error!(error = %e, jobs = batch.len(), "database batch failed; its writes are reported as failed");
        }
        // Jobs that never ran (a hot job's failure aborted the batch before
        // them) get another chance in the next batch.
        let (ran, not_run): (Vec<_>, Vec<_>) = std::mem::take(&mut batch).into_iter().partition(|j| j.ran());
        for job in ran {
            job.finish(commit.as_ref().map(|_| ()));
        }
        batch = not_run;
    }
}

fn drain(rx: &mut mpsc::Receiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Runs a cached control statement (BEGIN, SAVEPOINT, …): parsing them
/// afresh for every job showed up in profiles.
fn control(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(map_err)
}

fn apply_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    control(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        let step = (|| -> Result<(), StoreError> {
            if !job.guarded() {
                return if job.run(conn) {
                    Ok(())
                } else {
                    Err(StoreError::Unavailable("a write failed; its batch was rolled back".into()))
                };
            }
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

/// Copies the WAL into the database file from its own connection. SQLite
/// fsyncs the database before the WAL may be reused, so a recycled WAL
/// never held the only copy of acknowledged data.
fn checkpoint_loop(conn: Connection, db_path: PathBuf, stop: Stop) {
    let wal_path = {
        let mut p = db_path.into_os_string();
        p.push("-wal");
        PathBuf::from(p)
    };
    let mut last = Instant::now();
    loop {
        let stopping = {
            let (lock, cv) = &*stop;
            let Ok(guard) = lock.lock() else { return };
            match cv.wait_timeout(guard, CHECKPOINT_POLL) {
                Ok((guard, _)) => *guard,
                Err(_) => return,
            }
        };
        let wal_len = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
        let due = wal_len >= CHECKPOINT_WAL_BYTES || (wal_len > 0 && last.elapsed() >= CHECKPOINT_INTERVAL);
        if due || stopping {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
            }
            last = Instant::now();
        }
        if stopping {
            return;
        }
    }
}
