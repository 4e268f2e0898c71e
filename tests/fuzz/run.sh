#!/usr/bin/env bash
# tests/fuzz/run.sh TARGET SECONDS [libFuzzer flags...] - fuzz one target for SECONDS.
#
#   TARGET   proto | kb | flow | config   (or the binary name, fuzz_proto ...)
#   SECONDS  wall-clock budget (-max_total_time); 0 = until stopped (Ctrl-C)
#
# Builds the fuzzers first when they are missing (clang, in $REDRESS_FUZZ_BUILD, default
# <repo>/build-fuzz).  The committed seeds in tests/fuzz/corpus/TARGET are never written to:
# new inputs go to $REDRESS_FUZZ_WORK/TARGET/corpus (default <build>/work) and crashes, leaks
# and timeouts to $REDRESS_FUZZ_WORK/TARGET/crashes/.  Exits 0 when nothing was found, 1 when
# a crash file was written (its path and how to replay it are printed), 2 on usage or build
# errors.  Extra arguments go to libFuzzer, e.g. -fork=2 -ignore_crashes=1 for long runs
# (README.md).  Environment: FUZZ_JOBS=N runs N processes in fork mode.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ $# -lt 2 ]; then
    echo "usage: tests/fuzz/run.sh proto|kb|flow|config SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=${1#fuzz_}
seconds=$2
shift 2

case "$target" in
proto) max_len=16384 ;;  # limits.max_message_bytes default
kb) max_len=2048 ;;      # kb_search reads the first 256 characters; room for a category
flow) max_len=16384 ;;   # a few rules files
config) max_len=12288 ;; # a config file and arguments, lines over 8 KiB included
*)
    echo "run.sh: unknown target '$target' (proto, kb, flow, config)" >&2
    exit 2
    ;;
esac
case "$seconds" in
'' | *[!0-9]*)
    echo "run.sh: SECONDS must be a whole number, got '$seconds'" >&2
    exit 2
    ;;
esac

build=${REDRESS_FUZZ_BUILD:-$root/build-fuzz}
work=${REDRESS_FUZZ_WORK:-$build/work}
bin=$build/fuzz_$target
# a build of the whole project (-DREDRESS_FUZZ=ON) keeps the fuzzers in tests/fuzz/
[ ! -x "$bin" ] && [ -x "$build/tests/fuzz/fuzz_$target" ] && bin=$build/tests/fuzz/fuzz_$target

if [ ! -x "$bin" ] || [ -n "${REDRESS_FUZZ_REBUILD:-}" ]; then
    cc=${REDRESS_FUZZ_CC:-clang}
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "run.sh: $cc not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
        exit 2
    fi
    echo "run.sh: building the fuzzers in $build" >&2
    cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER="$cc" >/dev/null ||
        { echo "run.sh: cmake configure failed" >&2; exit 2; }
    cmake --build "$build" -j "${FUZZ_BUILD_JOBS:-2}" --target "fuzz_$target" >/dev/null ||
        { echo "run.sh: build failed; run: cmake --build $build --target fuzz_$target" >&2; exit 2; }
    bin=$build/fuzz_$target
fi

corpus=$work/$target/corpus
crashes=$work/$target/crashes
# the harnesses' private directories and libFuzzer's fork-mode files live here: a process that
# ends by a signal or _Exit (timeouts) cannot remove its own
export TMPDIR=$work/$target/tmp
rm -rf "$TMPDIR"
mkdir -p "$corpus" "$crashes" "$TMPDIR"
before=$(find "$crashes" -type f | wc -l)

flags=(-max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
       -artifact_prefix="$crashes/")
[ "$seconds" -gt 0 ] && flags+=(-max_total_time="$seconds")
[ -f "$here/$target.dict" ] && flags+=(-dict="$here/$target.dict")
[ -n "${FUZZ_JOBS:-}" ] && flags+=(-fork="$FUZZ_JOBS")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "run.sh: fuzz_$target for ${seconds}s; corpus $corpus (+ seeds $here/corpus/$target)" >&2
set +e
"$bin" "${flags[@]}" "$@" "$corpus" "$here/corpus/$target"
rc=$?
set -e

rm -rf "$TMPDIR"
found=$(find "$crashes" -type f | wc -l)
if [ "$found" -gt "$before" ] || [ $rc -ne 0 ]; then
    echo "run.sh: fuzz_$target FAILED (exit $rc); files in $crashes:" >&2
    find "$crashes" -type f | sort | sed 's/^/  /' >&2
    echo "run.sh: replay one with: $bin FILE   (see tests/fuzz/README.md)" >&2
    exit 1
fi
echo "run.sh: fuzz_$target: no crash in ${seconds}s" >&2
exit 0
