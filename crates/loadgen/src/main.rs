//! `tessera-loadgen`: closed-loop load generator for tessera's
//! `POST /api/v1/validate` and RADIUS Access-Request path, and for
//! privacyIDEA's `POST /validate/check` and FreeRADIUS (rlm_totp) as peer
//! baselines. See `bench/README.md`.

mod accounts;
mod client;
mod radius;
mod raw;
mod run;
mod setup;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::accounts::{Mode, StepRule, step_of};
use crate::client::{ClientKind, Conn, Exchange, Protocol, Target, Verdict};
use crate::run::{Report, RunConfig};

#[derive(Parser)]
#[command(
    name = "tessera-loadgen",
    version,
    about = "Closed-loop load generator for tessera (and privacyIDEA, FreeRADIUS)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Fresh, valid, never-repeated codes (every reply must be accept).
    Correct,
    /// Codes outside the window, round robin over the accounts (every reply must be reject).
    Wrong,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Correct => Mode::Correct,
            ModeArg::Wrong => Mode::Wrong,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ClientArg {
    Raw,
    Hyper,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Expect {
    Accept,
    Reject,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Closed-loop workers, each with one keep-alive connection (REST) or one
    /// outstanding Access-Request (RADIUS).
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many requests.
    #[arg(long)]
    max_requests: Option<u64>,
    #[arg(long, value_enum, default_value = "correct")]
    mode: ModeArg,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also report CPU time and memory of this process and its descendants.
    #[arg(long)]
    server_pid: Option<i32>,
    /// Client runtime threads (1 = a single-threaded runtime, the cheapest).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// HTTP client: `raw` (one task per connection, cheapest) or `hyper`. (REST only.)
    #[arg(long, value_enum, default_value = "raw")]
    client: ClientArg,
    /// Do not hand out a code whose step leaves the server's window within this many seconds
    /// [default: 3; 0.25 for `radius --peer-csv`, whose server accepts the current step only].
    #[arg(long)]
    margin: Option<f64>,
}

/// Default `--margin`: a code for the oldest acceptable step must stay valid this long.
const DEFAULT_MARGIN_S: f64 = 3.0;
/// Default `--margin` against FreeRADIUS: it accepts only the current step, so
/// no code is sent in the last 0.25 s of a step (far above its latency) and
/// the slots pause that long at each boundary.
const PEER_MARGIN_S: f64 = 0.25;
/// Against FreeRADIUS, no code for a new step in its first 0.1 s: it judged
/// codes sent 2 ms into their step by the previous one.
const PEER_LEAD_S: f64 = 0.1;

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct SecretArgs {
    /// Read the RADIUS shared secret from the first line of this file.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// The RADIUS shared secret itself (visible in `ps`: for throw-away bench secrets only).
    #[arg(long)]
    secret: Option<String>,
}

impl SecretArgs {
    fn load(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.secret_file, &self.secret) {
            (Some(f), _) => radius::read_secret(f),
            (None, Some(s)) if !s.is_empty() => Ok(s.as_bytes().to_vec()),
            _ => anyhow::bail!("give --secret-file FILE or a non-empty --secret"),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Create bench users bench000000.. with TOTP tokens BENCH000000.. in a data dir (before starting the server).
    Setup {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        users: u64,
        #[arg(long, default_value = "1")]
        seed: String,
        /// Writes in flight at once.
        #[arg(long, default_value_t = 256)]
        parallel: usize,
    },
    /// Load tessera's POST /api/v1/validate over HTTPS.
    Rest {
        /// https://127.0.0.1:PORT
        #[arg(long)]
        url: String,
        /// PEM certificate to trust (the only root).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Number of bench users to use.
        #[arg(long)]
        users: u64,
        /// First bench user index (use disjoint ranges for runs within the same 90 s).
        #[arg(long, default_value_t = 0)]
        first_user: u64,
        #[arg(long, default_value = "1")]
        seed: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Load privacyIDEA's POST /validate/check (by serial) over plain HTTP.
    Privacyidea {
        /// http://127.0.0.1:5000
        #[arg(long, default_value = "http://127.0.0.1:5000")]
        url: String,
        /// CSV `serial,hexkey[,...]`, no header.
        #[arg(long)]
        tokens: PathBuf,
        /// First row of the CSV to use.
        #[arg(long, default_value_t = 0)]
        first_token: u64,
        /// Rows to use (default: all from --first-token).
        #[arg(long)]
        token_count: Option<u64>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Load a RADIUS server's Access-Request path over UDP: tessera (bench users, OTP alone) or the
    /// FreeRADIUS peer (`--peer-csv`: password + current code).
    Radius {
        /// 127.0.0.1:PORT (loopback only).
        #[arg(long)]
        server: String,
        #[command(flatten)]
        secret: SecretArgs,
        /// Number of tessera bench users to use.
        #[arg(long, required_unless_present = "peer_csv", conflicts_with = "peer_csv")]
        users: Option<u64>,
        /// First bench user index (use disjoint ranges for runs within the same 90 s).
        #[arg(long, default_value_t = 0)]
        first_user: u64,
        #[arg(long, default_value = "1")]
        seed: String,
        /// FreeRADIUS peer users (`users.csv` from peers/freeradius/setup.sh: name,password,hexkey,base32).
        #[arg(long)]
        peer_csv: Option<PathBuf>,
        /// First row of --peer-csv to use.
        #[arg(long, default_value_t = 0, requires = "peer_csv")]
        first_row: u64,
        /// Rows of --peer-csv to use (default: all from --first-row).
        #[arg(long, requires = "peer_csv")]
        rows: Option<u64>,
        /// Re-send the current step's code (default with --peer-csv: FreeRADIUS 3.2.1 keeps no replay
        /// state, and one code per user and step would cap the load at users/30 s).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        reuse_codes: Option<bool>,
        /// With --peer-csv: send each row's password alone, without a code
        /// (first-factor benches, e.g. LDAP through RADIUS with a
        /// single-factor client exception on the server).
        #[arg(long, requires = "peer_csv")]
        password_only: bool,
        /// The system's name in the report (default: tessera, or FreeRADIUS with --peer-csv).
        #[arg(long)]
        system: Option<String>,
        /// UDP sockets (default: one per 256 outstanding requests).
        #[arg(long, default_value_t = 0)]
        sockets: usize,
        /// Seconds without a verified reply before a request counts as lost (never retransmitted).
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Send one code for one bench user over RADIUS and check the answer (e.g. a replay after a restart).
    RadiusProbe {
        /// 127.0.0.1:PORT (loopback only).
        #[arg(long)]
        server: String,
        #[command(flatten)]
        secret: SecretArgs,
        #[arg(long, default_value = "1")]
        seed: String,
        /// Bench user index.
        #[arg(long)]
        user: u64,
        /// Time step of the code (default: the current step plus --step-offset).
        #[arg(long, allow_negative_numbers = true)]
        step: Option<i64>,
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        step_offset: i64,
        #[arg(long, value_enum)]
        expect: Expect,
        /// Seconds to wait for the reply before retransmitting the same packet (3 sends in all).
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
    },
    /// Send one code for one bench user and check the answer (e.g. a replay after a restart).
    Probe {
        #[arg(long)]
        url: String,
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long, default_value = "1")]
        seed: String,
        /// Bench user index.
        #[arg(long)]
        user: u64,
        /// Time step of the code (default: the current step plus --step-offset).
        #[arg(long, allow_negative_numbers = true)]
        step: Option<i64>,
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        step_offset: i64,
        #[arg(long, value_enum)]
        expect: Expect,
    },
}

fn load(
    system: &str,
    url: String,
    target: Target,
    accounts: Vec<accounts::Account>,
    rule: StepRule,
    a: &LoadArgs,
) -> anyhow::Result<Report> {
    check_duration(a)?;
    let cfg = RunConfig {
        system: system.into(),
        url,
        concurrency: a.concurrency,
        duration: Duration::from_secs_f64(a.duration),
        max_requests: a.max_requests,
        mode: a.mode.into(),
        rule: StepRule { margin_s: a.margin.unwrap_or(DEFAULT_MARGIN_S), ..rule },
        server_pid: a.server_pid,
        threads: a.threads,
        client: match a.client {
            ClientArg::Raw => ClientKind::Raw,
            ClientArg::Hyper => ClientKind::Hyper,
        },
    };
    let report = run::run(cfg, target, accounts)?;
    report.print();
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

fn check_duration(a: &LoadArgs) -> anyhow::Result<()> {
    if !(a.duration > 0.0 && a.duration < 86_400.0) {
        anyhow::bail!("--duration must be between 0 and 86400 s");
    }
    Ok(())
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v > 0.0 && v <= 60.0) {
        anyhow::bail!("--{name} must be between 0 and 60 s");
    }
    Ok(Duration::from_secs_f64(v))
}

/// `radius` options beyond the accounts.
struct RadiusOptions {
    reuse_codes: Option<bool>,
    password_only: bool,
    system: Option<String>,
    sockets: usize,
    timeout: f64,
}

#[allow(clippy::too_many_arguments)]
fn radius_load(
    server: &str,
    secret: &SecretArgs,
    users: Option<u64>,
    first_user: u64,
    seed: &str,
    peer: Option<(PathBuf, u64, Option<u64>)>,
    opts: RadiusOptions,
    a: &LoadArgs,
) -> anyhow::Result<u8> {
    let RadiusOptions { reuse_codes, password_only, system: system_name, sockets, timeout } = opts;
    check_duration(a)?;
    let server = radius::loopback_addr(server)?;
    let secret = secret.load()?;
    let (system, accounts, rule) = match peer {
        // FreeRADIUS 3.2.1 rlm_totp: the current step only, no replay state.
        Some((csv, first, rows)) => (
            "FreeRADIUS",
            accounts::peer_accounts(&csv, first, rows)?,
            StepRule {
                lower: 0,
                upper: 0,
                margin_s: a.margin.unwrap_or(PEER_MARGIN_S),
                lead_s: PEER_LEAD_S,
                reuse: reuse_codes.unwrap_or(true),
            },
        ),
        // tessera: ±1 step, each step once per token, in increasing order.
        None => (
            "tessera",
            accounts::tessera_accounts(seed, first_user, users.unwrap_or(0))?,
            StepRule {
                lower: -1,
                upper: 1,
                margin_s: a.margin.unwrap_or(DEFAULT_MARGIN_S),
                lead_s: 0.0,
                reuse: reuse_codes.unwrap_or(false),
            },
        ),
    };
    let cfg = radius::RadiusConfig {
        system: system_name.unwrap_or_else(|| system.into()),
        server,
        secret,
        concurrency: a.concurrency,
        sockets,
        duration: Duration::from_secs_f64(a.duration),
        max_requests: a.max_requests,
        mode: a.mode.into(),
        rule,
        timeout: seconds("timeout", timeout)?,
        server_pid: a.server_pid,
        threads: a.threads,
        password_only,
    };
    let report = radius::run(cfg, accounts)?;
    report.print();
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(u8::from(!report.ok))
}

#[allow(clippy::too_many_arguments)]
fn radius_probe(
    server: &str,
    secret: &SecretArgs,
    seed: &str,
    user: u64,
    step: Option<i64>,
    offset: i64,
    expect: Expect,
    timeout: f64,
) -> anyhow::Result<u8> {
    let server = radius::loopback_addr(server)?;
    let secret = secret.load()?;
    let timeout = seconds("timeout", timeout)?;
    let account = accounts::tessera_accounts(seed, user, 1)?.remove(0);
    let clock = sys::Clock::new();
    let step = step.unwrap_or(step_of(clock.unix()) + offset);
    let mut password = account.password.as_bytes().to_vec();
    accounts::push_code(&mut password, account.code(step));
    let answer = small_runtime()?.block_on(radius::probe(server, &secret, &account.name, &password, timeout, 3))?;
    let now_step = step_of(clock.unix());
    let in_window = (now_step - 1..=now_step + 1).contains(&step);
    let word = match answer {
        radius::ProbeAnswer::Reply(radius::ReplyKind::Accept) => "Access-Accept",
        radius::ProbeAnswer::Reply(radius::ReplyKind::Reject) => "Access-Reject",
        radius::ProbeAnswer::Reply(radius::ReplyKind::Challenge) => "Access-Challenge",
        radius::ProbeAnswer::Reply(radius::ReplyKind::Other(_)) => "unexpected code",
        radius::ProbeAnswer::NoReply => "no reply",
    };
    let pass = matches!(
        (expect, answer),
        (Expect::Accept, radius::ProbeAnswer::Reply(radius::ReplyKind::Accept))
            | (Expect::Reject, radius::ProbeAnswer::Reply(radius::ReplyKind::Reject))
    );
    let inconclusive = !in_window && expect == Expect::Reject;
    let verdict = if inconclusive {
        "INCONCLUSIVE (step outside the ±1 window, so a reject proves nothing)"
    } else if pass {
        "PASS"
    } else {
        "FAIL"
    };
    let code_s = String::from_utf8_lossy(&password[account.password.len()..]).into_owned();
    println!(
        "radius-probe {} step {step} (now {now_step}) code {code_s}: {word}, expected {}: {verdict}",
        account.name,
        if expect == Expect::Accept { "accept" } else { "reject" }
    );
    Ok(if inconclusive {
        2
    } else if pass {
        0
    } else {
        1
    })
}

fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn probe(
    url: &str,
    ca: Option<PathBuf>,
    seed: &str,
    user: u64,
    step: Option<i64>,
    offset: i64,
    expect: Expect,
) -> anyhow::Result<u8> {
    let rt = small_runtime()?;
    rt.block_on(async {
        let target = Target::new(url, ca.as_deref(), Protocol::Tessera).await?;
        let account = accounts::tessera_accounts(seed, user, 1)?.remove(0);
        let clock = sys::Clock::new();
        let step = step.unwrap_or(step_of(clock.unix()) + offset);
        let code = account.code(step);
        let mut conn = Conn::open(&target, ClientKind::Raw).await?;
        let now_step = step_of(clock.unix());
        let (status, body) = match conn.exchange(&target, Protocol::Tessera.body(&account.name, code)).await {
            Exchange::Response { status, body, .. } => (status, body),
            Exchange::NotSent => anyhow::bail!("connection closed before the request was sent"),
            Exchange::Failed(e) => return Err(e),
        };
        let verdict = Protocol::Tessera.verdict(status, &body);
        let in_window = (now_step - 1..=now_step + 1).contains(&step);
        let pass = matches!((expect, verdict), (Expect::Accept, Verdict::Accept) | (Expect::Reject, Verdict::Reject));
        let word = match verdict {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Other => "error",
        };
        let code_s = {
            let mut v = Vec::new();
            accounts::push_code(&mut v, code);
            String::from_utf8_lossy(&v).into_owned()
        };
        let verdict_word = if !in_window && expect == Expect::Reject {
            "INCONCLUSIVE (step outside the ±1 window, so a reject proves nothing)"
        } else if pass {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "probe {} step {step} (now {now_step}) code {code_s}: http {} {word}, expected {}: {verdict_word}",
            account.name,
            status.as_u16(),
            if expect == Expect::Accept { "accept" } else { "reject" }
        );
        if verdict == Verdict::Other {
            println!("  body: {}", String::from_utf8_lossy(&body));
        }
        Ok(if !in_window && expect == Expect::Reject {
            2
        } else if pass {
            0
        } else {
            1
        })
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<u8> = (|| match cli.cmd {
        Cmd::Setup { data, users, seed, parallel } => setup::setup(&data, users, &seed, parallel).map(|_| 0),
        Cmd::Rest { url, ca, users, first_user, seed, load: a } => {
            let target = small_runtime()?.block_on(Target::new(&url, ca.as_deref(), Protocol::Tessera))?;
            let accounts = accounts::tessera_accounts(&seed, first_user, users)?;
            let rule = StepRule { lower: -1, upper: 1, margin_s: 0.0, lead_s: 0.0, reuse: false };
            let r = load("tessera", url, target, accounts, rule, &a)?;
            Ok(u8::from(!r.ok))
        }
        Cmd::Privacyidea { url, tokens, first_token, token_count, load: a } => {
            let target = small_runtime()?.block_on(Target::new(&url, None, Protocol::PrivacyIdea))?;
            let accounts = accounts::csv_accounts(&tokens, first_token, token_count)?;
            // privacyIDEA re-centres a token's window on each accepted step; use only the current and next step.
            let rule = StepRule { lower: 0, upper: 1, margin_s: 0.0, lead_s: 0.0, reuse: false };
            let r = load("privacyIDEA", url, target, accounts, rule, &a)?;
            Ok(u8::from(!r.ok))
        }
        Cmd::Radius {
            server,
            secret,
            users,
            first_user,
            seed,
            peer_csv,
            first_row,
            rows,
            reuse_codes,
            password_only,
            system,
            sockets,
            timeout,
            load: a,
        } => {
            let peer = peer_csv.map(|p| (p, first_row, rows));
            let opts = RadiusOptions { reuse_codes, password_only, system, sockets, timeout };
            radius_load(&server, &secret, users, first_user, &seed, peer, opts, &a)
        }
        Cmd::RadiusProbe { server, secret, seed, user, step, step_offset, expect, timeout } => {
            radius_probe(&server, &secret, &seed, user, step, step_offset, expect, timeout)
        }
        Cmd::Probe { url, ca, seed, user, step, step_offset, expect } => {
            probe(&url, ca, &seed, user, step, step_offset, expect)
        }
    })();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}
