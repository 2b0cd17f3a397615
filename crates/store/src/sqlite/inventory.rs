//! The hardware token inventory (table `inventory`): seeds that are not a
//! user's token yet, or are lent to one.

use rusqlite::{Connection, OptionalExtension, Row, params};
use tessera_core::audit::AuditRecord;
use tessera_core::clock::Timestamp;
use tessera_core::model::{InventoryToken, Token, TokenId, UserId};
use tessera_core::store::{InventoryQuery, StoreError};

use super::{insert_audit, insert_token, is_unique_violation, map_err, read_token_states, refresh_registered, rows};

/// `assigned_to` comes from the token the seed is lent to (a join), so a
/// token deleted with its user can never leave a seed "assigned".
const COLS: &str = "i.id, i.serial, i.kind, i.algorithm, i.digits, i.period, i.secret, i.counter, i.manufacturer, \
    i.model, t.id, t.user_id, i.imported_at";
const FROM: &str = "inventory i LEFT JOIN tokens t ON t.id = i.token_id";

fn item(r: &Row<'_>) -> rusqlite::Result<InventoryToken> {
    let kind: String = r.get(2)?;
    let algorithm: String = r.get(3)?;
    let params = rows::params_from(&kind, &algorithm, r.get(4)?, r.get(5)?)
        .map_err(|m| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, m.into()))?;
    Ok(InventoryToken {
        id: r.get(0)?,
        serial: r.get(1)?,
        params,
        sealed_secret: r.get(6)?,
        counter: r.get(7)?,
        manufacturer: r.get(8)?,
        model: r.get(9)?,
        token_id: r.get::<_, Option<i64>>(10)?.map(TokenId),
        assigned_to: r.get::<_, Option<i64>>(11)?.map(UserId),
        imported_at: Timestamp(r.get(12)?),
    })
}

pub fn add(conn: &Connection, items: &[InventoryToken], audit: &AuditRecord) -> Result<(), StoreError> {
    let mut taken = conn.prepare_cached("SELECT 1 FROM tokens WHERE serial = ?1").map_err(map_err)?;
    let mut ins = conn
        .prepare_cached(
            "INSERT INTO inventory (id, serial, kind, algorithm, digits, period, secret, counter, manufacturer, model, \
             imported_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(map_err)?;
    for it in items {
        if taken.exists([&it.serial]).map_err(map_err)? {
            return Err(StoreError::Conflict(format!("serial `{}` (a user's token)", it.serial)));
        }
        let (kind, period) = rows::kind_cols(&it.params);
        let r = ins.execute(params![
            it.id,
            it.serial,
            kind,
            it.params.algorithm.to_string(),
            it.params.digits.get(),
            (kind == "totp").then_some(period),
            it.sealed_secret,
            it.counter,
            it.manufacturer,
            it.model,
            it.imported_at.0,
        ]);
        match r {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("serial `{}` (in the inventory)", it.serial)));
            }
            r => r.map_err(map_err)?,
        };
    }
    insert_audit(conn, audit)
}

pub fn list(conn: &Connection, q: &InventoryQuery) -> rusqlite::Result<Vec<InventoryToken>> {
    let mut sql = format!("SELECT {COLS} FROM {FROM} WHERE 1 = 1");
    match q.assigned {
        Some(true) => sql.push_str(" AND t.id IS NOT NULL"),
        Some(false) => sql.push_str(" AND t.id IS NULL"),
        None => {}
    }
    if q.manufacturer.is_some() {
        sql.push_str(" AND i.manufacturer = :manufacturer");
    }
    if q.model.is_some() {
        sql.push_str(" AND i.model = :model");
    }
    sql.push_str(" ORDER BY i.serial LIMIT :limit OFFSET :offset");
    let mut stmt = conn.prepare(&sql)?;
    let limit = i64::from(q.limit.max(1));
    let offset = i64::from(q.offset);
    let mut named: Vec<(&str, &dyn rusqlite::ToSql)> = vec![(":limit", &limit), (":offset", &offset)];
    if let Some(m) = &q.manufacturer {
        named.push((":manufacturer", m));
    }
    if let Some(m) = &q.model {
        named.push((":model", m));
    }
    stmt.query_map(named.as_slice(), item)?.collect()
}

pub fn by_serial(conn: &Connection, serial: &str) -> rusqlite::Result<Option<InventoryToken>> {
    conn.prepare_cached(&format!("SELECT {COLS} FROM {FROM} WHERE i.serial = ?1"))?.query_row([serial], item).optional()
}

pub fn assign(conn: &Connection, id: i64, token: &Token, audit: &AuditRecord) -> Result<(), StoreError> {
    let current = conn
        .prepare_cached(&format!("SELECT {COLS} FROM {FROM} WHERE i.id = ?1"))
        .and_then(|mut s| s.query_row([id], item).optional())
        .map_err(map_err)?
        .ok_or_else(|| StoreError::NotFound(format!("inventory token {id}")))?;
    if current.token_id.is_some() {
        return Err(StoreError::Conflict(format!("hardware token `{}` is already assigned", current.serial)));
    }
    insert_token(conn, token)?;
    conn.execute("UPDATE inventory SET token_id = ?1 WHERE id = ?2", params![token.id.0, id]).map_err(map_err)?;
    refresh_registered(conn, token.user_id.0).map_err(map_err)?;
    insert_audit(conn, audit)
}

pub fn unassign(conn: &Connection, id: i64, audit: &AuditRecord) -> Result<(), StoreError> {
    let current = conn
        .prepare_cached(&format!("SELECT {COLS} FROM {FROM} WHERE i.id = ?1"))
        .and_then(|mut s| s.query_row([id], item).optional())
        .map_err(map_err)?
        .ok_or_else(|| StoreError::NotFound(format!("inventory token {id}")))?;
    let (Some(token), Some(user)) = (current.token_id, current.assigned_to) else {
        return Err(StoreError::NotFound(format!("an assignment of hardware token `{}`", current.serial)));
    };
    // The floor the holder's logins reached lives in their row: keep it
    // with the seed, so codes already used stay used for the next holder.
    let mut states = read_token_states(conn, user.0).map_err(map_err)?;
    let row_counter: i64 =
        conn.query_row("SELECT counter FROM tokens WHERE id = ?1", [token.0], |r| r.get(0)).map_err(map_err)?;
    let floor = states.get(token.0).map_or(row_counter, |e| e.counter.max(row_counter));
    conn.execute("UPDATE inventory SET counter = MAX(counter, ?1), token_id = NULL WHERE id = ?2", params![floor, id])
        .map_err(map_err)?;
    conn.execute("DELETE FROM tokens WHERE id = ?1", [token.0]).map_err(map_err)?;
    if states.remove(token.0) {
        super::write_token_states(conn, user.0, &states).map_err(map_err)?;
    }
    refresh_registered(conn, user.0).map_err(map_err)?;
    insert_audit(conn, audit)
}
