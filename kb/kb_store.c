/*
 * kb_store.c - solution templates (versioned) and past cases: validation, save, load, list,
 * delete, history.
 *
 * Design.  Records travel as kb_template_t / kb_case_t (kb.h): every string is malloc'ed and
 * owned by the record; kb_*_clear frees them.  A loaded record never has NULL strings (absent
 * values load as ""), so callers need no NULL checks.  Steps and tags are stored one per line
 * in their columns; validation forbids line breaks inside a step or tag, so the split is exact.
 *
 * A save is one transaction (kb_tx_begin: BEGIN IMMEDIATE or a savepoint of the caller's):
 *
 *   kb_sync_synonyms -> validate -> look up existing by id or key
 *     absent  -> INSERT, version = 1 + highest version in history for the key
 *                (a key deleted and created again continues its history)
 *     present -> same content: nothing written (KB_UNCHANGED)
 *                else UPDATE with version + 1 (KB_UPDATED)
 *
 * History rows for create/update are written by triggers (kb_schema.c), so no write path can
 * skip them; kb_template_delete adds the "delete" row itself because it carries who deleted.
 * The FTS indexes are kept in step here, not by triggers (fts_row explains why): every write
 * of a content row goes through tpl_write / case_write / the deletes below.
 *
 * Flag KB_IN_TX (kb_*_save_in) is for bulk writers that hold their own transaction and roll
 * it back whole on any error (import, seed): no savepoint per record, because FTS5 flushes a
 * segment at every savepoint.
 */
#include "kb_internal.h"

#include <stdlib.h>
#include <string.h>

#define KEY_MAX 64
#define WHO_MAX 128

/* ---- small helpers ---- */

static char *dup_col(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return strdup(s ? s : "");
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Splits s by '\n' into a malloc'ed array (empty s: no items).  Returns 0 or KB_ERR_NOMEM. */
static int split_lines(const char *s, char ***out, int *n)
{
    int count = 0, k = 0;
    *out = NULL;
    *n = 0;
    if (s == NULL || *s == 0)
        return 0;
    count = 1;
    for (const char *p = s; *p; p++)
        count += *p == '\n';
    char **v = calloc((size_t)count, sizeof(char *));
    if (v == NULL)
        return KB_ERR_NOMEM;
    for (const char *p = s;; k++) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        v[k] = strndup(p, len);
        if (v[k] == NULL) {
            free_list(v, k);
            return KB_ERR_NOMEM;
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    *out = v;
    *n = count;
    return 0;
}

/* Joins items with '\n' into a malloc'ed string, or NULL when out of memory. */
static char *join_lines(char *const *v, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *s = malloc(len), *p = s;
    if (s == NULL)
        return NULL;
    *p = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i]);
        if (i > 0)
            *p++ = '\n';
        memcpy(p, v[i], l);
        p += l;
        *p = 0;
    }
    return s;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

void kb_template_clear(kb_template_t *t)
{
    free(t->key);
    free(t->title);
    free(t->category);
    free(t->conditions);
    free(t->text);
    free_list(t->steps, t->nsteps);
    free(t->compensation);
    free(t->deadline);
    free_list(t->tags, t->ntags);
    free(t->updated_by);
    free(t->updated_at);
    free(t->action);
    memset(t, 0, sizeof(*t));
    t->deadline_hours = -1;
}

void kb_case_clear(kb_case_t *c)
{
    free(c->key);
    free(c->summary);
    free(c->category);
    free(c->tried);
    free(c->resolution);
    free(c->outcome);
    free(c->date);
    memset(c, 0, sizeof(*c));
}

void kb_templates_free(kb_template_t *v, int n)
{
    for (int i = 0; i < n; i++)
        kb_template_clear(&v[i]);
    free(v);
}

void kb_cases_free(kb_case_t *v, int n)
{
    for (int i = 0; i < n; i++)
        kb_case_clear(&v[i]);
    free(v);
}

/* ---- validation ---- */

enum { TEXT_LINE = 0, TEXT_MULTI = 1 };

/* Checks a text field: UTF-8, no control characters (TEXT_MULTI allows \n and \t), at most
 * max characters, and at least one non-space when required. */
