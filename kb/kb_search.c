/*
 * kb_search.c - from free customer text to ranked, highlighted hits with a confidence level.
 *
 * Design.  A search runs these steps for each table (templates, cases), all on the caller's
 * connection and inside one read transaction (one snapshot for both tables; unless the caller
 * has a transaction open).  kb_search prepares its statements on each call; a kb_searcher keeps
 * them prepared between calls (a tenth of a search), always reset after use so that none holds
 * a snapshot between searches, unless it was asked to hold one (kb_searcher_hold): then the
 * transaction and the stamps read in it serve the searches until kb_searcher_end.  On a
 * connection whose cache every chat commit empties, a transaction's locks and the re-read of
 * kb_meta's pages took 5 % of a loop that searches on every message (a seventh of a search):
 *
 *   1. terms      analyze the first Q_MAX_CHARS characters with the document analyzer
 *                 (kb_token.c): CJK characters, bigrams, words, synonym-group tokens.  At most
 *                 Q_MAX_TERMS distinct terms.  Customer text is never parsed as FTS5 syntax:
 *                 every term is a token this analyzer produced, quoted.
 *   2. df         estimate each term's document frequency cheaply (est_df): step through at
 *                 most DF_SAMPLE of its matches among the newest DF_WINDOW ids and
 *                 extrapolate from the span of ids they cover.  Estimates are remembered
 *                 (df cache, below) while the table's statistics stay the same.
 *   3. prune      take terms rarest first while the sum of their df stays within
 *                 POSTING_BUDGET and at most MATCH_MAX terms; a character the query also has
 *                 inside a bigram is left to the bigram; very common terms (的, 怎么,
 *                 and anything the corpus is full of) drop out of the MATCH but still count
 *                 in re-ranking and coverage.  If even the rarest term is over budget, only
 *                 the newest FALLBACK_ROWS rows containing it are ranked.
 *   4. candidates FTS5 MATCH '{columns} : ("t1" OR "t2" ...)' [AND '{category} : ...'],
 *                 ordered by kb_rank() (a bm25 without length normalization, see there) with
 *                 column weights, then the lowest id, CANDIDATES rows.  For a small table, the
 *                 same rows with the same scores come from its postings in memory when those
 *                 are of the snapshot's rows (kb_memidx.c; mem_candidates).
 *   5. re-rank    each candidate is analyzed again (or, from its second time on, read
 *                 from its kept term index, kb_doccache.c) and scored with BM25F over *all*
 *                 query terms (column weights, per-column length normalization from
 *                 kb_fts_stats); coverage (below) and the snippet's ranges come from the same
 *                 pass.  Candidates from memory are scored from the frequencies kept there,
 *                 and the snippet's ranges are taken in step 6, for the hits only.
 *   6. hits       the candidates of both tables are merged by score; only the best `limit`
 *                 rows are read again by id (same snapshot) for the fields and the snippet;
 *                 those from memory are read from the copy of the rows kept there, and
 *                 analyzed for the snippet's ranges.
 *
 * Work is bounded by the constants: at most Q_MAX_TERMS samples of <= DF_SAMPLE rows,
 * POSTING_BUDGET postings for the MATCH, CANDIDATES re-ranked.
 *
 * The df cache is one of four pieces of shared state that outlive a call (the others: the
 * statistics cache below, kb_doccache.c and kb_memidx.c): per table kind, term hash -> estimate,
 * valid for one database file and one snapshot of the table's statistics (row count, highest id,
 * column length totals).  Any insert, delete or change of a document's length changes the snapshot
 * and empties the cache, so a cached estimate equals what sampling would give again.  It is shared
 * by every connection and thread (one mutex, held only to copy values in or out), bounded (DF_CACHE
 * slots, emptied when 3/4 full), and keyed by a 64-bit hash of the term (a collision would
 * only change one term's weight).  Long customer messages have up to Q_MAX_TERMS terms, each
 * an FTS5 query to sample: that was most of a long search.
 *
 * Coverage (0..1) says how much of the query a hit explains: each query character (or word)
 * weighs its idf; it counts fully when a matched bigram, word or synonym group covers it,
 * half when only the character itself matched inside a longer run.  kb.h documents the
 * thresholds that turn coverage into KB_ANSWER / KB_SUGGEST / KB_NO_MATCH.
 */
#include "kb_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define Q_MAX_CHARS 256
#define Q_MAX_TERMS 96
#define Q_MAX_TOKS 768
#define MATCH_MAX 32
#define POSTING_BUDGET 4000
#define DF_WINDOW 262144
#define DF_SAMPLE 48
#define FALLBACK_ROWS 2000
#define CANDIDATES 40
#define DF_CACHE 8192 /* remembered df estimates per table kind (a power of two) */
#define SNIP_CHARS 60
#define MAX_RANGES 256
#define BM25_B 0.75
#define COV_WORDS ((Q_MAX_CHARS + 1 + 63) / 64) /* a bit per character, 0..Q_MAX_CHARS */

typedef struct qterm {
    char text[1 + 4 * KB_TOKEN_MAX + 1];
    int len;
    unsigned hash; /* kb_text_hash(text, len) */
    kb_tok_kind_t kind;
    double df, idf;
    int selected;
    int func;  /* a function character (function_chars) */
    int mark;  /* highlighted in snippets: not a character that only stands inside a bigram */
    int in_bi; /* a character that the query has only inside bigrams */
} qterm;

typedef struct qtok {
    short term; /* index into terms, -1 when the term cap was hit */
    short kind;
    short colocated;
    int cstart, cend;
} qtok;

typedef struct query {
    qterm t[Q_MAX_TERMS];
    int nt;
    qtok k[Q_MAX_TOKS];
    int nk;
    short slot[256];                      /* hash of term text -> index + 1 */
    int nchars;                           /* characters analyzed */
    unsigned char in_bi[Q_MAX_CHARS + 1]; /* character c is inside one of the query's bigrams */
    /* coverage()'s view of the tokens, set by coverage_prepare() once the idfs are known:
     * the characters each term credits when hit (bit c of full or half: character c), then
     * the characters that count and their weights, and the sum of all weights */
    uint64_t full[Q_MAX_TERMS][COV_WORDS], half[Q_MAX_TERMS][COV_WORDS];
    struct {
        int at;
        double w;
    } cw[Q_MAX_TOKS];
    int ncw, nwords; /* nwords: the words of full and half that any bit is set in */
    double cov_all;
} query;

/* One table as the search sees it; FTS columns in table order. */
typedef struct table_def {
    kb_kind_t kind;
    const char *fts;
    const char *colfilter; /* text columns, for MATCH */
    int ncols;
    int category_col;
    const double *weights;
    const int *snippet_order; /* columns to take a snippet from, best first, -1 ends */
    const char *sql_ranked;   /* ?1 match, ?2 candidates, ?3 category or NULL, ?4 kb_rank
                                 arguments; %s the rank expression */
    const char *sql_recent;   /* the same over the newest ?5 matches only */
    const char *rank;         /* kb_rank() over this table, ?4 its arguments */
    const char *bm25;         /* builtin bm25() with the column weights, negated */
    const char *sql_stats;
    const char *sql_df;  /* ?1 match, ?2 lowest rowid: matching rowids ascending */
    const char *sql_get; /* ?1 id: the row as sql_ranked gives it (0 for the rank) */
    const char *sql_all; /* every row as sql_get gives it, for kb_memidx.c */
    int memidx_max;      /* the most rows kept in memory (kb_memidx.c); more: FTS5 */
} table_def;

static const double tpl_weights[] = {8.0, 0.0, 5.0, 2.0, 2.0, 1.0};
static const int tpl_snip[] = {4, 3, 5, 2, 0, -1};
static const double case_weights[] = {4.0, 0.0, 1.0, 2.0};
static const int case_snip[] = {0, 3, 2, -1};

#define TPL_COLS                                                                                   \
    "t.title, t.category, t.tags, t.conditions, t.text, t.steps, t.key, t.deadline, "              \
    "t.compensation, t.severity"
#define TPL_SELECT "SELECT t.id, m.s, " TPL_COLS " FROM "
#define CASE_COLS "c.summary, c.category, c.tried, c.resolution, c.key"
#define CASE_SELECT "SELECT c.id, m.s, " CASE_COLS " FROM "

