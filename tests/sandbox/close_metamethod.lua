-- expect: fail instructions
-- A to-be-closed variable's __close runs when the block ends; it is flow code, under budget.
do
  local x <close> = setmetatable({}, { __close = function() while true do end end })
end