static int check_text(const char *field, const char *s, int required, size_t max, int multi,
                      char *err, size_t errlen)
{
    size_t n = s ? strlen(s) : 0;
    int blank = 1;

    if (n == 0) {
        if (!required)
            return 0;
        kb_err(err, errlen, "field \"%s\": required", field);
        return KB_ERR_INVALID;
    }
    if (!kb_utf8_valid(s, n)) {
        kb_err(err, errlen, "field \"%s\": not valid UTF-8", field);
        return KB_ERR_INVALID;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7F) {
            if (!(multi && (*p == '\n' || *p == '\t' || *p == '\r'))) {
                kb_err(err, errlen, "field \"%s\": control character %s", field,
                       *p == '\n' ? "(line break) not allowed here" : "not allowed");
                return KB_ERR_INVALID;
            }
        } else if (*p != ' ') {
            blank = 0;
        }
    }
    if (required && blank) {
        kb_err(err, errlen, "field \"%s\": must not be blank", field);
        return KB_ERR_INVALID;
    }
    if (kb_utf8_chars(s) > max) {
        kb_err(err, errlen, "field \"%s\": longer than %zu characters", field, max);
        return KB_ERR_INVALID;
    }
    return 0;
}

static int check_key(const char *key, char *err, size_t errlen)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0) {
        kb_err(err, errlen, "field \"key\": required");
        return KB_ERR_INVALID;
    }
    if (n > KEY_MAX) {
        kb_err(err, errlen, "field \"key\": longer than %d characters", KEY_MAX);
        return KB_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            kb_err(err, errlen, "field \"key\": only letters, digits, '.', '_' and '-' allowed");
            return KB_ERR_INVALID;
        }
    }
    return 0;
}

static int check_category(const char *cat, char *err, size_t errlen)
{
    if (cat == NULL || *cat == 0) {
        kb_err(err, errlen, "field \"category\": required");
        return KB_ERR_INVALID;
    }
    if (kb_category_name(cat) == NULL) {
        kb_err(err, errlen, "field \"category\": unknown category \"%.64s\"", cat);
        return KB_ERR_INVALID;
    }
    return 0;
}

int kb_template_validate(const kb_template_t *t, char *err, size_t errlen)
{
    char name[32];
    int rc;

    if ((rc = check_key(t->key, err, errlen)) != 0 ||
        (rc = check_text("title", t->title, 1, 200, TEXT_LINE, err, errlen)) != 0 ||
        (rc = check_category(t->category, err, errlen)) != 0 ||
        (rc = check_text("conditions", t->conditions, 0, 2000, TEXT_MULTI, err, errlen)) != 0 ||
        (rc = check_text("text", t->text, 1, 4000, TEXT_MULTI, err, errlen)) != 0 ||
        (rc = check_text("compensation", t->compensation, 0, 500, TEXT_MULTI, err, errlen)) != 0 ||
        (rc = check_text("deadline", t->deadline, 0, 64, TEXT_LINE, err, errlen)) != 0)
        return rc;
    if (t->severity < 1 || t->severity > 4) {
        kb_err(err, errlen, "field \"severity\": must be 1..4");
        return KB_ERR_INVALID;
    }
    if (t->deadline_hours < -1 || t->deadline_hours > 8760) {
        kb_err(err, errlen, "field \"deadline_hours\": must be 0..8760");
        return KB_ERR_INVALID;
    }
    if (t->nsteps < 0 || t->nsteps > 50) {
        kb_err(err, errlen, "field \"steps\": at most 50 steps");
        return KB_ERR_INVALID;
    }
    for (int i = 0; i < t->nsteps; i++) {
        snprintf(name, sizeof(name), "steps[%d]", i);
        if ((rc = check_text(name, t->steps[i], 1, 500, TEXT_LINE, err, errlen)) != 0)
            return rc;
    }
    if (t->ntags < 0 || t->ntags > 20) {
        kb_err(err, errlen, "field \"tags\": at most 20 tags");
        return KB_ERR_INVALID;
    }
    for (int i = 0; i < t->ntags; i++) {
        snprintf(name, sizeof(name), "tags[%d]", i);
        if ((rc = check_text(name, t->tags[i], 1, 32, TEXT_LINE, err, errlen)) != 0)
            return rc;
    }
    return 0;
}

static int check_date(const char *d, char *err, size_t errlen)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, day;

    if (d == NULL || strlen(d) != 10 || d[4] != '-' || d[7] != '-')
        goto bad;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (d[i] < '0' || d[i] > '9'))
            goto bad;
    y = atoi(d);
    m = atoi(d + 5);
    day = atoi(d + 8);
    if (y < 1970 || y > 9999 || m < 1 || m > 12 || day < 1 || day > mdays[m - 1])
        goto bad;
    if (m == 2 && day == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        goto bad;
    return 0;
bad:
    kb_err(err, errlen, "field \"date\": must be a date YYYY-MM-DD");
    return KB_ERR_INVALID;
}

