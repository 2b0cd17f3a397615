//! The ports the domain services run on, bundled once and shared.

use std::sync::Arc;

use crate::clock::Clock;
use crate::keys::Keyring;
use crate::password::PasswordHasher;
use crate::random::Random;
use crate::realm::Directory;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Context {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub keys: Arc<Keyring>,
    /// First-factor directories (LDAP, Entra ID) by realm.
    pub directory: Arc<dyn Directory>,
    /// This node's name, recorded in every audit line.
    pub node: String,
    /// Issuer shown in authenticator apps (`otpauth://…?issuer=`).
    pub issuer: String,
}
