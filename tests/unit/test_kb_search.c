/*
 * test_kb_search.c - ranking, snippets, category filter and the confidence levels that flows
 * act on; the df cache and the analyzed-document cache give what an uncached search gives, and
 * a searcher (kept statements) what kb_search gives.
 */
#include "test_kb.h"

#include <dirent.h>
#include <math.h>

static sqlite3 *g_db;

static kb_result_t *search(const char *q, const char *cat, int limit)
{
    kb_result_t *r = NULL;
    if (kb_search(g_db, q, cat, limit, &r) != 0) {
        fprintf(stderr, "kb_search failed: %s\n", sqlite3_errmsg(g_db));
        exit(2);
    }
    return r;
}

static void answer_for_a_clear_question(void)
{
    kb_result_t *r = search("航班延误了能赔偿吗", NULL, 5);
    CHECK(r->count > 0);
    CHECK(r->hits[0].kind == KB_TEMPLATE && strcmp(r->hits[0].key, "flight-001") == 0);
    CHECK_MSG(r->confidence == KB_ANSWER, "confidence %d coverage %.2f", r->confidence,
              r->hits[0].coverage);
    CHECK(r->hits[0].coverage >= KB_ANSWER_COVERAGE);
    CHECK(strcmp(r->hits[0].deadline, "7天内") == 0);
    CHECK(strcmp(r->hits[0].compensation, "200元补偿") == 0);
    CHECK(r->hits[0].severity == 2);
    kb_result_free(r);
    r = search("我想退钱", NULL, 5); /* through the synonym 退钱 ~ 退款 */
    CHECK(r->count > 0 && strcmp(r->hits[0].key, "refund-001") == 0);
    CHECK(r->confidence == KB_ANSWER);
    kb_result_free(r);
}

static void suggest_for_a_partial_match(void)
{
    /* half the question (rebooking fees) is something the knowledge base does not cover */
    kb_result_t *r = search("延误的航班改签要收费吗", NULL, 5);
    CHECK(r->count > 0 && strcmp(r->hits[0].key, "flight-001") == 0);
    CHECK_MSG(r->confidence == KB_SUGGEST, "confidence %d coverage %.2f", r->confidence,
              r->hits[0].coverage);
    kb_result_free(r);
}

static void no_match_for_unrelated_text(void)
{
    kb_result_t *r = search("今天天气怎么样", NULL, 5);
    CHECK_MSG(r->confidence == KB_NO_MATCH, "confidence %d", r->confidence);
    kb_result_free(r);
    r = search("你好", NULL, 5);
    CHECK(r->confidence == KB_NO_MATCH);
    kb_result_free(r);
    r = search("", NULL, 5);
    CHECK(r->confidence == KB_NO_MATCH && r->count == 0);
    kb_result_free(r);
}

static void title_match_ranks_first(void)
{
    kb_result_t *r = search("手机信号差", NULL, 5);
    CHECK(r->count > 0 && strcmp(r->hits[0].key, "signal-001") == 0);
    for (int i = 1; i < r->count; i++)
        CHECK(r->hits[i].score <= r->hits[i - 1].score);
    kb_result_free(r);
}

static void snippets_highlight_matches(void)
{
    kb_result_t *r = search("退款要多久", NULL, 5);
    CHECK(r->count > 0);
    CHECK_MSG(strstr(r->hits[0].snippet, "[退款]") != NULL, "snippet %s", r->hits[0].snippet);
    kb_result_free(r);
    r = search("签收", NULL, 5);
    CHECK(r->count > 0);
    int found = 0;
    for (int i = 0; i < r->count; i++)
        found |= strstr(r->hits[i].snippet, "[签收]") != NULL;
    CHECK(found);
    kb_result_free(r);
    /* only function characters: they match but are never highlighted, so the hits have no
     * ranges (a NULL range list once went to memcpy: fuzz_kb found it) */
    r = search("的 了 是 我", NULL, 5);
    CHECK(r->count > 0);
    for (int i = 0; i < r->count; i++)
        CHECK_MSG(r->hits[i].snippet[0] && !strchr(r->hits[i].snippet, '['), "snippet %s",
                  r->hits[i].snippet);
    kb_result_free(r);
}

static void category_filter(void)
{
    kb_result_t *r = search("年费", "bank.fee", 10);
    CHECK(r->count == 2); /* a template and a case */
    for (int i = 0; i < r->count; i++)
        CHECK(strcmp(r->hits[i].category, "bank.fee") == 0);
    kb_result_free(r);
    r = search("年费", "travel.hotel", 10);
    CHECK(r->count == 0 && r->confidence == KB_NO_MATCH);
    kb_result_free(r);
}

static void cases_are_found_but_never_answer(void)
{
    kb_result_t *r = search("酒店房间有异味", NULL, 5);
    CHECK(r->count > 0 && r->hits[0].kind == KB_CASE);
    CHECK(strcmp(r->hits[0].title, "酒店房间有异味要求换房") == 0);
    CHECK(r->confidence == KB_SUGGEST);
    kb_result_free(r);
}

static void limit_is_respected(void)
{
    kb_result_t *r = search("的 了 退款 年费 信号 快递 航班 酒店", NULL, 2);
    CHECK(r->count == 2);
    kb_result_free(r);
}

