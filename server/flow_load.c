/*
 * flow_load.c - reading a rules directory into a "generation", and instantiating flows.
 *
 * A rules directory holds:
 *
 *   lexicon/NAME.lua   data tables (word lists), visible to all code as lexicon.NAME
 *   lib/NAME.lua       shared modules (extractors, classifier, mood), visible as lib.NAME
 *   flows/NAME.lua     flows; each returns {start=, steps={...}, ...}; see rules/README.md
 *   escalation.lua     optional: returns function(ctx) checked on every customer message
 *
 * A generation is one Lua table built from all of them:
 *
 *   gen.env        read-only view of the shared globals: safe globals + kb + clock + lib + lexicon
 *   gen.flows      name -> {chunk = compiled file, file = path, default = bool}
 *   gen.default    name of the flow new conversations start
 *   gen.escalation the hook function, or nil
 *
 * Loading is all-or-nothing: flow_load_generation() raises "file:line: message" at the first
 * problem and the caller (flow.c) keeps the previous generation.  Every file is compiled as text
 * only (mode "t", binary signatures refused up front) with its own environment: the file's
 * source is compiled as `local _ENV = ...; <source>` on the same first line, so the compiled
 * chunk is a function of its environment (so a file whose text has not changed since the last
 * load keeps its compiled function: see COMPILED).  Modules and lexicons run once per generation,
 * their results are shared and read-only through lib/lexicon views.  A flow file runs once per
 * conversation (flow_instantiate) in a fresh environment, so file-level variables are never
 * shared between conversations.
 *
 * Checks beyond compiling: module files must return a value; flow tables are validated (known
 * fields, step functions, start/on_done/on_handback naming existing steps, timers functions), and
 * every `return "name"` inside a step function (or an on_handback function) must name an existing
 * step (a textual scan limited to the function's lines, so typos are caught before a customer
 * meets them).  Exactly one flow is the default (default = true, or the only flow).
 *
 * Lifetimes: a generation lives while the engine references it or a run's flow instance uses
 * its environment.  Nothing here holds C memory across a Lua call: file contents live in a
 * userdata, directory listings in a fixed C array.
 */
#include "flow_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILES 256
#define MAX_NAME 64
#define ENV_PREFIX "local _ENV = ...; "

/* Formats a path into buf; a path that does not fit is an error, never silently cut. */
static const char *mkpath(lua_State *L, char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        luaL_error(L, "path too long: %s", buf);
    return buf;
}

/* ---- files ---- */

typedef struct chunk_reader {
    const char *parts[2];
    size_t lens[2];
    int next;
} chunk_reader;

static const char *read_parts(lua_State *L, void *ud, size_t *size)
{
    chunk_reader *r = ud;
    (void)L;
    while (r->next < 2) {
        int i = r->next++;
        if (r->lens[i] > 0) {
            *size = r->lens[i];
            return r->parts[i];
        }
    }
    *size = 0;
    return NULL;
}

/*
 * Compiled files are kept between loads (registry COMPILED: path -> {text, function}): a reload
 * after an editor changed one file parses only that file (parsing was about half of a load:
 * 17 of 30 million instructions for the shipped rules, measured with callgrind).  A chunk
 * is a function of the environment it is called with (ENV_PREFIX), so one generation's chunk
 * serves the next as well.  Each load lists what it used in COMPILED_NEXT, which replaces
 * COMPILED when the load succeeds: files since deleted are forgotten.
 */
#define COMPILED "redress.compiled"
#define COMPILED_NEXT "redress.compiled.next"

void flow_load_rejected(lua_State *L)
{
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, COMPILED_NEXT);
}

/* COMPILED_NEXT[path] = the {text, function} entry at idx. */
static void remember(lua_State *L, const char *path, int idx)
{
    lua_getfield(L, LUA_REGISTRYINDEX, COMPILED_NEXT);
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, idx);
        lua_setfield(L, -2, path);
    }
    lua_pop(L, 1);
}

