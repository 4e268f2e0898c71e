/*
 * agent_ctx.c - the JSON views of the agent tables for the console: the context packet of a
 * conversation (docs/protocol.md, "The context packet") and the canned replies.
 *
 * What it owns
 *   An agent_ctx_t (created by agent_store_new, freed by agent_store_free) holds prepared
 *   statements on the store's reader connection; everything runs on the loop thread and every
 *   statement is an indexed lookup bounded by one conversation (or one customer's, at most 20).
 *   The texts it returns are malloc'ed and owned by the caller.
 *
 * Where each part of the packet comes from
 *   conversation, customer   conversations + customers; history_count = the customer's
 *                            conversations that started before this one (the flow's meaning)
 *   past_complaints          the customer's other conversations, newest first, at most 20,
 *                            each with its complaints row and its latest hand-off
 *   escalation, handoff      the open hand-off, else the latest one (null when none)
 *   category ... expectation the summary JSON of that hand-off (else of the latest `escalation`
 *                            internal event); a key the summary lacks is taken from the folded
 *                            record fields (chat:record), else it is null
 *   solutions                summary.offered / summary.refused as arrays of titles
 *   record                   complaints row + the flow's `record` internal events folded into
 *                            fields (latest value per field)
 *   notes, transcript        agent_notes; the last TRANSCRIPT_MAX messages and status events
 *
 * The packet is built by build_packet(): one helper per part, each 0 or -1 (SQLite failed);
 * any failure gives NULL (logged).
 */
#include "agent_proto.h"
#include "agent_store.h"

#include "log.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODULE "agent"
#define TRANSCRIPT_MAX 200
#define PAST_MAX 20

struct agent_ctx {
    sqlite3 *db;
    sqlite3_stmt *conv, *past, *handoff, *escalation, *records, *complaint, *notes, *transcript,
        *total, *canned;
};

static const struct {
    size_t offset;
    const char *sql;
} statements[] = {
    {offsetof(agent_ctx_t, conv),
     "SELECT c.customer_id, u.external_id, COALESCE(NULLIF(c.customer_name, ''), u.name),"
     " c.channel, u.vip,"
     " (SELECT COUNT(*) FROM conversations e WHERE e.customer_id = c.customer_id AND e.id < c.id)"
     " FROM conversations c JOIN customers u ON u.id = c.customer_id WHERE c.id = ?1"},
    {offsetof(agent_ctx_t, past),
     "SELECT c.id, c.created_at, p.number, p.status,"
     " COALESCE(NULLIF(p.category, ''), (SELECT CASE WHEN json_valid(h.summary)"
     "   THEN json_extract(h.summary, '$.category') END FROM handoffs h"
     "   WHERE h.conversation_id = c.id ORDER BY h.id DESC LIMIT 1)),"
     " (SELECT h.resolution FROM handoffs h WHERE h.conversation_id = c.id"
     "   ORDER BY h.id DESC LIMIT 1)"
     " FROM conversations c LEFT JOIN complaints p ON p.conversation_id = c.id"
     " WHERE c.customer_id = ?2 AND c.id <> ?1 ORDER BY c.id DESC LIMIT ?3"},
    {offsetof(agent_ctx_t, handoff),
     "SELECT state, reason, priority, grp, agent, record, queued_at, COALESCE(claimed_at, 0),"
     " COALESCE(due, 0), transfers, summary FROM handoffs WHERE conversation_id = ?1"
     " ORDER BY state IN ('queued', 'callback', 'active') DESC, id DESC LIMIT 1"},
    {offsetof(agent_ctx_t, escalation),
     "SELECT detail FROM events WHERE conversation_id = ?1 AND kind = 'escalation'"
     " AND seq IS NULL ORDER BY id DESC LIMIT 1"},
    {offsetof(agent_ctx_t, records),
     "SELECT detail FROM events WHERE conversation_id = ?1 AND kind = 'record'"
     " AND seq IS NULL ORDER BY id"},
    {offsetof(agent_ctx_t, complaint),
     "SELECT number, status, COALESCE(due, 0) FROM complaints WHERE conversation_id = ?1"},
    {offsetof(agent_ctx_t, notes),
     "SELECT author, text, created_at FROM agent_notes WHERE conversation_id = ?1 ORDER BY id"},
    {offsetof(agent_ctx_t, transcript),
     "SELECT * FROM (SELECT seq, sender, text, NULL AS kind, NULL AS detail, created_at"
     "   FROM messages WHERE conversation_id = ?1"
     " UNION ALL SELECT seq, 'system', NULL, kind, detail, created_at"
     "   FROM events WHERE conversation_id = ?1 AND seq IS NOT NULL"
     " ORDER BY seq DESC LIMIT ?2) ORDER BY seq"},
    {offsetof(agent_ctx_t, total),
     "SELECT (SELECT COUNT(*) FROM messages WHERE conversation_id = ?1)"
     " + (SELECT COUNT(*) FROM events WHERE conversation_id = ?1 AND seq IS NOT NULL)"},
    {offsetof(agent_ctx_t, canned), "SELECT grp, title, text FROM canned_replies"
                                    " ORDER BY position, id"},
};
#define NSTATEMENTS (sizeof(statements) / sizeof(statements[0]))

