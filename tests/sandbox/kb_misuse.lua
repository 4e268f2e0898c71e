-- expect: ok
-- Hostile search text is just text; bad arguments are clear errors.
local r = kb.search(string.rep("\"* OR NEAR(", 1000))
assert(r.confidence == "none" and #r.hits == 0)
assert(not pcall(kb.search))
assert(not pcall(kb.search, "x", { limit = 1000 }))
chat:say("ok")
