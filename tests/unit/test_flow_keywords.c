/*
 * test_flow_keywords.c - keyword sets (server/flow_keywords.c) against plain Lua loops.
 *
 * A plain Lua state with the standard libraries gets keywords.set as global KS (with a fake
 * engine whose budget never runs out).  A Lua script compares every method with a reference
 * written with string.find, on fixed cases (Chinese, nested and overlapping words, duplicates,
 * table entries), on deterministic random word lists and texts over small alphabets, where
 * overlaps are common, and over wide ones (26 letters, 30 Chinese characters), where trie nodes
 * have more edges than a bisection serves and get a dense row:
 *   find(s, init)      leftmost occurrence, ties to the earlier entry
 *   counts(s)          per entry, occurrences as repeated string.find counts them
 *   counts(s, true)    entries in list order using up the text they cover (the classifier's
 *                      "longest first consumes" rule when the list is sorted longest first)
 *   matches(s, max)    every occurrence by start, then entry
 * Then the errors (empty word, non-string entry) and the budget: with a small budget, scanning
 * a long text stops with the engine's "instructions" error.
 */
#include "test_flow_compare.h"

static const char *COMPARE =
    "local function plain(e) return type(e) == 'table' and e[1] or e end\n"
    "local function ref_find(list, s, init)\n"
    "  init = init or 1\n"
    "  if init < 0 then init = #s + init + 1 end\n"
    "  if init < 1 then init = 1 end\n"
    "  if init > #s + 1 then return nil end\n"
    "  local bi, bj, bk\n"
    "  for k, e in ipairs(list) do\n"
    "    local i, j = string.find(s, plain(e), init, true)\n"
    "    if i and (not bi or i < bi) then bi, bj, bk = i, j, k end\n"
    "  end\n"
    "  if not bi then return nil end\n"
    "  return bi, bj, bk\n"
    "end\n"
    "local function ref_counts(list, s)\n"
    "  local out = {}\n"
    "  for k, e in ipairs(list) do\n"
    "    local w, n, i = plain(e), 0, 1\n"
    "    while true do\n"
    "      local a, b = string.find(s, w, i, true)\n"
    "      if not a then break end\n"
    "      n, i = n + 1, b + 1\n"
    "    end\n"
    "    if n > 0 then out[k] = n end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local function ref_exclusive(list, s)\n"
    "  local out = {}\n"
    "  for k, e in ipairs(list) do\n"
    "    local w, n, i, parts = plain(e), 0, 1, {}\n"
    "    while true do\n"
    "      local a, b = string.find(s, w, i, true)\n"
    "      if not a then break end\n"
    "      n = n + 1\n"
    "      parts[#parts + 1] = string.sub(s, i, a - 1)\n"
    "      parts[#parts + 1] = '\\0'\n"
    "      i = b + 1\n"
    "    end\n"
    "    if n > 0 then\n"
    "      parts[#parts + 1] = string.sub(s, i)\n"
    "      s = table.concat(parts)\n"
    "      out[k] = n\n"
    "    end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local function ref_matches(list, s, max)\n"
    "  local out = {}\n"
    "  for k, e in ipairs(list) do\n"
    "    local w, i = plain(e), 1\n"
    "    while true do\n"
    "      local a, b = string.find(s, w, i, true)\n"
    "      if not a then break end\n"
    "      out[#out + 1] = { a, b, k }\n"
    "      i = a + 1\n"
    "    end\n"
    "  end\n"
    "  table.sort(out, function(x, y)\n"
    "    if x[1] ~= y[1] then return x[1] < y[1] end\n"
    "    return x[3] < y[3]\n"
    "  end)\n"
    "  while #out > (max or 256) do out[#out] = nil end\n"
    "  return out\n"
    "end\n"
    "local function flat(t)\n"
    "  local keys = {}\n"
    "  for k, v in pairs(t) do\n"
    "    if type(v) == 'table' then return nil end\n"
    "    keys[#keys + 1] = k .. '=' .. v\n"
    "  end\n"
    "  table.sort(keys)\n"
    "  return table.concat(keys, ' ')\n"
    "end\n"
    "local function flat_matches(t)\n"
    "  local out = {}\n"
    "  for i, m in ipairs(t) do out[i] = table.concat(m, ',') end\n"
    "  return table.concat(out, ' ')\n"
    "end\n"
    "local checked, bad = 0, 0\n"
    "local function same(what, list, s, a, b)\n"
    "  checked = checked + 1\n"
    "  if a ~= b then\n"
    "    bad = bad + 1\n"
    "    if bad <= 20 then\n"
    "      local words = {}\n"
    "      for i, e in ipairs(list) do words[i] = plain(e) end\n"
    "      io.stderr:write(what, ' list {', table.concat(words, '|'), '} text \"', s,\n"
    "        '\": lua ', a, ' set ', b, '\\n')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function all(list, s)\n"
    "  local set = KS(list)\n"
    "  assert(#set == #list)\n"
    "  for _, init in ipairs({ 1, 2, 4, -3, 0, #s, #s + 1, #s + 5 }) do\n"
    "    same('find ' .. init, list, s, table.concat({ ref_find(list, s, init) }, ','),\n"
    "      table.concat({ set:find(s, init) }, ','))\n"
    "  end\n"
    "  same('counts', list, s, flat(ref_counts(list, s)), flat(set:counts(s)))\n"
    "  same('exclusive', list, s, flat(ref_exclusive(list, s)), flat(set:counts(s, true)))\n"
    "  same('matches', list, s, flat_matches(ref_matches(list, s)),\n"
    "    flat_matches(set:matches(s)))\n"
    "  same('matches 3', list, s, flat_matches(ref_matches(list, s, 3)),\n"
    "    flat_matches(set:matches(s, 3)))\n"
    "end\n"
    "-- fixed cases\n"
    "local cn = { '没到账', '到账', '退款', '没', '款', { '退款', 5 }, '账户', '账' }\n"
    "for _, s in ipairs({ '', '退款没到账', '我的退款一直没到账，账户里没有款', '到账到账到账',\n"
    "  '没到账没到账', 'abc', '退退款款', '账账账' }) do\n"
    "  all(cn, s)\n"
    "end\n"
    "all({ 'he', 'she', 'his', 'hers' }, 'ushers and his hershe')\n"
    "all({ 'a', 'aa', 'aaa' }, 'aaaaaaa')\n"
    "all({ 'aaa', 'aa', 'a' }, 'aaaaaaa')\n"
    "all({ 'x' }, 'no match here')\n"
    "all({}, 'anything')\n"
    "-- sorted longest first, as the classifier does\n"
    "local sorted = { '没到账', '到账', '账户', '账' }\n"
    "same('classifier', sorted, '没到账的账户', flat({ [1] = 1, [3] = 1 }),\n"
    "  flat(KS(sorted):counts('没到账的账户', true)))\n"
    "-- deterministic random lists and texts\n"
    "local seed = 4242\n"
    "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 "
    "end\n"
    "local alphabets = { { 'a', 'b', 'c' }, { '到', '账', '没', '款' }, { 'a', '账', 'b', '\\0' } "
    "}\n"
    "for round = 1, 3000 do\n"
    "  local abc = alphabets[rnd(#alphabets)]\n"
    "  local list = {}\n"
    "  for k = 1, rnd(8) do\n"
    "    local w = {}\n"
    "    for _ = 1, rnd(4) do w[#w + 1] = abc[rnd(#abc)] end\n"
    "    list[k] = rnd(4) == 1 and { table.concat(w), k } or table.concat(w)\n"
    "  end\n"
    "  local s = {}\n"
    "  for _ = 1, rnd(30) - 1 do s[#s + 1] = abc[rnd(#abc)] end\n"
    "  all(list, table.concat(s))\n"
    "end\n"
    "-- wide alphabets: words from few first symbols but many next ones, so that nodes have more\n"
    "-- than 8 edges (a dense row of moves); Chinese characters share a few UTF-8 lead bytes\n"
    "local wide = {}\n"
    "for c = 97, 122 do wide[#wide + 1] = string.char(c) end\n"
    "local cjk = { '的', '一', '是', '不', '了', '人', '我', '在', '有', '他', '这', '中', '大', "
    "'来', '上', '国', '个', '到', '说', '们', '为', '子', '和', '你', '地', '出', '道', '也', "
    "'时', '年' }\n"
    "for round = 1, 1500 do\n"
    "  local abc = rnd(2) == 1 and wide or cjk\n"
    "  local list = {}\n"
    "  for k = 1, rnd(60) do\n"
    "    local w = { abc[rnd(3)] }\n"
    "    for _ = 1, rnd(3) - 1 do w[#w + 1] = abc[rnd(#abc)] end\n"
    "    list[k] = table.concat(w)\n"
    "  end\n"
    "  local s = {}\n"
    "  for _ = 1, rnd(60) - 1 do s[#s + 1] = abc[rnd(rnd(2) == 1 and 3 or #abc)] end\n"
    "  all(list, table.concat(s))\n"
    "end\n"
    "return checked, bad\n";

