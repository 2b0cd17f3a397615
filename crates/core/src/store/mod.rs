//! The storage port. Every backend (embedded SQLite, PostgreSQL) implements
//! [`Store`] and passes the same conformance suite.
//!
//! The port is cut by role, one trait per kind of caller, each in its own
//! module with the types it owns:
//! * [`LoginStore`] (`login.rs`): the login path, and the decision rules the
//!   backends share;
//! * [`UserStore`] (`users.rs`): users, tokens, backup code sets, groups,
//!   the hardware token inventory;
//! * [`ConfigStore`] (`config.rs`): policy, realms, RADIUS clients, reply
//!   rules, API keys;
//! * [`AdminStore`] (`admins.rs`): web-console administrators;
//! * [`AuditStore`] (`audit.rs`): the audit log;
//! * [`KeyStore`] (`keys.rs`): sealed values, `meta`, node key reports, the
//!   database clock, the health ping.
//!
//! [`Store`] is all of them (a blanket impl), so `Arc<dyn Store>` still
//! carries the whole port; [`StoreError`] lives in `error.rs`. Calling a
//! role's method on a concrete store needs the role trait in scope
//! (`use tessera_core::store::prelude::*` brings all of them).
//!
//! Two rules shape these traits:
//! * Every state change carries its audit record and is applied atomically
//!   with it, so the audit trail cannot miss an acknowledged change.
//! * Authentication state changes are *conditional*
//!   ([`LoginStore::commit_attempt`]): the backend re-checks lock and replay
//!   state inside its serialised transaction, so concurrent attempts and
//!   several nodes stay exact. A result is returned only once it is durable.

pub mod admins;
pub mod audit;
pub mod config;
pub mod error;
pub mod keys;
pub mod login;
pub mod users;

pub use admins::{AdminAttempt, AdminChange, AdminStore, AdminVerdict, finish_admin_audit};
pub use audit::AuditStore;
pub use config::ConfigStore;
pub use error::StoreError;
pub use keys::{ClockSample, KeyStore, MetaKey, SealedChange, SealedColumn, SealedValue};
pub use login::{
    AuthAttempt, AuthOutcome, AuthenticateRequest, Authentication, BackupCodeState, Evaluation, Evaluator, Factor,
    LoginStore, REPLAYED_BACKUP_CODE, REPLAYED_CODE, Snapshot, StateTicket, Verdict, blocking_outcome,
    finish_attempt_audit, settle,
};
pub use users::{InventoryQuery, UserChange, UserQuery, UserStore};

/// Storage for everything tessera persists: every role at once. Implement
/// the role traits; this follows.
pub trait Store:
    LoginStore + UserStore + ConfigStore + AdminStore + AuditStore + KeyStore + Send + Sync + std::fmt::Debug
{
}

impl<T> Store for T where
    T: LoginStore
        + UserStore
        + ConfigStore
        + AdminStore
        + AuditStore
        + KeyStore
        + Send
        + Sync
        + std::fmt::Debug
        + ?Sized
{
}

/// The role traits, for calling the port's methods on a concrete store.
pub mod prelude {
    pub use super::{AdminStore, AuditStore, ConfigStore, KeyStore, LoginStore, Store, UserStore};
}
