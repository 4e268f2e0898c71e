/*
 * flow_run.c - one conversation running one flow: steps, events, timers, save and restore.
 *
 * A run owns its C struct (flow_run_t) and, in the VM, one "run table" held by a registry
 * reference: {inst = flow instance, chat = chat object, state = chat.state, co = the current
 * step's coroutine, customer = read-only profile}.  The host owns the run and frees it with
 * flow_run_free(), which detaches the chat object and drops the reference.
 *
 * Steps and events.  A flow is a set of named steps; the current step runs as a coroutine
 * that yields only in chat:ask.  Everything that happens to a run is an event:
 *
 *   in       a customer message: on_message, then the escalation hook, then (unless that
 *            escalated) the coroutine is resumed with the text
 *   timer    a chat:after timer came due: its handler runs, then the escalation hook
 *   timeout  the question being waited on timed out: chat:ask returns nil, "timeout"; then the
 *            escalation hook
 *
 * The escalation hook (rules/escalation.lua, escalation_hook) sees ctx.event "message" or
 * "timer" and never runs while the run is escalated or replaying: a hook escalation only sets the
 * escalated mark, which is saved, and an input's log entry records it ("e") so that a replay
 * does not hand the message to the flow either.  Every escalation (hook, chat:escalate, flow
 * failure) is remembered in r->escalations with its turn and time, and the hand-back time is
 * added to the last one; the list is saved with the run and shown to the hook and to flows, so
 * rules can tell a trigger a human already saw from a new one.
 *
 * When a step function returns the name of the next step, the run snapshots the state ("base":
 * chat.state, timers, clock, turn, last message) and starts an empty event log for the new step.
 * Each event of the step is appended to the log.  The saved JSON holds base + log, so a restart
 * can rebuild the exact coroutine position: flow_run_start() creates the step's coroutine from
 * base and replays the logged events with all output muted (replaying = 1) - the customer saw
 * those messages already.  Flows must therefore be deterministic given their events (math.random
 * is not available; chat:now() returns the event's logged time).  If the replay diverges (the
 * rules changed and the step ends early) the remaining events are dropped and the run continues
 * live from there.  A step's log is bounded (FLOW_MAX_LOG): long loops should return a step name
 * (even their own) to start afresh.
 *
 * Hot reload.  A run keeps executing the flow instance it has; at every step boundary
 * (enter_step) it moves to the engine's current generation when that has the same flow and the
 * next step.  The escalation hook always comes from the current generation.
 *
 * Failure.  Any Lua error, a kill (instructions, memory) or an unsaveable state fails the run:
 * finish_call() says the flow's error_message (or a default), escalates "flow_error", drops the
 * coroutine and saves status "failed".  Only that run is affected.
 *
 * Run states and transitions:
 *
 *   (new) --flow_run_start--> WAITING (step S, coroutine suspended in chat:ask)
 *   WAITING --flow_run_input/tick: step returns "T"--> WAITING (step T)
 *   WAITING --step returns nothing--> DONE --flow_run_input, flow has on_done--> WAITING
 *   any --error/kill/bad state (finish_call)--> FAILED
 *   escalated mark: set by chat:escalate or the hook, cleared by flow_run_handback, which then
 *   asks the flow's on_handback: a step name enters that step (from WAITING or DONE, like
 *   on_done), nil repeats the pending question
 *
 * Every public call: flow_begin -> flow_protected(entry) -> finish_call (failure handling,
 * flow_end, ops->save).
 */
#include "flow_internal.h"
#include "json_print.h"
#include "log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODULE "flow"
#define DEFAULT_ERROR_MESSAGE "抱歉，系统处理您的消息时出现了问题。正在为您转接人工客服，请稍候。"
#define DEFAULT_HANDOVER "正在为您转接人工客服，请稍候。"
#define MAX_TICK_EVENTS 256

enum { CALL_START, CALL_RESTORE, CALL_INPUT, CALL_TICK, CALL_HANDBACK, CALL_FREE, CALL_DROP };

typedef struct call_ctx {
    flow_run_t *r;
    int kind;
    const char *text; /* the customer's message; for a hand-back, how */
    double now;
    const cJSON *doc;
    int rc; /* FLOW_OK, or FLOW_ESTATE for a start that names no known flow */
} call_ctx;

/* ---- small helpers ---- */

static double host_clock(flow_run_t *r)
{
    if (r->ops->now)
        return r->ops->now(r->host);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double flow_run_clock(flow_run_t *r)
{
    return r->now > 0 ? r->now : host_clock(r);
}

static void set_str(char **dst, const char *src)
{
    char *copy = src ? strdup(src) : NULL;
    free(*dst);
    *dst = copy;
}

/* Records why the run fails (the first reason wins).  Returns -1. */
static int run_fail(flow_run_t *r, const char *fmt, ...)
{
    if (!r->fail_text) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&r->fail_text, fmt, ap) < 0)
            r->fail_text = NULL;
        va_end(ap);
        if (!r->fail_text)
            r->fail_text = strdup("out of memory");
    }
    return -1;
}

static void push_rt(lua_State *L, flow_run_t *r)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
}

void flow_run_push_state(lua_State *L, flow_run_t *r)
{
    push_rt(L, r);
    lua_getfield(L, -1, "state");
    lua_remove(L, -2);
}

void flow_run_push_inst(lua_State *L, flow_run_t *r)
{
    push_rt(L, r);
    lua_getfield(L, -1, "inst");
    lua_remove(L, -2);
}

lua_State *flow_run_thread(lua_State *L, flow_run_t *r)
{
    push_rt(L, r);
    lua_getfield(L, -1, "co");
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 2);
    return co;
}

static cJSON *dup(const cJSON *j)
{
    return j ? cJSON_Duplicate(j, 1) : NULL;
}

/* Adds JSON text the run owns (base, cur_state) to o as a raw item that points at it: printed
 * as it is, not copied, not freed with o.  cJSON_CreateRaw would copy it on every save. */
static void add_raw(cJSON *o, const char *key, char *text)
{
    cJSON *raw = cJSON_CreateNull();
    if (raw) {
        raw->type = cJSON_Raw | cJSON_IsReference;
        raw->valuestring = text;
    }
    cJSON_AddItemToObject(o, key, raw);
}

/* The run's last state as a tree (for the escalation summary), or NULL. */
static cJSON *parse_state(const flow_run_t *r)
{
    return r->cur_state ? cJSON_Parse(r->cur_state) : NULL;
}

/* ---- talking to the host ---- */

int flow_run_say(flow_run_t *r, const char *text, const char *const *options, int n)
{
    const char *opts[FLOW_MAX_OPTIONS];
    char *fixed[FLOW_MAX_OPTIONS + 1] = {NULL};
    int rc = -1;
    if (r->replaying)
        return 0;
    if (n > FLOW_MAX_OPTIONS)
        n = FLOW_MAX_OPTIONS;
    size_t len = strlen(text);
    if (!flow_utf8_valid(text, len)) {
        fixed[FLOW_MAX_OPTIONS] = flow_utf8_clean(text, len);
        if (!fixed[FLOW_MAX_OPTIONS])
            goto out;
        text = fixed[FLOW_MAX_OPTIONS];
        log_warn(MODULE, "flow %s step %s: message with invalid UTF-8 (repaired)", r->flow,
                 r->step ? r->step : "-");
    }
    for (int i = 0; i < n; i++) {
        opts[i] = options[i];
        if (!flow_utf8_valid(options[i], strlen(options[i]))) {
            fixed[i] = flow_utf8_clean(options[i], strlen(options[i]));
            if (!fixed[i])
                goto out;
            opts[i] = fixed[i];
        }
    }
    rc = r->ops->say(r->host, text, n ? opts : NULL, n);
    if (rc != 0)
        log_warn(MODULE, "host refused a bot message (%d)", rc);
out:
    for (int i = 0; i <= FLOW_MAX_OPTIONS; i++)
        free(fixed[i]);
    return rc;
}

