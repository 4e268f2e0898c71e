#!/usr/bin/env bash
# tests/fuzz/smoke.sh BUILD_DIR SECONDS - the ctest test `fuzz_smoke` (tests/fuzz.cmake).
#
# Configures and builds the fuzzers with clang in BUILD_DIR (incrementally: a re-run rebuilds
# only what changed), then runs each target for SECONDS over a fresh copy of its committed seed
# corpus with run.sh.  Every target runs even when an earlier one failed; the exit status is 1
# when any found a crash, a sanitizer report, a leak or a timeout (the files are listed), 77
# (ctest: skipped) when clang or its libFuzzer runtime is not installed, 2 on a build error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

if [ $# -ne 2 ]; then
    echo "usage: tests/fuzz/smoke.sh BUILD_DIR SECONDS" >&2
    exit 2
fi
build=$1
seconds=$2
cc=${REDRESS_FUZZ_CC:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz_smoke: $cc is not installed; skipped (server/bootstrap.sh test installs clang" \
         "and libclang-rt-14-dev)" >&2
    exit 77
fi
mkdir -p "$build"
probe=$build/libfuzzer-probe
if ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' |
    "$cc" -x c - -fsanitize=fuzzer,address,undefined -o "$probe" >/dev/null 2>&1; then
    echo "fuzz_smoke: $cc cannot link libFuzzer with ASan+UBSan; skipped (Debian:" \
         "apt-get install libclang-rt-14-dev)" >&2
    exit 77
fi
rm -f "$probe"

echo "fuzz_smoke: building the fuzzers in $build" >&2
if ! cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER="$cc" >"$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    exit 2
fi
if ! cmake --build "$build" -j "${FUZZ_BUILD_JOBS:-2}" --target fuzzers >"$build/build.log" 2>&1; then
    tail -n 50 "$build/build.log" >&2
    exit 2
fi

export REDRESS_FUZZ_BUILD=$build
export REDRESS_FUZZ_WORK=$build/work
rm -rf "$REDRESS_FUZZ_WORK"
failed=()
for target in proto kb flow config; do
    if ! bash "$here/run.sh" "$target" "$seconds" -print_final_stats=0; then
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz_smoke: FAILED: ${failed[*]}; reproducers are under $REDRESS_FUZZ_WORK/*/crashes/" \
         "(tests/fuzz/README.md: 'When a fuzzer finds something')" >&2
    exit 1
fi
echo "fuzz_smoke: every fuzzer ran ${seconds}s without a finding" >&2
