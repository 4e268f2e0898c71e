"""Bad input and limits (docs/protocol.md, "Transport", "error", "Close codes"): every bad
frame gets an error with the right code and the connection stays; frames over the size limit
close with 1009; the rate limit drops and does not acknowledge; hello and idle timeouts."""

import asyncio
import contextlib
import json
import random
import resource
import time

import pytest
import websockets.exceptions

from redress_client import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS,
                            connect, healthz, run, try_upgrade)

MAX_TEXT = 10
FAST = ("--limits.rate_per_sec", "100000", "--limits.rate_burst", "100000")


@pytest.fixture
def lim_server(server_factory):
    """Short texts (10 characters) and no practical rate limit, so a test can send many bad
    frames in a row."""
    return server_factory("--limits.max_text_chars", str(MAX_TEXT), *FAST)


async def started(server):
    c = await connect(server)
    await c.hello()
    return c


async def still_works(c, mid="m-ok"):
    """The connection is alive and the conversation goes on: a message is acknowledged."""
    await c.send({"type": "message", "id": mid, "text": "还在"})
    frames = await c.recv_until(lambda f: f["type"] in ("ack", "error"))
    assert frames[-1]["type"] == "ack" and frames[-1]["id"] == mid, frames
    return frames[-1]


async def errors_for(c, frames, code, with_id=None):
    """Sends each frame (a str, or an object sent as JSON) and expects `code` for each."""
    for f in frames:
        if isinstance(f, str):
            await c.send_text(f)
        else:
            await c.send(f)
        err = await c.recv()
        assert err["type"] == "error", f"sent {f!r}, got {err!r} instead of error {code}"
        assert err["code"] == code, f"sent {f!r}, got {err!r}, expected code {code}"
        if with_id is not None and isinstance(f, dict) and isinstance(f.get("id"), str):
            assert err.get("id") == f["id"], f"error for {f!r} lacks its id: {err!r}"


# --------------------------------------------------------------------------- bad frames


def test_bad_json(lim_server):
    async def go():
        c = await started(lim_server)
        await errors_for(c, ["{not json", "", "{\"type\":\"message\"", "{'type':'hello'}",
                             "\"just a string\"", "nul"], "bad_json")
        await still_works(c)

    run(go())


def test_json_that_is_not_an_object(lim_server):
    async def go():
        c = await started(lim_server)
        await errors_for(c, ["[1,2]", "42", "-1.5e3", "null", "true", "[]",
                             '[{"type":"message","id":"m","text":"x"}]'], "bad_json")
        await still_works(c)

    run(go())


def test_bad_json_before_hello(lim_server):
    async def go():
        c = await connect(lim_server)
        await errors_for(c, ["{", "[]"], "bad_json")
        await c.hello()

    run(go())


def test_unknown_type(lim_server):
    async def go():
        c = await started(lim_server)
        await errors_for(c, [{"type": "bogus"}, {"type": ""}, {"type": "MESSAGE", "id": "a",
                                                                "text": "x"},
                             {"type": "welcome"}, {"type": "ack", "id": "m", "seq": 1}],
                         "unknown_type")
        await still_works(c)

    run(go())


def test_missing_or_non_string_type(lim_server):
    async def go():
        c = await started(lim_server)
        await errors_for(c, [{}, {"id": "m-1", "text": "hi"}, {"type": None}, {"type": 5},
                             {"type": ["message"]}], "unknown_type")
        await still_works(c)

    run(go())


def test_missing_fields_in_message(lim_server):
    async def go():
        c = await started(lim_server)
        await c.send({"type": "message", "text": "没有id"})
        err = await c.expect_error("missing_field")
        assert "id" not in err
        await c.send({"type": "message", "id": "m-notext"})
        await c.expect_error("missing_field", id="m-notext")
        await c.send({"type": "message"})
        await c.expect_error("missing_field")
        await still_works(c)

    run(go())


def test_missing_fields_in_hello(lim_server):
    async def go():
        c = await connect(lim_server)
        await errors_for(c, [{"type": "hello"}, {"type": "hello", "customer": {}},
                             {"type": "hello", "customer": {"name": "张先生"}}], "missing_field")
        await c.hello()

    run(go())


