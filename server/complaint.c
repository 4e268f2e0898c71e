/*
 * complaint.c - complaint records: lifecycle, SLA timers, progress pushed to the chat.
 *
 * Ownership
 *   complaint_mgr_t owns a `record` for every complaint that is not closed (list + map by
 *   conversation name) and the reader statements for the progress page.  Records hold no
 *   session pointer: a transition caused by the flow or an agent is given the session; a timer
 *   looks the session up (session_mgr_load) only when it has to tell the customer something.
 *   Store writes (the full row, an event row, a survey row) carry copies of their data.
 *
 * Lifecycle (docs/complaints.md)
 *   received -> acknowledged -> investigating -> solution_offered -> agreed -> in_progress
 *   -> resolved -> closed, and reopened from resolved or closed.  transition() accepts only
 *   forward moves (by rank) and reopened; from reopened any move but back to received.
 *
 *   created by     complaint_flow_record (the flow's first field), complaint_escalated,
 *                  complaint_set_status
 *   moved by       flow fields (summary -> acknowledged, kb -> investigating, solution ->
 *                  solution_offered, status -> its value), agents (claim, resolve), timers
 *                  (resolved for close_after_h -> closed)
 *   freed          when closed (after its row is queued)
 *
 * Deadlines: ack, answer and resolve, each with its start (`from`) and due time computed in
 * business time (complaint_sla.c) when the record is created (resolve again when reopened).
 * A deadline is met when its step is reached.  tick(): past near_breach of its span -> warned
 * (an event row; the agents' queue shows it); past due -> breached (an event row, webhook
 * sla.breached, and the chat goes to the agents unless it is already with them).
 *
 * Timers: every open complaint is in memory, and they add up (a week of resolved ones waits
 * for close_after_h), so tick() does not walk them: a timeq (timeq.h) orders the records by
 * the first time each needs looking at (wake_time: a warning, a deadline, the close), and
 * tick() takes from its front only the records that are due.  Whatever moves a record's
 * times (creation, loading, a transition, a met deadline, an SLA reload) calls sched();
 * drop() takes the record out.  Measured in the bench: the walk took 1-3.4 ms a second with
 * 8,000 open complaints after 25 s of load, growing with every complaint kept.
 */
#include "complaint.h"

#include "agent.h"
#include "agent_proto.h"
#include "agent_store.h"
#include "complaint_sla.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "timeq.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D_ACK, D_ANSWER, D_RESOLVE, D_N };
static const char *const dname[D_N] = {"ack", "answer", "resolve"};

typedef struct record {
    struct record *prev, *next;
    long long conv;
    char name[24];
    char number[32];
    char category[64];
    int severity;
    char channel[16];
    char status[20];
    char owner[65];
    double created_at, updated_at;
    double from[D_N], due[D_N], met[D_N];
    double resolved_at, closed_at, callback_due;
    unsigned breached, warned; /* bit 1 << D_* */
    int escalated, reopened;
    timeq_item tq; /* due: when tick() must look at it next (wake_time); queued while > 0 */
} record;

struct complaint_mgr {
    server_t *srv;
    store_t *store;
    session_mgr_t *sessions;
    sla_policy_t sla;
    record *all;
    map_t *by_conv;
    timeq timers; /* the records with a deadline or a close ahead */
    complaint_notify_fn notify;
    void *notify_arg;
    sqlite3_stmt *r_progress, *r_history, *r_followups;
    uint64_t checked_ms;
};

/* ---- timers' order (see "Timers") ---- */

/* Deadline d is still ahead: set, not met, not yet missed. */
static int pending(const record *r, int d)
{
    return r->due[d] > 0 && !r->met[d] && !(r->breached & (1u << d));
}

/* When deadline d counts as near (near_breach of its span). */
static double warn_at(const complaint_mgr_t *cm, const record *r, int d)
{
    return r->from[d] + (r->due[d] - r->from[d]) * cm->sla.near_breach;
}

/* When a resolved record closes by itself (0: not resolved). */
static double close_at(const complaint_mgr_t *cm, const record *r)
{
    if (strcmp(r->status, "resolved") != 0 || r->resolved_at <= 0)
        return 0;
    return r->resolved_at + cm->sla.close_after_h * 3600.0;
}

/* The first time tick() has something to do for r (0: nothing ahead). */
static double wake_time(const complaint_mgr_t *cm, const record *r)
{
    double t = close_at(cm, r);
    for (int d = 0; d < D_N; d++) {
        if (!pending(r, d))
            continue;
        double w = r->due[d];
        if (!(r->warned & (1u << d)) && warn_at(cm, r, d) < w)
            w = warn_at(cm, r, d);
        t = timeq_earliest(t, w);
    }
    return t;
}

/* Puts r where its times say in the timers' queue (out of it with nothing ahead).  Out of
 * memory, a record not yet queued waits for its next change (logged). */
static void sched(complaint_mgr_t *cm, record *r)
{
    if (timeq_set(&cm->timers, &r->tq, wake_time(cm, r)) != 0)
        log_error("complaint", "%s: no memory for its deadlines", r->number);
}

