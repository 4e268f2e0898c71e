"""A flow timer fires even when its conversation is no longer in memory: the next due time is
stored with the conversation (conversations.flow_due), and the server loads a conversation
whose timer is due, runs the timer, and the customer finds its message on resume.  A connected
customer gets the timer's message from the conversation in memory."""

import asyncio
import os
import sqlite3

from conftest import source_root
from redress_client import connect, fetch_metrics, metric_total, run, wait_metric

RULES = os.path.join(source_root(), "tests", "data", "rules", "timer")


async def wait_for(pred, what, timeout=30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def test_timer_of_an_evicted_conversation_fires(server_factory):
    srv = server_factory("--rules.dir", RULES, "--limits.session_memory_s", "1")

    def bot_texts(conv_id):
        with sqlite3.connect(srv.db_path, timeout=10) as db:
            return [r[0] for r in db.execute(
                "SELECT text FROM messages WHERE conversation_id = ? AND sender = 'bot'"
                " ORDER BY seq", (conv_id,))]

    async def go():
        c = await connect(srv)
        await c.hello(customer_id="u-timer")
        conv_id = int(c.conversation[2:])
        await c.say("m-1", "提醒我交话费")
        token = c.token
        await c.close()
        # the conversation leaves memory (limits.session_memory_s = 1) before the timer is due
        await wait_metric(srv, "redress_sessions", 0, timeout=30.0)
        assert not any(t.startswith("提醒：") for t in bot_texts(conv_id))
        await wait_for(lambda: "提醒：提醒我交话费" in bot_texts(conv_id), "the reminder")
        with sqlite3.connect(srv.db_path, timeout=10) as db:
            due = db.execute("SELECT flow_due FROM conversations WHERE id = ?",
                             (conv_id,)).fetchone()[0]
        assert due is None, f"the fired timer is still due at {due}"
        r = await connect(srv)
        _, replay = await r.resume(token, 0)
        assert any(f.get("text") == "提醒：提醒我交话费" for f in replay), replay
        await r.close()
    run(go())


def test_timer_of_a_connected_conversation_fires(server_factory):
    """The customer stays: the sweep fires the timer of the conversation in memory, and a second
    timer set later fires too (each run call queues the conversation for the sweep again)."""
    srv = server_factory("--rules.dir", RULES)

    async def go():
        c = await connect(srv)
        await c.hello(customer_id="u-timer-live")
        await c.say("m-1", "提醒我交话费")
        got = await c.recv_until(lambda f: f.get("text") == "提醒：提醒我交话费", timeout=15)
        assert got[-1]["from"] == "bot", got
        await c.say("m-2", "提醒我还信用卡")
        await c.recv_until(lambda f: f.get("text") == "提醒：提醒我还信用卡", timeout=15)
        assert metric_total(fetch_metrics(srv.port), "redress_sessions") == 1
        await c.close()
    run(go())