int flow_run_record(flow_run_t *r, const char *field, const char *value_json)
{
    if (r->replaying)
        return 0;
    int rc = r->ops->record(r->host, field, value_json);
    if (rc != 0)
        log_warn(MODULE, "host refused record field %s (%d)", field, rc);
    return rc;
}

int flow_run_emit_status(flow_run_t *r, const char *state, const char *detail_json)
{
    if (r->replaying)
        return 0;
    int rc = r->ops->status(r->host, state, detail_json);
    if (rc != 0)
        log_warn(MODULE, "host refused status %s (%d)", state, rc);
    return rc;
}

int flow_group_valid(const char *s, size_t len)
{
    if (len == 0 || len > FLOW_MAX_GROUP)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* Adds key: an array of the strings (or {title=} objects' titles) of the list state[key]; an
 * empty array when there is none.  At most 20. */
static void add_titles(cJSON *o, const cJSON *state, const char *key)
{
    cJSON *a = cJSON_CreateArray();
    const cJSON *list = state ? cJSON_GetObjectItemCaseSensitive(state, key) : NULL, *e;
    int n = 0;
    if (!a)
        return;
    if (!cJSON_IsArray(list))
        list = NULL;
    cJSON_ArrayForEach(e, list)
    {
        const cJSON *t = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "title") : e;
        if (cJSON_IsString(t) && n++ < 20)
            cJSON_AddItemToArray(a, cJSON_CreateString(t->valuestring));
    }
    cJSON_AddItemToObject(o, key, a);
}

/* Adds the mood, its "trend" always an array of scores (a flow keeping another shape, or a
 * state saved before trends were lists, gives [score] or []). */
static void add_mood(cJSON *o, const cJSON *state)
{
    const cJSON *m = state ? cJSON_GetObjectItemCaseSensitive(state, "mood") : NULL;
    if (!cJSON_IsObject(m))
        return;
    cJSON *copy = dup(m);
    if (!copy)
        return;
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(copy, "trend"))) {
        const cJSON *score = cJSON_GetObjectItemCaseSensitive(copy, "score");
        cJSON *trend = cJSON_CreateArray();
        if (trend && cJSON_IsNumber(score))
            cJSON_AddItemToArray(trend, cJSON_CreateNumber(score->valuedouble));
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "trend");
        cJSON_AddItemToObject(copy, "trend", trend);
    }
    cJSON_AddItemToObject(o, "mood", copy);
}

/* The escalation summary: why, who, where in the flow, and the conversation's key facts:
 * reason, priority, group (when the rule gave one), flow, step, turn, customer, category,
 * severity, mood (with trend, the recent scores), slots, summary, expectation, solution,
 * deadlines, offered and refused (solution titles), last_text, error (flow_error only). */
static const char *const summary_keys[] = {"category",    "severity", "slots",     "summary",
                                           "expectation", "solution", "deadlines", NULL};
/* the other fields it reads: add_mood's and add_titles' (summary_state converts these too) */
static const char *const summary_more[] = {"mood", "offered", "refused", NULL};

static char *summary_json(flow_run_t *r, const cJSON *state, const char *reason, int priority,
                          const char *group, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *cu = cJSON_CreateObject();
    char *s = NULL;
    if (!o || !cu) {
        cJSON_Delete(cu);
        goto out;
    }
    cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddNumberToObject(o, "priority", priority);
    if (group)
        cJSON_AddStringToObject(o, "group", group);
    cJSON_AddStringToObject(o, "flow", r->flow ? r->flow : "");
    if (r->step)
        cJSON_AddStringToObject(o, "step", r->step);
    cJSON_AddNumberToObject(o, "turn", (double)r->turn);
    cJSON_AddStringToObject(cu, "id", r->cid);
    if (r->cname)
        cJSON_AddStringToObject(cu, "name", r->cname);
    cJSON_AddStringToObject(cu, "channel", r->channel);
    cJSON_AddNumberToObject(cu, "vip", r->vip);
    cJSON_AddNumberToObject(cu, "history_count", r->history_count);
    cJSON_AddItemToObject(o, "customer", cu);
    for (int i = 0; summary_keys[i] && state; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(state, summary_keys[i]);
        if (v)
            cJSON_AddItemToObject(o, summary_keys[i], dup(v));
    }
    add_mood(o, state);
    add_titles(o, state, "offered");
    add_titles(o, state, "refused");
    if (r->last_text)
        cJSON_AddStringToObject(o, "last_text", r->last_text);
    if (error) {
        const char *nl = strchr(error, '\n');
        char *first = strndup(error, nl ? (size_t)(nl - error) : strlen(error));
        if (first)
            cJSON_AddStringToObject(o, "error", first);
        free(first);
    }
    s = json_print(o);
out:
    cJSON_Delete(o);
    return s;
}

/* Appends an escalation to r->escalations, dropping the oldest beyond FLOW_MAX_ESCALATIONS. */
static void remember_escalation(flow_run_t *r, const char *reason, int priority, const char *group,
                                const char *by)
{
    cJSON *e = cJSON_CreateObject();
    if (!r->escalations)
        r->escalations = cJSON_CreateArray();
    if (!e || !r->escalations) {
        cJSON_Delete(e);
        return;
    }
    cJSON_AddStringToObject(e, "reason", reason);
    cJSON_AddNumberToObject(e, "priority", priority);
    cJSON_AddNumberToObject(e, "turn", (double)r->turn);
    cJSON_AddNumberToObject(e, "at", flow_run_clock(r));
    cJSON_AddStringToObject(e, "by", by);
    if (group)
        cJSON_AddStringToObject(e, "group", group);
    while (cJSON_GetArraySize(r->escalations) >= FLOW_MAX_ESCALATIONS)
        cJSON_DeleteItemFromArray(r->escalations, 0);
    cJSON_AddItemToArray(r->escalations, e);
}

void flow_run_push_escalations(lua_State *L, flow_run_t *r)
{
    if (r->escalations)
        flow_push_json(L, r->escalations);
    else
        lua_newtable(L);
    flow_push_readonly(L, -1);
    lua_remove(L, -2);
}

/* The fields of chat.state that the summary reads (summary_keys, summary_more), as they are
 * now: a table of only those is converted (a state's texts and solutions are most of it).
 * NULL when one cannot be saved. */
static cJSON *summary_state(lua_State *L, flow_run_t *r)
{
    int top = lua_gettop(L);
    luaL_checkstack(L, 6, "summary_state");
    flow_run_push_state(L, r);
    if (flow_push_view_target(L, -1)) /* a view: what it shows */
        lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_createtable(L, 0, 10);
        for (int k = 0; k < 2; k++)
            for (const char *const *key = k ? summary_more : summary_keys; *key; key++) {
                lua_pushstring(L, *key);
                lua_pushvalue(L, -1);
                lua_rawget(L, -4); /* raw: none of the flow's metamethods runs here */
                lua_rawset(L, -3);
            }
    }
    cJSON *state = flow_to_json(L, -1, "chat.state", NULL, 0);
    lua_settop(L, top);
    return state;
}