/* ---- states ---- */

static const struct {
    const char *name, *text;
} states[] = {
    {"received", "已受理"},      {"acknowledged", "已确认"},
    {"investigating", "调查中"}, {"solution_offered", "已提供方案"},
    {"agreed", "方案已确认"},    {"in_progress", "处理中"},
    {"resolved", "已解决"},      {"closed", "已结案"},
    {"reopened", "重新处理"},
};
#define NSTATES ((int)(sizeof(states) / sizeof(states[0])))
#define RANK_REOPENED 8

static int rank(const char *status)
{
    for (int i = 0; i < NSTATES; i++)
        if (strcmp(states[i].name, status) == 0)
            return i;
    return -1;
}

const char *complaint_status_text(const char *status)
{
    int r = rank(status);
    return r >= 0 ? states[r].text : status;
}

static int allowed(const char *cur, const char *next)
{
    int a = rank(cur), b = rank(next);
    if (b < 0 || a == b)
        return 0;
    if (b == RANK_REOPENED)
        return a == rank("resolved") || a == rank("closed");
    if (a == RANK_REOPENED)
        return b > 0;
    return b > a;
}

/* ---- helpers ---- */

static double now_s(complaint_mgr_t *cm)
{
    return session_mgr_now(cm->sessions);
}

static record *find(complaint_mgr_t *cm, long long conv)
{
    char name[24];
    snprintf(name, sizeof(name), "c-%012lld", conv);
    return map_get(cm->by_conv, name);
}

static double next_due(const record *r)
{
    double best = 0;
    for (int d = 0; d < D_N; d++)
        if (r->due[d] > 0 && r->met[d] == 0 && (best == 0 || r->due[d] < best))
            best = r->due[d];
    return best;
}

/* The record as JSON (webhooks, docs/complaints.md "The record"). */
static char *record_json(const record *r)
{
    cJSON *o = cJSON_CreateObject(), *b = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "number", r->number);
    cJSON_AddStringToObject(o, "conversation", r->name);
    cJSON_AddStringToObject(o, "category", r->category);
    cJSON_AddNumberToObject(o, "severity", r->severity);
    cJSON_AddStringToObject(o, "channel", r->channel);
    cJSON_AddStringToObject(o, "status", r->status);
    cJSON_AddStringToObject(o, "owner", r->owner);
    agent_json_time(o, "created_at", r->created_at);
    agent_json_time(o, "updated_at", r->updated_at);
    agent_json_time(o, "ack_due", r->met[D_ACK] ? 0 : r->due[D_ACK]);
    agent_json_time(o, "answer_due", r->met[D_ANSWER] ? 0 : r->due[D_ANSWER]);
    agent_json_time(o, "resolve_due", r->met[D_RESOLVE] ? 0 : r->due[D_RESOLVE]);
    agent_json_time(o, "resolved_at", r->resolved_at);
    for (int d = 0; d < D_N; d++)
        if (r->breached & (1u << d))
            cJSON_AddItemToArray(b, cJSON_CreateString(dname[d]));
    cJSON_AddItemToObject(o, "breached", b);
    cJSON_AddBoolToObject(o, "escalated", r->escalated);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void notify(complaint_mgr_t *cm, const record *r, const char *event)
{
    if (!cm->notify)
        return;
    char *json = record_json(r);
    if (json)
        cm->notify(cm->notify_arg, event, json);
    free(json);
}

/* ---- store writes ---- */

typedef struct row_op {
    record r;   /* a copy */
    char *note; /* event rows */
    char from[20], to[20], actor[65];
    int kind; /* 0 the row, 1 an event */
} row_op;

static void bind_time(sqlite3_stmt *st, int i, double t)
{
    if (t > 0)
        sqlite3_bind_double(st, i, t);
    else
        sqlite3_bind_null(st, i);
}

