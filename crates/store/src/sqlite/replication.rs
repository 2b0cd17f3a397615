//! Primary/replica replication on the embedded database (schema 7,
//! `0007_replication.sql`): reading the change log and snapshots on a
//! primary, applying them on a replica, and this node's replication state.
//!
//! Triggers record the key of every changed replicated row in
//! `repl_changes`; a page of the stream is the *current* image of each
//! row changed after a position, read in one transaction. Applying runs on
//! its own connection with foreign keys off: images arrive in change order,
//! not parent-before-child order, and a cascade on the replica must never
//! delete rows the primary still has (the primary's own cascades arrive as
//! deletions of their own).

use std::path::{Path, PathBuf};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tessera_core::replication::{ChangePage, ReplState, ReplValue, Role, RowImage};
use tessera_core::store::StoreError;

use super::map_err;
use super::token_state::TokenStates;

/// One item of a snapshot being installed.
#[derive(Debug)]
pub enum SnapshotItem {
    Image(RowImage),
    /// The last item: the primary's position and epoch, and how many rows
    /// it sent (checked when known).
    End {
        position: i64,
        epoch: i64,
        rows: Option<u64>,
    },
}

/// A user's token state blob and used backup codes (digest, used at).
pub type LoginState = (Option<Vec<u8>>, Vec<(Vec<u8>, i64)>);

/// The kind of a primary-key column, to bind the logged JSON key.
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    Int,
    Text,
    /// Logged as hex.
    Blob,
}

struct TableSpec {
    name: &'static str,
    key: &'static [(&'static str, KeyKind)],
}

/// Replicated tables, parents before children (the order a snapshot is
/// written and read in). Must match the triggers of `0007_replication.sql`.
const TABLES: &[TableSpec] = &[
    TableSpec { name: "meta", key: &[("key", KeyKind::Text)] },
    TableSpec { name: "users", key: &[("id", KeyKind::Int)] },
    TableSpec { name: "tokens", key: &[("id", KeyKind::Int)] },
    TableSpec { name: "backup_codes", key: &[("user_id", KeyKind::Int), ("digest", KeyKind::Blob)] },
    TableSpec { name: "api_keys", key: &[("id", KeyKind::Text)] },
    TableSpec { name: "radius_clients", key: &[("id", KeyKind::Int)] },
    TableSpec { name: "group_members", key: &[("group_name", KeyKind::Text), ("user_id", KeyKind::Int)] },
    TableSpec { name: "reply_rules", key: &[("id", KeyKind::Int)] },
    TableSpec { name: "realms", key: &[("name", KeyKind::Text)] },
    TableSpec { name: "inventory", key: &[("id", KeyKind::Int)] },
    TableSpec { name: "admins", key: &[("id", KeyKind::Int)] },
    TableSpec { name: "repl_nodes", key: &[("name", KeyKind::Text)] },
];

/// `meta` keys that are the cluster's, not the node's.
pub const REPLICATED_META: &[&str] =
    &["policy", "key_check", "key_id", "backup_mac_key", "directory_cache_generation", "key_rotation"];

fn spec(table: &str) -> Result<&'static TableSpec, StoreError> {
    TABLES
        .iter()
        .find(|t| t.name == table)
        .ok_or_else(|| StoreError::Corrupt(format!("replication: `{table}` is not a replicated table")))
}

fn bad_key(table: &str, key: &str) -> StoreError {
    StoreError::Corrupt(format!("replication: unreadable key {key} of `{table}`"))
}

