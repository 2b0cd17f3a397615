//! Local passwords: argon2id with the library's defaults (19 MiB, t=2, p=1,
//! the OWASP minimum), stored as PHC strings.
//!
//! Hashing is deliberately slow, so the engine reaches it through the
//! [`PasswordHasher`] port; the server implements that on a bounded pool of
//! blocking threads so argon2 never stalls the network tasks.
//!
//! What a login costs is decided by the shape of its input alone
//! ([`code_shaped`]): a code never costs argon2, anything longer costs one
//! verification, real or dummy (see `auth.rs`). So no password may look
//! like a code ([`check_password_rules`]).

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use async_trait::async_trait;
use zeroize::Zeroizing;

/// Longer inputs are refused before hashing; no real password is this long
/// and it bounds the work an attacker can ask for.
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MIN_PASSWORD_LEN: usize = 8;

/// The longest code a login can carry without a password: a backup code
/// (TOTP/HOTP and email/SMS codes have 6 or 8 digits).
pub const LONGEST_CODE: usize = tessera_otp::BACKUP_CODE_DIGITS;

/// Whether `input` can be nothing but a code: at most [`LONGEST_CODE`]
/// digits, with at most one space or dash besides (a backup code as
/// printed, `12345-67890`). Such an input holds no password, so it never
/// costs argon2, for anyone; and no password may have this shape (else a
/// timing difference would tell users with a password apart).
pub fn code_shaped(input: &str) -> bool {
    let digits = input.bytes().filter(u8::is_ascii_digit).count();
    input.len() <= LONGEST_CODE + 1
        && digits <= LONGEST_CODE
        && input.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b' ')
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    /// Digits only (with at most {LONGEST_CODE}): it would be taken for a
    /// one-time code, see [`code_shaped`].
    #[error("password must not be only digits (up to {LONGEST_CODE} digits look like a one-time code)")]
    LooksLikeCode,
    #[error("password hashing failed")]
    Hashing,
    /// Every password thread was busy and too many checks were waiting
    /// already (or for too long): refused rather than queued.
    #[error("too many password checks at once; try again")]
    Busy,
}

pub fn check_password_rules(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    if code_shaped(password) {
        return Err(PasswordError::LooksLikeCode);
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
/// stored hash verifies nothing (after the same work).
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        dummy_verify(password);
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => {
            dummy_verify(password);
            false
        }
    }
}

/// Spends the same time as a real verification, so that "no such user" or
/// "user has no password" cannot be told apart from "wrong password" by timing.
/// The dummy hash is made once, by [`hash_password`], so it has the
/// parameters real hashes get.
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
    /// Whether `password` matches `phc`; `phc = None` runs a dummy
    /// verification and answers false. `Err(Busy)`: refused unchecked
    /// (overload), which a caller must treat as neither right nor wrong.
    async fn verify(&self, phc: Option<String>, password: Zeroizing<String>) -> Result<bool, PasswordError>;
}

/// Runs argon2 on the calling thread; for the CLI and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct InlineHasher;

#[async_trait]
impl PasswordHasher for InlineHasher {
    async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError> {
        hash_password(&password)
    }
    async fn verify(&self, phc: Option<String>, password: Zeroizing<String>) -> Result<bool, PasswordError> {
        Ok(match phc {
            Some(phc) => verify_password(&phc, &password),
            None => {
                dummy_verify(&password);
                false
            }
        })
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
        for code_like in ["12345678", "1234567890", "12345-67890", "1234 5678"] {
            assert_eq!(check_password_rules(code_like), Err(PasswordError::LooksLikeCode), "{code_like}");
        }
        assert!(check_password_rules("12345678901").is_ok(), "more digits than any code");
        assert!(check_password_rules("1234567a").is_ok());
    }

    #[test]
    fn code_shapes() {
        for code in ["", "123456", "12345678", "1234567890", "12345-67890", "12345 67890"] {
            assert!(code_shaped(code), "{code:?}");
        }
        for not in ["12345678901", "12345--67890", "abc123", "pass123456", "correct horse", "hunter22123456"] {
            assert!(!code_shaped(not), "{not:?}");
        }
    }
}
