/*
 * flow_api.c - what flows may call: the chat object, kb.search and clock.
 *
 * Design.  The chat object handed to every step is a full userdata holding its flow_run_t
 * pointer (set to NULL by flow_chat_detach when the run ends, after which every method raises
 * "this conversation has ended").  Its metatable is protected; reads go to chat_index, which
 * serves the fields (state, slots, customer, flow, step, last, turn, escalated, escalations)
 * and otherwise the methods table; writes raise an error.
 *
 * The methods are built in two layers:
 *   - C primitives (api_say, api_ask, api_escalate, api_record, api_status, api_after,
 *     api_cancel, api_now, api_complaint) validate arguments and call the run (flow_run.c),
 *     which talks to the host.  They live in a private table that only the prelude sees.
 *   - The prelude, a Lua chunk compiled once per VM from PRELUDE below, builds the public
 *     methods on top: say, ask, wait, choose (quick replies with forgiving matching: label,
 *     number, synonyms, negation), confirm (yes/no), match (the same matching for any text),
 *     escalate, record, status, after, cancel, now, complaint, failed.  Its table is frozen
 * (read-only view) and shared by all runs; it keeps no state.
 *
 * chat:ask is the only thing that yields a step's coroutine: api_ask says the question, marks
 * the run waiting and calls lua_yield; flow_run.c resumes the coroutine with the customer's
 * text (or nil, "timeout").  It refuses to run outside the run's step coroutine (on_message,
 * timers and the escalation hook cannot wait).
 *
 * Globals shared by all flows (flow_api_globals): kb = {search}, clock = {now, date, time},
 * keywords = {set} (flow_keywords.c).
 * kb.search costs KB_SEARCH_COST instructions of the turn's budget, since SQLite time is not
 * counted by the instruction hook.
 *
 * Errors raised by primitives name the flow's own line (api_error skips the prelude's frames).
 */
#include "flow_internal.h"
#include "json_print.h"
#include "kb.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define KB_SEARCH_COST 10000
#define PRELUDE_NAME "=chat"
#define MAX_TIMER_DELAY (30.0 * 86400)
#define DEFAULT_UTC_OFFSET 8

static char methods_key;

/* ---- errors that point at the flow's line ---- */

static int api_error(lua_State *L, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar))
            break;
        if (ar.currentline > 0 && strcmp(ar.source, PRELUDE_NAME) != 0) {
            lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
            return lua_error(L);
        }
    }
    lua_pushstring(L, msg);
    return lua_error(L);
}

/* ---- the chat object ---- */

static flow_run_t *check_chat(lua_State *L, int idx)
{
    flow_run_t **p = luaL_testudata(L, idx, "redress.chat");
    if (!p)
        api_error(L, "expected the chat object (use chat:method(...), with a colon)");
    if (!*p || !(*p)->e)
        api_error(L, "this conversation has ended");
    return *p;
}

void flow_push_chat(lua_State *L, flow_run_t *r)
{
    flow_run_t **p = lua_newuserdatauv(L, sizeof(*p), 0);
    *p = r;
    luaL_setmetatable(L, "redress.chat");
}

void flow_chat_detach(lua_State *L, int idx)
{
    flow_run_t **p = luaL_testudata(L, idx, "redress.chat");
    if (p)
        *p = NULL;
}

static int chat_index(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    const char *k = lua_tostring(L, 2);
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    if (strcmp(k, "state") == 0) {
        flow_run_push_state(L, r);
    } else if (strcmp(k, "slots") == 0) {
        flow_run_push_state(L, r);
        if (lua_getfield(L, -1, "slots") != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, "slots");
        }
    } else if (strcmp(k, "customer") == 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
        lua_getfield(L, -1, "customer");
    } else if (strcmp(k, "flow") == 0) {
        lua_pushstring(L, r->flow);
    } else if (strcmp(k, "step") == 0) {
        if (r->step)
            lua_pushstring(L, r->step);
        else
            lua_pushnil(L);
    } else if (strcmp(k, "last") == 0) {
        lua_pushstring(L, r->last_text ? r->last_text : "");
    } else if (strcmp(k, "turn") == 0) {
        lua_pushinteger(L, r->turn);
    } else if (strcmp(k, "escalated") == 0) {
        lua_pushboolean(L, r->escalated);
    } else if (strcmp(k, "escalations") == 0) {
        flow_run_push_escalations(L, r);
    } else {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &methods_key);
        lua_getfield(L, -1, k);
    }
    return 1;
}

