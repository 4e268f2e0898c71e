/*
 * kb_synonyms.c - the editable synonym list (kb/synonyms.txt) and its matcher.
 *
 * File format: one group per line, words separated by spaces, tabs, ',' '，' or '、';
 * '#' starts a comment.  A group needs two or more words; a word is 1..16 letters, digits or
 * CJK characters (no punctuation) and may appear in one group only.  Words are folded like
 * text (full-width, case), so "ＷＩＦＩ" and "wifi" are the same word.
 *
 * Design.  A parsed list is immutable and reference counted: kb_synonyms_t holds a trie of
 * every word (folded code points; the root's children in a hash table since every CJK
 * character of every document starts a lookup there) whose end nodes name the group, and one
 * token per group, "~" followed by the group's first word.  That token is what the tokenizer
 * colocates with every occurrence of any word of the group (kb_token.c), so "退钱" in a query
 * and "退款" in a template meet at "~退款".
 *
 * Lifetime.  One list is current per process (g_current, guarded by g_lock):
 *
 *   none --kb_set_synonyms_file(path)--> list A --kb_reload_synonyms()--> list B ...
 *                                            \--kb_set_synonyms_file(NULL)--> none
 *
 * Readers take a reference with kb_synonyms_current() and drop it with kb_synonyms_unref();
 * a replaced list is freed when its last reader lets go.  Because documents carry group
 * tokens, the FTS indexes depend on the list: kb_meta records the hash of the list they
 * were built with and kb_sync_synonyms() (kb_schema.c) rebuilds them when it changes.
 */
#include "kb_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SYN_MAX_WORD 16        /* characters */
#define SYN_MAX_FILE (1 << 20) /* bytes */
#define SYN_MAX_GROUPS 20000

typedef struct node {
    uint32_t cp;
    int child;   /* first child, -1 none */
    int sibling; /* next sibling, -1 none */
    int group;   /* group whose word ends here, -1 none */
    int line;    /* line of that word, for duplicate messages */
} node;

struct kb_synonyms {
    int refs;
    node *nodes; /* nodes[0] is the root */
    int nnodes, capnodes;
    int *root_hash; /* node index or -1; size root_cap (power of two) */
    int root_cap;
    char **tokens; /* "~word" per group */
    int *token_len;
    int ngroups;
    char hash[17];
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static kb_synonyms_t *g_current;
static char *g_path;

static void syn_free(kb_synonyms_t *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->ngroups; i++)
        free(s->tokens[i]);
    free(s->tokens);
    free(s->token_len);
    free(s->nodes);
    free(s->root_hash);
    free(s);
}

void kb_synonyms_ref(kb_synonyms_t *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&g_lock);
    s->refs++;
    pthread_mutex_unlock(&g_lock);
}

void kb_synonyms_unref(kb_synonyms_t *s)
{
    int last;
    if (s == NULL)
        return;
    pthread_mutex_lock(&g_lock);
    last = --s->refs == 0;
    pthread_mutex_unlock(&g_lock);
    if (last)
        syn_free(s);
}

kb_synonyms_t *kb_synonyms_current(void)
{
    kb_synonyms_t *s;
    pthread_mutex_lock(&g_lock);
    s = g_current;
    if (s != NULL)
        s->refs++;
    pthread_mutex_unlock(&g_lock);
    return s;
}

void kb_synonyms_hash(const kb_synonyms_t *s, char out[17])
{
    if (s == NULL || s->ngroups == 0)
        memcpy(out, "none", 5);
    else
        memcpy(out, s->hash, 17);
}

int kb_synonyms_groups(const kb_synonyms_t *s)
{
    return s == NULL ? 0 : s->ngroups;
}

static int new_node(kb_synonyms_t *s, uint32_t cp)
{
    if (s->nnodes == s->capnodes) {
        int cap = s->capnodes ? s->capnodes * 2 : 256;
        node *n = realloc(s->nodes, (size_t)cap * sizeof(*n));
        if (n == NULL)
            return -1;
        s->nodes = n;
        s->capnodes = cap;
    }
    s->nodes[s->nnodes] = (node){cp, -1, -1, -1, 0};
    return s->nnodes++;
}

