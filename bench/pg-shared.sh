#!/usr/bin/env bash
# Validate throughput: two tessera nodes sharing one PostgreSQL versus one node on the embedded
# database, driven by tessera-loadgen over HTTPS (REST POST /api/v1/validate, correct codes only).
#
#   bench/pg-shared.sh                          # ~3 min after the build
#   USERS=20000 DUR=5 CONCS=32 bench/pg-shared.sh
#
# Env: USERS (30000) bench users per system, split into disjoint ranges, one per stage; DUR (10) seconds per
#      stage; CONCS ("16 64") total concurrency of a stage (the shared stages split it evenly over the two
#      nodes, one loadgen per node); SEED (1); PG_POOL (16) connections per node; PG_FSYNC (on): the private
#      PostgreSQL's fsync and synchronous_commit (on = as durable as the embedded node's synchronous=full);
#      NO_BUILD (0); KEEP (0: delete the temp dir unless something failed); OUT (target/bench).
# Needs Debian's postgresql server binaries (/usr/lib/postgresql/*/bin). As root, PostgreSQL runs as the
# `postgres` user. Everything on 127.0.0.1; every wait is bounded; every process started here is stopped by
# its pid on exit. Not part of scripts/test.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
USERS=${USERS:-30000}
DUR=${DUR:-10}
CONCS=${CONCS:-"16 64"}
SEED=${SEED:-1}
PG_POOL=${PG_POOL:-16}
PG_FSYNC=${PG_FSYNC:-on}
OUT=${OUT:-target/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LG=$TARGET/release/tessera-loadgen
TS_BIN=$TARGET/release/tessera

mkdir -p "$OUT"
REPORT="$OUT/pg-shared-$(date +%Y%m%d-%H%M%S).txt"
exec > >(tee "$REPORT") 2>&1

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)"; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tessera-pgbench.XXXXXX")
chmod 755 "$TMP"
AS_PG=()
if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); fi
PIDS=()
PGPID=""
FAIL=0
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p"
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$p" 2>/dev/null
    fi
  done
  if [ -f "$TMP/pg/data/postmaster.pid" ]; then
    pm=$(head -n 1 "$TMP/pg/data/postmaster.pid")
    kill -INT "$pm" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pm" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ "${KEEP:-0}" = 1 ] || [ "$FAIL" != 0 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "== $*"; }
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_node NAME DATA_DIR [ENV=VALUE...]: a server through a symlink of its own name (a stray
# `pkill -f "tessera serve"` elsewhere does not hit it); sets PORT_<NAME> and PID_<NAME>.
start_node() {
  local name=$1 data=$2 port="" pid
  shift 2
  ln -sf "$TS_BIN" "$TMP/tessera-bench-$name"
  : >"$TMP/$name.out"   # exists before the server's own redirection does
  env "$@" TESSERA_SERVER_DATA_DIR="$data" TESSERA_HTTP_LISTEN=127.0.0.1:0 TESSERA_RADIUS_LISTEN= \
    TESSERA_SERVER_NODE_NAME="$name" "$TMP/tessera-bench-$name" serve >"$TMP/$name.out" 2>>"$TMP/$name.err" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do
    port=$(sed -n 's/^listening https 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/$name.out" | head -n1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "node $name exited:"; tail -n 20 "$TMP/$name.err"; FAIL=1; exit 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { echo "node $name did not listen within 30 s"; FAIL=1; exit 1; }
  printf -v "PORT_$name" '%s' "$port"
  printf -v "PID_$name" '%s' "$pid"
}

stop_pid() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}

log "machine: $(nproc) cpus, $(uname -r); $(date -u +%FT%TZ); USERS=$USERS DUR=${DUR}s CONCS=\"$CONCS\" PG_POOL=$PG_POOL PG_FSYNC=$PG_FSYNC"
if [ "${NO_BUILD:-0}" != 1 ]; then
  log "build (release)"
  if ! cargo build --release -p tessera -p tessera-loadgen >"$TMP/build.log" 2>&1; then
    tail -n 30 "$TMP/build.log"; echo "build failed"; FAIL=1; exit 1
  fi
fi
echo "   tessera $(git describe --always --dirty 2>/dev/null || echo '?'); $("$PGBIN/postgres" --version)"

# ---------------------------------------------------------------- PostgreSQL
log "PostgreSQL: initdb in $TMP/pg"
mkdir -p "$TMP/pg"
[ ${#AS_PG[@]} -gt 0 ] && chown postgres: "$TMP/pg"
"${AS_PG[@]}" "$PGBIN/initdb" -A trust -U postgres -E UTF8 --locale=C -D "$TMP/pg/data" >"$TMP/pg/initdb.log" 2>&1
PGPORT=$(free_port)
"${AS_PG[@]}" "$PGBIN/postgres" -D "$TMP/pg/data" -k "$TMP/pg" -h 127.0.0.1 -p "$PGPORT" \
  -c fsync="$PG_FSYNC" -c synchronous_commit="$PG_FSYNC" -c max_connections=200 -c shared_buffers=128MB \
  >"$TMP/pg/postgres.log" 2>&1 &
for _ in $(seq 300); do
  [ -f "$TMP/pg/data/postmaster.pid" ] && python3 -c "import socket; socket.create_connection(('127.0.0.1', $PGPORT), 0.2)" 2>/dev/null && break
  sleep 0.1
done
"${AS_PG[@]}" "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres \
  -c "CREATE DATABASE tessera TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'" \
  || { tail -n 20 "$TMP/pg/postgres.log"; FAIL=1; exit 1; }
PGURL="postgres://postgres@127.0.0.1:$PGPORT/tessera"
echo "   $PGURL (fsync=$PG_FSYNC)"

set -- $CONCS
NC=$#
PER=$((USERS / NC))

# stage SYSTEM C FIRST_USER URL...: one loadgen per URL, C split evenly, disjoint user ranges; prints
# and stores (in STAGE_RPS) the summed throughput.
stage() {
  local system=$1 c=$2 first=$3
  shift 3
  local n=$# i=0 per_url=$((PER / $#)) each pids=() files=()
  each=$((c / n)); [ "$each" -lt 1 ] && each=1
  for url in "$@"; do
    local f="$TMP/$system-c$c-$i.json"
    files+=("$f")
    "$LG" rest --url "$url" --ca "$CA" --users "$per_url" --first-user $((first + i * per_url)) --seed "$SEED" \
      -c "$each" -d "$DUR" --json "$f" >"$TMP/$system-c$c-$i.out" 2>&1 &
    pids+=($!)
    i=$((i + 1))
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  local total=0 accepts=0 requests=0 p50="" p99="" starved=0
  for f in "${files[@]}"; do
    [ -f "$f" ] || { rc=1; continue; }
    total=$(python3 -c "print($total + $(json "$f" 'throughput_rps'))")
    accepts=$((accepts + $(json "$f" 'accepts')))
    requests=$((requests + $(json "$f" 'requests')))
    p50="$p50 $(json "$f" 'round(latency_ms["p50"], 2)')"
    p99="$p99 $(json "$f" 'round(latency_ms["p99"], 2)')"
    starved=$(python3 -c "print(round($starved + $(json "$f" 'code_supply_exhausted_s'), 2))")
  done
  [ $rc = 0 ] || { FAIL=1; echo "   STAGE FAILED"; cat "$TMP/$system-c$c-"*.out | tail -n 20; }
  STAGE_RPS=$(python3 -c "print(round($total))")
  printf '   %-24s c=%-4s %8s req/s  accepted %s of %s  p50 ms:%s  p99 ms:%s\n' \
    "$system" "$c" "$STAGE_RPS" "$accepts" "$requests" "$p50" "$p99"
  if python3 -c "import sys; sys.exit(0 if $starved > 0.5 else 1)"; then
    echo "   WARNING: workers waited ${starved} s for codes (too few USERS for this rate): throughput is capped"
  fi
}

# ---------------------------------------------------------------- one embedded node
log "embedded: setup $USERS users"
mkdir -p "$TMP/embedded"
"$LG" setup --data "$TMP/embedded/data" --users "$USERS" --seed "$SEED" | tail -n 1
start_node embedded "$TMP/embedded/data"
CA=$TMP/embedded/data/tls/cert.pem
declare -A EMB
k=0
for c in $CONCS; do
  stage embedded "$c" $((k * PER)) "https://127.0.0.1:$PORT_embedded"
  EMB[$c]=$STAGE_RPS
  k=$((k + 1))
done
stop_pid "$PID_embedded"

# ---------------------------------------------------------------- two nodes, one PostgreSQL
log "shared: setup $USERS users in PostgreSQL (node a runs init), node b gets a copy of the key"
mkdir -p "$TMP/a" "$TMP/b"
TESSERA_DATABASE_URL=$PGURL "$LG" setup --data "$TMP/a/data" --users "$USERS" --seed "$SEED" | tail -n 1
cp "$TMP/a/tessera.key" "$TMP/b/tessera.key"; chmod 600 "$TMP/b/tessera.key"
# One certificate for both nodes so one --ca fits.
mkdir -p "$TMP/b/data"; chmod 700 "$TMP/b/data"
start_node a "$TMP/a/data" TESSERA_DATABASE_URL="$PGURL" TESSERA_DATABASE_POOL_SIZE="$PG_POOL"
cp -r "$TMP/a/data/tls" "$TMP/b/data/tls"
start_node b "$TMP/b/data" TESSERA_DATABASE_URL="$PGURL" TESSERA_DATABASE_POOL_SIZE="$PG_POOL"
CA=$TMP/a/data/tls/cert.pem
declare -A SHR
k=0
for c in $CONCS; do
  stage "2 nodes + PostgreSQL" "$c" $((k * PER)) "https://127.0.0.1:$PORT_a" "https://127.0.0.1:$PORT_b"
  SHR[$c]=$STAGE_RPS
  k=$((k + 1))
done
TESSERA_DATABASE_URL=$PGURL "$TS_BIN" --data "$TMP/a/data" audit verify >"$TMP/verify.txt" 2>&1 </dev/null \
  && echo "   audit verify: $(head -n 1 "$TMP/verify.txt")" || { FAIL=1; cat "$TMP/verify.txt"; }
stop_pid "$PID_a"
stop_pid "$PID_b"

log "summary (req/s, correct codes; all processes share this machine's $(nproc) cpus)"
printf '   %-6s %12s %22s %8s\n' c "embedded" "2 nodes + PostgreSQL" ratio
for c in $CONCS; do
  printf '   %-6s %12s %22s %8s\n' "$c" "${EMB[$c]}" "${SHR[$c]}" "$(python3 -c "print(round(${SHR[$c]} / max(${EMB[$c]}, 1), 2))")"
done
echo "report: $REPORT"
exit $FAIL
