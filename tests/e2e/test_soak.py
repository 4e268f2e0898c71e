"""Crash and load safety (SECURITY.md, "Protections"): the server keeps serving real chats while
thousands of idle sockets and slow clients (slowloris) hold connections, survives malformed
WebSocket frames and HTTP requests, and keeps an intact database through repeated kill -9.

What is here and not in test_limits.py / test_crash.py:
  - 2000 idle upgraded sockets (fewer when RLIMIT_NOFILE is lower) plus slowloris clients - an
    upgrade request trickled one byte per second, WebSocket frame headers that never get their
    payload - while concurrent chats must get an ack and the right bot reply for every message;
    the server must end the trickled upgrades by itself and count its connections back to 0;
  - a frame payload trickled byte by byte must not keep a connection past limits.idle_timeout_s;
  - frames with absurd 64-bit lengths, non-minimal length encodings, bad close payloads, frames
    after close, and valid but awkward input (a message in 1-byte fragments, a frame written one
    byte per TCP segment, a ping inside a fragmented message, a ping flood);
  - malformed HTTP upgrade requests;
  - kill -9 at start-up, during a burst of hellos and while messages stream, many rounds, with
    PRAGMA integrity_check after every kill, and every welcomed token still resuming.

The chats run the protocol tests' echo flow (tests/data/rules/protocol, chosen by conftest.py),
so every reply can be checked exactly: "已收到您的消息：" + the message.  Nothing asserts on
time; figures are printed for BENCHMARKS.md (pytest -s shows them).  Every wait is bounded,
everything is on 127.0.0.1, and the only processes ended are the servers this test started
(conftest's Server, by pid).
"""

import asyncio
import json
import os
import random
import resource
import socket
import sqlite3
import struct
import time

import pytest
import websockets.exceptions

from redress_client import (HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, TIMEOUT,
                            Closed, RawWS, connect, handshake_request, healthz, run)

# the reply prefix of tests/data/rules/protocol/flows/echo.lua, the flow conftest.py runs
REPLY = "已收到您的消息："
FAST = ("--limits.rate_per_sec", "100000", "--limits.rate_burst", "100000")
IDLE_TARGET = int(os.environ.get("REDRESS_SOAK_IDLE", "2000"))  # more for a longer soak by hand
SLOW_HTTP = 20
SLOW_WS = 20
CHATTERS = 8
MESSAGES = 5
SEED = int(os.environ.get("REDRESS_SOAK_SEED", str(int(time.time()))))
GONE = (Closed, websockets.exceptions.ConnectionClosed, ConnectionError, OSError, EOFError)


def flags(*extra):
    """No knowledge-base seed: start-up stays fast and the echo flow does not search."""
    return ("--kb.seed", "", *extra)


def report(what, value):
    print(f"soak: {what}: {value}")


# --------------------------------------------------------------------------- frames and sockets


def frame(opcode, payload=b"", fin=True, rsv=0, length=None, form=None):
    """A masked client frame.  length overrides the length field; form forces the 7-bit (0),
    16-bit (126) or 64-bit (127) encoding of it."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    if form is None:
        form = 0 if n < 126 else 126 if n < 65536 else 127
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    if form == 0:
        head += bytes([0x80 | n])
    elif form == 126:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def hello_frame(customer_id):
    return frame(OP_TEXT, json.dumps({"type": "hello", "customer": {"id": customer_id}}))


async def ws_upgrade(port, timeout=TIMEOUT):
    """Opens a TCP connection and completes the WebSocket upgrade.  Returns (reader, writer)."""
    r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    w.write(handshake_request(port))
    await w.drain()
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
    assert head.startswith(b"HTTP/1.1 101"), f"upgrade refused: {head[:200]!r}"
    return r, w


def close_all(writers):
    for w in writers:
        try:
            w.close()
        except OSError:
            pass


def nofile_budget():
    """Raises the soft RLIMIT_NOFILE as far as allowed (the server inherits it) and returns how
    many idle sockets fit, leaving room for everything else."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(8192, IDLE_TARGET + 1000)
    want = need if hard == resource.RLIM_INFINITY else min(hard, need)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return min(IDLE_TARGET, soft - 300)


