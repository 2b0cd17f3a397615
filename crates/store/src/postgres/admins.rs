//! Web-console administrators (`0002_admins.sql`). A sign-in step locks the
//! admin's row (`FOR NO KEY UPDATE`) and re-checks lock and replay floor
//! under it, so lockout and replay stay exact across nodes sharing the
//! database, as for users.

use deadpool_postgres::GenericClient;
use tessera_core::clock::Timestamp;
use tessera_core::lockout::LockState;
use tessera_core::model::{AdminAccount, AdminId};
use tessera_core::store::{
    AdminAttempt, AdminChange, AdminVerdict, AuthOutcome, StoreError, blocking_outcome, finish_admin_audit,
};
use tokio_postgres::Row;

use super::db::{exec, exec_raw, is_code, map_err, opt, rows as query};
use super::insert_audit;
use super::rows::get;

const COLS: &str = "id, name, password_hash, totp_secret, totp_floor, failures, locked_at, lock_until, \
    throttle_until, created_at, last_login_at, last_login_from";

fn row(r: &Row) -> Result<AdminAccount, StoreError> {
    let failures: i64 = get(r, 5)?;
    Ok(AdminAccount {
        id: AdminId(get(r, 0)?),
        name: get(r, 1)?,
        password_hash: get(r, 2)?,
        totp_secret: get(r, 3)?,
        totp_floor: get(r, 4)?,
        lock: LockState {
            failures: u32::try_from(failures)
                .map_err(|_| StoreError::Corrupt("unreadable record (failures: out of range)".into()))?,
            locked_at: get::<Option<i64>>(r, 6)?.map(Timestamp),
            lock_until: get::<Option<i64>>(r, 7)?.map(Timestamp),
            throttle_until: get::<Option<i64>>(r, 8)?.map(Timestamp),
        },
        created_at: Timestamp(get(r, 9)?),
        last_login_at: get::<Option<i64>>(r, 10)?.map(Timestamp),
        last_login_from: get(r, 11)?,
    })
}

pub async fn by_id<C: GenericClient>(c: &C, id: AdminId, lock: bool) -> Result<Option<AdminAccount>, StoreError> {
    let sql = format!("SELECT {COLS} FROM admins WHERE id = $1{}", if lock { " FOR NO KEY UPDATE" } else { "" });
    opt(c, &sql, &[&id.0]).await?.as_ref().map(row).transpose()
}

pub async fn by_name<C: GenericClient>(c: &C, name: &str) -> Result<Option<AdminAccount>, StoreError> {
    opt(c, &format!("SELECT {COLS} FROM admins WHERE name = $1"), &[&name]).await?.as_ref().map(row).transpose()
}

pub async fn list<C: GenericClient>(c: &C) -> Result<Vec<AdminAccount>, StoreError> {
    query(c, &format!("SELECT {COLS} FROM admins ORDER BY name"), &[]).await?.iter().map(row).collect()
}

pub async fn create<C: GenericClient>(c: &C, a: &AdminAccount) -> Result<(), StoreError> {
    let r = exec_raw(
        c,
        &format!("INSERT INTO admins ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
        &[
            &a.id.0,
            &a.name,
            &a.password_hash,
            &a.totp_secret,
            &a.totp_floor,
            &i64::from(a.lock.failures),
            &a.lock.locked_at.map(|t| t.0),
            &a.lock.lock_until.map(|t| t.0),
            &a.lock.throttle_until.map(|t| t.0),
            &a.created_at.0,
            &a.last_login_at.map(|t| t.0),
            &a.last_login_from,
        ],
    )
    .await;
    match r {
        Err(e) if is_code(&e, &tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::Conflict(format!("admin `{}`", a.name)))
        }
        r => r.map(|_| ()).map_err(map_err),
    }
}

