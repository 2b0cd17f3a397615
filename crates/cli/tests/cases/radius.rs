//! RADIUS end to end, driven by real clients: FreeRADIUS's `radclient`,
//! pam_radius through `pamtester`, `radsecproxy` in front of RadSec — and
//! our own codec where byte-exact control is needed (retransmissions).

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{RadReply, TestNode, hotp_code, radclient, radclient_pap, require_tool, totp_now};

const SECRET: &str = "radius-test-secret";

fn auth(addr: &str, user: &str, password: &str, extra: &str) -> RadReply {
    radclient_pap(addr, SECRET, user, password, extra, 2)
}

fn secret_file(n: &TestNode) -> String {
    let p = n.cwd().join("radius.secret");
    std::fs::write(&p, format!("{SECRET}\n")).unwrap();
    p.display().to_string()
}

fn add_client(n: &TestNode, name: &str, mode: &str) {
    let f = secret_file(n);
    n.ok(&["client", "add", name, "--address", "127.0.0.1", "--secret-file", &f, "--message-authenticator", mode]);
}

/// The server re-reads RADIUS clients every 2 s.
fn wait_for_reload() {
    std::thread::sleep(Duration::from_millis(3000));
}

/// Retries `check` until it holds (the server re-reads clients every 2 s).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within 10 s");
}

fn setup_alice(n: &TestNode) -> &'static str {
    n.ok_stdin(&["user", "add", "alice", "--password-stdin"], "alice-pass\n");
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    n.ok(&["token", "add", "alice", "--secret", secret]);
    secret
}

#[tokio::test]
async fn radclient_pap_accept_reject_replay_lock_and_reply_attributes() {
    if !require_tool("radclient") {
        return;
    }
    let mut n = TestNode::new();
    n.ok(&["init"]);
    add_client(&n, "loopback", "require");
    let secret = setup_alice(&n);
    n.ok(&["group", "add", "vpn-admins", "alice"]);
    n.ok(&["reply", "add", "--group", "vpn-admins", "Filter-Id=admins", "Fortinet-Group-Name=vpn-admins"]);
    n.ok(&["reply", "add", "--all", "Session-Timeout=3600"]);
    n.start();
    let addr = n.listening("radius");

    let code = totp_now(secret, 0);
    let r = auth(&addr, "alice", &format!("alice-pass{code}"), ", Calling-Station-Id = \"203.0.113.5\"");
    assert_eq!(r.code.as_deref(), Some("Access-Accept"), "{}", r.output);
    assert_eq!(r.attr("Filter-Id").as_deref(), Some("admins"), "{}", r.output);
    assert_eq!(r.attr("Session-Timeout").as_deref(), Some("3600"), "{}", r.output);
    assert!(r.output.contains("vpn-admins"), "vendor attribute missing: {}", r.output);
    assert!(r.output.contains("Message-Authenticator"), "replies are signed: {}", r.output);

    let replay = auth(&addr, "alice", &format!("alice-pass{code}"), "");
    assert_eq!(replay.code.as_deref(), Some("Access-Reject"), "a replayed code: {}", replay.output);
    let wrong = auth(&addr, "alice", "alice-pass000000", "");
    assert_eq!(wrong.code.as_deref(), Some("Access-Reject"));
    let show: serde_json::Value = serde_json::from_str(&n.ok(&["user", "show", "alice", "--json"])).unwrap();
    assert_eq!(show["user"]["last_success"]["address"], "203.0.113.5");
    assert_eq!(show["user"]["last_success"]["client"], "radius:loopback");

    // lock the user: four more failures (five in all: the replay above is
    // audited but not counted), then even a good code is refused
    for _ in 0..4 {
        auth(&addr, "alice", "alice-pass000001", "");
    }
    let locked = auth(&addr, "alice", &format!("alice-pass{}", totp_now(secret, 1)), "");
    assert_eq!(locked.code.as_deref(), Some("Access-Reject"));
    let show: serde_json::Value = serde_json::from_str(&n.ok(&["user", "show", "alice", "--json"])).unwrap();
    assert_eq!(show["user"]["status"], "locked");
    n.stop();
}

