//! Tamper-evident audit and syslog, end to end: `tessera audit verify` on a
//! database edited behind tessera's back (rusqlite on the file, as an
//! intruder would), and the server's syslog output received by sockets in
//! the test itself (UDP and TCP with RFC 5424, UDP with RFC 3164, a unix
//! datagram socket).

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{TestNode, totp_now};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(15);

fn audit_ids(n: &TestNode) -> Vec<(i64, String)> {
    let list: Value = serde_json::from_str(&n.ok(&["audit", "list", "--limit", "1000", "--json"])).unwrap();
    let mut ids: Vec<(i64, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_i64().unwrap(), a["action"].as_str().unwrap().to_string()))
        .collect();
    ids.sort();
    ids
}

fn db(n: &TestNode) -> rusqlite::Connection {
    rusqlite::Connection::open(n.data().join("tessera.db")).unwrap()
}

#[test]
fn audit_verify_names_an_edited_and_a_deleted_record() {
    let n = TestNode::new();
    n.ok(&["init"]);
    for u in ["alice", "bob", "carol", "dave"] {
        n.ok(&["user", "add", u]);
    }
    n.ok(&["token", "add", "alice", "--secret", SECRET, "--serial", "A-1"]);
    assert!(n.ok(&["check", "alice", &totp_now(SECRET, 0)]).starts_with("accept"));
    let out = n.ok(&["audit", "verify"]);
    assert!(out.starts_with("audit chain: OK — 6 record(s) chained on 1 node(s)"), "{out}");
    let report: Value = serde_json::from_str(&n.ok(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["chained"], 6);

    let ids = audit_ids(&n);
    assert_eq!(ids.len(), 6, "{ids:?}");
    // An intruder makes bob's creation look like carol's…
    let (edited, _) = ids[1].clone();
    db(&n).execute("UPDATE audit SET target = 'carol' WHERE id = ?1", [edited]).unwrap();
    let out = n.fail(&["audit", "verify"], &[], 1);
    assert!(out.contains("audit chain: BROKEN — 1 problem(s)"), "{out}");
    assert!(out.contains(&format!("record {edited} (node ")), "names the record: {out}");
    assert!(out.contains("changed — its fields no longer match its hash"), "{out}");
    let report: Value = serde_json::from_str(&n.fail(&["audit", "verify", "--json"], &[], 1)).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["id"], edited);
    assert_eq!(report["problems"][0]["kind"], "changed");
    assert!(report["problems"][0]["at"].as_str().unwrap().ends_with('Z'));

    // …and deletes the newest record (the login).
    let (deleted, _) = ids[5].clone();
    db(&n).execute("DELETE FROM audit WHERE id = ?1", [deleted]).unwrap();
    let out = n.fail(&["audit", "verify"], &[], 1);
    assert!(out.contains("audit chain: BROKEN — 2 problem(s)"), "{out}");
    assert!(out.contains(&format!("record {deleted} (node ")), "{out}");
    assert!(out.contains("missing — the newest 1 record(s) of this node are missing"), "{out}");

    // A deletion in the middle names the successor and the gap.
    let n2 = TestNode::new();
    n2.ok(&["init"]);
    for u in ["u1", "u2", "u3"] {
        n2.ok(&["user", "add", u]);
    }
    let ids = audit_ids(&n2);
    db(&n2).execute("DELETE FROM audit WHERE id = ?1", [ids[1].0]).unwrap();
    let report: Value = serde_json::from_str(&n2.fail(&["audit", "verify", "--json"], &[], 1)).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["kind"], "missing");
    assert_eq!(problems[0]["id"], ids[2].0, "the successor of the gap is named");
    let detail = problems[0]["detail"].as_str().unwrap();
    assert_eq!(detail, format!("missing predecessor: 1 record(s) deleted between id {} and id {}", ids[0].0, ids[2].0));
}

