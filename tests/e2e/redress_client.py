"""redress_client - a small client library for the end-to-end tests.

What it owns:
  Server    one `redress serve` process on 127.0.0.1 with its own data directory; start(),
            stop() (SIGTERM, exit code 0, no sanitizer report), kill9(), restart().  Its stderr
            goes to a file per start, so a chatty server never blocks on a full pipe.
  Client    an asyncio WebSocket client (python3-websockets) speaking docs/protocol.md: every
            frame it receives is checked against the protocol's shapes, and the seq of the
            events it sees on one connection must strictly increase.
  RawWS     a blocking socket WebSocket client with its own frame encoder, for what the
            websockets library refuses to send (invalid UTF-8, odd frames) and for a peer that
            never answers pings.
  http_get  a plain HTTP/1.1 GET that sends the path exactly as given (no normalisation).

Every wait has a timeout (TIMEOUT seconds unless told), so a test never hangs.
"""

import asyncio
import base64
import http.client
import json
import os
import re
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time

import websockets
import websockets.exceptions

SUBPROTOCOL = "redress.chat.v1"
HOST = "127.0.0.1"
# Seconds for one await (a reply, a connect).  Generous: the suite runs under ASan.
TIMEOUT = float(os.environ.get("REDRESS_TEST_TIMEOUT", "15"))
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
LISTENING_RE = re.compile(r"^listening on http://127\.0\.0\.1:(\d+)$")
TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
CONVERSATION_RE = re.compile(r"^c-[0-9]+$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FROM_VALUES = {"bot", "agent", "system", "customer"}
ERROR_CODES = {
    "bad_json", "bad_utf8", "bad_frame", "unknown_type", "missing_field", "bad_field",
    "not_ready", "already_started", "unknown_token", "rate_limited", "internal",
}


_open_clients = []


def run(coro, timeout=120.0):
    """Runs one coroutine on a fresh event loop with an overall time limit, then closes every
    Client it left open (a WebSocket left to the loop's teardown lingers for close_timeout)."""

    async def main():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            while _open_clients:
                await _open_clients.pop().close()

    return asyncio.run(main())


def tail(text, n=6000):
    return text if len(text) <= n else "...\n" + text[-n:]


# --------------------------------------------------------------------------- server process


class Server:
    """One redress server.  Not thread-safe; one test owns it."""

    def __init__(self, binary, data_dir, args=(), log_dir=None):
        self.binary = str(binary)
        self.data_dir = str(data_dir)
        self.args = [str(a) for a in args]
        self.log_dir = str(log_dir or data_dir)
        self.proc = None
        self.port = None
        self.generation = 0
        self.stderr_paths = []
        self.extra_stdout = []
        self._stderr_file = None
        self._stdout_thread = None

    # -- addresses
    @property
    def ws_url(self):
        return f"ws://{HOST}:{self.port}/chat"

    @property
    def db_path(self):
        return os.path.join(self.data_dir, "redress.db")

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self, generation=None):
        paths = self.stderr_paths if generation is None else [self.stderr_paths[generation - 1]]
        out = []
        for p in paths:
            with open(p, "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
        return "".join(out)

    def command(self):
        return [self.binary, "serve", "--listen.port", "0", "--data.dir", self.data_dir,
                *self.args]

    # -- lifecycle
    def start(self, timeout=START_TIMEOUT):
        """Starts the process and waits for its one `listening on` line.  Sets self.port."""
        assert not self.running, "server already running"
        os.makedirs(self.log_dir, exist_ok=True)
        self.generation += 1
        path = os.path.join(self.log_dir, f"server-stderr.{self.generation}.log")
        self.stderr_paths.append(path)
        self._stderr_file = open(path, "wb")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr_file)
        line = self._read_first_line(timeout)
        m = LISTENING_RE.match(line)
        if not m:
            self._abort()
            raise AssertionError(f"server printed {line!r} instead of 'listening on "
                                 f"http://127.0.0.1:PORT'\nstderr:\n{tail(self.stderr_text())}")
        self.port = int(m.group(1))
        assert 0 < self.port < 65536
        self._stdout_thread = threading.Thread(target=self._drain_stdout, args=(self.proc,),
                                               daemon=True)
        self._stdout_thread.start()
        return self

    def _read_first_line(self, timeout):
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._abort()
                raise AssertionError(f"server did not print its listening line within "
                                     f"{timeout}s (stdout so far {buf!r})\nstderr:\n"
                                     f"{tail(self.stderr_text())}")
            r, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                rc = self.proc.wait(timeout=STOP_TIMEOUT)
                self._close_files()
                raise AssertionError(f"server exited with {rc} before listening (stdout "
                                     f"{buf!r})\ncommand: {' '.join(self.command())}\nstderr:\n"
                                     f"{tail(self.stderr_text())}")
            buf += chunk
        first, _, rest = buf.partition(b"\n")
        if rest:
            self.extra_stdout.append(rest)
        return first.decode("utf-8", "replace")

    def _drain_stdout(self, proc):
        while True:
            chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else \
                proc.stdout.read(4096)
            if not chunk:
                return
            self.extra_stdout.append(chunk)

    def _abort(self):
        if self.running:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=STOP_TIMEOUT)
        self._close_files()

    def _close_files(self):
        if self._stdout_thread is not None:
            self._stdout_thread.join(timeout=5)
            self._stdout_thread = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None

    def check_stderr(self):
        """Raises AssertionError when any run's stderr holds a sanitizer report."""
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError(f"sanitizer report ({marker!r}) in server stderr:\n"
                                     f"{tail(text, 20000)}")

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig to this server's own pid and waits.  Asserts exit code 0, a clean stderr
        and nothing on stdout after the listening line."""
        assert self.running, f"server not running (exit code {self.proc and self.proc.poll()})"
        os.kill(self.proc.pid, sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            self._close_files()
            raise AssertionError(f"server did not exit within {timeout}s of "
                                 f"{signal.Signals(sig).name}\nstderr:\n"
                                 f"{tail(self.stderr_text())}")
        self._close_files()
        self.check_stderr()
        if rc != 0:
            raise AssertionError(f"server exited with {rc} after {signal.Signals(sig).name}, "
                                 f"expected 0\nstderr:\n{tail(self.stderr_text())}")
        extra = b"".join(self.extra_stdout)
        self.extra_stdout = []
        assert extra == b"", f"unexpected stdout after the listening line: {extra[:500]!r}"
        return rc

    def kill9(self):
        """SIGKILL to this server's pid; waits for it.  The data directory stays."""
        assert self.running, "server not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self._close_files()
        self.extra_stdout = []

    def restart(self):
        """Graceful stop (checked) when running, then start on the same data directory.
        The port changes."""
        if self.running:
            self.stop()
        return self.start()

    def finish(self):
        """Teardown: stop a running server (checked); check every run's stderr."""
        if self.running:
            self.stop()
        else:
            if self.proc is not None and self.proc.returncode not in (0, -signal.SIGKILL):
                raise AssertionError(f"server died on its own with exit code "
                                     f"{self.proc.returncode}\nstderr:\n"
                                     f"{tail(self.stderr_text())}")
            self.check_stderr()


