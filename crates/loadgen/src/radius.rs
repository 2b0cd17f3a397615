//! `radius`: closed-loop load on a RADIUS server's Access-Request path over
//! UDP (tessera, or FreeRADIUS as a peer baseline), and `radius-probe`.
//!
//! Shape: `C` logical workers ("slots"), each with its own disjoint slice of
//! accounts (the same [`Supply`] as the REST workers) and at most one request
//! outstanding, so an account's steps reach the server in the order they were
//! handed out. The slots share a few connected UDP sockets, at most 256 per
//! socket (the Identifier is one octet). All of it runs in one task per socket
//! on a single-threaded runtime by default: the generator shares the machine's
//! cores with the server, so it must stay cheap.
//!
//! Every packet is built fresh: a random Request Authenticator (drawn from the
//! OS in batches), User-Password hidden per RFC 2865 §5.2,
//! Message-Authenticator always present (RFC 3579, placed first), and
//! NAS-IP-Address / NAS-Identifier. A reply is matched by Identifier and
//! counted only if its Response Authenticator (and Message-Authenticator, if
//! any) verifies; one that does not is counted as bad and dropped, as a NAS
//! would, and the request stays outstanding.
//!
//! What it must not do: send a code twice for an account unless the rule
//! says the server accepts replays ([`StepRule::reuse`]); retransmit (a
//! request without an answer within the timeout is counted as lost and its
//! Identifier goes to the back of the free list); talk to anything but
//! loopback.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use tessera_radius::{Code, MessageAuthenticator, Packet, RadiusError, attr, hide_password, verify_response};
use tokio::net::UdpSocket;

use crate::accounts::{Account, Mode, Next, PERIOD_S, StepRule, Supply, push_code};
use crate::run::{Accepted, Failure, Latency};
use crate::sys::{self, Clock};

/// RFC 2865 §3: the Identifier is one octet, so a socket has at most 256 requests outstanding.
pub const IDS_PER_SOCKET: usize = 256;
/// RFC 2865 §3: the largest RADIUS packet; one octet more detects oversized datagrams.
const MAX_DATAGRAM: usize = 4096;
/// How often outstanding requests are checked against the timeout.
const SCAN_EVERY: Duration = Duration::from_millis(20);
/// Request Authenticators drawn from the OS per `getrandom` call (16 octets each).
const RANDOM_BATCH: usize = 256;
/// Failures kept per socket and in the report.
const MAX_FAILURES_KEPT: usize = 5;
const MAX_FAILURES_REPORTED: usize = 20;
/// NAS-Identifier of every request.
pub const NAS_IDENTIFIER: &[u8] = b"tessera-loadgen";

/// Builds one Access-Request: User-Name, hidden User-Password,
/// NAS-IP-Address 127.0.0.1, NAS-Identifier, and a Message-Authenticator
/// (first attribute, HMAC-MD5 with the shared secret).
pub fn access_request(
    secret: &[u8],
    identifier: u8,
    authenticator: [u8; 16],
    user: &str,
    password: &[u8],
) -> Result<Vec<u8>, RadiusError> {
    let mut p = Packet::new(Code::AccessRequest, identifier, authenticator);
    p.push(attr::USER_NAME, user.as_bytes());
    p.push(attr::USER_PASSWORD, hide_password(secret, &authenticator, password)?);
    p.push(attr::NAS_IP_ADDRESS, Ipv4Addr::LOCALHOST.octets());
    p.push(attr::NAS_IDENTIFIER, NAS_IDENTIFIER);
    p.encode_request(secret, true)
}

/// What a verified reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Accept,
    Reject,
    Challenge,
    /// Any other code (a server bug: an Access-Request has only the three answers above).
    Other(u8),
}

/// A reply that must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadReply {
    /// Not a well-formed RADIUS packet.
    Malformed,
    /// The Response Authenticator does not match this request (forged, or a
    /// late answer to an earlier request with the same Identifier).
    ResponseAuthenticator,
    /// A Message-Authenticator that does not verify.
    MessageAuthenticator,
}

impl BadReply {
    pub fn name(self) -> &'static str {
        match self {
            BadReply::Malformed => "malformed reply",
            BadReply::ResponseAuthenticator => "bad Response Authenticator",
            BadReply::MessageAuthenticator => "bad Message-Authenticator",
        }
    }
}

/// Checks a reply against the request it answers. On success, also whether
/// the reply carried a (valid) Message-Authenticator.
pub fn check_reply(raw: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> Result<(ReplyKind, bool), BadReply> {
    let ma = match verify_response(raw, request_authenticator, secret) {
        Ok(ma) => ma,
        Err(RadiusError::BadResponseAuthenticator) => return Err(BadReply::ResponseAuthenticator),
        Err(_) => return Err(BadReply::Malformed),
    };
    if ma == MessageAuthenticator::Invalid {
        return Err(BadReply::MessageAuthenticator);
    }
    let kind = match Code::from(raw[0]) {
        Code::AccessAccept => ReplyKind::Accept,
        Code::AccessReject => ReplyKind::Reject,
        Code::AccessChallenge => ReplyKind::Challenge,
        c => ReplyKind::Other(c.as_u8()),
    };
    Ok((kind, ma == MessageAuthenticator::Valid))
}

/// Request Authenticators from the OS, fetched in batches.
struct Authenticators {
    buf: Vec<u8>,
    pos: usize,
}

impl Authenticators {
    fn new() -> Authenticators {
        Authenticators { buf: vec![0; 16 * RANDOM_BATCH], pos: 16 * RANDOM_BATCH }
    }

    fn next(&mut self) -> anyhow::Result<[u8; 16]> {
        if self.pos + 16 > self.buf.len() {
            getrandom::fill(&mut self.buf).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
            self.pos = 0;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[self.pos..self.pos + 16]);
        self.pos += 16;
        Ok(a)
    }
}

/// Reads a shared secret: the first line of the file, without its line ending.
pub fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        bail!("{}: the shared secret is empty", path.display());
    }
    Ok(line.to_vec())
}

