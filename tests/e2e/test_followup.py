"""Follow-up after resolution end to end (docs/complaints.md, "Follow-up" and "Customer-visible
progress"), over the real server with the shipped rules (rules/flows/complaint.lua):

  - an agent resolves the chat: the flow asks the satisfaction survey (CSAT 1-5, NPS 0-10, a
    comment); the answers land in the `surveys` row of the SQLite file with answered_at, and the
    complaint record is closed;
  - the customer does not answer: GET /api/complaints/followups (an agent's cookie) lists the
    follow-up (asked_at set, answered_at null), and after 72 hours (followup_pending_h; a restart
    on the same data with a later --flow.clock_start) it is overdue;
  - the customer asks where the complaint stands: the bot answers in the chat with the record's
    number and status.

Every wait is for a frame or a database row, with a timeout; nothing sleeps for timing."""

import asyncio
import json
import os
import time

from agent_client import (
    RECORD_RE, connect_agent, http_request, is_status, login, staff, wait_event,
)
from conftest import source_root
from redress_client import connect, db, run, wait_db

RULES = ("--rules.dir", os.path.join(source_root(), "rules"), "--agent.hours", "00:00-24:00")
CLOCK = "2026-11-20 10:00"
COMPLAINT = "我在你们商城买的手机一直没发货，订单号12345678"
CSAT = ["5分 非常满意", "4分 满意", "3分 一般", "2分 不满意", "1分 非常不满意"]
NPS = [str(n) for n in range(11)]


def bot_says(*words):
    """A bot message containing every one of words."""
    return lambda f: f["type"] == "message" and f["from"] == "bot" and \
        all(w in f["text"] for w in words)


class Customer:
    """One chat: sends messages with fresh ids and waits for the bot's answers."""

    def __init__(self, c):
        self.c = c
        self.n = 0
        self.number = None  # the complaint record's number, from its `record` status events

    @classmethod
    async def open(cls, srv, customer_id, name):
        c = await connect(srv)
        await c.hello(customer_id=customer_id, name=name)
        return cls(c)

    def _note(self, frames):
        for f in frames:
            if f["type"] == "status" and f["state"] == "record" and \
                    RECORD_RE.match(f["detail"].get("number") or ""):
                self.number = f["detail"]["number"]

    async def send(self, text):
        self.n += 1
        # unique in the conversation, also across resumes (a repeated id is a duplicate)
        await self.c.send({"type": "message", "id": f"m{time.monotonic_ns()}-{self.n}",
                           "text": text})

    async def wait(self, pred):
        """Frames up to the first for which pred holds; returns that frame."""
        try:
            f, frames = await wait_event(self.c, pred)
        except asyncio.TimeoutError as e:
            raise AssertionError(f"no matching frame; the chat: {self.c.frames[-12:]}") from e
        self._note(frames)
        return f

    async def answer(self, text, *words):
        """Says text; returns the first bot message after it that contains every one of words."""
        await self.send(text)
        return await self.wait(bot_says(*words))


async def escalate_and_resolve(srv, agent, cust):
    """cust complains and asks for a human; agent claims and resolves the chat.  Returns the
    first bot message after the hand-back (the survey's first question)."""
    await cust.answer(COMPLAINT, "什么时候")
    await cust.send("转人工")
    await cust.wait(is_status("queued"))
    conv = cust.c.conversation
    await agent.queue_with(conv)
    await agent.ok("claim", conversation=conv)
    await cust.wait(is_status("agent_joined"))
    await agent.ok("resolve", conversation=conv, resolution="已催促商家今天发货，并补偿5元券")
    await cust.wait(is_status("resolved"))
    await cust.wait(is_status("bot_resumed"))
    return await cust.wait(lambda f: f["type"] == "message" and f["from"] == "bot")


def followups(srv, cookie):
    status, _, doc = http_request(srv.port, "GET", "/api/complaints/followups", cookie=cookie)
    assert status == 200, (status, doc)
    return doc


def test_resolve_then_survey_is_stored_and_the_record_closed(server_factory):
    srv = server_factory(*RULES, "--flow.clock_start", CLOCK)
    wang = staff(srv, "wang", "agent", "王小明")

    async def go():
        agent = await connect_agent(srv, wang)
        cust = await Customer.open(srv, "u-survey", "李女士")
        q = await escalate_and_resolve(srv, agent, cust)
        # resolved by the agent: straight to the satisfaction question (not the question that
        # was pending before the hand-off)
        assert "请为本次服务打个分" in q["text"] and "解决" in q["text"], q
        assert q["options"] == CSAT, q
        number = cust.number
        assert number, "no record number was pushed to the chat"
        conv_id = int(cust.c.conversation.split("-")[1])
        # the question went out: asked, not answered yet
        rows = await wait_db(srv, "SELECT * FROM surveys WHERE conversation_id = ?", (conv_id,))
        assert rows[0]["asked_at"] and rows[0]["answered_at"] is None, dict(rows[0])

        q = await cust.answer("4分 满意", "推荐")
        assert q["options"] == NPS, q
        q = await cust.answer("9", "意见或建议")
        assert q["options"] == ["跳过"], q
        await cust.answer("客服回复很快，谢谢", "感谢您的评价")
        closed = await cust.wait(lambda f: f["type"] == "status" and f["state"] == "record" and
                                 f["detail"]["status"] == "closed")
        assert closed["detail"]["number"] == number, closed

        rows = await wait_db(srv, "SELECT * FROM surveys WHERE conversation_id = ?", (conv_id,),
                             lambda rs: rs and rs[0]["comment"] is not None)
        s = rows[0]
        assert (s["solved"], s["csat"], s["nps"]) == (1, 4, 9), dict(s)
        assert s["comment"] == "客服回复很快，谢谢", dict(s)
        assert s["asked_at"] and s["answered_at"] and s["answered_at"] >= s["asked_at"], dict(s)
        rows = await wait_db(srv, "SELECT * FROM complaints WHERE number = ?", (number,),
                             lambda rs: rs and rs[0]["status"] == "closed")
        assert rows[0]["resolved_at"] and rows[0]["closed_at"], dict(rows[0])
        moves = await wait_db(srv, "SELECT from_status, to_status, actor FROM complaint_events"
                              " WHERE conversation_id = ? AND to_status = 'closed'", (conv_id,))
        assert [(m["from_status"], m["actor"]) for m in moves] == [("resolved", "bot")], \
            [tuple(m) for m in moves]
        # answered: not among the follow-ups waiting for an answer
        assert all(it["number"] != number for it in followups(srv, wang)["items"])
        await agent.close()
        await cust.c.close()
    run(go())