/* Compiles path as text with the environment prefix; pushes the function.  Raises errors. */
static void compile_file(lua_State *L, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        luaL_error(L, "%s: cannot read: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        luaL_error(L, "%s: cannot read: %s", path, strerror(errno));
    }
    long size = ftell(f);
    if (size < 0 || size > FLOW_MAX_FILE) {
        fclose(f);
        luaL_error(L, "%s: file larger than %d bytes", path, FLOW_MAX_FILE);
    }
    rewind(f);
    /* A userdata holds the text, so an error below cannot leak it. */
    char *buf = lua_newuserdatauv(L, (size_t)size + 1, 0);
    size_t got = fread(buf, 1, (size_t)size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)size)
        luaL_error(L, "%s: cannot read the whole file", path);
    buf[got] = '\0';
    const char *text = buf;
    if (got >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) { /* UTF-8 byte order mark */
        text += 3;
        got -= 3;
    }
    if (got > 0 && text[0] == LUA_SIGNATURE[0])
        luaL_error(L, "%s: binary chunks are not allowed (rules are loaded as text only)", path);
    /* The file as the last load compiled it: the same text gives the same function. */
    lua_pushlstring(L, text, got);
    int src = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, COMPILED);
    if (lua_istable(L, -1) && lua_getfield(L, -1, path) == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        int same = lua_rawequal(L, -1, src);
        lua_pop(L, 1);
        if (same) {
            flow_engine_of(L)->kept++;
            remember(L, path, lua_gettop(L));
            lua_rawgeti(L, -1, 2);
            lua_replace(L, src - 1); /* the function where the userdata was */
            lua_settop(L, src - 1);
            return;
        }
    }
    lua_settop(L, src);
    chunk_reader r = {{ENV_PREFIX, text}, {sizeof(ENV_PREFIX) - 1, got}, 0};
    lua_pushfstring(L, "@%s", path);
    int st = lua_load(L, read_parts, &r, lua_tostring(L, -1), "t");
    flow_engine_of(L)->parsed++;
    if (st != LUA_OK)
        lua_error(L); /* "path:line: message" */
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, src);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 2);
    remember(L, path, lua_gettop(L));
    lua_pop(L, 1);
    lua_replace(L, src - 1); /* the function where the userdata was */
    lua_settop(L, src - 1);
}

static int name_ok(const char *n, size_t len)
{
    if (len == 0 || len >= MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_'))
            return 0;
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Lists NAME for every NAME.lua in dir, sorted.  Returns the count; -1 when dir is missing. */
static int list_lua(lua_State *L, const char *dir, char names[][MAX_NAME])
{
    DIR *d = opendir(dir);
    int n = 0, bad = 0, many = 0;
    char badname[256] = "";
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".lua") != 0 || de->d_name[0] == '.')
            continue;
        if (!name_ok(de->d_name, len - 4)) {
            bad = 1;
            snprintf(badname, sizeof(badname), "%s", de->d_name);
            continue;
        }
        if (n == MAX_FILES) {
            many = 1;
            break;
        }
        memcpy(names[n], de->d_name, len - 4);
        names[n][len - 4] = '\0';
        n++;
    }
    closedir(d);
    if (bad)
        luaL_error(L, "%s/%s: file names must be lowercase letters, digits and _", dir, badname);
    if (many)
        luaL_error(L, "%s: more than %d files", dir, MAX_FILES);
    qsort(names, (size_t)n, MAX_NAME, cmp_names);
    return n;
}

/* Calls the compiled chunk at the top with a new environment over gen.env (at env_idx);
 * replaces it by its single result.  Errors get the file's path in front when they lack one. */
static void run_chunk(lua_State *L, int env_idx, const char *path)
{
    flow_engine_t *e = flow_engine_of(L);
    flow_push_env(L, env_idx);
    e->budget = e->max_instr;
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        if (lua_type(L, -1) == LUA_TSTRING && strncmp(lua_tostring(L, -1), path, strlen(path)) == 0)
            lua_error(L);
        char msg[1024];
        flow_error_text(L, -1, msg, sizeof(msg));
        luaL_error(L, "%s: %s", path, msg);
    }
}

