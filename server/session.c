/*
 * session.c - conversations in memory.
 *
 * Ownership
 *   session_mgr_t owns every session_t (list + token map).  A session owns its pending
 *   events (sevent), each of which is also an in-flight store operation; `refs` counts them
 *   (plus the creation op), and a session is freed only by session_mgr_sweep() or
 *   session_mgr_free(), never inside one of its own callbacks, and only with refs == 0.
 *   The attached ws_conn_t is borrowed: ws.c calls session_detach() before freeing it.
 *
 * States of a session
 *
 *   new_conversation() --store_create_conversation--> CREATING
 *   CREATING --on_created(rc=0)--> LIVE (welcome sent)      --on_created(rc<0)--> DEAD
 *   load_conversation() (resume of a conversation not in memory) --> LIVE
 *   LIVE + connection --session_detach()--> LIVE, detached --session_mgr_sweep()--> freed
 *   DEAD --session_mgr_sweep()--> freed
 *
 * The flow's run (Lua coroutine and instance) is kept in memory only while it may be called
 * on at once: the customer is connected, the agents do not have the chat, and a turn came in
 * the last limits.flow_idle_s.  Otherwise the sweep parks it (frees it; the store has its
 * state, saved with every turn) and the next message, timer or hand-back restores it
 * (unpark).  A detached or handed-off conversation thus costs no Lua memory: measured with
 * the bench's conversations, 57 % of which are handed off, the VM held 3-7 MB instead of
 * 64-139 MB after 17 s (BENCHMARKS.md).  limits.flow_idle_s = 0 turns parking off altogether.
 *
 * The sweep (4 times a second) does not walk every session: a detached conversation stays for
 * limits.session_memory_s (600 s), so at 500 new conversations a second there are 300,000 of
 * them, and a walk took 3 ms at 47,000.  A timer queue (timeq.h) holds each session at
 * sweep_at(): the earliest of its flow timer, the park of its run and its free.  The sweep
 * takes from the front only the sessions that are due, does for each what the walk did, and
 * queues it again; one that cannot be done yet (store operations in flight) comes back at the
 * next sweep.  Whatever can bring that time forward queues the session again (requeue):
 * detach, hand-off, a run call (new timer, new run), creation and loading, the end of the
 * creation.  Whatever moves it later need not: the sweep finds nothing to do and requeues.
 * A flow timer is queued at most 60 s ahead and looked at again then, as the flows' clock is
 * the wall clock.  A sweep stops after SWEEP_SLICE_NS and says so; the server calls it again
 * a few milliseconds later (net.c), so that a burst of due sessions does not hold the loop:
 * at 2,100 turns/s the open loop's sweeps, four a second with some 25 parks and frees each,
 * took 1.4 ms on average and up to 3.1 ms, during which every turn in flight waited.
 *
 * Life of an event
 *   emit(): seq = ++next_seq, appended to `pending`, queued in the store
 *   on_stored(): removed from `pending`; a customer message is acknowledged; any other event
 *   is delivered to the attached connection unless that connection already has it (sent_seq,
 *   set by a resume's replay).
 *
 * A customer's message and the bot's turn
 *   session_message() queues the message and runs the bot's turn (turn()) at once, inside one
 *   store group (store.h): the message, the replies, status events, records and the flow's
 *   state commit together or not at all, in one transaction.  The acknowledgement still means
 *   "stored": on_stored() sends it when the group has committed, and the replies, queued
 *   after the message, are delivered after it.  Should the group fail, the customer gets the
 *   "send it again" error, no reply is delivered, and the flow is put back to the state the
 *   store has (its run is dropped and parked, so the next call resumes it from there).  Not
 *   undone: what the turn did in memory elsewhere (a hand-off queued with the agents, the
 *   complaint's fields), and the turn of a later message already queued behind the failed one
 *   (it ran on the flow that had seen the failed message; a store that refuses one group
 *   usually refuses the next).  A message that arrives while the agents have the chat goes to
 *   them once stored, as before.  /metrics has each turn's time from the message decoded to
 *   the commit (redress_turn_seconds), split into the run and the wait for the commit.
 */
#include "session.h"

#include "agent.h"
#include "complaint.h"
#include "flow.h"
#include "log.h"
#include "metrics.h"
#include "privacy.h"
#include "timeq.h"
#include "util.h"
#include "ws.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

typedef struct sevent {
    struct sevent *next;
    session_t *s;
    store_event_t ev;
    char *text, *options, *detail, *client_id; /* owned copies behind ev */
    char state[24];
    int extra_acks;       /* duplicates of a pending customer message, acknowledged on commit */
    int turned;           /* a customer message whose bot turn ran when it was queued */
    uint64_t t_in, t_ran; /* uv_hrtime(): a turned message decoded, its turn run (metrics.turn) */
} sevent;