def test_an_unanswered_survey_is_listed_and_becomes_overdue(server_factory, tmp_path):
    data = tmp_path / "followup"
    srv = server_factory(*RULES, "--flow.clock_start", CLOCK, data_dir=data)
    wang = staff(srv, "wang", "agent", "王小明")

    async def first():
        agent = await connect_agent(srv, wang)
        cust = await Customer.open(srv, "u-silent", "赵先生")
        q = await escalate_and_resolve(srv, agent, cust)
        assert q["options"] == CSAT, q
        conv = cust.c.conversation
        # the customer leaves without answering
        await cust.c.close()
        await agent.close()
        return cust.number, conv
    number, conv = run(first())
    conv_id = int(conv.split("-")[1])

    doc = followups(srv, wang)
    items = [it for it in doc["items"] if it["number"] == number]
    assert len(items) == 1, doc
    it = items[0]
    assert it["conversation"] == conv and it["status"] == "resolved", it
    assert it["customer_name"] == "赵先生" and it["asked_at"], it
    assert it["overdue"] is False and it["waited_h"] < 1, it
    assert doc["pending_after_h"] == 72, doc
    with db(srv) as d:
        s = d.execute("SELECT * FROM surveys WHERE conversation_id = ?", (conv_id,)).fetchone()
    assert s["asked_at"] and s["answered_at"] is None, dict(s)
    assert (s["csat"], s["nps"], s["comment"]) == (None, None, None), dict(s)
    srv.stop()

    # four days later (past followup_pending_h = 72, before the record closes by itself after
    # 168 hours): still unanswered, now overdue
    later = server_factory(*RULES, "--flow.clock_start", "2026-11-24 10:00", data_dir=data)
    doc = followups(later, login(later, "wang"))
    items = [it for it in doc["items"] if it["number"] == number]
    assert len(items) == 1, doc
    assert items[0]["overdue"] is True and items[0]["waited_h"] >= 72, items[0]
    assert doc["overdue"] >= 1, doc
    with db(later) as d:
        s = d.execute("SELECT answered_at FROM surveys WHERE conversation_id = ?",
                      (conv_id,)).fetchone()
    assert s["answered_at"] is None


def test_progress_question_is_answered_with_the_record(server_factory):
    srv = server_factory(*RULES, "--flow.clock_start", CLOCK)

    async def go():
        cust = await Customer.open(srv, "u-progress", "钱女士")
        await cust.answer(COMPLAINT, "什么时候")
        await cust.answer("3天前", "怎么处理")
        await cust.answer("1", "以上信息对吗")
        await cust.answer("对", "请选择您希望的方案")
        await cust.answer("1", "同意按这个方案")
        done = await cust.answer("同意", "前完成处理")
        number = cust.number
        assert number and number in done["text"], (number, done)
        # no satisfaction question before the complaint is resolved
        assert not any("打个分" in f.get("text", "") for f in cust.c.frames), cust.c.frames

        a = await cust.answer("我的投诉处理到哪一步了？", "投诉编号")
        assert number in a["text"] and "处理中" in a["text"] and "预计" in a["text"], a
        a = await cust.answer("什么时候能处理好", "投诉编号")
        assert number in a["text"], a
        with db(srv) as d:
            row = d.execute("SELECT status FROM complaints WHERE number = ?", (number,)).fetchone()
        assert row["status"] == "in_progress", dict(row)
        await cust.c.close()
    run(go())


def test_survey_state_survives_in_the_saved_flow(server_factory):
    """The survey is a step of the saved flow: after a restart the customer's late answer is
    still taken (the next question follows)."""
    srv = server_factory(*RULES, "--flow.clock_start", CLOCK)
    wang = staff(srv, "wang", "agent", "王小明")

    async def first():
        agent = await connect_agent(srv, wang)
        cust = await Customer.open(srv, "u-late", "孙先生")
        await escalate_and_resolve(srv, agent, cust)
        await agent.close()
        token, seq = cust.c.token, cust.c.last_seq
        await cust.c.close()
        return token, seq
    token, seq = run(first())
    srv.restart()

    async def again():
        c = await connect(srv)
        await c.resume(token, seq)
        cust = Customer(c)
        q = await cust.answer("5", "推荐")
        assert q["options"] == NPS, q
        rows = await wait_db(srv, "SELECT s.csat FROM surveys s JOIN conversations v"
                             " ON v.id = s.conversation_id WHERE v.token = ?", (token,),
                             lambda rs: rs and rs[0]["csat"] == 5)
        assert rows
        with db(srv) as d:
            st = d.execute("SELECT flow_state FROM conversations WHERE token = ?",
                           (token,)).fetchone()
        assert json.loads(st["flow_state"])["step"] == "survey"
        await c.close()
    run(again())
