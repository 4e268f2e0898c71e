#!/usr/bin/python3
"""kb_segment_compare.py - which way of cutting Chinese text retrieves best, all else equal.

Measurement behind the choice of the "redress" tokenizer's CJK mode (kb/README.md).  Every
distinct AFQMC sentence is indexed in an FTS5 table as space-separated tokens produced in Python
(so FTS5's unicode61 only splits at the spaces), queries are the OR of the query sentence's
distinct tokens, ranked by bm25(); recall@1/5/10 as in kb_bench (label=1 pairs, s1 != s2, the
query's own sentence skipped).  Segmentations:

  chars        every CJK character
  bigrams      overlapping bigrams (a lone character stands for itself)
  chars+bigrams  both (the redress default, minus synonyms, pruning and re-ranking)
  trigrams     overlapping trigrams (like FTS5's trigram tokenizer)
  jieba        dictionary segmentation (Debian's python3-jieba, precise mode), if installed
  jieba+chars  jieba words plus every character

Usage: bench/kb_segment_compare.py [TSV] [--max-queries N]
"""
import re
import sqlite3
import sys
import time

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[A-Za-z]+|[0-9]+")


def runs(text):
    return CJK.findall(text.lower())


def chars(text):
    return [c for r in runs(text) for c in (list(r) if not r.isascii() else [r])]


def ngrams(text, n):
    out = []
    for r in runs(text):
        if r.isascii() or len(r) < n:
            out.append(r)
        else:
            out.extend(r[i:i + n] for i in range(len(r) - n + 1))
    return out


def main():
    args = sys.argv[1:]
    path = "../shared/data/afqmc_train.tsv"
    maxq = 0
    while args:
        a = args.pop(0)
        if a == "--max-queries":
            maxq = int(args.pop(0))
        else:
            path = a
    sent, index, pairs = [], {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) != 3:
                continue
            ids = []
            for s in p[:2]:
                if s not in index:
                    index[s] = len(sent)
                    sent.append(s)
                ids.append(index[s])
            if p[2] == "1" and ids[0] != ids[1]:
                pairs.append(ids)
    if maxq:
        pairs = pairs[:maxq]

    segmenters = [
        ("chars", chars),
        ("bigrams", lambda t: ngrams(t, 2)),
        ("chars+bigrams", lambda t: chars(t) + [g for g in ngrams(t, 2) if len(g) == 2]),
        ("trigrams", lambda t: ngrams(t, 3)),
    ]
    try:
        import jieba
        jieba.setLogLevel(60)
        jieba.initialize()

        def words(t):
            return [w.lower() for w in jieba.lcut(t) if CJK.fullmatch(w)]

        segmenters.append(("jieba", words))
        segmenters.append(("jieba+chars", lambda t: words(t) + [c for c in chars(t) if len(c) == 1]))
    except ImportError:
        print("(python3-jieba not installed: dictionary segmentation skipped)")

    print("corpus: %d sentences, %d queries\n" % (len(sent), len(pairs)))
    print("| segmentation  | R@1    | R@5    | R@10   | ms/query |")
    print("|---------------|-------:|-------:|-------:|---------:|")
    for name, seg in segmenters:
        db = sqlite3.connect(":memory:")
        db.execute("CREATE VIRTUAL TABLE d USING fts5(s, tokenize='unicode61')")
        db.executemany("INSERT INTO d(rowid, s) VALUES (?, ?)",
                       ((i + 1, " ".join(seg(s))) for i, s in enumerate(sent)))
        at = [0, 0, 0]
        t0 = time.time()
        for q, want in pairs:
            toks = sorted(set(seg(sent[q])))
            if not toks:
                continue
            expr = " OR ".join('"%s"' % t.replace('"', '""') for t in toks)
            rows = db.execute("SELECT rowid FROM d WHERE d MATCH ? ORDER BY rank LIMIT 11",
                              (expr,)).fetchall()
            ranked = [r[0] - 1 for r in rows if r[0] - 1 != q]
            if want in ranked:
                k = ranked.index(want)
                at[0] += k < 1
                at[1] += k < 5
                at[2] += k < 10
        ms = (time.time() - t0) * 1000 / len(pairs)
        print("| %-13s | %5.1f%% | %5.1f%% | %5.1f%% | %8.2f |" % (
            name, 100.0 * at[0] / len(pairs), 100.0 * at[1] / len(pairs),
            100.0 * at[2] / len(pairs), ms))
        sys.stdout.flush()
        db.close()


if __name__ == "__main__":
    main()
