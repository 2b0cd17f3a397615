//! Operations end to end: `/metrics` parsed with a strict Prometheus text
//! parser before and after real logins (REST, radclient, our own packets),
//! its access control; `/healthz` and `/readyz`; SIGHUP adding a
//! `[[radius.client]]` while RADIUS load runs (nothing dropped); a bad
//! config on SIGHUP keeping the old one; SIGTERM answering every request
//! sent before it and exiting 0.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_radius::{Attribute, Code, Packet, attr, hide_password};

use super::support::{TestNode, radclient_pap, require_tool, totp_now};

const SECRET: &str = "ops-test-radius-secret";
const TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

// ------------------------------------------------------------ Prometheus text format

/// One parsed exposition: series (`name{sorted labels}`) → value, and
/// each family's declared type.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self.samples.get(series).unwrap_or_else(|| panic!("no series {series}"))
    }
    fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.get(series) - before.get(series)
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value `{s}`")),
    }
}

/// Labels between `{` and `}`: `a="x",b="y\"z"` (escapes \\ \" \n).
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").ok_or_else(|| format!("bad label in `{s}`"))?;
        if !valid_label_name(name) {
            return Err(format!("bad label name `{name}`"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err(format!("bad escape in `{s}`")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in `{s}`")),
            }
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("label `{name}` twice in `{s}`"));
        }
        out.push((name.to_string(), value));
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.is_empty() => rest,
            None => return Err(format!("expected `,` in `{s}`")),
        };
    }
    Ok(out)
}

/// A strict parser of the text exposition format 0.0.4: every sample's
/// family has a `# TYPE` line before it, each family's samples are
/// contiguous, no series repeats, counters are non-negative, histograms
/// have cumulative `le` buckets ending in `+Inf` equal to `_count`.
fn parse_prometheus(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    let mut finished_families: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut help_seen = BTreeMap::new();
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (no, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: `{line}`", no + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, tail) = (parts.next(), parts.next(), parts.next());
            match (kw, name) {
                (Some("TYPE"), Some(name)) => {
                    if !valid_metric_name(name) {
                        return Err(err("bad metric name".into()));
                    }
                    let t = tail.ok_or_else(|| err("TYPE without a type".into()))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(err(format!("unknown type {t}")));
                    }
                    if scrape.types.insert(name.to_string(), t.to_string()).is_some() {
                        return Err(err("TYPE declared twice".into()));
                    }
                    if let Some(prev) = current.replace(name.to_string()) {
                        finished_families.push(prev);
                    }
                }
                (Some("HELP"), Some(name)) if help_seen.insert(name.to_string(), ()).is_some() => {
                    return Err(err("HELP given twice".into()));
                }
                _ => {} // other comments (and first HELP lines) are fine
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').ok_or_else(|| err("unclosed {".into()))?;
                let name = &line[..open];
                let labels = parse_labels(&line[open + 1..close]).map_err(&err)?;
                let key = format!(
                    "{name}{{{}}}",
                    labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(",")
                );
                (key, line[close + 1..].trim_start())
            }
            None => {
                let (name, v) = line.split_once(' ').ok_or_else(|| err("no value".into()))?;
                (name.to_string(), v)
            }
        };
        let name = series.split('{').next().unwrap_or("");
        if !valid_metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let mut fields = value.split(' ');
        let v = parse_value(fields.next().unwrap_or("")).map_err(&err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let family = current.clone().ok_or_else(|| err("sample before any TYPE".into()))?;
        let kind = scrape.types[&family].clone();
        let ok_name = match kind.as_str() {
            "histogram" => [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")]
                .contains(&name.to_string()),
            _ => name == family,
        };
        if !ok_name {
            return Err(err(format!("sample does not belong to the current family {family}")));
        }
        if finished_families.contains(&family) {
            return Err(err("family samples not contiguous".into()));
        }
        if kind == "counter" && (v.is_nan() || v < 0.0) {
            return Err(err("negative counter".into()));
        }
        if scrape.samples.insert(series.clone(), v).is_some() {
            return Err(err("series repeated".into()));
        }
    }
    // histograms: cumulative buckets, +Inf == count
    for (family, kind) in &scrape.types {
        if kind != "histogram" {
            continue;
        }
        let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (series, v) in &scrape.samples {
            let Some(labels) = series.strip_prefix(&format!("{family}_bucket{{")) else { continue };
            let labels = parse_labels(labels.trim_end_matches('}'))?;
            let le = labels.iter().find(|(k, _)| k == "le").ok_or(format!("{series}: bucket without le"))?;
            let others: Vec<String> =
                labels.iter().filter(|(k, _)| k != "le").map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            groups.entry(others.join(",")).or_default().push((parse_value(&le.1)?, *v));
        }
        if groups.is_empty() {
            return Err(format!("histogram {family} has no buckets"));
        }
        for (labels, mut buckets) in groups {
            let series = |suffix: &str| match labels.as_str() {
                "" => format!("{family}_{suffix}"),
                l => format!("{family}_{suffix}{{{l}}}"),
            };
            buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family}{{{labels}}}: buckets are not cumulative"));
            }
            let (last_le, last) = *buckets.last().unwrap();
            if last_le != f64::INFINITY {
                return Err(format!("{family}{{{labels}}}: no +Inf bucket"));
            }
            let count = scrape.samples.get(&series("count")).ok_or(format!("{family}{{{labels}}}: no _count"))?;
            if *count != last {
                return Err(format!("{family}{{{labels}}}: +Inf bucket {last} != count {count}"));
            }
            if !scrape.samples.contains_key(&series("sum")) {
                return Err(format!("{family}{{{labels}}}: no _sum"));
            }
        }
    }
    Ok(scrape)
}