/* The same results as an uncached search (a second in-memory copy is never cached). */
static int same_hits(const kb_result_t *a, const kb_result_t *b)
{
    if (a->count != b->count || a->confidence != b->confidence)
        return 0;
    for (int i = 0; i < a->count; i++)
        if (strcmp(a->hits[i].key, b->hits[i].key) != 0 || a->hits[i].score != b->hits[i].score)
            return 0;
    return 1;
}

/* A template that the fixture lacks, for the tests that add one. */
static const char pet_template[] =
    "{\"kind\":\"template\",\"key\":\"pet-001\",\"title\":\"宠物托运受伤\","
    "\"category\":\"travel.flight\",\"severity\":2,\"conditions\":\"托运的宠物受伤\","
    "\"text\":\"您的宠物托运问题我们会在24小时内核实。\",\"steps\":[\"核实\"]}\n";

/* Imports JSON Lines text into db; returns what kb_import_file returns. */
static int import_jsonl(sqlite3 *db, const char *jsonl)
{
    char err[256];
    const char *file = kb_temp_file(jsonl);
    int n = kb_import_file(db, file, "t", err, sizeof(err));
    unlink(file);
    return n;
}

/* The key of a search's best hit on searcher s, or "" (a static buffer). */
static const char *top_key(kb_searcher_t *s, const char *q)
{
    static char key[64];
    kb_result_t *r = NULL;
    key[0] = 0;
    if (kb_searcher_search(s, q, NULL, 5, &r) == 0 && r->count > 0)
        snprintf(key, sizeof(key), "%s", r->hits[0].key);
    kb_result_free(r);
    return key;
}

/* A held searcher (kb_searcher_hold) keeps the snapshot of its first search: a template added
 * on another connection is not found until kb_searcher_end, and then it is. */
static void held_snapshot_lasts_until_end(void)
{
    char err[256], path[64], side[80];
    const char *q = "宠物托运受伤了，航班也延误了";
    snprintf(path, sizeof(path), "/tmp/test_kb_hold_XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    sqlite3 *db = NULL, *w = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK && kb_register(db) == 0 &&
          sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) == SQLITE_OK &&
          kb_migrate(db, err, sizeof(err)) == 0 &&
          kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) >= 0);
    CHECK(sqlite3_open(path, &w) == SQLITE_OK && kb_register(w) == 0);
    kb_searcher_t *s = kb_searcher_open(db);
    CHECK(s != NULL);
    kb_searcher_hold(s);
    CHECK(strcmp(top_key(s, q), "pet-001") != 0);
    CHECK(!sqlite3_get_autocommit(db)); /* the snapshot is held */
    const char *add = kb_temp_file(pet_template);
    CHECK(kb_import_file(w, add, "t", err, sizeof(err)) == 1);
    unlink(add);
    CHECK_MSG(strcmp(top_key(s, q), "pet-001") != 0, "a held snapshot saw a later import");
    CHECK(kb_searcher_end(s) == 0 && sqlite3_get_autocommit(db));
    CHECK(kb_searcher_end(s) == 0); /* nothing held: nothing to do */
    CHECK_MSG(strcmp(top_key(s, q), "pet-001") == 0, "the next snapshot misses the import");
    kb_searcher_close(s); /* ends the snapshot of that search */
    CHECK(sqlite3_get_autocommit(db));
    CHECK(sqlite3_close(w) == SQLITE_OK && sqlite3_close(db) == SQLITE_OK);
    unlink(path);
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
}

/* Document-frequency estimates are remembered for a database file while its statistics stay
 * the same: a repeated search gives the same hits and scores as a database that does not
 * cache (in memory), and a new document is found at once (the cache is dropped). */
static void df_cache_follows_the_data(void)
{
    char err[256], path[64];
    snprintf(path, sizeof(path), "/tmp/test_kb_cache_XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK && kb_register(db) == 0 &&
          kb_migrate(db, err, sizeof(err)) == 0);
    CHECK(kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) >= 0 &&
          kb_import_file(db, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) >= 0);
    const char *q =
        "我的退款一直没到账，退货商家早就签收了，航班延误改签还要收费，银行卡年费也误扣了";
    int ok = 1;
    for (int round = 0; round < 3 && ok; round++) {
        kb_result_t *file = NULL, *mem = NULL;
        ok = kb_search(db, q, NULL, 5, &file) == 0 && kb_search(g_db, q, NULL, 5, &mem) == 0 &&
             file->count > 0 && same_hits(file, mem);
        kb_result_free(file);
        kb_result_free(mem);
    }
    CHECK_MSG(ok, "cached search differs from the uncached one");
    /* a template with a word no document had: found by the next search */
    const char *add = kb_temp_file(pet_template);
    kb_result_t *r = NULL;
    CHECK(kb_search(db, "宠物托运受伤了，航班也延误了", NULL, 5, &r) == 0);
    int before = r->count > 0 && strcmp(r->hits[0].key, "pet-001") == 0;
    kb_result_free(r);
    CHECK(!before);
    /* an in-memory twin with the same documents: scores must agree after the import too */
    sqlite3 *twin = kb_test_db();
    int imported =
        kb_import_file(twin, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) >= 0 &&
        kb_import_file(twin, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) >= 0 &&
        kb_import_file(twin, add, "t", err, sizeof(err)) >= 0 &&
        kb_import_file(db, add, "t", err, sizeof(err)) >= 0;
    unlink(add);
    kb_result_t *t = NULL;
    int after = imported && kb_search(db, "宠物托运受伤了，航班也延误了", NULL, 5, &r) == 0 &&
                kb_search(twin, "宠物托运受伤了，航班也延误了", NULL, 5, &t) == 0 && r->count > 0 &&
                strcmp(r->hits[0].key, "pet-001") == 0 && same_hits(r, t);
    kb_result_free(r);
    kb_result_free(t);
    sqlite3_close(twin);
    sqlite3_close(db);
    unlink(path);
    CHECK_MSG(after, "after an import the cached search differs from an uncached one");
}

