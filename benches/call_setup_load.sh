#!/usr/bin/env bash
# Calls per second set up through a queue, with SIPp on both sides, at zero failures.
#
#   benches/call_setup_load.sh                 # rates 50..500/s, 10 s each
#   RATES=100,200 SECONDS=5 benches/call_setup_load.sh
#   STORAGE=off benches/call_setup_load.sh     # without call records (default: on, SQLite)
#   STORAGE=postgres benches/call_setup_load.sh  # call records in PostgreSQL
#   VIA=menu benches/call_setup_load.sh        # callers go through an IVR menu (one key)
#   VIA=queue,menu benches/call_setup_load.sh  # both at each rate: the menu's cost beside
#                                              # the direct call's, in the same run
#   VIA=queue,outbound benches/call_setup_load.sh  # calls out through a trunk beside queue
#                                              # calls, in the same run
#
# One release server (queue "support" on 600, AGENTS agents ready at start, a trunk for
# 127.0.0.1 allowed to dial 600), one SIPp process playing every agent phone (REGISTER with
# digest, then answer each INVITE 180/200 and wait for the caller's BYE), and one SIPp caller
# per step: INVITE 600, 200 (the queue answers at once), ACK, HOLD_MS, BYE. A call counts as
# set up when the server logs "call connected" for it (an agent's phone answered and the
# legs were bridged), so a rate passes only if SIPp reports 0 failed calls AND every call
# was connected to an agent. Media is not sent (the relay has its own benchmark).
#
# VIA=menu: the callers dial 700, an IVR menu (a 10.7 s spoken prompt) that sends key 1 to
# the queue; each caller sends key 1 as RFC 4733 telephone-events (sip-tester's
# dtmf_2833_1.pcap) 300 ms after the answer, then holds HOLD_MS and hangs up. A call counts
# only if it reached an agent, so a lost key fails the step.
#
# VIA=outbound: user 1001 dials 0301234567 (digest-challenged like a phone), the route
# "national" (strip the 0, prepend +49) sends it out through trunk "carrier" to a SIPp
# carrier on 127.0.0.1:26700 that answers 180/200 and waits for the BYE; HOLD_MS, then the
# caller hangs up. No agent phones take part; a call counts when the server logs "call
# connected" for it (the carrier answered and the legs were bridged).
#
# STORAGE=postgres starts a PostgreSQL server of its own for the run (Debian's postgresql,
# /usr/lib/postgresql/*/bin, as the postgres user when run as root; a new cluster under $OUT,
# 127.0.0.1:$PG_PORT, default settings: fsync and synchronous_commit on) and points
# [storage] url at it; its CPU time (all its processes) is shown beside the server's.
#
# Output: one line per step and a summary with the highest clean rate and the server's
# CPU-seconds per 1,000 calls, then the calls stored; everything under $OUT.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="${OUT:-$ROOT/benches/out/calls-$(date +%Y%m%d-%H%M%S)}"
RATES="${RATES:-50,100,200,300,400,500}"
SECONDS_PER_STEP="${SECONDS:-10}"
AGENTS="${AGENTS:-400}"
HOLD_MS="${HOLD_MS:-500}"
STORAGE="${STORAGE:-on}"
VIA="${VIA:-queue}"
PG_PORT="${PG_PORT:-26500}"
PORT=26060
export NO_COLOR=1

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/run.log") 2>&1

BIN="${SWITCHBOARD_BIN:-}"
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -q -p switchboard)
  BIN="$ROOT/target/release/switchboard"
fi
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester"; exit 1; }
case "$STORAGE" in on|off|postgres) ;; *) echo "STORAGE=$STORAGE: use on, off or postgres"; exit 1;; esac
for via in ${VIA//,/ }; do
  case "$via" in queue|menu|outbound) ;; *) echo "VIA=$VIA: use queue, menu, outbound or a list"; exit 1;; esac
done
KEY_PCAP=/usr/share/sip-tester/dtmf_2833_1.pcap
[ -f "$KEY_PCAP" ] || { echo "$KEY_PCAP not found: apt-get install sip-tester"; exit 1; }

