"""Escalation rules (rules/escalation.lua) end to end, over the real chat protocol.

A real `redress serve` runs the shipped rules (rules/); a real WebSocket client plays the
customer.  Each rule must fire on its trigger - a status event `escalated` whose detail.reason
names the rule - and ordinary complaints must not escalate over several turns.  The summary the
flow hands to the agents is read back from the conversation's internal `escalation` event in the
SQLite file (reason, priority, group, offered, refused, mood.trend).

What cannot be said over the chat protocol is set up the way production would have it:
  - a VIP customer: the company's systems mark customers.vip; the test sets it in the SQLite
    file while the server is stopped, then starts it again on the same data directory;
  - a promised deadline coming due: the flows' clock (flow.clock_start) is moved forward by
    restarting the server on the same data directory; the customer resumes the conversation and
    the due timer fires, which runs the escalation rules with ctx.event "timer".

After `escalated` the server goes on (agent queue: `queued` or a call-back `record`, bot
messages); these tests only require that `escalated` happens, never what follows it.
"""
import asyncio
import datetime
import json
import math
import os
import sqlite3
import time

from conftest import source_root
from redress_client import TIMEOUT, connect, fetch_metrics, metric_total, run

CLOCK = "2026-03-06 10:00"


def flags(clock=CLOCK, rules=None):
    return ("--rules.dir", rules or os.path.join(source_root(), "rules"),
            "--flow.clock_start", clock,
            "--limits.rate_per_sec", "1000", "--limits.rate_burst", "1000")


def china_minute(epoch):
    """flow.clock_start text (China time, minutes) for an epoch second."""
    t = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) + datetime.timedelta(hours=8)
    return t.strftime("%Y-%m-%d %H:%M")


