//! RADIUS packet authentication and User-Password hiding.
//!
//! * Request Authenticator of Accounting-Request (RFC 2866 §3) and of
//!   CoA-Request / Disconnect-Request (RFC 5176 §3.3): MD5 over the packet
//!   with a zero authenticator field, followed by the shared secret.
//! * Response Authenticator (RFC 2865 §3): MD5 over the response with the
//!   request's authenticator in the field, followed by the shared secret.
//! * Message-Authenticator (RFC 3579 §3.2, RFC 5997): HMAC-MD5 keyed with
//!   the shared secret over the whole packet with the attribute's 16 octets
//!   zeroed. The authenticator field holds the Request Authenticator for
//!   Access-Request and Status-Server, zeros for the requests whose
//!   authenticator is computed (Accounting, CoA, Disconnect), and the
//!   request's authenticator for responses (except an Accounting-Response
//!   to an Accounting-Request: zeros, as FreeRADIUS does).
//! * User-Password hiding (RFC 2865 §5.2).
//!
//! Every comparison of a received MAC with a computed one is constant-time
//! ([`subtle`]). Nothing here draws random numbers: the Request
//! Authenticator of an Access-Request is the caller's (it must be
//! unpredictable, RFC 2865 §3). MD5 and HMAC states are wiped on drop (the
//! `zeroize` features of `md-5` and `hmac`), and so are the keystream blocks
//! of password hiding.

use hmac::digest::Key;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::attr;
use crate::code::Code;
use crate::error::RadiusError;
use crate::packet::{HEADER_LEN, Packet, RawAttributes, checked_packet, encode_parts};

/// Longest clear-text User-Password RFC 2865 §5.2 allows.
pub const MAX_PASSWORD_LEN: usize = 128;

/// What a packet's Message-Authenticator attribute says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageAuthenticator {
    /// No Message-Authenticator attribute. (For the requests whose
    /// authenticator is computed, the Request Authenticator did verify.)
    Absent,
    /// Exactly one Message-Authenticator, and it verifies (and so does the
    /// Request Authenticator where the code has a computed one).
    Valid,
    /// The packet must be dropped: a Message-Authenticator that does not
    /// verify, more than one of them, one whose length is not 18, an
    /// EAP-Message without one (RFC 3579 §3.2), or a computed Request
    /// Authenticator that does not match.
    Invalid,
}

impl MessageAuthenticator {
    /// `true` only for [`MessageAuthenticator::Valid`].
    pub fn is_valid(self) -> bool {
        self == MessageAuthenticator::Valid
    }
}

/// Hides a User-Password (RFC 2865 §5.2): zero-pads it to a multiple of 16
/// octets (at least 16) and chains MD5(secret + previous block) over it,
/// starting from the Request Authenticator.
///
/// Passwords up to 128 octets are accepted; an empty one hides to 16
/// octets. The result goes into the User-Password attribute as it is.
pub fn hide_password(secret: &[u8], request_authenticator: &[u8; 16], password: &[u8]) -> Result<Vec<u8>, RadiusError> {
    if secret.is_empty() {
        return Err(RadiusError::EmptySecret);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(RadiusError::PasswordTooLong);
    }
    let padded = password.len().div_ceil(16).max(1) * 16;
    let mut out = vec![0u8; padded];
    out[..password.len()].copy_from_slice(password);
    let mut previous = *request_authenticator;
    for chunk in out.chunks_exact_mut(16) {
        let mut key = md5_two(secret, &previous);
        for (c, k) in chunk.iter_mut().zip(key.iter()) {
            *c ^= k;
        }
        key.zeroize();
        previous.copy_from_slice(chunk);
    }
    Ok(out)
}

