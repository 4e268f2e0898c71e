/*
 * flow_sandbox.c - what flow code can see: safe globals, read-only views, guarded builtins.
 *
 * Design.  The VM's real global table is replaced by an empty one at start-up; no flow ever
 * sees it.  flow_sandbox_open() builds, once per VM, the "safe globals" table kept in the
 * registry:
 *
 *   base     assert error getmetatable ipairs next pairs rawequal rawget rawlen select
 *            tonumber tostring type _VERSION, plus guarded pcall xpcall setmetatable rawset
 *            and print (to the log).  Absent: load loadfile dofile require collectgarbage
 *            module, and the io, os, package, debug and coroutine libraries.
 *   string   without string.dump; find/match/gmatch/gsub replaced by budgeted versions
 *   table    the standard table library
 *   math     without math.random/randomseed (flows must be deterministic, see flow_run.c)
 *   utf8     the standard utf8 library
 *
 * Each library table is a private copy reachable only through a read-only view (a proxy):
 * an empty table whose metatable forwards reads to the target, refuses writes, and is itself
 * protected (__metatable), so setmetatable, rawset (guarded here) and table.insert & co. cannot
 * change a library.  Views are deep: a table read through a view is returned as a view, so a
 * shared module's data cannot be modified through it either.  Views are cached per target in a
 * weak-keyed registry table.  The string metatable's __index is the private string table and
 * the metatable is protected, so getmetatable("") yields false.
 *
 * Frozen views.  A read through a view is a C call (ro_index: find the target, read, wrap a
 * table), and every global a rules module or flow reads (ipairs, type, math, string ...) goes
 * through the generation's shared globals, a view: 58 % of the 150 view reads of a turn of
 * the shipped flow (BENCHMARKS.md).  A target that holds no table other than a view, and is
 * never written after the view is made, needs no wrapping: its frozen view has the target
 * itself as __index, which the VM follows without a call.  Writes, rawset, setmetatable,
 * getmetatable, next and pairs behave as for any view, and the target stays unreachable.  Used
 * for the libraries' private copies and a generation's shared globals (flow_load.c), each
 * checked with flow_frozen_check once filled.
 *
 * Guarded builtins:
 *   pcall/xpcall  yieldable (lua_pcallk) so chat:ask works inside them, and they re-raise the
 *                 engine's kill error and memory errors (flow_uncatchable) instead of returning
 *                 them, so a flow cannot outlive its instruction or memory budget; xpcall's
 *                 message handler is skipped for a kill (see xpcall_handler).
 *   setmetatable  refuses metatables with __gc (a finalizer would run outside any budget) and
 *                 protected metatables.
 *   rawset        refuses read-only views.
 *
 * Lifetimes: everything here lives as long as the VM.
 */
#include "flow_internal.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static char safe_key;   /* registry: the safe globals table */
static char cache_key;  /* registry: weak-keyed target -> view */
static char target_key; /* a view's metatable: its target */

/* ---- read-only views ---- */

static void push_target(lua_State *L, int view)
{
    lua_getmetatable(L, view);
    lua_rawgetp(L, -1, &target_key);
    lua_remove(L, -2);
}

static int ro_index(lua_State *L)
{
    push_target(L, 1);
    lua_pushvalue(L, 2);
    if (lua_gettable(L, -2) == LUA_TTABLE)
        flow_push_readonly(L, -1);
    return 1;
}

static int ro_newindex(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING)
        return luaL_error(L, "attempt to change read-only table (field '%s')", lua_tostring(L, 2));
    return luaL_error(L, "attempt to change read-only table");
}

static int ro_len(lua_State *L)
{
    push_target(L, 1);
    lua_len(L, -1);
    return 1;
}

static int ro_next(lua_State *L)
{
    lua_settop(L, 2);
    push_target(L, 1);
    lua_pushvalue(L, 2);
    if (!lua_next(L, -2)) {
        lua_pushnil(L);
        return 1;
    }
    if (lua_type(L, -1) == LUA_TTABLE) {
        flow_push_readonly(L, -1);
        lua_remove(L, -2);
    }
    return 2;
}

static int ro_pairs(lua_State *L)
{
    lua_pushcfunction(L, ro_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

int flow_is_readonly(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    int is = lua_rawgetp(L, -1, &target_key) != LUA_TNIL;
    lua_pop(L, 2);
    return is;
}

int flow_push_view_target(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    if (lua_rawgetp(L, -1, &target_key) == LUA_TNIL) {
        lua_pop(L, 2);
        return 0;
    }
    lua_remove(L, -2);
    return 1;
}

static void push_view(lua_State *L, int idx, int frozen)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || flow_is_readonly(L, idx)) {
        lua_pushvalue(L, idx);
        return;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TTABLE) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    lua_newtable(L);          /* cache view */
    lua_createtable(L, 0, 6); /* cache view mt */
    lua_pushvalue(L, idx);
    lua_rawsetp(L, -2, &target_key);
    if (frozen)
        lua_pushvalue(L, idx);
    else
        lua_pushcfunction(L, ro_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ro_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2); /* cache view */
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4); /* cache[target] = view */
    lua_remove(L, -2); /* view */
}

