//! [`AdminStore`] for the PostgreSQL backend: web-console administrators
//! (the queries are in `admins.rs`).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tessera_core::audit::AuditRecord;
use tessera_core::model::{AdminAccount, AdminId};
use tessera_core::store::{AdminAttempt, AdminChange, AdminStore, AuthOutcome, StoreError};

use super::db::map_err;
use super::{PgStore, admins, insert_audit};

#[async_trait]
impl AdminStore for PgStore {
    async fn create_admin(&self, admin: &AdminAccount, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            admins::create(&tx, admin).await?;
            insert_audit(&tx, &audit).await
        })
    }

    async fn admin_by_name(&self, name: &str) -> Result<Option<AdminAccount>, StoreError> {
        admins::by_name(&self.client().await?, name).await
    }

    async fn admin_by_id(&self, id: &AdminId) -> Result<Option<AdminAccount>, StoreError> {
        admins::by_id(&self.client().await?, *id, false).await
    }

    async fn list_admins(&self) -> Result<Vec<AdminAccount>, StoreError> {
        admins::list(&self.client().await?).await
    }

    async fn update_admin(&self, id: &AdminId, change: AdminChange, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            admins::update(&tx, *id, change).await?;
            insert_audit(&tx, &audit).await
        })
    }

    async fn commit_admin_attempt(&self, attempt: AdminAttempt) -> Result<AuthOutcome, StoreError> {
        in_tx!(self, |tx| admins::attempt(&tx, attempt).await)
    }
}