/// Recovers a User-Password hidden with [`hide_password`].
///
/// The hidden value must be a multiple of 16 octets in 16..=128. Trailing
/// NUL octets (the padding) are stripped; a password that itself ends in
/// NULs cannot be told apart, as in every RADIUS implementation. A wrong
/// secret gives garbage, not an error: RFC 2865 has no integrity check on
/// the password itself.
pub fn unhide_password(
    secret: &[u8],
    request_authenticator: &[u8; 16],
    hidden: &[u8],
) -> Result<Zeroizing<Vec<u8>>, RadiusError> {
    if secret.is_empty() {
        return Err(RadiusError::EmptySecret);
    }
    if hidden.is_empty() || hidden.len() > MAX_PASSWORD_LEN || !hidden.len().is_multiple_of(16) {
        return Err(RadiusError::HiddenPasswordLength { len: hidden.len() });
    }
    let mut out = Zeroizing::new(hidden.to_vec());
    let mut previous = *request_authenticator;
    for chunk in out.chunks_exact_mut(16) {
        let mut key = md5_two(secret, &previous);
        previous.copy_from_slice(chunk);
        for (c, k) in chunk.iter_mut().zip(key.iter()) {
            *c ^= k;
        }
        key.zeroize();
    }
    let len = out.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    // The stripped tail is NULs already, so nothing secret is left behind
    // in the spare capacity.
    out.truncate(len);
    Ok(out)
}

/// HMAC-MD5 of a raw packet whose Message-Authenticator value (and, where
/// the rules above require, authenticator field) the caller has already
/// set to the bytes the MAC is computed over. An empty secret is used as
/// it is; the checked functions refuse it.
pub fn message_authenticator(raw_packet_with_ma_zeroed: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut mac = keyed_hmac(secret);
    mac.update(raw_packet_with_ma_zeroed);
    mac.finalize().into_bytes().into()
}

/// Checks a request received by a server.
///
/// * Access-Request and Status-Server: the Message-Authenticator, if
///   present, over the packet as received with its value zeroed.
/// * Accounting-Request, CoA-Request and Disconnect-Request: also the
///   computed Request Authenticator (RFC 2866 §3, RFC 5176 §3.3), and the
///   Message-Authenticator, if present, computed with a zero authenticator
///   field. A wrong Request Authenticator gives `Invalid`.
///
/// `Absent` is not an approval for everything: RFC 5997 requires a
/// Message-Authenticator in every Status-Server, and a server hardened
/// against BlastRADIUS (CVE-2024-3596) requires one in every Access-Request
/// from clients that are known to send it. That policy is the caller's.
/// An EAP-Message without a Message-Authenticator is `Invalid` (RFC 3579).
///
/// Errors: a datagram that is not a well-formed RADIUS packet, an empty
/// secret, or a code that is not one of the requests above (a response sent
/// to a server port, for instance).
pub fn verify_request(raw: &[u8], secret: &[u8]) -> Result<MessageAuthenticator, RadiusError> {
    if secret.is_empty() {
        return Err(RadiusError::EmptySecret);
    }
    let packet = checked_packet(raw)?;
    let code = Code::from(packet[0]);
    let authenticator = authenticator_field(packet);
    match code {
        Code::AccessRequest | Code::StatusServer => check_message_authenticator(packet, &authenticator, secret),
        Code::AccountingRequest | Code::CoaRequest | Code::DisconnectRequest => {
            let ma = check_message_authenticator(packet, &[0; 16], secret)?;
            let expected = packet_md5(packet, &[0; 16], secret);
            if bool::from(expected.ct_eq(&authenticator)) { Ok(ma) } else { Ok(MessageAuthenticator::Invalid) }
        }
        _ => Err(RadiusError::UnexpectedCode { code: code.as_u8(), operation: "verify_request" }),
    }
}

