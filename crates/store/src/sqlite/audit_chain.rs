//! The audit hash chain in SQLite (schema 4, `0004_audit_chain.sql`).
//!
//! * [`insert`] appends a record inside the writer's transaction: it reads
//!   the node's head from `audit_chain`, links the record after it
//!   ([`chain::Link::after`]) and moves the head, all in the same
//!   transaction (and savepoint) as the change the record describes. The
//!   writer is the only writer of this file in this process and SQLite's
//!   write lock serialises other processes (the CLI), so a node's chain is
//!   totally ordered without any lock of our own.
//! * [`prune`] deletes the oldest records (a prefix in id order, so every
//!   node's remaining chain is a suffix) and moves each node's anchor to the
//!   last record it deleted, in the same transaction.
//! * [`verify_file`] / [`walk`] read the bookkeeping and every record in one
//!   read transaction (one WAL snapshot, so a server committing meanwhile
//!   cannot cause a false alarm) and run [`chain::Verifier`]. Read-only; no
//!   master key needed.
//!
//! Nothing here decides what is tampering: that is `tessera_core::audit::chain`.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tessera_core::audit::AuditRecord;
use tessera_core::audit::chain::{
    self, ChainPoint, ChainState, ChainedAudit, Hash, Link, NodeChain, RawRecord, Report, Verifier,
};
use tessera_core::clock::Timestamp;
use tessera_core::store::StoreError;

use super::{map_err, rows, schema};

/// First schema version with the chain.
pub const CHAIN_SCHEMA: i64 = 4;

/// How long a verification's reader waits for a lock (only checkpoints and
/// schema changes briefly block a WAL reader).
const VERIFY_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const COLS: &str = "id, at, node, actor, action, target, source, client, result, reason, seq, prev_hash, hash";

/// Inserts `a` as the next record of its node's chain. `a.id` is ignored:
/// the id is chosen here (above every id in use, and above the node's head
/// even if the newest rows were deleted) because the hash covers it.
pub(super) fn insert(conn: &Connection, a: &AuditRecord) -> Result<(), StoreError> {
    let head = conn
        .prepare_cached("SELECT head_seq, head_id, head_hash FROM audit_chain WHERE node = ?1")
        .and_then(|mut s| s.query_row([&a.node], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Vec<u8>>(2)?))).optional())
        .map_err(map_err)?;
    let head = match head {
        None => ChainPoint::GENESIS,
        Some((seq, id, hash)) => ChainPoint { seq, id, hash: hash32(&hash).ok_or_else(corrupt_head)? },
    };
    let max_id: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM audit")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(map_err)?;
    let id = max_id.max(head.id) + 1;
    let link = Link::after(&head, id, a);
    conn.prepare_cached(
        "INSERT INTO audit (id, at, node, actor, action, target, source, client, result, reason, seq, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            a.at.0,
            a.node,
            a.actor,
            a.action,
            a.target,
            a.source,
            a.client,
            a.result.as_str(),
            a.reason,
            link.seq,
            &link.prev_hash[..],
            &link.hash[..]
        ])
    })
    .map_err(map_err)?;
    conn.prepare_cached(
        "INSERT INTO audit_chain (node, head_seq, head_id, head_hash, anchor_seq, anchor_id, anchor_hash) \
         VALUES (?1, ?2, ?3, ?4, 0, 0, ?5) \
         ON CONFLICT (node) DO UPDATE SET head_seq = excluded.head_seq, head_id = excluded.head_id, \
         head_hash = excluded.head_hash",
    )
    .and_then(|mut s| s.execute(params![a.node, link.seq, id, &link.hash[..], &chain::GENESIS[..]]))
    .map_err(map_err)?;
    Ok(())
}

fn corrupt_head() -> StoreError {
    StoreError::Corrupt("audit_chain: a chain head hash is not 32 bytes".into())
}

fn hash32(b: &[u8]) -> Option<Hash> {
    b.try_into().ok()
}

