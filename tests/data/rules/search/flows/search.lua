-- Test flow (tests/e2e/test_chat.py): every customer message is searched in the knowledge base
-- as it is, and the bot answers with the best hit's key, or "none".
return {
  start = "greet",
  steps = {
    greet = function(chat)
      chat.state.last = chat:ask("hello")
      return "answer"
    end,
    answer = function(chat)
      local r = kb.search(chat.state.last or "", { limit = 1 })
      local top = r and r.hits and r.hits[1]
      chat.state.last = chat:ask(top and top.key or "none")
      return "answer"
    end,
  },
}
