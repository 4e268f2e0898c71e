/*
 * flow_keywords.c - keyword sets: many plain words found in one pass over a text.
 *
 * Why: the rules scan every customer message for hundreds of words (anger, threats, categories,
 * products, requests for a person).  Done as one string.find per word, a turn costs hundreds
 * of passes over the text, and a long first message costs milliseconds of the loop thread.
 * A keyword set is an Aho-Corasick automaton over the words' bytes, built once when the rules
 * load (lib and lexicon files run once per generation), then each text is read once:
 *
 *   keywords.set(list)        list: strings, or tables whose [1] is the string ({"词", 权重});
 *                             returns a set.  Empty words and non-strings are errors.
 *   set:find(s [, init])      -> i, j, k: the leftmost occurrence at or after byte init (at the
 *                             same start, the entry earlier in the list), k its index in list;
 *                             nil when no entry occurs.
 *   set:counts(s [, exclusive]) -> { [k] = n } for the entries that occur.  n counts
 *                             occurrences the way repeated string.find(s, w, i, true) does (an
 *                             occurrence starts after the previous one of the same word ends).
 *                             exclusive = true: entries are taken in list order and the bytes
 *                             an occurrence covers are used up (a later entry that overlaps them
 *                             does not count), e.g. a list sorted longest first stops 没到账
 *                             from also counting as 到账.
 *   set:matches(s [, max])    -> { {i, j, k}, ... }: every occurrence (overlapping ones too),
 *                             ordered by start, then by entry; at most max (default 256).
 *   #set                      number of entries.
 *
 * Matching is on bytes, so Chinese text needs no word boundaries and a word never matches in
 * the middle of a UTF-8 character (no UTF-8 sequence starts inside another).  Case is exact:
 * callers lower() when they want otherwise.
 *
 * Memory: a set is one userdata allocated through the VM's allocator (so it counts against the
 * flow memory cap): header (with the root's moves by all 256 bytes), per-entry lengths and
 * duplicate links, nodes, then edges sorted by byte per node.  Building uses temporary
 * userdata, freed by the GC; nothing is malloc'ed, so a Lua error (raised by the allocator or a
 * bad argument) cannot leak.  Scanning charges the current call's instruction budget (one
 * instruction per KW_BYTES_PER_INSTR bytes, plus the occurrences reported), as the pattern
 * functions do.
 */
#include "flow_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KW_META "redress.keywords"
#define KW_MAX_ENTRIES 100000
#define KW_MAX_BYTES (4 * 1024 * 1024) /* sum of the words' lengths */
#define KW_BYTES_PER_INSTR 16
#define KW_STACK_ENTRIES 1024 /* counts() keeps per-entry state on the C stack up to this */
#define KW_STACK_OCC 512      /* occurrences gathered on the C stack before a userdata is used */
#define KW_STACK_TEXT 8192    /* exclusive counts() marks used bytes on the C stack up to this */

typedef struct kw_node {
    int32_t fail;  /* longest proper suffix that is also a node */
    int32_t entry; /* lowest entry index (0-based) whose word ends here, or -1 */
    int32_t out;   /* nearest node on the fail chain with entry >= 0, or -1 */
    int32_t edges; /* index of the first outgoing edge */
    int32_t nedges;
} kw_node;

typedef struct kw_edge {
    int32_t to;
    uint8_t byte;
} kw_edge;

typedef struct kw_set {
    int32_t nentries, nnodes, maxlen;
    int32_t root[256]; /* the root's move by each byte (0: stay), where scans spend most steps */
    int32_t *len;      /* [nentries] word length in bytes */
    int32_t *dup;      /* [nentries] next entry with the same word, or -1 */
    kw_node *node;     /* [nnodes]; node 0 is the root */
    kw_edge *edge;     /* [nnodes - 1] */
} kw_set;

/* ---- building ---- */