typedef enum { S_CREATING, S_LIVE, S_DEAD } sstate;

#define RECENT_IDS 8

struct session {
    session_mgr_t *m;
    struct session *prev, *next; /* manager's list */
    sstate state;
    long long id;
    char name[24]; /* "c-000000000001" */
    char token[33];
    char customer_id[129];
    char customer_name[256];
    char channel[16];
    long long next_seq;   /* last seq assigned */
    long long stored_seq; /* highest seq known durable */
    ws_conn_t *conn;
    long long sent_seq; /* highest seq the attached connection has */
    int replaying;      /* a resume's replay is still being paged out (see replay_page) */
    sevent *pending, **pending_tail;
    int refs;
    uint64_t detached_ms;
    flow_run_t *run;    /* the dialogue flow, NULL without an engine */
    int handoff;        /* with the agents (agent.c): messages go there; the session stays
                         * in memory (its run is parked) */
    double run_due;     /* flow_run_next_due() after the last call into the run */
    int run_parked;     /* run freed (parked); its saved state is in the store (unpark) */
    int saving;         /* flow state saves in flight */
    uint64_t active_ms; /* last call into the run */
    double stored_due;  /* run_due as the store has it (conversations.flow_due) */
    /* client ids of the customer messages seen (hashes), so that a new id needs no database
     * read; complete while every id of the conversation is here (see known_new_id) */
    uint64_t ids[RECENT_IDS];
    uint8_t nids, ids_complete;
    timeq_item sweep; /* due (ms): when the sweep must look at it next (see "The sweep") */
};

struct session_mgr {
    double clock_offset;  /* added to the real time for the flows' clock (flow.clock_start) */
    uint64_t due_scan_ms; /* last look for due timers of conversations not in memory */
    const config_t *cfg;
    store_t *store;
    map_t *by_token;
    session_t *all;
    timeq sweepq; /* the sessions that have something ahead: a timer, a park, a free */
    long long next_id;
    int stopping;
    flow_engine_t *flow;         /* borrowed; NULL: fixed replies */
    agent_mgr_t *agent;          /* borrowed; NULL: no agent queue */
    complaint_mgr_t *complaints; /* borrowed; NULL: no complaint records */
};

/* ---- manager ---- */

static void drop_run(session_t *s)
{
    if (s->run)
        metrics.flow_runs--;
    flow_run_free(s->run);
    s->run = NULL;
}

/* Frees the run; its next call resumes it from the state the store has (unpark). */
static void park(session_t *s)
{
    drop_run(s);
    s->run_parked = 1;
}

#define SWEEP_MS 250 /* the tick's period (net.c): a session that must wait comes back then */

/* s has a flow timer for the sweep to fire (with the agents, timers wait for the hand back). */
static int has_timer(const session_t *s)
{
    return (s->run || s->run_parked) && s->run_due > 0 && !s->handoff;
}

/* When (util_now_ms) s's run is to be parked: at once without a customer or with the agents,
 * else limits.flow_idle_s after its last call; 0: no run in memory, or parking is off. */
static double park_at(const session_mgr_t *m, const session_t *s, uint64_t now)
{
    if (!s->run || m->cfg->flow_idle_s <= 0)
        return 0;
    return !s->conn || s->handoff ? (double)now
                                  : (double)s->active_ms + m->cfg->flow_idle_s * 1000.0;
}

/* When s may leave memory: at once if dead, else limits.session_memory_s after its customer
 * left; 0 while the customer is connected or the agents have the chat. */
static double free_at(const session_mgr_t *m, const session_t *s, uint64_t now)
{
    if (s->conn || s->handoff)
        return 0;
    return s->state == S_DEAD ? (double)now
                              : (double)s->detached_ms + m->cfg->session_memory_s * 1000.0;
}

/* The first time (util_now_ms) the sweep has something to do for s; 0: nothing ahead. */
static double sweep_at(const session_mgr_t *m, const session_t *s, uint64_t now)
{
    double t = 0;
    if (has_timer(s)) {
        double in = (s->run_due - session_mgr_now(m)) * 1000.0;
        t = (double)now + (in < 0 ? 0 : in > 60000 ? 60000 : in);
    }
    return timeq_earliest(timeq_earliest(t, park_at(m, s, now)), free_at(m, s, now));
}

/* Queues s for the sweep at sweep_at() (see "The sweep"). */
static void requeue(session_t *s)
{
    session_mgr_t *m = s->m;
    if (timeq_set(&m->sweepq, &s->sweep, sweep_at(m, s, util_now_ms())) != 0)
        log_error("session", "%s: no memory to queue it for the sweep", s->name);
}