#[tokio::test]
async fn audit_verify_runs_beside_a_serving_node() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "alice"]);
    n.ok(&["token", "add", "alice", "--secret", SECRET]);
    n.start();
    assert_eq!(n.validate("alice", &totp_now(SECRET, 0)).await["result"], "accept");
    assert_eq!(n.validate("alice", "000000").await["result"], "reject");
    n.ok(&["user", "add", "bob"]);
    let out = n.ok(&["audit", "verify"]);
    assert!(out.starts_with("audit chain: OK — 5 record(s)"), "{out}");
    n.stop();
}

/// One RFC 5424 message, taken apart.
#[derive(Debug)]
struct Syslog5424 {
    pri: u8,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    sd_id: String,
    params: HashMap<String, String>,
    msg: String,
}

fn parse_5424(line: &str) -> Syslog5424 {
    let rest = line.strip_prefix('<').unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once('>').unwrap();
    let rest = rest.strip_prefix("1 ").unwrap_or_else(|| panic!("not version 1: {line}"));
    let mut head = rest.splitn(6, ' ');
    let (timestamp, hostname, app_name, procid, msgid) = (
        head.next().unwrap().to_string(),
        head.next().unwrap().to_string(),
        head.next().unwrap().to_string(),
        head.next().unwrap().to_string(),
        head.next().unwrap().to_string(),
    );
    let sd = head.next().unwrap();
    let mut params = HashMap::new();
    let mut sd_id = String::new();
    let msg: String;
    if let Some(body) = sd.strip_prefix('[') {
        let (id, mut rest) = body.split_once(' ').unwrap();
        sd_id = id.to_string();
        loop {
            let (name, after) = rest.split_once("=\"").unwrap();
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().unwrap_or_else(|| panic!("unterminated SD value: {line}"));
                match c {
                    '\\' => value.push(chars.next().unwrap().1),
                    '"' => break i,
                    c => value.push(c),
                }
            };
            params.insert(name.to_string(), value);
            rest = &after[end + 1..];
            if let Some(r) = rest.strip_prefix(']') {
                msg = r.strip_prefix(' ').unwrap_or(r).to_string();
                break;
            }
            rest = rest.strip_prefix(' ').unwrap();
        }
    } else {
        let (nil, m) = sd.split_once(' ').unwrap_or((sd, ""));
        assert_eq!(nil, "-");
        msg = m.to_string();
    }
    Syslog5424 { pri: pri.parse().unwrap(), timestamp, hostname, app_name, procid, msgid, sd_id, params, msg }
}

/// Waits for a message that `wanted` accepts; `next` reads one (or None on a read timeout).
fn receive(mut next: impl FnMut() -> Option<String>, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(m) = next() {
            if wanted(&m) {
                return m;
            }
            seen.push(m);
        }
    }
    panic!("no matching syslog message within {RECEIVE_TIMEOUT:?}; received: {seen:#?}");
}

fn node_with_alice() -> TestNode {
    let n = TestNode::new();
    n.ok(&["init"]);
    n.ok(&["user", "add", "alice"]);
    n.ok(&["token", "add", "alice", "--secret", SECRET]);
    n
}

fn check_login_record(m: &Syslog5424, result: &str) {
    assert_eq!(m.pri, 4 * 8 + if result == "accept" { 5 } else { 4 }, "facility auth, notice/warning");
    assert!(m.timestamp.len() == 24 && m.timestamp.as_bytes()[10] == b'T' && m.timestamp.ends_with('Z'), "{m:?}");
    assert_eq!((m.hostname.as_str(), m.app_name.as_str(), m.msgid.as_str()), ("node-7", "tessera", "audit"));
    assert!(m.procid.parse::<u32>().is_ok(), "{m:?}");
    assert_eq!(m.sd_id, "audit@32473");
    assert_eq!(m.params["action"], "validate");
    assert_eq!(m.params["target"], "alice");
    assert_eq!(m.params["result"], result);
    assert_eq!(m.params["node"], "node-7");
    assert_eq!(m.params["source"], "127.0.0.1");
    assert!(m.params["id"].parse::<i64>().is_ok() && m.params["seq"].parse::<i64>().is_ok(), "{m:?}");
    assert_eq!(m.params["hash"].len(), 64, "the chain hash travels with the record");
    assert!(m.msg.starts_with(&format!("validate alice: {result}")), "{m:?}");
}