/* What the re-ranker reads of a document, one line per token (column, text, byte range,
 * ordinal) and each column's length in positions: from the token stream, or from the kept
 * term index. */
typedef struct doc_view {
    char s[32768];
    size_t n;
    int ntok, positions[KB_DOC_COLS], via_index;
    struct {
        char text[64];
        int len, col;
    } fresh[1024]; /* the stream of kb_analyze, for looking each token up in an index */
    int nfresh, col;
} doc_view;

static void view_line(doc_view *v, int col, const char *text, int len, int start, int end, int ord)
{
    int w = snprintf(v->s + v->n, sizeof(v->s) - v->n, "%d %.*s %d %d %d\n", col, len, text, start,
                     end, ord);
    if (w > 0 && (size_t)w < sizeof(v->s) - v->n)
        v->n += (size_t)w;
}

static int view_tok(void *ctx, int col, const kb_tok_t *t)
{
    doc_view *v = ctx;
    view_line(v, col, t->text, t->len, t->start, t->end, v->ntok++);
    v->positions[col] += !t->colocated;
    return 0;
}

static int plain_tok(void *ctx, const kb_tok_t *t)
{
    doc_view *v = ctx;
    return view_tok(v, v->col, t);
}

static int fresh_tok(void *ctx, const kb_tok_t *t)
{
    doc_view *v = ctx;
    if (v->nfresh < 1024 && t->len < 64) {
        memcpy(v->fresh[v->nfresh].text, t->text, (size_t)t->len);
        v->fresh[v->nfresh].len = t->len;
        v->fresh[v->nfresh++].col = v->col;
    }
    return 0;
}

/* Each token of the stream, in order, found in the index with the same ordinal. */
static int view_index(void *ctx, const kb_doc_index_t *ix)
{
    doc_view *v = ctx;
    v->via_index = 1;
    for (int c = 0; c < KB_DOC_COLS; c++)
        v->positions[c] = kb_doc_index_positions(ix, c);
    for (int i = 0; i < v->nfresh; i++) {
        const kb_doc_occ_t *o;
        const char *s = v->fresh[i].text;
        int len = v->fresh[i].len, n = kb_doc_index_find(ix, s, len, kb_text_hash(s, len), &o);
        int j = 0;
        while (j < n && o[j].ord != (uint32_t)i)
            j++;
        if (j == n)
            view_line(v, -1, "(missing)", 9, 0, 0, i);
        else
            view_line(v, (int)o[j].col, s, len, (int)o[j].start, (int)o[j].end, (int)o[j].ord);
        for (int k = 1; k < n; k++) /* stream order within a token */
            if (o[k].ord <= o[k - 1].ord)
                view_line(v, -1, "(order)", 7, 0, 0, i);
    }
    return 0;
}

/* kb_doc_analyze of template id with these columns (NULL: left out) next to kb_analyze of
 * each column: 1 when the re-ranker sees the same; *via_index says whether it came from a kept
 * index. */
static int doc_view_matches(long long id, const char *const *cols, int ncols, int *via_index)
{
    static doc_view cached, fresh;
    kb_synonyms_t *syn = kb_synonyms_current();
    kb_analyzer_t a = {.cjk = KB_CJK_UNIBI, .query = 0, .syn = syn};
    memset(&cached, 0, sizeof(cached));
    memset(&fresh, 0, sizeof(fresh));
    for (int c = 0; c < ncols; c++)
        if (cols[c]) {
            cached.col = fresh.col = c;
            kb_analyze(&a, cols[c], (int)strlen(cols[c]), fresh_tok, &cached);
            kb_analyze(&a, cols[c], (int)strlen(cols[c]), plain_tok, &fresh);
        }
    kb_doc_analyze(KB_TEMPLATE, id, &a, cols, ncols, view_tok, view_index, &cached);
    kb_synonyms_unref(syn);
    *via_index = cached.via_index;
    return fresh.n > 0 && memcmp(cached.positions, fresh.positions, sizeof(fresh.positions)) == 0 &&
           strcmp(cached.s, fresh.s) == 0;
}

/* The same with one text in column 3. */
static int col_view_matches(long long id, const char *text, int *via_index)
{
    const char *cols[6] = {NULL, NULL, NULL, text, NULL, NULL};
    return doc_view_matches(id, cols, 6, via_index);
}

