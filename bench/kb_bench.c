/*
 * kb_bench.c - knowledge-base search benchmark: retrieval quality on AFQMC and query latency
 * on synthetic past cases.  Built only with -DREDRESS_BENCH=ON (bench/kb_bench.cmake); run by
 * bench/kb_bench.sh, which writes the figures quoted in BENCHMARKS.md.
 *
 *   kb_bench recall  TSV [--synonyms FILE] [--variants a,b,..]
 *   kb_bench latency TSV N [--db PATH [--reuse]] [--queries Q] [--detail column|full]
 *                    [--synonyms FILE] [--seed S]
 *
 * recall: every distinct sentence of the TSV (s1<TAB>s2<TAB>label) becomes one past case; each
 * label=1 pair with s1 != s2 is a query: s1's text, and the answer is s2's case.  The query's
 * own case is skipped; recall@k counts answers among the first k remaining hits.  Variants:
 *   unibi      the shipped setup: kb_search (characters + bigrams, synonyms, pruning, re-rank)
 *   unibi-fts  the same candidates in kb_rank() order (no BM25F re-rank)
 *   unibi-bm25 candidates ordered by FTS5's builtin bm25() instead of kb_rank(), then re-ranked
 *   unibi-nosyn  unibi without the synonym list
 *   uni, bi    other CJK tokenizations ("redress uni" / "redress bi"), same pipeline
 *   trigram    FTS5's own trigram tokenizer; query = OR of every trigram of the text, bm25()
 *   unicode61  FTS5's default tokenizer; query = OR of its tokens, bm25()
 * latency: N synthetic cases, each three random sentences of the TSV (summary, tried,
 * resolution) with a random category; then Q random sentences are searched with kb_search
 * (limit 10) and the wall time of each call is recorded.
 */
#include "kb_internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct corpus {
    char **sent; /* distinct sentences; id = index + 1 */
    int n, cap;
    int *hslot; /* hash -> index + 1 */
    size_t hcap;
    int (*pairs)[2]; /* label=1 pairs as sentence indexes */
    int npairs;
} corpus;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "kb_bench: %s: %s\n", what, msg);
    exit(1);
}