/// The logged JSON key as bind values, in the spec's column order.
fn key_values(spec: &TableSpec, key: &str) -> Result<Vec<Value>, StoreError> {
    let parts: Vec<serde_json::Value> = serde_json::from_str(key).map_err(|_| bad_key(spec.name, key))?;
    if parts.len() != spec.key.len() {
        return Err(bad_key(spec.name, key));
    }
    parts
        .iter()
        .zip(spec.key)
        .map(|(v, (_, kind))| match kind {
            KeyKind::Int => v.as_i64().map(Value::Integer),
            KeyKind::Text => v.as_str().map(|s| Value::Text(s.to_string())),
            KeyKind::Blob => v.as_str().and_then(|s| hex::decode(s).ok()).map(Value::Blob),
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad_key(spec.name, key))
}

fn key_where(spec: &TableSpec) -> String {
    spec.key.iter().enumerate().map(|(i, (c, _))| format!("{c} = ?{}", i + 1)).collect::<Vec<_>>().join(" AND ")
}

fn to_repl(v: ValueRef<'_>) -> ReplValue {
    match v {
        ValueRef::Null => ReplValue::Null,
        ValueRef::Integer(i) => ReplValue::Int(i),
        ValueRef::Real(f) => ReplValue::Real(f),
        ValueRef::Text(t) => ReplValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => ReplValue::Blob(b.to_vec()),
    }
}

fn to_sql(v: &ReplValue) -> Value {
    match v {
        ReplValue::Null => Value::Null,
        ReplValue::Int(i) => Value::Integer(*i),
        ReplValue::Real(f) => Value::Real(*f),
        ReplValue::Text(t) => Value::Text(t.clone()),
        ReplValue::Blob(b) => Value::Blob(b.clone()),
    }
}

fn row_image(conn: &Connection, spec: &TableSpec, key: &str) -> Result<Option<Vec<(String, ReplValue)>>, StoreError> {
    let binds = key_values(spec, key)?;
    let sql = format!("SELECT * FROM {} WHERE {}", spec.name, key_where(spec));
    let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    stmt.query_row(rusqlite::params_from_iter(binds.iter()), |r| {
        (0..names.len()).map(|i| Ok((names[i].clone(), to_repl(r.get_ref(i)?)))).collect::<rusqlite::Result<Vec<_>>>()
    })
    .optional()
    .map_err(map_err)
}

/// The replication side of one embedded database file. Uses connections
/// of its own: reads see one consistent snapshot of the file, and applying
/// needs foreign keys off, which the store's writer cannot turn off. They
/// are kept in a small pool: opening one costs a schema parse (dozens of
/// triggers), and the follower, the change stream and the role checks ask
/// many times a second under load.
#[derive(Debug, Clone)]
pub struct ReplicationLog {
    path: PathBuf,
    pool: std::sync::Arc<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    read: parking_lot::Mutex<Vec<Connection>>,
    write: parking_lot::Mutex<Vec<Connection>>,
}

/// Idle connections kept per kind.
const POOL_IDLE: usize = 4;

/// A pooled connection, back in the pool when dropped.
struct Pooled<'a> {
    conn: Option<Connection>,
    home: &'a parking_lot::Mutex<Vec<Connection>>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().unwrap_or_else(|| unreachable!("taken only in drop"))
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!("taken only in drop"))
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && c.is_autocommit()
        {
            let mut idle = self.home.lock();
            if idle.len() < POOL_IDLE {
                idle.push(c);
            }
        }
    }
}

impl ReplicationLog {
    pub fn new(path: &Path) -> Self {
        ReplicationLog { path: path.to_path_buf(), pool: Default::default() }
    }

    fn connect(&self, write: bool) -> Result<Pooled<'_>, StoreError> {
        let home = if write { &self.pool.write } else { &self.pool.read };
        if let Some(conn) = home.lock().pop() {
            return Ok(Pooled { conn: Some(conn), home });
        }
        let flags = if write {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let mut conn = Connection::open_with_flags(&self.path, flags).map_err(map_err)?;
        conn.busy_handler(Some(super::busy_wait)).map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        if write {
            conn.pragma_update(None, "foreign_keys", "OFF").map_err(map_err)?;
            conn.pragma_update(None, "synchronous", "FULL").map_err(map_err)?;
        }
        Ok(Pooled { conn: Some(conn), home })
    }

    pub fn state(&self) -> Result<ReplState, StoreError> {
        read_state(&*self.connect(false)?)
    }

    /// The newest change sequence number.
    pub fn head(&self) -> Result<i64, StoreError> {
        head(&*self.connect(false)?)
    }

