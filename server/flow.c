/*
 * flow.c - the dialogue engine: one Lua VM, its limits, and the one way into it.
 *
 * Ownership.  A flow_engine_t owns its lua_State, the rules directory path and the registry
 * reference of the current rules "generation" (a Lua table built by flow_load.c).  The
 * knowledge-base connection is borrowed.  Runs (flow_run.c) are owned by the host; the engine
 * only links them so that flow_engine_destroy() can detach the ones still alive.
 *
 * The one way into Lua.  Every host call that touches the VM goes through flow_protected():
 * lua_pcall of a C function with a traceback message handler.  Flow code itself runs either
 * in a step coroutine (lua_resume inside that protected call; a failed coroutine's traceback
 * comes from luaL_traceback on the dead thread) or in a nested lua_pcall on the main thread
 * (on_message, timers, the escalation hook).  Nothing else calls into Lua, so a Lua error
 * can never unwind through C code that does not expect it; lua_atpanic only logs and aborts
 * as a last line of defence.
 *
 * Limits.
 *   - Memory: the VM allocates from a private heap (heap.c: with jemalloc an arena of its own,
 *     so that parked flows give their pages back).  flow_alloc refuses any growth past
 *     flow.max_memory_mb for the whole VM, and past a quarter of it, at most TURN_CAP_MAX
 *     (turn_cap), for the net growth of one call into one run.  The default cap, 1024 MB,
 *     leaves room for garbage beside 15,000 conversations in memory (about 8 KB each): with
 *     256 MB their live data alone was half the cap, and flow_end's full collections
 *     (collect_full) took a fifth of the loop under load.  Lua raises a memory error in the
 *     code that asked; flow code cannot catch it (the sandbox's pcall re-raises memory errors),
 *     so the run fails and a full collection returns the memory.
 *   - Instructions: a count hook on every thread spends FLOW_HOOK_STEP instructions of the
 *     current call's budget (flow.max_instructions).  When it is spent flow_kill() marks the
 *     call killed, sets the hook to fire on every instruction and raises an error; the sandbox's
 *     pcall/xpcall re-raise it, so an error-swallowing loop dies too.  Pattern matching in C
 *     (flow_pattern.c) spends from the same budget.
 *
 * Engine states and transitions:
 *
 *   (none) --flow_engine_create--> READY(gen 1) --flow_engine_reload ok--> READY(gen n+1)
 *   READY --flow_engine_reload failed--> READY(same gen)  --flow_engine_destroy--> (none)
 *
 * Within one call into a run: flow_begin() (current = run, budget full) -> flow_protected()
 * -> flow_end() (current = NULL, memory reclaimed after a kill).
 */
#include "flow_internal.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODULE "flow"
#define TURN_CAP_MAX ((size_t)64 << 20) /* what one call may add to one run, whatever the cap */

flow_engine_t *flow_engine_of(lua_State *L)
{
    return *(flow_engine_t **)lua_getextraspace(L);
}

/*
 * The allocator.  ptr == NULL means a new block and osize then encodes a type, not a size.
 * Growth is refused past the VM cap, and past turn_cap of net growth while a run executes;
 * shrinking and freeing always succeed.
 */
static void *flow_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    flow_engine_t *e = ud;
    if (ptr == NULL)
        osize = 0;
    if (nsize == 0) {
        heap_free(&e->heap, ptr, osize);
        e->mem_used -= osize;
        if (e->current)
            e->turn_net -= (long long)osize;
        return NULL;
    }
    if (nsize > osize) {
        size_t grow = nsize - osize;
        e->gc_cycle_alloc += grow;
        if (e->mem_used + grow > e->mem_cap)
            return NULL;
        /* The instruction budget does not see bytes: `s .. s` on a large string is one
         * instruction.  Capping the bytes one call may allocate (freed or not) bounds the
         * copying a flow can make the loop do in one call. */
        if (e->in_call && e->call_gross + grow > e->mem_cap)
            return NULL;
        if (e->in_call)
            e->call_gross += grow;
        if (e->current && e->turn_net + (long long)grow > (long long)e->turn_cap)
            return NULL;
    }
    void *p = heap_realloc(&e->heap, ptr, osize, nsize);
    if (p == NULL)
        return NULL;
    e->mem_used = e->mem_used - osize + nsize;
    if (e->current)
        e->turn_net += (long long)nsize - (long long)osize;
    return p;
}

static void flow_hook(lua_State *L, lua_Debug *ar)
{
    flow_engine_t *e = flow_engine_of(L);
    (void)ar;
    if (e->killed) {
        flow_kill(L, e->killed);
        return;
    }
    e->budget -= FLOW_HOOK_STEP;
    if (e->budget < 0)
        flow_kill(L, FLOW_KILL_INSTR);
}

void flow_arm(lua_State *co)
{
    lua_sethook(co, flow_hook, LUA_MASKCOUNT, FLOW_HOOK_STEP);
}