static sqlite3_stmt **slot(agent_ctx_t *c, size_t i)
{
    return (sqlite3_stmt **)((char *)c + statements[i].offset);
}

agent_ctx_t *agent_ctx_new(sqlite3 *db)
{
    agent_ctx_t *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error(MODULE, "out of memory");
        return NULL;
    }
    c->db = db;
    for (size_t i = 0; i < NSTATEMENTS; i++)
        if (sqlite3_prepare_v3(db, statements[i].sql, -1, SQLITE_PREPARE_PERSISTENT, slot(c, i),
                               NULL) != SQLITE_OK) {
            log_error(MODULE, "prepare failed: %s in: %.80s", sqlite3_errmsg(db),
                      statements[i].sql);
            agent_ctx_free(c);
            return NULL;
        }
    return c;
}

void agent_ctx_free(agent_ctx_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NSTATEMENTS; i++)
        sqlite3_finalize(*slot(c, i));
    free(c);
}

/* ---- helpers ---- */

static void finish(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Logs a failed step (rc is neither ROW nor DONE) and returns -1. */
static int failed(agent_ctx_t *c, const char *what)
{
    log_error(MODULE, "context packet: %s: %s", what, sqlite3_errmsg(c->db));
    return -1;
}

static const char *text(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

/* key: the ISO time of t, or null when t is 0 (never). */
static void add_time(cJSON *o, const char *key, double t)
{
    char buf[40];
    if (t > 0) {
        agent_iso(t, buf, sizeof(buf));
        cJSON_AddStringToObject(o, key, buf);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

/* key: s, or null when s is NULL or "". */
static void add_str(cJSON *o, const char *key, const char *s)
{
    if (s && *s)
        cJSON_AddStringToObject(o, key, s);
    else
        cJSON_AddNullToObject(o, key);
}

static void conv_name(long long id, char *out, size_t n)
{
    snprintf(out, n, "c-%012lld", id);
}

/* ---- the parts of the packet ---- */

static int add_past(agent_ctx_t *c, cJSON *root, long long conversation, long long customer)
{
    sqlite3_stmt *st = c->past;
    cJSON *arr = cJSON_AddArrayToObject(root, "past_complaints");
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    sqlite3_bind_int64(st, 2, customer);
    sqlite3_bind_int(st, 3, PAST_MAX);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char name[32];
        cJSON *p = cJSON_CreateObject();
        conv_name(sqlite3_column_int64(st, 0), name, sizeof(name));
        cJSON_AddStringToObject(p, "conversation", name);
        add_str(p, "created_at", text(st, 1));
        add_str(p, "category", text(st, 4));
        add_str(p, "record", text(st, 2));
        add_str(p, "status", text(st, 3));
        add_str(p, "resolution", text(st, 5));
        cJSON_AddItemToArray(arr, p);
    }
    finish(st);
    return rc == SQLITE_DONE ? 0 : failed(c, "past complaints");
}

/* The open (or latest) hand-off of a conversation. */
typedef struct hrow {
    int found;
    char state[16], reason[65], group[33], agent[65], record[32];
    int priority, transfers;
    double queued_at, claimed_at, due;
    char *summary; /* malloc'ed */
} hrow;

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const char *v = text(st, col);
    snprintf(dst, n, "%s", v ? v : "");
}

static int load_handoff(agent_ctx_t *c, long long conversation, hrow *h)
{
    sqlite3_stmt *st = c->handoff;
    int rc;

    memset(h, 0, sizeof(*h));
    sqlite3_bind_int64(st, 1, conversation);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        h->found = 1;
        copy_col(h->state, sizeof(h->state), st, 0);
        copy_col(h->reason, sizeof(h->reason), st, 1);
        h->priority = sqlite3_column_int(st, 2);
        copy_col(h->group, sizeof(h->group), st, 3);
        copy_col(h->agent, sizeof(h->agent), st, 4);
        copy_col(h->record, sizeof(h->record), st, 5);
        h->queued_at = sqlite3_column_double(st, 6);
        h->claimed_at = sqlite3_column_double(st, 7);
        h->due = sqlite3_column_double(st, 8);
        h->transfers = sqlite3_column_int(st, 9);
        h->summary = text(st, 10) ? strdup(text(st, 10)) : NULL;
        rc = SQLITE_DONE;
    }
    finish(st);
    return rc == SQLITE_DONE ? 0 : failed(c, "hand-off");
}

/* The escalation summary: the hand-off's, else the latest `escalation` internal event's.
 * *out is a parsed object or NULL. */
static int load_summary(agent_ctx_t *c, long long conversation, const hrow *h, cJSON **out)
{
    sqlite3_stmt *st = c->escalation;
    int rc = SQLITE_DONE;

    *out = h->summary ? cJSON_Parse(h->summary) : NULL;
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        sqlite3_bind_int64(st, 1, conversation);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = text(st, 0) ? cJSON_Parse(text(st, 0)) : NULL;
            rc = SQLITE_DONE;
        }
        finish(st);
        if (*out && !cJSON_IsObject(*out)) {
            cJSON_Delete(*out);
            *out = NULL;
        }
    }
    return rc == SQLITE_DONE ? 0 : failed(c, "escalation event");
}

