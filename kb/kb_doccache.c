/*
 * kb_doccache.c - the documents the re-ranker has analyzed, kept as term indexes for the next
 * search.
 *
 * Why.  A search re-ranks each of its candidates (kb_search.c, step 5): it needs, per column,
 * the column's length in positions and, for every query term, how often and where the term
 * occurs.  Analyzing a bench template (235 characters: UTF-8 decoding, folding, characters,
 * bigrams, synonym groups) gives 368 tokens and takes 14 us, and forty candidates a search,
 * coming back search after search, made that half of a search.  Replaying the kept token
 * stream (the first version of this file) still cost a callback and a term lookup per token:
 * 40 candidates x ~700 tokens.  So a kept document is a term index instead: each distinct token
 * of its text columns once, with its occurrences (column, byte range and ordinal in the
 * document's stream), in an open-addressed table keyed by the token's hash.  The re-ranker then
 * looks up each query term (a few dozen) once per document instead of walking every token.
 *
 * Validity.  An entry is keyed by (table kind, document id) and checked against what
 * determines the tokens: the columns' texts, the CJK mode, the query flag and the synonym
 * list's fingerprint (kb_synonyms_hash).  An index keeps a copy of its texts and compares them
 * whole; a document seen once keeps only their lengths and one 64-bit FNV-1a hash (a collision
 * would only build an index one sighting early).  So an edited document, a reloaded synonym
 * list or another database file with other text under the same id simply misses, and nothing
 * has to tell the cache about changes.
 *
 * Bounds.  DOC_CACHE_BYTES of entries in all; an entry that does not fit empties the cache
 * first (as the df cache does), so memory never grows past the bound and the documents searched
 * since refill it.  Building an index costs a miss more than the analysis alone, a loss where
 * candidates seldom come back (a million past cases), so the first analysis of a column only
 * notes that it was seen (an entry without an index) and the second builds it: a document that
 * is a candidate once costs a few dozen bytes and nothing more.  A document whose columns hold
 * more than DOC_MAX_BYTES is analyzed every time.
 *
 * Threads: one mutex, held while an entry is looked up and its index read by the callback, and
 * while one is added; the analysis itself runs unlocked.  The callback must not search.
 */
#include "kb_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DOC_CACHE_BYTES (32u << 20)
#define DOC_MAX_BYTES (64u << 10) /* most text of a document cached, all columns */

typedef struct iterm {
    uint32_t hash; /* kb_text_hash of the text */
    uint32_t off;  /* text, into the index's text */
    uint32_t occ;  /* first occurrence, into the index's occurrences */
    uint32_t nocc;
    uint32_t len;
} iterm;

/* The index of one document: every part in one block after this header. */
struct kb_doc_index {
    int positions[KB_DOC_COLS]; /* per column, its tokens that are not colocated */
    uint32_t mask;              /* slots - 1 */
    uint64_t *slot;             /* (hash << 32) | (term index + 1), 0 = empty */
    iterm *term;                /* distinct tokens */
    kb_doc_occ_t *o;            /* occurrences, grouped by term, each group in stream order */
    char *text;                 /* the terms' texts */
    char *src;                  /* the columns' texts it was built from, one after the other */
};

typedef struct entry {
    uint64_t key;  /* kind, id (make_key) */
    uint64_t hash; /* of the texts, when it has no index */
    int ncols;
    int len[KB_DOC_COLS]; /* of each column's text, -1 for a column left out */
    uint8_t cjk, query;
    char syn[17];
    size_t bytes;       /* this entry's share of DOC_CACHE_BYTES */
    kb_doc_index_t *ix; /* NULL: seen once, no index yet (see "Bounds") */
} entry;