async def chat(srv, name, nmsg=MESSAGES):
    """One customer: hello, then nmsg messages; each must be acknowledged and answered with
    exactly the echo of its text.  Returns the round-trip times in seconds."""
    c = await connect(srv)
    await c.hello(customer_id=name)
    times = []
    for k in range(nmsg):
        text = f"{name} 第{k}条：我的快递到哪了？"
        t0 = time.monotonic()
        ack, frames = await c.say(f"{name}-m{k}", text)
        times.append(time.monotonic() - t0)
        reply = frames[-1]
        assert reply["from"] == "bot" and reply["text"] == REPLY + text, \
            f"{name}: message {k} answered with {reply!r}"
        assert reply["seq"] == ack["seq"] + 1, f"{name}: reply {reply} after ack {ack}"
    await c.close()
    return times


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


# --------------------------------------------------------------------------- slow clients


async def trickle_upgrade(port, stop, ended):
    """Sends an upgrade request one byte per second until the server ends the connection (then
    appends the seconds it took to `ended`) or stop is set."""
    r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), TIMEOUT)
    t0 = time.monotonic()
    first = asyncio.ensure_future(r.read(4096))  # done when the server answers or closes
    stopper = asyncio.ensure_future(stop.wait())
    both = (first, stopper)
    try:
        for b in handshake_request(port):
            if first.done() or stop.is_set():
                break
            try:
                w.write(bytes([b]))
                await w.drain()
            except ConnectionError:
                break
            await asyncio.wait(both, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        if not first.done() and not stop.is_set():
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        if first.done():
            ended.append(time.monotonic() - t0)
    finally:
        for t in both:
            if not t.done():
                t.cancel()
        await asyncio.gather(*both, return_exceptions=True)
        w.close()


async def stalled_frame(port, say_hello, i):
    """A WebSocket that sends a frame header announcing 1000 bytes and then nothing."""
    r, w = await ws_upgrade(port)
    if say_hello:
        w.write(hello_frame(f"u-stall-{i}"))
    w.write(bytes([0x81, 0x80 | 126]) + struct.pack("!H", 1000) + os.urandom(4))
    await w.drain()
    return w


# --------------------------------------------------------------------------- load


def test_idle_sockets_and_slowloris_do_not_starve_chats(server_factory):
    n_idle = nofile_budget()
    if n_idle < 500:
        pytest.skip(f"RLIMIT_NOFILE allows only {n_idle} idle sockets")
    # idle upgraded sockets that never say hello must stay for the whole test
    srv = server_factory(*flags("--limits.hello_timeout_s", "600", *FAST))

    async def go():
        base = []
        for i in range(2):
            base += await chat(srv, f"u-base-{i}")
        report("chat round trip, idle server (median s)", f"{median(base):.4f}")

        t0 = time.monotonic()
        idle, sem = [], asyncio.Semaphore(64)

        async def one(i):
            async with sem:
                r, w = await ws_upgrade(srv.port)
                if i % 10 == 0:  # every tenth is an idle conversation, the rest never said hello
                    w.write(hello_frame(f"u-idle-{i}"))
                    await w.drain()
                idle.append(w)

        await asyncio.gather(*(one(i) for i in range(n_idle)))
        report(f"{n_idle} idle upgrades (s)", f"{time.monotonic() - t0:.2f}")

        stop, ended = asyncio.Event(), []
        slow_http = [asyncio.ensure_future(trickle_upgrade(srv.port, stop, ended))
                     for _ in range(SLOW_HTTP)]
        stalled = [await stalled_frame(srv.port, i % 2 == 0, i) for i in range(SLOW_WS)]
        await asyncio.sleep(1.0)

        h = healthz(srv.port)
        assert h["status"] == "ok", h
        assert h["connections"] >= n_idle + SLOW_WS, \
            f"healthz counts {h['connections']} connections, {n_idle + SLOW_WS} were open"

        t0 = time.monotonic()
        results = await asyncio.gather(*(chat(srv, f"u-load-{i}") for i in range(CHATTERS)))
        loaded = [t for ts in results for t in ts]
        assert len(loaded) == CHATTERS * MESSAGES
        report(f"{CHATTERS} concurrent chats x {MESSAGES} messages under load (s)",
               f"{time.monotonic() - t0:.2f}")
        report("chat round trip under load (median s)", f"{median(loaded):.4f}")
        report("chat round trip under load (max s)", f"{max(loaded):.4f}")

        # chats go on until the server has ended the trickled upgrades itself (libwebsockets'
        # handshake timeout), or 90 s
        deadline, rounds = time.monotonic() + 90, 0
        while len(ended) < SLOW_HTTP and time.monotonic() < deadline:
            await asyncio.gather(*(chat(srv, f"u-soak-{rounds}-{i}", 2) for i in range(4)))
            rounds += 1
            await asyncio.sleep(0.5)
        report("chat rounds (4 chats x 2 messages) while slow clients held on", rounds)
        report("trickled upgrades ended by the server after (s, max)",
               f"{max(ended):.1f}" if ended else "none")
        stop.set()
        await asyncio.gather(*slow_http, return_exceptions=True)
        assert len(ended) == SLOW_HTTP, \
            f"only {len(ended)} of {SLOW_HTTP} trickled upgrade requests were ended by the server"

        await chat(srv, "u-after", 2)
        close_all(idle + stalled)
        await asyncio.sleep(0.2)
        deadline = time.monotonic() + 60
        while healthz(srv.port)["connections"] != 0:
            assert time.monotonic() < deadline, \
                f"connections stuck at {healthz(srv.port)['connections']} after every client left"
            await asyncio.sleep(0.2)

    run(go(), timeout=400)


def test_trickled_frame_does_not_defeat_idle_timeout(server_factory):
    """A frame whose payload comes one byte every 0.5 s never completes: it is not a frame from
    the client, so limits.idle_timeout_s must still end the connection."""
    srv = server_factory(*flags("--limits.idle_timeout_s", "2",
                                "--limits.ping_interval_s", "1"))
    r = RawWS(srv.port)
    try:
        r.hello()
        r.sock.sendall(bytes([0x81, 0x80 | 126]) + struct.pack("!H", 1000) + os.urandom(4))
        t0, closed = time.monotonic(), False
        while time.monotonic() - t0 < 20 and not closed:
            try:
                r.sock.sendall(b"x")
                # pings are not answered: only the trickle could keep the connection alive
                kind, *rest = r.recv(timeout=0.5, auto_pong=False)
                closed = kind == "close"
            except socket.timeout:
                pass
            except (EOFError, OSError):
                closed = True
        report("trickled frame closed after (s)", f"{time.monotonic() - t0:.1f}" if closed
               else "never (20 s)")
        assert closed, "a client trickling one frame's payload kept its connection for 20 s " \
                       "with limits.idle_timeout_s 2"
    finally:
        r.close()
    assert healthz(srv.port)["status"] == "ok"


# --------------------------------------------------------------------------- malformed frames


def expect_closed(r):
    code, frames = r.wait_closed(timeout=10)
    assert code is None or code >= 1000, code
    return code


def expect_echo(r, mid, text):
    frames = []
    while True:
        f = r.recv_json()
        frames.append(f)
        if f["type"] == "message" and f["from"] == "bot":
            break
        assert f["type"] in ("ack", "message"), f"unexpected {f!r} (so far {frames!r})"
    acks = [f for f in frames if f["type"] == "ack"]
    assert acks and acks[0]["id"] == mid, f"no ack for {mid}: {frames!r}"
    assert frames[-1]["text"] == REPLY + text, frames
    return frames


def msg(mid, text):
    return json.dumps({"type": "message", "id": mid, "text": text}, ensure_ascii=False).encode()


def case_len64_msb(r):
    r.sock.sendall(frame(OP_TEXT, b"x" * 32, length=1 << 63, form=127))
    return expect_closed(r)


def case_len64_all_ones(r):
    r.sock.sendall(frame(OP_TEXT, b"x" * 32, length=(1 << 64) - 1, form=127))
    return expect_closed(r)


def case_len64_huge_then_data(r):
    """2^40 bytes announced; the server must stop at limits.max_message_bytes (1009)."""
    head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"\0\0\0\0"
    r.sock.sendall(head)
    try:
        for _ in range(40):
            r.sock.sendall(b"a" * 1024)
    except OSError:
        pass
    code = expect_closed(r)
    assert code in (None, 1009), f"close code {code} for an oversized message"


def case_control_len127(r):
    r.sock.sendall(frame(OP_PING, b"p" * 5, form=127))
    return expect_closed(r)


def case_reserved_control_opcode(r):
    r.sock.sendall(frame(0xB, b"abc"))
    return expect_closed(r)


def case_rsv_on_continuation(r):
    r.sock.sendall(frame(OP_TEXT, b'{"type":', fin=False) +
                   frame(OP_CONT, b'"message"}', rsv=0x2))
    return expect_closed(r)


def case_close_one_byte(r):
    r.sock.sendall(frame(OP_CLOSE, b"\x03"))
    return expect_closed(r)


def case_close_bad_utf8_reason(r):
    r.sock.sendall(frame(OP_CLOSE, b"\x03\xe8\xff\xfe\xfd"))
    return expect_closed(r)


def case_data_after_close(r):
    r.sock.sendall(frame(OP_CLOSE, b"\x03\xe8") + frame(OP_TEXT, msg("m-late", "关闭后")) +
                   frame(OP_BINARY, b"\0" * 100))
    return expect_closed(r)


def case_nonminimal_length(r):
    """A data frame whose length uses the 64-bit form for 40 bytes: RFC 6455 wants the minimal
    form; either refusing it or reading it correctly is fine, anything else is not."""
    m = msg("m-nm", "非最短")
    r.sock.sendall(frame(OP_TEXT, m, form=127))
    try:
        kind, *rest = r.recv(timeout=10)
    except EOFError:
        return None
    if kind == "close":
        return rest[0]
    assert kind == "text" and rest[0]["type"] == "ack" and rest[0]["id"] == "m-nm", rest


def case_zero_length_text(r):
    r.sock.sendall(frame(OP_TEXT, b""))
    f = r.recv_json()
    assert f["type"] == "error" and f["code"] == "bad_json", f
    r.send_frame(OP_TEXT, msg("m-z", "空帧之后"))
    expect_echo(r, "m-z", "空帧之后")


def case_one_byte_fragments(r):
    text = "碎片" + "x" * 1200
    m = msg("m-frag", text)
    parts = [frame(OP_TEXT if i == 0 else OP_CONT, m[i:i + 1], fin=i == len(m) - 1)
             for i in range(len(m))]
    r.sock.sendall(b"".join(parts))
    expect_echo(r, "m-frag", text)


def case_frame_byte_by_byte(r):
    r.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    text = "一个字节一个字节地发送"
    for b in frame(OP_TEXT, msg("m-bytes", text)):
        r.sock.sendall(bytes([b]))
        time.sleep(0.002)
    expect_echo(r, "m-bytes", text)


def case_ping_inside_fragmented_message(r):
    text = "中间夹着一个ping"
    m = msg("m-ping", text)
    r.sock.sendall(frame(OP_TEXT, m[:10], fin=False) + frame(OP_PING, b"in-between") +
                   frame(OP_CONT, m[10:], fin=True))
    expect_echo(r, "m-ping", text)


def case_ping_flood(r):
    r.sock.sendall(b"".join(frame(OP_PING, struct.pack("!I", i)) for i in range(3000)))
    r.send_frame(OP_TEXT, msg("m-flood", "ping 风暴之后"))
    expect_echo(r, "m-flood", "ping 风暴之后")


FRAME_CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(FRAME_CASES))
def test_malformed_or_awkward_frames(server_factory, name):
    srv = server_factory(*flags(*FAST))
    r = RawWS(srv.port)
    try:
        r.hello(customer_id=f"u-frame-{name}")
        FRAME_CASES[name](r)
    finally:
        r.close()
    assert healthz(srv.port)["status"] == "ok"
    run(chat(srv, f"u-after-{name}", 1))


