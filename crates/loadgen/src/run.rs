//! The closed loop: C workers, each with one connection and its own disjoint
//! slice of accounts, send until the duration or the request budget runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Barrier;

use crate::accounts::{Account, Mode, Next, StepRule, Supply};
use crate::client::{ClientKind, Conn, Exchange, Target, Verdict};
use crate::sys::{self, Clock};

pub struct RunConfig {
    pub system: String,
    pub url: String,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub mode: Mode,
    pub rule: StepRule,
    pub server_pid: Option<i32>,
    pub threads: usize,
    pub client: ClientKind,
}

/// A request that did not get the expected answer.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub name: String,
    pub step: i64,
    pub kind: &'static str,
    pub status: Option<u16>,
    pub detail: String,
}

/// The accepted request with the highest step (for replay checks).
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub index: u64,
    pub name: String,
    pub step: i64,
    pub code: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub system: String,
    pub url: String,
    pub mode: &'static str,
    pub concurrency: usize,
    pub client_threads: usize,
    /// `raw` or `hyper`.
    pub client: &'static str,
    pub accounts: usize,
    pub first_account: u64,
    pub duration_s: f64,
    pub requests: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub http_errors: u64,
    pub transport_errors: u64,
    pub reconnects: u64,
    pub throughput_rps: f64,
    /// Milliseconds, from just before the request is written to the last byte of the response.
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
    /// Of the RSS: anonymous memory (heap, stacks) and file-backed pages (binary, mmap'ed database).
    pub server_rss_anon_kib: Option<u64>,
    pub server_rss_file_kib: Option<u64>,
    /// Whole machine busy during the run, percent of all CPUs (client + server + anything else).
    pub machine_busy_pct: Option<f64>,
    pub machine_cpus: usize,
    /// Worker-seconds spent waiting because every account of the worker had
    /// used all currently valid steps (divided by C: average seconds per worker).
    pub code_supply_exhausted_s: f64,
    pub failures: Vec<Failure>,
    pub last_accepted: Option<Accepted>,
    pub ok: bool,
}

struct WorkerStats {
    hist: Histogram<u64>,
    accepts: u64,
    rejects: u64,
    http_errors: u64,
    transport_errors: u64,
    reconnects: u64,
    exhausted: Duration,
    failures: Vec<Failure>,
    last_accepted: Option<(usize, i64, u32)>,
}

const MAX_FAILURES_KEPT: usize = 5;

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

struct Shared {
    target: Target,
    accounts: Vec<Account>,
    clock: Clock,
    issued: AtomicU64,
    max_requests: u64,
    duration: Duration,
    mode: Mode,
    client: ClientKind,
    barrier: Barrier,
}

