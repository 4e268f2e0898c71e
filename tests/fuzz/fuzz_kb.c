/*
 * fuzz_kb.c - libFuzzer target for the knowledge base's tokenizer and search (kb/).
 *
 * Set-up (once per process, LLVMFuzzerInitialize): the real synonym list (kb/synonyms.txt), an
 * in-memory SQLite database with kb_register + kb_migrate, and kb_fixture.jsonl (a dozen
 * templates and cases from kb/sample, one per category) imported with kb_import_file.
 *
 * Input: customer text.  When it holds a NUL byte, what follows the first NUL is the category
 * passed to kb_search (any bytes); otherwise the category is one of the real slugs or none,
 * chosen by the input's length.  Every input goes through:
 *
 *   kb_analyze   all three CJK modes x document/query mode x with/without synonyms, on the raw
 *                bytes (invalid UTF-8 included).  Every token must lie inside the text
 *                (0 <= start < end <= len, cstart < cend), be 1..KB_TOKEN_MAX bytes of valid
 *                UTF-8 without NUL (synonym tokens: '~' + a group word), and the first token of
 *                a call is never colocated.  kb_token.c promises that query mode gives back any
 *                document-mode term as itself, which is what makes kb_search's quoted MATCH
 *                terms exact: each term is fed back through query mode and compared.
 *   kb_search    never an error for any text ("hostile or empty text gives an empty result");
 *                at most limit hits; coverage within [0, 1]; strings present and valid UTF-8,
 *                snippets included (the [..] marks must not split a character); the category
 *                filter holds; no hits means KB_NO_MATCH.  Also kb_search_ex without re-ranking
 *                and per table.
 *   FTS5 MATCH   the raw text as an FTS5 query against both tables (prepared statement), which
 *                drives the tokenizer's FTS5 glue in query and prefix mode with arbitrary bytes;
 *                syntax errors are expected, crashes are not.
 */
#include "fuzz_util.h"

#include "kb_internal.h"

#include <sqlite3.h>

#define FZ_MAX_INPUT 8192

static sqlite3 *db;
static kb_synonyms_t *syn;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512] = "";
    (void)argc;
    (void)argv;
    FZ_CHECK(kb_set_synonyms_file(REDRESS_SOURCE_DIR "/kb/synonyms.txt", err, sizeof(err)) == 0,
             "synonyms: %s", err);
    syn = kb_synonyms_current();
    FZ_CHECK(syn != NULL, "no synonym list");
    FZ_CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK, "sqlite3_open");
    FZ_CHECK(kb_register(db) == 0, "kb_register: %s", sqlite3_errmsg(db));
    FZ_CHECK(kb_migrate(db, err, sizeof(err)) == 0, "kb_migrate: %s", err);
    int n = kb_import_file(db, REDRESS_FUZZ_DIR "/kb_fixture.jsonl", "fuzz", err, sizeof(err));
    FZ_CHECK(n > 0, "import of the fixture: %s", err);
    FZ_CHECK(kb_template_count(db) > 0 && kb_case_count(db) > 0, "fixture imported no records");
    return 0;
}

/* ---- kb_analyze ---- */

typedef struct tok_check {
    const kb_analyzer_t *a;
    int len; /* of the analyzed text */
    int ntok;
    int round; /* 1 while re-analyzing a term in query mode */
    const char *want;
    int want_len;
    int got; /* tokens seen in the round trip */
    int same;
} tok_check;

static int roundtrip_tok(void *ctx, const kb_tok_t *t)
{
    tok_check *rt = ctx;
    rt->got++;
    rt->same = t->len == rt->want_len && memcmp(t->text, rt->want, (size_t)t->len) == 0;
    return 0;
}