def db(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def conv_num(conversation):
    return int(conversation.split("-")[1])


def flow_state(path, conversation):
    con = db(path)
    try:
        row = con.execute("SELECT flow_state FROM conversations WHERE id = ?",
                          (conv_num(conversation),)).fetchone()
    finally:
        con.close()
    return json.loads(row[0]) if row and row[0] else None


async def summaries(path, conversation, want=1, timeout=10.0):
    """The escalation summaries stored for the conversation (internal events), oldest first;
    waits until there are `want` of them (the store writes in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        con = db(path)
        try:
            rows = con.execute("SELECT detail FROM events WHERE conversation_id = ? AND "
                               "kind = 'escalation' AND seq IS NULL ORDER BY id",
                               (conv_num(conversation),)).fetchall()
        finally:
            con.close()
        if len(rows) >= want or time.monotonic() > deadline:
            return [json.loads(r[0]) for r in rows]
        await asyncio.sleep(0.05)


class Chat:
    """One customer conversation: sends messages, keeps every status and bot message seen."""

    def __init__(self, client):
        self.c = client
        self.statuses = []
        self.bot = []
        self.n = 0

    @classmethod
    async def open(cls, srv, customer_id):
        c = await connect(srv)
        await c.hello(customer_id=customer_id, name="测试客户")
        return cls(c)

    def take(self, frames):
        for f in frames:
            if f["type"] == "status":
                self.statuses.append(f)
            elif f["type"] == "message" and f["from"] != "customer":
                self.bot.append(f)

    async def send(self, text):
        """Sends one message; returns the seq of its ack.  Every event of the earlier turns has
        arrived by then (the server delivers events in seq order, the ack after them)."""
        self.n += 1
        mid = f"m{time.monotonic_ns()}-{self.n}"  # unique in the conversation, across resumes
        await self.c.send({"type": "message", "id": mid, "text": text})
        frames = await self.c.recv_until(lambda f: f.get("id") == mid and
                                         f["type"] in ("ack", "error"))
        assert frames[-1]["type"] == "ack", f"message {text!r} refused: {frames[-1]}"
        self.take(frames)
        return frames[-1]["seq"]

    def escalations(self):
        return [s for s in self.statuses if s["state"] == "escalated"]

    async def escalated(self, timeout=TIMEOUT):
        """The first `escalated` status (waits for it)."""
        if not self.escalations():
            frames = await self.c.recv_until(
                lambda f: f["type"] == "status" and f["state"] == "escalated", timeout)
            self.take(frames)
        return self.escalations()[0]

    async def close(self):
        await self.c.close()


async def expect_rule(srv, reason, before, trigger, priority=None, customer="u-esc"):
    """Plays `before` (none may escalate), then `trigger`, which must escalate with `reason`.
    Returns (chat, the status, the trigger's ack seq)."""
    chat = await Chat.open(srv, f"{customer}-{time.monotonic_ns()}")
    for text in before:
        await chat.send(text)
    ack = await chat.send(trigger)
    early = chat.escalations()
    assert not early, f"escalated before the trigger {trigger!r}: {[s['detail'] for s in early]}"
    st = await chat.escalated()
    assert st["seq"] > ack, f"escalation {st} is not an answer to {trigger!r} (ack {ack})"
    assert st["detail"].get("reason") == reason, \
        f"{trigger!r}: expected reason {reason!r}, got {st['detail']}; bot said " \
        f"{[m['text'] for m in chat.bot[-3:]]}"
    if priority is not None:
        assert st["detail"].get("priority") == priority, f"{trigger!r}: {st['detail']}"
    # the customer is told what happens next
    said = [m["text"] for m in chat.bot if m["seq"] > ack and m["seq"] < st["seq"]]
    assert any("人工" in t or "专员" in t or "专人" in t for t in said), \
        f"{trigger!r}: the customer was not told about the hand-over: {said}"
    return chat, st, ack


async def expect_none(srv, texts, customer="u-normal"):
    """Plays texts; none may escalate (checked after one more, harmless, message)."""
    chat = await Chat.open(srv, f"{customer}-{time.monotonic_ns()}")
    for text in texts:
        await chat.send(text)
    await chat.send("好的")
    got = chat.escalations()
    assert not got, (f"ordinary conversation escalated: {[s['detail'] for s in got]} after "
                     f"{texts}; bot said {[m['text'] for m in chat.bot]}")
    await chat.close()


# (reason, priority, messages before the trigger, the trigger)
RULES = [
    ("human_request", 2, [], "转人工"),
    ("human_request", 2, ["我的快递丢了"], "人工"),
    ("human_request", 2, ["我的退款没到账"], "别问了，找你们经理来"),
    ("human_request", 2, [], "为什么不给我转人工？"),
    ("threat", 3, [], "退款一直不到账，再不处理我就打12315投诉你们"),
    ("threat", 3, [], "我要去微博曝光你们"),
    ("threat", 3, ["我的信用卡多扣了年费"], "我要向银保监会投诉"),
    ("threat", 3, [], "我已经找了律师，准备起诉"),
    ("threat", 3, [], "再不退钱我就报警"),
    ("anger", 2, [], "你们这个垃圾公司，骗子！！！赶紧退钱！！！"),
    ("anger_rising", 2, ["我的快递三天了还没到", "到底怎么回事？？"], "太差了！到底怎么回事？？"),
    ("bot_failed", 2, ["我的退款没到账，订单号2024030512345，金额50元", "哈哈哈", "1", "呵呵"],
     "对"),
    ("high_severity", 3, [], "我的银行卡被盗刷了，这是我全部积蓄"),
]


def test_each_rule_fires_on_its_trigger(server_factory):
    srv = server_factory(*flags())

    async def go():
        for reason, prio, before, trigger in RULES:
            chat, _, _ = await expect_rule(srv, reason, before, trigger, prio)
            await chat.close()
    run(go(), timeout=300)


def test_messages_sent_behind_the_request_for_a_person_reach_no_bot_turn(server_factory):
    """The customer asks for a person and, without waiting, sends four more messages.  The turn
    of the first hands the chat over; the four that follow go to the agents, never to the
    flow.  The bot's turn for a message runs before that message's ack is written (its events
    get their seqs first), so once every ack has arrived /metrics counts every turn there was."""
    srv = server_factory(*flags())

    async def burst(k):
        c = await connect(srv)
        await c.hello(customer_id=f"u-burst-{k}")
        before = fetch_metrics(srv.port)
        ids = [f"b{i}" for i in range(5)]
        texts = ["转人工"] + [f"补充第{i}点：订单号 2026112{i}，包裹一直没有更新" for i in range(1, 5)]
        for mid, text in zip(ids, texts):
            await c.send({"type": "message", "id": mid, "text": text})
        acked, escalated = set(), []

        def done(f):
            assert f["type"] != "error", f"message refused: {f}"
            if f["type"] == "ack":
                acked.add(f["id"])
            if f["type"] == "status" and f["state"] == "escalated":
                escalated.append(f)
            return acked == set(ids) and escalated

        await c.recv_until(done)
        m = fetch_metrics(srv.port)
        stored = metric_total(m, "redress_messages_in_total") - \
            metric_total(before, "redress_messages_in_total")
        turns = metric_total(m, "redress_turns_total") - metric_total(before, "redress_turns_total")
        assert stored == 5, f"{stored} of 5 messages counted as stored"
        assert turns == 1, \
            f"{turns} bot turns for one request for a person and four messages sent behind it"
        await c.close()

    async def go():
        for k in range(4):
            await burst(k)
    run(go())


def test_the_summary_carries_reason_group_solutions_and_mood_trend(server_factory):
    srv = server_factory(*flags())

    async def go():
        # a threat goes to the senior group
        chat, _, _ = await expect_rule(srv, "threat", [], "我要去消协投诉你们", 3)
        conv = chat.c.conversation
        await chat.close()
        (s,) = await summaries(srv.db_path, conv)
        assert s["reason"] == "threat" and s["priority"] == 3 and s["group"] == "senior", s
        # a refused solution after a misunderstanding: bot_failed, with what was offered/refused
        before = ["我的退款没到账，订单号2024030512345，金额50元", "哈哈哈", "尽快退款", "对", "1"]
        chat, _, _ = await expect_rule(srv, "bot_failed", before, "不同意", 2)
        conv = chat.c.conversation
        await chat.close()
        (s,) = await summaries(srv.db_path, conv)
        assert s["reason"] == "bot_failed" and s["priority"] == 2, s
        assert "group" not in s, s  # the queue picks the category's group
        assert s["offered"] and all(isinstance(t, str) and t for t in s["offered"]), s
        assert len(s["refused"]) == 1 and s["refused"][0] in s["offered"], s
        trend = s["mood"]["trend"]
        assert isinstance(trend, list) and len(trend) == 6, s["mood"]
        assert all(isinstance(v, (int, float)) and 0 <= v <= 100 for v in trend), trend
        assert s["category"] == "ecom.refund" and s["customer"]["vip"] == 0, s
    run(go())


ORDINARY = [
    ["我的快递三天没更新了，运单号SF1234567890", "不知道", "尽快送达", "对"],
    ["信用卡多扣了我50块", "尾号6789", "3月1日", "撤销费用或利息", "对"],
    ["退款什么时候到账？已经申请三天了", "2024030512345", "58元", "尽快退款"],
    ["这个月话费怎么多扣了20块，手机号13812345678", "3月1日", "退还多扣的话费", "对", "1"],
    ["航班延误了四个小时，也没人通知我们", "CA1234", "昨天", "赔偿"],
    ["人工智能客服太笨了，我的退款没到账", "我要投诉你们", "不用转人工，你先帮我查一下"],
    ["我在抖音直播间买的衣服质量很差，用工商银行卡付的315元", "订单号2024030512345", "退货退款"],
]


def test_ordinary_complaints_do_not_escalate(server_factory):
    srv = server_factory(*flags())

    async def go():
        for texts in ORDINARY:
            await expect_none(srv, texts)
    run(go(), timeout=300)


def test_vip_customer(server_factory, tmp_path):
    """VIP comes from customers.vip (the company's systems): set while the server is down."""
    first = server_factory(*flags(), data_dir=tmp_path / "vipdata")

    async def meet():
        chat = await Chat.open(first, "u-vip-1")
        await chat.close()
    run(meet())
    first.stop()
    con = sqlite3.connect(first.db_path, timeout=5)
    try:
        n = con.execute("UPDATE customers SET vip = 2 WHERE external_id = 'u-vip-1'").rowcount
        con.commit()
    finally:
        con.close()
    assert n == 1, "the customer row was not stored"
    srv = server_factory(*flags(), data_dir=tmp_path / "vipdata")

    async def go():
        chat = await Chat.open(srv, "u-vip-1")
        ack = await chat.send("转账三天了还没到账，一直没人管")
        st = await chat.escalated()
        assert st["seq"] > ack and st["detail"] == {**st["detail"], "reason": "vip",
                                                     "priority": 2}, st
        conv = chat.c.conversation
        await chat.close()
        (s,) = await summaries(srv.db_path, conv)
        assert s["customer"]["vip"] == 2 and s["group"] == "vip", s
    run(go())


def test_deadline_about_to_be_missed(server_factory, tmp_path):
    """A promise the flow made escalates once the flows' clock passes its check time (due minus
    the margin) - not before - while the customer is simply connected."""
    data = tmp_path / "deadline"
    first = server_factory(*flags(), data_dir=data)
    talk = ["我的退款没到账，订单号2024030512345，金额30元", "尽快退款", "对", "1", "同意", "5"]

    async def agree():
        chat = await Chat.open(first, "u-deadline")
        for text in talk:
            await chat.send(text)
        assert not chat.escalations(), chat.escalations()
        # (the last turn's events are checked in the replay when the customer comes back)
        token, seq, conv = chat.c.token, chat.c.last_seq, chat.c.conversation
        await chat.close()
        return token, seq, conv
    token, seq, conv = run(agree())
    first.stop()
    st = flow_state(first.db_path, conv)
    (d,) = st["state"]["deadlines"]
    assert d["what"] and d["due"] > d["check"] > d["at"], d
    assert not d.get("done"), d

    async def resume(srv, seq):
        """Resumes the conversation; the events missed since seq must not hold an escalation."""
        c = await connect(srv)
        _, replay = await c.resume(token, seq)
        chat = Chat(c)
        chat.take(replay)
        assert not chat.escalations(), chat.escalations()
        return chat

    # ten minutes before the check: the customer comes back and asks; nothing escalates
    before = server_factory(*flags(china_minute(max(d["at"] + 60, d["check"] - 600))),
                            data_dir=data)

    async def early():
        chat = await resume(before, seq)
        await chat.send("处理到哪了")
        await chat.send("不是")
        assert not chat.escalations(), chat.escalations()
        last = chat.c.last_seq
        await chat.close()
        return last
    seq = run(early())
    before.stop()

    # a minute or two after the check, well before the due time: the due timer runs the rules
    after = server_factory(*flags(china_minute(math.ceil(d["check"] / 60) * 60 + 60)),
                           data_dir=data)
    assert math.ceil(d["check"] / 60) * 60 + 120 < d["due"]

    async def late():
        chat = await resume(after, seq)
        st = await chat.escalated()
        assert st["detail"].get("reason") == "deadline" and st["detail"].get("priority") == 2, st
        told = [m["text"] for m in chat.bot if m["seq"] < st["seq"]]
        assert any("时限快到了" in t and "人工" in t for t in told), told
        await chat.close()
        sums = await summaries(after.db_path, conv)
        assert [s["reason"] for s in sums] == ["deadline"], sums
        assert sums[0]["deadlines"][0]["what"] == d["what"], sums[0]
    run(late())


ENGINE_FLOW = """
return {
  start = "s",
  steps = {
    s = function(chat, st)
      -- only u-engine's question times out (after a second)
      local a, why = chat:ask("你好", { timeout = chat.customer.id == "u-engine" and 1 or nil })
      chat:say("got " .. tostring(a or why))
      chat:wait()
    end,
  },
}
"""

ENGINE_HOOK = """
return function(ctx)
  if ctx.event == "timer" then
    assert(ctx.text == nil and ctx.timer == "timeout" and type(ctx.now) == "number")
    return { reason = "timer_seen", priority = 1, group = "night_shift" }
  end
  assert(ctx.event == "message" and type(ctx.text) == "string" and #ctx.escalations == 0)
  if ctx.text == "bad group" then return { reason = "x", group = "Not A Group" } end
end
"""


def test_engine_runs_the_rules_on_timers_and_checks_the_group(server_factory, tmp_path):
    """The hook contract with a tiny rules directory: ctx.event "timer" after an answer timeout
    (ctx.text nil), group passed to the summary, and an invalid group fails the run
    (flow_error), as an invalid reason does."""
    rules = tmp_path / "rules"
    (rules / "flows").mkdir(parents=True)
    (rules / "flows" / "t.lua").write_text(ENGINE_FLOW, encoding="utf-8")
    (rules / "escalation.lua").write_text(ENGINE_HOOK, encoding="utf-8")
    srv = server_factory(*flags(rules=str(rules)))

    async def go():
        chat = await Chat.open(srv, "u-engine")
        st = await chat.escalated()
        assert st["detail"].get("reason") == "timer_seen", st
        (s,) = await summaries(srv.db_path, chat.c.conversation)
        assert s["group"] == "night_shift" and s["reason"] == "timer_seen", s
        await chat.close()
        chat = await Chat.open(srv, "u-engine-2")
        await chat.send("bad group")
        st = await chat.escalated()
        assert st["detail"].get("reason") == "flow_error", st
        await chat.close()
    run(go())
