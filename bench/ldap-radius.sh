#!/usr/bin/env bash
# LDAP first factor through RADIUS: Access-Requests/s when every login checks its password against a
# (local, private) OpenLDAP slapd, with the directory cache off (search + bind + group search per login)
# and on (one bind per login with the cached DN; groups from the cache).
#
#   bench/ldap-radius.sh                    # ~1 min after the build
#   DUR=10 CONCS="16 64" bench/ldap-radius.sh
#
# The bench RADIUS client is a single-factor exception (policy single_factor_clients), so each request is
# the LDAP password alone: this measures the first-factor path (RADIUS + engine + store + LDAP); the OTP
# path is measured by bench/radius.sh. Users: the slapd test fixtures (alice, bob, carol), round robin.
# Env: DUR (10) seconds per stage; CONCS ("16 64"); PORT (18130); NO_BUILD (0); KEEP (0); OUT (target/bench).
# Loopback only; every wait is bounded; slapd and the server are stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DUR=${DUR:-10}
CONCS=${CONCS:-"16 64"}
PORT=${PORT:-18130}
OUT=${OUT:-target/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TS=$TARGET/release/tessera
LG=$TARGET/release/tessera-loadgen
SLAPD_SERVE=$TARGET/release/examples/slapd_serve
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || { echo "needs Debian slapd (apt-get install slapd)"; exit 2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release -p tessera -p tessera-loadgen
  cargo build --release -p tessera-ldap --features test-support --example slapd_serve
fi
mkdir -p "$OUT"
REPORT="$OUT/ldap-radius-$(date +%Y%m%d-%H%M%S).txt"
exec > >(tee "$REPORT") 2>&1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tessera-ldap-bench.XXXXXX")
DATA=$TMP/data
LPID=""
SPID=""
cleanup() {
  set +e
  for p in $SPID $LPID; do
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

"$SLAPD_SERVE" 900 >"$TMP/slapd.env" 2>"$TMP/slapd.err" &
LPID=$!
for _ in $(seq 100); do grep -q '^ready=1' "$TMP/slapd.env" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready=1' "$TMP/slapd.env" || { echo "slapd did not start"; cat "$TMP/slapd.err"; exit 1; }
get() { sed -n "s/^$1=//p" "$TMP/slapd.env"; }
echo "== slapd $(get ldap_url)"

export TESSERA_SERVER_DATA_DIR=$DATA
"$TS" init >/dev/null
printf '%s\n' "$(get service_password)" >"$TMP/svc.pw"
realm() {
  cat >"$TMP/corp.toml" <<EOF
cache_ttl_seconds = $1
[[source]]
type = "ldap"
urls = ["$(get ldap_url)"]
bind_dn = "$(get service_dn)"
bind_password_file = "$TMP/svc.pw"
base_dn = "$(get base_dn)"
filter = "$(get user_filter)"
group_mode = "search"
group_base_dn = "$(get groups_dn)"
group_filter = "(member={dn})"
pool_size = 8
EOF
  "$TS" realm add corp --file "$TMP/corp.toml" >/dev/null
}
realm 0
head -c 24 /dev/urandom | base64 >"$TMP/radius.secret"
"$TS" client add loadgen --address 127.0.0.1/32 --secret-file "$TMP/radius.secret" --default-realm corp >/dev/null
"$TS" policy set single_factor_clients=loadgen >/dev/null
: >"$TMP/users.csv"
for u in alice bob carol; do "$TS" user add "$u" --realm corp >/dev/null; done
# The generator wants one row per outstanding request; with passwords alone rows may repeat.
for _ in $(seq 100); do
  for u in alice bob carol; do echo "$u,$u-Pa55,0000000000000000000000000000000000000000" >>"$TMP/users.csv"; done
done

ln -sf "$TS" "$TMP/tessera-bench-server"
TESSERA_HTTP_LISTEN=127.0.0.1:0 TESSERA_RADIUS_LISTEN=127.0.0.1:$PORT \
  "$TMP/tessera-bench-server" serve >"$TMP/server.out" 2>"$TMP/server.err" &
SPID=$!
for _ in $(seq 300); do grep -q "^listening radius 127.0.0.1:$PORT$" "$TMP/server.out" && break; sleep 0.1; done
grep -q "^listening radius" "$TMP/server.out" || { echo "server did not start"; tail "$TMP/server.err"; exit 1; }

stage() {
  local label=$1 c=$2
  "$LG" radius --server "127.0.0.1:$PORT" --secret-file "$TMP/radius.secret" --peer-csv "$TMP/users.csv" \
    --password-only --system "tessera+ldap ($label)" -c "$c" -d "$DUR" --server-pid "$SPID" --json "$TMP/$label-$c.json" \
    | sed 's/^/   /'
}
for c in $CONCS; do
  echo "== cache off: search + bind + group search per login, c=$c, ${DUR}s"
  stage cache-off "$c"
done
realm 300
sleep 3 # the server re-reads realms every 2 s
for c in $CONCS; do
  echo "== cache on (300 s): one bind per login, c=$c, ${DUR}s"
  stage cache-on "$c"
done
echo "== summary"
printf '%-10s %4s %9s %9s %9s\n' cache c req/s p50_ms p99_ms
for f in "$TMP"/cache-*.json; do
  python3 - "$f" <<'PY'
import json, sys, os
r = json.load(open(sys.argv[1])); name = os.path.basename(sys.argv[1]).rsplit("-", 1)[0]
lat = r.get("latency_ms") or {}
print("%-10s %4d %9.0f %9.3f %9.3f" % (name, r["concurrency"], r["throughput_rps"], lat.get("p50", float("nan")), lat.get("p99", float("nan"))))
PY
done
echo "report: $REPORT"
