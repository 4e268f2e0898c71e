/*
 * test_kb_synonyms.c - the synonym list: file format and its errors, colocated group tokens,
 * search through synonyms, and reloading (which re-indexes).
 */
#include "test_kb.h"

#define EQ(got, want) CHECK_MSG(strcmp((got), (want)) == 0, "got \"%s\", want \"%s\"", got, want)

static int parse_error(const char *text, const char *want_substring)
{
    char err[256] = "";
    kb_synonyms_t *s = kb_synonyms_parse(text, strlen(text), "syn.txt", err, sizeof(err));
    if (s != NULL) {
        kb_synonyms_unref(s);
        fprintf(stderr, "parsed, expected an error with \"%s\"\n", want_substring);
        return 0;
    }
    if (strstr(err, want_substring) == NULL) {
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want_substring);
        return 0;
    }
    return 1;
}

static void format_errors_name_the_line(void)
{
    CHECK(parse_error("退款 退钱\n退款\n", "syn.txt:2: a group needs at least two"));
    CHECK(parse_error("# c\n\n退款 退款\n", "syn.txt:3: a group needs at least two different"));
    CHECK(parse_error("退款 退钱\n退费 退钱\n",
                      "syn.txt:2: \"退钱\" is already in the group on line 1"));
    CHECK(parse_error("a b\nq-币 q币\n", "syn.txt:2: words may hold only"));
    CHECK(parse_error("退款 \xff\xfe\n", "syn.txt:1: invalid UTF-8"));
    CHECK(parse_error("一二三四五六七八九十一二三四五六七 退款\n", "syn.txt:1: a word is longer"));
}

static void comments_separators_and_folding(void)
{
    char err[256];
    const char *text = "\xEF\xBB\xBF# heading\n\n退款 退钱，退费、返款 # trailing comment\r\n"
                       "ＷＩＦＩ\t无线网,wlan\n";
    kb_synonyms_t *s = kb_synonyms_parse(text, strlen(text), "x", err, sizeof(err));
    CHECK_MSG(s != NULL, "%s", err);
    CHECK(kb_synonyms_groups(s) == 2);
    char h1[17], h2[17];
    kb_synonyms_hash(s, h1);
    kb_synonyms_unref(s);
    /* the same content spelled differently hashes the same */
    const char *same = "退款 退钱 退费 返款\nwifi 无线网 wlan\n";
    s = kb_synonyms_parse(same, strlen(same), "y", err, sizeof(err));
    CHECK(s != NULL);
    kb_synonyms_hash(s, h2);
    kb_synonyms_unref(s);
    EQ(h1, h2);
    kb_synonyms_hash(NULL, h1);
    EQ(h1, "none");
}

static void group_tokens_are_colocated(void)
{
    char err[256];
    CHECK_MSG(kb_set_synonyms_file(kb_fixture("synonyms.txt"), err, sizeof(err)) == 0, "%s", err);
    EQ(tokens_of("我要退钱", 0, KB_CJK_UNIBI), "我|我要 要|要退 退|退钱|~退款 钱");
    EQ(tokens_of("没收到货", 0, KB_CJK_UNIBI), "没|没收|~没收到 收|收到 到|到货 货");
    EQ(tokens_of("WiFi密码", 0, KB_CJK_UNIBI), "wifi|~wifi 密|密码 码");
    EQ(tokens_of("wifix", 0, KB_CJK_UNIBI), "wifix"); /* a word must cover the whole run */
    EQ(tokens_of("退钱", 1, KB_CJK_UNIBI), "退钱");   /* query mode adds nothing */
    EQ(tokens_of("~退款", 1, KB_CJK_UNIBI), "~退款"); /* group tokens pass through */
    CHECK(kb_set_synonyms_file(NULL, NULL, 0) == 0);
    EQ(tokens_of("我要退钱", 0, KB_CJK_UNIBI), "我|我要 要|要退 退|退钱 钱");
}

static void bad_file_keeps_the_previous_list(void)
{
    char err[256];
    CHECK(kb_set_synonyms_file(kb_fixture("synonyms.txt"), err, sizeof(err)) == 0);
    CHECK(kb_set_synonyms_file("/nonexistent/syn.txt", err, sizeof(err)) == KB_ERR_INVALID);
    CHECK(strstr(err, "/nonexistent/syn.txt") != NULL);
    const char *bad = kb_temp_file("退款 退钱\n只有一个\n");
    CHECK(kb_set_synonyms_file(bad, err, sizeof(err)) == KB_ERR_INVALID);
    CHECK_MSG(strstr(err, ":2:") != NULL, "%s", err);
    unlink(bad);
    EQ(tokens_of("退钱", 0, KB_CJK_UNIBI), "退|退钱|~退款 钱");
    kb_set_synonyms_file(NULL, NULL, 0);
}

