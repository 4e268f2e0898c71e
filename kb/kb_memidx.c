/*
 * kb_memidx.c - a small table's postings in memory: a search's candidates and their re-rank
 * without FTS5.
 *
 * Why.  The candidates step of a search (kb_search.c, step 4) asks FTS5 for the documents that
 * hold any of a few chosen terms, scores each with kb_rank() and keeps the best forty.  With
 * 1,000 templates that is some 300 matching rows, and FTS5 spends about 0.7 us on each (the
 * merge of the terms' doclists, the rank function's column lists, the sorter): a third of a
 * search.  The re-rank (step 5) then read each candidate's row and looked every query term up
 * in its kept term index (kb_doccache.c).  Templates are few (editors write them) and seldom
 * change, and a young knowledge base has few past cases, so a table of up to a few thousand
 * rows is also kept here: for each distinct token of its text columns, the documents that hold
 * it, in which columns (all that detail=column gives kb_rank()) and how often, and each
 * document's column lengths (all that BM25F reads).  Scoring over them costs a few nanoseconds
 * a posting.  The re-rank needs only the candidates' postings of each query term: a common
 * term (in one document in 16 or more) also has a bitmap of its documents, where a candidate's
 * posting is found in a few instructions (maps_build), instead of walking all of them.  Each row's
 * columns are kept too (kb_memidx_col), so that a hit's fields and snippet need no read either:
 * every commit of the chats empties the loop connection's page cache, and reading five hits' rows
 * again was 8-10 % of a loop that searches on every message.
 *
 * Exactness.  The candidates and their scores are the ones FTS5 and the analysis of each row
 * give, to the bit:
 *   - the postings are built from the table's rows with the analyzer the "redress" tokenizer
 *     indexes documents with (document mode, characters and bigrams, the current synonym list),
 *     and are used only while kb_meta's synonyms_hash names that same list, that is while the
 *     FTS index was built with it too (kb_sync_synonyms);
 *   - they are used only for the state of the table they were built from: kb_meta's
 *     templates_stamp or cases_stamp, a random value that triggers replace on every insert,
 *     update and delete of the table (kb_schema.c, migrations 2 and 3), read in the search's own
 *     snapshot.  Random rather than a counter, so that another database file (a test's, a
 *     copy) cannot reach the same value with other rows;
 *   - a document's kb_rank() score is that function's expression (kb_rank_term), added term by
 *     term in the MATCH's order with each term's columns in order; ties go to the oldest
 *     document (lowest id), as the FTS5 query orders them (ORDER BY s DESC, rid; before that
 *     order was written out, SQLite's sorter kept FTS5's ascending rowids among ties, and recall
 *     on AFQMC depends on it);
 *   - the category filter is the exact slug, which is what the query's join keeps;
 *   - the term frequencies count every token, colocated ones too, cut at 65535, and a column's
 *     length counts its tokens that are not colocated, as the re-ranker counts them.
 * test_kb_search compares both ways hit for hit, score for score and snippet for snippet.
 *
 * Bounds.  kb_search.c keeps a table here only up to a number of rows (4,000 templates, 1,000
 * past cases; FTS5 answers for a larger one): building analyzes every row again, about 10-14 us
 * a row, on the thread of the first search that sees a new stamp: up to ~55 ms after an edit of
 * the templates, ~10 ms after a case is added.  The bench's 1,000 templates and 107 cases take
 * 4.7 MB: 3.7 MB of postings, the rows, and 0.2 MB of common terms' document maps.
 *
 * Sharing.  One index per table kind for the process, shared by every connection and thread:
 * a mutex guards the pointer and the reference counts.  A search holds a reference while it
 * reads an index, which is never changed once published; a stale one is replaced, and freed
 * when its last reader lets go.
 */
#include "kb_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct mterm {
    uint32_t off, len; /* into text */
    uint32_t post, npost;
    uint32_t map; /* a common term's document map (see DENSE): into bits and rank, + 1; or 0 */
} mterm;