#[test]
fn the_test_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n# TYPE h histogram\n\
                h_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";
    let s = parse_prometheus(good).unwrap();
    assert_eq!(s.get("a_total{x=\"1\"}"), 3.0);
    for bad in [
        "a 1\n",                                                                                   // no TYPE
        "# TYPE a counter\na -1\n",                                                                // negative counter
        "# TYPE a counter\na{x=\"1\"} 1\na{x=\"1\"} 2\n",                                          // repeated
        "# TYPE a counter\na{x=1} 1\n",                                                            // unquoted
        "# TYPE a counter\na 1",                                                                   // no final newline
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",                       // +Inf != count
        "# TYPE a counter\n# TYPE b counter\nb 1\na 1\n", // a's sample in b's family
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted: {bad:?}");
    }
}

// ------------------------------------------------------------ helpers

fn https_client(n: &TestNode, local: Option<&str>) -> reqwest::Client {
    let pem = std::fs::read(n.data().join("tls/cert.pem")).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(10));
    if let Some(ip) = local {
        b = b.local_address(ip.parse::<std::net::IpAddr>().unwrap());
    }
    b.build().unwrap()
}

async fn scrape(n: &TestNode) -> Scrape {
    let r = n.get("/metrics").await;
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text().await.unwrap();
    parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn secret_file(n: &TestNode, name: &str) -> String {
    let p = n.cwd().join(name);
    std::fs::write(&p, format!("{SECRET}\n")).unwrap();
    p.display().to_string()
}

/// An Access-Request with a fresh authenticator (`seq` makes it unique).
fn access_request(user: &str, password: &str, identifier: u8, seq: u64) -> Vec<u8> {
    let mut authenticator = [0u8; 16];
    authenticator[..8].copy_from_slice(&seq.to_be_bytes());
    authenticator[8..].copy_from_slice(&std::process::id().to_be_bytes().repeat(2));
    let hidden = hide_password(SECRET.as_bytes(), &authenticator, password.as_bytes()).unwrap();
    Packet {
        code: Code::AccessRequest,
        identifier,
        authenticator,
        attributes: vec![
            Attribute { typ: attr::USER_NAME, value: user.as_bytes().to_vec() },
            Attribute { typ: attr::USER_PASSWORD, value: hidden },
        ],
    }
    .encode_request(SECRET.as_bytes(), true)
    .unwrap()
}

/// Sends one request from `sock` and waits for the reply with its identifier.
fn exchange(sock: &UdpSocket, server: &str, packet: &[u8], timeout: Duration) -> Option<Code> {
    sock.send_to(packet, server).unwrap();
    wait_reply(sock, packet[1], Instant::now() + timeout)
}

fn wait_reply(sock: &UdpSocket, identifier: u8, deadline: Instant) -> Option<Code> {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let p = Packet::decode(&buf[..n]).unwrap();
                if p.identifier == identifier {
                    return Some(p.code);
                }
            }
            Err(_) => return None,
        }
    }
}

