/*
 * test_kb_store.c - templates with versions and history, past cases, validation, categories,
 * schema migration.
 */
#include "test_kb.h"

static kb_template_t sample(const char *key)
{
    static char *steps[] = {"核实", "退款"};
    static char *tags[] = {"退款"};
    kb_template_t t = {0};
    t.key = (char *)key;
    t.title = "申请退款";
    t.category = "ecom.refund";
    t.severity = 2;
    t.conditions = "已付款";
    t.text = "三个工作日内退回。";
    t.steps = steps;
    t.nsteps = 2;
    t.compensation = "";
    t.deadline = "3个工作日内";
    t.deadline_hours = 72;
    t.tags = tags;
    t.ntags = 1;
    return t;
}

static void versions_and_history(void)
{
    sqlite3 *db = kb_test_db();
    char err[256];
    long long id, id2;
    int version;
    kb_template_t t = sample("r-1");

    CHECK(kb_template_save(db, &t, 1, 0, "ann", &id, &version, err, sizeof(err)) == 1);
    CHECK(version == 1);
    /* the same content again: unchanged, no new version */
    CHECK(kb_template_save(db, &t, 0, 0, "bob", &id2, &version, err, sizeof(err)) == 3);
    CHECK(id2 == id && version == 1);
    t.text = "两个工作日内退回。";
    t.id = id;
    CHECK(kb_template_save(db, &t, 2, 1, "bob", &id2, &version, err, sizeof(err)) == 2);
    CHECK(version == 2);
    /* an edit based on version 1 is now a conflict */
    t.text = "一个工作日";
    CHECK(kb_template_save(db, &t, 2, 1, "cat", NULL, NULL, err, sizeof(err)) == KB_ERR_CONFLICT);
    CHECK(strstr(err, "current is 2") != NULL);
    kb_template_t got;
    CHECK(kb_template_get(db, id, NULL, &got) == 0);
    CHECK(strcmp(got.text, "两个工作日内退回。") == 0 && strcmp(got.updated_by, "bob") == 0);
    CHECK(got.nsteps == 2 && strcmp(got.steps[1], "退款") == 0 && got.deadline_hours == 72);
    CHECK(strlen(got.updated_at) == 20 && got.updated_at[10] == 'T');
    kb_template_clear(&got);

    CHECK(kb_template_delete(db, id, "dan", err, sizeof(err)) == 0);
    CHECK(kb_template_get(db, id, NULL, &got) == KB_ERR_NOTFOUND);
    CHECK(kb_template_delete(db, id, "dan", err, sizeof(err)) == KB_ERR_NOTFOUND);
    /* created again under the same key: the history continues */
    t.id = 0;
    CHECK(kb_template_save(db, &t, 1, 0, "eve", &id2, &version, err, sizeof(err)) == 1);
    CHECK(version == 4 && id2 != id);
    kb_template_t *h;
    int n;
    CHECK(kb_template_history(db, "r-1", &h, &n) == 0);
    CHECK(n == 4);
    CHECK(strcmp(h[0].action, "create") == 0 && h[0].version == 1);
    CHECK(strcmp(h[1].action, "update") == 0 && h[1].version == 2);
    CHECK(strcmp(h[2].action, "delete") == 0 && strcmp(h[2].updated_by, "dan") == 0);
    CHECK(strcmp(h[3].action, "create") == 0 && h[3].version == 4);
    kb_templates_free(h, n);
    CHECK(kb_template_history(db, "nope", &h, &n) == KB_ERR_NOTFOUND);
    char *key;
    CHECK(kb_template_key_of(db, id, &key) == 0 && strcmp(key, "r-1") == 0);
    free(key);
    sqlite3_close(db);
}

static void save_modes(void)
{
    sqlite3 *db = kb_test_db();
    char err[256];
    long long id;
    kb_template_t t = sample("m-1");
    CHECK(kb_template_save(db, &t, 1, 0, "a", &id, NULL, err, sizeof(err)) == 1);
    CHECK(kb_template_save(db, &t, 1, 0, "a", NULL, NULL, err, sizeof(err)) == KB_ERR_CONFLICT);
    CHECK(strstr(err, "already exists") != NULL);
    t.id = id + 100;
    CHECK(kb_template_save(db, &t, 2, 0, "a", NULL, NULL, err, sizeof(err)) == KB_ERR_NOTFOUND);
    t.id = id;
    t.key = "other";
    CHECK(kb_template_save(db, &t, 2, 0, "a", NULL, NULL, err, sizeof(err)) == KB_ERR_INVALID);
    CHECK(strstr(err, "cannot change") != NULL);
    sqlite3_close(db);
}

static void validation(void)
{
    char err[256];
    kb_template_t t = sample("v-1");
    CHECK(kb_template_validate(&t, err, sizeof(err)) == 0);
    t.severity = 0;
    CHECK(kb_template_validate(&t, err, sizeof(err)) == KB_ERR_INVALID);
    CHECK(strstr(err, "severity") != NULL);
    t = sample("v-1");
    t.title = "   ";
    CHECK(kb_template_validate(&t, err, sizeof(err)) == KB_ERR_INVALID);
    CHECK(strstr(err, "blank") != NULL);
    t = sample("v-1");
    t.category = "nope";
    CHECK(kb_template_validate(&t, err, sizeof(err)) == KB_ERR_INVALID);
    t = sample("v-1");
    static char *bad_steps[] = {"一\n二"};
    t.steps = bad_steps;
    t.nsteps = 1;
    CHECK(kb_template_validate(&t, err, sizeof(err)) == KB_ERR_INVALID);
    CHECK(strstr(err, "steps[0]") != NULL);
    t = sample("v-1");
    t.text = "\xff";
    CHECK(kb_template_validate(&t, err, sizeof(err)) == KB_ERR_INVALID);
    CHECK(strstr(err, "UTF-8") != NULL);
    t = sample("v-1");
    t.deadline_hours = 9000;
    CHECK(kb_template_validate(&t, err, sizeof(err)) == KB_ERR_INVALID);

    kb_case_t c = {.key = "c-1",
                   .summary = "s",
                   .category = "general",
                   .tried = "",
                   .resolution = "",
                   .outcome = "resolved",
                   .satisfaction = 0,
                   .date = "2024-02-29"};
    CHECK(kb_case_validate(&c, err, sizeof(err)) == 0);
    c.date = "2023-02-29";
    CHECK(kb_case_validate(&c, err, sizeof(err)) == KB_ERR_INVALID);
    c.date = "2026-3-1";
    CHECK(kb_case_validate(&c, err, sizeof(err)) == KB_ERR_INVALID);
    c.date = "2026-03-01";
    c.outcome = "done";
    CHECK(kb_case_validate(&c, err, sizeof(err)) == KB_ERR_INVALID);
}

