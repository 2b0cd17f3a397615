//! [`KeyStore`] for the PostgreSQL backend: sealed values and `meta` for
//! master key rotation, node key reports, clocks, the health ping.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::audit::AuditRecord;
use tessera_core::keys::sealed_key_id;
use tessera_core::store::{ClockSample, KeyStore, MetaKey, SealedChange, SealedColumn, SealedValue, StoreError};

use super::db::{exec, map_err, one, rows as query};
use super::{PgStore, SEALED_META, bad_row, clock, id_table, insert_audit, meta_get, meta_put, rows};

#[async_trait]
impl KeyStore for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        one(&c, "SELECT 1", &[]).await.map(|_| ())
    }

    async fn sealed_values(
        &self,
        column: SealedColumn,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError> {
        // Nodes of a shared database have no cluster identity of their own.
        if column == SealedColumn::NodeIdentity {
            return Ok(Vec::new());
        }
        let c = self.client().await?;
        let limit = i64::from(limit);
        if let Some((table, col)) = id_table(column) {
            let after: i64 = match after {
                Some(a) => a.parse().map_err(|_| bad_row(a))?,
                None => i64::MIN,
            };
            let sql = format!("SELECT id, {col} FROM {table} WHERE id > $1 AND {col} IS NOT NULL ORDER BY id LIMIT $2");
            return query(&c, &sql, &[&after, &limit])
                .await?
                .iter()
                .map(|r| Ok(SealedValue { row: rows::get::<i64>(r, 0)?.to_string(), sealed: rows::get(r, 1)? }))
                .collect();
        }
        let after = after.unwrap_or("");
        if column == SealedColumn::RealmSecrets {
            return query(
                &c,
                "SELECT name, secrets FROM realms WHERE name > $1 ORDER BY name LIMIT $2",
                &[&after, &limit],
            )
            .await?
            .iter()
            .map(|r| Ok(SealedValue { row: rows::get(r, 0)?, sealed: rows::get(r, 1)? }))
            .collect();
        }
        let mut out = Vec::new();
        for key in SEALED_META.iter().filter(|k| **k > after).take(limit as usize) {
            if let Some(sealed) = meta_get(&c, key).await? {
                out.push(SealedValue { row: (*key).to_string(), sealed });
            }
        }
        Ok(out)
    }

    async fn replace_sealed(&self, column: SealedColumn, changes: Vec<SealedChange>) -> Result<u64, StoreError> {
        if column == SealedColumn::NodeIdentity {
            return Ok(0);
        }
        in_tx!(self, |tx| {
            async {
                let mut n = 0u64;
                for ch in &changes {
                    let (new, old) = (&ch.new, &ch.old);
                    let changed = if let Some((table, col)) = id_table(column) {
                        let id: i64 = ch.row.parse().map_err(|_| bad_row(&ch.row))?;
                        let sql = format!("UPDATE {table} SET {col} = $1 WHERE id = $2 AND {col} = $3");
                        exec(&tx, &sql, &[new, &id, old]).await?
                    } else if column == SealedColumn::RealmSecrets {
                        exec(
                            &tx,
                            "UPDATE realms SET secrets = $1 WHERE name = $2 AND secrets = $3",
                            &[new, &ch.row, old],
                        )
                        .await?
                    } else {
                        if !SEALED_META.contains(&ch.row.as_str()) {
                            return Err(bad_row(&ch.row));
                        }
                        let k =
                            exec(&tx, "UPDATE meta SET value = $1 WHERE key = $2 AND value = $3", &[new, &ch.row, old])
                                .await?;
                        if k == 1
                            && ch.row == "key_check"
                            && let Some(id) = sealed_key_id(new)
                        {
                            meta_put(&tx, "key_id", id.as_bytes()).await?;
                        }
                        k
                    };
                    n += u64::from(changed == 1);
                }
                Ok(n)
            }
            .await
        })
    }

    async fn meta_value(&self, key: MetaKey<'_>) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.client().await?;
        meta_get(&c, &key.name()).await
    }

    async fn set_meta_value(
        &self,
        key: MetaKey<'_>,
        value: Option<Vec<u8>>,
        audit: Option<AuditRecord>,
    ) -> Result<(), StoreError> {
        let name = key.name();
        in_tx!(self, |tx| {
            async {
                match &value {
                    Some(v) => meta_put(&tx, &name, v).await?,
                    None => {
                        exec(&tx, "DELETE FROM meta WHERE key = $1", &[&name]).await?;
                    }
                }
                if let Some(a) = &audit {
                    insert_audit(&tx, a).await?;
                }
                Ok(())
            }
            .await
        })
    }

    async fn node_key_reports(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let c = self.client().await?;
        let prefix = MetaKey::NODE_KEY_PREFIX;
        let n = prefix.len() as i32;
        query(&c, "SELECT key, value FROM meta WHERE left(key, $1) = $2 ORDER BY key", &[&n, &prefix])
            .await?
            .iter()
            .map(|r| {
                let key: String = rows::get(r, 0)?;
                Ok((key[prefix.len()..].to_string(), rows::get(r, 1)?))
            })
            .collect()
    }

    async fn measure_database_clock(&self) -> Result<Option<ClockSample>, StoreError> {
        let c = self.client().await?;
        let sample = clock::measure(&c).await.map_err(map_err)?;
        self.clock.record(sample);
        Ok(Some(sample))
    }

    fn connection_clock_sample(&self) -> Option<ClockSample> {
        self.clock.latest()
    }
}