fn radclient(addr: &str, user: &str, password: &str) -> Option<String> {
    radclient_pap(addr, SECRET, user, password, "", 3).code
}

/// A closed loop of RADIUS requests from `threads` sockets on 127.0.0.1
/// (one outstanding each, 3 s to answer) until `stop`; returns how many
/// were answered and when each unanswered one had been sent.
fn load(server: String, threads: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<Instant>)> {
    let answered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(std::sync::Mutex::new(Vec::new()));
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (server, stop, answered, lost) = (server.clone(), stop.clone(), answered.clone(), lost.clone());
                std::thread::spawn(move || {
                    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                    let mut seq = (t as u64) << 40;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let p = access_request("nobody", "123456", seq as u8, seq);
                        sock.send_to(&p, &server).unwrap();
                        let sent = Instant::now();
                        match wait_reply(&sock, p[1], sent + Duration::from_secs(3)) {
                            Some(_) => {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            None => lost.lock().unwrap().push(sent),
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let lost = lost.lock().unwrap().clone();
        (answered.load(Ordering::Relaxed), lost)
    })
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn metrics_move_with_logins_and_refuse_other_sources_or_no_token() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    let f = secret_file(&n, "radius.secret");
    n.ok(&["client", "add", "loopback", "--address", "127.0.0.1", "--secret-file", &f]);
    n.ok(&["user", "add", "alice"]);
    n.ok(&["token", "add", "alice", "--secret", TOTP]);
    n.ok(&["user", "add", "mallory"]);
    n.ok(&["token", "add", "mallory", "--secret", TOTP]);
    let token = n.cwd().join("metrics.token");
    std::fs::write(&token, "scrape-token-0123456789\n").unwrap();
    n.start_with(&[
        ("TESSERA_METRICS_ALLOW", "127.0.0.1"),
        ("TESSERA_METRICS_BEARER_TOKEN_FILE", token.to_str().unwrap()),
    ]);
    let radius = n.listening("radius");

    // access control: loopback .1 with the token only
    let scrape_with = |local: Option<&'static str>, bearer: Option<&'static str>| {
        let c = https_client(&n, local);
        let mut req = c.get(n.url("/metrics"));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    for (local, bearer) in
        [(None, None), (None, Some("wrong-token-0123456789")), (Some("127.0.0.2"), Some("scrape-token-0123456789"))]
    {
        let r = scrape_with(local, bearer).await.unwrap();
        assert_eq!(r.status(), 403, "{local:?} {bearer:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "forbidden", "{body}");
    }
    let get = || async {
        let r = scrape_with(None, Some("scrape-token-0123456789")).await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let before = get().await;
    assert_eq!(before.types["tessera_requests_total"], "counter");
    assert_eq!(before.types["tessera_request_duration_seconds"], "histogram");
    for family in [
        "tessera_lockouts_total",
        "tessera_directory_cache_hits_total",
        "tessera_directory_cache_misses_total",
        "tessera_radius_duplicates_total",
        "tessera_radius_dropped_total",
        "tessera_backup_interval_seconds",
        "tessera_oob_send_failures_total",
        "tessera_syslog_dropped_total",
        "tessera_config_reloads_total",
    ] {
        assert!(before.types.contains_key(family), "{family} missing");
    }
    assert_eq!(before.get("tessera_radius_clients"), 1.0);

    // REST: one accept, one reject
    assert_eq!(n.validate("alice", &totp_now(TOTP, 0)).await["result"], "accept");
    assert_eq!(n.validate("alice", "000000").await["result"], "reject");
    // RADIUS with radclient: accept, then a replay (reject)
    let code = totp_now(TOTP, 1);
    if require_tool("radclient") {
        assert_eq!(radclient(&radius, "alice", &code).as_deref(), Some("Access-Accept"));
        assert_eq!(radclient(&radius, "alice", &code).as_deref(), Some("Access-Reject"));
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for (i, want) in [(1u8, Code::AccessAccept), (2, Code::AccessReject)] {
            let got =
                exchange(&s, &radius, &access_request("alice", &code, i, 7000 + i as u64), Duration::from_secs(3));
            assert_eq!(got, Some(want));
        }
    }
    // a retransmission answered from the cache
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = access_request("nobody", "123456", 9, 9_999);
    assert_eq!(exchange(&s, &radius, &p, Duration::from_secs(3)), Some(Code::AccessReject));
    assert_eq!(exchange(&s, &radius, &p, Duration::from_secs(3)), Some(Code::AccessReject));
    // an unknown client (127.0.0.2 is loopback but not registered): dropped
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    assert_eq!(exchange(&stranger, &radius, &p, Duration::from_millis(500)), None);
    // a lockout: five wrong codes over REST
    for _ in 0..5 {
        assert_eq!(n.validate("mallory", "000000").await["result"], "reject");
    }

    let after = get().await;
    let req = |p: &str, r: &str| format!("tessera_requests_total{{protocol=\"{p}\",result=\"{r}\"}}");
    assert_eq!(after.delta(&before, &req("rest", "accept")), 1.0);
    assert_eq!(after.delta(&before, &req("rest", "reject")), 6.0);
    assert_eq!(after.delta(&before, &req("radius", "accept")), 1.0);
    assert_eq!(after.delta(&before, &req("radius", "reject")), 2.0, "replay + the request retransmitted once");
    assert_eq!(after.delta(&before, &req("radius", "dropped")), 1.0);
    assert_eq!(after.delta(&before, "tessera_request_duration_seconds_count{protocol=\"rest\"}"), 7.0);
    assert_eq!(after.delta(&before, "tessera_request_duration_seconds_count{protocol=\"radius\"}"), 3.0);
    assert!(after.delta(&before, "tessera_request_duration_seconds_sum{protocol=\"radius\"}") > 0.0);
    assert_eq!(after.delta(&before, "tessera_radius_duplicates_total{answer=\"cached\"}"), 1.0);
    assert_eq!(after.delta(&before, "tessera_radius_dropped_total{reason=\"unknown_client\"}"), 1.0);
    assert_eq!(after.delta(&before, "tessera_lockouts_total"), 1.0);
    assert_eq!(after.get("tessera_backup_interval_seconds"), 0.0);
    assert!(after.get("process_start_time_seconds") > 1.7e9);

    // health: alive and ready
    let h: serde_json::Value = n.get("/healthz").await.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    let r = n.get("/readyz").await;
    assert_eq!(r.status(), 200);
    n.stop();
}

#[tokio::test]
async fn metrics_are_loopback_only_by_default_and_can_be_disabled() {
    let mut n = TestNode::new();
    n.start();
    let r = https_client(&n, Some("127.0.0.1")).get(n.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    n.stop();
    n.start_with(&[("TESSERA_METRICS_ENABLED", "false")]);
    let r = n.get("/metrics").await;
    assert_eq!(r.status(), 404);
    n.stop();
}

#[tokio::test]
async fn validate_without_the_required_api_key_is_counted_as_unauthorized() {
    let mut n = TestNode::new();
    n.start_with(&[("TESSERA_HTTP_VALIDATE_REQUIRES_API_KEY", "true")]);
    let before = scrape(&n).await;
    let r = n
        .client()
        .post(n.url("/api/v1/validate"))
        .json(&serde_json::json!({"username": "alice", "password": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let after = scrape(&n).await;
    assert_eq!(after.delta(&before, "tessera_requests_total{protocol=\"rest\",result=\"unauthorized\"}"), 1.0);
    assert_eq!(after.delta(&before, "tessera_requests_total{protocol=\"rest\",result=\"reject\"}"), 0.0);
    n.stop();
}

#[tokio::test]
async fn sighup_adds_a_config_radius_client_under_load_without_dropping_requests() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    let f = secret_file(&n, "radius.secret");
    n.ok(&["client", "add", "existing", "--address", "127.0.0.1", "--secret-file", &f]);
    let config = n.cwd().join("tessera.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").unwrap();
    n.start_with(&[("TESSERA_CONFIG", config.to_str().unwrap())]);
    let radius = n.listening("radius");

    // not yet a client: dropped
    let newcomer = UdpSocket::bind("127.0.0.2:0").unwrap();
    let probe = |seq: u64| access_request("nobody", "123456", seq as u8, seq);
    assert_eq!(exchange(&newcomer, &radius, &probe(1 << 50), Duration::from_millis(500)), None);

    let stop = Arc::new(AtomicBool::new(false));
    let loadgen = load(radius.clone(), 4, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[radius.client]]\nname = \"newcomer\"\naddress = \"127.0.0.2/32\"\nsecret_file = \"{f}\"\n\
         message_authenticator = \"require\"\n"
    ));
    std::fs::write(&config, &text).unwrap();
    n.signal("HUP");
    // the new client is answered once the reload is applied
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 1u64 << 51;
    loop {
        seq += 1;
        if exchange(&newcomer, &radius, &probe(seq), Duration::from_millis(300)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the [[radius.client]] added on SIGHUP is not answered");
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let (answered, lost) = loadgen.join().unwrap();
    assert!(answered >= 100, "load too small to mean anything: {answered}");
    assert!(
        lost.is_empty(),
        "{} requests of the existing client dropped around SIGHUP ({answered} answered)",
        lost.len()
    );
    assert!(n.is_running());
    for _ in 0..5 {
        seq += 1;
        assert_eq!(exchange(&newcomer, &radius, &probe(seq), Duration::from_secs(3)), Some(Code::AccessReject));
    }
    let m = scrape(&n).await;
    assert_eq!(m.get("tessera_config_reloads_total{result=\"ok\"}"), 1.0);
    assert_eq!(m.get("tessera_radius_clients"), 2.0);
    // the CLI will not add a database client under a config client's name
    let out = n.fail(
        &["client", "add", "newcomer", "--address", "127.0.0.9", "--secret-file", &f],
        &[("TESSERA_CONFIG", config.to_str().unwrap())],
        1,
    );
    assert!(out.contains("declared in the config file"), "{out}");
    // `client list` shows both kinds, and `config show` no secret
    let cfg_env = [("TESSERA_CONFIG", config.to_str().unwrap())];
    let listed = n.ok_env(&["client", "list"], &cfg_env);
    assert!(listed.contains("existing") && listed.contains("newcomer") && listed.contains("config file"), "{listed}");

    // a broken file: logged, the running configuration (and clients) kept
    std::fs::write(&config, "[radius\nthis is not toml").unwrap();
    n.signal("HUP");
    // a name clash with a database client: refused too
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrape(&n).await.get("tessera_config_reloads_total{result=\"error\"}") < 1.0 {
        assert!(Instant::now() < deadline, "the bad reload is not counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text.push_str(&format!(
        "\n[[radius.client]]\nname = \"existing\"\naddress = \"127.0.0.3\"\nsecret_file = \"{f}\"\n"
    ));
    std::fs::write(&config, &text).unwrap();
    n.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrape(&n).await.get("tessera_config_reloads_total{result=\"error\"}") < 2.0 {
        assert!(Instant::now() < deadline, "the clashing reload is not refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seq += 1;
    assert_eq!(exchange(&newcomer, &radius, &probe(seq), Duration::from_secs(3)), Some(Code::AccessReject));
    let m = scrape(&n).await;
    assert_eq!(m.get("tessera_radius_clients"), 2.0);
    assert_eq!(m.get("tessera_config_reloads_total{result=\"ok\"}"), 1.0);
    // a change that needs a restart is reported, not applied
    std::fs::write(&config, "[http]\nmax_connections = 7\n").unwrap();
    n.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while scrape(&n).await.get("tessera_config_restart_pending") < 1.0 {
        assert!(Instant::now() < deadline, "restart-only change not reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // …and the newcomer, no longer in the file, is gone
    seq += 1;
    assert_eq!(exchange(&newcomer, &radius, &probe(seq), Duration::from_millis(500)), None);
    n.stop();
}

#[tokio::test]
async fn sigterm_answers_every_request_sent_before_it_and_exits_zero() {
    let mut n = TestNode::new();
    n.ok(&["init"]);
    let f = secret_file(&n, "radius.secret");
    n.ok(&["client", "add", "lb", "--address", "127.0.0.1", "--secret-file", &f]);
    n.start();
    let radius = n.listening("radius");
    let stop = Arc::new(AtomicBool::new(false));
    let loadgen = load(radius.clone(), 4, stop.clone());
    std::thread::sleep(Duration::from_millis(1000));

    // A burst that is still queued in the server's socket when SIGTERM
    // arrives: the server is paused (SIGSTOP) while the burst and the
    // signal are sent, then resumed, so it sees queued requests and the
    // stop request at once.
    const BURST: u64 = 100;
    let burst = UdpSocket::bind("127.0.0.1:0").unwrap();
    n.signal("STOP");
    for i in 0..BURST {
        burst.send_to(&access_request("nobody", "654321", i as u8, (1 << 60) + i), &radius).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let signalled = Instant::now();
    n.signal("TERM");
    n.signal("CONT");
    let status = n.terminate(Duration::from_secs(15));
    let exited_after = signalled.elapsed();
    let mut answered = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 4096];
    burst.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while answered.len() < BURST as usize && Instant::now() < deadline {
        if let Ok((len, _)) = burst.recv_from(&mut buf) {
            answered.insert(Packet::decode(&buf[..len]).unwrap().identifier);
        }
    }
    let (closed_loop_answered, closed_loop_lost) = loadgen.join().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(exited_after < Duration::from_secs(10), "took {exited_after:?} to stop");
    assert_eq!(answered.len(), BURST as usize, "requests sent before SIGTERM went unanswered");
    assert!(closed_loop_answered > 0);
    // (a request the closed loop sent after the signal may go unanswered)
    let lost_before: Vec<_> = closed_loop_lost.iter().filter(|sent| **sent < signalled).collect();
    assert!(lost_before.is_empty(), "{} in-flight requests sent before SIGTERM were not answered", lost_before.len());
}

/// The Debian package's /etc/tessera/tessera.toml is a valid config with
/// the packaged paths (scripts/deb-test.sh then starts a server from it).
#[test]
fn packaged_config_file_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/tessera.toml");
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TESSERA_")) {
        c.env_remove(k);
    }
    let out = c.args(["--config", file, "config", "show"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    assert_eq!(shown["server"]["data_dir"].as_str(), Some("/var/lib/tessera/data"));
    assert_eq!(shown["master_key"]["file"].as_str(), Some("/var/lib/tessera/tessera.key"));
    assert_eq!(shown["metrics"]["enabled"].as_bool(), Some(true));
}
