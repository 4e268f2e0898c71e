/*
 * agent.c - the escalation queue and the hand-off of chats to human agents.
 *
 * Ownership
 *   agent_mgr_t owns every open hand-off (struct handoff: a list plus a map by conversation
 *   name) and every agent socket's state (agent_sock_t, a list).  A hand-off borrows its
 *   session (h->s): a session with an open hand-off is pinned in memory (session_set_handoff)
 *   so the pointer stays valid until the hand-off ends; after a restart h->s is NULL until the
 *   conversation is loaded (agent_session_loaded or session_mgr_load).  An agent socket borrows
 *   its ws_conn until agent_ws_closed().  Store operations never point at a hand-off or a
 *   socket: they carry the conversation id and the socket's serial number and look them up
 *   when they complete (either may be gone by then).
 *
 * States of a hand-off (docs/protocol.md, "Hand-off states")
 *
 *   agent_escalate() --agents online, in hours--> QUEUED
 *   agent_escalate() --no agent / after hours--> CALLBACK             (to_callback)
 *   QUEUED --waited agent.max_wait_s (agent_mgr_tick)--> CALLBACK    (to_callback)
 *   QUEUED | CALLBACK --claim--> ACTIVE                                (do_claim)
 *   ACTIVE --transfer to_agent--> ACTIVE (new owner)                   (do_transfer)
 *   ACTIVE --transfer to_group--> QUEUED (or CALLBACK when nobody serves the group)
 *   ACTIVE --resolve--> RESOLVED, freed; the flow resumes              (do_resolve, end_handoff)
 *   any open --handback--> HANDED_BACK, freed; the flow resumes        (do_handback, end_handoff)
 *
 * Every transition updates memory first (so two claims in the same loop turn cannot both win:
 * the loop is the only thread), then queues the row update; answers that carry data read back
 * from the store (the context packet) are sent from the update's done callback, after COMMIT,
 * so they include every event stored before the transition.
 *
 * The queue is pushed to agents and positions to customers from agent_mgr_tick() when it
 * changed (dirty), at most every agent.queue_push_ms.  Its order is kept as hand-offs change
 * (agent_queue.c): every change of a hand-off's state, priority or times ends with
 * queue_sync(), which moves its one entry.  Should memory run out there, the queue is emptied
 * and marked stale, and rebuilt from the list at its next use (queue_drop, queue_fresh).
 */
#include "agent.h"

#include "agent_proto.h"
#include "agent_queue.h"
#include "agent_store.h"
#include "complaint.h"
#include "kb.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "session.h"
#include "util.h"
#include "ws.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_ITEMS_MAX 200
#define SESSION_RECHECK_MS 30000
#define CALLBACK_ACK_MS 60000

typedef struct handoff {
    struct handoff *prev, *next;
    agent_handoff_row_t row; /* summary and resolution are NULL here */
    agent_summary_t sum;
    char name[24];
    session_t *s;            /* borrowed, see above; NULL until loaded */
    int sent_pos, sent_wait; /* the last queued status the customer got */
    uint64_t acked_ms;       /* callback: last automatic acknowledgement */
    char cb_reason[16];      /* callback: no_agent | after_hours | wait_timeout ("" unknown) */
    agent_qkey qk;           /* its key in am->queue, while inq */
    int inq;                 /* (meaningless while the queue is stale) */
} handoff;

struct agent_sock {
    struct agent_sock *prev, *next;
    agent_mgr_t *am;
    struct ws_conn *c;
    unsigned long long serial;
    auth_user_t user;
    int supervisor;
    int available;
    int all_groups, ngroups;
    char groups[AGENT_MAX_GROUPS][AGENT_GROUP_MAX + 1];
};

struct agent_mgr {
    server_t *srv;
    const config_t *cfg;
    store_t *store;
    agent_store_t *as;
    session_mgr_t *sessions;
    handoff *open;
    map_t *by_conv;
    agent_sock_t *socks;
    unsigned long long next_serial;
    long long next_id;
    double handle_avg; /* seconds per hand-off, running average */
    agent_queue queue; /* queued and call-back hand-offs in queue order (queue_sync) */
    int queue_stale;   /* queue is empty and must be rebuilt from `open` (queue_drop) */
    int dirty;
    uint64_t pushed_ms, checked_ms, rechecked_ms;
    int open_min, close_min; /* agent.hours, minutes of the local day */
};

/* ---- small helpers ---- */

static double now_s(agent_mgr_t *am)
{
    return session_mgr_now(am->sessions);
}

static int local_minute(agent_mgr_t *am, double t)
{
    long long local = (long long)floor(t) + (long long)am->cfg->agent_utc_offset_min * 60;
    long long day = local % 86400;
    if (day < 0)
        day += 86400;
    return (int)(day / 60);
}

static int in_hours(agent_mgr_t *am, double t)
{
    int m = local_minute(am, t);
    if (am->open_min <= am->close_min)
        return m >= am->open_min && m < am->close_min;
    return m >= am->open_min || m < am->close_min; /* e.g. 20:00-08:00 */
}

/* The next moment (>= t) inside working hours. */
static double next_open(agent_mgr_t *am, double t)
{
    if (in_hours(am, t))
        return t;
    int m = local_minute(am, t);
    int wait_min = am->open_min - m;
    if (wait_min <= 0)
        wait_min += 1440;
    double start_of_minute = floor(t / 60.0) * 60.0;
    return start_of_minute + wait_min * 60.0;
}

