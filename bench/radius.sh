#!/usr/bin/env bash
# RADIUS benchmark, end to end on this machine: tessera's Access-Request path (UDP, PAP, OTP alone)
# against FreeRADIUS 3.2.1 + rlm_totp (PAP, password + OTP), with `tessera-loadgen radius` as the
# closed-loop client for both.
#
#   bench/radius.sh                                  # full run (~4 min after the build, +~1 min the first time FreeRADIUS is installed)
#   SKIP_PEERS=1 USERS=100000 DUR=5 bench/radius.sh  # tessera only, quick
#
# Env: SERVER_BIN (server binary to measure, default target/release/tessera); USERS (300000) bench users,
#      split into disjoint ranges, one per stage (at least 10000); DUR (20) seconds per stage; CONCS ("16 64");
#      WRONG_C (16: concurrency of the wrong-code stage, "" = none); PORT (18120) tessera's RADIUS port;
#      FR_PORT (18121) FreeRADIUS's; FR_USERS (10000) FreeRADIUS users; SEED (1); SKIP_PEERS (0);
#      OUT (target/bench); NO_BUILD (0); KEEP (0: delete the temp dir unless something failed);
#      WARMUP (1: a short unreported warm-up of each server); QUIET_BUSY (15) / QUIET_WAIT (120): before each
#      stage wait at most QUIET_WAIT s for the machine to be below QUIET_BUSY % busy;
#      PEERS_DIR (../shared/peers); CARGO_TARGET_DIR (target); CLIENT_SOCKETS (4) UDP sockets of the load
#      generator, for tessera and FreeRADIUS alike.
# Everything talks to 127.0.0.1 only; every wait is bounded; every background process is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
USERS=${USERS:-300000}
DUR=${DUR:-20}
CONCS=${CONCS:-"16 64"}
WRONG_C=${WRONG_C-16}
PORT=${PORT:-18120}
FR_PORT=${FR_PORT:-18121}
FR_USERS=${FR_USERS:-10000}
SEED=${SEED:-1}
# UDP sockets of the load generator, for both servers: a NAS population has many source ports, and the
# kernel spreads a SO_REUSEPORT listener's sockets by source address and port.
CLIENT_SOCKETS=${CLIENT_SOCKETS:-4}
SKIP_PEERS=${SKIP_PEERS:-0}
OUT=${OUT:-target/bench}
QUIET_BUSY=${QUIET_BUSY:-15}
QUIET_WAIT=${QUIET_WAIT:-120}
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LG=$TARGET/release/tessera-loadgen
TS_BIN=${SERVER_BIN:-$TARGET/release/tessera}

if [ "$USERS" -lt 10000 ]; then echo "USERS must be at least 10000"; exit 2; fi
for p in "$PORT" "$FR_PORT"; do
  case $p in 1812|1813|8443) echo "port $p is left to tests and real servers; pick another"; exit 2 ;; esac
done

mkdir -p "$OUT"
REPORT="$OUT/radius-$(date +%Y%m%d-%H%M%S).txt"
exec > >(tee "$REPORT") 2>&1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tessera-radius-bench.XXXXXX")
DATA=$TMP/data
SECRET_FILE=$TMP/radius.secret
export FR_WORK=$TMP/freeradius FR_PORT FR_USERS
SPID=""
FR_STARTED=0
FAIL=0
cleanup() {
  set +e
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill -TERM "$SPID"
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
  fi
  if [ "$FR_STARTED" = 1 ]; then bash "$PEERS_DIR/freeradius/stop.sh"; fi
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

udp_busy() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }

# Started through a symlink with its own name, so that someone else's `pkill -f "tessera serve"` does not stop it.
start_server() {
  local out=$1 up=""
  if udp_busy "$PORT"; then echo "udp/$PORT is already in use on this machine; set PORT"; exit 1; fi
  ln -sf "$TS_BIN" "$TMP/tessera-bench-server"
  TESSERA_SERVER_DATA_DIR=$DATA TESSERA_HTTP_LISTEN=127.0.0.1:0 TESSERA_RADIUS_LISTEN=127.0.0.1:$PORT \
    "$TMP/tessera-bench-server" serve >"$out" 2>>"$TMP/server.err" &
  SPID=$!
  for _ in $(seq 300); do
    grep -q "^listening radius 127\.0\.0\.1:$PORT$" "$out" && up=1 && break
    kill -0 "$SPID" 2>/dev/null || { echo "server exited:"; tail -n 20 "$TMP/server.err"; exit 1; }
    sleep 0.1
  done
  [ -n "$up" ] || { echo "server did not print 'listening radius 127.0.0.1:$PORT' within 30 s"; tail -n 20 "$TMP/server.err"; exit 1; }
}

