-- expect: ok
-- The environment's metatable is protected: no swapping the global lookup.
assert(getmetatable(_ENV) == false, "the environment metatable is visible")
assert(not pcall(setmetatable, _ENV, { __index = function() return "pwned" end }))
local ok = pcall(function() local _ENV = setmetatable({}, { __index = _ENV }); return string end)
assert(ok, "a local _ENV must simply work")
chat:say("ok")