/* The flow's `record` events ({field, value}) folded into one object, latest value winning. */
static int load_fields(agent_ctx_t *c, long long conversation, cJSON **out)
{
    sqlite3_stmt *st = c->records;
    cJSON *fields = cJSON_CreateObject();
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *d = text(st, 0) ? cJSON_Parse(text(st, 0)) : NULL;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(d, "field");
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(d, "value");
        if (cJSON_IsString(f) && v) {
            if (cJSON_GetObjectItemCaseSensitive(fields, f->valuestring))
                cJSON_ReplaceItemInObjectCaseSensitive(fields, f->valuestring, v);
            else
                cJSON_AddItemToObject(fields, f->valuestring, v);
        } else {
            cJSON_Delete(v);
        }
        cJSON_Delete(d);
    }
    finish(st);
    *out = fields;
    return rc == SQLITE_DONE ? 0 : failed(c, "record events");
}

static void add_escalation(cJSON *root, const hrow *h, const cJSON *sum)
{
    if (!h->found) {
        cJSON_AddNullToObject(root, "escalation");
        return;
    }
    cJSON *e = cJSON_AddObjectToObject(root, "escalation");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(sum, "step");
    add_str(e, "reason", h->reason);
    cJSON_AddNumberToObject(e, "priority", h->priority);
    add_str(e, "group", h->group);
    add_time(e, "at", h->queued_at);
    add_str(e, "step", cJSON_IsString(step) ? step->valuestring : NULL);
}

