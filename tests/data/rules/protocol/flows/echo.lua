-- A flow for the protocol tests: one greeting, then exactly one bot message per customer
-- message, so that tests can count events.  The complaint flows (rules/) have tests of their own.
return {
  start = "greet",
  steps = {
    greet = function(chat)
      chat.state.last = chat:ask("您好，这里是测试客服。请描述您的问题。")
      return "reply"
    end,
    reply = function(chat)
      chat.state.last = chat:ask("已收到您的消息：" .. chat.state.last)
      return "reply"
    end,
  },
}
