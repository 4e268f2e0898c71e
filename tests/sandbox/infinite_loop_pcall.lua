-- expect: fail instructions
-- The kill error cannot be caught: pcall re-raises it.
while true do
  pcall(function() while true do end end)
end