int flow_run_escalate(lua_State *L, flow_run_t *r, const char *reason, int priority,
                      const char *message, const char *group, const char *by)
{
    if (r->replaying || r->escalated)
        return 0;
    cJSON *state = NULL;
    if (L && r->ref != LUA_NOREF)
        state = summary_state(L, r);
    if (!state)
        state = parse_state(r);
    if (message)
        flow_run_say(r, message, NULL, 0);
    char *sum = summary_json(r, state, reason, priority, group, NULL);
    cJSON_Delete(state);
    if (!sum)
        return -1;
    int rc = r->ops->escalate(r->host, reason, priority, sum);
    free(sum);
    if (rc == 0) {
        r->escalated = 1;
        remember_escalation(r, reason, priority, group, by);
        log_info(MODULE, "customer %s escalated: %s (priority %d, %s, flow %s step %s)", r->cid,
                 reason, priority, by, r->flow, r->step ? r->step : "-");
    } else {
        log_warn(MODULE, "host refused escalation %s (%d)", reason, rc);
    }
    return rc;
}

/* ---- calling flow code ---- */

/* Calls the function below nargs arguments on the main thread with a traceback.  On error the
 * run fails with "what: message".  Returns 0 (nres results pushed) or -1 (nothing pushed). */
static int pcall_flow(lua_State *L, flow_run_t *r, int nargs, int nres, const char *what)
{
    int fn = lua_gettop(L) - nargs;
    lua_pushcfunction(L, flow_traceback);
    lua_insert(L, fn);
    int st = lua_pcall(L, nargs, nres, fn);
    if (st != LUA_OK) {
        char msg[4096];
        if (st == LUA_ERRMEM)
            snprintf(msg, sizeof(msg), "not enough memory (flow.max_memory_mb)");
        else
            flow_error_text(L, -1, msg, sizeof(msg));
        lua_settop(L, fn - 1);
        return run_fail(r, "%s: %s", what, msg);
    }
    lua_remove(L, fn);
    return 0;
}

/* Pushes a new instance of the run's flow from the generation at gen (0), or returns -1 when
 * the generation has no such flow, -2 when its code failed (message in msg); nothing pushed. */
static int new_instance(lua_State *L, flow_run_t *r, int gen, char *msg, size_t msglen);

static int instantiate_fn(lua_State *L)
{
    if (flow_instantiate(L, 1, lua_tostring(L, 2)) != 0)
        lua_pushnil(L);
    return 1;
}

static int new_instance(lua_State *L, flow_run_t *r, int gen, char *msg, size_t msglen)
{
    gen = lua_absindex(L, gen);
    lua_pushcfunction(L, flow_traceback);
    lua_pushcfunction(L, instantiate_fn);
    lua_pushvalue(L, gen);
    lua_pushstring(L, r->flow);
    int st = lua_pcall(L, 2, 1, -4);
    if (st != LUA_OK) {
        if (st == LUA_ERRMEM)
            snprintf(msg, msglen, "not enough memory");
        else
            flow_error_text(L, -1, msg, msglen);
        lua_pop(L, 2);
        return -2;
    }
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* Makes the instance on top the run's (pops it). */
static void adopt_instance(lua_State *L, flow_run_t *r)
{
    lua_getfield(L, -1, "error_message");
    set_str(&r->error_message, lua_tostring(L, -1));
    lua_pop(L, 1);
    push_rt(L, r);
    lua_insert(L, -2);
    lua_setfield(L, -2, "inst");
    lua_pop(L, 1);
    r->inst_gen = r->e->gen;
}

/* At a step boundary: move to the current generation when it has this flow and step. */
static void upgrade(lua_State *L, flow_run_t *r, const char *step)
{
    char msg[1024];
    if (r->inst_gen == r->e->gen)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->e->gen_ref);
    int rc = new_instance(L, r, -1, msg, sizeof(msg));
    if (rc == 0) {
        lua_getfield(L, -1, "steps");
        int has = lua_getfield(L, -1, step) == LUA_TFUNCTION;
        lua_pop(L, 2);
        if (has) {
            adopt_instance(L, r);
            lua_pop(L, 1);
            return;
        }
        lua_pop(L, 1);
        log_info(MODULE, "flow %s generation %u has no step %s; run stays on generation %u",
                 r->flow, r->e->gen, step, r->inst_gen);
    } else if (rc == -2) {
        log_warn(MODULE, "flow %s generation %u failed to start (%s); run stays on %u", r->flow,
                 r->e->gen, msg, r->inst_gen);
    }
    lua_pop(L, 1);
}

/* Converts chat.state; fails the run when it cannot be saved.  Returns the JSON text or NULL. */
static char *state_json(lua_State *L, flow_run_t *r)
{
    char err[512];
    flow_run_push_state(L, r);
    char *j = flow_to_json_text(L, -1, "chat.state", err, sizeof(err));
    lua_pop(L, 1);
    if (!j)
        run_fail(r, "%s", err);
    return j;
}

/* Records the state at the end of a call (cur_state). */
static void capture_state(lua_State *L, flow_run_t *r)
{
    if (r->fail_text || r->ref == LUA_NOREF)
        return;
    char *j = state_json(L, r);
    if (j) {
        free(r->cur_state);
        r->cur_state = j;
    }
}

/* Creates the coroutine for `step` of the run's instance and pushes (fn, chat, state) on it.
 * Returns it, or NULL when the step does not exist (run failed). */
static lua_State *start_coroutine(lua_State *L, flow_run_t *r, const char *step)
{
    push_rt(L, r);
    int rt = lua_gettop(L);
    lua_getfield(L, rt, "inst");
    lua_getfield(L, -1, "steps");
    if (lua_getfield(L, -1, step) != LUA_TFUNCTION) {
        lua_settop(L, rt - 1);
        run_fail(r, "flow %s has no step \"%s\"", r->flow, step);
        return NULL;
    }
    int fn = lua_gettop(L);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, rt, "co");
    lua_pushvalue(L, fn);
    lua_getfield(L, rt, "chat");
    lua_getfield(L, rt, "state");
    lua_xmove(L, co, 3);
    lua_settop(L, rt - 1);
    set_str(&r->step, step);
    r->status = FLOW_RUN_WAITING;
    r->waiting = 0;
    r->ask_due = 0;
    return co;
}

/* A step boundary: upgrade, snapshot, fresh log, new coroutine. */
static lua_State *enter_step(lua_State *L, flow_run_t *r, const char *name)
{
    char step[64];
    snprintf(step, sizeof(step), "%s", name);
    upgrade(L, r, step);
    char *st = state_json(L, r);
    if (!st)
        return NULL;
    /* The snapshot is printed once here: every save of the step repeats the same text. */
    cJSON *b = cJSON_CreateObject();
    cJSON *log = cJSON_CreateArray();
    char *text = NULL;
    if (b && log) {
        free(r->cur_state);
        r->cur_state = st;
        st = NULL;
        add_raw(b, "state", r->cur_state);
        if (r->timers)
            cJSON_AddItemReferenceToObject(b, "timers", r->timers);
        cJSON_AddNumberToObject(b, "next_timer", (double)r->next_timer);
        cJSON_AddNumberToObject(b, "t", r->now);
        cJSON_AddNumberToObject(b, "turn", (double)r->turn);
        if (r->last_text)
            cJSON_AddStringToObject(b, "last", r->last_text);
        text = json_print(b);
    }
    cJSON_Delete(b);
    if (!text) {
        free(st);
        cJSON_Delete(log);
        luaL_error(L, "not enough memory");
    }
    free(r->base);
    r->base = text;
    cJSON_Delete(r->log);
    r->log = log;
    return start_coroutine(L, r, step);
}

