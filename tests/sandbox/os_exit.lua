-- expect: ok
assert(os == nil, "os is reachable")
assert(not pcall(function() os.exit(1) end))
assert(io == nil, "io is reachable")
assert(not pcall(function() io.popen("id") end))
chat:say("ok")