int flow_kill(lua_State *L, int why)
{
    flow_engine_t *e = flow_engine_of(L);
    e->killed = why;
    e->budget = -1;
    lua_sethook(L, flow_hook, LUA_MASKCOUNT, 1);
    if (why == FLOW_KILL_MEM)
        return luaL_error(L, "flow stopped: memory limit reached");
    return luaL_error(L,
                      "flow stopped: more than %d instructions in one turn "
                      "(flow.max_instructions)",
                      (int)e->max_instr);
}

void flow_charge(lua_State *L, long n)
{
    flow_engine_t *e = flow_engine_of(L);
    e->budget -= n;
    if (e->budget < 0 || e->killed)
        flow_kill(L, e->killed ? e->killed : FLOW_KILL_INSTR);
}

int flow_uncatchable(lua_State *L, int status)
{
    return status == LUA_ERRMEM || flow_engine_of(L)->killed != FLOW_KILL_NONE;
}

void flow_error_text(lua_State *L, int idx, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        snprintf(buf, len, "%.*s", (int)(n > 65535 ? 65535 : n), s);
        break;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            snprintf(buf, len, "%lld", (long long)lua_tointeger(L, idx));
        else
            snprintf(buf, len, "%.14g", (double)lua_tonumber(L, idx));
        break;
    default:
        /* Never call __tostring here: it is flow code, and we may be outside its budget. */
        snprintf(buf, len, "(error object is a %s value)", luaL_typename(L, idx));
        break;
    }
}

/* Message handler: appends a traceback to the error message (never runs __tostring). */
int flow_traceback(lua_State *L)
{
    char msg[1024];
    flow_error_text(L, 1, msg, sizeof(msg));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int panic_handler(lua_State *L)
{
    char msg[512];
    flow_error_text(L, -1, msg, sizeof(msg));
    log_error(MODULE, "unprotected Lua error (engine bug): %s", msg);
    abort();
    return 0;
}

int flow_protected(flow_engine_t *e, lua_CFunction fn, void *arg, char *err, size_t errlen)
{
    lua_State *L = e->L;
    int top = lua_gettop(L), rc = 0, outer = !e->in_call;
    if (outer) {
        e->in_call = 1;
        e->call_gross = 0;
        e->calls++;
    }
    e->budget = e->max_instr;
    e->killed = FLOW_KILL_NONE;
    lua_sethook(L, flow_hook, LUA_MASKCOUNT, FLOW_HOOK_STEP);
    lua_pushcfunction(L, flow_traceback);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, arg);
    int st = lua_pcall(L, 1, 0, top + 1);
    if (st != LUA_OK) {
        if (st == LUA_ERRMEM && err && errlen)
            snprintf(err, errlen, "not enough memory");
        else if (st != LUA_ERRMEM)
            flow_error_text(L, -1, err, errlen);
        rc = -1;
    }
    lua_settop(L, top);
    if (outer)
        e->in_call = 0;
    return rc;
}

void flow_begin(flow_engine_t *e, flow_run_t *r)
{
    e->current = r;
    e->turn_net = 0;
    e->killed = FLOW_KILL_NONE;
    e->budget = e->max_instr;
}

/* A full collection when forced, or when the VM holds over half its cap.  When the live data
 * itself is over half the cap, a full collection frees little: the next one waits until the
 * VM has grown by another eighth of the cap, instead of running after every call.  Returns 1
 * when it collected. */
static int collect_full(flow_engine_t *e, int force)
{
    if (!force && !(e->mem_used > e->mem_cap / 2 && e->mem_used > e->gc_floor + e->mem_cap / 8))
        return 0;
    flow_gc_full(e);
    e->gc_floor = e->mem_used;
    return 1;
}

void flow_end(flow_engine_t *e)
{
    int killed = e->killed;
    e->current = NULL;
    e->killed = FLOW_KILL_NONE;
    /* After a kill, or when garbage piled up, give the memory back before the next call. */
    if (collect_full(e, killed))
        return;
    if (e->mem_used < e->mem_cap / 2)
        e->gc_floor = 0;
    flow_gc_after_call(e);
}

/* ---- loading rules ---- */

typedef struct reload_ctx {
    flow_load_ctx load;
    char *err;
    size_t errlen;
    int failed;
} reload_ctx;

/* Protected: builds a new generation; swaps it in only when every file loaded and checked. */
static int reload_entry(lua_State *L)
{
    reload_ctx *c = lua_touserdata(L, 1);
    flow_engine_t *e = c->load.e;
    lua_pushcfunction(L, flow_load_generation);
    lua_pushlightuserdata(L, &c->load);
    int st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK) {
        flow_load_rejected(L);
        if (st == LUA_ERRMEM)
            snprintf(c->err, c->errlen, "%s: not enough memory loading rules", c->load.dir);
        else
            flow_error_text(L, -1, c->err, c->errlen);
        c->failed = 1;
        return 0;
    }
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (e->gen_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, e->gen_ref);
    e->gen_ref = ref;
    e->gen = c->load.gen;
    return 0;
}

static int load_rules(flow_engine_t *e, char *err, size_t errlen)
{
    char local[1024];
    reload_ctx c = {
        {e, e->rules_dir, e->gen + 1}, err ? err : local, err ? errlen : sizeof(local), 0};
    c.err[0] = '\0';
    if (flow_protected(e, reload_entry, &c, c.err, c.errlen) != 0 || c.failed)
        return FLOW_ERULES;
    return FLOW_OK;
}