# --------------------------------------------------------------------------- malformed HTTP


def upgrade_lines(port, drop=(), extra=()):
    lines = [f"GET /chat HTTP/1.1", f"Host: {HOST}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: redress.chat.v1"]
    lines = [ln for ln in lines if not any(ln.startswith(d) for d in drop)] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


HTTP_CASES = {
    "no-key": lambda p: upgrade_lines(p, drop=("Sec-WebSocket-Key",)),
    "bad-key": lambda p: upgrade_lines(p, drop=("Sec-WebSocket-Key",),
                                       extra=("Sec-WebSocket-Key: !!notbase64!!",)),
    "version-8": lambda p: upgrade_lines(p, drop=("Sec-WebSocket-Version",),
                                         extra=("Sec-WebSocket-Version: 8",)),
    "no-connection": lambda p: upgrade_lines(p, drop=("Connection",)),
    "huge-header": lambda p: upgrade_lines(p, extra=("X-Big: " + "a" * 100000,)),
    "many-headers": lambda p: upgrade_lines(p, extra=[f"X-H{i}: {i}" for i in range(3000)]),
    "nul-in-header": lambda p: upgrade_lines(p, extra=("X-Nul: a\0b",)),
    "tls-client-hello": lambda p: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),
    "http2-preface": lambda p: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0" * 64,
    "content-length-lie": lambda p: (f"POST /healthz HTTP/1.1\r\nHost: {HOST}\r\n"
                                     "Content-Length: 99999999999\r\n\r\nabc").encode(),
    "chunked-garbage": lambda p: (f"POST /chat HTTP/1.1\r\nHost: {HOST}\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\nzzzz\r\n").encode(),
    "header-no-colon": lambda p: upgrade_lines(p, extra=("this line has no colon",)),
    "absolute-uri": lambda p: upgrade_lines(p).replace(
        b"GET /chat", f"GET http://{HOST}:{p}/chat".encode(), 1),
}


