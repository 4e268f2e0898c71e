/*
 * kb_cli.c - `redress kb ...`: the editors' command-line tools.
 *
 *   redress kb import FILE [--who NAME]        JSON Lines in, all or nothing
 *   redress kb export [FILE|-]                 JSON Lines out (stdout by default)
 *   redress kb search TEXT [-c CATEGORY] [-n LIMIT] [--json]
 *   redress kb stats                           counts per category, index and synonyms
 *   redress kb reindex                         rebuild the FTS indexes (after editing synonyms)
 *   redress kb optimize                        merge each FTS index into one segment
 *   redress kb synonyms [FILE]                 check a synonym list (default: kb.synonyms)
 *
 * Design.  Each command opens the database named by the settings (config_db_path; data.dir is
 * created if missing) with WAL and a 5 s busy timeout, so it can run next to a live server;
 * loads kb.synonyms, registers the tokenizer and migrates, runs, and closes.  Export writes to
 * FILE.tmp and renames it into place, so a failed export never leaves half a file.  Exit
 * codes: 0 ok, 1 failure, 2 usage.
 */
#include "config.h"
#include "util.h"
#include "kb_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int usage(void)
{
    fprintf(stderr,
            "usage: redress kb import FILE [--who NAME]\n"
            "       redress kb export [FILE|-]\n"
            "       redress kb search TEXT [-c|--category CATEGORY] [-n|--limit N] [--json]\n"
            "       redress kb stats\n"
            "       redress kb reindex\n"
            "       redress kb optimize\n"
            "       redress kb synonyms [FILE]\n"
            "  (plus any --setting=value; the database is data.dir/data.db)\n");
    return 2;
}

