/*
 * test_flow_json.c - Lua values to JSON text (server/flow_json.c, flow_to_json_text), the text
 * a flow's state is saved as on every turn.
 *
 * The text is written straight from the Lua values, so it must be exactly what printing a
 * cJSON tree of the same value gave before: compact, keys in byte order, numbers and escapes as
 * json_print writes them.  Fixed cases cover every type, each refusal with the path it names,
 * read-only views, invalid UTF-8 and the depth limit.  Then 3,000 random values: the text must
 * parse, print back to the same bytes (json_print of the parsed tree), have every object's keys
 * in order, and load back into Lua (flow_push_json) as a value equal to the original.
 */
#include "check.h"
#include "flow_internal.h"
#include "json_print.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static lua_State *L;

/* The value at the top of the stack as text (popped); NULL with the error in err. */
static char *text_of_top(char *err, size_t errlen)
{
    char *t = flow_to_json_text(L, -1, "chat.state", err, errlen);
    lua_pop(L, 1);
    return t;
}

/* Runs chunk (which returns one value) and checks the text, or the error when want starts with
 * "error: ". */
static void expect(const char *chunk, const char *want)
{
    char err[256];
    int loaded = luaL_loadstring(L, chunk);
    if (loaded == LUA_OK) {
        lua_newthread(L); /* the chunk's ... : a value of a type that cannot be saved */
        loaded = lua_pcall(L, 1, 1, 0);
    }
    if (loaded != LUA_OK) {
        fprintf(stderr, "chunk failed: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        CHECK(0);
        return;
    }
    char *t = text_of_top(err, sizeof(err));
    const char *got = t ? t : err;
    char shown[300];
    snprintf(shown, sizeof(shown), "%s%s", t ? "" : "error: ", got);
    if (strcmp(shown, want) != 0)
        fprintf(stderr, "%s\n  want %s\n  got  %s\n", chunk, want, shown);
    CHECK(strcmp(shown, want) == 0);
    free(t);
}

static void test_fixed_values(void)
{
    expect("return nil", "null");
    expect("return true", "true");
    expect("return {a = false}", "{\"a\":false}");
    expect("return {}", "{}");
    expect("return {1, 2, 3}", "[1,2,3]");
    expect("return {b = 1, a = {2, 'x'}, ['A'] = 0, ['é'] = 1, aa = 2}",
           "{\"A\":0,\"a\":[2,\"x\"],\"aa\":2,\"b\":1,\"é\":1}");
    expect("return {-5, 0, 9007199254740992, -9007199254740992}",
           "[-5,0,9007199254740992,-9007199254740992]");
    expect("return {1.5, -0.0, 0.1, 1764288000.123, 1e300, 2.0}",
           "[1.5,-0,0.1,1764288000.123,1e+300,2]");
    expect("return '引号\"反斜杠\\\\换行\\n\\t\\1'", "\"引号\\\"反斜杠\\\\换行\\n\\t\\u0001\"");
    expect("return 'a\\xffb'", "\"a\xEF\xBF\xBD"
                               "b\"");
    expect("return {t = {n = {{}, {x = 1}}}}", "{\"t\":{\"n\":[{},{\"x\":1}]}}");
}

static void test_refusals_name_the_path(void)
{
    expect("return {a = {b = {1, function() end}}}",
           "error: chat.state.a.b[2]: a function cannot be saved");
    expect("return {x = 9007199254740993}",
           "error: chat.state.x: integer too large to save exactly (keep it as a string)");
    expect("return {x = 0/0}", "error: chat.state.x: not a finite number");
    expect("return {x = {1/0}}", "error: chat.state.x[1]: not a finite number");
    expect("return {s = 'a\\0b'}", "error: chat.state.s: string contains a NUL byte");
    expect("return {l = {1, nil, 3}}",
           "error: chat.state.l: table mixes list items and named fields (or the list has holes)");
    expect("return {l = {1, 2, k = 3}}",
           "error: chat.state.l: table mixes list items and named fields (or the list has holes)");
    expect("return {[1.5] = 1}",
           "error: chat.state: table keys must be strings, or 1..n for a list");
    expect("return {co = (...)}", "error: chat.state.co: a thread cannot be saved");
    /* 33 tables inside each other (depth 0..32, MAX_DEPTH) are saved; 34 are not */
    char want[200] = "", path[200] = "error: chat.state";
    for (int i = 0; i < 32; i++)
        strcat(want, "[");
    strcat(want, "{}");
    for (int i = 0; i < 32; i++)
        strcat(want, "]");
    expect("local t = {} for i = 1, 31 do t = {t} end return {t}", want);
    for (int i = 0; i < 33; i++)
        strcat(path, "[1]");
    strcat(path, ": tables nested too deeply to be saved");
    expect("local t = {} for i = 1, 32 do t = {t} end return {t}", path);
    /* a long path is cut to the error buffer; nothing of the text is returned */
    char err[24];
    CHECK(luaL_dostring(L, "return {aaaaaaaaaaaa = {bbbbbbbbbbbb = function() end}}") == LUA_OK);
    CHECK(text_of_top(err, sizeof(err)) == NULL);
    CHECK(strlen(err) == sizeof(err) - 1);
    CHECK(lua_gettop(L) == 0);
}

static void test_views_save_their_contents(void)
{
    char err[128];
    CHECK(luaL_dostring(L, "return {name = '王', vip = true, tags = {'a', 'b'}}") == LUA_OK);
    flow_push_readonly(L, -1);
    lua_remove(L, -2);
    lua_newtable(L);
    lua_insert(L, -2);
    lua_setfield(L, -2, "customer");
    char *t = text_of_top(err, sizeof(err));
    CHECK(t &&
          strcmp(t, "{\"customer\":{\"name\":\"王\",\"tags\":[\"a\",\"b\"],\"vip\":true}}") == 0);
    free(t);
}

/* ---- random values ---- */

static unsigned rnd_state = 12345;

static unsigned rnd(unsigned n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static void push_random_string(void)
{
    static const char *const pieces[] = {"a",    "Z",    "0",    " ",    "\"",
                                         "\\",   "\n",   "\t",   "\x01", "\x1f",
                                         "/",    "退款", "客服", "é",    "\xF0\x9F\x98\x80",
                                         "\x7f", "{",    "}",    ":",    ","};
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (unsigned i = 0, n = rnd(8); i < n; i++)
        luaL_addstring(&b, pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))]);
    luaL_pushresult(&b);
}

