#!/usr/bin/env bash
# redress bootstrap: install what is missing, build, then serve or test.
#
#   server/bootstrap.sh serve [redress serve flags...]   build (release) and run the server
#   server/bootstrap.sh test  [ctest flags...]           build with ASan+UBSan and run ctest
#
# Packages come from Debian's archive only. As root they are installed with
# apt-get; otherwise sudo is tried; otherwise the script names what to install
# and stops.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

mode=${1:-}
[ $# -gt 0 ] && shift

build_pkgs="cmake make gcc pkg-config libwebsockets-dev libwebsockets-evlib-uv liblua5.4-dev
libsqlite3-dev libcjson-dev libuv1-dev libsodium-dev libjemalloc-dev"
test_pkgs="python3 python3-websockets python3-pytest sqlite3 clang libclang-rt-14-dev chromium nodejs fonts-wqy-microhei"
# the web pages' npm dependencies (web/package.json: Chart.js for the dashboard)
web_pkgs="nodejs"
# NodeSource's nodejs package bundles npm and conflicts with Debian's npm package.
command -v npm >/dev/null 2>&1 || web_pkgs="$web_pkgs npm"

need_install() {
    local missing=()
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "bootstrap: installing missing packages: ${missing[*]}" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            echo "bootstrap: not root and no sudo; as root run:" >&2
            echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
            exit 1
        fi
    fi
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# npm ci in web/ when its dependencies are not installed (the dashboard loads Chart.js from
# web/node_modules, served as static files under web.root).
web_deps() {
    [ -f web/node_modules/chart.js/dist/chart.umd.min.js ] && return 0
    (cd web && npm ci --no-audit --no-fund)
}

jobs=$(nproc 2>/dev/null || echo 2)

case "$mode" in
serve)
    # shellcheck disable=SC2086
    need_install $build_pkgs $web_pkgs
    web_deps || echo "bootstrap: npm ci in web/ failed; the dashboard will have no charts" >&2
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j "$jobs"
    exec ./build/redress serve "$@"
    ;;
test)
    # shellcheck disable=SC2086
    need_install $build_pkgs $web_pkgs $test_pkgs
    web_deps
    if [ ! -d tests/browser/node_modules ]; then
        (cd tests/browser && npm ci --no-audit --no-fund)
    fi
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DREDRESS_SANITIZE=ON >/dev/null
    cmake --build build-asan -j "$jobs"
    cd build-asan
    exec ctest --output-on-failure -j "$jobs" "$@"
    ;;
*)
    echo "usage: server/bootstrap.sh serve|test [args...]" >&2
    exit 2
    ;;
esac
