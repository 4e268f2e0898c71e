#!/usr/bin/python3
"""loadgen_merge - merges the JSON reports of several bench/loadgen processes.

    loadgen_merge.py merge OUT.json IN.json...   sum the counters, merge the latency buckets
    loadgen_merge.py get FILE.json a.b.c          print one field (for the shell script)
    loadgen_merge.py check FILE.json [--min-turns N] [--idle]
                                                  exit 1 unless the run was clean: every
                                                  conversation ready, no lost, timed-out,
                                                  rejected or closed turn, no protocol error

Percentiles of a merged run come from the merged histogram buckets (never from averaging the
processes' percentiles), by the same rule as loadgen_stats.c: the upper bound of the bucket
holding rank ceil(q * count), capped at the largest value seen.
"""

import json
import math
import sys

SUMMED_GROUPS = ("conversations", "turns", "traffic")
QUANTILES = (("p50_us", 0.50), ("p90_us", 0.90), ("p99_us", 0.99), ("p999_us", 0.999))


def merge_hist(hists):
    buckets = {}
    count = total = 0
    mx = 0
    for h in hists:
        count += h["count"]
        total += h["mean_us"] * h["count"]
        mx = max(mx, h["max_us"])
        for lo, hi, n in h["buckets"]:
            key = (lo, hi)
            buckets[key] = buckets.get(key, 0) + n
    out = {"count": count, "mean_us": round(total / count, 1) if count else 0.0}
    ordered = sorted(buckets.items())
    for name, q in QUANTILES:
        out[name] = quantile(ordered, count, mx, q)
    out["max_us"] = mx
    out["buckets"] = [[lo, hi, n] for (lo, hi), n in ordered]
    return out


def quantile(ordered, count, mx, q):
    if count == 0:
        return 0
    rank = max(1, math.ceil(q * count - 1e-9))
    seen = 0
    for (lo, hi), n in ordered:
        seen += n
        if seen >= rank:
            return min(hi, mx)
    return mx


def merge(reports):
    first = reports[0]
    out = {
        "mode": first["mode"],
        "target": first["target"],
        "processes": len(reports),
        "conns": sum(r["conns"] for r in reports),
        "rate": round(sum(r["rate"] for r in reports), 1),
        "warmup_s": first["warmup_s"],
        "duration_s": first["duration_s"],
        "window_s": max(r["window_s"] for r in reports),
        "connect_s": max(r["connect_s"] for r in reports),
        "ready_at_go": sum(r["ready_at_go"] for r in reports),
        "open_at_end": sum(r["open_at_end"] for r in reports),
        "aborted": any(r["aborted"] for r in reports),
        "notes": sorted({r["note"] for r in reports if r["note"]}),
        "loadgen_cpu_s": round(sum(r["cpu_user_s"] + r["cpu_sys_s"] for r in reports), 2),
        "loadgen_max_rss_kb": max(r["max_rss_kb"] for r in reports),
    }
    for group in SUMMED_GROUPS:
        out[group] = {}
        for key in first[group]:
            if key == "turns_per_s":
                continue
            out[group][key] = sum(r[group][key] for r in reports)
    w = out["window_s"]
    out["turns"]["turns_per_s"] = round(out["turns"]["window_turns"] / w, 1) if w else 0.0
    for group in ("errors", "closes"):
        out[group] = {}
        for r in reports:
            for k, v in r[group].items():
                out[group][k] = out[group].get(k, 0) + v
    out["latency"] = {k: merge_hist([r["latency"][k] for r in reports]) for k in first["latency"]}
    t = out["turns"]
    out["turns"]["lost_total"] = (t["timeout_unacked"] + t["timeout_unanswered"] +
                                  t["lost_unacked"] + t["lost_unanswered"] +
                                  t["closed_unacked"] + t["closed_unanswered"])
    return out


def get(doc, path):
    for part in path.split("."):
        doc = doc[part]
    return doc


def check(doc, min_turns, idle):
    problems = []
    c, t = doc["conversations"], doc["turns"]
    if doc["aborted"]:
        problems.append("aborted: %s" % ", ".join(doc["notes"]))
    if doc["ready_at_go"] != doc["conns"]:
        problems.append("only %d of %d conversations ready" % (doc["ready_at_go"], doc["conns"]))
    for key in ("connect_failed", "upgrade_failed", "hello_failed", "connect_timeouts",
                "protocol_errors", "closed_by_server"):
        if c[key]:
            problems.append("%s: %d" % (key, c[key]))
    if t["lost_total"] or t["rejected"]:
        problems.append("turns lost %d, rejected %d" % (t["lost_total"], t["rejected"]))
    if doc["errors"]:
        problems.append("error frames: %s" % json.dumps(doc["errors"]))
    if not idle:
        if t["done"] < min_turns:
            problems.append("only %d turns done" % t["done"])
        if t["window_turns"] < 1:
            problems.append("no turn done inside the measurement window")
        if doc["latency"]["turn"]["count"] != t["window_turns"]:
            problems.append("latency count %d != window turns %d" %
                            (doc["latency"]["turn"]["count"], t["window_turns"]))
    if doc["latency"]["hello"]["count"] < doc["conns"]:
        problems.append("hello latency count %d < conns" % doc["latency"]["hello"]["count"])
    return problems


def main(argv):
    if len(argv) >= 3 and argv[1] == "merge":
        reports = []
        for path in argv[3:]:
            with open(path, encoding="utf-8") as f:
                reports.append(json.load(f))
        if not reports:
            sys.exit("loadgen_merge: no reports to merge")
        with open(argv[2], "w", encoding="utf-8") as f:
            json.dump(merge(reports), f, indent=1)
            f.write("\n")
        return 0
    if len(argv) == 4 and argv[1] == "get":
        with open(argv[2], encoding="utf-8") as f:
            v = get(json.load(f), argv[3])
        print(json.dumps(v) if isinstance(v, (dict, list)) else v)
        return 0
    if len(argv) >= 3 and argv[1] == "check":
        min_turns = 1
        idle = "--idle" in argv[3:]
        if "--min-turns" in argv[3:]:
            min_turns = int(argv[argv.index("--min-turns") + 1])
        with open(argv[2], encoding="utf-8") as f:
            problems = check(json.load(f), min_turns, idle)
        for p in problems:
            print("check %s: %s" % (argv[2], p), file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
