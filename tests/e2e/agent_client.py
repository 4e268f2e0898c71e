"""agent_client - staff accounts, logins and agent-console sockets for the end-to-end tests.

What it owns:
  add_account / login / logout   `redress user add` on the server's data directory (password on
                                 stdin) and POST /api/auth/login|logout (docs/auth.md)
  connect_agent                  a WebSocket to /agent (subprotocol redress.agent.v1) carrying
                                 the redress_session cookie; returns an Agent
  Agent                          one agent socket speaking the "agent protocol, version 1" of
                                 docs/protocol.md: every frame it receives is checked against
                                 the shapes the spec gives its type.  Frames are kept in a
                                 backlog until a wait consumes them, so a frame that arrives
                                 before the one a test waits for (an `assigned` before an `ok`,
                                 a queue push before anything) is never lost.
  Customer helpers               wait_event / escalate for the chat side (redress_client.Client)

Every wait has a timeout (redress_client.TIMEOUT unless told); nothing sleeps.
"""

import asyncio
import json
import os
import re
import subprocess

import websockets
import websockets.exceptions

from redress_client import HOST, TIMEOUT, TS_RE, Closed, _open_clients, http_request, is_int, recv_json

AGENT_SUBPROTOCOL = "redress.agent.v1"
PASSWORD = "correct horse battery"
COOKIE = "redress_session"
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
CONV_RE = re.compile(r"^c-[0-9]+$")
RECORD_RE = re.compile(r"^TS\d{8}-\d{6}$")

AGENT_ERROR_CODES = {
    "bad_json", "bad_utf8", "bad_frame", "unknown_type", "missing_field", "bad_field",
    "rate_limited", "not_found", "already_claimed", "not_owner", "agent_offline", "internal",
}
HSTATES = {"queued", "callback", "active"}
RELEASE_REASONS = {"resolved", "handed_back", "transferred", "taken"}


# --------------------------------------------------------------------------- accounts, logins


