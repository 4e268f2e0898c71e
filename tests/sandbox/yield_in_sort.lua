-- expect: fail chat:ask can only wait inside a step
-- chat:ask cannot yield through a C sort comparator.
local t = { 3, 1, 2 }
table.sort(t, function(a, b) chat:ask("which?") return a < b end)
