"""Fixtures for the end-to-end tests: a real `redress serve` per test.

`server` is one server with the default settings; `server_factory(*flags)` starts more, each
with its own data directory under the test's tmp_path.  At teardown every server this test
started gets SIGTERM (to its own pid) and must exit with 0 and a stderr free of sanitizer
reports.  REDRESS_BIN (the binary) and REDRESS_SOURCE_DIR are set by ctest
(add_redress_pytest in tests/CMakeLists.txt).
"""

import os
import sys

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from redress_client import Server  # noqa: E402


def redress_bin():
    path = os.environ.get("REDRESS_BIN")
    if not path:
        pytest.fail("REDRESS_BIN is not set: run the e2e tests through ctest "
                    "(or set REDRESS_BIN to the redress binary)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"REDRESS_BIN={path} is not an executable")
    return path


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def make(*flags, data_dir=None):
        n = len(servers)
        d = data_dir or tmp_path / f"data{n}"
        if "--rules.dir" not in flags:
            # protocol tests count events: a flow with one greeting and one reply per message
            flags = ("--rules.dir", os.path.join(source_root(), "tests", "data", "rules",
                                                 "protocol"), *flags)
        srv = Server(redress_bin(), d, flags, log_dir=tmp_path / f"logs{n}")
        servers.append(srv)
        srv.start()
        return srv

    yield make
    problems = []
    for srv in servers:
        try:
            srv.finish()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("server teardown:\n" + "\n\n".join(problems), pytrace=False)


@pytest.fixture
def server(server_factory):
    return server_factory()


def source_root():
    d = os.environ.get("REDRESS_SOURCE_DIR")
    if not d:
        d = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    return d


@pytest.fixture
def source_dir():
    return source_root()