    /// Up to `limit` current images of rows changed after `after`, read in
    /// one transaction. `None` when `after` is behind the pruned horizon
    /// (the follower needs a snapshot).
    pub fn changes_after(&self, after: i64, limit: u32) -> Result<Option<(i64, Vec<RowImage>)>, StoreError> {
        let mut conn = self.connect(false)?;
        let tx = conn.transaction().map_err(map_err)?;
        let state = read_state(&tx)?;
        if after < state.pruned_through {
            return Ok(None);
        }
        let head = head(&tx)?;
        let mut stmt = tx
            .prepare_cached("SELECT seq, tbl, pk FROM repl_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(map_err)?;
        let entries = stmt
            .query_map(params![after, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .map_err(map_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(map_err)?;
        drop(stmt);
        let mut images = Vec::with_capacity(entries.len());
        for (seq, table, key) in entries {
            let spec = spec(&table)?;
            let row = row_image(&tx, spec, &key)?;
            images.push(RowImage { seq, table, key, row });
        }
        Ok(Some((head, images)))
    }

    /// Every replicated row, as images at the head position, read in one
    /// transaction; `sink` receives them table by table, parents first.
    pub fn snapshot(&self, mut sink: impl FnMut(RowImage) -> Result<(), StoreError>) -> Result<i64, StoreError> {
        let mut conn = self.connect(false)?;
        let tx = conn.transaction().map_err(map_err)?;
        let head = head(&tx)?;
        for spec in TABLES {
            let keys = spec.key.iter().map(|(c, k)| match k {
                KeyKind::Blob => format!("hex({c})"),
                _ => (*c).to_string(),
            });
            let key_sql = format!("json_array({})", keys.collect::<Vec<_>>().join(", "));
            let filter = if spec.name == "meta" {
                format!(
                    " WHERE key IN ({})",
                    REPLICATED_META.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
                )
            } else {
                String::new()
            };
            let sql = format!("SELECT {key_sql}, * FROM {}{filter}", spec.name);
            let mut stmt = tx.prepare(&sql).map_err(map_err)?;
            let names: Vec<String> = stmt.column_names().skip(1).map(|s| s.to_string()).collect();
            let mut rows = stmt.query([]).map_err(map_err)?;
            while let Some(r) = rows.next().map_err(map_err)? {
                let key: String = r.get(0).map_err(map_err)?;
                let row = (0..names.len())
                    .map(|i| Ok((names[i].clone(), to_repl(r.get_ref(i + 1)?))))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(map_err)?;
                sink(RowImage { seq: head, table: spec.name.to_string(), key, row: Some(row) })?;
            }
        }
        Ok(head)
    }

    /// Applies a page of the primary's stream and records the new position,
    /// atomically. Login state only moves forward: a token's counter floor
    /// and a used backup code are never taken back by an older image.
    pub fn apply(&self, page: &ChangePage, position: i64) -> Result<(), StoreError> {
        let mut conn = self.connect(true)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
        for image in &page.images {
            apply_image(&tx, image)?;
        }
        tx.execute(
            "UPDATE repl_state SET position = ?1, epoch = MAX(epoch, ?2) WHERE id = 1",
            params![position, page.epoch],
        )
        .map_err(map_err)?;
        tx.commit().map_err(map_err)
    }

    /// Replaces every replicated row with a snapshot's (the images, then
    /// the position), atomically: a crash mid-way leaves the old state.
    pub fn install_snapshot(
        &self,
        images: impl IntoIterator<Item = RowImage>,
        position: i64,
        epoch: i64,
    ) -> Result<(), StoreError> {
        let items = images.into_iter().map(SnapshotItem::Image).chain(std::iter::once(SnapshotItem::End {
            position,
            epoch,
            rows: None,
        }));
        self.install_snapshot_from(items).map(|_| ())
    }

    /// Like [`Self::install_snapshot`], reading items as they arrive (a
    /// snapshot streamed from the primary is never held whole in memory).
    /// Nothing is committed unless the stream ends with `End` and, when it
    /// says how many rows it sent, that many arrived.
    pub fn install_snapshot_from(
        &self,
        items: impl IntoIterator<Item = SnapshotItem>,
    ) -> Result<(i64, i64, u64), StoreError> {
        let mut conn = self.connect(true)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
        // Logins this node accepted that the primary may not know yet: a
        // snapshot must not make their codes usable again here.
        let local = local_login_state(&tx)?;
        for spec in TABLES {
            if spec.name == "meta" {
                let keys = REPLICATED_META.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
                tx.execute(&format!("DELETE FROM meta WHERE key IN ({keys})"), []).map_err(map_err)?;
            } else {
                tx.execute(&format!("DELETE FROM {}", spec.name), []).map_err(map_err)?;
            }
        }
        let mut applied = 0u64;
        for item in items {
            match item {
                SnapshotItem::Image(image) => {
                    apply_image(&tx, &image)?;
                    applied += 1;
                }
                SnapshotItem::End { position, epoch, rows } => {
                    if rows.is_some_and(|n| n != applied) {
                        return Err(StoreError::Corrupt(format!(
                            "replication: the snapshot announced {} rows but {applied} arrived",
                            rows.unwrap_or_default()
                        )));
                    }
                    for (user, (token_state, used)) in &local {
                        merge_login_state(&tx, *user, token_state.as_deref(), used)?;
                    }
                    tx.execute(
                        "UPDATE repl_state SET position = ?1, epoch = ?2 WHERE id = 1",
                        params![position, epoch],
                    )
                    .map_err(map_err)?;
                    tx.commit().map_err(map_err)?;
                    return Ok((position, epoch, applied));
                }
            }
        }
        Err(StoreError::Unavailable("the snapshot was cut short; nothing was changed".into()))
    }

    /// Updates this node's settings (role, primary, pin, …).
    pub fn set_state(&self, change: impl FnOnce(&mut ReplState)) -> Result<ReplState, StoreError> {
        let mut conn = self.connect(true)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
        let mut s = read_state(&tx)?;
        change(&mut s);
        tx.execute(
            "UPDATE repl_state SET role = ?1, epoch = ?2, primary_url = ?3, primary_name = ?4, pin = ?5, \
             position = ?6, pruned_through = ?7, last_contact_at = ?8, clock_offset_ms = ?9, lag_ms = ?10, \
             fence = ?11, follow_error = ?12 WHERE id = 1",
            params![
                s.role.as_str(),
                s.epoch,
                s.primary_url,
                s.primary_name,
                s.pin,
                s.position,
                s.pruned_through,
                s.last_contact_at,
                s.clock_offset_ms,
                s.lag_ms,
                s.fence,
                s.follow_error
            ],
        )
        .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(s)
    }

    /// Records which build schema runs this node. A replica whose build
    /// changed since it last applied anything (an upgrade, or going back a
    /// release) starts over from a snapshot: a build applies only the
    /// columns and tables it knows, so rows it copied lack what a newer
    /// primary added. Returns whether a snapshot was scheduled.
    pub fn note_build_schema(&self, schema: i64) -> Result<bool, StoreError> {
        let mut conn = self.connect(true)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
        let noted: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'repl_build_schema'", [], |r| r.get(0))
            .optional()
            .map_err(map_err)?;
        let current = schema.to_string();
        if noted.as_deref() == Some(current.as_str()) {
            return Ok(false);
        }
        let state = read_state(&tx)?;
        let resnapshot = state.role == Role::Replica && state.position >= 0 && noted.is_some();
        if resnapshot {
            tx.execute("UPDATE repl_state SET position = -1 WHERE id = 1", []).map_err(map_err)?;
        }
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('repl_build_schema', ?1)", [&current])
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(resnapshot)
    }

    /// Forgets deletions logged before `before` (Unix seconds; they would
    /// otherwise stay in the log forever). A follower whose position is
    /// behind the newest forgotten one needs a new snapshot.
    pub fn prune_deletions(&self, before: i64) -> Result<u64, StoreError> {
        let mut conn = self.connect(true)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
        let candidates = {
            let mut stmt =
                tx.prepare("SELECT seq, tbl, pk FROM repl_changes WHERE at < ?1 ORDER BY seq").map_err(map_err)?;
            stmt.query_map([before], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
                .map_err(map_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(map_err)?
        };
        let mut n = 0u64;
        let mut through = 0i64;
        for (seq, table, key) in candidates {
            if row_image(&tx, spec(&table)?, &key)?.is_none() {
                n += tx.execute("DELETE FROM repl_changes WHERE seq = ?1", [seq]).map_err(map_err)? as u64;
                through = through.max(seq);
            }
        }
        tx.execute("UPDATE repl_state SET pruned_through = MAX(pruned_through, ?1) WHERE id = 1", [through])
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        Ok(n)
    }

    /// Merges the primary's login state of one user into this replica's
    /// rows (after the primary said a code or backup code was used by
    /// another node), so the local check refuses it as a replay before the
    /// change stream brings it. Login state only moves forward.
    pub fn merge_from_primary(
        &self,
        user: i64,
        token_state: Option<&[u8]>,
        used_codes: &[(Vec<u8>, i64)],
    ) -> Result<bool, StoreError> {
        let mut conn = self.connect(true)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
        if !merge_login_state(&tx, user, token_state, used_codes)? {
            return Ok(false);
        }
        tx.commit().map_err(map_err)?;
        Ok(true)
    }
}

/// Merges login state into a user's rows: the higher counter floor per
/// token, and used backup codes stay used. `false` if the user is gone.
fn merge_login_state(
    conn: &Connection,
    user: i64,
    token_state: Option<&[u8]>,
    used_codes: &[(Vec<u8>, i64)],
) -> Result<bool, StoreError> {
    let current: Option<Option<Vec<u8>>> = conn
        .query_row("SELECT token_state FROM users WHERE id = ?1", [user], |r| r.get(0))
        .optional()
        .map_err(map_err)?;
    let Some(current) = current else { return Ok(false) };
    let merged = merge_token_state(token_state, current.as_deref())?;
    if merged != current {
        conn.execute("UPDATE users SET token_state = ?1 WHERE id = ?2", params![merged, user]).map_err(map_err)?;
    }
    for (digest, at) in used_codes {
        conn.execute(
            "UPDATE backup_codes SET used_at = ?1 WHERE user_id = ?2 AND digest = ?3 AND used_at IS NULL",
            params![at, user, digest],
        )
        .map_err(map_err)?;
    }
    Ok(true)
}

/// Every user's token state and used backup codes, by user id.
fn local_login_state(conn: &Connection) -> Result<std::collections::BTreeMap<i64, LoginState>, StoreError> {
    let mut out: std::collections::BTreeMap<i64, LoginState> = Default::default();
    let mut stmt = conn.prepare("SELECT id, token_state FROM users WHERE token_state IS NOT NULL").map_err(map_err)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).map_err(map_err)?;
    for row in rows {
        let (user, blob) = row.map_err(map_err)?;
        out.entry(user).or_default().0 = Some(blob);
    }
    let mut stmt =
        conn.prepare("SELECT user_id, digest, used_at FROM backup_codes WHERE used_at IS NOT NULL").map_err(map_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?)))
        .map_err(map_err)?;
    for row in rows {
        let (user, digest, at) = row.map_err(map_err)?;
        out.entry(user).or_default().1.push((digest, at));
    }
    Ok(out)
}

fn head(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM repl_changes", [], |r| r.get(0)).map_err(map_err)
}

fn read_state(conn: &Connection) -> Result<ReplState, StoreError> {
    conn.query_row(
        "SELECT role, epoch, primary_url, primary_name, pin, position, pruned_through, last_contact_at, \
         clock_offset_ms, lag_ms, fence, follow_error FROM repl_state WHERE id = 1",
        [],
        |r| {
            let role: String = r.get(0)?;
            Ok((
                role,
                ReplState {
                    role: Role::Standalone,
                    epoch: r.get(1)?,
                    primary_url: r.get(2)?,
                    primary_name: r.get(3)?,
                    pin: r.get(4)?,
                    position: r.get(5)?,
                    pruned_through: r.get(6)?,
                    last_contact_at: r.get(7)?,
                    clock_offset_ms: r.get(8)?,
                    lag_ms: r.get(9)?,
                    fence: r.get(10)?,
                    follow_error: r.get(11)?,
                },
            ))
        },
    )
    .map_err(map_err)
    .and_then(|(role, mut s)| {
        s.role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("replication role `{role}`")))?;
        Ok(s)
    })
}

fn apply_image(conn: &Connection, image: &RowImage) -> Result<(), StoreError> {
    // A table a newer primary replicates and this build does not know: its
    // rows are what an older release ignores (expanding migrations only add);
    // this node takes a fresh snapshot once upgraded (`Replication::open`).
    let Ok(spec) = spec(&image.table) else {
        tracing::debug!(table = %image.table, "replication: skipping a table this build does not know");
        return Ok(());
    };
    let Some(row) = &image.row else {
        let binds = key_values(spec, &image.key)?;
        let sql = format!("DELETE FROM {} WHERE {}", spec.name, key_where(spec));
        conn.prepare_cached(&sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(binds.iter())))
            .map_err(map_err)?;
        return Ok(());
    };
    if spec.name == "meta" {
        let key = row.iter().find(|(c, _)| c == "key").map(|(_, v)| v);
        if !matches!(key, Some(ReplValue::Text(k)) if REPLICATED_META.contains(&k.as_str())) {
            return Err(StoreError::Corrupt("replication: a node-local meta key in the stream".into()));
        }
    }
    // Column names are spliced into SQL, so only this table's own columns
    // pass. A column a newer primary added is dropped: an expanding
    // migration only adds what the previous release ignores.
    let known: Vec<String> = {
        let stmt = conn.prepare_cached(&format!("SELECT * FROM {} LIMIT 0", spec.name)).map_err(map_err)?;
        stmt.column_names().map(|s| s.to_string()).collect()
    };
    let row: Vec<&(String, ReplValue)> = row.iter().filter(|(c, _)| known.contains(c)).collect();
    let mut values: Vec<Value> = row.iter().map(|(_, v)| to_sql(v)).collect();
    let column = |name: &str| row.iter().position(|(c, _)| c == name);
    match spec.name {
        "users" => {
            if let (Some(id), Some(ts)) = (column("id"), column("token_state")) {
                let local: Option<Option<Vec<u8>>> = conn
                    .query_row("SELECT token_state FROM users WHERE id = ?1", [&values[id]], |r| r.get(0))
                    .optional()
                    .map_err(map_err)?;
                if let Some(local) = local.flatten() {
                    let incoming = match &values[ts] {
                        Value::Blob(b) => Some(b.clone()),
                        _ => None,
                    };
                    values[ts] = match merge_token_state(Some(&local), incoming.as_deref())? {
                        Some(b) => Value::Blob(b),
                        None => Value::Null,
                    };
                }
            }
        }
        "backup_codes" => {
            if let (Some(user), Some(digest), Some(used)) = (column("user_id"), column("digest"), column("used_at")) {
                let local: Option<Option<i64>> = conn
                    .query_row(
                        "SELECT used_at FROM backup_codes WHERE user_id = ?1 AND digest = ?2",
                        [&values[user], &values[digest]],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(map_err)?;
                if let Some(Some(at)) = local
                    && values[used] == Value::Null
                {
                    values[used] = Value::Integer(at);
                }
            }
        }
        _ => {}
    }
    let cols = row.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
    let marks = (1..=row.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    // REPLACE also removes a stale local row holding the same unique value
    // (its own newer image follows later in the stream); with foreign keys
    // off that removal cascades nowhere.
    let sql = format!("INSERT OR REPLACE INTO {} ({cols}) VALUES ({marks})", spec.name);
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(values.iter())))
        .map_err(map_err)?;
    Ok(())
}

