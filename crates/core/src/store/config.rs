//! The configuration role of the storage port: the policy, realms (and the
//! directory cache generation running nodes watch), RADIUS clients, reply
//! rules and API keys.

use async_trait::async_trait;

use crate::audit::AuditRecord;
use crate::clock::Timestamp;
use crate::model::{ApiKey, RadiusClient, ReplyRule, SecretRotation, SecretSlot};
use crate::policy::Policy;
use crate::realm::Realm;

use super::StoreError;

/// Settings the administrators change and every node reads.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    async fn policy(&self) -> Result<Policy, StoreError>;
    async fn set_policy(&self, policy: &Policy, audit: AuditRecord) -> Result<(), StoreError>;
    async fn create_api_key(&self, key: &ApiKey, audit: AuditRecord) -> Result<(), StoreError>;
    async fn api_key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKey>, StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    async fn delete_api_key(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;
    /// Creates or replaces the realm `realm.name`.
    async fn put_realm(&self, realm: &Realm, audit: AuditRecord) -> Result<(), StoreError>;
    async fn realms(&self) -> Result<Vec<Realm>, StoreError>;
    async fn delete_realm(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;
    /// A counter bumped by "flush the directory cache"; running nodes watch it.
    async fn directory_cache_generation(&self) -> Result<i64, StoreError>;
    async fn bump_directory_cache_generation(&self, audit: AuditRecord) -> Result<i64, StoreError>;
    async fn create_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError>;
    async fn radius_clients(&self) -> Result<Vec<RadiusClient>, StoreError>;
    async fn delete_radius_client(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;
    /// `auto` mode: remember that this client signs its requests.
    async fn mark_radius_client_signed(&self, id: i64) -> Result<(), StoreError>;
    /// Changes the address, Message-Authenticator mode and default realm
    /// of client `client.id` (nothing else). `NotFound` if it is gone.
    async fn update_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError>;
    /// Replaces client `id`'s secret and its rotation columns, only if the
    /// stored secret is still `expected` (the sealed value read before):
    /// `Conflict` if it changed meanwhile, `NotFound` if the client is gone.
    async fn set_radius_client_secret(
        &self,
        id: i64,
        expected: &[u8],
        sealed_secret: &[u8],
        rotation: &SecretRotation,
        audit: AuditRecord,
    ) -> Result<(), StoreError>;
    /// Records a request signed with `slot` of the rotation made at
    /// `changed_at` (nothing if the client has changed its secret since):
    /// `Old` moves `old_last_used_at` forward while the old secret is
    /// stored; `Current` sets `new_first_used_at` once. `first` is appended
    /// exactly when this is the first such use since the change; returns
    /// whether it was.
    async fn record_radius_secret_use(
        &self,
        id: i64,
        changed_at: Timestamp,
        slot: SecretSlot,
        at: Timestamp,
        first: AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Removes client `id`'s old secret if it has expired at `now`;
    /// `audit` is appended only if it did (so of several nodes cleaning up
    /// at once, one records it). Returns whether it did.
    async fn drop_expired_radius_secret(&self, id: i64, now: Timestamp, audit: AuditRecord)
    -> Result<bool, StoreError>;
    async fn create_reply_rule(&self, rule: &ReplyRule, audit: AuditRecord) -> Result<(), StoreError>;
    async fn reply_rules(&self) -> Result<Vec<ReplyRule>, StoreError>;
    async fn delete_reply_rule(&self, id: i64, audit: AuditRecord) -> Result<(), StoreError>;
}