/* Opens and prepares the database.  Returns it, or NULL after printing why. */
static sqlite3 *open_db(const config_t *cfg)
{
    char path[4096], err[512];
    sqlite3 *db = NULL;

    if (config_db_path(cfg, path, sizeof(path)) != 0) {
        fprintf(stderr, "redress kb: database path too long\n");
        return NULL;
    }
    if (strcmp(path, ":memory:") != 0 && util_mkdirs(cfg->data_dir) != 0) {
        fprintf(stderr, "redress kb: cannot create %s: %s\n", cfg->data_dir, strerror(errno));
        return NULL;
    }
    if (kb_set_synonyms_file(cfg->kb_synonyms, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress kb: synonyms: %s\n", err);
        return NULL;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fprintf(stderr, "redress kb: %s: %s\n", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(db, 5000);
    if (kb_exec(db, "PRAGMA journal_mode=WAL") != 0 || kb_register(db) != 0) {
        fprintf(stderr, "redress kb: %s: %s\n", path, sqlite3_errmsg(db));
        goto fail;
    }
    if (kb_migrate(db, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress kb: %s: %s\n", path, err);
        goto fail;
    }
    return db;
fail:
    sqlite3_close(db);
    return NULL;
}

/* Option value: "--name=v", "--name v" or "-s v".  Returns 1 and sets *val (advancing *i) when
 * argv[*i] is the option, 0 when it is not, -1 when the value is missing. */
static int option(int argc, char **argv, int *i, const char *name, const char *shrt,
                  const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) == 0 && a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (strcmp(a, name) == 0 || (shrt && strcmp(a, shrt) == 0)) {
        if (*i + 1 >= argc)
            return -1;
        *val = argv[++*i];
        return 1;
    }
    return 0;
}

static int cmd_import(const config_t *cfg, int argc, char **argv)
{
    const char *file = NULL, *who = getenv("USER");
    char err[512];
    kb_import_stats_t st;

    for (int i = 1; i < argc; i++) {
        int r = option(argc, argv, &i, "--who", NULL, &who);
        if (r < 0)
            return usage();
        if (r == 0) {
            if (file)
                return usage();
            file = argv[i];
        }
    }
    if (file == NULL)
        return usage();
    sqlite3 *db = open_db(cfg);
    if (db == NULL)
        return 1;
    int n = kb_import_file_ex(db, file, who && *who ? who : "cli", &st, err, sizeof(err));
    sqlite3_close(db);
    if (n < 0) {
        fprintf(stderr, "redress kb import: %s\nnothing was imported\n", err);
        return 1;
    }
    printf("imported %d records (%d templates, %d cases): %d created, %d updated, %d "
           "unchanged\n",
           n, st.templates, st.cases, st.created, st.updated, st.unchanged);
    return 0;
}

static int cmd_export(const config_t *cfg, int argc, char **argv)
{
    const char *file = argc > 1 ? argv[1] : "-";
    char tmp[4096], err[512];
    FILE *f = stdout;
    int n, rc = 1;

    if (argc > 2)
        return usage();
    sqlite3 *db = open_db(cfg);
    if (db == NULL)
        return 1;
    if (strcmp(file, "-") != 0) {
        if (snprintf(tmp, sizeof(tmp), "%s.tmp", file) >= (int)sizeof(tmp)) {
            fprintf(stderr, "redress kb export: path too long\n");
            goto out;
        }
        f = fopen(tmp, "w");
        if (f == NULL) {
            fprintf(stderr, "redress kb export: %s: %s\n", tmp, strerror(errno));
            goto out;
        }
    }
    n = kb_export(db, f, err, sizeof(err));
    if (f != stdout) {
        int closed = fclose(f);
        if (n >= 0 && closed != 0) {
            kb_err(err, sizeof(err), "%s: %s", tmp, strerror(errno));
            n = -1;
        }
        if (n >= 0 && rename(tmp, file) != 0) {
            kb_err(err, sizeof(err), "%s: %s", file, strerror(errno));
            n = -1;
        }
        if (n < 0)
            unlink(tmp);
    }
    if (n < 0) {
        fprintf(stderr, "redress kb export: %s\n", err);
        goto out;
    }
    if (f != stdout)
        fprintf(stderr, "exported %d records to %s\n", n, file);
    rc = 0;
out:
    sqlite3_close(db);
    return rc;
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static int cmd_search(const config_t *cfg, int argc, char **argv)
{
    const char *text = NULL, *cat = NULL, *lim = NULL;
    int json = 0, limit = 5;
    kb_result_t *res = NULL;

    for (int i = 1; i < argc; i++) {
        int r = option(argc, argv, &i, "--category", "-c", &cat);
        if (r == 0)
            r = option(argc, argv, &i, "--limit", "-n", &lim);
        if (r < 0)
            return usage();
        if (r == 0 && strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (r == 0) {
            if (text)
                return usage();
            text = argv[i];
        }
    }
    if (text == NULL)
        return usage();
    if (lim) {
        char *end;
        long n = strtol(lim, &end, 10);
        if (*end || n < 1 || n > 50) {
            fprintf(stderr, "redress kb search: limit must be 1..50\n");
            return 2;
        }
        limit = (int)n;
    }
    if (cat && kb_category_name(cat) == NULL) {
        fprintf(stderr, "redress kb search: unknown category \"%s\"; one of:", cat);
        for (int i = 0; i < kb_category_count(); i++)
            fprintf(stderr, " %s", kb_category_slug(i));
        fprintf(stderr, "\n");
        return 2;
    }
    sqlite3 *db = open_db(cfg);
    if (db == NULL)
        return 1;
    int rc = kb_search(db, text, cat, limit, &res);
    if (rc != 0) {
        fprintf(stderr, "redress kb search: %s\n", sqlite3_errmsg(db));
        sqlite3_close(db);
        return 1;
    }
    static const char *const conf[] = {"no_match", "suggest", "answer"};
    if (json) {
        printf("{\"confidence\":\"%s\",\"hits\":[", conf[res->confidence]);
        for (int i = 0; i < res->count; i++) {
            const kb_hit_t *h = &res->hits[i];
            printf("%s{\"kind\":\"%s\",\"id\":%lld,\"key\":", i ? "," : "",
                   h->kind == KB_TEMPLATE ? "template" : "case", h->id);
            print_json_string(h->key);
            printf(",\"title\":");
            print_json_string(h->title);
            printf(",\"category\":");
            print_json_string(h->category);
            printf(",\"score\":%.4f,\"coverage\":%.3f,\"snippet\":", h->score, h->coverage);
            print_json_string(h->snippet);
            printf("}");
        }
        printf("]}\n");
    } else {
        printf("confidence: %s (%d hits)\n", conf[res->confidence], res->count);
        for (int i = 0; i < res->count; i++) {
            const kb_hit_t *h = &res->hits[i];
            const char *cn = kb_category_name(h->category);
            printf("%d. %s %s  %s  [%s %s] score %.2f coverage %.2f\n   %s\n", i + 1,
                   h->kind == KB_TEMPLATE ? "template" : "case", h->key, h->title, h->category,
                   cn ? cn : "", h->score, h->coverage, h->snippet);
        }
    }
    kb_result_free(res);
    sqlite3_close(db);
    return 0;
}

/* Prints s left-aligned in width terminal columns (CJK characters take two). */
static void print_col(const char *s, int width)
{
    int w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        int k = kb_utf8_decode(p, 4, &cp);
        w += (cp >= 0x1100 &&
              (cp <= 0x115F || (cp >= 0x2E80 && cp <= 0xA4CF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
               (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFF00 && cp <= 0xFF60)))
                 ? 2
                 : 1;
        p += k;
    }
    printf("%s%*s", s, width > w ? width - w : 0, "");
}

static int cmd_stats(const config_t *cfg, int argc, char **argv)
{
    sqlite3_stmt *st = NULL;
    int rc = 1;
    (void)argv;

    if (argc > 1)
        return usage();
    sqlite3 *db = open_db(cfg);
    if (db == NULL)
        return 1;
    if (sqlite3_prepare_v2(db,
                           "SELECT c.slug, c.name, "
                           "(SELECT count(*) FROM kb_templates t WHERE t.category = c.slug), "
                           "(SELECT count(*) FROM kb_cases k WHERE k.category = c.slug) "
                           "FROM kb_categories c ORDER BY c.slug",
                           -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    printf("%-20s %-20s %9s %9s\n", "category", "name", "templates", "cases");
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        print_col((const char *)sqlite3_column_text(st, 0), 21);
        print_col((const char *)sqlite3_column_text(st, 1), 21);
        printf("%9d %9d\n", sqlite3_column_int(st, 2), sqlite3_column_int(st, 3));
    }
    if (s != SQLITE_DONE)
        goto dberr;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT count(*) FROM kb_templates), "
                           "(SELECT count(*) FROM kb_cases), "
                           "(SELECT count(*) FROM kb_template_history), "
                           "(SELECT value FROM kb_meta WHERE name = 'schema_version')",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto dberr;
    kb_synonyms_t *syn = kb_synonyms_current();
    char hash[17];
    kb_synonyms_hash(syn, hash);
    printf("total: %d templates (%d versions in history), %d cases\n", sqlite3_column_int(st, 0),
           sqlite3_column_int(st, 2), sqlite3_column_int(st, 1));
    printf("schema version %s; synonyms: %d groups from %s (hash %s)\n", sqlite3_column_text(st, 3),
           kb_synonyms_groups(syn), cfg->kb_synonyms[0] ? cfg->kb_synonyms : "(none)", hash);
    kb_synonyms_unref(syn);
    rc = 0;
    goto out;
dberr:
    fprintf(stderr, "redress kb stats: %s\n", sqlite3_errmsg(db));
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

static int cmd_reindex(const config_t *cfg, int argc, char **argv)
{
    char err[512];
    (void)argv;
    if (argc > 1)
        return usage();
    sqlite3 *db = open_db(cfg);
    if (db == NULL)
        return 1;
    int rc = kb_reindex(db, err, sizeof(err));
    sqlite3_close(db);
    if (rc != 0) {
        fprintf(stderr, "redress kb reindex: %s\n", err);
        return 1;
    }
    printf("reindexed\n");
    return 0;
}

static int cmd_optimize(const config_t *cfg, int argc, char **argv)
{
    char err[512];
    int nested = 0, rc;
    (void)argv;
    if (argc > 1)
        return usage();
    sqlite3 *db = open_db(cfg);
    if (db == NULL)
        return 1;
    rc = kb_tx_begin(db, &nested);
    if (rc == 0)
        rc = kb_optimize(db, 3, err, sizeof(err));
    else
        kb_err(err, sizeof(err), "%s", sqlite3_errmsg(db));
    if (kb_tx_end(db, nested, rc == 0) != 0 && rc == 0) {
        kb_err(err, sizeof(err), "commit: %s", sqlite3_errmsg(db));
        rc = KB_ERR_DB;
    }
    sqlite3_close(db);
    if (rc != 0) {
        fprintf(stderr, "redress kb optimize: %s\n", err);
        return 1;
    }
    printf("optimized\n");
    return 0;
}

static int cmd_synonyms(const config_t *cfg, int argc, char **argv)
{
    char err[512];
    const char *file = argc > 1 ? argv[1] : cfg->kb_synonyms;
    if (argc > 2)
        return usage();
    if (file == NULL || *file == 0) {
        printf("no synonym list configured (kb.synonyms is empty)\n");
        return 0;
    }
    if (kb_set_synonyms_file(file, err, sizeof(err)) != 0) {
        fprintf(stderr, "redress kb synonyms: %s\n", err);
        return 1;
    }
    kb_synonyms_t *syn = kb_synonyms_current();
    printf("%s: %d groups, ok\n", file, kb_synonyms_groups(syn));
    kb_synonyms_unref(syn);
    kb_set_synonyms_file(NULL, NULL, 0);
    return 0;
}

int kb_cli_main(const struct config *cfg, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(const config_t *, int, char **);
    } cmds[] = {
        {"import", cmd_import},     {"export", cmd_export},   {"search", cmd_search},
        {"stats", cmd_stats},       {"reindex", cmd_reindex}, {"optimize", cmd_optimize},
        {"synonyms", cmd_synonyms},
    };
    int rc = 2;

    if (argc < 2)
        return usage();
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(argv[1], cmds[i].name) == 0) {
            rc = cmds[i].fn(cfg, argc - 1, argv + 1);
            kb_set_synonyms_file(NULL, NULL, 0);
            return rc;
        }
    fprintf(stderr, "redress kb: unknown command \"%s\"\n", argv[1]);
    return usage();
}