#[tokio::test]
async fn syslog_udp_rfc5424_carries_login_and_cli_audit_records() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let addr = rx.local_addr().unwrap().to_string();
    let mut n = node_with_alice();
    n.start_with(&[
        ("TESSERA_SERVER_NODE_NAME", "node-7"),
        ("TESSERA_SYSLOG_ENABLED", "true"),
        ("TESSERA_SYSLOG_ADDRESS", &addr),
    ]);
    assert_eq!(n.validate("alice", &totp_now(SECRET, 0)).await["result"], "accept");
    assert_eq!(n.validate("alice", "000000").await["result"], "reject");
    n.ok(&["user", "add", "bob"]);
    let mut buf = vec![0u8; 65536];
    let mut next = || rx.recv(&mut buf).ok().map(|len| String::from_utf8(buf[..len].to_vec()).unwrap());
    let accept = parse_5424(&receive(&mut next, |m| m.contains(" audit ") && m.contains("result=\"accept\"")));
    check_login_record(&accept, "accept");
    let reject = parse_5424(&receive(&mut next, |m| m.contains(" audit ") && m.contains("result=\"reject\"")));
    check_login_record(&reject, "reject");
    assert!(reject.params["reason"].starts_with("wrong_code"), "{reject:?}");
    // the CLI's change, committed by another process, is forwarded by the server
    let cli = parse_5424(&receive(&mut next, |m| m.contains("action=\"user.add\"")));
    assert_eq!(cli.params["target"], "bob");
    assert!(cli.params["actor"].starts_with("cli:"), "{cli:?}");
    let (a, r) = (accept.params["seq"].parse::<i64>().unwrap(), reject.params["seq"].parse::<i64>().unwrap());
    assert_eq!(r, a + 1, "consecutive chain positions");
    // log events too (a warning: the harness runs the server with TESSERA_LOG=warn)
    let radius = n.listening("radius");
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"not radius", &radius).unwrap();
    let log = parse_5424(&receive(&mut next, |m| m.contains(" log - RADIUS packet dropped")));
    assert_eq!((log.pri, log.msgid.as_str(), log.sd_id.as_str()), (4 * 8 + 4, "log", ""));
    assert!(log.msg.contains("reason="), "{log:?}");
    n.stop();

    // A change made while the server is down goes out when it is back.
    n.ok(&["user", "add", "carol"]);
    n.start_with(&[
        ("TESSERA_SERVER_NODE_NAME", "node-7"),
        ("TESSERA_SYSLOG_ENABLED", "true"),
        ("TESSERA_SYSLOG_ADDRESS", &addr),
    ]);
    let mut next = || rx.recv(&mut buf).ok().map(|len| String::from_utf8(buf[..len].to_vec()).unwrap());
    let late = parse_5424(&receive(&mut next, |m| m.contains("action=\"user.add\"") && m.contains("carol")));
    assert_eq!(late.params["target"], "carol");
    n.stop();
}