session_mgr_t *session_mgr_new(const config_t *cfg, store_t *store)
{
    session_mgr_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->cfg = cfg;
    m->store = store;
    m->by_token = map_new();
    if (!m->by_token) {
        free(m);
        return NULL;
    }
    m->next_id = store_max_conversation_id(store);
    if (cfg->clock_start[0]) {
        struct tm tm = {0};
        const char *end = strptime(cfg->clock_start, "%Y-%m-%d %H:%M", &tm);
        if (!end || *end) {
            log_error("session", "flow.clock_start: \"%s\" is not YYYY-MM-DD HH:MM",
                      cfg->clock_start);
            map_free(m->by_token);
            free(m);
            return NULL;
        }
        m->clock_offset = (double)(timegm(&tm) - 8 * 3600) - util_wall_s();
    }
    return m;
}

void session_mgr_set_flow(session_mgr_t *m, flow_engine_t *flow)
{
    if (!flow) /* the engine is going away: its runs go first (their state is saved) */
        for (session_t *s = m->all; s; s = s->next) {
            drop_run(s);
            s->run_due = 0;
        }
    m->flow = flow;
}

void session_mgr_set_complaints(session_mgr_t *m, complaint_mgr_t *cm)
{
    m->complaints = cm;
}

void session_mgr_set_agent(session_mgr_t *m, agent_mgr_t *am)
{
    m->agent = am;
}

double session_mgr_now(const session_mgr_t *m)
{
    /* whole milliseconds: the flows need no finer, and such a number prints without printf
     * in every saved run (json_print.c) */
    return floor((util_wall_s() + m->clock_offset) * 1000.0 + 0.5) / 1000.0;
}

void session_mgr_stop(session_mgr_t *m)
{
    m->stopping = 1;
}

static void session_free(session_t *s)
{
    session_mgr_t *m = s->m;
    timeq_remove(&m->sweepq, &s->sweep);
    if (s->prev)
        s->prev->next = s->next;
    else
        m->all = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (map_get(m->by_token, s->token) == s)
        map_del(m->by_token, s->token);
    drop_run(s);
    metrics.sessions--;
    free(s);
}

void session_mgr_free(session_mgr_t *m)
{
    if (!m)
        return;
    while (m->all) {
        /* The store is closed: no operation is in flight, so nothing points here. */
        session_t *s = m->all;
        while (s->pending) {
            sevent *e = s->pending;
            s->pending = e->next;
            free(e->text);
            free(e->options);
            free(e->detail);
            free(e->client_id);
            free(e);
        }
        session_free(s);
    }
    timeq_free(&m->sweepq);
    map_free(m->by_token);
    free(m);
}

static void after_run_call(session_t *s, int rc, const char *what);
static int unpark(session_t *s);

/* A conversation not in memory has a flow timer due: load it (its run resumes); the sweep
 * then fires the timer like any other.  Returns 0 to go on. */
static int wake(long long id, void *arg)
{
    session_mgr_t *m = arg;
    session_t *s = session_mgr_load(m, id);
    if (!s || (!s->run && !s->run_parked)) { /* nothing to run it: forget it, don't retry */
        log_warn("session", "conversation %lld: a flow timer is due but the flow cannot resume",
                 id);
        store_set_flow_due(m->store, id, 0);
    }
    return 0;
}

#define DUE_SCAN_MS 5000
#define DUE_SCAN_MAX 50
#define SWEEP_SLICE_NS 500000 /* a sweep's longest stretch (see "The sweep") */

int session_mgr_sweep(session_mgr_t *m)
{
    uint64_t start = uv_hrtime();
    if (m->flow && !m->stopping && util_now_ms() - m->due_scan_ms >= DUE_SCAN_MS) {
        m->due_scan_ms = util_now_ms();
        store_due_conversations(m->store, session_mgr_now(m), DUE_SCAN_MAX, wake, m);
    }
    uint64_t now = util_now_ms();
    double wall = 0;
    timeq_item *first;
    while ((first = timeq_first(&m->sweepq)) && first->due <= (double)now) {
        if (uv_hrtime() - start >= SWEEP_SLICE_NS)
            return 1;
        session_t *s = TIMEQ_OWNER(first, session_t, sweep);
        if (has_timer(s) && !m->stopping) {
            if (wall == 0)
                wall = session_mgr_now(m);
            if (s->run_due <= wall && unpark(s) == 0) {
                s->active_ms = now;
                after_run_call(s, flow_run_tick(s->run, wall), "timer");
            }
        }
        /* A run stays in memory only while the bot may be called on at once: the customer is
         * connected and the chat is not with the agents.  Otherwise, or after flow_idle_s
         * without a turn, only the saved state is kept (the store has it; unpark). */
        double park_t = park_at(m, s, now), free_t = free_at(m, s, now);
        if (park_t > 0 && park_t <= (double)now && !s->saving && !s->pending && !m->stopping)
            park(s);
        if (s->refs == 0 && s->state != S_CREATING && free_t > 0 && free_t <= (double)now) {
            session_free(s);
            continue;
        }
        requeue(s);
        if (s->sweep.idx >= 0 && s->sweep.due <= (double)now) /* waits for the store */
            timeq_set(&m->sweepq, &s->sweep, (double)(now + SWEEP_MS));
    }
    return 0;
}