/// Checks a response received by a client: the Response Authenticator
/// (an error if wrong: the response is forged, corrupted, or answers another
/// request) and then the Message-Authenticator if present (for an
/// Accounting-Response, computed over the request's authenticator or over
/// zeros, see [`Packet::encode_response`]).
///
/// The caller matches the Identifier and source address to the request.
pub fn verify_response(
    raw_response: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<MessageAuthenticator, RadiusError> {
    if secret.is_empty() {
        return Err(RadiusError::EmptySecret);
    }
    let packet = checked_packet(raw_response)?;
    let mut ma = check_message_authenticator(packet, request_authenticator, secret)?;
    // An Accounting-Response answers either an Accounting-Request (MAC over
    // zeros, see `response_ma_authenticator`) or a Status-Server (MAC over
    // its authenticator), and only the caller knows which. Either MAC needs
    // the secret, so accepting both lets no forgery through.
    if ma == MessageAuthenticator::Invalid && Code::from(packet[0]) == Code::AccountingResponse {
        ma = check_message_authenticator(packet, &[0; 16], secret)?;
    }
    let expected = packet_md5(packet, request_authenticator, secret);
    if !bool::from(expected.ct_eq(&authenticator_field(packet))) {
        return Err(RadiusError::BadResponseAuthenticator);
    }
    Ok(ma)
}

/// Whether a CHAP-Password attribute value (CHAP Ident octet and 16-octet
/// response, RFC 2865 §5.3) answers `challenge` for `password`: the
/// response must equal MD5(Ident + password + challenge) (RFC 1994). The
/// challenge is CHAP-Challenge if the request has one, else the Request
/// Authenticator.
pub fn chap_password_matches(chap_password: &[u8], challenge: &[u8], password: &[u8]) -> bool {
    let Some((&ident, response)) = chap_password.split_first() else { return false };
    if response.len() != 16 {
        return false;
    }
    let mut h = Md5::new();
    h.update([ident]);
    h.update(password);
    h.update(challenge);
    let expected: [u8; 16] = h.finalize().into();
    bool::from(expected.ct_eq(response))
}

impl Packet {
    /// Encodes a request as a client sends it.
    ///
    /// * Access-Request: `self.authenticator` is the Request Authenticator
    ///   and must be unpredictable (the caller draws it); a User-Password
    ///   must already be hidden with it ([`hide_password`]).
    /// * Status-Server: the same, and a Message-Authenticator is always
    ///   added (RFC 5997 §3).
    /// * Accounting-Request, CoA-Request, Disconnect-Request: the Request
    ///   Authenticator is computed; `self.authenticator` is ignored.
    ///
    /// With `with_message_authenticator` (or for Status-Server) every
    /// Message-Authenticator in `self` is dropped and a fresh one is placed
    /// first, as BlastRADIUS hardening recommends; other attributes keep
    /// their order. Without it, attributes are encoded as given.
    pub fn encode_request(&self, secret: &[u8], with_message_authenticator: bool) -> Result<Vec<u8>, RadiusError> {
        if secret.is_empty() {
            return Err(RadiusError::EmptySecret);
        }
        let with_ma = with_message_authenticator || self.code == Code::StatusServer;
        match self.code {
            Code::AccessRequest | Code::StatusServer => {
                let mut out = self.encode_with_ma(&self.authenticator, with_ma)?;
                if with_ma {
                    set_message_authenticator(&mut out, secret);
                }
                Ok(out)
            }
            Code::AccountingRequest | Code::CoaRequest | Code::DisconnectRequest => {
                let mut out = self.encode_with_ma(&[0; 16], with_ma)?;
                if with_ma {
                    set_message_authenticator(&mut out, secret);
                }
                let authenticator = packet_md5(&out, &[0; 16], secret);
                out[4..HEADER_LEN].copy_from_slice(&authenticator);
                Ok(out)
            }
            code => Err(RadiusError::UnexpectedCode { code: code.as_u8(), operation: "encode_request" }),
        }
    }

    /// Encodes a response to `request` as a server sends it.
    ///
    /// With `with_message_authenticator`, every Message-Authenticator in
    /// `self` is dropped and a fresh one is inserted as the *first*
    /// attribute (BlastRADIUS hardening: a forged prefix cannot then be
    /// chosen before it), computed with the request's authenticator in the
    /// header (RFC 3579 §3.2) — except in an Accounting-Response to an
    /// Accounting-Request, where no RFC defines it and it is computed over
    /// zeros as FreeRADIUS does (an Accounting-Response to a Status-Server
    /// uses the request's, RFC 5997 §3). Then the Response Authenticator is computed
    /// (RFC 2865 §3) and placed in the header. Other attributes keep the
    /// caller's order.
    ///
    /// The caller copies the request's Proxy-State attributes, in order
    /// ([`Packet::response_to`] does). `self.identifier` must equal the
    /// request's; `self.authenticator` is ignored.
    pub fn encode_response(
        &self,
        request: &Packet,
        secret: &[u8],
        with_message_authenticator: bool,
    ) -> Result<Vec<u8>, RadiusError> {
        if secret.is_empty() {
            return Err(RadiusError::EmptySecret);
        }
        if self.identifier != request.identifier {
            return Err(RadiusError::IdentifierMismatch { response: self.identifier, request: request.identifier });
        }
        let mut out =
            self.encode_with_ma(&response_ma_authenticator(self.code, request), with_message_authenticator)?;
        if with_message_authenticator {
            set_message_authenticator(&mut out, secret);
        }
        // The header field's content does not matter here: the hash covers
        // the request's authenticator in its place.
        let authenticator = packet_md5(&out, &request.authenticator, secret);
        out[4..HEADER_LEN].copy_from_slice(&authenticator);
        Ok(out)
    }

    /// Encodes with `authenticator` in the header and, if `with_ma`, a zero
    /// Message-Authenticator as the first attribute (value at 22..38) in
    /// place of any the packet has.
    fn encode_with_ma(&self, authenticator: &[u8; 16], with_ma: bool) -> Result<Vec<u8>, RadiusError> {
        if with_ma {
            let zero = [0u8; 16];
            let attrs = std::iter::once((attr::MESSAGE_AUTHENTICATOR, &zero[..]))
                .chain(self.wire_attributes().filter(|(t, _)| *t != attr::MESSAGE_AUTHENTICATOR));
            encode_parts(self.code, self.identifier, authenticator, attrs)
        } else {
            encode_parts(self.code, self.identifier, authenticator, self.wire_attributes())
        }
    }
}

/// The authenticator field a response's Message-Authenticator is computed
/// over: the request's authenticator (RFC 3579 §3.2, RFC 5176 §3.3, RFC 5997
/// §3), except for an Accounting-Response to an Accounting-Request, for which
/// no RFC defines one and FreeRADIUS, the de facto reference, uses zeros as
/// it does for the request itself.
fn response_ma_authenticator(code: Code, request: &Packet) -> [u8; 16] {
    if code == Code::AccountingResponse && request.code != Code::StatusServer { [0; 16] } else { request.authenticator }
}

/// Offset of the Message-Authenticator value when it is the first attribute.
const FIRST_MA_VALUE: std::ops::Range<usize> = HEADER_LEN + 2..HEADER_LEN + 18;

/// Computes the Message-Authenticator over `out`, whose first attribute is
/// a zeroed Message-Authenticator and whose authenticator field already
/// holds the bytes the MAC covers, and writes it in.
fn set_message_authenticator(out: &mut [u8], secret: &[u8]) {
    let mac = message_authenticator(out, secret);
    out[FIRST_MA_VALUE].copy_from_slice(&mac);
}

fn authenticator_field(packet: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&packet[4..HEADER_LEN]);
    a
}

