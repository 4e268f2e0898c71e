/*
 * schema.c - versioned migrations of a module's tables (schema.h).
 *
 * schema_migrate(): BEGIN IMMEDIATE (or SAVEPOINT) -> create <module>_meta -> read the version
 * -> for each missing step: run it, store the new version -> COMMIT (or RELEASE); any error
 * rolls the whole run back.
 */
#include "schema.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>

static int exec(sqlite3 *db, const char *module, const char *sql, const char *what, char *err,
                size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s_migrate: %s: %s", module, what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* The stored version into *version (0 when none).  0 or -1 + err. */
static int get_version(sqlite3 *db, const char *module, int *version, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    char sql[128];
    int rc = -1, s;

    *version = 0;
    snprintf(sql, sizeof(sql), "SELECT value FROM %s_meta WHERE name = 'schema_version'", module);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s_migrate: %s", module, sqlite3_errmsg(db));
        goto out;
    }
    s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        char *end = NULL;
        long n = v ? strtol(v, &end, 10) : -1;
        if (!v || *end != '\0' || n < 0 || n > 1000000) {
            snprintf(err, errlen, "%s_migrate: bad schema_version \"%s\" in %s_meta", module,
                     v ? v : "", module);
            goto out;
        }
        *version = (int)n;
    } else if (s != SQLITE_DONE) {
        snprintf(err, errlen, "%s_migrate: %s", module, sqlite3_errmsg(db));
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

int schema_migrate(sqlite3 *db, const char *module, const char *const *steps, int nsteps, char *err,
                   size_t errlen)
{
    int nested = !sqlite3_get_autocommit(db), version = 0, rc = -1;
    char e2[16], sql[192], meta[64];

    snprintf(meta, sizeof(meta), "%s_meta", module);
    snprintf(sql, sizeof(sql), nested ? "SAVEPOINT %s_migrate" : "BEGIN IMMEDIATE", module);
    if (exec(db, module, sql, "begin", err, errlen) != 0)
        return -1;
    snprintf(sql, sizeof(sql),
             "CREATE TABLE IF NOT EXISTS %s(name TEXT PRIMARY KEY, value TEXT NOT NULL)"
             " WITHOUT ROWID",
             meta);
    if (exec(db, module, sql, meta, err, errlen) != 0 ||
        get_version(db, module, &version, err, errlen) != 0)
        goto out;
    if (version > nsteps) {
        snprintf(err, errlen,
                 "%s_migrate: the database has %s schema version %d, newer than this program's %d",
                 module, module, version, nsteps);
        goto out;
    }
    for (; version < nsteps; version++) {
        char what[32];
        snprintf(what, sizeof(what), "step %d", version + 1);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO %s(name, value) VALUES ('schema_version', '%d')"
                 " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                 meta, version + 1);
        if (exec(db, module, steps[version], what, err, errlen) != 0 ||
            exec(db, module, sql, meta, err, errlen) != 0)
            goto out;
        log_notice("schema", "%s tables at schema version %d", module, version + 1);
    }
    rc = 0;
out:
    if (rc == 0) {
        snprintf(sql, sizeof(sql), nested ? "RELEASE %s_migrate" : "COMMIT", module);
        if (exec(db, module, sql, "commit", err, errlen) == 0)
            return 0;
        rc = -1;
    }
    if (nested) {
        snprintf(sql, sizeof(sql), "ROLLBACK TO %s_migrate", module);
        exec(db, module, sql, "", e2, sizeof(e2));
        snprintf(sql, sizeof(sql), "RELEASE %s_migrate", module);
        exec(db, module, sql, "", e2, sizeof(e2));
    } else {
        exec(db, module, "ROLLBACK", "", e2, sizeof(e2));
    }
    return rc;
}