static uint64_t hash_s(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

static int intern(corpus *c, const char *s)
{
    if ((size_t)(c->n + 1) * 2 > c->hcap) {
        size_t cap = c->hcap ? c->hcap * 2 : 1 << 16;
        int *slot = calloc(cap, sizeof(int));
        if (slot == NULL)
            die("intern", "out of memory");
        for (int i = 0; i < c->n; i++) {
            size_t h = hash_s(c->sent[i]) & (cap - 1);
            while (slot[h])
                h = (h + 1) & (cap - 1);
            slot[h] = i + 1;
        }
        free(c->hslot);
        c->hslot = slot;
        c->hcap = cap;
    }
    size_t h = hash_s(s) & (c->hcap - 1);
    while (c->hslot[h]) {
        if (strcmp(c->sent[c->hslot[h] - 1], s) == 0)
            return c->hslot[h] - 1;
        h = (h + 1) & (c->hcap - 1);
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4096;
        c->sent = realloc(c->sent, (size_t)c->cap * sizeof(char *));
        if (c->sent == NULL)
            die("intern", "out of memory");
    }
    c->sent[c->n] = strdup(s);
    c->hslot[h] = c->n + 1;
    return c->n++;
}

static void load_tsv(corpus *c, const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int pcap = 0;

    if (f == NULL)
        die(path, strerror(errno));
    memset(c, 0, sizeof(*c));
    while (getline(&line, &cap, f) >= 0) {
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (t2 == NULL)
            continue;
        *t1 = *t2 = 0;
        int a = intern(c, line), b = intern(c, t1 + 1);
        if (atoi(t2 + 1) == 1 && a != b) {
            if (c->npairs == pcap) {
                pcap = pcap ? pcap * 2 : 4096;
                c->pairs = realloc(c->pairs, (size_t)pcap * sizeof(*c->pairs));
            }
            c->pairs[c->npairs][0] = a;
            c->pairs[c->npairs][1] = b;
            c->npairs++;
        }
    }
    free(line);
    fclose(f);
}

static void exec_or_die(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die(sql, msg ? msg : "?");
}

/* A kb database whose cases FTS table uses tokenizer args tok and detail mode. */
static sqlite3 *open_kb(const char *path, const char *tok, const char *detail)
{
    sqlite3 *db;
    char err[512], sql[1024];

    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    exec_or_die(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144");
    if (kb_register(db) != 0)
        die("kb_register", sqlite3_errmsg(db));
    if (kb_migrate(db, err, sizeof(err)) != 0)
        die("kb_migrate", err);
    if (strcmp(tok, "redress") != 0 || strcmp(detail, "column") != 0) {
        snprintf(sql, sizeof(sql),
                 "DROP TABLE kb_cases_fts; CREATE VIRTUAL TABLE kb_cases_fts USING "
                 "fts5(summary, category, tried, resolution, content='kb_cases', "
                 "content_rowid='id', tokenize='%s', detail=%s)",
                 tok, detail);
        exec_or_die(db, sql);
    }
    return db;
}

static const char *const cats[] = {
    "bank.fee",          "bank.transfer",     "bank.card",        "ecom.refund",
    "ecom.not_received", "ecom.quality",      "ecom.payment",     "logistics.delay",
    "logistics.lost",    "logistics.damaged", "telecom.billing",  "telecom.signal",
    "travel.flight",     "travel.hotel",      "service.attitude", "general"};

/* Adds one past case through the kb write path, inside the caller's transaction. */
static void add_case(sqlite3 *db, long long n, const char *summary, const char *cat,
                     const char *tried, const char *resolution)
{
    char key[32], err[256];
    long long id;
    snprintf(key, sizeof(key), "b%lld", n);
    kb_case_t c = {.key = key,
                   .summary = (char *)summary,
                   .category = (char *)cat,
                   .tried = (char *)tried,
                   .resolution = (char *)resolution,
                   .outcome = "resolved",
                   .satisfaction = 0,
                   .date = "2026-01-01"};
    if (kb_case_save_in(db, &c, KB_SAVE_CREATE, KB_IN_TX, &id, err, sizeof(err)) < 0)
        die("kb_case_save", err);
    if (id != n)
        die("kb_case_save", "ids are not dense");
}

/* Inserts one case per sentence (id = sentence index + 1). */
static void insert_sentences(sqlite3 *db, const corpus *c)
{
    char err[256];
    exec_or_die(db, "BEGIN");
    for (int i = 0; i < c->n; i++)
        add_case(db, i + 1, c->sent[i], "general", "", "");
    if (kb_optimize(db, 2, err, sizeof(err)) != 0)
        die("kb_optimize", err);
    exec_or_die(db, "COMMIT");
}

typedef struct score {
    int q, at1, at5, at10;
    double ms;
} score;

static void tally(score *s, const long long *ids, int n, long long self, long long want)
{
    int rank = 0;
    s->q++;
    for (int i = 0; i < n; i++) {
        if (ids[i] == self)
            continue;
        rank++;
        if (ids[i] == want) {
            s->at1 += rank <= 1;
            s->at5 += rank <= 5;
            s->at10 += rank <= 10;
            return;
        }
    }
}

static const char *g_detail = "column";
static int g_budget = -1, g_maxq = 0, g_uni = -1, g_cand = 0;

static int g_bm25 = 0;
static double g_uniw = -1, g_covw = -1;

static void recall_kb(const corpus *c, const char *name, const char *tok, kb_cjk_mode_t cjk,
                      int rerank, int bm25)
{
    sqlite3 *db = open_kb(":memory:", tok, g_detail);
    kb_search_opts_t o;
    score s = {0, 0, 0, 0, 0};
    double t0 = now_ms();

    insert_sentences(db, c);
    double build = now_ms() - t0;
    kb_search_defaults(&o);
    o.cjk = cjk;
    o.rerank = rerank;
    o.tables = 2;
    if (g_budget >= 0)
        o.budget = g_budget;
    if (g_uni >= 0)
        o.match_unigrams = g_uni;
    if (g_cand > 0)
        o.candidates = g_cand;
    o.fts_bm25 = g_bm25 || bm25;
    if (g_uniw >= 0)
        o.uni_weight = g_uniw;
    if (g_covw >= 0)
        o.cov_weight = g_covw;
    t0 = now_ms();
    int nq = g_maxq > 0 && g_maxq < c->npairs ? g_maxq : c->npairs;
    for (int i = 0; i < nq; i++) {
        kb_result_t *r;
        long long ids[11];
        if (kb_search_ex(db, c->sent[c->pairs[i][0]], NULL, 11, &o, &r) != 0)
            die("kb_search", sqlite3_errmsg(db));
        for (int k = 0; k < r->count; k++)
            ids[k] = r->hits[k].id;
        tally(&s, ids, r->count, c->pairs[i][0] + 1, c->pairs[i][1] + 1);
        kb_result_free(r);
    }
    s.ms = now_ms() - t0;
    printf("| %-12s | %6d | %6.1f%% | %6.1f%% | %6.1f%% | %7.2f | %6.1f |\n", name, s.q,
           100.0 * s.at1 / s.q, 100.0 * s.at5 / s.q, 100.0 * s.at10 / s.q, s.ms / s.q,
           build / 1000);
    fflush(stdout);
    sqlite3_close(db);
}

/* trigram / unicode61: plain FTS5 with bm25() over OR-ed terms the way an application would
 * build them without a custom tokenizer. */
static void recall_plain(const corpus *c, const char *tokenizer)
{
    sqlite3 *db;
    sqlite3_stmt *ins, *q;
    score s = {0, 0, 0, 0, 0};
    char sql[256];
    int trigram = strcmp(tokenizer, "trigram") == 0;
    double t0 = now_ms();

    sqlite3_open(":memory:", &db);
    snprintf(sql, sizeof(sql), "CREATE VIRTUAL TABLE d USING fts5(s, tokenize='%s')", tokenizer);
    exec_or_die(db, sql);
    exec_or_die(db, "BEGIN");
    sqlite3_prepare_v2(db, "INSERT INTO d(rowid, s) VALUES (?1, ?2)", -1, &ins, NULL);
    for (int i = 0; i < c->n; i++) {
        sqlite3_bind_int(ins, 1, i + 1);
        sqlite3_bind_text(ins, 2, c->sent[i], -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            die("insert", sqlite3_errmsg(db));
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    exec_or_die(db, "COMMIT");
    double build = now_ms() - t0;
    if (sqlite3_prepare_v2(db, "SELECT rowid FROM d WHERE d MATCH ?1 ORDER BY rank LIMIT 11", -1,
                           &q, NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(db));
    char *expr = malloc(1 << 16);
    t0 = now_ms();
    int nq = g_maxq > 0 && g_maxq < c->npairs ? g_maxq : c->npairs;
    for (int i = 0; i < nq; i++) {
        const char *text = c->sent[c->pairs[i][0]];
        size_t len = 0;
        expr[0] = 0;
        if (trigram) {
            /* every run of 3 code points, quoted ('"' doubled) */
            int offs[1024], n = 0;
            for (int b = 0; text[b] && n < 1023; b++)
                if ((text[b] & 0xC0) != 0x80)
                    offs[n++] = b;
            offs[n] = (int)strlen(text);
            for (int k = 0; k + 3 <= n && len < 60000; k++) {
                len += (size_t)sprintf(expr + len, "%s\"", len ? " OR " : "");
                for (int b = offs[k]; b < offs[k + 3]; b++) {
                    if (text[b] == '"')
                        expr[len++] = '"';
                    expr[len++] = text[b];
                }
                expr[len++] = '"';
                expr[len] = 0;
            }
        } else {
            /* unicode61 splits at spaces and punctuation: quote each piece */
            const char *p = text;
            while (*p && len < 60000) {
                while (*p == ' ' || *p == ',' || *p == '?' || *p == '*')
                    p++;
                const char *e = p;
                while (*e && *e != ' ' && *e != ',' && *e != '?' && *e != '*')
                    e++;
                if (e > p) {
                    len += (size_t)sprintf(expr + len, "%s\"", len ? " OR " : "");
                    for (const char *b = p; b < e; b++) {
                        if (*b == '"')
                            expr[len++] = '"';
                        expr[len++] = *b;
                    }
                    expr[len++] = '"';
                    expr[len] = 0;
                }
                p = e;
            }
        }
        long long ids[11];
        int n = 0;
        if (len > 0) {
            sqlite3_bind_text(q, 1, expr, -1, SQLITE_STATIC);
            while (n < 11 && sqlite3_step(q) == SQLITE_ROW)
                ids[n++] = sqlite3_column_int64(q, 0);
            sqlite3_reset(q);
        }
        tally(&s, ids, n, c->pairs[i][0] + 1, c->pairs[i][1] + 1);
    }
    s.ms = now_ms() - t0;
    printf("| %-12s | %6d | %6.1f%% | %6.1f%% | %6.1f%% | %7.2f | %6.1f |\n", tokenizer, s.q,
           100.0 * s.at1 / s.q, 100.0 * s.at5 / s.q, 100.0 * s.at10 / s.q, s.ms / s.q,
           build / 1000);
    fflush(stdout);
    free(expr);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static int has_variant(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return list == NULL;
}

static int cmd_recall(int argc, char **argv)
{
    corpus c;
    const char *syn = NULL, *variants = NULL;
    char err[512];

    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--synonyms") == 0 && i + 1 < argc)
            syn = argv[++i];
        else if (strcmp(argv[i], "--variants") == 0 && i + 1 < argc)
            variants = argv[++i];
        else if (strcmp(argv[i], "--detail") == 0 && i + 1 < argc)
            g_detail = argv[++i];
        else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc)
            g_budget = atoi(argv[++i]);
        else if (strcmp(argv[i], "--max-queries") == 0 && i + 1 < argc)
            g_maxq = atoi(argv[++i]);
        else if (strcmp(argv[i], "--match-unigrams") == 0 && i + 1 < argc)
            g_uni = atoi(argv[++i]);
        else if (strcmp(argv[i], "--candidates") == 0 && i + 1 < argc)
            g_cand = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cov-weight") == 0 && i + 1 < argc)
            g_covw = atof(argv[++i]);
        else if (strcmp(argv[i], "--uni-weight") == 0 && i + 1 < argc)
            g_uniw = atof(argv[++i]);
        else if (strcmp(argv[i], "--fts-bm25") == 0)
            g_bm25 = 1;
        else
            die("usage", "kb_bench recall TSV [--synonyms FILE] [--variants a,b] [--detail d]");
    }
    load_tsv(&c, argv[2]);
    printf("corpus: %d distinct sentences, %d queries (label=1 pairs, s1 != s2)\n\n", c.n,
           c.npairs);
    printf("| variant      | queries | R@1    | R@5    | R@10   | ms/query | build s |\n");
    printf("|--------------|--------:|-------:|-------:|-------:|---------:|--------:|\n");
    fflush(stdout);
    if (syn && kb_set_synonyms_file(syn, err, sizeof(err)) != 0)
        die("synonyms", err);
    if (has_variant(variants, "unibi"))
        recall_kb(&c, "unibi", "redress", KB_CJK_UNIBI, 1, 0);
    if (has_variant(variants, "unibi-fts"))
        recall_kb(&c, "unibi-fts", "redress", KB_CJK_UNIBI, 0, 0);
    if (has_variant(variants, "unibi-bm25"))
        recall_kb(&c, "unibi-bm25", "redress", KB_CJK_UNIBI, 1, 1);
    if (has_variant(variants, "uni"))
        recall_kb(&c, "uni", "redress uni", KB_CJK_UNI, 1, 0);
    if (has_variant(variants, "bi"))
        recall_kb(&c, "bi", "redress bi", KB_CJK_BI, 1, 0);
    if (has_variant(variants, "unibi-nosyn")) {
        kb_set_synonyms_file(NULL, NULL, 0);
        recall_kb(&c, "unibi-nosyn", "redress", KB_CJK_UNIBI, 1, 0);
    }
    if (has_variant(variants, "trigram"))
        recall_plain(&c, "trigram");
    if (has_variant(variants, "unicode61"))
        recall_plain(&c, "unicode61");
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmd_latency(int argc, char **argv)
{
    corpus c;
    const char *path = NULL, *detail = "column";
    int nq = 2000, reuse = 0;
    long n = atol(argv[3]);
    unsigned seed = 42;
    char tmp[256], err[512];

    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--queries") == 0 && i + 1 < argc)
            nq = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reuse") == 0)
            reuse = 1;
        else if (strcmp(argv[i], "--detail") == 0 && i + 1 < argc)
            detail = argv[++i];
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--synonyms") == 0 && i + 1 < argc) {
            if (kb_set_synonyms_file(argv[++i], err, sizeof(err)) != 0)
                die("synonyms", err);
        } else
            die("usage", "kb_bench latency TSV N [--db PATH [--reuse]] [--queries Q] "
                         "[--detail column|full] [--synonyms FILE] [--seed S]");
    }
    if (n < 1 || nq < 1)
        die("usage", "N and Q must be positive");
    load_tsv(&c, argv[2]);
    if (path == NULL) {
        snprintf(tmp, sizeof(tmp), "/tmp/kb_bench_%ld_%d.db", n, (int)getpid());
        path = tmp;
    }
    char wal[300];
    if (!reuse || access(path, R_OK) != 0) {
        reuse = 0;
        unlink(path);
        snprintf(wal, sizeof(wal), "%s-wal", path);
        unlink(wal);
        snprintf(wal, sizeof(wal), "%s-shm", path);
        unlink(wal);
    }
    srand(seed);
    sqlite3 *db = open_kb(path, "redress", detail);
    double t0 = now_ms();
    exec_or_die(db, "BEGIN");
    for (long i = 0; i < n && !reuse; i++) {
        const char *sum = c.sent[rand() % c.n], *cat = cats[rand() % 16];
        const char *tried = c.sent[rand() % c.n], *res = c.sent[rand() % c.n];
        add_case(db, i + 1, sum, cat, tried, res);
        if ((i + 1) % 50000 == 0)
            exec_or_die(db, "COMMIT; BEGIN");
    }
    exec_or_die(db, "COMMIT");
    if (!reuse && kb_optimize(db, 2, err, sizeof(err)) != 0) /* as an import would */
        die("kb_optimize", err);
    exec_or_die(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    double build = now_ms() - t0;
    sqlite3_int64 pages = 0, psize = 0;
    sqlite3_stmt *ps;
    sqlite3_prepare_v2(db,
                       "SELECT (SELECT page_count FROM pragma_page_count), "
                       "(SELECT page_size FROM pragma_page_size)",
                       -1, &ps, NULL);
    if (sqlite3_step(ps) == SQLITE_ROW) {
        pages = sqlite3_column_int64(ps, 0);
        psize = sqlite3_column_int64(ps, 1);
    }
    sqlite3_finalize(ps);

    double *ms = malloc((size_t)nq * sizeof(double)), total = 0;
    int hits = 0, nomatch = 0;
    for (int i = 0; i < nq; i++) {
        const char *q = c.sent[rand() % c.n];
        kb_result_t *r;
        double a = now_ms();
        if (kb_search(db, q, NULL, 10, &r) != 0)
            die("kb_search", sqlite3_errmsg(db));
        ms[i] = now_ms() - a;
        total += ms[i];
        hits += r->count;
        nomatch += r->count == 0;
        kb_result_free(r);
    }
    qsort(ms, (size_t)nq, sizeof(double), cmp_double);
    printf("| %8ld | %7.1f | %7.0f | %6d | %7.2f | %7.2f | %7.2f | %7.2f | %5.1f |\n", n,
           build / 1000, (double)pages * psize / 1048576.0, nq, ms[nq / 2], ms[(int)(nq * 0.99)],
           ms[nq - 1], total / nq, (double)hits / nq);
    fflush(stdout);
    free(ms);
    sqlite3_close(db);
    if (path == tmp) {
        unlink(path);
        snprintf(wal, sizeof(wal), "%s-wal", path);
        unlink(wal);
        snprintf(wal, sizeof(wal), "%s-shm", path);
        unlink(wal);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "recall") == 0)
        return cmd_recall(argc, argv);
    if (argc >= 4 && strcmp(argv[1], "latency") == 0)
        return cmd_latency(argc, argv);
    fprintf(stderr, "usage: kb_bench recall TSV [--synonyms FILE] [--variants a,b,..]\n"
                    "       kb_bench latency TSV N [--db PATH] [--queries Q] "
                    "[--detail column|full] [--synonyms FILE]\n");
    return 2;
}
