-- expect: ok
-- Malformed patterns are ordinary errors, not crashes.
for _, p in ipairs({ "%", "[a", "(()", "%b", "%f", "%1", "(a)%2", ")", "[%" }) do
  local ok, err = pcall(string.match, "abc", p)
  assert(not ok, "pattern " .. p .. " did not fail")
end
assert(not pcall(string.gsub, "abc", "b", "%9"))
assert(not pcall(string.gsub, "abc", "b", "%"))
assert(string.gsub("abc", "b", "%%") == "a%c")
-- as in standard Lua, find without pattern specials is a plain search
assert(string.find("a)c", ")") == 2)
chat:say("ok")
