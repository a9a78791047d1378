#!/usr/bin/env bash
# SIP registration load: Switchboard against Kamailio 5.6, same driver, same scenario,
# same users, same machine, one run.
#
#   benches/register_load.sh            # full run, about 10-15 min on 2 cores
#   QUICK=1 benches/register_load.sh    # short check (about 2 min)
#   OUT=/some/dir benches/register_load.sh
#
# The driver is the Kamailio anchor in ../shared/anchors/kamailio (relative to the repo
# root, i.e. "$(git rev-parse --show-toplevel)/../shared/anchors/kamailio"): bench.py
# starts a fresh server per step, runs SIPp's REGISTER + digest scenario
# (register_auth.xml: 1 call = REGISTER -> 401 -> REGISTER with Authorization -> 200)
# over users 1001..5000 at a fixed rate, and measures failed calls, retransmissions,
# UDP drops (per socket, ss -uamn, and the system's RcvbufErrors) and server CPU from
# /proc. The anchor files are copied unchanged into $OUT/anchor (bench.py reads
# users.csv from its own directory, and the shared directory is not ours to write).
#
# Both servers listen on udp+tcp 127.0.0.1:25060; SIPp uses 127.0.0.1:25070.
# Results: $OUT/{switchboard,kamailio}/{sweep,confirm}/results.csv, $OUT/summary.md.
#
# Knobs (environment): SWITCHBOARD_BIN (test this binary instead of building one),
# SWEEP_RATES, SWEEP_SECONDS, CONFIRM_SECONDS, CONFIRM_REPEAT, CONFIRM_TRIES,
# IDLE_WAIT (seconds to wait for running rustc processes to finish before measuring).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"          # the repository root (= git rev-parse --show-toplevel)
ANCHOR="${ANCHOR:-$ROOT/../shared/anchors/kamailio}"
OUT="${OUT:-$ROOT/benches/out/register-$(date +%Y%m%d-%H%M%S)}"
PORT=25060
SIPP_PORT=25070
KAM=/usr/sbin/kamailio
export NO_COLOR=1   # plain server logs (tracing-subscriber honours it)

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/run.log") 2>&1

if [ "${QUICK:-0}" = 1 ]; then
  SWEEP_RATES="${SWEEP_RATES:-1000,4000,8000}"
  SWEEP_SECONDS="${SWEEP_SECONDS:-4}"   # shorter steps miss the 97 %-of-asked mark on ramp-up alone
  SWEEP_CALLS="${SWEEP_CALLS:-4000}"
  CONFIRM_SECONDS="${CONFIRM_SECONDS:-0}"
else
  SWEEP_RATES="${SWEEP_RATES:-2000,4000,6000,8000,10000,12000,14000,16000,18000}"
  SWEEP_SECONDS="${SWEEP_SECONDS:-10}"
  SWEEP_CALLS="${SWEEP_CALLS:-20000}"
  CONFIRM_SECONDS="${CONFIRM_SECONDS:-30}"
fi
CONFIRM_REPEAT="${CONFIRM_REPEAT:-3}"
CONFIRM_TRIES="${CONFIRM_TRIES:-3}"
IDLE_WAIT="${IDLE_WAIT:-1200}"

# ------------------------------------------------------------------ prerequisites
missing=()
command -v sipp >/dev/null || missing+=(sip-tester)
[ -x "$KAM" ] || missing+=(kamailio)
command -v python3 >/dev/null || missing+=(python3)
command -v ss >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: apt-get install ${missing[*]}" >&2
  exit 1
fi
for f in bench.py register_auth.xml kamailio.cfg; do
  [ -f "$ANCHOR/$f" ] || { echo "no $ANCHOR/$f (the Kamailio anchor)" >&2; exit 1; }
done

if [ -n "${SWITCHBOARD_BIN:-}" ]; then
  SB_BIN="$(cd "$(dirname "$SWITCHBOARD_BIN")" && pwd)/$(basename "$SWITCHBOARD_BIN")"
  echo "== using SWITCHBOARD_BIN=$SB_BIN (not building)"
else
  echo "== building switchboard (release)"
  (cd "$ROOT" && cargo build --release -p switchboard --bin switchboard)
  SB_BIN="target/release/switchboard"  # relative to $ROOT, which is bench.py's --server-cwd
fi
SB_EXE="$(cd "$ROOT" && realpath "$SB_BIN")"

# ------------------------------------------------------------------ inputs
mkdir -p "$OUT/anchor"
cp "$ANCHOR/bench.py" "$ANCHOR/register_auth.xml" "$ANCHOR/kamailio.cfg" "$OUT/anchor/"
[ -f "$ANCHOR/summarize.py" ] && cp "$ANCHOR/summarize.py" "$OUT/anchor/"
# Users 1001..5000, password demo<user>; field2 carries the SIPp auth keyword (SIPp 3.6.1
# does not expand [fieldN] inside [authentication ...]). Same file as the anchor's run.sh.
{ echo SEQUENTIAL
  for u in $(seq 1001 5000); do echo "$u;demo$u;[authentication username=$u password=demo$u]"; done
} > "$OUT/anchor/users.csv"

