//! Interoperability with FreeRADIUS's own tools (Debian `freeradius-utils`,
//! which brings `radclient` and, through `freeradius-common`, the
//! dictionaries in /usr/share/freeradius).
//!
//! Each radclient test plays the server: it binds a UDP socket on
//! 127.0.0.1, lets radclient send one request to it, checks the request with
//! this crate (decode, verify_request, unhide_password), answers with
//! encode_response, and requires radclient to accept the answer. That
//! checks both directions against an independent implementation.
//!
//! Without the tools these tests skip with a message, unless
//! `TESSERA_REQUIRE_TOOLS=1`, which makes a missing tool a failure.

use std::io::Write as _;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tessera_radius::{
    Code, Dictionary, MessageAuthenticator, Packet, attr, dictionary::builtin_file, unhide_password, verify_request,
};

const SECRET: &str = "testing123";
const FREERADIUS_DIR: &str = "/usr/share/freeradius";

fn require_tools() -> bool {
    std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() == Ok("1")
}

fn radclient_available() -> bool {
    let found = Command::new("radclient").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        if require_tools() {
            panic!("radclient is required (TESSERA_REQUIRE_TOOLS=1) but not on PATH; apt-get install freeradius-utils");
        }
        eprintln!("skipping: radclient not installed (apt-get install freeradius-utils)");
    }
    found
}

fn freeradius_dir() -> Option<&'static Path> {
    let dir = Path::new(FREERADIUS_DIR);
    if dir.join("dictionary.rfc2865").is_file() {
        return Some(dir);
    }
    if require_tools() {
        panic!("{FREERADIUS_DIR} is required (TESSERA_REQUIRE_TOOLS=1); apt-get install freeradius-utils");
    }
    eprintln!("skipping: {FREERADIUS_DIR} not present (apt-get install freeradius-utils)");
    None
}

