//! `tessera.toml`: every key has a default, every key can be overridden by
//! an environment variable `TESSERA_<SECTION>_<KEY>` (e.g.
//! `TESSERA_HTTP_LISTEN=0.0.0.0:8443`). Running with no file at all works.
//!
//! Unknown keys in the file are errors, not warnings: a typo in an
//! authentication server's config should stop it, not silently weaken it.
//! Unknown `TESSERA_*` variables are reported instead ([`unknown_env`]): the
//! environment is shared with scripts that use the prefix for themselves.
//!
//! This module is data: the sections, their defaults, and the checks that
//! need nothing but the values. It imports no subsystem of this crate, so
//! subsystems can take their section from here without a circle; checks
//! that need a subsystem's own parsing (syslog targets, email and SMS
//! templates) run where a configuration is loaded for use,
//! [`crate::node::load_config`] / [`crate::node::startup_checks`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The annotated default configuration, as printed by `tessera config default`
/// and documented in the README. A test checks it equals [`Config::default`].
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default-config.toml");

/// `TESSERA_*` variables that are not config overrides: read by the binary
/// itself (the key, `--config`, `--data`, the log filter), or by the test
/// tooling in the same shells (`TESSERA_REQUIRE_TOOLS`, `TESSERA_TEST_LOG`).
/// Never reported as unknown.
pub const NON_CONFIG_ENV: &[&str] = &[
    "TESSERA_MASTER_KEY",
    "TESSERA_CONFIG",
    "TESSERA_DATA",
    "TESSERA_LOG",
    "TESSERA_REQUIRE_TOOLS",
    "TESSERA_TEST_LOG",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value in environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub master_key: MasterKeySection,
    pub database: DatabaseSection,
    pub http: HttpSection,
    pub ui: UiSection,
    pub radius: RadiusSection,
    pub audit: AuditSection,
    pub backup: BackupSection,
    pub log: LogSection,
    pub metrics: MetricsSection,
    pub syslog: SyslogSection,
    pub replication: ReplicationSection,
    /// Email and SMS codes (see `crate::oob`): `[oob]`, `[email]`, `[sms]`.
    pub oob: OobSection,
    pub email: EmailSection,
    pub sms: SmsSection,
}

/// `[syslog]`: audit records and log events to a syslog server or the
/// local socket, besides the stderr log. Off by default. Read at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogSection {
    pub enabled: bool,
    /// `udp`, `tcp` (RFC 6587 octet counting) or `unix` (a datagram socket).
    pub transport: String,
    /// `host:port` for udp and tcp; the socket path for unix (`/dev/log`).
    pub address: String,
    /// `rfc5424` or `rfc3164`.
    pub format: String,
    /// `auth`, `authpriv`, `daemon`, `local0`…`local7`, … (syslog.conf names).
    pub facility: String,
    /// APP-NAME (RFC 5424) / TAG (RFC 3164).
    pub app_name: String,
    /// HOSTNAME in each message; empty = the node name.
    pub hostname: String,
    /// Log events at this level or more severe are sent too (`error`,
    /// `warn`, `info`, `debug`, `trace`); `off` = audit records only.
    pub level: String,
    /// Send every committed audit record.
    pub audit: bool,
}

impl Default for SyslogSection {
    fn default() -> Self {
        SyslogSection {
            enabled: false,
            transport: "udp".into(),
            address: "127.0.0.1:514".into(),
            format: "rfc5424".into(),
            facility: "auth".into(),
            app_name: "tessera".into(),
            hostname: String::new(),
            level: "info".into(),
            audit: true,
        }
    }
}

/// `[oob]`: lifetime, limits and texts of the codes. Checked and turned
/// into the engine's settings by `crate::oob::config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OobSection {
    /// Seconds a code works (1–3600).
    pub ttl_seconds: u32,
    /// Codes sent to one user per `user_window_seconds` (counted in the
    /// database, so shared by every node).
    pub user_limit: u32,
    pub user_window_seconds: u32,
    /// Codes this node sends per minute to all users together.
    pub global_per_minute: u32,
    /// The text sent: `{code}`, `{minutes}`, `{username}`.
    pub message: String,
    /// The challenge prompt: `{address}` is the masked address.
    pub prompt: String,
    /// Sent with the reject when no code could be sent.
    pub failure_message: String,
}

impl Default for OobSection {
    fn default() -> Self {
        let s = tessera_core::oob::OobSettings::default();
        OobSection {
            ttl_seconds: s.ttl_seconds,
            user_limit: s.user_limit,
            user_window_seconds: s.user_window_seconds,
            global_per_minute: s.global_per_minute,
            message: "Your login code is {code}. It expires in {minutes} minutes.".into(),
            prompt: s.prompt,
            failure_message: s.failure_message,
        }
    }
}

/// `[email]`: an SMTP submission server. Off while `host` is empty.
/// Checked, and its transport built, by `crate::oob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSection {
    pub host: String,
    pub port: u16,
    /// `starttls` (upgrade required), `tls` (implicit TLS, port 465) or
    /// `none` (only to a loopback host).
    pub tls: String,
    /// Extra CA certificates (PEM) besides the system's.
    pub ca_file: PathBuf,
    /// SMTP AUTH user; empty = no authentication.
    pub username: String,
    /// File whose first line is the SMTP password (required with `username`).
    pub password_file: PathBuf,
    /// Sender, `name@domain` or `Name <name@domain>`.
    pub from: String,
    /// `{code}`, `{minutes}`, `{username}`, `{message}`.
    pub subject: String,
    pub body: String,
    pub timeout_seconds: u64,
}

