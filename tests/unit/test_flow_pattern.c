/*
 * test_flow_pattern.c - the budgeted pattern functions (server/flow_pattern.c) against Lua's own.
 *
 * A plain Lua state with the standard libraries gets the engine's find/match/gmatch/gsub as
 * table P (with a fake engine whose budget never runs out).  A Lua script compares both
 * implementations on a corpus of patterns and subjects and on deterministic random ones: same
 * results, or both errors.  Then the budget: with a small budget a catastrophic pattern must
 * stop with the engine's "instructions" error instead of running on.
 */
#include "test_flow_compare.h"

static const char *COMPARE =
    "local function pack(...) return { n = select('#', ...), ... } end\n"
    "local function show(t)\n"
    "  local o = {}\n"
    "  for i = 1, t.n do o[#o + 1] = tostring(t[i]) end\n"
    "  return table.concat(o, ', ')\n"
    "end\n"
    "local function gm(impl, s, p, init)\n"
    "  local out, n = {}, 0\n"
    "  for a, b, c in impl.gmatch(s, p, init) do\n"
    "    n = n + 1; out[#out + 1] = tostring(a) .. '/' .. tostring(b) .. '/' .. tostring(c)\n"
    "    if n > 200 then break end\n"
    "  end\n"
    "  return table.concat(out, ';')\n"
    "end\n"
    "local fn = function(...) return table.concat({ ... }, '|') end\n"
    "local tbl = { a = 'A', b = false, ['1'] = 'one', hello = 'HI' }\n"
    "local bad = 0\n"
    "local checked = 0\n"
    "local function cmp(what, f1, f2, ...)\n"
    "  checked = checked + 1\n"
    "  local a, b = pack(pcall(f1, ...)), pack(pcall(f2, ...))\n"
    "  local same = a[1] == b[1]\n"
    "  if same and a[1] then\n"
    "    same = a.n == b.n\n"
    "    for i = 2, a.n do if a[i] ~= b[i] then same = false end end\n"
    "  end\n"
    "  if not same then\n"
    "    bad = bad + 1\n"
    "    if bad <= 20 then\n"
    "      local args = pack(...)\n"
    "      io.stderr:write(what, '(', show(args), '): lua {', show(a), '} engine {', show(b), "
    "'}\\n')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function all(s, p, init)\n"
    "  cmp('find', string.find, P.find, s, p, init)\n"
    "  cmp('find plain', string.find, P.find, s, p, init, true)\n"
    "  cmp('match', string.match, P.match, s, p, init)\n"
    "  cmp('gmatch', function(...) return gm(string, ...) end,\n"
    "      function(...) return gm(P, ...) end, s, p, init)\n"
    "  cmp('gsub str', string.gsub, P.gsub, s, p, '<%0>')\n"
    "  cmp('gsub cap', string.gsub, P.gsub, s, p, '%1-%%')\n"
    "  cmp('gsub fn', string.gsub, P.gsub, s, p, fn)\n"
    "  cmp('gsub tbl', string.gsub, P.gsub, s, p, tbl)\n"
    "  cmp('gsub n', string.gsub, P.gsub, s, p, 'x', 2)\n"
    "end\n"
    "local patterns = {\n"
    "  '', 'a', '^a', 'a$', '^$', '.', '.-', '.*', 'a*', 'a+', 'a-', 'a?', 'a-b', 'a?b',\n"
    "  '(%w+)', '^(%w+)', '(%d+)-(%d+)', '%f[%w]%w+', '%f[%W]', '%b()', '%bxy', '[%a-z]',\n"
    "  '[]]', '[^]]', '[a-]', '[-a]', '%%', '%.', '()a()', '(a)%1', '(a)(b)%2%1', '(()())',\n"
    "  '[^%s]+', '%s*(.-)%s*$', '(h)(e)(l)(l)(o)', '[%d%.]+', '%x+', '%u%l+', '%p', '%c',\n"
    "  '%g+', '[%w_]+', '(.)%1', '^(.-)=(.*)$', '(%d+)元', '退款', '[\\128-\\255]+',\n"
    "  '(', ')', '%', '[a', '%b', '%f', '%1', '(()', '%g', 'a%', '[%', '%z', '[^%]]',\n"
    "  -- shapes of the shipped rules (the first-byte filter: classes, sets, frontiers, captures)\n"
    "  '%f[%d](%d%d?)点', '(%d%d?)月(%d%d?)日', '\\194\\165%s*(%d+%.?%d*)', '[%p%s]', '%s+$',\n"
    "  '%f[%d](1[3-9]%d%d%d%d%d%d%d%d%d)%f[%D]', '((%d)元)', '(()%d)', '%f[%w](%w+)%f[%W]',\n"
    "  '%f[%D]', '[%d]+', '[^%d]+', '%d*元', '%d?元', '%d-元', '%d+元', '%f[a]', '%f[]',\n"
    "}\n"
    "local subjects = {\n"
    "  '', 'a', 'aaa', 'hello world', 'a,b,,c', '(foo(bar))baz', 'xyxxyy', ' x = 12 ',\n"
    "  'THE (quick) fox', '退款58元，订单号12345', 'abc123def456', 'aab', 'baaab', 'a.b-c',\n"
    "  'hello', ']]a]', '%%a%',\n"
    "  '12月3日下午3点半，￥58.5 退款 13912345678', '订单 2024-03-05，共 3 件', '0123',\n"
    "}\n"
    "for _, p in ipairs(patterns) do\n"
    "  for _, s in ipairs(subjects) do\n"
    "    all(s, p)\n"
    "    for _, init in ipairs({ 1, 2, -3, 0, 5, 100, -100 }) do\n"
    "      cmp('find init', string.find, P.find, s, p, init)\n"
    "      cmp('match init', string.match, P.match, s, p, init)\n"
    "      cmp('gmatch init', function(...) return gm(string, ...) end,\n"
    "          function(...) return gm(P, ...) end, s, p, init)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "-- deterministic random patterns and subjects\n"
    "local seed = 12345\n"
    "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 "
    "end\n"
    "local atoms = { 'a', 'b', '.', '%a', '%d', '%s', '[ab]', '[^a]', '(', ')', '()', '*', '+',\n"
    "  '-', '?', '^', '$', '%1', '%b()', '%f[a]', '1', '[a-c]', '%%' }\n"
    "local chars = { 'a', 'b', 'c', '1', '2', '(', ')', ' ', '%' }\n"
    "for i = 1, 4000 do\n"
    "  local p, s = {}, {}\n"
    "  for j = 1, rnd(7) do p[#p + 1] = atoms[rnd(#atoms)] end\n"
    "  for j = 1, rnd(13) - 1 do s[#s + 1] = chars[rnd(#chars)] end\n"
    "  all(table.concat(s), table.concat(p))\n"
    "end\n"
    "return checked, bad\n";

int main(void)
{
    static flow_engine_t fake;
    lua_State *L = tc_state(&fake);
    lua_newtable(L);
    flow_pattern_open(L, -1);
    lua_setglobal(L, "P");
    int failures = tc_compare(L, COMPARE, "pattern", 50000);

    /* A small budget stops a catastrophic pattern. */
    fake.budget = 1000;
    lua_getglobal(L, "P");
    lua_getfield(L, -1, "find");
    lua_pushstring(L, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    lua_pushstring(L, "a*a*a*a*a*a*a*a*a*b");
    int st = lua_pcall(L, 2, 1, 0);
    const char *msg = lua_tostring(L, -1);
    printf("budgeted find: %s\n", msg ? msg : "(no message)");
    if (st == LUA_OK || !msg || !strstr(msg, "instructions") || fake.killed != FLOW_KILL_INSTR)
        failures++;
    lua_close(L);
    printf("test_flow_pattern: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
