"""Crash safety (docs/protocol.md: "An event is stored durably before it is sent"; "ack once
the message is durably stored"): kill -9 the server while clients stream messages, restart it
on the same data directory, and check that every acknowledged message and every event a
client saw is still there, exactly once, with seqs 1..N and no gap; that unacknowledged
messages can be sent again with the same id; and that SQLite's integrity check passes."""

import asyncio
import os
import random
import sqlite3
import time

import websockets.exceptions

from redress_client import TIMEOUT, Closed, connect, run

FAST = ("--limits.rate_per_sec", "100000", "--limits.rate_burst", "100000")
CONVERSATIONS = 4
ROUNDS = 4
WINDOW = 4          # messages in flight per conversation
MAX_PER_ROUND = 40  # per conversation and round: the whole log stays under ~350 events
SEED = int(os.environ.get("REDRESS_CRASH_SEED", str(int(time.time()))))

GONE = (Closed, websockets.exceptions.ConnectionClosed, ConnectionError, OSError)


class Conv:
    """What one client knows about its conversation."""

    def __init__(self, i):
        self.i = i
        self.token = None
        self.sent = {}   # id -> text, everything ever sent
        self.acked = {}  # id -> seq
        self.live = {}   # seq -> event seen live (bot/status/...)

    def absorb(self, client):
        for seq, ev in client.events.items():
            if seq in self.live:
                assert same_event(ev, self.live[seq]), \
                    f"conversation {self.i}: seq {seq} was {self.live[seq]}, now {ev} " \
                    f"(seed {SEED})"
            elif ev.get("from") != "customer":
                self.live[seq] = ev

    def record_ack(self, f):
        mid, seq = f["id"], f["seq"]
        assert mid in self.sent, f"ack for an id never sent: {f}"
        if mid in self.acked:
            assert self.acked[mid] == seq, \
                f"{mid} acknowledged with seq {self.acked[mid]} and later {seq} (seed {SEED})"
        self.acked[mid] = seq


def same_event(a, b):
    keys = ("type", "seq", "from", "text", "state", "detail", "options", "ts", "id")
    return all(a.get(k) == b.get(k) for k in keys)


async def open_conversations(srv, convs):
    for conv in convs:
        c = await connect(srv)
        w = await c.hello(customer_id=f"u-crash-{conv.i}")
        conv.token = w["token"]
        conv.absorb(c)
        await c.close()


async def verify(srv, conv):
    """Resumes from 0 and checks the log against what the client knows; then sends every
    unacknowledged message again.  Returns the open client."""
    c = await connect(srv)
    w, replay = await c.resume(conv.token, 0)
    ctx = f"conversation {conv.i} (seed {SEED})"
    seqs = [e["seq"] for e in replay]
    assert seqs == list(range(1, w["seq"] + 1)), f"{ctx}: replay seqs {seqs}"
    by_seq = {e["seq"]: e for e in replay}
    mine = [e for e in replay if e.get("from") == "customer"]
    ids = [e["id"] for e in mine]
    dups = {i for i in ids if ids.count(i) > 1}
    assert not dups, f"{ctx}: messages stored twice: {sorted(dups)}"
    for e in mine:
        assert e["id"] in conv.sent, f"{ctx}: a message nobody sent: {e}"
        assert e["text"] == conv.sent[e["id"]], f"{ctx}: text changed: {e}"
    for mid, seq in conv.acked.items():
        e = by_seq.get(seq)
        assert e is not None and e.get("from") == "customer" and e.get("id") == mid, \
            f"{ctx}: acknowledged {mid} (seq {seq}) missing after kill -9; log has {e}"
    for seq, ev in conv.live.items():
        assert seq in by_seq and same_event(by_seq[seq], ev), \
            f"{ctx}: event seen live {ev} differs after kill -9: {by_seq.get(seq)}"
    conv.absorb(c)
    stored = {e["id"]: e["seq"] for e in mine}
    for mid in [m for m in conv.sent if m not in conv.acked]:
        await c.send({"type": "message", "id": mid, "text": conv.sent[mid]})
        frames = await c.recv_until(lambda f: f["type"] in ("ack", "error"))
        ack = frames[-1]
        assert ack["type"] == "ack" and ack["id"] == mid, f"{ctx}: resend of {mid}: {frames}"
        if mid in stored:
            assert ack["seq"] == stored[mid], f"{ctx}: {mid} stored as {stored[mid]}, " \
                f"acked again as {ack['seq']}"
        else:
            assert ack["seq"] > w["seq"], f"{ctx}: new {mid} got an old seq {ack['seq']}"
        conv.record_ack(ack)
    return c


