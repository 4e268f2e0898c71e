-- expect: fail larger than
chat.state.big = string.rep("x", 300000)
chat:ask("?")
