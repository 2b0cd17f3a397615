//! Records the storage test binaries build their cases from.
#![allow(dead_code)] // each test binary uses its own subset

use tessera_core::clock::Timestamp;
use tessera_core::keys::{Keyring, Purpose};
use tessera_core::lockout::LockState;
use tessera_core::model::{Token, TokenId, TokenState, User, UserId};
use tessera_core::random::OsRandom;
use tessera_otp::OtpParams;

pub const T0: i64 = 1_800_000_000_000;

pub fn at(offset_s: i64) -> Timestamp {
    Timestamp(T0 + offset_s * 1000)
}

/// A new user in the default realm, no password, no tokens.
pub fn user(name: &str) -> User {
    User {
        id: UserId::new_random(),
        realm: "default".into(),
        username: name.into(),
        password_hash: None,
        disabled: false,
        registered: false,
        lock: LockState::default(),
        last_attempt: None,
        last_success: None,
        grace_used: 0,
        created_at: at(0),
    }
}

/// A default-parameter token of `user` with the RFC 4226 test secret.
pub fn token(user: &User, serial: &str, state: TokenState, keys: &Keyring) -> Token {
    let id = TokenId::new_random();
    Token {
        sealed_secret: keys.seal(&OsRandom, Purpose::OtpSecret, &id.to_string(), b"12345678901234567890"),
        id,
        user_id: user.id,
        serial: serial.into(),
        params: OtpParams::default(),
        counter: 0,
        drift: 0,
        state,
        description: String::new(),
        created_at: at(0),
        last_used_at: None,
        oob: None,
    }
}

pub fn active_token(user: &User, serial: &str, keys: &Keyring) -> Token {
    token(user, serial, TokenState::Active, keys)
}