/* ---- modules (lib/ and lexicon/) ---- */

/*
 * __index of a modules table while the generation loads; upvalues: directory (string), the
 * generation env (view), the set of modules being loaded.  Loads NAME.lua on first use, so
 * modules may use each other in any order; a cycle is an error.
 */
static int module_loader(lua_State *L)
{
    const char *dir = lua_tostring(L, lua_upvalueindex(1));
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    const char *name = lua_tostring(L, 2);
    char path[4096];
    mkpath(L, path, sizeof(path), "%s/%s.lua", dir, name);
    if (!name_ok(name, strlen(name)))
        return 0;
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(3)) != LUA_TNIL)
        return luaL_error(L, "%s: modules depend on each other in a circle", path);
    lua_pop(L, 1);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0; /* no such module: nil, as for any missing field */
    fclose(f);
    lua_pushvalue(L, 2);
    lua_pushboolean(L, 1);
    lua_rawset(L, lua_upvalueindex(3));
    compile_file(L, path);
    run_chunk(L, lua_upvalueindex(2), path);
    if (lua_isnil(L, -1))
        return luaL_error(L, "%s: a module must return a value (usually a table)", path);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    lua_pushvalue(L, 2);
    lua_pushnil(L);
    lua_rawset(L, lua_upvalueindex(3));
    return 1;
}

/* Loads every module of dir into the table at mods (which has the loader as __index). */
static void load_modules(lua_State *L, int mods, const char *dir)
{
    char names[MAX_FILES][MAX_NAME];
    int n = list_lua(L, dir, names);
    for (int i = 0; i < n; i++) {
        lua_getfield(L, mods, names[i]); /* loads through __index unless already loaded */
        lua_pop(L, 1);
    }
}

/* Pushes a modules table whose __index loads from dir with the environment at env. */
static void push_modules(lua_State *L, const char *dir, int env)
{
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, dir);
    lua_pushvalue(L, env);
    lua_newtable(L);
    lua_pushcclosure(L, module_loader, 3);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
}

/* ---- flows ---- */

static const char *const flow_fields[] = {
    "start",   "steps",         "timers",      "on_message", "on_done", "on_handback",
    "default", "error_message", "description", "name",       NULL,
};

static int line_of(lua_State *L, int fn_idx, int *last)
{
    lua_Debug ar;
    lua_pushvalue(L, fn_idx);
    if (!lua_getinfo(L, ">S", &ar)) {
        *last = 0;
        return 0;
    }
    *last = ar.lastlinedefined;
    return ar.linedefined;
}

static int step_exists(lua_State *L, int steps, const char *name, size_t len)
{
    lua_pushlstring(L, name, len);
    int t = lua_rawget(L, steps);
    lua_pop(L, 1);
    return t == LUA_TFUNCTION;
}

/*
 * A small Lua lexer for the step check: enough to skip comments and strings, find names, and
 * follow block nesting (function/if/do/repeat ... end/until).
 */
enum { TK_EOF, TK_NAME, TK_STRING, TK_OTHER };

typedef struct lexer {
    const char *p, *end;
    int line;
} lexer;

typedef struct token {
    int kind;
    const char *s;
    size_t len;
    int line;
} token;

/* Level of a long bracket [==[ at p, or -1. */
static int long_open(const char *p, const char *end)
{
    if (p >= end || *p != '[')
        return -1;
    int level = 0;
    p++;
    while (p < end && *p == '=') {
        level++;
        p++;
    }
    return p < end && *p == '[' ? level : -1;
}

/* Skips a long bracket body whose opener (of `level`) ends at x->p; sets s and len. */
static void skip_long(lexer *x, int level, const char **s, size_t *len)
{
    *s = x->p;
    while (x->p < x->end) {
        if (*x->p == '\n')
            x->line++;
        if (*x->p == ']') {
            const char *q = x->p + 1;
            int n = 0;
            while (q < x->end && *q == '=') {
                n++;
                q++;
            }
            if (n == level && q < x->end && *q == ']') {
                *len = (size_t)(x->p - *s);
                x->p = q + 1;
                return;
            }
        }
        x->p++;
    }
    *len = (size_t)(x->p - *s);
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           (unsigned char)c >= 0x80;
}