static int chat_newindex(lua_State *L)
{
    return api_error(L, "chat fields cannot be changed; keep conversation data in chat.state");
}

/* ---- argument checks ---- */

static int ident_ok(const char *s, size_t len, size_t max, int dots)
{
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (dots && c == '.')))
            return 0;
    }
    return 1;
}

static const char *check_text(lua_State *L, int idx, const char *fn)
{
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
        api_error(L, "%s: the text must be a string (got %s)", fn, luaL_typename(L, idx));
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (len == 0)
        api_error(L, "%s: the text is empty", fn);
    if (len > FLOW_MAX_SAY)
        api_error(L, "%s: the text is longer than %d bytes", fn, FLOW_MAX_SAY);
    return s;
}

/* Reads an options list at idx into opts (pointers into Lua strings kept on the stack by the
 * caller's argument).  Returns the count. */
static int check_options(lua_State *L, int idx, const char *fn, const char **opts)
{
    if (lua_isnoneornil(L, idx))
        return 0;
    if (lua_type(L, idx) != LUA_TTABLE)
        api_error(L, "%s: options must be a list of strings", fn);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n > FLOW_MAX_OPTIONS)
        api_error(L, "%s: at most %d options", fn, FLOW_MAX_OPTIONS);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        size_t len;
        if (lua_type(L, -1) != LUA_TSTRING || (lua_tolstring(L, -1, &len), len == 0) || len > 200)
            api_error(L, "%s: option %d must be a non-empty string of at most 200 bytes", fn,
                      (int)i);
        opts[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1); /* still referenced by the options table */
    }
    return (int)n;
}

/* ---- primitives (seen by the prelude only) ---- */

static int api_say(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    const char *opts[FLOW_MAX_OPTIONS];
    const char *text = check_text(L, 2, "chat:say");
    int n = check_options(L, 3, "chat:say", opts);
    lua_pushboolean(L, flow_run_say(r, text, opts, n) == 0);
    return 1;
}

static int api_ask(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    const char *opts[FLOW_MAX_OPTIONS];
    /* text nil: chat:wait - wait without saying anything (the pending question stays) */
    const char *text = lua_isnil(L, 2) ? NULL : check_text(L, 2, "chat:ask");
    int n = check_options(L, 3, "chat:ask", opts);
    double timeout = 0;
    if (!lua_isnoneornil(L, 4)) {
        if (!lua_isnumber(L, 4) || lua_tonumber(L, 4) <= 0 || lua_tonumber(L, 4) > MAX_TIMER_DELAY)
            api_error(L, "chat:ask: timeout must be a number of seconds, 0 < timeout <= %d",
                      (int)MAX_TIMER_DELAY);
        timeout = lua_tonumber(L, 4);
    }
    if (flow_run_thread(L, r) != L || !lua_isyieldable(L))
        api_error(L, "chat:ask can only wait inside a step (not in on_message, timers, the "
                     "escalation hook, or a sort/gsub callback)");
    if (text) {
        flow_run_say(r, text, opts, n);
        free(r->pending_text);
        r->pending_text = strdup(text);
        cJSON_Delete(r->pending_options);
        r->pending_options = n ? cJSON_CreateStringArray(opts, n) : NULL;
    }
    r->ask_due = timeout > 0 ? r->now + timeout : 0;
    r->waiting = 1;
    return lua_yield(L, 0);
}

static int api_escalate(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    size_t len;
    const char *reason = luaL_optlstring(L, 2, "requested", &len);
    if (!ident_ok(reason, len, 64, 1))
        api_error(L, "chat:escalate: reason must be 1-64 of a-z 0-9 _ . (got \"%s\")", reason);
    lua_Integer prio = 1;
    if (!lua_isnoneornil(L, 3)) {
        if (!lua_isinteger(L, 3) || lua_tointeger(L, 3) < 1 || lua_tointeger(L, 3) > 3)
            api_error(L, "chat:escalate: priority must be 1 (normal), 2 (high) or 3 (urgent)");
        prio = lua_tointeger(L, 3);
    }
    const char *msg = lua_isnoneornil(L, 4) ? NULL : check_text(L, 4, "chat:escalate");
    const char *group = NULL;
    if (!lua_isnoneornil(L, 5)) {
        group = lua_type(L, 5) == LUA_TSTRING ? lua_tolstring(L, 5, &len) : NULL;
        if (!group || !flow_group_valid(group, len))
            api_error(L, "chat:escalate: group must be 1-%d of a-z 0-9 _", FLOW_MAX_GROUP);
    }
    lua_pushboolean(L, flow_run_escalate(L, r, reason, (int)prio, msg, group, "flow") == 0);
    return 1;
}

