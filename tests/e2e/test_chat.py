"""Chat basics (docs/protocol.md): hello/welcome, seq numbering, message/ack/bot reply,
duplicate ids, hello twice, message before hello, refused upgrades, and a message whose turn
the store refuses (undone whole)."""

import asyncio
import json
import os

import pytest

from redress_client import SUBPROTOCOL, TOKEN_RE, connect, db, healthz, run, try_upgrade


def test_hello_welcome_then_open_and_greeting(server):
    async def go():
        c = await connect(server)
        await c.send({"type": "hello", "customer": {"id": "u-10086", "name": "张先生",
                                                     "channel": "web"}})
        w = await c.expect("welcome")
        assert TOKEN_RE.match(w["token"])
        assert w["seq"] == 0
        assert w["resumed"] is False
        assert w["conversation"].startswith("c-")
        st = await c.expect("status")
        assert (st["seq"], st["state"], st["detail"]) == (1, "open", {})
        greet = await c.expect("message")
        assert greet["seq"] == 2 and greet["from"] == "bot"
        assert greet["text"].strip()
        await c.close()

    run(go())


def test_conversations_get_distinct_ids_and_tokens(server):
    async def go():
        seen_tokens, seen_convs = set(), set()
        for i in range(3):
            c = await connect(server)
            w = await c.hello(customer_id=f"u-{i}", channel=["web", "app", "wechat"][i])
            seen_tokens.add(w["token"])
            seen_convs.add(w["conversation"])
            await c.close()
        assert len(seen_tokens) == 3
        assert len(seen_convs) == 3

    run(go())


def test_same_customer_twice_gets_two_conversations(server):
    async def go():
        a = await connect(server)
        b = await connect(server)
        wa = await a.hello(customer_id="u-same")
        wb = await b.hello(customer_id="u-same")
        assert wa["conversation"] != wb["conversation"]
        assert wa["token"] != wb["token"]
        # Both are live at once: neither superseded the other.
        ack_a, _ = await a.say("m-1", "第一个会话")
        ack_b, _ = await b.say("m-1", "第二个会话")
        assert ack_a["seq"] == ack_b["seq"] == 3
        await a.close()
        await b.close()

    run(go())


def test_message_ack_then_bot_reply(server):
    async def go():
        c = await connect(server)
        await c.hello()
        await c.send({"type": "message", "id": "m-1", "text": "我的退款一直没到账"})
        ack = await c.expect("ack")
        assert ack == {"type": "ack", "id": "m-1", "seq": 3}
        frames = await c.recv_until(lambda f: f["type"] == "message")
        reply = frames[-1]
        assert reply["from"] == "bot"
        assert reply["seq"] > ack["seq"]
        await c.close()

    run(go())


def test_seq_strictly_increasing_over_turns(server):
    async def go():
        c = await connect(server)
        await c.hello()
        seqs = [1, 2]
        for i in range(5):
            ack, frames = await c.say(f"m-{i}", f"第{i}条消息")
            events = [f for f in frames if f["type"] in ("message", "status")]
            assert ack["seq"] == seqs[-1] + 1, (ack, seqs)
            seqs.append(ack["seq"])
            seqs.extend(f["seq"] for f in events)
            frames = await c.drain(0.3)
            seqs.extend(f["seq"] for f in frames if f["type"] in ("message", "status"))
        # every seq from 1 to the last one, each once: no gap, no reuse
        assert seqs == list(range(1, len(seqs) + 1))
        await c.close()

    run(go())


def test_duplicate_id_acked_again_not_processed(server):
    async def go():
        c = await connect(server)
        await c.hello()
        ack1, _ = await c.say("m-dup", "订单还没发货")
        await c.drain(0.5)
        before = c.last_seq
        # Same id again (even with another text): same seq, not processed again.
        await c.send({"type": "message", "id": "m-dup", "text": "订单还没发货"})
        again = await c.expect("ack")
        assert again == {"type": "ack", "id": "m-dup", "seq": ack1["seq"]}
        await c.send({"type": "message", "id": "m-next", "text": "请帮我查一下"})
        frames = await c.recv_until(lambda f: f["type"] == "ack")
        assert frames[:-1] == [], f"events after a duplicate, before the next ack: {frames}"
        ack2 = frames[-1]
        assert ack2["id"] == "m-next"
        # nothing was stored between the duplicate and the next message
        assert ack2["seq"] == before + 1, (ack2, before)
        frames = await c.recv_until(lambda f: f["type"] == "message")
        assert frames[-1]["from"] == "bot" and frames[-1]["seq"] > ack2["seq"]
        await c.close()
        # The log holds the customer message once.
        r = await connect(server)
        _, replay = await r.resume(c.token, 0)
        ids = [e.get("id") for e in replay if e.get("from") == "customer"]
        assert ids == ["m-dup", "m-next"]
        await r.close()

    run(go())