static const table_def tables[] = {
    {KB_TEMPLATE, "kb_templates_fts", "{title tags conditions text steps}", 6, 1, tpl_weights,
     tpl_snip,
     TPL_SELECT "(SELECT rowid AS rid, %s AS s "
                "FROM kb_templates_fts WHERE kb_templates_fts MATCH ?1 ORDER BY s DESC, rid "
                "LIMIT ?2) AS m "
                "JOIN kb_templates t ON t.id = m.rid WHERE ?3 IS NULL OR t.category = ?3",
     TPL_SELECT "(SELECT rid, s FROM (SELECT rowid AS rid, kb_rank(kb_templates_fts, ?4) AS s "
                "FROM kb_templates_fts WHERE kb_templates_fts MATCH ?1 ORDER BY rowid DESC "
                "LIMIT ?5) ORDER BY s DESC, rid LIMIT ?2) AS m "
                "JOIN kb_templates t ON t.id = m.rid WHERE ?3 IS NULL OR t.category = ?3",
     "kb_rank(kb_templates_fts, ?4)", "-bm25(kb_templates_fts, 8.0, 0.0, 5.0, 2.0, 2.0, 1.0)",
     "SELECT (SELECT max(id) FROM kb_templates), kb_fts_stats(kb_templates_fts) "
     "FROM kb_templates_fts LIMIT 1",
     "SELECT rowid FROM kb_templates_fts WHERE kb_templates_fts MATCH ?1 AND rowid >= ?2",
     "SELECT t.id, 0, " TPL_COLS " FROM kb_templates t WHERE t.id = ?1",
     "SELECT t.id, 0, " TPL_COLS " FROM kb_templates t ORDER BY t.id", 4000},
    {KB_CASE, "kb_cases_fts", "{summary tried resolution}", 4, 1, case_weights, case_snip,
     CASE_SELECT "(SELECT rowid AS rid, %s AS s "
                 "FROM kb_cases_fts WHERE kb_cases_fts MATCH ?1 ORDER BY s DESC, rid "
                 "LIMIT ?2) AS m "
                 "JOIN kb_cases c ON c.id = m.rid WHERE ?3 IS NULL OR c.category = ?3",
     CASE_SELECT "(SELECT rid, s FROM (SELECT rowid AS rid, kb_rank(kb_cases_fts, ?4) AS s "
                 "FROM kb_cases_fts WHERE kb_cases_fts MATCH ?1 ORDER BY rowid DESC "
                 "LIMIT ?5) ORDER BY s DESC, rid LIMIT ?2) AS m "
                 "JOIN kb_cases c ON c.id = m.rid WHERE ?3 IS NULL OR c.category = ?3",
     "kb_rank(kb_cases_fts, ?4)", "-bm25(kb_cases_fts, 4.0, 0.0, 1.0, 2.0)",
     "SELECT (SELECT max(id) FROM kb_cases), kb_fts_stats(kb_cases_fts) "
     "FROM kb_cases_fts LIMIT 1",
     "SELECT rowid FROM kb_cases_fts WHERE kb_cases_fts MATCH ?1 AND rowid >= ?2",
     "SELECT c.id, 0, " CASE_COLS " FROM kb_cases c WHERE c.id = ?1",
     "SELECT c.id, 0, " CASE_COLS " FROM kb_cases c ORDER BY c.id", 1000},
};

/* Index of a table kind in tables[], in the df cache and in a searcher's statements. */
static int table_index(kb_kind_t kind)
{
    return kind == KB_TEMPLATE ? 0 : 1;
}

/* ---- step 1: query terms ---- */

/* Index of the term with this text, or -1.  hash: kb_text_hash(s, n). */
static int term_find(const query *q, const char *s, int n, unsigned hash)
{
    unsigned h = hash & 255;
    while (q->slot[h]) {
        const qterm *t = &q->t[q->slot[h] - 1];
        if (t->hash == hash && t->len == n && memcmp(t->text, s, (size_t)n) == 0)
            return q->slot[h] - 1;
        h = (h + 1) & 255;
    }
    return -1;
}

/* Characters that carry little meaning in a complaint (pronouns, particles, auxiliaries,
 * politeness).  They still match, but weigh a fifth in coverage, so "我想退钱" is about 退钱. */
static const char function_chars[] = "我你您他她它们的地得了着过吗呢吧啊呀哦嗯么是在有和与或就都"
                                     "也还又很太想要会能可以请帮一下个这那些什么怎为何如把被给让";

static int is_function_char(const char *s, int len)
{
    if (len != 3)
        return 0;
    for (const char *p = function_chars; *p; p += 3)
        if (memcmp(p, s, 3) == 0)
            return 1;
    return 0;
}

static int term_add(query *q, const kb_tok_t *tok)
{
    unsigned hash = kb_text_hash(tok->text, tok->len);
    int i = term_find(q, tok->text, tok->len, hash);
    if (i >= 0)
        return i;
    if (q->nt == Q_MAX_TERMS || tok->len >= (int)sizeof(q->t[0].text))
        return -1;
    i = q->nt++;
    memset(&q->t[i], 0, sizeof(q->t[i])); /* df, selected, mark, ...: set later */
    memcpy(q->t[i].text, tok->text, (size_t)tok->len);
    q->t[i].text[tok->len] = 0;
    q->t[i].len = tok->len;
    q->t[i].hash = hash;
    q->t[i].kind = tok->kind;
    q->t[i].func = tok->kind == KB_TOK_UNI && is_function_char(tok->text, tok->len);
    unsigned h = hash & 255;
    while (q->slot[h])
        h = (h + 1) & 255;
    q->slot[h] = (short)(i + 1);
    return i;
}

static int query_tok(void *ctx, const kb_tok_t *tok)
{
    query *q = ctx;
    if (q->nk == Q_MAX_TOKS)
        return 1;
    qtok *k = &q->k[q->nk++];
    k->term = (short)term_add(q, tok);
    k->kind = (short)tok->kind;
    k->colocated = (short)tok->colocated;
    k->cstart = tok->cstart;
    k->cend = tok->cend;
    return 0;
}

/* Byte length of the first max characters of s. */
static int prefix_bytes(const char *s, int max, int *nchars)
{
    int i = 0, n = 0;
    while (s[i] && n < max) {
        i++;
        while ((s[i] & 0xC0) == 0x80)
            i++;
        n++;
    }
    *nchars = n;
    return i;
}

static void query_build(query *q, const char *text, const kb_analyzer_t *a)
{
    unsigned char *in_bi = q->in_bi;

    memset(q->slot, 0, sizeof(q->slot));
    q->nt = q->nk = 0;
    int len = prefix_bytes(text, Q_MAX_CHARS, &q->nchars);
    kb_analyze(a, text, len, query_tok, q);
    /* a character is highlighted on its own only where the query has it alone */
    memset(in_bi, 0, sizeof(q->in_bi));
    for (int i = 0; i < q->nk; i++)
        if (q->k[i].kind == KB_TOK_BI)
            for (int c = q->k[i].cstart; c < q->k[i].cend && c <= Q_MAX_CHARS; c++)
                in_bi[c] = 1;
    for (int i = 0; i < q->nt; i++)
        q->t[i].in_bi = q->t[i].kind == KB_TOK_UNI;
    for (int i = 0; i < q->nk; i++) {
        const qtok *k = &q->k[i];
        if (k->term < 0)
            continue;
        qterm *t = &q->t[k->term];
        if (k->kind != KB_TOK_UNI || (k->cstart <= Q_MAX_CHARS && !in_bi[k->cstart])) {
            t->mark = !t->func;
            t->in_bi = 0;
        }
    }
}

/* q as query_build made `from` of the same text with the same analyzer, for another table:
 * its terms and tokens, without the table's document frequencies and choices. */
static void query_copy(query *q, const query *from)
{
    q->nt = from->nt;
    q->nk = from->nk;
    q->nchars = from->nchars;
    memcpy(q->t, from->t, (size_t)from->nt * sizeof(q->t[0]));
    for (int i = 0; i < q->nt; i++) { /* as term_add leaves them */
        q->t[i].df = q->t[i].idf = 0;
        q->t[i].selected = 0;
    }
    memcpy(q->k, from->k, (size_t)from->nk * sizeof(q->k[0]));
    memcpy(q->slot, from->slot, sizeof(q->slot));
    memcpy(q->in_bi, from->in_bi, sizeof(q->in_bi));
}

/* ---- step 2: document frequencies ---- */

typedef struct tstats {
    double rows; /* documents in the table */
    long long maxid;
    double avglen[8];
} tstats;

/* What kb_meta says of the snapshot, read once a search (read_stamps): each table's stamp and
 * the synonym list the FTS indexes were built with. */
typedef struct stamps {
    char table[2][40];
    char syn[17];
} stamps;

#define SQL_STAMPS                                                                                 \
    "SELECT (SELECT value FROM kb_meta WHERE name = 'templates_stamp'), "                          \
    "(SELECT value FROM kb_meta WHERE name = 'cases_stamp'), "                                     \
    "(SELECT value FROM kb_meta WHERE name = 'synonyms_hash')"

/* ---- statements ---- */

enum { ST_STATS, ST_DF, ST_RANKED, ST_BM25, ST_RECENT, ST_GET, ST_PER_TABLE };

/* A connection's statements, prepared on first use, and a search's large scratch (a query per
 * table, 60 KB each, and a document, 8 KB: past jemalloc's thread cache, a malloc and free of
 * each cost 2-3 % of a loop that searches on every message).  A searcher (kb_searcher_open)
 * keeps both between searches; kb_search_ex lets them go when it returns.  Every statement is
 * reset as soon as its rows are read, so none holds a read transaction between searches. */
struct kb_searcher {
    sqlite3 *db;
    int keep;
    int hold; /* kb_searcher_hold: a search leaves its read transaction open... */
    int held; /* ...and one is: its stamps are held_sp */
    stamps held_sp;
    sqlite3_stmt *st[2][ST_PER_TABLE];
    sqlite3_stmt *begin, *commit, *stamps;
    query *q[2];
    struct doc *d;
};

static sqlite3_stmt *stmt(kb_searcher_t *s, sqlite3_stmt **slot, const char *sql)
{
    if (*slot == NULL && sqlite3_prepare_v3(s->db, sql, -1, s->keep ? SQLITE_PREPARE_PERSISTENT : 0,
                                            slot, NULL) != SQLITE_OK) {
        sqlite3_finalize(*slot); /* NULL, or a partial statement */
        *slot = NULL;
    }
    return *slot;
}

