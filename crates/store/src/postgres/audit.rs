//! [`AuditStore`] for the PostgreSQL backend: appending, listing, pruning
//! and verifying the audit log (the hash chain is `audit_chain.rs`).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::audit::chain::{ChainedAudit, Report as ChainReport};
use tessera_core::audit::{AuditQuery, AuditRecord};
use tessera_core::clock::Timestamp;
use tessera_core::store::{AuditStore, StoreError};

use super::db::{DynParams, map_err, rows as query};
use super::{PgStore, audit_chain, insert_audit, rows};
use crate::sqlite::rows::AUDIT_COLS;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, record: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| insert_audit(&tx, &record).await)
    }

    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut p = DynParams::default();
        let mut sql = format!("SELECT {AUDIT_COLS} FROM audit WHERE TRUE");
        if let Some(t) = q.since {
            sql.push_str(&format!(" AND at >= {}", p.push(t.0)));
        }
        if let Some(t) = q.until {
            sql.push_str(&format!(" AND at < {}", p.push(t.0)));
        }
        if let Some(a) = &q.actor {
            sql.push_str(&format!(" AND actor = {}", p.push(a.clone())));
        }
        if let Some(a) = &q.action {
            sql.push_str(&format!(" AND action = {}", p.push(a.clone())));
        }
        if let Some(t) = &q.target {
            // The target, or a name after it (`user@realm`, `user SERIAL`).
            let prefixes = tessera_core::audit::target_prefixes(t, q.target_match);
            // substr's length is an int4 parameter.
            let len = i32::try_from(prefixes.first().map_or(0, |p| p.chars().count())).unwrap_or(i32::MAX);
            let (target, len) = (p.push(t.clone()), p.push(len));
            let list: Vec<String> = prefixes.into_iter().map(|x| p.push(x)).collect();
            sql.push_str(&format!(" AND (target = {target} OR substr(target, 1, {len}) IN ({}))", list.join(", ")));
        }
        if let Some(r) = q.result {
            sql.push_str(&format!(" AND result = {}", p.push(r.as_str().to_string())));
        }
        if let Some(b) = q.before_id {
            sql.push_str(&format!(" AND id < {}", p.push(b)));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", p.push(i64::from(q.limit))));
        let c = self.client().await?;
        query(&c, &sql, &p.refs()).await?.iter().map(rows::audit).collect()
    }

    async fn prune_audit(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        in_tx!(self, |tx| audit_chain::prune(&tx, before, limit).await)
    }

    async fn audit_after(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAudit>, StoreError> {
        let c = self.client().await?;
        // One reader at a time per store; the forwarder is the only caller.
        let mut horizon = self.audit_horizon.lock().await;
        let upto = horizon.advance(&c).await?;
        drop(horizon);
        audit_chain::after(&c, after_id, upto, limit).await
    }

    async fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        Self::walk_audit_chain(self.client().await?).await
    }
}
