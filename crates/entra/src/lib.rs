//! Microsoft Entra ID as a first-factor source, through the OAuth2 resource
//! owner password credentials (ROPC) grant.
//!
//! tessera checks the OTP itself; Entra only has to say whether the
//! *password* is right. The ROPC grant cannot complete MFA, so for an account
//! protected by MFA the right password earns an "MFA required" error rather
//! than a token — and that error is the proof tessera wants. A *token* means
//! the account has no MFA at all, which is refused unless
//! [`EntraConfig::allow_no_mfa`] says otherwise.
//!
//! * [`classify`] turns the token endpoint's answer (status and body) into an
//!   [`Outcome`]. It is pure: no sockets, no clock, no logging.
//! * [`EntraSource`] sends the request (reqwest over rustls, TLS always
//!   verified, the whole call bounded by the configured timeout) and runs the
//!   classifier. It never keeps or logs a password or a token, and an error
//!   or `Debug` output never contains one.
//! * `stub` (cargo feature `stub`): a local HTTPS stub of the token endpoint
//!   with scripted answers, for tests.
//!
//! What this crate must not do: decide the login. It reports what Entra
//! said; the caller combines that with the OTP check, the user's status and
//! the policy, and writes the audit record ([`Outcome::audit_reason`]).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod classify;
mod client;
mod config;
mod error;
#[cfg(feature = "stub")]
pub mod stub;

pub use classify::{Outcome, classify};
pub use client::{EntraSource, MAX_IN_FLIGHT, MAX_PASSWORD_BYTES, MAX_RESPONSE_BYTES, TestReport};
pub use config::{DEFAULT_AUTHORITY, DEFAULT_SCOPE, DEFAULT_TIMEOUT, EntraConfig, MAX_TIMEOUT, MAX_USERNAME_BYTES};
pub use error::EntraError;
/// The URL type of [`EntraConfig::authority`] (the `url` crate's, as
/// re-exported by reqwest).
pub use reqwest::Url;
