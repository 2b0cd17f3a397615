//! Email and SMS codes end to end: a real SMTP server (Debian's aiosmtpd,
//! plain and with STARTTLS + AUTH) and an HTTP gateway stand-in receive the
//! codes; `radclient` and the REST API log in with them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::{RadReply, TestNode, radclient_pap, require_tool};

const RADIUS_SECRET: &str = "radius-test-secret";
/// Debian's interpreter: python3-aiosmtpd installs into its dist-packages.
const PYTHON: &str = "/usr/bin/python3";
/// The text of every code, so the test can find the code in what arrives.
const MESSAGE: &str = "Your tessera code: {code} (valid {minutes} min)";

/// Whether aiosmtpd can be imported (skip, or fail under TESSERA_REQUIRE_TOOLS=1).
fn require_aiosmtpd() -> bool {
    let found = Command::new(PYTHON).args(["-c", "import aiosmtpd"]).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "python3-aiosmtpd is required (TESSERA_REQUIRE_TOOLS=1) but not installed"
        );
        eprintln!("skipping: python3-aiosmtpd is not installed");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// aiosmtpd's Controller with a handler that prints each message; with
/// STARTTLS required and AUTH (user `tessera`, password `smtp-secret`) when
/// given a certificate.
const SMTP_SINK: &str = r#"
import ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port = int(sys.argv[1])

class Sink:
    async def handle_DATA(self, server, session, envelope):
        print("MAIL-TO " + " ".join(envelope.rcpt_tos), flush=True)
        print("MAIL-AUTH " + str(getattr(session, "authenticated", False)), flush=True)
        print("MAIL-TLS " + str(session.ssl is not None), flush=True)
        for line in envelope.content.decode("utf-8", "replace").splitlines():
            print("| " + line, flush=True)
        print("MAIL-END", flush=True)
        return "250 OK"

