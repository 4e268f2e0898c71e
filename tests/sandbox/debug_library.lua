-- expect: ok
assert(debug == nil, "debug is reachable")
assert(not pcall(function() return debug.getregistry() end))
assert(not pcall(function() return debug.setmetatable(1, {}) end))
chat:say("ok")