# --------------------------------------------------------------------------- protocol checks


def check_frame(f):
    """Asserts that a server frame has the shape docs/protocol.md gives its type."""
    assert isinstance(f, dict), f"frame is not a JSON object: {f!r}"
    t = f.get("type")
    if t == "welcome":
        assert isinstance(f.get("conversation"), str) and CONVERSATION_RE.match(
            f["conversation"]), f"bad welcome.conversation: {f!r}"
        assert isinstance(f.get("token"), str) and TOKEN_RE.match(f["token"]), \
            f"welcome.token is not 32 lowercase hex digits: {f!r}"
        assert is_int(f.get("seq")) and f["seq"] >= 0, f"bad welcome.seq: {f!r}"
        assert isinstance(f.get("resumed"), bool), f"bad welcome.resumed: {f!r}"
    elif t == "ack":
        assert isinstance(f.get("id"), str) and f["id"], f"bad ack.id: {f!r}"
        assert is_int(f.get("seq")) and f["seq"] >= 1, f"bad ack.seq: {f!r}"
    elif t == "error":
        assert f.get("code") in ERROR_CODES, f"unknown error code: {f!r}"
        assert isinstance(f.get("message"), str) and f["message"], f"bad error.message: {f!r}"
        if "id" in f:
            assert isinstance(f["id"], str), f"bad error.id: {f!r}"
    elif t == "message":
        assert is_int(f.get("seq")) and f["seq"] >= 1, f"bad message.seq: {f!r}"
        assert f.get("from") in FROM_VALUES, f"bad message.from: {f!r}"
        assert isinstance(f.get("text"), str), f"bad message.text: {f!r}"
        assert isinstance(f.get("ts"), str) and TS_RE.match(f["ts"]), f"bad message.ts: {f!r}"
        if "options" in f:
            assert isinstance(f["options"], list) and f["options"], \
                f"message.options present but empty or not a list: {f!r}"
            assert all(isinstance(o, str) and o for o in f["options"]), f"bad options: {f!r}"
        if f["from"] == "customer":
            assert isinstance(f.get("id"), str) and f["id"], \
                f"a customer message event has no id: {f!r}"
    elif t == "status":
        assert is_int(f.get("seq")) and f["seq"] >= 1, f"bad status.seq: {f!r}"
        assert isinstance(f.get("state"), str) and f["state"], f"bad status.state: {f!r}"
        assert isinstance(f.get("detail"), dict), f"status.detail is not an object: {f!r}"
        assert isinstance(f.get("ts"), str) and TS_RE.match(f["ts"]), f"bad status.ts: {f!r}"
    else:
        raise AssertionError(f"server sent a frame of unknown type: {f!r}")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_event(f):
    return f.get("type") in ("message", "status")


