-- expect: fail instructions|memory
-- string.rep + gsub amplification.
local s = string.rep("ab", 200000)
for i = 1, 50 do s = s:gsub(".", "%0%0") end
