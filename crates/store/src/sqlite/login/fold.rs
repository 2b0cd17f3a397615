//! Folding journal records into SQLite: one transaction per journal file,
//! run by the group-commit writer (so it is ordered with administrative
//! writes), with the file's audit records in the same commit.
//!
//! Merge rules, for a row another process (the CLI on the same data
//! directory) may have written since the records were decided:
//! * token floors only move forward: per token, the higher counter wins,
//!   so no accepted code is ever usable again;
//! * a decision's new lock applies only if no other process has written
//!   to the database since it was decided (`external_rev`) and the row
//!   still has the lock the decision started from (`lock_before`), so an
//!   unlock or reset made meanwhile stands (failures counted in the same
//!   instant as such a write are given up for it);
//! * last attempt and last success keep the later of the two.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::clock::Timestamp;
use tessera_core::lockout::LockState;
use tessera_core::model::AccessRecord;
use tessera_core::store::StoreError;

use super::record::{LoginChange, LoginState, Record};
use crate::sqlite::token_state::TokenStates;
use crate::sqlite::{insert_audit, map_err};

/// The node-local table that says which journal files are folded. Not
/// replicated (it is not in the replication table list).
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS login_journal (\
    id INTEGER PRIMARY KEY CHECK (id = 1), journal_id INTEGER NOT NULL, folded_through INTEGER NOT NULL, \
    external_rev INTEGER NOT NULL DEFAULT 0, fold_request INTEGER NOT NULL DEFAULT 0, \
    fold_done INTEGER NOT NULL DEFAULT 0)";