/* The re-ranker's analyzed documents (kb_doccache.c): a kept index says what the analysis
 * says, a changed text or synonym list is analyzed again, and searches give the same hits and
 * scores from a full cache as from an empty one. */
static void doc_cache_follows_the_documents(void)
{
    const char *a = "航班延误4小时，要求赔偿并退款，订单号DD2026 iPhone13",
               *b = "酒店房间有异味，要求换房或者退钱";
    size_t n0, n1, n2, b1, b2, b3;
    int ix;
    kb_doc_cache_clear();
    kb_doc_cache_stats(&n0, &b1);
    CHECK(n0 == 0 && b1 == 0);
    CHECK_MSG(col_view_matches(77, a, &ix) && !ix, "first analysis differs");
    kb_doc_cache_stats(&n1, &b1); /* seen once: an entry without an index */
    CHECK_MSG(col_view_matches(77, a, &ix) && !ix, "second analysis differs");
    kb_doc_cache_stats(&n2, &b2); /* seen twice: the index is kept */
    CHECK(n1 == 1 && n2 == 1 && b1 < 256 && b2 > b1 + strlen(a));
    CHECK_MSG(col_view_matches(77, a, &ix) && ix, "the kept index differs");
    kb_doc_cache_stats(&n2, &b3);
    CHECK(n2 == 1 && b3 == b2); /* a hit adds nothing */
    /* the document was edited: same id and column, other text */
    CHECK_MSG(col_view_matches(77, b, &ix) && !ix, "an edited document used its old index");
    /* the synonym list changed: 退钱 no longer meets ~退款 */
    char err[256];
    CHECK(kb_set_synonyms_file(NULL, err, sizeof(err)) == 0);
    int nosyn = col_view_matches(77, b, &ix) && !ix;
    CHECK(kb_set_synonyms_file(kb_fixture("synonyms.txt"), err, sizeof(err)) == 0);
    CHECK_MSG(nosyn, "the index of the old synonym list used");
    CHECK_MSG(col_view_matches(77, b, &ix) && !ix, "the index of no synonym list used");
    /* an edit that keeps the length: the kept index is of the old text */
    const char *edit = "酒店房间有异味，要求换房或者退款";
    CHECK(strlen(edit) == strlen(b));
    for (int i = 0; i < 3; i++)
        CHECK(col_view_matches(79, b, &ix) && ix == (i == 2));
    CHECK_MSG(col_view_matches(79, edit, &ix) && !ix,
              "an edit of the same length used the old index");
    /* a repeated token: every occurrence, in order (退 three times, 款 twice) */
    const char *rep = "退款退款，退货";
    for (int i = 0; i < 3; i++)
        CHECK_MSG(col_view_matches(78, rep, &ix) && ix == (i == 2), "repeated tokens differ");
    /* several columns (one left out): each token's column, range and ordinal across them, and
     * each column's length; an edit of one column is a new document */
    const char *cols[6] = {"退款到账慢", NULL, "退款 refund", "退款退款", NULL, "联系客服退款"};
    for (int i = 0; i < 3; i++)
        CHECK_MSG(doc_view_matches(80, cols, 6, &ix) && ix == (i == 2), "columns differ");
    cols[5] = "联系客服退货";
    CHECK_MSG(doc_view_matches(80, cols, 6, &ix) && !ix, "an edited column used the old index");

    const char *qs[] = {"航班延误了能赔偿吗", "我想退钱", "银行卡年费误扣了，要求退还",
                        "快递一直没到，手机信号也不好"};
    int ok = 1;
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        kb_result_t *warm = NULL, *cold = NULL;
        kb_result_t *first = search(qs[i], NULL, 5); /* its candidates are seen ... */
        kb_result_free(search(qs[i], NULL, 5));      /* ... and kept */
        warm = search(qs[i], NULL, 5);
        kb_doc_cache_clear();
        cold = search(qs[i], NULL, 5);
        ok = ok && warm->count > 0 && same_hits(first, warm) && same_hits(warm, cold);
        for (int h = 0; ok && h < warm->count; h++)
            ok = strcmp(warm->hits[h].snippet, cold->hits[h].snippet) == 0 &&
                 warm->hits[h].coverage == cold->hits[h].coverage;
        kb_result_free(first);
        kb_result_free(warm);
        kb_result_free(cold);
    }
    CHECK_MSG(ok, "a search from the cache differs from one without it");
    kb_doc_cache_stats(&n1, &b1);
    CHECK(n1 > 0);
}

/* No statement of the connection is mid-step (none holds a read transaction open). */
static int none_busy(sqlite3 *db)
{
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st))
        if (sqlite3_stmt_busy(st))
            return 0;
    return 1;
}

/* Statements of the search's own (FTS5 keeps statements of its own on the connection). */
static int searcher_statements(sqlite3 *db)
{
    int n = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st)) {
        const char *sql = sqlite3_sql(st);
        n += strstr(sql, "MATCH ?1") || strstr(sql, "kb_fts_stats(") || strcmp(sql, "BEGIN") == 0 ||
             strcmp(sql, "COMMIT") == 0;
    }
    return n;
}