static int check_tok(void *ctx, const kb_tok_t *t)
{
    tok_check *c = ctx;
    const kb_analyzer_t *a = c->a;

    FZ_CHECK(t->start >= 0 && t->start < t->end && t->end <= c->len,
             "token bytes [%d, %d) outside the text of %d bytes", t->start, t->end, c->len);
    FZ_CHECK(t->cstart >= 0 && t->cstart < t->cend, "token characters [%d, %d)", t->cstart,
             t->cend);
    FZ_CHECK(c->ntok > 0 || !t->colocated, "the first token is colocated");
    FZ_CHECK(t->kind >= KB_TOK_UNI && t->kind <= KB_TOK_SYN, "token kind %d", (int)t->kind);
    FZ_CHECK(t->len >= 1 && t->text != NULL, "empty token");
    c->ntok++;
    if (a->query && t->kind == KB_TOK_SYN && t->start == 0 && t->end == c->len)
        return 0; /* query mode takes '~'-text verbatim: any bytes */
    FZ_CHECK(memchr(t->text, 0, (size_t)t->len) == NULL, "NUL inside a token");
    FZ_CHECK(fz_utf8_ok(t->text, (size_t)t->len), "token is not valid UTF-8: \"%.*s\"", t->len,
             t->text);
    if (t->kind == KB_TOK_SYN) {
        FZ_CHECK(t->text[0] == KB_SYN_PREFIX && t->len >= 2, "synonym token \"%.*s\"", t->len,
                 t->text);
    } else {
        FZ_CHECK(t->len <= KB_TOKEN_MAX, "token of %d bytes, KB_TOKEN_MAX %d", t->len,
                 KB_TOKEN_MAX);
        FZ_CHECK(t->text[0] != KB_SYN_PREFIX, "a text token starts with the synonym prefix");
    }
    if (a->query)
        return 0;

    /* kb_search quotes document-mode terms into FTS5 MATCH: query mode must give them back */
    kb_analyzer_t q = {.cjk = a->cjk, .query = 1, .syn = a->syn};
    tok_check rt = {.a = &q, .want = t->text, .want_len = t->len};
    char copy[4 * KB_TOKEN_MAX + 8];
    FZ_CHECK((size_t)t->len < sizeof(copy) || t->kind == KB_TOK_SYN, "token too long to copy");
    if ((size_t)t->len >= sizeof(copy))
        return 0;
    memcpy(copy, t->text, (size_t)t->len);
    rt.want = copy;
    FZ_CHECK(kb_analyze(&q, copy, t->len, roundtrip_tok, &rt) == 0, "query-mode analyze failed");
    FZ_CHECK(rt.got == 1 && rt.same,
             "term \"%.*s\" (kind %d, cjk mode %d) does not come back as itself in query mode "
             "(%d tokens): kb_search's MATCH would miss it",
             t->len, copy, (int)t->kind, (int)a->cjk, rt.got);
    return 0;
}

static void fuzz_analyze(const uint8_t *data, size_t size)
{
    /* exactly size bytes, no terminator: kb_analyze takes (text, len) */
    char *buf = malloc(size ? size : 1);
    FZ_CHECK(buf != NULL, "out of memory");
    if (size)
        memcpy(buf, data, size);
    for (int mode = KB_CJK_UNIBI; mode <= KB_CJK_BI; mode++)
        for (int query = 0; query <= 1; query++)
            for (int use_syn = 0; use_syn <= 1; use_syn++) {
                kb_analyzer_t a = {
                    .cjk = (kb_cjk_mode_t)mode, .query = query, .syn = use_syn ? syn : NULL};
                tok_check c = {.a = &a, .len = (int)size};
                int rc = kb_analyze(&a, buf, (int)size, check_tok, &c);
                FZ_CHECK(rc == 0, "kb_analyze returned %d", rc);
            }
    free(buf);
}

/* ---- kb_search ---- */

