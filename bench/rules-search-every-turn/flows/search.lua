-- Bench only: the issue's "a search per turn" (BENCHMARKS.md; run_server_bench.sh --server-flag
-- --rules.dir=bench/rules-search-every-turn).  tests/e2e/test_chat.py also chats with it.
-- Every customer message is searched in the knowledge base as it is (no category), and the
-- bot answers with the best hit's title, or says it found nothing.  The shipped complaint flow
-- searches once per complaint, at its investigate step (about 1.5 % of the bench's turns).
return {
  start = "greet",
  steps = {
    greet = function(chat)
      chat.state.last = chat:ask("您好，请描述您的问题。")
      return "answer"
    end,
    answer = function(chat)
      local r = kb.search(chat.state.last or "", { limit = 5 })
      local top = r and r.hits and r.hits[1]
      local reply = top and ("为您找到：" .. top.title) or "暂时没有找到相关方案。"
      chat.state.last = chat:ask(reply)
      return "answer"
    end,
  },
}