/* A searcher (statements kept) finds what kb_search finds, leaves no transaction open, sees
 * documents added after its statements were prepared, runs inside a caller's transaction
 * without ending it, and leaves no statement behind when closed. */
static void searcher_keeps_statements(void)
{
    char err[256];
    sqlite3 *db = kb_test_db();
    CHECK(kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) >= 0 &&
          kb_import_file(db, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) >= 0);
    kb_searcher_t *s = kb_searcher_open(db);
    CHECK(s != NULL);
    const char *qs[] = {"航班延误了能赔偿吗", "我想退钱", "银行卡年费误扣了，要求退还",
                        "今天天气怎么样", "宠物托运受伤了"};
    int ok = 1;
    for (int round = 0; round < 2; round++) /* prepared, then kept */
        for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
            kb_result_t *a = NULL, *b = NULL;
            ok = ok && kb_searcher_search(s, qs[i], NULL, 5, &a) == 0 &&
                 kb_search(db, qs[i], NULL, 5, &b) == 0 && same_hits(a, b) &&
                 sqlite3_get_autocommit(db) && none_busy(db);
            for (int h = 0; ok && h < a->count; h++)
                ok = strcmp(a->hits[h].snippet, b->hits[h].snippet) == 0;
            kb_result_free(a);
            kb_result_free(b);
        }
    CHECK_MSG(ok, "a searcher differs from kb_search or left a statement running");
    CHECK(searcher_statements(db) >= 4); /* kept: stats, df, candidates, BEGIN, COMMIT */

    CHECK(import_jsonl(db, pet_template) == 1);
    kb_result_t *r = NULL;
    CHECK(kb_searcher_search(s, "宠物托运受伤了", NULL, 5, &r) == 0 && r->count > 0 &&
          strcmp(r->hits[0].key, "pet-001") == 0);
    kb_result_free(r);

    CHECK(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    r = NULL;
    CHECK(kb_searcher_search(s, "航班延误了能赔偿吗", NULL, 5, &r) == 0 && r->count > 0);
    kb_result_free(r);
    CHECK_MSG(!sqlite3_get_autocommit(db), "the search ended the caller's transaction");
    CHECK(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);

    kb_searcher_close(s);
    CHECK(searcher_statements(db) == 0);
    CHECK(sqlite3_close(db) == SQLITE_OK);
}

/* kb_search_ex with the small tables' candidates from memory (memidx) or from FTS5; candidates
 * 0 for the default number. */
static kb_result_t *search_via(sqlite3 *db, const char *q, const char *cat, int limit, int memidx,
                               int candidates)
{
    kb_search_opts_t o;
    kb_result_t *r = NULL;
    kb_search_defaults(&o);
    o.memidx = memidx;
    if (candidates > 0)
        o.candidates = candidates;
    if (kb_search_ex(db, q, cat, limit, &o, &r) != 0) {
        fprintf(stderr, "kb_search_ex failed: %s\n", sqlite3_errmsg(db));
        exit(2);
    }
    return r;
}

/* The same hits, scores to the bit, coverage, snippets and fields (keys too, with_keys: not
 * between two databases, since kb_case_add makes each case's key unique); 0 with a note on
 * stderr if not. */
static int identical_hits(const kb_result_t *a, const kb_result_t *b, const char *q,
                          const char *cat, int with_keys)
{
    int same = a->count == b->count && a->confidence == b->confidence;
    for (int i = 0; same && i < a->count; i++) {
        const kb_hit_t *x = &a->hits[i], *y = &b->hits[i];
        same = x->kind == y->kind && x->id == y->id && x->score == y->score &&
               x->coverage == y->coverage && strcmp(x->snippet, y->snippet) == 0 &&
               strcmp(x->title, y->title) == 0 && strcmp(x->category, y->category) == 0 &&
               strcmp(x->text, y->text) == 0 && (!with_keys || strcmp(x->key, y->key) == 0) &&
               !x->deadline == !y->deadline &&
               (!x->deadline || !strcmp(x->deadline, y->deadline)) &&
               !x->compensation == !y->compensation &&
               (!x->compensation || !strcmp(x->compensation, y->compensation)) &&
               x->severity == y->severity;
    }
    if (!same)
        fprintf(stderr, "  differs for \"%s\" (%s): %d and %d hits\n", q, cat ? cat : "any",
                a->count, b->count);
    return same;
}

static int identical(const kb_result_t *a, const kb_result_t *b, const char *q, const char *cat)
{
    return identical_hits(a, b, q, cat, 1);
}

static unsigned long memidx_builds(void)
{
    unsigned long builds;
    size_t bytes;
    kb_memidx_stats(&builds, &bytes);
    return builds;
}

/* The small tables' postings in memory give exactly what FTS5 and the analysis of each row give:
 * the same hits in the same order with the same scores, coverage and snippets, for every
 * customer line of the bench's conversations, with and without a category.  Also with only 3
 * candidates a table, fewer than match, so that which documents make the cut (kb_rank's order,
 * its ties) is compared too, not only the re-rank of all of them. */
