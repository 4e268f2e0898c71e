-- expect: ok
-- Invalid UTF-8 produced by a flow is repaired before it reaches a customer.
chat:say(("退款"):sub(1, 4) .. "\255")
chat:say("ok")
