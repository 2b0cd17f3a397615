//! Test harness: a `tessera serve` child process in a temp directory, the
//! CLI against the same data directory, an HTTPS client trusting the node's
//! generated certificate, and code helpers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_otp::{Algorithm, Digits, Keyed, Period, Secret, format_code, time_step};

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestNode {
    dir: std::sync::Arc<tempfile::TempDir>,
    /// Run the CLI in `dir` itself with default paths (README case) rather than `--data`.
    default_paths: bool,
    child: Option<Child>,
    port: u16,
    /// Bound addresses by kind, from the `listening <kind> <addr>` lines.
    listening: std::collections::HashMap<String, String>,
    client: Option<reqwest::Client>,
    /// Environment for every command and server of this node (e.g. the
    /// shared database URL and the node name).
    env: Vec<(String, String)>,
    /// Another `tessera` binary for this node's commands and server (the
    /// previous release, in the upgrade tests); `None`: this build's.
    binary: Option<PathBuf>,
}

impl TestNode {
    pub fn new() -> Self {
        TestNode {
            dir: std::sync::Arc::new(tempfile::tempdir().unwrap()),
            default_paths: false,
            child: None,
            port: 0,
            listening: Default::default(),
            client: None,
            env: Vec::new(),
            binary: None,
        }
    }

    /// A second server process on the same data directory (and key).
    pub fn sibling(&self) -> Self {
        TestNode {
            dir: self.dir.clone(),
            default_paths: self.default_paths,
            child: None,
            port: 0,
            listening: Default::default(),
            client: None,
            env: self.env.clone(),
            binary: self.binary.clone(),
        }
    }

    pub fn in_empty_cwd() -> Self {
        let mut n = Self::new();
        n.default_paths = true;
        n
    }

    /// Sets an environment variable for every later command and server.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Runs this node's commands and server with `binary` from now on
    /// (`None`: this build's `tessera`).
    pub fn set_binary(&mut self, binary: Option<&Path>) {
        self.binary = binary.map(Path::to_path_buf);
    }