static struct {
    pthread_mutex_t lock;
    entry **slot; /* open addressing, NULL = empty; cap a power of two */
    size_t cap, used, bytes;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t make_key(kb_kind_t kind, long long id)
{
    uint64_t k = ((uint64_t)id << 8) ^ ((uint64_t)kind << 4);
    k ^= k >> 33; /* spread ids over the table (murmur3's finalizer) */
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

/* Locked, cap > 0.  The slot for key: its entry, or the empty slot where it would go.  Keys
 * are unique per (kind, id): make_key is a bijection for ids below 2^56. */
static entry **find(uint64_t key)
{
    size_t i = key & (cache.cap - 1);
    while (cache.slot[i] && cache.slot[i]->key != key)
        i = (i + 1) & (cache.cap - 1);
    return &cache.slot[i];
}

/* Locked: every entry goes. */
static void clear(void)
{
    for (size_t i = 0; i < cache.cap; i++) {
        if (cache.slot[i]) {
            free(cache.slot[i]->ix);
            free(cache.slot[i]);
        }
    }
    free(cache.slot);
    cache.slot = NULL;
    cache.cap = cache.used = cache.bytes = 0;
}

/* Locked: room for one more entry of `bytes`; 0, or -1 (no memory: the caller goes on
 * without caching). */
static int make_room(size_t bytes)
{
    if (cache.bytes + bytes > DOC_CACHE_BYTES)
        clear();
    if (cache.cap && (cache.used + 1) * 4 <= cache.cap * 3)
        return 0;
    size_t cap = cache.cap ? cache.cap * 2 : 1024;
    entry **slot = calloc(cap, sizeof(*slot));
    if (!slot)
        return -1;
    entry **old = cache.slot;
    size_t oldcap = cache.cap;
    cache.slot = slot;
    cache.cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i])
            *find(old[i]->key) = old[i];
    free(old);
    return 0;
}

/* ---- the index of one document ---- */

int kb_doc_index_positions(const kb_doc_index_t *ix, int col)
{
    return col >= 0 && col < KB_DOC_COLS ? ix->positions[col] : 0;
}

int kb_doc_index_find(const kb_doc_index_t *ix, const char *s, int n, unsigned hash,
                      const kb_doc_occ_t **occ)
{
    /* most query terms are not in a document: the hash in the slot settles those without
     * reading the term (another cache miss) */
    for (uint32_t i = hash & ix->mask; ix->slot[i]; i = (i + 1) & ix->mask) {
        if ((uint32_t)(ix->slot[i] >> 32) != hash)
            continue;
        const iterm *t = &ix->term[(uint32_t)ix->slot[i] - 1];
        if (t->len == (uint32_t)n && memcmp(ix->text + t->off, s, (size_t)n) == 0) {
            *occ = ix->o + t->occ;
            return (int)t->nocc;
        }
    }
    *occ = NULL;
    return 0;
}

/* The tokens of a miss, collected while they are passed on. */
typedef struct rtok {
    uint32_t start, end, off, hash, len, colocated, col;
    uint32_t term; /* distinct token index (index_build) */
} rtok;

typedef struct recorder {
    kb_doc_tok_fn fn;
    void *ctx;
    int col; /* the column being analyzed */
    rtok *tok;
    char *text;
    size_t ntok, captok, ntext, captext;
    int failed; /* out of memory: stop recording, keep passing on */
} recorder;

/* Makes room for need items of size bytes in *p (capacity *cap).  Returns 0 or -1. */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need)
        c *= 2;
    void *v = realloc(*p, c * size);
    if (!v)
        return -1;
    *p = v;
    *cap = c;
    return 0;
}

static int record(void *arg, const kb_tok_t *t)
{
    recorder *r = arg;
    if (!r->failed) {
        void *tok = r->tok, *text = r->text;
        int failed = grow(&tok, &r->captok, r->ntok + 1, sizeof(rtok)) != 0;
        r->tok = tok;
        failed = failed || grow(&text, &r->captext, r->ntext + (size_t)t->len, 1) != 0;
        r->text = text;
        if (failed) {
            r->failed = 1;
        } else {
            r->tok[r->ntok++] = (rtok){.start = (uint32_t)t->start,
                                       .end = (uint32_t)t->end,
                                       .off = (uint32_t)r->ntext,
                                       .hash = kb_text_hash(t->text, t->len),
                                       .len = (uint32_t)t->len,
                                       .colocated = t->colocated != 0,
                                       .col = (uint32_t)r->col};
            memcpy(r->text + r->ntext, t->text, (size_t)t->len);
            r->ntext += (size_t)t->len;
        }
    }
    return r->fn(r->ctx, r->col, t);
}

/* Passes the tokens of one column on, with the column (a recorder that does not record). */
static int pass(void *arg, const kb_tok_t *t)
{
    recorder *r = arg;
    return r->fn(r->ctx, r->col, t);
}

/* A power of two of at least 8 and twice n. */
static uint32_t slots_for(size_t n)
{
    uint32_t s = 8;
    while (s < 2 * n)
        s *= 2;
    return s;
}

/* Builds the index of a recorded stream of the columns' texts in one block; NULL when out of
 * memory.  *bytes gets its size. */