static session_t *session_new(session_mgr_t *m)
{
    session_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->m = m;
    s->pending_tail = &s->pending;
    timeq_item_init(&s->sweep);
    s->next = m->all;
    if (m->all)
        m->all->prev = s;
    m->all = s;
    metrics.sessions++;
    return s;
}

/* ---- events ---- */

static void attach(session_t *s, ws_conn_t *c)
{
    s->conn = c;
    s->sent_seq = 0;
    s->replaying = 0;
    ws_conn_bind(c, s);
}

void session_detach(session_t *s, ws_conn_t *c)
{
    if (s->conn != c)
        return;
    s->conn = NULL;
    s->detached_ms = util_now_ms();
    requeue(s);
}

static void send_frame(session_t *s, char *json)
{
    if (!json) {
        log_error("session", "%s: out of memory encoding a frame", s->name);
        return;
    }
    if (!s->conn) {
        free(json);
        return;
    }
    ws_conn_send(s->conn, json);
}

static void deliver(session_t *s, const store_event_t *ev)
{ /* while a replay pages through the log it also picks up this (committed) event */
    if (!s->conn || s->replaying || ev->seq <= s->sent_seq)
        return;
    char *json = proto_event(ev);
    if (!json) {
        log_error("session", "%s: out of memory encoding event %lld", s->name, ev->seq);
        return;
    }
    if (ws_conn_send(s->conn, json) == 0) {
        s->sent_seq = ev->seq;
        metrics.messages_out++;
    }
}

static void sevent_free(sevent *e)
{
    free(e->text);
    free(e->options);
    free(e->detail);
    free(e->client_id);
    free(e);
}

static void turn(session_t *s, const char *text);

static void on_stored(void *arg, int rc)
{
    sevent *e = arg, **pp;
    session_t *s = e->s;

    for (pp = &s->pending; *pp && *pp != e; pp = &(*pp)->next)
        ;
    if (*pp) {
        *pp = e->next;
        if (!*pp)
            s->pending_tail = pp;
    }
    s->refs--;
    if (rc == 0 && e->ev.seq > s->stored_seq)
        s->stored_seq = e->ev.seq;
    if (e->client_id) {
        for (int i = 0; i <= e->extra_acks && s->conn; i++) {
            if (rc == 0)
                send_frame(s, proto_ack(e->client_id, e->ev.seq));
            else
                ws_conn_error(s->conn, PROTO_E_INTERNAL, "message not stored; send it again",
                              e->client_id);
        }
        if (rc == 0) {
            metrics.messages_in++;
            if (e->turned) {
                uint64_t now = uv_hrtime();
                histo_observe(&metrics.turn, now - e->t_in);
                histo_observe(&metrics.turn_flow, e->t_ran - e->t_in);
                histo_observe(&metrics.turn_store, now - e->t_ran);
            }
            if (!e->turned && s->handoff && s->m->agent)
                agent_event(s->m->agent, s, &e->ev);
            else if (!e->turned && !s->m->stopping) /* handed back while it was being stored */
                turn(s, e->text);
        } else if (e->turned && s->run) {
            log_warn("session", "%s: message %lld not stored; its turn is undone", s->name,
                     e->ev.seq);
            park(s);
        }
    } else if (rc == 0) {
        deliver(s, &e->ev);
        if (s->handoff && s->m->agent)
            agent_event(s->m->agent, s, &e->ev);
    } else {
        log_error("session", "%s: event %lld not stored", s->name, e->ev.seq);
    }
    sevent_free(e);
}