static token next_token(lexer *x)
{
    token t = {TK_EOF, NULL, 0, 0};
    const char *dummy;
    size_t dlen;
    for (;;) {
        while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\r' || *x->p == '\n' ||
                                 *x->p == '\f' || *x->p == '\v')) {
            if (*x->p == '\n')
                x->line++;
            x->p++;
        }
        if (x->p + 1 < x->end && x->p[0] == '-' && x->p[1] == '-') {
            x->p += 2;
            int level = long_open(x->p, x->end);
            if (level >= 0) {
                x->p += level + 2;
                skip_long(x, level, &dummy, &dlen);
            } else {
                while (x->p < x->end && *x->p != '\n')
                    x->p++;
            }
            continue;
        }
        break;
    }
    t.line = x->line;
    if (x->p >= x->end)
        return t;
    char c = *x->p;
    int level;
    if (is_name_char(c) && !(c >= '0' && c <= '9')) {
        t.kind = TK_NAME;
        t.s = x->p;
        while (x->p < x->end && is_name_char(*x->p))
            x->p++;
        t.len = (size_t)(x->p - t.s);
    } else if (c == '"' || c == '\'') {
        t.kind = TK_STRING;
        t.s = ++x->p;
        while (x->p < x->end && *x->p != c && *x->p != '\n') {
            if (*x->p == '\\' && x->p + 1 < x->end)
                x->p++;
            x->p++;
        }
        t.len = (size_t)(x->p - t.s);
        if (x->p < x->end && *x->p == c)
            x->p++;
    } else if ((level = long_open(x->p, x->end)) >= 0) {
        t.kind = TK_STRING;
        x->p += level + 2;
        skip_long(x, level, &t.s, &t.len);
    } else {
        t.kind = TK_OTHER;
        t.s = x->p++;
        if (c >= '0' && c <= '9') /* a number: digits, letters, dots, exponent signs */
            while (x->p < x->end &&
                   (is_name_char(*x->p) || *x->p == '.' ||
                    ((*x->p == '+' || *x->p == '-') &&
                     (x->p[-1] == 'e' || x->p[-1] == 'E' || x->p[-1] == 'p' || x->p[-1] == 'P'))))
                x->p++;
        else if (c == '.' && x->p < x->end && *x->p == '.')
            while (x->p < x->end && *x->p == '.')
                x->p++;
        t.len = (size_t)(x->p - t.s);
    }
    return t;
}

static int tok_is(const token *t, const char *word)
{
    return t->kind == TK_NAME && t->len == strlen(word) && memcmp(t->s, word, t->len) == 0;
}

static int ident_like(const token *t)
{
    if (t->kind != TK_STRING || t->len == 0 || t->len >= MAX_NAME)
        return 0;
    return name_ok(t->s, t->len);
}

/*
 * Checks the step function defined at line `from` of text: every `return "name"` that belongs
 * to the step itself (not to a function nested in it) and is a whole return statement must name
 * a step.  Raises "path:line: ..." otherwise.
 */
