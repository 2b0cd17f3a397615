//! [`UserStore`] for the SQLite backend: users, tokens, backup code
//! sets, local groups and the hardware token inventory.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tessera_core::audit::AuditRecord;
use tessera_core::clock::Timestamp;
use tessera_core::model::{InventoryToken, Token, TokenId, User, UserId, UserStatus};
use tessera_core::store::{InventoryQuery, StoreError, UserChange, UserQuery, UserStore};

use super::rows::{TOKEN_COLS, USER_COLS};
use super::{
    SqliteStore, insert_audit, insert_token, inventory, is_unique_violation, map_err, overlaid, read_token_states,
    refresh_registered, rows, sort_tokens, status_clause, write_token_states,
};

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &User, audit: AuditRecord) -> Result<(), StoreError> {
        let u = user.clone();
        self.write(move |c| {
            let r = c
                .prepare_cached(
                    "INSERT INTO users (id, realm, username, password_hash, disabled, registered, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![u.id.0, u.realm, u.username, u.password_hash, u.disabled, u.registered, u.created_at.0])
                });
            match r {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(format!("user `{}` in realm `{}`", u.username, u.realm)));
                }
                r => r.map_err(map_err)?,
            };
            insert_audit(c, &audit)
        })
        .await
    }

    async fn user_by_name(&self, realm: &str, username: &str) -> Result<Option<User>, StoreError> {
        self.fresh().await?;
        self.read(|c| c.prepare_cached(&self.sql.user_by_name)?.query_row([realm, username], rows::user).optional())
    }

    async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.fresh().await?;
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))?
                .query_row([&id.0], rows::user)
                .optional()
        })
    }

    async fn list_users(&self, q: &UserQuery, now: Timestamp) -> Result<Vec<User>, StoreError> {
        self.fresh().await?;
        let mut sql = format!("SELECT {USER_COLS} FROM users WHERE 1 = 1");
        if q.realm.is_some() {
            sql.push_str(" AND realm = :realm");
        }
        if q.pattern.is_some() {
            sql.push_str(" AND username GLOB :pattern");
        }
        if let Some(st) = q.status {
            sql.push_str(" AND ");
            sql.push_str(status_clause(st));
        }
        sql.push_str(" ORDER BY realm, username LIMIT :limit OFFSET :offset");
        let pattern = q.pattern.as_ref().map(|p| p.to_sqlite_glob());
        self.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut named: Vec<(&str, &dyn rusqlite::ToSql)> = vec![(":limit", &q.limit), (":offset", &q.offset)];
            if let Some(r) = &q.realm {
                named.push((":realm", r));
            }
            if let Some(p) = &pattern {
                named.push((":pattern", p));
            }
            if q.status.is_some() && q.status != Some(UserStatus::Disabled) {
                named.push((":now", &now.0));
            }
            stmt.query_map(named.as_slice(), rows::user)?.collect()
        })
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        self.read(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))).map(|n| n as u64)
    }

    async fn update_user(&self, id: &UserId, change: UserChange, audit: AuditRecord) -> Result<(), StoreError> {
        let id = id.0;
        self.write(move |c| {
            let now = audit.at.0;
            let n = match &change {
                UserChange::SetPassword(h) => {
                    c.execute("UPDATE users SET password_hash = ?1, updated_at = ?2 WHERE id = ?3", params![h, now, id])
                }
                UserChange::SetDisabled(d) => {
                    c.execute("UPDATE users SET disabled = ?1, updated_at = ?2 WHERE id = ?3", params![d, now, id])
                }
                UserChange::Unlock => c.execute(
                    "UPDATE users SET failures = 0, locked_at = NULL, lock_until = NULL, throttle_until = NULL, \
                     updated_at = ?1 WHERE id = ?2",
                    params![now, id],
                ),
                UserChange::Reset => {
                    c.execute("DELETE FROM tokens WHERE user_id = ?1", [&id]).map_err(map_err)?;
                    c.execute("DELETE FROM backup_codes WHERE user_id = ?1", [&id]).map_err(map_err)?;
                    c.execute("DELETE FROM oob_codes WHERE user_id = ?1", [&id]).map_err(map_err)?;
                    c.execute(
                        "UPDATE users SET registered = 0, failures = 0, locked_at = NULL, lock_until = NULL, \
                         throttle_until = NULL, token_state = NULL, grace_used = 0, updated_at = ?1 WHERE id = ?2",
                        params![now, id],
                    )
                }
                UserChange::Delete => c.execute("DELETE FROM users WHERE id = ?1", [&id]),
            }
            .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {id}")));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn create_token(&self, token: &Token, audit: AuditRecord) -> Result<(), StoreError> {
        let t = token.clone();
        self.write(move |c| {
            insert_token(c, &t)?;
            refresh_registered(c, t.user_id.0).map_err(map_err)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.fresh().await?;
        self.read(|c| {
            let t = c
                .prepare_cached(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = ?1"))?
                .query_row([&id.0], rows::token)
                .optional()?;
            t.map(|t| overlaid(c, t)).transpose()
        })
    }

    async fn token_by_serial(&self, serial: &str) -> Result<Option<Token>, StoreError> {
        self.fresh().await?;
        self.read(|c| {
            let t = c
                .prepare_cached(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE serial = ?1"))?
                .query_row([serial], rows::token)
                .optional()?;
            t.map(|t| overlaid(c, t)).transpose()
        })
    }

    async fn tokens_for_user(&self, user: &UserId) -> Result<Vec<Token>, StoreError> {
        self.fresh().await?;
        let mut tokens: Vec<Token> = self.read(|c| {
            let states = read_token_states(c, user.0)?;
            let mut v: Vec<Token> = c
                .prepare_cached(&self.sql.tokens_for_user)?
                .query_map([&user.0], rows::token)?
                .collect::<rusqlite::Result<_>>()?;
            v.iter_mut().for_each(|t| states.overlay(t));
            Ok(v)
        })?;
        sort_tokens(&mut tokens);
        Ok(tokens)
    }

    async fn list_tokens(&self, limit: u32, offset: u32) -> Result<Vec<Token>, StoreError> {
        self.fresh().await?;
        self.read(|c| {
            let v: Vec<Token> = c
                .prepare_cached(&format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY serial LIMIT ?1 OFFSET ?2"))?
                .query_map([limit, offset], rows::token)?
                .collect::<rusqlite::Result<_>>()?;
            v.into_iter().map(|t| overlaid(c, t)).collect()
        })
    }

    async fn delete_token(&self, id: &TokenId, audit: AuditRecord) -> Result<(), StoreError> {
        let id = id.0;
        self.write(move |c| {
            let user: Option<Option<i64>> = c
                .query_row("SELECT user_id FROM tokens WHERE id = ?1", [&id], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            let Some(user) = user else {
                return Err(StoreError::NotFound(format!("token {id}")));
            };
            if let Some(u) = user
                && let Some(e) = read_token_states(c, u).map_err(map_err)?.get(id)
            {
                // The inventory trigger keeps the floor a lent seed reached.
                c.execute("UPDATE tokens SET counter = MAX(counter, ?1) WHERE id = ?2", params![e.counter, id])
                    .map_err(map_err)?;
            }
            c.execute("DELETE FROM tokens WHERE id = ?1", [&id]).map_err(map_err)?;
            if let Some(u) = user {
                let mut states = read_token_states(c, u).map_err(map_err)?;
                if states.remove(id) {
                    write_token_states(c, u, &states).map_err(map_err)?;
                }
                refresh_registered(c, u).map_err(map_err)?;
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn activate_token(
        &self,
        id: &TokenId,
        matched: i64,
        drift: i32,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let id = id.0;
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE tokens SET state = 'active', counter = ?1 + 1, drift = ?2, last_used_at = ?3 \
                     WHERE id = ?4 AND state = 'pending' AND counter <= ?1",
                    params![matched, drift, audit.at.0, id],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Ok(false);
            }
            let user: i64 =
                c.query_row("SELECT user_id FROM tokens WHERE id = ?1", [&id], |r| r.get(0)).map_err(map_err)?;
            let mut states = read_token_states(c, user).map_err(map_err)?;
            if states.remove(id) {
                write_token_states(c, user, &states).map_err(map_err)?;
            }
            refresh_registered(c, user).map_err(map_err)?;
            insert_audit(c, &audit)?;
            Ok(true)
        })
        .await
    }

    async fn resync_token(&self, id: &TokenId, floor: i64, drift: i32, audit: AuditRecord) -> Result<(), StoreError> {
        let id = id.0;
        self.write(move |c| {
            let row: Option<(i64, Option<i64>)> = c
                .query_row("SELECT counter, user_id FROM tokens WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(map_err)?;
            let Some((counter, user)) = row else {
                return Err(StoreError::NotFound(format!("token {id}")));
            };
            // The floor never moves back, also past logins recorded in the
            // user's token state; the row becomes the one source again.
            let mut current = counter;
            let mut last_used = None;
            if let Some(u) = user {
                let mut states = read_token_states(c, u).map_err(map_err)?;
                if let Some(e) = states.get(id) {
                    current = current.max(e.counter);
                    last_used = Some(e.last_used);
                }
                if states.remove(id) {
                    write_token_states(c, u, &states).map_err(map_err)?;
                }
            }
            c.execute(
                "UPDATE tokens SET counter = ?1, drift = ?2, last_used_at = COALESCE(?4, last_used_at) WHERE id = ?3",
                params![current.max(floor), drift, id, last_used],
            )
            .map_err(map_err)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn replace_backup_codes(
        &self,
        user: &UserId,
        digests: &[[u8; 32]],
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let user = user.0;
        let digests = digests.to_vec();
        self.write(move |c| {
            let exists =
                c.query_row("SELECT 1 FROM users WHERE id = ?1", [&user], |_| Ok(())).optional().map_err(map_err)?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("user {user}")));
            }
            c.execute("DELETE FROM backup_codes WHERE user_id = ?1", [&user]).map_err(map_err)?;
            let mut ins = c
                .prepare_cached("INSERT INTO backup_codes (user_id, digest, created_at) VALUES (?1, ?2, ?3)")
                .map_err(map_err)?;
            for d in &digests {
                ins.execute(params![user, &d[..], at.0]).map_err(map_err)?;
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn backup_codes_left(&self, user: &UserId) -> Result<u32, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT count(*) FROM backup_codes WHERE user_id = ?1 AND used_at IS NULL")?
                .query_row([&user.0], |r| r.get::<_, i64>(0))
        })
        .map(|n| n as u32)
    }

    async fn add_inventory(&self, items: &[InventoryToken], audit: AuditRecord) -> Result<(), StoreError> {
        let items = items.to_vec();
        self.write(move |c| inventory::add(c, &items, &audit)).await
    }

    async fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryToken>, StoreError> {
        self.read(|c| inventory::list(c, query))
    }

    async fn inventory_item(&self, serial: &str) -> Result<Option<InventoryToken>, StoreError> {
        self.read(|c| inventory::by_serial(c, serial))
    }

    async fn assign_inventory(&self, item: i64, token: &Token, audit: AuditRecord) -> Result<(), StoreError> {
        let token = token.clone();
        self.write(move |c| inventory::assign(c, item, &token, &audit)).await
    }

    async fn unassign_inventory(&self, item: i64, audit: AuditRecord) -> Result<(), StoreError> {
        self.write(move |c| inventory::unassign(c, item, &audit)).await
    }

    async fn add_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError> {
        let group = group.to_string();
        self.write(move |c| {
            let r =
                c.execute("INSERT INTO group_members (group_name, user_id) VALUES (?1, ?2)", params![group, user.0]);
            match r {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(format!("membership of user {user} in group `{group}`")));
                }
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    return Err(StoreError::NotFound(format!("user {user}")));
                }
                r => r.map_err(map_err)?,
            };
            insert_audit(c, &audit)
        })
        .await
    }

    async fn remove_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError> {
        let group = group.to_string();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM group_members WHERE group_name = ?1 AND user_id = ?2", params![group, user.0])
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("membership of user {user} in group `{group}`")));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT group_name FROM group_members WHERE user_id = ?1")?
                .query_map([user.0], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map(|mut v| {
            v.sort();
            v
        })
    }

    async fn groups(&self) -> Result<Vec<(String, Vec<UserId>)>, StoreError> {
        let rows: Vec<(String, i64)> = self.read(|c| {
            c.prepare_cached("SELECT group_name, user_id FROM group_members ORDER BY group_name, user_id")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })?;
        let mut out: Vec<(String, Vec<UserId>)> = Vec::new();
        for (g, u) in rows {
            match out.last_mut() {
                Some((name, members)) if *name == g => members.push(UserId(u)),
                _ => out.push((g, vec![UserId(u)])),
            }
        }
        Ok(out)
    }
}
