#!/usr/bin/env bash
# kb_bench.sh - knowledge-base search benchmark (results go to BENCHMARKS.md, "Knowledge base").
#
#   bench/kb_bench.sh [recall|latency|all] [--quick]
#
# Builds kb_bench in build-kb-bench (Release, -DREDRESS_BENCH=ON), then
#   recall   AFQMC retrieval quality: the shipped setup, its variants, FTS5 trigram/unicode61,
#            and (with Debian's python3-jieba) n-grams vs dictionary segmentation
#   latency  p50/p99 of kb_search over 10k, 100k and 1M synthetic past cases
# The data is read from ../shared/data relative to the repository (never copied into it);
# set KB_BENCH_DATA to point elsewhere.  --quick: 2,000 recall queries and 10k/100k only.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
data=${KB_BENCH_DATA:-$here/../shared/data/afqmc_train.tsv}
build=${KB_BENCH_BUILD:-$here/build-kb-bench}
what=${1:-all}
quick=0
[ "${2:-}" = "--quick" ] || [ "${1:-}" = "--quick" ] && quick=1
[ "$what" = "--quick" ] && what=all

if [ ! -r "$data" ]; then
    echo "kb_bench.sh: $data not found (AFQMC train split, s1<TAB>s2<TAB>label)" >&2
    exit 1
fi
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DREDRESS_BENCH=ON >/dev/null
cmake --build "$build" --target kb_bench -j2 >/dev/null
bench=$build/bench/kb_bench
syn=$here/kb/synonyms.txt

echo "# kb_bench $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, SQLite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1)"
if [ "$what" = recall ] || [ "$what" = all ]; then
    extra=()
    [ $quick = 1 ] && extra=(--max-queries 2000)
    echo
    echo "## recall (AFQMC, every distinct sentence a document)"
    "$bench" recall "$data" --synonyms "$syn" "${extra[@]}" \
        --variants unibi,unibi-fts,unibi-nosyn,uni,bi,trigram,unicode61
    echo
    echo "## candidate ranking: kb_rank() vs FTS5 bm25() (first 2000 queries)"
    "$bench" recall "$data" --synonyms "$syn" --max-queries 2000 --variants unibi,unibi-bm25
    if /usr/bin/python3 -c "import jieba" 2>/dev/null; then
        echo
        echo "## segmentation alone (bench/kb_segment_compare.py: pre-cut tokens, OR + bm25)"
        # unpruned OR queries take 0.1-0.2 s each: 1,000 queries keep this to about 12 minutes
        /usr/bin/python3 "$here/bench/kb_segment_compare.py" "$data" --max-queries 1000
    fi
fi
if [ "$what" = latency ] || [ "$what" = all ]; then
    sizes="10000 100000 1000000"
    [ $quick = 1 ] && sizes="10000 100000"
    echo
    echo "## latency (kb_search, limit 10, 2000 random AFQMC sentences as queries)"
    echo
    echo "|    cases | build s | db MiB | queries | p50 ms | p99 ms | max ms | mean ms | hits |"
    echo "|---------:|--------:|-------:|--------:|-------:|-------:|-------:|--------:|-----:|"
    for n in $sizes; do
        "$bench" latency "$data" "$n" --synonyms "$syn" --queries 2000
    done
fi