#[tokio::test]
async fn radclient_challenge_then_code() {
    if !require_tool("radclient") {
        return;
    }
    let mut n = TestNode::new();
    n.ok(&["init"]);
    add_client(&n, "loopback", "require");
    let secret = setup_alice(&n);
    n.start();
    let addr = n.listening("radius");
    let first = auth(&addr, "alice", "alice-pass", "");
    assert_eq!(first.code.as_deref(), Some("Access-Challenge"), "{}", first.output);
    assert_eq!(first.attr("Reply-Message").as_deref(), Some("Enter your one-time code"));
    let state = first.attr("State").expect("State in the challenge");
    assert!(state.starts_with("0x"), "{state}");
    let second = auth(&addr, "alice", &totp_now(secret, 0), &format!(", State = {state}"));
    assert_eq!(second.code.as_deref(), Some("Access-Accept"), "{}", second.output);
    let again = auth(&addr, "alice", &totp_now(secret, 1), &format!(", State = {state}"));
    assert_eq!(again.code.as_deref(), Some("Access-Reject"), "a State works once");
    n.stop();
}

#[tokio::test]
async fn message_authenticator_require_auto_off_and_proxy_state() {
    if !require_tool("radclient") {
        return;
    }
    let mut n = TestNode::new();
    n.ok(&["init"]);
    add_client(&n, "loopback", "require");
    let secret = setup_alice(&n);
    n.ok(&["user", "passwd", "alice", "--remove"]);
    n.start();
    let addr = n.listening("radius");
    let unsigned = |code: &str, extra: &str| {
        radclient(&addr, "auth", SECRET, &format!("User-Name = \"alice\", User-Password = \"{code}\"{extra}\n"), 2)
    };
    // require: an unsigned request is dropped (no answer at all)
    assert_eq!(unsigned(&totp_now(secret, -1), "").code, None);
    // off: accepted unsigned, but never with Proxy-State
    n.ok(&["client", "delete", "loopback"]);
    add_client(&n, "loopback", "off");
    wait_for_reload();
    assert_eq!(unsigned(&totp_now(secret, 0), ", Proxy-State = 0x0102").code, None, "limit_proxy_state");
    let ok = unsigned(&totp_now(secret, 0), "");
    assert_eq!(ok.code.as_deref(), Some("Access-Accept"), "{}", ok.output);
    // A client in `off` mode that signs is noticed (and told it could require it).
    assert_eq!(auth(&addr, "alice", "000000", "").code.as_deref(), Some("Access-Reject"));
    let noticed = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        n.ok(&["client", "show", "loopback"]).contains("yes (seen); in mode `off`")
    });
    assert!(noticed, "{}", n.ok(&["client", "show", "loopback"]));
    // auto: unsigned accepted until the client has signed once
    n.ok(&["client", "delete", "loopback"]);
    add_client(&n, "loopback", "auto");
    wait_for_reload();
    assert_eq!(unsigned("000000", "").code.as_deref(), Some("Access-Reject"), "auto accepts unsigned at first");
    let signed = auth(&addr, "alice", &totp_now(secret, 1), "");
    assert_eq!(signed.code.as_deref(), Some("Access-Accept"), "{}", signed.output);
    assert_eq!(unsigned("000000", "").code, None, "auto now requires it");
    let show = n.ok(&["client", "show", "loopback"]);
    assert!(show.contains("yes (seen)"), "{show}");
    n.stop();
}

