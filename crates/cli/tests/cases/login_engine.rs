//! Issue 14 (the login engine), acceptance through the binary.
//!
//! The embedded store's login path is to keep login state in memory, write
//! a group-committed, fdatasync'ed journal, fold it into SQLite in the
//! background and replay it at start-up. Whatever the engine, these must
//! hold, and they hold on the writer-thread path of today:
//!
//! * kill -9 under load, 20 times at random moments (REST and RADIUS, HOTP
//!   and TOTP, right, wrong and replayed codes): every code a client saw
//!   accepted is refused after the restart and the refusal is not counted;
//!   every failure a client saw acknowledged is still counted, and none it
//!   never sent; token floors lie past every accepted code and no further
//!   than the codes sent; a graceful stop leaves the same state for the
//!   CLI; the audit chain verifies and holds every answered attempt;
//! * 50 wrong codes at once lock a user after exactly the threshold (REST,
//!   RADIUS, both at once), exactly that many are counted, and the lock
//!   survives kill -9;
//! * one code sent 100 times at once is accepted once (REST, RADIUS, both
//!   at once), a RADIUS retransmission gets the cached answer, and the code
//!   stays used across kill -9.
//!
//! Random choices come from a seed printed at the start of each test;
//! `LOGIN_ENGINE_SEED=<seed>` repeats them (the scheduling of the server
//! and the clients cannot be repeated).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_radius::{Attribute, Code, Packet, attr, hide_password, verify_response};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::support::{TestNode, hotp_code, totp_now};

const RADIUS_SECRET: &str = "login-engine-radius-secret";

// ------------------------------------------------------------ randomness

/// splitmix64: small, seedable, good enough to pick delays and codes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes16(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_be_bytes());
        b[8..].copy_from_slice(&self.next().to_be_bytes());
        b
    }

    /// A 160-bit base32 secret (32 characters, no padding).
    fn secret(&mut self) -> String {
        const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        (0..32).map(|_| B32[self.below(32) as usize] as char).collect()
    }
}

/// The test's seed: `LOGIN_ENGINE_SEED` or the clock; printed either way.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("LOGIN_ENGINE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        #[allow(clippy::disallowed_methods)]
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
    });
    eprintln!("{test}: seed {seed} (LOGIN_ENGINE_SEED={seed} repeats the random choices)");
    seed
}

fn unix_now() -> i64 {
    #[allow(clippy::disallowed_methods)]
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    t.as_secs() as i64
}

/// A 6-digit code that is none of `secret`'s codes for counters (or TOTP
/// steps) within `spread` of `center`: wrong for the login window and for
/// the replay window alike, so the server must count it.
fn wrong_code(secret: &str, center: i64, spread: i64, rng: &mut Rng) -> String {
    let near: Vec<String> =
        (center - spread..=center + spread).filter(|c| *c >= 0).map(|c| hotp_code(secret, c as u64)).collect();
    loop {
        let code = format!("{:06}", rng.below(1_000_000));
        if !near.contains(&code) {
            return code;
        }
    }
}

/// A HOTP secret whose codes for counters 0…40 differ from each other, so
/// a replayed early code cannot also be the code of a counter in the
/// window ahead (six digits collide about once in a million pairs).
fn clean_hotp_secret(rng: &mut Rng) -> String {
    loop {
        let secret = rng.secret();
        let mut codes: Vec<String> = (0..=40).map(|c| hotp_code(&secret, c)).collect();
        codes.sort_unstable();
        codes.dedup();
        if codes.len() == 41 {
            return secret;
        }
    }
}

// ------------------------------------------------------------ the node and its doors

/// An initialised node (not started) with a RADIUS client for 127.0.0.1,
/// and an API key for reading what the server reports.
fn node() -> (TestNode, String) {
    let n = TestNode::new();
    n.ok(&["init"]);
    let f = n.cwd().join("radius.secret");
    std::fs::write(&f, format!("{RADIUS_SECRET}\n")).unwrap();
    n.ok(&["client", "add", "loopback", "--address", "127.0.0.1", "--secret-file", f.to_str().unwrap()]);
    let key = n.ok(&["api-key", "create", "engine-tests"]).trim().to_string();
    assert!(key.starts_with("tsk_"), "{key}");
    (n, key)
}

fn add_user(n: &TestNode, name: &str, secret: &str, kind: Kind) {
    n.ok(&["user", "add", name]);
    let kind = match kind {
        Kind::Hotp => "hotp",
        Kind::Totp => "totp",
    };
    n.ok(&["token", "add", name, "--secret", secret, "--type", kind]);
}

/// An HTTPS client of its own (its own connection pool) trusting `n`.
fn https_client(n: &TestNode) -> reqwest::Client {
    let pem = std::fs::read(n.data().join("tls/cert.pem")).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// What a client heard back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Accept,
    Reject,
    /// Anything else (a challenge, an unexpected body): always wrong here.
    Other(String),
}

/// One POST /api/v1/validate; `Err` when no decision came back.
async fn rest_attempt(c: &reqwest::Client, url: &str, user: &str, code: &str) -> Result<Answer, String> {
    let r =
        c.post(url).json(&json!({"username": user, "password": code})).send().await.map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let body: Value = r.json().await.map_err(|e| format!("status {status}, body unreadable: {e:?}"))?;
    if status != 200 {
        return Err(format!("status {status}: {body}"));
    }
    Ok(match body["result"].as_str() {
        Some("accept") => Answer::Accept,
        Some("reject") => Answer::Reject,
        _ => Answer::Other(body.to_string()),
    })
}

/// A PAP Access-Request with Message-Authenticator.
fn access_request(user: &str, password: &str, identifier: u8, authenticator: [u8; 16]) -> Vec<u8> {
    let hidden = hide_password(RADIUS_SECRET.as_bytes(), &authenticator, password.as_bytes()).unwrap();
    Packet {
        code: Code::AccessRequest,
        identifier,
        authenticator,
        attributes: vec![
            Attribute { typ: attr::USER_NAME, value: user.as_bytes().to_vec() },
            Attribute { typ: attr::USER_PASSWORD, value: hidden },
        ],
    }
    .encode_request(RADIUS_SECRET.as_bytes(), true)
    .unwrap()
}