static kb_doc_index_t *index_build(recorder *r, const char *const *cols, const int *lens, int ncols,
                                   size_t *bytes)
{
    /* distinct tokens: a scratch table over every token, then the final one over the terms */
    uint32_t ns = slots_for(r->ntok), nterm = 0, ntext = 0;
    uint32_t *scratch = calloc(ns, sizeof(uint32_t)),
             *first = malloc(sizeof(uint32_t) * (r->ntok + 1));
    kb_doc_index_t *ix = NULL;
    if (!scratch || !first)
        goto out;
    for (size_t i = 0; i < r->ntok; i++) {
        rtok *k = &r->tok[i];
        uint32_t s = k->hash & (ns - 1);
        for (; scratch[s]; s = (s + 1) & (ns - 1)) {
            const rtok *f = &r->tok[first[scratch[s] - 1]];
            if (f->hash == k->hash && f->len == k->len &&
                memcmp(r->text + f->off, r->text + k->off, k->len) == 0)
                break;
        }
        if (!scratch[s]) {
            first[nterm] = (uint32_t)i;
            scratch[s] = ++nterm;
            ntext += k->len;
        }
        k->term = scratch[s] - 1;
    }
    uint32_t nslot = slots_for(nterm);
    size_t srclen = 0;
    for (int c = 0; c < ncols; c++)
        srclen += lens[c] > 0 ? (size_t)lens[c] : 0;
    *bytes = sizeof(*ix) + nslot * sizeof(uint64_t) + nterm * sizeof(iterm) +
             r->ntok * sizeof(kb_doc_occ_t) + ntext + srclen;
    ix = malloc(*bytes);
    if (!ix)
        goto out;
    ix->slot = (uint64_t *)(ix + 1);
    ix->term = (iterm *)(ix->slot + nslot);
    ix->o = (kb_doc_occ_t *)(ix->term + nterm);
    ix->text = (char *)(ix->o + r->ntok);
    ix->src = ix->text + ntext;
    for (int c = 0, at = 0; c < ncols; c++)
        if (lens[c] > 0) {
            memcpy(ix->src + at, cols[c], (size_t)lens[c]);
            at += lens[c];
        }
    ix->mask = nslot - 1;
    memset(ix->positions, 0, sizeof(ix->positions));
    memset(ix->slot, 0, nslot * sizeof(uint64_t));
    uint32_t off = 0;
    for (uint32_t t = 0; t < nterm; t++) {
        const rtok *f = &r->tok[first[t]];
        ix->term[t] = (iterm){f->hash, off, 0, 0, f->len};
        memcpy(ix->text + off, r->text + f->off, f->len);
        off += f->len;
        uint32_t s = f->hash & ix->mask;
        while (ix->slot[s])
            s = (s + 1) & ix->mask;
        ix->slot[s] = ((uint64_t)f->hash << 32) | (t + 1);
    }
    /* occurrences grouped by term: count, offsets, then fill in stream order */
    for (size_t i = 0; i < r->ntok; i++) {
        ix->term[r->tok[i].term].nocc++;
        ix->positions[r->tok[i].col] += !r->tok[i].colocated;
    }
    for (uint32_t t = 0, at = 0; t < nterm; t++) {
        ix->term[t].occ = at;
        at += ix->term[t].nocc;
        ix->term[t].nocc = 0;
    }
    for (size_t i = 0; i < r->ntok; i++) {
        iterm *t = &ix->term[r->tok[i].term];
        ix->o[t->occ + t->nocc++] =
            (kb_doc_occ_t){r->tok[i].start, r->tok[i].end, (uint32_t)i, r->tok[i].col};
    }
out:
    free(scratch);
    free(first);
    return ix;
}

/* Locked: whether entry e was made from these texts with this analyzer: 1 (the texts
 * compared when it has an index), 0, or -1 when only the hash can tell (a document seen once). */
static int same_doc(const entry *e, const char *const *cols, const int *lens, int ncols,
                    const kb_analyzer_t *a, const char *syn)
{
    if (e->ncols != ncols || e->cjk != (uint8_t)a->cjk || e->query != (uint8_t)(a->query != 0) ||
        strcmp(e->syn, syn) != 0)
        return 0;
    for (int c = 0; c < ncols; c++)
        if (e->len[c] != lens[c])
            return 0;
    if (!e->ix)
        return -1;
    /* an index keeps its texts (a memcmp is a few times cheaper than hashing them) */
    for (int c = 0, at = 0; c < ncols; c++)
        if (lens[c] > 0) {
            if (memcmp(e->ix->src + at, cols[c], (size_t)lens[c]) != 0)
                return 0;
            at += lens[c];
        }
    return 1;
}

/* Analyzes each present column in order through the recorder's callback tok (record or
 * pass).  Returns 0 or the first non-zero result. */