/// This database's journal id and the last folded file index, creating
/// the row (with `fresh_id`) the first time.
pub fn watermark(conn: &Connection, fresh_id: u64) -> Result<(u64, u64), StoreError> {
    conn.execute(SCHEMA, []).map_err(map_err)?;
    let row: Option<(i64, i64)> = conn
        .query_row("SELECT journal_id, folded_through FROM login_journal WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(map_err)?;
    match row {
        Some((id, through)) => Ok((id as u64, through as u64)),
        None => {
            conn.execute(
                "INSERT INTO login_journal (id, journal_id, folded_through) VALUES (1, ?1, 0)",
                [fresh_id as i64],
            )
            .map_err(map_err)?;
            Ok((fresh_id, 0))
        }
    }
}

/// Writes `records` (in journal order) into the database and marks every
/// file up to `through` folded. Runs inside the caller's transaction.
pub fn apply(conn: &Connection, records: &[Record], through: u64) -> Result<(), StoreError> {
    apply_refs(conn, &records.iter().collect::<Vec<_>>(), through)
}

/// [`apply`] over borrowed records (the fold keeps its own until it commits).
pub fn apply_refs(conn: &Connection, records: &[&Record], through: u64) -> Result<(), StoreError> {
    let mut by_user: HashMap<i64, Vec<&LoginChange>> = HashMap::new();
    for r in records {
        if let Some(c) = &r.login {
            by_user.entry(c.user).or_default().push(c);
            if let Some((nonce, expires_at)) = &c.nonce {
                conn.prepare_cached("INSERT OR IGNORE INTO used_states (nonce, expires_at) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![&nonce[..], expires_at]))
                    .map_err(map_err)?;
            }
        }
    }
    let rev = super::external_rev(conn).map_err(map_err)?;
    // In rowid order: each table page is visited once, in file order.
    let mut by_user: Vec<_> = by_user.into_iter().collect();
    by_user.sort_unstable_by_key(|(user, _)| *user);
    for (user, changes) in by_user {
        fold_user(conn, user, &changes, rev)?;
    }
    for r in records {
        insert_audit(conn, &r.audit)?;
    }
    conn.prepare_cached("UPDATE login_journal SET folded_through = ?1 WHERE id = 1")
        .and_then(|mut s| s.execute([through as i64]))
        .map_err(map_err)?;
    Ok(())
}

const STATE_COLS: &str = "failures, locked_at, lock_until, throttle_until, last_attempt_at, last_attempt_addr, \
    last_attempt_client, last_success_at, last_success_addr, last_success_client, token_state";

/// A user's login state as the row has it; `None` when the user is gone.
pub fn read_state(conn: &Connection, user: i64) -> Result<Option<LoginState>, StoreError> {
    conn.prepare_cached(&format!("SELECT {STATE_COLS} FROM users WHERE id = ?1"))
        .and_then(|mut s| {
            s.query_row([user], |r| {
                let failures: i64 = r.get(0)?;
                let ts = |v: Option<i64>| v.map(Timestamp);
                let access =
                    |at: Option<i64>, address, client| at.map(|at| AccessRecord { at: Timestamp(at), address, client });
                let blob: Option<Vec<u8>> = r.get(10)?;
                let tokens = TokenStates::decode(blob.as_deref()).map_err(|m| {
                    rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Blob, m.into())
                })?;
                Ok(LoginState {
                    lock: LockState {
                        failures: u32::try_from(failures).unwrap_or(u32::MAX),
                        locked_at: ts(r.get(1)?),
                        lock_until: ts(r.get(2)?),
                        throttle_until: ts(r.get(3)?),
                    },
                    last_attempt: access(r.get(4)?, r.get(5)?, r.get(6)?),
                    last_success: access(r.get(7)?, r.get(8)?, r.get(9)?),
                    tokens,
                })
            })
            .optional()
        })
        .map_err(map_err)
}

fn fold_user(conn: &Connection, user: i64, changes: &[&LoginChange], rev: i64) -> Result<(), StoreError> {
    let Some(row) = read_state(conn, user)? else {
        // Deleted since: nothing to keep.
        return Ok(());
    };
    let Some(last) = changes.last() else { return Ok(()) };
    let mut lock = row.lock;
    for c in changes {
        if c.rev == rev && lock == c.lock_before {
            lock = c.state.lock;
        }
    }
    let merged = LoginState {
        lock,
        last_attempt: later(row.last_attempt, &last.state.last_attempt),
        last_success: later(row.last_success, &last.state.last_success),
        tokens: merge_tokens(row.tokens, &last.state.tokens),
    };
    write_state(conn, user, &merged)
}

pub fn write_state(conn: &Connection, user: i64, s: &LoginState) -> Result<(), StoreError> {
    let (la_at, la_addr, la_client) = parts(&s.last_attempt);
    let (ls_at, ls_addr, ls_client) = parts(&s.last_success);
    conn.prepare_cached(
        "UPDATE users SET failures = ?1, locked_at = ?2, lock_until = ?3, throttle_until = ?4, \
         last_attempt_at = ?5, last_attempt_addr = ?6, last_attempt_client = ?7, \
         last_success_at = ?8, last_success_addr = ?9, last_success_client = ?10, token_state = ?11, \
         updated_at = COALESCE(?5, updated_at) WHERE id = ?12",
    )
    .and_then(|mut st| {
        st.execute(params![
            i64::from(s.lock.failures),
            s.lock.locked_at.map(|t| t.0),
            s.lock.lock_until.map(|t| t.0),
            s.lock.throttle_until.map(|t| t.0),
            la_at,
            la_addr,
            la_client,
            ls_at,
            ls_addr,
            ls_client,
            s.tokens.encode(),
            user,
        ])
    })
    .map_err(map_err)?;
    Ok(())
}

fn parts(a: &Option<AccessRecord>) -> (Option<i64>, Option<&str>, Option<&str>) {
    match a {
        None => (None, None, None),
        Some(a) => (Some(a.at.0), a.address.as_deref(), a.client.as_deref()),
    }
}

fn later(row: Option<AccessRecord>, mem: &Option<AccessRecord>) -> Option<AccessRecord> {
    match (row, mem) {
        (Some(r), Some(m)) if r.at > m.at => Some(r),
        (r, None) => r,
        (_, Some(m)) => Some(m.clone()),
    }
}

/// Per token, the entry with the higher counter (the row's on a tie).
pub fn merge_tokens(mut row: TokenStates, mem: &TokenStates) -> TokenStates {
    for e in mem.entries() {
        match row.get(e.token) {
            Some(x) if x.counter >= e.counter => {}
            _ => row.set(*e),
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::token_state::Entry;

    #[test]
    fn token_floors_only_move_forward() {
        let mut row = TokenStates::default();
        row.set(Entry { token: 1, counter: 10, drift: 0, last_used: 1 });
        row.set(Entry { token: 2, counter: 50, drift: 0, last_used: 1 });
        let mut mem = TokenStates::default();
        mem.set(Entry { token: 1, counter: 12, drift: 1, last_used: 2 });
        mem.set(Entry { token: 2, counter: 40, drift: 1, last_used: 2 });
        mem.set(Entry { token: 3, counter: 7, drift: 0, last_used: 2 });
        let m = merge_tokens(row, &mem);
        assert_eq!(m.get(1).unwrap().counter, 12);
        assert_eq!(m.get(2).unwrap().counter, 50);
        assert_eq!(m.get(3).unwrap().counter, 7);
    }

    #[test]
    fn the_later_access_wins() {
        let a = |at| Some(AccessRecord { at: Timestamp(at), address: None, client: None });
        assert_eq!(later(a(5), &a(3)).unwrap().at, Timestamp(5));
        assert_eq!(later(a(3), &a(5)).unwrap().at, Timestamp(5));
        assert_eq!(later(a(3), &None).unwrap().at, Timestamp(3));
        assert_eq!(later(None, &a(1)).unwrap().at, Timestamp(1));
    }
}