/* The word of list entry i (1-based) at the top of the stack; raises a clear error otherwise. */
static const char *entry_word(lua_State *L, int list, lua_Integer i, size_t *len)
{
    int t = lua_geti(L, list, i);
    if (t == LUA_TTABLE) {
        lua_geti(L, -1, 1);
        lua_remove(L, -2);
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "keywords.set: entry %d is not a string (nor a table whose [1] is one)",
                   (int)i);
    const char *w = lua_tolstring(L, -1, len);
    if (*len == 0)
        luaL_error(L, "keywords.set: entry %d is an empty string", (int)i);
    return w;
}

/* Child of node n by byte c during the build (linked lists), or -1. */
static int32_t build_child(const int32_t *first, const int32_t *next, const uint8_t *byte,
                           int32_t n, uint8_t c)
{
    for (int32_t k = first[n]; k >= 0; k = next[k])
        if (byte[k] == c)
            return k;
    return -1;
}

/* Outgoing edge of a finished node by byte c, or -1.  Edges are sorted by byte. */
static inline int32_t child(const kw_set *s, const kw_node *n, uint8_t c)
{
    const kw_edge *e = s->edge + n->edges;
    int32_t lo = 0, hi = n->nedges;
    if (hi <= 8) {
        for (int32_t i = 0; i < hi; i++)
            if (e[i].byte == c)
                return e[i].to;
        return -1;
    }
    while (lo < hi) {
        int32_t mid = (lo + hi) / 2;
        if (e[mid].byte < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n->nedges && e[lo].byte == c ? e[lo].to : -1;
}

static int kw_len(lua_State *L);
static int kw_tostring(lua_State *L);
static int kw_find(lua_State *L);
static int kw_counts(lua_State *L);
static int kw_matches(lua_State *L);

/* Pushes the sets' metatable, creating it on first use. */
static void push_meta(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"find", kw_find}, {"counts", kw_counts}, {"matches", kw_matches}, {NULL, NULL}};
    if (luaL_newmetatable(L, KW_META)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, kw_len);
        lua_setfield(L, -2, "__len");
        lua_pushcfunction(L, kw_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "locked");
        lua_setfield(L, -2, "__metatable");
    }
}