static int analyze_cols(recorder *r, const kb_analyzer_t *a, const char *const *cols,
                        const int *lens, int ncols, kb_tok_fn tok)
{
    int rc = 0;
    for (int c = 0; c < ncols && rc == 0; c++)
        if (cols[c]) {
            r->col = c;
            rc = kb_analyze(a, cols[c], lens[c], tok, r);
        }
    return rc;
}

static uint64_t hash_doc(const char *const *cols, const int *lens, int ncols)
{
    uint64_t h = KB_FNV64_START;
    for (int c = 0; c < ncols; c++)
        if (lens[c] > 0)
            h = kb_fnv64(h, cols[c], (size_t)lens[c]);
    return h;
}

int kb_doc_analyze(kb_kind_t kind, long long id, const kb_analyzer_t *a, const char *const *cols,
                   int ncols, kb_doc_tok_fn fn, kb_doc_index_fn ix_fn, void *ctx)
{
    char syn[17];
    int lens[KB_DOC_COLS];
    size_t total = 0;
    recorder r = {.fn = fn, .ctx = ctx};
    int rc = 0;

    if (ncols < 0 || ncols > KB_DOC_COLS)
        return SQLITE_MISUSE;
    for (int c = 0; c < ncols; c++) {
        lens[c] = cols[c] ? (int)strlen(cols[c]) : -1;
        total += lens[c] > 0 ? (size_t)lens[c] : 0;
    }
    if (total > DOC_MAX_BYTES)
        return analyze_cols(&r, a, cols, lens, ncols, pass);
    kb_synonyms_hash(a->syn, syn);
    uint64_t key = make_key(kind, id), hash = 0;

    int seen = 0;
    pthread_mutex_lock(&cache.lock);
    entry *e = cache.cap ? *find(key) : NULL;
    int same = e ? same_doc(e, cols, lens, ncols, a, syn) : 0;
    if (same == 1) {
        rc = ix_fn(ctx, e->ix);
        pthread_mutex_unlock(&cache.lock);
        return rc;
    }
    if (same == -1) {
        hash = hash_doc(cols, lens, ncols);
        seen = e->hash == hash;
    }
    pthread_mutex_unlock(&cache.lock);

    /* the first time, only that it was seen; the second, the index (see "Bounds") */
    if (seen) {
        /* sized for the text (a CJK character is 3 bytes and about 2.2 tokens of 2.6 bytes
         * in all), so that the buffers seldom grow */
        r.captok = total + 16;
        r.captext = total * 2 + 64;
        r.tok = malloc(r.captok * sizeof(rtok));
        r.text = malloc(r.captext);
        r.failed = !r.tok || !r.text;
    }
    rc = analyze_cols(&r, a, cols, lens, ncols, seen ? record : pass);
    kb_doc_index_t *ix = NULL;
    size_t ixbytes = 0;
    if (rc == 0 && seen && !r.failed) /* a stopped analysis is not the whole document */
        ix = index_build(&r, cols, lens, ncols, &ixbytes);
    free(r.tok);
    free(r.text);
    if (rc != 0 || (seen && !ix))
        return rc;
    size_t bytes = sizeof(entry) + ixbytes;
    if (!ix && !hash)
        hash = hash_doc(cols, lens, ncols);
    e = malloc(sizeof(*e));
    if (e) {
        *e = (entry){.key = key,
                     .hash = hash,
                     .ncols = ncols,
                     .cjk = (uint8_t)a->cjk,
                     .query = (uint8_t)(a->query != 0),
                     .bytes = bytes,
                     .ix = ix};
        memcpy(e->len, lens, sizeof(int) * (size_t)ncols);
        memcpy(e->syn, syn, sizeof(syn));
        pthread_mutex_lock(&cache.lock);
        if (bytes <= DOC_CACHE_BYTES && make_room(bytes) == 0) {
            entry **slot = find(key);
            if (*slot) { /* what was seen of this document before */
                cache.bytes -= (*slot)->bytes;
                free((*slot)->ix);
                free(*slot);
            } else {
                cache.used++;
            }
            *slot = e;
            cache.bytes += bytes;
            e = NULL;
            ix = NULL;
        }
        pthread_mutex_unlock(&cache.lock);
    }
    free(ix);
    free(e);
    return 0;
}

void kb_doc_cache_stats(size_t *entries, size_t *bytes)
{
    pthread_mutex_lock(&cache.lock);
    *entries = cache.used;
    *bytes = cache.bytes;
    pthread_mutex_unlock(&cache.lock);
}

void kb_doc_cache_clear(void)
{
    pthread_mutex_lock(&cache.lock);
    clear();
    pthread_mutex_unlock(&cache.lock);
}