/// Per token, the state with the higher counter floor wins, so a code
/// used on one node never becomes usable again when another node's image
/// of the same user arrives.
pub fn merge_token_state(local: Option<&[u8]>, incoming: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("token state: {e}"));
    let mut merged = TokenStates::decode(incoming).map_err(corrupt)?;
    let local = TokenStates::decode(local).map_err(corrupt)?;
    for entry in local.entries() {
        match merged.get(entry.token) {
            Some(theirs) if theirs.counter >= entry.counter => {}
            _ => merged.set(*entry),
        }
    }
    Ok(merged.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::token_state::Entry;

    #[test]
    fn merged_token_state_keeps_the_higher_floor_per_token() {
        let mut a = TokenStates::default();
        a.set(Entry { token: 1, counter: 10, drift: 0, last_used: 5 });
        a.set(Entry { token: 2, counter: 3, drift: 0, last_used: 5 });
        let mut b = TokenStates::default();
        b.set(Entry { token: 1, counter: 7, drift: 1, last_used: 9 });
        b.set(Entry { token: 2, counter: 4, drift: 0, last_used: 9 });
        b.set(Entry { token: 3, counter: 1, drift: 0, last_used: 9 });
        let m = merge_token_state(a.encode().as_deref(), b.encode().as_deref()).unwrap();
        let m = TokenStates::decode(m.as_deref()).unwrap();
        assert_eq!(m.get(1).unwrap().counter, 10);
        assert_eq!(m.get(2).unwrap().counter, 4);
        assert_eq!(m.get(3).unwrap().counter, 1);
    }

    #[test]
    fn keys_bind_by_kind_and_refuse_garbage() {
        let s = spec("backup_codes").unwrap();
        assert_eq!(key_values(s, r#"[7, "0aff"]"#).unwrap(), vec![Value::Integer(7), Value::Blob(vec![10, 255])]);
        for bad in ["[7]", "[\"x\", \"00\"]", "[7, \"zz\"]", "nope", "{}"] {
            assert!(key_values(s, bad).is_err(), "{bad}");
        }
        assert!(spec("audit").is_err(), "node-local tables are not replicated");
    }
}