# The server's HTTPS address (for /metrics: the login journal's counters).
https_addr() { sed -n 's/^listening https //p' "$1" | head -n 1; }
# "records syncs" of the login journal so far.
jstats() {
  curl -sk --max-time 5 "https://$HTTPS/metrics" 2>/dev/null \
    | awk '/^tessera_login_journal_records_total /{r=$2} /^tessera_login_journal_syncs_total /{s=$2} END{print r+0, s+0}'
}
# Prints the fsync batch size of the stage between two jstats readings.
jreport() {
  local r0 s0 r1 s1
  read -r r0 s0 <<<"$1"; read -r r1 s1 <<<"$2"
  if [ $((s1 - s0)) -gt 0 ]; then
    echo "   login journal: $((r1 - r0)) records in $((s1 - s0)) fdatasyncs = $(( (r1 - r0) / (s1 - s0) )) records per fdatasync"
  else
    echo "   login journal: no fdatasync in this stage"
  fi
}

server_alive() {
  if ! kill -0 "$SPID" 2>/dev/null; then
    rc=0; wait "$SPID" || rc=$?
    echo "   SERVER DIED (exit status $rc); last lines of its log:"; tail -n 20 "$TMP/server.err" | sed 's/^/   | /'
    exit 1
  fi
}

json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }

log "machine: $(nproc) cpus, $(uname -r); $(date -u +%FT%TZ); USERS=$USERS DUR=${DUR}s CONCS=\"$CONCS\" WRONG_C=$WRONG_C"
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
# A throw-away shared secret for this run only.
(umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$SECRET_FILE"; echo >>"$SECRET_FILE")
TESSERA_SERVER_DATA_DIR=$DATA "$TS_BIN" client add loadgen --address 127.0.0.1/32 --secret-file "$SECRET_FILE" \
  --message-authenticator require | sed 's/^/   /'

start_server "$TMP/server.out"
HTTPS=$(https_addr "$TMP/server.out")
log "tessera serve pid $SPID, RADIUS on 127.0.0.1:$PORT, HTTPS on $HTTPS"
SERVER=127.0.0.1:$PORT

# User ranges (disjoint: a used step would otherwise be re-sent and rightly rejected as a replay):
#   [0, NC*PER) correct stages, one PER-sized range each | WRONG users | WARM users | the last user (control probe)
set -- $CONCS
NC=$#
WARM=0
if [ "${WARMUP:-1}" = 1 ]; then WARM=$((USERS / 50)); [ $WARM -gt 2000 ] && WARM=2000; fi
WRONG_N=0
[ -n "$WRONG_C" ] && WRONG_N=2000
PER=$(((USERS - 1 - WARM - WRONG_N) / NC))
WARM_FIRST=$((USERS - 1 - WARM))
WRONG_FIRST=$((WARM_FIRST - WRONG_N))
if [ $WARM -gt 0 ]; then
  log "warm-up: 2 s, c=4, users [$WARM_FIRST, $((USERS - 1))) (not reported)"
  "$LG" radius --sockets "$CLIENT_SOCKETS" --server "$SERVER" --secret-file "$SECRET_FILE" --users "$WARM" --first-user "$WARM_FIRST" --seed "$SEED" \
    -c 4 -d 2 --max-requests $((2 * WARM)) | sed -n 's/^tessera /   /p' || true
fi

# The wrong-code stage runs first so that the replay probe below follows the last correct stage closely
# (its codes stay inside the ±1-step window for at least 60 s after the stage).
if [ -n "$WRONG_C" ]; then
  log "tessera wrong-code stage: c=$WRONG_C, users [$WRONG_FIRST, $WARM_FIRST), ${DUR}s (users lock after 5 failures; every reply must be a reject)"
  waitquiet
  J0=$(jstats)
  if ! "$LG" radius --sockets "$CLIENT_SOCKETS" --server "$SERVER" --secret-file "$SECRET_FILE" --users "$WRONG_N" --first-user "$WRONG_FIRST" \
      --seed "$SEED" --mode wrong -c "$WRONG_C" -d "$DUR" --server-pid "$SPID" --json "$TMP/tessera-wrong-c$WRONG_C.json"; then
    FAIL=1; echo "   STAGE FAILED"
  fi
  jreport "$J0" "$(jstats)"
  server_alive
fi
k=0
LAST_JSON=""
for c in $CONCS; do
  first=$((k * PER)); k=$((k + 1))
  log "tessera correct-code stage: c=$c, users [$first, $((first + PER))), ${DUR}s"
  waitquiet
  LAST_JSON=$TMP/tessera-c$c.json
  J0=$(jstats)
  if ! "$LG" radius --sockets "$CLIENT_SOCKETS" --server "$SERVER" --secret-file "$SECRET_FILE" --users "$PER" --first-user "$first" --seed "$SEED" \
      -c "$c" -d "$DUR" --server-pid "$SPID" --json "$LAST_JSON"; then
    FAIL=1; echo "   STAGE FAILED"
  fi
  jreport "$J0" "$(jstats)"
  server_alive
done
mem() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SPID/status" 2>/dev/null || echo 0; }
RSS=$(mem VmRSS); HWM=$(mem VmHWM)
DROPS=$(grep -c 'RADIUS packet dropped' "$TMP/server.err" || true)
log "tessera server memory after the stages: VmRSS ${RSS} KiB, VmHWM ${HWM} KiB; stderr log $(wc -c <"$TMP/server.err") bytes, ${DROPS} 'RADIUS packet dropped' warnings"
grep 'RADIUS packet dropped' "$TMP/server.err" | tail -n 3 | sed 's/^/   | /' || true

# Replay state must survive a process crash: SIGKILL right after the last stage, restart, re-send
# the accepted code with the highest step (still inside the ±1 window) over RADIUS.
REPLAY="SKIPPED"
if [ -f "$LAST_JSON" ] && [ "$(json "$LAST_JSON" 'last_accepted is not None')" = True ]; then
  RU=$(json "$LAST_JSON" 'last_accepted["index"]'); RS=$(json "$LAST_JSON" 'last_accepted["step"]')
  kill -KILL "$SPID"; wait "$SPID" 2>/dev/null || true
  log "SIGKILLed the server; restarting to re-send bench user $RU's accepted code for step $RS"
  start_server "$TMP/server2.out"
  set +e
  "$LG" radius-probe --server "$SERVER" --secret-file "$SECRET_FILE" --seed "$SEED" --user "$RU" --step "$RS" --expect reject; r1=$?
  "$LG" radius-probe --server "$SERVER" --secret-file "$SECRET_FILE" --seed "$SEED" --user $((USERS - 1)) --step-offset 0 --expect accept; r2=$?
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
  FR=$PEERS_DIR/freeradius
  if udp_busy "$FR_PORT"; then echo "udp/$FR_PORT is already in use on this machine; set FR_PORT"; exit 1; fi
  log "FreeRADIUS setup ($FR_WORK, 127.0.0.1:$FR_PORT, $FR_USERS users)"
  FR_STARTED=1
  bash "$FR/setup.sh" 2>&1 | tail -n 4
  FRPID=$(cat "$FR_WORK/radiusd.pid")
  FRCSV=$FR_WORK/users.csv
  if [ "${WARMUP:-1}" = 1 ]; then
    log "FreeRADIUS warm-up: 2 s, c=4 (not reported)"
    "$LG" radius --sockets "$CLIENT_SOCKETS" --server "127.0.0.1:$FR_PORT" --secret testing123 --peer-csv "$FRCSV" -c 4 -d 2 \
      | sed -n 's/^FreeRADIUS /   /p' || true
  fi
  if [ -n "$WRONG_C" ]; then
    log "FreeRADIUS wrong-code stage: c=$WRONG_C, ${DUR}s"
    waitquiet
    "$LG" radius --sockets "$CLIENT_SOCKETS" --server "127.0.0.1:$FR_PORT" --secret testing123 --peer-csv "$FRCSV" --mode wrong \
      -c "$WRONG_C" -d "$DUR" --server-pid "$FRPID" --json "$TMP/freeradius-wrong-c$WRONG_C.json" \
      || echo "   (FreeRADIUS stage had failures)"
  fi
  for c in $CONCS; do
    log "FreeRADIUS correct-code stage: c=$c, all $FR_USERS users, current step only (re-sent: no replay state), ${DUR}s"
    waitquiet
    "$LG" radius --sockets "$CLIENT_SOCKETS" --server "127.0.0.1:$FR_PORT" --secret testing123 --peer-csv "$FRCSV" \
      -c "$c" -d "$DUR" --server-pid "$FRPID" --json "$TMP/freeradius-c$c.json" \
      || echo "   (FreeRADIUS stage had failures)"
    kill -0 "$FRPID" 2>/dev/null || { echo "   FreeRADIUS DIED"; tail -n 20 "$FR_WORK/log/radius.log"; FAIL=1; break; }
  done
  bash "$FR/stop.sh"
  FR_STARTED=0
fi

log "summary (closed loop, c requests outstanding, ${DUR}s per stage; latency from send to verified reply)"
python3 - "$TMP" "$CONCS" "$WRONG_C" "$RSS" "$HWM" "$REPLAY" <<'PY'
import json, os, sys
tmp, concs, wrong_c, rss, hwm, replay = sys.argv[1], sys.argv[2].split(), sys.argv[3], *sys.argv[4:]
def load(name):
    p = os.path.join(tmp, name)
    return json.load(open(p)) if os.path.exists(p) else None
fmt = "{:<11} {:<7} {:>4} {:>9} {:>8} {:>8} {:>9} {:>8} {:>12} {:>12} {:>17} {:>6} {:>9}"
print(fmt.format("system", "mode", "c", "req/s", "p50 ms", "p99 ms", "max ms", "srv CPU", "srv µs/req", "cli µs/req",
                 "expected/answered", "lost", "exhaust s"))
stages = [(c, "correct", "c%s" % c) for c in concs] + ([(wrong_c, "wrong", "wrong-c%s" % wrong_c)] if wrong_c else [])
for c, mode, tag in stages:
    for sysname, f in (("tessera", f"tessera-{tag}.json"), ("FreeRADIUS", f"freeradius-{tag}.json")):
        d = load(f)
        if not d: continue
        l = d["latency_ms"]
        cpu = d.get("server_cpu_s")
        srv = d.get("server_cpu_us_per_req")
        good = d["accepts"] if mode == "correct" else d["rejects"]
        print(fmt.format(sysname, mode, c, f"{d['throughput_rps']:.0f}", f"{l['p50']:.3f}", f"{l['p99']:.3f}", f"{l['max']:.1f}",
                         f"{100 * cpu / d['duration_s']:.0f}%" if cpu is not None else "-",
                         f"{srv:.1f}" if srv is not None else "-", f"{d['client_cpu_us_per_req']:.1f}",
                         f"{good}/{d['answered']}", d["lost"], f"{d['code_supply_exhausted_s']:.1f}"))
print()
for c, mode, tag in stages:
    t, p = load(f"tessera-{tag}.json"), load(f"freeradius-{tag}.json")
    if t and p and p["throughput_rps"] > 0:
        ts, ps = t.get("server_cpu_us_per_req"), p.get("server_cpu_us_per_req")
        print(f"{mode} c={c}: tessera/FreeRADIUS req/s = {t['throughput_rps'] / p['throughput_rps']:.2f}"
              + (f", server CPU per request {ts / ps:.2f}x" if ts and ps else "")
              + f", p99 {t['latency_ms']['p99']:.3f} vs {p['latency_ms']['p99']:.3f} ms")
mib = lambda v: f"{int(v or 0) / 1024:.1f} MiB"
print(f"tessera server RSS after the stages: {mib(rss)}; peak {mib(hwm)}")
if any((load(f"tessera-c{c}.json") or {}).get("code_supply_exhausted_s", 0) > 0 for c in concs):
    print("NOTE: a tessera stage ran out of valid codes (exhaust s > 0): its req/s is a lower bound; use more USERS")
print("FreeRADIUS: 'exhaust s' is the pause in the last 0.25 s and the first 0.1 s of each 30 s step (it accepts the current step only)")
print(f"tessera replay after SIGKILL + restart (over RADIUS): {replay}")
PY
echo "report: $REPORT"
exit $FAIL