static int work_row(store_tx_t *tx, void *arg)
{
    row_op *o = arg;
    const record *r = &o->r;
    sqlite3_stmt *st;
    if (o->kind == 1) {
        st = store_tx_stmt(tx, "INSERT INTO complaint_events(conversation_id, from_status, "
                               "to_status, actor, note, at) VALUES (?, ?, ?, ?, ?, ?)");
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, r->conv);
        if (o->from[0])
            sqlite3_bind_text(st, 2, o->from, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, o->to, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, o->actor, -1, SQLITE_STATIC);
        if (o->note)
            sqlite3_bind_text(st, 5, o->note, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, r->updated_at);
    } else {
        st = store_tx_stmt(
            tx,
            "INSERT INTO complaints(conversation_id, number, category, severity, status, owner,"
            " due, created_at, updated_at, channel, ack_due, answer_due, resolve_due, acked_at,"
            " answered_at, resolved_at, closed_at, resolve_from, callback_due, breached, warned,"
            " escalated, reopened) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
            " ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)"
            " ON CONFLICT(conversation_id) DO UPDATE SET category = ?3, severity = ?4,"
            " status = ?5, owner = ?6, due = ?7, updated_at = ?9, channel = ?10, ack_due = ?11,"
            " answer_due = ?12, resolve_due = ?13, acked_at = ?14, answered_at = ?15,"
            " resolved_at = ?16, closed_at = ?17, resolve_from = ?18, callback_due = ?19,"
            " breached = ?20, warned = ?21, escalated = ?22, reopened = ?23");
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, r->conv);
        sqlite3_bind_text(st, 2, r->number, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r->category, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, r->severity);
        sqlite3_bind_text(st, 5, r->status, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, r->owner, -1, SQLITE_STATIC);
        bind_time(st, 7, r->callback_due > 0 ? r->callback_due : next_due(r));
        sqlite3_bind_double(st, 8, r->created_at);
        sqlite3_bind_double(st, 9, r->updated_at);
        sqlite3_bind_text(st, 10, r->channel, -1, SQLITE_STATIC);
        for (int d = 0; d < D_N; d++) {
            bind_time(st, 11 + d, r->due[d]);
            bind_time(st, 14 + d, r->met[d]);
        }
        bind_time(st, 17, r->closed_at);
        bind_time(st, 18, r->from[D_RESOLVE]);
        bind_time(st, 19, r->callback_due);
        sqlite3_bind_int(st, 20, (int)r->breached);
        sqlite3_bind_int(st, 21, (int)r->warned);
        sqlite3_bind_int(st, 22, r->escalated);
        sqlite3_bind_int(st, 23, r->reopened);
    }
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void done_row(void *arg, int rc)
{
    row_op *o = arg;
    if (rc != 0)
        log_error("complaint", "%s: %s not stored", o->r.number, o->kind ? "event" : "record");
    free(o->note);
    free(o);
}

static void save(complaint_mgr_t *cm, const record *r)
{
    row_op *o = calloc(1, sizeof(*o));
    if (!o || (o->r = *r, store_submit(cm->store, work_row, done_row, o) != 0)) {
        free(o);
        log_error("complaint", "%s: record not queued", r->number);
    }
}

static void save_event(complaint_mgr_t *cm, const record *r, const char *from, const char *to,
                       const char *actor, const char *note)
{
    row_op *o = calloc(1, sizeof(*o));
    if (!o)
        goto fail;
    o->kind = 1;
    o->r = *r;
    snprintf(o->from, sizeof(o->from), "%s", from ? from : "");
    snprintf(o->to, sizeof(o->to), "%s", to);
    snprintf(o->actor, sizeof(o->actor), "%s", actor ? actor : "system");
    if (note && !(o->note = strdup(note)))
        goto fail;
    if (store_submit(cm->store, work_row, done_row, o) == 0)
        return;
fail:
    if (o)
        free(o->note);
    free(o);
    log_error("complaint", "%s: event not queued", r->number);
}

typedef struct survey_op {
    long long conv;
    int asked, solved, csat, nps; /* -1 = not given */
    char *comment;
    double at;
} survey_op;

static int work_survey(store_tx_t *tx, void *arg)
{
    survey_op *o = arg;
    sqlite3_stmt *st;
    if (o->asked) {
        st = store_tx_stmt(tx, "INSERT INTO surveys(conversation_id, asked_at) VALUES (?1, ?2)"
                               " ON CONFLICT(conversation_id) DO UPDATE SET asked_at = ?2,"
                               " answered_at = NULL");
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, o->conv);
        sqlite3_bind_double(st, 2, o->at);
    } else {
        st = store_tx_stmt(
            tx, "INSERT INTO surveys(conversation_id, solved, csat, nps, comment, asked_at,"
                " answered_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
                " ON CONFLICT(conversation_id) DO UPDATE SET solved = COALESCE(?2, solved),"
                " csat = COALESCE(?3, csat), nps = COALESCE(?4, nps),"
                " comment = COALESCE(?5, comment), answered_at = ?6");
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, o->conv);
        int vals[3] = {o->solved, o->csat, o->nps};
        for (int i = 0; i < 3; i++)
            if (vals[i] >= 0)
                sqlite3_bind_int(st, 2 + i, vals[i]);
        if (o->comment)
            sqlite3_bind_text(st, 5, o->comment, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, o->at);
    }
    return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

static void done_survey(void *arg, int rc)
{
    survey_op *o = arg;
    if (rc != 0)
        log_error("complaint", "survey of conversation %lld not stored", o->conv);
    free(o->comment);
    free(o);
}

static int json_int(const cJSON *o, const char *key, int lo, int hi)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? 1 : 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
        return -1;
    return (int)v->valuedouble;
}

/* The flow's "survey" field: {asked: true} when the follow-up question goes out, then the
 * answers {solved, csat 1-5, nps 0-10, comment} (any subset); "satisfaction" = a csat alone. */