# --------------------------------------------------------------------------- asyncio client


class Closed(Exception):
    """The server closed the connection; code is the close code (None: no close frame)."""

    def __init__(self, code, reason=""):
        super().__init__(f"connection closed with code {code} {reason!r}")
        self.code = code
        self.reason = reason


async def connect(server, path="/chat", subprotocols=(SUBPROTOCOL,), timeout=TIMEOUT):
    """Opens a WebSocket to the server.  Returns a Client."""
    uri = f"ws://{HOST}:{server.port}{path}"
    ws = await asyncio.wait_for(
        websockets.connect(uri, subprotocols=list(subprotocols) if subprotocols else None,
                           max_size=None, ping_interval=None, open_timeout=timeout,
                           close_timeout=2),
        timeout + 1)
    c = Client(ws)
    _open_clients.append(c)
    return c


async def recv_json(ws, timeout):
    """The next frame of ws, parsed: a text frame holding JSON, or an AssertionError.  Raises
    Closed(code, reason) when the connection closes, asyncio.TimeoutError when nothing comes in
    time."""
    try:
        raw = await asyncio.wait_for(ws.recv(), timeout)
    except websockets.exceptions.ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd is not None else None
        reason = e.rcvd.reason if e.rcvd is not None else ""
        raise Closed(code, reason) from None
    assert isinstance(raw, str), f"server sent a binary frame: {raw[:100]!r}"
    try:
        return json.loads(raw)
    except ValueError:
        raise AssertionError(f"server sent a frame that is not JSON: {raw[:300]!r}")