struct kb_memidx {
    int refs; /* under the cache's lock */
    char stamp[40];
    char syn[17];
    int ndocs;
    long long *id;    /* per document, ascending */
    int nrow;         /* the row's columns after (id, unused), kept for the hits */
    uint32_t *rowoff; /* per document, nrow of them: into text + 1 (NUL-terminated), 0 NULL */
    int category_col; /* the row's column that holds the category slug */
    uint32_t nterms, mask;
    uint64_t *slot; /* (hash << 32) | (term + 1); 0 = empty */
    mterm *term;
    uint32_t *pos;  /* per document, KB_DOC_COLS column lengths in positions */
    uint32_t *pdoc; /* postings: document index, ascending within a term */
    uint8_t *pcol;  /* postings: the columns that hold the term (bit c) */
    uint32_t *ptf;  /* postings: into tf, the term's frequency in each of those columns */
    uint16_t *tf;
    uint64_t *bits; /* the document maps: bit d of a map, document d holds the term */
    uint32_t *rank; /* per word of bits: the term's postings before it */
    uint32_t words; /* per map */
    char *text;     /* terms' texts, then categories */
    size_t bytes;
};

static struct {
    pthread_mutex_t lock;
    kb_memidx_t *cur[2]; /* templates, cases */
    unsigned long builds;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void memidx_free(kb_memidx_t *ix)
{
    if (!ix)
        return;
    free(ix->id);
    free(ix->rowoff);
    free(ix->slot);
    free(ix->term);
    free(ix->pos);
    free(ix->pdoc);
    free(ix->pcol);
    free(ix->ptf);
    free(ix->tf);
    free(ix->bits);
    free(ix->rank);
    free(ix->text);
    free(ix);
}

void kb_memidx_unref(kb_memidx_t *ix)
{
    if (!ix)
        return;
    pthread_mutex_lock(&cache.lock);
    int last = --ix->refs == 0;
    pthread_mutex_unlock(&cache.lock);
    if (last)
        memidx_free(ix);
}

/* The slot of term s[0..len) (hash kb_text_hash): where it is, or the empty one where it goes. */
static uint64_t *find_slot(const kb_memidx_t *ix, const char *s, uint32_t len, unsigned hash)
{
    for (uint32_t i = hash & ix->mask;; i = (i + 1) & ix->mask) {
        uint64_t v = ix->slot[i];
        if (v == 0)
            return &ix->slot[i];
        const mterm *t = &ix->term[(uint32_t)v - 1];
        if ((uint32_t)(v >> 32) == hash && t->len == len && memcmp(ix->text + t->off, s, len) == 0)
            return &ix->slot[i];
    }
}

/* ---- building ---- */

#define DENSE 16   /* a term held by one document in this many or more has a map (maps_build) */
#define MAP_MIN 32 /* and one held by fewer documents than this has none */

typedef struct triple {
    uint32_t term, doc, tf; /* tf: into the builder's pool, one per column in cols */
    uint8_t cols;
} triple;

typedef struct builder {
    kb_memidx_t *ix;
    uint32_t doc;
    int col;
    size_t ntext, captext, capterm, capid, cappos, caprow;
    uint32_t *last;               /* per term: the last document that held it, + 1 */
    uint16_t (*tfc)[KB_DOC_COLS]; /* per term: its frequency in each column of the current
                                     document, cut at 65535 */
    uint16_t *pool;
    size_t npool, cappool;
    uint32_t *touched;
    size_t ntouched, captouched;
    triple *tr;
    size_t ntr, captr;
} builder;

/* p with room for need elements of size bytes (capacity *cap): p itself, its larger copy, or
 * NULL when out of memory (p is then unchanged). */
static void *grown(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *q = realloc(p, n * size);
    if (q)
        *cap = n;
    return q;
}

/* Doubles the slots (load kept at most one half). */
static int rehash(kb_memidx_t *ix)
{
    uint32_t n = (ix->mask + 1) * 2;
    uint64_t *slot = calloc(n, sizeof(*slot));
    if (!slot)
        return -1;
    for (uint32_t i = 0; i <= ix->mask; i++)
        if (ix->slot[i]) {
            uint32_t j = (uint32_t)(ix->slot[i] >> 32) & (n - 1);
            while (slot[j])
                j = (j + 1) & (n - 1);
            slot[j] = ix->slot[i];
        }
    free(ix->slot);
    ix->slot = slot;
    ix->mask = n - 1;
    return 0;
}

static int add_text(builder *b, const char *s, size_t n)
{
    char *t = grown(b->ix->text, &b->captext, b->ntext + n, 1);
    if (!t)
        return -1;
    b->ix->text = t;
    memcpy(b->ix->text + b->ntext, s, n);
    b->ntext += n;
    return 0;
}

static int build_tok(void *ctx, const kb_tok_t *tok)
{
    builder *b = ctx;
    kb_memidx_t *ix = b->ix;
    unsigned hash = kb_text_hash(tok->text, tok->len);
    uint64_t *slot = find_slot(ix, tok->text, (uint32_t)tok->len, hash);
    if (*slot == 0) {
        if (2 * (ix->nterms + 1) > ix->mask + 1) {
            if (rehash(ix) != 0)
                return SQLITE_NOMEM;
            slot = find_slot(ix, tok->text, (uint32_t)tok->len, hash);
        }
        if (ix->nterms == b->capterm) { /* the per-term arrays grow together */
            size_t n = b->capterm ? b->capterm * 2 : 1024;
            mterm *t = realloc(ix->term, n * sizeof(*t));
            if (t)
                ix->term = t;
            uint32_t *l = t ? realloc(b->last, n * sizeof(*l)) : NULL;
            if (l)
                b->last = l;
            uint16_t(*f)[KB_DOC_COLS] = l ? realloc(b->tfc, n * sizeof(*f)) : NULL;
            if (!f)
                return SQLITE_NOMEM;
            b->tfc = f;
            b->capterm = n;
        }
        ix->term[ix->nterms] = (mterm){(uint32_t)b->ntext, (uint32_t)tok->len, 0, 0, 0};
        b->last[ix->nterms] = 0;
        if (add_text(b, tok->text, (size_t)tok->len) != 0)
            return SQLITE_NOMEM;
        *slot = ((uint64_t)hash << 32) | ++ix->nterms;
    }
    uint32_t t = (uint32_t)*slot - 1;
    if (b->last[t] != b->doc + 1) {
        uint32_t *to = grown(b->touched, &b->captouched, b->ntouched + 1, sizeof(*to));
        if (!to)
            return SQLITE_NOMEM;
        b->touched = to;
        b->touched[b->ntouched++] = t;
        b->last[t] = b->doc + 1;
        memset(b->tfc[t], 0, sizeof(b->tfc[t]));
    }
    if (b->tfc[t][b->col] < 65535)
        b->tfc[t][b->col]++;
    ix->pos[(size_t)b->doc * KB_DOC_COLS + (size_t)b->col] += !tok->colocated;
    return 0;
}

/* Gives each common term a map of the documents that hold it, with the rank of each word of the
 * map (the term's postings before it): kb_memidx_terms finds a candidate's posting there in a
 * few instructions instead of walking or bisecting the postings.  A term is common when at
 * least one document in DENSE holds it (and MAP_MIN at least), so a map takes at most a third
 * of the bytes of the postings it indexes.  Returns 0 or -1 when out of memory. */
static int maps_build(kb_memidx_t *ix, size_t *bytes)
{
    uint32_t nmaps = 0;
    ix->words = ((uint32_t)ix->ndocs + 63) / 64;
    for (uint32_t t = 0; t < ix->nterms; t++) {
        mterm *m = &ix->term[t];
        m->map = 0;
        if (m->npost >= MAP_MIN && (uint64_t)m->npost * DENSE >= (uint64_t)ix->ndocs)
            m->map = ++nmaps;
    }
    size_t n = (size_t)nmaps * ix->words;
    ix->bits = calloc(n + 1, sizeof(*ix->bits));
    ix->rank = malloc((n + 1) * sizeof(*ix->rank));
    if (!ix->bits || !ix->rank)
        return -1;
    for (uint32_t t = 0; t < ix->nterms; t++) {
        const mterm *m = &ix->term[t];
        if (!m->map)
            continue;
        uint64_t *bits = ix->bits + (size_t)(m->map - 1) * ix->words;
        uint32_t *rank = ix->rank + (size_t)(m->map - 1) * ix->words;
        for (uint32_t p = m->post; p < m->post + m->npost; p++)
            bits[ix->pdoc[p] >> 6] |= (uint64_t)1 << (ix->pdoc[p] & 63);
        for (uint32_t w = 0, below = 0; w < ix->words; w++) {
            rank[w] = below;
            below += (uint32_t)__builtin_popcountll(bits[w]);
        }
    }
    *bytes = n * (sizeof(*ix->bits) + sizeof(*ix->rank));
    return 0;
}

/* Reads every row of sql (id, unused, the FTS columns in order) and builds the index; NULL when
 * out of memory or on a database error. */
static kb_memidx_t *build(sqlite3 *db, const char *sql, int ncols, int category_col,
                          const kb_synonyms_t *syn)
{
    sqlite3_stmt *st = NULL;
    builder b = {0};
    kb_memidx_t *ix = calloc(1, sizeof(*ix));
    uint32_t *count = NULL;
    int ok = 0, s;
    kb_analyzer_t a = {.cjk = KB_CJK_UNIBI, .query = 0, .syn = syn};

    if (!ix || !(ix->slot = calloc(1024, sizeof(*ix->slot))))
        goto out;
    ix->mask = 1023;
    ix->category_col = category_col;
    b.ix = ix;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        b.doc = (uint32_t)ix->ndocs;
        b.ntouched = 0;
        void *p;
        if (!(p = grown(ix->pos, &b.cappos, b.doc + 1, KB_DOC_COLS * sizeof(*ix->pos))))
            goto out;
        ix->pos = p;
        if (!(p = grown(ix->id, &b.capid, b.doc + 1, sizeof(*ix->id))))
            goto out;
        ix->id = p;
        if (b.doc == 0)
            ix->nrow = sqlite3_column_count(st) - 2;
        if (!(p = grown(ix->rowoff, &b.caprow, (size_t)(b.doc + 1) * (size_t)ix->nrow,
                        sizeof(*ix->rowoff))))
            goto out;
        ix->rowoff = p;
        for (int i = 0; i < ix->nrow; i++) { /* the row as the hits show it */
            const char *text = (const char *)sqlite3_column_text(st, 2 + i);
            size_t len = (size_t)sqlite3_column_bytes(st, 2 + i);
            ix->rowoff[(size_t)b.doc * (size_t)ix->nrow + (size_t)i] =
                text ? (uint32_t)b.ntext + 1 : 0;
            if (text && (add_text(&b, text, len) != 0 || add_text(&b, "", 1) != 0))
                goto out;
        }
        memset(&ix->pos[(size_t)b.doc * KB_DOC_COLS], 0, KB_DOC_COLS * sizeof(*ix->pos));
        ix->id[b.doc] = sqlite3_column_int64(st, 0);
        for (int c = 0; c < ncols && c < 8; c++) {
            const char *text = (const char *)sqlite3_column_text(st, 2 + c);
            int len = sqlite3_column_bytes(st, 2 + c);
            if (c == category_col) /* kept with the row above, for the filter */
                continue;
            b.col = c;
            if (text && kb_analyze(&a, text, len, build_tok, &b) != 0)
                goto out;
        }
        if (!(p = grown(b.tr, &b.captr, b.ntr + b.ntouched, sizeof(*b.tr))))
            goto out;
        b.tr = p;
        if (!(p = grown(b.pool, &b.cappool, b.npool + b.ntouched * KB_DOC_COLS, sizeof(*b.pool))))
            goto out;
        b.pool = p;
        for (size_t i = 0; i < b.ntouched; i++) {
            uint32_t t = b.touched[i];
            triple *tr = &b.tr[b.ntr++];
            *tr = (triple){t, b.doc, (uint32_t)b.npool, 0};
            for (int c = 0; c < KB_DOC_COLS; c++)
                if (b.tfc[t][c] > 0) { /* the columns that hold the term */
                    tr->cols |= (uint8_t)(1u << c);
                    b.pool[b.npool++] = b.tfc[t][c];
                }
        }
        ix->ndocs++;
    }
    if (s != SQLITE_DONE)
        goto out;
    /* the postings grouped by term, each group in document order (a counting sort) */
    count = calloc((size_t)ix->nterms + 1, sizeof(*count));
    ix->pdoc = malloc((b.ntr + 1) * sizeof(*ix->pdoc));
    ix->pcol = malloc(b.ntr + 1);
    ix->ptf = malloc((b.ntr + 1) * sizeof(*ix->ptf));
    ix->tf = malloc((b.npool + 1) * sizeof(*ix->tf));
    if (!count || !ix->pdoc || !ix->pcol || !ix->ptf || !ix->tf)
        goto out;
    for (size_t i = 0; i < b.ntr; i++)
        ix->term[b.tr[i].term].npost++;
    for (uint32_t t = 0, at = 0; t < ix->nterms; t++) {
        ix->term[t].post = at;
        at += ix->term[t].npost;
    }
    for (size_t i = 0; i < b.ntr; i++) {
        uint32_t t = b.tr[i].term, p = ix->term[t].post + count[t]++;
        ix->pdoc[p] = b.tr[i].doc;
        ix->pcol[p] = b.tr[i].cols;
        b.tr[i].term = p; /* from here on: the triple's posting */
    }
    /* the frequencies in posting order too */
    size_t ntf = 0;
    for (size_t p = 0; p < b.ntr; p++) {
        ix->ptf[p] = (uint32_t)ntf;
        ntf += (size_t)__builtin_popcount(ix->pcol[p]);
    }
    for (size_t i = 0; i < b.ntr; i++)
        memcpy(ix->tf + ix->ptf[b.tr[i].term], b.pool + b.tr[i].tf,
               (size_t)__builtin_popcount(b.tr[i].cols) * sizeof(*ix->tf));
    size_t mapbytes;
    if (maps_build(ix, &mapbytes) != 0)
        goto out;
    ix->bytes = mapbytes + sizeof(*ix) +
                (size_t)ix->ndocs * (sizeof(*ix->id) + KB_DOC_COLS * sizeof(*ix->pos) +
                                     (size_t)ix->nrow * sizeof(*ix->rowoff)) +
                ((size_t)ix->mask + 1) * sizeof(*ix->slot) + ix->nterms * sizeof(*ix->term) +
                b.ntr * (sizeof(*ix->pdoc) + 1 + sizeof(*ix->ptf)) + ntf * sizeof(*ix->tf) +
                b.ntext;
    ok = 1;
out:
    sqlite3_finalize(st);
    free(count);
    free(b.last);
    free(b.tfc);
    free(b.pool);
    free(b.touched);
    free(b.tr);
    if (!ok) {
        memidx_free(ix);
        return NULL;
    }
    return ix;
}