async fn write_lock<C: GenericClient>(c: &C, id: AdminId, lock: &LockState) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE admins SET failures = $1, locked_at = $2, lock_until = $3, throttle_until = $4 WHERE id = $5",
        &[
            &i64::from(lock.failures),
            &lock.locked_at.map(|t| t.0),
            &lock.lock_until.map(|t| t.0),
            &lock.throttle_until.map(|t| t.0),
            &id.0,
        ],
    )
    .await?;
    Ok(())
}

async fn record_login<C: GenericClient>(
    c: &C,
    id: AdminId,
    at: Timestamp,
    from: Option<&str>,
) -> Result<(), StoreError> {
    write_lock(c, id, &LockState::default()).await?;
    exec(c, "UPDATE admins SET last_login_at = $1, last_login_from = $2 WHERE id = $3", &[&at.0, &from, &id.0]).await?;
    Ok(())
}

/// Applies `change` to a row the caller's transaction has locked.
pub async fn update<C: GenericClient>(c: &C, id: AdminId, change: AdminChange) -> Result<(), StoreError> {
    let Some(admin) = by_id(c, id, true).await? else {
        return Err(StoreError::NotFound(format!("admin {id}")));
    };
    match change {
        AdminChange::SetPassword(hash) => {
            exec(c, "UPDATE admins SET password_hash = $1 WHERE id = $2", &[&hash, &id.0]).await?;
        }
        AdminChange::Reset { password_hash } => {
            exec(
                c,
                "UPDATE admins SET totp_secret = NULL, totp_floor = 0, \
                 password_hash = COALESCE($1, password_hash) WHERE id = $2",
                &[&password_hash, &id.0],
            )
            .await?;
            write_lock(c, id, &LockState::default()).await?;
        }
        AdminChange::EnrollTotp { sealed, floor, at, from } => {
            if admin.totp_secret.is_some() {
                return Err(StoreError::Conflict(format!("TOTP of admin `{}`", admin.name)));
            }
            exec(
                c,
                "UPDATE admins SET totp_secret = $1, totp_floor = $2 WHERE id = $3 AND totp_secret IS NULL",
                &[&sealed, &floor, &id.0],
            )
            .await?;
            record_login(c, id, at, from.as_deref()).await?;
        }
        AdminChange::Delete => {
            exec(c, "DELETE FROM admins WHERE id = $1", &[&id.0]).await?;
        }
    }
    Ok(())
}

/// Decides and applies one sign-in step under the admin's row lock.
pub async fn attempt<C: GenericClient>(c: &C, mut a: AdminAttempt) -> Result<AuthOutcome, StoreError> {
    let Some(admin) = by_id(c, a.admin, true).await? else {
        a.audit.result = tessera_core::audit::AuditResult::Reject;
        a.audit.reason = Some("unknown_admin".into());
        insert_audit(c, &a.audit).await?;
        return Ok(AuthOutcome::Refused);
    };
    let outcome = if let Some(blocked) = blocking_outcome(false, &admin.lock, a.at) {
        blocked
    } else {
        match a.verdict {
            AdminVerdict::Verified { step } if step >= admin.totp_floor && admin.totp_secret.is_some() => {
                exec(c, "UPDATE admins SET totp_floor = $1 WHERE id = $2", &[&(step + 1), &admin.id.0]).await?;
                record_login(c, admin.id, a.at, a.from.as_deref()).await?;
                AuthOutcome::Accepted
            }
            verdict => {
                let next = admin.lock.after_failure(&a.policy, a.at);
                write_lock(c, admin.id, &next).await?;
                AuthOutcome::Failed {
                    failures: next.failures,
                    locked: next.is_locked(a.at) || next.throttle_until.is_some_and(|t| t > a.at),
                    replay: matches!(verdict, AdminVerdict::Verified { .. }),
                }
            }
        }
    };
    finish_admin_audit(&mut a.audit, &a.verdict, &outcome);
    insert_audit(c, &a.audit).await?;
    Ok(outcome)
}