class Client:
    """One chat connection.  recv() checks every frame; events seen are kept in self.events."""

    def __init__(self, ws):
        self.ws = ws
        self.frames = []        # every frame received, in order
        self.events = {}        # seq -> event received on this connection
        self.last_event_seq = 0 # highest event seq received on this connection
        self.welcome = None
        self.token = None
        self.conversation = None

    @property
    def last_seq(self):
        return self.last_event_seq

    async def send(self, obj):
        await self.ws.send(json.dumps(obj, ensure_ascii=False))

    async def send_text(self, text):
        await self.ws.send(text)

    async def send_bytes(self, data):
        await self.ws.send(data)

    async def recv(self, timeout=TIMEOUT):
        """Next frame, parsed and checked.  Raises Closed when the server closes,
        asyncio.TimeoutError when nothing comes in time."""
        f = await recv_json(self.ws, timeout)
        check_frame(f)
        self.frames.append(f)
        if is_event(f):
            assert f["seq"] > self.last_event_seq, \
                f"event seq {f['seq']} after {self.last_event_seq}: not increasing: {f!r}"
            self.last_event_seq = f["seq"]
            self.events[f["seq"]] = f
        return f

    async def expect(self, type_, timeout=TIMEOUT, **fields):
        """Next frame must have this type and these field values.  Returns it."""
        f = await self.recv(timeout)
        assert f["type"] == type_, f"expected a {type_!r} frame, got {f!r}"
        for k, v in fields.items():
            assert f.get(k) == v, f"expected {k}={v!r} in {f!r}"
        return f

    async def expect_error(self, code, id=None, timeout=TIMEOUT):
        """Next frame must be an error with this code (and id when given)."""
        f = await self.recv(timeout)
        assert f["type"] == "error" and f["code"] == code, \
            f"expected error {code!r}, got {f!r}"
        if id is not None:
            assert f.get("id") == id, f"expected error id {id!r}, got {f!r}"
        return f

    async def recv_until(self, pred, timeout=TIMEOUT):
        """Frames up to and including the first one for which pred(frame) is true."""
        out = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise asyncio.TimeoutError(f"no matching frame within {timeout}s; got {out!r}")
            f = await self.recv(left)
            out.append(f)
            if pred(f):
                return out

    async def drain(self, quiet=0.3):
        """Frames that arrive until none has come for `quiet` seconds."""
        out = []
        while True:
            try:
                out.append(await self.recv(quiet))
            except asyncio.TimeoutError:
                return out

    async def expect_closed(self, timeout=TIMEOUT):
        """Reads until the server closes.  Returns (close code or None, frames before it)."""
        frames = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"connection still open after {timeout}s; got {frames!r}")
            try:
                frames.append(await self.recv(left))
            except Closed as c:
                return c.code, frames
            except asyncio.TimeoutError:
                raise AssertionError(f"connection still open after {timeout}s; got {frames!r}")

    async def hello(self, customer_id="u-1", name=None, channel=None):
        """Starts a new conversation: hello -> welcome -> status open (seq 1) -> a bot
        greeting (seq 2).  Returns the welcome."""
        customer = {"id": customer_id}
        if name is not None:
            customer["name"] = name
        if channel is not None:
            customer["channel"] = channel
        await self.send({"type": "hello", "customer": customer})
        w = await self.expect("welcome")
        assert w["seq"] == 0 and w["resumed"] is False, f"bad welcome for a new conversation: {w}"
        self._remember(w)
        st = await self.expect("status")
        assert st["seq"] == 1 and st["state"] == "open" and st["detail"] == {}, \
            f"expected status open with seq 1 and detail {{}}, got {st}"
        greet = await self.expect("message")
        assert greet["seq"] == 2 and greet["from"] == "bot", \
            f"expected a bot greeting with seq 2, got {greet}"
        return w

    async def resume(self, token, last_seq):
        """Resumes: hello(resume) -> welcome(resumed) -> every event after last_seq up to
        welcome.seq.  Returns (welcome, replayed events)."""
        await self.send({"type": "hello", "resume": {"token": token, "last_seq": last_seq}})
        w = await self.expect("welcome")
        assert w["resumed"] is True and w["token"] == token, f"bad resume welcome: {w}"
        assert w["seq"] >= last_seq, f"welcome.seq {w['seq']} < last_seq {last_seq}"
        self._remember(w)
        self.last_event_seq = last_seq
        replay = []
        while self.last_event_seq < w["seq"]:
            f = await self.recv()
            assert is_event(f), f"expected replayed events up to seq {w['seq']}, got {f!r}"
            replay.append(f)
        assert self.last_event_seq == w["seq"], \
            f"replay went past welcome.seq {w['seq']}: {replay!r}"
        return w, replay

    def _remember(self, w):
        self.welcome = w
        self.token = w["token"]
        self.conversation = w["conversation"]

    async def say(self, id, text, timeout=TIMEOUT):
        """Sends a message; waits for its ack, then for the first bot/agent/system message event
        with a higher seq.  Returns (ack, every frame received after the send)."""
        await self.send({"type": "message", "id": id, "text": text})
        frames = await self.recv_until(lambda f: f["type"] in ("ack", "error"), timeout)
        ack = frames[-1]
        assert ack["type"] == "ack" and ack["id"] == id, f"expected ack for {id!r}, got {ack!r}"
        frames += await self.recv_until(
            lambda f: f["type"] == "message" and f["seq"] > ack["seq"], timeout)
        return ack, frames

    async def close(self):
        if self in _open_clients:
            _open_clients.remove(self)
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
            pass


