"""Staff accounts and logins end to end (docs/auth.md): `redress user ...` next to a running
server, POST /api/auth/login, GET /api/auth/me, POST /api/auth/logout, the session cookie's
flags, one answer for every wrong credential, the failed-login limiter (429 + Retry-After),
disabling and password changes ending sessions, and a clear error for every bad request.

Accounts are made with the CLI, the password piped on stdin, against the server's own data
directory while it runs (the CLI opens the same SQLite file in WAL mode)."""

import os
import re
import subprocess

import pytest

from redress_client import http_request as request

PASSWORD = "correct horse battery"
COOKIE = "redress_session"
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")


# --------------------------------------------------------------------------- helpers


def cli(server, *args, password=None):
    """Runs `redress user ARGS` on the server's database.  Returns (exit code, stdout, stderr).
    password (if given) is piped as one line."""
    binary = os.environ.get("REDRESS_BIN")
    if not binary:
        pytest.fail("REDRESS_BIN is not set: run the e2e tests through ctest")
    p = subprocess.run([binary, "user", *args, "--data.dir", server.data_dir],
                       input=(password + "\n").encode() if password is not None else b"",
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def add_user(server, name, role="agent", password=PASSWORD, *extra):
    rc, out, err = cli(server, "add", name, f"--role={role}", *extra, password=password)
    assert rc == 0, f"user add {name} failed ({rc}): {err}"
    return out


def header(pairs, name):
    values = [v for k, v in pairs if k == name]
    assert len(values) <= 1, f"several {name} headers: {values}"
    return values[0] if values else None


def parse_set_cookie(value):
    """'a=b; Path=/; HttpOnly' -> ('a', 'b', {'path': '/', 'httponly': True})."""
    parts = [p.strip() for p in value.split(";")]
    name, _, val = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        attrs[k.lower()] = v if eq else True
    return name, val, attrs


def login(server, username, password=PASSWORD):
    return request(server.port, "POST", "/api/auth/login",
                   {"username": username, "password": password})


def login_cookie(server, username, password=PASSWORD):
    status, pairs, doc = login(server, username, password)
    assert status == 200, f"login {username}: {status} {doc}"
    name, token, _ = parse_set_cookie(header(pairs, "set-cookie"))
    assert name == COOKIE and TOKEN_RE.match(token)
    return f"{COOKIE}={token}"


def assert_error(status, doc, want_status, code):
    assert status == want_status, f"expected {want_status} {code}, got {status} {doc}"
    assert isinstance(doc, dict) and "error" in doc, doc
    assert doc["error"]["code"] == code, doc
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"], doc


# --------------------------------------------------------------------------- tests


def test_login_me_logout(server):
    add_user(server, "wang", "agent", PASSWORD, "--name=王小明")

    status, pairs, doc = login(server, "Wang")  # usernames are case-insensitive
    assert status == 200, doc
    assert doc == {"user": {"username": "wang", "display_name": "王小明", "role": "agent",
                            "capabilities": ["kb.read", "agent.chat"]}}
    assert header(pairs, "content-type").startswith("application/json")
    name, token, attrs = parse_set_cookie(header(pairs, "set-cookie"))
    assert name == COOKIE
    assert TOKEN_RE.match(token), token
    assert attrs.get("httponly") is True
    assert attrs.get("samesite") == "Strict"
    assert attrs.get("path") == "/"
    assert attrs.get("max-age") == "43200"
    assert "secure" not in attrs  # auth.cookie_secure is off by default
    cookie = f"{COOKIE}={token}"

    # /me with the cookie, among others and with blanks around it
    for sent in (cookie, f"theme=dark;  {cookie} ; lang=zh-CN", f'{COOKIE}="{token}"'):
        status, _, doc = request(server.port, "GET", "/api/auth/me", cookie=sent)
        assert status == 200, (sent, doc)
        assert doc["user"]["username"] == "wang"
        assert doc["user"]["role"] == "agent"
    status, _, doc = request(server.port, "GET", "/api/auth/me")
    assert_error(status, doc, 401, "not_authenticated")

    # the listing shows the live session
    rc, out, _ = cli(server, "list")
    assert rc == 0
    row = [line for line in out.splitlines() if line.startswith("wang ")]
    assert row and row[0].split()[1:4] == ["agent", "active", "1"], out

    # logout revokes that session and deletes the cookie
    status, pairs, doc = request(server.port, "POST", "/api/auth/logout", cookie=cookie)
    assert status == 200, doc
    assert doc == {"ok": True, "revoked": True}
    name, val, attrs = parse_set_cookie(header(pairs, "set-cookie"))
    assert name == COOKIE and val == "" and attrs.get("max-age") == "0"
    status, pairs, doc = request(server.port, "GET", "/api/auth/me", cookie=cookie)
    assert_error(status, doc, 401, "not_authenticated")
    assert parse_set_cookie(header(pairs, "set-cookie"))[2].get("max-age") == "0"
    # logging out again finds nothing to end, and says so
    status, _, doc = request(server.port, "POST", "/api/auth/logout", cookie=cookie)
    assert status == 200 and doc == {"ok": True, "revoked": False}


def test_wrong_credentials_get_one_answer(server):
    add_user(server, "li", "editor")
    wrong_pw = login(server, "li", "not the password")
    no_user = login(server, "nobody", PASSWORD)
    for status, pairs, doc in (wrong_pw, no_user):
        assert_error(status, doc, 401, "invalid_credentials")
        assert header(pairs, "set-cookie") is None
    assert wrong_pw[2] == no_user[2]  # the same body: no way to tell the cases apart
    # the right password still works afterwards
    status, _, doc = login(server, "li")
    assert status == 200 and doc["user"]["role"] == "editor"
    assert doc["user"]["capabilities"] == ["kb.read", "kb.write", "flows.reload",
                                           "dashboard.view"]


def test_rate_limit_after_repeated_failures(server):
    add_user(server, "zhao", "agent")
    for i in range(5):
        status, _, doc = login(server, "zhao", f"wrong password {i}")
        assert_error(status, doc, 401, "invalid_credentials")
    # the sixth try is refused before the password is even checked - the right one too
    status, pairs, doc = login(server, "zhao")
    assert_error(status, doc, 429, "rate_limited")
    retry = header(pairs, "retry-after")
    assert retry is not None and retry.isdigit(), pairs
    assert 0 < int(retry) <= 900
    assert doc["error"]["retry_after"] == int(retry)
    assert header(pairs, "set-cookie") is None


def test_secure_cookie_when_served_over_https(server_factory):
    server = server_factory("--auth.cookie_secure=1", "--auth.session_ttl_s=3600")
    add_user(server, "qian", "supervisor")
    status, pairs, doc = login(server, "qian")
    assert status == 200, doc
    _, _, attrs = parse_set_cookie(header(pairs, "set-cookie"))
    assert attrs.get("secure") is True
    assert attrs.get("max-age") == "3600"


def test_disable_and_passwd_end_sessions(server):
    add_user(server, "sun", "agent")
    cookie = login_cookie(server, "sun")
    rc, out, _ = cli(server, "disable", "sun")
    assert rc == 0 and "1 session ended" in out, out
    status, _, doc = request(server.port, "GET", "/api/auth/me", cookie=cookie)
    assert_error(status, doc, 401, "not_authenticated")
    # the right password on a disabled account: told so; a wrong one: the usual 401
    status, _, doc = login(server, "sun")
    assert_error(status, doc, 403, "account_disabled")
    status, _, doc = login(server, "sun", "not the password")
    assert_error(status, doc, 401, "invalid_credentials")
    rc, out, _ = cli(server, "enable", "sun")
    assert rc == 0
    cookie = login_cookie(server, "sun")

    # a new password ends the sessions made with the old one
    rc, out, err = cli(server, "passwd", "sun", password="a brand new passphrase")
    assert rc == 0, err
    status, _, doc = request(server.port, "GET", "/api/auth/me", cookie=cookie)
    assert_error(status, doc, 401, "not_authenticated")
    status, _, doc = login(server, "sun")
    assert_error(status, doc, 401, "invalid_credentials")
    login_cookie(server, "sun", "a brand new passphrase")


def test_cli_refuses_bad_input(server):
    add_user(server, "zhou", "admin")
    cases = [
        (("add", "zhou", "--role=agent"), PASSWORD, "already exists"),
        (("add", "wu", "--role=boss"), PASSWORD, "unknown role"),
        (("add", "wu", "--role=agent"), "too short", "at least 10 characters"),
        (("add", "wu", "--role=agent"), None, "no password on stdin"),
        (("add", "w u", "--role=agent"), PASSWORD, "username"),
        (("add", "wu", "--role=agent", "--name="), PASSWORD, "display name"),
        (("passwd", "nobody"), PASSWORD, "no account nobody"),
        (("disable", "nobody"), None, "no account nobody"),
    ]
    for args, pw, message in cases:
        rc, _, err = cli(server, *args, password=pw)
        assert rc == 1, (args, rc, err)
        assert message in err, (args, err)
    rc, _, err = cli(server, "add", "wu")
    assert rc == 2 and "--role is required" in err
    rc, _, err = cli(server, "frobnicate")
    assert rc == 2 and "usage" in err
    # nothing half-made: only zhou exists
    rc, out, _ = cli(server, "list")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["zhou"], out


def test_bad_requests_get_clear_errors(server):
    port = server.port
    add_user(server, "zheng", "agent")
    cases = [
        (dict(raw=b"{oops"), 400, "bad_json"),
        (dict(raw=b"[1, 2]"), 400, "bad_json"),
        (dict(raw=b'{"username": "zheng", "password": "x"} trailing'), 400, "bad_json"),
        (dict(raw=b'{"username": "zh\\u0000eng", "password": "x"}'), 400, "bad_json"),
        (dict(raw=b'{"username": "zheng", "password": "\xff"}'), 400, "bad_json"),
        (dict(body={"password": PASSWORD}), 400, "missing_field"),
        (dict(body={"username": "zheng"}), 400, "missing_field"),
        (dict(body={"username": 7, "password": PASSWORD}), 400, "bad_field"),
        (dict(body={"username": "zheng", "password": None}), 400, "bad_field"),
        (dict(body={"username": "zh eng", "password": PASSWORD}), 400, "bad_field"),
        (dict(body={"username": "zheng", "password": ""}), 400, "bad_field"),
        (dict(body={"username": "zheng", "password": "x" * 1025}), 400, "bad_field"),
        (dict(body={"username": "zheng", "password": "x" * 5000}), 413, "too_large"),
    ]
    for kw, want, code in cases:
        status, _, doc = request(port, "POST", "/api/auth/login", **kw)
        assert_error(status, doc, want, code)
    status, _, doc = request(port, "POST", "/api/auth/login")  # no body at all
    assert_error(status, doc, 400, "bad_json")
    status, _, doc = request(port, "GET", "/api/auth/login")
    assert_error(status, doc, 405, "method_not_allowed")
    status, _, doc = request(port, "POST", "/api/auth/me")
    assert_error(status, doc, 405, "method_not_allowed")
    status, _, doc = request(port, "GET", "/api/auth/logout")
    assert_error(status, doc, 405, "method_not_allowed")
    status, _, doc = request(port, "GET", "/api/auth/nope")
    assert_error(status, doc, 404, "not_found")
    # junk session cookies are simply not sessions
    for junk in ("redress_session=", "redress_session=zz", f"{COOKIE}={'0' * 32}", "a=b; c",
                 f"{COOKIE}={'A' * 32}"):
        status, _, doc = request(port, "GET", "/api/auth/me", cookie=junk)
        assert_error(status, doc, 401, "not_authenticated")
    # none of that counted as a failed login: the account still logs in
    login_cookie(server, "zheng")