/* Assigns the next seq and queues e.  Takes ownership of e.  Returns 0 or -1. */
static int emit(session_t *s, sevent *e)
{
    e->s = s;
    e->ev.conversation = s->id;
    e->ev.seq = ++s->next_seq;
    e->ev.text = e->text;
    e->ev.options = e->options;
    e->ev.detail = e->detail;
    e->ev.client_id = e->client_id;
    util_iso_now(e->ev.ts, sizeof(e->ev.ts));
    e->next = NULL;
    *s->pending_tail = e;
    s->pending_tail = &e->next;
    s->refs++;
    if (store_append_event(s->m->store, &e->ev, on_stored, e) != 0) {
        sevent **pp;
        for (pp = &s->pending; *pp != e; pp = &(*pp)->next)
            ;
        *pp = NULL;
        s->pending_tail = pp;
        s->refs--;
        s->next_seq--;
        sevent_free(e);
        return -1;
    }
    return 0;
}

int session_say(session_t *s, const char *sender, const char *text, const char *const *options,
                int n_options)
{
    sevent *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    e->ev.kind = "message";
    e->ev.sender = sender;
    if (!(e->text = strdup(text)) ||
        (n_options > 0 && !(e->options = proto_string_array(options, n_options)))) {
        sevent_free(e);
        return -1;
    }
    return emit(s, e);
}

int session_status(session_t *s, const char *state, const char *detail_json)
{
    sevent *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    e->ev.kind = "status";
    snprintf(e->state, sizeof(e->state), "%s", state);
    e->ev.state = e->state;
    if (!(e->detail = strdup(detail_json ? detail_json : "{}"))) {
        sevent_free(e);
        return -1;
    }
    return emit(s, e);
}

/* ---- the bot's turn ---- */

static const char *const greeting =
    "您好，这里是客户服务中心，很高兴为您服务。请描述您遇到的问题，我们会尽快为您处理。";

/* Keeps conversations.flow_due equal to the timer the due scan must wake this conversation
 * for.  None while the agents have the chat: its timers wait (the session stays in memory and
 * the sweep fires them after the hand back), and a due row there would be returned by every
 * scan and crowd out the conversations that are not in memory. */
static void sync_due(session_t *s)
{
    double want = s->handoff ? 0 : s->run_due;
    if (want != s->stored_due && store_set_flow_due(s->m->store, s->id, want) == 0)
        s->stored_due = want;
}

static void after_run_call(session_t *s, int rc, const char *what)
{
    if (rc == FLOW_EFAILED)
        log_warn("session", "%s: flow failed on %s: %s", s->name, what,
                 flow_run_error(s->run) ? flow_run_error(s->run) : "?");
    else if (rc == FLOW_EHOST)
        log_error("session", "%s: flow state not saved after %s", s->name, what);
    else if (rc < 0 && rc != FLOW_EENDED)
        log_error("session", "%s: flow %s error %d", s->name, what, rc);
    s->run_due = s->run ? flow_run_next_due(s->run) : 0;
    sync_due(s);
    requeue(s);
}

/* Host callbacks for the dialogue flow (flow.h): all run inside flow_run_* calls. */
static int host_say(void *host, const char *text, const char *const *options, int n)
{
    return session_say(host, "bot", text, options, n);
}

static int host_status(void *host, const char *state, const char *detail_json)
{
    return session_status(host, state, detail_json);
}

int session_escalate(session_t *s, const char *reason, int priority, const char *summary_json)
{
    char *detail = proto_escalation_detail(reason, priority);
    int rc = detail ? session_status(s, "escalated", detail) : -1;
    free(detail);
    if (store_append_internal(s->m->store, s->id, "escalation", summary_json, "bot") != 0)
        rc = -1;
    log_info("session", "%s escalated: %s (priority %d)", s->name, reason, priority);
    if (rc == 0 && s->m->agent && agent_escalate(s->m->agent, s, reason, priority, summary_json))
        rc = -1;
    return rc;
}

static int host_escalate(void *host, const char *reason, int priority, const char *summary_json)
{
    return session_escalate(host, reason, priority, summary_json);
}

static void on_saved(void *arg, int rc)
{
    session_t *s = arg;
    (void)rc; /* logged by the store */
    s->saving--;
    s->refs--;
}

static int host_save(void *host, const char *state_json)
{
    session_t *s = host;
    if (store_save_flow_state(s->m->store, s->id, state_json, on_saved, s) != 0)
        return -1;
    s->saving++;
    s->refs++;
    return 0;
}

static int host_record(void *host, const char *field, const char *value_json)
{
    session_t *s = host;
    char *detail = proto_record_detail(field, value_json);
    int rc = detail ? store_append_internal(s->m->store, s->id, "record", detail, "bot") : -1;
    free(detail);
    complaint_flow_record(s->m->complaints, s, field, value_json);
    return rc;
}

static double host_now(void *host)
{
    session_t *s = host;
    return session_mgr_now(s->m);
}