# --------------------------------------------------------------------------- raw socket client

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def handshake_request(port, path="/chat", protocols=(SUBPROTOCOL,), key=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def try_upgrade(port, path="/chat", protocols=(SUBPROTOCOL,), timeout=TIMEOUT):
    """Sends one upgrade request.  Returns (status or None when the server closed without an
    answer, headers dict with lower-case names, the socket or None, bytes already read past
    the response head)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.sendall(handshake_request(port, path, protocols))
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    if b"\r\n\r\n" not in buf:
        s.close()
        return None, {}, None, b""
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.1 (\d{3})", lines[0])
    assert m, f"bad HTTP status line {lines[0]!r}"
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    status = int(m.group(1))
    if status != 101:
        s.close()
        return status, headers, None, b""
    return status, headers, s, rest


class RawWS:
    """A blocking WebSocket client on a plain socket.  Sends masked frames as told; does not
    answer pings unless auto_pong."""

    def __init__(self, port, path="/chat", protocols=(SUBPROTOCOL,), timeout=TIMEOUT):
        status, headers, s, rest = try_upgrade(port, path, protocols, timeout)
        assert status == 101, f"upgrade refused: status {status} {headers}"
        assert headers.get("sec-websocket-protocol") == SUBPROTOCOL, \
            f"server chose subprotocol {headers.get('sec-websocket-protocol')!r}"
        self.sock = s
        self.buf = rest
        self.timeout = timeout

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length is None else length
        head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
        mbit = 0x80 if mask else 0
        if n < 126:
            head += bytes([mbit | n])
        elif n < 65536:
            head += bytes([mbit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([mbit | 127]) + struct.pack("!Q", n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_text(self, data):
        self.send_frame(OP_TEXT, data)

    def send_json(self, obj):
        self.send_frame(OP_TEXT, json.dumps(obj, ensure_ascii=False).encode())

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out reading a frame")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError("server closed the TCP connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=None):
        """Returns (fin, opcode, payload).  Raises EOFError on TCP close, socket.timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        b0, b1 = self._read(2, deadline)
        n = b1 & 0x7F
        assert not (b1 & 0x80), "server sent a masked frame"
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2, deadline))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8, deadline))
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n, deadline)

    def recv(self, timeout=None, auto_pong=True):
        """Next data frame as ("text", parsed JSON) / ("binary", bytes), a close as
        ("close", code or None, reason), a ping (when not auto_pong) as ("ping", payload).
        Raises EOFError when the TCP connection ends without a close frame."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            fin, op, payload = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if op == OP_PING:
                if auto_pong:
                    self.send_frame(OP_PONG, payload)
                    continue
                return ("ping", payload)
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return ("close", code, payload[2:].decode("utf-8", "replace"))
            assert fin, "server sent a fragmented message"
            if op == OP_TEXT:
                f = json.loads(payload.decode("utf-8"))
                check_frame(f)
                return ("text", f)
            return ("binary", payload)

    def recv_json(self, timeout=None):
        kind, *rest = self.recv(timeout)
        assert kind == "text", f"expected a text frame, got {kind} {rest!r}"
        return rest[0]

    def hello(self, customer_id="u-raw"):
        """hello -> welcome, status open, bot greeting.  Returns the welcome."""
        self.send_json({"type": "hello", "customer": {"id": customer_id}})
        w = self.recv_json()
        assert w["type"] == "welcome", f"expected welcome, got {w!r}"
        st = self.recv_json()
        assert st["type"] == "status" and st["state"] == "open", f"expected status, got {st!r}"
        g = self.recv_json()
        assert g["type"] == "message" and g["from"] == "bot", f"expected greeting, got {g!r}"
        return w

    def wait_closed(self, timeout=None):
        """Reads until the server ends the connection.  Returns (close code or None when the
        TCP connection ended without a close frame, frames before it)."""
        frames = []
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection still open after {timeout}s: {frames!r}")
            try:
                r = self.recv(left)
            except EOFError:
                return None, frames
            except socket.timeout:
                raise AssertionError(f"connection still open after {timeout}s: {frames!r}")
            if r[0] == "close":
                return r[1], frames
            frames.append(r)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- the database


def db(server):
    """A connection to the server's SQLite file, rows as sqlite3.Row."""
    c = sqlite3.connect(server.db_path, timeout=10)
    c.row_factory = sqlite3.Row
    return c


