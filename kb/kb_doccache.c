/*
 * kb_doccache.c - the tokens of documents the re-ranker has analyzed, kept for the next search.
 *
 * Why.  A search re-ranks each of its candidates (kb_search.c, step 5) by analyzing the
 * document's columns again: UTF-8 decoding, folding, characters, bigrams, synonym groups.  A
 * bench template (235 characters) is 368 tokens and 14 us; forty candidates a search made the
 * analysis half of a search's time, and the same templates come back search after search.
 * kb_doc_analyze() gives the same token stream as kb_analyze() and remembers it (25 us the
 * first time, for the copy); the next call for that column of that document replays it
 * (2.8 us a template).
 *
 * Validity.  An entry is keyed by (table kind, document id, column) and checked against what
 * determines the tokens: the text itself (its length and a 64-bit FNV-1a hash), the CJK mode,
 * the query flag and the synonym list's fingerprint (kb_synonyms_hash).  So an edited
 * document, a reloaded synonym list or another database file with other text under the same
 * id simply misses, and nothing has to tell the cache about changes.  A stale hit needs two
 * different texts of one length with one 64-bit hash under the same id: ignored, as the df
 * cache ignores term-hash collisions.
 *
 * Bounds.  DOC_CACHE_BYTES of entries (tokens and their text) in all; an entry that does not
 * fit empties the cache first (as the df cache does), so memory never grows past the bound and
 * the documents searched since refill it.  Keeping the tokens costs a miss about 40 % more
 * than the analysis alone (9 us a template), a loss where candidates seldom come back (a
 * million past cases), so the first analysis of a column only notes that it was seen (an
 * entry without tokens) and the second keeps them: a document that is a candidate once costs
 * a few dozen bytes and nothing more.  Every column of the 1,000 templates of the bench
 * knowledge base takes 10.3 MB (5,000 entries); a column longer than DOC_MAX_BYTES is analyzed
 * every time.
 *
 * Threads: one mutex, held while an entry is looked up and replayed and while one is added;
 * the analysis itself runs unlocked.  The callback runs under the mutex and must not search.
 */
#include "kb_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DOC_CACHE_BYTES (32u << 20)
#define DOC_MAX_BYTES (64u << 10) /* longest column text cached */

typedef struct ctok {
    uint32_t start, end, cstart, cend;
    uint32_t off;  /* into the entry's text */
    uint32_t hash; /* kb_text_hash of the text, handed to the callback */
    uint8_t len, colocated, kind, unused;
} ctok;

typedef struct entry {
    uint64_t key;  /* kind, id, column (make_key) */
    uint64_t hash; /* of the column text */
    int len;       /* of the column text */
    uint8_t cjk, query;
    char syn[17];
    int ntok;     /* -1: seen once, tokens not kept (see "Bounds") */
    size_t bytes; /* this entry's share of DOC_CACHE_BYTES */
    ctok *tok;    /* ntok tokens, then their text; NULL when ntok is -1 */
} entry;