int kb_case_validate(const kb_case_t *c, char *err, size_t errlen)
{
    int rc;
    if ((rc = check_key(c->key, err, errlen)) != 0 ||
        (rc = check_text("summary", c->summary, 1, 2000, TEXT_MULTI, err, errlen)) != 0 ||
        (rc = check_category(c->category, err, errlen)) != 0 ||
        (rc = check_text("tried", c->tried, 0, 4000, TEXT_MULTI, err, errlen)) != 0 ||
        (rc = check_text("resolution", c->resolution, 0, 4000, TEXT_MULTI, err, errlen)) != 0 ||
        (rc = check_date(c->date, err, errlen)) != 0)
        return rc;
    if (c->outcome == NULL ||
        (strcmp(c->outcome, "resolved") != 0 && strcmp(c->outcome, "partial") != 0 &&
         strcmp(c->outcome, "unresolved") != 0)) {
        kb_err(err, errlen, "field \"outcome\": must be resolved, partial or unresolved");
        return KB_ERR_INVALID;
    }
    if (c->satisfaction < 0 || c->satisfaction > 5) {
        kb_err(err, errlen, "field \"satisfaction\": must be 1..5");
        return KB_ERR_INVALID;
    }
    return 0;
}

/* ---- templates ---- */

#define TPL_COLS                                                                                   \
    "id, key, title, category, severity, conditions, text, steps, compensation, deadline, "        \
    "deadline_hours, tags, version, updated_by, updated_at"

/* Fills t from a row of TPL_COLS (plus action at column 15 when with_action). */
static int tpl_from_row(sqlite3_stmt *st, kb_template_t *t, int with_action)
{
    memset(t, 0, sizeof(*t));
    t->id = sqlite3_column_int64(st, 0);
    t->key = dup_col(st, 1);
    t->title = dup_col(st, 2);
    t->category = dup_col(st, 3);
    t->severity = sqlite3_column_int(st, 4);
    t->conditions = dup_col(st, 5);
    t->text = dup_col(st, 6);
    t->compensation = dup_col(st, 8);
    t->deadline = dup_col(st, 9);
    t->deadline_hours =
        sqlite3_column_type(st, 10) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 10);
    t->version = sqlite3_column_int(st, 12);
    t->updated_by = dup_col(st, 13);
    t->updated_at = dup_col(st, 14);
    if (with_action)
        t->action = dup_col(st, 15);
    int rc = split_lines((const char *)sqlite3_column_text(st, 7), &t->steps, &t->nsteps);
    if (rc == 0)
        rc = split_lines((const char *)sqlite3_column_text(st, 11), &t->tags, &t->ntags);
    if (rc != 0 || !t->key || !t->title || !t->category || !t->conditions || !t->text ||
        !t->compensation || !t->deadline || !t->updated_by || !t->updated_at ||
        (with_action && !t->action)) {
        kb_template_clear(t);
        return KB_ERR_NOMEM;
    }
    return 0;
}