/* summary[key] when present and not null, else fields[key] (may be NULL). */
static const cJSON *fact(const cJSON *sum, const cJSON *fields, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sum, key);
    if (!v || cJSON_IsNull(v))
        v = cJSON_GetObjectItemCaseSensitive(fields, key);
    return v;
}

/* mood {score, trend[, level][, threat]} from the flow's mood (lib.mood's table, or a bare
 * score); trend is mood.trend when it is an array of scores, else mood.history, else [score]. */
static void add_mood(cJSON *root, const cJSON *m)
{
    if (cJSON_IsNumber(m)) {
        cJSON *o = cJSON_AddObjectToObject(root, "mood");
        cJSON_AddNumberToObject(o, "score", m->valuedouble);
        cJSON_AddItemToObject(o, "trend", cJSON_CreateDoubleArray(&m->valuedouble, 1));
        return;
    }
    if (!cJSON_IsObject(m)) {
        cJSON_AddNullToObject(root, "mood");
        return;
    }
    cJSON *o = cJSON_AddObjectToObject(root, "mood");
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(m, "score"), *e;
    const cJSON *trend = cJSON_GetObjectItemCaseSensitive(m, "trend");
    const cJSON *level = cJSON_GetObjectItemCaseSensitive(m, "level");
    if (!cJSON_IsArray(trend))
        trend = cJSON_GetObjectItemCaseSensitive(m, "history");
    if (cJSON_IsNumber(score))
        cJSON_AddNumberToObject(o, "score", score->valuedouble);
    else
        cJSON_AddNullToObject(o, "score");
    cJSON *t = cJSON_AddArrayToObject(o, "trend");
    if (cJSON_IsArray(trend)) {
        cJSON_ArrayForEach(e, trend)
        {
            if (cJSON_IsNumber(e))
                cJSON_AddItemToArray(t, cJSON_CreateNumber(e->valuedouble));
        }
    } else if (cJSON_IsNumber(score)) {
        cJSON_AddItemToArray(t, cJSON_CreateNumber(score->valuedouble));
    }
    if (cJSON_IsString(level))
        cJSON_AddStringToObject(o, "level", level->valuestring);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "threat")))
        cJSON_AddTrueToObject(o, "threat");
}

/* An array of solution titles from a summary array of strings or {title} objects. */
static cJSON *titles(const cJSON *arr)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const cJSON *t = cJSON_IsString(e) ? e : cJSON_GetObjectItemCaseSensitive(e, "title");
        if (cJSON_IsString(t))
            cJSON_AddItemToArray(out, cJSON_CreateString(t->valuestring));
    }
    return out;
}

/* category, severity, mood, slots, summary, expectation, solutions. */
static void add_facts(cJSON *root, const cJSON *sum, const cJSON *fields)
{
    const cJSON *v = fact(sum, fields, "category");
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "slug"); /* chat:record("category", {slug,..}) */
    add_str(root, "category", cJSON_IsString(v) ? v->valuestring : NULL);

    v = fact(sum, fields, "severity");
    if (cJSON_IsNumber(v))
        cJSON_AddNumberToObject(root, "severity", v->valueint);
    else
        cJSON_AddNullToObject(root, "severity");

    add_mood(root, fact(sum, fields, "mood"));

    v = fact(sum, fields, "slots");
    if (cJSON_IsObject(v))
        cJSON_AddItemToObject(root, "slots", cJSON_Duplicate(v, 1));
    else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0) /* an empty Lua table */
        cJSON_AddObjectToObject(root, "slots");
    else
        cJSON_AddNullToObject(root, "slots");

    v = fact(sum, fields, "summary");
    add_str(root, "summary", cJSON_IsString(v) ? v->valuestring : NULL);
    v = fact(sum, fields, "expectation");
    add_str(root, "expectation", cJSON_IsString(v) ? v->valuestring : NULL);

    cJSON *sol = cJSON_AddObjectToObject(root, "solutions");
    cJSON_AddItemToObject(sol, "offered", titles(cJSON_GetObjectItemCaseSensitive(sum, "offered")));
    cJSON_AddItemToObject(sol, "refused", titles(cJSON_GetObjectItemCaseSensitive(sum, "refused")));
}