CFG="$OUT/switchboard-config"
mkdir -p "$CFG"
cat > "$CFG/switchboard.toml" <<EOF
# benches/register_load.sh: Switchboard set up like the Kamailio anchor
[sip]
bind = "127.0.0.1:$PORT"
realm = "127.0.0.1"
udp_recv_buffer = 4194304   # the anchor's Kamailio probes up to 4 MiB too

timer_j = 5                 # completed REGISTER transactions kept 5 s, like Kamailio's tm
                            # wt_timer default (the anchor's Kamailio answers REGISTER
                            # statelessly and keeps nothing); RFC 3261 says 32 s

[registrar]
qualify_interval = 0        # SIPp does not answer OPTIONS pings
store = "$CFG/registrations.json"   # emptied at every server start (see SB_CMD)

[auth]
algorithms = ["MD5"]

[security]
rate_limit = 0              # all load comes from one loopback address

[log]
level = "info"
EOF
{ for u in $(seq 1001 5000); do printf '[users.%s]\npassword = "demo%s"\n\n' "$u" "$u"; done; } > "$CFG/users.toml"
"$SB_EXE" check --config "$CFG"

# Every step starts with no bindings, like Kamailio's in-memory usrloc: the binding store of
# the step before (4,000 bindings) would otherwise be restored, and the step would measure
# refreshes where Kamailio sees new registrations.
SB_CMD="sh -c 'rm -f $CFG/registrations.json; exec $SB_BIN serve --config $CFG --sip-bind 127.0.0.1:$PORT'"
KAM_CMD="$KAM -f $OUT/anchor/kamailio.cfg -DD -E -m 256 -M 16"
"$KAM" -c -f "$OUT/anchor/kamailio.cfg" > "$OUT/kamailio-cfgcheck.log" 2>&1 \
  || { cat "$OUT/kamailio-cfgcheck.log"; exit 1; }

# ------------------------------------------------------------------ helpers
wait_idle() {
  # The other core matters: do not measure while someone compiles.
  local waited=0
  while pgrep -x rustc >/dev/null; do
    if [ "$waited" -ge "$IDLE_WAIT" ]; then
      echo "warning: rustc still running after ${IDLE_WAIT}s; measuring anyway"
      return 0
    fi
    [ "$waited" = 0 ] && echo "waiting for running rustc processes to finish ..."
    sleep 5; waited=$((waited + 5))
  done
  [ "$waited" = 0 ] || echo "machine idle after ${waited}s"
}

# Notes every 2 s when a compiler runs during the measurement (it would steal CPU).
watch_interference() {
  while sleep 2; do
    if pgrep -x rustc >/dev/null; then echo "$(date +%T) rustc running" >> "$OUT/interference.log"; fi
  done
}

