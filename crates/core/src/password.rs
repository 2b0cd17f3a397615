//! Local passwords: argon2id with the library's defaults (19 MiB, t=2, p=1,
//! the OWASP minimum), stored as PHC strings.
//!
//! Hashing is deliberately slow, so the engine reaches it through the
//! [`PasswordHasher`] port; the server implements that on a bounded pool of
//! blocking threads so argon2 never stalls the network tasks.

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use async_trait::async_trait;
use zeroize::Zeroizing;

/// Longer inputs are refused before hashing; no real password is this long
/// and it bounds the work an attacker can ask for.
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("password hashing failed")]
    Hashing,
}

pub fn check_password_rules(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// argon2id PHC string for `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|_| PasswordError::Hashing)
}

/// Constant-work check of `password` against a PHC string. A malformed
/// stored hash verifies nothing.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        dummy_verify(password);
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as a real verification, so that "no such user" or
/// "user has no password" cannot be told apart from "wrong password" by timing.
pub fn dummy_verify(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("tessera dummy password").unwrap_or_default());
    let truncated: String = password.chars().take(64).collect();
    let _ = PasswordHash::new(phc).map(|h| Argon2::default().verify_password(truncated.as_bytes(), &h).is_ok());
}

/// Where the engine sends password work.
#[async_trait]
pub trait PasswordHasher: Send + Sync + std::fmt::Debug {
    async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError>;
    /// `phc = None` runs a dummy verification and returns false.
    async fn verify(&self, phc: Option<String>, password: Zeroizing<String>) -> bool;
}

/// Runs argon2 on the calling thread; for the CLI and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct InlineHasher;

#[async_trait]
impl PasswordHasher for InlineHasher {
    async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError> {
        hash_password(&password)
    }
    async fn verify(&self, phc: Option<String>, password: Zeroizing<String>) -> bool {
        match phc {
            Some(phc) => verify_password(&phc, &password),
            None => {
                dummy_verify(&password);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsf"));
        assert!(!verify_password("not a hash", "x"));
        assert!(!verify_password(&h, &"x".repeat(MAX_PASSWORD_LEN + 1)));
    }

    #[test]
    fn rules() {
        assert_eq!(check_password_rules("short"), Err(PasswordError::TooShort));
        assert!(check_password_rules("long enough").is_ok());
    }
}
