-- expect: fail memory
-- Memory errors cannot be caught either.
local t = {}
while true do
  pcall(function() t[#t + 1] = string.rep("y", 1000000) .. #t end)
end