static void cases(void)
{
    sqlite3 *db = kb_test_db();
    long long id = 0;
    char err[256];
    CHECK(kb_case_add(db, "客户说银行卡被扣了两次年费", "bank.fee", "打过电话", "退还一次年费",
                      "resolved", 5, &id) == 0);
    CHECK(id > 0);
    CHECK(kb_case_add(db, "x", "no.such", NULL, NULL, "resolved", 0, NULL) == KB_ERR_INVALID);
    CHECK(kb_case_add(db, "x", "general", NULL, NULL, "resolved", 9, NULL) == KB_ERR_INVALID);
    CHECK(kb_case_add(db, "", "general", NULL, NULL, "resolved", 0, NULL) == KB_ERR_INVALID);
    kb_case_t c;
    CHECK(kb_case_get(db, id, NULL, &c) == 0);
    CHECK(strncmp(c.key, "auto-", 5) == 0 && strlen(c.key) == 21);
    CHECK(c.satisfaction == 5 && strlen(c.date) == 10 && strcmp(c.outcome, "resolved") == 0);
    /* a new case is searchable at once */
    kb_result_t *r;
    CHECK(kb_search(db, "年费扣了两次", NULL, 5, &r) == 0);
    CHECK(r->count == 1 && r->hits[0].kind == KB_CASE && r->hits[0].id == id);
    CHECK(strcmp(r->hits[0].text, "退还一次年费") == 0);
    kb_result_free(r);
    free(c.resolution);
    c.resolution = strdup("退还并补偿");
    CHECK(kb_case_save(db, &c, 2, NULL, err, sizeof(err)) == 2);
    CHECK(kb_case_save(db, &c, 2, NULL, err, sizeof(err)) == 3);
    CHECK(kb_case_delete(db, id, err, sizeof(err)) == 0);
    CHECK(kb_case_delete(db, id, err, sizeof(err)) == KB_ERR_NOTFOUND);
    kb_case_clear(&c);
    CHECK(kb_search(db, "年费扣了两次", NULL, 5, &r) == 0 && r->count == 0);
    kb_result_free(r);
    CHECK(kb_exec(db, "INSERT INTO kb_cases_fts(kb_cases_fts, rank) "
                      "VALUES ('integrity-check', 1)") == 0);
    sqlite3_close(db);
}

static void categories(void)
{
    CHECK(strcmp(kb_category_name("bank.fee"), "误扣费") == 0);
    CHECK(strcmp(kb_category_name("ecom.payment"), "支付成功订单未支付") == 0);
    CHECK(kb_category_name("bank") == NULL && kb_category_name(NULL) == NULL);
    CHECK(kb_category_count() == 16);
    CHECK(kb_category_slug(16) == NULL && kb_category_slug(-1) == NULL);
    sqlite3 *db = kb_test_db();
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT count(*), max(name = '其他' AND slug = 'general') "
                             "FROM kb_categories",
                             -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(sqlite3_column_int(st, 0) == 16 && sqlite3_column_int(st, 1) == 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void migrate_is_idempotent_and_refuses_newer(void)
{
    sqlite3 *db = kb_test_db();
    char err[256];
    CHECK(kb_migrate(db, err, sizeof(err)) == 0);
    CHECK(kb_exec(db, "UPDATE kb_meta SET value = '99' WHERE name = 'schema_version'") == 0);
    CHECK(kb_migrate(db, err, sizeof(err)) == -1);
    CHECK(strstr(err, "newer") != NULL);
    sqlite3_close(db);
    /* a connection without the tokenizer cannot migrate */
    CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
    CHECK(kb_migrate(db, err, sizeof(err)) == -1);
    CHECK(strstr(err, "redress") != NULL);
    sqlite3_close(db);
}

static void writes_inside_a_caller_transaction(void)
{
    sqlite3 *db = kb_test_db();
    char err[256];
    kb_template_t t = sample("tx-1");
    CHECK(kb_exec(db, "BEGIN") == 0);
    CHECK(kb_template_save(db, &t, 1, 0, "a", NULL, NULL, err, sizeof(err)) == 1);
    t.key = "bad key";
    CHECK(kb_template_save(db, &t, 1, 0, "a", NULL, NULL, err, sizeof(err)) == KB_ERR_INVALID);
    CHECK(kb_exec(db, "ROLLBACK") == 0);
    CHECK(kb_template_count(db) == 0);
    sqlite3_close(db);
}

int main(void)
{
    RUN(versions_and_history);
    RUN(save_modes);
    RUN(validation);
    RUN(cases);
    RUN(categories);
    RUN(migrate_is_idempotent_and_refuses_newer);
    RUN(writes_inside_a_caller_transaction);
    DONE();
}