static char *host_complaint(void *host)
{
    session_t *s = host;
    return complaint_brief(s->m->complaints, s->id);
}

static const flow_host_ops host_ops = {
    host_say, host_status, host_escalate, host_save, host_record, host_now, host_complaint,
};

/* Starts (state NULL) or resumes the session's flow.  vip and count are the customer's VIP
 * level and number of earlier conversations, or count < 0 to read them now (a stored
 * conversation, which counts itself).  Returns 0, or -1 when there is none. */
static int start_run(session_t *s, const char *state, int vip, int count)
{
    int earlier = 0;
    flow_customer_t c = {0};

    if (!s->m->flow)
        return -1;
    if (count < 0) {
        earlier = 1;
        if (store_customer_info(s->m->store, s->customer_id, &vip, &count) != 0)
            vip = count = 0;
    }
    c.id = s->customer_id;
    c.name = s->customer_name[0] ? s->customer_name : NULL;
    c.channel = s->channel;
    c.vip = vip;
    c.history_count = count > earlier ? count - earlier : 0;
    s->active_ms = util_now_ms();
    int rc = flow_run_start(s->m->flow, &host_ops, s, &c, state, &s->run);
    if (s->run)
        metrics.flow_runs++;
    if (!s->run) {
        log_error("session", "%s: flow did not start (%d)", s->name, rc);
        return -1;
    }
    after_run_call(s, rc, "start");
    return 0;
}

/* Brings back a parked run from the state the store holds.  0, or -1 (no run). */
static int unpark(session_t *s)
{
    store_conv_t row;
    if (!s->run_parked)
        return s->run ? 0 : -1;
    s->run_parked = 0;
    int rc = store_find_conversation(s->m->store, s->token, &row);
    if (rc != 0 || !row.flow_state) {
        if (rc == 0)
            free(row.flow_state);
        log_error("session", "%s: the idle flow could not be restored", s->name);
        return -1;
    }
    rc = start_run(s, row.flow_state, 0, -1);
    free(row.flow_state);
    return rc;
}

static void turn(session_t *s, const char *text)
{
    metrics.turns++;
    unpark(s);
    s->active_ms = util_now_ms();
    if (s->run) {
        after_run_call(s, flow_run_input(s->run, text), "message");
        return;
    }
    if (session_say(s, "bot", "您的问题我们已经记录，正在为您查询处理方案，请稍候。", NULL, 0) != 0)
        log_error("session", "%s: reply not queued", s->name);
}

/* ---- hello ---- */

static void on_created(void *arg, int rc)
{
    session_t *s = arg;
    s->refs--;
    if (rc != 0) {
        log_error("session", "%s: conversation not stored", s->name);
        s->state = S_DEAD;
        map_del(s->m->by_token, s->token);
        if (s->conn) {
            ws_conn_t *c = s->conn;
            ws_conn_error(c, PROTO_E_INTERNAL, "could not start the conversation; try again", NULL);
            ws_conn_bind(c, NULL);
            session_detach(s, c);
        }
        requeue(s);
        return;
    }
    s->state = S_LIVE;
    requeue(s);
    if (s->conn)
        send_frame(s, proto_welcome(s->name, s->token, 0, 0));
}

static void new_conversation(session_mgr_t *m, ws_conn_t *c, const proto_in_t *in)
{
    store_conv_t row;
    int vip = 0, count = 0;
    session_t *s = session_new(m);

    if (!s)
        goto fail;
    s->id = ++m->next_id;
    s->ids_complete = 1; /* a new conversation has no messages yet */
    snprintf(s->name, sizeof(s->name), "c-%012lld", s->id);
    if (util_random_hex(s->token, 16) != 0)
        goto fail_free;
    snprintf(s->customer_id, sizeof(s->customer_id), "%s", in->customer_id);
    snprintf(s->customer_name, sizeof(s->customer_name), "%s", in->customer_name);
    snprintf(s->channel, sizeof(s->channel), "%s", in->channel);
    memset(&row, 0, sizeof(row));
    row.id = s->id;
    memcpy(row.token, s->token, sizeof(row.token));
    memcpy(row.customer_id, s->customer_id, sizeof(row.customer_id));
    memcpy(row.customer_name, s->customer_name, sizeof(row.customer_name));
    memcpy(row.channel, s->channel, sizeof(row.channel));
    if (map_put(m->by_token, s->token, s) != 0)
        goto fail_free;
    /* read before the row is queued: the writer may commit it before a later read */
    if (store_customer_info(m->store, s->customer_id, &vip, &count) != 0)
        vip = count = 0;
    s->refs++;
    if (store_create_conversation(m->store, &row, on_created, s) != 0) {
        s->refs--;
        goto fail_free;
    }
    s->state = S_CREATING;
    attach(s, c);
    if (session_status(s, "open", "{}") != 0)
        log_error("session", "%s: open status not queued", s->name);
    if (start_run(s, NULL, vip, count) != 0 && session_say(s, "bot", greeting, NULL, 0) != 0)
        log_error("session", "%s: greeting not queued", s->name);
    log_info("session", "%s started (channel %s)", s->name, s->channel);
    return;
fail_free:
    s->state = S_DEAD; /* swept once its refs are gone */
    map_del(m->by_token, s->token);
    requeue(s);
fail:
    ws_conn_error(c, PROTO_E_INTERNAL, "could not start the conversation; try again", NULL);
}

