#!/usr/bin/env bash
# REST benchmark, end to end on this machine: tessera's POST /api/v1/validate (HTTPS) against
# privacyIDEA's POST /validate/check, with tessera-loadgen as the closed-loop client for both.
#
#   bench/rest.sh                              # full run (~3 min after the build, +~3 min the first time privacyIDEA is set up)
#   SKIP_PEERS=1 USERS=20000 DUR=5 bench/rest.sh   # tessera only, quick
#
# Env: SERVER_BIN (server binary to measure, default target/release/tessera); USERS (200000) bench users, split into disjoint ranges, one per stage; DUR (10) seconds per stage;
#      CONCS ("16 64"); SEED (1); SKIP_PEERS (0); OUT (target/bench); NO_BUILD (0); KEEP (0: delete the temp dir
#      unless something failed); WARMUP (1: a short unreported warm-up of each server);
#      QUIET_BUSY (15) / QUIET_WAIT (120): before each stage wait at most QUIET_WAIT s for the machine to be
#      below QUIET_BUSY % busy; PEERS_DIR (../shared/peers), PI_WORK (/tmp/peers/privacyidea).
# Everything talks to 127.0.0.1 only; every wait is bounded; every background process is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
USERS=${USERS:-200000}
DUR=${DUR:-10}
CONCS=${CONCS:-"16 64"}
SEED=${SEED:-1}
SKIP_PEERS=${SKIP_PEERS:-0}
OUT=${OUT:-target/bench}
QUIET_BUSY=${QUIET_BUSY:-15}
QUIET_WAIT=${QUIET_WAIT:-120}
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
export PI_WORK=${PI_WORK:-/tmp/peers/privacyidea}
LG=$ROOT/target/release/tessera-loadgen
TS_BIN=${SERVER_BIN:-$ROOT/target/release/tessera}