static void finish_flow(lua_State *L, flow_run_t *r)
{
    push_rt(L, r);
    lua_pushnil(L);
    lua_setfield(L, -2, "co");
    lua_pop(L, 1);
    free(r->step);
    r->step = NULL;
    r->status = FLOW_RUN_DONE;
    r->waiting = 0;
    r->ask_due = 0;
    free(r->base);
    r->base = NULL;
    cJSON_Delete(r->log);
    r->log = NULL;
}

/*
 * Resumes co with nargs values on its stack and follows the flow through step boundaries until
 * it waits in chat:ask, ends, or fails.  Returns 0, or -1 when the run failed.
 */
static int drive(lua_State *L, flow_run_t *r, lua_State *co, int nargs)
{
    for (;;) {
        int nres = 0;
        flow_arm(co);
        r->waiting = 0;
        int st = lua_resume(co, L, nargs, &nres);
        if (st == LUA_YIELD) {
            lua_pop(co, nres);
            if (!r->waiting)
                return run_fail(r, "step %s yielded outside chat:ask", r->step);
            return 0;
        }
        if (st != LUA_OK) {
            char msg[2048];
            if (st == LUA_ERRMEM)
                snprintf(msg, sizeof(msg), "not enough memory (flow.max_memory_mb)");
            else
                flow_error_text(co, -1, msg, sizeof(msg));
            luaL_traceback(L, co, msg, 0);
            run_fail(r, "%s", lua_tostring(L, -1));
            lua_pop(L, 1);
            return -1;
        }
        char next[64] = "";
        if (nres > 0 && !lua_isnil(co, -nres)) {
            size_t len;
            const char *s =
                lua_type(co, -nres) == LUA_TSTRING ? lua_tolstring(co, -nres, &len) : NULL;
            if (!s || len == 0 || len >= sizeof(next))
                return run_fail(r,
                                "step %s must return the name of the next step, or nothing to "
                                "end the flow (it returned a %s)",
                                r->step, luaL_typename(co, -nres));
            memcpy(next, s, len + 1);
        }
        lua_pop(co, nres);
        if (!next[0]) {
            finish_flow(L, r);
            return 0;
        }
        if (++r->steps_this_call > FLOW_MAX_STEPS_PER_CALL)
            return run_fail(r,
                            "more than %d step changes without waiting for the customer "
                            "(last: %s -> %s)",
                            FLOW_MAX_STEPS_PER_CALL, r->step, next);
        if (r->replaying) {
            log_warn(MODULE,
                     "customer %s: replay of flow %s step %s diverged (rules changed?); "
                     "continuing live",
                     r->cid, r->flow, r->step);
            r->replaying = 0;
        }
        co = enter_step(L, r, next);
        if (!co)
            return -1;
        nargs = 2;
    }
}

/* ---- events ---- */

static cJSON *log_event(flow_run_t *r, const char *kind)
{
    if (r->replaying || r->status != FLOW_RUN_WAITING || !r->log)
        return NULL;
    if (cJSON_GetArraySize(r->log) >= FLOW_MAX_LOG) {
        run_fail(r,
                 "step %s handled more than %d events; long-running steps should return a "
                 "step name (even their own) to start afresh",
                 r->step, FLOW_MAX_LOG);
        return NULL;
    }
    cJSON *e = cJSON_CreateObject();
    if (!e)
        return NULL;
    cJSON_AddStringToObject(e, "k", kind);
    cJSON_AddNumberToObject(e, "t", r->now);
    cJSON_AddItemToArray(r->log, e);
    return e;
}

static int call_on_message(lua_State *L, flow_run_t *r, const char *text)
{
    flow_run_push_inst(L, r);
    if (lua_getfield(L, -1, "on_message") != LUA_TFUNCTION) {
        lua_pop(L, 2);
        return 0;
    }
    lua_remove(L, -2);
    push_rt(L, r);
    lua_getfield(L, -1, "chat");
    lua_remove(L, -2);
    lua_pushstring(L, text);
    return pcall_flow(L, r, 2, 0, "on_message");
}

/* Runs rules/escalation.lua's hook after a customer message (text) or after a due timer or
 * answer timeout (text NULL; timer names it, "timeout" for an answer timeout).  The hook gets
 * ctx = {event = "message" | "timer", text, timer, now, state (read-only chat.state), customer,
 * turn, flow, step, escalations} and returns nil, a reason, or {reason=, priority=, message=,
 * group=}.
 * Returns 1 (escalated), 0 (not) or -1 (run failed). */
static int escalation_hook(lua_State *L, flow_run_t *r, const char *text, const char *timer)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->e->gen_ref);
    if (lua_getfield(L, -1, "escalation") != LUA_TFUNCTION) {
        lua_pop(L, 2);
        return 0;
    }
    lua_remove(L, -2);
    lua_createtable(L, 0, 12);
    lua_pushstring(L, text ? "message" : "timer");
    lua_setfield(L, -2, "event");
    if (text) {
        lua_pushstring(L, text);
        lua_setfield(L, -2, "text");
    }
    if (timer) {
        lua_pushstring(L, timer);
        lua_setfield(L, -2, "timer");
    }
    lua_pushnumber(L, flow_run_clock(r));
    lua_setfield(L, -2, "now");
    flow_run_push_state(L, r);
    flow_push_readonly(L, -1);
    lua_setfield(L, -3, "state");
    lua_pop(L, 1);
    push_rt(L, r);
    lua_getfield(L, -1, "customer");
    lua_setfield(L, -3, "customer");
    lua_pop(L, 1);
    lua_pushinteger(L, r->turn);
    lua_setfield(L, -2, "turn");
    lua_pushstring(L, r->flow);
    lua_setfield(L, -2, "flow");
    if (r->step) {
        lua_pushstring(L, r->step);
        lua_setfield(L, -2, "step");
    }
    flow_run_push_escalations(L, r);
    lua_setfield(L, -2, "escalations");
    if (pcall_flow(L, r, 1, 1, "escalation hook") != 0)
        return -1;
    char reason[80] = "", group[FLOW_MAX_GROUP + 1] = "", message[FLOW_MAX_SAY + 1] = "";
    const char *bad = NULL;
    lua_Integer prio = 2;
    int t = lua_type(L, -1);
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        lua_pop(L, 1);
        return 0;
    }
    if (t == LUA_TSTRING) {
        snprintf(reason, sizeof(reason), "%s", lua_tostring(L, -1));
    } else if (t == LUA_TTABLE) {
        if (lua_getfield(L, -1, "reason") == LUA_TSTRING)
            snprintf(reason, sizeof(reason), "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "priority") != LUA_TNIL) {
            prio = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
            if (prio < 1 || prio > 3)
                bad = "escalation hook: priority must be 1, 2 or 3";
        }
        lua_pop(L, 1);
        int gt = lua_getfield(L, -1, "group");
        size_t glen = 0;
        const char *g = gt == LUA_TSTRING ? lua_tolstring(L, -1, &glen) : NULL;
        if (gt != LUA_TNIL && (!g || !flow_group_valid(g, glen)))
            bad = "escalation hook: group must be 1-32 of a-z 0-9 _";
        else if (g)
            memcpy(group, g, glen + 1);
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "message") == LUA_TSTRING)
            snprintf(message, sizeof(message), "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (bad)
        return run_fail(r, "%s", bad);
    size_t rl = strlen(reason);
    int ok = rl > 0 && rl <= 64;
    for (size_t i = 0; i < rl; i++)
        if (!((reason[i] >= 'a' && reason[i] <= 'z') || (reason[i] >= '0' && reason[i] <= '9') ||
              reason[i] == '_' || reason[i] == '.'))
            ok = 0;
    if (!ok)
        return run_fail(r, "escalation hook must return nil, a reason (a-z 0-9 _ .) or "
                           "{reason=, priority=, message=, group=}");
    int rc = flow_run_escalate(L, r, reason, (int)prio, message[0] ? message : DEFAULT_HANDOVER,
                               group[0] ? group : NULL, "rule");
    return rc == 0 ? 1 : 0;
}