int flow_engine_reload(flow_engine_t *e, char *err, size_t errlen)
{
    if (!e)
        return FLOW_EINVAL;
    int rc = load_rules(e, err, errlen);
    if (rc == FLOW_OK) {
        log_notice(MODULE,
                   "rules loaded from %s (generation %u, %zu KiB in the VM; %u files parsed, "
                   "%u unchanged)",
                   e->rules_dir, e->gen, e->mem_used / 1024, e->parsed, e->kept);
    } else {
        log_warn(MODULE, "rules reload rejected, keeping generation %u: %s", e->gen,
                 err ? err : "");
    }
    /* The replaced (or the failed) generation is garbage now.  The incremental collector frees
     * it in its next cycle: a full collection here would stop the loop for time proportional
     * to every conversation's Lua state (0.1-0.5 s with a thousand active chats).  Only a load
     * that filled half the VM's memory cap (a memory bomb in a rules file) is collected now. */
    collect_full(e, 0);
    return rc;
}

static int open_entry(lua_State *L)
{
    flow_sandbox_open(L);
    flow_api_open(L);
    return 0;
}

int flow_engine_create(flow_engine_t **out, const config_t *cfg, sqlite3 *kb_db, char *err,
                       size_t errlen)
{
    flow_engine_t *e = NULL;
    int rc = FLOW_ENOMEM;
    if (!out || !cfg || !cfg->rules_dir) {
        rc = FLOW_EINVAL;
        goto out;
    }
    *out = NULL;
    e = calloc(1, sizeof(*e));
    if (!e)
        goto out;
    e->gen_ref = LUA_NOREF;
    e->kb = kb_db;
    if (kb_db && !(e->searcher = kb_searcher_open(kb_db)))
        goto out;
    e->mem_cap = (size_t)(cfg->lua_max_memory_mb > 0 ? cfg->lua_max_memory_mb : 1024) << 20;
    e->turn_cap = e->mem_cap / 4 < TURN_CAP_MAX ? e->mem_cap / 4 : TURN_CAP_MAX;
    e->max_instr = cfg->lua_max_instructions > 0 ? cfg->lua_max_instructions : 1000000;
    e->rules_dir = strdup(cfg->rules_dir);
    if (!e->rules_dir)
        goto out;
    heap_init(&e->heap);
    e->L = lua_newstate(flow_alloc, e);
    if (!e->L)
        goto out;
    *(flow_engine_t **)lua_getextraspace(e->L) = e;
    lua_atpanic(e->L, panic_handler);
    if (flow_protected(e, open_entry, NULL, err, errlen) != 0)
        goto out;
    rc = load_rules(e, err, errlen);
    if (rc != FLOW_OK)
        goto out;
    lua_gc(e->L, LUA_GCCOLLECT);
    log_info(MODULE, "engine ready: rules %s, %zu KiB, limits %ld instructions/turn, %zu MiB",
             e->rules_dir, e->mem_used / 1024, e->max_instr, e->mem_cap >> 20);
    *out = e;
    e = NULL;
    rc = FLOW_OK;
out:
    if (e)
        flow_engine_destroy(e);
    if (rc == FLOW_ENOMEM && err && errlen && !err[0])
        snprintf(err, errlen, "out of memory creating the flow engine");
    return rc;
}

int flow_check_dir(const config_t *cfg, const char *rules_dir, char *err, size_t errlen)
{
    config_t copy = *cfg;
    flow_engine_t *e = NULL;
    copy.rules_dir = (char *)rules_dir;
    int rc = flow_engine_create(&e, &copy, NULL, err, errlen);
    flow_engine_destroy(e);
    return rc;
}

void flow_engine_files(const flow_engine_t *e, unsigned *parsed, unsigned *kept)
{
    *parsed = e ? e->parsed : 0;
    *kept = e ? e->kept : 0;
}

unsigned flow_engine_generation(const flow_engine_t *e)
{
    return e ? e->gen : 0;
}

size_t flow_engine_memory(const flow_engine_t *e)
{
    return e ? e->mem_used : 0;
}

void flow_engine_kb_hold(flow_engine_t *e)
{
    if (e && e->searcher)
        kb_searcher_hold(e->searcher);
}

void flow_engine_pass_end(flow_engine_t *e)
{
    if (e && e->searcher && kb_searcher_end(e->searcher) != 0)
        log_warn(MODULE, "kb snapshot end: %s", sqlite3_errmsg(e->kb));
}

void flow_engine_destroy(flow_engine_t *e)
{
    if (!e)
        return;
    for (flow_run_t *r = e->runs; r; r = r->next) {
        r->e = NULL;
        r->ref = LUA_NOREF;
    }
    e->runs = NULL;
    if (e->L)
        lua_close(e->L);
    heap_destroy(&e->heap); /* after lua_close: every block of the VM is freed */
    kb_searcher_close(e->searcher);
    free(e->rules_dir);
    free(e);
}
