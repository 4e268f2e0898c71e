/*
 * kb_token.c - text analysis for Chinese customer text and the "redress" FTS5 tokenizer.
 *
 * Design.  kb_analyze() turns UTF-8 text into tokens in three steps:
 *
 *   decode   UTF-8 -> code points; an invalid byte becomes U+FFFD (a separator), so hostile
 *            bytes can never produce a token or an error
 *   fold     full-width ASCII (Ａ１！) -> ASCII, U+3000 -> space, case folding for Latin,
 *            Greek and Cyrillic (kb_fold)
 *   classify each code point is HAN (CJK ideographs and kana), LETTER, DIGIT, MARK (combining,
 *            continues a word) or SEP (punctuation, symbols, emoji, controls, private use)
 *
 * and then walks runs of one class:
 *
 *   HAN run "我想退钱"   UNIBI (default): each character at its own position, with the bigram
 *                       starting there colocated:  我|我想  想|想退  退|退钱  钱
 *                       UNI: characters only.  BI: bigrams only (a lone character alone).
 *   word run "iPhone13" parts split where letters meet digits, each at its own position; the
 *                       whole run colocated with the first part:  iphone|iphone13  13
 *   synonyms            where a word of a synonym group starts, the group token "~<first word
 *                       of the group>" is colocated (FTS5_TOKEN_COLOCATED); a word inside a
 *                       Latin run must cover the whole run
 *
 * Positions are characters (HAN) and parts (words), so bm25's document length counts them,
 * not the colocated extras.
 *
 * Query mode (FTS5_TOKENIZE_QUERY) exists so that the MATCH expressions kb_search builds are
 * exact: it is given one term at a time, already analyzed, and must return that very term.  A
 * HAN run of one or two characters is one token; a longer one becomes its bigrams (a phrase);
 * a word run is one token (the whole run); text starting with '~' is a synonym-group token
 * taken verbatim.  Customer text never reaches query mode unanalyzed (kb_search.c).
 *
 * The FTS5 glue: xCreate parses options (tokenize = 'redress [unibi|uni|bi]
 * [synonyms|nosynonyms]', defaults unibi and synonyms); xTokenize
 * takes a reference on the process-wide synonym list for the duration of the call
 * (kb_synonyms_current), so a reload never frees a list in use.  kb_register() installs the
 * tokenizer and the kb_fts_stats() auxiliary function on one connection.
 */
#include "kb_internal.h"

#include <stdlib.h>
#include <string.h>

enum { CL_SEP = 0, CL_HAN, CL_LETTER, CL_DIGIT, CL_MARK };

#define STACK_CHARS 256

int kb_utf8_decode(const unsigned char *s, int n, uint32_t *cp)
{
    uint32_t c = s[0], min;
    int need, i;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        c &= 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        c &= 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        c &= 0x07;
        min = 0x10000;
    } else {
        goto bad;
    }
    if (n < need + 1)
        goto bad;
    for (i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            goto bad;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        goto bad;
    *cp = c;
    return need + 1;
bad:
    *cp = 0xFFFD;
    return 1;
}

int kb_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;

    while (i < n) {
        if (p[i] == 0)
            return 0;
        int rem = n - i > 4 ? 4 : (int)(n - i);
        int k = kb_utf8_decode(p + i, rem, &cp);
        if (cp == 0xFFFD && !(k == 3 && p[i] == 0xEF && p[i + 1] == 0xBF && p[i + 2] == 0xBD))
            return 0;
        i += (size_t)k;
    }
    return 1;
}

