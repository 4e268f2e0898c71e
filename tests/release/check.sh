#!/usr/bin/env bash
# tests/release/check.sh SRC BUILD - the build that `server/bootstrap.sh serve` runs, checked
# from the sanitizer test tree (ctest: release_build).
#
# The sanitizer build links no jemalloc and compiles at -O0, where gcc reports fewer warnings;
# the serve command's RelWithDebInfo build links jemalloc and turns -O2 warnings into errors
# (-Werror).  This configures and builds that variant in BUILD (incrementally on later runs),
# checks that the binary uses jemalloc, runs the unit tests of the code that differs with it
# (the private heap and the Lua VM on it) and end-to-end test files against the binary.
set -euo pipefail
src=$1
build=$2
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target redress test_heap test_flow_engine test_flow_gc \
    -j "$(nproc 2>/dev/null || echo 2)"
# (outputs go to files first: `grep -q` in a pipe may end its writer with SIGPIPE, which
# pipefail would report as a failure)
ldd "$build/redress" >"$build/ldd.txt"
if ! grep -q 'libjemalloc\.so' "$build/ldd.txt"; then
    echo "release_build: $build/redress is not linked with jemalloc" >&2
    exit 1
fi
# jemalloc, not glibc, must answer malloc: its statistics appear at exit only if it does
MALLOC_CONF=stats_print:true "$build/redress" --help >"$build/stats.txt" 2>&1
if ! grep -q 'jemalloc statistics' "$build/stats.txt"; then
    echo "release_build: $build/redress does not allocate with jemalloc" >&2
    exit 1
fi
cd "$build/tests"
for t in test_heap test_flow_engine test_flow_gc; do
    ./$t
done
cd "$build"
REDRESS_BIN=$build/redress REDRESS_SOURCE_DIR=$src exec /usr/bin/python3 -m pytest -q -x \
    -p no:cacheprovider "$src/tests/e2e/test_http.py" "$src/tests/e2e/test_chat.py" \
    "$src/tests/e2e/test_idle_flow.py"