static void memory_postings_match_fts5(void)
{
    char path[4096], line[2048];
    const char *cats[] = {NULL, "travel.flight", "ecom.refund", "bank.fee"};
    int n = 0, ok = 1;
    unsigned long before = memidx_builds();
    snprintf(path, sizeof(path), "%s/bench/conversations", REDRESS_SOURCE_DIR);
    DIR *dir = opendir(path);
    CHECK(dir != NULL);
    struct dirent *e;
    while (dir && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/bench/conversations/%s", REDRESS_SOURCE_DIR, e->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\n")] = 0;
            if (line[0] == '#' || line[0] == 0)
                continue;
            for (size_t c = 0; c < 2 * sizeof(cats) / sizeof(cats[0]); c++) {
                const char *cat = cats[c % (sizeof(cats) / sizeof(cats[0]))];
                int few = c >= sizeof(cats) / sizeof(cats[0]) ? 3 : 0, limit = few ? 3 : 10;
                kb_result_t *a = search_via(g_db, line, cat, limit, 0, few);
                kb_result_t *b = search_via(g_db, line, cat, limit, 1, few);
                ok &= identical(a, b, line, cat);
                n += a->count > 0;
                kb_result_free(a);
                kb_result_free(b);
            }
        }
        if (f)
            fclose(f);
    }
    if (dir)
        closedir(dir);
    CHECK_MSG(ok, "the in-memory candidates differ from FTS5's");
    CHECK_MSG(n > 150, "%d searches found something", n); /* not an empty comparison */
    CHECK(memidx_builds() == before + 2); /* templates and cases: built once, then kept */
}

/* Which documents make the cut when more match than there are candidates: 300 templates, each
 * with some of the query's words (some the same, so kb_rank ties), in two categories.  Both
 * ways keep the same ones: kb_rank's order, its ties (the lowest id first) and each term's idf when
 * category words lead the MATCH.  Each word is in about half of the templates, so that the
 * re-rank finds the candidates' postings in the common terms' document maps (kb_memidx.c). */
static void memory_postings_make_the_same_cut(void)
{
    static const char *const words[] = {"行李", "破损", "赔偿", "延误", "改签", "退票"};
    enum { NTPL = 300, CAP = 256 * 1024 };
    char *jsonl = malloc(CAP);
    size_t n = 0;
    CHECK(jsonl != NULL);
    for (int i = 0; jsonl && i < NTPL; i++) {
        char text[256] = "";
        for (int w = 0; w < 6; w++)
            if ((i >> (w % 4)) & 1 || w == i % 6)
                for (int k = i < 60 ? 0 : (i / 7 + w) % 3; k >= 0; k--) /* 1-3 times */
                    strcat(text, words[w]);
        n += (size_t)snprintf(
            jsonl + n, CAP - n,
            "{\"kind\":\"template\",\"key\":\"cut-%03d\",\"title\":\"航空服务%d%s\","
            "\"category\":\"%s\",\"severity\":2,\"text\":\"%s。\"}\n",
            i, i % 7, i >= 60 && i % 5 == 0 ? words[i % 6] : "",
            i % 3 ? "travel.flight" : "general", text);
    }
    sqlite3 *db = kb_test_db();
    CHECK(n < CAP && import_jsonl(db, jsonl ? jsonl : "") == NTPL);
    free(jsonl);
    const char *qs[] = {"行李破损了要赔偿", "航班延误改签退票", "行李延误", "退票赔偿"};
    const char *cats[] = {NULL, "travel.flight", "general"};
    int ok = 1;
    for (size_t q = 0; q < sizeof(qs) / sizeof(qs[0]); q++)
        for (size_t c = 0; c < sizeof(cats) / sizeof(cats[0]); c++)
            for (int few = 3; few <= 12; few += 9) {
                kb_result_t *a = search_via(db, qs[q], cats[c], few, 0, few);
                kb_result_t *b = search_via(db, qs[q], cats[c], few, 1, few);
                ok &= a->count == few && identical(a, b, qs[q], cats[c]);
                kb_result_free(a);
                kb_result_free(b);
            }
    CHECK_MSG(ok, "the in-memory candidates make another cut than FTS5's");
    CHECK(sqlite3_close(db) == SQLITE_OK);
}

/* Coverage weighs each query character: fully when a hit term covers it as a whole (a
 * bigram), by half when only the character matched on its own inside one of the query's
 * bigrams.  For "雨伞借用": a has it all (1), b' only 借用, and b 借用 with 雨 and 伞 apart, which
 * adds half of what a's 雨伞 adds.  Both ways, memory and FTS5. */
