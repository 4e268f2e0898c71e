-- expect: fail option 1 must be a non-empty string
chat:say("x", { {}, 2 })