static int found(sqlite3 *db, const char *q, const char *key)
{
    kb_result_t *r = NULL;
    int hit = 0;
    if (kb_search(db, q, NULL, 10, &r) != 0)
        return -1;
    for (int i = 0; i < r->count; i++)
        if (strcmp(r->hits[i].key, key) == 0)
            hit = 1;
    kb_result_free(r);
    return hit;
}

static void search_finds_synonyms(void)
{
    char err[256];
    CHECK(kb_set_synonyms_file(kb_fixture("synonyms.txt"), err, sizeof(err)) == 0);
    sqlite3 *db = kb_test_db();
    CHECK_MSG(kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) > 0, "%s",
              err);
    CHECK(found(db, "我想退钱", "refund-001") == 1);     /* 退钱 ~ 退款 */
    CHECK(found(db, "无线网连不上", "signal-001") == 1); /* 无线网 ~ WiFi */
    sqlite3_close(db);
    kb_set_synonyms_file(NULL, NULL, 0);
}

static void reload_reindexes(void)
{
    char err[256];
    const char *path = kb_temp_file("退款 退钱\n");
    CHECK(kb_set_synonyms_file(path, err, sizeof(err)) == 0);
    sqlite3 *db = kb_test_db();
    CHECK(kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) > 0);
    CHECK(found(db, "无线网连不上", "signal-001") == 0);
    CHECK(kb_reload_synonyms(db, err, sizeof(err)) == 0); /* unchanged file */
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("退款 退钱\nwifi 无线网\n", f);
    fclose(f);
    CHECK_MSG(kb_reload_synonyms(db, err, sizeof(err)) == 1, "%s", err);
    CHECK(found(db, "无线网连不上", "signal-001") == 1); /* documents re-indexed */
    char *hash = NULL;
    CHECK(kb_meta_get(db, "synonyms_hash", &hash) == 0);
    kb_synonyms_t *cur = kb_synonyms_current();
    char want[17];
    kb_synonyms_hash(cur, want);
    kb_synonyms_unref(cur);
    CHECK(strcmp(hash, want) == 0);
    free(hash);
    /* an update after the reload deletes with the tokens the index holds: no corruption */
    kb_template_t t;
    CHECK(kb_template_get(db, 0, "signal-001", &t) == 0);
    free(t.title);
    t.title = strdup("无线网信号差");
    CHECK(kb_template_save(db, &t, 2, 0, "t", NULL, NULL, err, sizeof(err)) == KB_UPDATED);
    kb_template_clear(&t);
    CHECK(kb_exec(db, "INSERT INTO kb_templates_fts(kb_templates_fts, rank) "
                      "VALUES ('integrity-check', 1)") == 0);
    sqlite3_close(db);
    unlink(path);
    kb_set_synonyms_file(NULL, NULL, 0);
}

static void migrate_rebuilds_after_an_edit(void)
{
    char err[256], dbpath[] = "/tmp/test_kb_syn_XXXXXX";
    int fd = mkstemp(dbpath);
    CHECK(fd >= 0);
    close(fd);
    sqlite3 *db;
    kb_set_synonyms_file(NULL, NULL, 0);
    CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK && kb_register(db) == 0);
    CHECK(kb_migrate(db, err, sizeof(err)) == 0);
    CHECK(kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) > 0);
    CHECK(found(db, "我想退钱", "refund-001") == 0);
    sqlite3_close(db);
    /* next start-up with a synonym list: kb_migrate notices and re-indexes */
    CHECK(kb_set_synonyms_file(kb_fixture("synonyms.txt"), err, sizeof(err)) == 0);
    CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK && kb_register(db) == 0);
    CHECK(kb_migrate(db, err, sizeof(err)) == 0);
    CHECK(found(db, "我想退钱", "refund-001") == 1);
    CHECK(kb_exec(db, "INSERT INTO kb_templates_fts(kb_templates_fts, rank) "
                      "VALUES ('integrity-check', 1)") == 0);
    sqlite3_close(db);
    unlink(dbpath);
    kb_set_synonyms_file(NULL, NULL, 0);
}

static void shipped_list_parses(void)
{
    char err[256], path[4096];
    snprintf(path, sizeof(path), "%s/kb/synonyms.txt", REDRESS_SOURCE_DIR);
    CHECK_MSG(kb_set_synonyms_file(path, err, sizeof(err)) == 0, "%s", err);
    kb_synonyms_t *s = kb_synonyms_current();
    CHECK(kb_synonyms_groups(s) > 20);
    kb_synonyms_unref(s);
    kb_set_synonyms_file(NULL, NULL, 0);
}

int main(void)
{
    RUN(format_errors_name_the_line);
    RUN(comments_separators_and_folding);
    RUN(group_tokens_are_colocated);
    RUN(bad_file_keeps_the_previous_list);
    RUN(search_finds_synonyms);
    RUN(reload_reindexes);
    RUN(migrate_rebuilds_after_an_edit);
    RUN(shipped_list_parses);
    DONE();
}