/* A customer message.  logged is the log entry when replaying, else NULL.  0 or -1. */
static int deliver_input(lua_State *L, flow_run_t *r, const char *text, const cJSON *logged)
{
    r->turn++;
    set_str(&r->last_text, text);
    cJSON *entry = logged ? NULL : log_event(r, "in");
    if (r->fail_text)
        return -1;
    if (entry)
        cJSON_AddStringToObject(entry, "x", text);
    if (call_on_message(L, r, text) != 0)
        return -1;
    int esc;
    if (logged)
        esc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(logged, "e"));
    else if (r->escalated)
        esc = 1;
    else if ((esc = escalation_hook(L, r, text, NULL)) < 0)
        return -1;
    if (esc) {
        if (entry)
            cJSON_AddTrueToObject(entry, "e");
        return 0;
    }
    if (r->status == FLOW_RUN_DONE) {
        char step[64] = "";
        flow_run_push_inst(L, r);
        if (lua_getfield(L, -1, "on_done") == LUA_TSTRING)
            snprintf(step, sizeof(step), "%s", lua_tostring(L, -1));
        lua_pop(L, 2);
        if (!step[0])
            return 0;
        lua_State *co = enter_step(L, r, step);
        return co ? drive(L, r, co, 2) : -1;
    }
    if (!r->waiting)
        return 0;
    lua_State *co = flow_run_thread(L, r);
    if (!co)
        return run_fail(r, "internal: waiting run without a coroutine");
    r->ask_due = 0;
    lua_pushstring(co, text);
    return drive(L, r, co, 1);
}

/* A due timer (r->firing, detached from r->timers). */
static int deliver_timer(lua_State *L, flow_run_t *r)
{
    const cJSON *t = r->firing;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
    char what[96];
    if (!cJSON_IsNumber(id) || !cJSON_IsString(name))
        return 0;
    cJSON *entry = log_event(r, "timer");
    if (r->fail_text)
        return -1;
    if (entry)
        cJSON_AddNumberToObject(entry, "id", id->valuedouble);
    flow_run_push_inst(L, r);
    lua_getfield(L, -1, "timers");
    if (lua_type(L, -1) != LUA_TTABLE || lua_getfield(L, -1, name->valuestring) != LUA_TFUNCTION) {
        log_warn(MODULE, "flow %s has no timer %s any more; dropped", r->flow, name->valuestring);
        lua_settop(L, lua_gettop(L) - 3);
        return 0;
    }
    lua_insert(L, -3);
    lua_pop(L, 2);
    push_rt(L, r);
    lua_getfield(L, -1, "chat");
    lua_remove(L, -2);
    const cJSON *arg = cJSON_GetObjectItemCaseSensitive(t, "arg");
    if (arg)
        flow_push_json(L, arg);
    else
        lua_pushnil(L);
    snprintf(what, sizeof(what), "timer %s", name->valuestring);
    return pcall_flow(L, r, 2, 0, what);
}

static int deliver_timeout(lua_State *L, flow_run_t *r)
{
    if (!r->waiting || r->escalated)
        return 0;
    r->ask_due = 0;
    log_event(r, "timeout");
    if (r->fail_text)
        return -1;
    lua_State *co = flow_run_thread(L, r);
    if (!co)
        return 0;
    lua_pushnil(co);
    lua_pushliteral(co, "timeout");
    return drive(L, r, co, 2);
}

/* Detaches the timer with this id (or the earliest due at or before `now` when id < 0). */
static cJSON *take_timer(flow_run_t *r, long long id, double now, double *due_out)
{
    cJSON *best = NULL;
    double bdue = 0;
    cJSON *t;
    cJSON_ArrayForEach(t, r->timers)
    {
        const cJSON *tid = cJSON_GetObjectItemCaseSensitive(t, "id");
        const cJSON *due = cJSON_GetObjectItemCaseSensitive(t, "due");
        if (!cJSON_IsNumber(tid) || !cJSON_IsNumber(due))
            continue;
        if (id >= 0) {
            if ((long long)tid->valuedouble == id) {
                best = t;
                break;
            }
        } else if (due->valuedouble <= now && (!best || due->valuedouble < bdue)) {
            best = t;
            bdue = due->valuedouble;
        }
    }
    if (best && due_out)
        *due_out = bdue;
    return best;
}

static void fire(flow_run_t *r, cJSON *t)
{
    cJSON_Delete(r->firing);
    r->firing = cJSON_DetachItemViaPointer(r->timers, t);
}

/* ---- protected entries ---- */

static void push_customer(lua_State *L, flow_run_t *r)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, r->cid);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, r->cname ? r->cname : "");
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, r->vip > 0);
    lua_setfield(L, -2, "vip");
    lua_pushinteger(L, r->vip);
    lua_setfield(L, -2, "vip_level");
    lua_pushstring(L, r->channel);
    lua_setfield(L, -2, "channel");
    lua_pushinteger(L, r->history_count);
    lua_setfield(L, -2, "history_count");
    flow_push_readonly(L, -1);
    lua_remove(L, -2);
}

/* Replays the saved log of the current step (muted). */
static void replay(lua_State *L, flow_run_t *r, const cJSON *log)
{
    flow_engine_t *e = r->e;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, log)
    {
        if (!r->replaying || r->fail_text)
            break;
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(ev, "k");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "t");
        if (!cJSON_IsString(k) || !cJSON_IsNumber(t))
            continue;
        e->budget = e->max_instr;
        e->turn_net = 0;
        r->now = t->valuedouble;
        /* keep the saved entry in the rebuilt log */
        cJSON_AddItemToArray(r->log, dup(ev));
        if (strcmp(k->valuestring, "in") == 0) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(ev, "x");
            if (cJSON_IsString(x))
                deliver_input(L, r, x->valuestring, ev);
        } else if (strcmp(k->valuestring, "timer") == 0) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "id");
            cJSON *tm =
                cJSON_IsNumber(id) ? take_timer(r, (long long)id->valuedouble, 0, NULL) : NULL;
            if (tm) {
                fire(r, tm);
                deliver_timer(L, r);
            }
        } else if (strcmp(k->valuestring, "timeout") == 0) {
            deliver_timeout(L, r);
        }
    }
}