static void check_result(const kb_result_t *r, int limit, const char *category, int tables)
{
    FZ_CHECK(r != NULL, "kb_search returned 0 without a result");
    FZ_CHECK(r->count >= 0 && r->count <= limit, "%d hits for limit %d", r->count, limit);
    FZ_CHECK(r->confidence >= KB_NO_MATCH && r->confidence <= KB_ANSWER, "confidence %d",
             (int)r->confidence);
    FZ_CHECK(r->count > 0 || r->confidence == KB_NO_MATCH, "confidence %d without hits",
             (int)r->confidence);
    for (int i = 0; i < r->count; i++) {
        const kb_hit_t *h = &r->hits[i];
        FZ_CHECK(h->kind == KB_TEMPLATE || h->kind == KB_CASE, "hit kind %d", (int)h->kind);
        FZ_CHECK(tables & (h->kind == KB_TEMPLATE ? 1 : 2), "hit from a table not searched");
        FZ_CHECK(h->coverage >= 0 && h->coverage <= 1.000001, "coverage %f", h->coverage);
        FZ_CHECK(h->score == h->score, "score is NaN");
        FZ_CHECK(h->title && h->category && h->text && h->key && h->snippet, "missing string");
        const char *strs[] = {h->title, h->category, h->text, h->key, h->snippet};
        for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++)
            FZ_CHECK(fz_utf8_ok(strs[k], strlen(strs[k])), "hit string %zu not valid UTF-8: %s", k,
                     strs[k]);
        if (category && kb_category_name(category))
            FZ_CHECK(strcmp(h->category, category) == 0, "hit in %s for category %s", h->category,
                     category);
    }
}

static void fuzz_search(const char *text, const char *category, int limit)
{
    kb_result_t *r = NULL;
    int rc = kb_search(db, text, category, limit, &r);
    FZ_CHECK(rc == 0, "kb_search returned %d (%s) for hostile text", rc, sqlite3_errmsg(db));
    check_result(r, limit, category, 3);
    kb_result_free(r);

    kb_search_opts_t o;
    kb_search_defaults(&o);
    o.rerank = 0;
    o.tables = 1 + (int)(strlen(text) % 3); /* 1 templates, 2 cases, 3 both */
    rc = kb_search_ex(db, text, category, limit, &o, &r);
    FZ_CHECK(rc == 0, "kb_search_ex returned %d (%s)", rc, sqlite3_errmsg(db));
    check_result(r, limit, category, o.tables);
    kb_result_free(r);
}

static void fuzz_match(const char *text)
{
    static const char *const sql[] = {
        "SELECT rowid FROM kb_templates_fts WHERE kb_templates_fts MATCH ?1 LIMIT 50",
        "SELECT rowid, bm25(kb_cases_fts) FROM kb_cases_fts WHERE kb_cases_fts MATCH ?1 "
        "ORDER BY 2 LIMIT 50",
    };
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        sqlite3_stmt *st = NULL;
        FZ_CHECK(sqlite3_prepare_v2(db, sql[i], -1, &st, NULL) == SQLITE_OK, "prepare: %s",
                 sqlite3_errmsg(db));
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
        int s, rows = 0;
        while ((s = sqlite3_step(st)) == SQLITE_ROW)
            rows++;
        FZ_CHECK(s == SQLITE_DONE || s == SQLITE_ERROR, "MATCH step gave %d: %s", s,
                 sqlite3_errmsg(db));
        sqlite3_finalize(st);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FZ_MAX_INPUT)
        return -1;
    fuzz_analyze(data, size);

    char *text = fz_strndup0(data, size);
    const char *category = NULL;
    size_t tlen = strlen(text);
    if (tlen < size) {
        category = text + tlen + 1;
    } else {
        int nc = kb_category_count();
        int pick = (int)(size % (size_t)(nc + 1));
        category = pick < nc ? kb_category_slug(pick) : NULL;
    }
    int limit = 1 + (int)(size % 12);
    fuzz_search(text, category, limit);
    fuzz_match(text);
    free(text);
    return 0;
}
