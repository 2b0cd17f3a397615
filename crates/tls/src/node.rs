//! A node's own certificate: what one tessera node presents to another as a
//! TLS client, and the distinguished name all such certificates share.
//!
//! Every node certificate is self-signed with the same subject and issuer
//! ([`NODE_CERT_DN`]). That shared DN is only a label for TLS clients to
//! pick the certificate by (the server's certificate-request hint); it
//! proves nothing, since anyone can make a certificate with that DN. A node
//! is recognised by its certificate's SHA-256, looked up by the application.
//! The node name rides along in a URI SAN for display and logs.

use std::fmt;
use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, string::Ia5String,
};
use rustls::DistinguishedName;
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use crate::{TlsError, cert_sha256_hex};

/// The subject (and issuer) of every node certificate, as x509-parser and
/// `openssl x509 -nameopt RFC2253`-style tools print it (most significant
/// first). The same for every node, so a server can hint it.
pub const NODE_CERT_DN: &str = "O=tessera, OU=cluster node, CN=tessera node";

/// The attributes of [`NODE_CERT_DN`] in certificate order: rcgen's type for
/// writing the certificate, the attribute OID's DER body for writing the
/// hint, and the value. One table, so the two encodings cannot drift apart.
const NODE_DN_PARTS: [(DnType, [u8; 3], &str); 3] = [
    (DnType::OrganizationName, [0x55, 0x04, 0x0a], "tessera"),
    (DnType::OrganizationalUnitName, [0x55, 0x04, 0x0b], "cluster node"),
    (DnType::CommonName, [0x55, 0x04, 0x03], "tessera node"),
];

/// The URI SAN of a node certificate is this prefix and the node name,
/// percent-encoded (RFC 3986 unreserved characters stay as they are).
pub const NODE_NAME_URN_PREFIX: &str = "urn:tessera:node:";

/// Longest node name put in a certificate: the length of a DNS name, since
/// node names default to the host name. Bounds the certificate's size.
pub const MAX_NODE_NAME_LEN: usize = 255;

/// How long a node certificate is valid: 20 years (with 5 leap days), so a
/// cluster never has to rotate one on a schedule. Peers trust it by
/// fingerprint, and rotation is replacing the fingerprint, not waiting for
/// an expiry.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs((20 * 365 + 5) * 86_400);

/// Everything but RFC 3986's unreserved characters is escaped in the URN.
const URN_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A certificate and its private key, presented as a TLS client.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The end-entity certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its private key, PKCS#8 DER; wiped from memory when dropped.
    pub key_der: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ClientIdentity {
    /// Shows which certificate this is, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_sha256", &cert_sha256_hex(&self.cert_der))
            .field("key_der", &"<redacted>")
            .finish()
    }
}

/// The DER of [`NODE_CERT_DN`] (an X.501 `Name`, outer SEQUENCE included),
/// byte for byte the issuer of every node certificate: what a server sends
/// as its certificate-request hint, so clients offer node certificates and
/// nothing else.
pub fn node_cert_dn() -> DistinguishedName {
    let mut rdns = Vec::new();
    for (_, oid, value) in &NODE_DN_PARTS {
        // AttributeTypeAndValue ::= SEQUENCE { OID, UTF8String }, each in a
        // single-valued RDN SET; UTF8String because that is what rcgen
        // writes for a string value, and the hint must match the issuer
        // bytes exactly.
        let mut atv = der(0x06, oid);
        atv.extend(der(0x0c, value.as_bytes()));
        rdns.extend(der(0x31, &der(0x30, &atv)));
    }
    DistinguishedName::from(der(0x30, &rdns))
}

/// One DER TLV. The node DN's parts are short constants; the long forms are
/// there so a longer constant would not silently encode wrong.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A fresh node identity: a new ECDSA P-256 key and a self-signed
/// certificate for it, valid [`NODE_CERT_VALIDITY`] from now, subject and
/// issuer [`NODE_CERT_DN`], the node name in a `urn:tessera:node:` URI SAN.
/// Reads the clock for the validity period; see
/// [`generate_node_identity_at`] to choose it.
pub fn generate_node_identity(node_name: &str) -> Result<ClientIdentity, TlsError> {
    // The one clock read of this crate, at its edge: certificate validity
    // is informative here (peers verify by fingerprint), so any "now" works.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    generate_node_identity_at(node_name, now)
}

