#!/usr/bin/env bash
# Builds tessera's Debian package (cargo-deb), installs it with `dpkg -i`,
# checks what it installed (user, directories, modes, conffile, unit), runs
# `tessera --version` and `tessera serve --config /etc/tessera/tessera.toml`
# as the `tessera` user on free loopback ports until it prints
# `listening https`, curls /healthz, /readyz and /metrics, stops it with
# SIGTERM (exit 0 expected), and purges the package.
#
# Before that, the upgrade path: the previous release's package (its binary
# from scripts/prev-release.sh, packaged from its own source tree) is
# installed, its server creates the data and a user with a HOTP token is
# added; then this package is installed over it (postinst runs `tessera
# migrate`), and the running checks below find that user's data kept and
# accept the user's next code. SKIP_UPGRADE=1 skips this part.
#
#   scripts/deb-test.sh                 # package the debug build (fast; CI)
#   DEB_PROFILE=release scripts/deb-test.sh   # a real release package (full release build)
#   NO_BUILD=1 scripts/deb-test.sh      # package target/debug/tessera as it is
#
# Needs root (dpkg -i). Not root: skipped with a message, or a failure when
# TESSERA_REQUIRE_TOOLS=1. Refuses to run where a `tessera` package is
# already installed. Installs cargo-deb (pinned) from crates.io on first use.
# Every wait is bounded; the server and the package are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T0=$(date +%s)
CARGO_DEB_VERSION=3.8.0
PROFILE=${DEB_PROFILE:-dev}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

