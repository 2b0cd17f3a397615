//! [`ConfigStore`] for the PostgreSQL backend: policy, realms and the
//! directory cache generation, RADIUS clients, reply rules, API keys.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::audit::AuditRecord;
use tessera_core::clock::Timestamp;
use tessera_core::model::{ApiKey, RadiusClient, ReplyRule, RuleScope, SecretRotation, SecretSlot};
use tessera_core::policy::Policy;
use tessera_core::realm::Realm;
use tessera_core::store::{ConfigStore, StoreError};

use super::db::{exec, exec_raw, map_err, one, opt, rows as query};
use super::{POLICY_TTL, PgStore, constraint, insert_audit, meta_get, meta_put, rows};
use crate::sqlite::rows::API_KEY_COLS;

#[async_trait]
impl ConfigStore for PgStore {
    async fn policy(&self) -> Result<Policy, StoreError> {
        if let Some((at, p)) = &*self.policy_cache.lock()
            && at.elapsed() < POLICY_TTL
        {
            return Ok(p.clone());
        }
        let c = self.client().await?;
        let v = meta_get(&c, "policy").await?.ok_or_else(|| StoreError::Corrupt("the policy is missing".into()))?;
        let p: Policy = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("stored policy: {e}")))?;
        *self.policy_cache.lock() = Some((std::time::Instant::now(), p.clone()));
        Ok(p)
    }

    async fn set_policy(&self, policy: &Policy, audit: AuditRecord) -> Result<(), StoreError> {
        let v = serde_json::to_vec(policy).map_err(|e| StoreError::Backend(e.to_string()))?;
        let r: Result<(), StoreError> = in_tx!(self, |tx| {
            async {
                meta_put(&tx, "policy", &v).await?;
                insert_audit(&tx, &audit).await
            }
            .await
        });
        *self.policy_cache.lock() = None;
        r
    }

    async fn create_api_key(&self, key: &ApiKey, audit: AuditRecord) -> Result<(), StoreError> {
        let k = key;
        in_tx!(self, |tx| {
            match exec_raw(
                &tx,
                &format!("INSERT INTO api_keys ({API_KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&k.id, &k.name, &k.prefix, &&k.digest[..], &k.created_at.0, &k.last_used_at.map(|t| t.0)],
            )
            .await
            {
                Err(e) => Err(constraint(e, || format!("API key `{}`", k.name), String::new)),
                Ok(_) => insert_audit(&tx, &audit).await,
            }
        })
    }

    async fn api_key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKey>, StoreError> {
        let c = self.client().await?;
        let sql = format!("SELECT {API_KEY_COLS} FROM api_keys WHERE digest = $1");
        opt(&c, &sql, &[&&digest[..]]).await?.as_ref().map(rows::api_key).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let c = self.client().await?;
        let sql = format!("SELECT {API_KEY_COLS} FROM api_keys ORDER BY name");
        query(&c, &sql, &[]).await?.iter().map(rows::api_key).collect()
    }

    async fn delete_api_key(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError> {
        self.delete_named("DELETE FROM api_keys WHERE name = $1", name, format!("API key `{name}`"), audit).await
    }

    async fn put_realm(&self, realm: &Realm, audit: AuditRecord) -> Result<(), StoreError> {
        let r = realm;
        let settings = serde_json::to_string(&r.settings).map_err(|e| StoreError::Backend(e.to_string()))?;
        in_tx!(self, |tx| {
            async {
                exec(
                    &tx,
                    "INSERT INTO realms (name, settings, secrets, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, secrets = excluded.secrets, \
                     updated_at = excluded.updated_at",
                    &[&r.name, &settings, &r.sealed_secrets, &r.created_at.0, &r.updated_at.0],
                )
                .await?;
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn realms(&self) -> Result<Vec<Realm>, StoreError> {
        let c = self.client().await?;
        query(&c, "SELECT name, settings, secrets, created_at, updated_at FROM realms ORDER BY name", &[])
            .await?
            .iter()
            .map(rows::realm)
            .collect()
    }

    async fn delete_realm(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError> {
        self.delete_named("DELETE FROM realms WHERE name = $1", name, format!("realm `{name}`"), audit).await
    }

    async fn directory_cache_generation(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        let v = meta_get(&c, "directory_cache_generation").await?;
        Ok(v.and_then(|b| String::from_utf8(b).ok()).and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    async fn bump_directory_cache_generation(&self, audit: AuditRecord) -> Result<i64, StoreError> {
        in_tx!(self, |tx| {
            async {
                // Lock (or create) the row, then move it on: exact across nodes.
                exec(
                    &tx,
                    "INSERT INTO meta (key, value) VALUES ('directory_cache_generation', convert_to('0', 'UTF8')) \
                     ON CONFLICT (key) DO NOTHING",
                    &[],
                )
                .await?;
                let cur =
                    one(&tx, "SELECT value FROM meta WHERE key = 'directory_cache_generation' FOR UPDATE", &[]).await?;
                let cur: Vec<u8> = rows::get(&cur, 0)?;
                let next = String::from_utf8(cur).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0) + 1;
                meta_put(&tx, "directory_cache_generation", next.to_string().as_bytes()).await?;
                insert_audit(&tx, &audit).await?;
                Ok(next)
            }
            .await
        })
    }

    async fn create_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError> {
        let k = client;
        in_tx!(self, |tx| {
            match exec_raw(
                &tx,
                "INSERT INTO radius_clients (id, name, address, secret, message_authenticator, ma_seen, created_at, \
                 default_realm) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &k.id,
                    &k.name,
                    &k.address.to_string(),
                    &k.sealed_secret,
                    &k.message_authenticator.as_str(),
                    &k.ma_seen,
                    &k.created_at.0,
                    &k.default_realm,
                ],
            )
            .await
            {
                Err(e) => Err(constraint(e, || format!("RADIUS client `{}`", k.name), String::new)),
                Ok(_) => insert_audit(&tx, &audit).await,
            }
        })
    }

    async fn radius_clients(&self) -> Result<Vec<RadiusClient>, StoreError> {
        let c = self.client().await?;
        query(&c, &format!("SELECT {} FROM radius_clients ORDER BY name", rows::RADIUS_CLIENT_COLS), &[])
            .await?
            .iter()
            .map(rows::radius_client)
            .collect()
    }

    async fn delete_radius_client(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError> {
        self.delete_named("DELETE FROM radius_clients WHERE name = $1", name, format!("RADIUS client `{name}`"), audit)
            .await
    }

    async fn mark_radius_client_signed(&self, id: i64) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(&c, "UPDATE radius_clients SET ma_seen = TRUE WHERE id = $1 AND NOT ma_seen", &[&id]).await.map(|_| ())
    }

    async fn update_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError> {
        let k = client;
        in_tx!(self, |tx| {
            match exec_raw(
                &tx,
                "UPDATE radius_clients SET address = $2, message_authenticator = $3, default_realm = $4 WHERE id = $1",
                &[&k.id, &k.address.to_string(), &k.message_authenticator.as_str(), &k.default_realm],
            )
            .await
            {
                Err(e) => Err(constraint(e, || format!("RADIUS client `{}`", k.name), String::new)),
                Ok(0) => Err(StoreError::NotFound(format!("RADIUS client `{}`", k.name))),
                Ok(_) => insert_audit(&tx, &audit).await,
            }
        })
    }

    async fn set_radius_client_secret(
        &self,
        id: i64,
        expected: &[u8],
        sealed_secret: &[u8],
        r: &SecretRotation,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let ms = |t: Option<Timestamp>| t.map(|t| t.0);
        let (expires, last_used, changed, first_used) =
            (ms(r.old_expires_at), ms(r.old_last_used_at), ms(r.changed_at), ms(r.new_first_used_at));
        in_tx!(self, |tx| {
            async {
                let n = exec(
                    &tx,
                    "UPDATE radius_clients SET secret = $3, old_secret = $4, old_secret_expires_at = $5, \
                     old_secret_last_used_at = $6, secret_changed_at = $7, new_secret_first_used_at = $8 \
                     WHERE id = $1 AND secret = $2",
                    &[
                        &id,
                        &expected,
                        &sealed_secret,
                        &r.sealed_old_secret,
                        &expires,
                        &last_used,
                        &changed,
                        &first_used,
                    ],
                )
                .await?;
                if n == 0 {
                    let exists = opt(&tx, "SELECT 1 FROM radius_clients WHERE id = $1", &[&id]).await?;
                    return Err(match exists {
                        Some(_) => StoreError::Conflict("the RADIUS client's secret changed meanwhile".into()),
                        None => StoreError::NotFound("RADIUS client".into()),
                    });
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn record_radius_secret_use(
        &self,
        id: i64,
        changed_at: Timestamp,
        slot: SecretSlot,
        at: Timestamp,
        first: AuditRecord,
    ) -> Result<bool, StoreError> {
        // Of several nodes seeing the first use at once, the first UPDATE
        // of one finds the column NULL; the others wait for its row lock,
        // re-check and find it set (READ COMMITTED), so one record only.
        let (first_sql, later_sql) = match slot {
            SecretSlot::Old => (
                "UPDATE radius_clients SET old_secret_last_used_at = $3 WHERE id = $1 AND secret_changed_at = $2 \
                 AND old_secret IS NOT NULL AND old_secret_last_used_at IS NULL",
                Some(
                    "UPDATE radius_clients SET old_secret_last_used_at = $3 WHERE id = $1 \
                     AND secret_changed_at = $2 AND old_secret IS NOT NULL AND old_secret_last_used_at < $3",
                ),
            ),
            SecretSlot::Current => (
                "UPDATE radius_clients SET new_secret_first_used_at = $3 WHERE id = $1 \
                 AND secret_changed_at = $2 AND new_secret_first_used_at IS NULL",
                None,
            ),
        };
        in_tx!(self, |tx| {
            async {
                if exec(&tx, first_sql, &[&id, &changed_at.0, &at.0]).await? == 1 {
                    insert_audit(&tx, &first).await?;
                    return Ok(true);
                }
                if let Some(sql) = later_sql {
                    exec(&tx, sql, &[&id, &changed_at.0, &at.0]).await?;
                }
                Ok(false)
            }
            .await
        })
    }

    async fn drop_expired_radius_secret(
        &self,
        id: i64,
        now: Timestamp,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        in_tx!(self, |tx| {
            async {
                let n = exec(
                    &tx,
                    "UPDATE radius_clients SET old_secret = NULL WHERE id = $1 AND old_secret IS NOT NULL \
                     AND (old_secret_expires_at IS NULL OR old_secret_expires_at <= $2)",
                    &[&id, &now.0],
                )
                .await?;
                if n == 1 {
                    insert_audit(&tx, &audit).await?;
                }
                Ok(n == 1)
            }
            .await
        })
    }

    async fn create_reply_rule(&self, rule: &ReplyRule, audit: AuditRecord) -> Result<(), StoreError> {
        let r = rule;
        let (scope, subject) = match &r.scope {
            RuleScope::All => ("all", String::new()),
            RuleScope::User(u) => ("user", u.clone()),
            RuleScope::Group(g) => ("group", g.clone()),
        };
        in_tx!(self, |tx| {
            async {
                exec(
                    &tx,
                    "INSERT INTO reply_rules (id, scope, subject, attribute, value, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&r.id, &scope, &subject, &r.attribute, &r.value, &r.created_at.0],
                )
                .await?;
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }

    async fn reply_rules(&self) -> Result<Vec<ReplyRule>, StoreError> {
        let c = self.client().await?;
        query(
            &c,
            "SELECT id, scope, subject, attribute, value, created_at FROM reply_rules ORDER BY created_at, id",
            &[],
        )
        .await?
        .iter()
        .map(rows::reply_rule)
        .collect()
    }

    async fn delete_reply_rule(&self, id: i64, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            async {
                let n = exec(&tx, "DELETE FROM reply_rules WHERE id = $1", &[&id]).await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("reply rule {id}")));
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }
}