static void coverage_counts_lone_characters_by_half(void)
{
    static const char *const keys[] = {"cov-a", "cov-b", "cov-b2"};
    sqlite3 *db = kb_test_db();
    CHECK(import_jsonl(db, "{\"kind\":\"template\",\"key\":\"cov-a\",\"title\":\"雨伞借用\","
                           "\"category\":\"general\",\"severity\":1,\"text\":\"前台。\"}\n"
                           "{\"kind\":\"template\",\"key\":\"cov-b\",\"title\":\"借用\","
                           "\"category\":\"general\",\"severity\":1,\"text\":\"下雨遮阳伞。\"}\n"
                           "{\"kind\":\"template\",\"key\":\"cov-b2\",\"title\":\"借用\","
                           "\"category\":\"general\",\"severity\":1,\"text\":\"前台。\"}\n") == 3);
    for (int memidx = 0; memidx < 2; memidx++) {
        kb_result_t *r = search_via(db, "雨伞借用", NULL, 10, memidx, 0);
        double cov[3] = {-1, -1, -1};
        for (int i = 0; i < r->count; i++)
            for (int k = 0; k < 3; k++)
                if (strcmp(r->hits[i].key, keys[k]) == 0)
                    cov[k] = r->hits[i].coverage;
        double whole = cov[0] - cov[2], half = cov[1] - cov[2];
        CHECK_MSG(cov[0] == 1.0 && cov[2] > 0 && whole > 0 && fabs(2 * half - whole) < 1e-9,
                  "memidx %d: coverage %.17g, %.17g, %.17g", memidx, cov[0], cov[1], cov[2]);
        kb_result_free(r);
    }
    CHECK(sqlite3_close(db) == SQLITE_OK);
}

/* A table's statistics (rows, last id, column totals) are kept by its stamp: a past case added
 * renews the cases' stamp, and the next search reads them again.  A twin with the same
 * documents, searched after it, gives the same scores (stale statistics would change every
 * idf and length normalization). */
static void statistics_follow_the_stamps(void)
{
    char err[256];
    sqlite3 *db = kb_test_db(), *twin = kb_test_db();
    CHECK(kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) >= 0 &&
          kb_import_file(db, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) >= 0 &&
          kb_import_file(twin, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) >= 0 &&
          kb_import_file(twin, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) >= 0);
    const char *q = "快递丢件了，包裹一直没有送到，要求赔偿";
    kb_result_t *r = search_via(db, q, NULL, 10, 1, 0), *t = NULL;
    kb_result_free(r);
    long long id1 = 0, id2 = 0;
    for (int i = 0; i < 2; i++) {
        sqlite3 *d = i ? twin : db;
        CHECK(kb_case_add(d, "快递丢件，包裹没有送到", "logistics.lost", "联系快递员",
                          "赔偿货款并补发", "resolved", 5, i ? &id2 : &id1) == 0);
    }
    r = search_via(db, q, NULL, 10, 1, 0);
    t = search_via(twin, q, NULL, 10, 1, 0);
    int found = 0;
    for (int i = 0; i < r->count; i++)
        found |= r->hits[i].kind == KB_CASE && r->hits[i].id == id1;
    CHECK(found && id1 == id2);
    /* all but the keys: kb_case_add makes each case's key unique */
    CHECK_MSG(identical_hits(r, t, q, NULL, 0), "a search after a new case differs from a twin's");
    kb_result_free(r);
    kb_result_free(t);
    CHECK(sqlite3_close(db) == SQLITE_OK && sqlite3_close(twin) == SQLITE_OK);
}

/* A change of the templates, by the kb's functions or by plain SQL, renews the stamp, and the
 * next search builds the postings again and sees it, as it does for a past case added; a
 * synonym list other than the one the FTS index was built with leaves the search to FTS5. */
static void memory_postings_follow_edits(void)
{
    char err[256];
    sqlite3 *db = kb_test_db();
    CHECK(kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) >= 0 &&
          kb_import_file(db, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) >= 0);
    const char *q = "宠物托运受伤了，航班也延误了";
    kb_result_t *r = search_via(db, q, NULL, 5, 1, 0);
    unsigned long built = memidx_builds();
    CHECK(r->count > 0 && strcmp(r->hits[0].key, "pet-001") != 0);
    kb_result_free(r);
    r = search_via(db, q, NULL, 5, 1, 0);
    kb_result_free(r);
    CHECK(memidx_builds() == built); /* nothing changed: kept */

    CHECK(import_jsonl(db, pet_template) == 1);
    r = search_via(db, q, NULL, 5, 1, 0);
    CHECK(r->count > 0 && strcmp(r->hits[0].key, "pet-001") == 0);
    kb_result_free(r);
    CHECK(memidx_builds() == built + 1);

    /* plain SQL: the triggers renew the stamp (the FTS index is the writer's business) */
    char *s1 = NULL, *s2 = NULL, *s3 = NULL;
    CHECK(kb_meta_get(db, "templates_stamp", &s1) == 0);
    CHECK(kb_exec(db, "UPDATE kb_templates SET severity = 3, version = version + 1 "
                      "WHERE key = 'pet-001'") == 0);
    CHECK(kb_meta_get(db, "templates_stamp", &s2) == 0);
    CHECK(kb_exec(db, "DELETE FROM kb_templates WHERE key = 'no-such-key'") == 0);
    CHECK(kb_exec(db, "INSERT INTO kb_templates(key, title, category, text, updated_at) "
                      "VALUES ('x-1', 'x', 'general', 'x', '2026-01-01T00:00:00Z')") == 0);
    CHECK(kb_exec(db, "DELETE FROM kb_templates WHERE key = 'x-1'") == 0);
    CHECK(kb_meta_get(db, "templates_stamp", &s3) == 0);
    CHECK(s1 && s2 && s3 && strcmp(s1, s2) != 0 && strcmp(s2, s3) != 0 && strlen(s3) == 16);
    free(s1);
    free(s2);
    free(s3);
    r = search_via(db, q, NULL, 5, 1, 0);
    CHECK(r->count > 0 && strcmp(r->hits[0].key, "pet-001") == 0 && r->hits[0].severity == 3);
    kb_result_free(r);
    CHECK(memidx_builds() == built + 2);

    /* a past case added: the cases' postings are built again, and find it */
    long long id = 0;
    CHECK(kb_case_add(db, "宠物托运时受伤，航班延误", "travel.flight", "", "赔偿治疗费用",
                      "resolved", 4, &id) == 0);
    r = search_via(db, q, NULL, 5, 1, 0);
    int found = 0;
    for (int i = 0; i < r->count; i++)
        found |= r->hits[i].kind == KB_CASE && r->hits[i].id == id;
    CHECK(found);
    kb_result_free(r);
    CHECK(memidx_builds() == built + 3);

    /* an index built with another synonym list: FTS5 answers, and nothing is built */
    CHECK(kb_exec(db, "UPDATE kb_meta SET value = '0000000000000000' "
                      "WHERE name = 'synonyms_hash'") == 0);
    CHECK(kb_exec(db, "UPDATE kb_templates SET severity = 2, version = version + 1 "
                      "WHERE key = 'pet-001'") == 0);
    r = search_via(db, q, NULL, 5, 1, 0);
    found = 0;
    for (int i = 0; i < r->count; i++)
        found |= strcmp(r->hits[i].key, "pet-001") == 0 && r->hits[i].severity == 2;
    CHECK(found);
    kb_result_free(r);
    CHECK(memidx_builds() == built + 3);
    CHECK(sqlite3_close(db) == SQLITE_OK);
}

