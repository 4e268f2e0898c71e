-- expect: fail instructions
-- string.format("%s") calls __tostring from C; the hook still counts it.
local e = setmetatable({}, { __tostring = function() while true do end end })
local s = string.format("%s", e)
