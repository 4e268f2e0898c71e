"""The agent protocol end to end (docs/protocol.md, "redress agent protocol, version 1"): real
servers with the shipped dialogue flows (rules/), real staff accounts made with `redress user
add` and logged in over HTTP, customers on /chat and agents on /agent at the same time.

Covered: the login gate (4401 / 4403, logout closes the socket), the welcome frame, escalation
by "转人工" into the queue, two agents claiming the same chat at once, the context packet
(every field, past complaints of the same customer), replies both ways while the bot stays
quiet, private notes, transfers (to an agent, to a group, to an offline agent), resolve (past
case in the knowledge base, the flow resumes with its satisfaction question), hand back, the
call-back fallback (nobody available, outside agent.hours), protocol errors, and a queued
hand-off surviving a restart.

Each test starts its own server(s); every wait is for a frame, with a timeout."""

import datetime
import os

from agent_client import (
    RECORD_RE, TS_RE, add_account, check_note, connect_agent, http_request, is_status, login,
    logout, staff, wait_event,
)
from conftest import source_root
from redress_client import connect, fetch_metrics, is_int, metric_total, run, wait_metric

COMPLAINT = "我在你们商城买的手机一直没发货，订单号12345678"
HUMAN = "转人工"
ALWAYS = ("--agent.hours", "00:00-24:00")
HANDLE_S = 300  # agent.handle_s default: the assumed handling time before real ones exist


def rules():
    return ("--rules.dir", os.path.join(source_root(), "rules"))


def start(server_factory, *flags):
    """A server with the shipped flows and escalation rules."""
    return server_factory(*rules(), *flags)


