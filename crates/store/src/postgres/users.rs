//! [`UserStore`] for the PostgreSQL backend: users, tokens, backup code
//! sets, local groups and the hardware token inventory.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::audit::AuditRecord;
use tessera_core::clock::Timestamp;
use tessera_core::model::{InventoryToken, Token, TokenId, User, UserId, UserStatus};
use tessera_core::store::{InventoryQuery, StoreError, UserChange, UserQuery, UserStore};

use super::db::{DynParams, exec, exec_raw, map_err, one, opt, rows as query};
use super::rows::{INVENTORY_COLS, INVENTORY_FROM};
use super::{PgStore, constraint, insert_audit, insert_token, refresh_registered, rows, status_clause, tokens_of};
use crate::sqlite::rows::{TOKEN_COLS, USER_COLS, kind_cols};

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, user: &User, audit: AuditRecord) -> Result<(), StoreError> {
        let u = user;
        in_tx!(self, |tx| {
            match exec_raw(
                &tx,
                "INSERT INTO users (id, realm, username, password_hash, disabled, registered, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                &[&u.id.0, &u.realm, &u.username, &u.password_hash, &u.disabled, &u.registered, &u.created_at.0],
            )
            .await
            {
                Err(e) => Err(constraint(e, || format!("user `{}` in realm `{}`", u.username, u.realm), String::new)),
                Ok(_) => insert_audit(&tx, &audit).await,
            }
        })
    }

    async fn user_by_name(&self, realm: &str, username: &str) -> Result<Option<User>, StoreError> {
        let c = self.client().await?;
        let sql = format!("SELECT {USER_COLS} FROM users WHERE realm = $1 AND username = $2");
        opt(&c, &sql, &[&realm, &username]).await?.as_ref().map(rows::user).transpose()
    }

    async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let c = self.client().await?;
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        opt(&c, &sql, &[&id.0]).await?.as_ref().map(rows::user).transpose()
    }

    async fn list_users(&self, q: &UserQuery, now: Timestamp) -> Result<Vec<User>, StoreError> {
        let mut p = DynParams::default();
        let mut sql = format!("SELECT {USER_COLS} FROM users WHERE TRUE");
        if let Some(r) = &q.realm {
            sql.push_str(&format!(" AND realm = {}", p.push(r.clone())));
        }
        if let Some(w) = &q.pattern {
            sql.push_str(&format!(" AND username LIKE {} ESCAPE '\\'", p.push(w.to_sql_like())));
        }
        if let Some(st) = q.status {
            // Every placeholder must be used (PostgreSQL infers its type).
            let n = if st == UserStatus::Disabled { String::new() } else { p.push(now.0) };
            sql.push_str(" AND ");
            sql.push_str(&status_clause(st, &n));
        }
        let limit = p.push(i64::from(q.limit));
        let offset = p.push(i64::from(q.offset));
        sql.push_str(&format!(" ORDER BY realm, username LIMIT {limit} OFFSET {offset}"));
        let c = self.client().await?;
        query(&c, &sql, &p.refs()).await?.iter().map(rows::user).collect()
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let n: i64 = rows::get(&one(&c, "SELECT count(*) FROM users", &[]).await?, 0)?;
        Ok(n as u64)
    }

    async fn update_user(&self, id: &UserId, change: UserChange, audit: AuditRecord) -> Result<(), StoreError> {
        let id = id.0;
        let now = audit.at.0;
        in_tx!(self, |tx| {
            async {
                let n = match &change {
                    UserChange::SetPassword(h) => {
                        exec(&tx, "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3", &[h, &now, &id])
                            .await?
                    }
                    UserChange::SetDisabled(d) => {
                        exec(&tx, "UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3", &[d, &now, &id])
                            .await?
                    }
                    UserChange::Unlock => {
                        exec(
                            &tx,
                            "UPDATE users SET failures = 0, locked_at = NULL, lock_until = NULL, \
                             throttle_until = NULL, updated_at = $1 WHERE id = $2",
                            &[&now, &id],
                        )
                        .await?
                    }
                    UserChange::Reset => {
                        // Lock the user first (the login step's lock), then its rows.
                        let n = exec(&tx, "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", &[&id]).await?;
                        if n == 1 {
                            exec(&tx, "DELETE FROM tokens WHERE user_id = $1", &[&id]).await?;
                            exec(&tx, "DELETE FROM backup_codes WHERE user_id = $1", &[&id]).await?;
                            exec(&tx, "DELETE FROM oob_codes WHERE user_id = $1", &[&id]).await?;
                        }
                        exec(
                            &tx,
                            "UPDATE users SET registered = FALSE, failures = 0, locked_at = NULL, lock_until = NULL, \
                             throttle_until = NULL, token_state = NULL, grace_used = 0, updated_at = $1 WHERE id = $2",
                            &[&now, &id],
                        )
                        .await?
                    }
                    UserChange::Delete => exec(&tx, "DELETE FROM users WHERE id = $1", &[&id]).await?,
                };
                if n == 0 {
                    return Err(StoreError::NotFound(format!("user {id}")));
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn create_token(&self, token: &Token, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            async {
                insert_token(&tx, token).await?;
                refresh_registered(&tx, token.user_id.0).await?;
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let c = self.client().await?;
        let sql = format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = $1");
        opt(&c, &sql, &[&id.0]).await?.as_ref().map(rows::token).transpose()
    }

    async fn token_by_serial(&self, serial: &str) -> Result<Option<Token>, StoreError> {
        let c = self.client().await?;
        let sql = format!("SELECT {TOKEN_COLS} FROM tokens WHERE serial = $1");
        opt(&c, &sql, &[&serial]).await?.as_ref().map(rows::token).transpose()
    }

    async fn tokens_for_user(&self, user: &UserId) -> Result<Vec<Token>, StoreError> {
        let c = self.client().await?;
        tokens_of(&c, user.0).await
    }

    async fn list_tokens(&self, limit: u32, offset: u32) -> Result<Vec<Token>, StoreError> {
        let c = self.client().await?;
        let sql = format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY serial LIMIT $1 OFFSET $2");
        query(&c, &sql, &[&i64::from(limit), &i64::from(offset)]).await?.iter().map(rows::token).collect()
    }

    async fn delete_token(&self, id: &TokenId, audit: AuditRecord) -> Result<(), StoreError> {
        let id = id.0;
        in_tx!(self, |tx| {
            async {
                let row = opt(&tx, "SELECT user_id FROM tokens WHERE id = $1", &[&id]).await?;
                let Some(row) = row else {
                    return Err(StoreError::NotFound(format!("token {id}")));
                };
                let user: Option<i64> = rows::get(&row, 0)?;
                if let Some(u) = user {
                    exec(&tx, "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", &[&u]).await?;
                }
                // The inventory trigger keeps the floor a lent seed reached.
                let n = exec(&tx, "DELETE FROM tokens WHERE id = $1", &[&id]).await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("token {id}")));
                }
                if let Some(u) = user {
                    refresh_registered(&tx, u).await?;
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn activate_token(
        &self,
        id: &TokenId,
        matched: i64,
        drift: i32,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let id = id.0;
        let drift = i64::from(drift);
        in_tx!(self, |tx| {
            async {
                let row = opt(
                    &tx,
                    "UPDATE tokens SET state = 'active', counter = $1 + 1, drift = $2, last_used_at = $3 \
                     WHERE id = $4 AND state = 'pending' AND counter <= $1 RETURNING user_id",
                    &[&matched, &drift, &audit.at.0, &id],
                )
                .await?;
                let Some(row) = row else { return Ok(false) };
                let user: Option<i64> = rows::get(&row, 0)?;
                if let Some(u) = user {
                    refresh_registered(&tx, u).await?;
                }
                insert_audit(&tx, &audit).await?;
                Ok(true)
            }
            .await
        })
    }

    async fn resync_token(&self, id: &TokenId, floor: i64, drift: i32, audit: AuditRecord) -> Result<(), StoreError> {
        let id = id.0;
        let drift = i64::from(drift);
        in_tx!(self, |tx| {
            async {
                // GREATEST: the floor never moves back (a concurrent login may
                // have moved it meanwhile; the row lock orders the two).
                let n = exec(
                    &tx,
                    "UPDATE tokens SET counter = GREATEST(counter, $1), drift = $2 WHERE id = $3",
                    &[&floor, &drift, &id],
                )
                .await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("token {id}")));
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn replace_backup_codes(
        &self,
        user: &UserId,
        digests: &[[u8; 32]],
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let user = user.0;
        in_tx!(self, |tx| {
            async {
                let n = exec(&tx, "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", &[&user]).await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("user {user}")));
                }
                exec(&tx, "DELETE FROM backup_codes WHERE user_id = $1", &[&user]).await?;
                for d in digests {
                    exec(
                        &tx,
                        "INSERT INTO backup_codes (user_id, digest, created_at) VALUES ($1, $2, $3)",
                        &[&user, &&d[..], &at.0],
                    )
                    .await?;
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn backup_codes_left(&self, user: &UserId) -> Result<u32, StoreError> {
        let c = self.client().await?;
        let r = one(&c, "SELECT count(*) FROM backup_codes WHERE user_id = $1 AND used_at IS NULL", &[&user.0]).await?;
        Ok(rows::get::<i64>(&r, 0)? as u32)
    }

    async fn add_inventory(&self, items: &[InventoryToken], audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            async {
                for it in items {
                    if opt(&tx, "SELECT 1 FROM tokens WHERE serial = $1", &[&it.serial]).await?.is_some() {
                        return Err(StoreError::Conflict(format!("serial `{}` (a user's token)", it.serial)));
                    }
                    let (kind, period) = kind_cols(&it.params);
                    let period = (kind == "totp").then_some(period);
                    let digits = i64::from(it.params.digits.get());
                    exec_raw(
                        &tx,
                        "INSERT INTO inventory (id, serial, kind, algorithm, digits, period, secret, counter, \
                         manufacturer, model, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        &[
                            &it.id,
                            &it.serial,
                            &kind,
                            &it.params.algorithm.to_string(),
                            &digits,
                            &period,
                            &it.sealed_secret,
                            &it.counter,
                            &it.manufacturer,
                            &it.model,
                            &it.imported_at.0,
                        ],
                    )
                    .await
                    .map_err(|e| constraint(e, || format!("serial `{}` (in the inventory)", it.serial), String::new))?;
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn inventory(&self, q: &InventoryQuery) -> Result<Vec<InventoryToken>, StoreError> {
        let mut p = DynParams::default();
        let mut sql = format!("SELECT {INVENTORY_COLS} FROM {INVENTORY_FROM} WHERE TRUE");
        match q.assigned {
            Some(true) => sql.push_str(" AND t.id IS NOT NULL"),
            Some(false) => sql.push_str(" AND t.id IS NULL"),
            None => {}
        }
        if let Some(m) = &q.manufacturer {
            sql.push_str(&format!(" AND i.manufacturer = {}", p.push(m.clone())));
        }
        if let Some(m) = &q.model {
            sql.push_str(&format!(" AND i.model = {}", p.push(m.clone())));
        }
        let limit = p.push(i64::from(q.limit.max(1)));
        let offset = p.push(i64::from(q.offset));
        sql.push_str(&format!(" ORDER BY i.serial LIMIT {limit} OFFSET {offset}"));
        let c = self.client().await?;
        query(&c, &sql, &p.refs()).await?.iter().map(rows::inventory_item).collect()
    }

    async fn inventory_item(&self, serial: &str) -> Result<Option<InventoryToken>, StoreError> {
        let c = self.client().await?;
        let sql = format!("SELECT {INVENTORY_COLS} FROM {INVENTORY_FROM} WHERE i.serial = $1");
        opt(&c, &sql, &[&serial]).await?.as_ref().map(rows::inventory_item).transpose()
    }

    async fn assign_inventory(&self, item: i64, token: &Token, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            async {
                let sql = format!("SELECT {INVENTORY_COLS} FROM {INVENTORY_FROM} WHERE i.id = $1 FOR UPDATE OF i");
                let current = opt(&tx, &sql, &[&item])
                    .await?
                    .as_ref()
                    .map(rows::inventory_item)
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound(format!("inventory token {item}")))?;
                if current.token_id.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "hardware token `{}` is already assigned",
                        current.serial
                    )));
                }
                insert_token(&tx, token).await?;
                exec(&tx, "UPDATE inventory SET token_id = $1 WHERE id = $2", &[&token.id.0, &item]).await?;
                refresh_registered(&tx, token.user_id.0).await?;
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn unassign_inventory(&self, item: i64, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            async {
                let sql = format!("SELECT {INVENTORY_COLS} FROM {INVENTORY_FROM} WHERE i.id = $1 FOR UPDATE OF i");
                let current = opt(&tx, &sql, &[&item])
                    .await?
                    .as_ref()
                    .map(rows::inventory_item)
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound(format!("inventory token {item}")))?;
                let (Some(token), Some(user)) = (current.token_id, current.assigned_to) else {
                    return Err(StoreError::NotFound(format!("an assignment of hardware token `{}`", current.serial)));
                };
                exec(&tx, "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", &[&user.0]).await?;
                // The delete trigger moves the floor the holder's logins
                // reached to the seed, so used codes stay used.
                exec(&tx, "DELETE FROM tokens WHERE id = $1", &[&token.0]).await?;
                refresh_registered(&tx, user.0).await?;
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn add_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            match exec_raw(&tx, "INSERT INTO group_members (group_name, user_id) VALUES ($1, $2)", &[&group, &user.0])
                .await
            {
                Err(e) => Err(constraint(
                    e,
                    || format!("membership of user {user} in group `{group}`"),
                    || format!("user {user}"),
                )),
                Ok(_) => insert_audit(&tx, &audit).await,
            }
        })
    }

    async fn remove_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            async {
                let n =
                    exec(&tx, "DELETE FROM group_members WHERE group_name = $1 AND user_id = $2", &[&group, &user.0])
                        .await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("membership of user {user} in group `{group}`")));
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        query(&c, "SELECT group_name FROM group_members WHERE user_id = $1 ORDER BY group_name", &[&user.0])
            .await?
            .iter()
            .map(|r| rows::get(r, 0))
            .collect()
    }

    async fn groups(&self) -> Result<Vec<(String, Vec<UserId>)>, StoreError> {
        let c = self.client().await?;
        let found =
            query(&c, "SELECT group_name, user_id FROM group_members ORDER BY group_name, user_id", &[]).await?;
        let mut out: Vec<(String, Vec<UserId>)> = Vec::new();
        for r in &found {
            let g: String = rows::get(r, 0)?;
            let u = UserId(rows::get(r, 1)?);
            match out.last_mut() {
                Some((name, members)) if *name == g => members.push(u),
                _ => out.push((g, vec![u])),
            }
        }
        Ok(out)
    }
}
