/*
 * test_kb_search.c - ranking, snippets, category filter and the confidence levels that flows
 * act on; the df cache and the analyzed-document cache give what an uncached search gives.
 */
#include "test_kb.h"

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
    const char *add = kb_temp_file(
        "{\"kind\":\"template\",\"key\":\"pet-001\",\"title\":\"宠物托运受伤\","
        "\"category\":\"travel.flight\",\"severity\":2,\"conditions\":\"托运的宠物受伤\","
        "\"text\":\"您的宠物托运问题我们会在24小时内核实。\",\"steps\":[\"核实\"]}\n");
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

/* Every field of every token, one line each, for comparing token streams. */
typedef struct tok_dump {
    char s[16384];
    size_t n;
} tok_dump;

static int dump_tok(void *ctx, const kb_tok_t *t)
{
    tok_dump *d = ctx;
    int w = snprintf(d->s + d->n, sizeof(d->s) - d->n, "%.*s %d %d %d %d %d %d\n", t->len, t->text,
                     t->start, t->end, t->cstart, t->cend, t->colocated, (int)t->kind);
    if (w > 0 && (size_t)w < sizeof(d->s) - d->n)
        d->n += (size_t)w;
    return 0;
}

/* kb_doc_analyze of (template, id, col 3) next to kb_analyze of the same text: 1 when the two
 * streams are the same. */
static int doc_tokens_match(long long id, const char *text)
{
    static tok_dump cached, fresh;
    kb_synonyms_t *syn = kb_synonyms_current();
    kb_analyzer_t a = {.cjk = KB_CJK_UNIBI, .query = 0, .syn = syn};
    cached.n = fresh.n = 0;
    cached.s[0] = fresh.s[0] = 0;
    kb_doc_analyze(KB_TEMPLATE, id, 3, &a, text, (int)strlen(text), dump_tok, &cached);
    kb_analyze(&a, text, (int)strlen(text), dump_tok, &fresh);
    kb_synonyms_unref(syn);
    return fresh.n > 0 && strcmp(cached.s, fresh.s) == 0;
}

/* The re-ranker's analyzed documents (kb_doccache.c): a replay is the analysis it stands for,
 * a changed text or synonym list is analyzed again, and searches give the same hits and
 * scores from a full cache as from an empty one. */
static void doc_cache_follows_the_documents(void)
{
    const char *a = "航班延误4小时，要求赔偿并退款，订单号DD2026 iPhone13",
               *b = "酒店房间有异味，要求换房或者退钱";
    size_t n0, n1, n2, b1, b2, b3;
    kb_doc_cache_clear();
    kb_doc_cache_stats(&n0, &b1);
    CHECK(n0 == 0 && b1 == 0);
    CHECK_MSG(doc_tokens_match(77, a), "first analysis differs");
    kb_doc_cache_stats(&n1, &b1); /* seen once: an entry without tokens */
    CHECK_MSG(doc_tokens_match(77, a), "second analysis differs");
    kb_doc_cache_stats(&n2, &b2); /* seen twice: the tokens are kept */
    CHECK(n1 == 1 && n2 == 1 && b1 < 256 && b2 > b1 + strlen(a));
    CHECK_MSG(doc_tokens_match(77, a), "replay differs");
    kb_doc_cache_stats(&n2, &b3);
    CHECK(n2 == 1 && b3 == b2); /* a hit adds nothing */
    /* the document was edited: same id and column, other text */
    CHECK_MSG(doc_tokens_match(77, b), "an edited document replayed its old tokens");
    /* the synonym list changed: 退钱 no longer meets ~退款 */
    char err[256];
    CHECK(kb_set_synonyms_file(NULL, err, sizeof(err)) == 0);
    int nosyn = doc_tokens_match(77, b);
    CHECK(kb_set_synonyms_file(kb_fixture("synonyms.txt"), err, sizeof(err)) == 0);
    CHECK_MSG(nosyn, "tokens of the old synonym list replayed");
    CHECK_MSG(doc_tokens_match(77, b), "tokens of no synonym list replayed");

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
    sqlite3_close(g_db);
    DONE();
}
