//! The single error type of the RADIUS codec.
//!
//! Messages name the bound or rule that was broken. They must never contain
//! a shared secret, a password (hidden or clear) or any attribute value:
//! these errors end up in logs, and a RADIUS server logs what strangers send
//! it. Attribute *names* and numbers, offsets and lengths are fine.

use thiserror::Error;

/// Everything that can go wrong while decoding, encoding or authenticating
/// RADIUS packets, and while reading dictionaries.
///
/// An authenticator that does not match is usually *not* an error: the
/// verification functions report it as
/// [`MessageAuthenticator::Invalid`](crate::MessageAuthenticator::Invalid) so
/// the caller drops the packet silently, as RFC 2865 asks. Errors are for
/// input that cannot be a RADIUS packet at all and for caller mistakes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RadiusError {
    /// Fewer octets than a RADIUS header.
    #[error("datagram is {len} bytes; a RADIUS packet needs at least 20")]
    TooShort {
        /// Octets received.
        len: usize,
    },

    /// The header's Length field is outside the range RFC 2865 §3 allows.
    #[error("header Length {length} is outside 20..=4096")]
    BadLength {
        /// The Length field.
        length: u16,
    },

    /// The header's Length field claims more octets than were received.
    #[error("header Length {length} exceeds the {received} bytes received")]
    Truncated {
        /// The Length field.
        length: u16,
        /// Octets received.
        received: usize,
    },

    /// An attribute's own length is impossible.
    #[error("attribute at offset {offset}: {reason}")]
    BadAttribute {
        /// Offset of the attribute's Type octet from the start of the packet.
        offset: usize,
        /// Which rule was broken.
        reason: &'static str,
    },

    /// An attribute value that does not fit in one attribute.
    #[error("attribute {typ} value is {len} bytes; at most 253 fit in one attribute")]
    ValueTooLong {
        /// Attribute type.
        typ: u8,
        /// Value length.
        len: usize,
    },

    /// The encoded packet would exceed the RADIUS maximum.
    #[error("encoded packet would be {len} bytes; at most 4096 are allowed")]
    PacketTooLong {
        /// Length the packet would have had.
        len: usize,
    },

    /// A clear-text password longer than RFC 2865 §5.2 allows. The length is
    /// deliberately not reported.
    #[error("password is longer than 128 bytes")]
    PasswordTooLong,

    /// A hidden User-Password whose length cannot come from RFC 2865 §5.2.
    #[error("hidden password is {len} bytes; it must be a multiple of 16 in 16..=128")]
    HiddenPasswordLength {
        /// Length of the hidden value.
        len: usize,
    },

    /// An empty shared secret: RFC 2865 §3 forbids it, and it would make
    /// every authenticator forgeable.
    #[error("shared secret must not be empty")]
    EmptySecret,

    /// The operation does not apply to packets with this code.
    #[error("{operation} does not apply to packet code {code}")]
    UnexpectedCode {
        /// The packet code.
        code: u8,
        /// The operation attempted.
        operation: &'static str,
    },

    /// A response whose Identifier differs from the request it answers.
    #[error("response Identifier {response} differs from the request's {request}")]
    IdentifierMismatch {
        /// Identifier of the response.
        response: u8,
        /// Identifier of the request.
        request: u8,
    },

    /// A response whose Response Authenticator is not the one the shared
    /// secret and the request produce.
    #[error("Response Authenticator does not match (wrong shared secret, or not a reply to this request)")]
    BadResponseAuthenticator,

    /// A dictionary file that cannot be read.
    #[error("{file}:{line}: {reason}")]
    Dictionary {
        /// Name of the file (as given to the parser or `$INCLUDE`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// Which rule was broken.
        reason: String,
    },

    /// An attribute name the dictionary does not define.
    #[error("attribute {name:?} is not in the dictionary")]
    UnknownAttribute {
        /// The name looked up.
        name: String,
    },

    /// An attribute value text that cannot be encoded for the attribute's
    /// type. The value itself is not repeated.
    #[error("attribute {attribute}: {reason}")]
    InvalidValue {
        /// Attribute name.
        attribute: String,
        /// Which rule was broken.
        reason: String,
    },
}
