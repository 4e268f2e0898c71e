-- expect: fail stack overflow|instructions
-- Whichever limit comes first (Lua stack size or the instruction budget) ends it.
local function f(n) return 1 + f(n + 1) end
f(1)