def iso(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


async def customer_escalates(srv, cid, name, text=COMPLAINT):
    """A customer who describes a complaint and then asks for a human.  Waits for the
    `escalated` status.  Returns (client, escalated status frame, frames read after the request)."""
    c = await connect(srv)
    await c.hello(cid, name=name)
    await c.say("m-1", text)
    await c.send({"type": "message", "id": "m-2", "text": HUMAN})
    esc, frames = await wait_event(c, is_status("escalated"))
    acks = [f for f in frames if f["type"] == "ack" and f["id"] == "m-2"]
    assert acks, f"no ack for the request for a human: {frames}"
    assert esc["detail"] == {"reason": "human_request", "priority": 2}, esc
    return c, esc, frames


def is_queued(f):
    return f["type"] == "status" and f["state"] == "queued"


def is_callback(f):
    """The complaint record's status event that promises a call-back (other `record` events
    report the record's lifecycle, docs/complaints.md)."""
    return f["type"] == "status" and f["state"] == "record" and \
        f["detail"].get("status") == "callback"


async def customer_queued(c):
    """Waits for the customer's `queued` status; checks its detail.  Returns it."""
    q, frames = await wait_event(c, lambda f: is_queued(f) or is_callback(f))
    assert q["state"] == "queued", f"expected queued, got a call-back: {frames}"
    d = q["detail"]
    assert set(d) == {"position", "wait_s", "group"}, d
    assert is_int(d["position"]) and is_int(d["wait_s"]) and isinstance(d["group"], str), d
    assert d["wait_s"] % 10 == 0, f"wait_s is not rounded to 10 s: {d}"
    return q


async def claimed(agent, c):
    """agent claims c's chat (it must be in agent's queue first).  Returns the context."""
    await agent.queue_with(c.conversation)
    ok = await agent.ok("claim", conversation=c.conversation)
    joined, _ = await wait_event(c, is_status("agent_joined"))
    assert joined["detail"] == {"agent": agent.welcome["agent"]["name"]}, joined
    return ok["context"]


async def customer_texts_after(c, seq, pred):
    """Customer frames up to the one pred accepts; returns the events with seq > seq among
    them (and in c.events)."""
    _, frames = await wait_event(c, pred)
    return [f for f in frames if f["type"] in ("message", "status") and f["seq"] > seq]


# --------------------------------------------------------------------------- login gate


def test_login_gate_and_welcome(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")
    add_account(srv, "edit", "editor", "编辑")
    editor = login(srv, "edit")
    boss = staff(srv, "boss", "supervisor", "陈主管")

    async def go():
        # no cookie, a cookie that names no session: 4401 right after the upgrade
        for cookie in (None, "redress_session=0123456789abcdef0123456789abcdef"):
            a = await connect_agent(srv, cookie, welcome=False)
            assert await a.expect_closed() == 4401, cookie
        # an editor has kb.read but not agent.chat
        a = await connect_agent(srv, editor, welcome=False)
        assert await a.expect_closed() == 4403

        # the welcome frame
        a = await connect_agent(srv, wang)
        w = a.welcome
        assert w["agent"] == {"username": "wang", "name": "王小明", "role": "agent"}, w
        assert w["supervisor"] is False
        assert "general" in w["groups"] and "ecom" in w["groups"], w["groups"]
        assert len(w["canned"]) > 0, "no canned replies in the welcome"
        assert w["queue"] == [] and w["mine"] == [], w
        s = await connect_agent(srv, boss)
        assert s.welcome["supervisor"] is True
        assert s.welcome["agent"] == {"username": "boss", "name": "陈主管",
                                      "role": "supervisor"}, s.welcome
        # ready: presence and groups
        ok = await a.ok("ready", status="away", groups=["ecom", "bank"])
        assert ok["status"] == "away" and ok["groups"] == ["ecom", "bank"], ok
        ok = await a.ok("ready", status="available")
        assert ok["status"] == "available" and "groups" in ok, ok
        await a.error("bad_field", "ready", status="asleep")

        # two tabs of one login, one tab of another login of the same account
        a2 = await connect_agent(srv, wang)
        other = await connect_agent(srv, login(srv, "wang"))
        logout(srv, wang)
        assert await a.expect_closed() == 4401
        assert await a2.expect_closed() == 4401
        # the other session's socket stays: it still answers
        ok = await other.ok("ready", status="available")
        assert ok["status"] == "available"
        # and the logged-out cookie is refused from now on
        a3 = await connect_agent(srv, wang, welcome=False)
        assert await a3.expect_closed() == 4401
    run(go())


# --------------------------------------------------------------------------- queue and claim


def test_escalation_queue_and_claim_race(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")
    li = staff(srv, "li", "agent", "李小红")

    async def go():
        a = await connect_agent(srv, wang)
        b = await connect_agent(srv, li)
        c, esc, frames = await customer_escalates(srv, "u-race", "张先生")
        # the bot tells the customer what happens before the status
        bot = [f for f in frames if f["type"] == "message" and f["from"] == "bot"
               and f["seq"] < esc["seq"]]
        assert bot and "人工" in bot[-1]["text"], frames
        q = await customer_queued(c)
        # one chat in the ecom group, two agents: 1 x 300 s / 2, rounded up to 10 s
        assert q["detail"] == {"position": 1, "wait_s": HANDLE_S // 2, "group": "ecom"}, q

        items = []
        for agent in (a, b):
            snap, it = await agent.queue_with(c.conversation)
            assert snap["total"] == 1 and len(snap["items"]) == 1, snap
            items.append(it)
        for it in items:
            assert it["state"] == "queued" and it["reason"] == "human_request", it
            assert it["group"] == "ecom" and it["priority"] == 2 and it["position"] == 1, it
            assert it["customer"]["id"] == "u-race" and it["customer"]["name"] == "张先生", it
            assert it["last_text"] == HUMAN, it
            assert isinstance(it["category"], str) and it["category"].startswith("ecom."), it
            assert it["due"] is None, it

        # both claim at the same moment: both frames are on the wire before either answer
        ra = a.new_id()
        rb = b.new_id()
        await a.send({"type": "claim", "id": ra, "conversation": c.conversation})
        await b.send({"type": "claim", "id": rb, "conversation": c.conversation})
        ans_a = await a.answer(ra)
        ans_b = await b.answer(rb)
        kinds = sorted([ans_a["type"], ans_b["type"]])
        assert kinds == ["error", "ok"], f"claim race: {ans_a} / {ans_b}"
        winner, loser, ok, err = (a, b, ans_a, ans_b) if ans_a["type"] == "ok" else \
            (b, a, ans_b, ans_a)
        wname = winner.welcome["agent"]["username"]
        assert err["code"] == "already_claimed", err
        assert wname in err["message"], f"already_claimed does not name the owner: {err}"
        assert ok["context"]["conversation"] == c.conversation
        assert ok["context"]["handoff"]["state"] == "active"
        assert ok["context"]["handoff"]["agent"] == wname

        # the customer hears of exactly one agent: the winner
        joined, _ = await wait_event(c, is_status("agent_joined"))
        assert joined["detail"] == {"agent": winner.welcome["agent"]["name"]}, joined
        r = await winner.ok("reply", conversation=c.conversation, text="您好，我来处理。")
        await wait_event(c, lambda f: f["type"] == "message" and f["seq"] == r["seq"])
        n = sum(1 for f in c.frames if f["type"] == "status" and f["state"] == "agent_joined")
        assert n == 1, f"{n} agent_joined statuses: {c.frames}"
        # the loser's second try fails the same way
        await loser.error("already_claimed", "claim", conversation=c.conversation)

        # the queue no longer lists it; the winner's `mine` does
        for agent in (a, b):
            await agent.queue_without(c.conversation)
        mine = await winner.wait(lambda f: f["type"] == "mine" and f["items"])
        assert [it["conversation"] for it in mine["items"]] == [c.conversation], mine
        assert mine["items"][0]["state"] == "active"
        assert all(f["type"] != "mine" or not f["items"] for f in loser.frames), \
            "the loser was told it owns the chat"
    run(go())


def test_queue_order_follows_claims(server_factory):
    """Three chats queue in the order they came, with positions 1-3; a claim from the middle
    moves only the chats behind it up, and the agents' list keeps the order (agent_queue.c
    keeps it as hand-offs change rather than sorting at each push)."""
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")

    def order(snap):
        return [(it["conversation"], it["position"]) for it in snap["items"]]

    async def listing(agent, *convs):
        """The first queue snapshot that lists exactly convs (older ones stay in the backlog)."""
        return await agent.wait(lambda f: f["type"] == "queue" and
                                sorted(it["conversation"] for it in f["items"]) == sorted(convs))

    async def go():
        a = await connect_agent(srv, wang)
        cs = []
        for i in range(3):
            c, _, _ = await customer_escalates(srv, f"u-order-{i}", f"顾客{i}")
            q = await customer_queued(c)
            # one agent: position x 300 s
            assert q["detail"] == {"position": i + 1, "wait_s": HANDLE_S * (i + 1),
                                   "group": "ecom"}, q
            cs.append(c)
        names = [c.conversation for c in cs]
        snap = await listing(a, *names)
        assert order(snap) == [(names[0], 1), (names[1], 2), (names[2], 3)], snap

        await claimed(a, cs[1])
        q = await customer_queued(cs[2])
        assert q["detail"]["position"] == 2 and q["detail"]["wait_s"] == 2 * HANDLE_S, q
        snap = await listing(a, names[0], names[2])
        assert order(snap) == [(names[0], 1), (names[2], 2)], snap

        await claimed(a, cs[0])
        q = await customer_queued(cs[2])
        assert q["detail"]["position"] == 1 and q["detail"]["wait_s"] == HANDLE_S, q
        snap = await listing(a, names[2])
        assert order(snap) == [(names[2], 1)], snap
        # the first customer heard no new position: a claim moves only those behind it
        assert not [f for f in cs[0].frames if is_queued(f) and f["detail"]["position"] != 1]
    run(go())


# --------------------------------------------------------------------------- context packet


def check_context(ctx, c, customer_id, name):
    """Every field of the context packet (docs/protocol.md) with its type."""
    assert ctx["conversation"] == c.conversation
    cu = ctx["customer"]
    assert cu["id"] == customer_id and cu["name"] == name and cu["channel"] == "web", cu
    assert is_int(cu["vip"]) and is_int(cu["history_count"]), cu
    assert isinstance(ctx["past_complaints"], list)

    e = ctx["escalation"]
    assert e["reason"] == "human_request" and e["priority"] == 2 and e["group"] == "ecom", e
    assert TS_RE.match(e["at"]) and isinstance(e["step"], str) and e["step"], e

    assert isinstance(ctx["category"], str) and ctx["category"].startswith("ecom."), ctx
    assert is_int(ctx["severity"]) and 1 <= ctx["severity"] <= 3, ctx
    mood = ctx["mood"]
    assert is_int(mood["score"]) and isinstance(mood["trend"], list), mood
    assert len(mood["trend"]) >= 2 and all(is_int(v) for v in mood["trend"]), mood
    assert ctx["slots"].get("order_id") == "12345678", ctx["slots"]
    for k in ("summary", "expectation"):
        assert k in ctx and (ctx[k] is None or isinstance(ctx[k], str)), (k, ctx.get(k))
    sol = ctx["solutions"]
    assert isinstance(sol["offered"], list) and isinstance(sol["refused"], list), sol
    assert all(isinstance(t, str) for t in sol["offered"] + sol["refused"]), sol

    rec = ctx["record"]
    assert RECORD_RE.match(rec["number"]), rec
    assert isinstance(rec["status"], str) and rec["status"], rec
    assert rec["due"] is None or TS_RE.match(rec["due"]), rec
    assert isinstance(rec["fields"], dict), rec
    assert rec["fields"].get("description") == COMPLAINT, rec["fields"]

    h = ctx["handoff"]
    assert h["state"] == "active" and isinstance(h["agent"], str), h
    assert TS_RE.match(h["queued_at"]) and TS_RE.match(h["claimed_at"]), h
    assert h["queued_at"] <= h["claimed_at"] and h["transfers"] == 0, h

    assert isinstance(ctx["notes"], list)
    for n in ctx["notes"]:
        check_note(n)

    tr = ctx["transcript"]
    assert isinstance(tr, list) and tr, ctx
    seqs = [t["seq"] for t in tr]
    assert seqs == sorted(set(seqs)), f"transcript not in seq order: {seqs}"
    assert ctx["transcript_total"] == len(tr), (ctx["transcript_total"], len(tr))
    for t in tr:
        assert t["from"] in ("customer", "bot", "agent", "system"), t
        assert isinstance(t["text"], str) and TS_RE.match(t["ts"]), t
    said = [t["text"] for t in tr if t["from"] == "customer"]
    assert said == [COMPLAINT, HUMAN], f"customer texts in the transcript: {said}"
    states = [t["text"] for t in tr if t["from"] == "system"]
    assert states[:1] == ["open"] and "escalated" in states and "queued" in states, states
    # what the customer saw is what the agent reads
    by_seq = {t["seq"]: t for t in tr}
    for seq, ev in c.events.items():
        if seq not in by_seq:
            continue
        t = by_seq[seq]
        if ev["type"] == "message":
            assert (t["from"], t["text"]) == (ev["from"], ev["text"]), (t, ev)
        else:
            assert (t["from"], t["text"]) == ("system", ev["state"]), (t, ev)
    missing = [s for s in c.events if s <= max(seqs) and s not in by_seq]
    assert not missing, f"events the customer got but the transcript lacks: {missing}"


def test_context_packet_resolve_and_past_complaints(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")

    async def go():
        a = await connect_agent(srv, wang)

        # first conversation: escalated, claimed, resolved -> a past case in the knowledge base
        c1, _, _ = await customer_escalates(srv, "u-7", "李女士")
        await customer_queued(c1)
        ctx = await claimed(a, c1)
        check_context(ctx, c1, "u-7", "李女士")
        assert ctx["past_complaints"] == [] and ctx["customer"]["history_count"] == 0, ctx
        assert ctx["handoff"]["agent"] == "wang"
        first_record = ctx["record"]["number"]

        resolution = "已联系仓库加急发货，明天送达并补偿10元优惠券"
        ok = await a.ok("resolve", conversation=c1.conversation, resolution=resolution)
        case = ok["case"]
        assert is_int(case) and case > 0, f"resolve did not save a past case: {ok}"
        rel = await a.wait(lambda f: f["type"] == "released")
        assert rel == {"type": "released", "conversation": c1.conversation,
                       "reason": "resolved"}, rel
        # the customer: resolved, bot_resumed, then the flow's satisfaction question
        res, _ = await wait_event(c1, is_status("resolved"))
        assert res["detail"] == {"resolution": resolution}, res
        nxt = await c1.recv()
        assert nxt["type"] == "status" and nxt["state"] == "bot_resumed" and \
            nxt["detail"] == {}, nxt
        bot, _ = await wait_event(c1, lambda f: f["type"] == "message")
        assert bot["from"] == "bot", bot  # what it says is checked at the end
        # the case, read back over the knowledge-base API with the agent's cookie (kb.read)
        status, _, doc = http_request(srv.port, "GET", f"/api/kb/cases/{case}", cookie=wang)
        assert status == 200, (status, doc)
        assert doc["id"] == case and doc["resolution"] == resolution, doc
        assert doc["category"] == ctx["category"], doc
        assert doc["summary"], doc
        assert doc["outcome"] in ("resolved", "partial", "unresolved"), doc
        await a.queue_without(c1.conversation)

        # second conversation of the same customer: the first is a past complaint
        c2, _, _ = await customer_escalates(srv, "u-7", "李女士")
        await customer_queued(c2)
        ctx2 = await claimed(a, c2)
        check_context(ctx2, c2, "u-7", "李女士")
        assert ctx2["customer"]["history_count"] == 1, ctx2["customer"]
        assert ctx2["record"]["number"] != first_record
        past = ctx2["past_complaints"]
        assert len(past) == 1, past
        p = past[0]
        assert p["conversation"] == c1.conversation, p
        assert TS_RE.match(p["created_at"]), p
        assert p["category"] == ctx["category"] and p["record"] == first_record, p
        assert p["status"] == "resolved" and p["resolution"] == resolution, p
        # `context` again gives the same packet
        again = await a.ok("context", conversation=c2.conversation)
        assert again["context"]["past_complaints"] == past
        assert again["context"]["handoff"]["agent"] == "wang"

        # "the flow resumes (satisfaction survey)": the first bot message after the resolve
        # asks whether it was solved or how satisfied the customer is (docs/complaints.md,
        # "Follow-up"), not the question that was pending before the hand-off
        asked = [f for f in c1.frames if f["type"] == "message" and f["from"] == "bot"
                 and f["seq"] < res["seq"] and "人工" not in f["text"]]
        assert bot["text"] != asked[-1]["text"], \
            f"after resolve the flow repeated its pending question instead of the survey: {bot}"
        assert any(w in bot["text"] for w in ("解决", "满意", "评价", "打分", "打个分")), \
            f"after resolve the flow did not ask for satisfaction: {bot}"
    run(go())


# --------------------------------------------------------------------------- replies and notes


def test_replies_notes_and_a_quiet_bot(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")

    async def go():
        a = await connect_agent(srv, wang)
        tab2 = await connect_agent(srv, wang)  # a second tab shares the account's chats
        c, _, _ = await customer_escalates(srv, "u-talk", "赵先生")
        await customer_queued(c)
        await claimed(a, c)

        # agent -> customer
        text = "您好，我是人工客服小王，已经看到您的订单了。"
        ok = await a.ok("reply", conversation=c.conversation, text=text)
        assert is_int(ok["seq"]), ok
        m, _ = await wait_event(c, lambda f: f["type"] == "message" and f["seq"] == ok["seq"])
        assert m["from"] == "agent" and m["text"] == text, m
        # the owner's sockets see it as a `message` too
        for sock in (a, tab2):
            echo = await sock.wait(lambda f: f["type"] == "message" and f["seq"] == ok["seq"])
            assert echo["from"] == "agent" and echo["text"] == text, echo

        # customer -> agent, and the bot keeps quiet
        said = "好的，谢谢，麻烦尽快处理"
        await c.send({"type": "message", "id": "m-3", "text": said})
        ack, _ = await wait_event(c, lambda f: f["type"] == "ack" and f["id"] == "m-3")
        for sock in (a, tab2):
            got = await sock.wait(lambda f: f["type"] == "message" and f["from"] == "customer")
            assert got["conversation"] == c.conversation and got["seq"] == ack["seq"], got
            assert got["text"] == said, got
        ok2 = await a.ok("reply", conversation=c.conversation, text="好的，我马上联系仓库。")
        between = await customer_texts_after(
            c, ack["seq"], lambda f: f["type"] == "message" and f["seq"] == ok2["seq"])
        assert [f["from"] for f in between if f["type"] == "message"] == ["agent"], \
            f"someone else spoke while the agent owned the chat: {between}"

        # private notes
        note_text = "客户情绪平稳，已承诺明天回电"
        ok = await a.ok("note", conversation=c.conversation, text=note_text)
        check_note(ok["note"])
        assert ok["note"]["author"] == "wang" and ok["note"]["text"] == note_text, ok
        for sock in (a, tab2):
            nf = await sock.wait(lambda f: f["type"] == "note")
            assert nf["conversation"] == c.conversation and nf["note"] == ok["note"], nf
        ctx = (await tab2.ok("context", conversation=c.conversation))["context"]
        assert ctx["notes"] == [ok["note"]], ctx["notes"]
        said_all = [t["text"] for t in ctx["transcript"] if t["from"] == "customer"]
        assert said_all == [COMPLAINT, HUMAN, said], said_all
        # the customer never sees a note: everything up to a later reply is checked
        ok3 = await a.ok("reply", conversation=c.conversation, text="还有什么需要帮忙的吗？")
        await wait_event(c, lambda f: f["type"] == "message" and f["seq"] == ok3["seq"])
        leaked = [f for f in c.frames if note_text in str(f)]
        assert not leaked, f"the customer received a private note: {leaked}"
        # the reply seqs follow the customer's log
        assert ok3["seq"] > ok2["seq"] > ack["seq"]
    run(go())


# --------------------------------------------------------------------------- transfer


def test_transfer_to_agent_group_and_offline(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")
    li = staff(srv, "li", "agent", "李小红")
    staff(srv, "zhao", "agent", "赵六")  # has an account, is not connected
    boss = staff(srv, "boss", "supervisor", "陈主管")

    async def go():
        a = await connect_agent(srv, wang)
        b = await connect_agent(srv, li)
        s = await connect_agent(srv, boss)
        c, _, _ = await customer_escalates(srv, "u-move", "钱女士")
        await customer_queued(c)
        await claimed(a, c)
        await b.queue_with(c.conversation)

        # to an account with no socket, to a name nobody has
        await a.error("agent_offline", "transfer", conversation=c.conversation, to_agent="zhao")
        r = await a.request("transfer", conversation=c.conversation, to_agent="nobody")
        assert r["type"] == "error" and r["code"] in ("agent_offline", "not_found"), r
        # li is away: offline for transfers too
        await b.ok("ready", status="away")
        await a.error("agent_offline", "transfer", conversation=c.conversation, to_agent="li")
        await b.ok("ready", status="available")
        # li may not act on wang's chat
        await b.error("not_owner", "transfer", conversation=c.conversation, to_agent="li")

        # to li, with a note
        await a.ok("transfer", conversation=c.conversation, to_agent="li", note="客户要求女客服")
        asg = await b.wait(lambda f: f["type"] == "assigned")
        assert asg["conversation"] == c.conversation and asg["from"] == "wang", asg
        h = asg["context"]["handoff"]
        assert h["state"] == "active" and h["agent"] == "li" and h["transfers"] == 1, h
        assert asg["context"]["conversation"] == c.conversation
        assert any(n["text"] == "客户要求女客服" for n in asg["context"]["notes"]), \
            asg["context"]["notes"]
        rel = await a.wait(lambda f: f["type"] == "released")
        assert rel == {"type": "released", "conversation": c.conversation,
                       "reason": "transferred"}, rel
        joined, _ = await wait_event(c, is_status("agent_joined"))
        assert joined["detail"] == {"agent": "李小红"}, joined
        # the new owner replies; the old one may not
        await a.error("not_owner", "reply", conversation=c.conversation, text="还在吗")
        ok = await b.ok("reply", conversation=c.conversation, text="您好，我是小红，接下来由我为您处理。")
        m, _ = await wait_event(c, lambda f: f["type"] == "message" and f["seq"] == ok["seq"])
        assert m["from"] == "agent", m

        # to a group: queued again, in that group
        await b.ok("transfer", conversation=c.conversation, to_group="logistics")
        rel = await b.wait(lambda f: f["type"] == "released")
        assert rel["reason"] == "transferred", rel
        q = await customer_queued(c)
        assert q["detail"]["group"] == "logistics" and q["detail"]["position"] == 1, q
        for agent in (a, b):
            _, it = await agent.queue_with(c.conversation)
            assert it["group"] == "logistics" and it["state"] == "queued", it
        # a supervisor takes it over from the queue and resolves without saving a case
        ctx = await claimed(s, c)
        assert ctx["handoff"]["agent"] == "boss" and ctx["handoff"]["transfers"] == 2, ctx
        ok = await s.ok("resolve", conversation=c.conversation, resolution="已转物流部处理",
                        outcome="partial", save_case=False)
        assert ok["case"] is None, ok
        await wait_event(c, is_status("bot_resumed"))
        await s.error("not_found", "context", conversation=c.conversation)
    run(go())


# --------------------------------------------------------------------------- hand back


def test_handback_resumes_the_flow(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")

    async def go():
        a = await connect_agent(srv, wang)
        c, _, frames = await customer_escalates(srv, "u-back", "孙先生")
        request_seq = next(f["seq"] for f in frames if f["type"] == "ack" and f["id"] == "m-2")
        await customer_queued(c)
        await claimed(a, c)
        ok = await a.ok("reply", conversation=c.conversation, text="这个问题机器人可以帮您登记。")
        await wait_event(c, lambda f: f["type"] == "message" and f["seq"] == ok["seq"])

        await a.ok("handback", conversation=c.conversation)
        rel = await a.wait(lambda f: f["type"] == "released")
        assert rel == {"type": "released", "conversation": c.conversation,
                       "reason": "handed_back"}, rel
        back = await c.recv()
        assert back["type"] == "status" and back["state"] == "bot_resumed", back
        bot, _ = await wait_event(c, lambda f: f["type"] == "message")
        assert bot["from"] == "bot" and bot["text"], f"the bot did not speak again: {bot}"
        # "the flow repeats its question": the bot's last message before the request for a human
        asked = [f for f in c.frames if f["type"] == "message" and f["from"] == "bot"
                 and f["seq"] < request_seq]
        assert bot["text"] == asked[-1]["text"], (bot, asked[-1])

        # the next customer message is the bot's again, and the agent no longer sees it
        ack, frames = await c.say("m-3", "昨天下午")
        reply = [f for f in frames if f["type"] == "message" and f["seq"] > ack["seq"]]
        assert reply and reply[0]["from"] == "bot", frames
        await a.error("not_found", "reply", conversation=c.conversation, text="还在吗")
        assert not [f for f in a.backlog if f["type"] == "message" and f["seq"] >= ack["seq"]], \
            a.backlog
    run(go())


def test_a_queued_chat_holds_no_flow_state(server_factory):
    """While the agents have the chat, its Lua run is parked (the customer is still connected):
    the hand back restores it, and the flow repeats its question as it does from memory."""
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")

    def runs():
        return metric_total(fetch_metrics(srv.port), "redress_flow_runs")

    async def go():
        a = await connect_agent(srv, wang)
        c, _, frames = await customer_escalates(srv, "u-parked", "周女士")
        request_seq = next(f["seq"] for f in frames if f["type"] == "ack" and f["id"] == "m-2")
        await customer_queued(c)
        await wait_metric(srv, "redress_flow_runs", 0)  # parked while queued
        await claimed(a, c)
        await a.ok("handback", conversation=c.conversation)
        await wait_event(c, is_status("bot_resumed"))
        bot, _ = await wait_event(c, lambda f: f["type"] == "message")
        asked = [f for f in c.frames if f["type"] == "message" and f["from"] == "bot"
                 and f["seq"] < request_seq]
        assert bot["from"] == "bot" and bot["text"] == asked[-1]["text"], (bot, asked[-1])
        assert runs() == 1, f"the hand back did not restore the run: {runs()}"
        ack, frames = await c.say("m-3", "昨天下午")
        reply = [f for f in frames if f["type"] == "message" and f["seq"] > ack["seq"]]
        assert reply and reply[0]["from"] == "bot", frames
    run(go())


# --------------------------------------------------------------------------- call-back fallback


async def expect_callback(c, reason):
    """After `escalated`: the record status with a call-back, then a bot message naming the
    record.  Returns the record status."""
    rec, frames = await wait_event(c, lambda f: is_queued(f) or is_callback(f))
    assert rec["state"] == "record", f"queued instead of a call-back: {frames}"
    d = rec["detail"]
    assert d["status"] == "callback" and d["reason"] == reason, d
    assert RECORD_RE.match(d["number"]), d
    assert isinstance(d["due"], str) and TS_RE.match(d["due"]), d
    bot, _ = await wait_event(c, lambda f: f["type"] == "message")
    assert bot["from"] == "bot" and d["number"] in bot["text"], bot
    return rec, bot


def test_callback_when_nobody_is_available(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")

    async def go():
        # nobody connected
        c1, _, _ = await customer_escalates(srv, "u-cb1", "周先生")
        rec, _ = await expect_callback(c1, "no_agent")
        # promised agent.callback_s (7200 s) after now
        promised = (iso(rec["detail"]["due"]) - iso(rec["ts"])).total_seconds()
        assert 7200 - 60 <= promised <= 7200 + 60, rec

        # an agent who connects later sees it in the queue
        a = await connect_agent(srv, wang)
        items = [it for it in a.welcome["queue"] if it["conversation"] == c1.conversation]
        assert len(items) == 1, a.welcome["queue"]
        it = items[0]
        assert it["state"] == "callback" and it["due"] == rec["detail"]["due"], it
        assert it["position"] is None, it

        # connected but away counts as nobody
        await a.ok("ready", status="away")
        c2, _, _ = await customer_escalates(srv, "u-cb2", "吴女士")
        rec2, _ = await expect_callback(c2, "no_agent")
        assert rec2["detail"]["number"] != rec["detail"]["number"]
        _, it2 = await a.queue_with(c2.conversation)
        assert it2["state"] == "callback", it2

        # a call-back is claimed like a queued chat
        ok = await a.ok("claim", conversation=c1.conversation)
        assert ok["context"]["handoff"]["state"] == "active", ok
        joined, _ = await wait_event(c1, is_status("agent_joined"))
        assert joined["detail"] == {"agent": "王小明"}, joined
    run(go())


def test_callback_after_hours(server_factory):
    # 23:00 Beijing time on the server's (shifted) clock, agents work 09:00-10:00
    srv = start(server_factory, "--agent.hours", "09:00-10:00",
                "--flow.clock_start", "2026-11-26 23:00")
    wang = staff(srv, "wang", "agent", "王小明")

    async def go():
        a = await connect_agent(srv, wang)
        c, _, _ = await customer_escalates(srv, "u-night", "郑先生")
        rec, bot = await expect_callback(c, "after_hours")
        # the call-back is promised agent.callback_s after opening time: 09:00 + 2 h, Beijing
        assert rec["detail"]["due"] == "2026-11-27T03:00:00.000Z", rec
        assert "11:00" in bot["text"], bot
        _, it = await a.queue_with(c.conversation)
        # the item keeps the escalation's reason; after_hours is the call-back's
        assert it["state"] == "callback" and it["reason"] == "human_request", it
        assert it["due"] == rec["detail"]["due"], it
        ok = await a.ok("claim", conversation=c.conversation)
        assert ok["context"]["handoff"]["agent"] == "wang"
        await wait_event(c, is_status("agent_joined"))
        r = await a.ok("reply", conversation=c.conversation, text="您好，我是值班客服。")
        m, _ = await wait_event(c, lambda f: f["type"] == "message" and f["seq"] == r["seq"])
        assert m["from"] == "agent"
    run(go())


# --------------------------------------------------------------------------- errors


def test_request_errors(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")
    li = staff(srv, "li", "agent", "李小红")

    async def go():
        a = await connect_agent(srv, wang)
        b = await connect_agent(srv, li)
        await a.error("not_found", "claim", conversation="c-000000009999")
        await a.error("not_found", "context", conversation="c-000000009999")

        c, _, _ = await customer_escalates(srv, "u-err", "冯先生")
        await customer_queued(c)
        await a.queue_with(c.conversation)
        # queued, not claimed: nobody owns it yet
        await a.error("not_owner", "reply", conversation=c.conversation, text="你好")
        await a.ok("claim", conversation=c.conversation)
        await b.error("not_owner", "reply", conversation=c.conversation, text="你好")
        await b.error("not_owner", "resolve", conversation=c.conversation, resolution="x")
        await b.error("not_owner", "handback", conversation=c.conversation)
        await b.error("not_owner", "context", conversation=c.conversation)

        # bad frames; the answer repeats the id when the frame had one
        await a.send_text("{not json")
        e = await a.wait(lambda f: f["type"] == "error")
        assert e["code"] == "bad_json" and "id" not in e, e
        await a.send_text("[1,2]")
        e = await a.wait(lambda f: f["type"] == "error")
        assert e["code"] == "bad_json", e
        await a.ws.send(b"\x01\x02")
        e = await a.wait(lambda f: f["type"] == "error")
        assert e["code"] == "bad_frame", e
        for frame, code in (
            ({"id": "e1"}, "unknown_type"),
            ({"id": "e2", "type": "fly"}, "unknown_type"),
            ({"id": "e3", "type": "claim"}, "missing_field"),
            ({"id": "e4", "type": "reply", "conversation": c.conversation}, "missing_field"),
            ({"id": "e5", "type": "resolve", "conversation": c.conversation}, "missing_field"),
            ({"id": "e6", "type": "transfer", "conversation": c.conversation}, "missing_field"),
            ({"id": "e7", "type": "claim", "conversation": "nope"}, "bad_field"),
            ({"id": "e8", "type": "reply", "conversation": c.conversation, "text": 5},
             "bad_field"),
            ({"id": "e9", "type": "reply", "conversation": c.conversation, "text": "   "},
             "bad_field"),
            ({"id": "e10", "type": "transfer", "conversation": c.conversation,
              "to_agent": "li", "to_group": "ecom"}, "bad_field"),
            ({"id": "e11", "type": "transfer", "conversation": c.conversation,
              "to_group": "Not A Group"}, "bad_field"),
            ({"id": "e12", "type": "resolve", "conversation": c.conversation,
              "resolution": "好", "outcome": "maybe"}, "bad_field"),
        ):
            await a.send(frame)
            e = await a.answer(frame["id"])
            assert e["type"] == "error" and e["code"] == code, f"{frame}: {e}"
        # still the owner, still working: nothing above changed anything
        ok = await a.ok("reply", conversation=c.conversation, text="您好，我在。")
        m, _ = await wait_event(c, lambda f: f["type"] == "message" and f["seq"] == ok["seq"])
        assert m["text"] == "您好，我在。"
    run(go())


# --------------------------------------------------------------------------- restart


def test_queued_handoff_survives_restart(server_factory):
    srv = start(server_factory, *ALWAYS)
    wang = staff(srv, "wang", "agent", "王小明")

    async def go():
        a = await connect_agent(srv, wang)
        c, _, _ = await customer_escalates(srv, "u-restart", "陈先生")
        await customer_queued(c)
        await a.queue_with(c.conversation)
        token, seen = c.token, c.last_seq
        await a.close()
        await c.close()
        return c.conversation, token, seen

    conv, token, seen = run(go())
    srv.restart()

    async def after():
        a = await connect_agent(srv, login(srv, "wang"))
        items = [it for it in a.welcome["queue"] if it["conversation"] == conv]
        assert len(items) == 1, f"the hand-off is gone after the restart: {a.welcome['queue']}"
        assert items[0]["state"] == "queued" and items[0]["reason"] == "human_request", items
        assert items[0]["customer"]["id"] == "u-restart", items
        c = await connect(srv)
        await c.resume(token, seen)
        ok = await a.ok("claim", conversation=conv)
        ctx = ok["context"]
        assert ctx["handoff"]["state"] == "active" and ctx["handoff"]["agent"] == "wang", ctx
        said = [t["text"] for t in ctx["transcript"] if t["from"] == "customer"]
        assert said == [COMPLAINT, HUMAN], said
        joined, _ = await wait_event(c, is_status("agent_joined"))
        assert joined["detail"] == {"agent": "王小明"}, joined
        r = await a.ok("reply", conversation=conv, text="您好，让您久等了。")
        m, _ = await wait_event(c, lambda f: f["type"] == "message" and f["seq"] == r["seq"])
        assert m["from"] == "agent"
        # and the customer's answer reaches the agent, not the bot
        await c.send({"type": "message", "id": "m-9", "text": "没关系"})
        got = await a.wait(lambda f: f["type"] == "message" and f["from"] == "customer")
        assert got["text"] == "没关系" and got["conversation"] == conv, got
    run(after())