static void scan_step(lua_State *L, const char *path, const char *text, size_t len, int from,
                      int steps)
{
    lexer x = {text, text + len, 1};
    char kinds[256]; /* open blocks: 'f' function, 'b' other */
    int depth = 0, fdepth = 0;
    /* move to the start of line `from` */
    while (x.p < x.end && x.line < from) {
        if (*x.p == '\n')
            x.line++;
        x.p++;
    }
    token t;
    do { /* the step's own `function` */
        t = next_token(&x);
    } while (t.kind != TK_EOF && !tok_is(&t, "function"));
    if (t.kind == TK_EOF)
        return;
    kinds[depth++] = 'f';
    fdepth = 1;
    while (depth > 0 && (t = next_token(&x)).kind != TK_EOF) {
        if (tok_is(&t, "function") || tok_is(&t, "if") || tok_is(&t, "do") ||
            tok_is(&t, "repeat")) {
            if (depth < (int)sizeof(kinds)) {
                kinds[depth] = tok_is(&t, "function") ? 'f' : 'b';
                fdepth += kinds[depth] == 'f';
            }
            depth++;
        } else if (tok_is(&t, "end") || tok_is(&t, "until")) {
            depth--;
            if (depth < (int)sizeof(kinds) && kinds[depth] == 'f')
                fdepth--;
        } else if (tok_is(&t, "return") && fdepth == 1) {
            lexer peek = x;
            token v = next_token(&peek);
            if (!ident_like(&v))
                continue;
            token after = next_token(&peek);
            if (after.kind == TK_OTHER && after.len == 1 && after.s[0] == ';')
                after = next_token(&peek);
            if (!(tok_is(&after, "end") || tok_is(&after, "else") || tok_is(&after, "elseif") ||
                  tok_is(&after, "until") || after.kind == TK_EOF))
                continue; /* `return "x" .. y` and the like: not a plain step name */
            if (!step_exists(L, steps, v.s, v.len))
                luaL_error(L, "%s:%d: step returns \"%s\", which is not a step of this flow", path,
                           v.line, lua_pushlstring(L, v.s, v.len));
        }
    }
}

/* Reads a file into a userdata (pushed) for the scan; sets text and len. */
static void push_text(lua_State *L, const char *path, const char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        luaL_error(L, "%s: cannot read: %s", path, strerror(errno));
    char *buf = lua_newuserdatauv(L, FLOW_MAX_FILE + 1, 0);
    size_t got = fread(buf, 1, FLOW_MAX_FILE, f);
    fclose(f);
    buf[got] = '\0';
    *text = buf;
    *len = got;
}