size_t kb_utf8_chars(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

int kb_utf8_encode(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

uint32_t kb_fold(uint32_t c)
{
    if (c >= 0xFF01 && c <= 0xFF5E) /* full-width ASCII */
        c -= 0xFEE0;
    else if (c == 0x3000) /* ideographic space */
        return ' ';
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
        return c + 32;
    if (c >= 0x100 && c <= 0x17F) {
        if ((c <= 0x137 || (c >= 0x14A && c <= 0x177)) && (c & 1) == 0)
            return c + 1;
        if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c & 1) == 1)
            return c + 1;
        if (c == 0x178)
            return 0xFF;
        return c;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
        return c + 32;
    if (c >= 0x410 && c <= 0x42F)
        return c + 32;
    if (c >= 0x400 && c <= 0x40F)
        return c + 80;
    return c;
}

/* Class of a folded code point. */
static int classify(uint32_t c)
{
    if (c < 0x80) {
        if (c >= 'a' && c <= 'z')
            return CL_LETTER;
        if (c >= '0' && c <= '9')
            return CL_DIGIT;
        return CL_SEP;
    }
    if (c < 0x300)
        return (c == 0xAA || c == 0xB5 || c == 0xBA || (c >= 0xC0 && c != 0xD7 && c != 0xF7))
                   ? CL_LETTER
                   : CL_SEP;
    if (c <= 0x36F)
        return CL_MARK;
    if (c < 0x2000) /* Greek, Cyrillic, Hebrew, Arabic, Indic, Thai, ... */
        return (c == 0x37E || c == 0x387 || (c >= 0x55A && c <= 0x55F) || c == 0x589 ||
                c == 0x5BE || c == 0x5C0 || c == 0x5C3 || c == 0x5C6 || c == 0x60C || c == 0x61B ||
                c == 0x61F || c == 0x964 || c == 0x965 || c == 0x1680)
                   ? CL_SEP
                   : CL_LETTER;
    if (c < 0x2C00) /* punctuation, symbols, arrows, math, boxes, dingbats */
        return CL_SEP;
    if (c < 0x2E00)
        return CL_LETTER;
    if (c < 0x3000) /* supplemental punctuation, CJK radicals */
        return CL_SEP;
    if (c < 0x3040)
        return (c >= 0x3005 && c <= 0x3007) ? CL_HAN : CL_SEP;
    if (c < 0x3100) /* hiragana, katakana */
        return (c == 0x30A0 || c == 0x30FB) ? CL_SEP : CL_HAN;
    if (c < 0x3190) /* bopomofo, hangul compatibility jamo */
        return CL_LETTER;
    if (c >= 0x31F0 && c <= 0x31FF)
        return CL_HAN;
    if (c < 0x3400)
        return CL_SEP;
    if (c <= 0x4DBF || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF))
        return CL_HAN;
    if (c >= 0xA000 && c <= 0xD7AF) /* Yi, ..., Hangul syllables */
        return (c >= 0xA4D0 && c <= 0xA4FF) || (c >= 0xA830 && c <= 0xA83F) ? CL_SEP : CL_LETTER;
    if (c >= 0xFF66 && c <= 0xFF9F) /* half-width katakana */
        return CL_HAN;
    if (c >= 0xFFA0 && c <= 0xFFDC) /* half-width hangul */
        return CL_LETTER;
    if (c >= 0x10000 && c < 0x1F000) /* historic and other scripts */
        return CL_LETTER;
    if (c >= 0x20000 && c <= 0x3134F)
        return CL_HAN;
    return CL_SEP; /* emoji, private use, specials, tags, FFFD */
}

int kb_char_is_word(uint32_t cp)
{
    int cl = classify(cp);
    return cl == CL_HAN || cl == CL_LETTER || cl == CL_DIGIT;
}

/* Decoded text: folded code point (0 for separators), class and byte offset per character. */
typedef struct chars {
    uint32_t *cp;
    unsigned char *cl;
    int *off; /* n + 1 entries */
    int n;
    void *heap;
    uint32_t cp_s[STACK_CHARS];
    unsigned char cl_s[STACK_CHARS];
    int off_s[STACK_CHARS + 1];
} chars;

