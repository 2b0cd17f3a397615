//! Sans-IO RADIUS codec for tessera's RADIUS front end.
//!
//! What it does: decodes and encodes RADIUS packets (RFC 2865, RFC 2866,
//! RFC 5176 codes, RFC 5997 Status-Server) with strict length checks;
//! computes and verifies the Request/Response Authenticators and the
//! Message-Authenticator (RFC 3579, with the attribute placed first in
//! responses as BlastRADIUS hardening asks); hides and recovers
//! User-Password (RFC 2865 §5.2); and reads FreeRADIUS-format dictionaries
//! (a set of them is built in) to name attributes, build them from text and
//! describe them for logs.
//!
//! What it must not do: open sockets, read clocks, own a randomness source,
//! or log. The Request Authenticator of an Access-Request, and anything
//! else that must be random, comes from the caller. Decoding must never
//! panic and never allocate in proportion to anything but the bytes
//! actually received; errors and descriptions must never contain a shared
//! secret or a password.
//!
//! ```
//! use tessera_radius::{Code, MessageAuthenticator, Packet, attr, hide_password, unhide_password,
//!     verify_request, verify_response};
//!
//! let secret = b"s3cret-shared";
//! // Client side (a NAS): the authenticator comes from the caller's RNG.
//! let authenticator = [0x42; 16];
//! let mut req = Packet::new(Code::AccessRequest, 7, authenticator);
//! req.push(attr::USER_NAME, "alice");
//! req.push(attr::USER_PASSWORD, hide_password(secret, &authenticator, b"123456")?);
//! let datagram = req.encode_request(secret, true)?;
//!
//! // Server side.
//! assert_eq!(verify_request(&datagram, secret)?, MessageAuthenticator::Valid);
//! let request = Packet::decode(&datagram)?;
//! let password = unhide_password(secret, &request.authenticator, request.attr(attr::USER_PASSWORD).unwrap())?;
//! assert_eq!(&password[..], b"123456");
//! let mut reply = Packet::response_to(&request, Code::AccessAccept);
//! reply.push(attr::REPLY_MESSAGE, "welcome");
//! let answer = reply.encode_response(&request, secret, true)?;
//!
//! // Back on the client.
//! assert_eq!(verify_response(&answer, &authenticator, secret)?, MessageAuthenticator::Valid);
//! # Ok::<(), tessera_radius::RadiusError>(())
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

pub mod attr;
pub mod code;
pub mod crypto;
pub mod dictionary;
pub mod error;
pub mod packet;

pub use code::Code;
pub use crypto::*;
pub use dictionary::{AttrDef, AttrFlags, AttrType, Dictionary, Vendor};
pub use error::RadiusError;
pub use packet::{Attribute, HEADER_LEN, MAX_PACKET_LEN, MAX_VALUE_LEN, Packet};