    pub fn cwd(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        if self.default_paths { self.dir.path().join("tessera-data") } else { self.dir.path().join("data") }
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("tessera.key")
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(self.binary.as_deref().unwrap_or(Path::new(BIN)));
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("TESSERA_") {
                c.env_remove(k);
            }
        }
        if !self.default_paths {
            c.arg("--data").arg(self.data());
        }
        c.args(args);
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.envs(env.iter().copied());
        // `TESSERA_TEST_LOG=info cargo test …` shows more of the servers' logs.
        c.env("TESSERA_LOG", std::env::var("TESSERA_TEST_LOG").unwrap_or_else(|_| "warn".into()));
        c
    }

    /// The CLI command with this node's directory and environment, to run
    /// as the caller likes (e.g. beside a load in another thread).
    pub fn cli(&self, args: &[&str]) -> Command {
        self.command(args, &[])
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_env(args, &[])
    }

    /// Like [`TestNode::ok`] with extra environment variables.
    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.command(args, env).output().unwrap();
        assert!(
            out.status.success(),
            "tessera {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        let mut child = self
            .command(args, &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "tessera {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a CLI command; its stdout when it succeeded.
    pub fn fail_or_ok(&self, args: &[&str]) -> Option<String> {
        let out = self.command(args, &[]).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a CLI command that must fail with `code`; returns stdout+stderr.
    pub fn fail(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> String {
        let out = self.command(args, env).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "tessera {args:?}: {text}");
        text
    }

    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    pub fn start_with(&mut self, env: &[(&str, &str)]) {
        self.start_wrapped(&[], env);
    }

    /// Starts `tessera serve` as the last arguments of `wrapper` (e.g.
    /// `["faketime", "-f", "+120s"]`), with extra environment variables.
    pub fn start_wrapped(&mut self, wrapper: &[&str], env: &[(&str, &str)]) {
        self.start_serve(wrapper, &[], env);
    }

    /// Starts `tessera serve SERVE_ARGS…` as the last arguments of
    /// `wrapper` (may be empty), with extra environment variables.
    pub fn start_serve(&mut self, wrapper: &[&str], serve_args: &[&str], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "already running");
        let mut all = vec![("TESSERA_HTTP_LISTEN", "127.0.0.1:0"), ("TESSERA_RADIUS_LISTEN", "127.0.0.1:0")];
        all.extend_from_slice(env);
        let args: Vec<&str> = std::iter::once("serve").chain(serve_args.iter().copied()).collect();
        let mut command = self.command(&args, &all);
        if let Some((program, args)) = wrapper.split_first() {
            let mut wrapped = Command::new(program);
            wrapped.args(args).arg(command.get_program()).args(command.get_args());
            wrapped.current_dir(self.dir.path());
            for (k, v) in command.get_envs() {
                match v {
                    Some(v) => wrapped.env(k, v),
                    None => wrapped.env_remove(k),
                };
            }
            command = wrapped;
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let (ltx, lrx) = mpsc::channel::<(String, String)>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((kind, addr)) = line.strip_prefix("listening ").and_then(|r| r.split_once(' ')) {
                    let _ = ltx.send((kind.to_string(), addr.to_string()));
                }
                if let Some(addr) = line.strip_prefix("listening https ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[tessera] {line}");
            }
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("tessera serve did not report a listening address within {START_TIMEOUT:?}");
            }
        };
        self.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        self.listening = lrx.try_iter().collect();
        self.child = Some(child);
        // The generated certificate; a node given its own (`[http]
        // tls_cert`) gets a client trusting the system roots, and its test
        // builds the clients it needs.
        let builder = match std::fs::read(self.data().join("tls/cert.pem")) {
            Ok(pem) => reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]),
            Err(_) => reqwest::Client::builder(),
        };
        self.client = Some(builder.timeout(Duration::from_secs(30)).build().unwrap());
    }

    /// `tessera serve` that must exit non-zero quickly; returns its output.
    pub fn serve_expect_failure(&self, env: &[(&str, &str)]) -> String {
        let mut all = vec![("TESSERA_HTTP_LISTEN", "127.0.0.1:0"), ("TESSERA_RADIUS_LISTEN", "127.0.0.1:0")];
        all.extend_from_slice(env);
        let mut child = self.command(&["serve"], &all).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(!status.success(), "serve should have failed");
                let out = child.wait_with_output().unwrap();
                return format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve kept running although it should have refused to start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops a server started through a wrapper that waits for it (e.g.
    /// `faketime`, which does not pass signals on): SIGTERM to the server
    /// itself (the wrapper's child, by id), then the wrapper exits with it.
    pub fn stop_wrapped(&mut self) {
        let Some(c) = self.child.as_ref() else { return };
        let pid = c.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").arg("-TERM").arg(child).status();
        }
        let mut c = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while c.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the wrapped server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("server did not stop within {within:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if self.child.is_some() {
            let s = self.terminate(Duration::from_secs(15));
            assert!(s.success(), "unclean exit: {s:?}");
        }
    }

    pub fn client(&self) -> reqwest::Client {
        self.client.clone().expect("server started")
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the running server.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().unwrap();
        assert!(ok.success(), "kill -{name} failed");
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// The HTTPS port the server announced.
    pub fn https_port(&self) -> u16 {
        self.port
    }

    /// Starts the server again on the ports it had (a node coming back at
    /// the address its peers know).
    pub fn restart_same_ports(&mut self) {
        let https = format!("127.0.0.1:{}", self.port);
        let radius = self.listening.get("radius").cloned().unwrap_or_else(|| "127.0.0.1:0".into());
        self.start_with(&[("TESSERA_HTTP_LISTEN", &https), ("TESSERA_RADIUS_LISTEN", &radius)]);
    }

    /// The address a listener of `kind` (`radius`, `radsec`, …) bound.
    pub fn listening(&self, kind: &str) -> String {
        self.listening.get(kind).cloned().unwrap_or_else(|| panic!("no `{kind}` listener: {:?}", self.listening))
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.port, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client().get(self.url(path)).send().await.unwrap()
    }

    /// POST /api/v1/validate without insisting on 200: (status, body).
    pub async fn try_validate(&self, user: &str, password: &str) -> (u16, Value) {
        let r = self
            .client()
            .post(self.url("/api/v1/validate"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn validate(&self, user: &str, password: &str) -> Value {
        let (status, body) = self.try_validate(user, password).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A node of the shared PostgreSQL database at `url`, called `name`.
pub fn on_database(url: &str, name: &str) -> TestNode {
    let mut n = TestNode::new();
    n.set_env("TESSERA_DATABASE_URL", url);
    n.set_env("TESSERA_SERVER_NODE_NAME", name);
    n
}

/// Cluster helpers: named nodes sharing a master key, joining with fresh
/// single-use tokens.
pub mod cluster {
    use super::*;

    /// An initialised node called `name` (node names must differ within a
    /// cluster; every test node runs on this one host).
    pub fn named(name: &str) -> TestNode {
        let mut n = TestNode::new();
        n.set_env("TESSERA_SERVER_NODE_NAME", name);
        n.ok(&["init"]);
        n
    }

    /// A node called `name` with `primary`'s key file, initialised, not started.
    pub fn with_key_of(primary: &TestNode, name: &str) -> TestNode {
        let mut n = TestNode::new();
        n.set_env("TESSERA_SERVER_NODE_NAME", name);
        std::fs::copy(primary.key_file(), n.key_file()).unwrap();
        chmod(&n.key_file(), 0o600);
        n.ok(&["init"]);
        n
    }

    /// A fresh join token from `primary` (running), and its certificate pin.
    pub fn token(primary: &TestNode) -> (String, String) {
        let t: Value = serde_json::from_str(&primary.ok(&["replica", "token", "--json"])).unwrap();
        (t["token"].as_str().unwrap().to_string(), t["pin"].as_str().unwrap().to_string())
    }

    /// Joins `replica` (stopped) to `primary` (running) with a new token.
    pub fn join(primary: &TestNode, replica: &TestNode) {
        let (token, pin) = token(primary);
        let out = replica.ok(&["replica", "join", &primary.url(""), "--token", &token, "--pin", &pin]);
        assert!(out.starts_with("joined "), "{out}");
    }

    /// Polls `f` every 50 ms until it is true, at most `limit`; the time it took.
    pub async fn within<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while start.elapsed() < limit {
            if f().await {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// `user show NAME --json` on `n`, if the user exists there.
    pub fn user(n: &TestNode, name: &str) -> Option<Value> {
        n.fail_or_ok(&["user", "show", name, "--json"]).and_then(|o| serde_json::from_str::<Value>(&o).ok())
    }

    /// Whether `name` is an active user (with a confirmed token) on `n`.
    pub fn active(n: &TestNode, name: &str) -> bool {
        user(n, name).is_some_and(|v| v["user"]["status"] == "active")
    }

    /// `replica status --json`.
    pub fn status(n: &TestNode) -> Value {
        serde_json::from_str(&n.ok(&["replica", "status", "--json"])).unwrap()
    }

    /// Audit records on `n` of `action` (JSON lines of `audit list`).
    pub fn audit(n: &TestNode, action: &str) -> Vec<Value> {
        let out = n.ok(&["audit", "list", "--action", action, "--json", "--limit", "1000"]);
        match serde_json::from_str::<Value>(&out) {
            Ok(Value::Array(v)) => v,
            _ => out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
        }
    }
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

pub fn chmod(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

pub fn sha256_file(p: &Path) -> String {
    use std::fmt::Write as _;
    let bytes = std::fs::read(p).unwrap();
    // A cheap stable fingerprint is enough to see "unchanged".
    let mut h: u64 = 0xcbf29ce484222325;
    for b in &bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let mut s = String::new();
    write!(s, "{h:016x}-{}", bytes.len()).unwrap();
    s
}

/// Folds the WAL into the database file so the file alone holds the data.
pub fn checkpoint(db: &Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
}

pub fn backup_codes(out: &str) -> Vec<String> {
    out.lines().filter(|l| l.starts_with("  ")).map(|l| l.trim().replace('-', "")).collect()
}

#[derive(Clone, Copy)]
pub struct Params {
    pub digits: u8,
    pub sha: &'static str,
    pub period: u32,
}

fn now() -> i64 {
    #[allow(clippy::disallowed_methods)]
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    d.as_secs() as i64
}

/// Sleeps past the next TOTP step boundary when fewer than 4 s of the
/// current step remain. A code computed just before a boundary reaches the
/// server a step late; the server then learns a drift of -1 and rightly
/// refuses the test's next "one step ahead" code, which made sequences of
/// codes flaky on slow machines.
fn clear_of_step_edge(period: u64) {
    #[allow(clippy::disallowed_methods)]
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let into = ms % (period * 1000);
    let left = period * 1000 - into;
    if left < 4000 {
        std::thread::sleep(Duration::from_millis(left + 100));
    }
}

pub fn hotp_code(base32: &str, counter: u64) -> String {
    let s = Secret::from_base32(base32).unwrap();
    format_code(Keyed::new(&s, Algorithm::Sha1).hotp(counter, Digits::SIX), Digits::SIX)
}

/// The default-parameter TOTP code `steps` steps from now.
pub fn totp_now(base32: &str, steps: i64) -> String {
    codes::totp_with(base32, Params { digits: 6, sha: "SHA1", period: 30 }, steps * 30)
}

pub mod codes {
    use super::*;

    /// The code `offset_s` seconds from now.
    pub fn totp_with(base32: &str, p: Params, offset_s: i64) -> String {
        clear_of_step_edge(u64::from(p.period));
        let s = Secret::from_base32(base32).unwrap();
        let alg: Algorithm = p.sha.parse().unwrap();
        let digits = Digits::new(p.digits).unwrap();
        let step = time_step(now() + offset_s, Period::new(p.period).unwrap());
        format_code(Keyed::new(&s, alg).hotp(step as u64, digits), digits)
    }

    /// The default TOTP code `offset_s` seconds from now, computed by
    /// Debian's oathtool when installed (the product promises agreement),
    /// else by our engine.
    pub fn oathtool_or_ours(base32: &str, offset_s: i64) -> String {
        clear_of_step_edge(30);
        let t = now() + offset_s;
        match Command::new("oathtool").args(["-b", "--totp", &format!("--now=@{t}"), base32]).output() {
            Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap().trim().to_string(),
            _ => {
                assert!(
                    std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() != Ok("1"),
                    "oathtool is required (TESSERA_REQUIRE_TOOLS=1) but not installed"
                );
                totp_with(base32, Params { digits: 6, sha: "SHA1", period: 30 }, offset_s)
            }
        }
    }
}

/// Whether a Debian tool the test drives is installed. Missing tools skip
/// the test with a message, unless `TESSERA_REQUIRE_TOOLS=1` (the test
/// command sets it), which makes them a failure.
pub fn require_tool(name: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{name} is required (TESSERA_REQUIRE_TOOLS=1) but not installed"
        );
        eprintln!("skipping: {name} is not installed");
    }
    found
}

/// What FreeRADIUS's `radclient` printed for one exchange.
#[derive(Debug)]
pub struct RadReply {
    /// `Access-Accept`, `Access-Challenge`, …; `None` when no reply came in time.
    pub code: Option<String>,
    pub output: String,
}

impl RadReply {
    pub fn attr(&self, name: &str) -> Option<String> {
        self.output.lines().map(str::trim).find_map(|l| {
            let (k, v) = l.split_once(" = ")?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
        })
    }
}

/// One `radclient` exchange (one try, `timeout_s` to answer); `attrs` in
/// radclient's syntax.
pub fn radclient(addr: &str, kind: &str, secret: &str, attrs: &str, timeout_s: u32) -> RadReply {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", &timeout_s.to_string(), addr, kind, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient");
    child.stdin.take().unwrap().write_all(attrs.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let code =
        output.lines().find_map(|l| Some(l.trim().strip_prefix("Received ")?.split_whitespace().next()?.to_string()));
    RadReply { code, output }
}

/// A PAP Access-Request with a Message-Authenticator; `extra` is appended
/// to the attribute list (`", State = 0x…"`).
pub fn radclient_pap(addr: &str, secret: &str, user: &str, password: &str, extra: &str, timeout_s: u32) -> RadReply {
    let attrs =
        format!("User-Name = \"{user}\", User-Password = \"{password}\", Message-Authenticator = 0x00{extra}\n");
    radclient(addr, "auth", secret, &attrs, timeout_s)
}

/// A PAM service using Debian's pam_radius with the given server lines
/// (`host:port secret timeout`), for driving logins with `pamtester`.
/// `None` (the test is skipped, with a message) when pamtester or
/// libpam-radius-auth is missing or the test is not root, unless
/// `TESSERA_REQUIRE_TOOLS=1`, which makes that a failure. The service file
/// is removed on drop.
pub struct PamRadius {
    service: String,
    file: PathBuf,
    _conf_dir: tempfile::TempDir,
}

impl PamRadius {
    pub fn new(servers: &[String]) -> Option<PamRadius> {
        let module = [
            "/lib/x86_64-linux-gnu/security/pam_radius_auth.so",
            "/usr/lib/x86_64-linux-gnu/security/pam_radius_auth.so",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists());
        if !require_tool("pamtester") {
            return None;
        }
        let required = std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() == Ok("1");
        let Some(module) = module else {
            assert!(!required, "libpam-radius-auth is required");
            eprintln!("skipping: libpam-radius-auth is not installed");
            return None;
        };
        let root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
        };
        if !root {
            assert!(!required, "writing /etc/pam.d needs root");
            eprintln!("skipping: writing a PAM service file needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("pam_radius_auth.conf");
        std::fs::write(&conf, servers.iter().map(|s| format!("{s}\n")).collect::<String>()).unwrap();
        chmod(&conf, 0o600);
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let service = format!("tessera-e2e-{}-{n}", std::process::id());
        let file = Path::new("/etc/pam.d").join(&service);
        std::fs::write(
            &file,
            format!("auth required {module} conf={}\naccount required pam_permit.so\n", conf.display()),
        )
        .unwrap();
        Some(PamRadius { service, file, _conf_dir: dir })
    }

    /// `pamtester … authenticate` with `password` typed at the prompt:
    /// whether it succeeded, and its output.
    pub fn authenticate(&self, user: &str, password: &str) -> (bool, String) {
        let mut child = Command::new("pamtester")
            .args(["-v", &self.service, user, "authenticate"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }
}

impl Drop for PamRadius {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}
