"""Resume (docs/protocol.md, "The event log and seq" and hello/resume): replay after last_seq
exactly once, unknown tokens, bad last_seq, superseding, a second device, and a server
restart."""

import asyncio
import os

from redress_client import connect, run

TEXTS = ["我上周买的手机到现在还没发货", "订单号是 20261126-0042", "申请退款 🙏"]


async def chat(server, n=3, customer_id="u-resume"):
    """A conversation with n customer messages.  Returns (client still open, acks by id,
    texts by id)."""
    c = await connect(server)
    await c.hello(customer_id=customer_id)
    acks, texts = {}, {}
    for i in range(n):
        mid, text = f"m-{i}", TEXTS[i % len(TEXTS)]
        ack, _ = await c.say(mid, text)
        acks[mid], texts[mid] = ack["seq"], text
    await c.drain(0.3)
    return c, acks, texts


def expected_log(c, acks, texts):
    """The full event log as this client knows it: live events plus its own messages."""
    log = dict(c.events)
    for mid, seq in acks.items():
        assert seq not in log, f"ack seq {seq} was also used by a live event {log[seq]}"
        log[seq] = {"type": "message", "from": "customer", "id": mid, "text": texts[mid]}
    return log


def same_event(replayed, known):
    keys = [k for k in known if k not in ("ts",)]
    for k in keys:
        if replayed.get(k) != known[k]:
            return False
    return "ts" not in known or replayed.get("ts") == known["ts"]


def check_replay(replay, log, after):
    seqs = [e["seq"] for e in replay]
    want = sorted(s for s in log if s > after)
    assert seqs == want, f"replayed seqs {seqs}, expected {want}"
    for e in replay:
        assert same_event(e, log[e["seq"]]), f"replayed {e} differs from {log[e['seq']]}"


def test_resume_replays_exactly_after_last_seq(server):
    async def go():
        c, acks, texts = await chat(server)
        log = expected_log(c, acks, texts)
        latest = max(log)
        assert sorted(log) == list(range(1, latest + 1)), f"gaps in the log: {sorted(log)}"
        await c.close()
        cut = acks["m-1"]  # resume from the middle, right at a customer message
        r = await connect(server)
        w, replay = await r.resume(c.token, cut)
        assert w["conversation"] == c.conversation
        assert w["seq"] == latest
        check_replay(replay, log, cut)
        # the customer's own messages come back with from "customer" and their id
        mine = [(e["id"], e["text"]) for e in replay if e.get("from") == "customer"]
        assert mine == [("m-2", texts["m-2"])]
        await r.close()

    run(go())


def test_resume_from_zero_replays_everything(server):
    async def go():
        c, acks, texts = await chat(server)
        log = expected_log(c, acks, texts)
        await c.close()
        r = await connect(server)
        w, replay = await r.resume(c.token, 0)
        assert w["seq"] == max(log)
        check_replay(replay, log, 0)
        assert replay[0]["type"] == "status" and replay[0]["state"] == "open"
        mine = [e["id"] for e in replay if e.get("from") == "customer"]
        assert mine == ["m-0", "m-1", "m-2"]
        await r.close()

    run(go())


def test_resume_at_latest_replays_nothing_then_live(server):
    async def go():
        c, acks, texts = await chat(server, n=1)
        latest = c.last_seq
        await c.close()
        r = await connect(server)
        w, replay = await r.resume(c.token, latest)
        assert w["seq"] == latest and replay == []
        ack, frames = await r.say("m-9", "继续")
        assert ack["seq"] == latest + 1
        assert frames[-1]["from"] == "bot"
        await r.close()

    run(go())


