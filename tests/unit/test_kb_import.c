/*
 * test_kb_import.c - JSON Lines import (every error names the line, nothing is imported on
 * error), export/import round trip, upsert versions, seeding.
 */
#include "test_kb.h"

#define T1                                                                                         \
    "{\"kind\":\"template\",\"key\":\"a-1\",\"title\":\"退款\",\"category\":\"ecom.refund\","    \
    "\"text\":\"三天内退回\"}"
#define C1                                                                                         \
    "{\"kind\":\"case\",\"key\":\"c-1\",\"summary\":\"没收到货\",\"category\":"                \
    "\"ecom.not_received\",\"outcome\":\"resolved\",\"date\":\"2026-03-02\"}"

/* Imports text into db and expects failure with want in the message.  Returns 1 if so. */
static int import_fails(sqlite3 *db, const char *text, const char *want)
{
    char err[512] = "";
    const char *path = kb_temp_file(text);
    int n = kb_import_file(db, path, "t", err, sizeof(err));
    unlink(path);
    if (n >= 0) {
        fprintf(stderr, "import succeeded (%d), wanted \"%s\"\n", n, want);
        return 0;
    }
    if (strstr(err, path) == NULL || strstr(err, want) == NULL) {
        fprintf(stderr, "error \"%s\" lacks the path or \"%s\"\n", err, want);
        return 0;
    }
    return 1;
}

static void errors_name_the_line(void)
{
    sqlite3 *db = kb_test_db();
    CHECK(import_fails(db, T1 "\n{\"kind\":\"template\",", ":2: invalid JSON"));
    CHECK(import_fails(db, T1 "\n\n" C1 "\n[1,2]\n", ":4: not a JSON object"));
    CHECK(import_fails(db,
                       "{\"kind\":\"template\",\"key\":\"k\",\"title\":\"t\",\"category\":"
                       "\"ecom.refund\",\"text\":\"x\",\"colour\":\"red\"}\n",
                       ":1: unknown field \"colour\""));
    CHECK(import_fails(db,
                       T1 "\n{\"kind\":\"template\",\"key\":\"k\",\"title\":\"t\","
                          "\"category\":\"ecom.nothing\",\"text\":\"x\"}\n",
                       ":2: field \"category\": unknown category \"ecom.nothing\""));
    CHECK(import_fails(db,
                       "{\"kind\":\"template\",\"key\":\"k\",\"category\":\"general\","
                       "\"text\":\"x\"}\n",
                       ":1: field \"title\": required"));
    CHECK(import_fails(db,
                       "{\"kind\":\"template\",\"key\":\"k\",\"title\":\"t\",\"category\":"
                       "\"general\",\"text\":\"x\",\"severity\":5}\n",
                       ":1: field \"severity\": must be 1..4"));
    CHECK(import_fails(db,
                       "{\"kind\":\"template\",\"key\":\"k\",\"title\":\"t\",\"category\":"
                       "\"general\",\"text\":\"x\",\"severity\":\"high\"}\n",
                       ":1: field \"severity\": must be an integer"));
    CHECK(import_fails(db,
                       "{\"kind\":\"template\",\"key\":\"k\",\"title\":\"t\",\"category\":"
                       "\"general\",\"text\":\"x\",\"steps\":[\"a\",3]}\n",
                       ":1: field \"steps\": item 1 is not a string"));
    CHECK(import_fails(db,
                       "{\"kind\":\"template\",\"key\":\"k\",\"title\":\"t\",\"category\":"
                       "\"general\",\"text\":\"x\",\"tags\":\"a\"}\n",
                       ":1: field \"tags\": must be an array of strings"));
    CHECK(import_fails(db,
                       "{\"kind\":\"template\",\"key\":\"has space\",\"title\":\"t\","
                       "\"category\":\"general\",\"text\":\"x\"}\n",
                       ":1: field \"key\""));
    CHECK(import_fails(db, "{\"kind\":\"thing\"}\n", ":1: field \"kind\""));
    CHECK(import_fails(db, "{\"key\":\"k\"}\n", ":1: field \"kind\""));
    CHECK(import_fails(db, C1 "\n" C1 "\n", ":2: key \"c-1\" already appears on line 1"));
    CHECK(import_fails(db,
                       "{\"kind\":\"case\",\"key\":\"c\",\"summary\":\"s\",\"category\":"
                       "\"general\",\"outcome\":\"fixed\"}\n",
                       ":1: field \"outcome\""));
    CHECK(import_fails(db,
                       "{\"kind\":\"case\",\"key\":\"c\",\"summary\":\"s\",\"category\":"
                       "\"general\",\"outcome\":\"resolved\",\"date\":\"2026-02-30\"}\n",
                       ":1: field \"date\""));
    CHECK(import_fails(db,
                       "{\"kind\":\"case\",\"key\":\"c\",\"summary\":\"s\",\"category\":"
                       "\"general\",\"outcome\":\"resolved\",\"satisfaction\":6}\n",
                       ":1: field \"satisfaction\""));
    CHECK(import_fails(db,
                       "{\"kind\":\"case\",\"key\":\"c\",\"summary\":\"s\\u0000x\","
                       "\"category\":\"general\",\"outcome\":\"resolved\"}\n",
                       ":1: NUL characters"));
    CHECK(import_fails(db, T1 "\n{\"kind\":\"case\",\"key\":\"c\",\"summary\":\"\xff\"}\n",
                       ":2: not valid UTF-8"));
    CHECK(import_fails(db, "{\"kind\":\"template\",\"kind\":\"template\"}\n",
                       ":1: field \"kind\" appears twice"));
    CHECK(import_fails(db, T1 " x\n", ":1: unexpected text after the JSON object"));
    CHECK(import_fails(db,
                       "{\"kind\":\"template\",\"key\":\"k\",\"title\":\"a\\nb\","
                       "\"category\":\"general\",\"text\":\"x\"}\n",
                       ":1: field \"title\": control character (line break)"));
    char err[256];
    CHECK(kb_import_file(db, "/nonexistent.jsonl", "t", err, sizeof(err)) == -1);
    CHECK(strstr(err, "/nonexistent.jsonl") != NULL);
    CHECK(kb_template_count(db) == 0 && kb_case_count(db) == 0);
    sqlite3_close(db);
}