def test_duplicate_id_with_other_text_keeps_first(server):
    async def go():
        c = await connect(server)
        await c.hello()
        ack1, _ = await c.say("m-1", "第一版")
        await c.drain(0.3)
        await c.send({"type": "message", "id": "m-1", "text": "第二版"})
        again = await c.expect("ack")
        assert again["seq"] == ack1["seq"]
        await c.close()
        r = await connect(server)
        _, replay = await r.resume(c.token, 0)
        mine = [e for e in replay if e.get("from") == "customer"]
        assert [(e["id"], e["text"], e["seq"]) for e in mine] == [("m-1", "第一版", ack1["seq"])]
        await r.close()

    run(go())


def test_hello_twice_already_started(server):
    async def go():
        c = await connect(server)
        await c.hello()
        await c.send({"type": "hello", "customer": {"id": "u-2"}})
        await c.expect_error("already_started")
        # the connection and the conversation are unchanged
        ack, _ = await c.say("m-1", "还在吗")
        assert ack["seq"] == 3
        await c.close()

    run(go())


def test_resume_hello_after_hello_already_started(server):
    async def go():
        a = await connect(server)
        wa = await a.hello(customer_id="u-a")
        b = await connect(server)
        await b.hello(customer_id="u-b")
        await b.send({"type": "hello", "resume": {"token": wa["token"], "last_seq": 0}})
        await b.expect_error("already_started")
        ack, _ = await b.say("m-1", "我是b")
        assert ack["seq"] == 3
        # a was not superseded
        ack_a, _ = await a.say("m-1", "我是a")
        assert ack_a["seq"] == 3
        await a.close()
        await b.close()

    run(go())


def test_message_before_hello_not_ready(server):
    async def go():
        c = await connect(server)
        await c.send({"type": "message", "id": "m-0", "text": "你好"})
        await c.expect_error("not_ready", id="m-0")
        # still usable: hello now works, and the early message was not stored
        w = await c.hello()
        assert w["seq"] == 0
        ack, _ = await c.say("m-0", "你好")
        assert ack["seq"] == 3
        await c.close()

    run(go())


def test_error_frames_are_not_events(server):
    async def go():
        c = await connect(server)
        await c.hello()
        await c.send({"type": "message", "id": "m-0"})
        err = await c.expect_error("missing_field", id="m-0")
        assert "seq" not in err
        ack, _ = await c.say("m-1", "继续")
        assert ack["seq"] == 3
        await c.close()

    run(go())


@pytest.mark.parametrize("path,protocols", [
    ("/chat", ()),
    ("/chat", ("redress.chat.v2",)),
    ("/chat", ("chat",)),
    ("/", (SUBPROTOCOL,)),
    ("/chat2", (SUBPROTOCOL,)),
    ("/healthz", (SUBPROTOCOL,)),
    ("/chat/x", (SUBPROTOCOL,)),
], ids=["no-subprotocol", "other-subprotocol", "chat-subprotocol", "root-path", "chat2-path",
        "healthz-path", "chat-subpath"])
def test_upgrade_refused(server, path, protocols):
    status, headers, sock, _ = try_upgrade(server.port, path, protocols)
    if sock is not None:
        sock.close()
    assert status != 101, f"upgrade to {path} with {protocols} was accepted: {headers}"
    # the server is still fine
    assert healthz(server.port)["status"] == "ok"


def test_upgrade_refused_by_websockets_client(server):
    async def go():
        with pytest.raises(Exception) as ei:
            c = await connect(server, subprotocols=())
            # if the handshake passed, the server must at least not talk the protocol
            await c.hello()
        assert not isinstance(ei.value, AssertionError), ei.value

    run(go())


def test_upgrade_accepted_with_exact_subprotocol(server):
    status, headers, sock, _ = try_upgrade(server.port, "/chat", (SUBPROTOCOL,))
    assert status == 101
    assert headers.get("sec-websocket-protocol") == SUBPROTOCOL
    sock.close()