def test_bad_message_id(lim_server):
    async def go():
        c = await started(lim_server)
        await errors_for(c, [{"type": "message", "id": "", "text": "hi"},
                             {"type": "message", "id": "x" * 65, "text": "hi"},
                             {"type": "message", "id": 5, "text": "hi"},
                             {"type": "message", "id": ["m"], "text": "hi"}], "bad_field")
        await c.send({"type": "message", "id": "x" * 64, "text": "hi"})
        ack = await c.expect("ack")
        assert ack["id"] == "x" * 64

    run(go())


def test_bad_text(lim_server):
    async def go():
        c = await started(lim_server)
        await errors_for(c, [{"type": "message", "id": "m-empty", "text": ""},
                             {"type": "message", "id": "m-ws", "text": "   \t\r\n "},
                             {"type": "message", "id": "m-long", "text": "a" * (MAX_TEXT + 1)},
                             {"type": "message", "id": "m-num", "text": 42},
                             {"type": "message", "id": "m-obj", "text": {"t": "x"}}],
                         "bad_field", with_id=True)
        # none of them was stored: the next message takes seq 3
        ack = await still_works(c)
        assert ack["seq"] == 3

    run(go())


def test_text_limit_counts_characters_not_bytes(lim_server):
    async def go():
        c = await started(lim_server)
        ok = "退款" * (MAX_TEXT // 2)  # 10 characters, 30 bytes
        await c.send({"type": "message", "id": "m-cjk", "text": ok})
        ack = await c.expect("ack")
        assert ack["id"] == "m-cjk"
        await c.drain(0.3)
        await errors_for(c, [{"type": "message", "id": "m-cjk11", "text": ok + "吗"}],
                         "bad_field", with_id=True)
        emoji = "😀" * MAX_TEXT  # 10 code points outside the BMP, 40 bytes
        await c.send({"type": "message", "id": "m-emoji", "text": emoji})
        ack = await c.expect("ack")
        assert ack["id"] == "m-emoji"

    run(go())


def test_text_of_unicode_white_space_only(lim_server):
    async def go():
        c = await started(lim_server)
        await errors_for(c, [{"type": "message", "id": "m-ideo", "text": "\u3000\u3000"},
                             {"type": "message", "id": "m-nbsp", "text": "\u00a0 \u2003"}],
                         "bad_field", with_id=True)
        await still_works(c)

    run(go())


def test_bad_customer(lim_server):
    async def go():
        c = await connect(lim_server)
        await errors_for(c, [{"type": "hello", "customer": {"id": ""}},
                             {"type": "hello", "customer": {"id": "u" * 129}},
                             {"type": "hello", "customer": {"id": 10086}},
                             {"type": "hello", "customer": {"id": "u-1", "name": "n" * 65}},
                             {"type": "hello", "customer": {"id": "u-1", "name": 7}},
                             {"type": "hello", "customer": {"id": "u-1", "channel": "fax"}},
                             {"type": "hello", "customer": {"id": "u-1", "channel": "WEB"}},
                             {"type": "hello", "customer": {"id": "u-1", "channel": 1}},
                             {"type": "hello", "customer": "u-1"}], "bad_field")
        # the longest allowed values are accepted
        await c.hello(customer_id="u" * 128, name="名" * 64)

    run(go())


@pytest.mark.parametrize("channel", ["web", "app", "h5", "wechat", "email", "phone", "other"])
def test_every_channel_accepted(lim_server, channel):
    async def go():
        c = await connect(lim_server)
        await c.hello(customer_id="u-ch", channel=channel)

    run(go())


def test_invalid_utf8_text_frame(lim_server):
    bad = [b'{"type":"message","id":"m-u1","text":"\xff\xfe"}',
           b'{"type":"message","id":"m-u2","text":"\xc3\x28"}',
           b'{"type":"message","id":"m-u3","text":"\xc0\xaf"}',      # overlong '/'
           b'{"type":"message","id":"m-u4","text":"\xed\xa0\x80"}',  # UTF-16 surrogate
           b'{"type":"message","id":"m-u5","text":"\xf4\x90\x80\x80"}',  # above U+10FFFF
           b'{"type":"message","id":"m-u6","text":"ok"}\xe4\xb8']  # truncated at the end
    r = RawWS(lim_server.port)
    try:
        r.hello()
        for frame in bad:
            r.send_frame(OP_TEXT, frame)
            kind, *rest = r.recv()
            assert kind == "text", f"sent {frame!r}: got {kind} {rest!r} instead of bad_utf8"
            err = rest[0]
            assert err["type"] == "error" and err["code"] == "bad_utf8", f"{frame!r}: {err!r}"
        r.send_json({"type": "message", "id": "m-ok", "text": "还在"})
        while True:
            f = r.recv_json()
            if f["type"] != "message":
                break
        assert f == {"type": "ack", "id": "m-ok", "seq": 3}, f
    finally:
        r.close()


def test_invalid_utf8_before_hello(lim_server):
    r = RawWS(lim_server.port)
    try:
        r.send_frame(OP_TEXT, b'{"type":"hello","customer":{"id":"\xff"}}')
        err = r.recv_json()
        assert err["type"] == "error" and err["code"] == "bad_utf8", err
        r.hello()
    finally:
        r.close()


def test_binary_frame(lim_server):
    async def go():
        c = await started(lim_server)
        await c.send_bytes(json.dumps({"type": "message", "id": "m-b", "text": "hi"}).encode())
        await c.expect_error("bad_frame")
        await c.send_bytes(b"\x00\x01\x02")
        await c.expect_error("bad_frame")
        ack = await still_works(c)
        assert ack["seq"] == 3

    run(go())


# --------------------------------------------------------------------------- frame size


def framed(mid, total):
    """A message frame of exactly `total` bytes (ASCII)."""
    base = json.dumps({"type": "message", "id": mid, "text": ""})
    return json.dumps({"type": "message", "id": mid, "text": "a" * (total - len(base))})


def test_frame_at_size_limit_accepted(server_factory):
    srv = server_factory("--limits.max_message_bytes", "1024")

    async def go():
        c = await started(srv)
        f = framed("m-1024", 1024)
        assert len(f.encode()) == 1024
        await c.send_text(f)
        ack = await c.expect("ack")
        assert ack["id"] == "m-1024"

    run(go())


def test_frame_over_size_limit_closes_1009(server_factory):
    srv = server_factory("--limits.max_message_bytes", "1024")

    async def go():
        c = await started(srv)
        await c.send_text(framed("m-1025", 1025))
        code, frames = await c.expect_closed()
        assert code == 1009, f"closed with {code}, expected 1009 (frames before: {frames})"
        assert not any(f["type"] == "ack" for f in frames)
        assert healthz(srv.port)["status"] == "ok"

    run(go())


def test_big_frame_before_hello_closes_1009(server_factory):
    srv = server_factory("--limits.max_message_bytes", "1024")

    async def go():
        c = await connect(srv)
        await c.send_text(json.dumps({"type": "hello", "customer": {"id": "u" * 5000}}))
        code, _ = await c.expect_closed()
        assert code == 1009

    run(go())


def test_fragmented_message_reassembled(server_factory):
    srv = server_factory("--limits.max_message_bytes", "1024")

    async def go():
        c = await started(srv)
        f = framed("m-frag", 900)
        await c.ws.send([f[:300], f[300:600], f[600:]])
        ack = await c.expect("ack")
        assert ack["id"] == "m-frag"

    run(go())


def test_fragmented_message_over_limit_closes_1009(server_factory):
    srv = server_factory("--limits.max_message_bytes", "1024")

    async def go():
        c = await started(srv)
        f = framed("m-frag-big", 1200)
        try:
            await c.ws.send([f[:400], f[400:800], f[800:]])
        except Exception:
            pass  # the server may close before the last fragment
        code, _ = await c.expect_closed()
        assert code == 1009

    run(go())


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_drops_without_ack(server_factory):
    srv = server_factory("--limits.rate_per_sec", "2", "--limits.rate_burst", "3")

    async def go():
        c = await started(srv)
        ids = [f"m-r{i}" for i in range(4)]
        for mid in ids:
            await c.send({"type": "message", "id": mid, "text": "限流测试"})
        answers = []
        while len(answers) < len(ids):
            f = await c.recv()
            if f["type"] in ("ack", "error"):
                answers.append(f)
        acked = [f["id"] for f in answers if f["type"] == "ack"]
        limited = [f for f in answers if f["type"] == "error"]
        assert all(f["code"] == "rate_limited" for f in limited), answers
        assert limited, f"4 messages after hello with a burst of 3 were all accepted: {answers}"
        assert acked, f"nothing accepted: {answers}"
        assert len(acked) <= 3, answers
        # the acknowledged ones are the first ones (a bucket does not skip)
        assert acked == ids[:len(acked)], answers
        await c.drain(0.3)
        # the dropped ones were not stored: sending them again later stores them now
        seqs = {}
        for mid in ids[len(acked):]:
            for attempt in range(20):
                await asyncio.sleep(0.6)
                await c.send({"type": "message", "id": mid, "text": "限流测试"})
                frames = await c.recv_until(lambda f: f["type"] in ("ack", "error"))
                if frames[-1]["type"] == "ack":
                    seqs[mid] = frames[-1]["seq"]
                    break
                assert frames[-1]["code"] == "rate_limited", frames
            assert mid in seqs, f"{mid} never accepted"
            await c.drain(0.3)
        # new seqs, after everything acknowledged before: they had not been stored
        assert min(seqs.values()) > max(f["seq"] for f in answers if f["type"] == "ack")
        await c.close()
        z = await connect(srv)
        _, replay = await z.resume(c.token, 0)
        assert [e["id"] for e in replay if e.get("from") == "customer"] == ids

    run(go())


def test_rate_limited_error_names_the_message(server_factory):
    srv = server_factory("--limits.rate_per_sec", "2", "--limits.rate_burst", "3")

    async def go():
        c = await started(srv)
        for i in range(4):
            await c.send({"type": "message", "id": f"m-r{i}", "text": "限流"})
        frames = await c.recv_until(lambda f: f["type"] == "error")
        assert frames[-1]["code"] == "rate_limited"
        assert frames[-1].get("id", "").startswith("m-r"), frames[-1]

    run(go())


def test_flood_closes_1008(server_factory):
    srv = server_factory("--limits.rate_per_sec", "2", "--limits.rate_burst", "3")

    async def go():
        c = await started(srv)
        # 20 frames at once against a bucket of 3: far more than twice the bucket.  (Not
        # hundreds: a server that closes while unread data sits in its socket resets the
        # connection, and the close frame may be lost in the reset.)
        try:
            for i in range(20):
                await c.send({"type": "message", "id": f"m-f{i}", "text": "刷屏"})
        except websockets.exceptions.ConnectionClosed:
            pass  # closed while we were still sending; the close code is checked below
        code, frames = await c.expect_closed()
        assert code == 1008, f"closed with {code}, expected 1008"
        assert any(f["type"] == "error" and f["code"] == "rate_limited" for f in frames)
        assert healthz(srv.port)["status"] == "ok"

    run(go())


# --------------------------------------------------------------------------- timeouts


def test_hello_timeout_closes_1008(server_factory):
    srv = server_factory("--limits.hello_timeout_s", "1")

    async def go():
        c = await connect(srv)
        code, frames = await c.expect_closed(timeout=10)
        assert code == 1008, f"closed with {code}, expected 1008"
        assert frames == []

    run(go())


def test_hello_timeout_does_not_hit_after_hello(server_factory):
    srv = server_factory("--limits.hello_timeout_s", "1")

    async def go():
        c = await started(srv)
        await c.drain(2.5)
        await still_works(c)

    run(go())


def test_idle_peer_that_never_pongs_is_closed(server_factory):
    srv = server_factory("--limits.idle_timeout_s", "2", "--limits.ping_interval_s", "1",
                         "--limits.hello_timeout_s", "60")
    r = RawWS(srv.port)
    try:
        r.hello()
        pings = 0
        while True:
            try:
                kind, *rest = r.recv(timeout=15, auto_pong=False)
            except EOFError:
                raise AssertionError(f"TCP closed without a close frame after {pings} pings; "
                                     f"expected close code 1001")
            if kind == "ping":
                pings += 1
                continue
            assert kind == "close", f"unexpected {kind} {rest!r}"
            assert rest[0] == 1001, f"idle close code {rest[0]}, expected 1001"
            break
        assert pings >= 1, "closed for idleness without a ping first"
    finally:
        r.close()
    assert healthz(srv.port)["status"] == "ok"


def test_peer_answering_pings_stays_past_idle_timeout(server_factory):
    srv = server_factory("--limits.idle_timeout_s", "2", "--limits.ping_interval_s", "1",
                         "--limits.hello_timeout_s", "60")

    async def go():
        c = await started(srv)
        # Silent for 2.5 idle periods; websockets answers the server's pings by itself.
        frames = await c.drain(5.0)
        assert frames == []
        await still_works(c)

    run(go())


def test_raw_peer_answering_pings_stays(server_factory):
    srv = server_factory("--limits.idle_timeout_s", "2", "--limits.ping_interval_s", "1",
                         "--limits.hello_timeout_s", "60")
    r = RawWS(srv.port)
    try:
        r.hello()
        pings = 0
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                kind, *rest = r.recv(timeout=end - time.monotonic(), auto_pong=False)
            except OSError:
                break  # socket.timeout: quiet until the end
            if kind == "ping":
                pings += 1
                r.send_frame(OP_PONG, rest[0])
                continue
            raise AssertionError(f"unexpected {kind} {rest!r} while answering pings")
        assert pings >= 2, f"{pings} pings in 5 s with ping_interval_s 1"
        r.send_json({"type": "message", "id": "m-alive", "text": "在"})
        f = r.recv_json()
        assert f["type"] == "ack" and f["id"] == "m-alive", f
    finally:
        r.close()


# --------------------------------------------------------------------------- garbage


def garbage(rng, i):
    """A bad frame, each answered by exactly one error."""
    k = i % 8
    if k == 0:
        return "".join(rng.choice("{}[]\":,abc 0123456789\\") for _ in range(rng.randint(1, 60)))
    if k == 1:
        return json.dumps(rng.choice([[], [1], 3, -7.5, None, True, "s", [{"type": "hello"}]]))
    if k == 2:
        return json.dumps({"type": "".join(rng.choice("xyz_") for _ in range(8))})
    if k == 3:
        return json.dumps({"type": "message", "id": rng.choice([1, "", None, [], {}]),
                           "text": "x"})
    if k == 4:
        return json.dumps({"type": "message", "id": f"g-{i}",
                           "text": rng.choice(["", " ", 5, None, [], "z" * (MAX_TEXT + 3)])})
    if k == 5:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))  # binary frame
    if k == 6:
        return json.dumps({"type": "hello", "customer": {"id": "u-g"}})  # already started
    return "".join(chr(rng.randint(0x4e00, 0x9fff)) for _ in range(rng.randint(1, 30)))


