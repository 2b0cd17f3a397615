//! Logins per second against the harness slapd: `authenticate` in a loop
//! from C concurrent tasks for N seconds, for each bind mode.
//!
//! cargo run --release -p tessera-ldap --features test-support --example ldap_bench -- [seconds] [concurrency] [run name filter]
//!
//! * template: one bind + a base read of the user's entry per login.
//! * search:   service-account search + bind + group search per login.
//! * `ldaps`:  the same over pooled LDAPS connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_ldap::testing::Slapd;
use tessera_ldap::testing::fixtures::{ALICE, ALICE_PASSWORD};
use tessera_ldap::{LdapConfig, LdapSource, LdapVerdict};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let only = args.next().unwrap_or_default();
    let slapd = Slapd::start().expect("start slapd (apt-get install slapd)");
    println!("slapd {} / {}; {concurrency} tasks, {seconds} s per run", slapd.ldap_url, slapd.ldaps_url);
    let runs: Vec<(&str, LdapConfig)> = vec![
        ("template ldap:// ", slapd.template_config(&slapd.ldap_url)),
        ("template ldaps://", slapd.template_config(&slapd.ldaps_url)),
        ("search+groups ldap:// ", {
            let mut c = slapd.search_config(&slapd.ldap_url);
            c.groups = Slapd::group_search();
            c
        }),
        ("search+groups ldaps://", {
            let mut c = slapd.search_config(&slapd.ldaps_url);
            c.groups = Slapd::group_search();
            c
        }),
    ];
    for (name, mut cfg) in runs.into_iter().filter(|(n, _)| n.contains(only.as_str())) {
        let accepted_before = slapd.log().matches(" ACCEPT ").count();
        cfg.pool_size = concurrency.clamp(1, tessera_ldap::MAX_POOL_SIZE);
        let src = LdapSource::new(cfg).expect("config");
        let rate = run(&src, concurrency, Duration::from_secs(seconds)).await;
        let connections = slapd.log().matches(" ACCEPT ").count() - accepted_before;
        println!("{name}: {rate:>8.0} logins/s ({connections} connections opened)");
    }
}

async fn run(src: &LdapSource, concurrency: usize, dur: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (src, stop, done) = (src.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match src.authenticate(ALICE, ALICE_PASSWORD).await {
                    Ok(LdapVerdict::Accepted(_)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