# libWebSockets 4.1 accepts some of the others (version 8 is hybi-08, a key that is not base64 is
# taken as is); what matters there is that the server stays healthy.
MUST_NOT_UPGRADE = {"no-key", "huge-header", "tls-client-hello", "http2-preface",
                    "content-length-lie", "chunked-garbage"}


@pytest.mark.parametrize("name", sorted(HTTP_CASES))
def test_malformed_http_requests(server_factory, name):
    server = server_factory(*flags())
    s = socket.create_connection((HOST, server.port), timeout=2)  # no answer is fine too
    try:
        try:
            s.sendall(HTTP_CASES[name](server.port))
        except OSError:
            pass  # the server may close before reading everything
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        s.close()
    if name in MUST_NOT_UPGRADE:
        assert not data.startswith(b"HTTP/1.1 101"), \
            f"{name}: an invalid upgrade was accepted: {data[:200]!r}"
    h = healthz(server.port)
    assert h["status"] == "ok"


# --------------------------------------------------------------------------- kill -9 rounds


def integrity(db_path):
    """PRAGMA integrity_check on the database a killed server left (read-only; WAL included)."""
    assert os.path.exists(db_path), f"no database at {db_path}"
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()
    assert rows == [("ok",)], f"integrity_check after kill -9: {rows}"


