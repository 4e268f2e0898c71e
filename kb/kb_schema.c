/*
 * kb_schema.c - the knowledge base's tables, their migrations, categories and the helpers
 * every writer uses (transactions, kb_meta, synonym/index consistency).
 *
 * Design.  The kb shares one SQLite file with the conversation store, which has its own
 * migrations, so the kb keeps its schema version in its own table, kb_meta (name, value),
 * under "schema_version", and every kb table is prefixed kb_.  kb_migrate() applies the
 * steps in migrations[] above that version, in one BEGIN IMMEDIATE transaction, then seeds
 * kb_categories from the fixed list below and checks the FTS indexes against the synonym list.
 *
 * Tables (version 1; version 2 adds templates_stamp and its triggers, version 3 cases_stamp):
 *   kb_meta              name -> value: schema_version, synonyms_hash, templates_stamp and
 *                        cases_stamp (random values that triggers renew on every change of
 *                        kb_templates or kb_cases: kb_memidx.c knows by them that its postings
 *                        are of the current rows, kb_search.c that its table statistics are)
 *   kb_categories        slug -> Chinese name (the list in categories[])
 *   kb_templates         the current version of each solution template; steps and tags are
 *                        stored one per line; ids are never reused (AUTOINCREMENT), so an
 *                        editor's link to a deleted template cannot land on another one
 *   kb_template_history  every version of every template by (key, version), written by
 *                        triggers on insert/update and by kb_template_delete for deletions
 *   kb_cases             past cases
 *   kb_templates_fts, kb_cases_fts
 *                        FTS5 external-content indexes over those tables, tokenized by
 *                        "redress" (kb_token.c), kept in step by kb_store.c rather than by
 *                        triggers (a trigger makes FTS5 write one segment per row; see
 *                        fts_row there)
 *
 * Index/synonym consistency.  Documents carry synonym-group tokens, and an external-content
 * index must be deleted from with the very tokens it was built with.  kb_meta.synonyms_hash
 * names the list the indexes were built with; kb_sync_synonyms() rebuilds both indexes when
 * the current list differs, and every kb writer calls it inside its transaction before
 * touching a row, so an index is never modified under a different list.
 */
#include "kb_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *slug, *name;
} categories[] = {
    {"bank.fee", "误扣费"},
    {"bank.transfer", "转账未到账"},
    {"bank.card", "信用卡"},
    {"ecom.refund", "退款"},
    {"ecom.not_received", "未收到货"},
    {"ecom.quality", "质量问题"},
    {"ecom.payment", "支付成功订单未支付"},
    {"logistics.delay", "物流延误"},
    {"logistics.lost", "丢件"},
    {"logistics.damaged", "破损"},
    {"telecom.billing", "话费"},
    {"telecom.signal", "信号"},
    {"travel.flight", "航班"},
    {"travel.hotel", "酒店"},
    {"service.attitude", "服务态度"},
    {"general", "其他"},
};
#define NCATEGORIES ((int)(sizeof(categories) / sizeof(categories[0])))

const char *kb_category_name(const char *slug)
{
    if (slug == NULL)
        return NULL;
    for (int i = 0; i < NCATEGORIES; i++)
        if (strcmp(categories[i].slug, slug) == 0)
            return categories[i].name;
    return NULL;
}

int kb_category_count(void)
{
    return NCATEGORIES;
}

const char *kb_category_slug(int i)
{
    return i >= 0 && i < NCATEGORIES ? categories[i].slug : NULL;
}

void kb_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void kb_now_iso(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void kb_today(char out[16])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y-%m-%d", &tm);
}

int kb_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : KB_ERR_DB;
}

int kb_tx_begin(sqlite3 *db, int *nested)
{
    *nested = !sqlite3_get_autocommit(db);
    return kb_exec(db, *nested ? "SAVEPOINT kb_tx" : "BEGIN IMMEDIATE");
}

int kb_tx_end(sqlite3 *db, int nested, int ok)
{
    if (ok)
        return kb_exec(db, nested ? "RELEASE kb_tx" : "COMMIT");
    if (nested) {
        kb_exec(db, "ROLLBACK TO kb_tx");
        kb_exec(db, "RELEASE kb_tx");
    } else {
        kb_exec(db, "ROLLBACK");
    }
    return 0;
}