/* Statement `which` of table td, prepared from sql on first use. */
static sqlite3_stmt *table_stmt(kb_searcher_t *s, const table_def *td, int which, const char *sql)
{
    return stmt(s, &s->st[table_index(td->kind)][which], sql);
}

static void release_all(kb_searcher_t *s)
{
    free(s->q[0]);
    free(s->q[1]);
    free(s->d);
    s->q[0] = s->q[1] = NULL;
    s->d = NULL;
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < ST_PER_TABLE; i++) {
            sqlite3_finalize(s->st[t][i]);
            s->st[t][i] = NULL;
        }
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->stamps);
    s->begin = s->commit = s->stamps = NULL;
}

/* Runs a statement without rows (BEGIN, COMMIT).  Returns 0 or KB_ERR_DB. */
static int exec_kept(kb_searcher_t *s, sqlite3_stmt **slot, const char *sql)
{
    sqlite3_stmt *st = stmt(s, slot, sql);
    int rc = st && sqlite3_step(st) == SQLITE_DONE ? 0 : KB_ERR_DB;
    if (st)
        sqlite3_reset(st);
    return rc;
}

/* Reads kb_meta's stamps into *sp ("" for those it lacks).  Returns 0 or KB_ERR_DB. */
static int read_stamps(kb_searcher_t *sr, stamps *sp)
{
    sqlite3_stmt *st = stmt(sr, &sr->stamps, SQL_STAMPS);
    memset(sp, 0, sizeof(*sp));
    if (st == NULL || sqlite3_step(st) != SQLITE_ROW) {
        if (st)
            sqlite3_reset(st);
        return KB_ERR_DB;
    }
    for (int i = 0; i < 3; i++) {
        const char *v = (const char *)sqlite3_column_text(st, i);
        char *to = i < 2 ? sp->table[i] : sp->syn;
        size_t cap = i < 2 ? sizeof(sp->table[i]) : sizeof(sp->syn);
        if (v && strlen(v) < cap)
            strcpy(to, v);
    }
    sqlite3_reset(st);
    return 0;
}

/*
 * The tables' statistics by stamp.  A table's row count, highest id and column totals change
 * only with its rows (which renew its stamp) or with a rebuild of its FTS index for another
 * synonym list (which changes synonyms_hash).  So they are kept, per table kind, for the last
 * (stamp, synonyms_hash) seen, and a search with the same pair copies them instead of reading
 * the FTS index's averages and the table's last id again: with the candidates from memory
 * (kb_memidx.c) nothing else in a search reads those pages, which every chat commit drops from
 * the connection's cache.  Shared by every connection and thread (a random stamp cannot name
 * two different tables).
 */
static struct {
    pthread_mutex_t lock;
    struct {
        char stamp[40], syn[17];
        tstats ts;
        int rc;
    } kind[2];
} stats_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Reads row count and per-column average lengths, or takes them from the stats cache.
 * Returns 1 (non-empty), 0 (empty) or KB_ERR_DB. */
static int table_stats(kb_searcher_t *sr, const table_def *td, const stamps *sp, tstats *ts)
{
    int k = table_index(td->kind), keep = sp->table[k][0] && sp->syn[0], rc = -1, s;
    memset(ts, 0, sizeof(*ts));
    if (keep) {
        pthread_mutex_lock(&stats_cache.lock);
        if (strcmp(stats_cache.kind[k].stamp, sp->table[k]) == 0 &&
            strcmp(stats_cache.kind[k].syn, sp->syn) == 0) {
            *ts = stats_cache.kind[k].ts;
            rc = stats_cache.kind[k].rc;
        }
        pthread_mutex_unlock(&stats_cache.lock);
        if (rc >= 0)
            return rc;
    }
    sqlite3_stmt *st = table_stmt(sr, td, ST_STATS, td->sql_stats);
    if (st == NULL)
        return KB_ERR_DB;
    rc = KB_ERR_DB;
    s = sqlite3_step(st);
    if (s == SQLITE_DONE) {
        rc = 0;
        goto out;
    }
    if (s != SQLITE_ROW)
        goto out;
    ts->maxid = sqlite3_column_int64(st, 0);
    const char *p = (const char *)sqlite3_column_text(st, 1);
    char *end;
    long long rows = p ? strtoll(p, &end, 10) : 0;
    if (p == NULL || rows <= 0) {
        rc = 0;
        goto out;
    }
    ts->rows = (double)rows;
    p = end;
    for (int i = 0; i < td->ncols && i < 8; i++) {
        long long tot = strtoll(p, &end, 10);
        p = end;
        ts->avglen[i] = (double)tot / (double)rows;
        if (ts->avglen[i] < 1)
            ts->avglen[i] = 1;
    }
    rc = 1;
out:
    sqlite3_reset(st);
    if (keep && rc >= 0) {
        pthread_mutex_lock(&stats_cache.lock);
        strcpy(stats_cache.kind[k].stamp, sp->table[k]);
        strcpy(stats_cache.kind[k].syn, sp->syn);
        stats_cache.kind[k].ts = *ts;
        stats_cache.kind[k].rc = rc;
        pthread_mutex_unlock(&stats_cache.lock);
    }
    return rc;
}

/* Writes '{cols} : "term"' (or "term" with cols NULL) into buf.  Returns the length or -1. */
static int quote_term(char *buf, size_t cap, const char *cols, const char *term, int len)
{
    size_t n = 0;
    if (cols) {
        size_t l = strlen(cols);
        if (l + 3 >= cap)
            return -1;
        memcpy(buf, cols, l);
        memcpy(buf + l, " : ", 3);
        n = l + 3;
    }
    if (n + 2 * (size_t)len + 3 > cap)
        return -1;
    buf[n++] = '"';
    for (int i = 0; i < len; i++) {
        if (term[i] == '"')
            buf[n++] = '"';
        buf[n++] = term[i];
    }
    buf[n++] = '"';
    buf[n] = 0;
    return (int)n;
}

/* Steps through the matches of one term from rowid from upward, stopping at the DF_SAMPLE-th
 * or at the end.  Returns the number seen and the rowid of the last in *last, or KB_ERR_DB. */
static int sample(sqlite3_stmt *st, const char *match, long long from, long long *last)
{
    int n = 0, s = SQLITE_DONE;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, from);
    while (n < DF_SAMPLE && (s = sqlite3_step(st)) == SQLITE_ROW) {
        *last = sqlite3_column_int64(st, 0);
        n++;
    }
    sqlite3_reset(st);
    return n < DF_SAMPLE && s != SQLITE_DONE ? KB_ERR_DB : n;
}

/* ---- df cache (see the top of the file) ---- */

typedef struct df_slot {
    uint64_t h; /* term hash, 0 = empty */
    double df;
} df_slot;

static struct df_cache {
    pthread_mutex_t lock;
    struct {
        char file[512];
        tstats ts;
        int used;
        df_slot slot[DF_CACHE];
    } kind[2];
} df_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t term_hash(const char *s, int len)
{
    uint64_t h = kb_fnv64(KB_FNV64_START, s, (size_t)len);
    return h ? h : 1;
}

/* Locked: the cache of this table kind for this file and snapshot, emptied if either changed. */
static typeof(df_cache.kind[0]) *df_cache_for(sqlite3 *db, const table_def *td, const tstats *ts)
{
    typeof(df_cache.kind[0]) *c = &df_cache.kind[table_index(td->kind)];
    const char *file = sqlite3_db_filename(db, "main");
    if (!file || !*file || strlen(file) >= sizeof(c->file))
        return NULL; /* in-memory or unnamed databases are not cached */
    if (strcmp(c->file, file) != 0 || memcmp(&c->ts, ts, sizeof(*ts)) != 0 ||
        c->used > DF_CACHE / 4 * 3) {
        memset(c->slot, 0, sizeof(c->slot));
        c->used = 0;
        snprintf(c->file, sizeof(c->file), "%s", file);
        c->ts = *ts;
    }
    return c;
}

/* Looks up every term (df < 0 when not cached). */
static void df_cache_get(sqlite3 *db, const table_def *td, const tstats *ts, query *q, double *df)
{
    pthread_mutex_lock(&df_cache.lock);
    typeof(df_cache.kind[0]) *c = df_cache_for(db, td, ts);
    for (int i = 0; i < q->nt; i++) {
        df[i] = -1;
        if (!c)
            continue;
        uint64_t h = term_hash(q->t[i].text, q->t[i].len);
        for (unsigned j = (unsigned)h & (DF_CACHE - 1);; j = (j + 1) & (DF_CACHE - 1)) {
            if (c->slot[j].h == 0)
                break;
            if (c->slot[j].h == h) {
                df[i] = c->slot[j].df;
                break;
            }
        }
    }
    pthread_mutex_unlock(&df_cache.lock);
}