kb_memidx_t *kb_memidx_get(sqlite3 *db, kb_kind_t kind, const char *stamp, const char *db_syn,
                           const kb_synonyms_t *syn, const char *sql, int ncols, int category_col)
{
    char want[17];
    int k = kind == KB_CASE;
    if (!stamp || !*stamp || strlen(stamp) >= sizeof(((kb_memidx_t *)0)->stamp) || !db_syn)
        return NULL;
    kb_synonyms_hash(syn, want);
    if (strcmp(want, db_syn) != 0) /* the FTS index has another list: only FTS5 is exact */
        return NULL;

    pthread_mutex_lock(&cache.lock);
    kb_memidx_t *ix = cache.cur[k];
    if (ix && strcmp(ix->stamp, stamp) == 0 && strcmp(ix->syn, want) == 0) {
        ix->refs++;
        pthread_mutex_unlock(&cache.lock);
        return ix;
    }
    pthread_mutex_unlock(&cache.lock);

    ix = build(db, sql, ncols, category_col, syn);
    if (!ix)
        return NULL;
    strcpy(ix->stamp, stamp);
    strcpy(ix->syn, want);
    ix->refs = 2; /* the cache's and the caller's */
    pthread_mutex_lock(&cache.lock);
    kb_memidx_t *old = cache.cur[k];
    cache.cur[k] = ix;
    cache.builds++;
    pthread_mutex_unlock(&cache.lock);
    kb_memidx_unref(old);
    return ix;
}

