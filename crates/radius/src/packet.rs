//! RADIUS packets and attributes: strict decoding and plain encoding
//! (RFC 2865 §3 and §5).
//!
//! Decoding validates every length before it allocates anything, so a
//! malformed datagram costs no allocation, and a well-formed one costs one
//! `Vec` of exactly as many attribute records as it has attributes plus the
//! value bytes it carries (never more value bytes than the datagram holds).
//!
//! Nothing here authenticates a packet; see [`crate::crypto`] for the
//! Request/Response Authenticators and Message-Authenticator.

use crate::attr;
use crate::code::Code;
use crate::error::RadiusError;

/// Octets in a RADIUS header: Code, Identifier, Length, Authenticator.
pub const HEADER_LEN: usize = 20;
/// Largest packet RFC 2865 §3 allows.
pub const MAX_PACKET_LEN: usize = 4096;
/// Largest attribute value: the one-octet Length covers Type and Length too.
pub const MAX_VALUE_LEN: usize = 253;

/// One attribute as it appears on the wire: its Type and raw value.
///
/// The value is not interpreted; a [`Dictionary`](crate::Dictionary) gives it
/// a type. Hidden values (User-Password) stay hidden here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// Attribute Type octet (see [`crate::attr`]).
    pub typ: u8,
    /// Raw value, at most [`MAX_VALUE_LEN`] bytes to be encodable.
    pub value: Vec<u8>,
}

impl Attribute {
    /// An attribute of type `typ` with `value`.
    pub fn new(typ: u8, value: impl Into<Vec<u8>>) -> Attribute {
        Attribute { typ, value: value.into() }
    }

    /// A Vendor-Specific attribute (26) carrying one sub-attribute in the
    /// format RFC 2865 §5.26 suggests: Vendor-Id (4 octets), then a one-octet
    /// vendor type, a one-octet vendor length, and the value.
    pub fn vendor_specific(vendor_id: u32, vendor_type: u8, value: &[u8]) -> Result<Attribute, RadiusError> {
        // 4 octets of Vendor-Id and 2 of sub-attribute header precede the value.
        let len = 6 + value.len();
        if len > MAX_VALUE_LEN {
            return Err(RadiusError::ValueTooLong { typ: attr::VENDOR_SPECIFIC, len });
        }
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&vendor_id.to_be_bytes());
        v.push(vendor_type);
        // Fits: 2 + value.len() <= 249.
        v.push((2 + value.len()) as u8);
        v.extend_from_slice(value);
        Ok(Attribute { typ: attr::VENDOR_SPECIFIC, value: v })
    }

    /// For a Vendor-Specific attribute, its Vendor-Id and the bytes after
    /// it; `None` for other types or a value shorter than a Vendor-Id.
    pub fn vendor(&self) -> Option<(u32, &[u8])> {
        if self.typ != attr::VENDOR_SPECIFIC {
            return None;
        }
        let (id, rest) = self.value.split_first_chunk::<4>()?;
        Some((u32::from_be_bytes(*id), rest))
    }
}

/// A decoded RADIUS packet.
///
/// Attributes keep their wire order: RFC 2865 requires Proxy-State to be
/// echoed in order, and several vendors give order meaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    /// The Code octet.
    pub code: Code,
    /// The Identifier octet that matches responses to requests.
    pub identifier: u8,
    /// The Authenticator field as it was decoded or is to be encoded. The
    /// authenticating encoders compute it where the code requires.
    pub authenticator: [u8; 16],
    /// Attributes in wire order.
    pub attributes: Vec<Attribute>,
}

impl Packet {
    /// An empty packet.
    pub fn new(code: Code, identifier: u8, authenticator: [u8; 16]) -> Packet {
        Packet { code, identifier, authenticator, attributes: Vec::new() }
    }

    /// Starts a response to `request`: same Identifier, and every
    /// Proxy-State of the request copied in order, as RFC 2865 §5.33
    /// requires of a server. The authenticator is filled in by
    /// [`Packet::encode_response`].
    pub fn response_to(request: &Packet, code: Code) -> Packet {
        let attributes = request.attributes.iter().filter(|a| a.typ == attr::PROXY_STATE).cloned().collect();
        Packet { code, identifier: request.identifier, authenticator: request.authenticator, attributes }
    }

