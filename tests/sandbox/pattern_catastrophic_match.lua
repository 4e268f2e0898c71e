-- expect: fail instructions
local s = string.rep("ab", 30000)
s:match("(.-)(.-)(.-)(.-)c")