def test_resume_then_continue_no_loss_no_duplicate(server):
    async def go():
        c, acks, texts = await chat(server, n=2)
        await c.close()
        r = await connect(server)
        w, replay = await r.resume(c.token, c.last_seq)
        ack, _ = await r.say("m-new", "新的问题")
        acks["m-new"], texts["m-new"] = ack["seq"], "新的问题"
        await r.drain(0.3)
        await r.close()
        log = expected_log(c, {k: v for k, v in acks.items() if k != "m-new"}, texts)
        log.update(r.events)
        log[ack["seq"]] = {"type": "message", "from": "customer", "id": "m-new",
                           "text": "新的问题"}
        z = await connect(server)
        w, replay = await z.resume(c.token, 0)
        check_replay(replay, log, 0)
        await z.close()

    run(go())


def test_resend_after_reconnect_is_deduplicated(server):
    async def go():
        c = await connect(server)
        await c.hello()
        await c.send({"type": "message", "id": "m-unsure", "text": "到底收到没有"})
        ack = await c.expect("ack")
        await c.drain(0.3)
        latest = c.last_seq
        await c.close()
        # the client lost the connection and is unsure: it resumes and sends again
        r = await connect(server)
        await r.resume(c.token, latest)
        await r.send({"type": "message", "id": "m-unsure", "text": "到底收到没有"})
        again = await r.expect("ack")
        assert again["seq"] == ack["seq"]
        assert await r.drain(0.5) == [], "a duplicate produced new events"
        ack2, _ = await r.say("m-next", "下一条")
        assert ack2["seq"] == latest + 1
        await r.close()

    run(go())


def test_duplicate_detection_survives_restart(server):
    async def go():
        c = await connect(server)
        await c.hello()
        ack, _ = await c.say("m-1", "重启前")
        await c.drain(0.3)
        await c.close()
        return c.token, ack["seq"], c.last_seq

    token, seq, latest = run(go())
    server.restart()

    async def after():
        r = await connect(server)
        await r.resume(token, latest)
        await r.send({"type": "message", "id": "m-1", "text": "重启前"})
        again = await r.expect("ack")
        assert again["seq"] == seq
        ack2, _ = await r.say("m-2", "重启后")
        assert ack2["seq"] == latest + 1
        await r.close()

    run(after())


def test_resume_unknown_token_then_fresh_hello(server):
    async def go():
        c = await connect(server)
        await c.send({"type": "hello", "resume": {"token": os.urandom(16).hex(), "last_seq": 0}})
        await c.expect_error("unknown_token")
        # still usable, and still before hello: a fresh hello works
        w = await c.hello()
        assert w["resumed"] is False
        await c.close()

    run(go())


def test_resume_malformed_token_is_an_error(server):
    async def go():
        c = await connect(server)
        for token in ["", "xyz", "0" * 31, "g" * 32, "0" * 33]:
            await c.send({"type": "hello", "resume": {"token": token, "last_seq": 0}})
            err = await c.recv()
            assert err["type"] == "error" and err["code"] in ("unknown_token", "bad_field"), err
        await c.send({"type": "hello", "resume": {"token": 12345, "last_seq": 0}})
        await c.expect_error("bad_field")
        await c.hello()
        await c.close()

    run(go())


def test_resume_last_seq_beyond_latest_bad_field(server):
    async def go():
        c, acks, texts = await chat(server, n=1)
        latest = c.last_seq
        await c.close()
        r = await connect(server)
        await r.send({"type": "hello", "resume": {"token": c.token, "last_seq": latest + 1}})
        await r.expect_error("bad_field")
        for bad in (-1, "3", 1.5, True):
            await r.send({"type": "hello", "resume": {"token": c.token, "last_seq": bad}})
            await r.expect_error("bad_field")
        # the connection is still usable for a correct resume
        w, replay = await r.resume(c.token, latest)
        assert replay == []
        await r.close()

    run(go())


def test_resume_missing_fields(server):
    async def go():
        c, _, _ = await chat(server, n=0)
        await c.close()
        r = await connect(server)
        await r.send({"type": "hello", "resume": {"last_seq": 0}})
        await r.expect_error("missing_field")
        await r.send({"type": "hello", "resume": {"token": c.token}})
        await r.expect_error("missing_field")
        await r.send({"type": "hello", "resume": "x"})
        await r.expect_error("bad_field")
        await r.resume(c.token, 0)
        await r.close()

    run(go())


