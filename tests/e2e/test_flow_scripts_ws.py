"""The shipped complaint flow, end to end over the real chat protocol.

Every conversation script in rules/tests/*.test (the editors' `redress flow test` scripts) is
played against a real server through a real WebSocket client: `>` lines are sent as customer
messages, `<` / `<!` / `options` lines are checked against the bot messages that arrive,
`escalate` and `status` against status events, and `category` against the conversation's saved
flow state in the SQLite file.  The server's flow clock starts at the script's @time
(flow.clock_start), so relative dates (昨天, 上周三) resolve as in the scripts.

A case is skipped when it needs something a customer cannot do over the protocol: move the clock
(`wait`), restart or reload the server, hand back from an agent, or a customer profile that
comes from the company's systems (vip=, history=).  `redress flow test` (ctest flow_scripts)
runs those cases in full.
"""
import asyncio
import glob
import json
import os
import sqlite3
import time

import pytest

from redress_client import connect, run

UNSUPPORTED = ("wait", "restart", "reload", "handback", "complaint")


def parse(path):
    """Returns (file-level directives, [(title, [(lineno, line)])])."""
    head, cases, cur = {}, [], None
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("==="):
                cur = (stripped[3:].strip(), [])
                cases.append(cur)
                continue
            if cur is None:
                if stripped.startswith("@"):
                    key, _, rest = stripped[1:].partition(" ")
                    head[key] = rest.split("#")[0].strip()
                continue
            cur[1].append((n, stripped))
    return head, cases


def customer_of(spec):
    out = {}
    for part in spec.split():
        k, _, v = part.partition("=")
        out[k] = v
    return out


def skip_reason(head, lines):
    cust = customer_of(head.get("customer", ""))
    if "vip" in cust or "history" in cust:
        return "customer profile (vip/history) comes from the company's systems"
    if "flow" in head:
        return "starts a non-default flow"
    for _, l in lines:
        word = l.split()[0]
        if word in UNSUPPORTED or l.startswith("@"):
            return f"uses `{word}`"
    return None


