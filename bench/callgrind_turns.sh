#!/bin/bash
# callgrind_turns.sh - instructions per turn of each server thread, counted by callgrind.
#
# Why: on this shared 2-core virtual machine the CPU time of a turn moves 10-15 % between two
# runs of the same binary (the hypervisor's steal, other guests' caches), so a change worth a few
# percent cannot be seen in turns/s.  Instructions do not depend on the neighbours: run under
# valgrind's callgrind, the same binary gives the same count per turn within a few percent
# (which conversations fall in the window), and two versions can be compared on one figure.
# What it does not see: the kernel's work (sockets, wake-ups), cache misses, waiting.
#
# What it does: starts BIN serve (fresh data directory, 127.0.0.1, a free port) under
# `valgrind --tool=callgrind --separate-threads=yes`, drives it with bench/loadgen in closed
# loop (--conns conversations, bench/conversations), zeroes the counters once the warm-up is
# over (callgrind_control -z), dumps them after --window seconds (callgrind_control -d) and
# reads the server's own turn count (redress_turn_seconds_count, GET /metrics) at both ends.
# Prints, for each thread that ran in the window, its instructions and instructions per turn;
# the thread is named by its entry function (writer_main, ckpt_main; the first is the loop).
# The dump stays in OUT for callgrind_annotate.  Every process it starts is stopped by PID,
# every wait has a deadline.
#
# Under callgrind the server runs about 50 times slower: the defaults (20 conversations, 15 s
# of warm-up, a 40 s window) give about 2,000 turns in 90 s.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$SRC/build-bench
REDRESS=
CONNS=20
WARMUP=15
WINDOW=40
OUT=
SERVER_FLAGS=()

usage() {
    cat <<EOF
usage: bench/callgrind_turns.sh [options]
  --build DIR          build directory with bench/loadgen (and redress) ($BUILD)
  --redress BIN        the server binary to measure (BUILD/redress)
  --conns N            conversations in closed loop ($CONNS)
  --warmup S           seconds before the counters are zeroed ($WARMUP)
  --window S           seconds counted ($WINDOW)
  --out DIR            where the data directory and the dump go (a new temporary directory)
  --server-flag ARG    one more argument for \`redress serve\` (repeatable), e.g.
                       --server-flag --rules.dir=/path/to/other/rules
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --redress) REDRESS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --server-flag) SERVER_FLAGS+=("$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "callgrind_turns.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
REDRESS=${REDRESS:-$BUILD/redress}
LOADGEN=$BUILD/bench/loadgen
for tool in valgrind callgrind_control callgrind_annotate curl; do
    command -v "$tool" >/dev/null || { echo "callgrind_turns.sh: $tool is missing (apt-get install valgrind curl)" >&2; exit 2; }
done
[ -x "$REDRESS" ] || { echo "callgrind_turns.sh: no server binary $REDRESS" >&2; exit 2; }
[ -x "$LOADGEN" ] || { echo "callgrind_turns.sh: no $LOADGEN (build with -DREDRESS_BENCH=ON)" >&2; exit 2; }
OUT=${OUT:-$(mktemp -d /tmp/redress-callgrind.XXXXXX)}
mkdir -p "$OUT"
rm -rf "$OUT/data" "$OUT"/callgrind.out*

SERVER_PID=
LOADGEN_PID=
cleanup() {
    [ -z "$LOADGEN_PID" ] || kill -TERM "$LOADGEN_PID" 2>/dev/null || true
    [ -z "$SERVER_PID" ] || kill -TERM "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

# waits up to $2 seconds for process $1 to end
wait_gone() {
    local t=0
    while kill -0 "$1" 2>/dev/null; do
        [ $t -lt $(($2 * 10)) ] || { kill -KILL "$1" 2>/dev/null || true; break; }
        sleep 0.1
        t=$((t + 1))
    done
    wait "$1" 2>/dev/null || true
}

turns() {
    curl -s --max-time 30 "http://127.0.0.1:$PORT/metrics" |
        awk '$1 == "redress_turn_seconds_count" { print $2 }'
}

valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$OUT/callgrind.out" \
    "$REDRESS" serve --listen.host 127.0.0.1 --listen.port 0 --data.dir "$OUT/data" \
    --limits.max_connections 1000 --limits.rate_per_sec 100000 --limits.rate_burst 100000 \
    --log.level warn "${SERVER_FLAGS[@]}" >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER_PID=$!
t=0
until grep -q '^listening on ' "$OUT/server.out" 2>/dev/null; do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server did not start: $(tail -3 "$OUT/server.err")" >&2; exit 1; }
    [ $t -lt 1800 ] || { echo "the server did not listen within 180 s" >&2; exit 1; }
    sleep 0.1
    t=$((t + 1))
done
PORT=$(sed -n 's/^listening on http:\/\/[0-9.]*:\([0-9]*\)$/\1/p' "$OUT/server.out")

"$LOADGEN" --port "$PORT" --mode closed --conns "$CONNS" --conversations "$SRC/bench/conversations" \
    --warmup "$WARMUP" --duration "$WINDOW" --drain 5 --turn-timeout 60 --greeting-timeout 60 \
    --connect-timeout 120 --max-runtime $((WARMUP + WINDOW + 300)) \
    --out "$OUT/loadgen.json" 2>"$OUT/loadgen.err" &
LOADGEN_PID=$!
sleep "$WARMUP"
t0=$(turns)
callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
sleep "$WINDOW"
t1=$(turns)
callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
wait_gone "$LOADGEN_PID" $((WINDOW + 300))
LOADGEN_PID=
kill -TERM "$SERVER_PID" 2>/dev/null || true
wait_gone "$SERVER_PID" 120
SERVER_PID=

n=$((${t1:-0} - ${t0:-0}))
[ "$n" -gt 0 ] || { echo "no turn was counted in the window (see $OUT/loadgen.err, $OUT/server.err)" >&2; exit 1; }
echo "server: $REDRESS serve ${SERVER_FLAGS[*]}"
echo "window: ${WINDOW} s after ${WARMUP} s, $CONNS conversations in closed loop, $n turns"
# callgrind_control -d wrote callgrind.out.1-NN, one file per thread
for f in "$OUT"/callgrind.out.1-*; do
    [ -f "$f" ] || continue
    ann=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null)
    ir=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' <<<"$ann")
    [ -n "$ir" ] && [ "$ir" -ge "$n" ] || continue # threads idle in the window
    name=other
    case $f in
    *-01) name=loop ;; # the first thread runs main()
    *) grep -q ':writer_main ' <<<"$ann" && name=writer
       grep -q ':ckpt_main ' <<<"$ann" && name=checkpointer ;;
    esac
    printf '%-13s %15s instructions  %10.0f a turn  (%s)\n' "$name" "$ir" \
        "$(awk -v a="$ir" -v b="$n" 'BEGIN { print a / b }')" "$f"
done