/* Validates the flow instance at idx (from file path).  Raises errors. */
static void check_flow(lua_State *L, int idx, const char *path, int scan)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: a flow file must return a table (it returned %s)", path,
                   luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int known = 0;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; flow_fields[i]; i++)
                if (strcmp(lua_tostring(L, -2), flow_fields[i]) == 0)
                    known = 1;
        if (!known) {
            if (lua_type(L, -2) == LUA_TSTRING)
                luaL_error(L, "%s: unknown field '%s' in the flow table", path,
                           lua_tostring(L, -2));
            luaL_error(L, "%s: the flow table may only have named fields", path);
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, idx, "steps") != LUA_TTABLE)
        luaL_error(L,
                   "%s: the flow needs a table of steps (steps = { name = function(chat, "
                   "state) ... end })",
                   path);
    int steps = lua_gettop(L);
    int nsteps = 0;
    lua_pushnil(L);
    while (lua_next(L, steps)) {
        if (lua_type(L, -2) != LUA_TSTRING || !name_ok(lua_tostring(L, -2), lua_rawlen(L, -2)))
            luaL_error(L, "%s: step names must be lowercase letters, digits and _", path);
        if (lua_type(L, -1) != LUA_TFUNCTION)
            luaL_error(L, "%s: step '%s' is not a function", path, lua_tostring(L, -2));
        nsteps++;
        lua_pop(L, 1);
    }
    if (nsteps == 0)
        luaL_error(L, "%s: the flow has no steps", path);
    if (lua_getfield(L, idx, "start") != LUA_TSTRING ||
        !step_exists(L, steps, lua_tostring(L, -1), lua_rawlen(L, -1)))
        luaL_error(L, "%s: start must name one of the steps", path);
    lua_pop(L, 1);
    int t = lua_getfield(L, idx, "on_done");
    if (t != LUA_TNIL &&
        (t != LUA_TSTRING || !step_exists(L, steps, lua_tostring(L, -1), lua_rawlen(L, -1))))
        luaL_error(L, "%s: on_done must name one of the steps", path);
    lua_pop(L, 1);
    t = lua_getfield(L, idx, "on_handback");
    if (t != LUA_TNIL && t != LUA_TFUNCTION &&
        (t != LUA_TSTRING || !step_exists(L, steps, lua_tostring(L, -1), lua_rawlen(L, -1))))
        luaL_error(L, "%s: on_handback must name one of the steps or be a function(chat, how)",
                   path);
    if (scan && t == LUA_TFUNCTION) {
        const char *text;
        size_t len;
        int last, first = line_of(L, lua_gettop(L), &last);
        push_text(L, path, &text, &len);
        if (first > 0)
            scan_step(L, path, text, len, first, steps);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    t = lua_getfield(L, idx, "on_message");
    if (t != LUA_TNIL && t != LUA_TFUNCTION)
        luaL_error(L, "%s: on_message must be a function(chat, text)", path);
    lua_pop(L, 1);
    t = lua_getfield(L, idx, "default");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "%s: default must be true or false", path);
    lua_pop(L, 1);
    t = lua_getfield(L, idx, "error_message");
    if (t != LUA_TNIL && t != LUA_TSTRING)
        luaL_error(L, "%s: error_message must be a string", path);
    lua_pop(L, 1);
    t = lua_getfield(L, idx, "timers");
    if (t != LUA_TNIL) {
        if (t != LUA_TTABLE)
            luaL_error(L, "%s: timers must be a table of functions", path);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TFUNCTION)
                luaL_error(L, "%s: timers must map names to functions(chat, arg)", path);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (scan) {
        const char *text;
        size_t len;
        push_text(L, path, &text, &len);
        lua_pushnil(L);
        while (lua_next(L, steps)) {
            int last, first = line_of(L, lua_gettop(L), &last);
            if (first > 0)
                scan_step(L, path, text, len, first, steps);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* steps */
}

int flow_instantiate(lua_State *L, int gen_idx, const char *name)
{
    gen_idx = lua_absindex(L, gen_idx);
    int top = lua_gettop(L);
    lua_getfield(L, gen_idx, "flows"); /* top+1 */
    if (lua_getfield(L, top + 1, name) != LUA_TTABLE) {
        lua_settop(L, top);
        return -1;
    }
    lua_getfield(L, top + 2, "file"); /* top+3 */
    const char *path = lua_tostring(L, top + 3);
    lua_getfield(L, gen_idx, "env");   /* top+4 */
    lua_getfield(L, top + 2, "chunk"); /* top+5 */
    run_chunk(L, top + 4, path);       /* the instance replaces the chunk */
    check_flow(L, top + 5, path, 0);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 0;
}

/* Compiles and checks every flow file; fills gen.flows and gen.default. */
static void load_flows(lua_State *L, int gen, const char *dir)
{
    char names[MAX_FILES][MAX_NAME];
    char fdir[4096];
    mkpath(L, fdir, sizeof(fdir), "%s/flows", dir);
    int n = list_lua(L, fdir, names);
    if (n <= 0)
        luaL_error(L, "%s: no flows (add at least one flows/NAME.lua)", fdir);
    lua_newtable(L);
    int flows = lua_gettop(L);
    lua_getfield(L, gen, "env");
    int env = lua_gettop(L);
    const char *def = NULL;
    int ndef = 0;
    for (int i = 0; i < n; i++) {
        char path[4200];
        mkpath(L, path, sizeof(path), "%s/%s.lua", fdir, names[i]);
        compile_file(L, path);
        int chunk = lua_gettop(L);
        lua_pushvalue(L, chunk);
        run_chunk(L, env, path);
        check_flow(L, lua_gettop(L), path, 1);
        if (lua_getfield(L, -1, "name") != LUA_TNIL &&
            (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), names[i]) != 0))
            luaL_error(L, "%s: name must be \"%s\" (the file name) or left out", path, names[i]);
        lua_pop(L, 1);
        lua_getfield(L, -1, "default");
        int is_def = lua_toboolean(L, -1);
        lua_pop(L, 2); /* default, instance */
        if (is_def) {
            ndef++;
            def = names[i];
        }
        lua_createtable(L, 0, 3);
        lua_pushvalue(L, chunk);
        lua_setfield(L, -2, "chunk");
        lua_pushstring(L, path);
        lua_setfield(L, -2, "file");
        lua_pushboolean(L, is_def);
        lua_setfield(L, -2, "default");
        lua_setfield(L, flows, names[i]);
        lua_pop(L, 1); /* chunk */
    }
    if (ndef > 1)
        luaL_error(L, "%s: more than one flow has default = true", fdir);
    if (ndef == 0 && n > 1)
        luaL_error(L, "%s: several flows and none has default = true", fdir);
    lua_pushstring(L, def ? def : names[0]);
    lua_setfield(L, gen, "default");
    lua_pop(L, 1); /* env */
    lua_setfield(L, gen, "flows");
}

