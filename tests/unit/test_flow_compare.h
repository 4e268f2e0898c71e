/*
 * test_flow_compare.h - the rig shared by tests that compare an engine primitive with plain Lua
 * (test_flow_pattern.c, test_flow_keywords.c); header-only.
 *
 * tc_state() opens a plain Lua state with the standard libraries and a fake engine whose
 * instruction budget never runs out (tests lower fake->budget to check that a primitive stops).
 * tc_compare() runs a script that returns `checked, bad` and fails when bad > 0 or fewer than
 * min_checked comparisons ran (a script that compared nothing must not pass).
 */
#ifndef TEST_FLOW_COMPARE_H
#define TEST_FLOW_COMPARE_H

#include "flow_internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static lua_State *tc_state(flow_engine_t *fake)
{
    lua_State *L = luaL_newstate();
    memset(fake, 0, sizeof(*fake));
    fake->max_instr = 1000;
    fake->budget = LONG_MAX / 2;
    *(flow_engine_t **)lua_getextraspace(L) = fake;
    luaL_openlibs(L);
    return L;
}

/* Returns 0 (all comparisons agreed) or 1. */
static int tc_compare(lua_State *L, const char *script, const char *what, long min_checked)
{
    if (luaL_loadstring(L, script) != LUA_OK || lua_pcall(L, 0, 2, 0) != LUA_OK) {
        fprintf(stderr, "%s script: %s\n", what, lua_tostring(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    long checked = (long)lua_tointeger(L, -2), bad = (long)lua_tointeger(L, -1);
    lua_pop(L, 2);
    printf("%s comparisons: %ld, mismatches: %ld\n", what, checked, bad);
    return checked < min_checked || bad != 0;
}

#endif