def test_200_garbage_frames_then_healthy(lim_server):
    async def go():
        c = await started(lim_server)
        rng = random.Random(20261126)
        codes = {}
        for i in range(200):
            g = garbage(rng, i)
            if isinstance(g, bytes):
                await c.send_bytes(g)
            else:
                await c.send_text(g)
            f = await c.recv()
            assert f["type"] == "error", f"garbage {g!r} got {f!r}"
            codes[f["code"]] = codes.get(f["code"], 0) + 1
        assert set(codes) >= {"bad_json", "unknown_type", "bad_field", "bad_frame",
                              "already_started"}, codes
        ack = await still_works(c)
        assert ack["seq"] == 3
        h = healthz(lim_server.port)
        assert h["status"] == "ok"

    run(go())


# An unmasked client frame is not listed: libwebsockets 4.1 accepts it (RFC 6455 5.1 says
# the server must close), and the server cannot see the mask bit.
RAW_VIOLATIONS = {
    "reserved-opcode": lambda r: r.send_frame(0x3, b"abc"),
    "rsv-bits": lambda r: r.send_frame(OP_TEXT, b'{"type":"x"}', rsv=0x4),
    "orphan-continuation": lambda r: r.send_frame(OP_CONT, b"abc"),
    "long-control": lambda r: r.send_frame(OP_PING, b"p" * 200),
    "fragmented-control": lambda r: r.send_frame(OP_PING, b"p", fin=False),
    "interleaved-data": lambda r: (r.send_frame(OP_TEXT, b'{"ty', fin=False),
                                   r.send_frame(OP_BINARY, b"x")),
    "bad-close-code": lambda r: r.send_frame(OP_CLOSE, b"\x03\xe7"),
}


