-- expect: fail memory
local t = {}
local big = string.rep("x", 1000000)
for i = 1, 100000 do t[i] = big .. i end
