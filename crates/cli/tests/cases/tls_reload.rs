//! Issue 19: certificate rotation without a restart. A server with its own
//! HTTPS certificate (`[http] tls_cert/tls_key`) and RadSec, under REST and
//! RadSec clients on new and on kept-alive connections, has its
//! certificate replaced: by rename (picked up by the file watch), in place
//! with the key written seconds after the certificate (the half-written
//! pair must not be served), and with the watch off by SIGHUP (also the
//! RadSec client CA). No request may fail; new connections must get the
//! new certificate, open ones keep theirs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tessera_radius::{Attribute, Code, Packet, attr, hide_password};

use super::support::TestNode;

/// RFC 6614's fixed shared secret.
const RADSEC_SECRET: &[u8] = b"radsec";
/// Upper bounds for every loop here: no test may run away.
const LOAD_DEADLINE: Duration = Duration::from_secs(90);
const LOAD_MAX_REQUESTS: usize = 4000;
const PAUSE: Duration = Duration::from_millis(25);

struct Ca {
    issuer: rcgen::Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let pem = p.self_signed(&key).unwrap().pem();
    Ca { issuer: rcgen::Issuer::new(p, key), pem }
}

/// A leaf certificate for 127.0.0.1: (chain PEM, key PEM, SHA-256 `ab:cd:…`).
struct Leaf {
    cert: String,
    key: String,
    sha256: String,
}

fn leaf(ca: &Ca, name: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        sha256: tessera_tls::cert_sha256_hex(cert.der()),
        cert: format!("{}{}", cert.pem(), ca.pem),
        key: key.serialize_pem(),
    }
}

/// Replaces `path` the way an administrator should: a new file renamed over it.
fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn fingerprint(der: &[u8]) -> String {
    tessera_tls::cert_sha256_hex(der)
}

// ---------------------------------------------------------------- REST

fn rest_client(trust: &[&Ca], keep_alive: bool) -> reqwest::blocking::Client {
    let roots = trust.iter().map(|ca| reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap());
    let mut b =
        reqwest::blocking::Client::builder().tls_certs_only(roots).tls_info(true).timeout(Duration::from_secs(10));
    if !keep_alive {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().unwrap()
}

/// One validate request: the certificate the connection saw, or why it failed.
fn rest_once(c: &reqwest::blocking::Client, url: &str) -> Result<String, String> {
    let r = c
        .post(format!("{url}/api/v1/validate"))
        .json(&serde_json::json!({"username": "nobody", "password": "123456"}))
        .send()
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status();
    let cert = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .map(fingerprint)
        .ok_or("no TLS info")?;
    let body: serde_json::Value = r.json().map_err(|e| e.to_string())?;
    if status != 200 || body["result"] != "reject" {
        return Err(format!("{status}: {body}"));
    }
    Ok(cert)
}

// ---------------------------------------------------------------- RadSec

fn radsec_config(trust: &[&Ca], client: &Leaf) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in trust {
        roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(client.cert.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(client.key.as_bytes()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(cfg)
}

struct RadsecConn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    /// The server certificate this connection got.
    sha256: String,
    id: u8,
}

impl RadsecConn {
    fn open(addr: &str, cfg: &Arc<rustls::ClientConfig>) -> Result<RadsecConn, String> {
        let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| format!("handshake: {e}"))?;
        }
        let sha256 = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| fingerprint(c.as_ref()))
            .ok_or("no server certificate")?;
        Ok(RadsecConn { tls, sha256, id: 0 })
    }

    /// One Access-Request for an unknown user: an Access-Reject is the answer.
    fn request(&mut self) -> Result<(), String> {
        self.id = self.id.wrapping_add(1);
        let authenticator: [u8; 16] = std::array::from_fn(|i| (i as u8) ^ self.id);
        let req = Packet {
            code: Code::AccessRequest,
            identifier: self.id,
            authenticator,
            attributes: vec![
                Attribute { typ: attr::USER_NAME, value: b"nobody".to_vec() },
                Attribute {
                    typ: attr::USER_PASSWORD,
                    value: hide_password(RADSEC_SECRET, &authenticator, b"123456").unwrap(),
                },
            ],
        };
        let bytes = req.encode_request(RADSEC_SECRET, true).unwrap();
        self.tls.write_all(&bytes).map_err(|e| format!("write: {e}"))?;
        let mut head = [0u8; 4];
        self.tls.read_exact(&mut head).map_err(|e| format!("read: {e}"))?;
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        if !(20..=4096).contains(&len) {
            return Err(format!("reply length {len}"));
        }
        let mut reply = vec![0u8; len];
        reply[..4].copy_from_slice(&head);
        self.tls.read_exact(&mut reply[4..]).map_err(|e| format!("read: {e}"))?;
        let p = Packet::decode(&reply).map_err(|e| format!("decode: {e}"))?;
        if p.code != Code::AccessReject || p.identifier != self.id {
            return Err(format!("unexpected reply {:?} id {}", p.code, p.identifier));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- load

/// One request as a client saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    result: Result<String, String>,
}

/// Client loops running until stopped (bounded in time and count).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<(&'static str, std::thread::JoinHandle<Vec<Seen>>)>,
}