static int api_record(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    size_t len;
    const char *field = luaL_checklstring(L, 2, &len);
    char err[300];
    if (!ident_ok(field, len, 32, 0))
        api_error(L, "chat:record: field must be 1-32 of a-z 0-9 _ (got \"%s\")", field);
    cJSON *j = flow_to_json(L, 3, "chat:record value", err, sizeof(err));
    if (!j)
        api_error(L, "%s", err);
    char *text = json_print(j);
    cJSON_Delete(j);
    if (!text)
        return luaL_error(L, "not enough memory");
    int rc = flow_run_record(r, field, text);
    free(text);
    lua_pushboolean(L, rc == 0);
    return 1;
}

static int api_status(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    size_t len;
    const char *state = luaL_checklstring(L, 2, &len);
    char err[300];
    if (!ident_ok(state, len, 32, 0))
        api_error(L, "chat:status: state must be 1-32 of a-z 0-9 _ (got \"%s\")", state);
    cJSON *j;
    if (lua_isnoneornil(L, 3)) {
        j = cJSON_CreateObject();
    } else {
        if (lua_type(L, 3) != LUA_TTABLE)
            api_error(L, "chat:status: detail must be a table");
        j = flow_to_json(L, 3, "chat:status detail", err, sizeof(err));
        if (!j)
            api_error(L, "%s", err);
        if (cJSON_IsArray(j) && cJSON_GetArraySize(j) > 0) {
            cJSON_Delete(j);
            api_error(L, "chat:status: detail must have named fields, not be a list");
        }
        if (cJSON_IsArray(j)) {
            cJSON_Delete(j);
            j = cJSON_CreateObject();
        }
    }
    char *text = j ? json_print(j) : NULL;
    cJSON_Delete(j);
    if (!text)
        return luaL_error(L, "not enough memory");
    int rc = flow_run_emit_status(r, state, text);
    free(text);
    lua_pushboolean(L, rc == 0);
    return 1;
}

static int api_after(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    char err[300];
    if (!lua_isnumber(L, 2) || lua_tonumber(L, 2) <= 0 || lua_tonumber(L, 2) > MAX_TIMER_DELAY)
        api_error(L, "chat:after: seconds must be a number, 0 < seconds <= %d",
                  (int)MAX_TIMER_DELAY);
    double secs = lua_tonumber(L, 2);
    const char *name = luaL_checkstring(L, 3);
    flow_run_push_inst(L, r);
    if (lua_getfield(L, -1, "timers") != LUA_TTABLE || lua_getfield(L, -1, name) != LUA_TFUNCTION)
        api_error(L, "chat:after: the flow has no timer named \"%s\" (add it to timers = {...})",
                  name);
    lua_pop(L, 3);
    if (cJSON_GetArraySize(r->timers) >= FLOW_MAX_TIMERS)
        api_error(L, "chat:after: more than %d pending timers", FLOW_MAX_TIMERS);
    cJSON *arg = flow_to_json(L, 4, "chat:after argument", err, sizeof(err));
    if (!arg)
        api_error(L, "%s", err);
    cJSON *t = cJSON_CreateObject();
    long long id = ++r->next_timer;
    if (!t || !cJSON_AddNumberToObject(t, "id", (double)id) ||
        !cJSON_AddNumberToObject(t, "due", r->now + secs) ||
        !cJSON_AddStringToObject(t, "name", name)) {
        cJSON_Delete(t);
        cJSON_Delete(arg);
        return luaL_error(L, "not enough memory");
    }
    cJSON_AddItemToObject(t, "arg", arg);
    cJSON_AddItemToArray(r->timers, t);
    lua_pushinteger(L, id);
    return 1;
}

