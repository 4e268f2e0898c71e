-- expect: fail memory
local s = string.rep("x", 100000000, "yy")