SPID=""
stop_server() {
  [ -n "$SPID" ] || return 0
  kill "$SPID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.2; done
  sleep 1
  for p in $(ps -o pid= -s "$SPID" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  wait "$SPID" 2>/dev/null || true
  SPID=""
}
WPID=""
cleanup() { stop_server; [ -z "$WPID" ] || kill "$WPID" 2>/dev/null || true; }
trap cleanup EXIT

ready() {
  python3 -c "import sys; sys.path.insert(0, '$OUT/anchor'); import bench; sys.exit(0 if bench.wait_udp_ready('127.0.0.1', $PORT) else 1)"
}

# Start a server, report the UDP receive buffer it got, run a 200-registration smoke test.
probe() {
  local name="$1" cmd="$2"
  mkdir -p "$OUT/$name/smoke"
  (cd "$ROOT" && exec setsid sh -c "exec $cmd") > "$OUT/$name/smoke/server.log" 2>&1 &
  SPID=$!
  ready || { echo "$name did not answer on UDP $PORT"; cat "$OUT/$name/smoke/server.log"; exit 1; }
  local rb
  rb=$(ss -uamnH "sport = :$PORT" | grep -o 'rb[0-9]*' | head -1 | tr -d rb)
  echo "$name: UDP receive buffer in use (ss -uamn rb): ${rb} bytes" | tee -a "$OUT/env.txt"
  local rc=0
  (cd "$OUT/$name/smoke" && sipp 127.0.0.1:$PORT -sf "$OUT/anchor/register_auth.xml" \
     -inf "$OUT/anchor/users.csv" -i 127.0.0.1 -p $SIPP_PORT -t u1 -nd -nostdin \
     -m 200 -r 50 -timeout 30s -timeout_error \
     -trace_stat -stf stat.csv -trace_err -error_file errors.log >/dev/null 2>&1) || rc=$?
  stop_server
  if [ "$name" = switchboard ]; then
    grep -o 'SIP listening.*' "$OUT/$name/smoke/server.log" | head -1 | sed "s/^/$name log: /" | tee -a "$OUT/env.txt"
  fi
  echo "$name smoke: 200 registrations at 50/s -> sipp rc=$rc (want 0)"
  [ "$rc" = 0 ] || { echo "$name smoke test FAILED"; tail -20 "$OUT/$name/smoke/errors.log" 2>/dev/null; exit 1; }
}

bench() {
  local name="$1" cmd="$2" phase="$3" rates="$4" seconds="$5" calls="$6" repeat="$7" stop_after="$8"
  wait_idle
  python3 "$OUT/anchor/bench.py" --server-cmd "$cmd" --server-cwd "$ROOT" \
    --port $PORT --sipp-port $SIPP_PORT --rates "$rates" --calls "$calls" \
    --seconds "$seconds" --repeat "$repeat" --stop-after-fail "$stop_after" \
    --out "$OUT/$name/$phase"
}

# ------------------------------------------------------------------ environment
{
  echo "date: $(date -Is)"
  echo "host: $(uname -srm), $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/.*: *//')"
  echo "switchboard: $("$SB_EXE" --version) (release build)"
  echo "kamailio: $($KAM -v | head -1)"
  echo "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*')"
  echo "net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max) rmem_default=$(cat /proc/sys/net/core/rmem_default)"
  echo "sweep: rates $SWEEP_RATES, ${SWEEP_SECONDS}s per step (at least $SWEEP_CALLS registrations)"
  echo "confirm: ${CONFIRM_REPEAT} x ${CONFIRM_SECONDS}s at each server's highest clean sweep rate (step down at most $CONFIRM_TRIES rates)"
} | tee "$OUT/env.txt"

wait_idle
watch_interference & WPID=$!

echo "== smoke tests and UDP buffers"
probe switchboard "$SB_CMD"
probe kamailio "$KAM_CMD"

# ------------------------------------------------------------------ sweep
# Same rates for both; a sweep stops after two consecutive unclean rates.
echo "== sweep: switchboard"
bench switchboard "$SB_CMD" sweep "$SWEEP_RATES" "$SWEEP_SECONDS" "$SWEEP_CALLS" 1 2
echo "== sweep: kamailio"
bench kamailio "$KAM_CMD" sweep "$SWEEP_RATES" "$SWEEP_SECONDS" "$SWEEP_CALLS" 1 2

# ------------------------------------------------------------------ confirmation
# 30 s runs at the highest clean sweep rate, CONFIRM_REPEAT times. Longer runs catch what a
# 10 s step cannot (state that builds up, e.g. UDP transactions kept for Timer J = 32 s).
# If a repetition is unclean, step down to the next lower clean sweep rate (at most
# CONFIRM_TRIES rates per server).
if [ "$CONFIRM_SECONDS" != 0 ]; then
  for name in switchboard kamailio; do
    candidates=$(python3 -c "
import sys; sys.path.insert(0, '$HERE/register')
import compare
print(' '.join(str(r) for r in compare.clean_prefix_rates(compare.load('$OUT/$name/sweep/results.csv'))[::-1]))")
    if [ -z "$candidates" ]; then echo "$name: no clean sweep rate, nothing to confirm"; continue; fi
    cmd="$SB_CMD"; [ "$name" = kamailio ] && cmd="$KAM_CMD"
    tries=0
    for rate in $candidates; do
      tries=$((tries + 1))
      [ "$tries" -le "$CONFIRM_TRIES" ] || break
      echo "== confirm: $name at $rate/s, $CONFIRM_REPEAT x ${CONFIRM_SECONDS}s"
      bench "$name" "$cmd" confirm "$rate" "$CONFIRM_SECONDS" "$SWEEP_CALLS" "$CONFIRM_REPEAT" 0
      if python3 -c "
import sys; sys.path.insert(0, '$HERE/register')
import compare
rows = [r for r in compare.load('$OUT/$name/confirm/results.csv') if int(r['rate_asked']) == $rate]
sys.exit(0 if rows and all(compare.clean(r) for r in rows) else 1)"; then
        echo "$name: $rate/s confirmed"; break
      fi
      echo "$name: $rate/s NOT clean over ${CONFIRM_SECONDS}s; stepping down"
    done
  done
fi

kill "$WPID" 2>/dev/null || true; WPID=""

# ------------------------------------------------------------------ summary
echo "== summary"
python3 "$HERE/register/compare.py" --switchboard "$OUT/switchboard" --kamailio "$OUT/kamailio" \
  --md "$OUT/summary.md"
if [ -s "$OUT/interference.log" ]; then
  echo "note: a compiler ran during the measurement at $(wc -l < "$OUT/interference.log") sample(s); see $OUT/interference.log"
fi
left=$(ps -eo comm | grep -cE '^(kamailio|sipp)$' || true)
echo "kamailio/sipp processes left running: $left"
echo "results in $OUT"