/* record {number, status, due, fields}; null when there is no complaints row, no record
 * number on the hand-off and no recorded field.  fields is taken over. */
static int add_record(agent_ctx_t *c, cJSON *root, long long conversation, const hrow *h,
                      cJSON *fields)
{
    sqlite3_stmt *st = c->complaint;
    cJSON *r;
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        r = cJSON_AddObjectToObject(root, "record");
        add_str(r, "number", text(st, 0));
        add_str(r, "status", text(st, 1));
        add_time(r, "due", sqlite3_column_double(st, 2));
        rc = SQLITE_DONE;
    } else if (rc == SQLITE_DONE && (h->record[0] || cJSON_GetArraySize(fields) > 0)) {
        r = cJSON_AddObjectToObject(root, "record");
        add_str(r, "number", h->record);
        cJSON_AddNullToObject(r, "status");
        add_time(r, "due", h->due);
    } else {
        r = NULL;
        cJSON_AddNullToObject(root, "record");
    }
    finish(st);
    if (r)
        cJSON_AddItemToObject(r, "fields", fields);
    else
        cJSON_Delete(fields);
    return rc == SQLITE_DONE ? 0 : failed(c, "complaint record");
}

static void add_handoff(cJSON *root, const hrow *h)
{
    if (!h->found) {
        cJSON_AddNullToObject(root, "handoff");
        return;
    }
    cJSON *o = cJSON_AddObjectToObject(root, "handoff");
    cJSON_AddStringToObject(o, "state", h->state);
    add_str(o, "agent", h->agent);
    add_time(o, "queued_at", h->queued_at);
    add_time(o, "claimed_at", h->claimed_at);
    cJSON_AddNumberToObject(o, "transfers", h->transfers);
}

static int add_notes(agent_ctx_t *c, cJSON *root, long long conversation)
{
    sqlite3_stmt *st = c->notes;
    cJSON *arr = cJSON_AddArrayToObject(root, "notes");
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "author", text(st, 0) ? text(st, 0) : "");
        cJSON_AddStringToObject(n, "text", text(st, 1) ? text(st, 1) : "");
        add_time(n, "ts", sqlite3_column_double(st, 2));
        cJSON_AddItemToArray(arr, n);
    }
    finish(st);
    return rc == SQLITE_DONE ? 0 : failed(c, "notes");
}

static int add_transcript(agent_ctx_t *c, cJSON *root, long long conversation)
{
    sqlite3_stmt *st = c->transcript;
    cJSON *arr = cJSON_AddArrayToObject(root, "transcript");
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    sqlite3_bind_int(st, 2, TRANSCRIPT_MAX);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *e = cJSON_CreateObject();
        const char *kind = text(st, 3);
        cJSON_AddNumberToObject(e, "seq", (double)sqlite3_column_int64(st, 0));
        cJSON_AddStringToObject(e, "from", text(st, 1) ? text(st, 1) : "system");
        if (kind) { /* a status event: its state as the text, and its detail */
            cJSON *d = text(st, 4) ? cJSON_Parse(text(st, 4)) : NULL;
            cJSON_AddStringToObject(e, "text", kind);
            if (cJSON_IsObject(d))
                cJSON_AddItemToObject(e, "detail", d);
            else
                cJSON_Delete(d);
        } else {
            cJSON_AddStringToObject(e, "text", text(st, 2) ? text(st, 2) : "");
        }
        cJSON_AddStringToObject(e, "ts", text(st, 5) ? text(st, 5) : "");
        cJSON_AddItemToArray(arr, e);
    }
    finish(st);
    if (rc != SQLITE_DONE)
        return failed(c, "transcript");

    st = c->total;
    sqlite3_bind_int64(st, 1, conversation);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        cJSON_AddNumberToObject(root, "transcript_total", (double)sqlite3_column_int64(st, 0));
        rc = SQLITE_DONE;
    }
    finish(st);
    return rc == SQLITE_DONE ? 0 : failed(c, "transcript count");
}