static void nothing_is_imported_on_error(void)
{
    sqlite3 *db = kb_test_db();
    char err[256];
    CHECK(kb_import_file(db, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) == 5);
    int before = kb_template_count(db);
    /* valid new records first, an update of an existing one, then a bad last line */
    CHECK(import_fails(db,
                       T1
                       "\n" C1 "\n{\"kind\":\"template\",\"key\":\"refund-001\",\"title\":\"改了\","
                       "\"category\":\"ecom.refund\",\"text\":\"新文本\"}\n{\"kind\":\"case\"}\n",
                       ":4:"));
    CHECK(kb_template_count(db) == before);
    CHECK(kb_case_count(db) == 0);
    kb_template_t t;
    CHECK(kb_template_get(db, 0, "refund-001", &t) == 0);
    CHECK(strcmp(t.title, "申请退款") == 0 && t.version == 1);
    kb_template_clear(&t);
    CHECK(kb_exec(db, "INSERT INTO kb_templates_fts(kb_templates_fts, rank) "
                      "VALUES ('integrity-check', 1)") == 0);
    sqlite3_close(db);
}

static char *export_text(sqlite3 *db)
{
    char *buf = NULL, err[256];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    int n = kb_export(db, f, err, sizeof(err));
    fclose(f);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void round_trip(void)
{
    sqlite3 *a = kb_test_db(), *b = kb_test_db();
    char err[256];
    kb_import_stats_t st;
    CHECK(kb_import_file(a, kb_fixture("templates.jsonl"), "t", err, sizeof(err)) == 5);
    CHECK(kb_import_file(a, kb_fixture("cases.jsonl"), "t", err, sizeof(err)) == 3);
    char *one = export_text(a);
    CHECK(one != NULL);
    const char *path = kb_temp_file(one);
    CHECK_MSG(kb_import_file_ex(b, path, "t", &st, err, sizeof(err)) == 8, "%s", err);
    CHECK(st.templates == 5 && st.cases == 3 && st.created == 8);
    char *two = export_text(b);
    CHECK(two != NULL);
    CHECK_MSG(strcmp(one, two) == 0, "exports differ:\n%s\n---\n%s", one, two);
    /* importing the export into its own source changes nothing */
    CHECK(kb_import_file_ex(a, path, "t", &st, err, sizeof(err)) == 8);
    CHECK(st.unchanged == 8 && st.created == 0 && st.updated == 0);
    /* the string form of steps came back as an array */
    CHECK(strstr(one, "\"steps\":[\"核对扣费记录\",\"提交退费申请\"]") != NULL);
    unlink(path);
    free(one);
    free(two);
    sqlite3_close(a);
    sqlite3_close(b);
}

static void upsert_creates_versions(void)
{
    sqlite3 *db = kb_test_db();
    char err[256];
    kb_import_stats_t st;
    CHECK(kb_import_file(db, kb_fixture("templates.jsonl"), "alice", err, sizeof(err)) == 5);
    const char *path =
        kb_temp_file("{\"kind\":\"template\",\"key\":\"refund-001\",\"title\":\"申请退款（新）\","
                     "\"category\":\"ecom.refund\",\"text\":\"新的答复\"}\n");
    CHECK(kb_import_file_ex(db, path, "bob", &st, err, sizeof(err)) == 1);
    CHECK(st.updated == 1);
    unlink(path);
    kb_template_t t;
    CHECK(kb_template_get(db, 0, "refund-001", &t) == 0);
    CHECK(t.version == 2 && strcmp(t.updated_by, "bob") == 0 && t.nsteps == 0);
    kb_template_clear(&t);
    kb_template_t *h;
    int n;
    CHECK(kb_template_history(db, "refund-001", &h, &n) == 0 && n == 2);
    CHECK(strcmp(h[0].action, "create") == 0 && strcmp(h[0].updated_by, "alice") == 0);
    CHECK(strcmp(h[1].action, "update") == 0 && strcmp(h[1].title, "申请退款（新）") == 0);
    kb_templates_free(h, n);
    sqlite3_close(db);
}

static void seeding(void)
{
    sqlite3 *db = kb_test_db();
    char err[256], dir[4096];
    snprintf(dir, sizeof(dir), "%s/tests/data/kb", REDRESS_SOURCE_DIR);
    CHECK_MSG(kb_seed_dir(db, dir, err, sizeof(err)) == 8, "%s", err);
    CHECK(kb_seed_dir(db, dir, err, sizeof(err)) == 0); /* not empty any more */
    CHECK(kb_seed_dir(db, "", err, sizeof(err)) == 0);
    CHECK(kb_seed_dir(db, NULL, err, sizeof(err)) == 0);
    sqlite3_close(db);
    db = kb_test_db();
    CHECK(kb_seed_dir(db, "/nonexistent-dir", err, sizeof(err)) == -1);
    CHECK(strstr(err, "no templates.jsonl or cases.jsonl") != NULL);
    sqlite3_close(db);
}

static void shipped_sample_imports(void)
{
    sqlite3 *db = kb_test_db();
    char err[512], dir[4096];
    snprintf(dir, sizeof(dir), "%s/kb/sample", REDRESS_SOURCE_DIR);
    int n = kb_seed_dir(db, dir, err, sizeof(err));
    CHECK_MSG(n > 0, "%s", err);
    CHECK(kb_template_count(db) > 0);
    sqlite3_close(db);
}

int main(void)
{
    RUN(errors_name_the_line);
    RUN(nothing_is_imported_on_error);
    RUN(round_trip);
    RUN(upsert_creates_versions);
    RUN(seeding);
    RUN(shipped_sample_imports);
    DONE();
}