/// Parses `--server` and refuses anything but loopback.
pub fn loopback_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = s.parse().with_context(|| format!("--server {s}: expected IP:PORT"))?;
    if !addr.ip().is_loopback() {
        bail!("--server {addr}: only loopback addresses are allowed (this is a load generator)");
    }
    Ok(addr)
}

async fn connect(server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse()?;
    let s = UdpSocket::bind(local).await.context("binding a UDP socket")?;
    s.connect(server).await.with_context(|| format!("connecting a UDP socket to {server}"))?;
    Ok(s)
}

pub struct RadiusConfig {
    pub system: String,
    pub server: SocketAddr,
    pub secret: Vec<u8>,
    pub concurrency: usize,
    /// UDP sockets (0 = as few as possible: one per 256 slots).
    pub sockets: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub mode: Mode,
    pub rule: StepRule,
    pub timeout: Duration,
    pub server_pid: Option<i32>,
    pub threads: usize,
    /// Send the account's password alone, no code (first-factor benches:
    /// the server lets this client in on the first factor alone).
    pub password_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RadiusReport {
    pub system: String,
    pub server: String,
    pub mode: &'static str,
    pub concurrency: usize,
    pub sockets: usize,
    pub client_threads: usize,
    pub accounts: usize,
    pub first_account: u64,
    /// The step rule used for codes (reuse = the server accepts a code again).
    pub step_lower: i64,
    pub step_upper: i64,
    pub margin_s: f64,
    pub lead_s: f64,
    pub reuse_codes: bool,
    pub timeout_s: f64,
    /// From the start until issuing stopped or the last reply, whichever is later.
    pub duration_s: f64,
    /// Requests sent.
    pub requests: u64,
    /// Requests answered with a verified reply.
    pub answered: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub challenges: u64,
    pub other_codes: u64,
    /// No verified reply within the timeout.
    pub lost: u64,
    /// Replies dropped: malformed, bad Response Authenticator or bad Message-Authenticator.
    pub bad_replies: u64,
    /// Replies for an Identifier with nothing outstanding (late, after the timeout, or duplicated).
    pub stray_replies: u64,
    /// Send errors and ICMP errors (e.g. port unreachable) reported on the sockets.
    pub socket_errors: u64,
    /// Verified replies without a Message-Authenticator.
    pub replies_without_message_authenticator: u64,
    /// Answered requests per second.
    pub throughput_rps: f64,
    /// Milliseconds from just before the send to the reply being read.
    pub latency_ms: Latency,
    pub client_cpu_s: f64,
    pub client_user_s: f64,
    pub client_sys_s: f64,
    pub client_cpu_us_per_req: f64,
    pub server_pid: Option<i32>,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_req: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub server_hwm_kib: Option<u64>,
    pub server_rss_anon_kib: Option<u64>,
    pub server_rss_file_kib: Option<u64>,
    pub machine_busy_pct: Option<f64>,
    pub machine_cpus: usize,
    /// Slot-seconds spent waiting for the next valid step, divided by C.
    pub code_supply_exhausted_s: f64,
    pub failures: Vec<Failure>,
    pub last_accepted: Option<Accepted>,
    pub ok: bool,
}

struct Shared {
    accounts: Vec<Account>,
    secret: Vec<u8>,
    clock: Clock,
    issued: AtomicU64,
    max_requests: u64,
    deadline: Instant,
    timeout: Duration,
    mode: Mode,
    password_only: bool,
}

struct InFlight {
    slot: usize,
    account: usize,
    step: i64,
    code: u32,
    authenticator: [u8; 16],
    sent: Instant,
    /// Unix time at hand-out, to place a reject relative to the step boundary.
    sent_unix: f64,
}

struct Stats {
    hist: Histogram<u64>,
    sent: u64,
    accepts: u64,
    rejects: u64,
    challenges: u64,
    other: u64,
    lost: u64,
    bad: u64,
    stray: u64,
    socket_errors: u64,
    no_ma: u64,
    exhausted: Duration,
    failures: Vec<Failure>,
    last_accepted: Option<(usize, i64, u32)>,
    /// When this socket stopped issuing (deadline or request budget).
    stop_at: Option<Instant>,
    last_reply: Option<Instant>,
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// One socket, its slots and their outstanding requests.
struct SocketLoop {
    sh: Arc<Shared>,
    sock: UdpSocket,
    supplies: Vec<Supply>,
    inflight: Vec<Option<InFlight>>,
    free: VecDeque<u8>,
    outstanding: usize,
    /// Slots waiting for a code: (slot, wake at, waiting since).
    waiting: Vec<(usize, Instant, Instant)>,
    /// Datagrams that met a full send buffer, sent when the socket is writable.
    backlog: VecDeque<Vec<u8>>,
    random: Authenticators,
    password: Vec<u8>,
    st: Stats,
}

impl SocketLoop {
    fn stopping(&mut self, now: Instant) -> bool {
        if self.st.stop_at.is_some() {
            return true;
        }
        if now >= self.sh.deadline {
            self.st.stop_at = Some(self.sh.deadline);
            return true;
        }
        false
    }

