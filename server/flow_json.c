/*
 * flow_json.c - Lua values <-> JSON (text, or cJSON trees): saved state, records, details.
 *
 * Lua -> JSON (flow_to_json) accepts what survives a round trip unchanged: nil (as null inside
 * arrays), booleans, finite numbers (integers up to 2^53), strings (invalid UTF-8 is replaced
 * by U+FFFD; NUL bytes are refused), sequences 1..n as arrays, tables with string keys as
 * objects (keys sorted, so output is deterministic), and read-only views as their contents.
 * Anything else - functions, coroutines, userdata, tables mixing kinds of keys or with holes,
 * nesting deeper than MAX_DEPTH - is refused with a message naming the value's path, e.g.
 * "chat.state.offer.fn: a function cannot be saved".  No Lua code runs (raw access only), but
 * stack growth may raise a memory error, so call it in protected mode.
 *
 * flow_to_json_text writes the JSON text straight from the Lua values (keys sorted, compact,
 * what json_print would give for the tree); flow_to_json parses that text into a cJSON tree
 * for callers that read the value.
 *
 * JSON -> Lua (flow_push_json) makes plain tables; numbers that are whole and within 2^53
 * become integers.
 *
 * Ownership: returned cJSON trees and strings belong to the caller.
 */
#include "flow_internal.h"
#include "json_print.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_EXACT 9007199254740992.0 /* 2^53 */

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min, cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Every string of a state is checked on every save, and most of a state's bytes are Chinese
 * text: ASCII and the three-byte characters of the BMP outside the surrogates are checked here
 * in a few instructions each, the rest by utf8_seq. */
int flow_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = p[0];
        if (c < 0x80) {
            p++;
        } else if (c >= 0xE1 && c <= 0xEF && c != 0xED && end - p >= 3 && (p[1] & 0xC0) == 0x80 &&
                   (p[2] & 0xC0) == 0x80) {
            p += 3; /* U+1000..U+CFFF, U+E000..U+FFFF: no overlong form, no surrogate */
        } else {
            size_t n = utf8_seq(p, (size_t)(end - p));
            if (n == 0)
                return 0;
            p += n;
        }
    }
    return 1;
}

