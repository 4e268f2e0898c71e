-- expect: ok
for _, name in ipairs({ "table", "math", "utf8", "kb", "clock", "lib", "lexicon" }) do
  local t = _ENV[name]
  assert(type(t) == "table", name .. " missing")
  assert(not pcall(rawset, t, "x", 1), "rawset on " .. name .. " worked")
  assert(not pcall(function() t.x = 1 end), "assignment into " .. name .. " worked")
  assert(not pcall(setmetatable, t, {}), "setmetatable on " .. name .. " worked")
  assert(getmetatable(t) == "read-only")
end
assert(not pcall(table.insert, utf8, "x"), "inserting into utf8 worked")
assert(not pcall(table.remove, math), "table.remove on math worked")
assert(next(string) == nil, "library views expose their contents to next")
assert(rawget(string, "find") == nil and rawget(math, "pi") == nil and rawget(kb, "search") == nil,
  "rawget on a library view reaches its target")
local n = 0
for k, v in pairs(math) do n = n + 1 end
assert(n > 10, "pairs on a view shows nothing")
chat:say("ok")