/* Child of parent with code point cp; creates it when create is set.  -1 if absent/no memory. */
static int child_of(kb_synonyms_t *s, int parent, uint32_t cp, int create)
{
    int c;
    for (c = s->nodes[parent].child; c >= 0; c = s->nodes[c].sibling)
        if (s->nodes[c].cp == cp)
            return c;
    if (!create)
        return -1;
    c = new_node(s, cp);
    if (c < 0)
        return -1;
    s->nodes[c].sibling = s->nodes[parent].child;
    s->nodes[parent].child = c;
    return c;
}

static int build_root_hash(kb_synonyms_t *s)
{
    int n = 0, cap = 16;
    for (int c = s->nodes[0].child; c >= 0; c = s->nodes[c].sibling)
        n++;
    while (cap < n * 2)
        cap *= 2;
    s->root_hash = malloc((size_t)cap * sizeof(int));
    if (s->root_hash == NULL)
        return -1;
    s->root_cap = cap;
    for (int i = 0; i < cap; i++)
        s->root_hash[i] = -1;
    for (int c = s->nodes[0].child; c >= 0; c = s->nodes[c].sibling) {
        unsigned h = (s->nodes[c].cp * 2654435761u) & (unsigned)(cap - 1);
        while (s->root_hash[h] >= 0)
            h = (h + 1) & (unsigned)(cap - 1);
        s->root_hash[h] = c;
    }
    return 0;
}

static int root_child(const kb_synonyms_t *s, uint32_t cp)
{
    unsigned h = (cp * 2654435761u) & (unsigned)(s->root_cap - 1);
    while (s->root_hash[h] >= 0) {
        if (s->nodes[s->root_hash[h]].cp == cp)
            return s->root_hash[h];
        h = (h + 1) & (unsigned)(s->root_cap - 1);
    }
    return -1;
}

void kb_synonyms_match(const kb_synonyms_t *s, const uint32_t *cps, int n, kb_syn_fn fn, void *ctx)
{
    int cur;
    if (s == NULL || s->ngroups == 0 || n <= 0 || cps[0] == 0)
        return;
    cur = root_child(s, cps[0]);
    for (int k = 1; cur >= 0; k++) {
        if (s->nodes[cur].group >= 0) {
            int g = s->nodes[cur].group;
            fn(ctx, s->tokens[g], s->token_len[g], k);
        }
        if (k >= n || cps[k] == 0)
            break;
        int c;
        for (c = s->nodes[cur].child; c >= 0; c = s->nodes[c].sibling)
            if (s->nodes[c].cp == cps[k])
                break;
        cur = c;
    }
}

static int is_separator(uint32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == '\r' || cp == ',' || cp == 0x3001 || cp == 0x3000 ||
           cp == 0xFF0C;
}

/* Adds one folded word to group g.  Returns 0, or -1 with a message. */
static int add_word(kb_synonyms_t *s, const uint32_t *w, int n, int g, int line, const char *name,
                    char *err, size_t errlen)
{
    int cur = 0;
    for (int i = 0; i < n; i++) {
        cur = child_of(s, cur, w[i], 1);
        if (cur < 0) {
            kb_err(err, errlen, "%s:%d: out of memory", name, line);
            return -1;
        }
    }
    if (s->nodes[cur].group == g)
        return 0; /* repeated in its own group */
    if (s->nodes[cur].group >= 0) {
        char word[4 * SYN_MAX_WORD + 1];
        int len = 0;
        for (int i = 0; i < n; i++)
            len += kb_utf8_encode(w[i], word + len);
        word[len] = 0;
        kb_err(err, errlen, "%s:%d: \"%s\" is already in the group on line %d", name, line, word,
               s->nodes[cur].line);
        return -1;
    }
    s->nodes[cur].group = g;
    s->nodes[cur].line = line;
    return 0;
}