static session_t *load_conversation(session_mgr_t *m, const char *token, int *err)
{
    store_conv_t row;
    int rc = store_find_conversation(m->store, token, &row);
    *err = rc < 0;
    if (rc != 0)
        return NULL;
    session_t *s = session_new(m);
    if (!s) {
        free(row.flow_state);
        *err = 1;
        return NULL;
    }
    s->id = row.id;
    snprintf(s->name, sizeof(s->name), "c-%012lld", s->id);
    memcpy(s->token, row.token, sizeof(s->token));
    memcpy(s->customer_id, row.customer_id, sizeof(s->customer_id));
    memcpy(s->customer_name, row.customer_name, sizeof(s->customer_name));
    memcpy(s->channel, row.channel, sizeof(s->channel));
    s->next_seq = s->stored_seq = row.last_seq;
    s->state = S_LIVE;
    s->detached_ms = util_now_ms();
    if (map_put(m->by_token, s->token, s) != 0) {
        free(row.flow_state);
        s->state = S_DEAD;
        requeue(s);
        *err = 1;
        return NULL;
    }
    /* the flow resumes silently where it was; this conversation counts as one of the customer's */
    if (m->flow && row.flow_state)
        start_run(s, row.flow_state, 0, -1);
    free(row.flow_state);
    agent_session_loaded(m->agent, s);
    requeue(s);
    return s;
}

#define REPLAY_PAGE 128

typedef struct replay_ctx {
    session_t *s;
    int n, failed;
} replay_ctx;

static int replay_one(const store_event_t *ev, void *arg)
{
    replay_ctx *r = arg;
    session_t *s = r->s;
    char *json = proto_event(ev);
    r->n++;
    if (!json || !s->conn || ws_conn_send(s->conn, json) != 0) {
        r->failed = 1;
        return 1;
    }
    s->sent_seq = ev->seq;
    metrics.messages_out++;
    return 0;
}

/*
 * Sends the next page of the event log after sent_seq.  A long replay goes out a page at a time
 * (the next page when the connection's queue has drained, session_drained), so a resume never
 * floods the write queue nor holds the loop; live events wait for the replay to reach them.
 */
static void replay_page(session_t *s)
{
    replay_ctx r = {s, 0, 0};
    if (store_replay(s->m->store, s->id, s->sent_seq, REPLAY_PAGE, replay_one, &r) != 0) {
        log_error("session", "%s: replay failed", s->name);
        r.failed = 1;
    }
    if (r.failed) {
        s->replaying = 0;
        if (s->conn)
            ws_conn_close(s->conn, 1011, "replay failed; reconnect");
        return;
    }
    s->replaying = r.n == REPLAY_PAGE;
}

void session_drained(session_t *s, ws_conn_t *c)
{
    if (s->conn == c && s->replaying)
        replay_page(s);
}

static void resume(session_mgr_t *m, ws_conn_t *c, const proto_in_t *in)
{
    int err = 0;
    session_t *s = map_get(m->by_token, in->token);

    if (!s)
        s = load_conversation(m, in->token, &err);
    if (!s || s->state == S_DEAD) {
        if (err)
            ws_conn_error(c, PROTO_E_INTERNAL, "could not load the conversation; try again", NULL);
        else
            ws_conn_error(c, PROTO_E_UNKNOWN_TOKEN, "no conversation has this token", NULL);
        return;
    }
    if (in->last_seq > s->next_seq) {
        char msg[128];
        snprintf(msg, sizeof(msg), "resume.last_seq %lld is beyond the latest seq %lld",
                 in->last_seq, s->next_seq);
        ws_conn_error(c, PROTO_E_BAD_FIELD, msg, NULL);
        return;
    }
    if (s->conn) {
        ws_conn_t *old = s->conn;
        session_detach(s, old);
        ws_conn_bind(old, NULL);
        ws_conn_close(old, 4000, "superseded");
    }
    attach(s, c);
    s->sent_seq = in->last_seq;
    send_frame(s, proto_welcome(s->name, s->token, s->stored_seq, 1));
    replay_page(s);
    log_info("session", "%s resumed after seq %lld", s->name, in->last_seq);
}

