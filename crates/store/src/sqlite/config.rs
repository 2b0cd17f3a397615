//! [`ConfigStore`] for the SQLite backend: policy, realms and the
//! directory cache generation, RADIUS clients, reply rules, API keys.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tessera_core::audit::AuditRecord;
use tessera_core::clock::Timestamp;
use tessera_core::model::{ApiKey, RadiusClient, ReplyRule, RuleScope, SecretRotation, SecretSlot};
use tessera_core::policy::Policy;
use tessera_core::realm::Realm;
use tessera_core::store::{ConfigStore, StoreError};

use super::rows::{API_KEY_COLS, RADIUS_CLIENT_COLS};
use super::{POLICY_TTL, SqliteStore, insert_audit, is_unique_violation, map_err, rows};

#[async_trait]
impl ConfigStore for SqliteStore {
    async fn policy(&self) -> Result<Policy, StoreError> {
        if let Some((at, p)) = &*self.policy_cache.lock()
            && at.elapsed() < POLICY_TTL
        {
            return Ok(p.clone());
        }
        let text: String = self
            .read(|c| c.prepare_cached("SELECT value FROM meta WHERE key = 'policy'")?.query_row([], |r| r.get(0)))?;
        let p: Policy = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("stored policy: {e}")))?;
        *self.policy_cache.lock() = Some((std::time::Instant::now(), p.clone()));
        Ok(p)
    }

    async fn set_policy(&self, policy: &Policy, audit: AuditRecord) -> Result<(), StoreError> {
        let text = serde_json::to_string(policy).map_err(|e| StoreError::Backend(e.to_string()))?;
        let r = self
            .write(move |c| {
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('policy', ?1)", [&text])
                    .map_err(map_err)?;
                insert_audit(c, &audit)
            })
            .await;
        *self.policy_cache.lock() = None;
        r
    }

    async fn create_api_key(&self, key: &ApiKey, audit: AuditRecord) -> Result<(), StoreError> {
        let k = key.clone();
        self.write(move |c| {
            let r = c.execute(
                &format!("INSERT INTO api_keys ({API_KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![k.id, k.name, k.prefix, &k.digest[..], k.created_at.0, k.last_used_at.map(|t| t.0)],
            );
            match r {
                Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict(format!("API key `{}`", k.name))),
                r => r.map_err(map_err)?,
            };
            insert_audit(c, &audit)
        })
        .await
    }

    async fn api_key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKey>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {API_KEY_COLS} FROM api_keys WHERE digest = ?1"))?
                .query_row([&digest[..]], rows::api_key)
                .optional()
        })
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {API_KEY_COLS} FROM api_keys ORDER BY name"))?
                .query_map([], rows::api_key)?
                .collect()
        })
    }

    async fn delete_api_key(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |c| {
            let n = c.execute("DELETE FROM api_keys WHERE name = ?1", [&name]).map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("API key `{name}`")));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn put_realm(&self, realm: &Realm, audit: AuditRecord) -> Result<(), StoreError> {
        let r = realm.clone();
        let settings = serde_json::to_string(&r.settings).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.write(move |c| {
            c.execute(
                "INSERT INTO realms (name, settings, secrets, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, secrets = excluded.secrets, \
                 updated_at = excluded.updated_at",
                params![r.name, settings, r.sealed_secrets, r.created_at.0, r.updated_at.0],
            )
            .map_err(map_err)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn realms(&self) -> Result<Vec<Realm>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT name, settings, secrets, created_at, updated_at FROM realms ORDER BY name")?
                .query_map([], rows::realm)?
                .collect()
        })
    }

    async fn delete_realm(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |c| {
            let n = c.execute("DELETE FROM realms WHERE name = ?1", [&name]).map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("realm `{name}`")));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn directory_cache_generation(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM meta WHERE key = 'directory_cache_generation'")?
                .query_row([], |r| r.get::<_, String>(0))
                .optional()
        })
        .map(|v| v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    async fn bump_directory_cache_generation(&self, audit: AuditRecord) -> Result<i64, StoreError> {
        self.write(move |c| {
            let current: Option<String> = c
                .query_row("SELECT value FROM meta WHERE key = 'directory_cache_generation'", [], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            let next = current.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) + 1;
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('directory_cache_generation', ?1)",
                [next.to_string()],
            )
            .map_err(map_err)?;
            insert_audit(c, &audit)?;
            Ok(next)
        })
        .await
    }

    async fn create_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError> {
        let k = client.clone();
        self.write(move |c| {
            let r = c.execute(
                "INSERT INTO radius_clients (id, name, address, secret, message_authenticator, ma_seen, created_at, \
                 default_realm) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    k.id,
                    k.name,
                    k.address.to_string(),
                    k.sealed_secret,
                    k.message_authenticator.as_str(),
                    k.ma_seen,
                    k.created_at.0,
                    k.default_realm
                ],
            );
            match r {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(format!("RADIUS client `{}`", k.name)));
                }
                r => r.map_err(map_err)?,
            };
            insert_audit(c, &audit)
        })
        .await
    }

    async fn radius_clients(&self) -> Result<Vec<RadiusClient>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {RADIUS_CLIENT_COLS} FROM radius_clients ORDER BY name"))?
                .query_map([], rows::radius_client)?
                .collect()
        })
    }

    async fn delete_radius_client(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |c| {
            let n = c.execute("DELETE FROM radius_clients WHERE name = ?1", [&name]).map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("RADIUS client `{name}`")));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn mark_radius_client_signed(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute("UPDATE radius_clients SET ma_seen = 1 WHERE id = ?1", [id]).map(|_| ()).map_err(map_err)
        })
        .await
    }

    async fn update_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError> {
        let k = client.clone();
        self.write(move |c| {
            let r = c.execute(
                "UPDATE radius_clients SET address = ?2, message_authenticator = ?3, default_realm = ?4 WHERE id = ?1",
                params![k.id, k.address.to_string(), k.message_authenticator.as_str(), k.default_realm],
            );
            match r {
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("RADIUS client `{}`", k.name))),
                Err(e) => Err(map_err(e)),
                Ok(0) => Err(StoreError::NotFound(format!("RADIUS client `{}`", k.name))),
                Ok(_) => insert_audit(c, &audit),
            }
        })
        .await
    }

    async fn set_radius_client_secret(
        &self,
        id: i64,
        expected: &[u8],
        sealed_secret: &[u8],
        rotation: &SecretRotation,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let (expected, sealed, r) = (expected.to_vec(), sealed_secret.to_vec(), rotation.clone());
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE radius_clients SET secret = ?3, old_secret = ?4, old_secret_expires_at = ?5, \
                     old_secret_last_used_at = ?6, secret_changed_at = ?7, new_secret_first_used_at = ?8 \
                     WHERE id = ?1 AND secret = ?2",
                    params![
                        id,
                        expected,
                        sealed,
                        r.sealed_old_secret,
                        r.old_expires_at.map(|t| t.0),
                        r.old_last_used_at.map(|t| t.0),
                        r.changed_at.map(|t| t.0),
                        r.new_first_used_at.map(|t| t.0)
                    ],
                )
                .map_err(map_err)?;
            if n == 0 {
                let exists = c
                    .query_row("SELECT 1 FROM radius_clients WHERE id = ?1", [id], |_| Ok(()))
                    .optional()
                    .map_err(map_err)?;
                return Err(match exists {
                    Some(()) => StoreError::Conflict("the RADIUS client's secret changed meanwhile".into()),
                    None => StoreError::NotFound("RADIUS client".into()),
                });
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn record_radius_secret_use(
        &self,
        id: i64,
        changed_at: Timestamp,
        slot: SecretSlot,
        at: Timestamp,
        first: AuditRecord,
    ) -> Result<bool, StoreError> {
        let job = move |c: &rusqlite::Connection| {
            let (first_sql, later_sql) = match slot {
                SecretSlot::Old => (
                    "UPDATE radius_clients SET old_secret_last_used_at = ?3 WHERE id = ?1 AND secret_changed_at = ?2 \
                     AND old_secret IS NOT NULL AND old_secret_last_used_at IS NULL",
                    Some(
                        "UPDATE radius_clients SET old_secret_last_used_at = ?3 WHERE id = ?1 \
                         AND secret_changed_at = ?2 AND old_secret IS NOT NULL AND old_secret_last_used_at < ?3",
                    ),
                ),
                SecretSlot::Current => (
                    "UPDATE radius_clients SET new_secret_first_used_at = ?3 WHERE id = ?1 \
                     AND secret_changed_at = ?2 AND new_secret_first_used_at IS NULL",
                    None,
                ),
            };
            let n = c
                .prepare_cached(first_sql)
                .map_err(map_err)?
                .execute(params![id, changed_at.0, at.0])
                .map_err(map_err)?;
            if n == 1 {
                insert_audit(c, &first)?;
                return Ok(true);
            }
            if let Some(sql) = later_sql {
                c.prepare_cached(sql).map_err(map_err)?.execute(params![id, changed_at.0, at.0]).map_err(map_err)?;
            }
            Ok(false)
        };
        match &self.engine {
            // Not login state: written beside the login engine, without
            // holding logins off or emptying its memory (an administrative
            // write would, once a minute per client during an overlap).
            Some(_) => self.writer.write(job).await,
            None => self.write(job).await,
        }
    }

    async fn drop_expired_radius_secret(
        &self,
        id: i64,
        now: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE radius_clients SET old_secret = NULL WHERE id = ?1 AND old_secret IS NOT NULL \
                     AND (old_secret_expires_at IS NULL OR old_secret_expires_at <= ?2)",
                    params![id, now.0],
                )
                .map_err(map_err)?;
            if n == 1 {
                insert_audit(c, &audit)?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn create_reply_rule(&self, rule: &ReplyRule, audit: AuditRecord) -> Result<(), StoreError> {
        let r = rule.clone();
        self.write(move |c| {
            let (scope, subject) = match &r.scope {
                RuleScope::All => ("all", String::new()),
                RuleScope::User(u) => ("user", u.clone()),
                RuleScope::Group(g) => ("group", g.clone()),
            };
            c.execute(
                "INSERT INTO reply_rules (id, scope, subject, attribute, value, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![r.id, scope, subject, r.attribute, r.value, r.created_at.0],
            )
            .map_err(map_err)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn reply_rules(&self) -> Result<Vec<ReplyRule>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, scope, subject, attribute, value, created_at FROM reply_rules ORDER BY created_at, id",
            )?
            .query_map([], rows::reply_rule)?
            .collect()
        })
    }

    async fn delete_reply_rule(&self, id: i64, audit: AuditRecord) -> Result<(), StoreError> {
        self.write(move |c| {
            let n = c.execute("DELETE FROM reply_rules WHERE id = ?1", [id]).map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("reply rule {id}")));
            }
            insert_audit(c, &audit)
        })
        .await
    }
}
