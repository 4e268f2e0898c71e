-- expect: ok
-- CVE-2022-0543 (Redis on Debian): the Lua "package" table leaked into the sandbox and
-- package.loadlib loaded liblua's luaopen_io, giving io.popen.  No package here, nor any
-- other way to reach a C loader.
assert(package == nil, "package is reachable")
assert(require == nil, "require is reachable")
local ok, err = pcall(function()
  return package.loadlib("/usr/lib/x86_64-linux-gnu/liblua5.1.so.0", "luaopen_io")
end)
assert(not ok and tostring(err):find("package"), "package.loadlib did not fail: " .. tostring(err))
chat:say("ok")