/* kb_rank()'s idf arguments are written without printf (kb_fixed4), and the candidates from
 * memory are scored with the values kept beside the text: the text must be what "%.4f" writes
 * and the value what strtod reads back from it, bit for bit.  A million values of every size
 * and sign, values near a decimal tie, every exact tie up to 1,250 ((2b + 1) / 32, where
 * printf rounds half to even), zeros, and the ones left to printf (huge, infinite, NaN). */
static void rank_arguments_are_what_printf_writes(void)
{
    static const double special[] = {0.0,   -0.0,  0.00005,  -0.00005,  0.00015, 1e11,
                                     -3e12, 1e300, INFINITY, -INFINITY, NAN};
    int nspecial = (int)(sizeof(special) / sizeof(special[0]));
    char mine[KB_FIXED4_MAX], libc[KB_FIXED4_MAX];
    uint64_t r = 88172645463325252ull;
    int bad = 0;

    for (int i = 0; i < 1000000 + 40000 + nspecial; i++) {
        double x, v;
        if (i < 1000000) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            double u = (double)(r >> 11) / 9007199254740992.0; /* [0, 1) */
            switch (i % 4) {
            case 0:
                x = u * 30;
                break;
            case 1:
                x = ldexp((double)(r >> 11), (int)(r % 80) - 110);
                break; /* 1e-17 .. 4e6 */
            case 2:
                x = -u * 30;
                break;
            default:
                x = (double)(r % 3000000) / 10000.0 + 0.00005 * (double)((r >> 40) % 3);
                break;
            }
        } else if (i < 1000000 + 40000) {
            x = (2.0 * (i - 1000000) + 1) / 32;
        } else {
            x = special[i - 1000000 - 40000];
        }
        int n = kb_fixed4(x, mine, &v);
        snprintf(libc, sizeof(libc), "%.4f", x);
        double back = strtod(libc, NULL);
        if (strcmp(mine, libc) != 0 || n != (int)strlen(libc) ||
            memcmp(&v, &back, sizeof(v)) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "kb_fixed4(%a): \"%s\" %a, printf \"%s\" %a\n", x, mine, v, libc,
                        back);
        }
    }
    CHECK(bad == 0);
}

int main(void)
{
    char err[256];
    if (kb_set_synonyms_file(kb_fixture("synonyms.txt"), err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    g_db = kb_test_db();
    if (kb_import_file(g_db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) < 0 ||
        kb_import_file(g_db, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    RUN(answer_for_a_clear_question);
    RUN(suggest_for_a_partial_match);
    RUN(no_match_for_unrelated_text);
    RUN(title_match_ranks_first);
    RUN(snippets_highlight_matches);
    RUN(category_filter);
    RUN(cases_are_found_but_never_answer);
    RUN(limit_is_respected);
    RUN(df_cache_follows_the_data);
    RUN(doc_cache_follows_the_documents);
    RUN(searcher_keeps_statements);
    RUN(memory_postings_match_fts5);
    RUN(memory_postings_make_the_same_cut);
    RUN(coverage_counts_lone_characters_by_half);
    RUN(held_snapshot_lasts_until_end);
    RUN(memory_postings_follow_edits);
    RUN(statistics_follow_the_stamps);
    RUN(rank_arguments_are_what_printf_writes);
    sqlite3_close(g_db);
    DONE();
}
