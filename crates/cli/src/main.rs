//! `tessera`: the server (`tessera serve`) and its administration CLI.
//!
//! Every state-changing command works directly on the data directory (the
//! embedded database allows this while the server runs), prints what it
//! did, and is recorded in the audit log as `cli:<os user>`.
//! Exit codes: 0 success, 1 failure (not found, conflict, store error,
//! `check` rejected), 2 bad arguments or invalid input.

// First, so its `out!`/`outln!` macros are in scope in every later module.
#[macro_use]
mod output;
mod args;
mod commands;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;

/// glibc malloc showed up at ~12% of server CPU under load (SQLite page
/// buffers, per-request strings); mimalloc's thread-local free lists are
/// much cheaper for this many small, short-lived allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use args::Cli;

/// An error caused by the caller's input; exits with 2 like clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit status requested by a command that completed (e.g. `check` rejected).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
        return *code;
    }
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return 2;
        }
        if let Some(core) = cause.downcast_ref::<tessera_core::CoreError>()
            && matches!(core, tessera_core::CoreError::Invalid { .. } | tessera_core::CoreError::Password(_))
        {
            return 2;
        }
        if cause.downcast_ref::<tessera_server::config::ConfigError>().is_some() {
            return 2;
        }
    }
    1
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tessera: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            if e.downcast_ref::<Exit>().is_none() {
                eprintln!("tessera: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}