/* Parses one line [p, end): words into the trie as group s->ngroups.  Returns 0 (also for an
 * empty line) or -1 with a message. */
static int parse_line(kb_synonyms_t *s, const char *p, const char *end, int line, const char *name,
                      uint64_t *h, char *err, size_t errlen)
{
    uint32_t words[64][SYN_MAX_WORD];
    int wlen[64], nw = 0, cur = -1;
    const unsigned char *u = (const unsigned char *)p;
    int n = (int)(end - p);

    for (int i = 0; i < n;) {
        uint32_t cp;
        int k = kb_utf8_decode(u + i, n - i > 4 ? 4 : n - i, &cp);
        if (cp == 0xFFFD) {
            kb_err(err, errlen, "%s:%d: invalid UTF-8", name, line);
            return -1;
        }
        i += k;
        if (cp == '#')
            break;
        if (is_separator(cp)) {
            cur = -1;
            continue;
        }
        cp = kb_fold(cp);
        if (!kb_char_is_word(cp)) {
            kb_err(err, errlen,
                   "%s:%d: words may hold only letters, digits and CJK characters (found "
                   "U+%04X)",
                   name, line, (unsigned)cp);
            return -1;
        }
        if (cur < 0) {
            if (nw == 64) {
                kb_err(err, errlen, "%s:%d: more than 64 words in one group", name, line);
                return -1;
            }
            cur = nw++;
            wlen[cur] = 0;
        }
        if (wlen[cur] == SYN_MAX_WORD) {
            kb_err(err, errlen, "%s:%d: a word is longer than %d characters", name, line,
                   SYN_MAX_WORD);
            return -1;
        }
        words[cur][wlen[cur]++] = cp;
    }
    if (nw == 0)
        return 0;
    int distinct = 1;
    for (int i = 1; i < nw; i++)
        if (wlen[i] != wlen[0] || memcmp(words[i], words[0], (size_t)wlen[0] * 4) != 0)
            distinct = 2;
    if (nw < 2 || distinct < 2) {
        kb_err(err, errlen, "%s:%d: a group needs at least two different words", name, line);
        return -1;
    }
    if (s->ngroups == SYN_MAX_GROUPS) {
        kb_err(err, errlen, "%s:%d: more than %d groups", name, line, SYN_MAX_GROUPS);
        return -1;
    }
    int g = s->ngroups;
    char tok[1 + 4 * SYN_MAX_WORD + 1];
    int tl = 0;
    tok[tl++] = KB_SYN_PREFIX;
    for (int i = 0; i < wlen[0]; i++)
        tl += kb_utf8_encode(words[0][i], tok + tl);
    char **tokens = realloc(s->tokens, (size_t)(g + 1) * sizeof(char *));
    if (tokens == NULL)
        goto nomem;
    s->tokens = tokens;
    int *lens = realloc(s->token_len, (size_t)(g + 1) * sizeof(int));
    if (lens == NULL)
        goto nomem;
    s->token_len = lens;
    s->tokens[g] = malloc((size_t)tl + 1);
    if (s->tokens[g] == NULL)
        goto nomem;
    memcpy(s->tokens[g], tok, (size_t)tl);
    s->tokens[g][tl] = 0;
    s->token_len[g] = tl;
    s->ngroups++;
    for (int i = 0; i < nw; i++) {
        if (add_word(s, words[i], wlen[i], g, line, name, err, errlen) != 0)
            return -1;
        *h = kb_fnv64(*h, words[i], (size_t)wlen[i] * 4);
        *h = kb_fnv64(*h, " ", 1);
    }
    *h = kb_fnv64(*h, "\n", 1);
    return 0;
nomem:
    kb_err(err, errlen, "%s:%d: out of memory", name, line);
    return -1;
}

