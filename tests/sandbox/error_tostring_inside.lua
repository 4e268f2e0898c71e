-- expect: fail instructions
-- Calling the evil __tostring from flow code runs under the flow's budget.
local e = setmetatable({}, { __tostring = function() while true do end end })
local s = tostring(e)