    /// Decodes one datagram.
    ///
    /// Rules (RFC 2865 §3, §5): at least 20 octets; the Length field in
    /// 20..=4096 and not beyond the datagram (octets past Length are padding
    /// and ignored); every attribute at least 2 octets long and inside
    /// Length. Attributes of length 2 (empty value) are accepted. Nothing is
    /// authenticated here.
    pub fn decode(datagram: &[u8]) -> Result<Packet, RadiusError> {
        let packet = checked_packet(datagram)?;
        // First pass validates and counts, so that the only allocations are
        // made for a packet known to be well formed, and made once.
        let mut count = 0usize;
        for item in RawAttributes::new(packet) {
            item?;
            count += 1;
        }
        let mut attributes = Vec::with_capacity(count);
        for (_, typ, value) in RawAttributes::new(packet).flatten() {
            attributes.push(Attribute { typ, value: value.to_vec() });
        }
        let (head, _) = split_header(packet)?;
        Ok(Packet {
            code: Code::from(head.code),
            identifier: head.identifier,
            authenticator: head.authenticator,
            attributes,
        })
    }

    /// Encodes the packet exactly as it is, authenticator included.
    ///
    /// Fails if an attribute value exceeds 253 octets or the packet 4096.
    /// To send a packet, use [`Packet::encode_request`] or
    /// [`Packet::encode_response`], which compute the authenticators.
    pub fn encode(&self) -> Result<Vec<u8>, RadiusError> {
        encode_parts(self.code, self.identifier, &self.authenticator, self.wire_attributes())
    }

    /// The value of the first attribute of type `typ`.
    pub fn attr(&self, typ: u8) -> Option<&[u8]> {
        self.attributes.iter().find(|a| a.typ == typ).map(|a| a.value.as_slice())
    }

    /// The values of every attribute of type `typ`, in order.
    pub fn attrs(&self, typ: u8) -> impl Iterator<Item = &[u8]> + '_ {
        self.attributes.iter().filter(move |a| a.typ == typ).map(|a| a.value.as_slice())
    }

    /// How many attributes of type `typ` the packet has.
    pub fn count(&self, typ: u8) -> usize {
        self.attributes.iter().filter(|a| a.typ == typ).count()
    }

    /// Appends an attribute. Lengths are checked when encoding.
    pub fn push(&mut self, typ: u8, value: impl Into<Vec<u8>>) {
        self.attributes.push(Attribute { typ, value: value.into() });
    }

    /// Appends a Vendor-Specific attribute with one sub-attribute in the
    /// RFC 2865 §5.26 format (see [`Attribute::vendor_specific`]).
    pub fn push_vendor(&mut self, vendor_id: u32, vendor_type: u8, value: &[u8]) -> Result<(), RadiusError> {
        self.attributes.push(Attribute::vendor_specific(vendor_id, vendor_type, value)?);
        Ok(())
    }

    /// Removes every attribute of type `typ`; returns how many there were.
    pub fn remove(&mut self, typ: u8) -> usize {
        let before = self.attributes.len();
        self.attributes.retain(|a| a.typ != typ);
        before - self.attributes.len()
    }

    /// The sub-attributes `(vendor type, value)` of every Vendor-Specific
    /// attribute from `vendor_id`, in order, read in the RFC 2865 §5.26
    /// format (one-octet type and length).
    ///
    /// A VSA may carry several sub-attributes. Reading a VSA stops at its
    /// first malformed sub-attribute (length below 2 or past the end), and
    /// what was read before it is still returned: a VSA is opaque to the
    /// protocol, so a vendor's odd format must not make the packet invalid.
    pub fn vendor_attrs(&self, vendor_id: u32) -> impl Iterator<Item = (u8, &[u8])> + '_ {
        self.attributes
            .iter()
            .filter_map(move |a| match a.vendor() {
                Some((id, rest)) if id == vendor_id => Some(rest),
                _ => None,
            })
            .flat_map(|rest| VendorSubAttributes { rest })
    }

    pub(crate) fn wire_attributes(&self) -> impl Iterator<Item = (u8, &[u8])> + Clone + '_ {
        self.attributes.iter().map(|a| (a.typ, a.value.as_slice()))
    }
}