int flow_keywords_set(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (n < 0 || n > KW_MAX_ENTRIES)
        return luaL_error(L, "keywords.set: at most %d entries", KW_MAX_ENTRIES);
    size_t total = 0, len;
    int32_t maxlen = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        entry_word(L, 1, i, &len);
        lua_pop(L, 1);
        total += len;
        if (total > KW_MAX_BYTES)
            return luaL_error(L, "keywords.set: the words exceed %d bytes", KW_MAX_BYTES);
        if ((int32_t)len > maxlen)
            maxlen = (int32_t)len;
    }
    int32_t cap = (int32_t)total + 1; /* nodes at most: one per byte, plus the root */

    /* temporary trie with linked children (stack slot 2) */
    size_t tmp_size = (size_t)cap * (3 * sizeof(int32_t) + 1) + (size_t)n * sizeof(int32_t);
    char *tmp = lua_newuserdatauv(L, tmp_size ? tmp_size : 1, 0);
    int32_t *first = (int32_t *)tmp, *next = first + cap, *word_at = next + cap;
    int32_t *last_dup = word_at + cap; /* [n]: last entry of each word's duplicate chain */
    uint8_t *byte = (uint8_t *)(last_dup + n);
    for (int32_t i = 0; i < cap; i++)
        first[i] = next[i] = word_at[i] = -1;

    /* the set itself (stack slot 3) */
    size_t size = sizeof(kw_set) + 2 * (size_t)n * sizeof(int32_t) + (size_t)cap * sizeof(kw_node) +
                  (size_t)cap * sizeof(kw_edge);
    kw_set *s = lua_newuserdatauv(L, size, 0);
    memset(s, 0, size);
    s->len = (int32_t *)(s + 1);
    s->dup = s->len + n;
    s->node = (kw_node *)(s->dup + n);
    s->edge = (kw_edge *)(s->node + cap);
    s->nentries = (int32_t)n;
    s->maxlen = maxlen;

    int32_t nodes = 1;
    for (lua_Integer i = 1; i <= n; i++) {
        const char *w = entry_word(L, 1, i, &len);
        int32_t at = 0;
        for (size_t b = 0; b < len; b++) {
            int32_t c = build_child(first, next, byte, at, (uint8_t)w[b]);
            if (c < 0) {
                c = nodes++;
                byte[c] = (uint8_t)w[b];
                next[c] = first[at];
                first[at] = c;
            }
            at = c;
        }
        lua_pop(L, 1);
        int32_t k = (int32_t)(i - 1);
        s->len[k] = (int32_t)len;
        s->dup[k] = -1;
        if (word_at[at] < 0) {
            word_at[at] = k;
            last_dup[k] = k;
        } else { /* the same word again: chain it after the first entry's chain */
            int32_t head = word_at[at];
            s->dup[last_dup[head]] = k;
            last_dup[head] = k;
        }
    }
    s->nnodes = nodes;

    /* breadth-first: number the edges, fail links and output links */
    int32_t *queue = next; /* reuse: `next` is not needed once the edges are copied */
    int32_t nedges = 0;
    /* copy each node's children into sorted edges before `next` is reused */
    for (int32_t v = 0; v < nodes; v++) {
        kw_node *nd = &s->node[v];
        nd->edges = nedges;
        for (int32_t k = first[v]; k >= 0; k = next[k]) {
            int32_t j = nedges++;
            while (j > nd->edges && s->edge[j - 1].byte > byte[k]) { /* insertion sort */
                s->edge[j] = s->edge[j - 1];
                j--;
            }
            s->edge[j].byte = byte[k];
            s->edge[j].to = k;
        }
        nd->nedges = nedges - nd->edges;
        nd->entry = word_at[v];
        nd->out = -1;
        nd->fail = 0;
    }
    for (int c = 0; c < 256; c++) {
        int32_t to = child(s, &s->node[0], (uint8_t)c);
        s->root[c] = to < 0 ? 0 : to;
    }
    int32_t head = 0, tail = 0;
    queue[tail++] = 0;
    while (head < tail) {
        int32_t v = queue[head++];
        const kw_node *nv = &s->node[v];
        for (int32_t e = nv->edges; e < nv->edges + nv->nedges; e++) {
            int32_t u = s->edge[e].to;
            uint8_t c = s->edge[e].byte;
            int32_t f = 0;
            if (v != 0) {
                int32_t x = nv->fail;
                for (;;) {
                    int32_t y = child(s, &s->node[x], c);
                    if (y >= 0) {
                        f = y;
                        break;
                    }
                    if (x == 0)
                        break;
                    x = s->node[x].fail;
                }
            }
            s->node[u].fail = f;
            s->node[u].out = s->node[f].entry >= 0 ? f : s->node[f].out;
            queue[tail++] = u;
        }
    }
    push_meta(L);
    lua_setmetatable(L, -2);
    return 1;
}

/* ---- scanning ---- */

/* Calls fn(arg, entry, start) for every occurrence of every entry in s[from..len), in order of
 * end position (then entry index); start and entries are 0-based.  fn returns nonzero to stop.
 * Returns the number of occurrences reported. */
typedef int (*kw_visit)(void *arg, int32_t entry, size_t start, size_t end);

static long scan(const kw_set *set, const char *s, size_t from, size_t len, kw_visit fn, void *arg)
{
    long hits = 0;
    int32_t at = 0;
    for (size_t p = from; p < len; p++) {
        uint8_t c = (uint8_t)s[p];
        int32_t to = -1;
        while (at != 0 && (to = child(set, &set->node[at], c)) < 0)
            at = set->node[at].fail;
        at = at != 0 ? to : set->root[c];
        int32_t o = set->node[at].entry >= 0 ? at : set->node[at].out;
        for (; o >= 0; o = set->node[o].out) {
            int32_t k = set->node[o].entry;
            size_t start = p + 1 - (size_t)set->len[k];
            for (; k >= 0; k = set->dup[k]) {
                hits++;
                if (fn(arg, k, start, p + 1))
                    return hits;
            }
        }
    }
    return hits;
}

