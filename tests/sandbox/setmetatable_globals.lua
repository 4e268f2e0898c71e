-- expect: ok
for _, t in ipairs({ string, table, math, utf8, kb, clock, lib, lexicon }) do
  assert(not pcall(setmetatable, t, { __index = function() return "pwned" end }))
end
assert(not pcall(setmetatable, chat, {}), "setmetatable on chat worked")
assert(getmetatable(chat) == false, "chat's metatable is visible")
chat:say("ok")