def test_many_conversations_in_parallel(server):
    async def one(i):
        c = await connect(server)
        await c.hello(customer_id=f"u-par-{i}")
        for k in range(3):
            ack, _ = await c.say(f"m-{k}", f"并发测试{i}-{k}")
        await c.close()
        return c.token

    async def go():
        tokens = await asyncio.gather(*(one(i) for i in range(8)))
        assert len(set(tokens)) == 8

    run(go())


def test_failed_turn_is_undone_whole(server):
    """A customer's message and the bot's turn for it are stored together (server/store.c,
    "Groups").  When the store refuses the bot's reply, the message is not stored either: the
    customer is told to send it again, gets no reply, and the flow goes back to the state the
    store has.  So the message sent again is answered as in a conversation where nothing
    failed, and the log holds each customer message once."""
    texts = ["我上周买的手机到现在还没发货", "订单号是A12345，已经等了八天了"]

    async def turn(c, i):
        ack, frames = await c.say(f"m-{i}", texts[i])
        frames += await c.drain(0.5)
        return ack, [f["text"] for f in frames if f["type"] == "message"]

    async def go():
        a = await connect(server)
        await a.hello(customer_id="u-ref")
        ref = [(await turn(a, i))[1] for i in range(2)]
        assert all(ref), f"the reference conversation got no replies: {ref}"

        b = await connect(server)
        await b.hello(customer_id="u-fail")
        assert (await turn(b, 0))[1] == ref[0]
        conv = int(b.conversation[2:])
        with db(server) as c:
            c.execute("CREATE TRIGGER test_refuse_bot BEFORE INSERT ON messages"
                      f" WHEN NEW.sender = 'bot' AND NEW.conversation_id = {conv}"
                      " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        before = b.last_seq
        await b.send({"type": "message", "id": "m-1", "text": texts[1]})
        await b.expect_error("internal", id="m-1")
        assert await b.drain(0.8) == [], "a reply or an ack came for a message not stored"
        with db(server) as c:
            c.execute("DROP TRIGGER test_refuse_bot")
            rows = c.execute("SELECT sender, text FROM messages WHERE conversation_id = ?"
                             " ORDER BY seq", (conv,)).fetchall()
        assert texts[1] not in [r["text"] for r in rows], "the refused turn's message was kept"

        ack, again = await turn(b, 1)
        assert ack["seq"] > before
        assert again == ref[1], "the flow did not go back to its state before the failed turn"
        await a.close()
        await b.close()
        with db(server) as c:
            mine = c.execute("SELECT client_id FROM messages WHERE conversation_id = ? AND"
                             " sender = 'customer' ORDER BY seq", (conv,)).fetchall()
            states = [json.loads(c.execute("SELECT flow_state FROM conversations WHERE id = ?",
                                           (int(x.conversation[2:]),)).fetchone()[0])
                      for x in (a, b)]
        assert [r[0] for r in mine] == ["m-0", "m-1"]
        # the flow counted two turns and holds the same state as the reference
        assert [s["turn"] for s in states] == [2, 2], [s["turn"] for s in states]
        assert states[1]["state"] == states[0]["state"]

    run(go())


def test_search_sees_each_knowledge_base_edit_at_the_next_message(server_factory, source_dir):
    """The flows' searches share one read snapshot per loop pass (flow_engine_kb_hold): a
    template an editor adds, then deletes, between two messages is found by the next message's
    search, and then no longer.  The flow answers each message with its best hit's title."""
    from agent_client import http_request, staff

    srv = server_factory("--rules.dir", os.path.join(source_dir, "bench",
                                                     "rules-search-every-turn"))
    editor = staff(srv, "editor1", role="editor")
    text, title = "量子雨伞出借登记", "量子雨伞出借"

    async def go():
        c = await connect(srv)
        await c.hello(customer_id="u-kb")
        replies = []
        for i, edit in enumerate(("add", "delete", None)):
            _, frames = await c.say(f"m-{i}", text)
            replies.append(frames[-1]["text"])
            if edit == "add":
                status, _, doc = http_request(srv.port, "POST", "/api/kb/templates", {
                    "key": "quantum-umbrella", "title": title, "category": "general",
                    "severity": 1, "text": "前台可以登记出借量子雨伞。"}, cookie=editor)
                assert status == 201, doc
            elif edit == "delete":
                status, _, doc = http_request(srv.port, "DELETE",
                                              "/api/kb/templates/quantum-umbrella", cookie=editor)
                assert status == 200, doc
        await c.close()
        return replies

    before, added, deleted = run(go())
    assert title not in before
    assert added == "为您找到：" + title
    assert deleted == before