class Book:
    """What the clients know: tokens that were welcomed, messages sent and acknowledged."""

    def __init__(self):
        self.tokens = []    # every token a welcome carried
        self.sent = {}      # token -> {id: text}
        self.acked = {}     # token -> {id: seq}


def remember(book, token):
    book.tokens.append(token)
    book.sent.setdefault(token, {})
    book.acked.setdefault(token, {})


async def open_conversations(srv, book, n):
    for i in range(n):
        c = await connect(srv)
        w = await c.hello(customer_id=f"u-kill-{i}")
        remember(book, w["token"])
        await c.close()


async def hello_burst(srv, book, round_no, rng):
    """Six hellos at once; the server is killed after a random number of welcomes."""
    kill_after = rng.randint(0, 5)
    welcomed = asyncio.Event()
    count = 0

    async def one(i):
        nonlocal count
        c = await connect(srv)
        try:
            await c.send({"type": "hello", "customer": {"id": f"u-burst-{round_no}-{i}"}})
            w = await c.expect("welcome")
            remember(book, w["token"])
            count += 1
            if count > kill_after:
                welcomed.set()
            await c.drain(0.5)
        except GONE:
            pass
        finally:
            await c.close()

    tasks = [asyncio.ensure_future(one(i)) for i in range(6)]
    if kill_after == 0:
        await asyncio.sleep(rng.random() * 0.05)
    else:
        await asyncio.wait_for(welcomed.wait(), TIMEOUT)
    srv.kill9()
    await asyncio.gather(*tasks, return_exceptions=True)


