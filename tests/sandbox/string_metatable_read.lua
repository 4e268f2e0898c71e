-- expect: ok
-- getmetatable("").__index is the real string table in plain Lua; here the metatable is hidden.
assert(getmetatable("") == false, "the string metatable is visible")
local ok = pcall(function() return getmetatable("").__index end)
assert(not ok, "getmetatable('').__index worked")
assert(getmetatable("abc") == false)
chat:say("ok")