pg_cpu() { echo 0; }
if [ "$STORAGE" = postgres ]; then
  pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -x "$pgbin/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql"; exit 1; }
  pgdir="$OUT/pg"
  mkdir -p "$pgdir"
  as_pg=()
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$pgdir"; as_pg=(runuser -u postgres --); fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --locale=C > "$pgdir/initdb.log"
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
      -o "-p $PG_PORT -k $pgdir -c listen_addresses=127.0.0.1" start > /dev/null
  trap '"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop > /dev/null 2>&1 || true' EXIT
  "${as_pg[@]}" "$pgbin/createdb" -h "$pgdir" -p "$PG_PORT" -U postgres switchboard
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/switchboard"
  # CPU ticks of the PostgreSQL server and its backends (the postmaster's children).
  pg_cpu() {
    local pm t=0 p
    pm=$(head -n 1 "$pgdir/data/postmaster.pid")
    for p in $pm $(ps -o pid= --ppid "$pm"); do
      [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat)))
    done
    echo $t
  }
fi

first=1001
last=$((first + AGENTS - 1))
cfg="$OUT/config"
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
[trunks.lab]
addresses = ["127.0.0.1"]
numbers = ["600", "700"]
[trunks.carrier]
proxies = ["127.0.0.1:26700"]
[log]
level = "info"
[recording]
dir = "$OUT/recordings"
[storage]
enabled = $([ "$STORAGE" = off ] && echo false || echo true)
$([ "$STORAGE" = postgres ] && echo "url = \"$PG_URL\"")
EOF
: > "$cfg/users.toml"
: > "$cfg/agents.toml"
echo "SEQUENTIAL" > "$OUT/agents.csv"
for u in $(seq $first $last); do
  printf '[users.%s]\npassword = "demo%s"\n' "$u" "$u" >> "$cfg/users.toml"
  printf '[agents.%s]\nuser = "%s"\nqueues = ["support"]\nlogin_on_start = true\n' "$u" "$u" >> "$cfg/agents.toml"
  echo "$u;demo$u;[authentication username=$u password=demo$u]" >> "$OUT/agents.csv"
