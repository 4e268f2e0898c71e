"""Webhooks end to end (docs/complaints.md, "Webhooks"): endpoints registered with the real
`redress webhook` CLI, a real server with the shipped flows (rules/), a real customer whose
complaint is recorded and who asks for a human ("转人工"), and a real HTTP receiver on
127.0.0.1 (Python's http.server in a thread) that records what arrives.

Covered: the signature (HMAC-SHA256 of "t.body" with the endpoint's secret, checked here with
Python's hmac), every header, the body's fields, order per endpoint, only subscribed and
enabled endpoints get events, retries with backoff (500, 500, 200), a receiver that is down
and comes back, a receiver that never answers (timeout, then the same delivery again), a
server restart with a delivery pending, a delivery in flight at shutdown sent again with the
same X-Redress-Delivery id, endpoints added while the server runs, and the CLI's checks.

Every wait has a deadline; the receiver signals each request (no sleeps)."""

import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent_client import is_status, wait_event
from conftest import source_root
from redress_client import HOST, connect, run

COMPLAINT = "我在你们商城买的手机一直没发货，订单号12345678"
HUMAN = "转人工"
ALWAYS = ("--agent.hours", "00:00-24:00")
SECRET = "s3cret-for-the-e2e-tests-0123456789"
WAIT = 60.0  # seconds for a delivery (retries wait 1, 2, 4 s; a timeout is 10 s)
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
RECORD_RE = re.compile(r"^TS\d{8}-\d{6}$")
SIG_RE = re.compile(r"^t=(\d+),v1=([0-9a-f]{64})$")


# --------------------------------------------------------------------------- the receiver


class Request:
    def __init__(self, at, method, path, headers, body, answer):
        self.at = at            # time.monotonic() on arrival
        self.method = method
        self.path = path
        self.headers = headers  # lower-case names
        self.body = body        # bytes
        self.answer = answer    # the status it got, or "hold"

    @property
    def delivery(self):
        return self.headers.get("x-redress-delivery")


class Receiver:
    """A webhook receiver on 127.0.0.1.  Answers requests from a script (an HTTP status, or
    "hold": keep the request unanswered until release()), then 200.  stop() and start() keep
    the port, so a test can take the receiver down and bring it back."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests = []
        self.cond = threading.Condition()
        self.released = threading.Event()
        self.port = 0
        self.httpd = None
        self.thread = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with receiver.cond:
                    answer = receiver.script.pop(0) if receiver.script else 200
                    receiver.requests.append(Request(
                        time.monotonic(), self.command, self.path,
                        {k.lower(): v for k, v in self.headers.items()}, body, answer))
                    receiver.cond.notify_all()
                if answer == "hold":
                    receiver.released.wait(WAIT)
                    answer = 200
                payload = b"ok" if answer < 300 else b"boom: try later"
                try:
                    self.send_response(answer)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up on this request

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((HOST, self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=10)
            self.httpd = None

    def release(self):
        self.released.set()

    def url(self, path="/hook"):
        return f"http://{HOST}:{self.port}{path}"

    def wait(self, n, timeout=WAIT):
        """Waits until n requests arrived; returns a copy of the list."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the receiver got {len(self.requests)} requests within "
                                         f"{timeout}s, expected {n}")
                self.cond.wait(left)
            return list(self.requests)


def stop_all(receivers):
    for r in receivers:
        r.release()
        r.stop()


# --------------------------------------------------------------------------- CLI and helpers


