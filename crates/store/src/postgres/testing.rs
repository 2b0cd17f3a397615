//! A private PostgreSQL for tests (feature `test-support`): Debian's
//! `postgresql` server binaries (`/usr/lib/postgresql/<v>/bin`), a cluster
//! made with `initdb` in a temp dir and started on a free loopback port,
//! once per test process ([`shared`]); each test gets a fresh database
//! ([`TestCluster::fresh_database`]). `DATABASE_URL` points the tests at an
//! existing server instead (each test still gets its own database there).
//!
//! `initdb` and `postgres` refuse to run as root: as root (CI) they run as
//! the `postgres` user (`runuser -u postgres --`), and the temp dir is
//! handed to that user. Statics are never dropped, so the server runs under
//! a small `sh` watchdog that stops it (a fast shutdown, SIGINT to the
//! postmaster's pid from `postmaster.pid`) and removes the temp dir as soon
//! as the test process's end of a pipe closes, however the process ends.
//!
//! Without the binaries [`shared`] returns `None` after printing why (the
//! caller skips its PostgreSQL cases), unless `TESSERA_REQUIRE_TOOLS=1`,
//! which makes it panic. Never for production builds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One server for the test process: ours, or the one `DATABASE_URL` names.
/// A private one can be stopped and started again ([`TestCluster::hold`],
/// [`TestCluster::resume`]) to test connection loss.
pub struct TestCluster {
    /// Connection settings for the maintenance database (`postgres`).
    admin: tokio_postgres::Config,
    dir: Option<PathBuf>,
    _watchdog: Option<Child>,
    _lifeline: Option<ChildStdin>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster").field("dir", &self.dir).finish()
    }
}

const WATCHDOG: &str = r#"
dir="$1"; log="$2"; shift 2
exec 3<&0
( read -r _ <&3
  touch "$dir/stopping"
  # The postmaster's own pid: `runuser` (as root) does not pass signals on.
  pm=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)
  [ -n "$pm" ] && kill -INT "$pm" 2>/dev/null ) &
reader=$!
exec 3<&-
while :; do
  "$@" >>"$log" 2>&1 </dev/null &
  pid=$!
  wait "$pid"; rc=$?
  # A test stopped the server on purpose (`hold`): start it again once the
  # file is gone, unless the test process has ended meanwhile.
  while [ -e "$dir/hold" ] && [ ! -e "$dir/stopping" ]; do sleep 0.05; done
  [ -e "$dir/stopping" ] && break
  [ -e "$dir/held" ] || break
  rm -f "$dir/held"
done
kill "$reader" 2>/dev/null
rm -rf "$dir"
exit "$rc"
"#;

