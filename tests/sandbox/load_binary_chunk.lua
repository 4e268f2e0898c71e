-- expect: ok
-- Bytecode is the classic way out of a Lua sandbox: no load, loadstring, dofile or loadfile,
-- and string.dump does not exist to produce bytecode in the first place.
assert(load == nil and loadstring == nil, "load is reachable")
assert(dofile == nil and loadfile == nil, "dofile/loadfile are reachable")
assert(string.dump == nil and ("").dump == nil, "string.dump is reachable")
local ok = pcall(function() return load("\27LuaT\0\25\147\r\n\26\n", "x", "b") end)
assert(not ok, "load with a binary chunk ran")
chat:say("ok")