impl Default for EmailSection {
    fn default() -> Self {
        EmailSection {
            host: String::new(),
            port: 587,
            tls: "starttls".into(),
            ca_file: PathBuf::new(),
            username: String::new(),
            password_file: PathBuf::new(),
            from: String::new(),
            subject: "Your login code".into(),
            body: "{message}\n\nIf you did not just try to log in, tell your administrator.\n".into(),
            timeout_seconds: 10,
        }
    }
}

/// `[sms]`: an HTTP gateway. Off while `url` is empty. Checked, and its
/// client built, by `crate::oob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSection {
    /// `http(s)://…`; `{phone}`, `{message}`, `{code}`, `{username}` are
    /// percent-encoded into it.
    pub url: String,
    /// `POST`, `PUT`, `PATCH` or `GET`.
    pub method: String,
    /// `"Name: value"` lines, e.g. `["Content-Type: application/json",
    /// "Authorization: Bearer …"]`.
    pub headers: Vec<String>,
    /// Request body, same placeholders; escaped for JSON or form bodies as
    /// the Content-Type header says, else inserted as they are.
    pub body: String,
    /// Statuses meaning "sent": `200-299`, `200,202`, …
    pub success_status: String,
    pub timeout_seconds: u64,
}

impl Default for SmsSection {
    fn default() -> Self {
        SmsSection {
            url: String::new(),
            method: "POST".into(),
            headers: Vec::new(),
            body: String::new(),
            success_status: "200-299".into(),
            timeout_seconds: 10,
        }
    }
}

/// `[replication]`: primary/replica mode on the embedded database. The
/// role, primary and pin are set by `tessera replica join|promote|demote|repoint`
/// and kept in the database, not here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSection {
    /// How long a primary remembers deletions for replicas that are away;
    /// one away longer takes a new snapshot by itself when it returns.
    pub log_retention_seconds: u64,
    /// `cluster` (default): before a replica accepts a code, a backup code
    /// or a challenge State, the primary takes it, so none is accepted twice
    /// across nodes while the primary answers (`strict` is the old name).
    /// `local`: a replica decides on its own data; what it consumed reaches
    /// the other nodes within the replication lag.
    pub replay_guard: String,
    /// How long a replica waits for the primary's answer to a claim before
    /// deciding on its own (the primary is down or slow).
    pub strict_timeout_ms: u64,
    /// This node's URL for the other nodes (`https://host:8443`); empty:
    /// derived from the first `[http] listen` address (the host name when it
    /// listens on every address).
    pub advertise_url: String,
    /// A replica further behind than this makes `/readyz` say `degraded`.
    pub max_lag_seconds: u64,
    /// A primary that finds it was replaced (a newer epoch elsewhere)
    /// follows the new primary by itself; `false`: it stays fenced until an
    /// administrator runs `tessera replica demote`.
    pub follow_newer_primary: bool,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            log_retention_seconds: 7 * 24 * 3600,
            replay_guard: "cluster".into(),
            strict_timeout_ms: 500,
            advertise_url: String::new(),
            max_lag_seconds: 30,
            follow_newer_primary: true,
        }
    }
}

impl ReplicationSection {
    /// Whether replicas have the primary take what they consume.
    pub fn cluster_wide_replay(&self) -> bool {
        matches!(self.replay_guard.as_str(), "cluster" | "strict")
    }
}

/// `[metrics]`: who may scrape `GET /metrics` on the HTTPS listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `/metrics` at all (false: 404).
    pub enabled: bool,
    /// Source addresses or prefixes allowed to scrape (the TCP peer; no
    /// X-Forwarded-For). Others get 403.
    pub allow: Vec<String>,
    /// File holding a bearer token scrapers must also send
    /// (`Authorization: Bearer …`); empty = none required.
    pub bearer_token_file: PathBuf,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: true,
            allow: vec!["127.0.0.0/8".into(), "::1".into()],
            bearer_token_file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSection {
    /// Seconds between scheduled backups taken by `serve` (86400 = daily); 0 = off.
    pub interval_seconds: u64,
    /// Directory for scheduled backups (created 0700); required when on.
    pub dir: String,
    /// Scheduled backups kept; older ones are deleted after a good backup.
    pub keep: u32,
    /// File holding the backup passphrase; required when on.
    pub passphrase_file: String,
    /// What goes in (see `tessera backup create --include`).
    pub include: String,
}

