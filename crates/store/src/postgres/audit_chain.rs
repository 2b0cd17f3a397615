//! The audit hash chain in PostgreSQL (same tables and rules as
//! `sqlite/audit_chain.rs`; the linking and verification are
//! `tessera_core::audit::chain`).
//!
//! Several processes write here, so a node's chain is serialised by its
//! head row: [`insert`] locks it (an upsert that creates the genesis head
//! on a node's first record, `ON CONFLICT DO UPDATE` so the row is locked
//! either way) in the same transaction as the change the record
//! describes, takes the record's id from `audit_id_seq` after the lock (so
//! a node's ids grow with its seq), links the record and moves the head.
//! The audit record is always the last statement of a transaction, so the
//! head lock is held only until its commit and is always taken after any
//! user row lock (no lock-order cycles).
//!
//! Reading in id order ([`after`], the syslog forwarder's cursor) needs
//! more care than in SQLite: ids come from a sequence before commit, so a
//! lower id can become visible after a higher one (two nodes, or two
//! connections of one node writing different nodes' records). Every id is
//! drawn while its transaction holds a shared advisory lock
//! ([`DRAW_LOCK`], taken in the same statement, before `nextval`) until
//! commit. [`Horizon`] reads the sequence, then which transactions hold
//! that lock: once all of those have ended, every id up to the value read
//! is final (committed or gone for good), and only such ids are delivered.
//! Nothing waits on anything: a reader that finds writers in flight
//! delivers up to the previous safe point and looks again at its next poll.

use deadpool_postgres::GenericClient;
use tessera_core::audit::AuditRecord;
use tessera_core::audit::chain::{
    self, ChainPoint, ChainState, ChainedAudit, Hash, Link, NodeChain, RawRecord, Report, Verifier,
};
use tessera_core::clock::Timestamp;
use tessera_core::store::StoreError;

use super::db::{exec, one, rows};
use super::rows as r;

const COLS: &str = "id, at, node, actor, action, target, source, client, result, reason, seq, prev_hash, hash";

/// An arbitrary constant: the advisory lock key for pruning.
const PRUNE_LOCK: i64 = 0x7465_7373_6572_6102;

/// The advisory lock key every audit writer holds (shared) from drawing
/// its record's id until its commit. Public for tests that play a writer.
pub const DRAW_LOCK: i64 = 0x7465_7373_6572_6103;

fn hash32(b: &[u8]) -> Option<Hash> {
    b.try_into().ok()
}

/// Appends `a` to its node's chain, inside the caller's transaction.
pub async fn insert<C: GenericClient>(c: &C, a: &AuditRecord) -> Result<(), StoreError> {
    let genesis: &[u8] = &chain::GENESIS[..];
    // The FROM clause runs before the row is inserted or locked and
    // RETURNING after, so the draw lock is held before the id exists (a
    // volatile call in a subquery is never optimised away).
    let head = one(
        c,
        "INSERT INTO audit_chain (node, head_seq, head_id, head_hash, anchor_seq, anchor_id, anchor_hash) \
         SELECT $1, 0, 0, $2, 0, 0, $2 FROM (SELECT pg_advisory_xact_lock_shared($3)) AS draw \
         ON CONFLICT (node) DO UPDATE SET node = excluded.node \
         RETURNING head_seq, head_id, head_hash, nextval('audit_id_seq')",
        &[&a.node, &genesis, &DRAW_LOCK],
    )
    .await?;
    let hash: Vec<u8> = r::get(&head, 2)?;
    let id: i64 = r::get(&head, 3)?;
    let head = ChainPoint {
        seq: r::get(&head, 0)?,
        id: r::get(&head, 1)?,
        hash: hash32(&hash).ok_or_else(|| StoreError::Corrupt("audit_chain: a head hash is not 32 bytes".into()))?,
    };
    let id = id.max(head.id + 1);
    let link = Link::after(&head, id, a);
    exec(
        c,
        "WITH rec AS (INSERT INTO audit (id, at, node, actor, action, target, source, client, result, reason, seq, \
         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)) \
         UPDATE audit_chain SET head_seq = $11, head_id = $1, head_hash = $13 WHERE node = $3",
        &[
            &id,
            &a.at.0,
            &a.node,
            &a.actor,
            &a.action,
            &a.target,
            &a.source,
            &a.client,
            &a.result.as_str(),
            &a.reason,
            &link.seq,
            &&link.prev_hash[..],
            &&link.hash[..],
        ],
    )
    .await?;
    Ok(())
}

