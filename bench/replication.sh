#!/usr/bin/env bash
# Primary/replica benchmark, end to end on this machine (loopback only):
#  1. join time of a replica (snapshot of USERS users);
#  2. replication lag p50/p99 while admin writes arrive at RATE/s (bench/replication_lag.py);
#  3. RADIUS throughput (tessera-loadgen radius, valid never-repeated codes) on the primary and
#     on the replica, same user count and concurrency, with the replica's cluster-wide replay
#     protection (`replay_guard = "cluster"`, the default: the primary takes every code first)
#     and with `local` (the replica decides on its own data), and what the guard costs
#     (throughput ratio, added p50/p99 latency).
#
#   bench/replication.sh                 # USERS=100000 DUR=10 CONCS="16 64" RATE=50 LAG_SECONDS=20 GUARDS="cluster local"
#   USERS=20000 DUR=5 bench/replication.sh
#
# Needs release binaries (built unless NO_BUILD=1). Every wait is bounded; background processes stop on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
USERS=${USERS:-100000}
DUR=${DUR:-10}
CONCS=${CONCS:-"16 64"}
RATE=${RATE:-50}
LAG_SECONDS=${LAG_SECONDS:-20}
GUARDS=${GUARDS:-"cluster local"}
SEED=${SEED:-1}
P_PORT=${P_PORT:-18130}
R_PORT=${R_PORT:-18131}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LG=$TARGET/release/tessera-loadgen
TS=$TARGET/release/tessera
OUT=${OUT:-target/bench}
mkdir -p "$OUT"
exec > >(tee "$OUT/replication-$(date +%Y%m%d-%H%M%S).txt") 2>&1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tessera-repl-bench.XXXXXX")
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
log() { echo "== $*"; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  log "build"; cargo build --release -p tessera -p tessera-loadgen 2>&1 | tail -n 1
fi
log "machine: $(nproc) cpus; USERS=$USERS DUR=${DUR}s CONCS=\"$CONCS\" RATE=$RATE/s; tessera $(git describe --always --dirty 2>/dev/null || echo '?')"

# start NAME DATA RADIUS_PORT [ENV=VALUE…]: starts a server, waits for its HTTPS line, sets URL_<NAME> and PID_<NAME>.
start() {
  local name=$1 data=$2 port=$3 out=$TMP/$1.out; shift 3
  ln -sf "$TS" "$TMP/tessera-bench-$name"
  env "$@" TESSERA_SERVER_NODE_NAME=$name TESSERA_SERVER_DATA_DIR=$data TESSERA_HTTP_LISTEN=127.0.0.1:${HTTP_PORT[$name]:-0} \
    TESSERA_RADIUS_LISTEN=127.0.0.1:$port "$TMP/tessera-bench-$name" serve >"$out" 2>>"$TMP/$name.err" &
  local pid=$!; PIDS+=("$pid")
  for _ in $(seq 300); do grep -q "^listening https" "$out" && break; sleep 0.1; done
  grep -q "^listening https" "$out" || { echo "$name did not start"; tail "$TMP/$name.err"; exit 1; }
  printf -v "URL_$name" 'https://%s' "$(sed -n 's/^listening https //p' "$out" | head -n1)"
  printf -v "PID_$name" '%s' "$pid"
  HTTP_PORT[$name]=$(sed -n 's/^listening https .*://p' "$out" | head -n1)
}
declare -A HTTP_PORT
# stop NAME: SIGTERM, bounded wait.
stop() {
  local pid; pid=$(eval echo "\$PID_$1")
  kill -TERM "$pid"; for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

P=$TMP/primary; R=$TMP/replica
log "setup: $USERS users on the primary"
"$LG" setup --data "$P" --users "$USERS" --seed "$SEED" | tail -n 1
(umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$TMP/radius.secret"; echo >>"$TMP/radius.secret")
export TESSERA_SERVER_NODE_NAME=p
TESSERA_SERVER_DATA_DIR=$P "$TS" client add loadgen --address 127.0.0.1/32 --secret-file "$TMP/radius.secret" >/dev/null
KEY=$(TESSERA_SERVER_DATA_DIR=$P "$TS" api-key create bench)
start p "$P" "$P_PORT"
JOIN=$(TESSERA_SERVER_DATA_DIR=$P "$TS" replica token --json)
TOKEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$JOIN")
PIN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pin"])' "$JOIN")
# Both data directories sit in $TMP, so both nodes read the same key file, $TMP/tessera.key.
export TESSERA_SERVER_NODE_NAME=r
TESSERA_SERVER_DATA_DIR=$R "$TS" init >/dev/null
log "replica join (snapshot of $USERS users)"
t0=$(date +%s.%N)
TESSERA_SERVER_DATA_DIR=$R "$TS" replica join "$URL_p" --token "$TOKEN" --pin "$PIN" --force | sed 's/^/   /'
unset TESSERA_SERVER_NODE_NAME
t1=$(date +%s.%N)
echo "   join took $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
start r "$R" "$R_PORT"

log "replication lag under $RATE admin writes/s for ${LAG_SECONDS}s"
python3 bench/replication_lag.py "$URL_p" "$URL_r" "$KEY" "$RATE" "$LAG_SECONDS" | sed 's/^/   /'

set -- $CONCS; NC=$#; set -- $GUARDS; NG=$#; PER=$((USERS / (2 * NC * NG))); k=0
for g in $GUARDS; do
  if [ "$g" != cluster ]; then
    log "restarting the replica with replay_guard = $g"
    stop r; start r "$R" "$R_PORT" TESSERA_REPLICATION_REPLAY_GUARD="$g"; sleep 2
  fi
  for c in $CONCS; do
    for node in p r; do
      port=$P_PORT; pid=$PID_p; [ $node = r ] && port=$R_PORT && pid=$PID_r
      first=$((k * PER)); k=$((k + 1))
      log "RADIUS on the $([ $node = p ] && echo primary || echo replica), replay_guard=$g: c=$c, users [$first, $((first + PER))), ${DUR}s"
      "$LG" radius --server "127.0.0.1:$port" --secret-file "$TMP/radius.secret" --users "$PER" --first-user "$first" \
        --seed "$SEED" -c "$c" -d "$DUR" --server-pid "$pid" --json "$TMP/$node-$g-c$c.json" | sed -n 's/^tessera /   /p'
    done
  done
done
log "summary"
python3 - "$TMP" "$CONCS" "$GUARDS" <<'PY'
import json, os, sys
tmp, concs, guards = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
load = lambda n, g, c: json.load(open(os.path.join(tmp, f"{n}-{g}-c{c}.json")))
rate = lambda d: d.get("throughput_rps") or 0
lat = lambda d, q: (d.get("latency_ms") or {}).get(q, 0)
print(f"   {'stage':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
for c in concs:
    for g in guards:
        for n in ("p", "r"):
            d = load(n, g, c)
            who = "primary" if n == "p" else "replica"
            print(f"   {who + ', ' + g + ', c=' + c:<28}{rate(d):>10.0f}{lat(d, 'p50'):>9.2f}{lat(d, 'p99'):>9.2f}")
for c in concs:
    p, r = load("p", guards[0], c), load("r", guards[0], c)
    print(f"   c={c}: replica/primary RADIUS throughput ({guards[0]}) = {rate(r):.0f}/{rate(p):.0f} = {rate(r) / max(rate(p), 1):.2f}x")
if "cluster" in guards and "local" in guards:
    for c in concs:
        for n, who in (("r", "replica"), ("p", "primary")):
            cl, lo = load(n, "cluster", c), load(n, "local", c)
            print(f"   c={c} {who}: cluster-wide/local throughput = {rate(cl) / max(rate(lo), 1):.2f}x, "
                  f"added p50 {lat(cl, 'p50') - lat(lo, 'p50'):+.2f} ms, p99 {lat(cl, 'p99') - lat(lo, 'p99'):+.2f} ms")
PY