static int api_cancel(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    int isnum = lua_isinteger(L, 2);
    lua_Integer id = isnum ? lua_tointeger(L, 2) : 0;
    const char *name = isnum ? NULL : luaL_checkstring(L, 2);
    int removed = 0;
    cJSON *t = r->timers->child;
    while (t) {
        cJSON *next = t->next;
        cJSON *tid = cJSON_GetObjectItem(t, "id");
        cJSON *tname = cJSON_GetObjectItem(t, "name");
        if ((isnum && tid && (lua_Integer)tid->valuedouble == id) ||
            (!isnum && cJSON_IsString(tname) && strcmp(tname->valuestring, name) == 0)) {
            cJSON_Delete(cJSON_DetachItemViaPointer(r->timers, t));
            removed++;
        }
        t = next;
    }
    lua_pushinteger(L, removed);
    return 1;
}

static int api_now(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    lua_pushnumber(L, flow_run_clock(r));
    return 1;
}

/* chat:complaint(): the host's view of the conversation's complaint record as a table
 * {number, status, status_text, next_due, created_at}, or nil.  Live data, not replayed: the
 * host answers with the record as it is now, also while a restart replays a step. */
static int api_complaint(lua_State *L)
{
    flow_run_t *r = check_chat(L, 1);
    char *text = r->ops->complaint ? r->ops->complaint(r->host) : NULL;
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        lua_pushnil(L);
        return 1;
    }
    /* held by the run while pushed: a memory error in flow_push_json leaves it to finish_call */
    cJSON_Delete(r->scratch);
    r->scratch = j;
    flow_push_json(L, j);
    r->scratch = NULL;
    cJSON_Delete(j);
    return 1;
}

/* ---- kb ---- */

/* Protected helper: converts a kb_result_t (light userdata) into a Lua table. */
static int push_kb_result(lua_State *L)
{
    const kb_result_t *res = lua_touserdata(L, 1);
    static const char *const conf[] = {"none", "suggest", "answer"};
    lua_createtable(L, 0, 2);
    int c = res->confidence;
    lua_pushstring(L, conf[c >= 0 && c <= 2 ? c : 0]);
    lua_setfield(L, -2, "confidence");
    lua_createtable(L, res->count, 0);
    for (int i = 0; i < res->count; i++) {
        const kb_hit_t *h = &res->hits[i];
        lua_createtable(L, 0, 12);
        lua_pushstring(L, h->kind == KB_CASE ? "case" : "template");
        lua_setfield(L, -2, "kind");
        lua_pushinteger(L, h->id);
        lua_setfield(L, -2, "id");
#define STR_FIELD(name)                                                                            \
    if (h->name) {                                                                                 \
        lua_pushstring(L, h->name);                                                                \
        lua_setfield(L, -2, #name);                                                                \
    }
        STR_FIELD(key)
        STR_FIELD(title)
        STR_FIELD(category)
        STR_FIELD(text)
        STR_FIELD(snippet)
        STR_FIELD(deadline)
        STR_FIELD(compensation)
#undef STR_FIELD
        lua_pushinteger(L, h->severity);
        lua_setfield(L, -2, "severity");
        lua_pushnumber(L, h->score);
        lua_setfield(L, -2, "score");
        lua_pushnumber(L, h->coverage);
        lua_setfield(L, -2, "coverage");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "hits");
    return 1;
}

static int api_kb_search(lua_State *L)
{
    flow_engine_t *e = flow_engine_of(L);
    size_t qlen;
    const char *q = luaL_checklstring(L, 1, &qlen);
    const char *category = NULL;
    lua_Integer limit = 5;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "category") == LUA_TSTRING)
            category = lua_tostring(L, -1);
        else if (!lua_isnil(L, -1))
            api_error(L, "kb.search: category must be a string");
        if (lua_getfield(L, 2, "limit") != LUA_TNIL) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 50)
                api_error(L, "kb.search: limit must be an integer from 1 to 50");
            limit = lua_tointeger(L, -1);
        }
    }
    flow_charge(L, KB_SEARCH_COST);
    kb_result_t empty = {KB_NO_MATCH, 0, NULL};
    kb_result_t *res = NULL;
    if (e->kb && qlen > 0) {
        int rc = kb_searcher_search(e->searcher, q, category, (int)limit, &res);
        if (rc < 0) {
            log_warn("flow", "kb.search failed (%d): %s", rc, sqlite3_errmsg(e->kb));
            lua_pushnil(L);
            lua_pushliteral(L, "knowledge base error");
            return 2;
        }
    }
    lua_pushcfunction(L, push_kb_result);
    lua_pushlightuserdata(L, res ? res : &empty);
    int st = lua_pcall(L, 1, 1, 0);
    kb_result_free(res);
    if (st != LUA_OK)
        return lua_error(L);
    return 1;
}

