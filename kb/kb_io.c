/*
 * kb_io.c - JSON Lines import and export, and seeding an empty knowledge base.
 *
 * Design.  An import is all-or-nothing: one transaction (kb_tx_begin) around every record of
 * the file; the first bad line rolls everything back and the error names "path:line".  Each
 * record is parsed by the codec (kb_api.c: kb_json_parse_record, strict about fields) and
 * saved by kb_template_save / kb_case_save in upsert mode, which creates a new template
 * version only when something changed.  A key may appear once per file and kind.
 *
 *   open file -> begin -> for each non-blank line: parse -> check duplicate key -> save
 *             -> commit (all saved) | rollback (first error, message "path:line: ...")
 *
 * A successful import ends by merging the touched FTS index into one segment (kb_optimize):
 * a bulk load leaves many small segments and every search pays for each of them.
 *
 * Export writes templates then cases, each ordered by key, in the import format, inside one
 * read transaction so the file is a consistent snapshot; importing it into an empty
 * knowledge base reproduces the same content (versions and editors are not exported).
 */
#include "kb_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES (1 << 20)

/* Keys seen in one import, to reject duplicates: open addressing on (kind, key). */
typedef struct keyset {
    char **keys; /* "t:key" / "c:key" */
    int *lines;
    size_t cap, n;
} keyset;

static unsigned long hash_str(const char *s)
{
    unsigned long h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

static void keyset_free(keyset *k)
{
    for (size_t i = 0; i < k->cap; i++)
        free(k->keys[i]);
    free(k->keys);
    free(k->lines);
    memset(k, 0, sizeof(*k));
}

/* Adds key; returns 0, the line it was first seen on (> 0), or KB_ERR_NOMEM. */
static int keyset_add(keyset *k, char kind, const char *key, int line)
{
    if ((k->n + 1) * 2 > k->cap) {
        keyset bigger = {NULL, NULL, k->cap ? k->cap * 2 : 256, 0};
        bigger.keys = calloc(bigger.cap, sizeof(char *));
        bigger.lines = calloc(bigger.cap, sizeof(int));
        if (bigger.keys == NULL || bigger.lines == NULL) {
            free(bigger.keys);
            free(bigger.lines);
            return KB_ERR_NOMEM;
        }
        for (size_t i = 0; i < k->cap; i++) {
            if (k->keys[i] == NULL)
                continue;
            size_t h = hash_str(k->keys[i]) & (bigger.cap - 1);
            while (bigger.keys[h])
                h = (h + 1) & (bigger.cap - 1);
            bigger.keys[h] = k->keys[i];
            bigger.lines[h] = k->lines[i];
        }
        bigger.n = k->n;
        free(k->keys);
        free(k->lines);
        *k = bigger;
    }
    size_t len = strlen(key);
    char *full = malloc(len + 3);
    if (full == NULL)
        return KB_ERR_NOMEM;
    full[0] = kind;
    full[1] = ':';
    memcpy(full + 2, key, len + 1);
    size_t h = hash_str(full) & (k->cap - 1);
    while (k->keys[h]) {
        if (strcmp(k->keys[h], full) == 0) {
            free(full);
            return k->lines[h];
        }
        h = (h + 1) & (k->cap - 1);
    }
    k->keys[h] = full;
    k->lines[h] = line;
    k->n++;
    return 0;
}

/* Imports every record of f (named name in messages) inside the caller's transaction.
 * Returns the number of records or -1 with "name:line: message". */
static int import_stream(sqlite3 *db, FILE *f, const char *name, const char *who,
                         kb_import_stats_t *st, char *err, size_t errlen)
{
    char *line = NULL, msg[384];
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, count = 0, rc = -1;
    keyset keys = {NULL, NULL, 0, 0};
    kb_record_t rec;

    memset(&rec, 0, sizeof(rec));
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len > LINE_MAX_BYTES) {
            kb_err(err, errlen, "%s:%d: line longer than %d bytes", name, lineno, LINE_MAX_BYTES);
            goto out;
        }
        size_t skip = 0;
        if (lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0)
            skip = 3; /* byte order mark */
        size_t i = skip;
        while (i < (size_t)len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == (size_t)len)
            continue;
        if (!kb_utf8_valid(line + skip, (size_t)len - skip)) {
            kb_err(err, errlen, "%s:%d: not valid UTF-8 (or contains a NUL byte)", name, lineno);
            goto out;
        }
        if (kb_json_parse_record(line + skip, (size_t)len - skip, &rec, msg, sizeof(msg)) != 0) {
            kb_err(err, errlen, "%s:%d: %s", name, lineno, msg);
            goto out;
        }
        const char *key = rec.kind == KB_TEMPLATE ? rec.tpl.key : rec.kcase.key;
        if (key != NULL) {
            int seen = keyset_add(&keys, rec.kind == KB_TEMPLATE ? 't' : 'c', key, lineno);
            if (seen < 0) {
                kb_err(err, errlen, "%s:%d: out of memory", name, lineno);
                goto out;
            }
            if (seen > 0) {
                kb_err(err, errlen, "%s:%d: key \"%s\" already appears on line %d", name, lineno,
                       key, seen);
                goto out;
            }
        }
        int r =
            rec.kind == KB_TEMPLATE
                ? kb_template_save_in(db, &rec.tpl, KB_SAVE_UPSERT, 0, who, KB_IN_TX, NULL, NULL,
                                      msg, sizeof(msg))
                : kb_case_save_in(db, &rec.kcase, KB_SAVE_UPSERT, KB_IN_TX, NULL, msg, sizeof(msg));
        if (r < 0) {
            kb_err(err, errlen, "%s:%d: %s", name, lineno, msg);
            goto out;
        }
        if (st) {
            if (rec.kind == KB_TEMPLATE)
                st->templates++;
            else
                st->cases++;
            st->created += r == KB_CREATED;
            st->updated += r == KB_UPDATED;
            st->unchanged += r == KB_UNCHANGED;
        }
        kb_record_clear(&rec);
        count++;
    }
    if (ferror(f)) {
        kb_err(err, errlen, "%s:%d: read error", name, lineno + 1);
        goto out;
    }
    rc = count;
