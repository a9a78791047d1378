#!/usr/bin/env bash
# The softphone's load mode (switchboard-load) as a load driver, beside SIPp in the same run.
#
#   benches/phone_load.sh                         # both parts, defaults below
#   PART=hold CONCURRENT=500,1000 TALK=20 benches/phone_load.sh
#   PART=rate RATES=100,200,400,800 SECONDS=5 benches/phone_load.sh
#   PART=rate RATES=2400,3200 DRIVERS=sipp,load benches/phone_load.sh
#   PART=register REG_RATES=5000,10000,18000 benches/phone_load.sh
#
# One release server per step (queue "support" on 600, AGENTS agents ready at start, a trunk
# for 127.0.0.1 allowed to dial 600, call records off so the figures are the call path's).
#
# PART=hold: can the load mode hold N concurrent calls with real RTP both ways? For each N
# in CONCURRENT, N*1.1 agent phones register and callers arrive evenly at N/TALK per second
# for 2*TALK seconds, each talking TALK seconds once it hears its agent: N calls up at once
# for TALK seconds. Every packet either side receives is checked against the other side's
# tone. Shown: calls, failed, peak concurrent calls, RTP loss, and the CPU of the load
# process and of the server, each in cores per 1,000 concurrent calls (CPU-seconds over
# call-seconds, registration and setup included).
#
# PART=rate: the highest call rate each driver sustains against the server with zero failed
# calls, the scenario of benches/call_setup_load.sh (callers dial 600, the queue answers,
# an agent phone answers, the caller hangs up after HOLD_MS): SIPp (one process for the
# agent phones, one for the callers, no media) and switchboard-load without media
# (--no-media, the same signalling), then switchboard-load with media (both sides send and
# check RTP during HOLD_MS). A step is clean when the driver reports no failed call AND the
# server logged "call connected" for every call (an agent's phone answered). Shown per
# step: the driver's CPU-seconds and the server's per 1,000 calls.
#
# PART=register: registrations per second (REGISTER, 401, REGISTER with digest, 200) by
# SIPp (tests/sipp/register_once.xml, one call a registration, over REG_USERS users) and by
# switchboard-load --registrations-only (the same users registering in turn), a fresh server
# per step. Clean = every registration answered 200. Shown: the driver's and the server's
# CPU-seconds per 1,000 registrations, and the load mode's REGISTER-to-200 p50/p99.
#
# Output under $OUT; a summary per part at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="${OUT:-$ROOT/benches/out/phone-$(date +%Y%m%d-%H%M%S)}"
PART="${PART:-hold,rate}"
CONCURRENT="${CONCURRENT:-500,1000}"
TALK="${TALK:-20}"
RATES="${RATES:-100,200,400,800}"
SECONDS_PER_STEP="${SECONDS:-5}"
AGENTS="${AGENTS:-1000}"
DRIVERS="${DRIVERS:-sipp,load,load+media}"
HOLD_MS="${HOLD_MS:-500}"
REG_RATES="${REG_RATES:-5000,10000,18000}"
REG_USERS="${REG_USERS:-4000}"
PORT=26060
export NO_COLOR=1

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/run.log") 2>&1

(cd "$ROOT" && cargo build --release -q -p switchboard -p softphone)
BIN="$ROOT/target/release/switchboard"
LOAD="$ROOT/target/release/switchboard-load"
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester"; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time"; exit 1; }

# config_for N: a config directory with N users/agents.
config_for() {
  local n=$1 cfg="$OUT/config-$1"
  [ -d "$cfg" ] && { echo "$cfg"; return; }
  mkdir -p "$cfg"
  cat > "$cfg/switchboard.toml" <<EOF
[sip]
bind = "127.0.0.1:$PORT"
realm = "bench"
[registrar]
qualify_interval = 0
[security]
rate_limit = 0
[media]
bind = "127.0.0.1"
advertise = "127.0.0.1"
port_min = 20000
port_max = 32000
timeout = 120
[trunks.lab]
addresses = ["127.0.0.1"]
numbers = ["600"]
[log]
level = "info"
[recording]
dir = "$OUT/recordings"
[storage]
enabled = false
EOF
  : > "$cfg/users.toml"; : > "$cfg/agents.toml"
  echo "SEQUENTIAL" > "$cfg/agents.csv"
  for u in $(seq 1001 $((1000 + n))); do
    printf '[users.%s]\npassword = "demo%s"\n' "$u" "$u" >> "$cfg/users.toml"
    printf '[agents.%s]\nuser = "%s"\nqueues = ["support"]\nlogin_on_start = true\n' "$u" "$u" >> "$cfg/agents.toml"
    echo "$u;demo$u;[authentication username=$u password=demo$u]" >> "$cfg/agents.csv"
  done
  printf '[queues.support]\nnumber = "600"\nring_timeout = 10\n' > "$cfg/queues.toml"
  echo "$cfg"
}

server_start() { # $1 config dir, $2 step dir
  "$BIN" serve --config "$1" > "$2/server.out" 2> "$2/server.log" &
  spid=$!
  for _ in $(seq 100); do grep -q "SIP listening" "$2/server.out" 2>/dev/null && break; sleep 0.05; done
}
server_stop() {
  kill -TERM "$spid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$1" "$2"; }