int kb_template_get(sqlite3 *db, long long id, const char *key, kb_template_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = KB_ERR_DB;

    memset(out, 0, sizeof(*out));
    out->deadline_hours = -1;
    if (sqlite3_prepare_v2(db,
                           key ? "SELECT " TPL_COLS " FROM kb_templates WHERE key = ?1"
                               : "SELECT " TPL_COLS " FROM kb_templates WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    if (key)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, id);
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        rc = tpl_from_row(st, out, 0);
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

static int str_eq(const char *a, const char *b)
{
    return strcmp(nz(a), nz(b)) == 0;
}

static int lists_eq(char *const *a, int na, char *const *b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

static int tpl_same(const kb_template_t *a, const kb_template_t *b)
{
    return str_eq(a->title, b->title) && str_eq(a->category, b->category) &&
           a->severity == b->severity && str_eq(a->conditions, b->conditions) &&
           str_eq(a->text, b->text) && lists_eq(a->steps, a->nsteps, b->steps, b->nsteps) &&
           str_eq(a->compensation, b->compensation) && str_eq(a->deadline, b->deadline) &&
           a->deadline_hours == b->deadline_hours && lists_eq(a->tags, a->ntags, b->tags, b->ntags);
}

static int check_who(const char *who, char *err, size_t errlen)
{
    size_t n = strlen(nz(who));
    if (n > WHO_MAX || !kb_utf8_valid(nz(who), n)) {
        kb_err(err, errlen, "editor name: not valid UTF-8 or longer than %d bytes", WHO_MAX);
        return KB_ERR_INVALID;
    }
    return 0;
}

/*
 * Adds (del == 0) or removes (del == 1) row id of kind to/from its FTS index, with the values
 * the content table holds now.  Plain single-row statements on purpose: a trigger, or an
 * INSERT ... SELECT, makes a statement savepoint, and FTS5 flushes its pending terms to a new
 * segment at every savepoint - one segment per row on a bulk import.
 */
static int fts_row(sqlite3 *db, kb_kind_t kind, long long id, int del)
{
    static const char *sel_t = "SELECT title, category, tags, conditions, text, steps "
                               "FROM kb_templates WHERE id = ?1";
    static const char *sel_c = "SELECT summary, category, tried, resolution FROM kb_cases "
                               "WHERE id = ?1";
    static const char *ins_t =
        "INSERT INTO kb_templates_fts(kb_templates_fts, rowid, title, category, tags, "
        "conditions, text, steps) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    static const char *ins_c =
        "INSERT INTO kb_cases_fts(kb_cases_fts, rowid, summary, category, tried, resolution) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    sqlite3_stmt *sel = NULL, *ins = NULL;
    int rc = KB_ERR_DB, ncol = kind == KB_TEMPLATE ? 6 : 4;

    if (sqlite3_prepare_v2(db, kind == KB_TEMPLATE ? sel_t : sel_c, -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, kind == KB_TEMPLATE ? ins_t : ins_c, -1, &ins, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(sel, 1, id);
    int s = sqlite3_step(sel);
    if (s != SQLITE_ROW) {
        rc = s == SQLITE_DONE ? KB_ERR_NOTFOUND : KB_ERR_DB;
        goto out;
    }
    if (del)
        sqlite3_bind_text(ins, 1, "delete", -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(ins, 1);
    sqlite3_bind_int64(ins, 2, id);
    for (int i = 0; i < ncol; i++)
        sqlite3_bind_value(ins, 3 + i, sqlite3_column_value(sel, i));
    if (sqlite3_step(ins) == SQLITE_DONE)
        rc = 0;
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(sel);
    return rc;
}

/* Writes t as a new row (id 0) or over row id with the given version. */
static int tpl_write(sqlite3 *db, const kb_template_t *t, long long id, int version,
                     const char *who, long long *id_out)
{
    static const char *ins =
        "INSERT INTO kb_templates(key, title, category, severity, conditions, text, steps, "
        "compensation, deadline, deadline_hours, tags, version, updated_by, updated_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
    static const char *upd =
        "UPDATE kb_templates SET key = ?1, title = ?2, category = ?3, severity = ?4, "
        "conditions = ?5, text = ?6, steps = ?7, compensation = ?8, deadline = ?9, "
        "deadline_hours = ?10, tags = ?11, version = ?12, updated_by = ?13, updated_at = ?14 "
        "WHERE id = ?15";
    sqlite3_stmt *st = NULL;
    char now[32];
    char *steps = join_lines(t->steps, t->nsteps), *tags = join_lines(t->tags, t->ntags);
    int rc = KB_ERR_NOMEM;

    if (steps == NULL || tags == NULL)
        goto out;
    rc = KB_ERR_DB;
    kb_now_iso(now);
    if (id && fts_row(db, KB_TEMPLATE, id, 1) != 0)
        goto out;
    if (sqlite3_prepare_v2(db, id ? upd : ins, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, t->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, t->category, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, t->severity);
    sqlite3_bind_text(st, 5, nz(t->conditions), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, t->text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, steps, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, nz(t->compensation), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, nz(t->deadline), -1, SQLITE_STATIC);
    if (t->deadline_hours >= 0)
        sqlite3_bind_int(st, 10, t->deadline_hours);
    else
        sqlite3_bind_null(st, 10);
    sqlite3_bind_text(st, 11, tags, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 12, version);
    sqlite3_bind_text(st, 13, nz(who), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 14, now, -1, SQLITE_STATIC);
    if (id)
        sqlite3_bind_int64(st, 15, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto out;
    if (!id)
        id = sqlite3_last_insert_rowid(db);
    if (fts_row(db, KB_TEMPLATE, id, 0) != 0)
        goto out;
    if (id_out)
        *id_out = id;
    rc = 0;
out:
    sqlite3_finalize(st);
    free(steps);
    free(tags);
    return rc;
}

/* Highest version in the history of key (0 when none), or KB_ERR_DB. */
static int history_max(sqlite3 *db, const char *key)
{
    sqlite3_stmt *st = NULL;
    int rc = KB_ERR_DB;
    if (sqlite3_prepare_v2(db,
                           "SELECT coalesce(max(version), 0) FROM kb_template_history "
                           "WHERE key = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            rc = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    return rc;
}

int kb_template_save_in(sqlite3 *db, const kb_template_t *t, int mode, int expect_version,
                        const char *who, int flags, long long *id_out, int *version_out, char *err,
                        size_t errlen)
{
    kb_template_t cur;
    int nested = 0, rc, found, version = 0, own = !(flags & KB_IN_TX);
    long long id = 0;

    memset(&cur, 0, sizeof(cur));
    if ((rc = kb_template_validate(t, err, errlen)) != 0 || (rc = check_who(who, err, errlen)) != 0)
        return rc;
    if (own && kb_tx_begin(db, &nested) != 0) {
        kb_err(err, errlen, "begin: %s", sqlite3_errmsg(db));
        return KB_ERR_DB;
    }
    if (own && (rc = kb_sync_synonyms(db, err, errlen)) != 0)
        goto out;
    if (mode == KB_SAVE_UPDATE)
        rc = kb_template_get(db, t->id, NULL, &cur);
    else
        rc = kb_template_get(db, 0, t->key, &cur);
    if (rc != 0 && rc != KB_ERR_NOTFOUND) {
        kb_err(err, errlen, "reading template: %s", sqlite3_errmsg(db));
        goto out;
    }
    found = rc == 0;
    rc = 0;
    if (mode == KB_SAVE_UPDATE && !found) {
        kb_err(err, errlen, "no template with id %lld", t->id);
        rc = KB_ERR_NOTFOUND;
    } else if (mode == KB_SAVE_CREATE && found) {
        kb_err(err, errlen, "a template with key \"%s\" already exists (id %lld)", t->key, cur.id);
        rc = KB_ERR_CONFLICT;
    } else if (found && strcmp(cur.key, t->key) != 0) {
        kb_err(err, errlen, "field \"key\": cannot change (is \"%s\")", cur.key);
        rc = KB_ERR_INVALID;
    } else if (found && expect_version > 0 && expect_version != cur.version) {
        kb_err(err, errlen, "version %d is not current (current is %d)", expect_version,
               cur.version);
        rc = KB_ERR_CONFLICT;
    }
    if (rc != 0)
        goto out;
    if (found && tpl_same(&cur, t)) {
        id = cur.id;
        version = cur.version;
        rc = KB_UNCHANGED;
        goto out;
    }
    if (found) {
        version = cur.version + 1;
        rc = tpl_write(db, t, cur.id, version, who, &id);
    } else {
        int last = history_max(db, t->key);
        rc = last < 0 ? last : tpl_write(db, t, 0, last + 1, who, &id);
        version = last + 1;
    }
    if (rc != 0) {
        kb_err(err, errlen, "writing template: %s",
               rc == KB_ERR_NOMEM ? "out of memory" : sqlite3_errmsg(db));
        goto out;
    }
    rc = found ? KB_UPDATED : KB_CREATED;
out:
    kb_template_clear(&cur);
    if (own && kb_tx_end(db, nested, rc > 0) != 0 && rc > 0) {
        kb_err(err, errlen, "commit: %s", sqlite3_errmsg(db));
        rc = KB_ERR_DB;
    }
    if (rc > 0) {
        if (id_out)
            *id_out = id;
        if (version_out)
            *version_out = version;
    }
    return rc;
}

int kb_template_save(sqlite3 *db, const kb_template_t *t, int mode, int expect_version,
                     const char *who, long long *id_out, int *version_out, char *err, size_t errlen)
{
    return kb_template_save_in(db, t, mode, expect_version, who, 0, id_out, version_out, err,
                               errlen);
}

int kb_template_delete(sqlite3 *db, long long id, const char *who, char *err, size_t errlen)
{
    static const char *hist =
        "INSERT INTO kb_template_history SELECT key, version + 1, id, 'delete', title, "
        "category, severity, conditions, text, steps, compensation, deadline, deadline_hours, "
        "tags, ?2, ?3 FROM kb_templates WHERE id = ?1";
    sqlite3_stmt *st = NULL;
    char now[32];
    int nested, rc;

    if ((rc = check_who(who, err, errlen)) != 0)
        return rc;
    if (kb_tx_begin(db, &nested) != 0) {
        kb_err(err, errlen, "begin: %s", sqlite3_errmsg(db));
        return KB_ERR_DB;
    }
    if ((rc = kb_sync_synonyms(db, err, errlen)) != 0)
        goto out;
    rc = KB_ERR_DB;
    kb_now_iso(now);
    if (sqlite3_prepare_v2(db, hist, -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, nz(who), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto dberr;
    if (sqlite3_changes(db) == 0) {
        kb_err(err, errlen, "no template with id %lld", id);
        rc = KB_ERR_NOTFOUND;
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (fts_row(db, KB_TEMPLATE, id, 1) != 0 ||
        sqlite3_prepare_v2(db, "DELETE FROM kb_templates WHERE id = ?1", -1, &st, NULL) !=
            SQLITE_OK)
        goto dberr;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto dberr;
    rc = 0;
    goto out;
dberr:
    kb_err(err, errlen, "deleting template: %s", sqlite3_errmsg(db));
out:
    sqlite3_finalize(st);
    if (kb_tx_end(db, nested, rc == 0) != 0 && rc == 0) {
        kb_err(err, errlen, "commit: %s", sqlite3_errmsg(db));
        rc = KB_ERR_DB;
    }
    return rc;
}

int kb_template_history(sqlite3 *db, const char *key, kb_template_t **out, int *n)
{
    sqlite3_stmt *st = NULL;
    kb_template_t *v = NULL;
    int count = 0, cap = 0, rc = KB_ERR_DB, s;

    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT template_id, key, title, category, severity, conditions, "
                           "text, steps, compensation, deadline, deadline_hours, tags, version, "
                           "updated_by, updated_at, action FROM kb_template_history "
                           "WHERE key = ?1 ORDER BY version",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            kb_template_t *nv = realloc(v, (size_t)cap * sizeof(*v));
            if (nv == NULL) {
                rc = KB_ERR_NOMEM;
                goto out;
            }
            v = nv;
        }
        if ((rc = tpl_from_row(st, &v[count], 1)) != 0)
            goto out;
        count++;
    }
    if (s != SQLITE_DONE) {
        rc = KB_ERR_DB;
        goto out;
    }
    rc = count ? 0 : KB_ERR_NOTFOUND;
out:
    sqlite3_finalize(st);
    if (rc != 0) {
        kb_templates_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return 0;
}

int kb_template_key_of(sqlite3 *db, long long id, char **key)
{
    sqlite3_stmt *st = NULL;
    int rc = KB_ERR_DB;

    *key = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT key FROM kb_templates WHERE id = ?1 UNION ALL "
                           "SELECT key FROM kb_template_history WHERE template_id = ?1 LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        *key = dup_col(st, 0);
        rc = *key ? 0 : KB_ERR_NOMEM;
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

/* Runs a count query with an optional text parameter; -1 on error. */
static long long count_of(sqlite3 *db, const char *sql, const char *param)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (param)
            sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

int kb_template_list(sqlite3 *db, const char *category, int offset, int limit, kb_template_t **out,
                     int *n, long long *total)
{
    sqlite3_stmt *st = NULL;
    kb_template_t *v = NULL;
    int count = 0, rc = KB_ERR_DB, s = SQLITE_DONE;

    *out = NULL;
    *n = 0;
    *total = count_of(db,
                      category ? "SELECT count(*) FROM kb_templates WHERE category = ?1"
                               : "SELECT count(*) FROM kb_templates",
                      category);
    if (*total < 0)
        return KB_ERR_DB;
    if (limit <= 0)
        return 0;
    v = calloc((size_t)limit, sizeof(*v));
    if (v == NULL)
        return KB_ERR_NOMEM;
    if (sqlite3_prepare_v2(db,
                           category ? "SELECT " TPL_COLS " FROM kb_templates WHERE category = ?3 "
                                      "ORDER BY updated_at DESC, id DESC LIMIT ?1 OFFSET ?2"
                                    : "SELECT " TPL_COLS " FROM kb_templates "
                                      "ORDER BY updated_at DESC, id DESC LIMIT ?1 OFFSET ?2",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(st, 1, limit);
    sqlite3_bind_int(st, 2, offset);
    if (category)
        sqlite3_bind_text(st, 3, category, -1, SQLITE_STATIC);
    while (count < limit && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = tpl_from_row(st, &v[count], 0)) != 0)
            goto out;
        count++;
    }
    rc = (count == limit || s == SQLITE_DONE) ? 0 : KB_ERR_DB;
out:
    sqlite3_finalize(st);
    if (rc != 0) {
        kb_templates_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return 0;
}

int kb_template_count(sqlite3 *db)
{
    return (int)count_of(db, "SELECT count(*) FROM kb_templates", NULL);
}

int kb_case_count(sqlite3 *db)
{
    return (int)count_of(db, "SELECT count(*) FROM kb_cases", NULL);
}

int kb_is_empty(sqlite3 *db)
{
    long long n = count_of(db,
                           "SELECT EXISTS (SELECT 1 FROM kb_templates) OR "
                           "EXISTS (SELECT 1 FROM kb_cases)",
                           NULL);
    return n < 0 ? KB_ERR_DB : n == 0;
}

/* ---- cases ---- */

#define CASE_COLS "id, key, summary, category, tried, resolution, outcome, satisfaction, date"

static int case_from_row(sqlite3_stmt *st, kb_case_t *c)
{
    memset(c, 0, sizeof(*c));
    c->id = sqlite3_column_int64(st, 0);
    c->key = dup_col(st, 1);
    c->summary = dup_col(st, 2);
    c->category = dup_col(st, 3);
    c->tried = dup_col(st, 4);
    c->resolution = dup_col(st, 5);
    c->outcome = dup_col(st, 6);
    c->satisfaction = sqlite3_column_int(st, 7);
    c->date = dup_col(st, 8);
    if (!c->key || !c->summary || !c->category || !c->tried || !c->resolution || !c->outcome ||
        !c->date) {
        kb_case_clear(c);
        return KB_ERR_NOMEM;
    }
    return 0;
}

int kb_case_get(sqlite3 *db, long long id, const char *key, kb_case_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = KB_ERR_DB;

    memset(out, 0, sizeof(*out));
    if (sqlite3_prepare_v2(db,
                           key ? "SELECT " CASE_COLS " FROM kb_cases WHERE key = ?1"
                               : "SELECT " CASE_COLS " FROM kb_cases WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    if (key)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, id);
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        rc = case_from_row(st, out);
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

static int case_same(const kb_case_t *a, const kb_case_t *b)
{
    return str_eq(a->summary, b->summary) && str_eq(a->category, b->category) &&
           str_eq(a->tried, b->tried) && str_eq(a->resolution, b->resolution) &&
           str_eq(a->outcome, b->outcome) && a->satisfaction == b->satisfaction &&
           str_eq(a->date, b->date);
}

static int case_write(sqlite3 *db, const kb_case_t *c, long long id, long long *id_out)
{
    static const char *ins =
        "INSERT INTO kb_cases(key, summary, category, tried, resolution, outcome, "
        "satisfaction, date) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    static const char *upd =
        "UPDATE kb_cases SET key = ?1, summary = ?2, category = ?3, tried = ?4, "
        "resolution = ?5, outcome = ?6, satisfaction = ?7, date = ?8 WHERE id = ?9";
    sqlite3_stmt *st = NULL;
    int rc = KB_ERR_DB;

    if (id && fts_row(db, KB_CASE, id, 1) != 0)
        goto out;
    if (sqlite3_prepare_v2(db, id ? upd : ins, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, c->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->summary, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c->category, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, nz(c->tried), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, nz(c->resolution), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, c->outcome, -1, SQLITE_STATIC);
    if (c->satisfaction > 0)
        sqlite3_bind_int(st, 7, c->satisfaction);
    else
        sqlite3_bind_null(st, 7);
    sqlite3_bind_text(st, 8, c->date, -1, SQLITE_STATIC);
    if (id)
        sqlite3_bind_int64(st, 9, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto out;
    if (!id)
        id = sqlite3_last_insert_rowid(db);
    if (fts_row(db, KB_CASE, id, 0) != 0)
        goto out;
    if (id_out)
        *id_out = id;
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

int kb_case_save_in(sqlite3 *db, const kb_case_t *c, int mode, int flags, long long *id_out,
                    char *err, size_t errlen)
{
    kb_case_t cur;
    int nested = 0, rc, found, own = !(flags & KB_IN_TX);
    long long id = 0;

    memset(&cur, 0, sizeof(cur));
    if ((rc = kb_case_validate(c, err, errlen)) != 0)
        return rc;
    if (own && kb_tx_begin(db, &nested) != 0) {
        kb_err(err, errlen, "begin: %s", sqlite3_errmsg(db));
        return KB_ERR_DB;
    }
    if (own && (rc = kb_sync_synonyms(db, err, errlen)) != 0)
        goto out;
    rc = mode == KB_SAVE_UPDATE ? kb_case_get(db, c->id, NULL, &cur)
                                : kb_case_get(db, 0, c->key, &cur);
    if (rc != 0 && rc != KB_ERR_NOTFOUND) {
        kb_err(err, errlen, "reading case: %s", sqlite3_errmsg(db));
        goto out;
    }
    found = rc == 0;
    rc = 0;
    if (mode == KB_SAVE_UPDATE && !found) {
        kb_err(err, errlen, "no case with id %lld", c->id);
        rc = KB_ERR_NOTFOUND;
    } else if (mode == KB_SAVE_CREATE && found) {
        kb_err(err, errlen, "a case with key \"%s\" already exists (id %lld)", c->key, cur.id);
        rc = KB_ERR_CONFLICT;
    } else if (found && strcmp(cur.key, c->key) != 0) {
        kb_err(err, errlen, "field \"key\": cannot change (is \"%s\")", cur.key);
        rc = KB_ERR_INVALID;
    }
    if (rc != 0)
        goto out;
    if (found && case_same(&cur, c)) {
        id = cur.id;
        rc = KB_UNCHANGED;
        goto out;
    }
    rc = case_write(db, c, found ? cur.id : 0, &id);
    if (rc != 0) {
        kb_err(err, errlen, "writing case: %s", sqlite3_errmsg(db));
        goto out;
    }
    rc = found ? KB_UPDATED : KB_CREATED;
out:
    kb_case_clear(&cur);
    if (own && kb_tx_end(db, nested, rc > 0) != 0 && rc > 0) {
        kb_err(err, errlen, "commit: %s", sqlite3_errmsg(db));
        rc = KB_ERR_DB;
    }
    if (rc > 0 && id_out)
        *id_out = id;
    return rc;
}

int kb_case_save(sqlite3 *db, const kb_case_t *c, int mode, long long *id_out, char *err,
                 size_t errlen)
{
    return kb_case_save_in(db, c, mode, 0, id_out, err, errlen);
}

int kb_case_delete(sqlite3 *db, long long id, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int nested, rc;

    if (kb_tx_begin(db, &nested) != 0) {
        kb_err(err, errlen, "begin: %s", sqlite3_errmsg(db));
        return KB_ERR_DB;
    }
    if ((rc = kb_sync_synonyms(db, err, errlen)) != 0)
        goto out;
    rc = fts_row(db, KB_CASE, id, 1);
    if (rc == KB_ERR_NOTFOUND) {
        kb_err(err, errlen, "no case with id %lld", id);
        goto out;
    }
    if (rc != 0) {
        kb_err(err, errlen, "deleting case: %s", sqlite3_errmsg(db));
        goto out;
    }
    rc = KB_ERR_DB;
    if (sqlite3_prepare_v2(db, "DELETE FROM kb_cases WHERE id = ?1", -1, &st, NULL) != SQLITE_OK ||
        (sqlite3_bind_int64(st, 1, id), sqlite3_step(st)) != SQLITE_DONE) {
        kb_err(err, errlen, "deleting case: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (sqlite3_changes(db) == 0) {
        kb_err(err, errlen, "no case with id %lld", id);
        rc = KB_ERR_NOTFOUND;
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    if (kb_tx_end(db, nested, rc == 0) != 0 && rc == 0) {
        kb_err(err, errlen, "commit: %s", sqlite3_errmsg(db));
        rc = KB_ERR_DB;
    }
    return rc;
}

int kb_case_list(sqlite3 *db, const char *category, int offset, int limit, kb_case_t **out, int *n,
                 long long *total)
{
    sqlite3_stmt *st = NULL;
    kb_case_t *v = NULL;
    int count = 0, rc = KB_ERR_DB, s = SQLITE_DONE;

    *out = NULL;
    *n = 0;
    *total = count_of(db,
                      category ? "SELECT count(*) FROM kb_cases WHERE category = ?1"
                               : "SELECT count(*) FROM kb_cases",
                      category);
    if (*total < 0)
        return KB_ERR_DB;
    if (limit <= 0)
        return 0;
    v = calloc((size_t)limit, sizeof(*v));
    if (v == NULL)
        return KB_ERR_NOMEM;
    if (sqlite3_prepare_v2(db,
                           category ? "SELECT " CASE_COLS " FROM kb_cases WHERE category = ?3 "
                                      "ORDER BY id DESC LIMIT ?1 OFFSET ?2"
                                    : "SELECT " CASE_COLS " FROM kb_cases "
                                      "ORDER BY id DESC LIMIT ?1 OFFSET ?2",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(st, 1, limit);
    sqlite3_bind_int(st, 2, offset);
    if (category)
        sqlite3_bind_text(st, 3, category, -1, SQLITE_STATIC);
    while (count < limit && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = case_from_row(st, &v[count])) != 0)
            goto out;
        count++;
    }
    rc = (count == limit || s == SQLITE_DONE) ? 0 : KB_ERR_DB;
out:
    sqlite3_finalize(st);
    if (rc != 0) {
        kb_cases_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return 0;
}

int kb_case_add(sqlite3 *db, const char *summary, const char *category, const char *tried,
                const char *resolution, const char *outcome, int satisfaction, long long *id_out)
{
    unsigned char rnd[8];
    char key[32], date[16];
    kb_case_t c;

    sqlite3_randomness(sizeof(rnd), rnd);
    snprintf(key, sizeof(key), "auto-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    kb_today(date);
    c = (kb_case_t){.key = key,
                    .summary = (char *)summary,
                    .category = (char *)category,
                    .tried = (char *)nz(tried),
                    .resolution = (char *)nz(resolution),
                    .outcome = (char *)outcome,
                    .satisfaction = satisfaction,
                    .date = date};
    int rc = kb_case_save(db, &c, KB_SAVE_CREATE, id_out, NULL, 0);
    return rc > 0 ? 0 : rc;
}
