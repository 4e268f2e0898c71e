-- expect: ok
-- chat:ask inside pcall is legitimate: the guarded pcall is yieldable.
local ok, answer = pcall(chat.ask, chat, "你好？")
assert(ok and answer == "继续", "ask in pcall: " .. tostring(ok) .. " " .. tostring(answer))
local ok2, a2 = xpcall(function() return chat:ask("再来？") end, function(e) return e end)
assert(ok2 and a2 == "继续")
chat:say("ok")
