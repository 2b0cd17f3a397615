//! Known-answer tests: the examples of RFC 2865 §7 and RFC 5997 §6,
//! packets built by an independent implementation (Python's hashlib and
//! hmac) and packets captured from FreeRADIUS's radclient 3.2.1. All of
//! them are also the seed corpus of the fuzz target, read from
//! `fuzz/corpus/radius_decode/`, so the two cannot drift apart.

use std::path::PathBuf;

use tessera_radius::{
    Code, Dictionary, MessageAuthenticator, Packet, RadiusError, attr, hide_password, unhide_password, verify_request,
    verify_response,
};

/// The shared secret of the RFC examples and of the Python-built packets.
const RFC_SECRET: &[u8] = b"xyzzy5461";
/// The shared secret of the radclient captures.
const RADCLIENT_SECRET: &[u8] = b"testing123";

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/radius_decode")
}

fn vector(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

#[test]
fn corpus_files_are_the_rfc_text() {
    // Typed in from RFC 2865 §7.1 and RFC 5997 §6, to catch a corpus file
    // being replaced by something else.
    assert_eq!(
        vector("rfc2865-7.1-access-request"),
        hex("01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
             98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
             93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8
             01 10 05 06 00 00 00 03")
    );
    assert_eq!(
        vector("rfc2865-7.1-access-accept"),
        hex("02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
             9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
             0e 06 c0 a8 01 03")
    );
    assert_eq!(
        vector("rfc5997-6-status-server"),
        hex("0c da 00 26 8a 54 f4 68 6f b3 94 c5 28 66 e3 02
             18 5d 06 23 50 12 5a 66 5e 2e 1e 84 11 f3 e2 43
             82 20 97 c8 4f a3")
    );
}

#[test]
fn rfc2865_7_1_user_telnet() {
    let raw_req = vector("rfc2865-7.1-access-request");
    let raw_acc = vector("rfc2865-7.1-access-accept");
    let req = Packet::decode(&raw_req).unwrap();
    assert_eq!((req.code, req.identifier), (Code::AccessRequest, 0));
    assert_eq!(req.authenticator, <[u8; 16]>::try_from(hex("0f403f9473978057bd83d5cb98f4227a")).unwrap());
    assert_eq!(req.attr(attr::USER_NAME), Some(&b"nemo"[..]));
    assert_eq!(req.attr(attr::NAS_IP_ADDRESS), Some(&[192, 168, 1, 16][..]));
    assert_eq!(req.attr(attr::NAS_PORT), Some(&3u32.to_be_bytes()[..]));
    let hidden = req.attr(attr::USER_PASSWORD).unwrap();
    assert_eq!(&unhide_password(RFC_SECRET, &req.authenticator, hidden).unwrap()[..], b"arctangent");
    // Hiding gives the RFC's bytes back, and so does encoding.
    assert_eq!(hide_password(RFC_SECRET, &req.authenticator, b"arctangent").unwrap(), hidden);
    assert_eq!(req.encode().unwrap(), raw_req);
    assert_eq!(req.encode_request(RFC_SECRET, false).unwrap(), raw_req);
    assert_eq!(verify_request(&raw_req, RFC_SECRET), Ok(MessageAuthenticator::Absent));

    let acc = Packet::decode(&raw_acc).unwrap();
    assert_eq!((acc.code, acc.identifier), (Code::AccessAccept, 0));
    assert_eq!(acc.attr(attr::SERVICE_TYPE), Some(&1u32.to_be_bytes()[..]));
    assert_eq!(acc.attr(attr::LOGIN_SERVICE), Some(&0u32.to_be_bytes()[..]));
    assert_eq!(acc.attr(attr::LOGIN_IP_HOST), Some(&[192, 168, 1, 3][..]));
    // The Response Authenticator, recomputed from the attributes, the
    // request and the secret, is the RFC's byte for byte.
    let mut reply = Packet::response_to(&req, Code::AccessAccept);
    reply.attributes = acc.attributes.clone();
    assert_eq!(reply.encode_response(&req, RFC_SECRET, false).unwrap(), raw_acc);
    assert_eq!(verify_response(&raw_acc, &req.authenticator, RFC_SECRET), Ok(MessageAuthenticator::Absent));
    assert_eq!(verify_response(&raw_acc, &req.authenticator, b"xyzzy5462"), Err(RadiusError::BadResponseAuthenticator));

    let d = Dictionary::builtin();
    let shown: Vec<String> = acc.attributes.iter().map(|a| d.describe(a)).collect();
    assert_eq!(shown, ["Service-Type = Login-User", "Login-Service = Telnet", "Login-IP-Host = 192.168.1.3"]);
    let shown: Vec<String> = req.attributes.iter().map(|a| d.describe(a)).collect();
    assert_eq!(
        shown,
        [
            "User-Name = \"nemo\"",
            "User-Password = <hidden, 16 octets>",
            "NAS-IP-Address = 192.168.1.16",
            "NAS-Port = 3"
        ]
    );
}

#[test]
fn rfc2865_7_2_framed_chap() {
    let raw = vector("rfc2865-7.2-chap-request");
    let p = Packet::decode(&raw).unwrap();
    assert_eq!((p.code, p.identifier), (Code::AccessRequest, 1));
    assert_eq!(p.attr(attr::USER_NAME), Some(&b"flopsy"[..]));
    let chap = p.attr(attr::CHAP_PASSWORD).unwrap();
    assert_eq!((chap.len(), chap[0]), (17, 22));
    assert_eq!(p.attr(attr::NAS_PORT), Some(&20u32.to_be_bytes()[..]));
    let d = Dictionary::builtin();
    let shown: Vec<String> = p.attributes.iter().skip(2).map(|a| d.describe(a)).collect();
    assert_eq!(
        shown,
        ["NAS-IP-Address = 192.168.1.16", "NAS-Port = 20", "Service-Type = Framed-User", "Framed-Protocol = PPP"]
    );
    assert_eq!(p.encode().unwrap(), raw);
}

#[test]
fn rfc2865_7_3_challenge() {
    let raw = vector("rfc2865-7.3-access-challenge");
    let p = Packet::decode(&raw).unwrap();
    assert_eq!((p.code, p.identifier), (Code::AccessChallenge, 2));
    assert_eq!(p.attr(attr::REPLY_MESSAGE), Some(&b"Challenge 32769430.  Enter response at prompt."[..]));
    assert_eq!(p.attr(attr::STATE), Some(&b"32769430"[..]));
    assert_eq!(p.encode().unwrap(), raw);
}

#[test]
fn rfc5997_6_status_server() {
    let raw = vector("rfc5997-6-status-server");
    let p = Packet::decode(&raw).unwrap();
    assert_eq!((p.code, p.identifier), (Code::StatusServer, 218));
    assert_eq!(verify_request(&raw, RFC_SECRET), Ok(MessageAuthenticator::Valid));
    assert_eq!(verify_request(&raw, b"xyzzy5460"), Ok(MessageAuthenticator::Invalid));
    // Our client encoder produces the RFC's packet from its authenticator.
    let ours = Packet::new(Code::StatusServer, 218, p.authenticator);
    assert_eq!(ours.encode_request(RFC_SECRET, false).unwrap(), raw);
    // And the RFC's Access-Accept answer verifies against it.
    let answer = vector("rfc5997-6-access-accept");
    assert_eq!(verify_response(&answer, &p.authenticator, RFC_SECRET), Ok(MessageAuthenticator::Absent));
    let reply = Packet::response_to(&p, Code::AccessAccept);
    assert_eq!(reply.encode_response(&p, RFC_SECRET, false).unwrap(), answer);
}

#[test]
fn message_authenticator_round_trip_and_tampering() {
    let mut req = Packet::new(Code::AccessRequest, 77, [0x3c; 16]);
    req.push(attr::USER_NAME, "nemo");
    req.push(attr::USER_PASSWORD, hide_password(RFC_SECRET, &req.authenticator, b"arctangent").unwrap());
    req.push(attr::NAS_IDENTIFIER, "nas-1");
    let raw = req.encode_request(RFC_SECRET, true).unwrap();
    assert_eq!(verify_request(&raw, RFC_SECRET), Ok(MessageAuthenticator::Valid));
    // Any byte changed (other than Code and Length, which make another or a
    // malformed packet, and the MA's Type, which removes it) is caught.
    for i in (1..raw.len()).filter(|i| !(2..4).contains(i) && *i != 20) {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = raw.clone();
            bad[i] ^= flip;
            let r = verify_request(&bad, RFC_SECRET);
            assert!(matches!(r, Ok(MessageAuthenticator::Invalid) | Err(_)), "byte {i} ^ {flip:#x}: {r:?}");
        }
    }
    // Removed: Absent (a hardened server drops it by policy).
    let mut p = Packet::decode(&raw).unwrap();
    assert_eq!(p.remove(attr::MESSAGE_AUTHENTICATOR), 1);
    assert_eq!(verify_request(&p.encode().unwrap(), RFC_SECRET), Ok(MessageAuthenticator::Absent));
    // Two of them, even both correct for their position: Invalid.
    let mut two = Packet::decode(&raw).unwrap();
    let ma = two.attr(attr::MESSAGE_AUTHENTICATOR).unwrap().to_vec();
    two.push(attr::MESSAGE_AUTHENTICATOR, ma);
    assert_eq!(verify_request(&two.encode().unwrap(), RFC_SECRET), Ok(MessageAuthenticator::Invalid));
    // Wrong length: Invalid.
    for len in [0, 15, 17, 32] {
        let mut p = Packet::decode(&raw).unwrap();
        p.attributes[0].value = vec![0; len];
        assert_eq!(verify_request(&p.encode().unwrap(), RFC_SECRET), Ok(MessageAuthenticator::Invalid), "len {len}");
    }

    // The server's answer, with the Message-Authenticator first.
    let request = Packet::decode(&raw).unwrap();
    let mut reply = Packet::response_to(&request, Code::AccessAccept);
    reply.push(attr::REPLY_MESSAGE, "ok");
    let answer = reply.encode_response(&request, RFC_SECRET, true).unwrap();
    assert_eq!(answer[20], attr::MESSAGE_AUTHENTICATOR);
    assert_eq!(verify_response(&answer, &request.authenticator, RFC_SECRET), Ok(MessageAuthenticator::Valid));
    assert_eq!(verify_response(&answer, &[0; 16], RFC_SECRET), Err(RadiusError::BadResponseAuthenticator));
}

#[test]
fn independent_python_vectors() {
    // Accounting-Request: the Request Authenticator is RFC 2866 §3's MD5.
    let raw = vector("python-accounting-request");
    assert_eq!(verify_request(&raw, RFC_SECRET), Ok(MessageAuthenticator::Absent));
    assert_eq!(verify_request(&raw, b"xyzzy"), Ok(MessageAuthenticator::Invalid));
    let p = Packet::decode(&raw).unwrap();
    assert_eq!(p.code, Code::AccountingRequest);
    let mut ours = p.clone();
    ours.authenticator = [0xee; 16];
    assert_eq!(ours.encode_request(RFC_SECRET, false).unwrap(), raw);
    let mut tampered = raw.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert_eq!(verify_request(&tampered, RFC_SECRET), Ok(MessageAuthenticator::Invalid));

    // An Access-Accept to the RFC 2865 §7.1 request, with a
    // Message-Authenticator first, vendor attributes and a tagged VLAN.
    let req = Packet::decode(&vector("rfc2865-7.1-access-request")).unwrap();
    let raw = vector("python-vsa-access-accept");
    assert_eq!(verify_response(&raw, &req.authenticator, RFC_SECRET), Ok(MessageAuthenticator::Valid));
    let acc = Packet::decode(&raw).unwrap();
    let d = Dictionary::builtin();
    let mut rebuilt = Packet::response_to(&req, Code::AccessAccept);
    for (name, value) in [
        ("Fortinet-Group-Name", "vpn-users"),
        ("Cisco-AVPair", "shell:priv-lvl=15"),
        ("Tunnel-Type", "VLAN"),
        ("Tunnel-Medium-Type", "IEEE-802"),
        ("Tunnel-Private-Group-Id", "100"),
        ("Filter-Id", "admins"),
        ("Session-Timeout", "3600"),
    ] {
        rebuilt.attributes.push(d.make_attribute(name, value).unwrap());
    }
    assert_eq!(rebuilt.encode_response(&req, RFC_SECRET, true).unwrap(), raw);
    assert_eq!(acc.vendor_attrs(12356).collect::<Vec<_>>(), [(1, &b"vpn-users"[..])]);
    let shown: Vec<String> = acc.attributes.iter().skip(1).map(|a| d.describe(a)).collect();
    assert_eq!(
        shown,
        [
            "Fortinet-Group-Name = \"vpn-users\"",
            "Cisco-AVPair = \"shell:priv-lvl=15\"",
            "Tunnel-Type = VLAN",
            "Tunnel-Medium-Type = IEEE-802",
            "Tunnel-Private-Group-Id = \"100\"",
            "Filter-Id = \"admins\"",
            "Session-Timeout = 3600",
        ]
    );
}

#[test]
fn radclient_captures() {
    // Captured from radclient 3.2.1 (secret "testing123", password "x").
    let raw = vector("radclient-auth");
    assert_eq!(verify_request(&raw, RADCLIENT_SECRET), Ok(MessageAuthenticator::Absent));
    let p = Packet::decode(&raw).unwrap();
    assert_eq!(
        &unhide_password(RADCLIENT_SECRET, &p.authenticator, p.attr(attr::USER_PASSWORD).unwrap()).unwrap()[..],
        b"x"
    );
    let raw = vector("radclient-auth-ma");
    assert_eq!(verify_request(&raw, RADCLIENT_SECRET), Ok(MessageAuthenticator::Valid));
    let p = Packet::decode(&raw).unwrap();
    assert_eq!(
        &unhide_password(RADCLIENT_SECRET, &p.authenticator, p.attr(attr::USER_PASSWORD).unwrap()).unwrap()[..],
        b"x"
    );
    assert_eq!(verify_request(&vector("radclient-status"), RADCLIENT_SECRET), Ok(MessageAuthenticator::Valid));
    for name in ["radclient-acct", "radclient-coa", "radclient-disconnect"] {
        let raw = vector(name);
        assert_eq!(verify_request(&raw, RADCLIENT_SECRET), Ok(MessageAuthenticator::Absent), "{name}");
        assert_eq!(verify_request(&raw, RFC_SECRET), Ok(MessageAuthenticator::Invalid), "{name}");
        assert_eq!(Packet::decode(&raw).unwrap().encode_request(RADCLIENT_SECRET, false).unwrap(), raw, "{name}");
    }
}

#[test]
fn every_corpus_file_decodes_without_panicking() {
    let d = Dictionary::builtin();
    let mut count = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let _ = verify_request(&bytes, RFC_SECRET);
        if let Ok(p) = Packet::decode(&bytes) {
            assert_eq!(Packet::decode(&p.encode().unwrap()).unwrap(), p);
            for a in &p.attributes {
                assert!(!d.describe(a).is_empty());
            }
        }
        count += 1;
    }
    assert!(count >= 14, "corpus has only {count} files");
}

#[test]
fn hide_and_unhide_lengths() {
    let ra = [0x9d; 16];
    for len in 1..=128usize {
        let pw: Vec<u8> = (0..len).map(|i| (i as u8 % 94) + 33).collect();
        let hidden = hide_password(RFC_SECRET, &ra, &pw).unwrap();
        assert_eq!(hidden.len() % 16, 0);
        assert_eq!(&unhide_password(RFC_SECRET, &ra, &hidden).unwrap()[..], &pw[..]);
    }
    assert_eq!(hide_password(RFC_SECRET, &ra, &[b'a'; 16]).unwrap().len(), 16);
    assert_eq!(hide_password(RFC_SECRET, &ra, &[b'a'; 32]).unwrap().len(), 32);
}
