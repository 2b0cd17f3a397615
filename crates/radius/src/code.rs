//! RADIUS packet codes (RFC 2865 §3, RFC 2866, RFC 5176, RFC 5997).

use std::fmt;

/// The Code octet of a RADIUS packet.
///
/// Every `u8` maps to exactly one value: [`Code::from`] never produces
/// `Other(n)` for a code that has a named variant, so comparing codes
/// obtained through `From<u8>` is reliable. Building `Other(1)` by hand
/// produces a value that encodes as 1 but compares unequal to
/// [`Code::AccessRequest`]; don't.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1, RFC 2865.
    AccessRequest,
    /// 2, RFC 2865.
    AccessAccept,
    /// 3, RFC 2865.
    AccessReject,
    /// 4, RFC 2866.
    AccountingRequest,
    /// 5, RFC 2866.
    AccountingResponse,
    /// 11, RFC 2865.
    AccessChallenge,
    /// 12, RFC 5997.
    StatusServer,
    /// 13, reserved for Status-Client (RFC 2865 §3 lists it as experimental).
    StatusClient,
    /// 40, RFC 5176.
    DisconnectRequest,
    /// 41, RFC 5176.
    DisconnectAck,
    /// 42, RFC 5176.
    DisconnectNak,
    /// 43, RFC 5176.
    CoaRequest,
    /// 44, RFC 5176.
    CoaAck,
    /// 45, RFC 5176.
    CoaNak,
    /// Any other code, kept so that decoding never loses information.
    Other(u8),
}

impl Code {
    /// The octet on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            Code::AccessRequest => 1,
            Code::AccessAccept => 2,
            Code::AccessReject => 3,
            Code::AccountingRequest => 4,
            Code::AccountingResponse => 5,
            Code::AccessChallenge => 11,
            Code::StatusServer => 12,
            Code::StatusClient => 13,
            Code::DisconnectRequest => 40,
            Code::DisconnectAck => 41,
            Code::DisconnectNak => 42,
            Code::CoaRequest => 43,
            Code::CoaAck => 44,
            Code::CoaNak => 45,
            Code::Other(n) => n,
        }
    }

    /// Whether the Request Authenticator of this code is an MD5 over the
    /// packet (RFC 2866 §3, RFC 5176 §3.3) rather than a random nonce.
    pub const fn has_computed_request_authenticator(self) -> bool {
        matches!(self, Code::AccountingRequest | Code::DisconnectRequest | Code::CoaRequest)
    }

    /// The canonical name, as FreeRADIUS and the RFCs spell it, or `None`
    /// for [`Code::Other`].
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Code::AccessRequest => "Access-Request",
            Code::AccessAccept => "Access-Accept",
            Code::AccessReject => "Access-Reject",
            Code::AccountingRequest => "Accounting-Request",
            Code::AccountingResponse => "Accounting-Response",
            Code::AccessChallenge => "Access-Challenge",
            Code::StatusServer => "Status-Server",
            Code::StatusClient => "Status-Client",
            Code::DisconnectRequest => "Disconnect-Request",
            Code::DisconnectAck => "Disconnect-ACK",
            Code::DisconnectNak => "Disconnect-NAK",
            Code::CoaRequest => "CoA-Request",
            Code::CoaAck => "CoA-ACK",
            Code::CoaNak => "CoA-NAK",
            Code::Other(_) => return None,
        })
    }
}

impl From<u8> for Code {
    fn from(n: u8) -> Code {
        match n {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            13 => Code::StatusClient,
            40 => Code::DisconnectRequest,
            41 => Code::DisconnectAck,
            42 => Code::DisconnectNak,
            43 => Code::CoaRequest,
            44 => Code::CoaAck,
            45 => Code::CoaNak,
            n => Code::Other(n),
        }
    }
}

impl From<Code> for u8 {
    fn from(c: Code) -> u8 {
        c.as_u8()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Code-{}", self.as_u8()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_octet_round_trips_and_named_codes_are_never_other() {
        for n in 0..=255u8 {
            let c = Code::from(n);
            assert_eq!(c.as_u8(), n);
            assert_eq!(u8::from(c), n);
            if let Code::Other(_) = c {
                assert!(c.name().is_none());
                assert_eq!(c.to_string(), format!("Code-{n}"));
            } else {
                assert_eq!(c.to_string(), c.name().unwrap());
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(Code::from(1).to_string(), "Access-Request");
        assert_eq!(Code::from(11).to_string(), "Access-Challenge");
        assert_eq!(Code::from(12).to_string(), "Status-Server");
        assert_eq!(Code::from(44).to_string(), "CoA-ACK");
        assert_eq!(Code::from(42).to_string(), "Disconnect-NAK");
        assert!(Code::AccountingRequest.has_computed_request_authenticator());
        assert!(!Code::AccessRequest.has_computed_request_authenticator());
    }
}
