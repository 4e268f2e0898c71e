-- expect: fail attempt to call a nil value
-- A local _ENV with nothing in it just breaks this flow's own code.
local say = chat
local _ENV = {}
print("unreachable")