static struct {
    pthread_mutex_t lock;
    entry **slot; /* open addressing, NULL = empty; cap a power of two */
    size_t cap, used, bytes;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t make_key(kb_kind_t kind, long long id, int col)
{
    uint64_t k = ((uint64_t)id << 8) ^ ((uint64_t)kind << 4) ^ (uint64_t)col;
    k ^= k >> 33; /* spread ids over the table (murmur3's finalizer) */
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

/* Locked, cap > 0.  The slot for key: its entry, or the empty slot where it would go.  Keys
 * are unique per (kind, id, column): make_key is a bijection for ids below 2^56. */
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
            free(cache.slot[i]->tok);
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

/* Collects the tokens of a miss while passing them on. */
typedef struct recorder {
    kb_tok_fn fn;
    void *ctx;
    ctok *tok;
    char *text;
    int ntok, captok;
    size_t ntext, captext;
    int failed; /* out of memory: stop recording, keep passing on */
} recorder;

static int record(void *arg, const kb_tok_t *t)
{
    recorder *r = arg;
    if (!r->failed) {
        if (r->ntok == r->captok) {
            int cap = r->captok * 2;
            ctok *v = realloc(r->tok, (size_t)cap * sizeof(*v));
            if (v) {
                r->tok = v;
                r->captok = cap;
            } else {
                r->failed = 1;
            }
        }
        if (r->ntext + (size_t)t->len > r->captext) {
            size_t cap = r->captext * 2;
            while (cap < r->ntext + (size_t)t->len)
                cap *= 2;
            char *v = realloc(r->text, cap);
            if (v) {
                r->text = v;
                r->captext = cap;
            } else {
                r->failed = 1;
            }
        }
        if (!r->failed) {
            r->tok[r->ntok++] = (ctok){.start = (uint32_t)t->start,
                                       .end = (uint32_t)t->end,
                                       .cstart = (uint32_t)t->cstart,
                                       .cend = (uint32_t)t->cend,
                                       .off = (uint32_t)r->ntext,
                                       .hash = kb_text_hash(t->text, t->len),
                                       .len = (uint8_t)t->len,
                                       .colocated = (uint8_t)(t->colocated != 0),
                                       .kind = (uint8_t)t->kind};
            memcpy(r->text + r->ntext, t->text, (size_t)t->len);
            r->ntext += (size_t)t->len;
        }
    }
    return r->fn(r->ctx, t);
}

/* Locked: replays e; returns what the callback returned last (0 when it never stopped). */
static int replay(const entry *e, kb_tok_fn fn, void *ctx)
{
    const char *text = (const char *)(e->tok + e->ntok);
    for (int i = 0; i < e->ntok; i++) {
        const ctok *c = &e->tok[i];
        kb_tok_t t = {text + c->off,  c->len,       (int)c->start, (int)c->end,
                      (int)c->cstart, (int)c->cend, c->colocated,  (kb_tok_kind_t)c->kind,
                      c->hash};
        int rc = fn(ctx, &t);
        if (rc)
            return rc;
    }
    return 0;
}

int kb_doc_analyze(kb_kind_t kind, long long id, int col, const kb_analyzer_t *a, const char *text,
                   int len, kb_tok_fn fn, void *ctx)
{
    char syn[17];
    if (len < 0 || (unsigned)len > DOC_MAX_BYTES)
        return kb_analyze(a, text, len, fn, ctx);
    kb_synonyms_hash(a->syn, syn);
    uint64_t key = make_key(kind, id, col), hash = kb_fnv64(KB_FNV64_START, text, (size_t)len);

    int seen = 0;
    pthread_mutex_lock(&cache.lock);
    if (cache.cap) {
        entry *e = *find(key);
        if (e && e->hash == hash && e->len == len && e->cjk == (uint8_t)a->cjk &&
            e->query == (uint8_t)(a->query != 0) && strcmp(e->syn, syn) == 0) {
            if (e->ntok >= 0) {
                int rc = replay(e, fn, ctx);
                pthread_mutex_unlock(&cache.lock);
                return rc;
            }
            seen = 1;
        }
    }
    pthread_mutex_unlock(&cache.lock);

    /* the first time, only that it was seen; the second, the tokens (see "Bounds") */
    recorder r = {.fn = fn, .ctx = ctx};
    int rc;
    if (seen) {
        /* sized for the text (a CJK character is 3 bytes and about 2.2 tokens of 2.6 bytes
         * in all), so that the buffers seldom grow */
        r.captok = len + 16;
        r.captext = (size_t)len * 2 + 64;
        r.tok = malloc((size_t)r.captok * sizeof(ctok));
        r.text = malloc(r.captext);
        r.failed = !r.tok || !r.text;
        rc = kb_analyze(a, text, len, record, &r);
    } else {
        rc = kb_analyze(a, text, len, fn, ctx);
    }
    if (rc != 0 || (seen && r.failed)) { /* a stopped analysis is not the whole document */
        free(r.tok);
        free(r.text);
        return rc;
    }
    /* one block: the tokens, then their text */
    size_t tokbytes = (size_t)r.ntok * sizeof(ctok), bytes = sizeof(entry) + tokbytes + r.ntext;
    entry *e = malloc(sizeof(*e));
    ctok *blk = seen ? malloc(tokbytes + r.ntext + 1) : NULL;
    if (e && (blk || !seen)) {
        if (r.ntok > 0) { /* an empty column has no tokens and no buffers */
            memcpy(blk, r.tok, tokbytes);
            memcpy((char *)blk + tokbytes, r.text, r.ntext);
        }
        *e = (entry){
            key,   hash, len, (uint8_t)a->cjk, (uint8_t)(a->query != 0), "", seen ? r.ntok : -1,
            bytes, blk};
        memcpy(e->syn, syn, sizeof(syn));
        pthread_mutex_lock(&cache.lock);
        if (bytes <= DOC_CACHE_BYTES && make_room(bytes) == 0) {
            entry **slot = find(key);
            if (*slot) { /* what was seen of this column before */
                cache.bytes -= (*slot)->bytes;
                free((*slot)->tok);
                free(*slot);
            } else {
                cache.used++;
            }
            *slot = e;
            cache.bytes += bytes;
            e = NULL;
            blk = NULL;
        }
        pthread_mutex_unlock(&cache.lock);
    }
    free(blk);
    free(e);
    free(r.tok);
    free(r.text);
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