    fn fail(&mut self, account: usize, step: i64, kind: &'static str, code: Option<u16>, detail: String) {
        if self.st.failures.len() < MAX_FAILURES_KEPT {
            let name = self.sh.accounts[account].name.clone();
            self.st.failures.push(Failure { name, step, kind, status: code, detail });
        }
    }

    /// Sends the slot's next request, or parks the slot until a code is valid.
    fn issue(&mut self, slot: usize, now: Instant) -> anyhow::Result<()> {
        if self.stopping(now) {
            return Ok(());
        }
        if self.sh.issued.fetch_add(1, Ordering::Relaxed) >= self.sh.max_requests {
            self.st.stop_at = Some(now);
            return Ok(());
        }
        let sh = self.sh.clone();
        let sent_unix = sh.clock.unix();
        let (pos, step, code) = match self.supplies[slot].next(&sh.accounts, sent_unix) {
            Next::Code { slot: pos, step, code } => (pos, step, code),
            Next::WaitUntil(t) => {
                sh.issued.fetch_sub(1, Ordering::Relaxed);
                let wake = sh.clock.instant_at(t + 0.001).min(sh.deadline);
                self.waiting.push((slot, wake, now));
                return Ok(());
            }
        };
        let Some(id) = self.free.pop_front() else {
            // Cannot happen (a socket has at most 256 slots, each with one
            // request outstanding), but never spin if it does.
            sh.issued.fetch_sub(1, Ordering::Relaxed);
            self.waiting.push((slot, now + Duration::from_millis(1), now));
            return Ok(());
        };
        let account = self.supplies[slot].account(pos);
        let a = &sh.accounts[account];
        let authenticator = self.random.next()?;
        self.password.clear();
        self.password.extend_from_slice(a.password.as_bytes());
        if !sh.password_only {
            push_code(&mut self.password, code);
        }
        let datagram = access_request(&sh.secret, id, authenticator, &a.name, &self.password)
            .with_context(|| format!("building the request for {}", a.name))?;
        let sent = Instant::now();
        match self.sock.try_send(&datagram) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.backlog.push_back(datagram),
            Err(e) => {
                // E.g. ECONNREFUSED left by an ICMP error: the request is not
                // sent; try again a little later with the next code.
                self.st.socket_errors += 1;
                self.fail(account, step, "send", None, e.to_string());
                self.free.push_back(id);
                sh.issued.fetch_sub(1, Ordering::Relaxed);
                self.waiting.push((slot, now + Duration::from_millis(10), now));
                return Ok(());
            }
        }
        self.st.sent += 1;
        self.inflight[usize::from(id)] = Some(InFlight { slot, account, step, code, authenticator, sent, sent_unix });
        self.outstanding += 1;
        Ok(())
    }

    fn on_datagram(&mut self, n: usize, buf: &[u8], now: Instant) -> anyhow::Result<()> {
        if !(20..=MAX_DATAGRAM).contains(&n) {
            self.st.bad += 1;
            return Ok(());
        }
        let id = usize::from(buf[1]);
        let Some(f) = &self.inflight[id] else {
            self.st.stray += 1;
            return Ok(());
        };
        let (kind, has_ma) = match check_reply(&buf[..n], &f.authenticator, &self.sh.secret) {
            Ok(v) => v,
            Err(bad) => {
                // Dropped; the request stays outstanding until its real answer or the timeout.
                self.st.bad += 1;
                let (account, step) = (f.account, f.step);
                self.fail(account, step, bad.name(), None, String::new());
                return Ok(());
            }
        };
        let Some(f) = self.inflight[id].take() else { return Ok(()) };
        self.outstanding -= 1;
        self.free.push_back(id as u8);
        self.st.last_reply = Some(now);
        self.st.hist.saturating_record(now.saturating_duration_since(f.sent).as_micros().max(1) as u64);
        if !has_ma {
            self.st.no_ma += 1;
        }
        let code = u16::from(buf[0]);
        match kind {
            ReplyKind::Accept => {
                self.st.accepts += 1;
                if self.sh.mode == Mode::Wrong {
                    self.fail(f.account, f.step, "accept", Some(code), String::new());
                }
                if self.st.last_accepted.is_none_or(|(_, s, _)| f.step >= s) {
                    self.st.last_accepted = Some((f.account, f.step, f.code));
                }
            }
            ReplyKind::Reject => {
                self.st.rejects += 1;
                if self.sh.mode == Mode::Correct {
                    let into = f.sent_unix - (f.step * PERIOD_S) as f64;
                    let detail = format!("sent {into:.3} s after the start of the code's step");
                    self.fail(f.account, f.step, "reject", Some(code), detail);
                }
            }
            ReplyKind::Challenge => {
                self.st.challenges += 1;
                self.fail(f.account, f.step, "challenge", Some(code), String::new());
            }
            ReplyKind::Other(c) => {
                self.st.other += 1;
                self.fail(f.account, f.step, "unexpected code", Some(u16::from(c)), String::new());
            }
        }
        self.issue(f.slot, now)
    }

