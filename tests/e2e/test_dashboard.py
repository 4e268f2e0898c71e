"""The supervisors' dashboard end to end (docs/complaints.md, "Dashboard and CSV"): a real
server with the shipped flows (rules/), complaints made by real customers over /chat in
different categories and channels, escalations taken and resolved by a real agent over
/agent, deadlines breached by the server's own timers; then every figure of GET /api/dashboard
is compared with the same figure computed here, in Python, from the server's SQLite file, and
the CSV export is read back with the csv module.

The data, on the server's clock (--flow.clock_start, Beijing time):
  2026-03-02 10:00  five complaints: web (left at the first question), app (escalated with
                    "转人工", claimed, answered and resolved by the agent), wechat
                    (escalated, claimed, never answered), h5 (a description with quotes, commas
                    and a newline), email
  2026-03-05 15:00  the same data directory, restarted three days later: the timers find the
                    unacknowledged deadlines past and breach them (escalating those chats,
                    reason sla_breach); two more complaints: web (escalated, claimed, answered and
                    resolved) and phone
The follow-up survey (satisfaction, NPS) is asked days after a resolution, so the test writes
the answers of the two resolved chats, and one survey asked on 03-01 and never answered (a
pending follow-up), into `surveys` with sqlite3, the way complaint.c stores them.

Figures are compared when the database holds still: the rows are read before and after each
request, and a request that raced a write is asked again.  Each wait is for a frame or a row,
with a timeout; nothing sleeps.
"""

import collections
import concurrent.futures
import csv
import datetime
import http.client
import io
import json
import math
import os
import sqlite3
import time

from agent_client import add_account, connect_agent, http_request, is_status, login, wait_event
from conftest import source_root
from redress_client import TIMEOUT, connect, run

TZ = datetime.timezone(datetime.timedelta(hours=8))
DAY1 = "2026-03-02 10:00"
DAY2 = "2026-03-05 15:00"
ALWAYS = ("--agent.hours", "00:00-24:00")
HUMAN = "转人工"
QUOTED = '买的"小米手环",还有充电器,一直没发货\n订单号87654321,急!'
CHANNEL_LABELS = {"web": "网页", "app": "App", "h5": "H5", "wechat": "微信", "email": "邮件",
                  "phone": "电话", "other": "其他"}
STEPS = (("ack", "ack_due", "acked_at", 1), ("answer", "answer_due", "answered_at", 2),
         ("resolve", "resolve_due", "resolved_at", 4))


def start(server_factory, clock, **kw):
    return server_factory("--rules.dir", os.path.join(source_root(), "rules"), *ALWAYS,
                          "--flow.clock_start", clock, **kw)


def set_clock(srv, clock):
    i = srv.args.index("--flow.clock_start")
    srv.args[i + 1] = clock


# --------------------------------------------------------------------------- driving chats


async def seen(c, pred, after=0, timeout=TIMEOUT):
    """The first event with seq > after that pred accepts, among the frames c received already
    or the next ones."""
    def ok(f):
        return f.get("seq", 0) > after and pred(f)
    for f in c.frames:
        if ok(f):
            return f
    f, _ = await wait_event(c, ok, timeout)
    return f


async def complaint(srv, cid, channel, text):
    """A customer on `channel` who describes a complaint: waits for the complaint record's
    status event.  Returns the client."""
    c = await connect(srv)
    await c.hello(cid, name=f"客户{cid}", channel=channel)
    await c.say("m-1", text)
    rec = await seen(c, is_status("record"))
    assert rec["detail"]["number"].startswith("TS"), rec
    return c


async def escalate(c):
    """The customer asks for a human; waits until the chat is queued for an agent."""
    await c.send({"type": "message", "id": "m-human", "text": HUMAN})
    esc = await seen(c, is_status("escalated"))
    return await seen(c, is_status("queued"), after=esc["seq"])


async def claim(agent, c):
    await agent.wait(lambda f: f["type"] == "queue" and
                     any(it["conversation"] == c.conversation for it in f["items"]))
    await agent.ok("claim", conversation=c.conversation)
    await seen(c, is_status("agent_joined"))


async def answer_and_resolve(agent, c):
    """The agent answers the customer, then resolves; waits until the bot has the chat back."""
    r = await agent.ok("reply", conversation=c.conversation, text="您好，我来为您处理。")
    await seen(c, lambda f: f["type"] == "message" and f["seq"] == r["seq"])
    await agent.ok("resolve", conversation=c.conversation, resolution="已为您处理完毕")
    res = await seen(c, is_status("resolved"))
    await seen(c, is_status("bot_resumed"), after=res["seq"])


