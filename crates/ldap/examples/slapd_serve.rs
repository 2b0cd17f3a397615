//! Runs the test slapd (feature `test-support`) for a bench: prints its
//! settings as `key=value` lines, then serves until killed or until the
//! given number of seconds (default 600) has passed. slapd stops when this
//! process ends, however it ends.
//!
//!   cargo run --release -p tessera-ldap --features test-support --example slapd_serve -- 600

use std::io::Write;
use std::time::Duration;

use tessera_ldap::testing::{Slapd, fixtures};

fn main() -> std::io::Result<()> {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(600).min(24 * 3600);
    let s = Slapd::start()?;
    let mut out = std::io::stdout();
    writeln!(out, "ldap_url={}", s.ldap_url)?;
    writeln!(out, "ldaps_url={}", s.ldaps_url)?;
    writeln!(out, "ca_file={}", s.ca_pem_path.display())?;
    writeln!(out, "base_dn={}", fixtures::BASE_DN)?;
    writeln!(out, "groups_dn={}", fixtures::GROUPS_DN)?;
    writeln!(out, "service_dn={}", fixtures::SERVICE_DN)?;
    writeln!(out, "service_password={}", fixtures::SERVICE_PASSWORD)?;
    writeln!(out, "user_filter={}", fixtures::USER_FILTER)?;
    writeln!(out, "ready=1")?;
    out.flush()?;
    std::thread::sleep(Duration::from_secs(seconds));
    drop(s);
    Ok(())
}