/* Remembers the estimates just sampled (was[i] == -1). */
static void df_cache_put(sqlite3 *db, const table_def *td, const tstats *ts, const query *q,
                         const double *was)
{
    pthread_mutex_lock(&df_cache.lock);
    typeof(df_cache.kind[0]) *c = df_cache_for(db, td, ts);
    for (int i = 0; c && i < q->nt; i++) {
        if (was[i] != -1 || c->used > DF_CACHE / 4 * 3)
            continue;
        uint64_t h = term_hash(q->t[i].text, q->t[i].len);
        unsigned j = (unsigned)h & (DF_CACHE - 1);
        while (c->slot[j].h != 0 && c->slot[j].h != h)
            j = (j + 1) & (DF_CACHE - 1);
        if (c->slot[j].h == 0)
            c->used++;
        c->slot[j].h = h;
        c->slot[j].df = q->t[i].df;
    }
    pthread_mutex_unlock(&df_cache.lock);
}

/*
 * Fills df and idf of every term with one bounded query each: the term's matches among the
 * newest DF_WINDOW ids are stepped through in rowid order up to DF_SAMPLE of them.  If the
 * sample fills within a span of ids, df ~ DF_SAMPLE * maxid / span; otherwise the count in the
 * window is scaled to the whole table (exact when the window is the whole table).  A term
 * seen nowhere in the window still gets a small df, so a rare term found only in old rows
 * stays in the query.  Ids are assumed evenly spread; deletions thin every span alike.
 * Returns 0 or KB_ERR_DB.
 */
static int est_df(kb_searcher_t *sr, const table_def *td, const tstats *ts, query *q)
{
    sqlite3 *db = sr->db;
    sqlite3_stmt *st = NULL;
    char match[512];
    int rc = KB_ERR_DB;
    double n = ts->rows, maxid = (double)ts->maxid;
    long long from = ts->maxid - DF_WINDOW + 1;

    if (from < 1)
        from = 1;
    double scale = maxid / (double)(ts->maxid - from + 1); /* 1 when the window is everything */
    double cached[Q_MAX_TERMS];
    df_cache_get(db, td, ts, q, cached);
    for (int i = 0; i < q->nt; i++) {
        qterm *t = &q->t[i];
        long long last = 0;
        t->df = 0;
        if (cached[i] >= 0) {
            t->df = cached[i];
            goto idf;
        }
        if (!st && !(st = table_stmt(sr, td, ST_DF, td->sql_df)))
            goto out;
        if (quote_term(match, sizeof(match), td->colfilter, t->text, t->len) < 0) {
            cached[i] = -2; /* not searchable: no df, no idf, nothing to remember */
            continue;
        }
        int c = sample(st, match, from, &last);
        if (c < 0)
            goto out;
        if (c == DF_SAMPLE)
            t->df = DF_SAMPLE * maxid / (double)(last - from + 1);
        else if (scale > 1)
            t->df = (c > 0 ? c : 0.5) * scale;
        else
            t->df = c;
        if (t->df > n)
            t->df = n;
    idf:;
        double df = t->df < 1 ? 1 : t->df;
        t->idf = log(1.0 + (n - df + 0.5) / (df + 0.5));
    }
    df_cache_put(db, td, ts, q, cached);
    rc = 0;
out:
    if (st)
        sqlite3_clear_bindings(st); /* sample() has reset it */
    return rc;
}

/* ---- the candidate ranking function ---- */

typedef struct rank_args {
    int ncol, nphrase;
    double w[8];
    double idf[MATCH_MAX + 16];
} rank_args;

/*
 * Writing them (build_match).  kb_rank() reads its arguments as text, and a small table's
 * candidates from memory must be scored with the very values it reads (kb_memidx.c): each
 * argument is written here and its value kept beside it in a rank_args, the value that strtod
 * gives for the text.  An idf is written with four decimals, as "%.4f" writes it, from an
 * exact count of ten-thousandths (kb_fixed4); q / 10000.0 is then that text's value, since a
 * division of two exact doubles is correctly rounded, as strtod is.  printf's and strtod's
 * general paths cost 6-7 % of a search.  test_kb_search checks text and value against
 * snprintf and strtod for a million values and every tie.
 */

/* |x| in ten-thousandths, rounded half to even from x's exact binary value as printf's "%.4f"
 * rounds it, into *q, and its sign into *neg.  Returns 0, or -1 when x is not finite or too
 * large (|x| >= 1e11, where q might not be exact as a double). */
static int ten_thousandths(double x, int *neg, uint64_t *q)
{
    if (!isfinite(x) || fabs(x) >= 1e11)
        return -1;
    int e;
    double f = frexp(fabs(x), &e); /* |x| = f * 2^e, f 0 or in [0.5, 1) */
    unsigned __int128 p = (unsigned __int128)(uint64_t)ldexp(f, 53) * 10000u; /* * 2^(e - 53) */
    int s = 53 - e;
    *neg = signbit(x) != 0;
    if (s <= 0) {
        *q = (uint64_t)(p << -s);
        return 0;
    }
    if (s > 120) { /* p < 2^67: below half a unit */
        *q = 0;
        return 0;
    }
    unsigned __int128 one = (unsigned __int128)1 << s, r = p & (one - 1), half = one >> 1;
    uint64_t v = (uint64_t)(p >> s);
    *q = v + (r > half || (r == half && (v & 1)));
    return 0;
}

int kb_fixed4(double x, char *buf, double *value)
{
    int neg, n = 0;
    uint64_t q;
    if (ten_thousandths(x, &neg, &q) != 0) {
        n = snprintf(buf, KB_FIXED4_MAX, "%.4f", x);
        *value = strtod(buf, NULL);
        return n;
    }
    char d[24];
    int nd = 0;
    for (uint64_t i = q / 10000; nd == 0 || i > 0; i /= 10)
        d[nd++] = (char)('0' + i % 10);
    if (neg)
        buf[n++] = '-';
    while (nd > 0)
        buf[n++] = d[--nd];
    buf[n++] = '.';
    for (unsigned f = (unsigned)(q % 10000), k = 1000; k > 0; f %= k, k /= 10)
        buf[n++] = (char)('0' + f / k);
    buf[n] = 0;
    *value = neg ? -((double)q / 10000.0) : (double)q / 10000.0;
    return n;
}

/* Appends x to args as "%.4f " writes it (and its value to a) when there is room. */
static void args_idf(char *args, size_t *al, size_t acap, rank_args *a, double x)
{
    char tmp[KB_FIXED4_MAX + 1];
    double v;
    int n = kb_fixed4(x, tmp, &v);
    tmp[n++] = ' ';
    tmp[n] = 0;
    if (*al + (size_t)n < acap) {
        memcpy(args + *al, tmp, (size_t)n + 1);
        *al += (size_t)n;
    }
    if (a->nphrase < (int)(sizeof(a->idf) / sizeof(a->idf[0])))
        a->idf[a->nphrase++] = v;
}

/* Appends column weight w to args as "%g" writes it (and its value to a). */
static void args_weight(char *args, size_t *al, size_t acap, rank_args *a, double w)
{
    char tmp[48];
    int n = 0;
    double v = w;
    if (*al > 0)
        tmp[n++] = ' ';
    if (!signbit(w) && w < 1e6 && w == (double)(int)w) { /* "%g" writes these as integers */
        char d[8];
        int nd = 0;
        for (int i = (int)w; nd == 0 || i > 0; i /= 10)
            d[nd++] = (char)('0' + i % 10);
        while (nd > 0)
            tmp[n++] = d[--nd];
        tmp[n] = 0;
    } else {
        n += snprintf(tmp + n, sizeof(tmp) - (size_t)n, "%g", w);
        v = strtod(tmp, NULL);
    }
    if (*al + (size_t)n < acap) {
        memcpy(args + *al, tmp, (size_t)n + 1);
        *al += (size_t)n;
    }
    if (a->ncol < 8)
        a->w[a->ncol++] = v;
}

/* Reads kb_rank()'s arguments 'w0 w1 ..;idf0 idf1 ..' (as build_match writes them). */
static void rank_args_parse(const char *p, rank_args *a)
{
    char *end;
    while (*p && *p != ';' && a->ncol < 8) {
        a->w[a->ncol++] = strtod(p, &end);
        if (end == p)
            break;
        p = end;
    }
    if (*p == ';')
        p++;
    while (*p && a->nphrase < (int)(sizeof(a->idf) / sizeof(a->idf[0]))) {
        a->idf[a->nphrase++] = strtod(p, &end);
        if (end == p)
            break;
        p = end;
    }
}

/*
 * kb_rank(fts, 'w0 w1 ..;idf0 idf1 ..'): the FTS5 auxiliary function that orders candidates.
 * A cut-down bm25: each phrase of the MATCH scores its idf (given, from est_df) times the
 * saturated sum of the weights of the columns it occurs in.  It reads only the per-column
 * occurrence lists FTS5 already has (xPhraseFirstColumn), never the document sizes or the
 * text, so a row costs a fraction of bm25()'s on a detail=column index; length
 * normalization and term frequencies are left to the BM25F re-rank of the survivors.
 * Higher is better.
 */