/// The server binaries' directory: the newest `/usr/lib/postgresql/<v>/bin`
/// with an `initdb`.
fn bin_dir() -> io::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("/usr/lib/postgresql: {e}")))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root.
fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TestCluster {
    /// Starts a private server; `ErrorKind::NotFound` when the binaries are
    /// not installed.
    pub fn start() -> io::Result<TestCluster> {
        Self::start_with(None)
    }

    /// Starts a private server that also accepts TLS (`ssl = on`) with this
    /// PEM certificate chain and key.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> io::Result<TestCluster> {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> io::Result<TestCluster> {
        let bin = bin_dir()?;
        let mut last = None;
        for _ in 0..4 {
            match Self::start_once(&bin, tls) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("postgres did not start")))
    }

    fn start_once(bin: &Path, tls: Option<(&str, &str)>) -> io::Result<TestCluster> {
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("tessera-pg-").tempdir()?.keep();
        let data = dir.join("data");
        let log = dir.join("postgres.log");
        if as_postgres {
            let st = Command::new("chown").arg("-R").arg("postgres:").arg(&dir).status()?;
            if !st.success() {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(io::Error::other("chown of the PostgreSQL temp dir to `postgres` failed"));
            }
        }
        let out = command(as_postgres, &bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
            .arg(&data)
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io::Error::other(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut tls_args: Vec<String> = Vec::new();
        if let Some((cert, key)) = tls {
            // The server refuses a key file others can read; as root the
            // files are handed to `postgres` like the rest of the dir.
            use std::os::unix::fs::PermissionsExt;
            let (c, k) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::write(&c, cert)?;
            std::fs::write(&k, key)?;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))?;
            if as_postgres {
                Command::new("chown").arg("postgres:").arg(&c).arg(&k).status()?;
            }
            tls_args = vec![
                "-c".into(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", c.display()),
                "-c".into(),
                format!("ssl_key_file={}", k.display()),
            ];
        }
        let port = free_port()?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(&dir)
            .arg(&log)
            .args(if as_postgres { vec!["runuser", "-u", "postgres", "--"] } else { vec![] })
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=400", "-c", "shared_buffers=32MB"])
            .args(&tls_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let lifeline = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(io::Error::other(format!("postgres exited ({status}): {text}")));
            }
            if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(100)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(io::Error::other(format!("postgres did not listen within 30 s: {text}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut admin = tokio_postgres::Config::new();
        admin.host("127.0.0.1").port(port).user("postgres").dbname("postgres");
        Ok(TestCluster { admin, dir: Some(dir), _watchdog: Some(child), _lifeline: lifeline })
    }

    /// The server `DATABASE_URL` names, if set.
    fn from_env() -> Option<TestCluster> {
        let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty())?;
        let admin: tokio_postgres::Config = url.parse().unwrap_or_else(|e| panic!("DATABASE_URL: {e}"));
        Some(TestCluster { admin, dir: None, _watchdog: None, _lifeline: None })
    }

    /// Connection settings for the maintenance database.
    pub fn admin_config(&self) -> &tokio_postgres::Config {
        &self.admin
    }

    /// A `postgres://` URL for `config` (what `[database] url` takes).
    pub fn url_of(config: &tokio_postgres::Config) -> String {
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or("postgres");
        format!("postgres://{user}@{host}:{port}/{db}")
    }

    /// [`TestCluster::fresh_database`] as a URL.
    pub async fn fresh_database_url(&self) -> String {
        Self::url_of(&self.fresh_database().await)
    }

    fn port(&self) -> u16 {
        self.admin.get_ports().first().copied().unwrap_or(5432)
    }

    fn accepts(&self) -> bool {
        TcpStream::connect_timeout(&([127, 0, 0, 1], self.port()).into(), Duration::from_millis(100)).is_ok()
    }

    /// Stops a private server (fast shutdown: sessions are cut, as in a
    /// crash or restart of the database) and keeps it down until
    /// [`TestCluster::resume`]. Returns once the port refuses connections.
    pub fn hold(&self) {
        let dir = self.dir.as_ref().expect("hold() needs a private server");
        std::fs::write(dir.join("held"), b"").unwrap();
        std::fs::write(dir.join("hold"), b"").unwrap();
        let pid = std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap();
        let pid = pid.lines().next().unwrap().trim().to_string();
        let ok = Command::new("kill").arg("-INT").arg(&pid).status().unwrap();
        assert!(ok.success(), "kill -INT {pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.accepts() || dir.join("data/postmaster.pid").exists() {
            assert!(Instant::now() < deadline, "PostgreSQL did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a server stopped by [`TestCluster::hold`] again; returns once
    /// it accepts connections.
    pub fn resume(&self) {
        let dir = self.dir.as_ref().expect("resume() needs a private server");
        std::fs::remove_file(dir.join("hold")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.accepts() {
            assert!(Instant::now() < deadline, "PostgreSQL did not come back within 30 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server log (private servers only).
    pub fn log(&self) -> String {
        self.dir.as_ref().and_then(|d| std::fs::read_to_string(d.join("postgres.log")).ok()).unwrap_or_default()
    }

    /// Creates an empty database with a unique name and returns its
    /// connection settings. Retries while the server is still starting.
    pub async fn fresh_database(&self) -> tokio_postgres::Config {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::UNIX_EPOCH.elapsed().map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("tessera_t{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos);
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match self.admin.connect(tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    break client;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("connecting to the test PostgreSQL: {e}\n{}", self.log()),
            }
        };
        client
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let mut cfg = self.admin.clone();
        cfg.dbname(&name);
        cfg
    }
}

/// [`TestCluster::start`] (or `DATABASE_URL`), or `None` with a printed
/// message when PostgreSQL is not installed. With `TESSERA_REQUIRE_TOOLS=1`
/// a missing PostgreSQL panics (fails the test) instead.
pub fn start_or_skip() -> Option<TestCluster> {
    if let Some(c) = TestCluster::from_env() {
        return Some(c);
    }
    match TestCluster::start() {
        Ok(c) => Some(c),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            assert!(
                std::env::var("TESSERA_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "PostgreSQL is required (TESSERA_REQUIRE_TOOLS=1): {e}"
            );
            // Straight to fd 2: the test harness captures eprintln!.
            let _ = writeln!(io::stderr(), "skipping PostgreSQL tests: {e}");
            None
        }
        Err(e) => panic!("starting PostgreSQL: {e}"),
    }
}

/// One server for the whole test process (started on first use).
pub fn shared() -> Option<&'static TestCluster> {
    static SHARED: OnceLock<Option<TestCluster>> = OnceLock::new();
    SHARED.get_or_init(start_or_skip).as_ref()
}