void flow_push_readonly(lua_State *L, int idx)
{
    push_view(L, idx, 0);
}

void flow_push_frozen(lua_State *L, int idx)
{
    push_view(L, idx, 1);
}

int flow_frozen_check(lua_State *L, int idx, char *bad, size_t badlen)
{
    int ok = 1;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -1) == LUA_TTABLE && !flow_is_readonly(L, -1)) {
            if (lua_type(L, -2) == LUA_TSTRING)
                snprintf(bad, badlen, "%s", lua_tostring(L, -2));
            else
                snprintf(bad, badlen, "(a %s key)", luaL_typename(L, -2));
            ok = 0;
            lua_pop(L, 2);
            break;
        }
        lua_pop(L, 1);
    }
    return ok;
}

void flow_set_library(lua_State *L, int idx, const char *name, const luaL_Reg *fns)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    flow_push_frozen(L, -1); /* functions only, never changed */
    lua_setfield(L, idx, name);
    lua_pop(L, 1);
}

void flow_push_env(lua_State *L, int base_idx)
{
    base_idx = lua_absindex(L, base_idx);
    lua_newtable(L);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, base_idx);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* ---- guarded builtins ---- */

static int finish_pcall(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        if (flow_uncatchable(L, status))
            return lua_error(L); /* the error object is on top */
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
    return finish_pcall(L, status, 0);
}

/*
 * xpcall's message handler runs at the point of the error.  When the error is the engine's kill,
 * raised from inside the count hook, Lua has hooks switched off there (allowhook) until the error
 * is caught - so a flow's handler would run unbudgeted.  This C handler therefore calls the flow's
 * handler (upvalue 1) only for ordinary errors.
 */
static int xpcall_handler(lua_State *L)
{
    if (flow_engine_of(L)->killed)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* f, msgh, true, f, args... */
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
    return finish_pcall(L, status, 2);
}

static int sb_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in flows");
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

static int sb_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (flow_is_readonly(L, 1))
        return luaL_error(L, "rawset: attempt to change read-only table");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

static int sb_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    lua_Debug ar;
    const char *where = "?";
    int line = 0;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) {
        where = ar.short_src;
        line = ar.currentline;
    }
    log_info("flow", "print %s:%d: %.*s", where, line, (int)(len > 2000 ? 2000 : len), s);
    return 0;
}

/* ---- building the safe globals ---- */

static void open_lib(lua_State *L, lua_CFunction opener)
{
    lua_pushcfunction(L, opener);
    lua_call(L, 0, 1);
}

static void drop_field(lua_State *L, int idx, const char *name)
{
    lua_pushnil(L);
    lua_setfield(L, idx, name);
}

/* safe[name] = read-only view of the table on top; pops it. */
static void set_view(lua_State *L, int safe, const char *name)
{
    char bad[64];
    if (!flow_frozen_check(L, -1, bad, sizeof(bad)))
        luaL_error(L, "sandbox: library %s holds a table (%s)", name, bad);
    flow_push_frozen(L, -1); /* the private copy: never changed after this */
    lua_setfield(L, safe, name);
    lua_pop(L, 1);
}

int flow_sandbox_open(lua_State *L)
{
    static const char *const base_names[] = {
        "assert", "error",  "getmetatable", "ipairs",   "next",     "pairs", "rawequal",
        "rawget", "rawlen", "select",       "tonumber", "tostring", "type",  "_VERSION",
    };
    static const luaL_Reg guarded[] = {
        {"pcall", sb_pcall},   {"xpcall", sb_xpcall}, {"setmetatable", sb_setmetatable},
        {"rawset", sb_rawset}, {"print", sb_print},   {NULL, NULL},
    };

    /* The view cache: weak keys (targets), views kept alive by their targets. */
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);

    lua_newtable(L);
    int safe = lua_gettop(L);

    open_lib(L, luaopen_base); /* fills the real globals table and returns it */
    int g = lua_gettop(L);
    for (size_t i = 0; i < sizeof(base_names) / sizeof(base_names[0]); i++) {
        lua_getfield(L, g, base_names[i]);
        lua_setfield(L, safe, base_names[i]);
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, guarded, 0);
    /* Nothing may ever reach the real globals (load, dofile, ...): replace them. */
    lua_newtable(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);

    open_lib(L, luaopen_string);
    int str = lua_gettop(L);
    drop_field(L, str, "dump");
    flow_pattern_open(L, str);
    /* Strings index the private table; the metatable itself is hidden. */
    lua_pushliteral(L, "");
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, str);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
    set_view(L, safe, "string");

    open_lib(L, luaopen_table);
    set_view(L, safe, "table");

    open_lib(L, luaopen_math);
    drop_field(L, lua_gettop(L), "random");
    drop_field(L, lua_gettop(L), "randomseed");
    set_view(L, safe, "math");

    open_lib(L, luaopen_utf8);
    set_view(L, safe, "utf8");

    lua_rawsetp(L, LUA_REGISTRYINDEX, &safe_key);
    return 0;
}

void flow_push_safe_globals(lua_State *L)
{
    lua_newtable(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &safe_key);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -5);
    }
    lua_pop(L, 1);
}
