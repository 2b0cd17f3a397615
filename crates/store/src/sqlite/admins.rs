//! Web-console administrators (schema 6, `0006_admins.sql`): accounts,
//! their sealed TOTP, and sign-in attempts applied in the writer's
//! serialised step, so lockout counts exactly as for users.

use rusqlite::{Connection, OptionalExtension, Row, params};
use tessera_core::clock::Timestamp;
use tessera_core::lockout::LockState;
use tessera_core::model::{AdminAccount, AdminId};
use tessera_core::store::{
    AdminAttempt, AdminChange, AdminVerdict, AuthOutcome, StoreError, blocking_outcome, finish_admin_audit,
};

use super::{insert_audit, is_unique_violation, map_err};

pub const ADMIN_COLS: &str = "id, name, password_hash, totp_secret, totp_floor, failures, locked_at, lock_until, \
    throttle_until, created_at, last_login_at, last_login_from";

pub fn row(r: &Row<'_>) -> rusqlite::Result<AdminAccount> {
    Ok(AdminAccount {
        id: AdminId(r.get(0)?),
        name: r.get(1)?,
        password_hash: r.get(2)?,
        totp_secret: r.get(3)?,
        totp_floor: r.get(4)?,
        lock: LockState {
            failures: r.get(5)?,
            locked_at: r.get::<_, Option<i64>>(6)?.map(Timestamp),
            lock_until: r.get::<_, Option<i64>>(7)?.map(Timestamp),
            throttle_until: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        },
        created_at: Timestamp(r.get(9)?),
        last_login_at: r.get::<_, Option<i64>>(10)?.map(Timestamp),
        last_login_from: r.get(11)?,
    })
}

pub fn by_id(conn: &Connection, id: AdminId) -> rusqlite::Result<Option<AdminAccount>> {
    conn.prepare_cached(&format!("SELECT {ADMIN_COLS} FROM admins WHERE id = ?1"))?.query_row([id.0], row).optional()
}

pub fn by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<AdminAccount>> {
    conn.prepare_cached(&format!("SELECT {ADMIN_COLS} FROM admins WHERE name = ?1"))?.query_row([name], row).optional()
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<AdminAccount>> {
    conn.prepare_cached(&format!("SELECT {ADMIN_COLS} FROM admins ORDER BY name"))?.query_map([], row)?.collect()
}

pub fn create(conn: &Connection, a: &AdminAccount) -> Result<(), StoreError> {
    let r = conn.execute(
        &format!("INSERT INTO admins ({ADMIN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            a.id.0,
            a.name,
            a.password_hash,
            a.totp_secret,
            a.totp_floor,
            a.lock.failures,
            a.lock.locked_at.map(|t| t.0),
            a.lock.lock_until.map(|t| t.0),
            a.lock.throttle_until.map(|t| t.0),
            a.created_at.0,
            a.last_login_at.map(|t| t.0),
            a.last_login_from,
        ],
    );
    match r {
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("admin `{}`", a.name))),
        r => r.map(|_| ()).map_err(map_err),
    }
}

fn write_lock(conn: &Connection, id: AdminId, lock: &LockState) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE admins SET failures = ?1, locked_at = ?2, lock_until = ?3, throttle_until = ?4 WHERE id = ?5",
    )
    .map_err(map_err)?
    .execute(params![
        lock.failures,
        lock.locked_at.map(|t| t.0),
        lock.lock_until.map(|t| t.0),
        lock.throttle_until.map(|t| t.0),
        id.0
    ])
    .map_err(map_err)?;
    Ok(())
}

fn record_login(conn: &Connection, id: AdminId, at: Timestamp, from: Option<&str>) -> Result<(), StoreError> {
    write_lock(conn, id, &LockState::default())?;
    conn.execute("UPDATE admins SET last_login_at = ?1, last_login_from = ?2 WHERE id = ?3", params![at.0, from, id.0])
        .map_err(map_err)?;
    Ok(())
}

pub fn update(conn: &Connection, id: AdminId, change: AdminChange) -> Result<(), StoreError> {
    let Some(admin) = by_id(conn, id).map_err(map_err)? else {
        return Err(StoreError::NotFound(format!("admin {id}")));
    };
    match change {
        AdminChange::SetPassword(hash) => {
            conn.execute("UPDATE admins SET password_hash = ?1 WHERE id = ?2", params![hash, id.0]).map_err(map_err)?;
        }
        AdminChange::Reset { password_hash } => {
            conn.execute(
                "UPDATE admins SET totp_secret = NULL, totp_floor = 0, password_hash = COALESCE(?1, password_hash) \
                 WHERE id = ?2",
                params![password_hash, id.0],
            )
            .map_err(map_err)?;
            write_lock(conn, id, &LockState::default())?;
        }
        AdminChange::EnrollTotp { sealed, floor, at, from } => {
            if admin.totp_secret.is_some() {
                return Err(StoreError::Conflict(format!("TOTP of admin `{}`", admin.name)));
            }
            conn.execute(
                "UPDATE admins SET totp_secret = ?1, totp_floor = ?2 WHERE id = ?3 AND totp_secret IS NULL",
                params![sealed, floor, id.0],
            )
            .map_err(map_err)?;
            record_login(conn, id, at, from.as_deref())?;
        }
        AdminChange::Delete => {
            conn.execute("DELETE FROM admins WHERE id = ?1", [id.0]).map_err(map_err)?;
        }
    }
    Ok(())
}

/// Decides and applies one sign-in step inside the writer's transaction.
pub fn attempt(conn: &Connection, mut a: AdminAttempt) -> Result<AuthOutcome, StoreError> {
    let Some(admin) = by_id(conn, a.admin).map_err(map_err)? else {
        a.audit.result = tessera_core::audit::AuditResult::Reject;
        a.audit.reason = Some("unknown_admin".into());
        insert_audit(conn, &a.audit)?;
        return Ok(AuthOutcome::Refused);
    };
    let outcome = if let Some(blocked) = blocking_outcome(false, &admin.lock, a.at) {
        blocked
    } else {
        match a.verdict {
            AdminVerdict::Verified { step } if step >= admin.totp_floor && admin.totp_secret.is_some() => {
                conn.execute("UPDATE admins SET totp_floor = ?1 WHERE id = ?2", params![step + 1, admin.id.0])
                    .map_err(map_err)?;
                record_login(conn, admin.id, a.at, a.from.as_deref())?;
                AuthOutcome::Accepted
            }
            verdict => {
                let next = admin.lock.after_failure(&a.policy, a.at);
                write_lock(conn, admin.id, &next)?;
                AuthOutcome::Failed {
                    failures: next.failures,
                    locked: next.is_locked(a.at) || next.throttle_until.is_some_and(|t| t > a.at),
                    replay: matches!(verdict, AdminVerdict::Verified { .. }),
                }
            }
        }
    };
    finish_admin_audit(&mut a.audit, &a.verdict, &outcome);
    insert_audit(conn, &a.audit)?;
    Ok(outcome)
}
