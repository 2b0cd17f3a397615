//! Prometheus metrics: one process-wide registry of atomics, written by
//! named functions (`metrics::request(Protocol::Radius, Outcome::Accept,
//! elapsed)`) and rendered in the text exposition format (version 0.0.4)
//! by `GET /metrics` (`http/mod.rs`, which also applies `[metrics]` access
//! control).
//!
//! Why not the `metrics` crate: every label set here is a small closed enum,
//! so a counter is an index into a static array and recording is one relaxed
//! `fetch_add` (a latency observation: two, plus a scan of 14 bucket
//! bounds), with no global recorder, no key hashing and no allocation on the
//! RADIUS hot path (>10k requests/s). Values that already live elsewhere
//! (directory cache counters, the scheduled-backup status file) are read
//! when rendering instead of being copied here.
//!
//! Metric values never carry user names, addresses, secrets or codes: every
//! label value is a constant from this file.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tessera_core::auth::{Decision, Validation};

use crate::directory::DirectoryStats;
use crate::scheduled_backup::BackupStatus;
use crate::tls_reload::Listener;

/// The door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Radius,
    Radsec,
    Rest,
}

impl Protocol {
    const ALL: [Protocol; 3] = [Protocol::Radius, Protocol::Radsec, Protocol::Rest];
    fn label(self) -> &'static str {
        match self {
            Protocol::Radius => "radius",
            Protocol::Radsec => "radsec",
            Protocol::Rest => "rest",
        }
    }
}

/// What became of a request. `dropped`: no answer on purpose (malformed,
/// unknown client, failed BlastRADIUS checks, overload); `error`: no answer
/// because it could not be decided (store unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    Reject,
    Challenge,
    Dropped,
    Error,
    /// Refused before any decision: no or a wrong API key where one is required.
    Unauthorized,
}

impl Outcome {
    const ALL: [Outcome; 6] =
        [Outcome::Accept, Outcome::Reject, Outcome::Challenge, Outcome::Dropped, Outcome::Error, Outcome::Unauthorized];
    fn label(self) -> &'static str {
        match self {
            Outcome::Accept => "accept",
            Outcome::Reject => "reject",
            Outcome::Challenge => "challenge",
            Outcome::Dropped => "dropped",
            Outcome::Error => "error",
            Outcome::Unauthorized => "unauthorized",
        }
    }
}

/// Why a RADIUS packet got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Undecodable, oversized, or a packet code we do not serve.
    Malformed,
    /// The source address matches no RADIUS client.
    UnknownClient,
    /// Message-Authenticator or Request Authenticator did not verify.
    BadAuthenticator,
    /// The client's mode requires Message-Authenticator and it was absent.
    MissingMessageAuthenticator,
    /// Unsigned request with Proxy-State (BlastRADIUS).
    ProxyState,
    /// `radius.max_in_flight` reached.
    Overload,
    /// During a secret rotation's overlap: an unsigned Access-Request whose
    /// password reads under both secrets (which one was used is unknown).
    AmbiguousSecret,
}

impl DropReason {
    const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::UnknownClient,
        DropReason::BadAuthenticator,
        DropReason::MissingMessageAuthenticator,
        DropReason::ProxyState,
        DropReason::Overload,
        DropReason::AmbiguousSecret,
    ];
    fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownClient => "unknown_client",
            DropReason::BadAuthenticator => "bad_authenticator",
            DropReason::MissingMessageAuthenticator => "missing_message_authenticator",
            DropReason::ProxyState => "proxy_state",
            DropReason::Overload => "overload",
            DropReason::AmbiguousSecret => "ambiguous_secret",
        }
    }
}

/// A RADIUS retransmission (RFC 5080 duplicate cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// Answered with the cached reply.
    Cached,
    /// The original is still being decided; the copy was ignored.
    InFlight,
}

/// Out-of-band code delivery (fed by the email/SMS token code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OobChannel {
    Email,
    Sms,
}

impl OobChannel {
    const ALL: [OobChannel; 2] = [OobChannel::Email, OobChannel::Sms];
    fn label(self) -> &'static str {
        match self {
            OobChannel::Email => "email",
            OobChannel::Sms => "sms",
        }
    }
}