/// Deletes up to `limit` of the oldest records, stopping at the first one
/// (in id order) that is not older than `before`, and anchors each node's
/// chain at the last of its records deleted. Returns how many went.
///
/// Deleting a prefix in id order (rather than every record older than
/// `before`) keeps each node's remaining chain contiguous; a record with an
/// out-of-order time merely waits for the next round.
pub(super) fn prune(conn: &Connection, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
    let mut last_id = None;
    let mut deleted = 0u64;
    let mut anchors: Vec<(String, ChainPoint)> = Vec::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT id, at, node, seq, hash FROM audit ORDER BY id LIMIT ?1").map_err(map_err)?;
        let mut rows = stmt.query([limit]).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let (id, at): (i64, i64) = (r.get(0).map_err(map_err)?, r.get(1).map_err(map_err)?);
            if at >= before.0 {
                break;
            }
            last_id = Some(id);
            deleted += 1;
            let seq: Option<i64> = r.get(3).map_err(map_err)?;
            let hash: Option<Vec<u8>> = r.get(4).map_err(map_err)?;
            // A record without a valid link (from before the chain, or
            // damaged) cannot be an anchor; the previous one stays.
            if let (Some(seq), Some(hash)) = (seq, hash.as_deref().and_then(hash32)) {
                let node: String = r.get(2).map_err(map_err)?;
                let point = ChainPoint { seq, id, hash };
                match anchors.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, p)) => *p = point,
                    None => anchors.push((node, point)),
                }
            }
        }
    }
    let Some(last_id) = last_id else { return Ok(0) };
    conn.execute("DELETE FROM audit WHERE id <= ?1", [last_id]).map_err(map_err)?;
    for (node, p) in anchors {
        conn.prepare_cached("UPDATE audit_chain SET anchor_seq = ?1, anchor_id = ?2, anchor_hash = ?3 WHERE node = ?4")
            .and_then(|mut s| s.execute(params![p.seq, p.id, &p.hash[..], node]))
            .map_err(map_err)?;
    }
    Ok(deleted)
}

/// Records with ids above `after`, oldest first, with their links.
pub(super) fn after(conn: &Connection, after: i64, limit: u32) -> rusqlite::Result<Vec<ChainedAudit>> {
    let sql = format!("SELECT {COLS} FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    let out = stmt.query_map(params![after, limit], |r| {
        let record = rows::audit(r)?;
        let seq: Option<i64> = r.get(10)?;
        let prev: Option<Vec<u8>> = r.get(11)?;
        let hash: Option<Vec<u8>> = r.get(12)?;
        let link = match (seq, prev.as_deref().and_then(hash32), hash.as_deref().and_then(hash32)) {
            (Some(seq), Some(prev_hash), Some(hash)) => Some(Link { seq, prev_hash, hash }),
            _ => None,
        };
        Ok(ChainedAudit { record, link })
    })?;
    out.collect()
}

