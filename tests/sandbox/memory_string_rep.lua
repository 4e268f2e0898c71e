-- expect: fail memory
-- 1 GiB in one allocation: refused by the memory cap (Lua itself refuses 2^31 and more).
local s = string.rep("x", 2 ^ 30)
assert(not pcall(string.rep, "x", 2 ^ 40), "a 1 TiB string")