static void survey(complaint_mgr_t *cm, long long conv, const cJSON *v, int csat_only)
{
    survey_op *o = calloc(1, sizeof(*o));
    if (!o)
        return;
    o->conv = conv;
    o->at = now_s(cm);
    if (csat_only) {
        o->solved = o->nps = -1;
        o->csat =
            cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 5 ? v->valueint : -1;
    } else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "asked"))) {
        o->asked = 1;
    } else {
        o->solved = json_int(v, "solved", 0, 1);
        o->csat = json_int(v, "csat", 1, 5);
        o->nps = json_int(v, "nps", 0, 10);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "comment");
        if (cJSON_IsString(c) && *c->valuestring)
            o->comment = strdup(c->valuestring);
    }
    if (!o->asked && o->solved < 0 && o->csat < 0 && o->nps < 0 && !o->comment) {
        free(o);
        return;
    }
    if (store_submit(cm->store, work_survey, done_survey, o) != 0) {
        free(o->comment);
        free(o);
        log_error("complaint", "survey of conversation %lld not queued", conv);
    }
}

/* ---- records ---- */

static void push(complaint_mgr_t *cm, record *r, session_t *s)
{
    if (!s)
        return;
    char code[COMPLAINT_CODE_LEN + 1];
    complaint_status_code(session_token(s), code);
    char *detail = agent_proto_record_detail(r->number, r->status, next_due(r), NULL, code);
    if (!detail || session_status(s, "record", detail) != 0)
        log_error("complaint", "%s: record status not queued", r->number);
    free(detail);
}

static void set_deadlines(complaint_mgr_t *cm, record *r, double now)
{
    sla_times_t t = complaint_sla_times(&cm->sla, r->category, r->severity);
    r->from[D_ACK] = r->from[D_ANSWER] = r->from[D_RESOLVE] = now;
    r->due[D_ACK] = t.ack_min > 0 ? complaint_sla_add(&cm->sla, now, t.ack_min) : 0;
    r->due[D_ANSWER] = t.answer_h > 0 ? complaint_sla_add(&cm->sla, now, t.answer_h * 60.0) : 0;
    r->due[D_RESOLVE] = t.resolve_h > 0 ? complaint_sla_add(&cm->sla, now, t.resolve_h * 60.0) : 0;
}

static record *create(complaint_mgr_t *cm, session_t *s, const char *actor)
{
    long long conv = session_id(s);
    double now = now_s(cm);
    record *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->conv = conv;
    snprintf(r->name, sizeof(r->name), "c-%012lld", conv);
    agent_record_number(conv, now, r->number, sizeof(r->number));
    snprintf(r->status, sizeof(r->status), "received");
    snprintf(r->channel, sizeof(r->channel), "%s", session_channel(s));
    r->created_at = r->updated_at = now;
    timeq_item_init(&r->tq);
    set_deadlines(cm, r, now);
    if (map_put(cm->by_conv, r->name, r) != 0) {
        free(r);
        return NULL;
    }
    r->next = cm->all;
    if (cm->all)
        cm->all->prev = r;
    cm->all = r;
    sched(cm, r);
    save(cm, r);
    save_event(cm, r, NULL, "received", actor, NULL);
    notify(cm, r, "complaint.created");
    log_info("complaint", "%s created for %s", r->number, r->name);
    return r;
}

static void drop(complaint_mgr_t *cm, record *r)
{
    timeq_remove(&cm->timers, &r->tq);
    map_del(cm->by_conv, r->name);
    if (r->prev)
        r->prev->next = r->next;
    else
        cm->all = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r);
}

/* Moves r to status.  0 moved, 1 refused.  r may be freed (closed). */
static int transition(complaint_mgr_t *cm, record *r, session_t *s, const char *status,
                      const char *actor, const char *note)
{
    double now = now_s(cm);
    char from[20];
    if (!allowed(r->status, status))
        return 1;
    snprintf(from, sizeof(from), "%s", r->status);
    snprintf(r->status, sizeof(r->status), "%s", status);
    r->updated_at = now;
    int k = rank(status);
    if (k == RANK_REOPENED) {
        sla_times_t t = complaint_sla_times(&cm->sla, r->category, r->severity);
        r->reopened = 1;
        r->resolved_at = 0;
        r->met[D_RESOLVE] = 0;
        r->from[D_RESOLVE] = now;
        r->due[D_RESOLVE] =
            t.resolve_h > 0 ? complaint_sla_add(&cm->sla, now, t.resolve_h * 60.0) : 0;
        r->breached &= ~(1u << D_RESOLVE);
        r->warned &= ~(1u << D_RESOLVE);
    } else {
        if (k >= rank("acknowledged") && !r->met[D_ACK])
            r->met[D_ACK] = now;
        if (k >= rank("solution_offered") && !r->met[D_ANSWER])
            r->met[D_ANSWER] = now;
        if (k >= rank("resolved") && !r->met[D_RESOLVE]) {
            r->met[D_RESOLVE] = now;
            r->resolved_at = now;
        }
        if (k == rank("closed"))
            r->closed_at = now;
    }
    sched(cm, r);
    save(cm, r);
    save_event(cm, r, from, status, actor, note);
    push(cm, r, s);
    if (k == rank("resolved"))
        notify(cm, r, "complaint.resolved");
    log_info("complaint", "%s: %s -> %s (%s)", r->number, from, status, actor ? actor : "system");
    if (k == rank("closed"))
        drop(cm, r);
    return 0;
}

