"""Complaint records end to end (docs/complaints.md): the lifecycle driven by the flow and an
agent, every transition pushed to the chat and kept as an event with who and when, the public
progress endpoint, SLA deadlines that survive restarts, and the close a week after resolution.

The clock is injected with --flow.clock_start (Beijing time); a deadline is crossed by
restarting the server on the same data directory with a later clock, so nothing sleeps."""

import os
import re
import urllib.parse

from agent_client import connect_agent, http_request, is_status, staff, wait_event
from conftest import source_root
from redress_client import connect, db, run, wait_db

RULES = ("--rules.dir", os.path.join(source_root(), "rules"), "--agent.hours", "00:00-24:00")
COMPLAINT = "我在你们商城买的手机一直没发货，订单号12345678"
NUMBER_RE = re.compile(r"^TS20261120-\d{6}$")


async def record_after(c, mid, text):
    """Says text; returns the first `record` status event that follows."""
    _, frames = await c.say(mid, text)
    got = [f for f in frames if f.get("type") == "status" and f.get("state") == "record"]
    if got:
        return got[0]
    rec, _ = await wait_event(c, is_status("record"))
    return rec


def progress(server, number, token):
    q = urllib.parse.urlencode({"number": number, "token": token})
    status, _, doc = http_request(server.port, "GET", f"/api/complaints/status?{q}")
    return status, doc


def test_lifecycle_pushed_recorded_and_visible(server_factory):
    srv = server_factory(*RULES, "--flow.clock_start", "2026-11-20 10:00")
    cookie = staff(srv, "wang", "agent", "王小明")

    async def go():
        agent = await connect_agent(srv, cookie)
        c = await connect(srv)
        await c.hello(customer_id="u-life", name="李女士")
        rec = await record_after(c, "m-1", COMPLAINT)
        number, code = rec["detail"]["number"], rec["detail"]["code"]
        assert NUMBER_RE.match(number), rec
        assert re.fullmatch(r"[0-9a-f]{20}", code), rec
        assert rec["detail"]["status"] == "received" and rec["detail"]["due"], rec
        await c.say("m-2", "转人工")
        await wait_event(c, is_status("queued"))
        conv = c.conversation
        await agent.queue_with(conv)
        await agent.ok("claim", conversation=conv)
        await wait_event(c, lambda f: f["type"] == "status" and f["state"] == "record" and
                         f["detail"]["status"] == "acknowledged")
        await agent.ok("reply", conversation=conv, text="您好，我是王小明，马上为您加急处理。")
        await agent.ok("resolve", conversation=conv, resolution="已安排加急发货，明天送达")
        done, _ = await wait_event(c, lambda f: f["type"] == "status" and f["state"] ==
                                       "record" and f["detail"]["status"] == "resolved")
        assert done["detail"]["due"] is None, f"a resolved record has nothing due: {done}"

        # every transition is an event with who and when, and the row has the times
        rows = await wait_db(srv, "SELECT from_status, to_status, actor FROM complaint_events"
                             " c JOIN complaints r ON r.conversation_id = c.conversation_id"
                             " WHERE r.number = ? AND (from_status IS NULL OR"
                             " from_status <> to_status) ORDER BY c.id", (number,),
                             lambda rs: len(rs) >= 3)
        moves = [(r["from_status"], r["to_status"], r["actor"]) for r in rows]
        assert moves[0] == (None, "received", "bot"), moves
        assert ("received", "acknowledged", "wang") in moves or \
            any(m[1] == "acknowledged" for m in moves), moves
        assert moves[-1][1:] == ("resolved", "wang"), moves
        with db(srv) as d:
            row = d.execute("SELECT * FROM complaints WHERE number = ?", (number,)).fetchone()
        assert row["status"] == "resolved" and row["owner"] == "wang"
        assert row["escalated"] == 1 and row["acked_at"] and row["answered_at"]
        assert row["resolved_at"] and row["breached"] == 0, dict(row)
        assert row["channel"] == "web" and row["category"], dict(row)

        # the customer's progress page: right token -> the record; wrong token or number -> 404
        status, doc = progress(srv, number, code)
        assert status == 200, doc
        assert doc["number"] == number and doc["status"] == "resolved"
        assert doc["status_text"] == "已解决"
        assert [h["status"] for h in doc["history"]][:1] == ["received"]
        assert doc["history"][-1]["status"] == "resolved"
        assert progress(srv, number, "0" * 20)[0] == 404
        # the resume token itself does not open the progress page: only the read-only code
        assert progress(srv, number, c.token)[0] == 404
        assert progress(srv, "TS20261120-999999", code)[0] == 404
        status, _, _ = http_request(srv.port, "GET", "/api/complaints/status?number=" + number)
        assert status == 400
        await agent.close()
        await c.close()
        return number, code
    number, code = run(go())
    srv.stop()

    # a week (close_after_h, 168) after the resolution, the record closes by itself
    later = server_factory(*RULES, "--flow.clock_start", "2026-11-27 11:00",
                           data_dir=srv.data_dir)
    rows = run(wait_db(later, "SELECT status, closed_at FROM complaints WHERE number = ?",
                       (number,), lambda rs: rs and rs[0]["status"] == "closed"))
    assert rows[0]["closed_at"], dict(rows[0])
    ev = run(wait_db(later, "SELECT actor FROM complaint_events WHERE note ="
                     " 'closed after resolution'"))
    assert ev[0]["actor"] == "system"
    status, doc = progress(later, number, code)
    assert status == 200 and doc["status"] == "closed", doc


