-- expect: fail instructions
-- Backtracking blow-up: Lua's own matcher would spin in C for hours, out of the hook's
-- reach.  The engine's matcher counts its steps against the budget.
local s = string.rep("a", 60000)
string.find(s, string.rep("a*", 15) .. "b")