/// Upper bounds of the latency buckets, in nanoseconds (0.5 ms … 10 s).
/// A RADIUS login decided from the store takes ~0.3–2 ms here; argon2 and
/// LDAP push into the 10–100 ms buckets.
const BUCKETS_NS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

const N_PROTO: usize = Protocol::ALL.len();
const N_OUTCOME: usize = Outcome::ALL.len();

#[derive(Debug)]
struct Histogram {
    /// Per bucket (not cumulative), plus one for +Inf.
    buckets: [AtomicU64; BUCKETS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Histogram { buckets: [const { AtomicU64::new(0) }; BUCKETS_NS.len() + 1], sum_ns: AtomicU64::new(0) }
    }

    fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS_NS.iter().position(|b| ns <= *b).unwrap_or(BUCKETS_NS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Registry {
    requests: [[AtomicU64; N_OUTCOME]; N_PROTO],
    latency: [Histogram; N_PROTO],
    radius_dropped: [AtomicU64; DropReason::ALL.len()],
    radius_duplicates: [AtomicU64; 2],
    radius_status_server: AtomicU64,
    radius_accounting: AtomicU64,
    radius_clients: AtomicU64,
    lockouts: AtomicU64,
    oob_send_failures: [AtomicU64; OobChannel::ALL.len()],
    /// Milliseconds; negative = not replicating (not rendered).
    replication_lag_ms: AtomicI64,
    /// i64::MIN when never measured.
    replication_offset_ms: AtomicI64,
    /// 1 following, 0 not following, -1 not a replica (not rendered).
    replication_following: AtomicI64,
    replication_claims: [AtomicU64; ClaimMetric::ALL.len()],
    /// Logins journalled on a replica, not yet taken by the primary (-1: not a replica).
    replication_outbox: AtomicI64,
    /// 1 while this node refuses administrative writes as fenced.
    replication_fenced: AtomicI64,
    /// Shared database mode; i64::MIN when never measured (not rendered).
    database_clock_offset_ms: AtomicI64,
    secrets_unreadable: AtomicU64,
    config_reloads_ok: AtomicU64,
    config_reloads_failed: AtomicU64,
    config_last_reload_ok: AtomicI64,
    restart_pending: AtomicU64,
    start_time: AtomicI64,
    /// Per `tls_reload::Listener`: certificate reloads applied and refused.
    tls_reloads_ok: [AtomicU64; Listener::ALL.len()],
    tls_reloads_failed: [AtomicU64; Listener::ALL.len()],
    /// notAfter (Unix seconds) of the certificate served; 0 = no such listener.
    tls_not_after: [AtomicI64; Listener::ALL.len()],
}

static REGISTRY: Registry = Registry {
    requests: [const { [const { AtomicU64::new(0) }; N_OUTCOME] }; N_PROTO],
    latency: [const { Histogram::new() }; N_PROTO],
    radius_dropped: [const { AtomicU64::new(0) }; DropReason::ALL.len()],
    radius_duplicates: [const { AtomicU64::new(0) }; 2],
    radius_status_server: AtomicU64::new(0),
    radius_accounting: AtomicU64::new(0),
    radius_clients: AtomicU64::new(0),
    lockouts: AtomicU64::new(0),
    oob_send_failures: [const { AtomicU64::new(0) }; OobChannel::ALL.len()],
    replication_lag_ms: AtomicI64::new(-1),
    replication_offset_ms: AtomicI64::new(i64::MIN),
    replication_following: AtomicI64::new(-1),
    replication_claims: [const { AtomicU64::new(0) }; ClaimMetric::ALL.len()],
    replication_outbox: AtomicI64::new(-1),
    replication_fenced: AtomicI64::new(0),
    database_clock_offset_ms: AtomicI64::new(i64::MIN),
    secrets_unreadable: AtomicU64::new(0),
    config_reloads_ok: AtomicU64::new(0),
    config_reloads_failed: AtomicU64::new(0),
    config_last_reload_ok: AtomicI64::new(0),
    restart_pending: AtomicU64::new(0),
    start_time: AtomicI64::new(0),
    tls_reloads_ok: [const { AtomicU64::new(0) }; Listener::ALL.len()],
    tls_reloads_failed: [const { AtomicU64::new(0) }; Listener::ALL.len()],
    tls_not_after: [const { AtomicI64::new(0) }; Listener::ALL.len()],
};

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------- recording

/// One authentication request finished with `outcome` after `elapsed`.
/// Latency is observed for decided requests and errors, not for drops
/// (they take microseconds and would only hide the real distribution).
pub fn request(protocol: Protocol, outcome: Outcome, elapsed: Duration) {
    let r = &REGISTRY;
    inc(&r.requests[protocol as usize][outcome as usize]);
    if outcome != Outcome::Dropped {
        r.latency[protocol as usize].observe(elapsed);
    }
}

/// A decision from the engine: counts the request and, when this attempt
/// locked the user, a lockout.
pub fn decided(protocol: Protocol, v: &Validation, elapsed: Duration) {
    let outcome = match v.decision {
        Decision::Accept => Outcome::Accept,
        Decision::Reject => Outcome::Reject,
        Decision::Challenge { .. } => Outcome::Challenge,
    };
    request(protocol, outcome, elapsed);
    if v.locked_now {
        lockout();
    }
}

/// A RADIUS packet dropped without an answer.
pub fn radius_dropped(protocol: Protocol, reason: DropReason) {
    inc(&REGISTRY.requests[protocol as usize][Outcome::Dropped as usize]);
    inc(&REGISTRY.radius_dropped[reason as usize]);
}

pub fn radius_duplicate(kind: Duplicate) {
    inc(&REGISTRY.radius_duplicates[kind as usize]);
}

pub fn radius_status_server() {
    inc(&REGISTRY.radius_status_server);
}

pub fn radius_accounting() {
    inc(&REGISTRY.radius_accounting);
}

/// RADIUS clients loaded (database and config file).
pub fn set_radius_clients(n: usize) {
    REGISTRY.radius_clients.store(n as u64, Ordering::Relaxed);
}

/// A user was locked by a failed attempt.
pub fn lockout() {
    inc(&REGISTRY.lockouts);
}

/// An out-of-band code (email, SMS) could not be handed to its gateway.
pub fn oob_send_failure(channel: OobChannel) {
    inc(&REGISTRY.oob_send_failures[channel as usize]);
}

/// Replication lag of this replica; `None` when not replicating (the gauge
/// is then absent).
pub fn set_replication_lag(lag: Option<Duration>) {
    let ms = lag.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    REGISTRY.replication_lag_ms.store(ms, Ordering::Relaxed);
}

/// This replica's clock offset from its primary (ms, positive when the
/// primary is ahead), measured at every contact.
pub fn set_replication_offset(ms: i64) {
    REGISTRY.replication_offset_ms.store(ms.max(i64::MIN + 1), Ordering::Relaxed);
}

/// What the primary said to a replica's claim (cluster-wide replay protection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMetric {
    Claimed,
    Used,
    Refused,
    /// No answer in time: the replica decided on its own data.
    NoAnswer,
}

impl ClaimMetric {
    pub const ALL: [ClaimMetric; 4] =
        [ClaimMetric::Claimed, ClaimMetric::Used, ClaimMetric::Refused, ClaimMetric::NoAnswer];