void session_hello(session_mgr_t *m, ws_conn_t *c, const proto_in_t *in)
{
    if (in->kind == PROTO_HELLO_RESUME)
        resume(m, c, in);
    else
        new_conversation(m, c, in);
}

/* ---- customer messages ---- */

/* 1 when id is certainly not a message of this conversation yet: every id the conversation
 * has is in s->ids (it started in this process and has had at most RECENT_IDS messages) and
 * this one's hash is not among them.  Otherwise the database decides (a resend is rare). */
static int known_new_id(session_t *s, uint64_t h)
{
    if (!s->ids_complete)
        return 0;
    for (int i = 0; i < s->nids; i++)
        if (s->ids[i] == h)
            return 0;
    return 1;
}

static void remember_id(session_t *s, uint64_t h)
{
    if (s->nids < RECENT_IDS)
        s->ids[s->nids++] = h;
    else
        s->ids_complete = 0;
}

void session_message(session_t *s, ws_conn_t *c, const proto_in_t *in)
{
    long long seq;
    int rc;
    uint64_t t_in = uv_hrtime();
    uint64_t h = util_hash_str(in->id);

    for (sevent *e = s->pending; e; e = e->next)
        if (e->client_id && strcmp(e->client_id, in->id) == 0) {
            e->extra_acks++;
            return;
        }
    rc = known_new_id(s, h) ? 1 : store_find_client_message(s->m->store, s->id, in->id, &seq);
    if (rc == 0) {
        send_frame(s, proto_ack(in->id, seq));
        return;
    }
    if (rc < 0) {
        ws_conn_error(c, PROTO_E_INTERNAL, "message not stored; send it again", in->id);
        return;
    }
    sevent *e = calloc(1, sizeof(*e));
    if (!e ||
        !(e->text = s->m->cfg->mask_transcripts ? privacy_mask_dup(in->text) : strdup(in->text)) ||
        !(e->client_id = strdup(in->id))) {
        if (e)
            sevent_free(e);
        ws_conn_error(c, PROTO_E_INTERNAL, "message not stored; send it again", in->id);
        return;
    }
    e->ev.kind = "message";
    e->ev.sender = "customer";
    store_group_begin(s->m->store);
    if (emit(s, e) != 0) {
        ws_conn_error(c, PROTO_E_INTERNAL, "message not stored; send it again", in->id);
    } else {
        remember_id(s, h);
        if (!(s->handoff && s->m->agent) && !s->m->stopping) {
            e->turned = 1; /* (e stays in `pending` until the group is done) */
            e->t_in = t_in;
            turn(s, e->text);
            e->t_ran = uv_hrtime();
        }
    }
    store_group_end(s->m->store);
}

/* ---- hand-off ---- */

session_t *session_mgr_load(session_mgr_t *m, long long id)
{
    char token[33];
    int err = 0;
    int rc = store_conversation_token(m->store, id, token); /* the key of the session map */
    if (rc != 0) {
        if (rc < 0)
            log_error("session", "conversation %lld: cannot read it", id);
        return NULL;
    }
    session_t *s = map_get(m->by_token, token);
    if (!s)
        s = load_conversation(m, token, &err);
    return s && s->state != S_DEAD ? s : NULL;
}

long long session_id(const session_t *s)
{
    return s->id;
}

const char *session_name(const session_t *s)
{
    return s->name;
}

const char *session_token(const session_t *s)
{
    return s->token;
}

const char *session_channel(const session_t *s)
{
    return s->channel;
}

const char *session_customer_id(const session_t *s)
{
    return s->customer_id;
}

const char *session_customer_name(const session_t *s)
{
    return s->customer_name;
}

void session_set_handoff(session_t *s, int open)
{
    s->handoff = open;
    if (!open) {
        s->detached_ms = util_now_ms(); /* kept in memory for the usual time from now on */
    } else {
        sync_due(s);
    }
    requeue(s);
}

int session_agent_say(session_t *s, const char *text, long long *seq)
{
    if (session_say(s, "agent", text, NULL, 0) != 0)
        return -1;
    *seq = s->next_seq;
    return 0;
}

int session_handback(session_t *s, const char *how)
{
    int rc = session_status(s, "bot_resumed", "{}");
    session_set_handoff(s, 0);
    if (!s->m->stopping && unpark(s) == 0) {
        s->active_ms = util_now_ms();
        after_run_call(s, flow_run_handback(s->run, how), how);
    }
    return rc;
}