#[tokio::test]
async fn syslog_tcp_octet_counted_rfc5424() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut n = node_with_alice();
    n.start_with(&[
        ("TESSERA_SERVER_NODE_NAME", "node-7"),
        ("TESSERA_SYSLOG_ENABLED", "true"),
        ("TESSERA_SYSLOG_TRANSPORT", "tcp"),
        ("TESSERA_SYSLOG_ADDRESS", &addr),
        ("TESSERA_SYSLOG_LEVEL", "off"),
    ]);
    assert_eq!(n.validate("alice", &totp_now(SECRET, 0)).await["result"], "accept");
    listener.set_nonblocking(false).unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut pending: Vec<u8> = Vec::new();
    // RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG, back to back.
    let mut next = || {
        let mut chunk = [0u8; 4096];
        if let Ok(len) = stream.read(&mut chunk) {
            pending.extend_from_slice(&chunk[..len]);
        }
        let sp = pending.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&pending[..sp]).unwrap().parse().expect("a frame starts with its length");
        if pending.len() < sp + 1 + len {
            return None;
        }
        let msg = String::from_utf8(pending[sp + 1..sp + 1 + len].to_vec()).unwrap();
        pending.drain(..sp + 1 + len);
        Some(msg)
    };
    let m = receive(&mut next, |m| m.contains("action=\"validate\""));
    assert!(m.starts_with("<37>1 "), "{m}");
    check_login_record(&parse_5424(&m), "accept");
    n.stop();
}

/// `<PRI>Mmm dd hh:mm:ss [HOST ]TAG[PID]: MSG`
fn check_3164(m: &str, with_host: bool) {
    let rest = m.strip_prefix("<37>").unwrap_or_else(|| panic!("PRI: {m}"));
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    assert!(MONTHS.contains(&&rest[..3]), "{m}");
    let day = &rest[4..6];
    assert!(day.trim_start().parse::<u32>().is_ok() && rest.as_bytes()[3] == b' ', "{m}");
    let time = &rest[7..15];
    assert!(time.as_bytes()[2] == b':' && time.as_bytes()[5] == b':', "{m}");
    let rest = &rest[16..];
    let rest = if with_host { rest.strip_prefix("node-7 ").unwrap_or_else(|| panic!("host: {m}")) } else { rest };
    let (tag, msg) = rest.split_once(": ").unwrap();
    let pid = tag.strip_prefix("tessera[").and_then(|t| t.strip_suffix(']')).unwrap_or_else(|| panic!("tag: {m}"));
    assert!(pid.parse::<u32>().is_ok(), "{m}");
    assert!(msg.starts_with("audit id="), "{m}");
    for kv in ["node=node-7", "action=validate", "target=alice", "result=accept", "reason=otp"] {
        assert!(msg.contains(kv), "{kv} in {m}");
    }
}

#[tokio::test]
async fn syslog_rfc3164_over_udp_and_a_unix_datagram_socket() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let addr = rx.local_addr().unwrap().to_string();
    let mut n = node_with_alice();
    n.start_with(&[
        ("TESSERA_SERVER_NODE_NAME", "node-7"),
        ("TESSERA_SYSLOG_ENABLED", "true"),
        ("TESSERA_SYSLOG_FORMAT", "rfc3164"),
        ("TESSERA_SYSLOG_ADDRESS", &addr),
    ]);
    assert_eq!(n.validate("alice", &totp_now(SECRET, 0)).await["result"], "accept");
    let mut buf = vec![0u8; 65536];
    let m = receive(
        || rx.recv(&mut buf).ok().map(|len| String::from_utf8(buf[..len].to_vec()).unwrap()),
        |m| m.contains("action=validate"),
    );
    check_3164(&m, true);
    n.stop();

    // /dev/log style: a local datagram socket; no host name in the line.
    let path = n.cwd().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    n.start_with(&[
        ("TESSERA_SERVER_NODE_NAME", "node-7"),
        ("TESSERA_SYSLOG_ENABLED", "true"),
        ("TESSERA_SYSLOG_FORMAT", "rfc3164"),
        ("TESSERA_SYSLOG_TRANSPORT", "unix"),
        ("TESSERA_SYSLOG_ADDRESS", path.to_str().unwrap()),
    ]);
    assert_eq!(n.validate("alice", &totp_now(SECRET, 1)).await["result"], "accept");
    let m = receive(
        || sock.recv(&mut buf).ok().map(|len| String::from_utf8(buf[..len].to_vec()).unwrap()),
        |m| m.contains("action=validate"),
    );
    check_3164(&m, false);
    n.stop();
}