int complaint_set_status(complaint_mgr_t *cm, session_t *s, const char *status, const char *actor,
                         const char *note)
{
    if (!cm || !s)
        return -1;
    if (rank(status) < 0)
        return 1;
    record *r = find(cm, session_id(s));
    if (!r) {
        if (!(r = create(cm, s, actor)))
            return -1;
        if (strcmp(status, "received") == 0) {
            push(cm, r, s);
            return 0;
        }
    }
    return transition(cm, r, s, status, actor, note);
}

/* ---- from the flow ---- */

void complaint_flow_record(complaint_mgr_t *cm, session_t *s, const char *field,
                           const char *value_json)
{
    if (!cm)
        return;
    cJSON *v = cJSON_Parse(value_json);
    record *r = find(cm, session_id(s));

    if (strcmp(field, "status") == 0 && cJSON_IsString(v)) {
        const char *st = v->valuestring;
        if (strcmp(st, "escalated") == 0) {
            /* the hand-off itself is reported by agent.c (complaint_escalated) */
        } else if (strcmp(st, "out_of_scope") == 0) {
            if (r)
                transition(cm, r, s, "closed", "bot", "not a complaint");
        } else if (rank(st) >= 0) {
            complaint_set_status(cm, s, st, "bot", NULL);
        } else {
            log_warn("complaint", "%s: the flow recorded an unknown status \"%.40s\"",
                     session_name(s), st);
        }
        goto out;
    }
    if (!r && (strcmp(field, "category") == 0 || strcmp(field, "severity") == 0 ||
               strcmp(field, "description") == 0 || strcmp(field, "customer") == 0)) {
        if (!(r = create(cm, s, "bot")))
            goto out;
        push(cm, r, s);
    }
    if (!r)
        goto out;
    if (strcmp(field, "category") == 0) {
        const cJSON *slug = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "slug") : v;
        if (cJSON_IsString(slug) && strcmp(slug->valuestring, r->category) != 0) {
            agent_utf8_copy(r->category, sizeof(r->category), slug->valuestring);
            if (!r->met[D_ANSWER] && !r->reopened)
                set_deadlines(cm, r, r->created_at); /* the policy depends on the category */
            save(cm, r);
        }
    } else if (strcmp(field, "severity") == 0 && cJSON_IsNumber(v)) {
        int sev = v->valueint < 1 ? 1 : v->valueint > 3 ? 3 : v->valueint;
        if (sev != r->severity) {
            r->severity = sev;
            if (!r->met[D_ANSWER] && !r->reopened)
                set_deadlines(cm, r, r->created_at);
            save(cm, r);
        }
    } else if (strcmp(field, "summary") == 0) {
        transition(cm, r, s, "acknowledged", "bot", NULL);
    } else if (strcmp(field, "kb") == 0) {
        transition(cm, r, s, "investigating", "bot", NULL);
    } else if (strcmp(field, "survey") == 0 && cJSON_IsObject(v)) {
        survey(cm, r->conv, v, 0);
    } else if (strcmp(field, "satisfaction") == 0) {
        survey(cm, r->conv, v, 1);
    } else if (strcmp(field, "solution") == 0) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "title");
        transition(cm, r, s, "solution_offered", "bot", cJSON_IsString(t) ? t->valuestring : NULL);
    }
out:
    cJSON_Delete(v);
}

/* ---- from agents ---- */

void complaint_escalated(complaint_mgr_t *cm, session_t *s, const char *reason)
{
    if (!cm)
        return;
    record *r = find(cm, session_id(s));
    if (!r) {
        if (!(r = create(cm, s, "bot")))
            return;
        push(cm, r, s);
    }
    r->escalated = 1;
    r->updated_at = now_s(cm);
    save(cm, r);
    save_event(cm, r, r->status, r->status, "bot", reason);
    notify(cm, r, "complaint.escalated");
}

void complaint_answered(complaint_mgr_t *cm, long long conversation)
{
    record *r = cm ? find(cm, conversation) : NULL;
    if (!r || r->met[D_ANSWER])
        return;
    r->met[D_ANSWER] = r->updated_at = now_s(cm);
    sched(cm, r);
    save(cm, r);
}

void complaint_owner(complaint_mgr_t *cm, long long conversation, const char *owner)
{
    record *r = cm ? find(cm, conversation) : NULL;
    if (!r || strcmp(r->owner, owner) == 0)
        return;
    snprintf(r->owner, sizeof(r->owner), "%s", owner);
    r->updated_at = now_s(cm);
    save(cm, r);
}