/// [`generate_node_identity`] with the validity starting at `not_before`.
pub fn generate_node_identity_at(node_name: &str, not_before: SystemTime) -> Result<ClientIdentity, TlsError> {
    if node_name.is_empty() || node_name.len() > MAX_NODE_NAME_LEN {
        return Err(TlsError::NodeName { len: node_name.len() });
    }
    let uri = format!("{NODE_NAME_URN_PREFIX}{}", utf8_percent_encode(node_name, URN_ESCAPE));
    let not_after = not_before.checked_add(NODE_CERT_VALIDITY).ok_or(TlsError::Generate(rcgen::Error::Time))?;
    let (not_before, not_after) = (asn1_time(not_before)?, asn1_time(not_after)?);

    let mut params = CertificateParams::default();
    // Start from an empty DN: the default holds rcgen's own CN, and pushing
    // ours would replace its value but keep its position, so the order
    // (and the bytes the hint must match) would differ.
    params.distinguished_name = rcgen::DistinguishedName::new();
    for (attr, _, value) in &NODE_DN_PARTS {
        params.distinguished_name.push(attr.clone(), *value);
    }
    params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(uri).map_err(TlsError::Generate)?)];
    params.not_before = not_before;
    params.not_after = not_after;
    // A leaf for signing handshakes and nothing else: never a CA, so a
    // node certificate can never vouch for another certificate.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    // No serial number set: rcgen derives it from the public key, so the
    // many certificates sharing one issuer DN still differ in (issuer,
    // serial), which some TLS stacks treat as a certificate's identity.

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TlsError::Generate)?;
    let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
    // rcgen's KeyPair keeps its own copy of the key DER and does not wipe
    // it; it is dropped at the end of this function.
    Ok(ClientIdentity { cert_der: cert.der().to_vec(), key_der: Zeroizing::new(key.serialize_der()) })
}

/// `t` as rcgen's date type, whole seconds (certificates carry no more).
fn asn1_time(t: SystemTime) -> Result<time::OffsetDateTime, TlsError> {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_err(|_| TlsError::Generate(rcgen::Error::Time))?.as_secs();
    let secs = i64::try_from(secs).map_err(|_| TlsError::Generate(rcgen::Error::Time))?;
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| TlsError::Generate(rcgen::Error::Time))
}

/// The node name a certificate claims in its `urn:tessera:node:` URI SAN;
/// `None` if the DER does not parse or carries no such name. A claim, not a
/// proof: anyone can put any name in a certificate, so use it for display
/// after the fingerprint has been checked.
pub fn node_name_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => {
            let encoded = uri.strip_prefix(NODE_NAME_URN_PREFIX)?;
            percent_decode_str(encoded).decode_utf8().ok().map(|s| s.into_owned())
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::ParsedExtension;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn node_certificate_has_the_shared_dn_and_twenty_years() {
        let start = 1_800_000_000;
        let id = generate_node_identity_at("node-a", at(start)).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&id.cert_der).unwrap();
        assert_eq!(cert.subject().to_string(), NODE_CERT_DN);
        assert_eq!(cert.issuer().to_string(), NODE_CERT_DN);
        // The hint must equal the issuer byte for byte: clients compare DER.
        assert_eq!(cert.issuer().as_raw(), node_cert_dn().as_ref());
        assert_eq!(cert.subject().as_raw(), node_cert_dn().as_ref());
        let validity = cert.validity();
        assert_eq!(validity.not_before.timestamp(), start as i64);
        assert_eq!(validity.not_after.timestamp(), (start + NODE_CERT_VALIDITY.as_secs()) as i64);
        assert!(!cert.is_ca());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names, vec![GeneralName::URI("urn:tessera:node:node-a")]);
        let eku = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
            ParsedExtension::ExtendedKeyUsage(eku) => Some(eku.client_auth),
            _ => None,
        });
        assert_eq!(eku, Some(true));
        // The key is PKCS#8 and belongs to the certificate.
        let key = KeyPair::try_from(id.key_der.as_slice()).unwrap();
        assert_eq!(key.public_key_raw(), cert.public_key().subject_public_key.data.as_ref());
    }

    #[test]
    fn every_node_gets_a_fresh_key() {
        let a = generate_node_identity("same").unwrap();
        let b = generate_node_identity("same").unwrap();
        assert_ne!(a.key_der, b.key_der);
        assert_ne!(a.cert_der, b.cert_der);
    }

    #[test]
    fn node_names_round_trip_through_the_uri() {
        for name in ["node-a", "db1.corp.example", "node 1/ü:%", "~_.-"] {
            let id = generate_node_identity(name).unwrap();
            assert_eq!(node_name_of(&id.cert_der).as_deref(), Some(name));
        }
        let id = generate_node_identity("a b").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&id.cert_der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names, vec![GeneralName::URI("urn:tessera:node:a%20b")]);
    }

    #[test]
    fn node_name_of_other_certificates_is_none() {
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        assert_eq!(node_name_of(other.cert.der()), None);
        assert_eq!(node_name_of(b"garbage"), None);
    }

    #[test]
    fn node_name_length_is_bounded() {
        assert!(matches!(generate_node_identity(""), Err(TlsError::NodeName { len: 0 })));
        let long = "n".repeat(MAX_NODE_NAME_LEN + 1);
        assert!(matches!(generate_node_identity(&long), Err(TlsError::NodeName { .. })));
        generate_node_identity(&"n".repeat(MAX_NODE_NAME_LEN)).unwrap();
    }

    #[test]
    fn debug_never_shows_the_key() {
        let id = generate_node_identity("node-a").unwrap();
        let shown = format!("{id:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains(&cert_sha256_hex(&id.cert_der)), "{shown}");
        // Neither the bytes as Debug prints a Vec nor as hex appear.
        let as_debug = format!("{:?}", id.key_der.as_slice());
        assert!(!shown.contains(&as_debug[1..20]), "{shown}");
        assert!(!shown.contains(&hex::encode(&id.key_der[..8])), "{shown}");
    }
}