/// Deletes up to `limit` of the oldest records (a prefix in id order, up to
/// the first not older than `before`) and anchors each node's chain at the
/// last of its records deleted. One pruner at a time (advisory lock).
pub async fn prune<C: GenericClient>(c: &C, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
    exec(c, "SELECT pg_advisory_xact_lock($1)", &[&PRUNE_LOCK]).await?;
    let found = rows(c, "SELECT id, at, node, seq, hash FROM audit ORDER BY id LIMIT $1", &[&i64::from(limit)]).await?;
    let mut last_id = None;
    let mut deleted = 0u64;
    let mut anchors: Vec<(String, ChainPoint)> = Vec::new();
    for row in &found {
        let id: i64 = r::get(row, 0)?;
        let at: i64 = r::get(row, 1)?;
        if at >= before.0 {
            break;
        }
        last_id = Some(id);
        deleted += 1;
        let seq: Option<i64> = r::get(row, 3)?;
        let hash: Option<Vec<u8>> = r::get(row, 4)?;
        if let (Some(seq), Some(hash)) = (seq, hash.as_deref().and_then(hash32)) {
            let node: String = r::get(row, 2)?;
            let point = ChainPoint { seq, id, hash };
            match anchors.iter_mut().find(|(n, _)| *n == node) {
                Some((_, p)) => *p = point,
                None => anchors.push((node, point)),
            }
        }
    }
    let Some(last_id) = last_id else { return Ok(0) };
    exec(c, "DELETE FROM audit WHERE id <= $1", &[&last_id]).await?;
    anchors.sort_by(|a, b| a.0.cmp(&b.0));
    for (node, p) in anchors {
        exec(
            c,
            "UPDATE audit_chain SET anchor_seq = $1, anchor_id = $2, anchor_hash = $3 WHERE node = $4",
            &[&p.seq, &p.id, &&p.hash[..], &node],
        )
        .await?;
    }
    Ok(deleted)
}

fn link_of(seq: Option<i64>, prev: Option<Vec<u8>>, hash: Option<Vec<u8>>) -> Option<Link> {
    match (seq, prev.as_deref().and_then(hash32), hash.as_deref().and_then(hash32)) {
        (Some(seq), Some(prev_hash), Some(hash)) => Some(Link { seq, prev_hash, hash }),
        _ => None,
    }
}

/// How far ids are final, as last seen by one store (see the module doc).
#[derive(Debug, Default)]
pub struct Horizon {
    /// Every id up to this one is committed or will never exist.
    safe: i64,
    /// A sequence value read earlier, and the writers (virtual transaction
    /// ids) that held the draw lock then: `safe` once they have all ended.
    pending: Option<(i64, Vec<String>)>,
}

/// The writers holding the draw lock in this database right now.
async fn drawing<C: GenericClient>(c: &C) -> Result<Vec<String>, StoreError> {
    let found = rows(
        c,
        "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND ((classid::bigint << 32) | objid::bigint) = $1",
        &[&DRAW_LOCK],
    )
    .await?;
    found.iter().map(|row| r::get(row, 0)).collect()
}