    fn label(self) -> &'static str {
        match self {
            ClaimMetric::Claimed => "claimed",
            ClaimMetric::Used => "used",
            ClaimMetric::Refused => "refused",
            ClaimMetric::NoAnswer => "no_answer",
        }
    }
}

pub fn replication_claim(outcome: ClaimMetric) {
    inc(&REGISTRY.replication_claims[outcome as usize]);
}

/// Whether this replica follows its primary (`None`: not a replica).
pub fn set_replication_following(following: Option<bool>) {
    REGISTRY.replication_following.store(following.map_or(-1, i64::from), Ordering::Relaxed);
}

/// Logins journalled on this replica that the primary has not taken yet.
pub fn set_replication_outbox(pending: Option<u64>) {
    REGISTRY.replication_outbox.store(pending.map_or(-1, |n| n.min(i64::MAX as u64) as i64), Ordering::Relaxed);
}

pub fn set_replication_fenced(fenced: bool) {
    REGISTRY.replication_fenced.store(i64::from(fenced), Ordering::Relaxed);
}

/// This node's clock minus the database server's (ms; positive: this node
/// is ahead), measured in shared database mode.
pub fn set_database_clock_offset(ms: i64) {
    REGISTRY.database_clock_offset_ms.store(ms.max(i64::MIN + 1), Ordering::Relaxed);
}

