/*
 * kb_api.c - the JSON face of the knowledge base: the record codec used by JSON Lines
 * import/export, and the editor's HTTP API handler.  The only kb file that touches cJSON.
 *
 * Codec.  parse_template / parse_case read one JSON object into a kb_template_t / kb_case_t
 * with strict checks: every member must be a known field of the right JSON type, appear once,
 * and (for import) "kind" must say what the record is.  Nulls count as absent.  Values are
 * then checked by kb_template_validate / kb_case_validate (kb_store.c), so the import and the
 * API reject exactly the same things with the same messages.  The API accepts, in addition,
 * the read-only members it sends out (id, version, updated_by, updated_at, category_name), so
 * an editor can PUT back what it got; "version" there is the version the edit was based on.
 *
 * Handler.  kb_api_handle() is transport-agnostic: the HTTP layer passes method, path below
 * /api/kb, the raw query string and body; it gets a status and a malloc'ed JSON body.
 *
 *   GET    /templates?category=&q=&offset=&limit=   list (newest first), or search with q
 *   POST   /templates                               create            201 / 400 / 409
 *   GET    /templates/ID                            one (ID = id or key)    200 / 404
 *   PUT    /templates/ID                            replace, new version    200 / 400 / 404 / 409
 *   DELETE /templates/ID                            delete                  200 / 404
 *   GET    /templates/ID/history                    every version           200 / 404
 *   GET    /cases..., POST /cases, GET|PUT|DELETE /cases/ID   the same for past cases
 *   GET    /search?q=&category=&limit=              kb_search as JSON
 *   GET    /categories                              slug and name list
 *   GET    /stats                                   counts
 *
 * Errors are {"error":{"code":"bad_request|not_found|conflict|method_not_allowed|internal",
 * "message":"..."}}.  Database failures are logged and answered 500 without SQLite's text.
 */
#include "kb_internal.h"
#include "log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define LIST_DEFAULT 20
#define LIST_MAX 200
#define SEARCH_MAX 50

/* ---- codec: JSON -> records ---- */

typedef enum { F_STR, F_INT, F_STRLIST, F_STEPS, F_IGNORED } ftype;

typedef struct field {
    const char *name;
    ftype type;
    int api_only; /* read-only member the API sends; ignored on input */
} field;

static const field tpl_fields[] = {
    {"kind", F_STR, 0},
    {"key", F_STR, 0},
    {"title", F_STR, 0},
    {"category", F_STR, 0},
    {"severity", F_INT, 0},
    {"conditions", F_STR, 0},
    {"text", F_STR, 0},
    {"steps", F_STEPS, 0},
    {"compensation", F_STR, 0},
    {"deadline", F_STR, 0},
    {"deadline_hours", F_INT, 0},
    {"tags", F_STRLIST, 0},
    {"id", F_INT, 1},
    {"version", F_INT, 1},
    {"updated_by", F_IGNORED, 1},
    {"updated_at", F_IGNORED, 1},
    {"category_name", F_IGNORED, 1},
    {NULL, F_STR, 0},
};

static const field case_fields[] = {
    {"kind", F_STR, 0},
    {"key", F_STR, 0},
    {"summary", F_STR, 0},
    {"category", F_STR, 0},
    {"tried", F_STR, 0},
    {"resolution", F_STR, 0},
    {"outcome", F_STR, 0},
    {"satisfaction", F_INT, 0},
    {"date", F_STR, 0},
    {"id", F_INT, 1},
    {"category_name", F_IGNORED, 1},
    {NULL, F_STR, 0},
};

/* Extra integers the API reads from a body. */
typedef struct api_extra {
    long long id; /* 0 = absent */
    long long version;
} api_extra;

/* Checks members of o against fields[]: known, right type, once.  Returns 0 or
 * KB_ERR_INVALID. */
static int check_members(const cJSON *o, const field *fields, int api, char *err, size_t errlen)
{
    for (const cJSON *m = o->child; m; m = m->next) {
        const field *f = fields;
        while (f->name && strcmp(f->name, m->string) != 0)
            f++;
        if (f->name == NULL || (f->api_only && !api)) {
            kb_err(err, errlen, "unknown field \"%.64s\"", m->string);
            return KB_ERR_INVALID;
        }
        for (const cJSON *p = o->child; p != m; p = p->next)
            if (strcmp(p->string, m->string) == 0) {
                kb_err(err, errlen, "field \"%s\" appears twice", m->string);
                return KB_ERR_INVALID;
            }
        if (cJSON_IsNull(m) || f->type == F_IGNORED)
            continue;
        int ok = 0;
        switch (f->type) {
        case F_STR:
            ok = cJSON_IsString(m);
            break;
        case F_INT:
            ok = cJSON_IsNumber(m) && m->valuedouble == (double)(long long)m->valuedouble &&
                 m->valuedouble >= -1e15 && m->valuedouble <= 1e15;
            break;
        case F_STRLIST:
        case F_STEPS:
            ok = cJSON_IsArray(m) || (f->type == F_STEPS && cJSON_IsString(m));
            if (cJSON_IsArray(m)) {
                int i = 0;
                for (const cJSON *e = m->child; e; e = e->next, i++)
                    if (!cJSON_IsString(e)) {
                        kb_err(err, errlen, "field \"%s\": item %d is not a string", f->name, i);
                        return KB_ERR_INVALID;
                    }
            }
            break;
        default:
            ok = 1;
        }
        if (!ok) {
            static const char *const what[] = {"a string", "an integer", "an array of strings",
                                               "a string or an array of strings", ""};
            kb_err(err, errlen, "field \"%s\": must be %s", f->name, what[f->type]);
            return KB_ERR_INVALID;
        }
    }
    return 0;
}