void kb_rank_fn(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int nval,
                sqlite3_value **val)
{
    rank_args *a = api->xGetAuxdata(fts, 0);
    double score = 0;

    if (a == NULL) {
        const char *p = nval > 0 ? (const char *)sqlite3_value_text(val[0]) : NULL;
        a = calloc(1, sizeof(*a));
        if (a == NULL || p == NULL) {
            free(a);
            sqlite3_result_error(ctx, "kb_rank: bad arguments", -1);
            return;
        }
        rank_args_parse(p, a);
        if (api->xSetAuxdata(fts, a, free) != SQLITE_OK) {
            free(a);
            sqlite3_result_error_nomem(ctx);
            return;
        }
    }
    int nphrase = api->xPhraseCount(fts);
    for (int i = 0; i < nphrase && i < a->nphrase; i++) {
        Fts5PhraseIter it;
        int col = -1;
        double w = 0;
        if (a->idf[i] <= 0 || api->xPhraseFirstColumn(fts, i, &it, &col) != SQLITE_OK)
            continue;
        for (; col >= 0; api->xPhraseNextColumn(fts, &it, &col))
            if (col < a->ncol)
                w += a->w[col];
        if (w > 0)
            score += kb_rank_term(a->idf[i], w);
    }
    sqlite3_result_double(ctx, score);
}

/* ---- step 3: pruning and the MATCH expression ---- */

static int by_df(const void *a, const void *b, void *ctx)
{
    const query *q = ctx;
    double x = q->t[*(const int *)a].df, y = q->t[*(const int *)b].df;
    return x < y ? -1 : x > y ? 1 : *(const int *)a - *(const int *)b;
}

/* Chooses terms and writes the MATCH expression, and kb_rank()'s arguments as text (args) and
 * as values (ra, zeroed by the caller).  Returns the number of terms chosen (0: no term
 * occurs) and sets *fallback when only an over-budget term is left. */