impl Default for BackupSection {
    fn default() -> Self {
        BackupSection {
            interval_seconds: 0,
            dir: String::new(),
            keep: 7,
            passphrase_file: String::new(),
            include: "database,config,tls".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadiusSection {
    /// UDP addresses answering Access-Request and Status-Server (empty = off).
    pub listen: Vec<String>,
    /// UDP addresses answering Accounting-Request with Accounting-Response
    /// (nothing is recorded; answering stops NAS retries). Empty = off.
    pub accounting_listen: Vec<String>,
    /// RadSec (RADIUS over TLS, RFC 6614) TCP addresses. Needs `radsec_client_ca`.
    pub radsec_listen: Vec<String>,
    /// PEM CA certificate(s) that RadSec client certificates must chain to.
    pub radsec_client_ca: PathBuf,
    /// RadSec server certificate and key; empty = the HTTPS ones.
    pub radsec_cert: PathBuf,
    pub radsec_key: PathBuf,
    /// Extra FreeRADIUS-format dictionary files (vendor attributes).
    pub dictionaries: Vec<PathBuf>,
    /// A retransmission (same source, identifier and authenticator) within
    /// this many seconds gets the cached answer (RFC 5080).
    pub duplicate_window_seconds: u64,
    /// Requests being decided at once; more are dropped (the NAS retries).
    pub max_in_flight: usize,
    /// UDP sockets per `listen`/`accounting_listen` address, sharing the
    /// port with SO_REUSEPORT (Linux; one elsewhere), each read by its own
    /// task so that several cores receive; 0 = one per CPU.
    pub sockets_per_listener: usize,
    /// Reply attributes for Access-Accept, besides those added with `tessera reply add`.
    pub reply: Vec<ReplyConfig>,
    /// RADIUS clients declared here (`[[radius.client]]`), served together
    /// with those added by `tessera client add`; names must not clash.
    pub client: Vec<RadiusClientConfig>,
}

/// `[[radius.client]]`: a NAS allowed to send requests, as in FreeRADIUS's
/// clients.conf. Re-read on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClientConfig {
    pub name: String,
    /// Source IP address or prefix (`10.0.0.0/24`).
    pub address: String,
    /// The shared secret itself (keep the config file private), or…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// …a file whose first line is the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// `require` (default), `auto` or `off`, as `tessera client add --message-authenticator`.
    #[serde(default = "default_ma_mode")]
    pub message_authenticator: String,
    /// Realm of this client's users who name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_realm: Option<String>,
}

fn default_ma_mode() -> String {
    "require".into()
}

/// `[[radius.reply]]`: attributes for a user, a group, or (neither) everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `"Attribute-Name = value"` strings, as in FreeRADIUS.
    pub attributes: Vec<String>,
}

/// More sockets than cores only add file descriptors and tasks; this
/// bound catches a typo (sockets_per_listener = 40000) before it does.
pub const MAX_SOCKETS_PER_LISTENER: usize = 256;

impl RadiusSection {
    /// The UDP sockets to bind per listen address: `sockets_per_listener`,
    /// or one per CPU (tokio's default worker count) when it is 0.
    pub fn sockets(&self) -> usize {
        match self.sockets_per_listener {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for RadiusSection {
    fn default() -> Self {
        RadiusSection {
            listen: vec!["127.0.0.1:1812".into()],
            accounting_listen: Vec::new(),
            radsec_listen: Vec::new(),
            radsec_client_ca: PathBuf::new(),
            radsec_cert: PathBuf::new(),
            radsec_key: PathBuf::new(),
            dictionaries: Vec::new(),
            duplicate_window_seconds: 30,
            max_in_flight: 4096,
            sockets_per_listener: 0,
            reply: Vec::new(),
            client: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    /// Audit records older than this many days are deleted; 0 keeps them forever.
    pub retention_days: u32,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection { retention_days: 365 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Name of this node in audit records and logs; empty = the host name.
    pub node_name: String,
    /// Where the embedded database and generated TLS files live.
    pub data_dir: PathBuf,
    /// Issuer shown in authenticator apps.
    pub issuer: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MasterKeySection {
    /// Key file; empty = `tessera.key` beside the data directory (never inside
    /// it, so a copy of the data directory does not carry its key).
    /// `TESSERA_MASTER_KEY` (the key itself) takes precedence.
    pub file: PathBuf,
}

/// `Debug` is written out below: the URL may hold a password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// Shared database mode: a PostgreSQL URL
    /// (`postgres://user:password@host:port/dbname`); empty = the embedded
    /// SQLite database in the data directory. Shown redacted.
    pub url: String,
    /// PostgreSQL: connections in this node's pool.
    pub pool_size: usize,
    /// PostgreSQL: `disable`, `require` (encrypted, certificate not
    /// checked) or `verify-full` (chain and host name checked).
    pub tls: String,
    /// PostgreSQL with `verify-full`: PEM file of the CA(s) to trust;
    /// empty = the operating system's trust anchors.
    pub ca_file: PathBuf,
    /// PostgreSQL: connect / pool checkout timeout, seconds; a request that
    /// cannot get a connection within it fails closed.
    pub connect_timeout_seconds: u64,
    /// PostgreSQL: how long `serve` keeps trying to reach the database at
    /// start before it gives up (0 = fail at once).
    pub startup_wait_seconds: u64,
    /// `full`: fsync every group commit (survives power loss);
    /// `normal`: survive process crashes only.
    pub synchronous: String,
    /// Read-only connections in the pool.
    pub readers: usize,
    /// SQLite page cache per connection, KiB.
    pub cache_kib: u32,
    /// Memory-mapped reads, MiB per connection (0 = off).
    pub mmap_mib: u64,
    /// Embedded database, `serve` only: login state in memory, made durable
    /// by the login journal before each answer (false: every login is its
    /// own database transaction, several times slower).
    pub login_engine: bool,
    /// How often the login journal is folded into the database, ms. Longer
    /// writes each database page once for more logins (less CPU and disk
    /// per login) but makes an administrative write wait for a longer fold.
    pub login_fold_ms: u64,
    /// Users whose profile and login state the engine keeps in memory
    /// (about 1 KiB each); a login of one of them reads no database page.
    pub login_cached_users: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// HTTPS listen addresses (admin API, validate, health).
    pub listen: Vec<String>,
    /// PEM certificate chain; empty = a self-signed one generated in the data dir.
    pub tls_cert: PathBuf,
    /// PEM private key for `tls_cert`.
    pub tls_key: PathBuf,
    /// How often the certificate, key and client CA files (HTTPS and
    /// RadSec) are checked for changes, seconds; 0 = only on SIGHUP.
    pub tls_watch_seconds: u64,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Simultaneous connections; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Limit on one request's handling, seconds.
    pub request_timeout_seconds: u64,
    /// Whether `POST /api/v1/validate` needs an API key like admin calls do.
    pub validate_requires_api_key: bool,
}

/// `[ui]`: the web UI (admin console under `/admin`, self-service portal
/// under `/`). Read at start (changing it needs a restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSection {
    /// Serve the admin console (`/admin`) on the `[http] listen` addresses.
    pub console: bool,
    /// Serve the self-service portal (`/`) on the `[http] listen` addresses.
    pub portal: bool,
    /// Extra HTTPS addresses that serve the portal only: no `/admin`, no
    /// REST API, no metrics. For exposing self-service to an outside
    /// network while the console stays on an internal address.
    pub portal_listen: Vec<String>,
    /// Whether users who have no token yet may register through
    /// `portal_listen` (off: there, only registered users sign in, and new
    /// users register on the internal `[http] listen` addresses).
    pub portal_listen_registration: bool,
    /// A console or portal session unused this long is ended, seconds (2–86400).
    pub idle_timeout_seconds: u64,
}

impl Default for UiSection {
    fn default() -> Self {
        UiSection {
            console: true,
            portal: true,
            portal_listen: Vec::new(),
            portal_listen_registration: false,
            idle_timeout_seconds: 900,
        }
    }
}

/// Bounds of `[ui] idle_timeout_seconds`. The lower bound is low enough for
/// tests to see a session expire; a real console wants minutes.
pub const MIN_UI_IDLE_TIMEOUT_SECONDS: u64 = 2;
pub const MAX_UI_IDLE_TIMEOUT_SECONDS: u64 = 86_400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection { node_name: String::new(), data_dir: PathBuf::from("./tessera-data"), issuer: "tessera".into() }
    }
}

impl std::fmt::Debug for DatabaseSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSection")
            .field("url", &tessera_store::redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout_seconds", &self.connect_timeout_seconds)
            .field("startup_wait_seconds", &self.startup_wait_seconds)
            .field("synchronous", &self.synchronous)
            .field("readers", &self.readers)
            .field("cache_kib", &self.cache_kib)
            .field("mmap_mib", &self.mmap_mib)
            .field("login_engine", &self.login_engine)
            .field("login_fold_ms", &self.login_fold_ms)
            .field("login_cached_users", &self.login_cached_users)
            .finish()
    }
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: String::new(),
            pool_size: 16,
            tls: "disable".into(),
            ca_file: PathBuf::new(),
            connect_timeout_seconds: 5,
            startup_wait_seconds: 30,
            synchronous: "full".into(),
            readers: 4,
            cache_kib: 8192,
            mmap_mib: 0,
            login_engine: true,
            login_fold_ms: 2000,
            login_cached_users: 30_000,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: vec!["127.0.0.1:8443".into()],
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_watch_seconds: 2,
            max_body_bytes: 64 * 1024,
            max_connections: 4096,
            request_timeout_seconds: 10,
            validate_requires_api_key: false,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info".into(), format: "text".into() }
    }
}

impl Config {
    /// Loads `file` (if given), then applies environment overrides from `env`,
    /// and checks the values ([`Config::validate`]). The subsystems' checks
    /// are not run here: load through [`crate::node::load_config`] for that.
    pub fn load(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut doc = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut doc, env)?;
        let cfg: Config = toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| ConfigError::Parse {
            path: file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<environment>")),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The checks that need only the values themselves.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database.synchronous.parse::<tessera_store::Synchronous>().map_err(ConfigError::Invalid)?;
        self.postgres_options()?;
        for l in &self.http.listen {
            l.parse::<SocketAddr>()
                .map_err(|_| ConfigError::Invalid(format!("http.listen: `{l}` is not an address:port")))?;
        }
        for l in &self.ui.portal_listen {
            l.parse::<SocketAddr>()
                .map_err(|_| ConfigError::Invalid(format!("ui.portal_listen: `{l}` is not an address:port")))?;
        }
        if !(MIN_UI_IDLE_TIMEOUT_SECONDS..=MAX_UI_IDLE_TIMEOUT_SECONDS).contains(&self.ui.idle_timeout_seconds) {
            return Err(ConfigError::Invalid(format!(
                "ui.idle_timeout_seconds must be {MIN_UI_IDLE_TIMEOUT_SECONDS}–{MAX_UI_IDLE_TIMEOUT_SECONDS}"
            )));
        }
        if self.http.tls_cert.as_os_str().is_empty() != self.http.tls_key.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("http.tls_cert and http.tls_key must be set together".into()));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!("log.format must be text or json (got `{}`)", self.log.format)));
        }
        if self.http.max_body_bytes < 1024 || self.http.max_body_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::Invalid("http.max_body_bytes must be 1 KiB – 16 MiB".into()));
        }
        if !(50..=60_000).contains(&self.database.login_fold_ms) {
            return Err(ConfigError::Invalid("database.login_fold_ms must be between 50 and 60000".into()));
        }
        if self.database.login_cached_users > 10_000_000 {
            return Err(ConfigError::Invalid("database.login_cached_users must be at most 10000000".into()));
        }
        if self.http.max_connections == 0 || self.database.readers == 0 {
            return Err(ConfigError::Invalid("http.max_connections and database.readers must be at least 1".into()));
        }
        for l in self.radius.listen.iter().chain(&self.radius.accounting_listen).chain(&self.radius.radsec_listen) {
            l.parse::<SocketAddr>()
                .map_err(|_| ConfigError::Invalid(format!("radius: `{l}` is not an address:port")))?;
        }
        if !self.radius.radsec_listen.is_empty() && self.radius.radsec_client_ca.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "radius.radsec_listen needs radius.radsec_client_ca (RadSec clients must present certificates)".into(),
            ));
        }
        if self.radius.radsec_cert.as_os_str().is_empty() != self.radius.radsec_key.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("radius.radsec_cert and radius.radsec_key must be set together".into()));
        }
        if !(1..=300).contains(&self.radius.duplicate_window_seconds) || self.radius.max_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "radius.duplicate_window_seconds must be 1–300 and radius.max_in_flight at least 1".into(),
            ));
        }
        if self.radius.sockets_per_listener > MAX_SOCKETS_PER_LISTENER {
            return Err(ConfigError::Invalid(format!(
                "radius.sockets_per_listener must be 0 (one per CPU) to {MAX_SOCKETS_PER_LISTENER}"
            )));
        }
        for r in &self.radius.reply {
            if r.user.is_some() && r.group.is_some() {
                return Err(ConfigError::Invalid(
                    "a [[radius.reply]] rule names either a user or a group, not both".into(),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.radius.client {
            let bad = |m: String| ConfigError::Invalid(format!("[[radius.client]] `{}`: {m}", c.name));
            tessera_core::names::check_key_name(&c.name).map_err(|e| bad(e.to_string()))?;
            if !names.insert(c.name.as_str()) {
                return Err(bad("the name is used twice".into()));
            }
            tessera_core::cidr::Cidr::parse(&c.address).map_err(bad)?;
            if c.secret.is_some() == c.secret_file.is_some() {
                return Err(bad("set exactly one of secret and secret_file".into()));
            }
            if let Some(secret) = &c.secret {
                check_radius_secret(secret.as_bytes()).map_err(bad)?;
            }
            c.message_authenticator.parse::<tessera_core::model::MessageAuthenticatorMode>().map_err(bad)?;
            if let Some(r) = &c.default_realm {
                tessera_core::names::check_realm(r).map_err(|e| bad(e.to_string()))?;
            }
        }
        if !matches!(self.replication.replay_guard.as_str(), "local" | "cluster" | "strict") {
            return Err(ConfigError::Invalid(format!(
                "replication.replay_guard: `{}` is not `cluster` or `local`",
                self.replication.replay_guard
            )));
        }
        if !(10..=10_000).contains(&self.replication.strict_timeout_ms) {
            return Err(ConfigError::Invalid("replication.strict_timeout_ms: between 10 and 10000".into()));
        }
        for a in &self.metrics.allow {
            tessera_core::cidr::Cidr::parse(a).map_err(|m| ConfigError::Invalid(format!("metrics.allow: {m}")))?;
        }
        if self.server.issuer.is_empty() || self.server.issuer.contains(':') {
            return Err(ConfigError::Invalid("server.issuer must be non-empty and must not contain ':'".into()));
        }
        Ok(())
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.http.listen.iter().filter_map(|l| l.parse().ok()).collect()
    }

    pub fn addrs(list: &[String]) -> Vec<SocketAddr> {
        list.iter().filter_map(|l| l.parse().ok()).collect()
    }

    pub fn database_path(&self) -> PathBuf {
        self.server.data_dir.join("tessera.db")
    }

    /// Shared database mode: whether `[database] url` names a PostgreSQL.
    pub fn uses_postgres(&self) -> bool {
        !self.database.url.trim().is_empty()
    }

    /// The database for messages: the SQLite file, or the URL without its
    /// password.
    pub fn database_display(&self) -> String {
        if self.uses_postgres() {
            tessera_store::redact_url(self.database.url.trim())
        } else {
            self.database_path().display().to_string()
        }
    }

    /// The PostgreSQL connection settings, `None` in embedded mode.
    pub fn postgres_options(&self) -> Result<Option<tessera_store::PgOptions>, ConfigError> {
        let d = &self.database;
        let bad = |m: String| ConfigError::Invalid(format!("database: {m}"));
        let mut tls: tessera_store::PgTls = d.tls.parse().map_err(bad)?;
        if !d.ca_file.as_os_str().is_empty() {
            match &mut tls {
                tessera_store::PgTls::VerifyFull { ca_file } => *ca_file = Some(d.ca_file.clone()),
                // A CA file that is never consulted would suggest a check
                // that does not happen.
                _ => return Err(bad("ca_file is used only with tls = \"verify-full\"".into())),
            }
        }
        if !self.uses_postgres() {
            return Ok(None);
        }
        let mut opts = tessera_store::PgOptions::from_url(d.url.trim()).map_err(|e| bad(e.to_string()))?;
        if opts.url_requires_tls() && tls == tessera_store::PgTls::Disable {
            return Err(bad("the URL asks for sslmode=require but tls = \"disable\"; set [database] tls (require or \
                 verify-full) instead of sslmode"
                .into()));
        }
        if !opts.has_host() {
            return Err(bad("the URL names no host (postgres://user:password@host:port/dbname)".into()));
        }
        if !(1..=1000).contains(&d.pool_size) {
            return Err(bad("pool_size must be 1–1000".into()));
        }
        if !(1..=300).contains(&d.connect_timeout_seconds) || d.startup_wait_seconds > 3600 {
            return Err(bad("connect_timeout_seconds must be 1–300 and startup_wait_seconds 0–3600".into()));
        }
        opts.pool_size = d.pool_size;
        opts.timeout = std::time::Duration::from_secs(d.connect_timeout_seconds);
        opts.tls = tls;
        Ok(Some(opts))
    }

    pub fn key_file(&self) -> PathBuf {
        if !self.master_key.file.as_os_str().is_empty() {
            return self.master_key.file.clone();
        }
        let dir = &self.server.data_dir;
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        parent.join("tessera.key")
    }

    pub fn tls_files(&self) -> (PathBuf, PathBuf, bool) {
        if self.http.tls_cert.as_os_str().is_empty() {
            let dir = self.server.data_dir.join("tls");
            (dir.join("cert.pem"), dir.join("key.pem"), true)
        } else {
            (self.http.tls_cert.clone(), self.http.tls_key.clone(), false)
        }
    }

    pub fn node_name(&self) -> String {
        if !self.server.node_name.is_empty() {
            return self.server.node_name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "tessera".into())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The configuration for display (`tessera config show`): secrets that
    /// may sit in the file itself — `[[radius.client]] secret`, `[sms]`
    /// header values, the query of the SMS gateway URL (API keys often go
    /// there) — are replaced by `<redacted>`.
    pub fn to_toml_redacted(&self) -> String {
        const R: &str = "<redacted>";
        let mut c = self.clone();
        for client in &mut c.radius.client {
            if client.secret.is_some() {
                client.secret = Some(R.into());
            }
        }
        for h in &mut c.sms.headers {
            if let Some((name, _)) = h.split_once(':') {
                *h = format!("{name}: {R}");
            }
        }
        if let Some((base, _)) = c.sms.url.split_once('?') {
            c.sms.url = format!("{base}?{R}");
        }
        c.database.url = tessera_store::redact_url(&c.database.url);
        c.to_toml()
    }
}

/// The bounds `tessera client add` applies to shared secrets.
pub fn check_radius_secret(secret: &[u8]) -> Result<(), String> {
    use tessera_core::admin::{MAX_RADIUS_SECRET_LEN, MIN_RADIUS_SECRET_LEN};
    if (MIN_RADIUS_SECRET_LEN..=MAX_RADIUS_SECRET_LEN).contains(&secret.len()) {
        Ok(())
    } else {
        Err(format!("the secret must be {MIN_RADIUS_SECRET_LEN}–{MAX_RADIUS_SECRET_LEN} bytes"))
    }
}

/// Overlays `TESSERA_<SECTION>_<KEY>` variables onto the parsed file. The
/// (section, key) pairs come from the default config, so the mapping is
/// exact even when keys contain underscores.
fn apply_env(doc: &mut toml::Table, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    for (section, table) in &defaults {
        let Some(table) = table.as_table() else { continue };
        for (key, default) in table {
            let var = env_name(section, key);
            let Some(raw) = env.get(&var) else { continue };
            let value = match default {
                toml::Value::Array(_) => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.into()))
                        .collect(),
                ),
                toml::Value::Integer(_) => toml::Value::Integer(
                    raw.trim()
                        .parse()
                        .map_err(|_| ConfigError::Env { var: var.clone(), message: "expected an integer".into() })?,
                ),
                toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err(ConfigError::Env { var, message: "expected true or false".into() }),
                }),
                _ => toml::Value::String(raw.clone()),
            };
            let entry = doc.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = entry.as_table_mut() else {
                return Err(ConfigError::Invalid(format!("`{section}` must be a table")));
            };
            t.insert(key.clone(), value);
        }
    }
    // Other `TESSERA_*` variables are left to `unknown_env`: reported, not
    // refused (see there).
    Ok(())
}