/* A string member copied (absent/null: def, which may be NULL).  Returns 0 or KB_ERR_NOMEM. */
static int get_str(const cJSON *o, const char *name, const char *def, char **out)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    const char *v = cJSON_IsString(m) ? m->valuestring : def;
    *out = NULL;
    if (v == NULL)
        return 0;
    *out = strdup(v);
    return *out ? 0 : KB_ERR_NOMEM;
}

static long long get_int(const cJSON *o, const char *name, long long def)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(m) ? (long long)m->valuedouble : def;
}

/* Narrows an integer member to int range, or fails naming it. */
static int int_field(const cJSON *o, const char *name, long long def, int *out, char *err,
                     size_t errlen)
{
    long long v = get_int(o, name, def);
    if (v < INT_MIN || v > INT_MAX) {
        kb_err(err, errlen, "field \"%s\": out of range", name);
        return KB_ERR_INVALID;
    }
    *out = (int)v;
    return 0;
}

/* An array of strings (or, for steps, a string split into its non-blank lines). */
static int get_list(const cJSON *o, const char *name, char ***out, int *n)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    char **v = NULL;
    int count = 0;

    *out = NULL;
    *n = 0;
    if (cJSON_IsArray(m)) {
        int size = cJSON_GetArraySize(m);
        v = calloc((size_t)(size > 0 ? size : 1), sizeof(char *));
        if (v == NULL)
            return KB_ERR_NOMEM;
        for (const cJSON *e = m->child; e; e = e->next) {
            v[count] = strdup(e->valuestring);
            if (v[count++] == NULL)
                goto nomem;
        }
    } else if (cJSON_IsString(m)) {
        const char *s = m->valuestring;
        size_t lines = 1;
        for (const char *p = s; *p; p++)
            lines += *p == '\n';
        v = calloc(lines, sizeof(char *));
        if (v == NULL)
            return KB_ERR_NOMEM;
        for (const char *p = s; *p;) {
            const char *e = strchr(p, '\n');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            size_t a = 0, b = len;
            while (a < b && (p[a] == ' ' || p[a] == '\t' || p[a] == '\r'))
                a++;
            while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t' || p[b - 1] == '\r'))
                b--;
            if (b > a) {
                v[count] = strndup(p + a, b - a);
                if (v[count++] == NULL)
                    goto nomem;
            }
            if (e == NULL)
                break;
            p = e + 1;
        }
    }
    *out = v;
    *n = count;
    return 0;
nomem:
    for (int i = 0; i < count; i++)
        free(v[i]);
    free(v);
    return KB_ERR_NOMEM;
}

static int check_kind(const cJSON *o, const char *want, int required, char *err, size_t errlen)
{
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kind");
    if (!cJSON_IsString(k)) {
        if (!required)
            return 0;
        kb_err(err, errlen, "field \"kind\": required (\"template\" or \"case\")");
        return KB_ERR_INVALID;
    }
    if (strcmp(k->valuestring, want) != 0) {
        kb_err(err, errlen, "field \"kind\": must be \"%s\"", want);
        return KB_ERR_INVALID;
    }
    return 0;
}

static int parse_template(const cJSON *o, int api, kb_template_t *t, api_extra *x, char *err,
                          size_t errlen)
{
    int rc;
    memset(t, 0, sizeof(*t));
    t->deadline_hours = -1;
    if ((rc = check_members(o, tpl_fields, api, err, errlen)) != 0 ||
        (rc = check_kind(o, "template", !api, err, errlen)) != 0)
        return rc;
    if ((rc = int_field(o, "severity", 2, &t->severity, err, errlen)) != 0 ||
        (rc = int_field(o, "deadline_hours", -1, &t->deadline_hours, err, errlen)) != 0)
        return rc;
    if (t->deadline_hours < 0 &&
        cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "deadline_hours"))) {
        kb_err(err, errlen, "field \"deadline_hours\": must be 0..8760");
        return KB_ERR_INVALID;
    }
    if (x) {
        x->id = get_int(o, "id", 0);
        x->version = get_int(o, "version", 0);
    }
    if (get_str(o, "key", NULL, &t->key) || get_str(o, "title", NULL, &t->title) ||
        get_str(o, "category", NULL, &t->category) ||
        get_str(o, "conditions", "", &t->conditions) || get_str(o, "text", NULL, &t->text) ||
        get_str(o, "compensation", "", &t->compensation) ||
        get_str(o, "deadline", "", &t->deadline) || get_list(o, "steps", &t->steps, &t->nsteps) ||
        get_list(o, "tags", &t->tags, &t->ntags)) {
        kb_err(err, errlen, "out of memory");
        return KB_ERR_NOMEM;
    }
    return 0;
}