static void push_random_number(void)
{
    static const double floats[] = {0.5,   -0.25,      0.1,          1.0 / 3,
                                    1e-7,  123456.789, 1764288000.5, 1764288000.123,
                                    -1e21, 3.14159,    1e15 + 0.5,   2.5e-300};
    switch (rnd(3)) {
    case 0:
        lua_pushinteger(L, (lua_Integer)rnd(2000000) - 1000000);
        break;
    case 1:
        lua_pushinteger(L, (lua_Integer)rnd(1000) * 9007199254740LL);
        break;
    default:
        lua_pushnumber(L, floats[rnd(sizeof(floats) / sizeof(floats[0]))]);
    }
}

static void push_random(int depth)
{
    luaL_checkstack(L, 4, "push_random");
    unsigned kind = depth >= 4 ? rnd(4) : rnd(6);
    switch (kind) {
    case 0:
        lua_pushboolean(L, (int)rnd(2));
        break;
    case 1:
        push_random_number();
        break;
    case 2:
    case 3:
        push_random_string();
        break;
    case 4: { /* a list */
        unsigned n = rnd(5);
        lua_createtable(L, (int)n, 0);
        for (unsigned i = 1; i <= n; i++) {
            push_random(depth + 1);
            lua_rawseti(L, -2, i);
        }
        break;
    }
    default: { /* an object; a key may repeat */
        lua_newtable(L);
        for (unsigned i = 0, n = rnd(6); i < n; i++) {
            push_random_string();
            push_random(depth + 1);
            lua_rawset(L, -3);
        }
    }
    }
}

/* Every object's keys are in byte order, as the tree printer had them. */
static int keys_sorted(const cJSON *j)
{
    for (const cJSON *c = j->child; c; c = c->next) {
        if (cJSON_IsObject(j) && c->next && strcmp(c->string, c->next->string) >= 0)
            return 0;
        if (!keys_sorted(c))
            return 0;
    }
    return 1;
}

/* a and b (stack indices) hold the same value; floats bit for bit. */
static int same_value(int a, int b, int depth)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    if (lua_type(L, a) != lua_type(L, b))
        return 0;
    if (lua_type(L, a) == LUA_TNUMBER) {
        double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
        return x == y && signbit(x) == signbit(y);
    }
    if (lua_type(L, a) != LUA_TTABLE)
        return lua_rawequal(L, a, b);
    int same = 1, n = 0;
    lua_pushnil(L);
    while (same && lua_next(L, a)) {
        n++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        same = same_value(-2, -1, depth + 1);
        lua_pop(L, 2);
    }
    if (!same) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, b)) {
        n--;
        lua_pop(L, 1);
    }
    return n == 0;
}

static void test_random_values(void)
{
    int bad = 0;
    for (int i = 0; i < 3000 && bad < 5; i++) {
        char err[256];
        lua_settop(L, 0);
        push_random(0);
        char *t = flow_to_json_text(L, 1, "v", err, sizeof(err));
        cJSON *tree = t ? cJSON_Parse(t) : NULL;
        char *again = tree ? json_print(tree) : NULL;
        int ok = t && tree && again && strcmp(t, again) == 0 && keys_sorted(tree);
        if (ok) {
            flow_push_json(L, tree);
            ok = same_value(1, 2, 0);
        }
        if (!ok) {
            fprintf(stderr, "random value %d: %s\n  printed back: %s\n", i, t ? t : err,
                    again ? again : "(none)");
            bad++;
        }
        free(again);
        cJSON_Delete(tree);
        free(t);
    }
    CHECK(bad == 0);
    lua_settop(L, 0);
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, flow_sandbox_open); /* the read-only views' registry entries */
    CHECK(lua_pcall(L, 0, 0, 0) == LUA_OK);
    lua_settop(L, 0);
    RUN(test_fixed_values);
    RUN(test_refusals_name_the_path);
    RUN(test_views_save_their_contents);
    RUN(test_random_values);
    lua_close(L);
    return check_summary();
}
