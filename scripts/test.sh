#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, and all tests, after
# installing the Debian packages the tests use when they are missing.
# Usage: scripts/test.sh        (from anywhere; needs Rust/cargo)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive (real tools, not stand-ins).
need=()
command -v oathtool >/dev/null 2>&1 || need+=(oathtool)
# curl: the README walk-through test runs the README's own curl command.
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v radclient >/dev/null 2>&1 || need+=(freeradius-utils)
command -v pamtester >/dev/null 2>&1 || need+=(pamtester)
command -v radsecproxy >/dev/null 2>&1 || need+=(radsecproxy)
# OpenLDAP for the LDAP first-factor tests (a private slapd per test run).
[ -x /usr/sbin/slapd ] || need+=(slapd ldap-utils)
# PostgreSQL server binaries for the PostgreSQL store tests (a private
# cluster per test run, started by tessera_store::postgres::testing).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
# faketime: a node started with its clock 120 s ahead (the shared-database
# clock check, cases/health.rs).
command -v faketime >/dev/null 2>&1 || need+=(faketime)
# age: backups must open with the standard tool.
command -v age >/dev/null 2>&1 || need+=(age)
# aiosmtpd: the SMTP server that receives email codes (Debian's python3).
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
# Chromium and its WebDriver: the web UI's browser test (headless).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -e /lib/x86_64-linux-gnu/security/pam_radius_auth.so ] || [ -e /usr/lib/x86_64-linux-gnu/security/pam_radius_auth.so ] \
  || need+=(libpam-radius-auth)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Missing tools fail the tests instead of skipping them.
export TESSERA_REQUIRE_TOOLS=1

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The previous release's binary for the rolling-upgrade tests: built once
# (tessera's own crates only; dependencies are shared) and kept under
# target/prev-release/<commit>/.
# A clone without that commit (shallow) cannot build it: the upgrade tests
# are then skipped, said loudly here and by each of them.
prev_rc=0
scripts/prev-release.sh >/dev/null || prev_rc=$?
if [ "$prev_rc" -eq 3 ]; then
  echo "WARNING: the previous release's commit is not in this clone (shallow?): the rolling-upgrade tests are SKIPPED" >&2
  export TESSERA_PREV_RELEASE_MISSING=1
elif [ "$prev_rc" -ne 0 ]; then
  exit "$prev_rc"
fi
cargo test --workspace --locked

# The Debian package: build (from the debug build above), dpkg -i, run as
# the tessera user, /healthz, SIGTERM, dpkg --purge (root only; see the script).
scripts/deb-test.sh

# Fuzz the RADIUS packet decoder for a bounded time (installs cargo-fuzz
# from crates.io on first use); a crash fails the run.
scripts/fuzz.sh radius_decode "${FUZZ_SECONDS:-60}"
# …and the seed-file importers (CSV, PSKC), briefly.
scripts/fuzz.sh import_csv "${FUZZ_IMPORT_SECONDS:-20}"
scripts/fuzz.sh import_pskc "${FUZZ_IMPORT_SECONDS:-20}"
