//! [`KeyStore`] for the SQLite backend: sealed values and `meta` for
//! master key rotation, node key reports, clocks, the health ping.

use async_trait::async_trait;
use tessera_core::audit::AuditRecord;
use tessera_core::store::{KeyStore, MetaKey, SealedChange, SealedColumn, SealedValue, StoreError};

use super::{SqliteStore, sealed};

#[async_trait]
impl KeyStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    async fn sealed_values(
        &self,
        column: SealedColumn,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError> {
        self.readers.with(|c| sealed::values(c, column, after, limit))
    }

    async fn replace_sealed(&self, column: SealedColumn, changes: Vec<SealedChange>) -> Result<u64, StoreError> {
        self.write(move |c| {
            let mut n = 0;
            for ch in &changes {
                n += u64::from(sealed::replace(c, column, &ch.row, &ch.old, &ch.new)?);
            }
            Ok(n)
        })
        .await
    }

    async fn meta_value(&self, key: MetaKey<'_>) -> Result<Option<Vec<u8>>, StoreError> {
        self.readers.with(|c| sealed::meta_value(c, &key.name()))
    }

    async fn set_meta_value(
        &self,
        key: MetaKey<'_>,
        value: Option<Vec<u8>>,
        audit: Option<AuditRecord>,
    ) -> Result<(), StoreError> {
        let name = key.name();
        self.write(move |c| sealed::set_meta_value(c, &name, value.as_deref(), audit.as_ref())).await
    }

    async fn node_key_reports(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.readers.with(sealed::node_key_reports)
    }
}