/* ---- clock ---- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int api_clock_now(lua_State *L)
{
    flow_engine_t *e = flow_engine_of(L);
    lua_pushnumber(L, e->current ? flow_run_clock(e->current) : wall_now());
    return 1;
}

static lua_Integer utc_offset(lua_State *L, int idx)
{
    lua_Integer off = luaL_optinteger(L, idx, DEFAULT_UTC_OFFSET);
    if (off < -12 || off > 14)
        api_error(L, "clock: the UTC offset must be whole hours from -12 to 14");
    return off;
}

/* clock.date(t [, utc_offset_hours]) -> {year, month, day, hour, min, sec, wday (1 = Monday)} */
static int api_clock_date(lua_State *L)
{
    double t = luaL_checknumber(L, 1);
    lua_Integer off = utc_offset(L, 2);
    if (!isfinite(t) || fabs(t) > 1e11)
        api_error(L, "clock.date: time out of range");
    time_t tt = (time_t)floor(t) + (time_t)off * 3600;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        api_error(L, "clock.date: time out of range");
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, tm.tm_year + 1900);
    lua_setfield(L, -2, "year");
    lua_pushinteger(L, tm.tm_mon + 1);
    lua_setfield(L, -2, "month");
    lua_pushinteger(L, tm.tm_mday);
    lua_setfield(L, -2, "day");
    lua_pushinteger(L, tm.tm_hour);
    lua_setfield(L, -2, "hour");
    lua_pushinteger(L, tm.tm_min);
    lua_setfield(L, -2, "min");
    lua_pushinteger(L, tm.tm_sec);
    lua_setfield(L, -2, "sec");
    lua_pushinteger(L, tm.tm_wday == 0 ? 7 : tm.tm_wday);
    lua_setfield(L, -2, "wday");
    lua_pushinteger(L, tm.tm_yday + 1);
    lua_setfield(L, -2, "yday");
    return 1;
}

static int field_int(lua_State *L, const char *k, int def, int min, int max)
{
    int t = lua_getfield(L, 1, k);
    lua_Integer v = def;
    if (t != LUA_TNIL) {
        if (!lua_isinteger(L, -1))
            api_error(L, "clock.time: field '%s' must be an integer", k);
        v = lua_tointeger(L, -1);
    } else if (def == -1) {
        api_error(L, "clock.time: field '%s' is missing", k);
    }
    if (v < min || v > max)
        api_error(L, "clock.time: field '%s' out of range", k);
    lua_pop(L, 1);
    return (int)v;
}

/* clock.time{year=, month=, day=, hour=0, min=0, sec=0} [, utc_offset_hours] -> seconds. The
 * day may overflow the month (day 0 is the last day of the previous month), as with mktime. */
static int api_clock_time(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer off = utc_offset(L, 2);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = field_int(L, "year", -1, 1970, 9999) - 1900;
    tm.tm_mon = field_int(L, "month", -1, -1200, 1200) - 1;
    tm.tm_mday = field_int(L, "day", -1, -40000, 40000);
    tm.tm_hour = field_int(L, "hour", 0, -100000, 100000);
    tm.tm_min = field_int(L, "min", 0, -100000, 100000);
    tm.tm_sec = field_int(L, "sec", 0, -100000, 100000);
    time_t t = timegm(&tm);
    lua_pushinteger(L, (lua_Integer)t - off * 3600);
    return 1;
}

void flow_api_globals(lua_State *L, int idx)
{
    static const luaL_Reg kb[] = {{"search", api_kb_search}, {NULL, NULL}};
    static const luaL_Reg clock[] = {
        {"now", api_clock_now}, {"date", api_clock_date}, {"time", api_clock_time}, {NULL, NULL}};
    flow_set_library(L, idx, "kb", kb);
    flow_set_library(L, idx, "clock", clock);
    flow_keywords_open(L, idx);
}

/* ---- the prelude ---- */

