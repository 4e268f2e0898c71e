-- expect: ok
-- Shared modules (lib.*) and their nested data are read-only for every flow.
assert(not pcall(function() lib.shared.words[1] = "evil" end), "lib data changed")
assert(not pcall(table.insert, lib.shared.words, "evil"), "table.insert into lib data worked")
assert(not pcall(rawset, lib.shared.words, 1, "evil"), "rawset into lib data worked")
assert(not pcall(function() lib.shared.hello = nil end), "lib function removed")
assert(not pcall(function() lexicon.words.list[1] = "evil" end), "lexicon changed")
assert(lib.shared.hello() == "hi")
chat:say("ok")
