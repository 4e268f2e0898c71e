-- expect: ok
-- Adding __gc after setmetatable does not mark the object for finalization (Lua 5.4 rule),
-- so the loop below never runs; collectgarbage is not available to force a cycle anyway.
assert(collectgarbage == nil, "collectgarbage is reachable")
local mt = {}
local t = setmetatable({}, mt)
mt.__gc = function() while true do end end
t = nil
for i = 1, 1000 do local _ = { i } end
chat:say("ok")