/* ---- candidates ---- */

/* kb_memidx_terms walks a term's postings when they are at most this many per candidate, and
 * otherwise looks each candidate up in them by bisection. */
#define LONG_POSTINGS 8

void kb_memidx_lookup(const kb_memidx_t *ix, kb_memq_t *q, int nq)
{
    for (int i = 0; i < nq; i++) {
        const uint64_t *slot = find_slot(ix, q[i].text, (uint32_t)q[i].len, q[i].hash);
        q[i].term = *slot ? (int)((uint32_t)*slot - 1) : -1;
    }
}

/* The term q names (kb_memidx_lookup), or NULL when no document has it. */
static const mterm *term_of(const kb_memidx_t *ix, const kb_memq_t *q)
{
    return q->term >= 0 ? &ix->term[q->term] : NULL;
}

typedef struct scored {
    double score;
    long long id;
    uint32_t doc;
} scored;

static int by_rank(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Restores the heap h[0..n) (the worst kept candidate at its root) below i. */
static void sift_down(scored *h, int n, int i)
{
    for (;;) {
        int w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && by_rank(&h[l], &h[w]) > 0)
            w = l;
        if (r < n && by_rank(&h[r], &h[w]) > 0)
            w = r;
        if (w == i)
            return;
        scored t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

int kb_memidx_candidates(const kb_memidx_t *ix, const kb_memq_t *q, int nq, const double *w, int nw,
                         const char *category, int limit, uint32_t *docs, long long *ids)
{
    double *score = calloc((size_t)ix->ndocs + 1, sizeof(*score));
    uint8_t *seen = calloc((size_t)ix->ndocs + 1, 1);
    uint32_t *matched = malloc(((size_t)ix->ndocs + 1) * sizeof(*matched));
    scored *v = NULL;
    int n = 0, rc = KB_ERR_NOMEM;

    double cwt[256]; /* a column mask's weight, computed at its first posting */
    unsigned char have[256] = {0};

    if (!score || !seen || !matched)
        goto out;
    for (int i = 0; i < nq; i++) {
        const mterm *t = term_of(ix, &q[i]);
        if (!t)
            continue;
        for (uint32_t p = t->post; p < t->post + t->npost; p++) {
            uint32_t d = ix->pdoc[p];
            if (!seen[d]) {
                seen[d] = 1;
                matched[n++] = d;
            }
            if (q[i].idf <= 0)
                continue;
            uint8_t m = ix->pcol[p];
            if (!have[m]) {
                double cw = 0;
                for (int c = 0; c < nw && c < 8; c++)
                    if (m & (1u << c))
                        cw += w[c];
                cwt[m] = cw;
                have[m] = 1;
            }
            double cw = cwt[m];
            if (cw > 0)
                score[d] += kb_rank_term(q[i].idf, cw);
        }
    }
    /* the best `limit` in a heap whose root is the worst of them */
    v = malloc(((size_t)(limit > 0 ? limit : 1)) * sizeof(*v));
    if (!v)
        goto out;
    int nv = 0;
    for (int i = 0; i < n && limit > 0; i++) {
        uint32_t d = matched[i];
        if (category) {
            const char *slug = kb_memidx_col(ix, d, ix->category_col);
            if (!slug || strcmp(slug, category) != 0)
                continue;
        }
        scored c = {score[d], ix->id[d], d};
        if (nv < limit) {
            int k = nv++;
            v[k] = c;
            while (k > 0 && by_rank(&v[(k - 1) / 2], &v[k]) < 0) {
                scored t = v[k];
                v[k] = v[(k - 1) / 2];
                v[(k - 1) / 2] = t;
                k = (k - 1) / 2;
            }
        } else if (by_rank(&c, &v[0]) < 0) {
            v[0] = c;
            sift_down(v, nv, 0);
        }
    }
    rc = nv; /* in heap order: the re-rank orders them (by_score, a total order) */
    for (int i = 0; i < rc; i++) {
        ids[i] = v[i].id;
        docs[i] = v[i].doc;
    }
out:
    free(score);
    free(seen);
    free(matched);
    free(v);
    return rc;
}

/* Appends posting p of query term i to candidate k's list (kb_memidx_terms). */
static void take(const kb_memidx_t *ix, uint32_t p, int i, int k, int nq, kb_memtf_t *tf, int *ntf)
{
    tf[(size_t)k * (size_t)nq + (size_t)ntf[k]++] =
        (kb_memtf_t){(unsigned short)i, ix->pcol[p], ix->tf + ix->ptf[p]};
}

/* byd[0..n): the candidates' places in docs, in document order (an insertion sort: n is the
 * number of candidates, some forty). */
static void by_document(const uint32_t *docs, int n, uint32_t *byd)
{
    for (int k = 0; k < n; k++) {
        int j = k;
        for (; j > 0 && docs[byd[j - 1]] > docs[k]; j--)
            byd[j] = byd[j - 1];
        byd[j] = (uint32_t)k;
    }
}

int kb_memidx_terms(const kb_memidx_t *ix, const uint32_t *docs, int n, const kb_memq_t *q, int nq,
                    int (*pos)[KB_DOC_COLS], kb_memtf_t *tf, int *ntf)
{
    int *at = malloc(((size_t)ix->ndocs + 1) * sizeof(*at)); /* document -> its place, or -1 */
    uint32_t *byd = malloc(((size_t)n + 1) * sizeof(*byd));  /* the candidates in document order */
    if (!at || !byd) {
        free(at);
        free(byd);
        return KB_ERR_NOMEM;
    }
    memset(at, 0xff, ((size_t)ix->ndocs + 1) * sizeof(*at));
    for (int k = 0; k < n; k++) {
        at[docs[k]] = k;
        ntf[k] = 0;
        for (int c = 0; c < KB_DOC_COLS; c++)
            pos[k][c] = (int)ix->pos[(size_t)docs[k] * KB_DOC_COLS + (size_t)c];
    }
    int sorted = 0;                /* byd, for the terms bisected below (few: most have a map) */
    for (int i = 0; i < nq; i++) { /* in query order, so each document's list is too */
        const mterm *t = term_of(ix, &q[i]);
        if (!t)
            continue;
        uint32_t p = t->post, end = t->post + t->npost;
        if (t->map && t->npost > (uint32_t)n) { /* look each candidate up in its map */
            const uint64_t *bits = ix->bits + (size_t)(t->map - 1) * ix->words;
            const uint32_t *rank = ix->rank + (size_t)(t->map - 1) * ix->words;
            for (int k = 0; k < n; k++) {
                uint32_t d = docs[k];
                uint64_t w = bits[d >> 6];
                if (!(w >> (d & 63) & 1))
                    continue;
                p = t->post + rank[d >> 6] +
                    (uint32_t)__builtin_popcountll(w & (((uint64_t)1 << (d & 63)) - 1));
                take(ix, p, i, k, nq, tf, ntf);
            }
            continue;
        }
        if (t->npost <= (uint32_t)n * LONG_POSTINGS) { /* walk them */
            for (; p < end; p++) {
                int k = at[ix->pdoc[p]];
                if (k >= 0)
                    take(ix, p, i, k, nq, tf, ntf);
            }
            continue;
        }
        if (!sorted)
            by_document(docs, n, byd);
        sorted = 1;
        for (int j = 0; j < n && p < end; j++) { /* look each candidate up, in order */
            uint32_t k = byd[j], d = docs[k], lo = p, hi = end;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (ix->pdoc[mid] < d)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            p = lo;
            if (p < end && ix->pdoc[p] == d)
                take(ix, p, i, (int)k, nq, tf, ntf);
        }
    }
    free(at);
    free(byd);
    return 0;
}

const char *kb_memidx_col(const kb_memidx_t *ix, uint32_t doc, int i)
{
    if (i < 0 || i >= ix->nrow || doc >= (uint32_t)ix->ndocs)
        return NULL;
    uint32_t off = ix->rowoff[(size_t)doc * (size_t)ix->nrow + (size_t)i];
    return off ? ix->text + off - 1 : NULL;
}

long long kb_memidx_id(const kb_memidx_t *ix, uint32_t doc)
{
    return ix->id[doc];
}

void kb_memidx_stats(unsigned long *builds, size_t *bytes)
{
    pthread_mutex_lock(&cache.lock);
    *builds = cache.builds;
    *bytes = 0;
    for (int k = 0; k < 2; k++)
        *bytes += cache.cur[k] ? cache.cur[k]->bytes : 0;
    pthread_mutex_unlock(&cache.lock);
}
