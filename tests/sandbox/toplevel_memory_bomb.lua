-- mode: load
-- expect: reject memory
local s = string.rep("x", 2 ^ 30)
