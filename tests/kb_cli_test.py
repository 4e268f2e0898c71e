"""End-to-end tests of `redress kb ...` against the real binary (REDRESS_BIN)."""
import json
import os
import subprocess

import pytest

BIN = os.environ.get("REDRESS_BIN", "redress")
SRC = os.environ.get("REDRESS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
DATA = os.path.join(SRC, "tests", "data", "kb")


def kb(tmp_path, *args, synonyms=None):
    cmd = [BIN, "kb", *args, "--data.dir=%s" % (tmp_path / "data"),
           "--kb.synonyms=%s" % (synonyms if synonyms is not None else os.path.join(DATA, "synonyms.txt"))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_import_search_export_round_trip(tmp_path):
    r = kb(tmp_path, "import", os.path.join(DATA, "templates.jsonl"), "--who", "tester")
    assert r.returncode == 0, r.stderr
    assert "imported 5 records" in r.stdout and "5 created" in r.stdout
    assert (tmp_path / "data" / "redress.db").exists()
    r = kb(tmp_path, "import", os.path.join(DATA, "cases.jsonl"))
    assert r.returncode == 0, r.stderr

    r = kb(tmp_path, "search", "我想退钱", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["hits"][0]["key"] == "refund-001"
    assert res["confidence"] == "answer"

    r = kb(tmp_path, "search", "年费", "-c", "bank.fee", "-n", "1")
    assert r.returncode == 0, r.stderr
    assert "fee-001" in r.stdout and "case-0001" not in r.stdout

    out = tmp_path / "export.jsonl"
    r = kb(tmp_path, "export", str(out))
    assert r.returncode == 0, r.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8
    assert all(json.loads(line)["kind"] in ("template", "case") for line in lines)
    assert not (tmp_path / "export.jsonl.tmp").exists()

    # the export imports into a fresh database and exports identically
    other = tmp_path / "other"
    other.mkdir()
    r = kb(other, "import", str(out))
    assert r.returncode == 0, r.stderr
    r = kb(other, "export")
    assert r.returncode == 0, r.stderr
    assert r.stdout == out.read_text(encoding="utf-8")

    # and into its source it changes nothing
    r = kb(tmp_path, "import", str(out))
    assert "8 unchanged" in r.stdout


def test_import_error_names_line_and_imports_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = open(os.path.join(DATA, "templates.jsonl"), encoding="utf-8").read()
    bad.write_text(good + '{"kind":"template","key":"x","title":"t","category":"nope","text":"t"}\n',
                   encoding="utf-8")
    r = kb(tmp_path, "import", str(bad))
    assert r.returncode == 1
    assert "%s:6:" % bad in r.stderr and "unknown category" in r.stderr
    assert "nothing was imported" in r.stderr
    r = kb(tmp_path, "stats")
    assert r.returncode == 0, r.stderr
    assert "total: 0 templates" in r.stdout


def test_stats_reindex_synonyms(tmp_path):
    assert kb(tmp_path, "import", os.path.join(DATA, "templates.jsonl")).returncode == 0
    r = kb(tmp_path, "stats")
    assert r.returncode == 0, r.stderr
    assert "total: 5 templates" in r.stdout and "3 groups" in r.stdout
    r = kb(tmp_path, "reindex")
    assert r.returncode == 0 and "reindexed" in r.stdout
    r = kb(tmp_path, "synonyms")
    assert r.returncode == 0 and "3 groups, ok" in r.stdout
    bad = tmp_path / "syn.txt"
    bad.write_text("退款 退钱\n孤单\n", encoding="utf-8")
    r = kb(tmp_path, "synonyms", str(bad))
    assert r.returncode == 1 and "%s:2:" % bad in r.stderr
    # a broken configured list stops every command with the reason
    r = kb(tmp_path, "stats", synonyms=str(bad))
    assert r.returncode == 1 and ":2:" in r.stderr
    # no synonyms: 退钱 no longer reaches the refund template
    r = kb(tmp_path, "search", "退钱", "--json", synonyms="")
    assert r.returncode == 0, r.stderr
    assert all(h["key"] != "refund-001" for h in json.loads(r.stdout)["hits"])


@pytest.mark.parametrize("args", [
    [], ["nope"], ["import"], ["search"], ["search", "x", "-n", "0"],
    ["search", "x", "-c", "no.such"], ["export", "a", "b"],
])
def test_usage_errors(tmp_path, args):
    r = kb(tmp_path, *args)
    assert r.returncode == 2
    assert r.stderr


def test_hostile_search_text(tmp_path):
    assert kb(tmp_path, "import", os.path.join(DATA, "templates.jsonl")).returncode == 0
    for text in ['" OR *', "NEAR(a b)", "退款\" AND", "😀", "-", "{title}:x"]:
        r = kb(tmp_path, "search", text, "--json")
        assert r.returncode == 0, (text, r.stderr)
        json.loads(r.stdout)