char *flow_utf8_clean(const char *s, size_t len)
{
    /* Worst case every byte becomes the 3-byte replacement character. */
    char *out = malloc(len * 3 + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq((const unsigned char *)s + i, len - i);
        if (n == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- Lua -> JSON ---- */

/* The text is written as the values are read: no tree in between.  A flow's state is printed
 * about twice a turn (when a step begins, and when a call ends), and building a cJSON tree only
 * to print and free it was most of that cost.
 *
 * The path to the value being converted is kept as a stack of keys (borrowed from the tables,
 * which hold them for the whole conversion) and list positions, and printed only for an error:
 * most states convert without one, and formatting a path per value was a third of the cost. */
typedef struct jctx {
    lua_State *L;
    const char *where;
    struct {
        const char *key; /* NULL: list item */
        lua_Integer i;
    } path[MAX_DEPTH + 2];
    int depth;
    char *err;
    size_t errlen;
    util_buf out;
} jctx;

static int fail(jctx *c, const char *what)
{
    if (!c->err || !c->errlen)
        return -1;
    size_t o = (size_t)snprintf(c->err, c->errlen, "%s", c->where);
    for (int d = 0; d < c->depth && o < c->errlen; d++) {
        if (c->path[d].key)
            o += (size_t)snprintf(c->err + o, c->errlen - o, ".%s", c->path[d].key);
        else
            o += (size_t)snprintf(c->err + o, c->errlen - o, "[%lld]", (long long)c->path[d].i);
    }
    if (o < c->errlen)
        snprintf(c->err + o, c->errlen - o, ": %s", what);
    return -1;
}

static int convert(jctx *c, int idx, int depth);

/* Converts a child, with ".key" or "[i]" on the path while it does. */
static int convert_child(jctx *c, int idx, int depth, const char *key, lua_Integer i)
{
    c->path[c->depth].key = key;
    c->path[c->depth].i = i;
    c->depth++;
    if (convert(c, idx, depth + 1) != 0)
        return -1;
    c->depth--;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Writes the object's members in key order (deterministic output); strs keys, all strings. */
static int convert_object(jctx *c, int idx, int depth, lua_Integer strs)
{
    lua_State *L = c->L;
    const char *small[32];
    const char **keys = strs <= 32 ? small : malloc(sizeof(*keys) * (size_t)strs);
    size_t nk = 0;
    int rc = 0;
    if (!keys)
        return fail(c, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        keys[nk++] = lua_tostring(L, -2); /* the strings stay alive in the table */
        lua_pop(L, 1);
    }
    qsort(keys, nk, sizeof(*keys), cmp_str);
    json_put(&c->out, "{", 1);
    for (size_t i = 0; i < nk && rc == 0; i++) {
        if (i > 0)
            json_put(&c->out, ",", 1);
        json_put_string(&c->out, keys[i]);
        json_put(&c->out, ":", 1);
        lua_pushstring(L, keys[i]);
        lua_rawget(L, idx);
        rc = convert_child(c, lua_gettop(L), depth, keys[i], 0);
        lua_pop(L, 1);
    }
    json_put(&c->out, "}", 1);
    if (keys != small)
        free(keys);
    return rc;
}

static int convert_table(jctx *c, int idx, int depth)
{
    lua_State *L = c->L;
    if (depth > MAX_DEPTH)
        return fail(c, "tables nested too deeply to be saved");
    luaL_checkstack(L, 8, "flow_to_json");
    if (flow_push_view_target(L, idx)) {
        /* A read-only view (e.g. chat.customer): save what it shows. */
        int rc = convert_table(c, lua_gettop(L), depth);
        lua_pop(L, 1);
        return rc;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    lua_Integer count = 0, ints = 0, strs = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        count++;
        if (lua_type(L, -2) == LUA_TSTRING)
            strs++;
        else if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 && lua_tointeger(L, -2) <= n)
            ints++;
        else {
            lua_pop(L, 2);
            return fail(c, "table keys must be strings, or 1..n for a list");
        }
        lua_pop(L, 1);
    }
    if (count > 0 && ints == count && count == n) {
        json_put(&c->out, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                json_put(&c->out, ",", 1);
            lua_rawgeti(L, idx, i);
            int rc = convert_child(c, lua_gettop(L), depth, NULL, i);
            lua_pop(L, 1);
            if (rc != 0)
                return rc;
        }
        json_put(&c->out, "]", 1);
        return 0;
    }
    if (ints > 0)
        return fail(c, "table mixes list items and named fields (or the list has holes)");
    return convert_object(c, idx, depth, strs);
}

static int convert(jctx *c, int idx, int depth)
{
    lua_State *L = c->L;
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        json_put(&c->out, "null", 4);
        return 0;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            json_put(&c->out, "true", 4);
        else
            json_put(&c->out, "false", 5);
        return 0;
    case LUA_TNUMBER: {
        double d;
        if (lua_isinteger(L, idx)) {
            lua_Integer v = lua_tointeger(L, idx);
            if (v > (lua_Integer)MAX_EXACT || v < -(lua_Integer)MAX_EXACT)
                return fail(c, "integer too large to save exactly (keep it as a string)");
            d = (double)v;
        } else {
            d = lua_tonumber(L, idx);
            if (!isfinite(d))
                return fail(c, "not a finite number");
        }
        json_put_number(&c->out, d);
        return 0;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (memchr(s, '\0', len))
            return fail(c, "string contains a NUL byte");
        if (flow_utf8_valid(s, len)) { /* the usual case: no cleaned copy */
            json_put_string(&c->out, s);
            return 0;
        }
        char *clean = flow_utf8_clean(s, len);
        if (!clean)
            return fail(c, "out of memory");
        json_put_string(&c->out, clean);
        free(clean);
        return 0;
    }
    case LUA_TTABLE:
        return convert_table(c, idx, depth);
    default: {
        char what[64];
        snprintf(what, sizeof(what), "a %s cannot be saved", luaL_typename(L, idx));
        return fail(c, what);
    }
    }
}

char *flow_to_json_text(lua_State *L, int idx, const char *where, char *err, size_t errlen)
{
    jctx c;
    c.L = L;
    c.err = err;
    c.errlen = errlen;
    if (err && errlen)
        err[0] = '\0';
    c.where = where ? where : "value";
    c.depth = 0;
    memset(&c.out, 0, sizeof(c.out));
    int top = lua_gettop(L);
    int rc = convert(&c, idx, 0);
    lua_settop(L, top);
    if (rc != 0) {
        free(c.out.p);
        return NULL;
    }
    char *text = json_finish(&c.out);
    if (!text)
        fail(&c, "out of memory");
    return text;
}

cJSON *flow_to_json(lua_State *L, int idx, const char *where, char *err, size_t errlen)
{
    char *text = flow_to_json_text(L, idx, where, err, errlen);
    if (!text)
        return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j && err && errlen)
        snprintf(err, errlen, "%s: out of memory", where ? where : "value");
    return j;
}

/* ---- JSON -> Lua ---- */

static void push_json(lua_State *L, const cJSON *j, int depth)
{
    luaL_checkstack(L, 4, "flow_push_json");
    if (depth > 64) {
        lua_pushnil(L);
        return;
    }
    if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) <= MAX_EXACT)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        lua_Integer i = 0;
        for (const cJSON *it = j->child; it; it = it->next) {
            i++;
            if (cJSON_IsNull(it))
                continue;
            push_json(L, it, depth + 1);
            lua_rawseti(L, -2, i);
        }
    } else if (cJSON_IsObject(j)) {
        lua_newtable(L);
        for (const cJSON *it = j->child; it; it = it->next) {
            if (cJSON_IsNull(it) || !it->string)
                continue;
            push_json(L, it, depth + 1);
            lua_setfield(L, -2, it->string);
        }
    } else {
        lua_pushnil(L);
    }
}

void flow_push_json(lua_State *L, const cJSON *j)
{
    push_json(L, j, 0);
}