out:
    kb_record_clear(&rec);
    keyset_free(&keys);
    free(line);
    return rc;
}

int kb_import_file_ex(sqlite3 *db, const char *path, const char *who, kb_import_stats_t *stats,
                      char *err, size_t errlen)
{
    kb_import_stats_t local;
    FILE *f = fopen(path, "r");
    int nested, rc;

    if (stats == NULL)
        stats = &local;
    memset(stats, 0, sizeof(*stats));
    if (f == NULL) {
        kb_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (kb_tx_begin(db, &nested) != 0) {
        kb_err(err, errlen, "%s: begin: %s", path, sqlite3_errmsg(db));
        fclose(f);
        return -1;
    }
    rc = kb_sync_synonyms(db, err, errlen) == 0
             ? import_stream(db, f, path, who, stats, err, errlen)
             : -1;
    if (rc > 0 &&
        kb_optimize(db, (stats->templates ? 1 : 0) | (stats->cases ? 2 : 0), err, errlen) != 0)
        rc = -1;
    if (kb_tx_end(db, nested, rc >= 0) != 0 && rc >= 0) {
        kb_err(err, errlen, "%s: commit: %s", path, sqlite3_errmsg(db));
        rc = -1;
    }
    if (rc < 0)
        memset(stats, 0, sizeof(*stats));
    fclose(f);
    return rc;
}

int kb_import_file(sqlite3 *db, const char *path, const char *who, char *err, size_t errlen)
{
    return kb_import_file_ex(db, path, who, NULL, err, errlen);
}

/* Writes every record of one kind ordered by key.  Returns the count or -1. */
static int export_kind(sqlite3 *db, FILE *f, kb_kind_t kind, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int count = 0, rc = -1, s;

    if (sqlite3_prepare_v2(db,
                           kind == KB_TEMPLATE ? "SELECT id FROM kb_templates ORDER BY key"
                                               : "SELECT id FROM kb_cases ORDER BY key",
                           -1, &st, NULL) != SQLITE_OK) {
        kb_err(err, errlen, "export: %s", sqlite3_errmsg(db));
        goto out;
    }
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0);
        char *line = NULL;
        int r;
        if (kind == KB_TEMPLATE) {
            kb_template_t t;
            if ((r = kb_template_get(db, id, NULL, &t)) == 0)
                line = kb_json_template_line(&t);
            kb_template_clear(&t);
        } else {
            kb_case_t c;
            if ((r = kb_case_get(db, id, NULL, &c)) == 0)
                line = kb_json_case_line(&c);
            kb_case_clear(&c);
        }
        if (r != 0 || line == NULL) {
            kb_err(err, errlen, "export: %s", r ? sqlite3_errmsg(db) : "out of memory");
            goto out;
        }
        int w = fprintf(f, "%s\n", line);
        free(line);
        if (w < 0) {
            kb_err(err, errlen, "export: write error: %s", strerror(errno));
            goto out;
        }
        count++;
    }
    if (s != SQLITE_DONE) {
        kb_err(err, errlen, "export: %s", sqlite3_errmsg(db));
        goto out;
    }
    rc = count;