def cli(data_dir, *args, stdin=None):
    """`redress webhook ARGS --data.dir DIR`.  Returns (exit code, stdout, stderr)."""
    p = subprocess.run([os.environ["REDRESS_BIN"], "webhook", *args, "--data.dir", str(data_dir)],
                       input=stdin.encode() if stdin is not None else None,
                       stdin=None if stdin is not None else subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def add_endpoint(data_dir, url, events="complaint.escalated", secret=SECRET):
    """Registers an endpoint; returns (id, secret) (the generated one when secret is None)."""
    args = ["add", url, f"--events={events}"]
    if secret is not None:
        args.append(f"--secret={secret}")
    rc, out, err = cli(data_dir, *args)
    assert rc == 0, f"webhook add failed ({rc}): {err}"
    m = re.match(r"^added webhook (\d+): (\S+) \(events: (\S+)\)$", out.splitlines()[0])
    assert m and m.group(2) == url, out
    if secret is None:
        m2 = re.search(r"^secret: ([0-9a-f]{48})$", out, re.M)
        assert m2, f"no generated secret printed: {out!r}"
        secret = m2.group(1)
    return int(m.group(1)), secret


def log_rows(data_dir):
    """`redress webhook log` parsed: a list of dicts, newest first."""
    rc, out, err = cli(data_dir, "log", "--limit=1000")
    assert rc == 0, err
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split(None, 8)
        rows.append({"id": parts[0], "endpoint": int(parts[1]), "event": parts[2],
                     "state": parts[3], "attempts": int(parts[4]), "http": parts[5],
                     "error": parts[8] if len(parts) > 8 else ""})
    return rows


def wait_log(data_dir, pred, what, timeout=WAIT):
    """Polls the delivery log until pred(rows) holds; returns the rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = log_rows(data_dir)
        if pred(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s; log: {rows}")
        time.sleep(0.2)


def verify(req, secret):
    """Checks X-Redress-Signature against the body with secret; returns its t."""
    m = SIG_RE.match(req.headers.get("x-redress-signature", ""))
    assert m, f"bad signature header: {req.headers}"
    t = int(m.group(1))
    want = hmac.new(secret.encode(), f"{t}.".encode() + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(want, m.group(2)), "the signature does not verify"
    assert abs(t - time.time()) < 300, f"signature time {t} is far from now"
    return t


def start(server_factory, data_dir):
    return server_factory("--rules.dir", os.path.join(source_root(), "rules"), *ALWAYS,
                          data_dir=data_dir)


def escalate(srv, cid="cust-1"):
    """A customer describes a complaint (the record is created) and asks for a human (it is
    escalated).  Returns the conversation name."""

    async def go():
        c = await connect(srv)
        await c.hello(cid, name="张三")
        await c.say("m-1", COMPLAINT)
        await c.send({"type": "message", "id": "m-2", "text": HUMAN})
        await wait_event(c, is_status("escalated"))
        conv = c.conversation
        await c.close()
        return conv

    return run(go())


# --------------------------------------------------------------------------- tests


def test_signed_deliveries_in_order(server_factory, tmp_path):
    data = tmp_path / "data"
    rx = Receiver().start()
    other = Receiver().start()
    try:
        ep, secret = add_endpoint(data, rx.url("/hook?src=redress"),
                                  events="complaint.created,complaint.escalated", secret=None)
        add_endpoint(data, other.url(), events="sla.breached")
        ep_off, _ = add_endpoint(data, other.url(), events="*")
        assert cli(data, "disable", str(ep_off))[0] == 0
        srv = start(server_factory, data)
        conv = escalate(srv)

        reqs = rx.wait(2)
        created, escalated = reqs
        # order per endpoint: the record was created before it was escalated
        assert [r.headers["x-redress-event"] for r in reqs] == \
            ["complaint.created", "complaint.escalated"]
        ids = set()
        for r in reqs:
            assert r.method == "POST" and r.path == "/hook?src=redress", (r.method, r.path)
            h = r.headers
            assert h["content-type"] == "application/json", h
            assert int(h["content-length"]) == len(r.body), h
            assert h["user-agent"].startswith("redress-webhook/"), h
            assert h["x-redress-attempt"] == "1", h
            assert re.fullmatch(r"[1-9][0-9]*", h["x-redress-delivery"]), h
            ids.add(h["x-redress-delivery"])
            verify(r, secret)
            # a wrong secret does not verify
            t = SIG_RE.match(h["x-redress-signature"]).group(1)
            assert hmac.new(b"another-secret-0123456789", f"{t}.".encode() + r.body,
                            hashlib.sha256).hexdigest() != SIG_RE.match(
                                h["x-redress-signature"]).group(2)
            doc = json.loads(r.body)
            assert set(doc) == {"id", "event", "created_at", "complaint"}, doc
            assert UUID4_RE.match(doc["id"]), doc["id"]
            assert doc["event"] == h["x-redress-event"]
            assert ISO_RE.match(doc["created_at"]), doc["created_at"]
            c = doc["complaint"]
            assert RECORD_RE.match(c["number"]) and c["conversation"] == conv, c
            assert c["channel"] == "web" and isinstance(c["breached"], list), c
        assert len(ids) == 2, "two deliveries share an id"
        c_created = json.loads(created.body)["complaint"]
        c_escalated = json.loads(escalated.body)["complaint"]
        assert c_created["number"] == c_escalated["number"]
        assert c_escalated["escalated"] is True

        # the other endpoints got no rows: one wants sla.breached only, one is disabled
        rows = wait_log(data, lambda rows: len(rows) == 2 and
                        all(r["state"] == "delivered" for r in rows), "both delivered")
        assert {r["endpoint"] for r in rows} == {ep}, rows
        assert all(r["attempts"] == 1 and r["http"] == "200" and r["error"] == ""
                   for r in rows), rows
        assert other.requests == []
    finally:
        stop_all([rx, other])


def test_retries_with_backoff(server_factory, tmp_path):
    data = tmp_path / "data"
    rx = Receiver(script=[500, 500]).start()
    try:
        add_endpoint(data, rx.url(), events="complaint.created,complaint.escalated")
        srv = start(server_factory, data)
        escalate(srv)
        reqs = rx.wait(4)
        first = reqs[0].delivery
        # the created event three times (500, 500, 200), then the escalated one: order is kept
        assert [r.delivery for r in reqs[:3]] == [first] * 3, [r.headers for r in reqs]
        assert [r.answer for r in reqs] == [500, 500, 200, 200]
        assert [r.headers["x-redress-attempt"] for r in reqs] == ["1", "2", "3", "1"]
        assert reqs[3].headers["x-redress-event"] == "complaint.escalated"
        assert reqs[3].delivery != first
        # the same body every time, each attempt signed again
        assert reqs[0].body == reqs[1].body == reqs[2].body
        for r in reqs:
            verify(r, SECRET)
        # backoff: at least 1 s before the 2nd attempt, at least 2 s before the 3rd
        assert reqs[1].at - reqs[0].at >= 0.95, reqs[1].at - reqs[0].at
        assert reqs[2].at - reqs[1].at >= 1.95, reqs[2].at - reqs[1].at
        rows = wait_log(data, lambda rows: len(rows) == 2 and
                        all(r["state"] == "delivered" for r in rows), "delivered")
        by_id = {r["id"]: r for r in rows}
        assert by_id[first]["attempts"] == 3 and by_id[first]["http"] == "200", rows
        assert by_id[first]["error"] == "", "the last error stays after delivery"
    finally:
        stop_all([rx])


def test_receiver_down_then_back(server_factory, tmp_path):
    data = tmp_path / "data"
    rx = Receiver().start()
    rx.stop()  # keeps its port; nothing listens there now
    try:
        add_endpoint(data, rx.url())
        srv = start(server_factory, data)
        escalate(srv)
        rows = wait_log(data, lambda rows: rows and rows[0]["attempts"] >= 2,
                        "two failed attempts")
        row = rows[0]
        assert row["state"] == "pending" and row["http"] == "-", row
        assert "connect" in row["error"], row
        rx.start()
        reqs = rx.wait(1)
        assert reqs[0].delivery == row["id"]
        assert int(reqs[0].headers["x-redress-attempt"]) >= 3
        verify(reqs[0], SECRET)
        rows = wait_log(data, lambda rows: rows[0]["state"] == "delivered", "delivered")
        # delivered once: the row is delivered, so no further attempt can come
        assert len(rx.requests) == 1
        assert rows[0]["attempts"] == int(reqs[0].headers["x-redress-attempt"])
    finally:
        stop_all([rx])


def test_pending_delivery_survives_restart(server_factory, tmp_path):
    data = tmp_path / "data"
    rx = Receiver().start()
    rx.stop()
    try:
        add_endpoint(data, rx.url())
        srv = start(server_factory, data)
        escalate(srv)
        rows = wait_log(data, lambda rows: rows and rows[0]["attempts"] >= 1, "a failed attempt")
        srv.stop()
        rows = log_rows(data)
        assert len(rows) == 1 and rows[0]["state"] == "pending", rows
        before = rows[0]["attempts"]
        rx.start()
        srv.start()
        reqs = rx.wait(1)
        assert reqs[0].delivery == rows[0]["id"]
        assert reqs[0].headers["x-redress-attempt"] == str(before + 1)
        assert reqs[0].headers["x-redress-event"] == "complaint.escalated"
        verify(reqs[0], SECRET)
        rows = wait_log(data, lambda rows: rows[0]["state"] == "delivered", "delivered")
        assert len(rx.requests) == 1 and rows[0]["attempts"] == before + 1
    finally:
        stop_all([rx])


def test_in_flight_at_shutdown_is_sent_again_with_the_same_id(server_factory, tmp_path):
    data = tmp_path / "data"
    rx = Receiver(script=["hold"]).start()
    try:
        add_endpoint(data, rx.url())
        srv = start(server_factory, data)
        escalate(srv)
        first = rx.wait(1)[0]  # received, never answered
        srv.stop()  # the delivery is abandoned, not counted
        rx.release()
        srv.start()
        second = rx.wait(2)[1]
        assert second.delivery == first.delivery, "a receiver could not drop the duplicate"
        assert second.body == first.body
        assert first.headers["x-redress-attempt"] == second.headers["x-redress-attempt"] == "1"
        verify(second, SECRET)
        rows = wait_log(data, lambda rows: rows[0]["state"] == "delivered", "delivered")
        assert rows[0]["attempts"] == 1
    finally:
        stop_all([rx])


def test_no_answer_times_out_and_retries(server_factory, tmp_path):
    data = tmp_path / "data"
    rx = Receiver(script=["hold"]).start()
    try:
        add_endpoint(data, rx.url())
        srv = start(server_factory, data)
        escalate(srv)
        reqs = rx.wait(2)
        assert reqs[1].delivery == reqs[0].delivery and reqs[1].body == reqs[0].body
        assert reqs[1].headers["x-redress-attempt"] == "2"
        assert reqs[1].at - reqs[0].at >= 10.9, "retried before the 10 s timeout and 1 s wait"
        rows = wait_log(data, lambda rows: rows[0]["state"] == "delivered", "delivered")
        assert rows[0]["attempts"] == 2 and rows[0]["http"] == "200", rows
        assert srv.running
    finally:
        stop_all([rx])


def test_cli(server_factory, tmp_path):
    data = tmp_path / "data"
    bad_urls = {
        "ftp://example.com/hook": "only http:// and https://",
        "example.com/hook": "only http:// and https://",
        "http:///hook": "no host",
        "http://example.com:99999/": "out of range",
        "http://user:pw@example.com/": "passwords",
        "http://example.com/a b": "space",
        "http://example.com/#x": "fragment",
    }
    for url, why in bad_urls.items():
        rc, out, err = cli(data, "add", url, f"--secret={SECRET}")
        assert rc == 1 and why in err and out == "", (url, rc, err)
    rc, _, err = cli(data, "add", "http://127.0.0.1:9/x", "--events=complaint.opened")
    assert rc == 1 and 'unknown event "complaint.opened"' in err, err
    rc, _, err = cli(data, "add", "http://127.0.0.1:9/x", "--events=*,sla.breached")
    assert rc == 1 and "cannot be combined" in err, err
    rc, _, err = cli(data, "add", "http://127.0.0.1:9/x", "--secret=too-short")
    assert rc == 1 and "16 to 256" in err, err
    rc, _, err = cli(data, "add")
    assert rc == 2 and "usage" in err
    for cmd in ("remove", "disable", "enable"):
        for bad in ("abc", "0", "1x"):
            rc, _, err = cli(data, cmd, bad)
            assert rc == 1 and f'bad id "{bad}"' in err, (cmd, bad, err)
        rc, _, err = cli(data, cmd, "99")
        assert rc == 1 and "no webhook 99" in err, (cmd, err)
    rc, _, err = cli(data, "frobnicate")
    assert rc == 2 and 'unknown command "frobnicate"' in err

    # the secret from stdin; list shows 4 characters of it, never all
    rc, out, err = cli(data, "add", "https://crm.example.com/hooks?k=1", "--secret=-",
                       stdin="from-stdin-secret-0123\n")
    assert rc == 0 and out.startswith("added webhook 1: ") and "secret:" not in out, (out, err)
    rc, out, _ = cli(data, "list")
    assert rc == 0
    line = [ln for ln in out.splitlines() if ln.startswith("1 ")][0]
    assert "enabled" in line and "from..." in line and "from-stdin-secret" not in out, out
    assert line.split()[-1] == "https://crm.example.com/hooks?k=1" and " * " in line, line
    assert cli(data, "disable", "1")[1] == "webhook 1 disabled\n"
    assert "disabled" in cli(data, "list")[1]
    assert cli(data, "enable", "1")[1] == "webhook 1 enabled\n"

    # added while the server runs: picked up without a restart
    rx = Receiver().start()
    dead = Receiver().start()
    dead.stop()
    try:
        assert cli(data, "remove", "1") == (0, "removed webhook 1\n", "")
        srv = start(server_factory, data)
        ep, secret = add_endpoint(data, rx.url(), events="*", secret=None)
        ep_dead, _ = add_endpoint(data, dead.url())
        escalate(srv)
        reqs = rx.wait(2)
        for r in reqs:
            verify(r, secret)
        # removing an endpoint with a pending delivery marks it failed
        wait_log(data, lambda rows: any(r["endpoint"] == ep_dead and r["attempts"] >= 1
                                        for r in rows), "a failed attempt to the dead endpoint")
        rc, out, err = cli(data, "remove", str(ep_dead))
        assert rc == 0 and out == f"removed webhook {ep_dead}; 1 pending delivery marked " \
                                  f"failed\n", (out, err)
        rc, out, _ = cli(data, "log", "--failed")
        lines = out.splitlines()[1:]
        assert len(lines) == 1 and "failed" in lines[0] and "endpoint removed" in lines[0], out
        rc, out, _ = cli(data, "list")
        assert [ln.split()[0] for ln in out.splitlines()[1:]] == [str(ep)], out
        assert srv.running
    finally:
        stop_all([rx, dead])
