//! [`AuditStore`] for the SQLite backend: appending, listing, pruning
//! and verifying the audit log (the hash chain is `audit_chain.rs`).

use async_trait::async_trait;
use tessera_core::audit::chain::{ChainedAudit, Report as ChainReport};
use tessera_core::audit::{AuditQuery, AuditRecord};
use tessera_core::clock::Timestamp;
use tessera_core::store::{AuditStore, StoreError};

use super::rows::AUDIT_COLS;
use super::{SqliteStore, audit_chain, insert_audit, rows};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, record: AuditRecord) -> Result<(), StoreError> {
        match &self.engine {
            Some(e) if e.enabled() => self.engine_append_audit(e, record).await,
            _ => self.write_hot(move |c| insert_audit(c, &record)).await,
        }
    }

    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.fresh().await?;
        let mut sql = format!("SELECT {AUDIT_COLS} FROM audit WHERE 1 = 1");
        let mut named: Vec<(&str, Box<dyn rusqlite::ToSql>)> = Vec::new();
        if let Some(t) = q.since {
            sql.push_str(" AND at >= :since");
            named.push((":since", Box::new(t.0)));
        }
        if let Some(t) = q.until {
            sql.push_str(" AND at < :until");
            named.push((":until", Box::new(t.0)));
        }
        if let Some(a) = &q.actor {
            sql.push_str(" AND actor = :actor");
            named.push((":actor", Box::new(a.clone())));
        }
        if let Some(a) = &q.action {
            sql.push_str(" AND action = :action");
            named.push((":action", Box::new(a.clone())));
        }
        if let Some(t) = &q.target {
            // The target, or a name after it (`user@realm`, `user SERIAL`).
            let prefixes = tessera_core::audit::target_prefixes(t, q.target_match);
            let len = prefixes.first().map_or(0, |p| p.chars().count() as i64);
            // At most two prefixes: named parameters :p0, :p1.
            const NAMES: [&str; 2] = [":p0", ":p1"];
            let list: Vec<&str> = NAMES.iter().take(prefixes.len()).copied().collect();
            sql.push_str(&format!(" AND (target = :target OR substr(target, 1, :plen) IN ({}))", list.join(", ")));
            named.push((":plen", Box::new(len)));
            named.push((":target", Box::new(t.clone())));
            for (name, p) in NAMES.iter().zip(prefixes) {
                named.push((name, Box::new(p)));
            }
        }
        if let Some(r) = q.result {
            sql.push_str(" AND result = :result");
            named.push((":result", Box::new(r.as_str())));
        }
        if let Some(b) = q.before_id {
            sql.push_str(" AND id < :before");
            named.push((":before", Box::new(b)));
        }
        sql.push_str(" ORDER BY id DESC LIMIT :limit");
        named.push((":limit", Box::new(q.limit)));
        self.read(|c| {
            let params: Vec<(&str, &dyn rusqlite::ToSql)> = named.iter().map(|(k, v)| (*k, v.as_ref())).collect();
            c.prepare_cached(&sql)?.query_map(params.as_slice(), rows::audit)?.collect()
        })
    }

    async fn prune_audit(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.write(move |c| audit_chain::prune(c, before, limit)).await
    }

    async fn audit_after(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAudit>, StoreError> {
        self.fresh().await?;
        self.read(|c| audit_chain::after(c, after_id, limit))
    }

    async fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        self.fresh().await?;
        // A walk over the whole log: on its own connection and thread, so it
        // neither holds a pooled reader nor blocks an async worker.
        let path = self.path.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("tessera-audit-verify".into())
            .spawn(move || {
                let _ = tx.send(audit_chain::verify_file(&path));
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the verification thread: {e}")))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the verification thread stopped".into()))??
            .ok_or_else(|| StoreError::Backend("the database schema predates the audit chain".into()))
    }
}
