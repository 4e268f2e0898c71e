"""HTTP on the chat port (docs/protocol.md, "HTTP on the same port"): /healthz, /metrics,
static files from web.root, 404s, and refused path traversal."""

import json
import os
import re
import time

import pytest

from redress_client import (connect, fetch_metrics, healthz, http_get, metric_total,
                            parse_metrics, run)

SECRET = "TOP-SECRET-do-not-serve"


def project_version(source_dir):
    with open(os.path.join(source_dir, "CMakeLists.txt"), encoding="utf-8") as f:
        m = re.search(r"project\(redress\s+VERSION\s+([0-9.]+)", f.read())
    return m.group(1)


def test_healthz(server, source_dir):
    status, headers, body = http_get(server.port, "/healthz")
    assert status == 200
    assert headers.get("content-type", "").startswith("application/json"), headers
    h = json.loads(body)
    assert h["status"] == "ok"
    assert h["version"] == project_version(source_dir)
    assert isinstance(h["uptime_s"], int) and not isinstance(h["uptime_s"], bool)
    assert h["uptime_s"] >= 0
    assert isinstance(h["connections"], int) and h["connections"] == 0


def test_healthz_counts_connections(server):
    async def go():
        a = await connect(server)
        b = await connect(server)
        await a.hello()
        await b.hello()
        assert healthz(server.port)["connections"] == 2
        await a.close()
        await b.close()
        # the count goes back down once the server has seen the closes
        deadline = time.monotonic() + 10
        while healthz(server.port)["connections"] != 0:
            assert time.monotonic() < deadline, "connections did not return to 0"
            time.sleep(0.05)

    run(go())


def test_metrics_format_and_names(server):
    status, headers, body = http_get(server.port, "/metrics")
    assert status == 200
    assert headers.get("content-type", "").startswith("text/plain"), headers
    samples, types = parse_metrics(body.decode("utf-8"))
    names = {n for n, _ in samples} | set(types)
    for name in ("redress_connections", "redress_messages_in_total",
                 "redress_messages_out_total", "redress_turns_total", "redress_errors_total",
                 "redress_store_batches_total", "redress_store_ops_total",
                 "redress_flow_vm_bytes", "redress_flow_gc_idle_slices_total",
                 "redress_flow_gc_idle_cycles_total", "redress_flow_gc_quiet_cycles_total",
                 "redress_store_checkpoints_total",
                 "redress_store_writer_checkpoints_total", "redress_ws_writes_total"):
        assert name in names, f"{name} missing from /metrics:\n{body.decode()}"
    for name, kind in types.items():
        if name.endswith("_total"):
            assert kind == "counter", f"{name} has TYPE {kind}"
    assert types.get("redress_connections") == "gauge"


def metric_delta(before, after, name, **labels):
    """How much the samples of name with these labels grew from before to after."""
    return metric_total(after, name, **labels) - metric_total(before, name, **labels)


async def chat_lines(server, prefix, text, n):
    """Opens a conversation and sends text n times, each answered; returns the client."""
    c = await connect(server)
    await c.hello()
    for i in range(n):
        await c.say(f"{prefix}-{i}", text)
    await c.drain(0.3)
    return c


def test_metrics_move_after_a_chat(server):
    before = fetch_metrics(server.port)

    async def go():
        c = await chat_lines(server, "m", "物流太慢了", 3)
        await c.send_text("{oops")
        await c.expect_error("bad_json")
        assert fetch_metrics(server.port)[("redress_connections", ())] == 1
        await c.close()

    run(go())
    after = fetch_metrics(server.port)

    def delta(name, **labels):
        return metric_delta(before, after, name, **labels)

    assert delta("redress_messages_in_total") >= 3
    assert delta("redress_messages_out_total") >= 5  # open, greeting, 3 replies
    assert delta("redress_turns_total") >= 3
    assert delta("redress_errors_total", code="bad_json") == 1
    assert delta("redress_store_ops_total") >= 4
    assert delta("redress_store_batches_total") >= 1


def metrics_around_lines(server, prefix, text, n):
    """/metrics before and after a conversation of n answered lines (chat_lines), closed."""
    before = fetch_metrics(server.port)

    async def go():
        c = await chat_lines(server, prefix, text, n)
        await c.close()

    run(go())
    return before, fetch_metrics(server.port)


def test_replies_are_written_at_the_end_of_their_loop_pass(server):
    """A turn's frames (ack, bot message, status) go out in one send at the end of the loop pass
    that queued them (ws_flush.c), not after a POLLOUT round on WRITEABLE."""
    before, after = metrics_around_lines(server, "w", "我的快递三天了还没到", 4)

    def delta(when):
        return metric_delta(before, after, "redress_ws_writes_total", when=when)

    assert delta("pass_end") >= 5, (delta("pass_end"), delta("writeable"))  # hello + 4 turns
    assert delta("writeable") == 0, (delta("pass_end"), delta("writeable"))