def test_second_connection_supersedes_first(server):
    async def go():
        a, acks, texts = await chat(server, n=1)
        b = await connect(server)
        w, replay = await b.resume(a.token, a.last_seq)
        assert replay == []
        code, frames = await a.expect_closed()
        assert code == 4000, f"first connection closed with {code}, expected 4000"
        assert all(f["type"] != "message" for f in frames), frames
        # the new connection carries the conversation on
        ack, _ = await b.say("m-b", "换了手机")
        assert ack["seq"] == a.last_seq + 1
        await b.close()

    run(go())


def test_supersede_chain(server):
    async def go():
        a, _, _ = await chat(server, n=0)
        conns = [a]
        for i in range(3):
            n = await connect(server)
            await n.resume(a.token, a.last_seq)
            code, _ = await conns[-1].expect_closed()
            assert code == 4000
            conns.append(n)
        ack, _ = await conns[-1].say("m-last", "最后一个")
        assert ack["seq"] == a.last_seq + 1
        await conns[-1].close()

    run(go())


def test_second_device_while_first_is_away(server):
    async def go():
        phone, acks, texts = await chat(server, n=1, customer_id="u-two-devices")
        phone_seen = phone.last_seq
        log = expected_log(phone, acks, texts)
        await phone.close()
        # the laptop resumes and talks while the phone is away
        laptop = await connect(server)
        await laptop.resume(phone.token, phone_seen)
        ack_l, _ = await laptop.say("m-laptop", "我在电脑上继续")
        await laptop.drain(0.3)
        log.update(laptop.events)
        log[ack_l["seq"]] = {"type": "message", "from": "customer", "id": "m-laptop",
                             "text": "我在电脑上继续"}
        await laptop.close()
        # the phone comes back and gets exactly what it missed, its own-account message included
        phone2 = await connect(server)
        w, replay = await phone2.resume(phone.token, phone_seen)
        check_replay(replay, log, phone_seen)
        assert [e["id"] for e in replay if e.get("from") == "customer"] == ["m-laptop"]
        await phone2.close()

    run(go())


def test_superseded_connection_messages_are_not_lost(server):
    async def go():
        a, acks, texts = await chat(server, n=1)
        b = await connect(server)
        await b.resume(a.token, a.last_seq)
        code, _ = await a.expect_closed()
        assert code == 4000
        ack, _ = await b.say("m-b1", "第二台设备")
        await b.drain(0.3)
        await b.close()
        z = await connect(server)
        _, replay = await z.resume(a.token, 0)
        assert [e["id"] for e in replay if e.get("from") == "customer"] == ["m-0", "m-b1"]
        await z.close()

    run(go())


def test_seq_continues_after_graceful_restart(server):
    async def go():
        c, acks, texts = await chat(server, n=2)
        log = expected_log(c, acks, texts)
        await c.close()
        return c, log

    c, log = run(go())
    server.restart()

    async def after():
        latest = max(log)
        r = await connect(server)
        w, replay = await r.resume(c.token, latest)
        assert w["seq"] == latest and replay == []
        assert w["conversation"] == c.conversation
        ack, frames = await r.say("m-after", "重启之后")
        assert ack["seq"] == latest + 1
        assert frames[-1]["seq"] > ack["seq"]
        await r.close()
        z = await connect(server)
        w, replay = await z.resume(c.token, 0)
        check_replay([e for e in replay if e["seq"] <= latest], log, 0)
        assert [e["seq"] for e in replay] == list(range(1, w["seq"] + 1))
        await z.close()
        # a new conversation after the restart gets a new token and starts at seq 1
        n = await connect(server)
        wn = await n.hello(customer_id="u-new")
        assert wn["token"] != c.token and wn["conversation"] != c.conversation
        await n.close()

    run(after())


