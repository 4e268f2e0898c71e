-- expect: ok
-- Changing the string metatable (or methods reached through a string) must be impossible.
assert(not pcall(setmetatable, "", {}), "setmetatable on a string worked")
local ok = pcall(function() ("").upper = function() return "pwned" end end)
assert(not ok, "assigning a string method worked")
local ok2 = pcall(function() local s = "x"; s.len = nil end)
assert(not ok2)
assert(("abc"):upper() == "ABC")
chat:say("ok")