static const char PRELUDE[] =
    "local P, S, U = ...\n"
    "local find, lower, gsub, sub, format, match = S.find, S.lower, S.gsub, S.sub, S.format, "
    "S.match\n"
    "local M = {}\n"
    "local function opts_of(opts, fn)\n"
    "  if opts == nil then return {} end\n"
    "  if type(opts) ~= 'table' then error(fn .. ': the last argument must be a table', 3) end\n"
    "  return opts\n"
    "end\n"
    "function M.say(chat, text, options) return P.say(chat, text, options) end\n"
    "function M.ask(chat, text, opts)\n"
    "  opts = opts_of(opts, 'chat:ask')\n"
    "  if text == nil then error('chat:ask: the question is missing (use chat:wait to wait "
    "silently)', 2) end\n"
    "  return P.ask(chat, text, opts.options, opts.timeout)\n"
    "end\n"
    "function M.wait(chat, opts)\n"
    "  opts = opts_of(opts, 'chat:wait')\n"
    "  return P.ask(chat, nil, nil, opts.timeout)\n"
    "end\n"
    "function M.escalate(chat, reason, priority, message, group)\n"
    "  return P.escalate(chat, reason, priority, message, group)\n"
    "end\n"
    "function M.record(chat, field, value) return P.record(chat, field, value) end\n"
    "function M.status(chat, state, detail) return P.status(chat, state, detail) end\n"
    "function M.after(chat, seconds, name, arg) return P.after(chat, seconds, name, arg) end\n"
    "function M.cancel(chat, what) return P.cancel(chat, what) end\n"
    "function M.now(chat) return P.now(chat) end\n"
    "function M.complaint(chat) return P.complaint(chat) end\n"
    /* failures: the count; failure_log: the last 10 as {turn, why} (escalation.lua counts
     * those after the last escalation) */
    "function M.failed(chat, reason)\n"
    "  local s = chat.state\n"
    "  s.failures = (tonumber(s.failures) or 0) + 1\n"
    "  local log = type(s.failure_log) == 'table' and s.failure_log or {}\n"
    "  log[#log + 1] = { turn = chat.turn, why = type(reason) == 'string' and reason or "
    "'unclear' }\n"
    "  while #log > 10 do table.remove(log, 1) end\n"
    "  s.failure_log = log\n"
    "  return s.failures\n"
    "end\n"
    /* normalising answers: trim (also U+3000), lower-case ASCII, full-width digits -> ASCII */
    "local function trim(s)\n"
    "  s = gsub(s, '^[%s]+', ''); s = gsub(s, '[%s]+$', '')\n"
    "  while sub(s, 1, 3) == '\\227\\128\\128' do s = sub(s, 4) end\n"
    "  while #s >= 3 and sub(s, -3) == '\\227\\128\\128' do s = sub(s, 1, -4) end\n"
    "  return s\n"
    "end\n"
    "local TAIL = { ['。']=true, ['，']=true, ['！']=true, ['？']=true, ['、']=true,\n"
    "  ['～']=true, ['…']=true }\n"
    /* norm is pure and mostly sees the same option words: short inputs are remembered (at
     * most 4096 of them; the memo starts over when full) */
    "local memo, memo_n = {}, 0\n"
    "local function norm(s)\n"
    "  local r = memo[s]\n"
    "  if r then return r end\n"
    "  r = lower(trim(s))\n"
    "  r = gsub(r, '\\239\\188([\\144-\\153])', function(c) return S.char(S.byte(c) - 96) end)\n"
    "  r = gsub(r, '[%p%s]+$', '')\n"
    "  while #r >= 3 and TAIL[sub(r, -3)] do r = gsub(sub(r, 1, -4), '[%p%s]+$', '') end\n"
    "  if type(s) == 'string' and #s <= 64 then\n"
    "    if memo_n >= 4096 then memo, memo_n = {}, 0 end\n"
    "    memo[s], memo_n = r, memo_n + 1\n"
    "  end\n"
    "  return r\n"
    "end\n"
    /* a label's distinct characters, for step 5 of pick: counting those the answer has
     * gives what finding each of the answer's characters in the label gives (UTF-8 never
     * matches across a character boundary), in fewer steps; nil when the label is not valid
     * UTF-8 (pick then searches as before).  Remembered like norm. */
    "local own_memo, own_n = {}, 0\n"
    "local function chars_of(w)\n"
    "  local r = own_memo[w]\n"
    "  if r then return r end\n"
    "  if not U.len(w) then return nil end\n"
    "  local seen = {}\n"
    "  r = {}\n"
    "  for _, c in U.codes(w) do\n"
    "    local ch = U.char(c)\n"
    "    if not seen[ch] then seen[ch] = true; r[#r + 1] = ch end\n"
    "  end\n"
    "  if #w <= 64 then\n"
    "    if own_n >= 4096 then own_memo, own_n = {}, 0 end\n"
    "    own_memo[w], own_n = r, own_n + 1\n"
    "  end\n"
    "  return r\n"
    "end\n"
    "local CN = { ['一']=1, ['二']=2, ['两']=2, ['三']=3, ['四']=4, ['五']=5, ['六']=6,\n"
    "  ['七']=7, ['八']=8, ['九']=9, ['十']=10 }\n"
    "local function ordinal(a)\n"
    "  local d = match(a, '^(%d+)$') or match(a, '^(%d+)[%.、]') or match(a, '^第(%d+)')\n"
    "    or match(a, '^选(%d+)') or match(a, '^选项(%d+)')\n"
    "  if d then return tonumber(d) end\n"
    "  local c = match(a, '^第(...)') or match(a, '^选(...)$')\n"
    "  return c and CN[c] or nil\n"
    "end\n"
    "local function prepare(options, fn)\n"
    "  if type(options) ~= 'table' or #options == 0 then\n"
    "    error(fn .. ': options must be a non-empty list', 3)\n"
    "  end\n"
    "  local labels, words = {}, {}\n"
    "  for i = 1, #options do\n"
    "    local o, label, m = options[i]\n"
    "    if type(o) == 'string' then label = o\n"
    "    elseif type(o) == 'table' then label = o.label or o[1]; m = o.match end\n"
    "    if type(label) ~= 'string' or label == '' then\n"
    "      error(format('%s: option %d needs a label', fn, i), 3)\n"
    "    end\n"
    "    labels[i] = label\n"
    "    local w = { norm(label) }\n"
    "    if m ~= nil then\n"
    "      if type(m) ~= 'table' then error(format('%s: option %d: match must be a list', fn, i), "
    "3) end\n"
    "      for j = 1, #m do w[#w + 1] = norm(m[j]) end\n"
    "    end\n"
    "    words[i] = w\n"
    "  end\n"
    "  return labels, words\n"
    "end\n"
    "local FILLERS = { '我要', '我想', '想要', '希望', '帮我', '给我', '麻烦', '能不能', "
    "'可不可以',\n"
    "  '请', '吧', '啊', '呢', '呀', '了' }\n"
    "local NEG = { ['不']=true, ['没']=true, ['别']=true, ['非']=true, ['未']=true }\n"
    "local function negated(a, at) return at > 3 and NEG[sub(a, at - 3, at - 1)] or false end\n"
    /* 1 exact label/word; 2 ordinal; 3 longest contained word, not negated, unique;
     * 4 the answer is part of exactly one label; 5 character overlap with one label */
    "local function pick(answer, words)\n"
    "  local a = norm(answer)\n"
    "  if a == '' then return nil end\n"
    "  for i = 1, #words do for _, x in ipairs(words[i]) do if a == x then return i end end end\n"
    "  local n = ordinal(a)\n"
    "  if n and words[n] then return n end\n"
    "  local best, blen, tie = nil, 0, false\n"
    "  for i = 1, #words do\n"
    "    for _, x in ipairs(words[i]) do\n"
    "      if #x > 0 and #x >= blen then\n"
    "        local at = find(a, x, 1, true)\n"
    "        while at and negated(a, at) do at = find(a, x, at + 1, true) end\n"
    "        if at then\n"
    "          if #x > blen then best, blen, tie = i, #x, false\n"
    "          elseif best ~= i then tie = true end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if best and not tie then return best end\n"
    "  for _, f in ipairs(FILLERS) do a = gsub(a, f, '') end\n"
    "  if (U.len(a) or 0) < 2 then return nil end\n"
    "  local hit\n"
    "  for i = 1, #words do\n"
    "    if find(words[i][1], a, 1, true) then\n"
    "      if hit then return nil end\n"
    "      hit = i\n"
    "    end\n"
    "  end\n"
    "  if hit then return hit end\n"
    /* 5: most of the answer's characters appear in one label, clearly more than in any other */
    "  local chars, n = {}, 0\n"
    "  for _, c in U.codes(a) do\n"
    "    local ch = U.char(c)\n"
    "    if not chars[ch] then chars[ch] = true; n = n + 1 end\n"
    "  end\n"
    "  local top, topv, second = nil, 0, 0\n"
    "  for i = 1, #words do\n"
    "    local k, own = 0, chars_of(words[i][1])\n"
    "    if own then\n"
    "      for j = 1, #own do if chars[own[j]] then k = k + 1 end end\n"
    "    else\n"
    "      for ch in pairs(chars) do if find(words[i][1], ch, 1, true) then k = k + 1 end end\n"
    "    end\n"
    "    if k > topv then top, second, topv = i, topv, k elseif k > second then second = k end\n"
    "  end\n"
    "  if top and topv / n >= 0.6 and topv > second then return top end\n"
    "  return nil\n"
    "end\n"
    "local function numbered(labels)\n"
    "  local t = {}\n"
    "  for i = 1, #labels do t[i] = format('%d. %s', i, labels[i]) end\n"
    "  return table.concat(t, '\\n')\n"
    "end\n"
    "function M.choose(chat, text, options, opts)\n"
    "  opts = opts_of(opts, 'chat:choose')\n"
    "  local labels, words = prepare(options, 'chat:choose')\n"
    "  local prompt, tries, retries = text, 0, opts.retries or 1\n"
    "  while true do\n"
    "    local answer, why = P.ask(chat, prompt, labels, opts.timeout)\n"
    "    if answer == nil then return nil, why end\n"
    "    local i = pick(answer, words)\n"
    "    if i then return labels[i], i end\n"
    "    tries = tries + 1\n"
    "    M.failed(chat, 'unclear')\n"
    "    if tries > retries then return nil, 'unclear', answer end\n"
    "    prompt = opts.retry_text or\n"
    "      ('抱歉，我没有理解您的选择。请点击下方的选项，或回复序号：\\n' .. numbered(labels))\n"
    "  end\n"
    "end\n"
    "local YES = { '是', '是的', '对', '对的', '好', '好的', '可以', '行', '嗯', '没错', '确认',\n"
    "  '同意', '正确', '没问题', '需要', '要', 'ok', 'yes' }\n"
    "local NO = { '否', '不', '不是', '不对', '不行', '不要', '不用', '没有', '错', '错了',\n"
    "  '不同意', '不可以', '不需要', '算了', 'no' }\n"
    "function M.confirm(chat, text, opts)\n"
    "  opts = opts_of(opts, 'chat:confirm')\n"
    "  local label, i = M.choose(chat, text,\n"
    "    { { opts.yes or '是', match = YES }, { opts.no or '否', match = NO } }, opts)\n"
    "  if not label then return nil, i end\n"
    "  return i == 1\n"
    "end\n"
    "function M.match(chat, answer, options)\n"
    "  if type(answer) ~= 'string' then return nil end\n"
    "  local labels, words = prepare(options, 'chat:match')\n"
    "  local i = pick(answer, words)\n"
    "  if i then return labels[i], i end\n"
    "  return nil\n"
    "end\n"
    "return M\n";

