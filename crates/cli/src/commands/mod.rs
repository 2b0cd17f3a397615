//! Command dispatch. Each command opens the node from the data directory,
//! calls the shared domain services, and prints the result.

mod admin;
mod admins;
mod audit;
pub(crate) mod backup;
mod check;
mod inventory;
pub(crate) mod key;
mod migrate;
mod radius;
mod realm;
pub(crate) mod replica;
mod status;
mod token;
pub(crate) mod transfer;
mod user;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tessera_core::audit::Actor;
use tessera_core::password::InlineHasher;
use tessera_server::config::{Config, DEFAULT_CONFIG_TOML};
use tessera_server::node::{self, Node};
use zeroize::Zeroizing;

use crate::UsageError;
use crate::args::{AuditCmd, Cli, Command, ConfigCmd, PasswordInput};

pub async fn run(cli: Cli, env: BTreeMap<String, String>) -> anyhow::Result<()> {
    // `--config`/TESSERA_CONFIG, else ./tessera.toml when present.
    let config_named = cli.config.is_some();
    let config_file = cli.config.clone().or_else(|| Path::new("tessera.toml").exists().then(|| "tessera.toml".into()));
    // Once per process, before anything else is said: a variable meant for
    // a wrapper script is no reason to refuse, a misspelt setting is worth a
    // word (see `config::unknown_env`).
    for unknown in tessera_server::config::unknown_env(&env, &cli.env_read()) {
        eprintln!("tessera: warning: {unknown}");
    }
    let mut cfg = node::load_config(config_file.as_deref(), &env)?;
    if let Some(d) = &cli.data {
        cfg.server.data_dir = d.clone();
    }
    match cli.command {
        Command::Serve(args) => {
            // After the file and the environment, so the flags win; `Live`
            // sees them as command-line overrides and keeps them on reload.
            args.apply(&mut cfg);
            tessera_server::syslog::install(&cfg)?;
            tessera_server::logging::init(&cfg.log, env.get("TESSERA_LOG").map(String::as_str));
            tessera_server::runtime::serve(cfg, env, config_file).await
        }
        Command::Init => {
            let r = node::init(&cfg, &env).await?;
            outln!("initialised {}", r.data_dir.display());
            match &r.data_dir_mode {
                node::DataDirMode::Created | node::DataDirMode::AlreadyPrivate => {}
                node::DataDirMode::Tightened { from } => {
                    outln!("  data dir:   mode changed from {from:04o} to 0700 (it will hold the database)")
                }
                node::DataDirMode::Open { mode, error } => eprintln!(
                    "tessera: warning: {} keeps mode {mode:04o}; it could not be made 0700 ({error}). It holds the \
                     database: restrict it with `chmod 700 {}`",
                    r.data_dir.display(),
                    r.data_dir.display()
                ),
            }
            outln!("  database:   {}", r.database);
            if r.key_created {
                outln!("  master key: {} (new; keep a copy apart from backups of the data directory)", r.key);
            } else {
                outln!("  master key: {} (existing)", r.key);
            }
            outln!("  key id:     {}", r.key_id);
            Ok(())
        }
        Command::Config(ConfigCmd::Show) => {
            out!("{}", cfg.to_toml_redacted());
            Ok(())
        }
        Command::Config(ConfigCmd::Default) => {
            out!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        Command::User(c) => user::run(&open(&cfg, &env).await?, c).await,
        Command::Token(c) => token::run(&open(&cfg, &env).await?, c).await,
        Command::BackupCodes(u) => token::backup_codes(&open(&cfg, &env).await?, u).await,
        Command::Check(a) => check::run(&open(&cfg, &env).await?, a).await,
        Command::Admin(c) => admins::run(&open(&cfg, &env).await?, c).await,
        Command::ApiKey(c) => admin::api_key(&open(&cfg, &env).await?, c).await,
        Command::Client(c) => radius::client(&open(&cfg, &env).await?, c).await,
        Command::Status { json } => status::run(&open(&cfg, &env).await?, &cfg, json).await,
        Command::Migrate => migrate::run(&cfg, &env).await,
        Command::Realm(c) => realm::run(&open(&cfg, &env).await?, c).await,
        Command::Group(c) => radius::group(&open(&cfg, &env).await?, c).await,
        Command::Reply(c) => radius::reply(&open(&cfg, &env).await?, &cfg, c).await,
        Command::Policy(c) => admin::policy(&open(&cfg, &env).await?, c).await,
        // Read-only, without the master key.
        Command::Audit(AuditCmd::Verify { json }) => audit::verify(&cfg, json).await,
        Command::Audit(c) => admin::audit(&open(&cfg, &env).await?, c).await,
        Command::Backup(c) => backup::run(&cfg, config_file.as_deref(), config_named, &env, c).await,
        Command::Key(c) => key::run(&cfg, &env, c).await,
        Command::Replica(c) => replica::run(&open(&cfg, &env).await?, c).await,
        Command::Export(c) => transfer::export(&open(&cfg, &env).await?, &env, c).await,
        Command::Import(c) => transfer::import(&open(&cfg, &env).await?, &env, c).await,
    }
}

async fn open(cfg: &Config, env: &BTreeMap<String, String>) -> anyhow::Result<Node> {
    // The login engine is `serve`'s: a command writes ordinary transactions
    // (and a running server's engine notices them).
    let mut cfg = cfg.clone();
    cfg.database.login_engine = false;
    let cfg = &cfg;
    node::open(cfg, env, Arc::new(InlineHasher)).await.with_context(|| {
        if cfg.uses_postgres() {
            format!("cannot open the database {}", cfg.database_display())
        } else {
            format!("cannot open the data directory {}", cfg.server.data_dir.display())
        }
    })
}

/// The audit actor for this invocation: `cli:<os user>`.
pub fn actor() -> Actor {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(os_user_name);
    Actor::new(format!("cli:{who}")).with_client(Some("cli".into()))
}

/// Reads a password from stdin or a file (first line, newline stripped).
pub fn read_password(p: &PasswordInput) -> anyhow::Result<Option<Zeroizing<String>>> {
    let text = if p.password_stdin {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut s).context("reading the password from standard input")?;
        s
    } else if let Some(f) = &p.password_file {
        Zeroizing::new(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?)
    } else {
        return Ok(None);
    };
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(UsageError("the password is empty".into()).into());
    }
    Ok(Some(Zeroizing::new(line)))
}

/// The name of the effective user from /etc/passwd (for audit lines when
/// `$USER` is not set, as under cron or systemd).
fn os_user_name() -> String {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is the effective uid, without any unsafe code.
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else { return "unknown".into() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id: u32 = f.nth(1)?.parse().ok()?;
                (id == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid{uid}"))
}