/// The answer in `datagram` if it is the server's signed reply to the
/// request with `identifier` and `authenticator`.
fn reply_to(datagram: &[u8], identifier: u8, authenticator: &[u8; 16]) -> Option<Answer> {
    let p = Packet::decode(datagram).ok()?;
    if p.identifier != identifier || verify_response(datagram, authenticator, RADIUS_SECRET.as_bytes()).is_err() {
        return None;
    }
    Some(match p.code {
        Code::AccessAccept => Answer::Accept,
        Code::AccessReject => Answer::Reject,
        other => Answer::Other(format!("{other:?}")),
    })
}

/// Where the server is in a kill: load runs while `Running`; `Killing` is
/// set just before SIGKILL (a REST error from then on is the kill's doing)
/// and `Dead` once the process is reaped (a RADIUS reply still missing
/// then will never come).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Killing,
    Dead,
}

/// One Access-Request for `user` from `sock`; `Err` when no reply came
/// within `limit` or before the server died.
#[allow(clippy::too_many_arguments)]
async fn radius_attempt(
    sock: &UdpSocket,
    server: &str,
    user: &str,
    code: &str,
    identifier: u8,
    authenticator: [u8; 16],
    phase: &mut watch::Receiver<Phase>,
    limit: Duration,
) -> Result<Answer, String> {
    let request = access_request(user, code, identifier, authenticator);
    sock.send_to(&request, server).await.map_err(|e| format!("send: {e}"))?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let Ok((len, _)) = r
                    && let Some(a) = reply_to(&buf[..len], identifier, &authenticator)
                {
                    return Ok(a);
                }
            }
            _ = phase.wait_for(|p| *p == Phase::Dead) => {
                // Whatever the server sent before it died is queued here.
                while let Ok((len, _)) = sock.try_recv_from(&mut buf) {
                    if let Some(a) = reply_to(&buf[..len], identifier, &authenticator) {
                        return Ok(a);
                    }
                }
                return Err("the server was killed".into());
            }
            _ = tokio::time::sleep_until(deadline) => return Err(format!("no RADIUS reply within {limit:?}")),
        }
    }
}

/// What `/api/v1/users/NAME` reports: failures, status, first token's floor.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
    radius: String,
}

impl Api {
    fn of(n: &TestNode, key: &str) -> Api {
        Api { client: https_client(n), base: n.url(""), key: key.to_string(), radius: n.listening("radius") }
    }

    async fn user(&self, name: &str) -> Result<(u32, String, i64), String> {
        let r = self
            .client
            .get(format!("{}/api/v1/users/{name}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| format!("GET user {name}: {e:?}"))?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.map_err(|e| format!("GET user {name}: {e:?}"))?;
        if status != 200 {
            return Err(format!("GET user {name}: {status} {v}"));
        }
        Ok((
            v["user"]["failures"].as_u64().ok_or_else(|| format!("no failures: {v}"))? as u32,
            v["user"]["status"].as_str().unwrap_or_default().to_string(),
            v["tokens"][0]["counter"].as_i64().ok_or_else(|| format!("no token counter: {v}"))?,
        ))
    }

    async fn rest(&self, user: &str, code: &str) -> Result<Answer, String> {
        rest_attempt(&self.client, &format!("{}/api/v1/validate", self.base), user, code).await
    }
}

/// `audit list --action validate --target USER` (newest first).
fn audit_validate(n: &TestNode, user: &str) -> Vec<Value> {
    let out = n.ok(&["audit", "list", "--action", "validate", "--target", user, "--limit", "10000", "--json"]);
    match serde_json::from_str::<Value>(&out).unwrap() {
        Value::Array(v) => v,
        other => panic!("audit list: {other}"),
    }
}

fn reasons(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["reason"].as_str().unwrap_or_default().to_string()).collect()
}

/// The N of a counted failure's audit reason (`wrong_code; failure N…`).
fn failure_number(reason: &str) -> Option<u32> {
    let rest = reason.split("failure ").nth(1)?;
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

// ------------------------------------------------------------ 1. kill -9 under load

/// Kills under load.
const ROUNDS: usize = 20;
/// Lockout threshold during the kills: above any count a well-behaved
/// server reaches (see [`Sim::wrong_cap`]), so nobody is ever locked and a
/// failure count that grew on its own (a journal applied twice) shows as a
/// lock as well as a count out of bounds.
const KILL_THRESHOLD: u32 = 10;
/// `hotp_look_ahead` during the kills. Codes behind a HOTP floor by up to
/// this + 1 are replays (not counted); every code accepted in one round is
/// re-sent after the restart, so a round sends at most this many valid
/// HOTP codes per user ([`MAX_VALID_PER_ROUND`]).
const LOOK_AHEAD: i64 = 100;
const MAX_VALID_PER_ROUND: u32 = 90;
/// The whole test's budget, so a server that slows down ends it with a
/// message rather than a hang.
const KILL_TEST_BUDGET: Duration = Duration::from_secs(150);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Rest,
    Radius,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hotp,
    Totp,
}

/// What an attempt was meant to be.
#[derive(Debug, Clone, Copy)]
enum Try {
    /// The code of this HOTP counter or TOTP step, never sent before.
    Valid(i64),
    /// A code outside every window.
    Wrong,
    /// The last code this client saw accepted.
    Replay,
}

/// One simulated user, logging in through one door, one attempt at a
/// time, and everything its client has heard.
#[derive(Debug)]
struct Sim {
    name: String,
    secret: String,
    kind: Kind,
    door: Door,
    /// The most wrong codes sent since the last acknowledged accept (0:
    /// this user never sends one). Below [`KILL_THRESHOLD`]: after a valid
    /// code went unanswered the client sends valid codes only until one is
    /// acknowledged, so the server's count stays within the cap.
    wrong_cap: u32,
    /// HOTP: the next counter to send. TOTP: the lowest step not yet sent.
    next: i64,
    valid_this_round: u32,
    /// Highest counter/step sent with a valid code, answered or not.
    max_sent: Option<i64>,
    /// Highest counter/step the client saw accepted.
    max_accepted: Option<i64>,
    /// Codes seen accepted since the last restart (code, counter/step).
    accepted_this_round: Vec<(String, i64)>,
    /// The code (and counter/step) of the last valid attempt, if the
    /// client saw it accepted.
    last_accept: Option<(String, i64)>,
    /// The last valid attempt went unanswered (it may or may not have
    /// reset the failure count).
    last_valid_unknown: bool,
    /// The server's failure count is at least this: counted rejects the
    /// client saw since the last valid code that may have reset the count.
    low: u32,
    /// … and at most this: wrong codes sent (answered or not) since the
    /// last accept the client saw.
    high: u32,
    sent: u64,
    answered: u64,
    valid_sent: u64,
    accepted: u64,
    /// What the server reported at the last check: (failures, floor).
    reported: Option<(u32, i64)>,
    /// Replays not sent (and TOTP steps skipped) because the code is also
    /// that of another counter or step in the server's window (six digits
    /// collide; with a look-ahead of 100 about once in 10,000 replays): the
    /// server would rightly accept it.
    collisions: u64,
    /// The codes computed so far, by counter or step.
    codes: std::collections::HashMap<i64, String>,
    violations: Vec<String>,
}

impl Sim {
    fn new(name: &str, secret: String, kind: Kind, door: Door, wrong_cap: u32) -> Sim {
        assert!(wrong_cap < KILL_THRESHOLD);
        Sim {
            name: name.into(),
            secret,
            kind,
            door,
            wrong_cap,
            next: 0,
            valid_this_round: 0,
            max_sent: None,
            max_accepted: None,
            accepted_this_round: Vec::new(),
            last_accept: None,
            last_valid_unknown: false,
            low: 0,
            high: 0,
            sent: 0,
            answered: 0,
            valid_sent: 0,
            accepted: 0,
            reported: None,
            collisions: 0,
            codes: std::collections::HashMap::new(),
            violations: Vec::new(),
        }
    }

