//! Whole-database copies for backups, and the checks a restore needs.
//!
//! A snapshot is taken with `VACUUM INTO` on a separate read-only
//! connection: in WAL mode that connection reads one consistent version of
//! the database while the server's writer keeps committing, and the copy is
//! a compact, self-contained file (no -wal/-shm). Nothing here writes to the
//! live database.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tessera_core::keys::Keyring;
use tessera_core::store::StoreError;

use super::{map_err, schema};

/// How long the snapshot's reader waits for a lock (only checkpoints and
/// schema changes take locks that block a WAL reader, and only briefly).
const SNAPSHOT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a snapshot (or any tessera database file) says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub schema_version: i64,
    /// The master key id recorded at creation (`meta.key_id`).
    pub key_id: Option<String>,
}

/// Copies the database at `db` into the new file `out` (which must not
/// exist), consistently, while other connections read and write.
pub fn snapshot_into(db: &Path, out: &Path) -> Result<DatabaseInfo, StoreError> {
    if !db.exists() {
        return Err(StoreError::NotInitialised(format!("{} does not exist", db.display())));
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(map_err)?;
    conn.busy_timeout(SNAPSHOT_BUSY_TIMEOUT).map_err(map_err)?;
    let target = out.to_str().ok_or_else(|| StoreError::Unavailable(format!("{} is not UTF-8", out.display())))?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(map_err)?;
    drop(conn);
    let copy = open_read_only(out)?;
    describe(&copy)
}

/// Checks a database file as a restore candidate: a tessera database, intact
/// (`PRAGMA integrity_check`), of a schema version this build supports and,
/// when `keys` is given, sealed with that master key. Read-only.
pub fn inspect(db: &Path, keys: Option<&Keyring>) -> Result<DatabaseInfo, StoreError> {
    let conn = open_read_only(db)?;
    let info = describe(&conn)?;
    if info.schema_version == 0 {
        return Err(StoreError::NotInitialised(format!("{} is an empty database", db.display())));
    }
    schema::check_supported(schema::current_window(&conn)?)?;
    integrity_check(&conn)?;
    if let Some(keys) = keys {
        super::verify_key(&conn, keys)?;
    }
    Ok(info)
}

/// Whether another connection (a running server, a CLI command) has the
/// database open. An exclusive-mode lock is refused while any WAL-mode
/// connection holds the database, idle or not; the probe gives up at once
/// instead of waiting. A server that starts after this check is not seen.
pub fn in_use(db: &Path) -> Result<bool, StoreError> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(map_err)?;
    conn.busy_timeout(Duration::ZERO).map_err(map_err)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(map_err)?;
    match conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;") {
        Ok(()) => Ok(false),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            Ok(true)
        }
        Err(e) => Err(map_err(e)),
    }
}

/// The tables whose rows are an installation's data (what a restore over
/// them would lose), with the noun for one row. Policy, audit records and
/// replication bookkeeping are left out: `init` writes some of them, and an
/// audit log without users is no installation worth keeping from a restore.
const DATA_TABLES: &[(&str, &str)] = &[
    ("users", "user"),
    ("tokens", "token"),
    ("backup_codes", "backup code"),
    ("radius_clients", "RADIUS client"),
    ("realms", "realm"),
    ("admins", "admin"),
    ("api_keys", "API key"),
    ("group_members", "group membership"),
    ("reply_rules", "reply rule"),
    ("inventory", "inventory token"),
];

/// What the database at `db` holds, table by table (only tables with rows;
/// empty: a database as `tessera init` left it). Read-only.
pub fn data_rows(db: &Path) -> Result<Vec<(&'static str, u64)>, StoreError> {
    let conn = open_read_only(db)?;
    let mut out = Vec::new();
    for (table, noun) in DATA_TABLES {
        let exists: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)", [table], |r| {
                r.get(0)
            })
            .map_err(map_err)?;
        if !exists {
            continue;
        }
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).map_err(map_err)?;
        if n > 0 {
            out.push((*noun, n.unsigned_abs()));
        }
    }
    Ok(out)
}

fn open_read_only(db: &Path) -> Result<Connection, StoreError> {
    if !db.exists() {
        return Err(StoreError::NotInitialised(format!("{} does not exist", db.display())));
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(map_err)?;
    conn.busy_timeout(SNAPSHOT_BUSY_TIMEOUT).map_err(map_err)?;
    Ok(conn)
}

fn describe(conn: &Connection) -> Result<DatabaseInfo, StoreError> {
    let schema_version = schema::current_version(conn)?;
    let key_id = if schema_version == 0 {
        None
    } else {
        conn.query_row("SELECT value FROM meta WHERE key = 'key_id'", [], |r| r.get::<_, String>(0))
            .optional()
            .map_err(map_err)?
    };
    Ok(DatabaseInfo { schema_version, key_id })
}

fn integrity_check(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check(5)").map_err(map_err)?;
    let lines: Vec<String> =
        stmt.query_map([], |r| r.get(0)).map_err(map_err)?.collect::<Result<_, _>>().map_err(map_err)?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!("integrity check failed: {}", lines.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_of_a_database_with_an_open_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        let w = Connection::open(&db).unwrap();
        w.pragma_update(None, "journal_mode", "WAL").unwrap();
        schema::migrate(&w, 0).unwrap();
        w.execute("INSERT INTO meta (key, value) VALUES ('key_id', 'abcd')", []).unwrap();
        assert!(in_use(&db).unwrap(), "the open writer connection must be seen");
        let out = dir.path().join("copy.db");
        let info = snapshot_into(&db, &out).unwrap();
        assert_eq!(info, DatabaseInfo { schema_version: schema::SCHEMA_VERSION, key_id: Some("abcd".into()) });
        assert_eq!(inspect(&out, None).unwrap(), info);
        drop(w);
        assert!(!in_use(&db).unwrap());
        assert!(snapshot_into(&db, &out).is_err(), "VACUUM INTO never overwrites");
    }

    #[test]
    fn data_rows_of_an_empty_and_a_used_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let w = Connection::open(&db).unwrap();
        schema::migrate(&w, 0).unwrap();
        w.execute("INSERT INTO meta (key, value) VALUES ('key_id', 'abcd')", []).unwrap();
        assert_eq!(data_rows(&db).unwrap(), [], "meta alone is no data");
        w.execute(
            "INSERT INTO reply_rules (id, scope, attribute, value, created_at) VALUES (1, 'all', 'Class', 'x', 0)",
            [],
        )
        .unwrap();
        assert_eq!(data_rows(&db).unwrap(), [("reply rule", 1)]);
    }
}