def add_account(server, username, role="agent", name=None, password=PASSWORD):
    """`redress user add USERNAME --role=ROLE [--name=NAME]` on the server's data directory,
    the password piped on stdin.  Asserts exit code 0."""
    binary = os.environ["REDRESS_BIN"]
    args = [binary, "user", "add", username, f"--role={role}", "--data.dir", server.data_dir]
    if name is not None:
        args.append(f"--name={name}")
    p = subprocess.run(args, input=(password + "\n").encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, \
        f"user add {username} failed ({p.returncode}): {p.stderr.decode(errors='replace')}"


def login(server, username, password=PASSWORD):
    """POST /api/auth/login.  Returns the Cookie header value "redress_session=<hex>"."""
    status, pairs, doc = http_request(server.port, "POST", "/api/auth/login",
                                      {"username": username, "password": password})
    assert status == 200, f"login {username}: {status} {doc}"
    cookies = [v for k, v in pairs if k == "set-cookie"]
    assert len(cookies) == 1, f"login {username}: Set-Cookie headers {cookies}"
    name, _, value = cookies[0].split(";")[0].strip().partition("=")
    assert name == COOKIE and TOKEN_RE.match(value), f"bad session cookie {cookies[0]!r}"
    return f"{COOKIE}={value}"


def logout(server, cookie):
    status, _, doc = http_request(server.port, "POST", "/api/auth/logout", cookie=cookie)
    assert status == 200 and doc == {"ok": True, "revoked": True}, f"logout: {status} {doc}"


def staff(server, username, role="agent", name=None):
    """A new account, logged in.  Returns its cookie."""
    add_account(server, username, role, name)
    return login(server, username)


# --------------------------------------------------------------------------- frame checks


def _check_time(v, what, nullable=False):
    if v is None and nullable:
        return
    assert isinstance(v, str) and TS_RE.match(v), f"{what} is not an ISO time: {v!r}"


def check_item(it, active=False):
    """A queue or mine item: {conversation, state, group, reason, priority, position, waited_s,
    customer {id, name, vip}, category, severity, last_text, due}."""
    assert isinstance(it, dict), f"item is not an object: {it!r}"
    assert isinstance(it.get("conversation"), str) and CONV_RE.match(it["conversation"]), it
    assert it.get("state") in (("active",) if active else ("queued", "callback")), \
        f"bad item.state: {it!r}"
    assert isinstance(it.get("group"), str) and it["group"], f"bad item.group: {it!r}"
    assert isinstance(it.get("reason"), str) and it["reason"], f"bad item.reason: {it!r}"
    assert is_int(it.get("priority")) and 1 <= it["priority"] <= 3, f"bad priority: {it!r}"
    assert "position" in it and (it["position"] is None or
                                 (is_int(it["position"]) and it["position"] >= 1)), \
        f"bad item.position: {it!r}"
    assert isinstance(it.get("waited_s"), (int, float)) and it["waited_s"] >= 0, it
    cu = it.get("customer")
    assert isinstance(cu, dict) and isinstance(cu.get("id"), str) and \
        isinstance(cu.get("name"), str) and "vip" in cu, f"bad item.customer: {it!r}"
    assert "category" in it and (it["category"] is None or isinstance(it["category"], str)), it
    assert is_int(it.get("severity")), f"bad item.severity: {it!r}"
    assert isinstance(it.get("last_text"), str), f"bad item.last_text: {it!r}"
    assert "due" in it, f"item without due: {it!r}"
    _check_time(it["due"], "item.due", nullable=True)


def check_agent_frame(f):
    """Asserts that a server frame on /agent has the shape docs/protocol.md gives its type."""
    assert isinstance(f, dict), f"frame is not a JSON object: {f!r}"
    t = f.get("type")
    if t == "welcome":
        ag = f.get("agent")
        assert isinstance(ag, dict) and all(isinstance(ag.get(k), str) and ag[k]
                                            for k in ("username", "name", "role")), f
        assert isinstance(f.get("supervisor"), bool), f"bad welcome.supervisor: {f!r}"
        assert isinstance(f.get("groups"), list) and \
            all(isinstance(g, str) and g for g in f["groups"]), f"bad welcome.groups: {f!r}"
        assert isinstance(f.get("canned"), list), f"bad welcome.canned: {f!r}"
        for c in f["canned"]:
            assert isinstance(c, dict) and isinstance(c.get("title"), str) and c["title"] and \
                isinstance(c.get("text"), str) and c["text"], f"bad canned reply {c!r}"
        assert isinstance(f.get("queue"), list) and isinstance(f.get("mine"), list), f
        for it in f["queue"]:
            check_item(it)
        for it in f["mine"]:
            check_item(it, active=True)
    elif t in ("queue", "mine"):
        assert isinstance(f.get("items"), list), f"bad {t}.items: {f!r}"
        for it in f["items"]:
            check_item(it, active=(t == "mine"))
        if t == "queue":
            assert is_int(f.get("total")) and f["total"] >= len(f["items"]), f
    elif t == "assigned":
        assert isinstance(f.get("conversation"), str) and CONV_RE.match(f["conversation"]), f
        assert isinstance(f.get("context"), dict), f"assigned without a context: {f!r}"
        assert "from" in f and (f["from"] is None or isinstance(f["from"], str)), f
    elif t == "released":
        assert isinstance(f.get("conversation"), str) and CONV_RE.match(f["conversation"]), f
        assert f.get("reason") in RELEASE_REASONS, f"bad released.reason: {f!r}"
    elif t == "message":
        assert isinstance(f.get("conversation"), str) and CONV_RE.match(f["conversation"]), f
        assert is_int(f.get("seq")) and f["seq"] >= 1, f"bad message.seq: {f!r}"
        assert f.get("from") in ("customer", "bot", "agent", "system"), f
        assert isinstance(f.get("text"), str), f"bad message.text: {f!r}"
        _check_time(f.get("ts"), "message.ts")
        if f["from"] == "system":
            assert isinstance(f.get("detail"), dict), f"system message without detail: {f!r}"
    elif t == "note":
        assert isinstance(f.get("conversation"), str) and CONV_RE.match(f["conversation"]), f
        check_note(f.get("note"))
    elif t == "ok":
        if "id" in f:
            assert isinstance(f["id"], str), f
    elif t == "error":
        assert f.get("code") in AGENT_ERROR_CODES, f"unknown error code: {f!r}"
        assert isinstance(f.get("message"), str) and f["message"], f"bad error.message: {f!r}"
        if "id" in f:
            assert isinstance(f["id"], str), f
    else:
        raise AssertionError(f"server sent an agent frame of unknown type: {f!r}")


def check_note(n):
    assert isinstance(n, dict) and isinstance(n.get("author"), str) and n["author"] and \
        isinstance(n.get("text"), str), f"bad note: {n!r}"
    _check_time(n.get("ts"), "note.ts")


# --------------------------------------------------------------------------- agent socket


async def connect_agent(server, cookie=None, timeout=TIMEOUT, welcome=True):
    """Opens /agent with the cookie.  With welcome, waits for the welcome frame (kept in
    agent.welcome).  Returns an Agent."""
    headers = {"Cookie": cookie} if cookie else {}
    ws = await asyncio.wait_for(
        websockets.connect(f"ws://{HOST}:{server.port}/agent", subprotocols=[AGENT_SUBPROTOCOL],
                           extra_headers=headers, max_size=None, ping_interval=None,
                           open_timeout=timeout, close_timeout=2),
        timeout + 1)
    assert ws.subprotocol == AGENT_SUBPROTOCOL, f"server chose subprotocol {ws.subprotocol!r}"
    a = Agent(ws)
    _open_clients.append(a)
    if welcome:
        a.welcome = await a.wait(lambda f: f["type"] == "welcome", timeout)
    return a


class Agent:
    """One agent socket.  Received frames go to a backlog; wait(pred) takes the first matching
    one (from the backlog or the wire), leaving the others for later waits."""

    def __init__(self, ws):
        self.ws = ws
        self.backlog = []
        self.frames = []  # every frame received, in order
        self.welcome = None
        self.next_id = 0

    async def send(self, obj):
        await self.ws.send(json.dumps(obj, ensure_ascii=False))

    async def send_text(self, text):
        await self.ws.send(text)

    async def _read(self, timeout):
        f = await recv_json(self.ws, timeout)
        check_agent_frame(f)
        self.frames.append(f)
        return f

    async def wait(self, pred, timeout=TIMEOUT):
        """The first frame (backlog first) for which pred is true; it leaves the backlog."""
        for i, f in enumerate(self.backlog):
            if pred(f):
                return self.backlog.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no matching agent frame within {timeout}s; "
                                     f"unconsumed: {self.backlog!r}")
            try:
                f = await self._read(left)
            except asyncio.TimeoutError:
                continue
            if pred(f):
                return f
            self.backlog.append(f)

    def discard(self, *types):
        """Drops backlog frames of these types (stale queue snapshots)."""
        self.backlog = [f for f in self.backlog if f["type"] not in types]

    def take(self, pred):
        """Every backlog frame matching pred (removed from the backlog), without waiting."""
        out = [f for f in self.backlog if pred(f)]
        self.backlog = [f for f in self.backlog if not pred(f)]
        return out

    def new_id(self):
        self.next_id += 1
        return f"r{self.next_id}"

    async def send_req(self, type_, **fields):
        """Sends a request with a fresh id.  Returns the id."""
        rid = fields.pop("id", None) or self.new_id()
        await self.send({"type": type_, "id": rid, **fields})
        return rid

    async def answer(self, rid, timeout=TIMEOUT):
        """The ok or error frame answering request rid."""
        return await self.wait(lambda f: f["type"] in ("ok", "error") and f.get("id") == rid,
                               timeout)

    async def request(self, type_, timeout=TIMEOUT, **fields):
        """Sends a request, returns its answer (ok or error)."""
        return await self.answer(await self.send_req(type_, **fields), timeout)

    async def ok(self, type_, **fields):
        """A request that must succeed.  Returns the ok frame."""
        r = await self.request(type_, **fields)
        assert r["type"] == "ok", f"{type_} {fields}: expected ok, got {r!r}"
        return r

    async def error(self, code, type_, **fields):
        """A request that must fail with code.  Returns the error frame."""
        r = await self.request(type_, **fields)
        assert r["type"] == "error" and r["code"] == code, \
            f"{type_} {fields}: expected error {code!r}, got {r!r}"
        return r

    async def queue_with(self, conv, timeout=TIMEOUT):
        """The first queue snapshot listing conv.  Returns (snapshot, item)."""
        f = await self.wait(lambda f: f["type"] == "queue" and
                            any(it["conversation"] == conv for it in f["items"]), timeout)
        return f, next(it for it in f["items"] if it["conversation"] == conv)

    async def queue_without(self, conv, timeout=TIMEOUT):
        """The first queue snapshot not listing conv."""
        return await self.wait(lambda f: f["type"] == "queue" and
                               all(it["conversation"] != conv for it in f["items"]), timeout)

    async def expect_closed(self, timeout=TIMEOUT):
        """Reads until the server closes.  Returns the close code (None without a close
        frame)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"agent socket still open after {timeout}s")
            try:
                self.backlog.append(await self._read(left))
            except Closed as c:
                return c.code
            except asyncio.TimeoutError:
                raise AssertionError(f"agent socket still open after {timeout}s; "
                                     f"got {self.backlog!r}")

    async def close(self):
        if self in _open_clients:
            _open_clients.remove(self)
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
            pass


# --------------------------------------------------------------------------- customer side


async def wait_event(c, pred, timeout=TIMEOUT):
    """Customer frames up to the first for which pred is true.  Returns (that frame, every
    frame read, the matching one included)."""
    frames = await c.recv_until(pred, timeout)
    return frames[-1], frames


def is_status(state):
    return lambda f: f["type"] == "status" and f["state"] == state


def is_from(sender):
    return lambda f: f["type"] == "message" and f["from"] == sender