static int chars_decode(chars *c, const char *text, int len)
{
    const unsigned char *s = (const unsigned char *)text;
    int i = 0, n = 0;

    c->heap = NULL;
    if (len <= STACK_CHARS) {
        c->cp = c->cp_s;
        c->cl = c->cl_s;
        c->off = c->off_s;
    } else {
        size_t cap = (size_t)len;
        c->heap = malloc(cap * (sizeof(uint32_t) + sizeof(int) + 1) + sizeof(int));
        if (c->heap == NULL)
            return -1;
        c->cp = c->heap;
        c->off = (int *)(c->cp + cap);
        c->cl = (unsigned char *)(c->off + cap + 1);
    }
    while (i < len) {
        uint32_t cp;
        int k = kb_utf8_decode(s + i, len - i > 4 ? 4 : len - i, &cp);
        cp = kb_fold(cp);
        int cl = classify(cp);
        if (cl == CL_MARK && (n == 0 || c->cl[n - 1] == CL_SEP || c->cl[n - 1] == CL_HAN))
            cl = CL_SEP; /* a combining mark continues a word only */
        c->cp[n] = cl == CL_SEP ? 0 : cp;
        c->cl[n] = (unsigned char)cl;
        c->off[n] = i;
        n++;
        i += k;
    }
    c->off[n] = len;
    c->n = n;
    return 0;
}

static void chars_free(chars *c)
{
    free(c->heap);
}

static int is_word(int cl)
{
    return cl == CL_LETTER || cl == CL_DIGIT || cl == CL_MARK;
}

/* State of one kb_analyze call. */
typedef struct walk {
    const kb_analyzer_t *a;
    chars *c;
    kb_tok_fn fn;
    void *ctx;
    int rc;
    int pos_char; /* character index of the last non-colocated token, -1 before the first */
    char buf[4 * KB_TOKEN_MAX + 8];
} walk;

/* Emits the token made of characters [from, to), truncated to KB_TOKEN_MAX bytes. */
static int emit_chars(walk *w, int from, int to, kb_tok_kind_t kind, int colocated)
{
    int len = 0;
    for (int k = from; k < to; k++) {
        char tmp[4];
        int l = kb_utf8_encode(w->c->cp[k], tmp);
        if (len + l > KB_TOKEN_MAX)
            break;
        memcpy(w->buf + len, tmp, (size_t)l);
        len += l;
    }
    kb_tok_t t = {.text = w->buf,
                  .len = len,
                  .start = w->c->off[from],
                  .end = w->c->off[to],
                  .cstart = from,
                  .cend = to,
                  .colocated = colocated,
                  .kind = kind};
    w->rc = w->fn(w->ctx, &t);
    return w->rc;
}

typedef struct syn_emit {
    int n;
    const char *token[8]; /* distinct groups matched here, longest word kept */
    int len[8], nchars[8];
    const walk *w;
    int at;
} syn_emit;

static void syn_cb(void *ctx, const char *token, int token_len, int nchars)
{
    syn_emit *e = ctx;
    const chars *c = e->w->c;
    int end = e->at + nchars;

    /* a word may not stop inside a run of letters or digits */
    if (end < c->n && is_word(c->cl[end]) && c->cl[end] != CL_HAN && c->cl[end - 1] != CL_HAN)
        return;
    for (int i = 0; i < e->n; i++)
        if (e->token[i] == token) {
            if (nchars > e->nchars[i])
                e->nchars[i] = nchars;
            return;
        }
    if (e->n == 8)
        return;
    e->token[e->n] = token;
    e->len[e->n] = token_len;
    e->nchars[e->n++] = nchars;
}

/* Emits the group token of every synonym word starting at character at, colocated. */
static int emit_synonyms(walk *w, int at)
{
    syn_emit e = {.n = 0, .w = w, .at = at};

    if (w->a->syn == NULL || w->a->query)
        return 0;
    kb_synonyms_match(w->a->syn, w->c->cp + at, w->c->n - at, syn_cb, &e);
    for (int i = 0; i < e.n && w->rc == 0; i++) {
        kb_tok_t t = {.text = e.token[i],
                      .len = e.len[i],
                      .start = w->c->off[at],
                      .end = w->c->off[at + e.nchars[i]],
                      .cstart = at,
                      .cend = at + e.nchars[i],
                      .colocated = w->pos_char >= 0,
                      .kind = KB_TOK_SYN};
        w->rc = w->fn(w->ctx, &t);
        if (!t.colocated)
            w->pos_char = at;
    }
    return w->rc;
}