#[tokio::test]
async fn retransmission_gets_the_identical_reply_and_uses_the_code_once() {
    use tessera_radius::{Attribute, Code, Packet, attr, hide_password};
    let mut n = TestNode::new();
    n.ok(&["init"]);
    add_client(&n, "loopback", "require");
    n.ok(&["user", "add", "hal"]);
    n.ok(&["token", "add", "hal", "--secret", "JBSWY3DPEHPK3PXP", "--type", "hotp"]);
    n.start();
    let addr = n.listening("radius");
    let authenticator = [7u8; 16];
    let hidden = hide_password(SECRET.as_bytes(), &authenticator, hotp_code("JBSWY3DPEHPK3PXP", 0).as_bytes()).unwrap();
    let req = Packet {
        code: Code::AccessRequest,
        identifier: 42,
        authenticator,
        attributes: vec![
            Attribute { typ: attr::USER_NAME, value: b"hal".to_vec() },
            Attribute { typ: attr::USER_PASSWORD, value: hidden },
        ],
    };
    let bytes = req.encode_request(SECRET.as_bytes(), true).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut replies = Vec::new();
    for _ in 0..3 {
        sock.send_to(&bytes, &addr).unwrap();
        let mut buf = [0u8; 4096];
        let (len, _) = sock.recv_from(&mut buf).unwrap();
        replies.push(buf[..len].to_vec());
    }
    assert_eq!(Packet::decode(&replies[0]).unwrap().code, Code::AccessAccept);
    assert!(replies.iter().all(|r| *r == replies[0]), "retransmissions get the identical reply");
    let audit: serde_json::Value =
        serde_json::from_str(&n.ok(&["audit", "list", "--action", "validate", "--json"])).unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 1, "decided once: {audit}");
    // a new request (new authenticator) with the same code is a replay
    let mut again = req.clone();
    again.authenticator = [8u8; 16];
    again.attributes[1].value =
        hide_password(SECRET.as_bytes(), &again.authenticator, hotp_code("JBSWY3DPEHPK3PXP", 0).as_bytes()).unwrap();
    sock.send_to(&again.encode_request(SECRET.as_bytes(), true).unwrap(), &addr).unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(Packet::decode(&buf[..len]).unwrap().code, Code::AccessReject);
    n.stop();
}

#[tokio::test]
async fn status_server_accounting_and_unknown_clients() {
    if !require_tool("radclient") {
        return;
    }
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.start_with(&[("TESSERA_RADIUS_ACCOUNTING_LISTEN", "127.0.0.1:0")]);
    let addr = n.listening("radius");
    // no client registered for 127.0.0.1 yet: silence
    assert_eq!(radclient(&addr, "status", SECRET, "Message-Authenticator = 0x00\n", 2).code, None);
    add_client(&n, "loopback", "require");
    eventually("client known", || {
        radclient(&addr, "status", SECRET, "Message-Authenticator = 0x00\n", 2).code.is_some()
    });
    let st = radclient(&addr, "status", SECRET, "Message-Authenticator = 0x00\n", 2);
    assert_eq!(st.code.as_deref(), Some("Access-Accept"), "{}", st.output);
    let wrong_secret = radclient(&addr, "status", "not-the-secret", "Message-Authenticator = 0x00\n", 2);
    assert_eq!(wrong_secret.code, None, "a bad Message-Authenticator is dropped");
    let acct = n.listening("radius-accounting");
    let r =
        radclient(&acct, "acct", SECRET, "User-Name = \"x\", Acct-Status-Type = Start, Acct-Session-Id = \"s1\"\n", 2);
    assert_eq!(r.code.as_deref(), Some("Accounting-Response"), "{}", r.output);
    n.stop();
}