static int parse_case(const cJSON *o, int api, kb_case_t *c, api_extra *x, char *err, size_t errlen)
{
    int rc;
    memset(c, 0, sizeof(*c));
    if ((rc = check_members(o, case_fields, api, err, errlen)) != 0 ||
        (rc = check_kind(o, "case", !api, err, errlen)) != 0)
        return rc;
    if ((rc = int_field(o, "satisfaction", 0, &c->satisfaction, err, errlen)) != 0)
        return rc;
    if (c->satisfaction == 0 &&
        cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "satisfaction"))) {
        kb_err(err, errlen, "field \"satisfaction\": must be 1..5");
        return KB_ERR_INVALID;
    }
    if (x) {
        x->id = get_int(o, "id", 0);
        x->version = 0;
    }
    char today[16];
    kb_today(today);
    if (get_str(o, "key", NULL, &c->key) || get_str(o, "summary", NULL, &c->summary) ||
        get_str(o, "category", NULL, &c->category) || get_str(o, "tried", "", &c->tried) ||
        get_str(o, "resolution", "", &c->resolution) || get_str(o, "outcome", NULL, &c->outcome) ||
        get_str(o, "date", today, &c->date)) {
        kb_err(err, errlen, "out of memory");
        return KB_ERR_NOMEM;
    }
    return 0;
}