def all_cases():
    root = os.environ.get("REDRESS_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    out = []
    for path in sorted(glob.glob(os.path.join(root, "rules", "tests", "*.test"))):
        head, cases = parse(path)
        for i, (title, lines) in enumerate(cases):
            out.append(pytest.param(path, head, title, lines,
                                    id=f"{os.path.basename(path)}:{i + 1}"))
    return out


def flow_state(db_path, conversation_id):
    num = int(conversation_id.split("-")[1])
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT flow_state FROM conversations WHERE id = ?", (num,)).fetchone()
    finally:
        con.close()
    return json.loads(row[0]) if row and row[0] else None


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One server per @time value, shared by the cases of the module."""
    from redress_client import Server
    from conftest import redress_bin
    made = {}

    def get(clock):
        if clock not in made:
            d = tmp_path_factory.mktemp("flowws")
            srv = Server(redress_bin(), d, ("--flow.clock_start", clock,
                                           "--limits.rate_per_sec", "1000",
                                           "--limits.rate_burst", "1000"), log_dir=d / "logs")
            srv.start()
            made[clock] = srv
        return made[clock]

    yield get
    for srv in made.values():
        srv.finish()


class Turn:
    """Bot output since the last customer action."""

    def __init__(self):
        self.messages = []   # bot/system message frames, in order
        self.statuses = []   # status frames
        self.pos = 0         # where the next `<` starts looking
        self.last = None     # the message the last `<` matched


async def collect(client, turn, until, timeout=15.0):
    """Reads frames into turn until until() is true; False on timeout."""
    deadline = time.monotonic() + timeout
    while not until():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            f = await client.recv(left)
        except asyncio.TimeoutError:
            return False
        if f["type"] == "message" and f["from"] != "customer":
            turn.messages.append(f)
        elif f["type"] == "status":
            turn.statuses.append(f)
    return True


async def settle(client, turn, quiet=0.15):
    """Takes what is still in flight for this turn (the flow answers a turn in one go)."""
    while True:
        try:
            f = await client.recv(quiet)
        except asyncio.TimeoutError:
            return
        if f["type"] == "message" and f["from"] != "customer":
            turn.messages.append(f)
        elif f["type"] == "status":
            turn.statuses.append(f)


def where(path, n):
    return f"{os.path.basename(path)}:{n}"


@pytest.mark.parametrize("path,head,title,lines", all_cases())
def test_script_over_websocket(servers, path, head, title, lines):
    reason = skip_reason(head, lines)
    if reason:
        pytest.skip(reason)
    srv = servers(head.get("time", "2026-03-06 10:00"))
    cust = customer_of(head.get("customer", "id=u-ws"))

    async def go():
        c = await connect(srv)
        hello = {"id": f"{cust.get('id', 'u-ws')}-{time.monotonic_ns()}"}
        if cust.get("name"):
            hello["name"] = cust["name"]
        if cust.get("channel"):
            hello["channel"] = cust["channel"]
        await c.send({"type": "hello", "customer": hello})
        welcome = await c.expect("welcome")
        turn, sent = Turn(), 0
        for n, line in lines:
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            if line.startswith("> "):
                await settle(c, turn)
                sent += 1
                mid = f"m{sent}"
                await c.send({"type": "message", "id": mid, "text": line[2:].strip()})
                turn = Turn()
                ok = await collect(c, turn, lambda: any(
                    f.get("type") == "ack" and f.get("id") == mid for f in c.frames))
                assert ok, f"{where(path, n)}: no ack for {line!r}"
            elif line.startswith("< "):
                want = line[2:].strip()

                def found():
                    for i in range(turn.pos, len(turn.messages)):
                        if want in turn.messages[i]["text"]:
                            turn.pos, turn.last = i, turn.messages[i]
                            return True
                    return False
                ok = await collect(c, turn, found)
                assert ok, (f"{where(path, n)}: no bot message containing {want!r}; got "
                            f"{[m['text'] for m in turn.messages]}")
            elif line.startswith("<! "):
                await settle(c, turn)
                want = line[3:].strip()
                bad = [m["text"] for m in turn.messages if want in m["text"]]
                assert not bad, f"{where(path, n)}: the bot said {want!r}: {bad}"
            elif word == "options":
                assert turn.last is not None, f"{where(path, n)}: options without a `<` before"
                opts = turn.last.get("options", [])
                if rest.startswith("~"):
                    assert any(rest[1:].strip() in o for o in opts), \
                        f"{where(path, n)}: no option containing {rest[1:].strip()!r} in {opts}"
                else:
                    want = [o.strip() for o in rest.split("|")]
                    assert opts == want, f"{where(path, n)}: options {opts}, expected {want}"
            elif word == "escalate":
                reason_want = rest.split()[0] if rest else None
                ok = await collect(c, turn, lambda: any(
                    s["state"] == "escalated" and
                    (reason_want is None or s["detail"].get("reason") == reason_want)
                    for s in turn.statuses))
                assert ok, (f"{where(path, n)}: no escalated status with reason "
                            f"{reason_want!r}; got {[s['detail'] for s in turn.statuses]}")
            elif word == "noescalate":
                await settle(c, turn)
                assert not any(s["state"] == "escalated" for s in turn.statuses), \
                    f"{where(path, n)}: escalated unexpectedly: {turn.statuses}"
            elif word == "status":
                st = rest.split()[0]
                ok = await collect(c, turn, lambda: any(s["state"] == st for s in turn.statuses))
                assert ok, f"{where(path, n)}: no status {st!r}: {turn.statuses}"
            elif word == "category":
                await settle(c, turn)
                deadline = time.monotonic() + 10
                while True:
                    fs = flow_state(srv.db_path, welcome["conversation"])
                    got = fs and fs.get("state", {}).get("category")
                    if got == rest or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                assert got == rest, f"{where(path, n)}: category {got!r}, expected {rest!r}"
            # slot/state/severity/step/record/done/waiting/failed/nobot/(not)escalated are
            # checked in full by `redress flow test` (ctest flow_scripts) with the same scripts.
        await c.close()

    run(go(), timeout=120)