/// The reference deployment: pam_radius listing two servers; the first dies.
#[tokio::test]
async fn pam_radius_with_two_servers_survives_the_first_dying() {
    let mut a = TestNode::new();
    a.ok(&["init"]);
    // Debian 12's pam_radius does not send Message-Authenticator.
    add_client(&a, "ssh-hosts", "off");
    a.ok_stdin(&["user", "add", "bob", "--password-stdin"], "bob-password\n");
    a.ok(&["token", "add", "bob", "--secret", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "--type", "hotp"]);
    let mut b = a.sibling();
    a.start();
    b.start();
    let servers = [format!("{} {SECRET} 2", a.listening("radius")), format!("{} {SECRET} 2", b.listening("radius"))];
    let Some(pam) = super::support::PamRadius::new(&servers) else { return };
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let (ok, out) = pam.authenticate("bob", &format!("bob-password{}", hotp_code(secret, 0)));
    assert!(ok, "first login: {out}");
    let (ok, out) = pam.authenticate("bob", &format!("bob-password{}", hotp_code(secret, 0)));
    assert!(!ok, "replayed code must fail: {out}");
    a.kill9();
    let (ok, out) = pam.authenticate("bob", &format!("bob-password{}", hotp_code(secret, 1)));
    assert!(ok, "login through the second server: {out}");
    b.stop();
}

/// A test PKI: a CA, a server certificate for 127.0.0.1 and a client one.
fn test_pki(dir: &std::path::Path) -> (String, String, String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "tessera test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, sans: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf("tessera", vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_pem, client_key) = leaf("radsecproxy", vec!["radsecproxy.test".into()]);
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        super::support::chmod(&p, 0o600);
        p.display().to_string()
    };
    (
        w("ca.pem", &ca.pem()),
        w("server.pem", &server_pem),
        w("server.key", &server_key),
        w("client.pem", &client_pem),
        w("client.key", &client_key),
    )
}

#[tokio::test]
async fn radsec_behind_radsecproxy_gives_the_same_answers() {
    if !require_tool("radclient") || !require_tool("radsecproxy") {
        return;
    }
    let mut n = TestNode::new();
    n.ok(&["init"]);
    add_client(&n, "proxy", "require");
    let secret = setup_alice(&n);
    let (ca, cert, key, client_cert, client_key) = test_pki(n.cwd());
    n.start_with(&[
        ("TESSERA_RADIUS_RADSEC_LISTEN", "127.0.0.1:0"),
        ("TESSERA_RADIUS_RADSEC_CLIENT_CA", ca.as_str()),
        ("TESSERA_RADIUS_RADSEC_CERT", cert.as_str()),
        ("TESSERA_RADIUS_RADSEC_KEY", key.as_str()),
    ]);
    let radsec = n.listening("radsec");
    let (host, port) = radsec.rsplit_once(':').unwrap();
    let udp_port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = n.cwd().join("radsecproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "ListenUDP 127.0.0.1:{udp_port}\nLogLevel 3\nLogDestination file://{log}\n\
             tls default {{\n  CACertificateFile {ca}\n  CertificateFile {client_cert}\n  CertificateKeyFile {client_key}\n}}\n\
             client local {{\n  host 127.0.0.1\n  type udp\n  secret {SECRET}\n}}\n\
             server tessera {{\n  host {host}\n  port {port}\n  type tls\n  tls default\n  certificateNameCheck off\n}}\n\
             realm * {{\n  server tessera\n}}\n",
            log = n.cwd().join("radsecproxy.log").display(),
        ),
    )
    .unwrap();
    let mut proxy = Command::new("radsecproxy")
        .args(["-f", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let proxy_addr = format!("127.0.0.1:{udp_port}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("radsecproxy forwards", || auth(&proxy_addr, "nobody", "000000", "").code.is_some());
        let ok = auth(&proxy_addr, "alice", &format!("alice-pass{}", totp_now(secret, 0)), "");
        assert_eq!(ok.code.as_deref(), Some("Access-Accept"), "{}", ok.output);
        let replay = auth(&proxy_addr, "alice", &format!("alice-pass{}", totp_now(secret, 0)), "");
        assert_eq!(replay.code.as_deref(), Some("Access-Reject"));
    }));
    let _ = proxy.kill();
    let _ = proxy.wait();
    if let Err(e) = result {
        let log = std::fs::read_to_string(n.cwd().join("radsecproxy.log")).unwrap_or_default();
        eprintln!("radsecproxy log:\n{log}");
        std::panic::resume_unwind(e);
    }
    n.stop();
}
