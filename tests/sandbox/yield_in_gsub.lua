-- expect: fail chat:ask can only wait inside a step
local s = ("abc"):gsub(".", function(c) return chat:ask(c) end)