async def stream(c, conv, round_no):
    """Sends messages with WINDOW in flight until the connection dies."""
    outstanding = set()
    room = asyncio.Event()
    room.set()

    async def reader():
        while True:
            f = await c.recv(timeout=TIMEOUT)
            if f["type"] == "ack":
                conv.record_ack(f)
                outstanding.discard(f["id"])
                room.set()
            elif f["type"] == "error":
                raise AssertionError(f"conversation {conv.i}: error while streaming: {f}")

    async def sender():
        for k in range(MAX_PER_ROUND):
            while len(outstanding) >= WINDOW:
                room.clear()
                await asyncio.wait_for(room.wait(), TIMEOUT)
            mid = f"c{conv.i}-r{round_no}-m{k}"
            text = f"第{round_no}轮第{k}条：快递还没到"
            conv.sent[mid] = text
            outstanding.add(mid)
            await c.send({"type": "message", "id": mid, "text": text})
        await asyncio.sleep(3600)  # idle until the kill

    tasks = [asyncio.ensure_future(reader()), asyncio.ensure_future(sender())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION, timeout=60)
        for t in done:
            e = t.exception()
            if e is not None and not isinstance(e, GONE):
                raise e
        assert done, f"conversation {conv.i}: server never died"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conv.absorb(c)
        await c.close()


async def round_with_kill(srv, convs, clients, round_no, rng):
    """Streams on every conversation and kills the server after a random number of acks in
    this round, while messages are still in flight."""
    base = sum(len(c.acked) for c in convs)
    target = rng.randint(1, CONVERSATIONS * (MAX_PER_ROUND - WINDOW))

    async def killer():
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while sum(len(c.acked) for c in convs) - base < target:
            assert asyncio.get_running_loop().time() < deadline, \
                f"round {round_no}: only {sum(len(c.acked) for c in convs) - base} acks"
            await asyncio.sleep(0.001)
        srv.kill9()
        in_flight = sum(len(c.sent) - len(c.acked) for c in convs)
        print(f"round {round_no}: killed after {target} acks, {in_flight} in flight")

    await asyncio.gather(killer(), *(stream(c, conv, round_no) for c, conv in
                                     zip(clients, convs)))


def test_kill9_rounds_lose_no_acknowledged_message(server_factory):
    rng = random.Random(SEED)
    print(f"crash test seed {SEED}")
    srv = server_factory(*FAST)
    convs = [Conv(i) for i in range(CONVERSATIONS)]
    run(open_conversations(srv, convs))
    total_acked = []

    for round_no in range(ROUNDS):
        async def one_round():
            print(f"round {round_no}: acked so far {[len(c.acked) for c in convs]}")
            clients = [await verify(srv, conv) for conv in convs]
            await round_with_kill(srv, convs, clients, round_no, rng)

        run(one_round())
        total_acked.append(sum(len(c.acked) for c in convs))
        srv.start()

    async def final():
        for conv in convs:
            c = await verify(srv, conv)  # resends whatever was never acknowledged
            await c.drain(0.3)
            conv.absorb(c)
            await c.close()
        for conv in convs:  # and now everything ever sent is there exactly once
            c = await connect(srv)
            w, replay = await c.resume(conv.token, 0)
            ids = sorted(e["id"] for e in replay if e.get("from") == "customer")
            assert ids == sorted(conv.sent), f"conversation {conv.i}: final log differs"
            await c.close()

    run(final())
    assert total_acked[-1] > 0, "no message was acknowledged in any round"
    srv.stop()
    check_integrity(srv.db_path)


def test_kill9_right_after_ack(server_factory):
    srv = server_factory(*FAST)

    async def before():
        c = await connect(srv)
        await c.hello()
        await c.send({"type": "message", "id": "m-1", "text": "刚确认就崩溃"})
        ack = await c.expect("ack")
        srv.kill9()
        return c.token, ack["seq"]

    token, seq = run(before())
    srv.start()

    async def after():
        c = await connect(srv)
        w, replay = await c.resume(token, 0)
        assert w["seq"] >= seq
        e = [e for e in replay if e["seq"] == seq]
        assert e and e[0]["from"] == "customer" and e[0]["id"] == "m-1", replay
        assert e[0]["text"] == "刚确认就崩溃"
        ack, _ = await c.say("m-2", "重启后继续")
        assert ack["seq"] == w["seq"] + 1
        await c.close()

    run(after())
    srv.stop()
    check_integrity(srv.db_path)


def test_kill9_before_any_conversation_then_start(server_factory):
    srv = server_factory(*FAST)
    srv.kill9()
    srv.start()

    async def go():
        c = await connect(srv)
        await c.hello()
        await c.say("m-1", "你好")
        await c.close()

    run(go())
    srv.stop()
    check_integrity(srv.db_path)


def check_integrity(db_path):
    assert os.path.exists(db_path), f"no database at {db_path}"
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()
    assert rows == [("ok",)], f"integrity_check: {rows}"