void complaint_number(complaint_mgr_t *cm, session_t *s, char *out, size_t outlen)
{
    record *r = cm ? find(cm, session_id(s)) : NULL;
    snprintf(out, outlen, "%s", r ? r->number : "");
}

void complaint_callback(complaint_mgr_t *cm, session_t *s, double due, const char *reason)
{
    record *r = cm ? find(cm, session_id(s)) : NULL;
    if (!r)
        return;
    r->callback_due = due;
    r->updated_at = now_s(cm);
    save(cm, r);
    save_event(cm, r, r->status, r->status, "system", reason);
}

const char *complaint_sla_flag(complaint_mgr_t *cm, long long conversation)
{
    record *r = cm ? find(cm, conversation) : NULL;
    if (!r)
        return NULL;
    return r->breached ? "breached" : r->warned ? "warning" : NULL;
}

/* ---- timers ---- */

static void breach(complaint_mgr_t *cm, record *r, int d)
{
    char note[64];
    r->breached |= 1u << d;
    r->updated_at = now_s(cm);
    snprintf(note, sizeof(note), "%s deadline missed", dname[d]);
    save(cm, r);
    save_event(cm, r, r->status, r->status, "system", note);
    notify(cm, r, "sla.breached");
    log_warn("complaint", "%s: %s", r->number, note);
    session_t *s = session_mgr_load(cm->sessions, r->conv);
    if (s && cm->srv->agents && !agent_has_handoff(cm->srv->agents, r->conv)) {
        char *summary = record_json(r);
        if (summary && session_escalate(s, "sla_breach", 3, summary) == 0)
            r->escalated = 1;
        free(summary);
    }
}

void complaint_mgr_tick(complaint_mgr_t *cm)
{
    uint64_t t = util_now_ms();
    if (!cm || t - cm->checked_ms < 1000)
        return;
    cm->checked_ms = t;
    double now = now_s(cm);
    timeq_item *first;
    while ((first = timeq_first(&cm->timers)) && first->due <= now) {
        record *r = TIMEQ_OWNER(first, record, tq);
        for (int d = 0; d < D_N; d++) {
            if (!pending(r, d))
                continue;
            if (now >= r->due[d]) {
                breach(cm, r, d);
            } else if (!(r->warned & (1u << d)) && now >= warn_at(cm, r, d)) {
                char note[64];
                r->warned |= 1u << d;
                r->updated_at = now;
                snprintf(note, sizeof(note), "%s deadline near", dname[d]);
                save(cm, r);
                save_event(cm, r, r->status, r->status, "system", note);
            }
        }
        if (close_at(cm, r) > 0 && now >= close_at(cm, r) &&
            transition(cm, r, NULL, "closed", "system", "closed after resolution") == 0)
            continue; /* closed: r is freed */
        sched(cm, r);
        if (r->tq.idx >= 0 && r->tq.due <= now) /* a close refused: try again next second */
            timeq_set(&cm->timers, &r->tq, now + 1);
    }
}

/* ---- life ---- */

static double col_time(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? 0 : sqlite3_column_double(st, i);
}

static void col_text(sqlite3_stmt *st, int i, char *out, size_t n)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    snprintf(out, n, "%s", v ? (const char *)v : "");
}