static int build_match(query *q, const table_def *td, const char *category,
                       const kb_search_opts_t *o, char *buf, size_t cap, char *args, size_t acap,
                       rank_args *ra, int *fallback, int *ncat)
{
    size_t al = 0;
    args[0] = 0;
    for (int c = 0; c < td->ncols; c++)
        args_weight(args, &al, acap, ra, td->weights[c]);
    al += (size_t)snprintf(args + al, acap - al, ";");
    int order[Q_MAX_TERMS], n = 0, chosen = 0;
    double sum = 0;
    size_t len = 0;

    *fallback = 0;
    *ncat = 0;
    double budget = o->budget > 0 ? o->budget : 1e18;
    for (int i = 0; i < q->nt; i++) {
        q->t[i].selected = 0;
        if (q->t[i].df >= 1 && (o->match_unigrams || !q->t[i].in_bi))
            order[n++] = i;
    }
    if (n == 0)
        return 0;
    qsort_r(order, (size_t)n, sizeof(int), by_df, q);
    if (q->t[order[0]].df > budget) {
        q->t[order[0]].selected = 1;
        *fallback = 1;
        chosen = 1;
    } else {
        for (int i = 0; i < n && chosen < MATCH_MAX; i++) {
            if (sum + q->t[order[i]].df > budget)
                break;
            sum += q->t[order[i]].df;
            q->t[order[i]].selected = 1;
            chosen++;
        }
    }
    if (category) {
        /* category slugs are ASCII words separated by '.' or '_': require each word */
        int l = snprintf(buf, cap, "{category} : (");
        len = (size_t)l;
        int first = 1;
        for (const char *p = category; *p;) {
            while (*p && !((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
                p++;
            const char *s = p;
            while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
                p++;
            if (p == s)
                break;
            l = snprintf(buf + len, cap - len, "%s\"%.*s\"", first ? "" : " AND ", (int)(p - s), s);
            len += (size_t)l;
            al += (size_t)snprintf(args + al, acap - al, "0 ");
            if (ra->nphrase < (int)(sizeof(ra->idf) / sizeof(ra->idf[0])))
                ra->idf[ra->nphrase++] = 0;
            (*ncat)++;
            first = 0;
        }
        l = snprintf(buf + len, cap - len, ") AND ");
        len += (size_t)l;
    }
    int l = snprintf(buf + len, cap - len, "%s : (", td->colfilter);
    len += (size_t)l;
    int first = 1;
    for (int i = 0; i < q->nt; i++) {
        if (!q->t[i].selected)
            continue;
        if (!first) {
            memcpy(buf + len, " OR ", 4);
            len += 4;
        }
        first = 0;
        int w = quote_term(buf + len, cap - len - 2, NULL, q->t[i].text, q->t[i].len);
        if (w < 0 || al + 32 > acap)
            return 0;
        len += (size_t)w;
        args_idf(args, &al, acap, ra, q->t[i].idf);
    }
    buf[len++] = ')';
    buf[len] = 0;
    return chosen;
}

/* ---- step 5: re-ranking, coverage, snippets ---- */

typedef struct range {
    int col, start, end;
    double w;
} range;

typedef struct doc {
    const query *q;
    kb_analyzer_t a; /* documents' analyzer: the table search's snapshot of the synonym list */
    int positions[KB_DOC_COLS];
    unsigned short tf[Q_MAX_TERMS][KB_DOC_COLS];
    range r[MAX_RANGES];
    int nr;
    int ranges_only; /* only the snippet's ranges are wanted (a hit from memory): no tf */
} doc;

static int doc_tok(void *ctx, int col, const kb_tok_t *tok)
{
    doc *d = ctx;
    if (!tok->colocated)
        d->positions[col]++;
    int i = term_find(d->q, tok->text, tok->len, kb_text_hash(tok->text, tok->len));
    if (i < 0)
        return 0;
    if (!d->ranges_only && d->tf[i][col] < 65535)
        d->tf[i][col]++;
    if (d->q->t[i].selected && d->q->t[i].mark && d->nr < MAX_RANGES)
        d->r[d->nr++] = (range){col, tok->start, tok->end, d->q->t[i].idf};
    return 0;
}

/* The same as doc_tok over every token of the document, from its kept term index: each query
 * term is looked up once, and the ranges of the highlighted ones are taken in stream order
 * (merged by ordinal), so that the MAX_RANGES cap keeps the same ones. */
static int doc_index(void *ctx, const kb_doc_index_t *ix)
{
    doc *d = ctx;
    const query *q = d->q;
    struct {
        const kb_doc_occ_t *o;
        int n, at;
        double idf;
    } m[Q_MAX_TERMS];
    int nm = 0;

    for (int c = 0; c < KB_DOC_COLS; c++)
        d->positions[c] = kb_doc_index_positions(ix, c);
    for (int i = 0; i < q->nt; i++) {
        const kb_doc_occ_t *o;
        int ranged = q->t[i].selected && q->t[i].mark;
        if (d->ranges_only && !ranged)
            continue;
        int n = kb_doc_index_find(ix, q->t[i].text, q->t[i].len, q->t[i].hash, &o);
        if (n == 0)
            continue;
        for (int k = 0; k < n && !d->ranges_only; k++)
            if (d->tf[i][o[k].col] < 65535)
                d->tf[i][o[k].col]++;
        if (ranged)
            m[nm++] = (typeof(m[0])){o, n, 0, q->t[i].idf};
    }
    while (d->nr < MAX_RANGES) {
        int best = -1;
        for (int j = 0; j < nm; j++)
            if (m[j].at < m[j].n && (best < 0 || m[j].o[m[j].at].ord < m[best].o[m[best].at].ord))
                best = j;
        if (best < 0)
            break;
        const kb_doc_occ_t *o = &m[best].o[m[best].at++];
        d->r[d->nr++] = (range){(int)o->col, (int)o->start, (int)o->end, m[best].idf};
    }
    return 0;
}

/* BM25F's pieces, one expression each for bm25f and bm25f_mem, so that both give the same bits:
 * column c's length normalization for a document of those column lengths, and query term i's
 * share for its weighted frequency tfw (> 0). */
static double col_norm(const int *positions, const tstats *ts, int c)
{
    return 1 - BM25_B + BM25_B * positions[c] / ts->avglen[c];
}

static double term_share(const query *q, int i, double tfw, double uni_weight)
{
    return (q->t[i].in_bi ? uni_weight : 1.0) * q->t[i].idf * tfw * (KB_BM25_K1 + 1) /
           (tfw + KB_BM25_K1);
}

/* The query terms a document holds (in a column that weighs), in query order. */
typedef struct hitset {
    int n;
    short t[Q_MAX_TERMS];
} hitset;

/* BM25F over all query terms; also fills hs. */
static double bm25f(const doc *d, const table_def *td, const tstats *ts, const query *q,
                    double uni_weight, hitset *hs)
{
    double score = 0;
    hs->n = 0;
    for (int i = 0; i < q->nt; i++) {
        double tfw = 0;
        for (int c = 0; c < td->ncols; c++)
            if (d->tf[i][c] != 0 && td->weights[c] != 0)
                tfw += td->weights[c] * d->tf[i][c] / col_norm(d->positions, ts, c);
        if (tfw > 0) {
            hs->t[hs->n++] = (short)i;
            score += term_share(q, i, tfw, uni_weight);
        }
    }
    return score;
}

/* The same from what the postings in memory give (kb_memidx_terms): the query terms that the
 * document holds, e[0..ne) in query order, and its columns' lengths.  The same sums in the same
 * order as bm25f over a doc with those frequencies, without the walk of every term and column. */
static double bm25f_mem(const int *positions, const kb_memtf_t *e, int ne, const table_def *td,
                        const tstats *ts, const query *q, double uni_weight, hitset *hs)
{
    double norm[KB_DOC_COLS], score = 0;
    for (int c = 0; c < td->ncols; c++)
        norm[c] = col_norm(positions, ts, c);
    hs->n = 0;
    for (int j = 0; j < ne; j++) {
        const uint16_t *f = e[j].tf;
        double tfw = 0;
        for (unsigned m = e[j].cols; m; m &= m - 1) { /* its columns, in order */
            int c = __builtin_ctz(m);
            unsigned v = *f++;
            if (c < td->ncols && v != 0 && td->weights[c] != 0)
                tfw += td->weights[c] * v / norm[c];
        }
        int i = e[j].term;
        if (tfw > 0) {
            hs->t[hs->n++] = (short)i;
            score += term_share(q, i, tfw, uni_weight);
        }
    }
    return score;
}

/* Sets bits [from, to) of m. */
static void set_bits(uint64_t *m, int from, int to)
{
    for (int c = from; c < to; c++)
        m[c >> 6] |= (uint64_t)1 << (c & 63);
}

/* What coverage() needs of q's tokens, once per search: it runs for every candidate. */
static void coverage_prepare(query *q)
{
    q->ncw = q->nwords = 0;
    q->cov_all = 0;
    memset(q->full, 0, (size_t)q->nt * sizeof(q->full[0]));
    memset(q->half, 0, (size_t)q->nt * sizeof(q->half[0]));
    for (int i = 0; i < q->nk; i++) {
        const qtok *k = &q->k[i];
        if (k->term < 0 || k->cstart >= k->cend || k->cstart > Q_MAX_CHARS)
            continue;
        int half = k->kind == KB_TOK_UNI && q->in_bi[k->cstart];
        int to = k->cend <= Q_MAX_CHARS ? k->cend : Q_MAX_CHARS + 1;
        set_bits(half ? q->half[k->term] : q->full[k->term], k->cstart, to);
        if ((to + 63) / 64 > q->nwords)
            q->nwords = (to + 63) / 64;
    }
    for (int i = 0; i < q->nk; i++) {
        const qtok *k = &q->k[i];
        if (k->colocated || k->kind == KB_TOK_SYN || k->term < 0)
            continue;
        const qterm *t = &q->t[k->term];
        double w = t->idf < 0.05 ? 0.05 : t->idf;
        if (t->func)
            w *= 0.2;
        q->cov_all += w;
        if (k->cstart <= Q_MAX_CHARS)
            q->cw[q->ncw++] = (typeof(q->cw[0])){k->cstart, w};
    }
}

/* Each character's weight counts fully when a hit term covers it (a bigram, a word, a synonym
 * group, a character the query has on its own), by half when only the character matched
 * inside one of the query's bigrams.  Sums in token order, as the weights' total was. */
static double coverage(const query *q, const hitset *hs)
{
    uint64_t full[COV_WORDS] = {0}, half[COV_WORDS] = {0};
    double got = 0;

    for (int i = 0; i < hs->n; i++) {
        int t = hs->t[i];
        for (int w = 0; w < q->nwords; w++) {
            full[w] |= q->full[t][w];
            half[w] |= q->half[t][w];
        }
    }
    for (int i = 0; i < q->ncw; i++) {
        int c = q->cw[i].at;
        uint64_t bit = (uint64_t)1 << (c & 63);
        if (full[c >> 6] & bit) /* adding 0 would leave got as it is */
            got += q->cw[i].w;
        else if (half[c >> 6] & bit)
            got += q->cw[i].w * 0.5;
    }
    return q->cov_all > 0 ? got / q->cov_all : 0;
}

static int by_start(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->start != y->start ? x->start - y->start : y->end - x->end;
}

/* Steps back n characters from byte offset i of s. */
static int back_chars(const char *s, int i, int n)
{
    while (i > 0 && n > 0) {
        i--;
        while (i > 0 && (s[i] & 0xC0) == 0x80)
            i--;
        n--;
    }
    return i;
}

static int fwd_chars(const char *s, int len, int i, int n)
{
    while (i < len && n > 0) {
        i++;
        while (i < len && (s[i] & 0xC0) == 0x80)
            i++;
        n--;
    }
    return i;
}

/* An excerpt of text around the best cluster of ranges r[0..n) (this column's), matches in
 * [..].  Returns malloc'ed text or NULL when out of memory. */
static char *snippet(const char *text, range *r, int n)
{
    int len = (int)strlen(text), m = 0, ws = 0, we;
    double best = -1;

    qsort(r, (size_t)n, sizeof(*r), by_start);
    for (int i = 0; i < n; i++) { /* merge overlapping and touching ranges */
        if (m > 0 && r[i].start <= r[m - 1].end) {
            if (r[i].end > r[m - 1].end)
                r[m - 1].end = r[i].end;
            r[m - 1].w += r[i].w;
        } else {
            r[m++] = r[i];
        }
    }
    for (int i = 0; i < m; i++) {
        int s = back_chars(text, r[i].start, 8);
        int e = fwd_chars(text, len, s, SNIP_CHARS);
        double w = 0;
        for (int j = i; j < m && r[j].end <= e; j++)
            w += r[j].w;
        if (w > best) {
            best = w;
            ws = s;
        }
    }
    we = fwd_chars(text, len, ws, SNIP_CHARS);
    char *out = malloc((size_t)(we - ws) + 2 * (size_t)m + 8), *p = out;
    if (out == NULL)
        return NULL;
    if (ws > 0)
        p += sprintf(p, "…");
    int j = 0, open = 0;
    while (j < m && r[j].end <= ws)
        j++;
    for (int i = ws; i < we;) {
        if (!open && j < m && i >= r[j].start) {
            *p++ = '[';
            open = 1;
        }
        char c = text[i++];
        *p++ = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
        if (open && i >= r[j].end) {
            *p++ = ']';
            open = 0;
            j++;
        }
    }
    if (open)
        *p++ = ']';
    if (we < len)
        p += sprintf(p, "…");
    *p = 0;
    return out;
}

/* ---- candidates and hits ---- */

/* A re-ranked candidate.  Only the `limit` best of all tables become hits (hit_fill): their
 * rows are read again (same snapshot) for the fields and the snippet, so the other candidates
 * cost no copies and no snippet. */
typedef struct cand {
    kb_kind_t kind;
    long long id;
    double score, coverage;
    int col;   /* snippet column: the first in snippet_order with a highlighted match */
    range *r;  /* that column's ranges (malloc'ed, NULL for none) */
    int nr;    /* r's length */
    long mdoc; /* from memory: its document in the table's kept index, whose row hit_fill reads
                  and analyzes for the ranges if it is a hit; -1 otherwise */
} cand;

/* What a table's search leaves for its hits: the query (its chosen and highlighted terms are
 * the table's; the searcher's scratch) and the synonym list the documents are analyzed with
 * (a reference that search() lets go). */
typedef struct table_ctx {
    query *q;
    kb_synonyms_t *syn;
    kb_memidx_t *ix; /* a reference to the postings in memory the candidates came from, or NULL */
} table_ctx;

/* A row as sql_get gives it (id, unused, the table's columns): from a statement, or, for a
 * candidate from memory, from the copy kept with the postings (kb_memidx_col). */
typedef struct row {
    sqlite3_stmt *st; /* NULL: */
    const kb_memidx_t *ix;
    uint32_t doc;
} row;

static const char *row_text(const row *r, int i)
{
    return r->st ? (const char *)sqlite3_column_text(r->st, i)
                 : kb_memidx_col(r->ix, r->doc, i - 2);
}

static long long row_id(const row *r)
{
    return r->st ? sqlite3_column_int64(r->st, 0) : kb_memidx_id(r->ix, r->doc);
}

/* An integer column, as sqlite3_column_int reads it. */
static int row_int(const row *r, int i)
{
    if (r->st)
        return sqlite3_column_int(r->st, i);
    const char *s = row_text(r, i);
    return s ? atoi(s) : 0;
}

typedef struct candvec {
    cand *v;
    int n, cap;
} candvec;

static void cands_free(candvec *cv)
{
    for (int i = 0; i < cv->n; i++)
        free(cv->v[i].r);
    free(cv->v);
    cv->v = NULL;
    cv->n = cv->cap = 0;
}

static char *dup_text(const row *r, int i)
{
    const char *s = row_text(r, i);
    return strdup(s ? s : "");
}

static void hit_clear(kb_hit_t *h)
{
    free(h->title);
    free(h->category);
    free(h->text);
    free(h->snippet);
    free(h->deadline);
    free(h->compensation);
    free(h->key);
}

void kb_result_free(kb_result_t *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->count; i++)
        hit_clear(&r->hits[i]);
    free(r->hits);
    free(r);
}

/* Analyzes the current row into d (term frequencies, column lengths, highlighted ranges). */
/* Analyzes r into d: its columns' lengths, the query terms' frequencies and the ranges to
 * highlight; with ranges_only (a hit from memory, whose score is known) only the ranges. */
static void analyze_row(const row *r, const table_def *td, const query *q, doc *d, int ranges_only)
{
    memset(d->positions, 0, sizeof(d->positions));
    if (!ranges_only)
        memset(d->tf, 0, sizeof(d->tf[0]) * (size_t)(q->nt > 0 ? q->nt : 1));
    d->nr = 0;
    d->ranges_only = ranges_only;
    const char *cols[KB_DOC_COLS];
    for (int c = 0; c < td->ncols; c++)
        cols[c] = c == td->category_col ? NULL : row_text(r, 2 + c);
    kb_doc_analyze(td->kind, row_id(r), &d->a, cols, td->ncols, doc_tok, doc_index, d);
}

/* Takes c's snippet column and that column's ranges from d's highlighted ranges.  Returns 0 or
 * KB_ERR_NOMEM. */
static int cand_ranges(cand *c, const table_def *td, const doc *d)
{
    c->col = td->snippet_order[0];
    c->nr = 0;
    for (const int *k = td->snippet_order; *k >= 0; k++) {
        int i = 0;
        while (i < d->nr && d->r[i].col != *k)
            i++;
        if (i < d->nr) {
            c->col = *k;
            break;
        }
    }
    for (int i = 0; i < d->nr; i++)
        c->nr += d->r[i].col == c->col;
    if (c->nr > 0) {
        c->r = malloc((size_t)c->nr * sizeof(range));
        if (c->r == NULL)
            return KB_ERR_NOMEM;
        for (int i = 0, n = 0; i < d->nr; i++)
            if (d->r[i].col == c->col)
                c->r[n++] = d->r[i];
    }
    return 0;
}

/* Appends candidate id of td with its BM25F score and the query terms it holds (hs), and
 * so its coverage; with its ranges from d, or, d NULL (from memory), none until hit_fill.
 * Returns the candidate, or NULL when out of memory. */
static cand *add_scored(candvec *cv, const table_def *td, const query *q, const kb_search_opts_t *o,
                        double score, const hitset *hs, const doc *d, long long id)
{
    if (cv->n == cv->cap) {
        int cap = cv->cap ? cv->cap * 2 : 64;
        cand *v = realloc(cv->v, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        cv->v = v;
        cv->cap = cap;
    }
    cand *c = &cv->v[cv->n];
    *c = (cand){td->kind, id, score, 0, td->snippet_order[0], NULL, 0, -1};
    c->coverage = coverage(q, hs);
    c->score *= 1 + o->cov_weight * c->coverage;
    if (d && cand_ranges(c, td, d) != 0)
        return NULL;
    cv->n++;
    return c;
}

/* Scores the current candidate row and appends it.  Returns 0 or KB_ERR_NOMEM. */
static int add_cand(candvec *cv, sqlite3_stmt *st, const table_def *td, const tstats *ts,
                    const query *q, const kb_search_opts_t *o, doc *d)
{
    hitset hs;
    row r = {.st = st};
    analyze_row(&r, td, q, d, 0);
    double score = bm25f(d, td, ts, q, o->uni_weight, &hs);
    cand *c = add_scored(cv, td, q, o, score, &hs, d, sqlite3_column_int64(st, 0));
    if (c == NULL)
        return KB_ERR_NOMEM;
    if (!o->rerank) /* keep the candidate order */
        c->score = sqlite3_column_double(st, 1);
    return 0;
}

/* Fills hit h from candidate c: its row read again by id or, from memory, taken from the copy
 * kept there and analyzed for the snippet's ranges (tc: its table's query, synonyms and kept
 * postings; d: scratch).  Returns 0, KB_ERR_NOMEM or KB_ERR_DB (also when the row is gone,
 * which one snapshot rules out). */
static int hit_fill(kb_searcher_t *sr, cand *c, const table_ctx *tc, doc *d, kb_hit_t *h)
{
    const table_def *td = &tables[table_index(c->kind)];
    sqlite3_stmt *st = NULL;
    row r = {.ix = tc->ix, .doc = (uint32_t)c->mdoc};
    int rc = KB_ERR_DB;

    memset(h, 0, sizeof(*h));
    if (c->mdoc < 0) { /* not from memory: read again by id */
        if ((st = r.st = table_stmt(sr, td, ST_GET, td->sql_get)) == NULL)
            return KB_ERR_DB;
        sqlite3_bind_int64(st, 1, c->id);
        if (sqlite3_step(st) != SQLITE_ROW)
            goto out;
    } else { /* its ranges, as the analysis of a candidate row takes them */
        d->q = tc->q;
        d->a = (kb_analyzer_t){.cjk = KB_CJK_UNIBI, .query = 0, .syn = tc->syn};
        analyze_row(&r, td, tc->q, d, 1);
        if (cand_ranges(c, td, d) != 0) {
            rc = KB_ERR_NOMEM;
            goto out;
        }
    }
    h->kind = c->kind;
    h->id = c->id;
    h->score = c->score;
    h->coverage = c->coverage;
    h->title = dup_text(&r, 2);
    h->category = dup_text(&r, 2 + td->category_col);
    if (td->kind == KB_TEMPLATE) {
        h->text = dup_text(&r, 6);
        h->key = dup_text(&r, 8);
        h->deadline = dup_text(&r, 9);
        h->compensation = dup_text(&r, 10);
        h->severity = row_int(&r, 11);
    } else {
        h->text = dup_text(&r, 5);
        h->key = dup_text(&r, 6);
    }
    const char *col = row_text(&r, 2 + c->col);
    range rs[MAX_RANGES];
    if (c->nr > 0) /* snippet() sorts and merges in place; c->r is NULL without ranges */
        memcpy(rs, c->r, (size_t)c->nr * sizeof(range));
    h->snippet = snippet(col ? col : "", rs, c->nr);
    rc = 0;
    if (!h->title || !h->category || !h->text || !h->key || !h->snippet ||
        (td->kind == KB_TEMPLATE && (!h->deadline || !h->compensation)))
        rc = KB_ERR_NOMEM;
out:
    if (st)
        sqlite3_reset(st);
    if (rc != 0)
        hit_clear(h);
    return rc;
}

/* Steps 4 and 5 from the table's postings in memory (kb_memidx.c): the candidates FTS5 would
 * give, re-ranked from the term frequencies and column lengths kept there (what the analysis of
 * each row gives), with no row read.  Their snippets' ranges are left to hit_fill, for those
 * that become hits.  ra: kb_rank()'s arguments, ncat the category's phrases that lead them.
 * Returns 0 or KB_ERR_NOMEM. */
static int mem_candidates(const table_def *td, const kb_memidx_t *ix, const query *q,
                          const rank_args *ra, int ncat, const char *category,
                          const kb_search_opts_t *o, const tstats *ts, candvec *cv)
{
    kb_memq_t sel[MATCH_MAX], all[Q_MAX_TERMS];
    int nsel = 0, nt = q->nt, rc = KB_ERR_NOMEM;
    size_t nc = (size_t)o->candidates + 1;

    for (int i = 0; i < nt; i++)
        all[i] = (kb_memq_t){q->t[i].text, q->t[i].len, q->t[i].hash, 0, -1};
    kb_memidx_lookup(ix, all, nt);
    for (int i = 0; i < nt; i++) {
        if (q->t[i].selected && nsel < MATCH_MAX) {
            int k = ncat + nsel; /* the term's phrase in the MATCH, as kb_rank() numbers it */
            sel[nsel] = all[i];
            sel[nsel++].idf = k < ra->nphrase ? ra->idf[k] : 0;
        }
    }
    uint32_t *docs = malloc(nc * sizeof(*docs));
    long long *ids = malloc(nc * sizeof(*ids));
    int(*pos)[KB_DOC_COLS] = malloc(nc * sizeof(*pos));
    int *ntf = malloc(nc * sizeof(*ntf));
    kb_memtf_t *tf = malloc(nc * (size_t)(nt > 0 ? nt : 1) * sizeof(*tf));
    if (!docs || !ids || !pos || !ntf || !tf)
        goto out;
    int n =
        kb_memidx_candidates(ix, sel, nsel, ra->w, ra->ncol, category, o->candidates, docs, ids);
    if (n < 0 || kb_memidx_terms(ix, docs, n, all, nt, pos, tf, ntf) != 0)
        goto out;
    for (int k = 0; k < n; k++) {
        hitset hs;
        double score =
            bm25f_mem(pos[k], tf + (size_t)k * (size_t)nt, ntf[k], td, ts, q, o->uni_weight, &hs);
        cand *c = add_scored(cv, td, q, o, score, &hs, NULL, ids[k]);
        if (c == NULL)
            goto out;
        c->mdoc = (long)docs[k];
    }
    rc = 0;
out:
    free(docs);
    free(ids);
    free(pos);
    free(ntf);
    free(tf);
    return rc;
}

/* Searches one table and appends its candidates; leaves its query and synonym list in *tc for
 * the hits (the caller lets the list go, also on failure).  prev: a table searched before in
 * this search, whose query analysis is taken when it used the same synonym list.  d: scratch.
 * Returns 0 or a negative code. */
static int search_table(kb_searcher_t *sr, const table_def *td, const stamps *sp, const char *text,
                        const char *category, const kb_search_opts_t *o, const table_ctx *prev,
                        table_ctx *tc, doc *d, candvec *cv)
{
    query *qp; /* large: on the heap */
    tstats ts;
    sqlite3_stmt *st = NULL;
    char match[8192], args[2048], sql[1024];
    rank_args ra = {0};
    int rc, fallback, ncat, s;
    kb_synonyms_t *syn; /* one list for the query and the candidates */
    kb_memidx_t *ix = NULL;

    rc = table_stats(sr, td, sp, &ts);
    if (rc <= 0)
        return rc;
    int ti = table_index(td->kind);
    if (!sr->q[ti])
        sr->q[ti] = malloc(sizeof(*qp));
    if ((qp = tc->q = sr->q[ti]) == NULL)
        return KB_ERR_NOMEM;
    syn = tc->syn = kb_synonyms_current();
    kb_analyzer_t a = {.cjk = o->cjk, .query = 0, .syn = syn};
    if (prev && prev->q && prev->syn == syn) /* the other table's analysis of the same text */
        query_copy(qp, prev->q);
    else
        query_build(qp, text, &a);
    d->a = (kb_analyzer_t){.cjk = KB_CJK_UNIBI, .query = 0, .syn = syn};
    if (qp->nt == 0) {
        rc = 0;
        goto out;
    }
    if ((rc = est_df(sr, td, &ts, qp)) != 0)
        goto out;
    coverage_prepare(qp);
    if (build_match(qp, td, category, o, match, sizeof(match), args, sizeof(args), &ra, &fallback,
                    &ncat) == 0) {
        rc = 0;
        goto out;
    }
    d->q = qp;
    if (!fallback && o->memidx && o->rerank && !o->fts_bm25 && ts.rows <= td->memidx_max &&
        (ix = kb_memidx_get(sr->db, td->kind, sp->table[table_index(td->kind)], sp->syn, syn,
                            td->sql_all, td->ncols, td->category_col)) != NULL) {
        rc = mem_candidates(td, ix, qp, &ra, ncat, category, o, &ts, cv);
        tc->ix = ix; /* the hits are read from it */
        ix = NULL;
        goto out;
    }
    rc = KB_ERR_DB;
    if (fallback) {
        st = table_stmt(sr, td, ST_RECENT, td->sql_recent);
    } else {
        snprintf(sql, sizeof(sql), td->sql_ranked, o->fts_bm25 ? td->bm25 : td->rank);
        st = table_stmt(sr, td, o->fts_bm25 ? ST_BM25 : ST_RANKED, sql);
    }
    if (st == NULL)
        goto out;
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, o->candidates);
    if (fallback || !o->fts_bm25)
        sqlite3_bind_text(st, 4, args, -1, SQLITE_STATIC);
    if (fallback)
        sqlite3_bind_int(st, 5, FALLBACK_ROWS);
    if (category)
        sqlite3_bind_text(st, 3, category, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    while ((s = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = add_cand(cv, st, td, &ts, qp, o, d)) != 0)
            goto out;
    rc = (s == SQLITE_DONE || s == SQLITE_ROW) ? 0 : KB_ERR_DB;
out:
    if (st) { /* the bindings point into this frame */
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    kb_memidx_unref(ix);
    return rc;
}

static int by_score(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind - y->kind;
    return x->id < y->id ? -1 : x->id > y->id;
}

static kb_confidence_t confidence(const kb_result_t *r)
{
    const kb_hit_t *t1 = NULL, *t2 = NULL;
    double best = 0;

    for (int i = 0; i < r->count; i++) {
        const kb_hit_t *h = &r->hits[i];
        if (h->coverage > best)
            best = h->coverage;
        if (h->kind == KB_TEMPLATE) {
            if (t1 == NULL)
                t1 = h;
            else if (t2 == NULL)
                t2 = h;
        }
    }
    if (t1 && t1->coverage >= KB_ANSWER_COVERAGE &&
        (t2 == NULL || t1->coverage - t2->coverage >= KB_ANSWER_MARGIN ||
         t2->score <= 0.8 * t1->score))
        return KB_ANSWER;
    return best >= KB_SUGGEST_COVERAGE ? KB_SUGGEST : KB_NO_MATCH;
}

void kb_search_defaults(kb_search_opts_t *o)
{
    o->cjk = KB_CJK_UNIBI;
    o->rerank = 1;
    o->candidates = CANDIDATES;
    o->tables = 3;
    o->budget = POSTING_BUDGET;
    o->match_unigrams = 0;
    o->fts_bm25 = 0;
    o->uni_weight = 1.0;
    o->cov_weight = 0;
    o->memidx = 1;
}

static void tables_free(table_ctx *tc)
{
    for (int i = 0; i < 2; i++) {
        kb_synonyms_unref(tc[i].syn); /* (their queries are the searcher's) */
        kb_memidx_unref(tc[i].ix);
    }
}

/* Both tables in one read transaction (unless the caller has one open): one snapshot for the
 * statistics, the df cache's check and the candidates, and one look at the write-ahead log. */
static int search(kb_searcher_t *sr, const char *text, const char *category, int limit,
                  const kb_search_opts_t *o, kb_result_t **out)
{
    kb_result_t *r = calloc(1, sizeof(*r));
    candvec cv = {NULL, 0, 0};
    table_ctx tc[2] = {{NULL, NULL, NULL}, {NULL, NULL, NULL}};
    doc *d = sr->d ? sr->d : (sr->d = malloc(sizeof(*d))); /* large: the searcher's */
    int rc = 0, tx = 0;

    *out = NULL;
    if (r == NULL || d == NULL) {
        free(r);
        return KB_ERR_NOMEM;
    }
    if (limit < 1)
        limit = 1;
    if (limit > 50)
        limit = 50;
    if (category && *category == 0)
        category = NULL;
    if (text == NULL || (category && kb_category_name(category) == NULL))
        goto done;
    kb_search_opts_t opts = *o;
    if (opts.candidates < limit)
        opts.candidates = limit;
    stamps sp;
    if (sr->held && sqlite3_get_autocommit(sr->db)) /* ended under it (an I/O error's rollback) */
        sr->held = 0;
    if (sr->held) { /* the snapshot of an earlier search, still open (kb_searcher_hold) */
        sp = sr->held_sp;
    } else {
        if (sqlite3_get_autocommit(sr->db)) {
            if ((rc = exec_kept(sr, &sr->begin, "BEGIN")) != 0)
                goto fail;
            tx = 1;
        }
        if ((rc = read_stamps(sr, &sp)) != 0)
            goto fail;
        if (tx && sr->hold) { /* kept open for the next searches, until kb_searcher_end */
            sr->held = 1;
            sr->held_sp = sp;
            tx = 0;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (!(opts.tables & (1 << i)))
            continue;
        rc = search_table(sr, &tables[i], &sp, text, category, &opts, i > 0 ? &tc[0] : NULL, &tc[i],
                          d, &cv);
        if (rc != 0)
            goto fail;
    }
    int n = cv.n < limit ? cv.n : limit;
    for (int i = 0; i < n; i++) { /* only the best n are shown: they are picked in order */
        int best = i;
        for (int j = i + 1; j < cv.n; j++)
            if (by_score(&cv.v[j], &cv.v[best]) < 0)
                best = j;
        cand t = cv.v[i];
        cv.v[i] = cv.v[best];
        cv.v[best] = t;
    }
    if (n > 0 && !(r->hits = calloc((size_t)n, sizeof(*r->hits)))) {
        rc = KB_ERR_NOMEM;
        goto fail;
    }
    for (; r->count < n; r->count++) {
        cand *c = &cv.v[r->count];
        if ((rc = hit_fill(sr, c, &tc[table_index(c->kind)], d, &r->hits[r->count])) != 0)
            goto fail;
    }
    if (tx && (rc = exec_kept(sr, &sr->commit, "COMMIT")) != 0)
        goto fail;
    cands_free(&cv);
done:
    tables_free(tc);
    r->confidence = confidence(r);
    *out = r;
    return 0;
fail:
    /* a read transaction, so nothing to undo: COMMIT ends it without aborting statements of
     * others on the connection, as a ROLLBACK may */
    if ((tx || sr->held) && !sqlite3_get_autocommit(sr->db) &&
        exec_kept(sr, &sr->commit, "COMMIT") != 0)
        sqlite3_exec(sr->db, "ROLLBACK", NULL, NULL, NULL);
    sr->held = 0;
    cands_free(&cv);
    tables_free(tc);
    kb_result_free(r);
    return rc;
}

int kb_search_ex(sqlite3 *db, const char *text, const char *category, int limit,
                 const kb_search_opts_t *o, kb_result_t **out)
{
    kb_searcher_t sr = {.db = db, .keep = 0};
    int rc = search(&sr, text, category, limit, o, out);
    release_all(&sr);
    return rc;
}

int kb_search(sqlite3 *db, const char *text, const char *category, int limit, kb_result_t **out)
{
    kb_search_opts_t o;
    kb_search_defaults(&o);
    return kb_search_ex(db, text, category, limit, &o, out);
}

kb_searcher_t *kb_searcher_open(sqlite3 *db)
{
    kb_searcher_t *s = calloc(1, sizeof(*s));
    if (s) {
        s->db = db;
        s->keep = 1;
    }
    return s;
}

void kb_searcher_hold(kb_searcher_t *s)
{
    s->hold = 1;
}

int kb_searcher_end(kb_searcher_t *s)
{
    if (!s || !s->held)
        return 0;
    s->held = 0;
    if (sqlite3_get_autocommit(s->db)) /* ended by someone else */
        return 0;
    return exec_kept(s, &s->commit, "COMMIT");
}

void kb_searcher_close(kb_searcher_t *s)
{
    if (s) {
        kb_searcher_end(s);
        release_all(s);
        free(s);
    }
}

int kb_searcher_search(kb_searcher_t *s, const char *text, const char *category, int limit,
                       kb_result_t **out)
{
    kb_search_opts_t o;
    kb_search_defaults(&o);
    return search(s, text, category, limit, &o, out);
}
