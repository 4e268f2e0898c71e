-- expect: ok
-- _ENV belongs to this conversation alone: wiping or replacing globals here changes nothing
-- for anyone else (the canary checks string, math and lib afterwards).
string = nil
math = { floor = function() return "pwned" end }
_ENV.table = nil
rawset(_ENV, "lib", { shared = { words = { "evil" } } })
x_from_attack = "leaked"
assert(string == nil and lib.shared.words[1] == "evil")
chat:say("ok")