@pytest.mark.parametrize("name", sorted(RAW_VIOLATIONS))
def test_protocol_violation_closes_connection(server, name):
    r = RawWS(server.port)
    try:
        r.hello()
        RAW_VIOLATIONS[name](r)
        code, frames = r.wait_closed(timeout=10)
        assert code is None or code >= 1000, code
    finally:
        r.close()
    assert healthz(server.port)["status"] == "ok"


def test_random_bytes_on_many_sockets(server):
    rng = random.Random(7)
    for i in range(20):
        r = RawWS(server.port)
        try:
            if i % 2:
                r.hello()
            r.sock.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))))
        finally:
            r.close()
    assert healthz(server.port)["status"] == "ok"

    async def go():
        c = await started(server)
        await still_works(c)

    run(go())


def test_max_connections(server_factory):
    srv = server_factory("--limits.max_connections", "2")

    async def go():
        a = await connect(srv)
        b = await connect(srv)
        await a.hello()
        status, headers, sock, _ = try_upgrade(srv.port)
        if sock is not None:
            sock.close()
        assert status != 101, "a third connection was accepted with limits.max_connections 2"
        assert healthz(srv.port)["status"] == "ok"  # plain HTTP still answers
        await a.close()
        deadline = time.monotonic() + 10
        while True:  # the freed slot becomes usable once the server has seen the close
            status, headers, sock, _ = try_upgrade(srv.port)
            if sock is not None:
                sock.close()
            if status == 101:
                break
            assert time.monotonic() < deadline, "slot not freed after a close"
            await asyncio.sleep(0.05)
        await b.hello()

    run(go())


