-- expect: fail stack overflow
-- Recursion through a metamethod goes through C frames; Lua's C-stack limit stops it.
local t = setmetatable({}, { __index = function(t, k) return t[k .. "x"] end })
local _ = t.a