/// MD5(Code + Identifier + Length + `authenticator` + Attributes + secret):
/// the Response Authenticator, or with zeros the computed Request
/// Authenticator. `packet` is bounded by its Length field.
fn packet_md5(packet: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(&packet[..4]);
    h.update(authenticator);
    h.update(&packet[HEADER_LEN..]);
    h.update(secret);
    h.finalize().into()
}

fn md5_two(a: &[u8], b: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// Checks the Message-Authenticator of a packet bounded by its Length, with
/// `authenticator` standing in for the header's field. Also validates every
/// attribute's length (an error if one is impossible).
fn check_message_authenticator(
    packet: &[u8],
    authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<MessageAuthenticator, RadiusError> {
    let mut count = 0usize;
    let mut found = None;
    let mut has_eap = false;
    for item in RawAttributes::new(packet) {
        let (offset, typ, value) = item?;
        match typ {
            attr::MESSAGE_AUTHENTICATOR => {
                count += 1;
                found = Some((offset, value));
            }
            attr::EAP_MESSAGE => has_eap = true,
            _ => {}
        }
    }
    let (offset, received) = match (count, found) {
        (0, _) | (_, None) if has_eap => return Ok(MessageAuthenticator::Invalid),
        (0, _) | (_, None) => return Ok(MessageAuthenticator::Absent),
        (1, Some((offset, value))) if value.len() == 16 => (offset, value),
        _ => return Ok(MessageAuthenticator::Invalid),
    };
    // Feed the packet in pieces instead of copying it to zero the value.
    let value_start = offset + 2;
    let mut mac = keyed_hmac(secret);
    mac.update(&packet[..4]);
    mac.update(authenticator);
    mac.update(&packet[HEADER_LEN..value_start]);
    mac.update(&[0u8; 16]);
    mac.update(&packet[value_start + 16..]);
    let expected: [u8; 16] = mac.finalize().into_bytes().into();
    if bool::from(expected.ct_eq(received)) {
        Ok(MessageAuthenticator::Valid)
    } else {
        Ok(MessageAuthenticator::Invalid)
    }
}

/// Keys HMAC-MD5 infallibly. `Mac::new_from_slice` returns a `Result` even
/// though HMAC accepts any key length; normalising the key to exactly one
/// block (RFC 2104: hash if longer, zero-pad if shorter) gives the same MAC
/// and lets us use the infallible `KeyInit::new`.
fn keyed_hmac(key: &[u8]) -> Hmac<Md5> {
    let mut block = Key::<Hmac<Md5>>::default();
    if key.len() <= block.len() {
        block[..key.len()].copy_from_slice(key);
    } else {
        let mut hashed: [u8; 16] = Md5::digest(key).into();
        block[..16].copy_from_slice(&hashed);
        hashed.zeroize();
    }
    let mac = <Hmac<Md5> as KeyInit>::new(&block);
    block.as_mut_slice().zeroize();
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"testing123";

    fn access_request() -> Packet {
        let mut p = Packet::new(Code::AccessRequest, 3, [0x11; 16]);
        p.push(attr::USER_NAME, *b"bob");
        p.push(attr::NAS_IDENTIFIER, *b"nas1");
        p
    }

    #[test]
    fn keyed_hmac_matches_rfc_2202_md5_vectors() {
        // RFC 2202 §2, test cases 1, 2 and 6 (a key longer than a block).
        let mac = |key: &[u8], data: &[u8]| message_authenticator(data, key);
        assert_eq!(hex::encode(mac(&[0x0b; 16], b"Hi There")), "9294727a3638bb1c13f48ef8158bfc9d");
        assert_eq!(hex::encode(mac(b"Jefe", b"what do ya want for nothing?")), "750c783e6ab0b503eaa86e310a5db738");
        assert_eq!(
            hex::encode(mac(&[0xaa; 80], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
        );
    }

    #[test]
    fn hide_unhide_round_trips_every_length() {
        let ra = [0x5a; 16];
        for len in 0..=MAX_PASSWORD_LEN {
            let pw: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let hidden = hide_password(SECRET, &ra, &pw).unwrap();
            assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16, "len {len}");
            assert_eq!(&unhide_password(SECRET, &ra, &hidden).unwrap()[..], &pw[..], "len {len}");
        }
    }

    #[test]
    fn hidden_lengths_of_block_sized_passwords() {
        let ra = [1; 16];
        assert_eq!(hide_password(SECRET, &ra, &[b'x'; 16]).unwrap().len(), 16);
        assert_eq!(hide_password(SECRET, &ra, &[b'x'; 17]).unwrap().len(), 32);
        assert_eq!(hide_password(SECRET, &ra, &[b'x'; 32]).unwrap().len(), 32);
        assert_eq!(hide_password(SECRET, &ra, &[b'x'; 128]).unwrap().len(), 128);
    }

    #[test]
    fn password_bounds() {
        let ra = [1; 16];
        assert_eq!(hide_password(SECRET, &ra, &[b'x'; 129]), Err(RadiusError::PasswordTooLong));
        assert_eq!(hide_password(b"", &ra, b"x"), Err(RadiusError::EmptySecret));
        for len in [0, 15, 17, 144] {
            assert_eq!(
                unhide_password(SECRET, &ra, &vec![1; len]).unwrap_err(),
                RadiusError::HiddenPasswordLength { len }
            );
        }
        assert_eq!(unhide_password(b"", &ra, &[0; 16]).unwrap_err(), RadiusError::EmptySecret);
        // The error message names the bound, not the password.
        assert!(!RadiusError::PasswordTooLong.to_string().contains("129"));
    }

    #[test]
    fn wrong_secret_or_authenticator_does_not_recover_the_password() {
        let ra = [7; 16];
        let hidden = hide_password(SECRET, &ra, b"hunter2").unwrap();
        assert_ne!(&unhide_password(b"other", &ra, &hidden).unwrap()[..], b"hunter2");
        assert_ne!(&unhide_password(SECRET, &[8; 16], &hidden).unwrap()[..], b"hunter2");
    }

    #[test]
    fn access_request_with_ma_round_trip() {
        let raw = access_request().encode_request(SECRET, true).unwrap();
        // Message-Authenticator first.
        assert_eq!(&raw[20..22], &[80, 18]);
        assert_eq!(verify_request(&raw, SECRET), Ok(MessageAuthenticator::Valid));
        assert_eq!(verify_request(&raw, b"wrong"), Ok(MessageAuthenticator::Invalid));
        // Every single flipped bit after the Length field is caught (flips
        // in Code/Length change what the packet is or make it malformed),
        // except that changing the attribute's Type removes it: that is
        // `Absent`, which a hardened server refuses by policy.
        for i in 4..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let r = verify_request(&bad, SECRET);
            if i == 20 {
                assert_eq!(r, Ok(MessageAuthenticator::Absent));
            } else {
                assert!(matches!(r, Ok(MessageAuthenticator::Invalid) | Err(_)), "byte {i}: {r:?}");
            }
        }
        let mut bad = raw.clone();
        bad[1] ^= 1;
        assert_eq!(verify_request(&bad, SECRET), Ok(MessageAuthenticator::Invalid));
        // Trailing padding beyond Length is not covered and not an error.
        let mut padded = raw.clone();
        padded.extend_from_slice(&[0xee; 5]);
        assert_eq!(verify_request(&padded, SECRET), Ok(MessageAuthenticator::Valid));
    }

    #[test]
    fn ma_absent_duplicated_or_misshapen() {
        let plain = access_request().encode_request(SECRET, false).unwrap();
        assert_eq!(verify_request(&plain, SECRET), Ok(MessageAuthenticator::Absent));

        let mut p = Packet::decode(&access_request().encode_request(SECRET, true).unwrap()).unwrap();
        let ma = p.attr(attr::MESSAGE_AUTHENTICATOR).unwrap().to_vec();
        p.push(attr::MESSAGE_AUTHENTICATOR, ma);
        assert_eq!(verify_request(&p.encode().unwrap(), SECRET), Ok(MessageAuthenticator::Invalid));

        let mut p = access_request();
        p.push(attr::MESSAGE_AUTHENTICATOR, vec![0; 15]);
        assert_eq!(verify_request(&p.encode().unwrap(), SECRET), Ok(MessageAuthenticator::Invalid));

        let mut p = access_request();
        p.push(attr::EAP_MESSAGE, vec![2, 1, 0, 5, 1]);
        assert_eq!(verify_request(&p.encode().unwrap(), SECRET), Ok(MessageAuthenticator::Invalid));
        assert_eq!(verify_request(&p.encode_request(SECRET, true).unwrap(), SECRET), Ok(MessageAuthenticator::Valid));
    }

    #[test]
    fn encode_request_replaces_a_stale_ma_and_keeps_order() {
        let mut p = access_request();
        p.push(attr::MESSAGE_AUTHENTICATOR, vec![0xff; 16]);
        p.push(attr::STATE, *b"s");
        let raw = p.encode_request(SECRET, true).unwrap();
        let d = Packet::decode(&raw).unwrap();
        let types: Vec<u8> = d.attributes.iter().map(|a| a.typ).collect();
        assert_eq!(types, vec![80, 1, 32, 24]);
        assert_eq!(verify_request(&raw, SECRET), Ok(MessageAuthenticator::Valid));
    }

    #[test]
    fn status_server_always_has_ma() {
        let p = Packet::new(Code::StatusServer, 9, [3; 16]);
        let raw = p.encode_request(SECRET, false).unwrap();
        assert_eq!(raw.len(), 38);
        assert_eq!(verify_request(&raw, SECRET), Ok(MessageAuthenticator::Valid));
    }

    #[test]
    fn accounting_request_authenticator() {
        let mut p = Packet::new(Code::AccountingRequest, 5, [0xcc; 16]);
        p.push(attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes());
        p.push(attr::ACCT_SESSION_ID, *b"abc");
        for with_ma in [false, true] {
            let raw = p.encode_request(SECRET, with_ma).unwrap();
            // The caller's authenticator is replaced by the computed one.
            assert_ne!(&raw[4..20], &[0xcc; 16]);
            let expected = if with_ma { MessageAuthenticator::Valid } else { MessageAuthenticator::Absent };
            assert_eq!(verify_request(&raw, SECRET), Ok(expected));
            assert_eq!(verify_request(&raw, b"other"), Ok(MessageAuthenticator::Invalid));
            let mut bad = raw.clone();
            bad[7] ^= 0x80;
            assert_eq!(verify_request(&bad, SECRET), Ok(MessageAuthenticator::Invalid));
            let mut bad = raw.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(verify_request(&bad, SECRET), Ok(MessageAuthenticator::Invalid));
        }
        for code in [Code::CoaRequest, Code::DisconnectRequest] {
            let mut q = p.clone();
            q.code = code;
            let raw = q.encode_request(SECRET, true).unwrap();
            assert_eq!(verify_request(&raw, SECRET), Ok(MessageAuthenticator::Valid));
        }
    }

    #[test]
    fn response_round_trip() {
        let req = Packet::decode(&access_request().encode_request(SECRET, true).unwrap()).unwrap();
        let mut resp = Packet::response_to(&req, Code::AccessAccept);
        resp.push(attr::REPLY_MESSAGE, *b"welcome");
        for with_ma in [false, true] {
            let raw = resp.encode_response(&req, SECRET, with_ma).unwrap();
            let expected = if with_ma { MessageAuthenticator::Valid } else { MessageAuthenticator::Absent };
            assert_eq!(verify_response(&raw, &req.authenticator, SECRET), Ok(expected));
            assert_eq!(verify_response(&raw, &[0; 16], SECRET), Err(RadiusError::BadResponseAuthenticator));
            assert_eq!(verify_response(&raw, &req.authenticator, b"x"), Err(RadiusError::BadResponseAuthenticator));
            if with_ma {
                assert_eq!(&raw[20..22], &[80, 18]);
                // A response with a good Response Authenticator but a bad
                // MAC: recompute the former over the corrupted MAC.
                let mut bad = Packet::decode(&raw).unwrap();
                bad.attributes[0].value[0] ^= 1;
                let mut bytes = bad.encode().unwrap();
                let ra = packet_md5(&bytes, &req.authenticator, SECRET);
                bytes[4..20].copy_from_slice(&ra);
                assert_eq!(verify_response(&bytes, &req.authenticator, SECRET), Ok(MessageAuthenticator::Invalid));
            }
        }
        let mut other = resp.clone();
        other.identifier ^= 1;
        assert_eq!(
            other.encode_response(&req, SECRET, true),
            Err(RadiusError::IdentifierMismatch { response: req.identifier ^ 1, request: req.identifier })
        );
    }

    #[test]
    fn accounting_response_ma() {
        let mut acct = Packet::new(Code::AccountingRequest, 8, [0; 16]);
        acct.push(attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes());
        let acct = Packet::decode(&acct.encode_request(SECRET, true).unwrap()).unwrap();
        let status =
            Packet::decode(&Packet::new(Code::StatusServer, 8, [6; 16]).encode_request(SECRET, true).unwrap()).unwrap();
        for request in [&acct, &status] {
            let reply = Packet::response_to(request, Code::AccountingResponse);
            let raw = reply.encode_response(request, SECRET, true).unwrap();
            assert_eq!(verify_response(&raw, &request.authenticator, SECRET), Ok(MessageAuthenticator::Valid));
            // Which authenticator the MAC covers: zeros only for accounting.
            let mut zeroed = raw.clone();
            zeroed[22..38].fill(0);
            let over = if request.code == Code::StatusServer { request.authenticator } else { [0; 16] };
            zeroed[4..20].copy_from_slice(&over);
            assert_eq!(message_authenticator(&zeroed, SECRET)[..], raw[22..38]);
        }
    }

    #[test]
    fn codes_that_do_not_apply() {
        let accept = Packet::new(Code::AccessAccept, 1, [0; 16]);
        assert_eq!(
            accept.encode_request(SECRET, true),
            Err(RadiusError::UnexpectedCode { code: 2, operation: "encode_request" })
        );
        let raw = accept.encode().unwrap();
        assert_eq!(
            verify_request(&raw, SECRET),
            Err(RadiusError::UnexpectedCode { code: 2, operation: "verify_request" })
        );
        assert_eq!(verify_request(&raw[..10], SECRET), Err(RadiusError::TooShort { len: 10 }));
        assert_eq!(verify_request(&raw, b""), Err(RadiusError::EmptySecret));
        assert_eq!(access_request().encode_request(b"", true), Err(RadiusError::EmptySecret));
    }

    #[test]
    fn chap() {
        let challenge = [0x42; 16];
        let mut h = Md5::new();
        h.update([7u8]);
        h.update(b"secretpw");
        h.update(challenge);
        let mut attr = vec![7u8];
        attr.extend_from_slice(&h.finalize());
        assert!(chap_password_matches(&attr, &challenge, b"secretpw"));
        assert!(!chap_password_matches(&attr, &challenge, b"secretpx"));
        assert!(!chap_password_matches(&attr[..16], &challenge, b"secretpw"));
        assert!(!chap_password_matches(&[], &challenge, b"secretpw"));
    }

    proptest! {
        #[test]
        fn verify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), auth in any::<[u8; 16]>()) {
            let _ = verify_request(&bytes, SECRET);
            let _ = verify_response(&bytes, &auth, SECRET);
        }

        #[test]
        fn verify_of_well_framed_packets_never_panics(
            code in prop_oneof![Just(1u8), Just(4), Just(12), Just(40), Just(43), any::<u8>()],
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut d = vec![code, 0];
            d.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
            d.extend_from_slice(&[0; 16]);
            d.extend_from_slice(&body);
            let _ = verify_request(&d, SECRET);
        }

        #[test]
        fn hide_unhide(pw in proptest::collection::vec(1u8.., 0..=128), ra in any::<[u8; 16]>(), secret in proptest::collection::vec(any::<u8>(), 1..100)) {
            let hidden = hide_password(&secret, &ra, &pw).unwrap();
            prop_assert_eq!(&unhide_password(&secret, &ra, &hidden).unwrap()[..], &pw[..]);
        }
    }
}