/* The conversation and customer; 1 when there is no such conversation. */
static int add_customer(agent_ctx_t *c, cJSON *root, long long conversation, long long *customer)
{
    sqlite3_stmt *st = c->conv;
    char name[32];
    int rc;

    sqlite3_bind_int64(st, 1, conversation);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        cJSON *cu;
        *customer = sqlite3_column_int64(st, 0);
        conv_name(conversation, name, sizeof(name));
        cJSON_AddStringToObject(root, "conversation", name);
        cu = cJSON_AddObjectToObject(root, "customer");
        cJSON_AddStringToObject(cu, "id", text(st, 1) ? text(st, 1) : "");
        add_str(cu, "name", text(st, 2));
        cJSON_AddStringToObject(cu, "channel", text(st, 3) ? text(st, 3) : "");
        cJSON_AddNumberToObject(cu, "vip", sqlite3_column_int(st, 4));
        cJSON_AddNumberToObject(cu, "history_count", sqlite3_column_int(st, 5));
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = 1;
    } else {
        rc = failed(c, "conversation");
    }
    finish(st);
    return rc;
}

char *agent_ctx_packet(agent_ctx_t *c, long long conversation)
{
    cJSON *root = cJSON_CreateObject(), *sum = NULL, *fields = NULL;
    hrow h = {0};
    long long customer = 0;
    char *out = NULL;

    if (!root)
        goto out;
    if (add_customer(c, root, conversation, &customer) != 0 ||
        add_past(c, root, conversation, customer) != 0 || load_handoff(c, conversation, &h) != 0 ||
        load_summary(c, conversation, &h, &sum) != 0 || load_fields(c, conversation, &fields) != 0)
        goto out;
    add_escalation(root, &h, sum);
    add_facts(root, sum, fields);
    if (add_record(c, root, conversation, &h, fields) != 0) {
        fields = NULL; /* taken over */
        goto out;
    }
    fields = NULL;
    add_handoff(root, &h);
    if (add_notes(c, root, conversation) != 0 || add_transcript(c, root, conversation) != 0)
        goto out;
    out = cJSON_PrintUnformatted(root);
    if (!out)
        log_error(MODULE, "context packet: out of memory");
out:
    cJSON_Delete(root);
    cJSON_Delete(sum);
    cJSON_Delete(fields);
    free(h.summary);
    return out;
}

char *agent_ctx_canned(agent_ctx_t *c)
{
    sqlite3_stmt *st = c->canned;
    cJSON *arr = cJSON_CreateArray();
    char *out = NULL;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "title", text(st, 1) ? text(st, 1) : "");
        cJSON_AddStringToObject(o, "text", text(st, 2) ? text(st, 2) : "");
        add_str(o, "group", text(st, 0)); /* null: every group */
        cJSON_AddItemToArray(arr, o);
    }
    finish(st);
    if (rc != SQLITE_DONE)
        failed(c, "canned replies");
    else if (!(out = cJSON_PrintUnformatted(arr)))
        log_error(MODULE, "canned replies: out of memory");
    cJSON_Delete(arr);
    return out;
}