static int restore(lua_State *L, call_ctx *c)
{
    flow_run_t *r = c->r;
    const cJSON *doc = c->doc;
    const char *status = cJSON_GetObjectItemCaseSensitive(doc, "status")->valuestring;
    const cJSON *esc = cJSON_GetObjectItemCaseSensitive(doc, "escalated");
    int saved_escalated = cJSON_IsTrue(esc);

    if (strcmp(status, "waiting") != 0) {
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(doc, "state");
        const cJSON *timers = cJSON_GetObjectItemCaseSensitive(doc, "timers");
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
        push_rt(L, r);
        if (cJSON_IsObject(state))
            flow_push_json(L, state);
        else
            lua_newtable(L);
        lua_setfield(L, -2, "state");
        lua_pop(L, 1);
        if (cJSON_IsArray(timers)) {
            cJSON_Delete(r->timers);
            r->timers = dup(timers);
        }
        r->escalated = saved_escalated;
        if (strcmp(status, "failed") == 0) {
            r->status = FLOW_RUN_FAILED;
            set_str(&r->error, cJSON_IsString(err) ? err->valuestring : "failed earlier");
            return 0;
        }
        r->status = FLOW_RUN_DONE;
        return 0;
    }

    const cJSON *base = cJSON_GetObjectItemCaseSensitive(doc, "base");
    const cJSON *log = cJSON_GetObjectItemCaseSensitive(doc, "log");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(doc, "step");
    const cJSON *bstate = cJSON_GetObjectItemCaseSensitive(base, "state");
    const cJSON *btimers = cJSON_GetObjectItemCaseSensitive(base, "timers");
    const cJSON *bnext = cJSON_GetObjectItemCaseSensitive(base, "next_timer");
    const cJSON *bt = cJSON_GetObjectItemCaseSensitive(base, "t");
    const cJSON *bturn = cJSON_GetObjectItemCaseSensitive(base, "turn");
    const cJSON *blast = cJSON_GetObjectItemCaseSensitive(base, "last");
    push_rt(L, r);
    flow_push_json(L, bstate);
    lua_setfield(L, -2, "state");
    lua_pop(L, 1);
    cJSON_Delete(r->timers);
    r->timers = cJSON_IsArray(btimers) ? dup(btimers) : cJSON_CreateArray();
    r->next_timer = cJSON_IsNumber(bnext) ? (long long)bnext->valuedouble : 0;
    r->now = cJSON_IsNumber(bt) ? bt->valuedouble : c->now;
    r->turn = cJSON_IsNumber(bturn) ? (long long)bturn->valuedouble : 0;
    set_str(&r->last_text, cJSON_IsString(blast) ? blast->valuestring : NULL);
    free(r->base);
    r->base = json_print(base);
    cJSON_Delete(r->log);
    r->log = cJSON_CreateArray();
    if (!r->timers || !r->base || !r->log)
        return luaL_error(L, "not enough memory");
    r->replaying = 1;
    lua_State *co = start_coroutine(L, r, step->valuestring);
    if (co && drive(L, r, co, 2) == 0)
        replay(L, r, log);
    r->replaying = 0;
    r->escalated = saved_escalated;
    r->now = c->now;
    return 0;
}

static int start_entry(lua_State *L)
{
    call_ctx *c = lua_touserdata(L, 1);
    flow_run_t *r = c->r;
    char msg[2048];
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->e->gen_ref);
    int gen = lua_gettop(L);
    if (!r->flow) {
        lua_getfield(L, gen, "default");
        r->flow = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!r->flow)
            return luaL_error(L, "not enough memory");
    }
    /* The run table. */
    lua_createtable(L, 0, 6);
    push_customer(L, r);
    lua_setfield(L, -2, "customer");
    flow_push_chat(L, r);
    lua_setfield(L, -2, "chat");
    lua_createtable(L, 0, 4);
    lua_newtable(L);
    lua_setfield(L, -2, "slots");
    lua_setfield(L, -2, "state");
    r->ref = luaL_ref(L, LUA_REGISTRYINDEX);

    int rc = new_instance(L, r, gen, msg, sizeof(msg));
    if (rc == -1 && c->kind == CALL_START) {
        c->rc = FLOW_ESTATE;
        return 0;
    }
    if (rc == -1) {
        run_fail(r, "the saved conversation runs flow \"%s\", which no longer exists", r->flow);
        return 0;
    }
    if (rc == -2) {
        run_fail(r, "%s", msg);
        return 0;
    }
    adopt_instance(L, r);

    if (c->kind == CALL_RESTORE) {
        restore(L, c);
    } else {
        flow_run_push_inst(L, r);
        lua_getfield(L, -1, "start");
        char start[64];
        snprintf(start, sizeof(start), "%s", lua_tostring(L, -1));
        lua_pop(L, 2);
        lua_State *co = enter_step(L, r, start);
        if (co)
            drive(L, r, co, 2);
    }
    capture_state(L, r);
    return 0;
}

static int input_entry(lua_State *L)
{
    call_ctx *c = lua_touserdata(L, 1);
    deliver_input(L, c->r, c->text, NULL);
    capture_state(L, c->r);
    return 0;
}

static int tick_entry(lua_State *L)
{
    call_ctx *c = lua_touserdata(L, 1);
    flow_run_t *r = c->r;
    for (int i = 0; i < MAX_TICK_EVENTS && !r->fail_text; i++) {
        double tdue = 0;
        cJSON *t = take_timer(r, -1, c->now, &tdue);
        int timeout = r->waiting && !r->escalated && r->ask_due > 0 && r->ask_due <= c->now &&
                      (!t || r->ask_due <= tdue);
        char name[64] = "timeout";
        r->now = c->now;
        if (timeout) {
            deliver_timeout(L, r);
        } else if (t) {
            const cJSON *tn = cJSON_GetObjectItemCaseSensitive(t, "name");
            if (cJSON_IsString(tn))
                snprintf(name, sizeof(name), "%s", tn->valuestring);
            fire(r, t);
            deliver_timer(L, r);
        } else {
            break;
        }
        /* the escalation rules also watch the clock (a promised deadline coming due) */
        if (!r->fail_text && !r->escalated && r->status != FLOW_RUN_FAILED)
            escalation_hook(L, r, NULL, name);
    }
    capture_state(L, r);
    return 0;
}

/* Says the question the flow waits on again, with its quick replies (nothing when it waits on
 * none). */
static void repeat_pending(flow_run_t *r)
{
    const char *opts[FLOW_MAX_OPTIONS];
    int n = 0;
    const cJSON *o;
    if (r->status != FLOW_RUN_WAITING || !r->waiting || !r->pending_text)
        return;
    cJSON_ArrayForEach(o, r->pending_options)
    {
        if (n < FLOW_MAX_OPTIONS && cJSON_IsString(o))
            opts[n++] = o->valuestring;
    }
    flow_run_say(r, r->pending_text, opts, n);
}

/* Asks the flow's on_handback (a step name, or function(chat, how) returning one or nil) where
 * to go after a hand-back; fills step ("" = nowhere: repeat the pending question).  Returns 0,
 * or -1 when the run failed. */
static int handback_step(lua_State *L, flow_run_t *r, const char *how, char *step, size_t len)
{
    step[0] = '\0';
    flow_run_push_inst(L, r);
    int t = lua_getfield(L, -1, "on_handback");
    lua_remove(L, -2);
    if (t == LUA_TFUNCTION) {
        push_rt(L, r);
        lua_getfield(L, -1, "chat");
        lua_remove(L, -2);
        lua_pushstring(L, how);
        if (pcall_flow(L, r, 2, 1, "on_handback") != 0)
            return -1;
        t = lua_type(L, -1);
    }
    if (t == LUA_TSTRING) {
        size_t n;
        const char *name = lua_tolstring(L, -1, &n);
        if (n > 0 && n < len)
            memcpy(step, name, n + 1);
        else
            t = LUA_TNONE;
    } else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        t = LUA_TNIL;
    }
    lua_pop(L, 1);
    if (t != LUA_TSTRING && t != LUA_TNIL)
        return run_fail(r, "on_handback must be a step name, or a function(chat, how) returning "
                           "a step name or nil");
    return 0;
}