fn env_name(section: &str, key: &str) -> String {
    format!("TESSERA_{}_{}", section.to_uppercase(), key.to_uppercase())
}

/// Every `TESSERA_<SECTION>_<KEY>` variable that overrides a setting.
pub fn setting_env_vars() -> Vec<String> {
    let Ok(defaults) = toml::Table::try_from(Config::default()) else { return Vec::new() };
    defaults
        .iter()
        .filter_map(|(section, table)| Some((section, table.as_table()?)))
        .flat_map(|(section, table)| table.keys().map(move |key| env_name(section, key)))
        .collect()
}

/// A `TESSERA_*` environment variable that is no setting and that tessera
/// does not read: ignored, and reported with the known names it is closest to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEnv {
    pub var: String,
    /// The known variables it probably meant (empty: none is close).
    pub suggestions: Vec<String>,
}

impl std::fmt::Display for UnknownEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "environment variable {} is not a known setting; ignored", self.var)?;
        match self.suggestions.as_slice() {
            [] => Ok(()),
            [one] => write!(f, " (did you mean {one}?)"),
            many => write!(f, " (did you mean one of {}?)", many.join(", ")),
        }
    }
}

/// The `TESSERA_*` variables in `env` that are neither settings nor read
/// by tessera (nor named in `also_read`, e.g. the variable of
/// `--passphrase-env`). The caller warns about them rather than refusing to
/// run: wrapper scripts export their own `TESSERA_*` names (`TESSERA_BIN`),
/// and an authentication server that will not start, or a CLI that will not
/// unlock a user, over a variable meant for a script does more harm than
/// the typo it would catch — which is still caught: named, with the
/// setting it is nearest to.
pub fn unknown_env(env: &BTreeMap<String, String>, also_read: &[&str]) -> Vec<UnknownEnv> {
    let settings = setting_env_vars();
    let known: Vec<&str> = settings.iter().map(String::as_str).chain(NON_CONFIG_ENV.iter().copied()).collect();
    env.keys()
        .filter(|v| v.starts_with("TESSERA_") && !known.contains(&v.as_str()) && !also_read.contains(&v.as_str()))
        .map(|var| UnknownEnv { var: var.clone(), suggestions: nearest(var, &known) })
        .collect()
}