# --------------------------------------------------------------------------- open files

FD_RESERVE = 256  # server/net.c: files besides the connections


def open_files(srv):
    """The server's soft and hard open-file limits, read from /proc."""
    with open(f"/proc/{srv.proc.pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), hard


@contextlib.contextmanager
def soft_nofile(n):
    """This process's soft open-file limit is n while the block runs (a server inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_open_file_limit_follows_max_connections(server_factory):
    """The server sets its soft open-file limit to limits.max_connections + a reserve: up from
    a limit too small for its connections, down from a far larger one (libwebsockets reads an
    fd table that large on every close), never above the hard limit (with a warning)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2000:
        pytest.skip(f"the hard open-file limit is {hard}: too small to move the soft one")
    big = 65536 if hard == resource.RLIM_INFINITY else hard

    with soft_nofile(512):
        raised = server_factory("--limits.max_connections", "1200")
    assert open_files(raised)[0] == 1200 + FD_RESERVE

    with soft_nofile(big):
        lowered = server_factory("--limits.max_connections", "100")
    assert open_files(lowered)[0] == 100 + FD_RESERVE

    async def chat(srv):
        c = await connect(srv)
        await c.hello()
        await still_works(c)
        await c.close()

    run(chat(raised))
    run(chat(lowered))

    if hard != resource.RLIM_INFINITY:
        capped = server_factory("--limits.max_connections", str(hard))
        assert open_files(capped)[0] == hard
        fit = f"about {hard - FD_RESERVE} connections fit, not limits.max_connections {hard}"
        deadline = time.monotonic() + 10
        while fit not in capped.stderr_text():
            assert time.monotonic() < deadline, capped.stderr_text()
            time.sleep(0.05)
        run(chat(capped))
