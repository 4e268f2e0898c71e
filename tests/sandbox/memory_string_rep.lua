-- expect: fail memory
local s = string.rep("x", 2 ^ 40)
