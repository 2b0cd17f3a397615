//! `setup`: creates the bench users and their TOTP tokens directly through
//! the library, before the server is started.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tessera_core::audit::Actor;
use tessera_core::error::CoreError;
use tessera_core::password::InlineHasher;
use tessera_otp::OtpParams;
use tessera_server::node::{self, Node};
use tokio::task::JoinSet;

use crate::accounts::{bench_secret, bench_serial, bench_username};

#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    created: u64,
    existed: u64,
    token_added: u64,
}

async fn ensure_user(node: Node, seed: Arc<str>, i: u64) -> anyhow::Result<Outcome> {
    let actor = Actor::new("loadgen");
    let name = bench_username(i);
    let mut out = Outcome::default();
    let user = match node.admin.add_user(&actor, None, &name, None).await {
        Ok(u) => {
            out.created = 1;
            u
        }
        Err(CoreError::Conflict(_)) => {
            out.existed = 1;
            let u = node.admin.find_user(None, &name).await.with_context(|| format!("finding {name}"))?;
            if !node.admin.tokens(&u).await?.is_empty() {
                return Ok(out);
            }
            u
        }
        Err(e) => return Err(e).with_context(|| format!("adding {name}")),
    };
    let secret = bench_secret(&seed, i)?;
    let serial = bench_serial(i);
    node.admin
        .add_token(&actor, &user, &secret, OtpParams::default(), 0, Some(&serial), "", false)
        .await
        .with_context(|| format!("adding token {serial} for {name}"))?;
    out.token_added = 1;
    Ok(out)
}

pub fn setup(data: &Path, users: u64, seed: &str, parallel: usize) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut cfg = node::load_config(None, &env).context("configuration from the environment")?;
    cfg.server.data_dir = data.to_path_buf();
    cfg.database.login_engine = false;
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // TESSERA_DATABASE_URL set: the users go into that PostgreSQL instead.
    let node = rt.block_on(async {
        if !node::is_initialised(&cfg).await? {
            let r = node::init(&cfg, &env).await?;
            println!("initialised {} (key {}, created: {})", r.database, r.key, r.key_created);
        }
        anyhow::Ok(node::open(&cfg, &env, Arc::new(InlineHasher)).await?)
    })?;
    let seed: Arc<str> = seed.into();
    let total = rt.block_on(async move {
        let mut set = JoinSet::new();
        let mut total = Outcome::default();
        let mut done = 0u64;
        let mut collect = |r: Result<anyhow::Result<Outcome>, tokio::task::JoinError>| -> anyhow::Result<()> {
            let o = r??;
            total.created += o.created;
            total.existed += o.existed;
            total.token_added += o.token_added;
            done += 1;
            if done.is_multiple_of(10_000) {
                println!("  {done}/{users} users ({:.1}s)", t0.elapsed().as_secs_f64());
            }
            Ok(())
        };
        for i in 0..users {
            while set.len() >= parallel.max(1) {
                if let Some(r) = set.join_next().await {
                    collect(r)?;
                }
            }
            set.spawn(ensure_user(node.clone(), seed.clone(), i));
        }
        while let Some(r) = set.join_next().await {
            collect(r)?;
        }
        anyhow::Ok(total)
    })?;
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "setup: {users} users in {} ({} created, {} existed, {} tokens added) in {dt:.1}s ({:.0} users/s)",
        cfg.database_display(),
        total.created,
        total.existed,
        total.token_added,
        users as f64 / dt.max(1e-9)
    );
    Ok(())
}
