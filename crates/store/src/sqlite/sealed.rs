//! Sealed columns and rotation markers, for master key rotation: read in
//! row order, replace only if unchanged since read.

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::audit::AuditRecord;
use tessera_core::keys::sealed_key_id;
use tessera_core::store::{MetaKey, SealedColumn, SealedValue, StoreError};

use super::{insert_audit, map_err};

/// The sealed `meta` entries, in row order.
const SEALED_META: [&str; 2] = ["backup_mac_key", "key_check"];

/// Integer-keyed tables: (table, column).
fn id_table(column: SealedColumn) -> Option<(&'static str, &'static str)> {
    match column {
        SealedColumn::TokenSecret => Some(("tokens", "secret")),
        SealedColumn::InventorySecret => Some(("inventory", "secret")),
        SealedColumn::RadiusClientSecret => Some(("radius_clients", "secret")),
        SealedColumn::RadiusClientOldSecret => Some(("radius_clients", "old_secret")),
        SealedColumn::AdminTotpSecret => Some(("admins", "totp_secret")),
        SealedColumn::RealmSecrets | SealedColumn::Meta | SealedColumn::NodeIdentity => None,
    }
}

fn bad_row(row: &str) -> StoreError {
    StoreError::NotFound(format!("sealed row `{row}`"))
}

pub fn values(
    conn: &Connection,
    column: SealedColumn,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<SealedValue>, StoreError> {
    if let Some((table, col)) = id_table(column) {
        let after: i64 = match after {
            Some(a) => a.parse().map_err(|_| bad_row(a))?,
            None => i64::MIN,
        };
        let sql = format!("SELECT id, {col} FROM {table} WHERE id > ?1 AND {col} IS NOT NULL ORDER BY id LIMIT ?2");
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        let rows = stmt
            .query_map(params![after, limit], |r| {
                Ok(SealedValue { row: r.get::<_, i64>(0)?.to_string(), sealed: r.get(1)? })
            })
            .map_err(map_err)?;
        return rows.collect::<Result<_, _>>().map_err(map_err);
    }
    let after = after.unwrap_or("");
    if column == SealedColumn::NodeIdentity {
        let mut stmt = conn
            .prepare_cached("SELECT name, key_sealed FROM repl_identity WHERE name > ?1 ORDER BY name LIMIT ?2")
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![after, limit], |r| Ok(SealedValue { row: r.get(0)?, sealed: r.get(1)? }))
            .map_err(map_err)?;
        return rows.collect::<Result<_, _>>().map_err(map_err);
    }
    if column == SealedColumn::RealmSecrets {
        let mut stmt = conn
            .prepare_cached("SELECT name, secrets FROM realms WHERE name > ?1 ORDER BY name LIMIT ?2")
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![after, limit], |r| Ok(SealedValue { row: r.get(0)?, sealed: r.get(1)? }))
            .map_err(map_err)?;
        return rows.collect::<Result<_, _>>().map_err(map_err);
    }
    let mut out = Vec::new();
    for key in SEALED_META.iter().filter(|k| **k > after).take(limit as usize) {
        let v: Option<Vec<u8>> =
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(map_err)?;
        if let Some(sealed) = v {
            out.push(SealedValue { row: (*key).to_string(), sealed });
        }
    }
    Ok(out)
}

pub fn replace(conn: &Connection, column: SealedColumn, row: &str, old: &[u8], new: &[u8]) -> Result<bool, StoreError> {
    let changed = if let Some((table, col)) = id_table(column) {
        let id: i64 = row.parse().map_err(|_| bad_row(row))?;
        let sql = format!("UPDATE {table} SET {col} = ?1 WHERE id = ?2 AND {col} = ?3");
        conn.prepare_cached(&sql).map_err(map_err)?.execute(params![new, id, old]).map_err(map_err)?
    } else if column == SealedColumn::NodeIdentity {
        conn.prepare_cached("UPDATE repl_identity SET key_sealed = ?1 WHERE name = ?2 AND key_sealed = ?3")
            .map_err(map_err)?
            .execute(params![new, row, old])
            .map_err(map_err)?
    } else if column == SealedColumn::RealmSecrets {
        conn.prepare_cached("UPDATE realms SET secrets = ?1 WHERE name = ?2 AND secrets = ?3")
            .map_err(map_err)?
            .execute(params![new, row, old])
            .map_err(map_err)?
    } else {
        if !SEALED_META.contains(&row) {
            return Err(bad_row(row));
        }
        let n = conn
            .prepare_cached("UPDATE meta SET value = ?1 WHERE key = ?2 AND value = ?3")
            .map_err(map_err)?
            .execute(params![new, row, old])
            .map_err(map_err)?;
        // `meta.key_id` names the key the database is sealed with (backups
        // record it); it follows the key check value.
        if n == 1
            && row == "key_check"
            && let Some(id) = sealed_key_id(new)
        {
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('key_id', ?1)", [id]).map_err(map_err)?;
        }
        n
    };
    Ok(changed == 1)
}

pub fn meta_value(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .map_err(map_err)?
        .query_row([key], |r| r.get(0))
        .optional()
        .map_err(map_err)
}

/// Every node's key report (`node_key:<node>`), by node name.
pub fn node_key_reports(conn: &Connection) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let prefix = MetaKey::NODE_KEY_PREFIX;
    let mut stmt = conn
        .prepare_cached("SELECT key, value FROM meta WHERE substr(key, 1, ?1) = ?2 ORDER BY key")
        .map_err(map_err)?;
    let rows = stmt
        .query_map(params![prefix.len() as i64, prefix], |r| {
            let key: String = r.get(0)?;
            Ok((key[prefix.len()..].to_string(), r.get(1)?))
        })
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

pub fn set_meta_value(
    conn: &Connection,
    key: &str,
    value: Option<&[u8]>,
    audit: Option<&AuditRecord>,
) -> Result<(), StoreError> {
    match value {
        Some(v) => conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, v])
            .map_err(map_err)?,
        None => conn.execute("DELETE FROM meta WHERE key = ?1", [key]).map_err(map_err)?,
    };
    if let Some(a) = audit {
        insert_audit(conn, a)?;
    }
    Ok(())
}