/// Longest name list in a suggestion.
const MAX_SUGGESTIONS: usize = 3;

/// The known names `var` is likely a misspelling of: the nearest by edit
/// distance (over the part after `TESSERA_`, case-insensitive) when it is
/// close — at most one edit per four characters, at least one, at most
/// three — else the settings it names without their section
/// (`TESSERA_DATA_DIR` → `TESSERA_SERVER_DATA_DIR`).
fn nearest(var: &str, known: &[&str]) -> Vec<String> {
    let name = var["TESSERA_".len()..].to_uppercase();
    let limit = (name.chars().count() / 4).clamp(1, 3);
    let mut scored: Vec<(usize, &str)> =
        known.iter().map(|k| (edit_distance(&name, &k["TESSERA_".len()..]), *k)).filter(|(d, _)| *d <= limit).collect();
    if let Some(best) = scored.iter().map(|(d, _)| *d).min() {
        scored.retain(|(d, _)| *d == best);
        return scored.into_iter().take(MAX_SUGGESTIONS).map(|(_, k)| k.to_string()).collect();
    }
    let suffix = format!("_{name}");
    known.iter().filter(|k| k.ends_with(&suffix)).take(MAX_SUGGESTIONS).map(|k| k.to_string()).collect()
}

/// Levenshtein distance (insertions, deletions, substitutions), by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn documented_defaults_match_code() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn config_show_redacts_secrets_in_the_file() {
        let mut c = Config::default();
        c.radius.client.push(RadiusClientConfig {
            name: "vpn".into(),
            address: "10.0.0.1".into(),
            secret: Some("clients-conf-secret".into()),
            secret_file: None,
            message_authenticator: "require".into(),
            default_realm: None,
        });
        c.sms.headers = vec!["Authorization: Bearer gateway-token".into(), "Content-Type: application/json".into()];
        c.sms.url = "https://sms.example/send?api_key=url-key&to={phone}".into();
        let shown = c.to_toml_redacted();
        for secret in ["clients-conf-secret", "gateway-token", "url-key"] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        assert!(shown.contains("Authorization: <redacted>") && shown.contains("https://sms.example/send?<redacted>"));
        assert!(c.to_toml().contains("clients-conf-secret"), "the unredacted form is unchanged");
    }

    #[test]
    fn config_show_and_messages_hide_the_database_password() {
        let url = "postgres://tessera:db-pass-1234@db1.example:5432/tessera";
        let c = Config::load(None, &env(&[("TESSERA_DATABASE_URL", url)])).unwrap();
        assert!(c.uses_postgres());
        let shown = c.to_toml_redacted();
        assert!(!shown.contains("db-pass-1234"), "{shown}");
        assert!(shown.contains("postgres://tessera:<redacted>@db1.example:5432/tessera"), "{shown}");
        assert_eq!(c.database_display(), "postgres://tessera:<redacted>@db1.example:5432/tessera");
        assert!(!format!("{c:?}").contains("db-pass-1234"), "Debug hides it too");
        // a URL the driver cannot parse: the error does not quote it
        let e = Config::load(None, &env(&[("TESSERA_DATABASE_URL", "postgres://u:db-pass-1234@h:port/db")]))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("db-pass-1234") && e.contains("invalid database URL"), "{e}");
    }

    #[test]
    fn database_settings_are_checked() {
        let url = ("TESSERA_DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db");
        let opts = Config::load(None, &env(&[url, ("TESSERA_DATABASE_POOL_SIZE", "4")]))
            .unwrap()
            .postgres_options()
            .unwrap()
            .unwrap();
        assert_eq!(opts.pool_size, 4);
        assert_eq!(opts.tls, tessera_store::PgTls::Disable);
        let c = Config::load(
            None,
            &env(&[url, ("TESSERA_DATABASE_TLS", "verify-full"), ("TESSERA_DATABASE_CA_FILE", "/etc/ca.pem")]),
        )
        .unwrap();
        assert_eq!(
            c.postgres_options().unwrap().unwrap().tls,
            tessera_store::PgTls::VerifyFull { ca_file: Some("/etc/ca.pem".into()) }
        );
        assert!(Config::default().postgres_options().unwrap().is_none());
        let c = Config::load(
            None,
            &env(&[("TESSERA_DATABASE_LOGIN_FOLD_MS", "5000"), ("TESSERA_DATABASE_LOGIN_CACHED_USERS", "0")]),
        )
        .unwrap();
        assert_eq!((c.database.login_fold_ms, c.database.login_cached_users), (5000, 0));
        for (bad, why) in [
            (vec![url, ("TESSERA_DATABASE_TLS", "maybe")], "verify-full"),
            (vec![url, ("TESSERA_DATABASE_CA_FILE", "/etc/ca.pem")], "ca_file"),
            (vec![url, ("TESSERA_DATABASE_POOL_SIZE", "0")], "pool_size"),
            (vec![("TESSERA_DATABASE_URL", "postgres://u:p@h/db?sslmode=require")], "sslmode"),
            (vec![("TESSERA_DATABASE_LOGIN_FOLD_MS", "10")], "login_fold_ms"),
            (vec![("TESSERA_DATABASE_LOGIN_FOLD_MS", "600000")], "login_fold_ms"),
            (vec![("TESSERA_DATABASE_LOGIN_FOLD_MS", "-1")], "login_fold_ms"),
            (vec![("TESSERA_DATABASE_LOGIN_CACHED_USERS", "99999999")], "login_cached_users"),
        ] {
            let e = Config::load(None, &env(&bad)).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn no_file_no_env_is_default() {
        assert_eq!(Config::load(None, &env(&[])).unwrap(), Config::default());
        assert_eq!(Config::default().key_file(), PathBuf::from("./tessera.key"));
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "[http]\nlisten = [\"127.0.0.1:1\"]\nmax_body_bytes = 2048\n").unwrap();
        let c = Config::load(
            Some(&f),
            &env(&[
                ("TESSERA_HTTP_LISTEN", "127.0.0.1:9443, [::1]:9443"),
                ("TESSERA_HTTP_VALIDATE_REQUIRES_API_KEY", "true"),
                ("TESSERA_SERVER_DATA_DIR", "/var/lib/tessera"),
                ("TESSERA_MASTER_KEY", "ignored here"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.listen, ["127.0.0.1:9443", "[::1]:9443"]);
        assert_eq!(c.http.max_body_bytes, 2048);
        assert!(c.http.validate_requires_api_key);
        assert_eq!(c.key_file(), PathBuf::from("/var/lib/tessera.key"));
    }

    #[test]
    fn ui_section_from_the_environment_and_its_bounds() {
        let c = Config::load(
            None,
            &env(&[
                ("TESSERA_UI_IDLE_TIMEOUT_SECONDS", "60"),
                ("TESSERA_UI_PORTAL_LISTEN", "0.0.0.0:443"),
                ("TESSERA_UI_CONSOLE", "off"),
            ]),
        )
        .unwrap();
        assert_eq!(c.ui.idle_timeout_seconds, 60);
        assert_eq!(c.ui.portal_listen, ["0.0.0.0:443"]);
        assert!(!c.ui.console && c.ui.portal && !c.ui.portal_listen_registration);
        let e = Config::load(None, &env(&[("TESSERA_UI_IDLE_TIMEOUT_SECONDS", "1")])).unwrap_err();
        assert!(e.to_string().contains("ui.idle_timeout_seconds"), "{e}");
        let e = Config::load(None, &env(&[("TESSERA_UI_PORTAL_LISTEN", "everywhere")])).unwrap_err();
        assert!(e.to_string().contains("ui.portal_listen"), "{e}");
    }

    /// Issue 15 (10): an unknown `TESSERA_*` variable (a wrapper script's
    /// `TESSERA_BIN`) no longer stops every command; it is reported, with
    /// the setting it is nearest to when one is close.
    #[test]
    fn regression_unknown_env_vars_are_reported_not_refused() {
        let vars = env(&[
            ("TESSERA_BIN", "/usr/local/bin/tessera"),
            ("TESSERA_HTTP_LISTN", "127.0.0.1:9443"),
            ("TESSERA_DATA_DIR", "/srv/t"),
            ("TESSERA_MASTERKEY", "x"),
            ("TESSERA_BACKUP_PASS", "read through --passphrase-env"),
            ("TESSERA_MASTER_KEY", "read directly"),
            ("TESSERA_LOG", "debug"),
            ("TESSERA_HTTP_LISTEN", "127.0.0.1:8443"),
            ("OTHER_TOOL_SETTING", "not ours"),
        ]);
        assert_eq!(Config::load(None, &vars).unwrap().http.listen, ["127.0.0.1:8443"], "the rest still applies");
        let unknown = unknown_env(&vars, &["TESSERA_BACKUP_PASS"]);
        let shown: Vec<(String, Vec<String>)> =
            unknown.iter().map(|u| (u.var.clone(), u.suggestions.clone())).collect();
        let pair = |v: &str, s: &[&str]| (v.to_string(), s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            shown,
            [
                pair("TESSERA_BIN", &[]),
                pair("TESSERA_DATA_DIR", &["TESSERA_SERVER_DATA_DIR"]),
                pair("TESSERA_HTTP_LISTN", &["TESSERA_HTTP_LISTEN"]),
                pair("TESSERA_MASTERKEY", &["TESSERA_MASTER_KEY"]),
            ]
        );
        assert_eq!(
            unknown[2].to_string(),
            "environment variable TESSERA_HTTP_LISTN is not a known setting; ignored (did you mean \
             TESSERA_HTTP_LISTEN?)"
        );
        assert_eq!(unknown[0].to_string(), "environment variable TESSERA_BIN is not a known setting; ignored");
        assert!(setting_env_vars().contains(&"TESSERA_RADIUS_ACCOUNTING_LISTEN".to_string()));
    }

    #[test]
    fn edit_distances() {
        for (a, b, d) in [("", "", 0), ("LISTN", "LISTEN", 1), ("KITTEN", "SITTING", 3), ("ABC", "", 3), ("Ä", "A", 1)]
        {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
            assert_eq!(edit_distance(b, a), d, "{b} {a}");
        }
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "[http]\nlisten_typo = 1\n").unwrap();
        assert!(Config::load(Some(&f), &env(&[])).unwrap_err().to_string().contains("listen_typo"));
        std::fs::write(&f, "[http\n").unwrap();
        assert!(matches!(Config::load(Some(&f), &env(&[])), Err(ConfigError::Parse { .. })));
        let e = Config::load(None, &env(&[("TESSERA_HTTP_MAX_BODY_BYTES", "lots")])).unwrap_err();
        assert!(e.to_string().contains("TESSERA_HTTP_MAX_BODY_BYTES"), "{e}");
        let e = Config::load(None, &env(&[("TESSERA_HTTP_LISTEN", "nonsense")])).unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
        let e = Config::load(None, &env(&[("TESSERA_DATABASE_SYNCHRONOUS", "sometimes")])).unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
    }
}