def check(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"tessera" and auth_data.password == b"smtp-secret"
    return AuthResult(success=ok)

kw = {}
if len(sys.argv) > 3:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    kw = dict(tls_context=ctx, require_starttls=True, authenticator=check, auth_required=True)
c = Controller(Sink(), hostname="127.0.0.1", port=port, **kw)
c.start()
print("READY", flush=True)
sys.stdin.read()
c.stop()
"#;

/// One message as the SMTP server received it.
#[derive(Debug)]
struct Mail {
    to: String,
    authenticated: bool,
    tls: bool,
    text: String,
}

impl Mail {
    /// The digits after "code: ".
    fn code(&self) -> String {
        let at = self.text.find("code: ").unwrap_or_else(|| panic!("no code in {}", self.text)) + 6;
        self.text[at..].chars().take_while(char::is_ascii_digit).collect()
    }
}

struct SmtpSink {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl SmtpSink {
    fn start(dir: &std::path::Path, tls: Option<(&str, &str)>) -> SmtpSink {
        let script = dir.join("smtp_sink.py");
        std::fs::write(&script, SMTP_SINK).unwrap();
        let port = free_port();
        let mut cmd = Command::new(PYTHON);
        cmd.args(["-u", "-W", "ignore"]).arg(&script).arg(port.to_string());
        if let Some((cert, key)) = tls {
            cmd.args([cert, key]);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let sink = SmtpSink { child, port, lines };
        let first = sink.lines.recv_timeout(Duration::from_secs(20)).expect("aiosmtpd did not start");
        assert_eq!(first, "READY");
        sink
    }

    /// The next message, within `wait`.
    fn next(&self, wait: Duration) -> Option<Mail> {
        let deadline = Instant::now() + wait;
        let mut mail = Mail { to: String::new(), authenticated: false, tls: false, text: String::new() };
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if let Some(to) = line.strip_prefix("MAIL-TO ") {
                mail.to = to.to_string();
            } else if let Some(a) = line.strip_prefix("MAIL-AUTH ") {
                mail.authenticated = a == "True";
            } else if let Some(t) = line.strip_prefix("MAIL-TLS ") {
                mail.tls = t == "True";
            } else if let Some(l) = line.strip_prefix("| ") {
                mail.text.push_str(l);
                mail.text.push('\n');
            } else if line == "MAIL-END" {
                return Some(mail);
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as the SMS gateway stand-in saw it.
#[derive(Debug, Clone)]
struct GatewayRequest {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: String,
}

/// A tiny HTTP/1.1 server: records each request and answers with `status`.
struct SmsGateway {
    port: u16,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<GatewayRequest>>>,
}

impl SmsGateway {
    fn start() -> SmsGateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, sn) = (status.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut parts = request_line.split_whitespace();
                let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                sn.lock().unwrap().push(GatewayRequest {
                    method,
                    target,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let code = st.load(Ordering::SeqCst);
                let _ = write!(conn, "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        SmsGateway { port, status, seen }
    }

    fn requests(&self) -> Vec<GatewayRequest> {
        self.seen.lock().unwrap().clone()
    }
}

fn radclient(addr: &str, user: &str, password: &str, extra: &str) -> RadReply {
    radclient_pap(addr, RADIUS_SECRET, user, password, extra, 10)
}

fn add_radius_client(n: &TestNode) {
    let p = n.cwd().join("radius.secret");
    std::fs::write(&p, format!("{RADIUS_SECRET}\n")).unwrap();
    n.ok(&["client", "add", "loopback", "--address", "127.0.0.1", "--secret-file", &p.display().to_string()]);
}

async fn validate(n: &TestNode, body: Value) -> Value {
    let r = n.client().post(n.url("/api/v1/validate")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn audit(n: &TestNode) -> Value {
    serde_json::from_str(&n.ok(&["audit", "list", "--action", "validate", "--json"])).unwrap()
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn email_code_over_radius_single_use_and_per_user_limit() {
    if !require_tool("radclient") || !require_aiosmtpd() {
        return;
    }
    let mut n = TestNode::new();
    let smtp = SmtpSink::start(n.cwd(), None);
    n.ok(&["init"]);
    add_radius_client(&n);
    n.ok_stdin(&["user", "add", "alice", "--password-stdin"], "alice-pass\n");
    let added = n.ok(&["token", "add-email", "alice", "alice@example.com"]);
    assert!(added.contains("codes go to alice@example.com") && added.contains("oob_users=alice"), "{added}");
    n.ok(&["policy", "set", "oob_users=alice"]);
    let port = smtp.port.to_string();
    n.start_with(&[
        ("TESSERA_EMAIL_HOST", "127.0.0.1"),
        ("TESSERA_EMAIL_PORT", &port),
        ("TESSERA_EMAIL_TLS", "none"),
        ("TESSERA_EMAIL_FROM", "tessera <tessera@example.com>"),
        ("TESSERA_OOB_MESSAGE", MESSAGE),
        ("TESSERA_OOB_USER_LIMIT", "3"),
    ]);
    let addr = n.listening("radius");

    // The password alone: a code goes out by email, the NAS gets a challenge.
    let first = radclient(&addr, "alice", "alice-pass", "");
    assert_eq!(first.code.as_deref(), Some("Access-Challenge"), "{}", first.output);
    assert!(first.attr("Reply-Message").unwrap_or_default().contains("@example.com"), "{}", first.output);
    let state = first.attr("State").expect("State in the challenge");
    let mail = smtp.next(WAIT).expect("the code by email");
    assert_eq!(mail.to, "alice@example.com");
    assert!(mail.text.contains("Subject: Your login code"), "{}", mail.text);
    assert!(mail.text.contains("valid 5 min"), "{}", mail.text);
    let code = mail.code();
    assert_eq!(code.len(), 6);

    let second = radclient(&addr, "alice", &code, &format!(", State = {state}"));
    assert_eq!(second.code.as_deref(), Some("Access-Accept"), "{}", second.output);
    // single use: not with the same State, not as password + code
    let again = radclient(&addr, "alice", &code, &format!(", State = {state}"));
    assert_eq!(again.code.as_deref(), Some("Access-Reject"), "{}", again.output);
    let replay = radclient(&addr, "alice", &format!("alice-pass{code}"), "");
    assert_eq!(replay.code.as_deref(), Some("Access-Reject"), "{}", replay.output);
    assert!(replay.attr("Reply-Message").is_none(), "a plain reject says nothing: {}", replay.output);
    let a = audit(&n);
    assert_eq!(a[0]["reason"], "replayed_code", "{a}");
    assert_eq!(a[1]["reason"], "state_reused", "{a}");
    assert_eq!(a[2]["result"], "accept");
    assert_eq!(a[2]["reason"], "email_code");
    assert_eq!(a[3]["result"], "challenge");
    assert!(a[3]["reason"].as_str().unwrap().contains("email code sent to token MAIL"), "{a}");

    // A second code works in one step too (for NASes without challenges).
    let first = radclient(&addr, "alice", "alice-pass", "");
    assert_eq!(first.code.as_deref(), Some("Access-Challenge"), "{}", first.output);
    let code2 = smtp.next(WAIT).expect("the second code").code();
    let one_step = radclient(&addr, "alice", &format!("alice-pass{code2}"), "");
    assert_eq!(one_step.code.as_deref(), Some("Access-Accept"), "{}", one_step.output);

    // Per-user limit: the third code goes out, the fourth is refused with a message.
    assert_eq!(radclient(&addr, "alice", "alice-pass", "").code.as_deref(), Some("Access-Challenge"));
    let code3 = smtp.next(WAIT).expect("the third code").code();
    let limited = radclient(&addr, "alice", "alice-pass", "");
    assert_eq!(limited.code.as_deref(), Some("Access-Reject"), "{}", limited.output);
    assert!(
        limited.attr("Reply-Message").unwrap_or_default().starts_with("No code could be sent"),
        "{}",
        limited.output
    );
    assert!(smtp.next(Duration::from_secs(1)).is_none(), "no fourth email");
    let a = audit(&n);
    assert_eq!(a[0]["result"], "reject");
    assert!(a[0]["reason"].as_str().unwrap().starts_with("oob_rate_limited"), "{a}");
    // the third code still works; a refused send was not counted as a failure
    let show: Value = serde_json::from_str(&n.ok(&["user", "show", "alice", "--json"])).unwrap();
    assert_eq!(show["user"]["status"], "active");
    assert_eq!(radclient(&addr, "alice", &format!("alice-pass{code3}"), "").code.as_deref(), Some("Access-Accept"));

    // The codes never reach the audit log.
    let everything = n.ok(&["audit", "list", "--json", "--limit", "1000"]);
    for c in [&code, &code2, &code3] {
        assert!(!everything.contains(c.as_str()), "code {c} in the audit log");
    }
    n.stop();
}

#[tokio::test]
async fn email_code_over_starttls_with_auth_through_rest_and_expiry() {
    if !require_aiosmtpd() {
        return;
    }
    let mut n = TestNode::new();
    let (ca, cert, key) = smtp_pki(n.cwd());
    let smtp = SmtpSink::start(n.cwd(), Some((&cert, &key)));
    let pw = n.cwd().join("smtp.pw");
    std::fs::write(&pw, "smtp-secret\n").unwrap();
    n.ok(&["init"]);
    n.ok_stdin(&["user", "add", "bob", "--password-stdin"], "bob-password\n");
    n.ok(&["policy", "set", "oob_realms=default"]);
    let api_key = n.ok(&["api-key", "create", "ops"]).trim().to_string();
    let port = smtp.port.to_string();
    let pw = pw.display().to_string();
    n.start_with(&[
        ("TESSERA_EMAIL_HOST", "127.0.0.1"),
        ("TESSERA_EMAIL_PORT", &port),
        ("TESSERA_EMAIL_TLS", "starttls"),
        ("TESSERA_EMAIL_CA_FILE", &ca),
        ("TESSERA_EMAIL_USERNAME", "tessera"),
        ("TESSERA_EMAIL_PASSWORD_FILE", &pw),
        ("TESSERA_EMAIL_FROM", "tessera@example.com"),
        ("TESSERA_OOB_MESSAGE", MESSAGE),
        ("TESSERA_OOB_TTL_SECONDS", "4"),
    ]);

    // The token through the admin API (an address is required, OTP fields refused).
    let add = |body: Value| n.client().post(n.url("/api/v1/users/bob/tokens")).bearer_auth(&api_key).json(&body).send();
    let r = add(json!({"type": "email"})).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = add(json!({"type": "email", "address": "bob@example.com", "secret": "JBSWY3DPEHPK3PXP"})).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = add(json!({"type": "email", "address": "not-an-address"})).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = add(json!({"type": "email", "address": "bob@example.com", "digits": 8})).await.unwrap();
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        (&t["token"]["type"], &t["token"]["address"], &t["token"]["digits"]),
        (&json!("email"), &json!("bob@example.com"), &json!(8))
    );
    assert!(t.get("secret").is_none(), "{t}");

    // REST: the password alone is answered with a challenge, the code with it accepted.
    let c = validate(&n, json!({"username": "bob", "password": "bob-password"})).await;
    assert_eq!(c["result"], "challenge", "{c}");
    assert_eq!(c["message"], "Enter the code sent to b•••@example.com");
    let mail = smtp.next(WAIT).expect("the code by email");
    assert!(mail.tls && mail.authenticated, "STARTTLS and AUTH: {mail:?}");
    let code = mail.code();
    assert_eq!(code.len(), 8);
    let ok = validate(&n, json!({"username": "bob", "password": code, "state": c["state"]})).await;
    assert_eq!(ok, json!({"result": "accept"}));

    // A code past its lifetime is refused (and counted), even with a live State.
    let c = validate(&n, json!({"username": "bob", "password": "bob-password"})).await;
    assert_eq!(c["result"], "challenge", "{c}");
    let late = smtp.next(WAIT).expect("another code").code();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = validate(&n, json!({"username": "bob", "password": late, "state": c["state"]})).await;
    assert_eq!(r, json!({"result": "reject", "reason": "access_denied"}));
    assert_eq!(audit(&n)[0]["reason"], "expired_code; failure 1");
    n.stop();
}

#[tokio::test]
async fn sms_gateway_gets_the_templated_request_and_a_failure_rejects_clearly() {
    if !require_tool("radclient") {
        return;
    }
    let mut n = TestNode::new();
    let gw = SmsGateway::start();
    n.ok(&["init"]);
    add_radius_client(&n);
    n.ok_stdin(&["user", "add", "carol", "--password-stdin"], "carol-pass\n");
    let added = n.ok(&["token", "add-sms", "carol", "+49 151 2345 6789"]);
    assert!(added.contains("+4915123456789") && added.contains("[sms] url"), "{added}");
    n.ok(&["policy", "set", "oob_realms=default"]);
    let url = format!("http://127.0.0.1:{}/sms/send?to={{phone}}", gw.port);
    n.start_with(&[
        ("TESSERA_SMS_URL", &url),
        ("TESSERA_SMS_METHOD", "PUT"),
        ("TESSERA_SMS_HEADERS", "Content-Type: application/json, X-Api-Key: test-key"),
        ("TESSERA_SMS_BODY", r#"{"to": "{phone}", "text": "{message}"}"#),
        ("TESSERA_SMS_SUCCESS_STATUS", "200,202"),
        ("TESSERA_OOB_MESSAGE", MESSAGE),
    ]);

    let c = validate(&n, json!({"username": "carol", "password": "carol-pass"})).await;
    assert_eq!(c["result"], "challenge", "{c}");
    assert!(c["message"].as_str().unwrap().ends_with("6789"), "{c}");
    let reqs = gw.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.target.as_str()), ("PUT", "/sms/send?to=%2B4915123456789"));
    assert_eq!(r.headers.get("x-api-key").map(String::as_str), Some("test-key"));
    assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["to"], "+4915123456789");
    let text = body["text"].as_str().unwrap();
    let at = text.find("code: ").unwrap() + 6;
    let code: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    let ok = validate(&n, json!({"username": "carol", "password": format!("carol-pass{code}")})).await;
    assert_eq!(ok, json!({"result": "accept"}));

    // The gateway fails: the login is refused with a message, never accepted,
    // and the audit log says why (without the code).
    gw.status.store(500, Ordering::SeqCst);
    let r = radclient(&n.listening("radius"), "carol", "carol-pass", "");
    assert_eq!(r.code.as_deref(), Some("Access-Reject"), "{}", r.output);
    assert!(r.attr("Reply-Message").unwrap_or_default().starts_with("No code could be sent"), "{}", r.output);
    let rest = validate(&n, json!({"username": "carol", "password": "carol-pass"})).await;
    assert_eq!(rest["result"], "reject");
    assert_eq!(rest["reason"], "access_denied");
    assert!(rest["message"].as_str().unwrap().starts_with("No code could be sent"), "{rest}");
    let a = audit(&n);
    let reason = a[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("oob_delivery_failed") && reason.contains("answered 500"), "{reason}");
    assert!(!reason.contains("test-key"), "{reason}");
    let show: Value = serde_json::from_str(&n.ok(&["user", "show", "carol", "--json"])).unwrap();
    assert_eq!(show["user"]["failures"], 0, "a failed delivery is not the user's failure");
    let everything = n.ok(&["audit", "list", "--json", "--limit", "1000"]);
    assert!(!everything.contains(&code), "the code is not in the audit log");
    assert_eq!(gw.requests().len(), 3);
    n.stop();
}

/// A CA (for `[email] ca_file`) and a certificate for 127.0.0.1 signed by it.
fn smtp_pki(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "tessera smtp test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "smtp");
    let cert = p.signed_by(&key, &issuer).unwrap();
    let w = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    (w("smtp-ca.pem", &ca.pem()), w("smtp.pem", &cert.pem()), w("smtp.key", &key.serialize_pem()))
}

#[test]
fn email_and_sms_tokens_travel_with_a_users_export() {
    // The address is not a secret: a plain export carries it, and the
    // import re-creates the token (with a fresh digest key).
    let a = TestNode::new();
    a.ok(&["init"]);
    a.ok(&["user", "add", "dora"]);
    a.ok(&["token", "add-email", "dora", "dora@example.com", "--serial", "MAIL-DORA"]);
    a.ok(&["token", "add-sms", "dora", "+1 202 555 0143", "--digits", "8", "--serial", "SMS-DORA"]);
    a.fail(&["token", "add-sms", "dora", "0202 555 0143"], &[], 2);
    a.fail(&["token", "resync", "MAIL-DORA"], &[], 2);
    let file = a.cwd().join("users.jsonl");
    a.ok(&["export", "users", "--out", file.to_str().unwrap()]);
    let b = TestNode::new();
    b.ok(&["init"]);
    let out = b.ok(&["import", "users", file.to_str().unwrap()]);
    assert!(out.contains("2 tokens added"), "{out}");
    let tokens: Value = serde_json::from_str(&b.ok(&["token", "list", "dora", "--json"])).unwrap();
    let mut got: Vec<(String, String, u64)> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["serial"].as_str().unwrap().into(), t["address"].as_str().unwrap().into(), t["digits"].as_u64().unwrap())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("MAIL-DORA".into(), "dora@example.com".into(), 6), ("SMS-DORA".into(), "+12025550143".into(), 8)]
    );
    let show = b.ok(&["user", "show", "dora"]);
    assert!(show.contains("MAIL-DORA email dora@example.com 6 digits (active)"), "{show}");
}