static int parse_hours(const char *s, int *open_min, int *close_min)
{
    int h1, m1, h2, m2;
    char tail;
    if (sscanf(s, "%d:%d-%d:%d%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 < 0 || h1 > 23 || m1 < 0 ||
        m1 > 59 || h2 < 0 || h2 > 24 || m2 < 0 || m2 > 59 || (h2 == 24 && m2 != 0))
        return -1;
    *open_min = h1 * 60 + m1;
    *close_min = h2 * 60 + m2;
    return *open_min == *close_min ? -1 : 0;
}

static void conv_name(long long id, char *out, size_t n)
{
    snprintf(out, n, "c-%012lld", id);
}

static handoff *find(agent_mgr_t *am, long long conversation)
{
    char name[24];
    conv_name(conversation, name, sizeof(name));
    return map_get(am->by_conv, name);
}

static void group_of(const agent_summary_t *sum, char *out)
{
    if (sum->group[0]) {
        snprintf(out, AGENT_GROUP_MAX + 1, "%s", sum->group);
        return;
    }
    char g[AGENT_GROUP_MAX + 1] = "";
    size_t n = strcspn(sum->category, ".");
    if (n > 0 && n <= AGENT_GROUP_MAX) {
        memcpy(g, sum->category, n);
        g[n] = '\0';
    }
    snprintf(out, AGENT_GROUP_MAX + 1, "%s", agent_group_valid(g) ? g : "general");
}

static int serves(const agent_sock_t *a, const char *group)
{
    if (a->all_groups)
        return 1;
    for (int i = 0; i < a->ngroups; i++)
        if (strcmp(a->groups[i], group) == 0)
            return 1;
    return 0;
}

/* Distinct accounts with an available socket serving group. */
static int agents_for(agent_mgr_t *am, const char *group)
{
    int n = 0;
    for (agent_sock_t *a = am->socks; a; a = a->next) {
        if (!a->available || !serves(a, group))
            continue;
        agent_sock_t *b;
        for (b = am->socks; b != a; b = b->next)
            if (b->available && serves(b, group) && b->user.id == a->user.id)
                break;
        if (b == a)
            n++;
    }
    return n;
}

static agent_sock_t *sock_by_serial(agent_mgr_t *am, unsigned long long serial)
{
    for (agent_sock_t *a = am->socks; a; a = a->next)
        if (a->serial == serial)
            return a;
    return NULL;
}

/* An available socket of this username (the display name source for transfers). */
static agent_sock_t *sock_of_user(agent_mgr_t *am, const char *username, int need_available)
{
    for (agent_sock_t *a = am->socks; a; a = a->next)
        if (strcmp(a->user.username, username) == 0 && (!need_available || a->available))
            return a;
    return NULL;
}

static void send_to(agent_sock_t *a, char *json)
{
    if (!json) {
        log_error("agent", "out of memory encoding a frame");
        return;
    }
    ws_conn_send(a->c, json);
}

/* Sends a copy of json to every socket of username; frees json. */
static void send_user(agent_mgr_t *am, const char *username, char *json)
{
    if (!json)
        return;
    for (agent_sock_t *a = am->socks; a; a = a->next)
        if (strcmp(a->user.username, username) == 0) {
            char *copy = strdup(json);
            if (copy)
                ws_conn_send(a->c, copy);
        }
    free(json);
}

static void send_error(agent_sock_t *a, const char *id, const char *code, const char *message)
{
    send_to(a, agent_proto_error(id, code, message));
}

static session_t *session_of(agent_mgr_t *am, handoff *h)
{
    if (!h->s) {
        h->s = session_mgr_load(am->sessions, h->row.conversation);
        if (h->s)
            session_set_handoff(h->s, 1);
    }
    return h->s;
}

static void format_local(agent_mgr_t *am, double t, char *out, size_t n)
{
    time_t local = (time_t)floor(t) + (time_t)am->cfg->agent_utc_offset_min * 60;
    struct tm tm;
    gmtime_r(&local, &tm);
    snprintf(out, n, "%d月%d日 %02d:%02d", tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
}

static void save_row(agent_mgr_t *am, handoff *h, const char *resolution, store_done_fn done,
                     void *arg)
{
    agent_handoff_row_t r = h->row;
    r.summary = NULL;
    r.resolution = resolution;
    if (agent_store_update(am->store, &r, done, arg) != 0) {
        log_error("agent", "%s: hand-off update not queued", h->name);
        if (done)
            done(arg, -1);
    }
}

/* ---- operations that answer after COMMIT ---- */

typedef enum { OP_CLAIM, OP_CONTEXT, OP_ASSIGNED, OP_NOTE, OP_CASE } op_kind;

typedef struct op {
    agent_mgr_t *am;
    op_kind kind;
    unsigned long long serial; /* the socket that asked (0: none) */
    char id[65];
    long long conversation;
    char from[65]; /* OP_ASSIGNED: previous owner; OP_NOTE: author */
    char to[65];   /* OP_ASSIGNED: the new owner */
    char *text;    /* OP_NOTE */
    double ts;
} op;

static op *op_new(agent_mgr_t *am, op_kind kind, agent_sock_t *a, const char *id,
                  long long conversation)
{
    op *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->am = am;
    o->kind = kind;
    o->serial = a ? a->serial : 0;
    snprintf(o->id, sizeof(o->id), "%s", id ? id : "");
    o->conversation = conversation;
    return o;
}

/* The context packet with the live hand-off values, or NULL. */
static char *context_of(agent_mgr_t *am, long long conversation)
{
    if (!am->as)
        return NULL;
    char *ctx = agent_store_context(am->as, conversation);
    handoff *h = find(am, conversation);
    if (!ctx || !h)
        return ctx;
    char *patched =
        agent_proto_patch_context(ctx, agent_hstate_name(h->row.state), h->row.agent,
                                  h->row.queued_at, h->row.claimed_at, h->row.transfers);
    free(ctx);
    return patched;
}

static void op_done(void *arg, int rc)
{
    op *o = arg;
    agent_mgr_t *am = o->am;
    agent_sock_t *a = o->serial ? sock_by_serial(am, o->serial) : NULL;
    char name[24];
    conv_name(o->conversation, name, sizeof(name));

    switch (o->kind) {
    case OP_CLAIM:
    case OP_CONTEXT:
        if (a) {
            char *ctx = rc < 0 ? NULL : context_of(am, o->conversation);
            if (ctx)
                send_to(a, agent_proto_ok(o->id, "context", ctx));
            else
                send_error(a, o->id, "internal", "the context could not be read; ask again");
            free(ctx);
        }
        break;
    case OP_ASSIGNED: {
        char *ctx = context_of(am, o->conversation);
        send_user(am, o->to,
                  agent_proto_frame("assigned", name, "context", ctx, "from",
                                    o->from[0] ? o->from : NULL));
        free(ctx);
        break;
    }
    case OP_NOTE:
        if (rc < 0) {
            if (a)
                send_error(a, o->id, "internal", "the note was not stored; send it again");
            break;
        } else {
            char iso[40], *note;
            agent_iso(o->ts, iso, sizeof(iso));
            note = agent_proto_note(o->from, o->text, iso);
            if (a)
                send_to(a, agent_proto_ok(o->id, "note", note));
            handoff *h = find(am, o->conversation);
            if (h && h->row.agent[0])
                send_user(am, h->row.agent,
                          agent_proto_frame("note", name, "note", note, NULL, NULL));
            free(note);
        }
        break;
    case OP_CASE:
        if (a) {
            char num[32];
            snprintf(num, sizeof(num), "%d", rc);
            send_to(a, agent_proto_ok(o->id, "case", rc > 0 ? num : "null"));
        }
        if (rc <= 0)
            log_warn("agent", "%s: past case not saved", name);
        break;
    }
    free(o->text);
    free(o);
}

/* ---- the queue's order ---- */

static agent_qkey key_of(const handoff *h)
{
    int cb = h->row.state == AGENT_CALLBACK;
    return (agent_qkey){cb, h->row.priority, cb ? h->row.due : h->row.queued_at, h->row.id};
}

static int waiting(const handoff *h)
{
    return h->row.state == AGENT_QUEUED || h->row.state == AGENT_CALLBACK;
}

/* The queue is rebuilt from the list at its next use (queue_fresh); until then it is empty and
 * the hand-offs' inq mean nothing. */
static void queue_drop(agent_mgr_t *am)
{
    am->queue_stale = 1;
    agent_queue_clear(&am->queue);
}

/* Puts h at its place in the queue after a change of its state, priority or times, or takes it
 * out (it no longer waits, or is about to be freed: gone = 1). */
static void queue_sync(agent_mgr_t *am, handoff *h, int gone)
{
    if (am->queue_stale)
        return;
    if (h->inq && agent_queue_remove(&am->queue, &h->qk) != 0) {
        log_error("agent", "%s: not found at its place in the queue; rebuilding it", h->name);
        queue_drop(am);
        return;
    }
    h->inq = 0;
    if (gone || !waiting(h))
        return;
    h->qk = key_of(h);
    if (agent_queue_insert(&am->queue, &h->qk, h) == 0)
        h->inq = 1;
    else
        queue_drop(am);
}

/* Rebuilds the queue when it is stale.  0, or -1 when out of memory (still stale). */
static int queue_fresh(agent_mgr_t *am)
{
    if (!am->queue_stale)
        return 0;
    for (handoff *h = am->open; h; h = h->next) {
        h->inq = 0;
        if (!waiting(h))
            continue;
        h->qk = key_of(h);
        if (agent_queue_append(&am->queue, &h->qk, h) != 0) {
            agent_queue_clear(&am->queue);
            return -1;
        }
        h->inq = 1;
    }
    agent_queue_sort(&am->queue);
    am->queue_stale = 0;
    return 0;
}

/* A copy of the queue for a push or a welcome (what they call may change the queue); *n set.
 * NULL when it is empty or out of memory (*n = -1). */
static agent_qent *queue_copy(agent_mgr_t *am, int *n)
{
    *n = 0;
    if (queue_fresh(am) != 0) {
        *n = -1;
        return NULL;
    }
    if (am->queue.n == 0)
        return NULL;
    agent_qent *v = malloc(sizeof(*v) * (size_t)am->queue.n);
    if (!v) {
        *n = -1;
        return NULL;
    }
    memcpy(v, am->queue.v, sizeof(*v) * (size_t)am->queue.n);
    *n = am->queue.n;
    return v;
}

/* ---- transitions ---- */

static void end_handoff(agent_mgr_t *am, handoff *h, const char *why)
{
    if (h->row.agent[0])
        send_user(am, h->row.agent,
                  agent_proto_frame("released", h->name, NULL, NULL, "reason", why));
    if (h->s)
        session_set_handoff(h->s, 0);
    map_del(am->by_conv, h->name);
    queue_sync(am, h, 1);
    if (h->prev)
        h->prev->next = h->next;
    else
        am->open = h->next;
    if (h->next)
        h->next->prev = h->prev;
    free(h);
    metrics.handoffs--;
    am->dirty = 1;
}

static void to_callback(agent_mgr_t *am, handoff *h, const char *why)
{
    double now = now_s(am);
    double base = in_hours(am, now) ? now : next_open(am, now);
    char when[48], text[768], hours[24];
    session_t *s = session_of(am, h);

    h->row.state = AGENT_CALLBACK;
    h->row.due = base + am->cfg->agent_callback_s;
    queue_sync(am, h, 0);
    snprintf(h->cb_reason, sizeof(h->cb_reason), "%s", why);
    save_row(am, h, NULL, NULL, NULL);
    if (s)
        complaint_callback(am->srv->complaints, s, h->row.due, why);
    am->dirty = 1;
    log_info("agent", "%s: call-back by %.0f (%s)", h->name, h->row.due, why);
    if (!s)
        return;
    char code[COMPLAINT_CODE_LEN + 1];
    complaint_status_code(session_token(s), code);
    char *detail = agent_proto_record_detail(h->row.record, "callback", h->row.due, why, code);
    if (!detail || session_status(s, "record", detail) != 0)
        log_error("agent", "%s: call-back record status not queued", h->name);
    free(detail);
    format_local(am, h->row.due, when, sizeof(when));
    snprintf(hours, sizeof(hours), "%s", am->cfg->agent_hours);
    if (strcmp(why, "after_hours") == 0)
        snprintf(text, sizeof(text),
                 "现在是非工作时间（人工客服服务时间 %s）。我们已为您登记投诉单 %s，"
                 "客服专员将在 %s 前主动联系您。您可以继续留言补充情况，专员联系您时会一并处理。",
                 hours, h->row.record, when);
    else if (strcmp(why, "wait_timeout") == 0)
        snprintf(text, sizeof(text),
                 "非常抱歉让您久等了，目前咨询的客户较多。我们已为您登记投诉单 %s，"
                 "客服专员将在 %s 前主动联系您。您可以继续留言补充情况，专员联系您时会一并处理。",
                 h->row.record, when);
    else
        snprintf(text, sizeof(text),
                 "非常抱歉，目前人工客服暂时无法接入。我们已为您登记投诉单 %s，"
                 "客服专员将在 %s 前主动联系您。您可以继续留言补充情况，专员联系您时会一并处理。",
                 h->row.record, when);
    if (session_say(s, "bot", text, NULL, 0) != 0)
        log_error("agent", "%s: call-back message not queued", h->name);
}

int agent_escalate(agent_mgr_t *am, session_t *s, const char *reason, int priority,
                   const char *summary_json)
{
    long long id = session_id(s);
    double now = now_s(am);
    if (find(am, id))
        return 0; /* already with the agents */
    handoff *h = calloc(1, sizeof(*h));
    if (!h)
        return -1;
    conv_name(id, h->name, sizeof(h->name));
    agent_proto_summary(summary_json, &h->sum);
    if (!h->sum.cust_name[0])
        agent_utf8_copy(h->sum.cust_name, sizeof(h->sum.cust_name), session_customer_name(s));
    if (!h->sum.cust_id[0])
        agent_utf8_copy(h->sum.cust_id, sizeof(h->sum.cust_id), session_customer_id(s));
    h->row.id = ++am->next_id;
    h->row.conversation = id;
    h->row.state = AGENT_QUEUED;
    snprintf(h->row.reason, sizeof(h->row.reason), "%s", reason);
    h->row.priority = priority < 1 ? 1 : priority > 3 ? 3 : priority;
    group_of(&h->sum, h->row.group);
    h->row.queued_at = now;
    complaint_escalated(am->srv->complaints, s, reason);
    complaint_number(am->srv->complaints, s, h->row.record, sizeof(h->row.record));
    if (!h->row.record[0])
        agent_record_number(id, now, h->row.record, sizeof(h->row.record));
    h->row.summary = summary_json;
    if (map_put(am->by_conv, h->name, h) != 0 ||
        agent_store_insert(am->store, &h->row, NULL, NULL) != 0) {
        map_del(am->by_conv, h->name);
        free(h);
        return -1;
    }
    h->row.summary = NULL;
    h->next = am->open;
    if (am->open)
        am->open->prev = h;
    am->open = h;
    queue_sync(am, h, 0);
    h->s = s;
    session_set_handoff(s, 1);
    metrics.handoffs++;
    am->dirty = 1;
    log_info("agent", "%s queued: %s, priority %d, group %s", h->name, reason, h->row.priority,
             h->row.group);
    if (!in_hours(am, now))
        to_callback(am, h, "after_hours");
    else if (agents_for(am, h->row.group) == 0)
        to_callback(am, h, "no_agent");
    else
        am->pushed_ms = 0; /* the customer hears the position at the next tick */
    return 0;
}

int agent_has_handoff(agent_mgr_t *am, long long conversation)
{
    return am && find(am, conversation) != NULL;
}

int agent_session_loaded(agent_mgr_t *am, session_t *s)
{
    handoff *h = am ? find(am, session_id(s)) : NULL;
    if (!h)
        return 0;
    h->s = s;
    session_set_handoff(s, 1);
    return 1;
}

void agent_event(agent_mgr_t *am, session_t *s, const store_event_t *ev)
{
    handoff *h = find(am, session_id(s));
    if (!h)
        return;
    int customer = strcmp(ev->kind, "message") == 0 && strcmp(ev->sender, "customer") == 0;
    if (customer && ev->text) {
        agent_utf8_copy(h->sum.last_text, sizeof(h->sum.last_text), ev->text);
        if (h->row.state != AGENT_ACTIVE)
            am->dirty = 1;
    }
    if (h->row.state == AGENT_ACTIVE && h->row.agent[0])
        send_user(am, h->row.agent, agent_proto_event(h->name, ev));
    else if (customer && h->row.state == AGENT_CALLBACK) {
        uint64_t t = util_now_ms();
        if (t - h->acked_ms >= CALLBACK_ACK_MS) {
            h->acked_ms = t;
            char text[256];
            snprintf(text, sizeof(text),
                     "已收到您的补充说明，已记入投诉单 %s，客服专员联系您时会一并处理。",
                     h->row.record);
            session_say(s, "bot", text, NULL, 0);
        }
    }
}

/* ---- the queue ---- */

static void fill_item(agent_mgr_t *am, agent_item_t *it, const handoff *h, int position, double now)
{
    it->conversation = h->name;
    it->state = agent_hstate_name(h->row.state);
    it->group = h->row.group;
    it->reason = h->row.reason;
    it->category = h->sum.category;
    it->last_text = h->sum.last_text;
    it->cust_id = h->sum.cust_id;
    it->cust_name = h->sum.cust_name;
    it->agent = h->row.agent;
    it->priority = h->row.priority;
    it->position = position;
    it->severity = h->sum.severity;
    it->vip = h->sum.vip;
    it->waited_s = now - h->row.queued_at > 0 ? now - h->row.queued_at : 0;
    it->due = h->row.due;
    it->sla = complaint_sla_flag(am->srv->complaints, h->row.conversation);
    it->callback_reason = h->row.state == AGENT_CALLBACK && h->cb_reason[0] ? h->cb_reason : NULL;
}

/* position within its group (queued only; 0 for callbacks) */
static int wait_estimate(agent_mgr_t *am, int position, int agents)
{
    double w = position * am->handle_avg / (agents > 0 ? agents : 1);
    return (int)(ceil(w / 10.0) * 10.0);
}

typedef struct group_count {
    int queued; /* queued hand-offs of the group seen so far */
    int agents; /* agents_for() the group */
} group_count;

/*
 * One pass over the queue in order: pos[i] = position within its group (queued only; 0 for
 * call-backs) and, when wait is not NULL, wait[i] = the customer's estimated wait.  Each
 * group's count of agents is computed once.  Returns 0, or -1 when out of memory.
 */
static int positions(agent_mgr_t *am, const agent_qent *v, int n, int *pos, int *wait)
{
    map_t *groups = map_new();
    group_count *counts = calloc((size_t)n + 1, sizeof(*counts));
    int used = 0, rc = -1;
    if (!groups || !counts)
        goto out;
    for (int i = 0; i < n; i++) {
        pos[i] = 0;
        if (v[i].k.callback)
            continue;
        const handoff *h = v[i].item;
        group_count *g = map_get(groups, h->row.group);
        if (!g) {
            g = &counts[used++];
            g->agents = wait ? agents_for(am, h->row.group) : 0;
            if (map_put(groups, h->row.group, g) != 0)
                goto out;
        }
        pos[i] = ++g->queued;
        if (wait)
            wait[i] = wait_estimate(am, pos[i], g->agents);
    }
    rc = 0;
out:
    map_free(groups);
    free(counts);
    return rc;
}

static char *queue_for(agent_sock_t *a, const agent_qent *v, const int *pos, int n, double now,
                       int as_array)
{
    agent_item_t *items = calloc(QUEUE_ITEMS_MAX, sizeof(*items));
    int k = 0, total = 0;
    if (!items)
        return NULL;
    for (int i = 0; i < n; i++) {
        const handoff *h = v[i].item;
        if (!a->supervisor && !serves(a, h->row.group))
            continue;
        total++;
        if (k < QUEUE_ITEMS_MAX)
            fill_item(a->am, &items[k++], h, pos[i], now);
    }
    char *json =
        as_array ? agent_proto_items_array(items, k) : agent_proto_items("queue", items, k, total);
    free(items);
    return json;
}

static char *mine_for(agent_mgr_t *am, agent_sock_t *a, double now, int as_array)
{
    int k = 0;
    for (handoff *h = am->open; h; h = h->next)
        if (h->row.state == AGENT_ACTIVE && strcmp(h->row.agent, a->user.username) == 0)
            k++;
    agent_item_t *items = calloc((size_t)k + 1, sizeof(*items));
    if (!items)
        return NULL;
    k = 0;
    for (handoff *h = am->open; h; h = h->next)
        if (h->row.state == AGENT_ACTIVE && strcmp(h->row.agent, a->user.username) == 0)
            fill_item(am, &items[k++], h, 0, now);
    char *json =
        as_array ? agent_proto_items_array(items, k) : agent_proto_items("mine", items, k, k);
    free(items);
    return json;
}

/* Pushes the queue to every socket and positions to queued customers. */
static void push(agent_mgr_t *am)
{
    int n;
    double now = now_s(am);
    agent_qent *v = queue_copy(am, &n);
    int *pos = n >= 0 ? calloc((size_t)n + 1, sizeof(*pos)) : NULL;
    int *waits = n >= 0 ? calloc((size_t)n + 1, sizeof(*waits)) : NULL;
    if (!pos || !waits || positions(am, v, n, pos, waits) != 0) {
        free(pos);
        free(waits);
        free(v);
        am->dirty = 1; /* try again at the next tick */
        return;
    }
    for (int i = 0; i < n; i++) {
        if (v[i].k.callback)
            continue;
        handoff *h = v[i].item;
        int wait = waits[i];
        if (pos[i] == h->sent_pos && wait == h->sent_wait)
            continue;
        session_t *s = session_of(am, h);
        char *detail = agent_proto_queued_detail(pos[i], wait, h->row.group);
        if (s && detail && session_status(s, "queued", detail) == 0) {
            h->sent_pos = pos[i];
            h->sent_wait = wait;
        }
        free(detail);
    }
    for (agent_sock_t *a = am->socks; a; a = a->next) {
        send_to(a, queue_for(a, v, pos, n, now, 0));
        send_to(a, mine_for(am, a, now, 0));
    }
    free(pos);
    free(waits);
    free(v);
}

void agent_mgr_tick(agent_mgr_t *am)
{
    uint64_t t = util_now_ms();
    if (t - am->checked_ms >= 1000) {
        double now = now_s(am);
        am->checked_ms = t;
        /* the queued ones lead the queue; a call-back moves behind them (i stays) */
        for (int i = 0; queue_fresh(am) == 0 && i < am->queue.n && !am->queue.v[i].k.callback;) {
            handoff *h = am->queue.v[i].item;
            if (now - h->row.queued_at >= am->cfg->agent_max_wait_s)
                to_callback(am, h, "wait_timeout");
            else if (!in_hours(am, now))
                to_callback(am, h, "after_hours");
            else
                i++;
        }
    }
    if (t - am->rechecked_ms >= SESSION_RECHECK_MS) {
        am->rechecked_ms = t;
        for (agent_sock_t *a = am->socks; a; a = a->next)
            if (!auth_session_valid(am->srv->auth, a->user.session_id))
                ws_conn_close(a->c, 4401, "session ended; log in again");
    }
    if (am->dirty && t - am->pushed_ms >= (uint64_t)am->cfg->agent_queue_push_ms) {
        am->dirty = 0;
        am->pushed_ms = t;
        push(am);
    }
}

/* ---- requests ---- */

static int may_act(agent_sock_t *a, handoff *h)
{
    return a->supervisor || strcmp(h->row.agent, a->user.username) == 0;
}

static void do_claim(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r)
{
    handoff *h = find(am, r->conversation);
    char msg[160];
    if (!h) {
        send_error(a, r->id, "not_found", "no open hand-off for that conversation");
        return;
    }
    if (h->row.state == AGENT_ACTIVE) {
        if (strcmp(h->row.agent, a->user.username) == 0) { /* another tab of the owner */
            op *o = op_new(am, OP_CONTEXT, a, r->id, r->conversation);
            if (o)
                op_done(o, 0);
            return;
        }
        snprintf(msg, sizeof(msg), "already claimed by %s", h->row.agent);
        send_error(a, r->id, "already_claimed", msg);
        return;
    }
    double now = now_s(am);
    h->row.state = AGENT_ACTIVE;
    queue_sync(am, h, 0);
    snprintf(h->row.agent, sizeof(h->row.agent), "%s", a->user.username);
    h->row.claimed_at = now;
    am->dirty = 1;
    am->pushed_ms = 0;
    session_t *s = session_of(am, h);
    if (s) {
        char *detail = agent_proto_kv("agent", a->user.display_name);
        if (!detail || session_status(s, "agent_joined", detail) != 0)
            log_error("agent", "%s: agent_joined not queued", h->name);
        free(detail);
    }
    if (s)
        complaint_set_status(am->srv->complaints, s, "acknowledged", a->user.username, NULL);
    complaint_owner(am->srv->complaints, h->row.conversation, a->user.username);
    log_info("agent", "%s claimed by %s", h->name, a->user.username);
    op *o = op_new(am, OP_CLAIM, a, r->id, r->conversation);
    if (!o) {
        send_error(a, r->id, "internal", "out of memory");
        return;
    }
    save_row(am, h, NULL, op_done, o);
}

/* The open hand-off r names, when a may see it: any agent while it waits, only its owner or a
 * supervisor once claimed.  Else answers the error (not_owner with `why`) and returns NULL. */
static handoff *visible(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r, const char *why)
{
    handoff *h = find(am, r->conversation);
    if (!h) {
        send_error(a, r->id, "not_found", "no open hand-off for that conversation");
        return NULL;
    }
    if (h->row.state == AGENT_ACTIVE && !may_act(a, h)) {
        send_error(a, r->id, "not_owner", why);
        return NULL;
    }
    return h;
}

static void do_context(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r)
{
    if (!visible(am, a, r, "only the owner or a supervisor may read this chat"))
        return;
    op *o = op_new(am, OP_CONTEXT, a, r->id, r->conversation);
    if (o)
        op_done(o, 0);
}

/* The hand-off r names, active and owned by a (or a is a supervisor); else answers the error
 * and returns NULL. */
static handoff *owned(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r, int supervisor_ok)
{
    handoff *h = find(am, r->conversation);
    if (!h) {
        send_error(a, r->id, "not_found", "no open hand-off for that conversation");
        return NULL;
    }
    if (h->row.state != AGENT_ACTIVE) {
        if (supervisor_ok && a->supervisor)
            return h;
        send_error(a, r->id, "not_owner", "claim the chat first");
        return NULL;
    }
    if (strcmp(h->row.agent, a->user.username) != 0 && !(supervisor_ok && a->supervisor)) {
        send_error(a, r->id, "not_owner", "another agent owns this chat");
        return NULL;
    }
    return h;
}

static void do_reply(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r)
{
    handoff *h = owned(am, a, r, 0);
    if (!h)
        return;
    session_t *s = session_of(am, h);
    long long seq = 0;
    if (!s || session_agent_say(s, r->text, &seq) != 0) {
        send_error(a, r->id, "internal", "the reply was not stored; send it again");
        return;
    }
    char num[32];
    snprintf(num, sizeof(num), "%lld", seq);
    complaint_answered(am->srv->complaints, h->row.conversation);
    send_to(a, agent_proto_ok(r->id, "seq", num));
}

static void do_note(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r)
{
    if (!visible(am, a, r, "another agent owns this chat"))
        return;
    op *o = op_new(am, OP_NOTE, a, r->id, r->conversation);
    if (!o || !(o->text = strdup(r->text))) {
        free(o);
        send_error(a, r->id, "internal", "out of memory");
        return;
    }
    snprintf(o->from, sizeof(o->from), "%s", a->user.username);
    o->ts = now_s(am);
    if (agent_store_note(am->store, r->conversation, o->from, o->text, o->ts, op_done, o) != 0) {
        free(o->text);
        free(o);
        send_error(a, r->id, "internal", "the note was not stored; send it again");
    }
}

static void queue_transfer_note(agent_mgr_t *am, agent_sock_t *a, handoff *h, const agent_req_t *r)
{
    if (r->text && agent_store_note(am->store, r->conversation, a->user.username, r->text,
                                    now_s(am), NULL, NULL) != 0)
        log_error("agent", "%s: transfer note not queued", h->name);
}

static void do_transfer(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r)
{
    handoff *h = owned(am, a, r, 1);
    if (!h)
        return;
    char old[65];
    snprintf(old, sizeof(old), "%s", h->row.agent);
    session_t *s = session_of(am, h);
    if (r->to_agent[0]) {
        agent_sock_t *t = sock_of_user(am, r->to_agent, 1);
        if (!t) {
            send_error(a, r->id, "agent_offline", "that agent is not online and available");
            return;
        }
        if (strcmp(old, r->to_agent) == 0) {
            send_error(a, r->id, "bad_field", "that agent already owns this chat");
            return;
        }
        if (!auth_allows(t->user.role, AUTH_CAP_AGENT_CHAT)) {
            send_error(a, r->id, "not_found", "that account may not take chats");
            return;
        }
        queue_transfer_note(am, a, h, r); /* before the row: the new owner's context has it */
        h->row.state = AGENT_ACTIVE;
        queue_sync(am, h, 0);
        snprintf(h->row.agent, sizeof(h->row.agent), "%s", r->to_agent);
        h->row.claimed_at = now_s(am);
        h->row.transfers++;
        if (old[0])
            send_user(am, old,
                      agent_proto_frame("released", h->name, NULL, NULL, "reason", "transferred"));
        if (s) {
            char *detail = agent_proto_kv("agent", t->user.display_name);
            if (!detail || session_status(s, "agent_joined", detail) != 0)
                log_error("agent", "%s: agent_joined not queued", h->name);
            free(detail);
        }
        complaint_owner(am->srv->complaints, h->row.conversation, h->row.agent);
        op *o = op_new(am, OP_ASSIGNED, NULL, NULL, r->conversation);
        if (o) {
            snprintf(o->from, sizeof(o->from), "%s", old);
            snprintf(o->to, sizeof(o->to), "%s", r->to_agent);
        }
        save_row(am, h, NULL, o ? op_done : NULL, o);
    } else {
        queue_transfer_note(am, a, h, r);
        h->row.state = AGENT_QUEUED;
        h->row.agent[0] = '\0';
        snprintf(h->row.group, sizeof(h->row.group), "%s", r->to_group);
        h->row.queued_at = now_s(am);
        queue_sync(am, h, 0);
        h->row.claimed_at = 0;
        h->row.transfers++;
        h->sent_pos = h->sent_wait = 0;
        if (old[0])
            send_user(am, old,
                      agent_proto_frame("released", h->name, NULL, NULL, "reason", "transferred"));
        complaint_owner(am->srv->complaints, h->row.conversation, "");
        save_row(am, h, NULL, NULL, NULL);
        if (!in_hours(am, h->row.queued_at))
            to_callback(am, h, "after_hours");
        else if (agents_for(am, h->row.group) == 0)
            to_callback(am, h, "no_agent");
    }
    log_info("agent", "%s transferred by %s to %s", h->name, a->user.username,
             r->to_agent[0] ? r->to_agent : r->to_group);
    am->dirty = 1;
    am->pushed_ms = 0;
    send_to(a, agent_proto_ok(r->id, NULL, NULL));
}

static void learn_handle_time(agent_mgr_t *am, handoff *h, double now)
{
    if (h->row.claimed_at <= 0 || now <= h->row.claimed_at)
        return;
    double d = now - h->row.claimed_at;
    am->handle_avg = 0.8 * am->handle_avg + 0.2 * d;
    if (am->handle_avg < 30)
        am->handle_avg = 30;
}

/* The agents' part of h ends in state (resolved or handed back): the handle-time estimate learns
 * from it and ended_at is set.  Returns the conversation's session (NULL when not in memory). */
static session_t *end_agent_part(agent_mgr_t *am, handoff *h, agent_hstate_t state)
{
    double now = now_s(am);
    session_t *s = session_of(am, h);
    learn_handle_time(am, h, now);
    h->row.state = state;
    queue_sync(am, h, 0);
    h->row.ended_at = now;
    return s;
}

static void do_resolve(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r)
{
    handoff *h = owned(am, a, r, 1);
    if (!h)
        return;
    session_t *s = end_agent_part(am, h, AGENT_RESOLVED);
    if (!h->row.agent[0])
        snprintf(h->row.agent, sizeof(h->row.agent), "%s", a->user.username);
    save_row(am, h, r->text, NULL, NULL);
    if (s)
        complaint_set_status(am->srv->complaints, s, "resolved", h->row.agent, r->text);
    op *o = op_new(am, OP_CASE, a, r->id, r->conversation);
    if (!o) {
        send_error(a, r->id, "internal", "out of memory");
    } else if (!r->save_case) {
        send_to(a, agent_proto_ok(r->id, "case", "null"));
        free(o);
    } else {
        const char *category = h->sum.category[0] ? h->sum.category : "other";
        if (agent_store_case(am->store, h->sum.summary[0] ? h->sum.summary : h->sum.last_text,
                             category, h->sum.offered, r->text, r->outcome, op_done, o) != 0) {
            free(o);
            send_to(a, agent_proto_ok(r->id, "case", "null"));
        }
    }
    log_info("agent", "%s resolved by %s (%s)", h->name, a->user.username, r->outcome);
    end_handoff(am, h, "resolved");
    if (s) {
        char *detail = agent_proto_kv("resolution", r->text);
        if (!detail || session_status(s, "resolved", detail) != 0)
            log_error("agent", "session resolved status not queued");
        free(detail);
        session_handback(s, "resolved");
    }
}

static void do_handback(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r)
{
    handoff *h = owned(am, a, r, 1);
    if (!h)
        return;
    session_t *s = end_agent_part(am, h, AGENT_HANDED_BACK);
    save_row(am, h, NULL, NULL, NULL);
    log_info("agent", "%s handed back by %s", h->name, a->user.username);
    end_handoff(am, h, "handed_back");
    if (s)
        session_handback(s, "handback");
    send_to(a, agent_proto_ok(r->id, NULL, NULL));
}

static void do_ready(agent_mgr_t *am, agent_sock_t *a, const agent_req_t *r)
{
    a->available = r->available;
    a->all_groups = r->all_groups;
    a->ngroups = r->ngroups;
    memcpy(a->groups, r->groups, sizeof(a->groups));
    am->dirty = 1;
    am->pushed_ms = 0;
    char *groups = agent_proto_groups(a->all_groups ? NULL : a->groups, a->ngroups);
    send_to(a, agent_proto_ready_ok(r->id, a->available, groups));
    free(groups);
}

void agent_ws_frame(agent_sock_t *a, const char *text, size_t len)
{
    agent_mgr_t *am = a->am;
    agent_req_t r;
    proto_error_t code;
    char msg[256];
    if (agent_proto_decode(text, len, am->cfg->max_text_chars, &r, &code, msg, sizeof(msg)) != 0) {
        send_error(a, r.id, proto_error_name(code), msg);
        return;
    }
    static void (*const handlers[])(agent_mgr_t *, agent_sock_t *, const agent_req_t *) = {
        [AGENT_REQ_READY] = do_ready,     [AGENT_REQ_CLAIM] = do_claim,
        [AGENT_REQ_CONTEXT] = do_context, [AGENT_REQ_REPLY] = do_reply,
        [AGENT_REQ_NOTE] = do_note,       [AGENT_REQ_TRANSFER] = do_transfer,
        [AGENT_REQ_RESOLVE] = do_resolve, [AGENT_REQ_HANDBACK] = do_handback,
    };
    handlers[r.kind](am, a, &r);
    agent_req_clear(&r);
}

/* ---- sockets ---- */

/* Every group an agent may pick: the knowledge base's category prefixes, "general", and the
 * groups of open hand-offs.  JSON array text. */
static char *known_groups(agent_mgr_t *am)
{
    char(*g)[AGENT_GROUP_MAX + 1] = calloc(AGENT_MAX_GROUPS * 4, sizeof(*g));
    int n = 0, cap = AGENT_MAX_GROUPS * 4;
    if (!g)
        return NULL;
    agent_summary_t tmp;
    for (int i = -1; i < kb_category_count(); i++) { /* -1: "general" */
        memset(&tmp, 0, sizeof(tmp));
        if (i >= 0)
            snprintf(tmp.category, sizeof(tmp.category), "%s", kb_category_slug(i));
        char one[AGENT_GROUP_MAX + 1];
        group_of(&tmp, one);
        int dup = 0;
        for (int j = 0; j < n; j++)
            dup |= strcmp(g[j], one) == 0;
        if (!dup && n < cap)
            snprintf(g[n++], AGENT_GROUP_MAX + 1, "%s", one);
    }
    for (handoff *h = am->open; h; h = h->next) {
        int dup = 0;
        for (int j = 0; j < n; j++)
            dup |= strcmp(g[j], h->row.group) == 0;
        if (!dup && n < cap)
            snprintf(g[n++], AGENT_GROUP_MAX + 1, "%s", h->row.group);
    }
    char *json = agent_proto_groups(g, n);
    free(g);
    return json;
}

agent_sock_t *agent_ws_open(agent_mgr_t *am, struct ws_conn *c, const auth_user_t *user)
{
    agent_sock_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->am = am;
    a->c = c;
    a->serial = ++am->next_serial;
    a->user = *user;
    a->supervisor = auth_allows(user->role, AUTH_CAP_AGENT_SUPERVISE);
    a->available = 1;
    a->all_groups = 1;
    a->next = am->socks;
    if (am->socks)
        am->socks->prev = a;
    am->socks = a;

    int n;
    double now = now_s(am);
    agent_qent *v = queue_copy(am, &n);
    int *pos = n >= 0 ? calloc((size_t)n + 1, sizeof(*pos)) : NULL;
    if (pos && positions(am, v, n, pos, NULL) != 0) {
        free(pos);
        pos = NULL;
    }
    char *groups = known_groups(am);
    char *canned = am->as ? agent_store_canned(am->as) : NULL;
    char *queue = pos ? queue_for(a, v, pos, n, now, 1) : NULL;
    char *mine = mine_for(am, a, now, 1);
    send_to(a, agent_proto_welcome(user->username, user->display_name, auth_role_name(user->role),
                                   a->supervisor, groups, canned ? canned : "[]", queue, mine));
    free(groups);
    free(canned);
    free(queue);
    free(mine);
    free(pos);
    free(v);
    am->dirty = 1; /* wait estimates change with the number of agents */
    log_info("agent", "%s connected", user->username);
    return a;
}

void agent_ws_closed(agent_sock_t *a)
{
    agent_mgr_t *am = a->am;
    if (a->prev)
        a->prev->next = a->next;
    else
        am->socks = a->next;
    if (a->next)
        a->next->prev = a->prev;
    log_info("agent", "%s disconnected", a->user.username);
    free(a);
    am->dirty = 1;
}

void agent_logout(void *arg, long long session_id)
{
    agent_mgr_t *am = arg;
    for (agent_sock_t *a = am->socks; a; a = a->next)
        if (a->user.session_id == session_id)
            ws_conn_close(a->c, 4401, "logged out");
}

/* ---- life ---- */

static int load_one(const agent_handoff_row_t *r, void *arg)
{
    agent_mgr_t *am = arg;
    handoff *h = calloc(1, sizeof(*h));
    if (!h)
        return -1;
    h->row = *r;
    h->row.summary = NULL;
    h->row.resolution = NULL;
    agent_proto_summary(r->summary, &h->sum);
    /* the customer may have written more while queued (before the restart) */
    char *last = agent_store_last_text(am->as, r->conversation);
    if (last)
        agent_utf8_copy(h->sum.last_text, sizeof(h->sum.last_text), last);
    free(last);
    conv_name(r->conversation, h->name, sizeof(h->name));
    if (map_put(am->by_conv, h->name, h) != 0) {
        free(h);
        return -1;
    }
    h->next = am->open;
    if (am->open)
        am->open->prev = h;
    am->open = h;
    metrics.handoffs++;
    return 0;
}

agent_mgr_t *agent_mgr_new(server_t *srv)
{
    agent_mgr_t *am = calloc(1, sizeof(*am));
    if (!am)
        return NULL;
    am->srv = srv;
    am->cfg = srv->cfg;
    am->store = srv->store;
    am->sessions = srv->sessions;
    am->handle_avg = srv->cfg->agent_handle_s;
    if (parse_hours(srv->cfg->agent_hours, &am->open_min, &am->close_min) != 0) {
        log_error("agent", "agent.hours: \"%s\" is not HH:MM-HH:MM", srv->cfg->agent_hours);
        free(am);
        return NULL;
    }
    if (!(am->by_conv = map_new()) || !(am->as = agent_store_new(srv->store)))
        goto fail;
    if ((am->next_id = agent_store_max_handoff_id(am->as)) < 0 ||
        agent_store_load_open(am->as, load_one, am) != 0) {
        log_error("agent", "cannot load the open hand-offs");
        goto fail;
    }
    if (am->open)
        log_notice("agent", "%zu open hand-offs loaded", map_count(am->by_conv));
    queue_drop(am); /* built at its first use */
    am->dirty = 1;
    return am;
fail:
    agent_mgr_free(am);
    return NULL;
}

void agent_mgr_close_store(agent_mgr_t *am)
{
    if (!am)
        return;
    agent_store_free(am->as);
    am->as = NULL;
}

void agent_mgr_free(agent_mgr_t *am)
{
    if (!am)
        return;
    while (am->open) {
        handoff *h = am->open;
        am->open = h->next;
        free(h);
        metrics.handoffs--;
    }
    while (am->socks) {
        agent_sock_t *a = am->socks;
        am->socks = a->next;
        free(a);
    }
    agent_store_free(am->as);
    map_free(am->by_conv);
    agent_queue_free(&am->queue);
    free(am);
}