def histogram_series(samples, name, **labels):
    """[(le, cumulative count)] of one histogram series, in the order of its bounds."""
    want = set(labels.items())
    rows = [(dict(ls)["le"], v) for (n, ls), v in samples.items()
            if n == name + "_bucket" and want <= set(ls)]
    return sorted(rows, key=lambda r: float(r[0]))


def test_turn_latency_histograms(server):
    """Each bot turn is timed from its message decoded to its commit (redress_turn_seconds), as
    the flow's run plus the wait for the store (redress_turn_phase_seconds); each write
    transaction is timed too (redress_store_batch_seconds).  Prometheus histograms: cumulative
    buckets ending in +Inf, which equals _count."""
    before, after = metrics_around_lines(server, "h", "我的快递三天了还没到", 3)
    _, types = parse_metrics(http_get(server.port, "/metrics")[2].decode("utf-8"))
    assert types.get("redress_turn_seconds") == "histogram"
    assert types.get("redress_turn_phase_seconds") == "histogram"
    assert types.get("redress_store_batch_seconds") == "histogram"

    def delta(name, **labels):
        return metric_delta(before, after, name, **labels)

    assert delta("redress_turns_total") == 3
    assert delta("redress_turn_seconds_count") == 3
    assert delta("redress_turn_phase_seconds_count", phase="flow") == 3
    assert delta("redress_turn_phase_seconds_count", phase="store") == 3
    flow = delta("redress_turn_phase_seconds_sum", phase="flow")
    store = delta("redress_turn_phase_seconds_sum", phase="store")
    total = delta("redress_turn_seconds_sum")
    assert flow > 0 and store > 0, (flow, store)
    assert abs(total - (flow + store)) < 1e-5, (total, flow, store)  # the two phases add up
    assert delta("redress_store_batch_seconds_count") == delta("redress_store_batches_total")
    assert delta("redress_store_batch_seconds_count") >= 1
    for name, labels in (("redress_turn_seconds", {}),
                         ("redress_turn_phase_seconds", {"phase": "flow"}),
                         ("redress_turn_phase_seconds", {"phase": "store"}),
                         ("redress_store_batch_seconds", {})):
        rows = histogram_series(after, name, **labels)
        assert len(rows) == 16 and rows[-1][0] == "+Inf", rows
        counts = [v for _, v in rows]
        assert counts == sorted(counts), (name, rows)  # cumulative
        assert counts[-1] == metric_total(after, name + "_count", **labels), (name, rows)
        # the turns took more than nothing and (on a quiet test server) less than 10 s
        moved = [le for (le, v), (_, b) in zip(rows, histogram_series(before, name, **labels))
                 if v != b]
        assert moved and float(moved[0]) <= 10, (name, rows)


# long messages (about 1,900 characters): each turn leaves a few hundred KB of garbage
FLOW_GC_TEXTS = [t * (1900 // len(t)) for t in (
    "我的快递三天了还没到，订单号是DD2026111800123，能不能帮我查一下？",
    "退款申请提交一周了还没到账，金额是899元，请尽快处理。",
    "我想知道包裹现在在哪里，物流信息一直没有更新。")]


@pytest.mark.parametrize("idle_gc", ["1", "0"])
def test_flow_vm_is_collected_while_idle(server_factory, idle_gc):
    """flow.idle_gc=1: the Lua collector works in slices while the server is idle, not inside
    turns.  Conversations are played until /metrics shows that slices completed a collection
    cycle; with Lua's own collection (flow.idle_gc=0) no slice ever runs."""
    srv = server_factory("--limits.rate_per_sec", "1000", "--limits.rate_burst", "1000",
                         "--flow.idle_gc", idle_gc)

    def counts():
        m = fetch_metrics(srv.port)
        return (metric_total(m, "redress_flow_gc_idle_slices_total"),
                metric_total(m, "redress_flow_gc_idle_cycles_total"),
                metric_total(m, "redress_flow_vm_bytes"))

    start = counts()
    assert start[0] == 0 and start[1] == 0 and start[2] > 0

    async def go():
        for n in range(400 if idle_gc == "1" else 120):
            c = await connect(srv)
            await c.hello(customer_id=f"gc-{n}")
            for i, text in enumerate(FLOW_GC_TEXTS):
                await c.say(f"m-{i}", text)
            await c.close()
            if counts()[1] > 0:
                return n
        return None

    done_after = run(go(), timeout=300)
    slices, cycles, _ = counts()
    if idle_gc == "1":
        assert done_after is not None, f"no collection cycle completed in idle time: {start} -> {counts()}"
        assert slices >= cycles >= 1
    else:
        assert done_after is None and slices == 0 and cycles == 0


