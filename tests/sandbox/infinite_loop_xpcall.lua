-- expect: fail instructions
-- Neither can a message handler swallow it, even one that loops itself.
while true do
  xpcall(function() while true do end end, function() while true do end end)
end