def test_deadlines_warn_and_breach_across_restarts(server_factory):
    srv = server_factory(*RULES, "--flow.clock_start", "2026-11-20 10:00")
    data = srv.data_dir

    async def first():
        c = await connect(srv)
        await c.hello(customer_id="u-sla", name="赵先生")
        rec = await record_after(c, "m-1", COMPLAINT)
        await c.close()
        return c.token, rec["detail"]["number"], rec["detail"]["code"]
    token, number, code = run(first())
    with db(srv) as d:
        row = d.execute("SELECT * FROM complaints WHERE number = ?", (number,)).fetchone()
    assert row["status"] in ("received", "acknowledged", "investigating"), dict(row)
    ack_due = row["ack_due"]
    assert ack_due and 29 * 60 <= ack_due - row["created_at"] <= 31 * 60, dict(row)
    srv.stop()

    # 10:25: past 80 % of the 30 minutes, not yet due -> warned only (unless already acknowledged)
    later = server_factory(*RULES, "--flow.clock_start", "2026-11-20 10:25", data_dir=data)
    acked = row["acked_at"] is not None

    async def second():
        if not acked:
            rows = await wait_db(later, "SELECT warned, breached FROM complaints WHERE number = ?",
                                 (number,), lambda rs: rs and rs[0]["warned"] & 1)
            assert rows[0]["breached"] == 0
            ev = await wait_db(later, "SELECT note FROM complaint_events WHERE note LIKE"
                               " 'ack deadline near'")
            assert ev
    run(second())
    later.stop()

    # 21:30 (after business hours, hours later): the answer deadline (48 business hours) is
    # not due, but the ack deadline is missed when it was not met -> breached and escalated.
    # The answer deadline is missed three business days later.
    last = server_factory(*RULES, "--flow.clock_start", "2026-11-25 10:00", data_dir=data)

    async def third():
        rows = await wait_db(last, "SELECT breached, escalated FROM complaints WHERE number = ?",
                             (number,), lambda rs: rs and rs[0]["breached"] & 2)
        assert rows[0]["escalated"] == 1, dict(rows[0])
        ev = await wait_db(last, "SELECT note, actor FROM complaint_events WHERE note ="
                           " 'answer deadline missed'")
        assert ev[0]["actor"] == "system"
        # the customer, coming back, finds the breach escalation in the conversation
        c = await connect(last)
        w, replay = await c.resume(token, 0)
        esc = [f for f in replay if f.get("type") == "status" and f["state"] == "escalated"]
        assert any(f["detail"]["reason"] == "sla_breach" for f in esc), esc
        status, doc = progress(last, number, code)
        assert status == 200 and doc["status"] != "closed", doc
        await c.close()
    run(third())
