//! The user role of the storage port: users, their tokens (created,
//! activated, resynchronised), backup code sets, local groups and the
//! hardware token inventory.

use async_trait::async_trait;

use crate::audit::AuditRecord;
use crate::clock::Timestamp;
use crate::model::{InventoryToken, Token, TokenId, User, UserId, UserStatus};
use crate::wildcard::Wildcard;

use super::StoreError;

/// A listing filter for users.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub realm: Option<String>,
    pub pattern: Option<Wildcard>,
    pub status: Option<UserStatus>,
    pub limit: u32,
    pub offset: u32,
}

/// A listing filter for the token inventory.
#[derive(Debug, Clone, Default)]
pub struct InventoryQuery {
    pub assigned: Option<bool>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

/// An administrative change to one user.
#[derive(Debug, Clone)]
pub enum UserChange {
    /// argon2id PHC string, or `None` to remove the local password.
    SetPassword(Option<String>),
    SetDisabled(bool),
    /// Clears the failure count, lock and throttle.
    Unlock,
    /// Removes tokens, backup codes, lock state and last-access records;
    /// the user is unregistered again. The password is kept.
    Reset,
    Delete,
}

/// Users and what belongs to them, as administration reads and changes it.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, user: &User, audit: AuditRecord) -> Result<(), StoreError>;
    async fn user_by_name(&self, realm: &str, username: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    async fn list_users(&self, query: &UserQuery, now: Timestamp) -> Result<Vec<User>, StoreError>;
    async fn count_users(&self) -> Result<u64, StoreError>;
    /// Applies `change`; NotFound if the user does not exist.
    async fn update_user(&self, id: &UserId, change: UserChange, audit: AuditRecord) -> Result<(), StoreError>;
    /// Inserts a token. An active token marks its user registered.
    async fn create_token(&self, token: &Token, audit: AuditRecord) -> Result<(), StoreError>;
    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError>;
    async fn token_by_serial(&self, serial: &str) -> Result<Option<Token>, StoreError>;
    async fn tokens_for_user(&self, user: &UserId) -> Result<Vec<Token>, StoreError>;
    /// All tokens, ordered by serial, for inventory listings.
    async fn list_tokens(&self, limit: u32, offset: u32) -> Result<Vec<Token>, StoreError>;
    /// Deletes a token; a user left without active tokens becomes unregistered.
    async fn delete_token(&self, id: &TokenId, audit: AuditRecord) -> Result<(), StoreError>;
    /// Confirms a pending token with the code that matched `matched`: it
    /// becomes active with its floor at `matched + 1`, and the user registered.
    /// Returns false (and changes nothing) if the token is no longer pending.
    async fn activate_token(
        &self,
        id: &TokenId,
        matched: i64,
        drift: i32,
        audit: AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Sets a token's floor and drift after an admin resync. The floor never
    /// moves backwards (a resync must not re-open used codes).
    async fn resync_token(&self, id: &TokenId, floor: i64, drift: i32, audit: AuditRecord) -> Result<(), StoreError>;
    /// Replaces the user's backup codes with a fresh set (old ones void).
    async fn replace_backup_codes(
        &self,
        user: &UserId,
        digests: &[[u8; 32]],
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<(), StoreError>;
    async fn backup_codes_left(&self, user: &UserId) -> Result<u32, StoreError>;
    /// Adds seeds, all or none: a serial already in the inventory or used by
    /// a token is a conflict.
    async fn add_inventory(&self, items: &[InventoryToken], audit: AuditRecord) -> Result<(), StoreError>;
    async fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryToken>, StoreError>;
    async fn inventory_item(&self, serial: &str) -> Result<Option<InventoryToken>, StoreError>;
    /// Makes `token` (built from the seed) the user's, if the seed is still
    /// unassigned (else `Conflict`), atomically.
    async fn assign_inventory(&self, item: i64, token: &Token, audit: AuditRecord) -> Result<(), StoreError>;
    /// Deletes the token made from the seed and keeps the floor it reached.
    async fn unassign_inventory(&self, item: i64, audit: AuditRecord) -> Result<(), StoreError>;
    async fn add_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError>;
    async fn remove_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError>;
    async fn groups_of(&self, user: UserId) -> Result<Vec<String>, StoreError>;
    /// Every group with its members' ids.
    async fn groups(&self) -> Result<Vec<(String, Vec<UserId>)>, StoreError>;
}