# --------------------------------------------------------------------------- the database


def ro(db_path):
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    return con


def snapshot(db_path):
    """Every row the figures are made of."""
    con = ro(db_path)
    try:
        return {
            "complaints": [dict(r) for r in con.execute(
                "SELECT * FROM complaints ORDER BY conversation_id")],
            "handoffs": [dict(r) for r in con.execute(
                "SELECT id, conversation_id, reason, queued_at FROM handoffs ORDER BY id")],
            "surveys": [dict(r) for r in con.execute(
                "SELECT * FROM surveys ORDER BY conversation_id")],
            "labels": dict(con.execute("SELECT slug, name FROM kb_categories").fetchall()),
            "descriptions": {r[0]: r[1] for r in con.execute(
                "SELECT conversation_id, detail FROM events WHERE kind = 'record' AND seq IS NULL"
                " ORDER BY id")},
        }
    finally:
        con.close()


def day_start(d):
    return datetime.datetime(d.year, d.month, d.day, tzinfo=TZ).timestamp()


def local_day(t):
    return datetime.datetime.fromtimestamp(t, TZ).date()


def local_text(t):
    if t is None:
        return ""
    return datetime.datetime.fromtimestamp(math.floor(t), TZ).strftime("%Y-%m-%d %H:%M:%S")


def ratio(a, b):
    return a / b if b else None


def sla_class(r, due_col, at_col, bit):
    """met / breached / pending / None (no deadline), as docs/complaints.md defines them."""
    due, at = r[due_col], r[at_col]
    if due is None:
        return None
    if (r["breached"] & bit) or (at is not None and at > due):
        return "breached"
    return "met" if at is not None else "pending"


def label_of(snap, slug):
    return "未分类" if slug == "" else snap["labels"].get(slug, slug)


