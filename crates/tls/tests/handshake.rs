//! Client and server configurations of tessera-tls tested through real
//! rustls handshakes, sans network: a `ClientConnection` and a
//! `ServerConnection` exchange bytes through in-memory buffers (the way
//! rustls tests itself), so every case runs in microseconds and in parallel.

use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection, SignatureScheme,
    SupportedProtocolVersion,
};
use tessera_tls::{
    CaptureVerifier, ClientIdentity, NodeClientVerifier, ServerTrust, TlsError, cert_sha256, client_config,
    generate_node_identity, node_cert_dn, node_name_of,
};

const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
/// Every verifier has a TLS 1.2 and a TLS 1.3 signature path; both run.
const VERSIONS: [&[&SupportedProtocolVersion]; 2] = [TLS13, TLS12];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server's certificate and key.
struct ServerCert {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl ServerCert {
    fn self_signed(name: &str) -> Self {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        ServerCert { cert: ck.cert.der().clone(), key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into() }
    }

    fn pin(&self) -> [u8; 32] {
        cert_sha256(self.cert.as_ref())
    }
}

/// A test CA (PEM) and a `localhost` server certificate it signed.
fn ca_and_server() -> (String, ServerCert) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "tessera-tls test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    (ca.pem(), ServerCert { cert: cert.der().clone(), key: PrivatePkcs8KeyDer::from(key.serialize_der()).into() })
}

fn server_config(
    server: &ServerCert,
    versions: &[&'static SupportedProtocolVersion],
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions).unwrap();
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_single_cert(vec![server.cert.clone()], server.key.clone_key()).unwrap())
}

/// Which end refused the handshake.
#[derive(Debug, PartialEq)]
enum Side {
    Client,
    Server,
}

/// Runs a handshake to `localhost` between the two configurations, moving
/// bytes until neither side has anything left to say.
fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> (Connection, Connection, Result<(), (Side, rustls::Error)>) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = Connection::from(ClientConnection::new(client, name).unwrap());
    let mut s = Connection::from(ServerConnection::new(server).unwrap());
    let result = pump(&mut c, &mut s);
    (c, s, result)
}

fn pump(client: &mut Connection, server: &mut Connection) -> Result<(), (Side, rustls::Error)> {
    // A full TLS 1.2 or 1.3 handshake with client authentication takes
    // three flights each way at most; the bound only stops a broken test.
    for _ in 0..10 {
        let to_server = transfer(client, server).map_err(|e| (Side::Server, e))?;
        let to_client = transfer(server, client).map_err(|e| (Side::Client, e))?;
        if to_server == 0 && to_client == 0 && !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

/// Moves everything `from` wants to send into `to`; the error is `to`'s.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<usize, rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rest = buf.as_slice();
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(buf.len())
}

/// The `TlsError` a verifier put inside a rustls certificate error.
fn tls_error(e: &rustls::Error) -> Option<&TlsError> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.0.downcast_ref::<TlsError>(),
        _ => None,
    }
}

/// A client certificate resolver that records the server's hint and
/// presents whatever certificate and key it was given, matching or not (as
/// a thief with a copied certificate would).
#[derive(Debug)]
struct Recording {
    hints: Mutex<Option<Vec<Vec<u8>>>>,
    key: Arc<CertifiedKey>,
}

impl Recording {
    fn new(cert_der: &[u8], key_of: &ClientIdentity) -> Arc<Self> {
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_of.key_der.as_slice()));
        let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der).unwrap();
        let key = Arc::new(CertifiedKey::new(vec![CertificateDer::from(cert_der.to_vec())], key));
        Arc::new(Recording { hints: Mutex::new(None), key })
    }
}

