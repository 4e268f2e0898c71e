/*
 * test_kb_search.c - ranking, snippets, category filter and the confidence levels that flows
 * act on.
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
    sqlite3_close(g_db);
    DONE();
}