mkdir -p "$OUT"
REPORT="$OUT/rest-$(date +%Y%m%d-%H%M%S).txt"
exec > >(tee "$REPORT") 2>&1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench.XXXXXX")
DATA=$TMP/data
SPID=""
PI_STARTED=0
FAIL=0
cleanup() {
  set +e
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill -TERM "$SPID"
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
  fi
  if [ "$PI_STARTED" = 1 ]; then bash "$PEERS_DIR/privacyidea/stop.sh"; fi
  if [ "${KEEP:-0}" = 1 ] || [ "$FAIL" != 0 ]; then echo "kept $TMP (server logs: server.err)"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*"; }

# Bounded wait until the machine is quiet (other builds share these 2 cores).
waitquiet() {
  local end=$((SECONDS + QUIET_WAIT)) a b busy
  while :; do
    read -r _ u n s i w x y z _ < /proc/stat; a=$((u + n + s + i + w + x + y + z)); b=$((i + w))
    sleep 2
    read -r _ u n s i w x y z _ < /proc/stat
    busy=$((100 - 100 * (i + w - b) / (u + n + s + i + w + x + y + z - a)))
    if [ "$busy" -lt "$QUIET_BUSY" ]; then echo "   machine ${busy}% busy before the stage"; return; fi
    if [ $SECONDS -ge $end ]; then echo "   WARNING: machine still ${busy}% busy after ${QUIET_WAIT}s: numbers are polluted"; return; fi
    sleep 3
  done
}

# Started through a symlink with its own name, so that someone else's `pkill -f "tessera serve"` does not stop it.
start_server() {
  local out=$1 port=""
  ln -sf "$TS_BIN" "$TMP/tessera-bench-server"
  TESSERA_SERVER_DATA_DIR=$DATA TESSERA_HTTP_LISTEN=127.0.0.1:0 "$TMP/tessera-bench-server" serve >"$out" 2>>"$TMP/server.err" &
  SPID=$!
  for _ in $(seq 300); do
    port=$(sed -n 's/^listening https 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out" | head -n1)
    [ -n "$port" ] && break
    kill -0 "$SPID" 2>/dev/null || { echo "server exited:"; tail -n 20 "$TMP/server.err"; exit 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { echo "server did not print its listening line within 30 s"; tail -n 20 "$TMP/server.err"; exit 1; }
  PORT=$port
  URL=https://127.0.0.1:$PORT
}

json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }

log "machine: $(nproc) cpus, $(uname -r); $(date -u +%FT%TZ); USERS=$USERS DUR=${DUR}s CONCS=\"$CONCS\""
if [ "${NO_BUILD:-0}" != 1 ]; then
  log "build"
  if ! cargo build --release -p tessera -p tessera-loadgen >"$TMP/build.log" 2>&1; then
    tail -n 30 "$TMP/build.log"; echo "build failed"; exit 1
  fi
  tail -n 1 "$TMP/build.log"
fi
echo "   tessera $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'): $(git -C "$ROOT" log -1 --format=%s 2>/dev/null || true)"
env | grep '^TESSERA_' | sed 's/^/   server env: /' || true

log "setup: $USERS users in $DATA"
"$LG" setup --data "$DATA" --users "$USERS" --seed "$SEED"

start_server "$TMP/server.out"
log "tessera serve pid $SPID on $URL"
CA=$DATA/tls/cert.pem

set -- $CONCS
NC=$#
# The last user is kept fresh for the control probe; WARM users before it serve a short warm-up.
WARM=0
if [ "${WARMUP:-1}" = 1 ]; then WARM=$((USERS / 50)); [ $WARM -gt 1000 ] && WARM=1000; fi
PER=$(((USERS - 1 - WARM) / NC))
if [ $WARM -gt 0 ]; then
  log "warm-up: 2 s, c=4, users [$((USERS - 1 - WARM)), $((USERS - 1))) (not reported)"
  "$LG" rest --url "$URL" --ca "$CA" --users "$WARM" --first-user $((USERS - 1 - WARM)) --seed "$SEED" \
    -c 4 -d 2 --max-requests $((2 * WARM)) | sed -n 's/^tessera /   /p' || true
fi
k=0
LAST_JSON=""
for c in $CONCS; do
  first=$((k * PER)); k=$((k + 1))
  log "tessera correct-code stage: c=$c, users [$first, $((first + PER))), ${DUR}s"
  waitquiet
  LAST_JSON=$TMP/tessera-c$c.json
  if ! "$LG" rest --url "$URL" --ca "$CA" --users "$PER" --first-user "$first" --seed "$SEED" \
      -c "$c" -d "$DUR" --server-pid "$SPID" --json "$LAST_JSON"; then
    FAIL=1; echo "   STAGE FAILED"
  fi
  if ! kill -0 "$SPID" 2>/dev/null; then
    rc=0; wait "$SPID" || rc=$?
    echo "   SERVER DIED (exit status $rc); last lines of its log:"; tail -n 20 "$TMP/server.err" | sed 's/^/   | /'
    exit 1
  fi
done
mem() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SPID/status" 2>/dev/null || echo 0; }
RSS=$(mem VmRSS); HWM=$(mem VmHWM); ANON=$(mem RssAnon); FILE=$(mem RssFile)
log "tessera server memory after the stages: VmRSS ${RSS} KiB (RssAnon ${ANON}, RssFile ${FILE}), VmHWM ${HWM} KiB; stderr log $(wc -c <"$TMP/server.err") bytes"

# Replay state must survive a process crash: SIGKILL right after the last stage, restart, re-send
# the accepted code with the highest step (still inside the ±1 window).
REPLAY="SKIPPED"
if [ -f "$LAST_JSON" ] && [ "$(json "$LAST_JSON" 'last_accepted is not None')" = True ]; then
  RU=$(json "$LAST_JSON" 'last_accepted["index"]'); RS=$(json "$LAST_JSON" 'last_accepted["step"]')
  kill -KILL "$SPID"; wait "$SPID" 2>/dev/null || true
  log "SIGKILLed the server; restarting to re-send bench user $RU's accepted code for step $RS"
  start_server "$TMP/server2.out"
  set +e
  "$LG" probe --url "$URL" --ca "$CA" --seed "$SEED" --user "$RU" --step "$RS" --expect reject; r1=$?
  "$LG" probe --url "$URL" --ca "$CA" --seed "$SEED" --user $((USERS - 1)) --step-offset 0 --expect accept; r2=$?
  set -e
  if [ $r1 = 0 ] && [ $r2 = 0 ]; then REPLAY=PASS; elif [ $r1 = 2 ]; then REPLAY=INCONCLUSIVE; else REPLAY=FAIL; FAIL=1; fi
fi
log "replay after crash: $REPLAY"
kill -TERM "$SPID"
for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SPID" 2>/dev/null; then echo "   server did not stop on SIGTERM within 10 s"; kill -KILL "$SPID"; FAIL=1; fi
wait "$SPID" 2>/dev/null || true
SPID=""

if [ "$SKIP_PEERS" != 1 ]; then
  PI=$PEERS_DIR/privacyidea
  log "privacyIDEA setup ($PI_WORK)"
  PI_STARTED=1
  bash "$PI/setup.sh" 2>&1 | tail -n 4
  PIPID=$(cat "$PI_WORK/gunicorn.pid")
  NTOK=$(wc -l <"$PI_WORK/tokens.csv")
  TPER=$((NTOK / NC))
  if [ "${WARMUP:-1}" = 1 ]; then
    log "privacyIDEA warm-up: 3 s of wrong codes, c=4 (not reported; tokens are reset before each stage)"
    "$LG" privacyidea --url http://127.0.0.1:${PI_PORT:-5000} --tokens "$PI_WORK/tokens.csv" --mode wrong \
      -c 4 -d 3 | sed -n 's/^privacyIDEA /   /p' || true
  fi
  k=0
  for c in $CONCS; do
    first=$((k * TPER)); k=$((k + 1))
    log "privacyIDEA correct-code stage: c=$c, tokens [$first, $((first + TPER))), ${DUR}s"
    waitquiet
    python3 "$PI/reset_tokens.py" "$PI_WORK/pi.sqlite" | sed 's/^/   /'
    "$LG" privacyidea --url http://127.0.0.1:${PI_PORT:-5000} --tokens "$PI_WORK/tokens.csv" \
      --first-token "$first" --token-count "$TPER" -c "$c" -d "$DUR" --server-pid "$PIPID" \
      --json "$TMP/privacyidea-c$c.json" || echo "   (privacyIDEA stage had failures)"
  done
  bash "$PI/stop.sh"
  PI_STARTED=0
fi

log "summary (closed loop, c connections, ${DUR}s per stage; latency from request write to last response byte)"
python3 - "$TMP" "$CONCS" "$RSS" "$HWM" "$REPLAY" "$ANON" "$FILE" <<'PY'
import json, os, sys
tmp, concs, rss, hwm, replay, anon, file_ = sys.argv[1], sys.argv[2].split(), *sys.argv[3:]
def load(name):
    p = os.path.join(tmp, name)
    return json.load(open(p)) if os.path.exists(p) else None
rows = []
fmt = "{:<12} {:>4} {:>10} {:>9} {:>9} {:>9} {:>13} {:>13} {:>8} {:>10}"
print(fmt.format("system", "c", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "srv CPU µs/r", "cli CPU µs/r", "ok", "exhaust s"))
for c in concs:
    for sysname, f in (("tessera", f"tessera-c{c}.json"), ("privacyIDEA", f"privacyidea-c{c}.json")):
        d = load(f)
        if not d: continue
        l = d["latency_ms"]
        srv = d.get("server_cpu_us_per_req")
        print(fmt.format(sysname, c, f"{d['throughput_rps']:.0f}", f"{l['p50']:.2f}", f"{l['p99']:.2f}", f"{l['p999']:.2f}",
                         f"{srv:.0f}" if srv is not None else "-", f"{d['client_cpu_us_per_req']:.1f}",
                         f"{d['accepts']}/{d['requests']}", f"{d['code_supply_exhausted_s']:.1f}"))
print()
for c in concs:
    t, p = load(f"tessera-c{c}.json"), load(f"privacyidea-c{c}.json")
    if t and p and p["throughput_rps"] > 0:
        print(f"c={c}: tessera/privacyIDEA throughput {t['throughput_rps'] / p['throughput_rps']:.0f}x, "
              f"p50 latency {p['latency_ms']['p50'] / max(t['latency_ms']['p50'], 1e-9):.0f}x lower, "
              f"p99 {p['latency_ms']['p99'] / max(t['latency_ms']['p99'], 1e-9):.0f}x lower")
mib = lambda v: f"{int(v or 0) / 1024:.1f} MiB"
print(f"tessera server RSS after the stages: {mib(rss)} = {mib(anon)} anonymous + {mib(file_)} file-backed "
      f"(binary, mmap'ed database; reclaimable); peak {mib(hwm)}")
if any((load(f"tessera-c{c}.json") or {}).get("code_supply_exhausted_s", 0) > 0 for c in concs):
    print("NOTE: a tessera stage ran out of valid codes (exhaust s > 0): its req/s is a lower bound; use more USERS")
print(f"tessera replay after SIGKILL + restart: {replay}")
PY
echo "report: $REPORT"
exit $FAIL