    /// The next attempt, or `None` to wait (a TOTP user whose step is used
    /// and who may send no wrong code now).
    fn choose(&mut self, rng: &mut Rng) -> Option<(Try, String)> {
        let now_step = unix_now() / 30;
        let valid_ok = match self.kind {
            Kind::Hotp => self.valid_this_round < MAX_VALID_PER_ROUND,
            Kind::Totp => now_step >= self.next,
        };
        let wrong_ok = self.wrong_cap > 0 && !self.last_valid_unknown && self.high < self.wrong_cap;
        let roll = rng.below(100);
        if roll < 10
            && let Some((code, c)) = self.last_accept.clone()
        {
            if !self.collides(&code, c, now_step) {
                return Some((Try::Replay, code));
            }
            self.collisions += 1;
        }
        let center = match self.kind {
            Kind::Hotp => self.next,
            Kind::Totp => now_step,
        };
        if wrong_ok && (roll < 55 || !valid_ok) {
            return Some((Try::Wrong, self.wrong(center, rng)));
        }
        if !valid_ok {
            return None;
        }
        let code = self.code(center);
        // A TOTP code that is also an unused neighbour's would match that
        // step: skip this step. (HOTP: the window starts at `next`, the
        // server matches the lowest counter.)
        if self.kind == Kind::Totp && self.collides(&code, center, now_step) {
            self.collisions += 1;
            self.next = center + 1;
            return None;
        }
        Some((Try::Valid(center), code))
    }

    fn code(&mut self, c: i64) -> String {
        let secret = &self.secret;
        self.codes.entry(c).or_insert_with(|| hotp_code(secret, c as u64)).clone()
    }

    /// Whether `code` (of counter/step `c`) is also the code of another
    /// counter or step the server may accept now: HOTP, from `c` up to
    /// past the look-ahead of the next counter; TOTP, around `now_step`
    /// (skew and the largest drift).
    fn collides(&mut self, code: &str, c: i64, now_step: i64) -> bool {
        let range = match self.kind {
            Kind::Hotp => c + 1..=self.next + LOOK_AHEAD + 1,
            Kind::Totp => now_step - 15..=now_step + 15,
        };
        range.filter(|o| *o != c && *o >= 0).any(|o| self.code(o) == code)
    }

    /// A code none of the counters (or steps) within `LOOK_AHEAD + 5` of
    /// `center` has: wrong for the login window and the replay window alike.
    fn wrong(&mut self, center: i64, rng: &mut Rng) -> String {
        let spread = LOOK_AHEAD + 5;
        loop {
            let code = format!("{:06}", rng.below(1_000_000));
            if !(center - spread..=center + spread).filter(|c| *c >= 0).any(|c| self.code(c) == code) {
                return code;
            }
        }
    }

    fn sending(&mut self, t: Try) {
        self.sent += 1;
        if let Try::Valid(c) = t {
            self.next = c + 1;
            self.max_sent = Some(c);
            self.valid_sent += 1;
            self.valid_this_round += 1;
        }
    }

    fn violation(&mut self, round: usize, what: String) {
        self.violations.push(format!("round {round}: {} ({:?} {:?}): {what}", self.name, self.kind, self.door));
    }