/// One exchange: radclient sends `attributes` as a `kind` request; the
/// closure sees the raw request and returns the raw answer (or `None` to
/// stay silent). Returns the request and radclient's output.
fn exchange(
    kind: &str,
    attributes: &str,
    secret_for_radclient: &str,
    answer: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> (Vec<u8>, Output) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = socket.local_addr().unwrap().port();
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "2", &format!("127.0.0.1:{port}"), kind, secret_for_radclient])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(attributes.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = socket.recv_from(&mut buf).expect("radclient sent nothing");
    let request = buf[..n].to_vec();
    if let Some(reply) = answer(&request) {
        socket.send_to(&reply, from).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (request, out)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Answers an Access-Request with an Access-Accept carrying a
/// Message-Authenticator (first) and a Reply-Message.
fn accept(raw: &[u8]) -> Option<Vec<u8>> {
    let request = Packet::decode(raw).unwrap();
    let mut reply = Packet::response_to(&request, Code::AccessAccept);
    reply.push(attr::REPLY_MESSAGE, "hello from tessera");
    Some(reply.encode_response(&request, SECRET.as_bytes(), true).unwrap())
}

#[test]
fn access_request_without_message_authenticator() {
    if !radclient_available() {
        return;
    }
    let (raw, out) = exchange("auth", "User-Name = bob, User-Password = \"pa ss\"", SECRET, accept);
    // radclient 3.2.1 sends none; later versions add one (BlastRADIUS).
    let ma = verify_request(&raw, SECRET.as_bytes()).unwrap();
    assert_ne!(ma, MessageAuthenticator::Invalid);
    let p = Packet::decode(&raw).unwrap();
    assert_eq!(p.code, Code::AccessRequest);
    assert_eq!(p.attr(attr::USER_NAME), Some(&b"bob"[..]));
    let pw = unhide_password(SECRET.as_bytes(), &p.authenticator, p.attr(attr::USER_PASSWORD).unwrap()).unwrap();
    assert_eq!(&pw[..], b"pa ss");
    let log = text(&out);
    assert!(out.status.success(), "radclient refused our Access-Accept:\n{log}");
    assert!(log.contains("Received Access-Accept"), "{log}");
    assert!(log.contains("hello from tessera"), "{log}");
}

#[test]
fn access_request_with_message_authenticator() {
    if !radclient_available() {
        return;
    }
    let long = "0123456789abcdef-0123456789abcdef-0123456789";
    let attrs = format!("User-Name = alice, User-Password = \"{long}\", Message-Authenticator = 0x00");
    let (raw, out) = exchange("auth", &attrs, SECRET, accept);
    assert_eq!(verify_request(&raw, SECRET.as_bytes()), Ok(MessageAuthenticator::Valid));
    assert_eq!(verify_request(&raw, b"not-the-secret"), Ok(MessageAuthenticator::Invalid));
    let p = Packet::decode(&raw).unwrap();
    assert_eq!(p.count(attr::MESSAGE_AUTHENTICATOR), 1);
    let pw = unhide_password(SECRET.as_bytes(), &p.authenticator, p.attr(attr::USER_PASSWORD).unwrap()).unwrap();
    assert_eq!(&pw[..], long.as_bytes());
    // Our own encoder reproduces radclient's packet byte for byte once the
    // Message-Authenticator is where radclient put it (last).
    let mut again = p.clone();
    again.remove(attr::MESSAGE_AUTHENTICATOR);
    let mut bytes = again.encode().unwrap();
    let ma_at = bytes.len();
    bytes.extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
    bytes.extend_from_slice(&[0; 16]);
    let len = bytes.len() as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = tessera_radius::message_authenticator(&bytes, SECRET.as_bytes());
    bytes[ma_at + 2..].copy_from_slice(&mac);
    assert_eq!(bytes, raw);
    let log = text(&out);
    assert!(out.status.success(), "radclient refused our Access-Accept:\n{log}");
    assert!(log.contains("Received Access-Accept"), "{log}");
}

#[test]
fn radclient_rejects_a_response_signed_with_another_secret() {
    if !radclient_available() {
        return;
    }
    // Shows that the acceptance checks above mean something: radclient does
    // verify what we send.
    let (_, out) = exchange("auth", "User-Name = bob, User-Password = x", "other-secret", accept);
    let log = text(&out);
    assert!(!log.contains("Received Access-Accept"), "{log}");
    assert!(!out.status.success(), "{log}");
}

#[test]
fn status_server() {
    if !radclient_available() {
        return;
    }
    let (raw, out) = exchange("status", "Message-Authenticator = 0x00", SECRET, accept);
    let p = Packet::decode(&raw).unwrap();
    assert_eq!(p.code, Code::StatusServer);
    assert_eq!(verify_request(&raw, SECRET.as_bytes()), Ok(MessageAuthenticator::Valid));
    // The same packet from our encoder.
    let mut ours = Packet::new(Code::StatusServer, p.identifier, p.authenticator);
    ours.attributes = p.attributes.iter().filter(|a| a.typ != attr::MESSAGE_AUTHENTICATOR).cloned().collect();
    if ours.attributes.is_empty() {
        assert_eq!(ours.encode_request(SECRET.as_bytes(), true).unwrap(), raw);
    }
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Received Access-Accept"), "{log}");
}

#[test]
fn accounting_request() {
    if !radclient_available() {
        return;
    }
    // With a Message-Authenticator in the answer too: radclient checks it
    // over a zero authenticator field, which is what encode_response does
    // for an Accounting-Response.
    for with_ma in [false, true] {
        let attrs = "User-Name = bob, Acct-Status-Type = Start, Acct-Session-Id = s1";
        let (raw, out) = exchange("acct", attrs, SECRET, |raw| {
            let request = Packet::decode(raw).unwrap();
            let reply = Packet::response_to(&request, Code::AccountingResponse);
            Some(reply.encode_response(&request, SECRET.as_bytes(), with_ma).unwrap())
        });
        assert_eq!(verify_request(&raw, SECRET.as_bytes()), Ok(MessageAuthenticator::Absent));
        assert_eq!(verify_request(&raw, b"wrong"), Ok(MessageAuthenticator::Invalid));
        // Our encoder computes the same Request Authenticator.
        let p = Packet::decode(&raw).unwrap();
        assert_eq!(p.encode_request(SECRET.as_bytes(), false).unwrap(), raw);
        let log = text(&out);
        assert!(out.status.success(), "with_ma {with_ma}: {log}");
        assert!(log.contains("Received Accounting-Response"), "{log}");
    }
}

#[test]
fn coa_and_disconnect_requests() {
    if !radclient_available() {
        return;
    }
    for (kind, ack, name) in [("coa", Code::CoaAck, "CoA-ACK"), ("disconnect", Code::DisconnectAck, "Disconnect-ACK")] {
        let (raw, out) = exchange(kind, "User-Name = bob, Acct-Session-Id = s1", SECRET, |raw| {
            let request = Packet::decode(raw).unwrap();
            let reply = Packet::response_to(&request, ack);
            Some(reply.encode_response(&request, SECRET.as_bytes(), true).unwrap())
        });
        assert_eq!(verify_request(&raw, SECRET.as_bytes()), Ok(MessageAuthenticator::Absent), "{kind}");
        assert_eq!(verify_request(&raw, b"wrong"), Ok(MessageAuthenticator::Invalid), "{kind}");
        let p = Packet::decode(&raw).unwrap();
        assert_eq!(p.encode_request(SECRET.as_bytes(), false).unwrap(), raw, "{kind}");
        let log = text(&out);
        assert!(out.status.success(), "{kind}: {log}");
        assert!(log.contains(&format!("Received {name}")), "{kind}: {log}");
    }
}

#[test]
fn parses_freeradius_rfc2865_dictionary() {
    let Some(dir) = freeradius_dir() else { return };
    let text = std::fs::read_to_string(dir.join("dictionary.rfc2865")).unwrap();
    let d = Dictionary::parse(&text, "dictionary.rfc2865", &|_| Err("not needed".into())).unwrap();
    for (name, code) in
        [("User-Name", 1), ("Filter-Id", 11), ("Reply-Message", 18), ("Class", 25), ("Session-Timeout", 27)]
    {
        assert_eq!(d.attribute_by_name(name).map(|a| a.code), Some(code), "{name}");
    }
    assert_eq!(d.attribute_by_name("User-Password").unwrap().flags.encrypt, 1);
    assert_eq!(d.attribute_by_name("Service-Type").unwrap().value_by_name("Framed-User"), Some(2));
}

#[test]
fn parses_the_whole_freeradius_tree_and_agrees_with_the_builtin_numbers() {
    let Some(dir) = freeradius_dir() else { return };
    let root = std::fs::read_to_string(dir.join("dictionary")).unwrap();
    let include = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| e.to_string());
    let fr = Dictionary::parse(&root, "dictionary", &include).unwrap();
    assert!(fr.attributes().count() > 5000, "{}", fr.attributes().count());
    assert!(fr.vendors().count() > 150);
    // Every attribute and vendor we ship that FreeRADIUS also names has the
    // same number there.
    let builtin = Dictionary::builtin();
    let mut compared = 0;
    for ours in builtin.attributes() {
        if let Some(theirs) = fr.attribute_by_name(&ours.name) {
            assert_eq!((theirs.vendor, theirs.code), (ours.vendor, ours.code), "{}", ours.name);
            compared += 1;
        }
    }
    assert!(compared >= builtin.attributes().count() - 2, "only {compared} compared");
    for v in builtin.vendors() {
        assert_eq!(fr.vendor_by_name(&v.name).map(|t| t.id), Some(v.id), "{}", v.name);
    }
    // The built-in include resolver knows only the built-in files.
    assert!(builtin_file("dictionary.rfc2865").is_ok());
    assert!(builtin_file("/etc/passwd").is_err());
}
