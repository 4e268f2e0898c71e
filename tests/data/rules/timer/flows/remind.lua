-- A flow for the timer tests: "提醒我" schedules a reminder 3 seconds later (flows' clock);
-- the timer says it.  Everything else is echoed, one bot message per customer message.
return {
  start = "greet",
  timers = {
    remind = function(chat, arg)
      chat:say("提醒：" .. arg.what)
    end,
  },
  steps = {
    greet = function(chat)
      chat.state.last = chat:ask("您好，这里是测试客服。")
      return "reply"
    end,
    reply = function(chat)
      local text = chat.state.last
      if text:find("提醒我", 1, true) then
        chat:after(3, "remind", { what = text })
        chat.state.last = chat:ask("好的，3 秒后提醒您。")
      else
        chat.state.last = chat:ask("已收到：" .. text)
      end
      return "reply"
    end,
  },
}
