-- expect: ok
-- Library tables are read-only views: rawset, plain assignment and table.* all refuse.
local ok, err = pcall(rawset, string, "rep", function() return "pwned" end)
assert(not ok and err:find("read%-only"), "rawset on string: " .. tostring(err))
assert(not pcall(function() string.rep = nil end), "string.rep = nil worked")
assert(not pcall(table.insert, string, "x"), "table.insert into string worked")
assert(not pcall(function() string.find = string.rep end))
assert(string.rep("ab", 2) == "abab")
chat:say("ok")