async def wait_db(server, sql, args=(), pred=bool, timeout=15.0):
    """Polls the database until pred(rows) holds.  Returns the rows."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        with db(server) as c:
            rows = c.execute(sql, args).fetchall()
        if pred(rows):
            return rows
        assert loop.time() < deadline, f"{sql} {args}: still {[tuple(r) for r in rows]}"
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- HTTP


def http_get(port, path, timeout=TIMEOUT, method="GET"):
    """One request with the path sent verbatim.  Returns (status, headers lower-cased, body)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        c.endheaders()
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def http_request(port, method, path, body=None, cookie=None, raw=None):
    """One request with a JSON body (body: a value to encode, or raw: bytes sent as they are)
    and a Cookie header.  Returns (status, [(header, value)] with lower-case names, the parsed
    JSON answer or None)."""
    c = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    try:
        headers = {}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(data))
        if cookie is not None:
            headers["Cookie"] = cookie
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        text = r.read()
        pairs = [(k.lower(), v) for k, v in r.getheaders()]
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            doc = None
        return r.status, pairs, doc
    finally:
        c.close()


def healthz(port):
    status, headers, body = http_get(port, "/healthz")
    assert status == 200, f"/healthz answered {status}: {body[:300]!r}"
    return json.loads(body)


METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> ({(name, ((label, value), ...)): float}, {name: type})."""
    samples, types = {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = METRIC_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, types


def metric_total(samples, name, **labels):
    """Sum of every sample of name whose labels include the given ones."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def fetch_metrics(port):
    status, headers, body = http_get(port, "/metrics")
    assert status == 200, f"/metrics answered {status}: {body[:300]!r}"
    return parse_metrics(body.decode("utf-8"))[0]


async def wait_metric(server, name, want, timeout=15.0):
    """Polls /metrics until the total of name equals want."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = metric_total(fetch_metrics(server.port), name)
        if got == want:
            return
        assert loop.time() < deadline, f"{name} stayed {got}, want {want}"
        await asyncio.sleep(0.2)