static int walk_han(walk *w, int i, int j)
{
    kb_cjk_mode_t mode = w->a->cjk;

    if (w->a->query) {
        if (mode == KB_CJK_UNI || j - i == 1) {
            for (int k = i; k < j; k++)
                if (emit_chars(w, k, k + 1, KB_TOK_UNI, 0))
                    return w->rc;
            return 0;
        }
        for (int k = i; k + 1 < j; k++)
            if (emit_chars(w, k, k + 2, KB_TOK_BI, 0))
                return w->rc;
        return 0;
    }
    for (int k = i; k < j; k++) {
        if (mode == KB_CJK_BI && j - i > 1) {
            if (k + 1 < j) {
                if (emit_chars(w, k, k + 2, KB_TOK_BI, 0))
                    return w->rc;
                w->pos_char = k;
            }
        } else {
            if (emit_chars(w, k, k + 1, KB_TOK_UNI, 0))
                return w->rc;
            w->pos_char = k;
            if (mode == KB_CJK_UNIBI && k + 1 < j && emit_chars(w, k, k + 2, KB_TOK_BI, 1))
                return w->rc;
        }
        if (emit_synonyms(w, k))
            return w->rc;
    }
    return 0;
}

static int walk_word(walk *w, int i, int j)
{
    int parts = 1;
    for (int k = i + 1; k < j; k++)
        if ((w->c->cl[k] == CL_DIGIT) != (w->c->cl[k - 1] == CL_DIGIT) && w->c->cl[k] != CL_MARK)
            parts++;
    if (w->a->query || parts == 1) {
        if (emit_chars(w, i, j, parts == 1 ? KB_TOK_WORD : KB_TOK_JOIN, 0))
            return w->rc;
        w->pos_char = i;
        return emit_synonyms(w, i);
    }
    int start = i;
    for (int k = i + 1; k <= j; k++) {
        if (k < j &&
            !((w->c->cl[k] == CL_DIGIT) != (w->c->cl[k - 1] == CL_DIGIT) && w->c->cl[k] != CL_MARK))
            continue;
        if (emit_chars(w, start, k, KB_TOK_WORD, 0))
            return w->rc;
        w->pos_char = start;
        if (start == i) {
            if (emit_chars(w, i, j, KB_TOK_JOIN, 1) || emit_synonyms(w, i))
                return w->rc;
        }
        start = k;
    }
    return 0;
}

int kb_analyze(const kb_analyzer_t *a, const char *text, int len, kb_tok_fn fn, void *ctx)
{
    chars c;
    walk w = {.a = a, .c = &c, .fn = fn, .ctx = ctx, .rc = 0, .pos_char = -1};

    if (text == NULL || len <= 0)
        return 0;
    if (a->query && text[0] == KB_SYN_PREFIX) {
        kb_tok_t t = {.text = text,
                      .len = len,
                      .start = 0,
                      .end = len,
                      .cstart = 0,
                      .cend = 1,
                      .colocated = 0,
                      .kind = KB_TOK_SYN};
        return fn(ctx, &t);
    }
    if (chars_decode(&c, text, len) != 0)
        return SQLITE_NOMEM;
    for (int i = 0; i < c.n && w.rc == 0;) {
        int cl = c.cl[i], j = i + 1;
        if (cl == CL_SEP) {
            i++;
            continue;
        }
        if (cl == CL_HAN) {
            while (j < c.n && c.cl[j] == CL_HAN)
                j++;
            walk_han(&w, i, j);
        } else {
            while (j < c.n && is_word(c.cl[j]))
                j++;
            walk_word(&w, i, j);
        }
        i = j;
    }
    chars_free(&c);
    return w.rc;
}

/* ---- FTS5 glue ---- */

typedef struct fts_tok {
    kb_cjk_mode_t cjk;
    int synonyms;
} fts_tok;