kb_synonyms_t *kb_synonyms_parse(const char *text, size_t len, const char *name, char *err,
                                 size_t errlen)
{
    kb_synonyms_t *s = calloc(1, sizeof(*s));
    uint64_t h = KB_FNV64_START;
    const char *p = text, *end = text + len;
    int line = 1;

    if (s == NULL || new_node(s, 0) != 0) {
        kb_err(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    s->refs = 1;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) /* byte order mark */
        p += 3;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if (memchr(p, 0, (size_t)(eol - p)) != NULL) {
            kb_err(err, errlen, "%s:%d: NUL byte", name, line);
            goto fail;
        }
        if (parse_line(s, p, eol, line, name, &h, err, errlen) != 0)
            goto fail;
        p = eol + 1;
        line++;
    }
    if (build_root_hash(s) != 0) {
        kb_err(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    snprintf(s->hash, sizeof(s->hash), "%016llx", (unsigned long long)h);
    return s;
fail:
    syn_free(s);
    return NULL;
}

/* Reads and parses path.  Returns a list or NULL with a message. */
static kb_synonyms_t *load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n;
    kb_synonyms_t *s = NULL;

    if (f == NULL) {
        kb_err(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(SYN_MAX_FILE + 1);
    if (buf == NULL) {
        kb_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    n = fread(buf, 1, SYN_MAX_FILE + 1, f);
    if (ferror(f)) {
        kb_err(err, errlen, "%s: read error", path);
        goto out;
    }
    if (n > SYN_MAX_FILE) {
        kb_err(err, errlen, "%s: larger than %d bytes", path, SYN_MAX_FILE);
        goto out;
    }
    s = kb_synonyms_parse(buf, n, path, err, errlen);
out:
    free(buf);
    fclose(f);
    return s;
}

/* Makes s (whose reference moves in) current and the path remembered; old list released. */
static void install(kb_synonyms_t *s, char *path)
{
    kb_synonyms_t *old;
    char *old_path;
    pthread_mutex_lock(&g_lock);
    old = g_current;
    old_path = g_path;
    g_current = s;
    g_path = path;
    pthread_mutex_unlock(&g_lock);
    kb_synonyms_unref(old);
    free(old_path);
}

int kb_set_synonyms_file(const char *path, char *err, size_t errlen)
{
    kb_synonyms_t *s;
    char *copy;

    if (path == NULL || path[0] == 0) {
        install(NULL, NULL);
        return 0;
    }
    s = load_file(path, err, errlen);
    if (s == NULL)
        return KB_ERR_INVALID;
    copy = strdup(path);
    if (copy == NULL) {
        kb_synonyms_unref(s);
        kb_err(err, errlen, "out of memory");
        return KB_ERR_NOMEM;
    }
    install(s, copy);
    return 0;
}

int kb_reload_synonyms(sqlite3 *db, char *err, size_t errlen)
{
    char *path = NULL;
    char before[17], after[17];
    kb_synonyms_t *s, *cur;
    int rc = 0;

    pthread_mutex_lock(&g_lock);
    if (g_path != NULL)
        path = strdup(g_path);
    pthread_mutex_unlock(&g_lock);
    if (path == NULL)
        return 0; /* no file set: nothing to reload */
    s = load_file(path, err, errlen);
    if (s == NULL) {
        free(path);
        return KB_ERR_INVALID;
    }
    cur = kb_synonyms_current();
    kb_synonyms_hash(cur, before);
    kb_synonyms_unref(cur);
    kb_synonyms_hash(s, after);
    if (strcmp(before, after) == 0) {
        kb_synonyms_unref(s);
        free(path);
    } else {
        install(s, path);
        rc = 1;
    }
    if (db != NULL) {
        int nested = 0, r = kb_tx_begin(db, &nested);
        if (r != 0) {
            kb_err(err, errlen, "begin: %s", sqlite3_errmsg(db));
            return r;
        }
        r = kb_sync_synonyms(db, err, errlen);
        if (kb_tx_end(db, nested, r == 0) != 0 && r == 0) {
            kb_err(err, errlen, "commit: %s", sqlite3_errmsg(db));
            r = KB_ERR_DB;
        }
        if (r != 0)
            return r;
    }
    return rc;
}