async def stream(srv, book, round_no, rng):
    """Two conversations stream messages; the server is killed after a random number of acks."""
    tokens = rng.sample(book.tokens, 2)
    target = rng.randint(1, 30)
    acks = 0
    enough = asyncio.Event()

    async def one(token):
        nonlocal acks
        c = await connect(srv)
        try:
            await c.resume(token, 0)
            ids = []
            for k in range(30):
                mid = f"r{round_no}-{token[:6]}-m{k}"
                book.sent[token][mid] = f"第{round_no}轮 {k}"
                ids.append(mid)
                await c.send({"type": "message", "id": mid, "text": book.sent[token][mid]})
            while True:
                f = await c.recv(TIMEOUT)
                if f["type"] == "ack":
                    book.acked[token][f["id"]] = f["seq"]
                    acks += 1
                    if acks >= target:
                        enough.set()
        except GONE:
            pass
        finally:
            await c.close()

    tasks = [asyncio.ensure_future(one(t)) for t in tokens]
    waiter = asyncio.ensure_future(enough.wait())
    await asyncio.wait([waiter, *tasks], timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    srv.kill9()
    waiter.cancel()
    await asyncio.gather(waiter, *tasks, return_exceptions=True)
    assert acks > 0, f"round {round_no}: no message was acknowledged before the kill"


async def verify(srv, book):
    """Every welcomed token resumes; its log holds every acknowledged message exactly once, at
    the seq of its ack, with seqs 1..N and no gap."""
    for token in book.tokens:
        c = await connect(srv)
        w, replay = await c.resume(token, 0)
        seqs = [e["seq"] for e in replay]
        assert seqs == list(range(1, w["seq"] + 1)), f"{token}: seqs {seqs}"
        mine = {}
        for e in replay:
            if e.get("from") == "customer":
                assert e["id"] not in mine, f"{token}: {e['id']} stored twice"
                mine[e["id"]] = e["seq"]
                assert e["text"] == book.sent[token].get(e["id"]), f"{token}: {e}"
        for mid, seq in book.acked[token].items():
            assert mine.get(mid) == seq, f"{token}: acknowledged {mid} (seq {seq}) missing " \
                                         f"after kill -9 (seed {SEED})"
        await c.close()


def test_kill9_rounds_with_integrity_check(server_factory):
    rng = random.Random(SEED)
    print(f"soak kill -9 seed {SEED}")
    srv = server_factory(*flags(*FAST))
    book = Book()
    run(open_conversations(srv, book, 2))  # streams need conversations from the start
    kinds = ["startup", "hello", "stream"] * 3
    rng.shuffle(kinds)
    for round_no, kind in enumerate(kinds):
        if not srv.running:
            srv.start()
        if kind == "startup":
            srv.kill9()
        elif kind == "hello":
            run(hello_burst(srv, book, round_no, rng))
        else:
            run(stream(srv, book, round_no, rng))
        integrity(srv.db_path)
    srv.start()
    run(verify(srv, book))
    report("kill -9 rounds", len(kinds))
    report("welcomed tokens that resumed", len(book.tokens))
    report("acknowledged messages found after the kills",
           sum(len(a) for a in book.acked.values()))
    srv.stop()
    integrity(srv.db_path)