    fn expire(&mut self, now: Instant) -> anyhow::Result<()> {
        for id in 0..IDS_PER_SOCKET {
            let timed_out = self.inflight[id].as_ref().is_some_and(|f| now.duration_since(f.sent) >= self.sh.timeout);
            if !timed_out {
                continue;
            }
            let Some(f) = self.inflight[id].take() else { continue };
            self.outstanding -= 1;
            // To the back: a late answer to it then finds either nothing or a
            // request it cannot authenticate.
            self.free.push_back(id as u8);
            self.st.lost += 1;
            self.fail(f.account, f.step, "lost", None, format!("no reply within {:?}", self.sh.timeout));
            self.issue(f.slot, now)?;
        }
        Ok(())
    }

    fn wake(&mut self, now: Instant) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.waiting.len() {
            let (slot, at, since) = self.waiting[i];
            if at <= now {
                self.waiting.swap_remove(i);
                self.st.exhausted += now.saturating_duration_since(since);
                self.issue(slot, now)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    async fn run(mut self) -> anyhow::Result<Stats> {
        let now = Instant::now();
        for slot in 0..self.supplies.len() {
            self.issue(slot, now)?;
        }
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut next_scan = now + SCAN_EVERY;
        loop {
            let now = Instant::now();
            if self.stopping(now) {
                for (_, _, since) in self.waiting.drain(..) {
                    self.st.exhausted += self.sh.deadline.saturating_duration_since(since);
                }
                if self.outstanding == 0 {
                    break;
                }
            }
            let mut wake = next_scan;
            if let Some(w) = self.waiting.iter().map(|w| w.1).min() {
                wake = wake.min(w);
            }
            if self.st.stop_at.is_none() {
                wake = wake.min(self.sh.deadline);
            }
            tokio::select! {
                biased;
                r = self.sock.readable() => {
                    r.context("waiting for replies")?;
                    loop {
                        match self.sock.try_recv(&mut buf) {
                            Ok(n) => {
                                let t = Instant::now();
                                self.on_datagram(n, &buf, t)?;
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => {
                                // ICMP errors (port unreachable) surface here on a connected socket.
                                self.st.socket_errors += 1;
                                if self.st.failures.len() < MAX_FAILURES_KEPT {
                                    self.st.failures.push(Failure {
                                        name: String::new(), step: 0, kind: "socket", status: None, detail: e.to_string(),
                                    });
                                }
                            }
                        }
                    }
                }
                r = self.sock.writable(), if !self.backlog.is_empty() => {
                    r.context("waiting to send")?;
                    while let Some(d) = self.backlog.front() {
                        match self.sock.try_send(d) {
                            Ok(_) => { self.backlog.pop_front(); }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => {
                                // Left outstanding: it will time out and count as lost.
                                self.st.socket_errors += 1;
                                self.backlog.pop_front();
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            if now >= next_scan {
                self.expire(now)?;
                next_scan = now + SCAN_EVERY;
            }
            if !self.waiting.is_empty() {
                self.wake(now)?;
            }
        }
        Ok(self.st)
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs the closed loop on its own runtime (current-thread when `threads` is 1).
pub fn run(cfg: RadiusConfig, accounts: Vec<Account>) -> anyhow::Result<RadiusReport> {
    let rt = if cfg.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.threads).enable_all().build()?
    };
    rt.block_on(run_async(cfg, accounts))
}

async fn run_async(cfg: RadiusConfig, accounts: Vec<Account>) -> anyhow::Result<RadiusReport> {
    let c = cfg.concurrency.max(1);
    if accounts.len() < c {
        bail!("{} accounts for concurrency {c}: need at least one account per outstanding request", accounts.len());
    }
    let min_sockets = c.div_ceil(IDS_PER_SOCKET);
    let nsock = if cfg.sockets == 0 { min_sockets } else { cfg.sockets.clamp(min_sockets, c) };
    if cfg.secret.is_empty() {
        bail!("the shared secret is empty");
    }
    let clock = Clock::new();
    let now_unix = clock.unix();
    let horizon = cfg.duration.as_secs_f64() + 10.0;
    let mut per_socket: Vec<Vec<Supply>> = (0..nsock).map(|_| Vec::new()).collect();
    for w in 0..c {
        let slots = (w..accounts.len()).step_by(c).collect();
        per_socket[w % nsock].push(Supply::new(&accounts, slots, cfg.rule, cfg.mode, now_unix, horizon));
    }
    let mut socks = Vec::with_capacity(nsock);
    for _ in 0..nsock {
        socks.push(connect(cfg.server).await?);
    }
    let first_account = accounts.first().map(|a| a.index).unwrap_or(0);
    let n_accounts = accounts.len();
    let t0 = Instant::now();
    let sh = Arc::new(Shared {
        accounts,
        secret: cfg.secret.clone(),
        clock,
        issued: AtomicU64::new(0),
        max_requests: cfg.max_requests.unwrap_or(u64::MAX),
        deadline: t0 + cfg.duration,
        timeout: cfg.timeout,
        mode: cfg.mode,
        password_only: cfg.password_only,
    });
    let (u0, s0) = sys::self_cpu();
    let server0 = cfg.server_pid.and_then(sys::tree_cpu);
    let busy0 = sys::machine_jiffies();
    let mut handles = Vec::with_capacity(nsock);
    for (sock, supplies) in socks.into_iter().zip(per_socket) {
        let l = SocketLoop {
            sh: sh.clone(),
            sock,
            supplies,
            inflight: (0..IDS_PER_SOCKET).map(|_| None).collect(),
            free: (0..=u8::MAX).collect(),
            outstanding: 0,
            waiting: Vec::new(),
            backlog: VecDeque::new(),
            random: Authenticators::new(),
            password: Vec::with_capacity(80),
            st: Stats {
                hist: new_hist(),
                sent: 0,
                accepts: 0,
                rejects: 0,
                challenges: 0,
                other: 0,
                lost: 0,
                bad: 0,
                stray: 0,
                socket_errors: 0,
                no_ma: 0,
                exhausted: Duration::ZERO,
                failures: Vec::new(),
                last_accepted: None,
                stop_at: None,
                last_reply: None,
            },
        };
        handles.push(tokio::spawn(l.run()));
    }
    let mut stats = Vec::with_capacity(nsock);
    for h in handles {
        stats.push(h.await??);
    }
    let (u1, s1) = sys::self_cpu();
    let server1 = cfg.server_pid.and_then(sys::tree_cpu);
    let busy1 = sys::machine_jiffies();
    let mem = cfg.server_pid.map(sys::tree_memory).unwrap_or_default();
    let end = stats.iter().flat_map(|s| [s.stop_at, s.last_reply]).flatten().max().unwrap_or(t0 + cfg.duration);
    let elapsed = end.saturating_duration_since(t0).as_secs_f64().max(1e-6);

    let mut hist = new_hist();
    let mut r = RadiusReport {
        system: cfg.system,
        server: cfg.server.to_string(),
        mode: match cfg.mode {
            Mode::Correct => "correct",
            Mode::Wrong => "wrong",
        },
        concurrency: c,
        sockets: nsock,
        client_threads: cfg.threads.max(1),
        accounts: n_accounts,
        first_account,
        step_lower: cfg.rule.lower,
        step_upper: cfg.rule.upper,
        margin_s: cfg.rule.margin_s,
        lead_s: cfg.rule.lead_s,
        reuse_codes: cfg.rule.reuse,
        timeout_s: cfg.timeout.as_secs_f64(),
        duration_s: elapsed,
        requests: 0,
        answered: 0,
        accepts: 0,
        rejects: 0,
        challenges: 0,
        other_codes: 0,
        lost: 0,
        bad_replies: 0,
        stray_replies: 0,
        socket_errors: 0,
        replies_without_message_authenticator: 0,
        throughput_rps: 0.0,
        latency_ms: Latency { p50: 0.0, p90: 0.0, p99: 0.0, p999: 0.0, max: 0.0, mean: 0.0 },
        client_cpu_s: (u1 - u0) + (s1 - s0),
        client_user_s: u1 - u0,
        client_sys_s: s1 - s0,
        client_cpu_us_per_req: 0.0,
        server_pid: cfg.server_pid,
        server_cpu_s: server0.zip(server1).map(|(a, b)| b - a),
        server_cpu_us_per_req: None,
        server_rss_kib: mem.rss,
        server_hwm_kib: mem.peak,
        server_rss_anon_kib: mem.anon,
        server_rss_file_kib: mem.file,
        machine_busy_pct: busy0
            .zip(busy1)
            .filter(|(a, b)| b.1 > a.1)
            .map(|(a, b)| 100.0 * (b.0 - a.0) as f64 / (b.1 - a.1) as f64),
        machine_cpus: sys::cpus(),
        code_supply_exhausted_s: 0.0,
        failures: Vec::new(),
        last_accepted: None,
        ok: false,
    };
    let mut exhausted = Duration::ZERO;
    let mut last: Option<(usize, i64, u32)> = None;
    for s in &stats {
        hist.add(&s.hist).ok();
        r.requests += s.sent;
        r.accepts += s.accepts;
        r.rejects += s.rejects;
        r.challenges += s.challenges;
        r.other_codes += s.other;
        r.lost += s.lost;
        r.bad_replies += s.bad;
        r.stray_replies += s.stray;
        r.socket_errors += s.socket_errors;
        r.replies_without_message_authenticator += s.no_ma;
        exhausted += s.exhausted;
        for f in &s.failures {
            if r.failures.len() < MAX_FAILURES_REPORTED {
                r.failures.push(f.clone());
            }
        }
        if let Some(a) = s.last_accepted
            && last.is_none_or(|b| a.1 > b.1)
        {
            last = Some(a);
        }
    }
    r.answered = r.accepts + r.rejects + r.challenges + r.other_codes;
    r.throughput_rps = r.answered as f64 / elapsed;
    r.latency_ms = Latency {
        p50: ms(&hist, 0.50),
        p90: ms(&hist, 0.90),
        p99: ms(&hist, 0.99),
        p999: ms(&hist, 0.999),
        max: hist.max() as f64 / 1000.0,
        mean: hist.mean() / 1000.0,
    };
    let n = r.answered.max(1) as f64;
    r.client_cpu_us_per_req = r.client_cpu_s * 1e6 / n;
    r.server_cpu_us_per_req = r.server_cpu_s.map(|cpu| cpu * 1e6 / n);
    r.code_supply_exhausted_s = exhausted.as_secs_f64() / c as f64;
    r.last_accepted = last.map(|(i, step, code)| {
        let a = &sh.accounts[i];
        let mut s = Vec::new();
        push_code(&mut s, code);
        Accepted { index: a.index, name: a.name.clone(), step, code: String::from_utf8_lossy(&s).into_owned() }
    });
    r.ok = r.answered > 0
        && r.lost == 0
        && r.bad_replies == 0
        && r.socket_errors == 0
        && r.challenges == 0
        && r.other_codes == 0
        && match cfg.mode {
            Mode::Correct => r.rejects == 0,
            Mode::Wrong => r.accepts == 0,
        };
    Ok(r)
}

fn kib(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

impl RadiusReport {
    pub fn print(&self) {
        let l = &self.latency_ms;
        println!(
            "{} radius {} c={} sockets={} accounts={} (from {}) client threads={}: {} answered in {:.2}s = {:.0} req/s",
            self.system,
            self.mode,
            self.concurrency,
            self.sockets,
            self.accounts,
            self.first_account,
            self.client_threads,
            self.answered,
            self.duration_s,
            self.throughput_rps
        );
        println!(
            "  sent={} accepts={} rejects={} challenges={} other={} lost={} bad_replies={} stray={} socket_errors={}{}",
            self.requests,
            self.accepts,
            self.rejects,
            self.challenges,
            self.other_codes,
            self.lost,
            self.bad_replies,
            self.stray_replies,
            self.socket_errors,
            if self.replies_without_message_authenticator > 0 {
                format!(" (replies without Message-Authenticator: {})", self.replies_without_message_authenticator)
            } else {
                String::new()
            }
        );
        println!(
            "  latency ms: p50={:.3} p90={:.3} p99={:.3} p99.9={:.3} max={:.3} mean={:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        println!(
            "  client cpu: {:.2}s (user {:.2} sys {:.2}) = {:.1} µs/req, {:.0}% of one core",
            self.client_cpu_s,
            self.client_user_s,
            self.client_sys_s,
            self.client_cpu_us_per_req,
            100.0 * self.client_cpu_s / self.duration_s.max(1e-9)
        );
        if let (Some(pid), Some(cpu), Some(per)) = (self.server_pid, self.server_cpu_s, self.server_cpu_us_per_req) {
            println!(
                "  server pid {pid}: cpu {:.2}s = {:.1} µs/req, {:.0}% of one core; rss {} KiB (anon {}, file {}; peak {})",
                cpu,
                per,
                100.0 * cpu / self.duration_s.max(1e-9),
                kib(self.server_rss_kib),
                kib(self.server_rss_anon_kib),
                kib(self.server_rss_file_kib),
                kib(self.server_hwm_kib)
            );
        }
        if let Some(busy) = self.machine_busy_pct {
            let ours = 100.0 * (self.client_cpu_s + self.server_cpu_s.unwrap_or(0.0))
                / (self.duration_s.max(1e-9) * self.machine_cpus as f64);
            println!(
                "  machine: {busy:.0}% busy of {} cpus; client+server {ours:.0}%; other processes ~{:.0}%",
                self.machine_cpus,
                (busy - ours).max(0.0)
            );
        }
        if self.code_supply_exhausted_s > 0.0 {
            println!(
                "  code supply exhausted for {:.2}s per slot on average ({})",
                self.code_supply_exhausted_s,
                if self.reuse_codes {
                    format!(
                        "no code is handed out in the last {} s and the first {} s of a step",
                        self.margin_s, self.lead_s
                    )
                } else {
                    "every account had used all valid steps: use more accounts".to_string()
                }
            );
        }
        for f in &self.failures {
            println!(
                "  FAILED {} step {} {}{}{}",
                f.name,
                f.step,
                f.kind,
                f.status.map(|s| format!(" (code {s})")).unwrap_or_default(),
                if f.detail.is_empty() { String::new() } else { format!(": {}", f.detail) }
            );
        }
        println!("  result: {}", if self.ok { "OK" } else { "FAIL" });
    }
}

/// Outcome of [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeAnswer {
    Reply(ReplyKind),
    /// No verified reply after every try.
    NoReply,
}

/// Sends one Access-Request and waits for its verified reply. The same
/// datagram (same Identifier and authenticator) is retransmitted after each
/// `timeout`, up to `tries` sends in all: a server's duplicate cache answers a
/// retransmission without deciding it again, so a retry cannot turn an accept
/// into a replay reject.
pub async fn probe(
    server: SocketAddr,
    secret: &[u8],
    user: &str,
    password: &[u8],
    timeout: Duration,
    tries: u32,
) -> anyhow::Result<ProbeAnswer> {
    let sock = connect(server).await?;
    let authenticator = Authenticators::new().next()?;
    let mut id = [0u8; 1];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    let datagram = access_request(secret, id[0], authenticator, user, password)?;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    for _ in 0..tries.max(1) {
        sock.send(&datagram).await.context("sending the request")?;
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let n = match tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(n)) => n,
                // An ICMP error from a previous send: nobody listens (yet).
                Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => {
                    tokio::time::sleep_until(until).await;
                    break;
                }
                Ok(Err(e)) => return Err(e).context("receiving the reply"),
            };
            if !(20..=MAX_DATAGRAM).contains(&n) || buf[1] != id[0] {
                continue;
            }
            if let Ok((kind, _)) = check_reply(&buf[..n], &authenticator, secret) {
                return Ok(ProbeAnswer::Reply(kind));
            }
        }
    }
    Ok(ProbeAnswer::NoReply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_radius::{unhide_password, verify_request};

    const SECRET: &[u8] = b"bench-secret";

    #[test]
    fn request_decodes_unhides_and_carries_a_valid_message_authenticator() {
        let auth = [7u8; 16];
        let raw = access_request(SECRET, 42, auth, "bench000123", b"123456").unwrap();
        assert_eq!(verify_request(&raw, SECRET).unwrap(), MessageAuthenticator::Valid);
        assert_eq!(verify_request(&raw, b"wrong-secret").unwrap(), MessageAuthenticator::Invalid);
        let p = Packet::decode(&raw).unwrap();
        assert_eq!((p.code, p.identifier, p.authenticator), (Code::AccessRequest, 42, auth));
        // BlastRADIUS hardening: Message-Authenticator first.
        assert_eq!(p.attributes[0].typ, attr::MESSAGE_AUTHENTICATOR);
        assert_eq!(p.count(attr::MESSAGE_AUTHENTICATOR), 1);
        assert_eq!(p.attr(attr::USER_NAME), Some(&b"bench000123"[..]));
        assert_eq!(p.attr(attr::NAS_IP_ADDRESS), Some(&[127, 0, 0, 1][..]));
        assert_eq!(p.attr(attr::NAS_IDENTIFIER), Some(NAS_IDENTIFIER));
        let hidden = p.attr(attr::USER_PASSWORD).unwrap();
        assert_eq!(hidden.len(), 16);
        assert_ne!(&hidden[..6], b"123456");
        assert_eq!(&unhide_password(SECRET, &auth, hidden).unwrap()[..], b"123456");
    }

    #[test]
    fn password_plus_code_longer_than_one_block_unhides() {
        let auth = [9u8; 16];
        let raw = access_request(SECRET, 1, auth, "u00001", b"pw00001-long-enough123456").unwrap();
        let p = Packet::decode(&raw).unwrap();
        let hidden = p.attr(attr::USER_PASSWORD).unwrap();
        assert_eq!(hidden.len(), 32);
        assert_eq!(&unhide_password(SECRET, &auth, hidden).unwrap()[..], b"pw00001-long-enough123456");
    }

    fn answer(request: &[u8], code: Code, secret: &[u8], with_ma: bool) -> Vec<u8> {
        let req = Packet::decode(request).unwrap();
        Packet::response_to(&req, code).encode_response(&req, secret, with_ma).unwrap()
    }

    #[test]
    fn replies_are_verified_against_the_request() {
        let auth = [3u8; 16];
        let raw = access_request(SECRET, 5, auth, "bench000000", b"000000").unwrap();
        let accept = answer(&raw, Code::AccessAccept, SECRET, true);
        assert_eq!(check_reply(&accept, &auth, SECRET), Ok((ReplyKind::Accept, true)));
        let reject = answer(&raw, Code::AccessReject, SECRET, false);
        assert_eq!(check_reply(&reject, &auth, SECRET), Ok((ReplyKind::Reject, false)));
        let challenge = answer(&raw, Code::AccessChallenge, SECRET, true);
        assert_eq!(check_reply(&challenge, &auth, SECRET), Ok((ReplyKind::Challenge, true)));
        // Another request's authenticator (a late reply to a reused Identifier) or another secret.
        assert_eq!(check_reply(&accept, &[4u8; 16], SECRET), Err(BadReply::ResponseAuthenticator));
        let forged = answer(&raw, Code::AccessAccept, b"other", true);
        assert!(check_reply(&forged, &auth, SECRET).is_err());
        // A flipped bit in the Message-Authenticator (with a recomputed Response Authenticator) is caught too.
        let mut tampered = accept.clone();
        tampered[22] ^= 1;
        let fixed = {
            use md5::{Digest, Md5};
            let mut h = Md5::new();
            h.update(&tampered[..4]);
            h.update(auth);
            h.update(&tampered[20..]);
            h.update(SECRET);
            let d: [u8; 16] = h.finalize().into();
            d
        };
        tampered[4..20].copy_from_slice(&fixed);
        assert_eq!(check_reply(&tampered, &auth, SECRET), Err(BadReply::MessageAuthenticator));
        assert_eq!(check_reply(&accept[..10], &auth, SECRET), Err(BadReply::Malformed));
    }

    #[test]
    fn authenticators_are_fresh() {
        let mut a = Authenticators::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * RANDOM_BATCH {
            assert!(seen.insert(a.next().unwrap()));
        }
    }

    #[test]
    fn only_loopback_servers() {
        assert!(loopback_addr("127.0.0.1:18120").is_ok());
        assert!(loopback_addr("[::1]:18120").is_ok());
        assert!(loopback_addr("10.0.0.1:1812").is_err());
        assert!(loopback_addr("localhost").is_err());
    }

    #[test]
    fn secret_file_first_line() {
        let dir = std::env::temp_dir().join(format!("loadgen-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "testing123\r\nignored\n").unwrap();
        assert_eq!(read_secret(&f).unwrap(), b"testing123");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_secret(&f).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A stand-in RADIUS server on 127.0.0.1:0 that, like tessera, accepts a
    /// (user, password) once and rejects it after, requires a valid
    /// Message-Authenticator, and drops every `drop_every`-th request.
    struct MockServer {
        addr: SocketAddr,
        stop: Arc<std::sync::atomic::AtomicBool>,
        handle: Option<std::thread::JoinHandle<(u64, u64)>>,
    }

    impl MockServer {
        fn start(drop_every: u64) -> MockServer {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let addr = sock.local_addr().unwrap();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let handle = std::thread::spawn(move || {
                let mut seen = std::collections::HashSet::new();
                let (mut n, mut unsigned) = (0u64, 0u64);
                let mut buf = [0u8; 4096];
                while !stop2.load(Ordering::Relaxed) {
                    let Ok((len, src)) = sock.recv_from(&mut buf) else { continue };
                    let raw = &buf[..len];
                    if verify_request(raw, SECRET).unwrap() != MessageAuthenticator::Valid {
                        unsigned += 1;
                        continue;
                    }
                    n += 1;
                    if drop_every > 0 && n.is_multiple_of(drop_every) {
                        continue;
                    }
                    let req = Packet::decode(raw).unwrap();
                    let pw =
                        unhide_password(SECRET, &req.authenticator, req.attr(attr::USER_PASSWORD).unwrap()).unwrap();
                    assert!(pw.len() == 6 && pw.iter().all(u8::is_ascii_digit));
                    let fresh = seen.insert((req.attr(attr::USER_NAME).unwrap().to_vec(), pw.to_vec()));
                    let code = if fresh { Code::AccessAccept } else { Code::AccessReject };
                    let reply = Packet::response_to(&req, code).encode_response(&req, SECRET, true).unwrap();
                    sock.send_to(&reply, src).unwrap();
                }
                (n, unsigned)
            });
            MockServer { addr, stop, handle: Some(handle) }
        }

        /// (signed requests received, requests without a valid Message-Authenticator)
        fn stop(mut self) -> (u64, u64) {
            self.stop.store(true, Ordering::Relaxed);
            self.handle.take().unwrap().join().unwrap()
        }
    }

    fn config(addr: SocketAddr, c: usize, sockets: usize, secs: f64) -> RadiusConfig {
        RadiusConfig {
            system: "mock".into(),
            server: addr,
            secret: SECRET.to_vec(),
            concurrency: c,
            sockets,
            duration: Duration::from_secs_f64(secs),
            max_requests: None,
            mode: Mode::Correct,
            rule: StepRule { lower: -1, upper: 1, margin_s: 3.0, lead_s: 0.0, reuse: false },
            timeout: Duration::from_secs(2),
            server_pid: None,
            threads: 1,
            password_only: false,
        }
    }

    #[test]
    fn closed_loop_sends_fresh_codes_only_and_all_are_accepted() {
        let server = MockServer::start(0);
        let accounts = crate::accounts::tessera_accounts("t", 0, 300).unwrap();
        let r = run(config(server.addr, 20, 2, 0.3), accounts).unwrap();
        let (received, unsigned) = server.stop();
        assert!(r.ok, "{:?}", r.failures);
        assert_eq!(unsigned, 0);
        assert_eq!((r.rejects, r.lost, r.bad_replies), (0, 0, 0));
        assert_eq!(r.answered, r.accepts);
        assert_eq!(r.requests, received);
        assert_eq!(r.sockets, 2);
        assert!(r.accepts > 0);
        // 300 accounts x at most 4 steps (S-1..S+1, plus S+2 if a boundary passes).
        assert!(r.accepts <= 1200);
        assert!(r.last_accepted.is_some());
    }

    #[test]
    fn dropped_requests_count_as_lost_and_are_never_resent() {
        let server = MockServer::start(4);
        let accounts = crate::accounts::tessera_accounts("t", 1000, 2000).unwrap();
        let mut cfg = config(server.addr, 8, 3, 0.5);
        cfg.timeout = Duration::from_millis(50);
        let r = run(cfg, accounts).unwrap();
        server.stop();
        assert!(r.lost > 0);
        assert_eq!(r.rejects, 0, "{:?}", r.failures);
        assert_eq!(r.requests, r.answered + r.lost);
        assert!(!r.ok);
    }

    #[test]
    fn request_budget_is_exact() {
        let server = MockServer::start(0);
        let accounts = crate::accounts::tessera_accounts("t", 5000, 100).unwrap();
        let mut cfg = config(server.addr, 16, 0, 10.0);
        cfg.max_requests = Some(77);
        let r = run(cfg, accounts).unwrap();
        server.stop();
        assert_eq!((r.requests, r.accepts), (77, 77));
        assert!(r.duration_s < 5.0);
        assert!(r.ok);
    }

    #[test]
    fn wrong_secret_replies_are_dropped_not_counted() {
        // The server signs with another secret: every reply fails verification.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut n = 0;
            while let Ok((len, src)) = sock.recv_from(&mut buf) {
                let req = Packet::decode(&buf[..len]).unwrap();
                let reply = Packet::response_to(&req, Code::AccessAccept).encode_response(&req, b"nope", true).unwrap();
                sock.send_to(&reply, src).unwrap();
                n += 1;
            }
            n
        });
        let accounts = crate::accounts::tessera_accounts("t", 0, 4).unwrap();
        let mut cfg = config(addr, 2, 1, 0.2);
        cfg.timeout = Duration::from_millis(100);
        let r = run(cfg, accounts).unwrap();
        let n = t.join().unwrap();
        assert!(n > 0);
        assert_eq!(r.accepts, 0);
        assert_eq!(r.bad_replies, n);
        assert_eq!(r.lost, r.requests);
        assert!(!r.ok);
    }

    #[test]
    fn probe_retransmits_the_same_packet() {
        // Drops the first copy, answers the second: the probe must get the answer.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (len, _) = sock.recv_from(&mut buf).unwrap();
            let first = buf[..len].to_vec();
            let (len, src) = sock.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], &first[..]);
            let req = Packet::decode(&first).unwrap();
            let reply = Packet::response_to(&req, Code::AccessReject).encode_response(&req, SECRET, true).unwrap();
            sock.send_to(&reply, src).unwrap();
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let a = rt.block_on(probe(addr, SECRET, "bench000000", b"123456", Duration::from_millis(200), 3)).unwrap();
        t.join().unwrap();
        assert_eq!(a, ProbeAnswer::Reply(ReplyKind::Reject));
    }
}