impl Horizon {
    /// Advances and returns the safe id. The sequence is read before the
    /// lock table: a writer whose id is at most that value drew it under
    /// the lock, so it is either listed or already finished.
    pub async fn advance<C: GenericClient>(&mut self, c: &C) -> Result<i64, StoreError> {
        let seq = one(c, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM audit_id_seq", &[]).await?;
        let seq: i64 = r::get(&seq, 0)?;
        let now = drawing(c).await?;
        if let Some((value, waiting)) = &self.pending
            && !waiting.iter().any(|w| now.contains(w))
        {
            self.safe = self.safe.max(*value);
            self.pending = None;
        }
        if now.is_empty() {
            self.safe = self.safe.max(seq);
            self.pending = None;
        } else if self.pending.is_none() {
            self.pending = Some((seq, now));
        }
        Ok(self.safe)
    }
}

/// Records with ids above `after` and at most `upto` (a safe point from
/// [`Horizon::advance`]), oldest first, with their links.
pub async fn after<C: GenericClient>(
    c: &C,
    after: i64,
    upto: i64,
    limit: u32,
) -> Result<Vec<ChainedAudit>, StoreError> {
    let sql = format!("SELECT {COLS} FROM audit WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3");
    rows(c, &sql, &[&after, &upto, &i64::from(limit)])
        .await?
        .iter()
        .map(|row| {
            Ok(ChainedAudit {
                record: r::audit(row)?,
                link: link_of(r::get(row, 10)?, r::get(row, 11)?, r::get(row, 12)?),
            })
        })
        .collect()
}

/// Verifies every node's chain. `c` must be a REPEATABLE READ transaction,
/// so the bookkeeping and the records are one snapshot.
pub async fn walk<C: GenericClient>(c: &C) -> Result<Report, StoreError> {
    let start = rows(c, "SELECT value FROM meta WHERE key = 'audit_chain_start'", &[]).await?;
    let start = start.first().ok_or_else(|| StoreError::Corrupt("meta: audit_chain_start is missing".into()))?;
    let start: Vec<u8> = r::get(start, 0)?;
    let chain_start: i64 = std::str::from_utf8(&start)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| StoreError::Corrupt("meta: audit_chain_start is not a number".into()))?;
    let mut nodes = Vec::new();
    for row in rows(
        c,
        "SELECT node, head_seq, head_id, head_hash, anchor_seq, anchor_id, anchor_hash FROM audit_chain ORDER BY node",
        &[],
    )
    .await?
    {
        let node: String = r::get(&row, 0)?;
        let point = |seq: usize, id: usize, hash: usize| -> Result<ChainPoint, StoreError> {
            let h: Vec<u8> = r::get(&row, hash)?;
            Ok(ChainPoint {
                seq: r::get(&row, seq)?,
                id: r::get(&row, id)?,
                hash: hash32(&h).ok_or_else(|| {
                    StoreError::Corrupt(format!("audit_chain: a hash of node {node} is not 32 bytes"))
                })?,
            })
        };
        nodes.push(NodeChain { head: point(1, 2, 3)?, anchor: point(4, 5, 6)?, node });
    }
    let mut v = Verifier::new(&ChainState { chain_start, nodes });
    let sql = format!("SELECT {COLS} FROM audit WHERE id > $1 ORDER BY id LIMIT 5000");
    let mut after = i64::MIN;
    loop {
        let page = rows(c, &sql, &[&after]).await?;
        let Some(last) = page.last() else { break };
        after = r::get(last, 0)?;
        for row in &page {
            let id: i64 = r::get(row, 0)?;
            let seq: Option<i64> = r::get(row, 10)?;
            let prev: Option<Vec<u8>> = r::get(row, 11)?;
            let hash: Option<Vec<u8>> = r::get(row, 12)?;
            let link = match (seq, prev.as_deref(), hash.as_deref()) {
                (None, None, None) => Ok(None),
                (Some(seq), Some(p), Some(h)) => match (hash32(p), hash32(h)) {
                    (Some(prev_hash), Some(hash)) => Ok(Some(Link { seq, prev_hash, hash })),
                    _ => Err("a chain hash is not 32 bytes"),
                },
                _ => Err("its chain link is incomplete"),
            };
            let node: String = r::get(row, 2)?;
            match link {
                Ok(link) => v.push(&RawRecord {
                    id,
                    at: r::get(row, 1)?,
                    node,
                    actor: r::get(row, 3)?,
                    action: r::get(row, 4)?,
                    target: r::get(row, 5)?,
                    source: r::get(row, 6)?,
                    client: r::get(row, 7)?,
                    result: r::get(row, 8)?,
                    reason: r::get(row, 9)?,
                    link,
                }),
                Err(why) => v.push_malformed(id, Some(&node), link_of(seq, prev, hash), why),
            }
        }
    }
    Ok(v.finish())
}