/* Parses text as one JSON object.  Returns it, or NULL with a message. */
static cJSON *parse_object(const char *json, size_t len, char *err, size_t errlen)
{
    const char *end = NULL;
    cJSON *o;

    for (size_t i = 0; i + 5 < len; i++) /* cJSON would cut a string at \u0000 silently */
        if (json[i] == '\\' && (json[i + 1] == 'u' || json[i + 1] == 'U') &&
            memcmp(json + i + 2, "0000", 4) == 0) {
            kb_err(err, errlen, "NUL characters (\\u0000) are not allowed");
            return NULL;
        }
    o = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (o == NULL) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        kb_err(err, errlen, "invalid JSON near byte %zu", at + 1);
        return NULL;
    }
    while (end && end < json + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end && end < json + len) {
        kb_err(err, errlen, "unexpected text after the JSON object (byte %zu)",
               (size_t)(end - json) + 1);
        cJSON_Delete(o);
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        kb_err(err, errlen, "not a JSON object");
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int kb_json_parse_record(const char *json, size_t len, kb_record_t *rec, char *err, size_t errlen)
{
    cJSON *o = parse_object(json, len, err, errlen);
    int rc;

    memset(rec, 0, sizeof(*rec));
    rec->tpl.deadline_hours = -1;
    if (o == NULL)
        return KB_ERR_INVALID;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kind");
    if (!cJSON_IsString(k) ||
        (strcmp(k->valuestring, "template") != 0 && strcmp(k->valuestring, "case") != 0)) {
        kb_err(err, errlen, "field \"kind\": must be \"template\" or \"case\"");
        rc = KB_ERR_INVALID;
    } else if (strcmp(k->valuestring, "template") == 0) {
        rec->kind = KB_TEMPLATE;
        rc = parse_template(o, 0, &rec->tpl, NULL, err, errlen);
    } else {
        rec->kind = KB_CASE;
        rc = parse_case(o, 0, &rec->kcase, NULL, err, errlen);
    }
    cJSON_Delete(o);
    if (rc != 0)
        kb_record_clear(rec);
    return rc;
}

void kb_record_clear(kb_record_t *rec)
{
    kb_template_clear(&rec->tpl);
    kb_case_clear(&rec->kcase);
    rec->kind = 0;
}

/* ---- codec: records -> JSON ---- */

static cJSON *str_array(char *const *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateString(v[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

/* export: the JSON Lines fields; api: plus id, category_name, version, updated_*. */
static cJSON *template_json(const kb_template_t *t, int api)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;

    if (api)
        ok = ok && cJSON_AddNumberToObject(o, "id", (double)t->id);
    else
        ok = ok && cJSON_AddStringToObject(o, "kind", "template");
    ok = ok && cJSON_AddStringToObject(o, "key", t->key) &&
         cJSON_AddStringToObject(o, "title", t->title) &&
         cJSON_AddStringToObject(o, "category", t->category);
    if (api) {
        const char *name = kb_category_name(t->category);
        ok = ok && cJSON_AddStringToObject(o, "category_name", name ? name : "");
    }
    ok = ok && cJSON_AddNumberToObject(o, "severity", t->severity) &&
         cJSON_AddStringToObject(o, "conditions", t->conditions) &&
         cJSON_AddStringToObject(o, "text", t->text) &&
         cJSON_AddItemToObject(o, "steps", str_array(t->steps, t->nsteps)) &&
         cJSON_AddStringToObject(o, "compensation", t->compensation) &&
         cJSON_AddStringToObject(o, "deadline", t->deadline);
    if (t->deadline_hours >= 0)
        ok = ok && cJSON_AddNumberToObject(o, "deadline_hours", t->deadline_hours);
    else if (api)
        ok = ok && cJSON_AddNullToObject(o, "deadline_hours");
    ok = ok && cJSON_AddItemToObject(o, "tags", str_array(t->tags, t->ntags));
    if (api) {
        ok = ok && cJSON_AddNumberToObject(o, "version", t->version) &&
             cJSON_AddStringToObject(o, "updated_by", t->updated_by) &&
             cJSON_AddStringToObject(o, "updated_at", t->updated_at);
        if (t->action)
            ok = ok && cJSON_AddStringToObject(o, "action", t->action);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *case_json(const kb_case_t *c, int api)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;

    if (api)
        ok = ok && cJSON_AddNumberToObject(o, "id", (double)c->id);
    else
        ok = ok && cJSON_AddStringToObject(o, "kind", "case");
    ok = ok && cJSON_AddStringToObject(o, "key", c->key) &&
         cJSON_AddStringToObject(o, "summary", c->summary) &&
         cJSON_AddStringToObject(o, "category", c->category);
    if (api) {
        const char *name = kb_category_name(c->category);
        ok = ok && cJSON_AddStringToObject(o, "category_name", name ? name : "");
    }
    ok = ok && cJSON_AddStringToObject(o, "tried", c->tried) &&
         cJSON_AddStringToObject(o, "resolution", c->resolution) &&
         cJSON_AddStringToObject(o, "outcome", c->outcome);
    if (c->satisfaction > 0)
        ok = ok && cJSON_AddNumberToObject(o, "satisfaction", c->satisfaction);
    else if (api)
        ok = ok && cJSON_AddNullToObject(o, "satisfaction");
    ok = ok && cJSON_AddStringToObject(o, "date", c->date);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static char *print_delete(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *kb_json_template_line(const kb_template_t *t)
{
    return print_delete(template_json(t, 0));
}

char *kb_json_case_line(const kb_case_t *c)
{
    return print_delete(case_json(c, 0));
}

/* ---- HTTP handler ---- */

typedef struct reply {
    int status;
    cJSON *body;
} reply;

static void set_error(reply *r, int status, const char *code, const char *msg)
{
    cJSON_Delete(r->body);
    r->status = status;
    r->body = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(r->body, "error");
    if (e) {
        cJSON_AddStringToObject(e, "code", code);
        cJSON_AddStringToObject(e, "message", msg);
    }
}

/* Maps a KB_ERR_* code and message to a reply. */
static void set_kb_error(reply *r, sqlite3 *db, int rc, const char *msg)
{
    switch (rc) {
    case KB_ERR_INVALID:
        set_error(r, 400, "bad_request", msg);
        break;
    case KB_ERR_NOTFOUND:
        set_error(r, 404, "not_found", msg);
        break;
    case KB_ERR_CONFLICT:
        set_error(r, 409, "conflict", msg);
        break;
    case KB_ERR_NOMEM:
        set_error(r, 500, "internal", "out of memory");
        break;
    default:
        log_error("kb", "api: %s (%s)", msg, db ? sqlite3_errmsg(db) : "");
        set_error(r, 500, "internal", "database error");
        break;
    }
}

static void set_ok(reply *r, int status, cJSON *body)
{
    cJSON_Delete(r->body);
    r->status = status;
    r->body = body;
    if (body == NULL)
        set_error(r, 500, "internal", "out of memory");
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes s[0..n) ('+' is a space when plus) into a malloc'ed string.  NULL when the
 * encoding is broken, the result is not UTF-8, or out of memory. */
static char *url_decode(const char *s, size_t n, int plus)
{
    char *out = malloc(n + 1), *p = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h = i + 2 < n ? hexval(s[i + 1]) : -1, l = h >= 0 ? hexval(s[i + 2]) : -1;
            if (h < 0 || l < 0) {
                free(out);
                return NULL;
            }
            *p++ = (char)(h * 16 + l);
            i += 2;
        } else {
            *p++ = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    *p = 0;
    if (!kb_utf8_valid(out, (size_t)(p - out))) {
        free(out);
        return NULL;
    }
    return out;
}

/* Decoded value of query parameter name (first occurrence), malloc'ed; NULL when absent.
 * *bad is set when the parameter is present but malformed. */
char *kb_query_param(const char *qs, const char *name, int *bad)
{
    size_t nl = strlen(name);
    if (qs == NULL)
        return NULL;
    for (const char *p = qs; *p;) {
        const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - p) == nl && memcmp(p, name, nl) == 0) {
            char *v = eq ? url_decode(eq + 1, (size_t)(end - eq - 1), 1) : strdup("");
            if (v == NULL)
                *bad = 1;
            return v;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return NULL;
}

/* Integer parameter in [min, max], def when absent.  Returns 0 or -1 (message in r). */
static int int_param(reply *r, const char *qs, const char *name, long def, long min, long max,
                     long *out)
{
    int bad = 0;
    char *v = kb_query_param(qs, name, &bad), *end;
    char msg[128];

    *out = def;
    if (bad)
        goto fail;
    if (v == NULL || *v == 0) {
        free(v);
        return 0;
    }
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < min || n > max)
        goto fail;
    free(v);
    *out = n;
    return 0;
fail:
    free(v);
    snprintf(msg, sizeof(msg), "parameter \"%s\": must be an integer %ld..%ld", name, min, max);
    set_error(r, 400, "bad_request", msg);
    return -1;
}

/* Text parameter (NULL when absent or empty).  Returns 0 or -1 (message in r). */
static int text_param(reply *r, const char *qs, const char *name, char **out)
{
    int bad = 0;
    char msg[128];
    *out = kb_query_param(qs, name, &bad);
    if (bad) {
        snprintf(msg, sizeof(msg), "parameter \"%s\": bad percent-encoding or UTF-8", name);
        set_error(r, 400, "bad_request", msg);
        return -1;
    }
    if (*out && **out == 0) {
        free(*out);
        *out = NULL;
    }
    return 0;
}

static int category_param(reply *r, const char *qs, char **out)
{
    if (text_param(r, qs, "category", out) != 0)
        return -1;
    if (*out && kb_category_name(*out) == NULL) {
        set_error(r, 400, "bad_request", "parameter \"category\": unknown category");
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static const char *kind_name(kb_kind_t k)
{
    return k == KB_TEMPLATE ? "template" : "case";
}

static const char *confidence_name(kb_confidence_t c)
{
    return c == KB_ANSWER ? "answer" : c == KB_SUGGEST ? "suggest" : "no_match";
}

static cJSON *result_json(const kb_result_t *res)
{
    cJSON *o = cJSON_CreateObject(), *hits;
    int ok = o != NULL;

    ok = ok && cJSON_AddStringToObject(o, "confidence", confidence_name(res->confidence)) &&
         cJSON_AddNumberToObject(o, "count", res->count) &&
         (hits = cJSON_AddArrayToObject(o, "hits")) != NULL;
    for (int i = 0; ok && i < res->count; i++) {
        const kb_hit_t *h = &res->hits[i];
        const char *name = kb_category_name(h->category);
        cJSON *j = cJSON_CreateObject();
        ok = j && cJSON_AddItemToArray(hits, j) &&
             cJSON_AddStringToObject(j, "kind", kind_name(h->kind)) &&
             cJSON_AddNumberToObject(j, "id", (double)h->id) &&
             cJSON_AddStringToObject(j, "key", h->key) &&
             cJSON_AddStringToObject(j, "title", h->title) &&
             cJSON_AddStringToObject(j, "category", h->category) &&
             cJSON_AddStringToObject(j, "category_name", name ? name : "") &&
             cJSON_AddStringToObject(j, "text", h->text) &&
             cJSON_AddStringToObject(j, "snippet", h->snippet) &&
             cJSON_AddNumberToObject(j, "score", h->score) &&
             cJSON_AddNumberToObject(j, "coverage", h->coverage);
        if (ok && h->kind == KB_TEMPLATE)
            ok = cJSON_AddStringToObject(j, "deadline", h->deadline ? h->deadline : "") &&
                 cJSON_AddStringToObject(j, "compensation",
                                         h->compensation ? h->compensation : "") &&
                 cJSON_AddNumberToObject(j, "severity", h->severity);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void do_search(reply *r, sqlite3 *db, const char *qs, int tables)
{
    char *q = NULL, *cat = NULL;
    long limit;
    kb_result_t *res = NULL;
    kb_search_opts_t o;

    if (text_param(r, qs, "q", &q) != 0 || category_param(r, qs, &cat) != 0 ||
        int_param(r, qs, "limit", 10, 1, SEARCH_MAX, &limit) != 0)
        goto out;
    kb_search_defaults(&o);
    o.tables = tables;
    int rc = kb_search_ex(db, q ? q : "", cat, (int)limit, &o, &res);
    if (rc != 0)
        set_kb_error(r, db, rc, "search failed");
    else
        set_ok(r, 200, result_json(res));
out:
    kb_result_free(res);
    free(q);
    free(cat);
}

/* Resolves an ID path segment: all digits is an id, anything else a key. */
static void parse_ref(const char *seg, long long *id, const char **key)
{
    char *end;
    *key = NULL;
    *id = 0;
    if (*seg >= '0' && *seg <= '9') {
        errno = 0;
        long long v = strtoll(seg, &end, 10);
        if (!errno && *end == 0) {
            *id = v;
            return;
        }
    }
    *key = seg;
}

static cJSON *list_envelope(cJSON *items, long long total, long offset, long limit)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || items == NULL || !cJSON_AddItemToObject(o, "items", items) ||
        !cJSON_AddNumberToObject(o, "total", (double)total) ||
        !cJSON_AddNumberToObject(o, "offset", offset) ||
        !cJSON_AddNumberToObject(o, "limit", limit)) {
        if (o == NULL || cJSON_GetObjectItem(o, "items") == NULL)
            cJSON_Delete(items);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void list_records(reply *r, sqlite3 *db, const char *qs, kb_kind_t kind)
{
    char *cat = NULL, *q = NULL;
    long offset, limit;
    long long total = 0;
    cJSON *items = NULL;
    int rc, n = 0;

    if (category_param(r, qs, &cat) != 0 || text_param(r, qs, "q", &q) != 0 ||
        int_param(r, qs, "offset", 0, 0, 1000000000, &offset) != 0 ||
        int_param(r, qs, "limit", LIST_DEFAULT, 1, LIST_MAX, &limit) != 0)
        goto out;
    items = cJSON_CreateArray();
    if (items == NULL)
        goto nomem;
    if (q) {
        /* relevance order, at most SEARCH_MAX results */
        kb_result_t *res = NULL;
        kb_search_opts_t o;
        kb_search_defaults(&o);
        o.tables = kind == KB_TEMPLATE ? 1 : 2;
        rc = kb_search_ex(db, q, cat, SEARCH_MAX, &o, &res);
        if (rc != 0) {
            set_kb_error(r, db, rc, "search failed");
            goto out;
        }
        total = res->count;
        for (int i = (int)offset; i < res->count && i < offset + limit && rc == 0; i++) {
            cJSON *j = NULL;
            if (kind == KB_TEMPLATE) {
                kb_template_t t;
                if ((rc = kb_template_get(db, res->hits[i].id, NULL, &t)) == 0)
                    j = template_json(&t, 1);
                kb_template_clear(&t);
            } else {
                kb_case_t c;
                if ((rc = kb_case_get(db, res->hits[i].id, NULL, &c)) == 0)
                    j = case_json(&c, 1);
                kb_case_clear(&c);
            }
            if (rc == 0 && (j == NULL || !cJSON_AddItemToArray(items, j)))
                rc = KB_ERR_NOMEM;
        }
        kb_result_free(res);
    } else if (kind == KB_TEMPLATE) {
        kb_template_t *v = NULL;
        rc = kb_template_list(db, cat, (int)offset, (int)limit, &v, &n, &total);
        for (int i = 0; rc == 0 && i < n; i++)
            if (!cJSON_AddItemToArray(items, template_json(&v[i], 1)))
                rc = KB_ERR_NOMEM;
        kb_templates_free(v, n);
    } else {
        kb_case_t *v = NULL;
        rc = kb_case_list(db, cat, (int)offset, (int)limit, &v, &n, &total);
        for (int i = 0; rc == 0 && i < n; i++)
            if (!cJSON_AddItemToArray(items, case_json(&v[i], 1)))
                rc = KB_ERR_NOMEM;
        kb_cases_free(v, n);
    }
    if (rc != 0) {
        set_kb_error(r, db, rc, "listing failed");
        goto out;
    }
    set_ok(r, 200, list_envelope(items, total, offset, limit));
    items = NULL;
    goto out;
nomem:
    set_error(r, 500, "internal", "out of memory");
out:
    cJSON_Delete(items);
    free(cat);
    free(q);
}

static void get_record(reply *r, sqlite3 *db, kb_kind_t kind, const char *seg)
{
    long long id;
    const char *key;
    char msg[128];
    int rc;

    parse_ref(seg, &id, &key);
    if (kind == KB_TEMPLATE) {
        kb_template_t t;
        rc = kb_template_get(db, id, key, &t);
        if (rc == 0)
            set_ok(r, 200, template_json(&t, 1));
        kb_template_clear(&t);
    } else {
        kb_case_t c;
        rc = kb_case_get(db, id, key, &c);
        if (rc == 0)
            set_ok(r, 200, case_json(&c, 1));
        kb_case_clear(&c);
    }
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "no %s \"%.64s\"", kind_name(kind), seg);
        set_kb_error(r, db, rc, msg);
    }
}

/* POST (id 0) or PUT (id from the path) of one record. */
static void save_record(reply *r, sqlite3 *db, kb_kind_t kind, const char *seg, const char *body,
                        size_t body_len, const char *who)
{
    char err[256];
    cJSON *o = NULL;
    api_extra x = {0, 0};
    kb_template_t t;
    kb_case_t c;
    long long id = 0, new_id = 0;
    const char *key = NULL;
    int rc;

    memset(&t, 0, sizeof(t));
    memset(&c, 0, sizeof(c));
    if (body == NULL || body_len == 0) {
        set_error(r, 400, "bad_request", "a JSON body is required");
        return;
    }
    if ((o = parse_object(body, body_len, err, sizeof(err))) == NULL) {
        set_error(r, 400, "bad_request", err);
        return;
    }
    rc = kind == KB_TEMPLATE ? parse_template(o, 1, &t, &x, err, sizeof(err))
                             : parse_case(o, 1, &c, &x, err, sizeof(err));
    if (rc != 0)
        goto fail;
    if (seg) { /* PUT: the path names the record; the body may omit the key */
        parse_ref(seg, &id, &key);
        if (key) {
            if (kind == KB_TEMPLATE) {
                kb_template_t cur;
                rc = kb_template_get(db, 0, key, &cur);
                id = cur.id;
                kb_template_clear(&cur);
            } else {
                kb_case_t cur;
                rc = kb_case_get(db, 0, key, &cur);
                id = cur.id;
                kb_case_clear(&cur);
            }
            if (rc != 0) {
                snprintf(err, sizeof(err), "no %s \"%.64s\"", kind_name(kind), key);
                goto fail;
            }
        }
        if (x.id != 0 && x.id != id) {
            snprintf(err, sizeof(err), "field \"id\": %lld does not match the path", x.id);
            rc = KB_ERR_INVALID;
            goto fail;
        }
        char **keyp = kind == KB_TEMPLATE ? &t.key : &c.key;
        if (*keyp == NULL) {
            char *k = NULL;
            if (kind == KB_TEMPLATE) {
                kb_template_t cur;
                rc = kb_template_get(db, id, NULL, &cur);
                k = cur.key;
                cur.key = NULL;
                kb_template_clear(&cur);
            } else {
                kb_case_t cur;
                rc = kb_case_get(db, id, NULL, &cur);
                k = cur.key;
                cur.key = NULL;
                kb_case_clear(&cur);
            }
            if (rc != 0) {
                snprintf(err, sizeof(err), "no %s with id %lld", kind_name(kind), id);
                goto fail;
            }
            *keyp = k;
        }
        t.id = c.id = id;
    }
    int mode = seg ? KB_SAVE_UPDATE : KB_SAVE_CREATE;
    if (kind == KB_TEMPLATE)
        rc = kb_template_save(db, &t, mode, (int)x.version, who, &new_id, NULL, err, sizeof(err));
    else
        rc = kb_case_save(db, &c, mode, &new_id, err, sizeof(err));
    if (rc < 0)
        goto fail;
    char idbuf[32];
    snprintf(idbuf, sizeof(idbuf), "%lld", new_id);
    get_record(r, db, kind, idbuf);
    if (r->status == 200 && rc == KB_CREATED)
        r->status = 201;
    goto out;
fail:
    set_kb_error(r, db, rc, err);
out:
    cJSON_Delete(o);
    kb_template_clear(&t);
    kb_case_clear(&c);
}

static void delete_record(reply *r, sqlite3 *db, kb_kind_t kind, const char *seg, const char *who)
{
    long long id;
    const char *key;
    char err[256], *k = NULL;
    int rc;

    parse_ref(seg, &id, &key);
    if (kind == KB_TEMPLATE) {
        kb_template_t t;
        rc = kb_template_get(db, id, key, &t);
        if (rc == 0) {
            id = t.id;
            k = t.key;
            t.key = NULL;
            rc = kb_template_delete(db, id, who, err, sizeof(err));
        }
        kb_template_clear(&t);
    } else {
        kb_case_t c;
        rc = kb_case_get(db, id, key, &c);
        if (rc == 0) {
            id = c.id;
            k = c.key;
            c.key = NULL;
            rc = kb_case_delete(db, id, err, sizeof(err));
        }
        kb_case_clear(&c);
    }
    if (rc == KB_ERR_NOTFOUND)
        snprintf(err, sizeof(err), "no %s \"%.64s\"", kind_name(kind), seg);
    if (rc != 0) {
        set_kb_error(r, db, rc, rc == KB_ERR_DB ? "delete failed" : err);
    } else {
        cJSON *o = cJSON_CreateObject(), *d = o ? cJSON_AddObjectToObject(o, "deleted") : NULL;
        if (d && cJSON_AddNumberToObject(d, "id", (double)id) &&
            cJSON_AddStringToObject(d, "key", k))
            set_ok(r, 200, o);
        else {
            cJSON_Delete(o);
            set_ok(r, 200, NULL);
        }
    }
    free(k);
}

static void history(reply *r, sqlite3 *db, const char *seg)
{
    long long id;
    const char *key;
    char *owned = NULL, msg[128];
    kb_template_t *v = NULL;
    int n = 0, rc = 0;

    parse_ref(seg, &id, &key);
    if (key == NULL) {
        rc = kb_template_key_of(db, id, &owned);
        key = owned;
    }
    if (rc == 0)
        rc = kb_template_history(db, key, &v, &n);
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "no template \"%.64s\"", seg);
        set_kb_error(r, db, rc, msg);
        goto out;
    }
    cJSON *items = cJSON_CreateArray(), *o = cJSON_CreateObject();
    int ok = items && o && cJSON_AddStringToObject(o, "key", key) &&
             cJSON_AddItemToObject(o, "items", items);
    if (!ok)
        cJSON_Delete(items);
    for (int i = 0; ok && i < n; i++)
        ok = cJSON_AddItemToArray(items, template_json(&v[i], 1));
    if (!ok) {
        cJSON_Delete(o);
        o = NULL;
    }
    set_ok(r, 200, o);
out:
    kb_templates_free(v, n);
    free(owned);
}

static void categories_json(reply *r)
{
    cJSON *o = cJSON_CreateObject(), *items = o ? cJSON_AddArrayToObject(o, "items") : NULL;
    int ok = items != NULL;
    for (int i = 0; ok && i < kb_category_count(); i++) {
        cJSON *c = cJSON_CreateObject();
        ok = c && cJSON_AddItemToArray(items, c) &&
             cJSON_AddStringToObject(c, "slug", kb_category_slug(i)) &&
             cJSON_AddStringToObject(c, "name", kb_category_name(kb_category_slug(i)));
    }
    if (!ok) {
        cJSON_Delete(o);
        o = NULL;
    }
    set_ok(r, 200, o);
}

static void stats_json(reply *r, sqlite3 *db)
{
    int nt = kb_template_count(db), nc = kb_case_count(db);
    kb_synonyms_t *syn = kb_synonyms_current();
    int groups = kb_synonyms_groups(syn);
    kb_synonyms_unref(syn);
    if (nt < 0 || nc < 0) {
        set_kb_error(r, db, KB_ERR_DB, "stats failed");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (o &&
        (!cJSON_AddNumberToObject(o, "templates", nt) || !cJSON_AddNumberToObject(o, "cases", nc) ||
         !cJSON_AddNumberToObject(o, "synonym_groups", groups))) {
        cJSON_Delete(o);
        o = NULL;
    }
    set_ok(r, 200, o);
}

static void method_not_allowed(reply *r, const char *allowed)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "method not allowed here (allowed: %s)", allowed);
    set_error(r, 405, "method_not_allowed", msg);
}

/* Splits path into at most 4 decoded segments.  Returns the count, or -1 for a bad path. */
static int split_path(const char *path, char *seg[4])
{
    int n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0) {
            if (n == 4 || len > 256)
                return -1;
            seg[n] = url_decode(p, len, 0);
            if (seg[n] == NULL)
                return -1;
            n++;
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    return n;
}

static void route(reply *r, sqlite3 *db, const char *m, char *seg[4], int n, const char *qs,
                  const char *body, size_t body_len, const char *who)
{
    int is_get = strcmp(m, "GET") == 0, is_post = strcmp(m, "POST") == 0,
        is_put = strcmp(m, "PUT") == 0, is_del = strcmp(m, "DELETE") == 0;

    if (n == 0) {
        set_error(r, 404, "not_found", "no such resource");
        return;
    }
    if (n == 1 && strcmp(seg[0], "search") == 0) {
        if (is_get)
            do_search(r, db, qs, 3);
        else
            method_not_allowed(r, "GET");
        return;
    }
    if (n == 1 && (strcmp(seg[0], "categories") == 0 || strcmp(seg[0], "stats") == 0)) {
        if (!is_get)
            method_not_allowed(r, "GET");
        else if (seg[0][0] == 'c')
            categories_json(r);
        else
            stats_json(r, db);
        return;
    }
    kb_kind_t kind;
    if (strcmp(seg[0], "templates") == 0)
        kind = KB_TEMPLATE;
    else if (strcmp(seg[0], "cases") == 0)
        kind = KB_CASE;
    else {
        set_error(r, 404, "not_found", "no such resource");
        return;
    }
    if (n == 1) {
        if (is_get)
            list_records(r, db, qs, kind);
        else if (is_post)
            save_record(r, db, kind, NULL, body, body_len, who);
        else
            method_not_allowed(r, "GET, POST");
    } else if (n == 2) {
        if (is_get)
            get_record(r, db, kind, seg[1]);
        else if (is_put)
            save_record(r, db, kind, seg[1], body, body_len, who);
        else if (is_del)
            delete_record(r, db, kind, seg[1], who);
        else
            method_not_allowed(r, "GET, PUT, DELETE");
    } else if (n == 3 && strcmp(seg[2], "history") == 0) {
        if (kind != KB_TEMPLATE)
            set_error(r, 404, "not_found", "past cases keep no history");
        else if (is_get)
            history(r, db, seg[1]);
        else
            method_not_allowed(r, "GET");
    } else {
        set_error(r, 404, "not_found", "no such resource");
    }
}

int kb_api_handle(sqlite3 *db, const char *method, const char *path, const char *query_string,
                  const char *body, size_t body_len, const char *who, int *http_status,
                  char **out_json)
{
    reply r = {500, NULL};
    char *seg[4] = {NULL, NULL, NULL, NULL};
    int n = -1;

    *out_json = NULL;
    if (method == NULL || path == NULL)
        set_error(&r, 400, "bad_request", "method and path are required");
    else if ((n = split_path(path, seg)) < 0)
        set_error(&r, 404, "not_found", "no such resource");
    else
        route(&r, db, method, seg, n, query_string, body, body_len, who ? who : "");
    for (int i = 0; i < 4; i++)
        free(seg[i]);
    if (r.body == NULL)
        set_error(&r, 500, "internal", "out of memory");
    *http_status = r.status;
    *out_json = r.body ? cJSON_PrintUnformatted(r.body) : NULL;
    cJSON_Delete(r.body);
    if (*out_json == NULL) {
        *http_status = 500;
        return KB_ERR_NOMEM;
    }
    return 0;
}