impl ResolvesClientCert for Recording {
    fn resolve(&self, root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        *self.hints.lock().unwrap() = Some(root_hint_subjects.iter().map(|h| h.to_vec()).collect());
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A pinned-trust client configuration whose client certificate comes from
/// `resolver`.
fn client_with_resolver(server: &ServerCert, resolver: Arc<Recording>) -> Arc<ClientConfig> {
    let mut config = (*client_config(&ServerTrust::Pinned(server.pin()), None).unwrap()).clone();
    config.client_auth_cert_resolver = resolver;
    Arc::new(config)
}

#[test]
fn node_identity_handshake_gives_the_server_the_client_certificate() {
    let server = ServerCert::self_signed("localhost");
    let identity = generate_node_identity("node-a").unwrap();
    let client = client_config(&ServerTrust::Pinned(server.pin()), Some(&identity)).unwrap();
    for versions in VERSIONS {
        let (_, s, result) =
            handshake(client.clone(), server_config(&server, versions, Some(NodeClientVerifier::new())));
        result.unwrap();
        let peer = s.peer_certificates().expect("the node presented its certificate");
        assert_eq!(peer.len(), 1);
        assert_eq!(cert_sha256(peer[0].as_ref()), cert_sha256(&identity.cert_der));
        assert_eq!(node_name_of(peer[0].as_ref()).as_deref(), Some("node-a"));
    }
}

#[test]
fn client_without_identity_connects_without_a_certificate() {
    let server = ServerCert::self_signed("localhost");
    let client = client_config(&ServerTrust::Pinned(server.pin()), None).unwrap();
    for versions in VERSIONS {
        let (c, s, result) =
            handshake(client.clone(), server_config(&server, versions, Some(NodeClientVerifier::new())));
        result.unwrap();
        assert!(s.peer_certificates().is_none());
        assert!(!c.is_handshaking());
    }
}

#[test]
fn certificate_without_its_private_key_fails_the_handshake() {
    let server = ServerCert::self_signed("localhost");
    let a = generate_node_identity("node-a").unwrap();
    let b = generate_node_identity("node-b").unwrap();
    for versions in VERSIONS {
        let client = client_with_resolver(&server, Recording::new(&a.cert_der, &b));
        let (_, s, result) = handshake(client, server_config(&server, versions, Some(NodeClientVerifier::new())));
        let (side, error) = result.unwrap_err();
        assert_eq!(side, Side::Server, "{error}");
        assert_eq!(error, rustls::Error::InvalidCertificate(CertificateError::BadSignature), "{versions:?}");
        assert!(s.peer_certificates().is_none() || s.is_handshaking());
    }
}

#[test]
fn malformed_client_certificate_is_refused_as_bad_encoding() {
    let server = ServerCert::self_signed("localhost");
    let identity = generate_node_identity("node-a").unwrap();
    let client = client_with_resolver(&server, Recording::new(b"not a certificate", &identity));
    let (_, _, result) = handshake(client, server_config(&server, TLS13, Some(NodeClientVerifier::new())));
    let (side, error) = result.unwrap_err();
    assert_eq!((side, error), (Side::Server, rustls::Error::InvalidCertificate(CertificateError::BadEncoding)));
}

#[test]
fn client_config_refuses_an_identity_whose_key_is_not_the_certificates() {
    let a = generate_node_identity("node-a").unwrap();
    let b = generate_node_identity("node-b").unwrap();
    let mixed = ClientIdentity { cert_der: a.cert_der.clone(), key_der: b.key_der.clone() };
    let e = client_config(&ServerTrust::Unverified, Some(&mixed)).unwrap_err();
    assert!(matches!(e, TlsError::ClientIdentity(_)), "{e:?}");
}

#[test]
fn certificate_request_hints_exactly_the_node_dn() {
    let server = ServerCert::self_signed("localhost");
    let identity = generate_node_identity("node-a").unwrap();
    let verifier = NodeClientVerifier::new();
    assert!(verifier.offer_client_auth());
    assert!(!verifier.client_auth_mandatory(), "clients without a certificate must still connect");
    for versions in VERSIONS {
        let recording = Recording::new(&identity.cert_der, &identity);
        let client = client_with_resolver(&server, recording.clone());
        let (_, _, result) = handshake(client, server_config(&server, versions, Some(NodeClientVerifier::new())));
        result.unwrap();
        let hints = recording.hints.lock().unwrap().clone().expect("the server asked for a certificate");
        assert_eq!(hints, vec![node_cert_dn().as_ref().to_vec()], "{versions:?}");
    }
}

#[test]
fn pinned_trust_accepts_the_pinned_certificate_and_refuses_another() {
    let pinned = ServerCert::self_signed("localhost");
    let other = ServerCert::self_signed("localhost");
    let client = client_config(&ServerTrust::Pinned(pinned.pin()), None).unwrap();
    for versions in VERSIONS {
        let (_, _, result) = handshake(client.clone(), server_config(&pinned, versions, None));
        result.unwrap();
        let (_, _, result) = handshake(client.clone(), server_config(&other, versions, None));
        let (side, error) = result.unwrap_err();
        assert_eq!(side, Side::Client);
        assert!(matches!(tls_error(&error), Some(TlsError::PinMismatch)), "{error:?}");
    }
}

#[test]
fn pinned_trust_ignores_the_server_name() {
    // A pin names one certificate; the name it was issued for is moot.
    let server = ServerCert::self_signed("somewhere.else.example");
    let client = client_config(&ServerTrust::Pinned(server.pin()), None).unwrap();
    handshake(client, server_config(&server, TLS13, None)).2.unwrap();
}

#[test]
fn ca_file_trust_verifies_the_chain_and_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, server) = ca_and_server();
    let (other_ca_pem, _) = ca_and_server();
    let ca_file = dir.path().join("ca.pem");
    let other_ca_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    std::fs::write(&other_ca_file, other_ca_pem).unwrap();