static kw_set *check_set(lua_State *L)
{
    return luaL_checkudata(L, 1, KW_META);
}

static void charge(lua_State *L, size_t bytes, long hits)
{
    flow_charge(L, (long)(bytes / KW_BYTES_PER_INSTR) + hits);
}

typedef struct find_state {
    int32_t best; /* entry of the leftmost occurrence so far, or -1 */
    size_t best_start, best_end;
    size_t maxlen;
} find_state;

static int visit_find(void *arg, int32_t k, size_t start, size_t end)
{
    find_state *f = arg;
    if (f->best < 0 || start < f->best_start || (start == f->best_start && k < f->best)) {
        f->best = k;
        f->best_start = start;
        f->best_end = end;
    }
    /* an occurrence ending later starts after end - maxlen: past the best, nothing can win */
    return end > f->best_start + f->maxlen;
}

/* set:find(s [, init]) -> i, j, k | nil */
static int kw_find(lua_State *L)
{
    const kw_set *set = check_set(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    lua_Integer init = luaL_optinteger(L, 3, 1);
    if (init < 0)
        init = (lua_Integer)len + init + 1;
    if (init < 1)
        init = 1;
    if ((size_t)init > len + 1) {
        lua_pushnil(L);
        return 1;
    }
    find_state f = {-1, 0, 0, (size_t)set->maxlen};
    long hits = scan(set, s, (size_t)init - 1, len, visit_find, &f);
    charge(L, f.best < 0 ? len - ((size_t)init - 1) : f.best_end - ((size_t)init - 1), hits);
    if (f.best < 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)f.best_start + 1);
    lua_pushinteger(L, (lua_Integer)f.best_end);
    lua_pushinteger(L, (lua_Integer)f.best + 1);
    return 3;
}

typedef struct occ {
    int32_t k;
    uint32_t start, end;
} occ;

/* ---- every occurrence, gathered ---- */

typedef struct gather_state {
    occ *list;
    size_t n, cap;
} gather_state;

static int visit_gather(void *arg, int32_t k, size_t start, size_t end)
{
    gather_state *g = arg;
    if (g->n == g->cap)
        return 1;
    g->list[g->n++] = (occ){k, (uint32_t)start, (uint32_t)end};
    return 0;
}

/* Every occurrence in s into g, in order of end position.  g starts with a caller's buffer (the
 * usual few fit on the C stack); when it fills up, the scan is charged and repeated into a
 * larger GC'd userdata left on the Lua stack.  Returns the occurrences reported. */
static long gather(lua_State *L, const kw_set *set, const char *s, size_t len, gather_state *g)
{
    for (;;) {
        g->n = 0;
        long hits = scan(set, s, 0, len, visit_gather, g);
        if (g->n < g->cap)
            return hits;
        charge(L, len, hits);
        g->cap = g->cap < len * 4 + 16 ? len * 4 + 16 : g->cap * 4;
        g->list = lua_newuserdatauv(L, g->cap * sizeof(occ), 0);
    }
}