/// Sub-attributes of one VSA in the one-octet type / one-octet length format.
struct VendorSubAttributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for VendorSubAttributes<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&[typ, len], _) = self.rest.split_first_chunk::<2>()?;
        let len = usize::from(len);
        match self.rest.get(2..len) {
            Some(value) if len >= 2 => {
                self.rest = &self.rest[len..];
                Some((typ, value))
            }
            _ => {
                self.rest = &[];
                None
            }
        }
    }
}

/// The fixed header fields.
pub(crate) struct Header {
    pub(crate) code: u8,
    pub(crate) identifier: u8,
    pub(crate) authenticator: [u8; 16],
}

/// Splits a packet already bounded by [`checked_packet`] into header and
/// attribute bytes.
pub(crate) fn split_header(packet: &[u8]) -> Result<(Header, &[u8]), RadiusError> {
    let Some((head, body)) = packet.split_first_chunk::<HEADER_LEN>() else {
        return Err(RadiusError::TooShort { len: packet.len() });
    };
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(&head[4..]);
    Ok((Header { code: head[0], identifier: head[1], authenticator }, body))
}

/// Checks the header bounds of a datagram and returns the packet proper:
/// the first Length octets. Attributes are not checked.
pub(crate) fn checked_packet(datagram: &[u8]) -> Result<&[u8], RadiusError> {
    let Some(head) = datagram.first_chunk::<HEADER_LEN>() else {
        return Err(RadiusError::TooShort { len: datagram.len() });
    };
    let length = u16::from_be_bytes([head[2], head[3]]);
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&usize::from(length)) {
        return Err(RadiusError::BadLength { length });
    }
    match datagram.get(..usize::from(length)) {
        Some(packet) => Ok(packet),
        None => Err(RadiusError::Truncated { length, received: datagram.len() }),
    }
}

/// Walks the attributes of a packet bounded by [`checked_packet`], yielding
/// `(offset in packet, type, value)` and an error (then nothing more) at the
/// first attribute whose length is impossible.
pub(crate) struct RawAttributes<'a> {
    packet: &'a [u8],
    pos: usize,
}

