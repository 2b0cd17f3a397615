//! [`AdminStore`] for the SQLite backend: web-console administrators
//! (the queries are in `admins.rs`).

use async_trait::async_trait;
use tessera_core::audit::AuditRecord;
use tessera_core::store::{AdminStore, AuthOutcome, StoreError};

use super::{SqliteStore, admins, insert_audit};

#[async_trait]
impl AdminStore for SqliteStore {
    async fn create_admin(
        &self,
        admin: &tessera_core::model::AdminAccount,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let a = admin.clone();
        self.write(move |c| {
            admins::create(c, &a)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn admin_by_name(&self, name: &str) -> Result<Option<tessera_core::model::AdminAccount>, StoreError> {
        self.read(|c| admins::by_name(c, name))
    }

    async fn admin_by_id(
        &self,
        id: &tessera_core::model::AdminId,
    ) -> Result<Option<tessera_core::model::AdminAccount>, StoreError> {
        self.read(|c| admins::by_id(c, *id))
    }

    async fn list_admins(&self) -> Result<Vec<tessera_core::model::AdminAccount>, StoreError> {
        self.read(admins::list)
    }

    async fn update_admin(
        &self,
        id: &tessera_core::model::AdminId,
        change: tessera_core::store::AdminChange,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let id = *id;
        self.write(move |c| {
            admins::update(c, id, change)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn commit_admin_attempt(
        &self,
        attempt: tessera_core::store::AdminAttempt,
    ) -> Result<AuthOutcome, StoreError> {
        self.write(move |c| admins::attempt(c, attempt)).await
    }
}