static int occ_by_entry(const void *a, const void *b)
{
    const occ *x = a, *y = b;
    if (x->k != y->k)
        return x->k < y->k ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int occ_by_start(const void *a, const void *b)
{
    const occ *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

/* ---- counts ---- */

typedef struct count_state {
    size_t *last_end; /* per entry: end of its last counted occurrence (0 = none yet) */
    lua_Integer *n;   /* per entry: count */
} count_state;

static int visit_count(void *arg, int32_t k, size_t start, size_t end)
{
    count_state *c = arg;
    if (start >= c->last_end[k]) { /* the first one, or after the previous one ended */
        c->last_end[k] = end;
        c->n[k]++;
    }
    return 0;
}

/* set:counts(s [, exclusive]) -> { [k] = n } */
static int kw_counts(lua_State *L)
{
    const kw_set *set = check_set(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int exclusive = lua_toboolean(L, 3);
    if (len > UINT32_MAX - 1)
        return luaL_error(L, "keywords: text too long");
    int32_t n = set->nentries;
    size_t per = sizeof(size_t) + sizeof(lua_Integer);
    size_t stack_buf[KW_STACK_ENTRIES * 2];
    void *mem = stack_buf;
    if ((size_t)n > KW_STACK_ENTRIES)
        mem = lua_newuserdatauv(L, (size_t)n * per, 0); /* collected with the call's garbage */
    count_state c = {.last_end = mem, .n = (lua_Integer *)((size_t *)mem + n)};
    memset(mem, 0, (size_t)n * per);
    long hits;
    if (!exclusive) {
        hits = scan(set, s, 0, len, visit_count, &c);
    } else {
        /* every occurrence, then entries in list order, each left to right, using up text */
        occ local[KW_STACK_OCC];
        gather_state g = {local, 0, KW_STACK_OCC};
        hits = gather(L, set, s, len, &g);
        qsort(g.list, g.n, sizeof(occ), occ_by_entry);
        uint8_t used_local[KW_STACK_TEXT];
        uint8_t *used = len <= sizeof(used_local) ? used_local : lua_newuserdatauv(L, len, 0);
        memset(used, 0, len);
        for (size_t i = 0; i < g.n; i++) {
            const occ *o = &g.list[i];
            int free_span = 1; /* also refuses overlapping occurrences of the same word */
            for (uint32_t b = o->start; b < o->end; b++)
                if (used[b]) {
                    free_span = 0;
                    break;
                }
            if (!free_span)
                continue;
            memset(used + o->start, 1, o->end - o->start);
            c.n[o->k]++;
        }
    }
    charge(L, len, hits);
    lua_createtable(L, 0, 4);
    for (int32_t k = 0; k < n; k++)
        if (c.n[k]) {
            lua_pushinteger(L, c.n[k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
    return 1;
}

/* ---- matches ---- */

/* set:matches(s [, max]) -> { {i, j, k}, ... } */
static int kw_matches(lua_State *L)
{
    const kw_set *set = check_set(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    lua_Integer max = luaL_optinteger(L, 3, 256);
    if (max < 0 || max > 100000)
        return luaL_error(L, "keywords: max must be between 0 and 100000");
    if (len > UINT32_MAX - 1)
        return luaL_error(L, "keywords: text too long");
    /* Occurrences are reported by end position: gather them all so that the ones with the
     * smallest starts are kept, then sort. */
    occ local[KW_STACK_OCC];
    gather_state g = {local, 0, KW_STACK_OCC};
    charge(L, len, gather(L, set, s, len, &g));
    qsort(g.list, g.n, sizeof(occ), occ_by_start);
    size_t n = g.n < (size_t)max ? g.n : (size_t)max;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 3, 0);
        lua_pushinteger(L, (lua_Integer)g.list[i].start + 1);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, (lua_Integer)g.list[i].end);
        lua_rawseti(L, -2, 2);
        lua_pushinteger(L, (lua_Integer)g.list[i].k + 1);
        lua_rawseti(L, -2, 3);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int kw_len(lua_State *L)
{
    lua_pushinteger(L, check_set(L)->nentries);
    return 1;
}

static int kw_tostring(lua_State *L)
{
    lua_pushfstring(L, "keyword set (%d entries)", (int)check_set(L)->nentries);
    return 1;
}

void flow_keywords_open(lua_State *L, int idx)
{
    static const luaL_Reg fns[] = {{"set", flow_keywords_set}, {NULL, NULL}};
    flow_set_library(L, idx, "keywords", fns);
}