static int handback_entry(lua_State *L)
{
    call_ctx *c = lua_touserdata(L, 1);
    flow_run_t *r = c->r;
    char step[64];
    if (handback_step(L, r, c->text, step, sizeof(step)) == 0) {
        if (step[0]) {
            lua_State *co = enter_step(L, r, step);
            if (co)
                drive(L, r, co, 2);
        } else {
            repeat_pending(r);
        }
    }
    capture_state(L, r);
    return 0;
}

/* Drops the coroutine of a failed run. */
static int drop_entry(lua_State *L)
{
    flow_run_t *r = lua_touserdata(L, 1);
    push_rt(L, r);
    lua_pushnil(L);
    lua_setfield(L, -2, "co");
    return 0;
}

static int free_entry(lua_State *L)
{
    flow_run_t *r = lua_touserdata(L, 1);
    push_rt(L, r);
    lua_getfield(L, -1, "chat");
    flow_chat_detach(L, -1);
    luaL_unref(L, LUA_REGISTRYINDEX, r->ref);
    r->ref = LUA_NOREF;
    return 0;
}

/* ---- saving ---- */

static const char *status_name(flow_run_status_t s)
{
    return s == FLOW_RUN_DONE ? "done" : s == FLOW_RUN_FAILED ? "failed" : "waiting";
}

/* The saved document.  The run's trees are added as references (not copied) and the document
 * is printed and deleted here, so they are neither changed nor freed. */
static char *build_doc(flow_run_t *r, int with_state)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "v", 1);
    cJSON_AddStringToObject(o, "flow", r->flow ? r->flow : "");
    cJSON_AddStringToObject(o, "status", status_name(r->status));
    if (r->step)
        cJSON_AddStringToObject(o, "step", r->step);
    cJSON_AddBoolToObject(o, "escalated", r->escalated);
    cJSON_AddNumberToObject(o, "turn", (double)r->turn);
    cJSON_AddNumberToObject(o, "next_timer", (double)r->next_timer);
    if (r->timers)
        cJSON_AddItemReferenceToObject(o, "timers", r->timers);
    else
        cJSON_AddItemToObject(o, "timers", cJSON_CreateArray());
    if (with_state && r->cur_state)
        add_raw(o, "state", r->cur_state);
    else
        cJSON_AddItemToObject(o, "state", cJSON_CreateObject());
    if (r->last_text)
        cJSON_AddStringToObject(o, "last", r->last_text);
    if (r->escalations && cJSON_GetArraySize(r->escalations) > 0)
        cJSON_AddItemReferenceToObject(o, "escalations", r->escalations);
    if (r->status == FLOW_RUN_WAITING && r->step && r->base && r->log) {
        add_raw(o, "base", r->base);
        cJSON_AddItemReferenceToObject(o, "log", r->log);
    }
    if (r->status == FLOW_RUN_FAILED && r->error)
        cJSON_AddStringToObject(o, "error", r->error);
    s = json_print(o);
    cJSON_Delete(o);
    return s;
}

/* The run failed in this call: tell the customer, offer a human, drop the coroutine. */
static void fail_actions(flow_run_t *r)
{
    char perr[256];
    free(r->error);
    r->error = r->fail_text;
    r->fail_text = NULL;
    log_error(MODULE, "flow %s step %s failed for customer %s: %s", r->flow ? r->flow : "-",
              r->step ? r->step : "-", r->cid, r->error);
    r->status = FLOW_RUN_FAILED;
    r->replaying = 0;
    r->waiting = 0;
    r->ask_due = 0;
    cJSON_Delete(r->timers);
    r->timers = cJSON_CreateArray();
    free(r->base);
    r->base = NULL;
    cJSON_Delete(r->log);
    r->log = NULL;
    if (r->e && r->ref != LUA_NOREF) {
        flow_protected(r->e, drop_entry, r, perr, sizeof(perr));
        /* A failed run may have left a memory bomb behind: give it back now. */
        flow_gc_full(r->e);
    }
    if (!r->escalated) {
        flow_run_say(r, r->error_message ? r->error_message : DEFAULT_ERROR_MESSAGE, NULL, 0);
        cJSON *state = parse_state(r);
        char *sum = summary_json(r, state, "flow_error", 2, NULL, r->error);
        cJSON_Delete(state);
        if (sum && r->ops->escalate(r->host, "flow_error", 2, sum) == 0) {
            r->escalated = 1;
            remember_escalation(r, "flow_error", 2, NULL, "error");
        }
        free(sum);
    }
    free(r->step);
    r->step = NULL;
}

/* Ends every public call: failure handling, flow_end, save.  Returns the call's result. */
static int finish_call(flow_run_t *r, int prc, const char *perr)
{
    int rc = FLOW_OK;
    char *doc = NULL;
    if (prc != 0 && !r->fail_text)
        run_fail(r, "%s", perr && perr[0] ? perr : "engine error");
    if (!r->fail_text) {
        doc = build_doc(r, 1);
        if (!doc)
            run_fail(r, "out of memory saving the conversation");
        else if (strlen(doc) > FLOW_MAX_STATE) {
            run_fail(r,
                     "the conversation state is larger than %d bytes of JSON; keep less in "
                     "chat.state",
                     FLOW_MAX_STATE);
            free(doc);
            doc = NULL;
        }
    }
    if (r->fail_text) {
        fail_actions(r);
        rc = FLOW_EFAILED;
        doc = build_doc(r, 1);
        if (doc && strlen(doc) > FLOW_MAX_STATE) {
            free(doc);
            doc = build_doc(r, 0);
        }
    }
    if (r->e)
        flow_end(r->e);
    cJSON_Delete(r->firing);
    r->firing = NULL;
    cJSON_Delete(r->scratch);
    r->scratch = NULL;
    if (!doc)
        return rc == FLOW_OK ? FLOW_ENOMEM : rc;
    if (r->ops->save(r->host, doc) != 0) {
        log_warn(MODULE, "host failed to save the flow state of customer %s", r->cid);
        if (rc == FLOW_OK)
            rc = FLOW_EHOST;
    }
    free(doc);
    return rc;
}

/* ---- public API ---- */

/* Checks a saved document enough that restore() can trust its shape.  0 or -1. */
static int check_doc(const cJSON *doc)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "v");
    const cJSON *flow = cJSON_GetObjectItemCaseSensitive(doc, "flow");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(doc, "status");
    if (!cJSON_IsObject(doc) || !cJSON_IsNumber(v) || v->valuedouble != 1 ||
        !cJSON_IsString(flow) || !flow->valuestring[0] || !cJSON_IsString(status))
        return -1;
    if (strcmp(status->valuestring, "waiting") == 0) {
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(doc, "step");
        const cJSON *base = cJSON_GetObjectItemCaseSensitive(doc, "base");
        const cJSON *log = cJSON_GetObjectItemCaseSensitive(doc, "log");
        if (!cJSON_IsString(step) || !cJSON_IsObject(base) || !cJSON_IsArray(log) ||
            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(base, "state")))
            return -1;
        return 0;
    }
    if (strcmp(status->valuestring, "done") == 0 || strcmp(status->valuestring, "failed") == 0)
        return 0;
    return -1;
}

