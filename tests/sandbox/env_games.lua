-- expect: ok
-- _ENV belongs to this conversation alone: wiping or replacing globals here changes nothing
-- for anyone else (the canary checks string, math and lib afterwards).
string = nil
math = { floor = function() return "pwned" end }
_ENV.table = nil
rawset(_ENV, "lib", { shared = { words = { "evil" } } })
x_from_attack = "leaked"
-- (assigning nil only removes this run's own value: reads fall back to the shared view)
assert(string ~= nil and table ~= nil)
assert(math.floor() == "pwned" and lib.shared.words[1] == "evil")
chat:say("ok")