/* Runs code; returns the error message (static copy) or NULL when it did not fail. */
static const char *fails(lua_State *L, const char *code)
{
    static char msg[512];
    if (luaL_loadstring(L, code) != LUA_OK)
        return "does not compile";
    if (lua_pcall(L, 0, 0, 0) == LUA_OK)
        return NULL;
    snprintf(msg, sizeof(msg), "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return msg;
}

int main(void)
{
    static flow_engine_t fake;
    lua_State *L = tc_state(&fake);
    lua_pushcfunction(L, flow_keywords_set);
    lua_setglobal(L, "KS");
    int failures = tc_compare(L, COMPARE, "keyword set", 30000);

    /* Bad lists get clear errors; the metatable is locked. */
    static const struct {
        const char *code, *want;
    } errors[] = {
        {"KS({'a', ''})", "entry 2 is an empty string"},
        {"KS({'a', 3})", "entry 2 is not a string"},
        {"KS({'a', {}})", "entry 2 is not a string"},
        {"KS('a')", "table expected"},
        {"KS({'a'}):find(nil)", "string expected"},
        {"KS({'a'}):matches('a', -1)", "max must be between"},
        {"assert(getmetatable(KS({'a'})) == 'locked'); error('locked ok')", "locked ok"},
    };
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        const char *msg = fails(L, errors[i].code);
        if (!msg || !strstr(msg, errors[i].want)) {
            fprintf(stderr, "%s: got %s, want ...%s...\n", errors[i].code, msg ? msg : "no error",
                    errors[i].want);
            failures++;
        }
    }

    /* A small budget stops a scan of a long text. */
    fake.budget = 1000;
    const char *msg =
        fails(L, "local s = KS({'ab', 'b'}); local t = string.rep('ab', 200000); s:counts(t)");
    printf("budgeted scan: %s\n", msg ? msg : "(no error)");
    if (!msg || !strstr(msg, "instructions") || fake.killed != FLOW_KILL_INSTR)
        failures++;
    lua_close(L);
    printf("test_flow_keywords: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