    let good = client_config(&ServerTrust::CaFile(ca_file), None).unwrap();
    handshake(good.clone(), server_config(&server, TLS13, None)).2.unwrap();

    let wrong_ca = client_config(&ServerTrust::CaFile(other_ca_file), None).unwrap();
    let (side, error) = handshake(wrong_ca, server_config(&server, TLS13, None)).2.unwrap_err();
    // Both test CAs share a name, so webpki finds "the" issuer and the
    // signature does not verify; a differently named CA gives UnknownIssuer.
    assert_eq!(side, Side::Client);
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(CertificateError::BadSignature | CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );

    // Signed by the right CA, but for another name.
    let name = ServerName::try_from("db.example").unwrap();
    let mut c = Connection::from(ClientConnection::new(good, name).unwrap());
    let mut s = Connection::from(ServerConnection::new(server_config(&server, TLS13, None)).unwrap());
    let (side, error) = pump(&mut c, &mut s).unwrap_err();
    assert_eq!(side, Side::Client);
    assert!(matches!(error, rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })));
}

#[test]
fn ca_file_problems_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let e = client_config(&ServerTrust::CaFile(missing.clone()), None).unwrap_err();
    assert!(matches!(e, TlsError::CaFileUnreadable { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("CA file {}: ", missing.display())), "{e}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = client_config(&ServerTrust::CaFile(empty.clone()), None).unwrap_err();
    assert!(matches!(e, TlsError::CaFileEmpty { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("CA file {} holds no PEM certificate", empty.display()));
}

#[test]
fn unverified_trust_takes_any_server_certificate() {
    let server = ServerCert::self_signed("anything.example");
    let client = client_config(&ServerTrust::Unverified, None).unwrap();
    for versions in VERSIONS {
        handshake(client.clone(), server_config(&server, versions, None)).2.unwrap();
    }
}

#[test]
fn capture_verifier_records_the_server_certificate_and_aborts() {
    let server = ServerCert::self_signed("localhost");
    let (verifier, client) = CaptureVerifier::config().unwrap();
    let (_, _, result) = handshake(client, server_config(&server, TLS13, None));
    let (side, error) = result.unwrap_err();
    assert_eq!(side, Side::Client);
    assert!(matches!(tls_error(&error), Some(TlsError::Captured)), "{error:?}");
    assert_eq!(verifier.take().as_deref(), Some(server.cert.as_ref()));
    assert_eq!(verifier.take(), None, "taken once");
}
