#!/usr/bin/python3
"""server_metrics - the server's own latency figures over a window of a benchmark run.

    server_metrics.py window BEFORE.txt AFTER.txt

BEFORE and AFTER are two scrapes of redress's GET /metrics (Prometheus text) taken at the
start and at the end of the measurement window.  Prints one JSON object with, for each latency
histogram the server keeps, the window's count, mean and the bucket bounds holding its p50,
p90 and p99 (microseconds; a Prometheus histogram only says "at most this bound"):

    turn   redress_turn_seconds: a customer's message decoded -> its commit, replies queued
    flow   redress_turn_phase_seconds{phase="flow"}: the flow's run on the loop
    store  redress_turn_phase_seconds{phase="store"}: then the wait for the commit
    batch  redress_store_batch_seconds: each write transaction of the writer thread

What a load generator measures beyond "turn" is the time a frame waits for the loop to read it
(plus the write and the client's side).
"""

import json
import math
import re
import sys

SERIES = (("turn", "redress_turn_seconds", ""),
          ("flow", "redress_turn_phase_seconds", 'phase="flow"'),
          ("store", "redress_turn_phase_seconds", 'phase="store"'),
          ("batch", "redress_store_batch_seconds", ""))
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)$')


def parse(path):
    """{(name, labels without le): {"le": {bound: n}, "sum": x, "count": n}}"""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = SAMPLE.match(line.strip())
            if not m or line.startswith("#"):
                continue
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            parts = [p for p in labels.split(",") if p]
            le = [p for p in parts if p.startswith("le=")]
            rest = ",".join(p for p in parts if not p.startswith("le="))
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix):
                    h = out.setdefault((name[:-len(suffix)], rest), {"le": {}, "sum": 0.0,
                                                                       "count": 0.0})
                    if suffix == "_bucket" and le:
                        bound = le[0][4:-1]
                        h["le"][math.inf if bound == "+Inf" else float(bound)] = value
                    elif suffix != "_bucket":
                        h[suffix[1:]] = value
    return out


def window(before, after):
    res = {}
    for key, name, labels in SERIES:
        a, b = after.get((name, labels)), before.get((name, labels))
        if a is None:
            res[key] = None
            continue
        b = b or {"le": {}, "sum": 0.0, "count": 0.0}
        count = int(a["count"] - b["count"])
        r = {"count": count,
             "mean_us": round((a["sum"] - b["sum"]) / count * 1e6, 1) if count else None}
        bounds = sorted(a["le"])
        for q, field in ((0.5, "p50_le_us"), (0.9, "p90_le_us"), (0.99, "p99_le_us")):
            r[field] = None
            for bound in bounds:
                if count and a["le"][bound] - b["le"].get(bound, 0) >= math.ceil(q * count):
                    r[field] = None if bound == math.inf else round(bound * 1e6)
                    break
        res[key] = r
    return res


def main(argv):
    if len(argv) != 4 or argv[1] != "window":
        sys.stderr.write(__doc__)
        return 2
    print(json.dumps(window(parse(argv[2]), parse(argv[3])), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