/// A login could not be decided because a token secret did not open.
pub fn secret_unreadable() {
    inc(&REGISTRY.secrets_unreadable);
}

/// A configuration reload (SIGHUP) was applied (`ok`) or refused, at
/// `unix_seconds`; `restart_pending`: changed keys that need a restart.
pub fn config_reload(ok: bool, unix_seconds: i64, restart_pending: bool) {
    let r = &REGISTRY;
    if ok {
        inc(&r.config_reloads_ok);
        r.config_last_reload_ok.store(unix_seconds, Ordering::Relaxed);
        r.restart_pending.store(u64::from(restart_pending), Ordering::Relaxed);
    } else {
        inc(&r.config_reloads_failed);
    }
}

/// A certificate reload (`tls_reload.rs`) was applied (`ok`) or refused.
pub fn tls_reload(listener: Listener, ok: bool) {
    let r = &REGISTRY;
    inc(if ok { &r.tls_reloads_ok[listener as usize] } else { &r.tls_reloads_failed[listener as usize] });
}

/// The certificate `listener` serves expires at `not_after` (Unix seconds).
pub fn tls_certificate(listener: Listener, not_after: i64) {
    REGISTRY.tls_not_after[listener as usize].store(not_after, Ordering::Relaxed);
}

/// Records the process start (also the first "successful load" of the config).
pub fn started(unix_seconds: i64) {
    REGISTRY.start_time.store(unix_seconds, Ordering::Relaxed);
    REGISTRY.config_last_reload_ok.store(unix_seconds, Ordering::Relaxed);
}

// ---------------------------------------------------------------- rendering