# CPU seconds of a process run under /usr/bin/time -f '%U %S' -o FILE.
timed() { tail -n 1 "$1" | awk '{print $1+$2}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[0-9.]*')"
echo

if [[ ",$PART," == *",hold,"* ]]; then
  echo "== hold: concurrent calls with RTP both ways (talk ${TALK} s)"
  printf '%-11s %-7s %-9s %-7s %-10s %-9s %-14s %-14s %s\n' concurrent calls completed failed peak loss% "load-cores/1k" "server-cores/1k" "setup-p99-ms"
  for n in ${CONCURRENT//,/ }; do
    agents=$((n + n / 10))
    cfg=$(config_for "$agents")
    step="$OUT/hold-$n"; mkdir -p "$step"
    server_start "$cfg" "$step"
    s0=$(ticks "$spid")
    rate=$(echo "$n / $TALK" | bc -l)
    ulimit -n 65536 2>/dev/null || true
    "$LOAD" --server 127.0.0.1:$PORT --agents "$agents" --rate "$rate" --arrivals fixed \
      --duration $((2 * TALK)) --talk "$TALK" --talk-dist fixed --register-rate 500 \
      --max-wait 30 > "$step/load.json" 2> "$step/load.err" || true
    s1=$(ticks "$spid")
    server_stop
    server_cores=$(echo "($s1 - $s0) / 100 / $(json "$step/load.json" call_s) * 1000" | bc -l)
    printf '%-11s %-7s %-9s %-7s %-10s %-9.3f %-14.3f %-14.3f %.1f\n' "$n" \
      "$(json "$step/load.json" calls)" "$(json "$step/load.json" completed)" \
      "$(json "$step/load.json" failed)" "$(json "$step/load.json" peak_concurrent)" \
      "$(json "$step/load.json" loss_pct)" "$(json "$step/load.json" cores_per_1000_calls)" \
      "$server_cores" "$(json "$step/load.json" "setup_ms['p99']")"
  done
  echo
fi

if [[ ",$PART," == *",rate,"* ]]; then
  echo "== rate: calls per second through the queue, hold ${HOLD_MS} ms, ${SECONDS_PER_STEP} s per step, $AGENTS agents"
  printf '%-7s %-16s %-7s %-7s %-7s %-10s %-6s %-16s %s\n' rate driver calls ok failed connected clean "driver-cpu/1000" "server-cpu/1000"
  cfg=$(config_for "$AGENTS")
  declare -A best=([sipp]=0 [load]=0 [load+media]=0) done_=([sipp]=0 [load]=0 [load+media]=0)
  for rate in ${RATES//,/ }; do
    calls=$((rate * SECONDS_PER_STEP))
    for driver in ${DRIVERS//,/ }; do
      [ "${done_[$driver]}" = 0 ] || continue
      step="$OUT/rate-$rate-$driver"; mkdir -p "$step"
      server_start "$cfg" "$step"
      if [ "$driver" = sipp ]; then
        (cd "$step" && /usr/bin/time -f '%U %S' -o agents.time sipp 127.0.0.1:$PORT \
            -sf "$ROOT/tests/sipp/agent_phone.xml" -oocsf "$ROOT/tests/sipp/agent_phone_answer.xml" \
            -inf "$cfg/agents.csv" -m "$AGENTS" -l "$AGENTS" -r 500 -set agent_calls "$calls" \
            -i 127.0.0.1 -p 26100 -cp 26101 -mp 26200 -t u1 -nostdin \
            -timeout $((SECONDS_PER_STEP + 60))s -timeout_error \
            -trace_err -error_file agents-errors.log > /dev/null 2> agents.stderr) &
        apid=$!
        sleep $((AGENTS / 500 + 2))
        s0=$(ticks "$spid")
        (cd "$step" && /usr/bin/time -f '%U %S' -o callers.time sipp 127.0.0.1:$PORT \
            -sf "$ROOT/tests/sipp/caller_abandon.xml" -s 600 \
            -m "$calls" -r "$rate" -rp 1000 -l $((rate * 4 + 100)) -d "$HOLD_MS" \
            -i 127.0.0.1 -p 26300 -cp 26301 -mp 26400 -t u1 -nostdin \
            -timeout $((SECONDS_PER_STEP + 40))s -timeout_error \
            -trace_stat -stf callers-stat.csv -fd 1 -trace_err -error_file callers-errors.log \
            > /dev/null 2> callers.stderr) && crc=0 || crc=$?
        s1=$(ticks "$spid")
        wait $apid 2>/dev/null || true
        last_line=$(tail -n 1 "$step/callers-stat.csv")
        header=$(head -n 1 "$step/callers-stat.csv")
        col() { echo "$header" | tr ';' '\n' | grep -n -x "$1" | cut -d: -f1; }
        ok=$(echo "$last_line" | cut -d';' -f"$(col 'SuccessfulCall(C)')")
        failed=$(echo "$last_line" | cut -d';' -f"$(col 'FailedCall(C)')")
        [ "$crc" = 0 ] || failed=$((failed + 0))
        drv=$(echo "$(timed "$step/agents.time") + $(timed "$step/callers.time")" | bc -l)
      else
        media=(--no-media); [ "$driver" = load+media ] && media=()
        /usr/bin/time -f '%U %S' -o "$step/load.time" "$LOAD" --server 127.0.0.1:$PORT \
          --agents "$AGENTS" --rate "$rate" --arrivals fixed --duration "$SECONDS_PER_STEP" \
          --talk "$(echo "$HOLD_MS / 1000" | bc -l)" --talk-dist fixed --register-rate 500 \
          --max-wait 20 "${media[@]}" > "$step/load.json" 2> "$step/load.err" &
        lpid=$!
        # The server's CPU from the first call on, as for SIPp (the agents have registered
        # when the load process prints its first progress line).
        for _ in $(seq 600); do grep -q '^calls 0 ' "$step/load.err" 2>/dev/null && break; sleep 0.05; done
        s0=$(ticks "$spid")
        wait $lpid && crc=0 || crc=$?
        s1=$(ticks "$spid")
        ok=$(json "$step/load.json" completed); failed=$(json "$step/load.json" failed)
        # Registration is in the process's CPU too; it is in SIPp's agents process as well.
        drv=$(timed "$step/load.time")
      fi
      server_stop
      connected=$(grep -c "call connected" "$step/server.log" || true)
      clean=no
      if [ "$failed" = 0 ] && [ "$ok" = "$calls" ] && [ "$connected" = "$calls" ]; then clean=yes; fi
      printf '%-7s %-16s %-7s %-7s %-7s %-10s %-6s %-16.3f %.3f\n' "$rate" "$driver" "$calls" "$ok" "$failed" "$connected" "$clean" \
        "$(echo "$drv * 1000 / $calls" | bc -l)" "$(echo "($s1 - $s0) / 100 * 1000 / $calls" | bc -l)"
      if [ "$clean" = yes ]; then best[$driver]=$rate; else done_[$driver]=1; fi
    done
  done
  echo
  echo "highest clean rate: sipp ${best[sipp]}/s, switchboard-load ${best[load]}/s (signalling only), ${best[load+media]}/s (with media)"
fi
if [[ ",$PART," == *",register,"* ]]; then
  echo "== register: registrations per second, ${SECONDS_PER_STEP} s per step, $REG_USERS users"
  printf '%-7s %-8s %-8s %-8s %-7s %-6s %-16s %-16s %s\n' rate driver sent ok failed clean "driver-cpu/1000" "server-cpu/1000" "p50/p99 ms"
  cfg=$(config_for "$REG_USERS")
  for rate in ${REG_RATES//,/ }; do
    n=$((rate * SECONDS_PER_STEP))
    for driver in sipp load; do
      step="$OUT/register-$rate-$driver"; mkdir -p "$step"
      server_start "$cfg" "$step"
      s0=$(ticks "$spid")
      lat="-"
      if [ "$driver" = sipp ]; then
        (cd "$step" && /usr/bin/time -f '%U %S' -o driver.time sipp 127.0.0.1:$PORT \
            -sf "$ROOT/tests/sipp/register_once.xml" -inf "$cfg/agents.csv" \
            -r "$rate" -rp 1000 -m "$n" -l $((rate * 2)) -i 127.0.0.1 -p 26300 -t u1 -nd -nostdin \
            -max_non_invite_retrans 5 -timeout $((SECONDS_PER_STEP + 30))s -timeout_error \
            -trace_stat -stf stat.csv -fd 1 > /dev/null 2> sipp.stderr) || true
        last=$(tail -n 1 "$step/stat.csv"); header=$(head -n 1 "$step/stat.csv")
        col() { echo "$header" | tr ';' '\n' | grep -n -x "$1" | cut -d: -f1; }
        ok=$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')")
        failed=$(echo "$last" | cut -d';' -f"$(col 'FailedCall(C)')")
      else
        /usr/bin/time -f '%U %S' -o "$step/driver.time" "$LOAD" --server 127.0.0.1:$PORT \
          --agents "$REG_USERS" --registrations-only --rate "$rate" --duration "$SECONDS_PER_STEP" \
          > "$step/load.json" 2> "$step/load.err" || true
        failed=$(json "$step/load.json" registration_failures)
        ok=$(( $(json "$step/load.json" registrations) - failed ))
        lat="$(printf '%.1f/%.1f' "$(json "$step/load.json" "register_ms['p50']")" "$(json "$step/load.json" "register_ms['p99']")")"
      fi
      s1=$(ticks "$spid")
      server_stop
      clean=no; [ "$ok" = "$n" ] && [ "$failed" = 0 ] && clean=yes
      printf '%-7s %-8s %-8s %-8s %-7s %-6s %-16.3f %-16.3f %s\n' "$rate" "$driver" "$n" "$ok" "$failed" "$clean" \
        "$(echo "$(timed "$step/driver.time") * 1000 / $n" | bc -l)" "$(echo "($s1 - $s0) / 100 * 1000 / $n" | bc -l)" "$lat"
    done
  done
  echo
fi
echo "output: $OUT"