def expected(snap, frm, to, now, followup_h=72):
    """The dashboard's figures for [frm, to] computed from the rows, in Python."""
    start = day_start(frm)
    end = day_start(to + datetime.timedelta(days=1))
    days = (to - frm).days + 1
    pstart = start - days * 86400
    rows = snap["complaints"]
    cohort = [r for r in rows if start <= r["created_at"] < end]
    prev = [r for r in rows if pstart <= r["created_at"] < start]
    n = len(cohort)
    esc = sum(1 for r in cohort if r["escalated"])
    resolved = [r for r in cohort if r["resolved_at"] is not None]
    fcr = sum(1 for r in resolved if not r["escalated"] and not r["reopened"])
    out = {
        "range": {"from": frm.isoformat(), "to": to.isoformat(), "days": days,
                  "utc_offset": "+08:00",
                  "previous": {"from": (frm - datetime.timedelta(days=days)).isoformat(),
                               "to": (frm - datetime.timedelta(days=1)).isoformat()}},
        "totals": {"complaints": n, "escalated": esc, "escalation_rate": ratio(esc, n),
                   "resolved": len(resolved), "first_contact": fcr,
                   "first_contact_resolution_rate": ratio(fcr, len(resolved)),
                   "reopened": sum(1 for r in cohort if r["reopened"]),
                   "open": sum(1 for r in cohort if r["status"] not in ("resolved", "closed")),
                   "previous": len(prev)},
    }
    per_day = collections.Counter(local_day(r["created_at"]) for r in cohort)
    esc_day = collections.Counter(local_day(r["created_at"]) for r in cohort if r["escalated"])
    out["by_day"] = [{"date": (frm + datetime.timedelta(days=i)).isoformat(),
                      "count": per_day[frm + datetime.timedelta(days=i)],
                      "escalated": esc_day[frm + datetime.timedelta(days=i)]}
                     for i in range(days)]

    def breakdown(key, label):
        now_c = collections.Counter(r[key] for r in cohort)
        prev_c = collections.Counter(r[key] for r in prev)
        esc_c = collections.Counter(r[key] for r in cohort if r["escalated"])
        keys = sorted(set(now_c) | set(prev_c), key=lambda k: (-now_c[k], -prev_c[k], k))
        return [{key: k, "label": label(k), "count": now_c[k], "previous": prev_c[k],
                 "escalated": esc_c[k]} for k in keys]

    out["by_category"] = breakdown("category", lambda k: label_of(snap, k))
    out["top_topics"] = [{"category": e["category"], "label": e["label"], "count": e["count"],
                          "share": ratio(e["count"], n), "previous": e["previous"],
                          "escalated": e["escalated"]}
                         for e in out["by_category"] if e["count"] > 0][:10]
    out["by_channel"] = breakdown("channel", lambda k: CHANNEL_LABELS.get(k, k or "未知"))
    reasons = collections.Counter(h["reason"] for h in snap["handoffs"]
                                  if start <= h["queued_at"] < end)
    out["escalation_reasons"] = [{"reason": k, "count": v} for k, v in
                                 sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    out["sla"] = {}
    for name, due_col, at_col, bit in STEPS:
        c = collections.Counter(sla_class(r, due_col, at_col, bit) for r in cohort)
        out["sla"][name] = {"met": c["met"], "breached": c["breached"], "pending": c["pending"],
                            "compliance": ratio(c["met"], c["met"] + c["breached"])}
    answered = [s for s in snap["surveys"]
                if s["answered_at"] is not None and start <= s["answered_at"] < end]
    csats = [s["csat"] for s in answered if s["csat"] is not None]
    npss = [s["nps"] for s in answered if s["nps"] is not None]
    pro = sum(1 for v in npss if v >= 9)
    det = sum(1 for v in npss if v <= 6)
    out["satisfaction"] = {
        "responses": len(answered), "csat_responses": len(csats),
        "csat_avg": ratio(sum(csats), len(csats)),
        "csat_dist": [csats.count(i) for i in range(1, 6)],
        "nps_responses": len(npss),
        "nps": (pro - det) * 100 / len(npss) if npss else None,
        "promoters": pro, "passives": len(npss) - pro - det, "detractors": det,
        "solved": sum(1 for s in answered if s["solved"] == 1),
        "unsolved": sum(1 for s in answered if s["solved"] == 0),
    }
    out["followups_pending"] = sum(
        1 for s in snap["surveys"] if s["answered_at"] is None and s["asked_at"] is not None
        and s["asked_at"] <= now - followup_h * 3600)
    return out


def same(got, want, path="$"):
    """Asserts that got has every key of want with an equal value (floats within 1e-9)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: {got!r} is not an object"
        for k, v in want.items():
            assert k in got, f"{path}: no {k!r} in {got!r}"
            same(got[k], v, f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), \
            f"{path}: {len(got) if isinstance(got, list) else got!r} items, want {len(want)}:" \
            f"\n got {got!r}\nwant {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9,
                                                              abs_tol=1e-9), \
            f"{path}: {got!r} != {want!r}"
    elif want is None:
        assert got is None, f"{path}: {got!r} is not null"
    else:
        assert got == want and type(got) is type(want), f"{path}: {got!r} != {want!r}"


# --------------------------------------------------------------------------- HTTP


def get(port, path, cookie=None):
    """GET; returns (status, headers dict with lower-case names, raw body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def figures(srv, cookie, query):
    """/api/dashboard?query while the database holds still: the rows read before and after the
    answer must be the same (a request that raced a write is asked again).  Returns (the
    answer, the rows)."""
    for _ in range(30):
        before = snapshot(srv.db_path)
        status, headers, body = get(srv.port, f"/api/dashboard?{query}", cookie)
        assert status == 200, (status, body[:500])
        assert headers["content-type"] == "application/json", headers
        after = snapshot(srv.db_path)
        if before == after:
            return json.loads(body), after
    raise AssertionError("the database kept changing while the dashboard was read")


def check_against_db(srv, cookie, query, frm, to):
    doc, snap = figures(srv, cookie, query)
    now = doc["now"]
    want = expected(snap, frm, to, now)
    same(doc, want)
    # the labels of the reasons and the server's clock
    for e in doc["escalation_reasons"]:
        assert isinstance(e["label"], str) and e["label"], e
    assert doc["generated_at"].endswith("+08:00"), doc["generated_at"]
    gen = datetime.datetime.fromisoformat(doc["generated_at"])
    assert abs(gen.timestamp() - now) < 1.5, (doc["generated_at"], now)
    return doc, snap


def wait_rows(db_path, sql, pred, what, timeout=60):
    """Polls a query on the database file until pred(rows); fails after timeout."""
    end = time.monotonic() + timeout
    while True:
        con = ro(db_path)
        try:
            rows = con.execute(sql).fetchall()
        finally:
            con.close()
        if pred(rows):
            return rows
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}: {[tuple(r) for r in rows]}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- the test


def test_dashboard_figures_match_the_database(server_factory):
    srv = start(server_factory, DAY1)
    add_account(srv, "wang", "agent", "王小明")
    add_account(srv, "boss", "supervisor", "陈主管")
    add_account(srv, "edit", "editor", "编辑")
    wang = login(srv, "wang")
    boss = login(srv, "boss")
    convs = {}

    async def day1():
        a = await connect_agent(srv, wang)
        convs["web1"] = await complaint(srv, "u-1", "web",
                                        "我在你们商城买的手机一直没发货，订单号12345678")
        app = convs["app"] = await complaint(srv, "u-2", "app",
                                             "我的退款一直没到账，订单号2024030512345，退了58.5元")
        await escalate(app)
        await claim(a, app)
        await answer_and_resolve(a, app)
        wx = convs["wechat"] = await complaint(srv, "u-3", "wechat",
                                               "昨天转账5000元到现在还没到账，太着急了")
        await escalate(wx)
        await claim(a, wx)
        convs["h5"] = await complaint(srv, "u-4", "h5", QUOTED)
        convs["email"] = await complaint(srv, "u-5", "email", "快递三天了还没送到，单号SF1234567890")
    run(day1())

    # three days later: the unacknowledged deadlines are past
    set_clock(srv, DAY2)
    srv.restart()
    wang = login(srv, "wang")

    async def day2():
        a = await connect_agent(srv, wang)
        web2 = convs["web2"] = await complaint(srv, "u-6", "web",
                                               "退款申请了一周还没退回来，订单号2024030598765")
        await escalate(web2)
        await claim(a, web2)
        await answer_and_resolve(a, web2)
        convs["phone"] = await complaint(srv, "u-7", "phone", "信用卡被多扣了200元年费，我没同意过")
    run(day2())
    ids = {k: int(c.conversation[2:]) for k, c in convs.items()}
    wait_rows(srv.db_path, "SELECT conversation_id FROM complaints WHERE breached & 1",
              lambda rows: len(rows) >= 1, "a breached acknowledgement deadline")

    # the follow-up surveys of the two resolved chats, and one asked on 03-01 and never
    # answered (see the module's docstring)
    day1 = day_start(datetime.date(2026, 3, 2))
    day2 = day_start(datetime.date(2026, 3, 5))
    con = sqlite3.connect(srv.db_path, timeout=10)
    with con:
        con.executemany(
            "INSERT INTO surveys(conversation_id, solved, csat, nps, comment, asked_at,"
            " answered_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(conversation_id) DO UPDATE"
            " SET solved = excluded.solved, csat = excluded.csat, nps = excluded.nps,"
            " comment = excluded.comment, asked_at = excluded.asked_at,"
            " answered_at = excluded.answered_at",
            [(ids["app"], 1, 5, 9, "很快", day1 + 11 * 3600, day1 + 11.5 * 3600),
             (ids["web2"], 0, 2, 3, "还是没退", day2 + 15.2 * 3600, day2 + 15.3 * 3600),
             (ids["web1"], None, None, None, None, day_start(datetime.date(2026, 3, 1)),
              None)])
    con.close()

    # the whole week
    week = (datetime.date(2026, 3, 1), datetime.date(2026, 3, 7))
    doc, snap = check_against_db(srv, boss, "from=2026-03-01&to=2026-03-07", *week)
    t = doc["totals"]
    assert t["complaints"] == 7, t
    assert t["escalated"] >= 3 and t["resolved"] >= 2, t
    assert [d["count"] for d in doc["by_day"]] == [0, 5, 0, 0, 2, 0, 0], doc["by_day"]
    assert {c["channel"] for c in doc["by_channel"]} == \
        {"web", "app", "wechat", "h5", "email", "phone"}, doc["by_channel"]
    assert len(doc["by_category"]) >= 4, doc["by_category"]
    reasons = {e["reason"] for e in doc["escalation_reasons"]}
    assert "human_request" in reasons, reasons
    assert doc["sla"]["ack"]["breached"] >= 1 and doc["sla"]["ack"]["met"] >= 2, doc["sla"]
    s = doc["satisfaction"]
    assert s["csat_dist"][4] == 1 and s["csat_dist"][1] == 1 and s["csat_avg"] == 3.5, s
    assert s["nps_responses"] == 2 and s["nps"] == 0, s
    assert doc["followups_pending"] == 1, doc["followups_pending"]
    labels = {c["category"]: c["label"] for c in doc["by_category"]}
    for slug, label in labels.items():
        assert label == label_of(snap, slug), (slug, label)

    # one day: only the day-2 complaints; the previous period is day 1
    doc, _ = check_against_db(srv, boss, "from=2026-03-05&to=2026-03-05",
                              datetime.date(2026, 3, 5), datetime.date(2026, 3, 5))
    assert doc["totals"]["complaints"] == 2 and doc["totals"]["previous"] == 0, doc["totals"]
    assert doc["satisfaction"]["csat_responses"] == 1, doc["satisfaction"]
    # the default: the 30 days up to the server's today
    doc, _ = check_against_db(srv, boss, "", datetime.date(2026, 2, 4),
                              datetime.date(2026, 3, 5))
    assert doc["totals"]["complaints"] == 7

    # an editor may look too; the operator on the loopback interface, without a cookie, too
    status, _, _ = get(srv.port, "/api/dashboard", login(srv, "edit"))
    assert status == 200
    status, _, _ = get(srv.port, "/api/dashboard")
    assert status == 200

    # ---- the CSV export of the week
    status, headers, body = get(srv.port, "/api/dashboard/export.csv?from=2026-03-01&to=2026-03-07",
                                boss)
    assert status == 200, (status, body[:300])
    assert headers["content-type"] == "text/csv; charset=utf-8", headers
    assert headers["content-disposition"] == \
        'attachment; filename="complaints_2026-03-01_2026-03-07.csv"', headers
    assert body.startswith(b"\xef\xbb\xbf"), body[:20]
    assert body.endswith(b"\r\n")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    cohort = {r["conversation_id"]: r for r in snap["complaints"]
              if day_start(week[0]) <= r["created_at"] < day_start(datetime.date(2026, 3, 8))}
    assert len(rows) == len(cohort) == 7, (len(rows), len(cohort))
    surveys = {s["conversation_id"]: s for s in snap["surveys"]}
    for row in rows:
        conv = int(row["conversation"][2:])
        r = cohort[conv]
        sv = surveys.get(conv, {})
        assert row["number"] == r["number"] and row["status"] == r["status"], (row, r)
        assert row["created_at"] == local_text(r["created_at"]), (row, r)
        assert row["category"] == r["category"], (row, r)
        assert row["category_label"] == label_of(snap, r["category"]), row
        assert row["severity"] == str(r["severity"]) and row["channel"] == r["channel"], row
        assert row["owner"] == r["owner"], (row, r)
        assert row["escalated"] == str(r["escalated"]) and row["reopened"] == str(r["reopened"])
        names = []
        for name, due_col, at_col, bit in STEPS:
            assert row[name + "_due"] == local_text(r[due_col]), (name, row, r)
            assert row[at_col] == local_text(r[at_col]), (name, row, r)
            if sla_class(r, due_col, at_col, bit) == "breached":
                names.append(name)
        assert row["breached"] == " ".join(names), (row, r)
        assert row["csat"] == ("" if sv.get("csat") is None else str(sv["csat"])), (row, sv)
        assert row["nps"] == ("" if sv.get("nps") is None else str(sv["nps"])), (row, sv)
    # the customer's own words, with quotes, commas and a newline, come back whole
    h5 = next(row for row in rows if row["conversation"] == convs["h5"].conversation)
    assert h5["description"] == QUOTED, h5
    assert b'"\xe4\xb9\xb0\xe7\x9a\x84""' in body  # 买的"" : quoted, the quote doubled

    # ---- access and bad input
    status, _, body = get(srv.port, "/api/dashboard", wang)
    assert status == 403, (status, body)
    status, _, body = get(srv.port, "/api/dashboard/export.csv", wang)
    assert status == 403, (status, body)
    status, _, body = get(srv.port, "/api/dashboard",
                          "redress_session=0123456789abcdef0123456789abcdef")
    assert status == 401, (status, body)
    for q in ("from=2026-3-1", "from=2026-02-30", "to=2026-03-01&from=2026-03-02",
              "from=2025-01-01&to=2026-12-31", "from=%FF", "to=tomorrow"):
        for path in ("/api/dashboard", "/api/dashboard/export.csv"):
            status, headers, body = get(srv.port, f"{path}?{q}", boss)
            assert status == 400, (q, status, body)
            err = json.loads(body)["error"]
            assert err["code"] == "bad_request" and err["message"], err
    status, _, doc = http_request(srv.port, "POST", "/api/dashboard", {}, cookie=boss)
    assert status == 405, (status, doc)
    status, _, body = get(srv.port, "/api/dashboard/nothing", boss)
    assert status == 404, (status, body)

    # ---- a burst: each answer is the figures or a 503 with Retry-After, never anything else
    def one(_):
        return get(srv.port, "/api/dashboard/export.csv?from=2026-01-01&to=2026-03-31", boss)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(16)))
    for status, headers, body in answers:
        assert status in (200, 503), (status, body[:200])
        if status == 503:
            assert headers.get("retry-after", "").isdigit(), headers
        else:
            assert body.startswith(b"\xef\xbb\xbf")
    assert any(status == 200 for status, _, _ in answers)