def test_quiet_vm_is_collected(server_factory, source_dir):
    """Once no conversation has called the VM for a second, one collection cycle runs however
    little garbage there is (below the size at which a cycle is due), and the VM is back to
    its live data; one cycle per quiet spell, none while the VM stays untouched."""
    srv = server_factory("--limits.rate_per_sec", "1000", "--limits.rate_burst", "1000",
                         "--rules.dir", os.path.join(source_dir, "rules"))

    def counts():
        m = fetch_metrics(srv.port)
        return (metric_total(m, "redress_flow_gc_quiet_cycles_total"),
                metric_total(m, "redress_flow_vm_bytes"))

    # loading the rules was a call: its quiet spell gets one cycle, and only one
    deadline = time.monotonic() + 20
    while counts()[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counts()[0] == 1, f"no quiet cycle after start-up: {counts()}"
    time.sleep(2.5)
    assert counts()[0] == 1, "a second quiet cycle without any call in between"

    async def go():
        for n in range(3):
            c = await connect(srv)
            await c.hello(customer_id=f"quiet-{n}")
            for i, text in enumerate(FLOW_GC_TEXTS):
                await c.say(f"m-{i}", text)
            await c.close()

    run(go(), timeout=120)
    cycles, busy = counts()
    deadline = time.monotonic() + 20
    while counts()[0] == cycles and time.monotonic() < deadline:
        time.sleep(0.2)
    after_cycles, quiet = counts()
    assert after_cycles == cycles + 1, f"no quiet cycle within 20 s: {cycles} -> {after_cycles}"
    # the complaint rules made about 1.5 MB of garbage in three conversations of long messages
    assert quiet + 512 * 1024 < busy, f"VM {busy} -> {quiet} bytes after the quiet cycle"
    time.sleep(2.5)
    assert counts()[0] == after_cycles, "a second quiet cycle without any call in between"


def test_duplicate_is_not_a_new_turn(server):
    async def go():
        c = await connect(server)
        await c.hello()
        await c.say("m-1", "你好")
        await c.drain(0.3)
        before = fetch_metrics(server.port)
        await c.send({"type": "message", "id": "m-1", "text": "你好"})
        await c.expect("ack")
        after = fetch_metrics(server.port)
        assert metric_total(after, "redress_turns_total") == \
            metric_total(before, "redress_turns_total")
        await c.close()

    run(go())


@pytest.fixture
def web_server(server_factory, tmp_path):
    """A server whose web.root is a fresh directory, with a secret file next to it."""
    root = tmp_path / "webroot"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>redress test</title>\n")
    (root / "sub" / "a.txt").write_text("plain file\n")
    (root / "app.js").write_text("console.log('x');\n")
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    srv = server_factory("--web.root", str(root))
    srv.web_root = root
    return srv


def test_root_serves_index_html(web_server):
    status, headers, body = http_get(web_server.port, "/")
    assert status == 200
    assert body == (web_server.web_root / "index.html").read_bytes()
    assert headers.get("content-type", "").startswith("text/html"), headers
    status, _, body2 = http_get(web_server.port, "/index.html")
    assert status == 200 and body2 == body


def test_static_files(web_server):
    status, headers, body = http_get(web_server.port, "/sub/a.txt")
    assert status == 200 and body == b"plain file\n"
    status, headers, body = http_get(web_server.port, "/app.js")
    assert status == 200 and b"console.log" in body
    assert "javascript" in headers.get("content-type", ""), headers


def test_default_web_root(server, source_dir):
    status, _, body = http_get(server.port, "/")
    index = os.path.join(source_dir, "web", "index.html")
    if os.path.exists(index):
        assert status == 200
        with open(index, "rb") as f:
            assert body == f.read()
    else:
        assert status == 404


@pytest.mark.parametrize("path", ["/nope", "/nope.html", "/sub/missing.txt", "/healthzz",
                                  "/metrics/x", "/api/does-not-exist"])
def test_unknown_path_404(web_server, path):
    status, _, body = http_get(web_server.port, path)
    assert status == 404, f"{path} answered {status}: {body[:200]!r}"
    assert healthz(web_server.port)["status"] == "ok"


@pytest.mark.parametrize("path", [
    "/../secret.txt",
    "/../../../../../../etc/passwd",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/%2e%2e%2fsecret.txt",
    "/..%2fsecret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/sub/..%5c..%5csecret.txt",
    "/./../secret.txt",
    "//../secret.txt",
    "/%252e%252e/secret.txt",
])
def test_path_traversal_refused(web_server, path):
    status, _, body = http_get(web_server.port, path)
    assert status in (400, 403, 404), f"{path} answered {status}: {body[:200]!r}"
    assert SECRET.encode() not in body
    assert b"root:" not in body
    assert healthz(web_server.port)["status"] == "ok"


def test_plain_get_on_chat_path(server):
    status, _, body = http_get(server.port, "/chat")
    # not a page: a plain GET on the WebSocket path is an HTTP error, and harmless
    assert status >= 400, f"GET /chat answered {status}: {body[:200]!r}"
    assert healthz(server.port)["status"] == "ok"


def test_many_requests_in_a_row(server):
    for _ in range(50):
        assert healthz(server.port)["status"] == "ok"
    samples = fetch_metrics(server.port)
    assert ("redress_connections", ()) in samples