static int tok_create(void *ctx, const char **argv, int argc, Fts5Tokenizer **out)
{
    fts_tok *t = calloc(1, sizeof(*t));
    (void)ctx;
    if (t == NULL)
        return SQLITE_NOMEM;
    t->cjk = KB_CJK_UNIBI;
    t->synonyms = 1;
    for (int i = 0; i < argc; i++) {
        const char *v = argv[i];
        if (strcmp(v, "unibi") == 0)
            t->cjk = KB_CJK_UNIBI;
        else if (strcmp(v, "uni") == 0)
            t->cjk = KB_CJK_UNI;
        else if (strcmp(v, "bi") == 0)
            t->cjk = KB_CJK_BI;
        else if (strcmp(v, "synonyms") == 0)
            t->synonyms = 1;
        else if (strcmp(v, "nosynonyms") == 0)
            t->synonyms = 0;
        else {
            free(t);
            return SQLITE_ERROR;
        }
    }
    *out = (Fts5Tokenizer *)t;
    return SQLITE_OK;
}

static void tok_delete(Fts5Tokenizer *p)
{
    free(p);
}

typedef struct fts_cb {
    void *ctx;
    int (*xToken)(void *, int, const char *, int, int, int);
} fts_cb;

static int fts_token(void *ctx, const kb_tok_t *t)
{
    fts_cb *cb = ctx;
    return cb->xToken(cb->ctx, t->colocated ? FTS5_TOKEN_COLOCATED : 0, t->text, t->len, t->start,
                      t->end);
}

static int tok_tokenize(Fts5Tokenizer *p, void *ctx, int flags, const char *text, int len,
                        int (*xToken)(void *, int, const char *, int, int, int))
{
    fts_tok *t = (fts_tok *)p;
    fts_cb cb = {ctx, xToken};
    kb_synonyms_t *syn = t->synonyms ? kb_synonyms_current() : NULL;
    kb_analyzer_t a = {.cjk = t->cjk, .query = (flags & FTS5_TOKENIZE_QUERY) != 0, .syn = syn};
    int rc = kb_analyze(&a, text, len, fts_token, &cb);
    kb_synonyms_unref(syn);
    return rc;
}

/* kb_fts_stats(tbl): "rows total0 total1 ..." - row count and token totals per column, for
 * the re-ranker's length normalization (kb_search.c). */
static void fts_stats(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int nval,
                      sqlite3_value **val)
{
    sqlite3_int64 rows = 0, tot;
    char buf[512];
    int len, ncol = api->xColumnCount(fts);
    (void)nval;
    (void)val;

    if (api->xRowCount(fts, &rows) != SQLITE_OK) {
        sqlite3_result_error(ctx, "kb_fts_stats: no row count", -1);
        return;
    }
    len = snprintf(buf, sizeof(buf), "%lld", (long long)rows);
    for (int i = 0; i < ncol && len < (int)sizeof(buf) - 24; i++) {
        if (api->xColumnTotalSize(fts, i, &tot) != SQLITE_OK)
            tot = 0;
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, " %lld", (long long)tot);
    }
    sqlite3_result_text(ctx, buf, len, SQLITE_TRANSIENT);
}

static fts5_api *fts5_api_of(sqlite3 *db)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
    sqlite3_step(st);
    sqlite3_finalize(st);
    return api;
}

int kb_register(sqlite3 *db)
{
    fts5_tokenizer tok = {tok_create, tok_delete, tok_tokenize};
    fts5_api *api = fts5_api_of(db);

    if (api == NULL || api->iVersion < 2)
        return KB_ERR_DB;
    if (api->xCreateTokenizer(api, "redress", NULL, &tok, NULL) != SQLITE_OK)
        return KB_ERR_DB;
    if (api->xCreateFunction(api, "kb_fts_stats", NULL, fts_stats, NULL) != SQLITE_OK ||
        api->xCreateFunction(api, "kb_rank", NULL, kb_rank_fn, NULL) != SQLITE_OK)
        return KB_ERR_DB;
    return 0;
}
