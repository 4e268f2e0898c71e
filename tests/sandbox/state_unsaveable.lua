-- expect: fail a function cannot be saved
chat.state.callback = function() end
chat:ask("?")