async fn connect_retrying(sh: &Shared, until: Instant) -> Option<Conn> {
    let mut delay = Duration::from_millis(5);
    loop {
        match Conn::open(&sh.target, sh.client).await {
            Ok(s) => return Some(s),
            Err(e) => {
                if Instant::now() + delay >= until {
                    eprintln!("connect failed: {e:#}");
                    return None;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}

async fn worker(sh: Arc<Shared>, mut supply: Supply) -> anyhow::Result<WorkerStats> {
    let mut st = WorkerStats {
        hist: new_hist(),
        accepts: 0,
        rejects: 0,
        http_errors: 0,
        transport_errors: 0,
        reconnects: 0,
        exhausted: Duration::ZERO,
        failures: Vec::new(),
        last_accepted: None,
    };
    let first = Conn::open(&sh.target, sh.client).await;
    sh.barrier.wait().await;
    let mut conn = Some(first?);
    let deadline = Instant::now() + sh.duration;
    let protocol = sh.target.protocol;
    'outer: loop {
        if Instant::now() >= deadline {
            break;
        }
        if sh.issued.fetch_add(1, Ordering::Relaxed) >= sh.max_requests {
            break;
        }
        let (slot, step, code) = match supply.next(&sh.accounts, sh.clock.unix()) {
            Next::Code { slot, step, code } => (slot, step, code),
            Next::WaitUntil(t) => {
                sh.issued.fetch_sub(1, Ordering::Relaxed);
                let wake = sh.clock.instant_at(t + 0.001).min(deadline);
                let before = Instant::now();
                tokio::time::sleep_until(wake.into()).await;
                st.exhausted += before.elapsed();
                continue;
            }
        };
        let account = &sh.accounts[supply.account(slot)];
        let req = protocol.body(&account.name, code);
        let mut attempts = 0;
        let (status, body, close, latency) = loop {
            if conn.is_none() {
                match connect_retrying(&sh, deadline + Duration::from_secs(5)).await {
                    Some(c) => {
                        conn = Some(c);
                        st.reconnects += 1;
                    }
                    None => {
                        st.transport_errors += 1;
                        push_failure(&mut st.failures, account, step, "connect", None, String::new());
                        break 'outer;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let t0 = Instant::now();
            match c.exchange(&sh.target, req.clone()).await {
                Exchange::Response { status, body, close } => break (status, body, close, t0.elapsed()),
                Exchange::NotSent => {
                    conn = None;
                    attempts += 1;
                    if attempts > 3 {
                        st.transport_errors += 1;
                        push_failure(&mut st.failures, account, step, "transport", None, "connection closed".into());
                        continue 'outer;
                    }
                }
                Exchange::Failed(e) => {
                    conn = None;
                    st.transport_errors += 1;
                    push_failure(&mut st.failures, account, step, "transport", None, format!("{e:#}"));
                    continue 'outer;
                }
            }
        };
        if close {
            conn = None;
        }
        st.hist.saturating_record(latency.as_micros().max(1) as u64);
        match protocol.verdict(status, &body) {
            Verdict::Accept => {
                st.accepts += 1;
                if sh.mode == Mode::Wrong {
                    push_failure(&mut st.failures, account, step, "accept", Some(status.as_u16()), snippet(&body));
                }
                if st.last_accepted.is_none_or(|(_, s, _)| step >= s) {
                    st.last_accepted = Some((supply.account(slot), step, code));
                }
            }
            Verdict::Reject => {
                st.rejects += 1;
                if sh.mode == Mode::Correct {
                    push_failure(&mut st.failures, account, step, "reject", Some(status.as_u16()), snippet(&body));
                }
            }
            Verdict::Other => {
                st.http_errors += 1;
                push_failure(&mut st.failures, account, step, "http", Some(status.as_u16()), snippet(&body));
            }
        }
    }
    Ok(st)
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

fn push_failure(v: &mut Vec<Failure>, a: &Account, step: i64, kind: &'static str, status: Option<u16>, detail: String) {
    if v.len() < MAX_FAILURES_KEPT {
        v.push(Failure { name: a.name.clone(), step, kind, status, detail });
    }
}

fn kib(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs the closed loop on its own runtime (current-thread when `threads` is 1).
pub fn run(cfg: RunConfig, target: Target, accounts: Vec<Account>) -> anyhow::Result<Report> {
    let rt = if cfg.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.threads).enable_all().build()?
    };
    rt.block_on(run_async(cfg, target, accounts))
}

async fn run_async(cfg: RunConfig, target: Target, accounts: Vec<Account>) -> anyhow::Result<Report> {
    let c = cfg.concurrency.max(1);
    if accounts.len() < c {
        anyhow::bail!("{} accounts for {c} workers: need at least one account per worker", accounts.len());
    }
    let clock = Clock::new();
    let now = clock.unix();
    let horizon = cfg.duration.as_secs_f64() + 10.0;
    let supplies: Vec<Supply> = (0..c)
        .map(|w| Supply::new(&accounts, (w..accounts.len()).step_by(c).collect(), cfg.rule, cfg.mode, now, horizon))
        .collect();
    let first_account = accounts.first().map(|a| a.index).unwrap_or(0);
    let n_accounts = accounts.len();
    let sh = Arc::new(Shared {
        target,
        accounts,
        clock,
        issued: AtomicU64::new(0),
        max_requests: cfg.max_requests.unwrap_or(u64::MAX),
        duration: cfg.duration,
        mode: cfg.mode,
        client: cfg.client,
        barrier: Barrier::new(c + 1),
    });
    let handles: Vec<_> = supplies.into_iter().map(|s| tokio::spawn(worker(sh.clone(), s))).collect();
    // All connections are open (or failed) once every worker reaches the barrier.
    sh.barrier.wait().await;
    let t0 = Instant::now();
    let (u0, s0) = sys::self_cpu();
    let server0 = cfg.server_pid.and_then(sys::tree_cpu);
    let busy0 = sys::machine_jiffies();
    let mut stats = Vec::with_capacity(c);
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(s)) => stats.push(s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(e.into());
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (u1, s1) = sys::self_cpu();
    let server1 = cfg.server_pid.and_then(sys::tree_cpu);
    let busy1 = sys::machine_jiffies();
    let mem = cfg.server_pid.map(sys::tree_memory).unwrap_or_default();
    if let Some(e) = first_err {
        return Err(e.context("a worker could not start (is the server up? is --ca right?)"));
    }

    let mut hist = new_hist();
    let mut r = Report {
        system: cfg.system,
        url: cfg.url,
        mode: match cfg.mode {
            Mode::Correct => "correct",
            Mode::Wrong => "wrong",
        },
        concurrency: c,
        client_threads: cfg.threads.max(1),
        client: match cfg.client {
            ClientKind::Raw => "raw",
            ClientKind::Hyper => "hyper",
        },
        accounts: n_accounts,
        first_account,
        duration_s: elapsed,
        requests: 0,
        accepts: 0,
        rejects: 0,
        http_errors: 0,
        transport_errors: 0,
        reconnects: 0,
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
        r.accepts += s.accepts;
        r.rejects += s.rejects;
        r.http_errors += s.http_errors;
        r.transport_errors += s.transport_errors;
        r.reconnects += s.reconnects;
        exhausted += s.exhausted;
        for f in &s.failures {
            if r.failures.len() < 20 {
                r.failures.push(f.clone());
            }
        }
        if let Some(a) = s.last_accepted
            && last.is_none_or(|b| a.1 > b.1)
        {
            last = Some(a);
        }
    }
    r.requests = r.accepts + r.rejects + r.http_errors + r.transport_errors;
    r.throughput_rps = r.requests as f64 / elapsed.max(1e-9);
    r.latency_ms = Latency {
        p50: ms(&hist, 0.50),
        p90: ms(&hist, 0.90),
        p99: ms(&hist, 0.99),
        p999: ms(&hist, 0.999),
        max: hist.max() as f64 / 1000.0,
        mean: hist.mean() / 1000.0,
    };
    let n = r.requests.max(1) as f64;
    r.client_cpu_us_per_req = r.client_cpu_s * 1e6 / n;
    r.server_cpu_us_per_req = r.server_cpu_s.map(|cpu| cpu * 1e6 / n);
    r.code_supply_exhausted_s = exhausted.as_secs_f64() / c as f64;
    r.last_accepted = last.map(|(i, step, code)| {
        let a = &sh.accounts[i];
        let mut s = Vec::new();
        crate::accounts::push_code(&mut s, code);
        Accepted { index: a.index, name: a.name.clone(), step, code: String::from_utf8_lossy(&s).into_owned() }
    });
    r.ok = r.requests > 0
        && r.http_errors == 0
        && r.transport_errors == 0
        && match cfg.mode {
            Mode::Correct => r.rejects == 0,
            Mode::Wrong => r.accepts == 0,
        };
    Ok(r)
}

impl Report {
    pub fn print(&self) {
        let l = &self.latency_ms;
        println!(
            "{} {} c={} accounts={} (from {}) client={}x{}: {} requests in {:.2}s = {:.0} req/s",
            self.system,
            self.mode,
            self.concurrency,
            self.accounts,
            self.first_account,
            self.client,
            self.client_threads,
            self.requests,
            self.duration_s,
            self.throughput_rps
        );
        println!(
            "  accepts={} rejects={} http_errors={} transport_errors={} reconnects={}",
            self.accepts, self.rejects, self.http_errors, self.transport_errors, self.reconnects
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
                "  code supply exhausted for {:.2}s per worker on average (every account had used all valid steps)",
                self.code_supply_exhausted_s
            );
        }
        for f in &self.failures {
            println!(
                "  FAILED {} step {} {}{}: {}",
                f.name,
                f.step,
                f.kind,
                f.status.map(|s| format!(" http {s}")).unwrap_or_default(),
                f.detail
            );
        }
        println!("  result: {}", if self.ok { "OK" } else { "FAIL" });
    }
}
