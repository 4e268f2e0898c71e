-- expect: ok
-- A finalizer would run at collection time, outside any budget: refused.
local ok, err = pcall(setmetatable, {}, { __gc = function() while true do end end })
assert(not ok and err:find("__gc"), "a __gc metatable was accepted: " .. tostring(err))
chat:say("ok")
