-- expect: ok
-- No coroutine library: flows cannot create their own threads (which would escape the
-- step structure) nor yield the conversation's coroutine except through chat:ask.
assert(coroutine == nil, "coroutine is reachable")
assert(not pcall(function() coroutine.wrap(function() end)() end))
chat:say("ok")