impl Load {
    fn new() -> Load {
        Load { stop: Arc::new(AtomicBool::new(false)), threads: Vec::new() }
    }

    /// Runs `one` (returning the certificate seen, or an error) in a loop.
    fn spawn(&mut self, name: &'static str, mut one: impl FnMut() -> Result<String, String> + Send + 'static) {
        let stop = self.stop.clone();
        let t = std::thread::spawn(move || {
            let started = Instant::now();
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_DEADLINE && seen.len() < LOAD_MAX_REQUESTS {
                let at = Instant::now();
                seen.push(Seen { at, result: one() });
                std::thread::sleep(PAUSE);
            }
            seen
        });
        self.threads.push((name, t));
    }

    /// Stops the loops; every one must have run and none may have failed.
    fn finish(self) -> Vec<(&'static str, Vec<Seen>)> {
        self.stop.store(true, Ordering::Relaxed);
        let out: Vec<(&'static str, Vec<Seen>)> =
            self.threads.into_iter().map(|(name, t)| (name, t.join().unwrap())).collect();
        for (name, seen) in &out {
            let failed: Vec<&Seen> = seen.iter().filter(|s| s.result.is_err()).collect();
            assert!(failed.is_empty(), "{name}: {} of {} requests failed: {:?}", failed.len(), seen.len(), failed);
            assert!(seen.len() >= 20, "{name}: only {} requests", seen.len());
        }
        out
    }
}

/// Certificates seen by requests started in `[from, to)`.
fn certs_between(seen: &[Seen], from: Instant, to: Instant) -> Vec<&str> {
    seen.iter().filter(|s| s.at >= from && s.at < to).map(|s| s.result.as_deref().unwrap()).collect()
}

/// Polls `probe` until it returns `want` (bounded): when a new connection
/// first got the new certificate.
fn wait_for_cert(
    what: &str,
    want: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<String, String>,
) -> Instant {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match probe() {
            Ok(c) if c == want => return Instant::now(),
            Ok(c) => last = c,
            Err(e) => panic!("{what}: probe failed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: still {last} after {within:?}, wanted {want}");
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

struct Setup {
    n: TestNode,
    dir: PathBuf,
    a: Ca,
    b: Ca,
    client_a: Leaf,
}

fn setup() -> Setup {
    let n = TestNode::new();
    n.ok(&["init"]);
    let secret = n.cwd().join("radius.secret");
    std::fs::write(&secret, "radius-test-secret\n").unwrap();
    n.ok(&[
        "client",
        "add",
        "loopback",
        "--address",
        "127.0.0.1",
        "--secret-file",
        secret.to_str().unwrap(),
        "--message-authenticator",
        "require",
    ]);
    let dir = n.cwd().join("pki");
    std::fs::create_dir(&dir).unwrap();
    let (a, b) = (ca("tessera test CA A"), ca("tessera test CA B"));
    let client_a = leaf(&a, "nas-a");
    Setup { n, dir, a, b, client_a }
}

/// Renamed files are picked up by the watch; an in-place copy with the key
/// written seconds after the certificate is never served half-done.
#[test]
fn certificate_replaced_under_rest_and_radsec_load_fails_no_request() {
    let Setup { mut n, dir, a, b, client_a } = setup();
    let (l1, l2, l3) = (leaf(&a, "tessera 1"), leaf(&b, "tessera 2"), leaf(&a, "tessera 3"));
    let (cert, key, client_ca) = (dir.join("server.pem"), dir.join("server.key"), dir.join("client-ca.pem"));
    replace_atomically(&cert, &l1.cert);
    replace_atomically(&key, &l1.key);
    replace_atomically(&client_ca, &a.pem);
    n.start_with(&[
        ("TESSERA_HTTP_TLS_CERT", cert.to_str().unwrap()),
        ("TESSERA_HTTP_TLS_KEY", key.to_str().unwrap()),
        ("TESSERA_RADIUS_RADSEC_LISTEN", "127.0.0.1:0"),
        ("TESSERA_RADIUS_RADSEC_CLIENT_CA", client_ca.to_str().unwrap()),
    ]);
    let url = format!("https://127.0.0.1:{}", n.https_port());
    let radsec = n.listening("radsec");
    let trust_both = radsec_config(&[&a, &b], &client_a);
    let probe_rest = rest_client(&[&a, &b], false);
    let probe_radsec = || RadsecConn::open(&radsec, &trust_both).map(|c| c.sha256);
    assert_eq!(rest_once(&probe_rest, &url).unwrap(), l1.sha256);
    assert_eq!(probe_radsec().unwrap(), l1.sha256);
    let scrape = rest_client(&[&a, &b], false);
    let metrics = || scrape.get(format!("{url}/metrics")).send().unwrap().text().unwrap();
    let readyz = || -> serde_json::Value { scrape.get(format!("{url}/readyz")).send().unwrap().json().unwrap() };
    assert_eq!(metric(&metrics(), "tessera_tls_reloads_total{listener=\"https\"}"), 0.0);

    // Clients: new connections per request, and kept-alive connections
    // opened (first request answered) before any rotation.
    let mut load = Load::new();
    {
        let (c, u) = (rest_client(&[&a, &b], false), url.clone());
        load.spawn("rest, new connections", move || rest_once(&c, &u));
        let (c, u) = (rest_client(&[&a, &b], true), url.clone());
        assert_eq!(rest_once(&c, &u).unwrap(), l1.sha256);
        load.spawn("rest, keep-alive", move || rest_once(&c, &u));
        let (addr, cfg) = (radsec.clone(), trust_both.clone());
        load.spawn("radsec, new connections", move || {
            let mut conn = RadsecConn::open(&addr, &cfg)?;
            conn.request()?;
            Ok(conn.sha256)
        });
        let mut conn = RadsecConn::open(&radsec, &trust_both).unwrap();
        conn.request().unwrap();
        load.spawn("radsec, one connection", move || conn.request().map(|_| conn.sha256.clone()));
    }
    std::thread::sleep(Duration::from_secs(1));

    // 1. Renamed into place (key first, then certificate).
    replace_atomically(&key, &l2.key);
    replace_atomically(&cert, &l2.cert);
    let t2 = wait_for_cert("https after rename", &l2.sha256, Duration::from_secs(10), || rest_once(&probe_rest, &url));
    wait_for_cert("radsec after rename", &l2.sha256, Duration::from_secs(10), probe_radsec);
    std::thread::sleep(Duration::from_secs(1));

    // 2. Copied in place, the key only after several polls: never applied
    //    half-done, reported, and applied once the key is there.
    let failures_before = metric(&metrics(), "tessera_tls_reload_failures_total{listener=\"https\"}");
    let w3 = Instant::now();
    std::fs::write(&cert, &l3.cert).unwrap();
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(rest_once(&probe_rest, &url).unwrap(), l2.sha256, "a certificate without its key was applied");
    assert_eq!(probe_radsec().unwrap(), l2.sha256, "a certificate without its key was applied (RadSec)");
    let text = metrics();
    assert!(metric(&text, "tessera_tls_reload_failures_total{listener=\"https\"}") > failures_before, "{text}");
    assert!(metric(&text, "tessera_tls_reload_failures_total{listener=\"radsec\"}") >= 1.0, "{text}");
    let ready = readyz();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(ready["reasons"].to_string().contains("server.key"), "names the key file: {ready}");
    let k3 = Instant::now();
    std::fs::write(&key, &l3.key).unwrap();
    let t3 = wait_for_cert("https after the key", &l3.sha256, Duration::from_secs(10), || rest_once(&probe_rest, &url));
    wait_for_cert("radsec after the key", &l3.sha256, Duration::from_secs(10), probe_radsec);
    std::thread::sleep(Duration::from_secs(1));
    let end = Instant::now();
    let seen = load.finish();

    let text = metrics();
    assert!(metric(&text, "tessera_tls_reloads_total{listener=\"https\"}") >= 2.0, "{text}");
    assert!(metric(&text, "tessera_tls_reloads_total{listener=\"radsec\"}") >= 2.0, "{text}");
    let (_, not_after) = validity(&l3.cert);
    assert_eq!(metric(&text, "tessera_tls_certificate_expiry_seconds{listener=\"https\"}"), not_after as f64);
    assert_eq!(readyz()["status"], "ok");

    for (name, seen) in &seen {
        let all: Vec<&str> = seen.iter().map(|s| s.result.as_deref().unwrap()).collect();
        if name.contains("new connections") {
            // Before the first rotation only L1; between rotations only the
            // pair in effect — in particular L2 all through the half-copied
            // window — and L3 at the end.
            assert!(certs_between(seen, t2, w3).iter().all(|c| *c == l2.sha256), "{name}: not L2 after the rename");
            let half = certs_between(seen, w3, k3);
            assert!(!half.is_empty() && half.iter().all(|c| *c == l2.sha256), "{name}: half-copied pair served");
            let last = certs_between(seen, t3, end);
            assert!(!last.is_empty() && last.iter().all(|c| *c == l3.sha256), "{name}: not L3 at the end");
        } else {
            // The connection opened first kept its certificate throughout,
            // and kept answering after the rotations.
            assert!(all.iter().all(|c| *c == l1.sha256), "{name}: the kept-alive connection changed");
            assert!(!certs_between(seen, t3, end).is_empty(), "{name}: no request after the last rotation");
        }
        eprintln!("{name}: {} requests, none failed", seen.len());
    }
    n.stop();
}

/// With the file watch off, SIGHUP alone rotates: RadSec's own pair and its
/// client CA (a NAS certificate from a new CA is accepted only after it).
#[test]
fn sighup_rotates_https_radsec_and_the_client_ca_without_watching() {
    let Setup { mut n, dir, a, b, client_a } = setup();
    let (h1, h2) = (leaf(&a, "https 1"), leaf(&b, "https 2"));
    let (r1, r2) = (leaf(&a, "radsec 1"), leaf(&b, "radsec 2"));
    let client_b = leaf(&b, "nas-b");
    let files: Vec<PathBuf> =
        ["https.pem", "https.key", "radsec.pem", "radsec.key", "client-ca.pem"].iter().map(|f| dir.join(f)).collect();
    let [https_cert, https_key, radsec_cert, radsec_key, client_ca] = files.as_slice() else { unreachable!() };
    for (f, text) in [
        (https_cert, &h1.cert),
        (https_key, &h1.key),
        (radsec_cert, &r1.cert),
        (radsec_key, &r1.key),
        (client_ca, &a.pem),
    ] {
        replace_atomically(f, text);
    }
    n.start_with(&[
        ("TESSERA_HTTP_TLS_CERT", https_cert.to_str().unwrap()),
        ("TESSERA_HTTP_TLS_KEY", https_key.to_str().unwrap()),
        ("TESSERA_HTTP_TLS_WATCH_SECONDS", "0"),
        ("TESSERA_RADIUS_RADSEC_LISTEN", "127.0.0.1:0"),
        ("TESSERA_RADIUS_RADSEC_CLIENT_CA", client_ca.to_str().unwrap()),
        ("TESSERA_RADIUS_RADSEC_CERT", radsec_cert.to_str().unwrap()),
        ("TESSERA_RADIUS_RADSEC_KEY", radsec_key.to_str().unwrap()),
    ]);
    let url = format!("https://127.0.0.1:{}", n.https_port());
    let radsec = n.listening("radsec");
    let as_a = radsec_config(&[&a, &b], &client_a);
    let as_b = radsec_config(&[&a, &b], &client_b);
    let probe_rest = rest_client(&[&a, &b], false);
    assert_eq!(rest_once(&probe_rest, &url).unwrap(), h1.sha256);
    assert_eq!(RadsecConn::open(&radsec, &as_a).unwrap().sha256, r1.sha256);
    let refused = |cfg: &Arc<rustls::ClientConfig>| match RadsecConn::open(&radsec, cfg) {
        // TLS 1.3: the server's refusal of the client certificate arrives
        // after the client's handshake is done, at the first read.
        Ok(mut c) => c.request().is_err(),
        Err(_) => true,
    };
    assert!(refused(&as_b), "a NAS certificate from CA B before B is trusted");

    let mut load = Load::new();
    {
        let (c, u) = (rest_client(&[&a, &b], false), url.clone());
        load.spawn("rest, new connections", move || rest_once(&c, &u));
        let (c, u) = (rest_client(&[&a, &b], true), url.clone());
        assert_eq!(rest_once(&c, &u).unwrap(), h1.sha256);
        load.spawn("rest, keep-alive", move || rest_once(&c, &u));
        let (addr, cfg) = (radsec.clone(), as_a.clone());
        load.spawn("radsec, new connections", move || {
            let mut conn = RadsecConn::open(&addr, &cfg)?;
            conn.request()?;
            Ok(conn.sha256)
        });
        let mut conn = RadsecConn::open(&radsec, &as_a).unwrap();
        conn.request().unwrap();
        load.spawn("radsec, one connection", move || conn.request().map(|_| conn.sha256.clone()));
    }
    for (f, text) in [
        (https_key, &h2.key),
        (https_cert, &h2.cert),
        (radsec_key, &r2.key),
        (radsec_cert, &r2.cert),
        (client_ca, &format!("{}{}", a.pem, b.pem)),
    ] {
        replace_atomically(f, text);
    }
    // Not watched: nothing changes by itself.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rest_once(&probe_rest, &url).unwrap(), h1.sha256, "the files were watched although the watch is off");
    assert_eq!(RadsecConn::open(&radsec, &as_a).unwrap().sha256, r1.sha256);
    assert!(refused(&as_b));

    let hup = Instant::now();
    n.signal("HUP");
    let t = wait_for_cert("https after SIGHUP", &h2.sha256, Duration::from_secs(10), || rest_once(&probe_rest, &url));
    wait_for_cert("radsec after SIGHUP", &r2.sha256, Duration::from_secs(10), || {
        RadsecConn::open(&radsec, &as_a).map(|c| c.sha256)
    });
    let mut conn_b = RadsecConn::open(&radsec, &as_b).expect("the new client CA is trusted after SIGHUP");
    conn_b.request().expect("a NAS from CA B is answered after SIGHUP");
    assert_eq!(conn_b.sha256, r2.sha256);
    std::thread::sleep(Duration::from_secs(1));
    let end = Instant::now();
    let seen = load.finish();
    for (name, seen) in &seen {
        let after = certs_between(seen, t, end);
        assert!(!after.is_empty(), "{name}: no request after SIGHUP");
        let (old, new) = if name.starts_with("rest") { (&h1.sha256, &h2.sha256) } else { (&r1.sha256, &r2.sha256) };
        if name.contains("new connections") {
            assert!(certs_between(seen, seen[0].at, hup).iter().all(|c| c == old), "{name}: changed before SIGHUP");
            assert!(after.iter().all(|c| c == new), "{name}: not the new certificate after SIGHUP");
        } else {
            assert!(after.iter().all(|c| c == old), "{name}: the kept-alive connection changed");
        }
        eprintln!("{name}: {} requests, none failed", seen.len());
    }
    n.stop();
}

/// notBefore and notAfter of a PEM chain's first certificate, Unix seconds.
fn validity(chain_pem: &str) -> (i64, i64) {
    let der = CertificateDer::pem_slice_iter(chain_pem.as_bytes()).next().unwrap().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp())
}