static void unlink_run(flow_run_t *r)
{
    if (!r->e)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        r->e->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void free_fields(flow_run_t *r)
{
    free(r->flow);
    free(r->step);
    free(r->pending_text);
    cJSON_Delete(r->pending_options);
    cJSON_Delete(r->timers);
    free(r->base);
    cJSON_Delete(r->log);
    free(r->cur_state);
    cJSON_Delete(r->firing);
    cJSON_Delete(r->scratch);
    cJSON_Delete(r->escalations);
    free(r->last_text);
    free(r->error);
    free(r->fail_text);
    free(r->error_message);
    free(r->cid);
    free(r->cname);
    free(r->channel);
    free(r);
}

int flow_run_start(flow_engine_t *e, const flow_host_ops *ops, void *host, const flow_customer_t *c,
                   const char *saved_state_json, flow_run_t **out)
{
    flow_run_t *r = NULL;
    cJSON *doc = NULL;
    char perr[2048] = "";
    int rc;
    if (out)
        *out = NULL;
    if (!e || !ops || !ops->say || !ops->status || !ops->escalate || !ops->save || !ops->record ||
        !c || !c->id || !c->id[0] || strlen(c->id) > 128 || !out)
        return FLOW_EINVAL;
    if (saved_state_json) {
        doc = cJSON_Parse(saved_state_json);
        if (!doc)
            return FLOW_ESTATE;
        if (check_doc(doc) != 0) {
            rc = FLOW_ESTATE;
            goto fail;
        }
    }
    rc = FLOW_ENOMEM;
    r = calloc(1, sizeof(*r));
    if (!r)
        goto fail;
    r->e = e;
    r->ops = ops;
    r->host = host;
    r->ref = LUA_NOREF;
    r->status = FLOW_RUN_WAITING;
    r->cid = strdup(c->id);
    r->cname = c->name ? strdup(c->name) : NULL;
    r->channel = strdup(c->channel ? c->channel : "web");
    r->vip = c->vip;
    r->history_count = c->history_count;
    r->timers = cJSON_CreateArray();
    if (doc)
        r->flow = strdup(cJSON_GetObjectItemCaseSensitive(doc, "flow")->valuestring);
    else if (c->flow)
        r->flow = strdup(c->flow);
    if (!r->cid || !r->channel || !r->timers || (c->name && !r->cname) ||
        ((doc || c->flow) && !r->flow))
        goto fail;
    if (doc) {
        const cJSON *turn = cJSON_GetObjectItemCaseSensitive(doc, "turn");
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_timer");
        const cJSON *last = cJSON_GetObjectItemCaseSensitive(doc, "last");
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(doc, "state");
        const cJSON *escs = cJSON_GetObjectItemCaseSensitive(doc, "escalations");
        r->escalations = cJSON_IsArray(escs) ? dup(escs) : NULL;
        r->turn = cJSON_IsNumber(turn) ? (long long)turn->valuedouble : 0;
        r->next_timer = cJSON_IsNumber(next) ? (long long)next->valuedouble : 0;
        set_str(&r->last_text, cJSON_IsString(last) ? last->valuestring : NULL);
        r->cur_state = cJSON_IsObject(state) ? json_print(state) : NULL;
    }
    r->next = e->runs;
    if (e->runs)
        e->runs->prev = r;
    e->runs = r;

    call_ctx cc = {r, doc ? CALL_RESTORE : CALL_START, NULL, host_clock(r), doc, FLOW_OK};
    flow_begin(e, r);
    r->now = cc.now;
    int prc = flow_protected(e, start_entry, &cc, perr, sizeof(perr));
    if (cc.rc == FLOW_ESTATE) {
        flow_end(e);
        rc = FLOW_ESTATE;
        goto fail;
    }
    rc = finish_call(r, prc, perr);
    cJSON_Delete(doc);
    *out = r;
    return rc;
fail:
    cJSON_Delete(doc);
    if (r) {
        if (r->ref != LUA_NOREF && r->e)
            flow_protected(e, free_entry, r, NULL, 0);
        unlink_run(r);
        free_fields(r);
    }
    return rc;
}

static int begin_call(flow_run_t *r)
{
    if (!r)
        return FLOW_EINVAL;
    if (!r->e || r->status == FLOW_RUN_FAILED)
        return FLOW_EENDED;
    flow_begin(r->e, r);
    r->steps_this_call = 0;
    return FLOW_OK;
}

int flow_run_input(flow_run_t *r, const char *text)
{
    char perr[2048] = "";
    if (!r || !text || !text[0] || !flow_utf8_valid(text, strlen(text)))
        return FLOW_EINVAL;
    int rc = begin_call(r);
    if (rc != FLOW_OK)
        return rc;
    call_ctx cc = {r, CALL_INPUT, text, host_clock(r), NULL, FLOW_OK};
    r->now = cc.now;
    int prc = flow_protected(r->e, input_entry, &cc, perr, sizeof(perr));
    return finish_call(r, prc, perr);
}

int flow_run_tick(flow_run_t *r, double now)
{
    char perr[2048] = "";
    if (!r)
        return FLOW_EINVAL;
    if (flow_run_next_due(r) == 0 || flow_run_next_due(r) > now)
        return r->e && r->status != FLOW_RUN_FAILED ? FLOW_OK : FLOW_EENDED;
    int rc = begin_call(r);
    if (rc != FLOW_OK)
        return rc;
    call_ctx cc = {r, CALL_TICK, NULL, now, NULL, FLOW_OK};
    int prc = flow_protected(r->e, tick_entry, &cc, perr, sizeof(perr));
    return finish_call(r, prc, perr);
}

double flow_run_next_due(const flow_run_t *r)
{
    double best = 0;
    if (!r || !r->e || r->status == FLOW_RUN_FAILED)
        return 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, r->timers)
    {
        const cJSON *due = cJSON_GetObjectItemCaseSensitive(t, "due");
        if (cJSON_IsNumber(due) && (best == 0 || due->valuedouble < best))
            best = due->valuedouble;
    }
    if (r->waiting && !r->escalated && r->ask_due > 0 && (best == 0 || r->ask_due < best))
        best = r->ask_due;
    return best;
}

int flow_run_handback(flow_run_t *r, const char *how)
{
    char perr[2048] = "";
    if (!how)
        how = "handback";
    if (!r || (strcmp(how, "resolved") != 0 && strcmp(how, "handback") != 0))
        return FLOW_EINVAL;
    int rc = begin_call(r);
    if (rc != FLOW_OK)
        return rc;
    call_ctx cc = {r, CALL_HANDBACK, how, host_clock(r), NULL, FLOW_OK};
    r->now = cc.now;
    if (r->escalated) {
        cJSON *last = cJSON_GetArrayItem(r->escalations, cJSON_GetArraySize(r->escalations) - 1);
        if (cJSON_IsObject(last) && !cJSON_GetObjectItemCaseSensitive(last, "back")) {
            cJSON_AddNumberToObject(last, "back", cc.now);
            cJSON_AddStringToObject(last, "how", how);
        }
    }
    r->escalated = 0;
    int prc = flow_protected(r->e, handback_entry, &cc, perr, sizeof(perr));
    return finish_call(r, prc, perr);
}

flow_run_status_t flow_run_status(const flow_run_t *r)
{
    return r ? r->status : FLOW_RUN_FAILED;
}

int flow_run_escalated(const flow_run_t *r)
{
    return r ? r->escalated : 0;
}

const char *flow_run_step(const flow_run_t *r)
{
    return r ? r->step : NULL;
}

const char *flow_run_error(const flow_run_t *r)
{
    return r ? r->error : NULL;
}

void flow_run_free(flow_run_t *r)
{
    if (!r)
        return;
    if (r->e) {
        unlink_run(r);
        if (r->ref != LUA_NOREF)
            flow_protected(r->e, free_entry, r, NULL, 0);
    }
    free_fields(r);
}