    fn heard(&mut self, round: usize, t: Try, code: String, answer: Result<Answer, String>, phase: Phase) {
        match answer {
            Ok(a) => {
                self.answered += 1;
                match (t, a) {
                    (Try::Valid(c), Answer::Accept) => {
                        self.accepted += 1;
                        self.max_accepted = Some(c);
                        self.accepted_this_round.push((code.clone(), c));
                        self.last_accept = Some((code, c));
                        self.last_valid_unknown = false;
                        (self.low, self.high) = (0, 0);
                    }
                    (Try::Wrong, Answer::Reject) => {
                        self.low += 1;
                        self.high += 1;
                    }
                    (Try::Replay, Answer::Reject) => {}
                    (t, a) => self.violation(round, format!("{t:?} code {code} got {a:?}")),
                }
            }
            Err(why) => {
                if phase == Phase::Running {
                    self.violation(round, format!("{t:?} code {code}: no answer while the server ran: {why}"));
                }
                match t {
                    Try::Valid(_) => {
                        self.last_valid_unknown = true;
                        self.last_accept = None;
                        self.low = 0;
                    }
                    Try::Wrong => self.high += 1,
                    Try::Replay => {}
                }
            }
        }
    }
}

/// Logs in as `sim` one attempt at a time until the server is being killed.
async fn drive(
    mut sim: Sim,
    rest: reqwest::Client,
    url: String,
    radius: String,
    mut phase: watch::Receiver<Phase>,
    mut rng: Rng,
    round: usize,
) -> Sim {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut id = rng.below(256) as u8;
    let started = Instant::now();
    while *phase.borrow() == Phase::Running && started.elapsed() < Duration::from_secs(10) {
        let Some((t, code)) = sim.choose(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        sim.sending(t);
        let answer = match sim.door {
            Door::Rest => rest_attempt(&rest, &url, &sim.name, &code).await,
            Door::Radius => {
                id = id.wrapping_add(1);
                let auth = rng.bytes16();
                radius_attempt(&sock, &radius, &sim.name, &code, id, auth, &mut phase, Duration::from_secs(5)).await
            }
        };
        let p = *phase.borrow();
        sim.heard(round, t, code, answer, p);
    }
    sim
}

/// After a restart, with no load: what the server reports for `sim` must
/// agree with everything its client heard; every code accepted in the
/// round is refused (through both doors for the newest) and not counted.
async fn check(mut sim: Sim, api: Api, mut rng: Rng, round: usize) -> Sim {
    let (f, status, floor) = match api.user(&sim.name).await {
        Ok(x) => x,
        Err(e) => {
            sim.violation(round, e);
            return sim;
        }
    };
    if status != "active" {
        sim.violation(round, format!("status {status} (nobody should be locked: {f} failure(s))"));
    }
    if f < sim.low || f > sim.high {
        sim.violation(
            round,
            format!(
                "the server counts {f} failure(s); its client saw {} counted and sent {} wrong code(s) since the \
                 last success",
                sim.low, sim.high
            ),
        );
    }
    if let Some(a) = sim.max_accepted
        && floor <= a
    {
        sim.violation(round, format!("token floor {floor}: the code of {a}, seen accepted, would be accepted again"));
    }
    if let Some(m) = sim.max_sent
        && floor > m + 1
    {
        sim.violation(round, format!("token floor {floor} is past every code sent (the last was {m})"));
    }
    (sim.low, sim.high, sim.last_valid_unknown) = (f, f, false);
    if sim.kind == Kind::Hotp && floor <= sim.next {
        // A code that went unanswered and was not applied is unused: the
        // next login may use its counter. The window then starts at `next`.
        sim.next = floor;
    }
    sim.reported = Some((f, floor));

    let (_keep_alive, mut running) = watch::channel(Phase::Running);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut id = rng.below(256) as u8;
    let accepted = std::mem::take(&mut sim.accepted_this_round);
    let mut replays: Vec<(Door, &(String, i64))> = accepted.iter().rev().map(|a| (sim.door, a)).collect();
    if let Some(newest) = accepted.last() {
        let other = if sim.door == Door::Rest { Door::Radius } else { Door::Rest };
        replays.push((other, newest));
    }
    for (door, (code, c)) in replays {
        if sim.kind == Kind::Hotp && floor - c > LOOK_AHEAD + 1 {
            sim.violation(round, format!("test bug: code of {c} is outside the replay window of floor {floor}"));
        }
        // (`next` is at least the floor: the window checked covers the server's)
        if sim.collides(code, *c, unix_now() / 30) {
            sim.collisions += 1;
            continue;
        }
        sim.sent += 1;
        let answer = match door {
            Door::Rest => api.rest(&sim.name, code).await,
            Door::Radius => {
                id = id.wrapping_add(1);
                let auth = rng.bytes16();
                radius_attempt(&sock, &api.radius, &sim.name, code, id, auth, &mut running, Duration::from_secs(5))
                    .await
            }
        };
        if answer.is_ok() {
            sim.answered += 1;
        }
        if answer != Ok(Answer::Reject) {
            sim.violation(
                round,
                format!("code {code} (of {c}), accepted before kill -9, sent again over {door:?}: {answer:?}"),
            );
        }
    }
    match api.user(&sim.name).await {
        Ok((f2, _, floor2)) if (f2, floor2) == (f, floor) => {}
        Ok((f2, _, floor2)) => {
            sim.violation(round, format!("replays changed the state: failures {f} → {f2}, floor {floor} → {floor2}"))
        }
        Err(e) => sim.violation(round, e),
    }
    sim.valid_this_round = 0;
    sim
}

/// Item 1 of issue 14: SIGKILL at 20 random moments under load, each
/// 50–400 ms after the restart before it, and nothing a client heard is
/// undone (see the module documentation for what is checked).
#[tokio::test]
async fn kill9_twenty_times_under_load_loses_no_used_code_and_no_counted_failure() {
    let test_start = Instant::now();
    let seed = seed("kill9_twenty_times_under_load");
    let mut rng = Rng::new(seed);
    let (mut n, key) = node();
    n.ok(&["policy", "set", &format!("lockout_threshold={KILL_THRESHOLD}"), &format!("hotp_look_ahead={LOOK_AHEAD}")]);
    let mut sims = vec![
        // REST
        Sim::new("rest-hotp-a", rng.secret(), Kind::Hotp, Door::Rest, 0),
        Sim::new("rest-hotp-b", rng.secret(), Kind::Hotp, Door::Rest, 0),
        Sim::new("rest-hotp-wrong", rng.secret(), Kind::Hotp, Door::Rest, 7),
        Sim::new("rest-totp-wrong", rng.secret(), Kind::Totp, Door::Rest, 7),
        // RADIUS
        Sim::new("radius-hotp-a", rng.secret(), Kind::Hotp, Door::Radius, 0),
        Sim::new("radius-hotp-b", rng.secret(), Kind::Hotp, Door::Radius, 0),
        Sim::new("radius-hotp-wrong", rng.secret(), Kind::Hotp, Door::Radius, 7),
        Sim::new("radius-totp", rng.secret(), Kind::Totp, Door::Radius, 0),
    ];
    for s in &sims {
        add_user(&n, &s.name, &s.secret, s.kind);
    }
    n.start();
    let mut kills = Vec::new();
    // Requests left unanswered by each kill (the load was real).
    let (mut in_flight, mut unanswered) = (Vec::new(), 0);
    for round in 0..ROUNDS {
        assert!(
            test_start.elapsed() < KILL_TEST_BUDGET,
            "seed {seed}: only {round} of {ROUNDS} rounds within {KILL_TEST_BUDGET:?}"
        );
        let (tx, rx) = watch::channel(Phase::Running);
        let client = https_client(&n);
        let (url, radius) = (n.url("/api/v1/validate"), n.listening("radius"));
        let drivers: Vec<_> = sims
            .drain(..)
            .map(|s| {
                let (c, u, r, p, g) = (client.clone(), url.clone(), radius.clone(), rx.clone(), Rng::new(rng.next()));
                tokio::spawn(drive(s, c, u, r, p, g, round))
            })
            .collect();
        let delay = 50 + rng.below(351);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        tx.send_replace(Phase::Killing);
        n.kill9();
        tx.send_replace(Phase::Dead);
        kills.push(delay);
        for d in drivers {
            sims.push(
                tokio::time::timeout(Duration::from_secs(20), d).await.expect("a client stuck after the kill").unwrap(),
            );
        }
        let now_unanswered: u64 = sims.iter().map(|s| s.sent - s.answered).sum();
        in_flight.push(now_unanswered - unanswered);
        unanswered = now_unanswered;
        n.restart_same_ports();
        let api = Api::of(&n, &key);
        let checks: Vec<_> =
            sims.drain(..).map(|s| tokio::spawn(check(s, api.clone(), Rng::new(rng.next()), round))).collect();
        for c in checks {
            sims.push(tokio::time::timeout(Duration::from_secs(60), c).await.expect("a check stuck").unwrap());
        }
        let problems: Vec<&String> = sims.iter().flat_map(|s| &s.violations).collect();
        assert!(
            problems.is_empty(),
            "seed {seed}, round {round} (killed {delay} ms into the load):\n{}",
            problems.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
    // A graceful stop leaves what the server last reported for the CLI.
    n.stop();
    for s in &sims {
        let show: Value = serde_json::from_str(&n.ok(&["user", "show", &s.name, "--json"])).unwrap();
        let (f, floor) = s.reported.unwrap();
        assert_eq!(show["user"]["failures"].as_u64(), Some(u64::from(f)), "{}: {show}", s.name);
        assert_eq!(show["tokens"][0]["counter"].as_i64(), Some(floor), "{}: {show}", s.name);
    }
    let verify: Value = serde_json::from_str(&n.ok(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    // Every answered attempt is audited (the answer comes once it is
    // durable); no attempt is audited that was never sent.
    let collisions: u64 = sims.iter().map(|s| s.collisions).sum();
    let mut totals = (0, 0, 0);
    for s in &sims {
        let records = audit_validate(&n, &s.name);
        let accepts = records.iter().filter(|r| r["result"] == "accept").count() as u64;
        let len = records.len() as u64;
        assert!(
            s.answered <= len && len <= s.sent,
            "{}: {len} audit record(s) for {} answered of {} sent attempts",
            s.name,
            s.answered,
            s.sent
        );
        assert!(
            s.accepted <= accepts && accepts <= s.valid_sent,
            "{}: {accepts} accepts audited, {} seen, {} valid codes sent",
            s.name,
            s.accepted,
            s.valid_sent
        );
        totals = (totals.0 + s.sent, totals.1 + s.answered, totals.2 + s.accepted);
    }
    eprintln!(
        "seed {seed}: {ROUNDS} kills after {kills:?} ms, with {in_flight:?} requests in flight; {} attempts sent, \
         {} answered, {} accepted, {collisions} replay(s) skipped as another code's twin; {:?}",
        totals.0,
        totals.1,
        totals.2,
        test_start.elapsed()
    );
    // Not a test of speed: only that the kills met a real load.
    assert!(totals.1 >= 500, "seed {seed}: only {} answers in {ROUNDS} rounds", totals.1);
    let mid_request = in_flight.iter().filter(|n| **n > 0).count();
    assert!(mid_request >= ROUNDS / 2, "seed {seed}: only {mid_request} kills met a request in flight: {in_flight:?}");
}

// ------------------------------------------------------------ bursts

/// One Access-Request of a burst and the answer it got.
struct Sent {
    identifier: u8,
    authenticator: [u8; 16],
    bytes: Vec<u8>,
    answer: Option<Answer>,
}

/// How long a burst may take to be answered.
const BURST_LIMIT: Duration = Duration::from_secs(30);

/// Sends the `rest` codes over REST, each from its own client connected
/// beforehand, and the `radius` codes as Access-Requests from one socket
/// (distinct identifiers and authenticators: no retransmissions), all
/// released at once. The REST answers in order, the socket, and the
/// RADIUS requests with their answers (`None`: none within the limit).
async fn burst(
    n: &TestNode,
    user: &str,
    rest: &[String],
    radius: &[String],
    rng: &mut Rng,
) -> (Vec<Result<Answer, String>>, UdpSocket, Vec<Sent>) {
    assert!(radius.len() <= 256, "identifiers must differ");
    let clients: Vec<reqwest::Client> = rest.iter().map(|_| https_client(n)).collect();
    let warm: Vec<_> = clients
        .iter()
        .map(|c| {
            let (c, url) = (c.clone(), n.url("/healthz"));
            tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for w in warm {
        assert_eq!(w.await.unwrap().unwrap(), 200, "warming up a connection");
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(rest.len() + 1));
    let url = n.url("/api/v1/validate");
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(rest)
        .map(|(c, code)| {
            let (barrier, url, user, code) = (barrier.clone(), url.clone(), user.to_string(), code.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                rest_attempt(&c, &url, &user, &code).await
            })
        })
        .collect();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = n.listening("radius");
    let first = rng.below(256) as u8;
    let mut sent: Vec<Sent> = radius
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let identifier = first.wrapping_add(i as u8);
            let authenticator = rng.bytes16();
            let bytes = access_request(user, code, identifier, authenticator);
            Sent { identifier, authenticator, bytes, answer: None }
        })
        .collect();
    barrier.wait().await;
    for s in &sent {
        sock.send_to(&s.bytes, &server).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + BURST_LIMIT;
    let mut buf = [0u8; 4096];
    while sent.iter().any(|s| s.answer.is_none()) {
        let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await else { break };
        if let Some((s, a)) = sent
            .iter_mut()
            .filter(|s| s.answer.is_none())
            .find_map(|s| reply_to(&buf[..len], s.identifier, &s.authenticator).map(|a| (s, a)))
        {
            s.answer = Some(a);
        }
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(tokio::time::timeout_at(deadline, t).await.expect("a REST request of the burst hung").unwrap());
    }
    (answers, sock, sent)
}

/// Sends `bytes` again from `sock` and waits (bounded) for the reply.
async fn retransmit(sock: &UdpSocket, server: &str, s: &Sent) -> Option<Answer> {
    sock.send_to(&s.bytes, server).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    loop {
        let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await else { return None };
        if let Some(a) = reply_to(&buf[..len], s.identifier, &s.authenticator) {
            return Some(a);
        }
    }
}

/// One Access-Request from a fresh socket; bounded.
async fn radius_once(n: &TestNode, user: &str, code: &str, rng: &mut Rng) -> Result<Answer, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (_keep, mut running) = watch::channel(Phase::Running);
    let (id, auth) = (rng.below(256) as u8, rng.bytes16());
    radius_attempt(&sock, &n.listening("radius"), user, code, id, auth, &mut running, Duration::from_secs(5)).await
}

// ------------------------------------------------------------ 2. exact lockout

/// Not the default (5), so a count that only happens to match the
/// default shows.
const LOCK_THRESHOLD: u32 = 7;

/// Replays a user's `validate` records in the log's order (oldest first)
/// against the lockout rules: each counted failure is one more than the
/// count since the last accept, the one reaching the threshold locks,
/// nothing is accepted or counted once locked, and only then is an attempt
/// refused as locked. The failure count and whether the user ends locked.
fn audit_walk(records: &[Value], threshold: u32) -> Result<(u32, bool), String> {
    let mut ordered: Vec<&Value> = records.iter().collect();
    ordered.sort_by_key(|r| r["id"].as_i64().unwrap_or_default());
    let (mut failures, mut locked) = (0, false);
    for r in ordered {
        let reason = r["reason"].as_str().unwrap_or_default();
        let at = format!("record {} ({} {reason}) after {failures} failure(s), locked: {locked}", r["id"], r["result"]);
        match (r["result"].as_str(), failure_number(reason)) {
            (Some("accept"), _) if !locked => failures = 0,
            (Some("reject"), None) if reason == "locked" && locked => {}
            (Some("reject"), None) if reason == "replayed_code" && !locked => {}
            (Some("reject"), Some(n)) if !locked && n == failures + 1 => {
                failures = n;
                locked = reason.ends_with("now locked");
                if locked != (n >= threshold) {
                    return Err(format!("{at}: the lock must come at failure {threshold}"));
                }
            }
            _ => return Err(format!("{at}: out of order")),
        }
    }
    Ok((failures, locked))
}

/// The user is locked after exactly [`LOCK_THRESHOLD`] failures, the
/// server says so, and the audit log counted failures 1…threshold once
/// each (the last one locking) and refused the other `total - threshold`
/// as locked.
async fn assert_locked_exactly(n: &TestNode, api: &Api, user: &str, total: usize, seed: u64) {
    let (failures, status, _) = api.user(user).await.unwrap();
    assert_eq!((status.as_str(), failures), ("locked", LOCK_THRESHOLD), "seed {seed}: {user}");
    let records = audit_validate(n, user);
    assert_eq!(audit_walk(&records, LOCK_THRESHOLD), Ok((LOCK_THRESHOLD, true)), "seed {seed}: {user}: {records:?}");
    let reasons = reasons(&records);
    assert_eq!(reasons.len(), total, "seed {seed}: {user}: one decision per request: {reasons:?}");
    let mut counted: Vec<u32> = reasons.iter().filter_map(|r| failure_number(r)).collect();
    counted.sort_unstable();
    assert_eq!(counted, (1..=LOCK_THRESHOLD).collect::<Vec<_>>(), "seed {seed}: {user}: {reasons:?}");
    let locking: Vec<&String> = reasons.iter().filter(|r| r.contains("now locked")).collect();
    assert_eq!(locking.len(), 1, "seed {seed}: {user}: {reasons:?}");
    assert_eq!(failure_number(locking[0]), Some(LOCK_THRESHOLD), "seed {seed}: {user}: {reasons:?}");
    let locked = reasons.iter().filter(|r| *r == "locked").count();
    assert_eq!(locked, total - LOCK_THRESHOLD as usize, "seed {seed}: {user}: {reasons:?}");
}

/// Item 2 of issue 14: 50 wrong codes at once for one user, over REST,
/// over RADIUS and split over both, lock after exactly the threshold;
/// the lock and its count survive kill -9; a right code is refused while
/// locked (not counted) and works after an unlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_wrong_codes_lock_after_exactly_the_threshold_over_rest_radius_and_both() {
    let seed = seed("fifty_parallel_wrong_codes_lock");
    let mut rng = Rng::new(seed);
    let (mut n, key) = node();
    n.ok(&["policy", "set", &format!("lockout_threshold={LOCK_THRESHOLD}")]);
    // (user, over REST, over RADIUS)
    let cases = [("lock-rest", 50, 0), ("lock-radius", 0, 50), ("lock-both", 25, 25)];
    let secrets: Vec<String> = cases.iter().map(|_| clean_hotp_secret(&mut rng)).collect();
    for ((user, ..), secret) in cases.iter().zip(&secrets) {
        add_user(&n, user, secret, Kind::Hotp);
    }
    n.start();
    let api = Api::of(&n, &key);
    for ((user, over_rest, _), secret) in cases.iter().zip(&secrets) {
        let wrong: Vec<String> = (0..50).map(|_| wrong_code(secret, 0, 20, &mut rng)).collect();
        let started = Instant::now();
        let (rest, _, radius) = burst(&n, user, &wrong[..*over_rest], &wrong[*over_rest..], &mut rng).await;
        eprintln!("{user}: 50 wrong codes answered in {:?}", started.elapsed());
        for (i, a) in rest.iter().enumerate() {
            assert_eq!(a, &Ok(Answer::Reject), "seed {seed}: {user}: REST request {i}");
        }
        for (i, s) in radius.iter().enumerate() {
            assert_eq!(s.answer, Some(Answer::Reject), "seed {seed}: {user}: RADIUS request {i}");
        }
        assert_locked_exactly(&n, &api, user, 50, seed).await;
    }
    // The right code among 49 wrong ones, all at once: whether it came
    // before the lock or not, the count and the lock are what the audit
    // log's order makes them.
    let (race, race_secret) = ("lock-race", clean_hotp_secret(&mut rng));
    add_user(&n, race, &race_secret, Kind::Hotp);
    let mut codes: Vec<String> = (0..49).map(|_| wrong_code(&race_secret, 0, 20, &mut rng)).collect();
    codes.insert(rng.below(50) as usize, hotp_code(&race_secret, 0));
    let (rest, _, radius) = burst(&n, race, &codes[..25], &codes[25..], &mut rng).await;
    let mut answers: Vec<Option<Answer>> = rest.into_iter().map(Result::ok).collect();
    answers.extend(radius.into_iter().map(|s| s.answer));
    assert!(answers.iter().all(|a| matches!(a, Some(Answer::Accept | Answer::Reject))), "seed {seed}: {answers:?}");
    let accepts = answers.iter().filter(|a| **a == Some(Answer::Accept)).count();
    let records = audit_validate(&n, race);
    assert_eq!(records.len(), 50, "seed {seed}: {records:?}");
    assert_eq!(records.iter().filter(|r| r["result"] == "accept").count(), accepts, "seed {seed}: {records:?}");
    let walked = audit_walk(&records, LOCK_THRESHOLD).unwrap_or_else(|e| panic!("seed {seed}: {e}: {records:?}"));
    let (failures, status, _) = api.user(race).await.unwrap();
    assert_eq!((failures, status == "locked"), walked, "seed {seed}: {race}: the state is what the log says");
    eprintln!("{race}: {accepts} accept(s), ends with {failures} failure(s), {status}");

    n.kill9();
    n.restart_same_ports();
    let api = Api::of(&n, &key);
    for ((user, over_rest, over_radius), secret) in cases.iter().zip(&secrets) {
        let (failures, status, _) = api.user(user).await.unwrap();
        assert_eq!((status.as_str(), failures), ("locked", LOCK_THRESHOLD), "seed {seed}: {user} after kill -9");
        // The right code does not get through the lock, and is not counted.
        let code = hotp_code(secret, 0);
        if *over_rest > 0 {
            assert_eq!(api.rest(user, &code).await, Ok(Answer::Reject), "seed {seed}: {user}: locked");
        }
        if *over_radius > 0 {
            assert_eq!(radius_once(&n, user, &code, &mut rng).await, Ok(Answer::Reject), "seed {seed}: {user}: locked");
        }
        let records = audit_validate(&n, user);
        let tries = usize::from(*over_rest > 0) + usize::from(*over_radius > 0);
        assert_eq!(records.len(), 50 + tries, "seed {seed}: {user}");
        assert!(reasons(&records[..tries]).iter().all(|r| r == "locked"), "seed {seed}: {user}: {records:?}");
        assert_eq!(api.user(user).await.unwrap().0, LOCK_THRESHOLD, "seed {seed}: {user}: refusals while locked");
        // An unlock clears the count; the code works.
        let r =
            api.client.post(format!("{}/api/v1/users/{user}/unlock", api.base)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(api.rest(user, &code).await, Ok(Answer::Accept), "seed {seed}: {user} after unlock");
        let (failures, status, floor) = api.user(user).await.unwrap();
        assert_eq!((status.as_str(), failures, floor), ("active", 0, 1), "seed {seed}: {user}");
    }
    let (failures_after, status_after, _) = api.user(race).await.unwrap();
    assert_eq!((failures_after, status_after), (failures, status), "seed {seed}: {race} across kill -9");
    n.stop();
}

// ------------------------------------------------------------ 3. one code, accepted once

/// Item 3 of issue 14: one valid code sent 100 times at once, over REST,
/// over RADIUS (distinct identifiers and authenticators) and 50 + 50 over
/// both, is accepted exactly once; the other 99 are replays (audited,
/// not counted). A true RADIUS retransmission gets the cached answer, not
/// a second decision. After kill -9 every one of the codes is still used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_code_sent_100_times_at_once_is_accepted_once_over_rest_radius_and_both() {
    let seed = seed("one_code_sent_100_times_at_once");
    let mut rng = Rng::new(seed);
    let (mut n, key) = node();
    // (user, kind, over REST, over RADIUS)
    let cases =
        [("once-rest", Kind::Hotp, 100, 0), ("once-radius", Kind::Hotp, 0, 100), ("once-both", Kind::Totp, 50, 50)];
    let secrets: Vec<String> = cases
        .iter()
        .map(|(_, kind, ..)| if *kind == Kind::Hotp { clean_hotp_secret(&mut rng) } else { rng.secret() })
        .collect();
    for ((user, kind, ..), secret) in cases.iter().zip(&secrets) {
        add_user(&n, user, secret, *kind);
    }
    n.start();
    let api = Api::of(&n, &key);
    let mut codes = Vec::new();
    for ((user, kind, over_rest, _), secret) in cases.iter().zip(&secrets) {
        let code = match kind {
            Kind::Hotp => hotp_code(secret, 0),
            // (waits when the step is about to end)
            Kind::Totp => totp_now(secret, 0),
        };
        let (before, _, _) = api.user(user).await.unwrap();
        assert_eq!(before, 0);
        let copies = vec![code.clone(); 100];
        let started = Instant::now();
        let (rest, sock, radius) = burst(&n, user, &copies[..*over_rest], &copies[*over_rest..], &mut rng).await;
        eprintln!("{user}: 100 copies answered in {:?}", started.elapsed());
        let mut answers: Vec<Option<Answer>> = rest.iter().map(|a| a.clone().ok()).collect();
        answers.extend(radius.iter().map(|s| s.answer.clone()));
        assert!(answers.iter().all(Option::is_some), "seed {seed}: {user}: every copy is answered: {rest:?}");
        let accepts = answers.iter().filter(|a| **a == Some(Answer::Accept)).count();
        let rejects = answers.iter().filter(|a| **a == Some(Answer::Reject)).count();
        assert_eq!((accepts, rejects), (1, 99), "seed {seed}: {user}: {answers:?}");
        let reasons = reasons(&audit_validate(&n, user));
        assert_eq!(reasons.len(), 100, "seed {seed}: {user}: {reasons:?}");
        assert_eq!(reasons.iter().filter(|r| *r == "otp").count(), 1, "seed {seed}: {user}: {reasons:?}");
        assert_eq!(reasons.iter().filter(|r| *r == "replayed_code").count(), 99, "seed {seed}: {user}: {reasons:?}");
        let (failures, status, floor) = api.user(user).await.unwrap();
        assert_eq!((status.as_str(), failures), ("active", 0), "seed {seed}: {user}: replays are not counted");
        if *kind == Kind::Hotp {
            assert_eq!(floor, 1, "seed {seed}: {user}: the floor moved once");
        }
        // A true retransmission (same source, identifier, authenticator)
        // is answered from the cache, whatever its first answer was.
        let server = n.listening("radius");
        for want in [Answer::Accept, Answer::Reject] {
            if let Some(s) = radius.iter().find(|s| s.answer.as_ref() == Some(&want)) {
                assert_eq!(
                    retransmit(&sock, &server, s).await,
                    Some(want.clone()),
                    "seed {seed}: {user}: retransmission"
                );
            }
        }
        assert_eq!(audit_validate(&n, user).len(), 100, "seed {seed}: {user}: a retransmission is not decided again");
        codes.push(code);
    }

    n.kill9();
    n.restart_same_ports();
    let api = Api::of(&n, &key);
    for ((user, ..), code) in cases.iter().zip(&codes) {
        assert_eq!(api.rest(user, code).await, Ok(Answer::Reject), "seed {seed}: {user}: REST after kill -9");
        assert_eq!(
            radius_once(&n, user, code, &mut rng).await,
            Ok(Answer::Reject),
            "seed {seed}: {user}: RADIUS after kill -9"
        );
        let reasons = reasons(&audit_validate(&n, user));
        assert_eq!(reasons[..2], ["replayed_code", "replayed_code"], "seed {seed}: {user}");
        let (failures, status, _) = api.user(user).await.unwrap();
        assert_eq!((status.as_str(), failures), ("active", 0), "seed {seed}: {user}");
    }
    n.stop();
}

// ------------------------------------------------------------ the CLI beside the server

/// `tessera check` runs the same login path on the same data directory,
/// beside a running server and after a crash before the restart: a code
/// either of them accepted is a replay for the other, and failures counted
/// on either side add up. Login state kept in the server's memory, or in a
/// journal only the server replays, must not let the CLI decide (or
/// `user show` report) from a stale copy.
#[tokio::test]
async fn cli_check_and_the_server_share_used_codes_and_failures_across_kill9() {
    let seed = seed("cli_check_and_the_server_share");
    let mut rng = Rng::new(seed);
    let (mut n, key) = node();
    let (user, secret) = ("shared", clean_hotp_secret(&mut rng));
    add_user(&n, user, &secret, Kind::Hotp);
    let code = |c: u64| hotp_code(&secret, c);
    let wrong = wrong_code(&secret, 0, 20, &mut rng);
    let show = |n: &TestNode| -> (u64, i64) {
        let v: Value = serde_json::from_str(&n.ok(&["user", "show", user, "--json"])).unwrap();
        (v["user"]["failures"].as_u64().unwrap(), v["tokens"][0]["counter"].as_i64().unwrap())
    };
    n.start();
    let api = Api::of(&n, &key);
    // Used by the server: a replay for the CLI (not counted).
    assert_eq!(api.rest(user, &code(0)).await, Ok(Answer::Accept));
    let out = n.fail(&["check", user, &code(0)], &[], 1);
    assert!(out.contains("reject (replayed_code)"), "{out}");
    // Used by the CLI: a replay for the server.
    assert!(n.ok(&["check", user, &code(1)]).starts_with("accept"));
    assert_eq!(api.rest(user, &code(1)).await, Ok(Answer::Reject));
    // A failure on each side: two.
    assert_eq!(api.rest(user, &wrong).await, Ok(Answer::Reject));
    let out = n.fail(&["check", user, &wrong], &[], 1);
    assert!(out.contains("reject (wrong_code"), "{out}");
    assert_eq!(api.user(user).await.unwrap().0, 2, "seed {seed}: the server sees the CLI's failure");
    assert_eq!(show(&n), (2, 2), "seed {seed}: the CLI sees the server's failure");

    // Accepted by the server, which dies at once: before any restart, the
    // CLI sees the code used and the failures reset, and counts its own.
    assert_eq!(api.rest(user, &code(2)).await, Ok(Answer::Accept));
    n.kill9();
    assert_eq!(show(&n), (0, 3), "seed {seed}: `user show` after kill -9, before the restart");
    let out = n.fail(&["check", user, &code(2)], &[], 1);
    assert!(out.contains("reject (replayed_code)"), "after kill -9: {out}");
    n.fail(&["check", user, &wrong], &[], 1);
    n.restart_same_ports();
    let api = Api::of(&n, &key);
    assert_eq!(api.user(user).await.unwrap(), (1, "active".to_string(), 3), "seed {seed}: the CLI's failure counts");
    assert_eq!(api.rest(user, &code(2)).await, Ok(Answer::Reject));
    assert_eq!(api.rest(user, &code(3)).await, Ok(Answer::Accept));
    n.stop();
    assert_eq!(show(&n), (0, 4));
    let verify: Value = serde_json::from_str(&n.ok(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
}