static int load(complaint_mgr_t *cm)
{
    sqlite3_stmt *st = NULL;
    sqlite3 *db = store_reader(cm->store);
    int rc = sqlite3_prepare_v2(
        db,
        "SELECT conversation_id, number, category, severity, status, owner, created_at,"
        " updated_at, channel, ack_due, answer_due, resolve_due, acked_at, answered_at,"
        " resolved_at, resolve_from, callback_due, breached, warned, escalated, reopened"
        " FROM complaints WHERE status <> 'closed'",
        -1, &st, NULL);
    if (rc != SQLITE_OK) {
        log_error("complaint", "load: %s", sqlite3_errmsg(db));
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        record *r = calloc(1, sizeof(*r));
        if (!r)
            break;
        timeq_item_init(&r->tq);
        r->conv = sqlite3_column_int64(st, 0);
        snprintf(r->name, sizeof(r->name), "c-%012lld", r->conv);
        col_text(st, 1, r->number, sizeof(r->number));
        col_text(st, 2, r->category, sizeof(r->category));
        r->severity = sqlite3_column_int(st, 3);
        col_text(st, 4, r->status, sizeof(r->status));
        col_text(st, 5, r->owner, sizeof(r->owner));
        r->created_at = col_time(st, 6);
        r->updated_at = col_time(st, 7);
        col_text(st, 8, r->channel, sizeof(r->channel));
        for (int d = 0; d < D_N; d++) {
            r->due[d] = col_time(st, 9 + d);
            r->met[d] = col_time(st, 12 + d);
            r->from[d] = r->created_at;
        }
        r->resolved_at = r->met[D_RESOLVE];
        if (col_time(st, 15) > 0)
            r->from[D_RESOLVE] = col_time(st, 15);
        r->callback_due = col_time(st, 16);
        r->breached = (unsigned)sqlite3_column_int(st, 17);
        r->warned = (unsigned)sqlite3_column_int(st, 18);
        r->escalated = sqlite3_column_int(st, 19);
        r->reopened = sqlite3_column_int(st, 20);
        if (rank(r->status) < 0 || map_put(cm->by_conv, r->name, r) != 0) {
            free(r);
            continue;
        }
        r->next = cm->all;
        if (cm->all)
            cm->all->prev = r;
        cm->all = r;
        sched(cm, r);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        log_error("complaint", "load: %s", sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

static int sla_path(complaint_mgr_t *cm, char *out, size_t n)
{
    return snprintf(out, n, "%s/sla.json", cm->srv->cfg->rules_dir) < (int)n ? 0 : -1;
}

int complaint_mgr_reload(complaint_mgr_t *cm, char *err, size_t errlen)
{
    char path[4200];
    sla_policy_t p;
    if (sla_path(cm, path, sizeof(path)) != 0) {
        snprintf(err, errlen, "rules.dir is too long");
        return -1;
    }
    if (complaint_sla_load(path, &p, err, errlen) != 0)
        return -1;
    cm->sla = p;
    for (record *r = cm->all; r; r = r->next) /* near_breach and close_after_h move wakes */
        sched(cm, r);
    return 0;
}

complaint_mgr_t *complaint_mgr_new(server_t *srv)
{
    char err[512];
    complaint_mgr_t *cm = calloc(1, sizeof(*cm));
    if (!cm)
        return NULL;
    cm->srv = srv;
    cm->store = srv->store;
    cm->sessions = srv->sessions;
    if (complaint_mgr_reload(cm, err, sizeof(err)) != 0) {
        log_error("complaint", "%s", err);
        goto fail;
    }
    sqlite3 *db = store_reader(srv->store);
    if (!(cm->by_conv = map_new()) ||
        sqlite3_prepare_v2(db,
                           "SELECT c.conversation_id, c.status, c.category, c.created_at, c.due,"
                           " v.token FROM complaints c JOIN conversations v"
                           " ON v.id = c.conversation_id WHERE c.number = ?",
                           -1, &cm->r_progress, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT to_status, at FROM complaint_events WHERE conversation_id = ?"
                           " AND (from_status IS NULL OR from_status <> to_status) ORDER BY id",
                           -1, &cm->r_history, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT c.number, c.conversation_id, c.category, c.status, c.owner,"
                           " v.customer_name, s.asked_at FROM surveys s"
                           " JOIN complaints c ON c.conversation_id = s.conversation_id"
                           " JOIN conversations v ON v.id = s.conversation_id"
                           " WHERE s.answered_at IS NULL AND s.asked_at IS NOT NULL"
                           " ORDER BY s.asked_at LIMIT 500",
                           -1, &cm->r_followups, NULL) != SQLITE_OK) {
        log_error("complaint", "cannot prepare reads: %s", sqlite3_errmsg(db));
        goto fail;
    }
    if (load(cm) != 0)
        goto fail;
    if (map_count(cm->by_conv))
        log_notice("complaint", "%zu open complaint records loaded", map_count(cm->by_conv));
    return cm;
fail:
    complaint_mgr_free(cm);
    return NULL;
}

int complaint_followup_pending_h(const complaint_mgr_t *cm)
{
    if (cm)
        return cm->sla.followup_pending_h;
    sla_policy_t p;
    complaint_sla_defaults(&p);
    return p.followup_pending_h;
}

void complaint_mgr_set_sla(complaint_mgr_t *cm, const sla_policy_t *p)
{
    cm->sla = *p;
}

void complaint_set_notify(complaint_mgr_t *cm, complaint_notify_fn fn, void *arg)
{
    cm->notify = fn;
    cm->notify_arg = arg;
}

void complaint_mgr_close_store(complaint_mgr_t *cm)
{
    if (!cm)
        return;
    sqlite3_finalize(cm->r_progress);
    sqlite3_finalize(cm->r_history);
    sqlite3_finalize(cm->r_followups);
    cm->r_progress = cm->r_history = cm->r_followups = NULL;
}

void complaint_mgr_free(complaint_mgr_t *cm)
{
    if (!cm)
        return;
    complaint_mgr_close_store(cm);
    while (cm->all) {
        record *r = cm->all;
        cm->all = r->next;
        free(r);
    }
    timeq_free(&cm->timers);
    map_free(cm->by_conv);
    free(cm);
}

/* ---- the progress page ---- */

void complaint_status_code(const char *token, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)"redress status ", 15);
    crypto_hash_sha256_update(&st, (const unsigned char *)token, strlen(token));
    crypto_hash_sha256_final(&st, h);
    for (int i = 0; i < COMPLAINT_CODE_LEN / 2; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[COMPLAINT_CODE_LEN] = '\0';
}

char *complaint_progress(complaint_mgr_t *cm, const char *number, const char *token, int *found)
{
    sqlite3_stmt *st = cm ? cm->r_progress : NULL;
    char *out = NULL;
    *found = -1;
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, number, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        *found = 0;
    } else if (rc == SQLITE_ROW) {
        const char *tok = (const char *)sqlite3_column_text(st, 5);
        char code[COMPLAINT_CODE_LEN + 1];
        if (tok)
            complaint_status_code(tok, code);
        if (!tok || strlen(token) != COMPLAINT_CODE_LEN ||
            sodium_memcmp(code, token, COMPLAINT_CODE_LEN) != 0) {
            *found = 0;
        } else {
            long long conv = sqlite3_column_int64(st, 0);
            char status[20];
            col_text(st, 1, status, sizeof(status));
            record *r = find(cm, conv);
            cJSON *o = cJSON_CreateObject(), *h = cJSON_CreateArray();
            cJSON_AddStringToObject(o, "number", number);
            cJSON_AddStringToObject(o, "status", r ? r->status : status);
            cJSON_AddStringToObject(o, "status_text",
                                    complaint_status_text(r ? r->status : status));
            cJSON_AddStringToObject(o, "category",
                                    (const char *)sqlite3_column_text(st, 2)
                                        ? (const char *)sqlite3_column_text(st, 2)
                                        : "");
            agent_json_time(o, "created_at", col_time(st, 3));
            agent_json_time(o, "next_due",
                            r ? (r->callback_due > 0 ? r->callback_due : next_due(r))
                              : col_time(st, 4));
            sqlite3_bind_int64(cm->r_history, 1, conv);
            while (sqlite3_step(cm->r_history) == SQLITE_ROW) {
                cJSON *e = cJSON_CreateObject();
                char to[20];
                col_text(cm->r_history, 0, to, sizeof(to));
                cJSON_AddStringToObject(e, "status", to);
                cJSON_AddStringToObject(e, "status_text", complaint_status_text(to));
                agent_json_time(e, "at", col_time(cm->r_history, 1));
                cJSON_AddItemToArray(h, e);
            }
            sqlite3_reset(cm->r_history);
            sqlite3_clear_bindings(cm->r_history);
            cJSON_AddItemToObject(o, "history", h);
            out = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            *found = out ? 1 : -1;
        }
    } else {
        log_error("complaint", "progress: %s", sqlite3_errmsg(store_reader(cm->store)));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return out;
}

char *complaint_brief(complaint_mgr_t *cm, long long conversation)
{
    record *r = cm ? find(cm, conversation) : NULL;
    if (!r)
        return NULL;
    double due = r->callback_due > 0 ? r->callback_due : next_due(r);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "number", r->number);
    cJSON_AddStringToObject(o, "status", r->status);
    cJSON_AddStringToObject(o, "status_text", complaint_status_text(r->status));
    if (due > 0)
        cJSON_AddNumberToObject(o, "next_due", due);
    else
        cJSON_AddNullToObject(o, "next_due");
    cJSON_AddNumberToObject(o, "created_at", r->created_at);
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

char *complaint_followups(complaint_mgr_t *cm)
{
    sqlite3_stmt *st = cm ? cm->r_followups : NULL;
    if (!st)
        return NULL;
    double now = now_s(cm), pending = cm->sla.followup_pending_h * 3600.0;
    cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray();
    int rc, overdue = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *e = cJSON_CreateObject();
        char name[24], buf[256];
        double asked = col_time(st, 6);
        col_text(st, 0, buf, sizeof(buf));
        cJSON_AddStringToObject(e, "number", buf);
        snprintf(name, sizeof(name), "c-%012lld", (long long)sqlite3_column_int64(st, 1));
        cJSON_AddStringToObject(e, "conversation", name);
        col_text(st, 2, buf, sizeof(buf));
        cJSON_AddStringToObject(e, "category", buf);
        col_text(st, 3, buf, sizeof(buf));
        cJSON_AddStringToObject(e, "status", buf);
        col_text(st, 4, buf, sizeof(buf));
        cJSON_AddStringToObject(e, "owner", buf);
        col_text(st, 5, buf, sizeof(buf));
        cJSON_AddStringToObject(e, "customer_name", buf);
        agent_json_time(e, "asked_at", asked);
        cJSON_AddNumberToObject(e, "waited_h", floor((now - asked) / 360.0) / 10.0);
        cJSON_AddBoolToObject(e, "overdue", now - asked >= pending);
        overdue += now - asked >= pending;
        cJSON_AddItemToArray(a, e);
    }
    sqlite3_reset(st);
    cJSON_AddItemToObject(o, "items", a);
    cJSON_AddNumberToObject(o, "overdue", overdue);
    cJSON_AddNumberToObject(o, "pending_after_h", cm->sla.followup_pending_h);
    char *out = rc == SQLITE_DONE ? cJSON_PrintUnformatted(o) : NULL;
    if (rc != SQLITE_DONE)
        log_error("complaint", "follow-ups: %s", sqlite3_errmsg(store_reader(cm->store)));
    cJSON_Delete(o);
    return out;
}
