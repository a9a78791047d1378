#!/usr/bin/env bash
# Runs the call scenarios of tests/sipp/ against each other (and against the self-test
# peers in this folder) on 127.0.0.1, without the server: a check of the scenarios
# themselves, for after editing one. Needs only sipp (apt-get install sip-tester).
#
#   tests/sipp/peers/selftest.sh [u1|t1]      transport, UDP by default
#
# Ports: SIPP_SELFTEST_PORT (default 30600) up to that + 60, on 127.0.0.1 only.
# Every SIPp run has -timeout 20s -timeout_error, so nothing can hang. A pair passes when
# every SIPp of it exits 0 (all its calls successful). SIPp's files stay in the printed
# work directory when something fails.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
peers=$here/peers
transport=${1:-u1}
base=${SIPP_SELFTEST_PORT:-30600}
work=$(mktemp -d "${TMPDIR:-/tmp}/sipp-selftest.XXXXXX")
passed=0
failed=0

# Ports: registrar, agent side (SIP, control, media), caller side (SIP, control, media).
reg=$base
agent=$((base + 10)) agent_cp=$((base + 11)) agent_media=$((base + 20))
caller=$((base + 30)) caller_cp=$((base + 31)) caller_media=$((base + 40))

cat >"$work/agents.csv" <<'EOF'
SEQUENTIAL
1001;demo1001;[authentication username=1001 password=demo1001]
1002;demo1002;[authentication username=1002 password=demo1002]
EOF

# sipp_run TEST ROLE ARGS...: one SIPp, its files named TEST-ROLE.* in the work dir.
sipp_run() {
    local test=$1 role=$2
    shift 2
    (cd "$work" && exec sipp "$@" -i 127.0.0.1 -t "$transport" -nostdin \
        -timeout 20s -timeout_error \
        -trace_err -error_file "$test-$role.errors" \
        -trace_msg -message_file "$test-$role.messages" \
        -trace_stat -stf "$test-$role.stat.csv" \
        >"$work/$test-$role.screen" 2>&1)
}

verdict() {
    local test=$1
    shift
    local rc
    for rc in "$@"; do
        if [ "$rc" != 0 ]; then
            echo "FAIL $test (exit codes: $*)"
            failed=$((failed + 1))
            return
        fi
    done
    echo "ok   $test"
    passed=$((passed + 1))
}

# pair TEST "SERVER ARGS" "CLIENT ARGS": a SIPp server, then a SIPp client calling it.
pair() {
    local test=$1 server_args=$2 client_args=$3 spid src crc
    # shellcheck disable=SC2086
    sipp_run "$test" uas $server_args -p "$agent" -cp "$agent_cp" \
        -mi 127.0.0.1 -mp "$agent_media" &
    spid=$!
    sleep 0.5
    # shellcheck disable=SC2086
    sipp_run "$test" uac "127.0.0.1:$agent" $client_args -p "$caller" -cp "$caller_cp" \
        -mi 127.0.0.1 -mp "$caller_media"
    crc=$?
    wait "$spid"
    src=$?
    verdict "$test" "$src" "$crc"
}

# phone TEST OOC CALLS "CALLER ARGS" "AGENT ARGS": registrar, then agent_phone.xml with
# the out-of-call scenario OOC for two agents, then CALLS calls to the agents' port.
phone() {
    local test=$1 ooc=$2 calls=$3 caller_args=$4 agent_args=$5 rpid apid rrc arc crc
    sipp_run "$test" registrar -sf "$peers/registrar.xml" -p "$reg" -cp $((reg + 1)) \
        -m 2 -mp $((reg + 4)) &
    rpid=$!
    sleep 0.3
    # shellcheck disable=SC2086
    sipp_run "$test" agent "127.0.0.1:$reg" -sf "$here/agent_phone.xml" -oocsf "$here/$ooc" \
        -inf "$work/agents.csv" -m 2 -l 2 -set agent_calls "$calls" $agent_args \
        -p "$agent" -cp "$agent_cp" -rtp_echo -mi 127.0.0.1 -mp "$agent_media" &
    apid=$!
    sleep 1
    # shellcheck disable=SC2086
    sipp_run "$test" caller "127.0.0.1:$agent" $caller_args -s 1001 -m "$calls" \
        -l "$calls" -p "$caller" -cp "$caller_cp" -mi 127.0.0.1 -mp "$caller_media"
    crc=$?
    wait "$apid"
    arc=$?
    wait "$rpid"
    rrc=$?
    verdict "$test" "$rrc" "$arc" "$crc"
}

echo "SIPp scenario self-test, transport $transport, ports $base..$((base + 60)), files in $work"

pair caller-vs-answer "-sf $here/agent_phone_answer.xml -m 2 -rtp_echo" \
    "-sf $here/caller.xml -s 500 -m 2 -l 2 -d 1500"
pair caller_wait_bye-vs-hangup "-sf $here/agent_phone_hangup.xml -m 2 -d 1000 -rtp_echo" \
    "-sf $here/caller_wait_bye.xml -s 500 -m 2 -l 2"
pair caller_abandon-vs-answer "-sf $here/agent_phone_answer.xml -m 2" \
    "-sf $here/caller_abandon.xml -s 500 -m 2 -l 2 -d 500"
pair caller_cancel-vs-no_answer "-sf $here/agent_no_answer.xml -m 2" \
    "-sf $here/caller_cancel.xml -s 500 -m 2 -l 2 -d 500"
pair caller_cancel-vs-noisy_ringing "-sf $peers/ring_until_cancel_uas.xml -m 2" \
    "-sf $here/caller_cancel.xml -s 500 -m 2 -l 2 -d 600"
pair caller_auth-vs-407 "-sf $peers/challenge_uas.xml -m 1" \
    "-sf $here/caller_auth.xml -s 500 -au 1001 -ap demo1001 -m 1 -d 500"
pair busy-vs-agent_busy "-sf $here/agent_busy.xml -m 2" \
    "-sf $peers/busy_uac.xml -s 1001 -m 2 -l 2"

phone agent_phone+answer agent_phone_answer.xml 3 "-sf $here/caller.xml -d 1000" ""
phone agent_phone+hangup agent_phone_hangup.xml 2 "-sf $here/caller_wait_bye.xml" "-d 1000"
phone agent_phone+no_answer agent_no_answer.xml 2 "-sf $here/caller_cancel.xml -d 500" ""
phone agent_phone+busy agent_busy.xml 2 "-sf $peers/busy_uac.xml" ""

echo "$passed passed, $failed failed"
if [ "$failed" = 0 ]; then
    rm -rf "$work"
else
    echo "SIPp files kept in $work"
fi
[ "$failed" = 0 ]
