-- expect: ok
-- The chat object is not a table: its fields and methods cannot be replaced.
assert(not pcall(function() chat.state = {} end), "chat.state replaced")
assert(not pcall(function() chat.say = print end), "chat.say replaced")
assert(not pcall(rawset, chat, "x", 1), "rawset on chat worked")
assert(type(chat) == "userdata")
assert(not pcall(chat.say, {}, "x"), "a method worked on a fake chat")
assert(not pcall(function() chat.customer.vip = true end), "customer profile changed")
chat:say("ok")
