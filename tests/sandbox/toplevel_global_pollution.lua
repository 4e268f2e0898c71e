-- mode: load
-- expect: ok
-- Globals set at a flow file's top level stay in that file's (per-conversation) environment.
string = nil
table = nil
x_from_attack = "leaked"