/// Verifies the database file at `db`, read-only. `Ok(None)` when its
/// schema predates the chain (nothing to verify until a tessera of this
/// version has opened it for writing).
pub fn verify_file(db: &Path) -> Result<Option<Report>, StoreError> {
    if !db.exists() {
        return Err(StoreError::NotInitialised(format!("{} does not exist", db.display())));
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(map_err)?;
    conn.busy_timeout(VERIFY_BUSY_TIMEOUT).map_err(map_err)?;
    let window = schema::current_window(&conn)?;
    let version = window.version;
    if version == 0 {
        return Err(StoreError::NotInitialised(format!("{} is an empty database", db.display())));
    }
    schema::check_supported(window)?;
    if version < CHAIN_SCHEMA {
        return Ok(None);
    }
    walk(&conn).map(Some)
}

/// Reads the chains' bookkeeping and every record in one read transaction
/// and verifies them.
pub(super) fn walk(conn: &Connection) -> Result<Report, StoreError> {
    let tx = conn.unchecked_transaction().map_err(map_err)?;
    let chain_start: i64 = tx
        .query_row("SELECT value FROM meta WHERE key = 'audit_chain_start'", [], |r| r.get(0))
        .optional()
        .map_err(map_err)?
        .ok_or_else(|| StoreError::Corrupt("meta: audit_chain_start is missing".into()))?;
    let mut nodes = Vec::new();
    {
        let mut stmt = tx
            .prepare(
                "SELECT node, head_seq, head_id, head_hash, anchor_seq, anchor_id, anchor_hash \
                 FROM audit_chain ORDER BY node",
            )
            .map_err(map_err)?;
        let mut rows = stmt.query([]).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let node: String = r.get(0).map_err(map_err)?;
            let point = |seq: usize, id: usize, hash: usize| -> Result<ChainPoint, StoreError> {
                let h: Vec<u8> = r.get(hash).map_err(map_err)?;
                Ok(ChainPoint {
                    seq: r.get(seq).map_err(map_err)?,
                    id: r.get(id).map_err(map_err)?,
                    hash: hash32(&h).ok_or_else(|| {
                        StoreError::Corrupt(format!("audit_chain: a hash of node {node} is not 32 bytes"))
                    })?,
                })
            };
            nodes.push(NodeChain { head: point(1, 2, 3)?, anchor: point(4, 5, 6)?, node });
        }
    }
    let mut v = Verifier::new(&ChainState { chain_start, nodes });
    {
        let mut stmt = tx.prepare(&format!("SELECT {COLS} FROM audit ORDER BY id")).map_err(map_err)?;
        let mut rows = stmt.query([]).map_err(map_err)?;
        while let Some(r) = rows.next().map_err(map_err)? {
            let id: i64 = r.get(0).map_err(map_err)?;
            match raw_record(r) {
                Ok(rec) => v.push(&rec),
                Err(why) => {
                    let node = r.get_ref(2).ok().and_then(|v| v.as_str().ok().map(str::to_string));
                    let seq = r.get::<_, i64>(10).ok();
                    let prev = r.get::<_, Vec<u8>>(11).ok().and_then(|h| hash32(&h));
                    let hash = r.get::<_, Vec<u8>>(12).ok().and_then(|h| hash32(&h));
                    let link = match (seq, prev, hash) {
                        (Some(seq), Some(prev_hash), Some(hash)) => Some(Link { seq, prev_hash, hash }),
                        _ => None,
                    };
                    v.push_malformed(id, node.as_deref(), link, &why);
                }
            }
        }
    }
    drop(tx);
    Ok(v.finish())
}

/// Reads a row without trusting it: a value of the wrong type is a finding
/// about that record, not an error that stops the verification.
fn raw_record(r: &rusqlite::Row<'_>) -> Result<RawRecord, String> {
    const NAMES: [&str; 13] = [
        "id",
        "at",
        "node",
        "actor",
        "action",
        "target",
        "source",
        "client",
        "result",
        "reason",
        "seq",
        "prev_hash",
        "hash",
    ];
    let get = |i: usize| r.get_ref(i).map_err(|e| format!("{}: {e}", NAMES[i]));
    let int = |i: usize| match get(i)? {
        ValueRef::Integer(n) => Ok(Some(n)),
        ValueRef::Null => Ok(None),
        _ => Err(format!("{} is not an integer", NAMES[i])),
    };
    let text = |i: usize| match get(i)? {
        ValueRef::Text(t) => {
            std::str::from_utf8(t).map(|s| Some(s.to_string())).map_err(|_| format!("{} is not UTF-8", NAMES[i]))
        }
        ValueRef::Null => Ok(None),
        _ => Err(format!("{} is not text", NAMES[i])),
    };
    let blob = |i: usize| match get(i)? {
        ValueRef::Blob(b) => hash32(b).map(Some).ok_or_else(|| format!("{} is not a 32-byte hash", NAMES[i])),
        ValueRef::Null => Ok(None),
        _ => Err(format!("{} is not a hash", NAMES[i])),
    };
    let required = |v: Option<String>, i: usize| v.ok_or_else(|| format!("{} is empty (NULL)", NAMES[i]));
    let link = match (int(10)?, blob(11)?, blob(12)?) {
        (Some(seq), Some(prev_hash), Some(hash)) => Some(Link { seq, prev_hash, hash }),
        (None, None, None) => None,
        _ => return Err("its chain link is incomplete".into()),
    };
    Ok(RawRecord {
        id: int(0)?.ok_or("id is NULL")?,
        at: int(1)?.ok_or("at is NULL")?,
        node: required(text(2)?, 2)?,
        actor: required(text(3)?, 3)?,
        action: required(text(4)?, 4)?,
        target: text(5)?,
        source: text(6)?,
        client: text(7)?,
        result: required(text(8)?, 8)?,
        reason: text(9)?,
        link,
    })
}