int flow_api_open(lua_State *L)
{
    static const luaL_Reg prims[] = {
        {"say", api_say},       {"ask", api_ask},       {"escalate", api_escalate},
        {"record", api_record}, {"status", api_status}, {"after", api_after},
        {"cancel", api_cancel}, {"now", api_now},       {"complaint", api_complaint},
        {NULL, NULL},
    };
    luaL_newmetatable(L, "redress.chat");
    lua_pushcfunction(L, chat_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, chat_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    if (luaL_loadbufferx(L, PRELUDE, sizeof(PRELUDE) - 1, PRELUDE_NAME, "t") != LUA_OK)
        return lua_error(L);
    /* The prelude's _ENV: the safe globals (a fresh copy; the prelude never writes globals). */
    flow_push_safe_globals(L);
    flow_push_readonly(L, -1);
    lua_remove(L, -2);
    lua_setupvalue(L, -2, 1);
    luaL_newlib(L, prims);
    /* Private copies of string and utf8: the prelude reads them directly. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_getfield(L, -1, "__index");
    lua_remove(L, -2);
    lua_remove(L, -2);
    flow_push_safe_globals(L);
    lua_getfield(L, -1, "utf8");
    lua_remove(L, -2);
    lua_call(L, 3, 1);
    flow_push_readonly(L, -1);
    lua_remove(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &methods_key);
    return 0;
}