/// Values that live outside the registry, read at scrape time.
#[derive(Debug, Default)]
pub struct External<'a> {
    pub directory: Option<&'a DirectoryStats>,
    /// `[backup] interval_seconds` (0 = off) and the last status file, if any.
    pub backup_interval_seconds: u64,
    pub backup: Option<BackupStatus>,
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, kind, help);
        self.sample(name, "", value);
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Renders every metric in the Prometheus text format.
pub fn render(ext: &External<'_>) -> String {
    let r = &REGISTRY;
    let mut o = Out(String::with_capacity(8 * 1024));

    o.header("tessera_build_info", "gauge", "Version of the running tessera.");
    o.sample("tessera_build_info", &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1);
    o.single(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
        r.start_time.load(Ordering::Relaxed),
    );

    o.header("tessera_requests_total", "counter", "Authentication requests by protocol and result.");
    for p in Protocol::ALL {
        for out in Outcome::ALL {
            let labels = format!("protocol=\"{}\",result=\"{}\"", p.label(), out.label());
            o.sample("tessera_requests_total", &labels, get(&r.requests[p as usize][out as usize]));
        }
    }

    let name = "tessera_request_duration_seconds";
    o.header(name, "histogram", "Time to decide an authentication request (drops excluded), by protocol.");
    for p in Protocol::ALL {
        let h = &r.latency[p as usize];
        let mut cumulative = 0u64;
        for (i, bound) in BUCKETS_NS.iter().enumerate() {
            cumulative += get(&h.buckets[i]);
            o.sample(
                &format!("{name}_bucket"),
                &format!("protocol=\"{}\",le=\"{}\"", p.label(), seconds(*bound)),
                cumulative,
            );
        }
        cumulative += get(&h.buckets[BUCKETS_NS.len()]);
        o.sample(&format!("{name}_bucket"), &format!("protocol=\"{}\",le=\"+Inf\"", p.label()), cumulative);
        o.sample(&format!("{name}_sum"), &format!("protocol=\"{}\"", p.label()), seconds(get(&h.sum_ns)));
        o.sample(&format!("{name}_count"), &format!("protocol=\"{}\"", p.label()), cumulative);
    }

    let j = &tessera_store::sqlite::login::journal::STATS;
    o.single(
        "tessera_login_journal_records_total",
        "counter",
        "Login decisions made durable in the login journal (embedded database).",
        get(&j.records),
    );
    o.single(
        "tessera_login_journal_syncs_total",
        "counter",
        "fdatasync calls of the login journal: records / syncs is the group-commit batch size.",
        get(&j.syncs),
    );
    o.single(
        "tessera_login_journal_largest_batch",
        "gauge",
        "Most records made durable by one fdatasync since start.",
        get(&j.largest_batch),
    );
    o.single(
        "tessera_login_journal_folded_total",
        "counter",
        "Journal records written into the database by the background fold.",
        get(&j.folded),
    );
    o.single(
        "tessera_login_journal_folds_total",
        "counter",
        "Folds of the login journal into the database.",
        get(&j.folds),
    );
    o.single(
        "tessera_login_memory_hits_total",
        "counter",
        "Logins decided from the users held in memory, without a database read (embedded database).",
        get(&j.memory_hits),
    );
    o.single(
        "tessera_login_memory_misses_total",
        "counter",
        "Logins that read their user from the database (first login since start, since an administrative \
         change, or since the user was dropped from memory: raise [database] login_cached_users).",
        get(&j.memory_misses),
    );
    o.single("tessera_login_memory_users", "gauge", "Users held in memory, as of the last fold.", get(&j.memory_users));
    o.single(
        "tessera_login_memory_resyncs_total",
        "counter",
        "Times a write by another process (a tessera command beside the server) emptied that memory.",
        get(&j.resyncs),
    );

    o.header("tessera_radius_dropped_total", "counter", "RADIUS packets dropped without an answer, by reason.");
    for d in DropReason::ALL {
        o.sample(
            "tessera_radius_dropped_total",
            &format!("reason=\"{}\"", d.label()),
            get(&r.radius_dropped[d as usize]),
        );
    }
    o.header(
        "tessera_radius_duplicates_total",
        "counter",
        "RADIUS retransmissions: answered from the reply cache (cached) or ignored while the original was being decided (in_flight).",
    );
    o.sample(
        "tessera_radius_duplicates_total",
        "answer=\"cached\"",
        get(&r.radius_duplicates[Duplicate::Cached as usize]),
    );
    o.sample(
        "tessera_radius_duplicates_total",
        "answer=\"in_flight\"",
        get(&r.radius_duplicates[Duplicate::InFlight as usize]),
    );
    o.single(
        "tessera_radius_status_server_total",
        "counter",
        "Status-Server requests answered.",
        get(&r.radius_status_server),
    );
    o.single(
        "tessera_radius_accounting_total",
        "counter",
        "Accounting-Request packets answered.",
        get(&r.radius_accounting),
    );
    o.single(
        "tessera_radius_clients",
        "gauge",
        "RADIUS clients loaded (database and config file).",
        get(&r.radius_clients),
    );
    o.single("tessera_lockouts_total", "counter", "Users locked by a failed attempt.", get(&r.lockouts));

    if let Some(d) = ext.directory {
        for (name, help, c) in [
            (
                "tessera_directory_verifications_total",
                "First-factor checks against realm directories.",
                &d.verifications,
            ),
            ("tessera_directory_cache_hits_total", "Directory look-ups answered from the cache.", &d.cache_hits),
            ("tessera_directory_cache_misses_total", "Directory look-ups not in the cache.", &d.cache_misses),
            ("tessera_directory_fallbacks_total", "Logins that went past an unreachable source.", &d.fallbacks),
            ("tessera_directory_unavailable_total", "First-factor checks with no reachable source.", &d.unavailable),
        ] {
            o.single(name, "counter", help, get(c));
        }
    }

    o.single(
        "tessera_backup_interval_seconds",
        "gauge",
        "Seconds between scheduled backups ([backup] interval_seconds); 0 = off.",
        ext.backup_interval_seconds,
    );
    if let Some(b) = &ext.backup {
        let at = tessera_core::clock::Timestamp::parse_rfc3339(&b.last_run_at).map_or(0, |t| t.unix_seconds());
        o.single("tessera_backup_last_run_timestamp_seconds", "gauge", "When the last scheduled backup ran.", at);
        o.single(
            "tessera_backup_last_run_success",
            "gauge",
            "1 if the last scheduled backup succeeded, else 0.",
            u8::from(b.ok),
        );
        o.single(
            "tessera_backup_last_run_duration_seconds",
            "gauge",
            "Duration of the last scheduled backup.",
            b.seconds,
        );
        if let Some(bytes) = b.bytes {
            o.single("tessera_backup_last_size_bytes", "gauge", "Size of the last good scheduled backup.", bytes);
        }
        o.single("tessera_backup_kept", "gauge", "Scheduled backup files kept.", b.kept);
    }

    o.header("tessera_oob_send_failures_total", "counter", "Out-of-band codes that could not be sent, by channel.");
    for c in OobChannel::ALL {
        o.sample(
            "tessera_oob_send_failures_total",
            &format!("channel=\"{}\"", c.label()),
            get(&r.oob_send_failures[c as usize]),
        );
    }
    // The syslog output keeps its own counters (`crate::syslog::stats`).
    let syslog = crate::syslog::stats();
    o.single("tessera_syslog_sent_total", "counter", "Messages sent to syslog.", get(&syslog.sent));
    o.single(
        "tessera_syslog_dropped_total",
        "counter",
        "Messages the syslog output dropped (queue full, send error).",
        get(&syslog.dropped),
    );
    let lag = r.replication_lag_ms.load(Ordering::Relaxed);
    if lag >= 0 {
        o.single(
            "tessera_replication_lag_seconds",
            "gauge",
            "How far this replica is behind its primary.",
            lag as f64 / 1e3,
        );
    }
    let following = r.replication_following.load(Ordering::Relaxed);
    if following >= 0 {
        o.single(
            "tessera_replication_following",
            "gauge",
            "1 while this replica follows its primary's change stream, 0 while it cannot.",
            following as f64,
        );
    }
    let pending = r.replication_outbox.load(Ordering::Relaxed);
    if pending >= 0 {
        o.single(
            "tessera_replication_outbox",
            "gauge",
            "Logins decided on this replica that the primary has not taken yet.",
            pending as f64,
        );
    }
    o.header(
        "tessera_replication_claims_total",
        "counter",
        "Cluster-wide replay protection on a replica: what the primary said to each claim (no_answer: decided locally).",
    );
    for c in ClaimMetric::ALL {
        o.sample(
            "tessera_replication_claims_total",
            &format!("outcome=\"{}\"", c.label()),
            get(&r.replication_claims[c as usize]),
        );
    }
    o.single(
        "tessera_replication_fenced",
        "gauge",
        "1 while this node refuses administrative writes because it may have been replaced as primary.",
        r.replication_fenced.load(Ordering::Relaxed) as f64,
    );
    let offset = r.replication_offset_ms.load(Ordering::Relaxed);
    if offset != i64::MIN {
        o.single(
            "tessera_replication_clock_offset_seconds",
            "gauge",
            "This replica's clock offset from its primary (positive: the primary is ahead).",
            offset as f64 / 1e3,
        );
    }

    let offset = r.database_clock_offset_ms.load(Ordering::Relaxed);
    if offset != i64::MIN {
        o.single(
            "tessera_database_clock_offset_seconds",
            "gauge",
            "This node's clock minus the database server's (shared database mode; positive: this node is ahead).",
            offset as f64 / 1e3,
        );
    }
    o.single(
        "tessera_secrets_unreadable_total",
        "counter",
        "Logins answered unavailable because a token secret did not open with this node's master key.",
        get(&r.secrets_unreadable),
    );

    o.header(
        "tessera_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP), applied (ok) or refused (error).",
    );
    o.sample("tessera_config_reloads_total", "result=\"ok\"", get(&r.config_reloads_ok));
    o.sample("tessera_config_reloads_total", "result=\"error\"", get(&r.config_reloads_failed));
    o.single(
        "tessera_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the configuration was last loaded successfully (start or SIGHUP).",
        r.config_last_reload_ok.load(Ordering::Relaxed),
    );
    o.single(
        "tessera_config_restart_pending",
        "gauge",
        "1 if the loaded configuration changed keys that take effect only after a restart.",
        get(&r.restart_pending),
    );

    // Only listeners that run (a certificate was loaded) are shown.
    let running: Vec<Listener> =
        Listener::ALL.into_iter().filter(|l| r.tls_not_after[*l as usize].load(Ordering::Relaxed) != 0).collect();
    if !running.is_empty() {
        o.header(
            "tessera_tls_reloads_total",
            "counter",
            "TLS certificate reloads applied (SIGHUP or changed files), by listener.",
        );
        for l in &running {
            o.sample(
                "tessera_tls_reloads_total",
                &format!("listener=\"{}\"", l.label()),
                get(&r.tls_reloads_ok[*l as usize]),
            );
        }
        o.header(
            "tessera_tls_reload_failures_total",
            "counter",
            "Changed TLS certificate files that were not applied (unreadable, mismatched key, bad CA): the previous \
             certificate stays in use.",
        );
        for l in &running {
            o.sample(
                "tessera_tls_reload_failures_total",
                &format!("listener=\"{}\"", l.label()),
                get(&r.tls_reloads_failed[*l as usize]),
            );
        }
        o.header(
            "tessera_tls_certificate_expiry_seconds",
            "gauge",
            "When the certificate served to new connections expires (notAfter, Unix seconds), by listener.",
        );
        for l in &running {
            o.sample(
                "tessera_tls_certificate_expiry_seconds",
                &format!("listener=\"{}\"", l.label()),
                r.tls_not_after[*l as usize].load(Ordering::Relaxed),
            );
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn counters_and_histogram_render_in_the_text_format() {
        let before = render(&External::default());
        let base = value(&before, "tessera_requests_total{protocol=\"radsec\",result=\"challenge\"}");
        let count = value(&before, "tessera_request_duration_seconds_count{protocol=\"radsec\"}");
        let le_1ms = value(&before, "tessera_request_duration_seconds_bucket{protocol=\"radsec\",le=\"0.001\"}");
        request(Protocol::Radsec, Outcome::Challenge, Duration::from_micros(700));
        request(Protocol::Radsec, Outcome::Challenge, Duration::from_secs(30));
        radius_dropped(Protocol::Radsec, DropReason::Overload);
        let after = render(&External::default());
        assert_eq!(value(&after, "tessera_requests_total{protocol=\"radsec\",result=\"challenge\"}"), base + 2.0);
        assert_eq!(value(&after, "tessera_request_duration_seconds_count{protocol=\"radsec\"}"), count + 2.0);
        assert_eq!(
            value(&after, "tessera_request_duration_seconds_bucket{protocol=\"radsec\",le=\"0.001\"}"),
            le_1ms + 1.0
        );
        assert!(value(&after, "tessera_radius_dropped_total{reason=\"overload\"}") >= 1.0);
        // every sample line belongs to a declared family, and buckets are cumulative
        let mut declared = Vec::new();
        for line in after.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
                assert!(declared.iter().any(|d| d == name || d == family), "undeclared sample {line}");
            }
        }
        assert!(!after.contains("tessera_replication_lag_seconds"), "absent until set");
    }

    /// Cost of recording, for the README: `cargo test --release -p
    /// tessera-server --lib metrics::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cost() {
        const N: u32 = 10_000_000;
        let t = std::time::Instant::now();
        for i in 0..N {
            request(Protocol::Radius, Outcome::Accept, Duration::from_micros(u64::from(i % 4096)));
        }
        let per = t.elapsed() / N;
        let t = std::time::Instant::now();
        for _ in 0..N {
            std::hint::black_box(std::time::Instant::now());
        }
        let clock = t.elapsed() / N;
        let threads: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(|| {
                    let t = std::time::Instant::now();
                    for i in 0..N {
                        request(Protocol::Radius, Outcome::Reject, Duration::from_micros(u64::from(i % 4096)));
                    }
                    t.elapsed() / N
                })
            })
            .collect();
        let contended: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        println!(
            "metrics::request: {per:?} per call alone, {contended:?} with 2 threads recording at once; Instant::now: {clock:?}"
        );
    }

    /// The hot path stays cheap: a recorded request is a few atomic adds.
    #[test]
    fn recording_needs_no_allocation_or_lock() {
        let t = std::time::Instant::now();
        for _ in 0..100_000 {
            request(Protocol::Rest, Outcome::Reject, Duration::from_micros(300));
        }
        // Generous bound for debug builds under load: 100k in well under a second.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