static void load_escalation(lua_State *L, int gen, const char *dir)
{
    char path[4200];
    mkpath(L, path, sizeof(path), "%s/escalation.lua", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return; /* optional */
    fclose(f);
    compile_file(L, path);
    lua_getfield(L, gen, "env");
    lua_insert(L, -2);
    run_chunk(L, lua_gettop(L) - 1, path);
    if (lua_type(L, -1) != LUA_TFUNCTION)
        luaL_error(L, "%s: must return a function(ctx) (it returned %s)", path,
                   luaL_typename(L, -1));
    lua_setfield(L, gen, "escalation");
    lua_pop(L, 1);
}

int flow_load_generation(lua_State *L)
{
    flow_load_ctx *ctx = lua_touserdata(L, 1);
    const char *dir = ctx->dir;
    char sub[4200];
    DIR *d = opendir(dir);
    if (!d)
        return luaL_error(L, "%s: cannot open the rules directory: %s", dir, strerror(errno));
    closedir(d);

    flow_engine_of(L)->parsed = flow_engine_of(L)->kept = 0;
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, COMPILED_NEXT);
    lua_createtable(L, 0, 6);
    int gen = lua_gettop(L);
    lua_pushinteger(L, ctx->gen);
    lua_setfield(L, gen, "number");

    /* The shared globals, frozen: read without a call per global (flow_sandbox.c), so they hold
     * only functions, plain values and views, and are not written once lexicon and lib are
     * set below (their modules fill in behind those views as they load). */
    flow_push_safe_globals(L);
    int shared = lua_gettop(L);
    flow_api_globals(L, shared);
    flow_push_frozen(L, shared);
    int env = lua_gettop(L);
    lua_pushvalue(L, env);
    lua_setfield(L, gen, "env");

    mkpath(L, sub, sizeof(sub), "%s/lexicon", dir);
    push_modules(L, sub, env);
    int lex = lua_gettop(L);
    mkpath(L, sub, sizeof(sub), "%s/lib", dir);
    push_modules(L, sub, env);
    int lib = lua_gettop(L);
    flow_push_readonly(L, lex);
    lua_setfield(L, shared, "lexicon");
    flow_push_readonly(L, lib);
    lua_setfield(L, shared, "lib");
    char bad[64];
    if (!flow_frozen_check(L, shared, bad, sizeof(bad)))
        luaL_error(L, "internal: the shared globals hold a writable table (%s)", bad);

    mkpath(L, sub, sizeof(sub), "%s/lexicon", dir);
    load_modules(L, lex, sub);
    mkpath(L, sub, sizeof(sub), "%s/lib", dir);
    load_modules(L, lib, sub);
    /* Loading is over: unknown module names are plain nil from now on. */
    lua_pushnil(L);
    lua_setmetatable(L, lex);
    lua_pushnil(L);
    lua_setmetatable(L, lib);

    load_flows(L, gen, dir);
    load_escalation(L, gen, dir);
    lua_getfield(L, LUA_REGISTRYINDEX, COMPILED_NEXT);
    lua_setfield(L, LUA_REGISTRYINDEX, COMPILED);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, COMPILED_NEXT);
    lua_settop(L, gen);
    return 1;
}
