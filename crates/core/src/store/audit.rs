//! The audit role of the storage port: appending, listing, pruning,
//! forwarding and verifying the hash-chained audit log.

use async_trait::async_trait;

use crate::audit::chain::{ChainedAudit, Report as ChainReport};
use crate::audit::{AuditQuery, AuditRecord};
use crate::clock::Timestamp;

use super::StoreError;

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, record: AuditRecord) -> Result<(), StoreError>;
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Deletes up to `limit` of the oldest audit records, in id order, up to
    /// the first that is not older than `before`; returns how many. Each
    /// node's hash chain is anchored at its last deleted record in the same
    /// transaction, so the rest still verifies.
    async fn prune_audit(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError>;
    /// Committed audit records with ids above `after_id`, oldest first, with
    /// their chain links (for forwarding, e.g. to syslog).
    async fn audit_after(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAudit>, StoreError>;
    /// Walks every node's audit hash chain in one consistent read and
    /// reports what was changed, deleted or reordered (see [`crate::audit::chain`]).
    async fn verify_audit_chain(&self) -> Result<ChainReport, StoreError>;
}