done
cat > "$cfg/queues.toml" <<EOF
[queues.support]
number = "600"
ring_timeout = 10
EOF
cat > "$cfg/routes.toml" <<EOF
[dialing]
classes = ["national"]
[[route]]
name = "national"
patterns = ["0Z."]
class = "national"
strip = 1
prepend = "+49"
trunks = ["carrier"]
EOF
cat > "$cfg/ivr.toml" <<EOF
[menus.main]
number = "700"
prompt = "$ROOT/config/prompts/main-menu.wav"
[menus.main.choices]
1 = "queue:support"
EOF

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "server: $BIN ($AGENTS agents, hold ${HOLD_MS} ms, ${SECONDS_PER_STEP} s per step, storage $STORAGE, via $VIA)"
echo "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[0-9.]*')"
echo
printf '%-8s %-6s %-9s %-9s %-7s %-10s %-13s %-12s %-6s %s\n' rate via calls ok failed connected "cpu-s/1000" "achieved/s" clean "db-cpu-s/1000"
best=0
stop=0
for rate in ${RATES//,/ }; do
 for via in ${VIA//,/ }; do
  calls=$((rate * SECONDS_PER_STEP))
  step="$OUT/step-$rate-$via"
  mkdir -p "$step"
  auth=()
  if [ "$via" = menu ]; then
    cp "$KEY_PCAP" "$step/key1.pcap"
    scenario=caller_menu_key.xml number=700
  elif [ "$via" = outbound ]; then
    scenario=agent_dial_out.xml number=0301234567 auth=(-au 1001 -ap demo1001)
  else
    scenario=caller_abandon.xml number=600
  fi
  "$BIN" serve --config "$cfg" > "$step/server.out" 2> "$step/server.log" &
  spid=$!
  for _ in $(seq 100); do grep -q "SIP listening" "$step/server.out" 2>/dev/null && break; sleep 0.05; done
  if [ "$via" = outbound ]; then
    # The carrier: answers every call of the step.
    (cd "$step" && sipp -sf "$ROOT/tests/sipp/agent_phone_answer.xml" -m "$calls" \
        -i 127.0.0.1 -p 26700 -cp 26701 -mp 26800 -t u1 -nostdin \
        -timeout $((SECONDS_PER_STEP + 60))s -timeout_error \
        -trace_err -error_file agents-errors.log > /dev/null 2> agents.stderr) &
  else
  # The agent phones: register all, then answer until every call of the step is done.
  (cd "$step" && sipp 127.0.0.1:$PORT -sf "$ROOT/tests/sipp/agent_phone.xml" \
      -oocsf "$ROOT/tests/sipp/agent_phone_answer.xml" -inf "$OUT/agents.csv" \
      -m "$AGENTS" -l "$AGENTS" -r 500 -set agent_calls "$calls" \
      -i 127.0.0.1 -p 26100 -cp 26101 -mp 26200 -t u1 -nostdin \
      -timeout $((SECONDS_PER_STEP + 60))s -timeout_error \
      -trace_err -error_file agents-errors.log > /dev/null 2> agents.stderr) &
  fi
  apid=$!
  # The phones register at 500/s; give them time to finish.
  sleep $((AGENTS / 500 + 2))
  cpu0=$(awk '{print $14+$15}' /proc/$spid/stat)
  pg0=$(pg_cpu)
  t0=$(date +%s.%N)
  (cd "$step" && sipp 127.0.0.1:$PORT -sf "$ROOT/tests/sipp/$scenario" -s "$number" "${auth[@]}" \
      -m "$calls" -r "$rate" -rp 1000 -l $((rate * 4 + 100)) -d "$HOLD_MS" \
      -i 127.0.0.1 -p 26300 -cp 26301 -mp 26400 -t u1 -nostdin \
      -timeout $((SECONDS_PER_STEP + 40))s -timeout_error \
      -trace_stat -stf callers-stat.csv -fd 1 -trace_err -error_file callers-errors.log \
      > /dev/null 2> callers.stderr) && crc=0 || crc=$?
  t1=$(date +%s.%N)
  cpu1=$(awk '{print $14+$15}' /proc/$spid/stat)
  wait $apid 2>/dev/null || true
  # The storage thread may still be writing the last records: count them too.
  sleep 1
  pg1=$(pg_cpu)
  kill -TERM $spid 2>/dev/null || true
  # A server that does not exit within 15 s is killed (and said so), so the run goes on.
  for _ in $(seq 150); do kill -0 $spid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $spid 2>/dev/null; then
    echo "(the server did not exit within 15 s of SIGTERM: killed)"
    kill -KILL $spid 2>/dev/null || true
  fi
  wait $spid 2>/dev/null || true
  last_line=$(tail -n 1 "$step/callers-stat.csv")
  header=$(head -n 1 "$step/callers-stat.csv")
  col() { echo "$header" | tr ';' '\n' | grep -n -x "$1" | cut -d: -f1; }
  ok=$(echo "$last_line" | cut -d';' -f"$(col 'SuccessfulCall(C)')")
  failed=$(echo "$last_line" | cut -d';' -f"$(col 'FailedCall(C)')")
  connected=$(grep -c "call connected" "$step/server.log" || true)
  cpu_s=$(echo "($cpu1 - $cpu0) / 100" | bc -l)
  per1000=$(echo "$cpu_s * 1000 / $calls" | bc -l)
  db1000=$(echo "($pg1 - $pg0) / 100 * 1000 / $calls" | bc -l)
  achieved=$(echo "$ok / ($t1 - $t0)" | bc -l)
  clean=no
  if [ "$crc" = 0 ] && [ "$failed" = 0 ] && [ "$ok" = "$calls" ] && [ "$connected" = "$calls" ]; then
    clean=yes
  fi
  printf '%-8s %-6s %-9s %-9s %-7s %-10s %-13.3f %-12.1f %-6s %.3f\n' "$rate" "$via" "$calls" "$ok" "$failed" "$connected" "$per1000" "$achieved" "$clean" "$db1000"
  echo "$rate;$via;$calls;$ok;$failed;$connected;$per1000;$achieved;$clean;$db1000" >> "$OUT/results.csv"
  [ "$clean" = yes ] || { stop=1; break; }
 done
 [ "$stop" = 0 ] || break
 best=$rate
done
echo
echo "highest clean rate: $best calls/s (0 failed, every call connected to an agent)"
case "$STORAGE" in
  on) echo "calls stored: $(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from calls").fetchone()[0])' "$OUT/switchboard.db" 2>/dev/null || echo '?') (SQLite $OUT/switchboard.db)";;
  postgres) echo "calls stored: $("${as_pg[@]}" "$pgbin/psql" -h "$pgdir" -p "$PG_PORT" -U postgres -d switchboard -tAc 'SELECT count(*) FROM calls') (PostgreSQL)";;
esac
echo "output: $OUT"
