//! tessera's domain: users, tokens and policies; the master key and sealed
//! secrets; lockout; the authentication decision; administrative operations;
//! and the ports they run on ([`store::Store`], [`clock::Clock`],
//! [`random::Random`], [`password::PasswordHasher`]).
//!
//! No sockets, no SQL, no wall-clock reads: adapters live in `tessera-store`
//! and `tessera-server`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
pub mod admins;
pub mod audit;
pub mod auth;
pub mod cidr;
pub mod clock;
pub mod context;
pub mod error;
pub mod guarded_store;
pub mod keys;
pub mod lockout;
pub mod model;
pub mod names;
pub mod oob;
pub mod otp_match;
pub mod password;
pub mod policy;
pub mod portal;
pub mod random;
pub mod realm;
pub mod replication;
pub mod rotation;
pub mod store;
pub mod views;
pub mod wildcard;

pub use error::CoreError;