out:
    sqlite3_finalize(st);
    return rc;
}

int kb_export(sqlite3 *db, FILE *f, char *err, size_t errlen)
{
    int own = sqlite3_get_autocommit(db), nt = -1, nc = -1;

    if (own && kb_exec(db, "BEGIN") != 0) {
        kb_err(err, errlen, "export: begin: %s", sqlite3_errmsg(db));
        return -1;
    }
    nt = export_kind(db, f, KB_TEMPLATE, err, errlen);
    if (nt >= 0)
        nc = export_kind(db, f, KB_CASE, err, errlen);
    if (own)
        kb_exec(db, "COMMIT");
    if (nt < 0 || nc < 0)
        return -1;
    if (fflush(f) != 0) {
        kb_err(err, errlen, "export: write error: %s", strerror(errno));
        return -1;
    }
    return nt + nc;
}

int kb_seed_dir(sqlite3 *db, const char *dir, char *err, size_t errlen)
{
    static const char *const files[] = {"templates.jsonl", "cases.jsonl"};
    kb_import_stats_t st;
    int nested, rc = 0, found = 0;

    if (dir == NULL || *dir == 0)
        return 0;
    memset(&st, 0, sizeof(st));
    if (kb_tx_begin(db, &nested) != 0) {
        kb_err(err, errlen, "seed: begin: %s", sqlite3_errmsg(db));
        return -1;
    }
    int empty = kb_is_empty(db);
    if (empty < 0) {
        kb_err(err, errlen, "seed: %s", sqlite3_errmsg(db));
        rc = -1;
        goto out;
    }
    if (!empty)
        goto out;
    if (kb_sync_synonyms(db, err, errlen) != 0) {
        rc = -1;
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s", dir, files[i]) >= (int)sizeof(path)) {
            kb_err(err, errlen, "seed: %s: path too long", dir);
            rc = -1;
            goto out;
        }
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            if (errno == ENOENT)
                continue;
            kb_err(err, errlen, "%s: %s", path, strerror(errno));
            rc = -1;
            goto out;
        }
        found++;
        int n = import_stream(db, f, path, "seed", &st, err, errlen);
        fclose(f);
        if (n < 0) {
            rc = -1;
            goto out;
        }
        rc += n;
    }
    if (!found) {
        kb_err(err, errlen, "seed: %s: no templates.jsonl or cases.jsonl", dir);
        rc = -1;
    } else if (rc > 0 && kb_optimize(db, 3, err, errlen) != 0) {
        rc = -1;
    }
out:
    if (kb_tx_end(db, nested, rc >= 0) != 0 && rc >= 0) {
        kb_err(err, errlen, "seed: commit: %s", sqlite3_errmsg(db));
        rc = -1;
    }
    return rc;
}