impl<'a> RawAttributes<'a> {
    pub(crate) fn new(packet: &'a [u8]) -> RawAttributes<'a> {
        RawAttributes { packet, pos: HEADER_LEN }
    }
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = Result<(usize, u8, &'a [u8]), RadiusError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.pos;
        let rest = self.packet.get(offset..).filter(|r| !r.is_empty())?;
        // Whatever happens below, this attribute is the last one looked at
        // unless it is well formed.
        self.pos = self.packet.len();
        let Some(&[typ, len]) = rest.first_chunk::<2>() else {
            return Some(Err(RadiusError::BadAttribute {
                offset,
                reason: "attribute header cut off by packet Length",
            }));
        };
        let len = usize::from(len);
        if len < 2 {
            return Some(Err(RadiusError::BadAttribute { offset, reason: "attribute length below 2" }));
        }
        let Some(value) = rest.get(2..len) else {
            return Some(Err(RadiusError::BadAttribute { offset, reason: "attribute runs past packet Length" }));
        };
        self.pos = offset + len;
        Some(Ok((offset, typ, value)))
    }
}

/// Encodes a header and attributes, checking every bound first so that the
/// output is allocated once at its final size.
pub(crate) fn encode_parts<'a>(
    code: Code,
    identifier: u8,
    authenticator: &[u8; 16],
    attributes: impl Iterator<Item = (u8, &'a [u8])> + Clone,
) -> Result<Vec<u8>, RadiusError> {
    let mut len = HEADER_LEN;
    for (typ, value) in attributes.clone() {
        if value.len() > MAX_VALUE_LEN {
            return Err(RadiusError::ValueTooLong { typ, len: value.len() });
        }
        len = len.saturating_add(2 + value.len());
    }
    if len > MAX_PACKET_LEN {
        return Err(RadiusError::PacketTooLong { len });
    }
    let mut out = Vec::with_capacity(len);
    out.push(code.as_u8());
    out.push(identifier);
    // Fits: len <= 4096 was checked above.
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(authenticator);
    for (typ, value) in attributes {
        out.push(typ);
        out.push((2 + value.len()) as u8);
        out.extend_from_slice(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(code: u8, length: u16) -> Vec<u8> {
        let mut v = vec![code, 7];
        v.extend_from_slice(&length.to_be_bytes());
        v.extend_from_slice(&[0xaa; 16]);
        v
    }

    #[test]
    fn header_bounds() {
        assert_eq!(Packet::decode(&[]), Err(RadiusError::TooShort { len: 0 }));
        assert_eq!(Packet::decode(&[1; 19]), Err(RadiusError::TooShort { len: 19 }));
        assert_eq!(Packet::decode(&header(1, 19)), Err(RadiusError::BadLength { length: 19 }));
        let mut big = header(1, 4097);
        big.resize(5000, 0);
        assert_eq!(Packet::decode(&big), Err(RadiusError::BadLength { length: 4097 }));
        assert_eq!(Packet::decode(&header(1, 21)), Err(RadiusError::Truncated { length: 21, received: 20 }));
        let p = Packet::decode(&header(1, 20)).unwrap();
        assert_eq!(p.code, Code::AccessRequest);
        assert_eq!(p.identifier, 7);
        assert_eq!(p.authenticator, [0xaa; 16]);
        assert!(p.attributes.is_empty());
    }

    #[test]
    fn octets_beyond_length_are_ignored() {
        let mut d = header(2, 23);
        d.extend_from_slice(&[18, 3, b'x', 0xff, 0xff, 0xff]);
        let p = Packet::decode(&d).unwrap();
        assert_eq!(p.attributes, vec![Attribute::new(18, *b"x")]);
        assert_eq!(p.encode().unwrap(), d[..23]);
    }

    #[test]
    fn attribute_bounds() {
        // Length 1.
        let mut d = header(1, 22);
        d.extend_from_slice(&[1, 1]);
        assert_eq!(
            Packet::decode(&d),
            Err(RadiusError::BadAttribute { offset: 20, reason: "attribute length below 2" })
        );
        // Runs past Length (but not past the datagram).
        let mut d = header(1, 23);
        d.extend_from_slice(&[1, 4, b'a', b'b']);
        assert_eq!(
            Packet::decode(&d),
            Err(RadiusError::BadAttribute { offset: 20, reason: "attribute runs past packet Length" })
        );
        // A lone Type octet.
        let mut d = header(1, 21);
        d.push(1);
        assert!(matches!(Packet::decode(&d), Err(RadiusError::BadAttribute { offset: 20, .. })));
        // Second attribute broken: offset names it.
        let mut d = header(1, 25);
        d.extend_from_slice(&[1, 3, b'a', 5, 0]);
        assert!(matches!(Packet::decode(&d), Err(RadiusError::BadAttribute { offset: 23, .. })));
        // Empty values are fine.
        let mut d = header(1, 22);
        d.extend_from_slice(&[24, 2]);
        assert_eq!(Packet::decode(&d).unwrap().attr(attr::STATE), Some(&[][..]));
    }

    #[test]
    fn encode_bounds() {
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.push(attr::REPLY_MESSAGE, vec![b'a'; 253]);
        assert_eq!(p.encode().unwrap().len(), 20 + 255);
        p.push(attr::REPLY_MESSAGE, vec![b'a'; 254]);
        assert_eq!(p.encode(), Err(RadiusError::ValueTooLong { typ: 18, len: 254 }));
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        for _ in 0..16 {
            p.push(attr::CLASS, vec![0; 253]);
        }
        // 20 + 16 * 255 = 4100.
        assert_eq!(p.encode(), Err(RadiusError::PacketTooLong { len: 4100 }));
        p.attributes.pop();
        p.push(attr::CLASS, vec![0; 249]);
        assert_eq!(p.encode().unwrap().len(), 4096);
    }

    #[test]
    fn accessors() {
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.push(attr::CLASS, *b"one");
        p.push(attr::REPLY_MESSAGE, "hi");
        p.push(attr::CLASS, b"two".to_vec());
        assert_eq!(p.attr(attr::CLASS), Some(&b"one"[..]));
        assert_eq!(p.attrs(attr::CLASS).collect::<Vec<_>>(), vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(p.count(attr::CLASS), 2);
        assert_eq!(p.count(attr::STATE), 0);
        assert_eq!(p.attr(attr::STATE), None);
        assert_eq!(p.remove(attr::CLASS), 2);
        assert_eq!(p.attributes.len(), 1);
    }

    #[test]
    fn response_to_copies_identifier_and_proxy_state_in_order() {
        let mut req = Packet::new(Code::AccessRequest, 42, [9; 16]);
        req.push(attr::PROXY_STATE, *b"p1");
        req.push(attr::USER_NAME, *b"bob");
        req.push(attr::PROXY_STATE, *b"p2");
        let r = Packet::response_to(&req, Code::AccessAccept);
        assert_eq!(r.identifier, 42);
        assert_eq!(r.code, Code::AccessAccept);
        assert_eq!(r.attrs(attr::PROXY_STATE).collect::<Vec<_>>(), vec![&b"p1"[..], &b"p2"[..]]);
        assert_eq!(r.attributes.len(), 2);
    }

    #[test]
    fn vendor_specific_round_trip() {
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.push_vendor(12356, 1, b"vpn-users").unwrap();
        p.push_vendor(9, 1, b"shell:priv-lvl=15").unwrap();
        // Two sub-attributes in one VSA.
        p.push(attr::VENDOR_SPECIFIC, [0, 0, 0x30, 0x44, 1, 4, b'a', b'b', 3, 3, b'c'].to_vec());
        let d = Packet::decode(&p.encode().unwrap()).unwrap();
        assert_eq!(d, p);
        assert_eq!(d.vendor_attrs(9).collect::<Vec<_>>(), vec![(1, &b"shell:priv-lvl=15"[..])]);
        assert_eq!(
            d.vendor_attrs(12356).collect::<Vec<_>>(),
            vec![(1, &b"vpn-users"[..]), (1, &b"ab"[..]), (3, &b"c"[..])]
        );
        assert_eq!(d.vendor_attrs(311).count(), 0);
        assert_eq!(
            d.attributes[0].vendor(),
            Some((12356, &[1, 11, b'v', b'p', b'n', b'-', b'u', b's', b'e', b'r', b's'][..]))
        );
        assert_eq!(Attribute::new(1, *b"x").vendor(), None);
        assert!(matches!(Attribute::vendor_specific(9, 1, &[0; 248]), Err(RadiusError::ValueTooLong { .. })));
        assert_eq!(Attribute::vendor_specific(9, 1, &[0; 247]).unwrap().value.len(), 253);
    }

    #[test]
    fn malformed_vendor_sub_attributes_stop_reading_that_vsa_only() {
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        // Good, then length 1, then would-be good.
        p.push(attr::VENDOR_SPECIFIC, [0, 0, 0, 9, 1, 3, b'a', 2, 1, 1, 3, b'b'].to_vec());
        // Length past the end.
        p.push(attr::VENDOR_SPECIFIC, [0, 0, 0, 9, 1, 9, b'a'].to_vec());
        // Too short for a Vendor-Id.
        p.push(attr::VENDOR_SPECIFIC, [0, 0, 9].to_vec());
        // A trailing single octet.
        p.push(attr::VENDOR_SPECIFIC, [0, 0, 0, 9, 4, 2, 7].to_vec());
        assert_eq!(p.vendor_attrs(9).collect::<Vec<_>>(), vec![(1, &b"a"[..]), (4, &b""[..])]);
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        // At most 15 attributes of at most 253 octets: 20 + 15 * 255 < 4096.
        let attribute = (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..=253))
            .prop_map(|(typ, value)| Attribute { typ, value });
        (any::<u8>(), any::<u8>(), any::<[u8; 16]>(), proptest::collection::vec(attribute, 0..15)).prop_map(
            |(code, identifier, authenticator, attributes)| Packet {
                code: Code::from(code),
                identifier,
                authenticator,
                attributes,
            },
        )
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Packet::decode(&bytes);
        }

        #[test]
        fn decode_of_a_valid_header_never_panics(
            code in any::<u8>(),
            body in proptest::collection::vec(any::<u8>(), 0..400),
            extra in 0usize..8,
        ) {
            let mut d = header(code, (20 + body.len()) as u16);
            d.extend_from_slice(&body);
            d.extend(std::iter::repeat_n(0u8, extra));
            if let Ok(p) = Packet::decode(&d) {
                prop_assert_eq!(p.encode().unwrap(), d[..20 + body.len()].to_vec());
            }
        }

        #[test]
        fn encode_then_decode_is_identity(p in arb_packet()) {
            let bytes = p.encode().unwrap();
            prop_assert_eq!(Packet::decode(&bytes).unwrap(), p);
        }
    }
}