skip() {
  if [ "${TESSERA_REQUIRE_TOOLS:-}" = 1 ]; then
    echo "deb-test: FAILED: $1 (TESSERA_REQUIRE_TOOLS=1)" >&2
    exit 1
  fi
  echo "deb-test: SKIPPED: $1"
  exit 0
}
fail() {
  echo "deb-test: FAILED: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || skip "not root (dpkg -i needs root)"
for t in dpkg dpkg-deb runuser curl getent; do
  command -v "$t" >/dev/null 2>&1 || skip "$t is not installed"
done
if [[ "$(dpkg-query -W -f='${Status}' tessera 2>/dev/null || true)" == *" installed" ]]; then
  fail "a tessera package is already installed on this machine; not touching it"
fi

if [ "$(cargo deb --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "deb-test: installing cargo-deb $CARGO_DEB_VERSION from crates.io"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tessera-deb-test.XXXXXX")
SERVER_PID=""
INSTALLED=0
cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  if [ "$INSTALLED" = 1 ]; then
    dpkg --purge tessera >/dev/null 2>&1
  fi
  if [ $rc -ne 0 ] && [ -f "$WORK/serve.log" ]; then
    echo "--- server log"; cat "$WORK/serve.log"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. The package. The debug build is what `cargo test` already built; a
#    release package costs a full release build (~6+ min on 2 cores).
if [ "$PROFILE" = dev ]; then
  [ "${NO_BUILD:-0}" = 1 ] || cargo build -p tessera --locked --quiet
  # cargo-deb warns that dev packages are unusual: this one is for testing.
  cargo deb -p tessera --no-build --profile dev --fast -q -o "$WORK" >/dev/null 2>&1 \
    || cargo deb -p tessera --no-build --profile dev --fast -o "$WORK"
else
  # --strip: [profile.release] keeps line tables for profiling; the package does not need them.
  cargo deb -p tessera --locked --strip -o "$WORK"
fi
DEB=$(ls "$WORK"/tessera_*.deb)
DEB_BYTES=$(stat -c %s "$DEB")
echo "deb-test: built $(basename "$DEB") ($((DEB_BYTES / 1024)) KiB, profile $PROFILE)"
dpkg-deb -c "$DEB" >"$WORK/contents.txt"
grep -q ' ./usr/bin/tessera$' "$WORK/contents.txt" || fail "no /usr/bin/tessera in the package"
grep -q 'systemd/system/tessera.service$' "$WORK/contents.txt" || fail "no systemd unit in the package"

# Starts `tessera serve` from the packaged config as the tessera user on
# free loopback ports; sets SERVER_PID and ADDR.
start_server() {
  cd /var/lib/tessera
  runuser -u tessera -- env TESSERA_HTTP_LISTEN=127.0.0.1:0 TESSERA_RADIUS_LISTEN=127.0.0.1:0 TESSERA_LOG=info \
    tessera serve --config /etc/tessera/tessera.toml >"$WORK/serve.log" 2>&1 &
  SERVER_PID=$!
  cd "$ROOT"
  ADDR=""
  for _ in $(seq 300); do
    ADDR=$(sed -n 's/^listening https //p' "$WORK/serve.log" | head -n1)
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "tessera serve exited early"
    sleep 0.1
  done
  [ -n "$ADDR" ] || fail "no 'listening https' line within 30 s"
}

# SIGTERM to tessera itself (not runuser's watching parent): exit 0.
stop_server() {
  local tpid rc
  tpid=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ' | head -n1)
  [ -n "$tpid" ] || tpid=$SERVER_PID
  kill -TERM "$tpid"
  for _ in $(seq 150); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$SERVER_PID" 2>/dev/null && fail "tessera did not stop within 15 s of SIGTERM"
  set +e
  wait "$SERVER_PID"
  rc=$?
  set -e
  SERVER_PID=""
  [ "$rc" -eq 0 ] || fail "tessera serve exited $rc after SIGTERM"
}

as_tessera() {
  (cd /var/lib/tessera && runuser -u tessera -- tessera --config /etc/tessera/tessera.toml "$@")
}

HOTP_SECRET=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
UPGRADED=0
# 1b. The previous release's package, installed and used, then upgraded.
if [ "${SKIP_UPGRADE:-0}" != 1 ] && [ "$PROFILE" = dev ]; then
  if OLD_BIN=$(scripts/prev-release.sh); then
    OLD_SRC=$(dirname "$OLD_BIN")/src
    OLD_TARGET="$WORK/old-target"
    mkdir -p "$OLD_TARGET/debug" "$WORK/old"
    cp "$OLD_BIN" "$OLD_TARGET/debug/tessera"
    (cd "$OLD_SRC" && CARGO_TARGET_DIR="$OLD_TARGET" cargo deb -p tessera --no-build --profile dev --fast -q \
      -o "$WORK/old" >/dev/null 2>&1) || fail "packaging the previous release"
    OLD_DEB=$(ls "$WORK"/old/tessera_*.deb)
    echo "deb-test: upgrade path: from $(basename "$OLD_DEB") to $(basename "$DEB")"
    INSTALLED=1
    dpkg -i "$OLD_DEB" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i (previous release)"; }
    OLD_VERSION=$(runuser -u tessera -- tessera --version)
    start_server
    as_tessera user add upgrade-probe >/dev/null || fail "user add (previous release)"
    as_tessera token add upgrade-probe --type hotp --secret "$HOTP_SECRET" >/dev/null || fail "token add (previous release)"
    stop_server
    # The package replaced while its data exists: postinst migrates.
    dpkg -i "$DEB" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i (upgrade)"; }
    grep -q 'database schema' "$WORK/dpkg.log" || { cat "$WORK/dpkg.log"; fail "postinst did not run tessera migrate"; }
    echo "deb-test: upgraded $OLD_VERSION -> $(runuser -u tessera -- tessera --version): $(grep 'database schema' "$WORK/dpkg.log")"
    as_tessera user show upgrade-probe >/dev/null || fail "the previous release's user is gone after the upgrade"
    UPGRADED=1
  elif [ "${TESSERA_REQUIRE_TOOLS:-}" = 1 ] && [ "${TESSERA_PREV_RELEASE_MISSING:-}" != 1 ]; then
    fail "the previous release could not be built (scripts/prev-release.sh)"
  else
    echo "deb-test: upgrade path SKIPPED: the previous release could not be built"
  fi
fi

# 2. Install on this machine (no systemd running here: nothing is started).
INSTALLED=1
dpkg -i "$DEB" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i"; }
[[ "$(getent passwd tessera || true)" == *:/var/lib/tessera:/usr/sbin/nologin ]] || fail "no system user tessera"
[ "$(stat -c '%U:%G %a' /var/lib/tessera)" = "tessera:tessera 700" ] || fail "/var/lib/tessera: $(stat -c '%U:%G %a' /var/lib/tessera)"
[ "$(stat -c '%U:%G %a' /etc/tessera/tessera.toml)" = "root:tessera 640" ] || fail "tessera.toml: $(stat -c '%U:%G %a' /etc/tessera/tessera.toml)"
[[ "$(dpkg-query -W -f='${Conffiles}' tessera)" == *" /etc/tessera/tessera.toml "* ]] || fail "tessera.toml is not a conffile"
UNIT=$(dpkg -L tessera | grep 'systemd/system/tessera.service$')
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$UNIT" >"$WORK/verify.log" 2>&1 || { cat "$WORK/verify.log"; fail "systemd-analyze verify $UNIT"; }
fi
if [ -d /run/systemd/system ]; then
  echo "deb-test: note: systemd runs here; the package started tessera.service"
fi

# 3. The binary as the service user.
VERSION=$(runuser -u tessera -- tessera --version)
echo "deb-test: runuser -u tessera -- tessera --version: $VERSION"
[[ "$VERSION" == tessera\ * ]] || fail "unexpected --version output"

# 4. The packaged default config starts a server (port 0: free loopback
#    ports, so nothing collides with a real 1812/8443).
start_server
echo "deb-test: serving on $ADDR"
[ "$(stat -c '%U %a' /var/lib/tessera/tessera.key)" = "tessera 600" ] || fail "master key: $(stat -c '%U %a' /var/lib/tessera/tessera.key)"
[ "$(stat -c '%U %a' /var/lib/tessera/data)" = "tessera 700" ] || fail "data dir: $(stat -c '%U %a' /var/lib/tessera/data)"
CA=/var/lib/tessera/data/tls/cert.pem
HEALTH=$(curl -sS --max-time 10 --cacert "$CA" "https://$ADDR/healthz")
echo "deb-test: /healthz: $HEALTH"
[[ "$HEALTH" == *'"status":"ok"'* ]] || fail "/healthz"
curl -sS --fail --max-time 10 --cacert "$CA" "https://$ADDR/readyz" >/dev/null || fail "/readyz"
METRICS=$(curl -sS --fail --max-time 10 --cacert "$CA" "https://$ADDR/metrics") || fail "/metrics"
grep -q '^tessera_requests_total' <<<"$METRICS" || fail "/metrics has no tessera_requests_total"
# the admin CLI, as the service user, on the running node's data
runuser -u tessera -- tessera --config /etc/tessera/tessera.toml status >/dev/null || fail "tessera status as tessera"
if [ "$UPGRADED" = 1 ]; then
  # The user the previous release created logs in with the new one.
  CODE=$(oathtool --hotp -b "$HOTP_SECRET" -c 0 2>/dev/null || true)
  if [ -n "$CODE" ]; then
    RESULT=$(curl -sS --max-time 10 --cacert "$CA" -H 'content-type: application/json' \
      -d "{\"username\":\"upgrade-probe\",\"password\":\"$CODE\"}" "https://$ADDR/api/v1/validate")
    [[ "$RESULT" == *'"result":"accept"'* ]] || fail "the previous release's user cannot log in after the upgrade: $RESULT"
    echo "deb-test: the previous release's user logs in after the upgrade"
  fi
fi

# 5. SIGTERM (to tessera itself, not runuser's watching parent): exit 0.
stop_server

# 6. Purge: binary, config and data gone.
dpkg --purge tessera >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg --purge"; }
INSTALLED=0
[ ! -e /usr/bin/tessera ] && [ ! -e /var/lib/tessera ] && [ ! -e /etc/tessera ] || fail "files left after purge"
echo "deb-test: PASS ($(($(date +%s) - T0)) s; package $((DEB_BYTES / 1024)) KiB)"
