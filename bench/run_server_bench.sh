#!/bin/bash
# run_server_bench.sh - measures the redress chat server under load on 127.0.0.1.
#
# Starts the server (or bench/echo_server) itself, drives it with bench/loadgen processes
# (several, each under the per-process open-file limit), merges their JSON reports with
# bench/loadgen_merge.py, and writes every figure with the exact commands that produced it to
# OUT/summary.json and OUT/summary.txt.  Every process it starts is stopped by PID on exit;
# every wait has a deadline.
#
# Phases (default: all = idle idle-echo saturate search open echo mixed perf):
#   idle       open --idle-conns conversations (hello, welcome, greeting), hold them, and read
#              the server's VmRSS before and after: bytes per conversation
#   idle-echo  the same against echo_server: what libwebsockets alone costs per socket
#   saturate   closed loop (one turn in flight per conversation) at each of --conns: turns/s;
#              the best becomes the saturation rate
#   search     the same at each of --search-conns with bench/rules-search-every-turn as the
#              rules: a knowledge-base search on every customer message (the shipped flow
#              searches once per complaint); its own best rate, used by no other phase
#   open       open loop at --open-fraction of that rate: p50 / p99 turn latency; meanwhile
#              POST /api/flows/reload --reloads times (reported "not available" on a 404; on a
#              server with accounts, as a bench-reload editor created in the run's database)
#              and count turns lost
#   echo       the saturate run at the best concurrency against echo_server: ratio
#              (phases after saturate use its best concurrency, or the last of --conns)
#   mixed      the saturate run at the best concurrency while --mixed-idle more conversations
#              stay open and idle (a busy hour: most customers are typing, not sending)
#   mixed-echo the same against echo_server (not in "all"; with --echo-flag it measures what
#              libwebsockets settings cost at that many sockets)
#   perf       perf record of the server during the closed-loop run, then during the mixed
#              run (perf-mixed): the top functions
#   smoke      a short functional run of every mode against both servers (ctest); fails unless
#              every turn is answered and each server thread's CPU per turn and the machine's
#              CPU times can be read; no timing is checked
#
# Closed and open runs also report server_threads: each server thread's CPU per turn and its
# time per turn runnable but waiting for a core (/proc/PID/task/TID/schedstat), and machine:
# the share of all cores' time that was busy, stolen by the hypervisor, and idle over the window
# (/proc/stat; on a shared virtual machine steal varies from run to run).  The open loop
# also reports server_latency: the server's own turn latency histograms over the window (GET
# /metrics before and after, bench/server_metrics.py), so that the time a turn spends inside the
# server (its run, then the wait for its commit) shows apart from what the load generator sees.
#
# The server's per-connection rate limit (limits.rate_per_sec, 10/s) would cap a closed loop at
# 10 turns/s per conversation, so the server is started with --limits.rate_per_sec 100000
# --limits.rate_burst 100000, and with --limits.max_connections near `ulimit -n`.
#
# Each server start gets a fresh data directory, so the knowledge base is seeded from kb.seed
# every time: the server's default (kb/sample, 109 templates) unless --kb-templates N > 0, which
# generates N templates once with bench/kb_templates.py (the sample plus templates made from
# AFQMC customer questions, ../shared/data/afqmc_train.tsv) into OUT/kb and starts the server
# with --kb.seed OUT/kb.  summary.json ("kb") and summary.txt say which knowledge base was used.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$SRC/build-bench
OUT=
REDRESS=
PROCS=2
RUN_PROCS=1
IDLE_CONNS=15000
IDLE_HOLD=3
CONNS_LIST="50 200 1000"
SEARCH_CONNS_LIST="50 200"
WARMUP=5
DURATION=20
OPEN_FRACTION=0.7
OPEN_RATE=
RELOADS=5
PERF_SECONDS=15
MIXED_IDLE=15000
KB_TEMPLATES=0
KB_FLAGS=()
SERVER_FLAGS=()
ECHO_FLAGS=()
PHASES=()
PY=/usr/bin/python3

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    cat <<EOF
usage: $0 [options] [PHASE...]
  --build DIR          build directory with redress and bench/ (default $BUILD)
  --redress BIN        the server binary to measure (default BUILD/redress)
  --out DIR            where results go (default BUILD/bench-results/DATE)
  --procs N            load generator processes in the idle phases ($PROCS)
  --run-procs N        load generator processes in the other phases ($RUN_PROCS)
  --idle-conns N       conversations held in the idle phase ($IDLE_CONNS)
  --idle-hold S        seconds the idle phase holds them before reading the RSS ($IDLE_HOLD)
  --conns "N ..."      closed-loop concurrencies tried by saturate ("$CONNS_LIST")
  --search-conns "N ..." closed-loop concurrencies tried by search ("$SEARCH_CONNS_LIST")
  --warmup S           seconds before each measurement window ($WARMUP)
  --duration S         measurement window ($DURATION)
  --open-fraction F    open-loop rate as a fraction of the saturation rate ($OPEN_FRACTION)
  --open-rate R        open-loop rate in turns/s (instead of a saturate result)
  --reloads N          POST /api/flows/reload this many times during the open run ($RELOADS)
  --perf-seconds S     length of each perf recording ($PERF_SECONDS)
  --mixed-idle N       idle conversations held during the mixed and perf-mixed runs ($MIXED_IDLE)
  --kb-templates N     seed the server with N knowledge-base templates made by
                       bench/kb_templates.py into OUT/kb (0 = the server's default kb.seed) ($KB_TEMPLATES)
  --server-flag ARG    one more argument for \`redress serve\` (repeatable)
  --echo-flag ARG      one more argument for echo_server (repeatable)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
    --redress) REDRESS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --procs) PROCS=$2; shift 2 ;;
    --run-procs) RUN_PROCS=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --idle-hold) IDLE_HOLD=$2; shift 2 ;;
    --conns) CONNS_LIST=$2; shift 2 ;;
    --search-conns) SEARCH_CONNS_LIST=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --open-fraction) OPEN_FRACTION=$2; shift 2 ;;
    --open-rate) OPEN_RATE=$2; shift 2 ;;
    --reloads) RELOADS=$2; shift 2 ;;
    --perf-seconds) PERF_SECONDS=$2; shift 2 ;;
    --mixed-idle) MIXED_IDLE=$2; shift 2 ;;
    --kb-templates) KB_TEMPLATES=$2; shift 2 ;;
    --server-flag) SERVER_FLAGS+=("$2"); shift 2 ;;
    --echo-flag) ECHO_FLAGS+=("$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    idle | idle-echo | saturate | search | open | echo | mixed | mixed-echo | perf | smoke)
        PHASES+=("$1")
        shift
        ;;
    all) PHASES+=(idle idle-echo saturate search open echo mixed perf); shift ;;
    *) echo "run_server_bench: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#PHASES[@]} -gt 0 ] || PHASES=(idle idle-echo saturate search open echo mixed perf)
for n in "$PROCS" "$RUN_PROCS" "$IDLE_CONNS" "$MIXED_IDLE" "$RELOADS" "$PERF_SECONDS" "$WARMUP" "$DURATION" "$KB_TEMPLATES"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "run_server_bench: \"$n\" is not a count" >&2; exit 2; }
done
for c in $CONNS_LIST; do
    [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "run_server_bench: --conns: \"$c\"" >&2; exit 2; }
done
for c in $SEARCH_CONNS_LIST; do
    [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "run_server_bench: --search-conns: \"$c\"" >&2; exit 2; }
done

LOADGEN=$BUILD/bench/loadgen
ECHO_SERVER=$BUILD/bench/echo_server
REDRESS=${REDRESS:-$BUILD/redress}
MERGE=("$PY" "$SRC/bench/loadgen_merge.py")
CONVERSATIONS=$SRC/bench/conversations
for f in "$LOADGEN" "$ECHO_SERVER" "$REDRESS"; do
    [ -x "$f" ] || { echo "run_server_bench: $f missing; build with -DREDRESS_BENCH=ON" >&2; exit 2; }
done

SMOKE_ONLY=0
if [ "${PHASES[*]}" = smoke ]; then
    SMOKE_ONLY=1
    PROCS=1
    RUN_PROCS=1
    OUT=${OUT:-$(mktemp -d /tmp/redress-bench-smoke.XXXXXX)}
fi
OUT=${OUT:-$BUILD/bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# The server holds one socket per conversation; both it and each loadgen need open files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# the server keeps 256 files besides its connections (FD_RESERVE, server/net.c) and sets its
# soft limit to max_connections + 256: this keeps it at NOFILE
MAXCONN=$((NOFILE - 256))
CLK_TCK=$(getconf CLK_TCK)

# ---- processes: everything we start is recorded and stopped by PID ----
PIDS=()
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.5
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt" >&2; }
die() { log "FAILED: $*"; exit 1; }

# Waits until process $1 has ended, at most $2 seconds, then TERM, then KILL.  Sets WAIT_RC.
wait_pid() {
    local pid=$1 limit=$2 t=0
    while kill -0 "$pid" 2>/dev/null && [ "$t" -lt $((limit * 10)) ]; do
        sleep 0.1
        t=$((t + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid still running after ${limit}s: TERM"
        kill -TERM "$pid" 2>/dev/null || true
        sleep 5
        kill -KILL "$pid" 2>/dev/null || true
    fi
    WAIT_RC=0
    wait "$pid" 2>/dev/null || WAIT_RC=$?
    forget_pid "$pid"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Per thread: tid, name, ns on a CPU, ns runnable but waiting for one
# (/proc/PID/task/TID/schedstat).  Also the machine's CPU times (the "cpu" line of /proc/stat)
# into FILE's .cpu twin, for machine_json.
sched_snap() { # PID FILE
    local t
    : >"$2"
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(tr ' ' '_' <"$t/comm")" \
            "$(cut -d' ' -f1,2 "$t/schedstat")" >>"$2" 2>/dev/null || true
    done
    grep '^cpu ' /proc/stat >"${2%.txt}.cpu"
}
# The whole machine between two sched_snap: {"busy_percent", "steal_percent", "idle_percent"}
# of all its cores' time.  Steal is time the hypervisor gave another guest while this one had
# work: it shows when a run's latency tail comes from the machine rather than the server.
machine_json() { # CPU0 CPU1
    paste -d' ' "$1" "$2" | awk '{
        n = (NF - 2) / 2
        for (i = 2; i <= n + 1; i++) d[i - 1] = $(i + n + 1) - $i
        idle = d[4] + d[5]; steal = d[8]; total = 0
        for (i = 1; i <= 8; i++) total += d[i]
        if (total <= 0) { print "null"; exit }
        printf "{\"busy_percent\": %.1f, \"steal_percent\": %.1f, \"idle_percent\": %.1f}\n",
            (total - idle - steal) * 100 / total, steal * 100 / total, idle * 100 / total }'
}
# GET /metrics of the running server into FILE (empty when it does not answer)
metrics_snap() { # FILE
    curl -s --max-time 10 "http://127.0.0.1:$SERVER_PORT/metrics" >"$1" || : >"$1"
}
# the server's latency histograms between two snapshots (bench/server_metrics.py), or null
server_latency() { # BEFORE AFTER
    "$PY" "$SRC/bench/server_metrics.py" window "$1" "$2" 2>/dev/null || echo null
}
# {"name": {"run_us_per_turn": R, "wait_us_per_turn": W}, ...} over TURNS turns, threads of the
# same name summed (a thread that started or ended between the snapshots is left out).
sched_json() { # FILE0 FILE1 TURNS
    awk -v turns="$3" 'FILENAME == ARGV[1] { r0[$1] = $3; w0[$1] = $4; next }
        ($1 in r0) { run[$2] += $3 - r0[$1]; wait[$2] += $4 - w0[$1] }
        END { printf "{"; sep = ""
              for (name in run) {
                  r = turns > 0 ? run[name] / 1000 / turns : 0
                  w = turns > 0 ? wait[name] / 1000 / turns : 0
                  printf "%s\"%s\": {\"run_us_per_turn\": %.0f, \"wait_us_per_turn\": %.0f}",
                      sep, name, r, w
                  sep = ", " }
              printf "}\n" }' "$1" "$2"
}
# sched_json of a run's measurement window: DIR's sched0/sched1.txt over the turns of DURATION.
window_threads() { # DIR
    sched_json "$1/sched0.txt" "$1/sched1.txt" \
        "$(jq ".turns.turns_per_s * $DURATION" "$1/merged.json")"
}
window_machine() { # DIR
    machine_json "$1/sched0.cpu" "$1/sched1.cpu" 2>/dev/null || echo null
}
calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }

# ---- servers ----
SERVER_PID=
SERVER_PORT=
SERVER_CMD=
start_server() { # KIND DIR
    local kind=$1 dir=$2 cmd t=0
    mkdir -p "$dir"
    if [ "$kind" = redress ]; then
        rm -rf "$dir/data"
        cmd=("$REDRESS" serve --listen.port 0 --data.dir "$dir/data"
            --limits.max_connections "$MAXCONN" --limits.rate_per_sec 100000
            --limits.rate_burst 100000 --log.level warn "${KB_FLAGS[@]}" "${SERVER_FLAGS[@]}")
    else
        cmd=("$ECHO_SERVER" --port 0 --max-connections "$MAXCONN" "${ECHO_FLAGS[@]}")
    fi
    SERVER_CMD="ulimit -n $NOFILE; ${cmd[*]}"
    echo "$SERVER_CMD" >"$dir/server.cmd"
    "${cmd[@]}" >"$dir/server.out" 2>"$dir/server.err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    while ! grep -q '^listening on ' "$dir/server.out" 2>/dev/null; do
        kill -0 "$SERVER_PID" 2>/dev/null || die "$kind did not start: $(tail -5 "$dir/server.err")"
        [ $t -lt 600 ] || die "$kind did not print 'listening on' within 60 s"
        sleep 0.1
        t=$((t + 1))
    done
    SERVER_PORT=$(sed -n 's/^listening on http:\/\/[0-9.]*:\([0-9]*\)$/\1/p' "$dir/server.out")
    log "$kind pid $SERVER_PID on port $SERVER_PORT"
}

stop_server() { # DIR
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait_pid "$SERVER_PID" 60
    echo "$WAIT_RC" >"$1/server.rc"
    [ "$WAIT_RC" = 0 ] || log "server exited with status $WAIT_RC (see $1/server.err)"
    rm -rf "$1/data"
    SERVER_PID=
}

# ---- load generators ----
LG_PIDS=()
LG_CMD=
lg_start() { # DIR MODE TOTAL_CONNS RATE EXTRA_ARGS...
    local dir=$1 mode=$2 total=$3 rate=$4 i n r procs=$RUN_PROCS
    shift 4
    [ "$mode" != idle ] || procs=$PROCS
    mkdir -p "$dir"
    rm -f "$dir"/lg-*.json "$dir"/ready-*
    LG_PIDS=()
    LG_CMD=
    for ((i = 0; i < procs; i++)); do
        n=$((total / procs + (i < total % procs ? 1 : 0)))
        [ "$n" -gt 0 ] || continue
        local cmd=("$LOADGEN" --port "$SERVER_PORT" --mode "$mode" --conns "$n" --id "$i"
            --wait-go --ready-file "$dir/ready-$i" --out "$dir/lg-$i.json" "$@")
        if [ "$mode" != idle ]; then
            cmd+=(--conversations "$CONVERSATIONS" --warmup "$WARMUP" --duration "$DURATION")
        fi
        if [ "$rate" != 0 ]; then
            r=$(calc "$rate / $procs")
            cmd+=(--rate "$r")
        fi
        "${cmd[@]}" 2>>"$dir/loadgen.err" &
        LG_PIDS+=($!)
        PIDS+=($!)
        LG_CMD+="${cmd[*]}"$'\n'
    done
    printf '%s' "$LG_CMD" >"$dir/loadgen.cmd"
}

lg_wait_ready() { # DIR LIMIT_S
    local dir=$1 limit=$2 t=0 pid
    while :; do
        local have
        have=$(find "$dir" -maxdepth 1 -name 'ready-*' ! -name '*.tmp' | wc -l)
        [ "$have" -ge ${#LG_PIDS[@]} ] && break
        for pid in "${LG_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "loadgen $pid ended early: $(tail -3 "$dir/loadgen.err")"
        done
        [ $t -lt $((limit * 10)) ] || die "load generators not connected within ${limit}s"
        sleep 0.1
        t=$((t + 1))
    done
}

lg_go() { local pid; for pid in "${LG_PIDS[@]}"; do kill -USR1 "$pid"; done; }

lg_finish() { # DIR LIMIT_S -> DIR/merged.json
    local dir=$1 limit=$2 pid
    for pid in "${LG_PIDS[@]}"; do
        wait_pid "$pid" "$limit"
        [ "$WAIT_RC" = 0 ] || die "loadgen exited with $WAIT_RC: $(tail -3 "$dir/loadgen.err")"
    done
    "${MERGE[@]}" merge "$dir/merged.json" "$dir"/lg-*.json
}

get() { "${MERGE[@]}" get "$1" "$2"; }

RUN_LIMIT=$((WARMUP + DURATION + 120))

# ---- phases ----
phase_idle() { # KIND NAME
    local kind=$1 dir=$OUT/$2 rss0 rss1 rss2 hwm ready health=null
    log "idle: $IDLE_CONNS conversations against $kind"
    start_server "$kind" "$dir"
    sleep 1
    rss0=$(rss_kb "$SERVER_PID")
    lg_start "$dir" idle "$IDLE_CONNS" 0 --connect-timeout 60 --max-runtime 900 --wait-timeout 300
    lg_wait_ready "$dir" 600
    sleep "$IDLE_HOLD" # let the store's writer finish; idle flows park after limits.flow_idle_s
    rss1=$(rss_kb "$SERVER_PID")
    hwm=$(hwm_kb "$SERVER_PID")
    if [ "$kind" = redress ]; then
        health=$(curl -s --max-time 10 "http://127.0.0.1:$SERVER_PORT/healthz" || echo null)
    fi
    LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
    lg_go
    lg_finish "$dir" 120
    sleep 2
    rss2=$(rss_kb "$SERVER_PID")
    stop_server "$dir"
    ready=$(get "$dir/merged.json" ready_at_go)
    [ "$ready" -gt 0 ] || die "no conversation became ready"
    jq -n --arg kind "$kind" --argjson conns "$IDLE_CONNS" --argjson ready "$ready" \
        --argjson rss0 "$rss0" --argjson rss1 "$rss1" --argjson rss2 "$rss2" --argjson hwm "$hwm" \
        --argjson health "$health" --argjson loadavg "$LOADAVG" --arg server_cmd "$SERVER_CMD" --arg loadgen_cmd "$LG_CMD" \
        --slurpfile lg "$dir/merged.json" \
        '{kind: $kind, conns: $conns, ready: $ready, rss_before_kb: $rss0, rss_loaded_kb: $rss1,
          rss_after_close_kb: $rss2, hwm_kb: $hwm,
          bytes_per_conversation: ((($rss1 - $rss0) * 1024 / $ready) | floor),
          connect_s: $lg[0].connect_s, hello_p50_us: $lg[0].latency.hello.p50_us,
          hello_p99_us: $lg[0].latency.hello.p99_us, healthz: $health,
          loadavg_1min: $loadavg,
          server_cmd: $server_cmd, loadgen_cmd: $loadgen_cmd}' >"$dir/result.json"
    log "idle $kind: $(jq -c '{ready, bytes_per_conversation, rss_before_kb, rss_loaded_kb, rss_after_close_kb}' "$dir/result.json")"
}

# A closed-loop run; sets RUN_TPS and writes DIR/result.json.
# Background conversations that stay idle while a closed loop runs (mixed, perf-mixed).
BG_PIDS=()
bg_idle_start() { # DIR N
    [ "$2" -gt 0 ] || { BG_PIDS=(); return 0; }
    lg_start "$1" idle "$2" 0 --connect-timeout 60 --max-runtime $((RUN_LIMIT + 900)) \
        --wait-timeout $((RUN_LIMIT + 600))
    lg_wait_ready "$1" 600
    BG_PIDS=("${LG_PIDS[@]}")
    BG_CMD=$LG_CMD
}
bg_idle_stop() { # DIR
    [ ${#BG_PIDS[@]} -gt 0 ] || return 0
    LG_PIDS=("${BG_PIDS[@]}")
    lg_go
    lg_finish "$1" 120
    BG_PIDS=()
}

closed_run() { # KIND DIR CONNS [IDLE_BACKGROUND]
    local kind=$1 dir=$2 conns=$3 idle=${4:-0} c0 c1 bg_cmd="" threads
    start_server "$kind" "$dir"
    BG_CMD=
    bg_idle_start "$dir/idle" "$idle"
    bg_cmd=$BG_CMD
    lg_start "$dir" closed "$conns" 0 --max-runtime $((RUN_LIMIT + 120))
    lg_wait_ready "$dir" 120
    lg_go
    sleep "$WARMUP"
    c0=$(cpu_ticks "$SERVER_PID")
    sched_snap "$SERVER_PID" "$dir/sched0.txt"
    sleep "$DURATION"
    c1=$(cpu_ticks "$SERVER_PID")
    sched_snap "$SERVER_PID" "$dir/sched1.txt"
    LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
    lg_finish "$dir" "$RUN_LIMIT"
    bg_idle_stop "$dir/idle"
    stop_server "$dir"
    threads=$(window_threads "$dir")
    jq --arg kind "$kind" --argjson conns "$conns" --argjson idle "$idle" --arg bg_cmd "$bg_cmd" \
        --argjson threads "$threads" --argjson machine "$(window_machine "$dir")" \
        --argjson cpu "$(calc "($c1 - $c0) * 100 / $CLK_TCK / $DURATION")" --argjson loadavg "$LOADAVG" \
        --arg flags "$([ "$kind" = echo ] && echo "${ECHO_FLAGS[*]}" || echo "${SERVER_FLAGS[*]}")" \
        --arg server_cmd "$SERVER_CMD" --arg loadgen_cmd "$LG_CMD" \
        '{kind: $kind, conns: $conns, idle_background: $idle, turns_per_s: .turns.turns_per_s,
          window_turns: .turns.window_turns, p50_us: .latency.turn.p50_us,
          p99_us: .latency.turn.p99_us, ack_p50_us: .latency.ack.p50_us,
          lost: .turns.lost_total, rejected: .turns.rejected, errors: .errors,
          conversations_started: .conversations.connects,
          server_cpu_percent: $cpu,
          server_cpu_us_per_turn: (if .turns.turns_per_s > 0
                                   then ($cpu * 10000 / .turns.turns_per_s | round) else null end),
          server_threads: $threads, machine: $machine,
          loadgen_cpu_s: .loadgen_cpu_s, loadavg_1min: $loadavg, extra_flags: $flags,
          server_cmd: $server_cmd, loadgen_cmd: ($bg_cmd + $loadgen_cmd)}' \
        "$dir/merged.json" >"$dir/result.json"
    RUN_TPS=$(jq .turns_per_s "$dir/result.json")
    log "closed $kind C=$conns idle=$idle: $(jq -c '{turns_per_s, p50_us, p99_us, lost, server_cpu_percent}' "$dir/result.json")"
}

# Closed runs at each concurrency of LIST into OUT/NAME/cN; the best goes to OUT/NAME/best.json
# and into SWEEP_BEST (turns/s) and SWEEP_BEST_C (conversations).
closed_sweep() { # NAME LIST
    local c
    SWEEP_BEST=0
    SWEEP_BEST_C=0
    for c in $2; do
        closed_run redress "$OUT/$1/c$c" "$c"
        if awk "BEGIN { exit !($RUN_TPS > $SWEEP_BEST) }"; then
            SWEEP_BEST=$RUN_TPS
            SWEEP_BEST_C=$c
        fi
    done
    jq --argjson rate "$SWEEP_BEST" --argjson conns "$SWEEP_BEST_C" \
        '{turns_per_s: $rate, conns: $conns, server_cpu_us_per_turn}' \
        "$OUT/$1/c$SWEEP_BEST_C/result.json" >"$OUT/$1/best.json"
}

phase_saturate() {
    closed_sweep saturate "$CONNS_LIST"
    log "saturation: $SWEEP_BEST turns/s at $SWEEP_BEST_C conversations"
}

# A search on every customer message: the same closed loop with the bench-only rules of
# bench/rules-search-every-turn (appended to the --server-flag arguments, so it overrides a
# --rules.dir given there).
phase_search() {
    local saved=("${SERVER_FLAGS[@]}")
    SERVER_FLAGS+=("--rules.dir=$SRC/bench/rules-search-every-turn")
    closed_sweep search "$SEARCH_CONNS_LIST"
    SERVER_FLAGS=("${saved[@]}")
    log "a search on every message: $SWEEP_BEST turns/s at $SWEEP_BEST_C conversations"
}

best() { # FIELD
    [ -f "$OUT/saturate/best.json" ] || die "run the saturate phase first (or give --open-rate)"
    jq ".$1" "$OUT/saturate/best.json"
}

RELOAD_JAR=
reload_once() { # PORT -> prints "code seconds"
    local auth=()
    [ -z "$RELOAD_JAR" ] || auth=(-b "$RELOAD_JAR")
    curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST --max-time 30 "${auth[@]}" \
        -H 'Content-Type: application/json' --data '{}' \
        "http://127.0.0.1:$1/api/flows/reload" || echo "000 0"
}

# A server with accounts (`redress user`, docs/auth.md) wants an editor's session for the
# reload: create one with a random password in this run's database and log in.
reload_login() { # DIR
    local dir=$1 pw code
    RELOAD_JAR=
    "$REDRESS" --help 2>/dev/null | grep -q '^  user ' || return 0
    pw=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    if ! printf '%s\n' "$pw" | "$REDRESS" user add bench-reload --role=editor \
        --data.dir "$dir/data" >>"$dir/server.err" 2>&1; then
        log "could not create the bench-reload account (see $dir/server.err)"
        return 0
    fi
    (umask 077 && printf '{"username":"bench-reload","password":"%s"}' "$pw" >"$dir/login.json")
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -c "$dir/cookies" \
        -H 'Content-Type: application/json' --data "@$dir/login.json" \
        "http://127.0.0.1:$SERVER_PORT/api/auth/login" || echo 000)
    rm -f "$dir/login.json"
    if [ "$code" = 200 ]; then
        RELOAD_JAR=$dir/cookies
    else
        log "login as bench-reload: HTTP $code; reloading without a session"
    fi
}

phase_open() {
    local dir=$OUT/open rate conns probe code reload_state reloader= threads server
    if [ -n "$OPEN_RATE" ]; then
        rate=$OPEN_RATE
        conns=$(echo "$CONNS_LIST" | awk '{print $NF}')
    else
        rate=$(calc "$(best turns_per_s) * $OPEN_FRACTION")
        conns=$(best conns)
    fi
    log "open loop: $rate turns/s over $conns conversations, $RELOADS reloads"
    start_server redress "$dir"
    reload_login "$dir"
    probe=$(reload_once "$SERVER_PORT")
    code=${probe%% *}
    case "$code" in
    2??) reload_state=available ;;
    404) reload_state="not available" ;;
    *) reload_state="failed: HTTP $code" ;;
    esac
    log "POST /api/flows/reload before the run: HTTP $code ($reload_state)"
    : >"$dir/reloads.txt"
    lg_start "$dir" open "$conns" "$rate" --max-runtime $((RUN_LIMIT + 120))
    lg_wait_ready "$dir" 120
    lg_go
    if [ "$reload_state" = available ] && [ "$RELOADS" -gt 0 ]; then
        (
            sleep "$WARMUP"
            gap=$(calc "$DURATION / ($RELOADS + 1)")
            for ((k = 1; k <= RELOADS; k++)); do
                sleep "$gap"
                echo "$(date +%s.%N) $(reload_once "$SERVER_PORT")" >>"$dir/reloads.txt"
            done
        ) &
        reloader=$!
        PIDS+=("$reloader")
    fi
    sleep "$WARMUP"
    sched_snap "$SERVER_PID" "$dir/sched0.txt"
    metrics_snap "$dir/metrics0.txt"
    sleep "$DURATION"
    sched_snap "$SERVER_PID" "$dir/sched1.txt"
    metrics_snap "$dir/metrics1.txt"
    LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
    lg_finish "$dir" "$RUN_LIMIT"
    [ -z "$reloader" ] || wait_pid "$reloader" 60
    stop_server "$dir"
    rm -f "$dir/cookies"
    threads=$(window_threads "$dir")
    server=$(server_latency "$dir/metrics0.txt" "$dir/metrics1.txt")
    jq --arg reload "$reload_state" --argjson probe_code "$code" --argjson threads "$threads" \
        --argjson server "$server" --argjson machine "$(window_machine "$dir")" \
        --argjson rate "$rate" --argjson conns "$conns" \
        --rawfile reloads "$dir/reloads.txt" --argjson loadavg "$LOADAVG" \
        --arg server_cmd "$SERVER_CMD" --arg loadgen_cmd "$LG_CMD" \
        '{rate_asked: $rate, conns: $conns, turns_per_s: .turns.turns_per_s,
          p50_us: .latency.turn.p50_us, p90_us: .latency.turn.p90_us,
          p99_us: .latency.turn.p99_us, p999_us: .latency.turn.p999_us,
          max_us: .latency.turn.max_us, ack_p50_us: .latency.ack.p50_us,
          ack_p99_us: .latency.ack.p99_us, sent: .turns.sent, done: .turns.done,
          unsent: .turns.open_unsent, lost: .turns.lost_total,
          lost_detail: (.turns | {timeout_unacked, timeout_unanswered, lost_unacked,
                                  lost_unanswered, closed_unacked, closed_unanswered}),
          rejected: .turns.rejected, errors: .errors, server_threads: $threads,
          machine: $machine,
          server_latency: $server, reload: $reload, reload_probe_http: $probe_code,
          loadavg_1min: $loadavg,
          reloads: ($reloads | split("\n") | map(select(length > 0) | split(" ")
                    | {at: .[0], http: .[1], seconds: .[2]})),
          server_cmd: $server_cmd, loadgen_cmd: $loadgen_cmd}' \
        "$dir/merged.json" >"$dir/result.json"
    log "open: $(jq -c '{turns_per_s, p50_us, p99_us, lost, reload}' "$dir/result.json")"
}

phase_echo() {
    local conns redress_tps redress_cpu
    if [ -f "$OUT/saturate/best.json" ]; then
        conns=$(best conns)
        redress_tps=$(best turns_per_s)
        redress_cpu=$(best server_cpu_us_per_turn)
    else
        conns=$(echo "$CONNS_LIST" | awk '{print $NF}')
        redress_tps=0
        redress_cpu=null
    fi
    closed_run echo "$OUT/echo" "$conns"
    jq --argjson redress "$redress_tps" --argjson redress_cpu "$redress_cpu" \
        '. + {redress_turns_per_s: $redress, redress_cpu_us_per_turn: $redress_cpu,
              ratio: (if .turns_per_s > 0 and $redress > 0
                      then ($redress / .turns_per_s * 1000 | round / 1000) else null end),
              cpu_per_turn_ratio: (if $redress_cpu != null and .server_cpu_us_per_turn > 0
                      then ($redress_cpu / .server_cpu_us_per_turn * 100 | round / 100)
                      else null end)}' \
        "$OUT/echo/result.json" >"$OUT/echo/result.json.tmp"
    mv "$OUT/echo/result.json.tmp" "$OUT/echo/result.json"
    log "echo: $(jq -c '{turns_per_s, redress_turns_per_s, ratio, cpu_per_turn_ratio}' "$OUT/echo/result.json")"
}

phase_mixed() { # KIND NAME
    local conns
    if [ -f "$OUT/saturate/best.json" ]; then
        conns=$(best conns)
    else
        conns=$(echo "$CONNS_LIST" | awk '{print $NF}')
    fi
    log "$2: closed loop at $conns conversations while $MIXED_IDLE more stay idle"
    closed_run "$1" "$OUT/$2" "$conns" "$MIXED_IDLE"
}

perf_run() { # NAME IDLE_BACKGROUND
    local dir=$OUT/$1 idle=$2 conns perf_pid bg_cmd
    if [ -f "$OUT/saturate/best.json" ]; then
        conns=$(best conns)
    else
        conns=$(echo "$CONNS_LIST" | awk '{print $NF}')
    fi
    log "$1: closed loop at $conns conversations (+$idle idle), recording ${PERF_SECONDS}s"
    start_server redress "$dir"
    BG_CMD=
    bg_idle_start "$dir/idle" "$idle"
    bg_cmd=$BG_CMD
    local saved=$DURATION
    DURATION=$((PERF_SECONDS + 2))
    lg_start "$dir" closed "$conns" 0 --max-runtime $((WARMUP + DURATION + 240))
    DURATION=$saved
    lg_wait_ready "$dir" 120
    lg_go
    sleep "$WARMUP"
    perf record -q -F 499 -g --call-graph dwarf,8192 -p "$SERVER_PID" -o "$dir/perf.data" \
        -- sleep "$PERF_SECONDS" >"$dir/perf.err" 2>&1 &
    perf_pid=$!
    PIDS+=("$perf_pid")
    wait_pid "$perf_pid" $((PERF_SECONDS + 120))
    lg_finish "$dir" $((WARMUP + PERF_SECONDS + 240))
    bg_idle_stop "$dir/idle"
    stop_server "$dir"
    perf report -i "$dir/perf.data" --no-children --stdio --percent-limit 0.8 -g none \
        --sort symbol 2>/dev/null | grep -v '^$' >"$dir/top-self.txt" || true
    perf report -i "$dir/perf.data" --children --stdio --percent-limit 3 -g none \
        --sort symbol 2>/dev/null | grep -v '^$' >"$dir/top-children.txt" || true
    perf report -i "$dir/perf.data" --no-children --stdio --percent-limit 0.5 -g none \
        --sort dso 2>/dev/null | grep -v '^$' >"$dir/top-dso.txt" || true
    perf report -i "$dir/perf.data" --no-children --stdio -g none --sort pid 2>/dev/null |
        grep -v '^$' >"$dir/top-threads.txt" || true
    rm -f "$dir/perf.data"
    jq -n --arg self "$(grep -v '^#' "$dir/top-self.txt" | head -30)" \
        --arg children "$(grep -v '^#' "$dir/top-children.txt" | grep -v ' 0x0000' | head -60)" \
        --arg dso "$(grep -v '^#' "$dir/top-dso.txt" | head -15)" \
        --arg threads "$(grep -v '^#' "$dir/top-threads.txt" | head -5)" \
        --slurpfile lg "$dir/merged.json" --arg server_cmd "$SERVER_CMD" \
        --arg loadgen_cmd "$bg_cmd$LG_CMD" --argjson conns "$conns" --argjson idle "$idle" \
        '{conns: $conns, idle_background: $idle, turns_per_s: $lg[0].turns.turns_per_s,
          top_self: $self, top_children: $children, top_dso: $dso, threads: $threads,
          server_cmd: $server_cmd, loadgen_cmd: $loadgen_cmd}' >"$dir/result.json"
    log "$1: top functions in $dir/top-self.txt"
}

phase_perf() {
    command -v perf >/dev/null || { log "perf: not installed, skipped"; return 0; }
    perf_run perf 0
    [ "$MIXED_IDLE" -eq 0 ] || perf_run perf-mixed "$MIXED_IDLE"
}

phase_smoke() {
    local kind
    WARMUP=0.5
    DURATION=1.5
    RUN_LIMIT=60
    for kind in echo redress; do
        local dir=$OUT/smoke-$kind
        start_server "$kind" "$dir"
        lg_start "$dir/closed" closed 10 0 --max-runtime 60 --turn-timeout 10
        lg_wait_ready "$dir/closed" 30
        sched_snap "$SERVER_PID" "$dir/sched0.txt"
        lg_go
        lg_finish "$dir/closed" 60
        "${MERGE[@]}" check "$dir/closed/merged.json" --min-turns 10 || die "closed loop on $kind"
        # the per-thread figures of result.json: every thread that served the turns shows up
        sched_snap "$SERVER_PID" "$dir/sched1.txt"
        local threads want='.echo_server.run_us_per_turn > 0'
        [ "$kind" = echo ] || want='.redress.run_us_per_turn > 0 and
            .["redress-writer"].run_us_per_turn > 0 and .["redress-ckpt"] != null'
        threads=$(sched_json "$dir/sched0.txt" "$dir/sched1.txt" \
            "$(get "$dir/closed/merged.json" turns.done)")
        jq -e "$want" <<<"$threads" >/dev/null || die "per-thread CPU of $kind: $threads"
        local machine # the machine's CPU times over the same window add up
        machine=$(machine_json "$dir/sched0.cpu" "$dir/sched1.cpu")
        jq -e '.busy_percent > 0 and ([.busy_percent, .steal_percent, .idle_percent] | add
            | . > 99 and . < 101)' <<<"$machine" >/dev/null || die "machine CPU: $machine"
        lg_start "$dir/open" open 10 50 --max-runtime 60 --turn-timeout 10
        lg_wait_ready "$dir/open" 30
        [ "$kind" = echo ] || metrics_snap "$dir/metrics0.txt"
        lg_go
        lg_finish "$dir/open" 60
        "${MERGE[@]}" check "$dir/open/merged.json" --min-turns 10 || die "open loop on $kind"
        if [ "$kind" = redress ]; then # the server timed each of those turns (/metrics)
            metrics_snap "$dir/metrics1.txt"
            local server
            server=$(server_latency "$dir/metrics0.txt" "$dir/metrics1.txt")
            jq -e --argjson n "$(get "$dir/open/merged.json" turns.done)" \
                '.turn.count >= $n and .flow.count == .turn.count and
                 .store.count == .turn.count and .turn.mean_us > 0 and .batch.count > 0' \
                <<<"$server" >/dev/null ||
                die "the server's latency histograms over the open loop: $server"
        fi
        lg_start "$dir/idle" idle 20 0 --max-runtime 60
        lg_wait_ready "$dir/idle" 30
        lg_go
        lg_finish "$dir/idle" 60
        "${MERGE[@]}" check "$dir/idle/merged.json" --idle || die "idle on $kind"
        stop_server "$dir"
        [ "$(cat "$dir/server.rc")" = 0 ] || die "$kind did not exit cleanly"
        log "smoke $kind: ok ($(get "$dir/closed/merged.json" turns.done) closed-loop turns)"
    done
}

# ---- knowledge base ----
# Sets KB_FLAGS (with --kb-templates: generates OUT/kb) and KB_JSON: where the seed comes from
# and how many templates and cases it holds.
KB_JSON=null
kb_prepare() {
    local dir='' src gen='' counts i files=() f
    if [ "$KB_TEMPLATES" -gt 0 ]; then
        dir=$OUT/kb
        local cmd=("$PY" "$SRC/bench/kb_templates.py" --count "$KB_TEMPLATES" --out "$dir" --seed 1)
        log "knowledge base: ${cmd[*]}"
        "${cmd[@]}" >>"$OUT/log.txt" 2>&1 || die "kb_templates.py failed: $(tail -2 "$OUT/log.txt")"
        KB_FLAGS=(--kb.seed "$dir")
        src="--kb-templates $KB_TEMPLATES"
        gen=${cmd[*]}
    else
        src="server default"
        for ((i = 0; i < ${#SERVER_FLAGS[@]}; i++)); do
            case "${SERVER_FLAGS[i]}" in
            --kb.seed) dir=${SERVER_FLAGS[i + 1]:-}; src="--server-flag" ;;
            --kb.seed=*) dir=${SERVER_FLAGS[i]#--kb.seed=}; src="--server-flag" ;;
            esac
        done
        if [ "$src" = "server default" ]; then
            dir=$("$REDRESS" --help 2>&1 | sed -n 's/^  --kb\.seed .*(default: \(.*\))$/\1/p' | head -1) || true
            [ "$dir" != '""' ] || dir=
        fi
    fi
    for f in templates cases; do [ ! -f "$dir/$f.jsonl" ] || files+=("$dir/$f.jsonl"); done
    counts='{"templates": 0, "cases": 0}'
    if [ ${#files[@]} -gt 0 ]; then
        counts=$(cat "${files[@]}" | jq -c -n '[inputs.kind] | {templates: map(select(. == "template")) | length,
            cases: map(select(. == "case")) | length}' 2>/dev/null) || counts='{"templates": null, "cases": null}'
    fi
    KB_JSON=$(jq -c -n --arg source "$src" --arg dir "$dir" --arg gen "$gen" --argjson counts "$counts" \
        --arg sha "$([ ! -f "$dir/templates.jsonl" ] || sha256sum "$dir/templates.jsonl" | cut -c1-16)" \
        '{source: $source, seed_dir: $dir} + $counts
         + {templates_sha256: (if $sha == "" then null else $sha end),
            generator: (if $gen == "" then null else $gen end)}')
}
kb_prepare

# ---- run ----
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "git HEAD: $(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "uncommitted files in the tree: $(git -C "$SRC" status --porcelain 2>/dev/null | wc -l)"
    echo "redress binary: $REDRESS, sha256 $(sha256sum "$REDRESS" | cut -c1-16), built $(date -u -r "$REDRESS" +%Y-%m-%dT%H:%M:%SZ)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "open files per process: $NOFILE; loadgen processes: $PROCS"
    echo "knowledge base: $(jq -r '"\(.templates) templates + \(.cases) cases from \(.seed_dir) (\(.source))"' <<<"$KB_JSON")"
} >"$OUT/env.txt"
log "results in $OUT"

for phase in "${PHASES[@]}"; do
    case "$phase" in
    idle) phase_idle redress idle ;;
    idle-echo) phase_idle echo idle-echo ;;
    saturate) phase_saturate ;;
    search) phase_search ;;
    open) phase_open ;;
    echo) phase_echo ;;
    mixed) phase_mixed redress mixed ;;
    mixed-echo) phase_mixed echo mixed-echo ;;
    perf) phase_perf ;;
    smoke) phase_smoke ;;
    esac
done

if [ $SMOKE_ONLY = 1 ]; then
    rm -rf "$OUT"
    exit 0
fi

# Summary: every result.json under OUT, with the environment.
{
    jq -n --rawfile env "$OUT/env.txt" --argjson kb "$KB_JSON" '{env: $env, kb: $kb}'
    find "$OUT" -name result.json | sort | while read -r f; do
        jq --arg phase "${f#"$OUT"/}" '{($phase): .}' "$f"
    done
} | jq -s 'add' >"$OUT/summary.json"
{
    cat "$OUT/env.txt"
    echo
    jq -r 'to_entries[] | select(.key != "env" and .key != "kb") | "== \(.key)\n\(.value | del(.server_cmd, .loadgen_cmd, .top_self, .top_children, .top_dso, .threads) | tostring)\nserver: \(.value.server_cmd)\nloadgen:\n\(.value.loadgen_cmd // "")"' "$OUT/summary.json"
    for p in perf perf-mixed; do
        [ -f "$OUT/$p/top-self.txt" ] || continue
        echo "== $p: threads"
        grep -v '^#' "$OUT/$p/top-threads.txt" | head -5
        echo "== $p: self time"
        grep -v '^#' "$OUT/$p/top-self.txt" | head -30
        echo "== $p: with children"
        grep -v '^#' "$OUT/$p/top-children.txt" | grep -v ' 0x0000' | head -60
    done
} >"$OUT/summary.txt"
log "summary: $OUT/summary.txt"