def test_resume_replay_order_with_concurrent_live_events(server):
    async def go():
        c, acks, texts = await chat(server, n=2)
        await c.close()
        r = await connect(server)
        # send a message right behind the resume: its ack and reply must come after the replay
        await r.ws.send('{"type":"hello","resume":{"token":"%s","last_seq":0}}' % c.token)
        await r.send({"type": "message", "id": "m-fast", "text": "快速发送"})
        w = await r.expect("welcome")
        frames = []
        while not (any(f["type"] == "ack" for f in frames) and r.last_seq >= w["seq"]):
            frames.append(await r.recv())
        replay = [f for f in frames if f["type"] != "ack" and f["seq"] <= w["seq"]]
        assert [e["seq"] for e in replay] == list(range(1, w["seq"] + 1)), frames
        ack = [f for f in frames if f["type"] == "ack"][0]
        assert ack == {"type": "ack", "id": "m-fast", "seq": w["seq"] + 1}
        await r.close()

    run(go())


FAST = ("--limits.rate_per_sec", "100000", "--limits.rate_burst", "100000")


async def send_many(c, ids, window=8):
    """Sends one message per id with `window` in flight; returns {id: ack seq}."""
    acks, pending = {}, list(ids)
    in_flight = 0
    while pending or in_flight:
        while pending and in_flight < window:
            mid = pending.pop(0)
            await c.send({"type": "message", "id": mid, "text": f"长对话 {mid}"})
            in_flight += 1
        f = await c.recv()
        if f["type"] == "ack":
            acks[f["id"]] = f["seq"]
            in_flight -= 1
        assert f["type"] != "error", f
    return acks


def test_resume_long_conversation(server_factory):
    srv = server_factory(*FAST)

    async def go():
        c = await connect(srv)
        await c.hello()
        ids = [f"m-{i}" for i in range(400)]
        acks = await send_many(c, ids)
        await c.drain(0.5)
        latest = max(c.last_seq, max(acks.values()))
        await c.close()
        for after in (0, latest // 2):
            r = await connect(srv)
            w, replay = await r.resume(c.token, after)
            assert w["seq"] == latest
            assert [e["seq"] for e in replay] == list(range(after + 1, latest + 1))
            mine = {e["id"]: e["seq"] for e in replay if e.get("from") == "customer"}
            assert mine == {k: v for k, v in acks.items() if v > after}
            await r.close()

    run(go())


def test_shutdown_closes_clients_with_1001(server):
    async def go():
        c = await connect(server)
        await c.hello()
        idle = await connect(server)  # no hello yet
        loop = asyncio.get_running_loop()
        stopping = loop.run_in_executor(None, server.stop)
        code, _ = await c.expect_closed()
        code_idle, _ = await idle.expect_closed()
        await stopping  # exit code 0, clean stderr
        assert code == 1001, f"closed with {code} at shutdown, expected 1001"
        assert code_idle == 1001, f"pre-hello socket closed with {code_idle}, expected 1001"

    run(go())


def test_a_long_replay_arrives_whole(server):
    """Long messages, then a resume from 0: the server writes several queued frames per send
    (ws.c, write_frames), here in bursts larger than its 16 KB stack buffer, with 2- and
    4-byte length headers mixed; every event must arrive whole and in order."""
    async def go():
        c = await connect(server)
        await c.hello(customer_id="u-long")
        acks, texts = {}, {}
        for i in range(6):
            mid = f"m-{i}"
            texts[mid] = f"第{i}次：" + "我在你们商城买的手机一直没发货，" * 120  # 5.8 KB
            ack, _ = await c.say(mid, texts[mid])
            acks[mid] = ack["seq"]
        await c.drain(0.3)
        log = expected_log(c, acks, texts)
        await c.close()
        r = await connect(server)
        w, replay = await r.resume(c.token, 0)
        assert w["seq"] == max(log), (w, max(log))
        check_replay(replay, log, 0)
        assert sum(len(e.get("text", "").encode()) for e in replay) > 2 * 16384, \
            "the replay is too short to need bursts larger than the stack buffer"
        await r.close()
    run(go())