int kb_meta_get(sqlite3 *db, const char *name, char **value)
{
    sqlite3_stmt *st = NULL;
    int rc = KB_ERR_DB;

    *value = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM kb_meta WHERE name = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        *value = strdup((const char *)sqlite3_column_text(st, 0));
        rc = *value ? 0 : KB_ERR_NOMEM;
        break;
    case SQLITE_DONE:
        rc = KB_ERR_NOTFOUND;
        break;
    default:
        break;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

int kb_meta_set(sqlite3 *db, const char *name, const char *value)
{
    sqlite3_stmt *st = NULL;
    int rc = KB_ERR_DB;

    if (sqlite3_prepare_v2(db,
                           "INSERT INTO kb_meta(name, value) VALUES (?1, ?2) "
                           "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

/* Schema steps; migrations[i] takes the schema from version i to i + 1. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE kb_categories(\n"
    "  slug TEXT PRIMARY KEY,\n"
    "  name TEXT NOT NULL\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE kb_templates(\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  key TEXT NOT NULL UNIQUE,\n"
    "  title TEXT NOT NULL,\n"
    "  category TEXT NOT NULL REFERENCES kb_categories(slug),\n"
    "  severity INTEGER NOT NULL DEFAULT 2 CHECK (severity BETWEEN 1 AND 4),\n"
    "  conditions TEXT NOT NULL DEFAULT '',\n"
    "  text TEXT NOT NULL,\n"
    "  steps TEXT NOT NULL DEFAULT '',\n"
    "  compensation TEXT NOT NULL DEFAULT '',\n"
    "  deadline TEXT NOT NULL DEFAULT '',\n"
    "  deadline_hours INTEGER CHECK (deadline_hours IS NULL OR deadline_hours >= 0),\n"
    "  tags TEXT NOT NULL DEFAULT '',\n"
    "  version INTEGER NOT NULL DEFAULT 1,\n"
    "  updated_by TEXT NOT NULL DEFAULT '',\n"
    "  updated_at TEXT NOT NULL\n"
    ");\n"
    "CREATE INDEX kb_templates_category ON kb_templates(category);\n"
    "CREATE TABLE kb_template_history(\n"
    "  key TEXT NOT NULL,\n"
    "  version INTEGER NOT NULL,\n"
    "  template_id INTEGER NOT NULL,\n"
    "  action TEXT NOT NULL CHECK (action IN ('create', 'update', 'delete')),\n"
    "  title TEXT NOT NULL, category TEXT NOT NULL, severity INTEGER NOT NULL,\n"
    "  conditions TEXT NOT NULL, text TEXT NOT NULL, steps TEXT NOT NULL,\n"
    "  compensation TEXT NOT NULL, deadline TEXT NOT NULL, deadline_hours INTEGER,\n"
    "  tags TEXT NOT NULL, updated_by TEXT NOT NULL, updated_at TEXT NOT NULL,\n"
    "  PRIMARY KEY (key, version)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE kb_cases(\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  key TEXT NOT NULL UNIQUE,\n"
    "  summary TEXT NOT NULL,\n"
    "  category TEXT NOT NULL REFERENCES kb_categories(slug),\n"
    "  tried TEXT NOT NULL DEFAULT '',\n"
    "  resolution TEXT NOT NULL DEFAULT '',\n"
    "  outcome TEXT NOT NULL CHECK (outcome IN ('resolved', 'partial', 'unresolved')),\n"
    "  satisfaction INTEGER CHECK (satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5),\n"
    "  date TEXT NOT NULL\n"
    ");\n"
    "CREATE INDEX kb_cases_category ON kb_cases(category);\n"
    "CREATE VIRTUAL TABLE kb_templates_fts USING fts5(title, category, tags, conditions, text,\n"
    "  steps, content='kb_templates', content_rowid='id', tokenize='redress', "
    "detail=column);\n"
    "CREATE VIRTUAL TABLE kb_cases_fts USING fts5(summary, category, tried, resolution,\n"
    "  content='kb_cases', content_rowid='id', tokenize='redress', detail=column);\n"
    "CREATE TRIGGER kb_templates_ai AFTER INSERT ON kb_templates BEGIN\n"
    "  INSERT INTO kb_template_history VALUES (new.key, new.version, new.id, 'create',\n"
    "    new.title, new.category, new.severity, new.conditions, new.text, new.steps,\n"
    "    new.compensation, new.deadline, new.deadline_hours, new.tags, new.updated_by,\n"
    "    new.updated_at);\n"
    "END;\n"
    "CREATE TRIGGER kb_templates_au AFTER UPDATE ON kb_templates BEGIN\n"
    "  INSERT INTO kb_template_history VALUES (new.key, new.version, new.id, 'update',\n"
    "    new.title, new.category, new.severity, new.conditions, new.text, new.steps,\n"
    "    new.compensation, new.deadline, new.deadline_hours, new.tags, new.updated_by,\n"
    "    new.updated_at);\n"
    "END;\n",
    /* 1 -> 2: a stamp that every change of kb_templates renews (kb_memidx.c) */
    "INSERT OR REPLACE INTO kb_meta(name, value) VALUES ('templates_stamp', "
    "lower(hex(randomblob(8))));\n"
    "CREATE TRIGGER kb_templates_stamp_ai AFTER INSERT ON kb_templates BEGIN\n"
    "  UPDATE kb_meta SET value = lower(hex(randomblob(8))) WHERE name = 'templates_stamp';\n"
    "END;\n"
    "CREATE TRIGGER kb_templates_stamp_au AFTER UPDATE ON kb_templates BEGIN\n"
    "  UPDATE kb_meta SET value = lower(hex(randomblob(8))) WHERE name = 'templates_stamp';\n"
    "END;\n"
    "CREATE TRIGGER kb_templates_stamp_ad AFTER DELETE ON kb_templates BEGIN\n"
    "  UPDATE kb_meta SET value = lower(hex(randomblob(8))) WHERE name = 'templates_stamp';\n"
    "END;\n",
    /* 2 -> 3: the same for kb_cases */
    "INSERT OR REPLACE INTO kb_meta(name, value) VALUES ('cases_stamp', "
    "lower(hex(randomblob(8))));\n"
    "CREATE TRIGGER kb_cases_stamp_ai AFTER INSERT ON kb_cases BEGIN\n"
    "  UPDATE kb_meta SET value = lower(hex(randomblob(8))) WHERE name = 'cases_stamp';\n"
    "END;\n"
    "CREATE TRIGGER kb_cases_stamp_au AFTER UPDATE ON kb_cases BEGIN\n"
    "  UPDATE kb_meta SET value = lower(hex(randomblob(8))) WHERE name = 'cases_stamp';\n"
    "END;\n"
    "CREATE TRIGGER kb_cases_stamp_ad AFTER DELETE ON kb_cases BEGIN\n"
    "  UPDATE kb_meta SET value = lower(hex(randomblob(8))) WHERE name = 'cases_stamp';\n"
    "END;\n",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static int rebuild(sqlite3 *db, char *err, size_t errlen)
{
    if (kb_exec(db, "INSERT INTO kb_templates_fts(kb_templates_fts) VALUES ('rebuild')") != 0 ||
        kb_exec(db, "INSERT INTO kb_cases_fts(kb_cases_fts) VALUES ('rebuild')") != 0) {
        kb_err(err, errlen, "rebuilding the kb index: %s", sqlite3_errmsg(db));
        return KB_ERR_DB;
    }
    return 0;
}

int kb_sync_synonyms(sqlite3 *db, char *err, size_t errlen)
{
    kb_synonyms_t *syn = kb_synonyms_current();
    char want[17], *have = NULL;
    int rc = kb_meta_get(db, "synonyms_hash", &have);

    kb_synonyms_hash(syn, want);
    kb_synonyms_unref(syn);
    if (rc == 0 && strcmp(have, want) == 0)
        goto out;
    if (rc != 0 && rc != KB_ERR_NOTFOUND) {
        kb_err(err, errlen, "reading kb_meta: %s", sqlite3_errmsg(db));
        goto out;
    }
    rc = rebuild(db, err, errlen);
    if (rc == 0 && kb_meta_set(db, "synonyms_hash", want) != 0) {
        kb_err(err, errlen, "writing kb_meta: %s", sqlite3_errmsg(db));
        rc = KB_ERR_DB;
    }
out:
    free(have);
    return rc;
}

int kb_reindex(sqlite3 *db, char *err, size_t errlen)
{
    kb_synonyms_t *syn = kb_synonyms_current();
    char want[17];
    int nested, rc;

    kb_synonyms_hash(syn, want);
    kb_synonyms_unref(syn);
    if (kb_tx_begin(db, &nested) != 0) {
        kb_err(err, errlen, "begin: %s", sqlite3_errmsg(db));
        return KB_ERR_DB;
    }
    rc = rebuild(db, err, errlen);
    if (rc == 0 && kb_meta_set(db, "synonyms_hash", want) != 0) {
        kb_err(err, errlen, "writing kb_meta: %s", sqlite3_errmsg(db));
        rc = KB_ERR_DB;
    }
    if (kb_tx_end(db, nested, rc == 0) != 0 && rc == 0) {
        kb_err(err, errlen, "commit: %s", sqlite3_errmsg(db));
        rc = KB_ERR_DB;
    }
    return rc;
}

int kb_optimize(sqlite3 *db, int which, char *err, size_t errlen)
{
    if (((which & 1) &&
         kb_exec(db, "INSERT INTO kb_templates_fts(kb_templates_fts) VALUES ('optimize')") != 0) ||
        ((which & 2) &&
         kb_exec(db, "INSERT INTO kb_cases_fts(kb_cases_fts) VALUES ('optimize')") != 0)) {
        kb_err(err, errlen, "optimizing the kb index: %s", sqlite3_errmsg(db));
        return KB_ERR_DB;
    }
    return 0;
}

int kb_maintain(sqlite3 *db, int pages)
{
    static const char *const tbl[] = {"kb_templates_fts", "kb_cases_fts"};
    int more = 0;
    if (pages < 1)
        pages = 1;
    for (int i = 0; i < 2; i++) {
        char sql[160];
        int before = sqlite3_total_changes(db);
        /* negative: merge whatever segments there are, not only full levels */
        snprintf(sql, sizeof(sql), "INSERT INTO %s(%s, rank) VALUES ('merge', %d)", tbl[i], tbl[i],
                 -pages);
        if (kb_exec(db, sql) != 0)
            return KB_ERR_DB;
        /* FTS5's documented signal: two or more changes mean it merged something */
        more |= sqlite3_total_changes(db) - before >= 2;
    }
    return more;
}

static int seed_categories(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc = KB_ERR_DB;

    if (sqlite3_prepare_v2(db,
                           "INSERT INTO kb_categories(slug, name) VALUES (?1, ?2) "
                           "ON CONFLICT(slug) DO UPDATE SET name = excluded.name",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    for (int i = 0; i < NCATEGORIES; i++) {
        sqlite3_bind_text(st, 1, categories[i].slug, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, categories[i].name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto out;
        sqlite3_reset(st);
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

int kb_migrate(sqlite3 *db, char *err, size_t errlen)
{
    char *v = NULL;
    int version = 0, nested = 0, rc = -1;

    if (kb_tx_begin(db, &nested) != 0) {
        kb_err(err, errlen, "kb_migrate: begin: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (kb_exec(db, "CREATE TABLE IF NOT EXISTS kb_meta(name TEXT PRIMARY KEY, "
                    "value TEXT NOT NULL) WITHOUT ROWID") != 0) {
        kb_err(err, errlen, "kb_migrate: %s", sqlite3_errmsg(db));
        goto out;
    }
    int r = kb_meta_get(db, "schema_version", &v);
    if (r == 0) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end != 0 || n < 0) {
            kb_err(err, errlen, "kb_migrate: bad schema_version \"%s\" in kb_meta", v);
            goto out;
        }
        version = (int)n;
    } else if (r != KB_ERR_NOTFOUND) {
        kb_err(err, errlen, "kb_migrate: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (version > SCHEMA_VERSION) {
        kb_err(err, errlen,
               "kb_migrate: the database has kb schema version %d, newer than this program's %d",
               version, SCHEMA_VERSION);
        goto out;
    }
    for (; version < SCHEMA_VERSION; version++) {
        char num[16];
        if (kb_exec(db, migrations[version]) != 0) {
            kb_err(err, errlen, "kb_migrate: step %d: %s", version + 1, sqlite3_errmsg(db));
            goto out;
        }
        snprintf(num, sizeof(num), "%d", version + 1);
        if (kb_meta_set(db, "schema_version", num) != 0) {
            kb_err(err, errlen, "kb_migrate: %s", sqlite3_errmsg(db));
            goto out;
        }
    }
    if (seed_categories(db) != 0) {
        kb_err(err, errlen, "kb_migrate: categories: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (kb_sync_synonyms(db, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    free(v);
    if (kb_tx_end(db, nested, rc == 0) != 0 && rc == 0) {
        kb_err(err, errlen, "kb_migrate: commit: %s", sqlite3_errmsg(db));
        rc = -1;
    }
    return rc;
}
