-- 转人工规则 / Escalation rules, checked on every customer message.
--
-- 引擎在每条客户消息到达时调用这里返回的函数（先运行流程的 on_message，再调用本函数）。
-- 返回 nil 表示不转人工；返回 { reason = 原因, priority = 1/2/3, message = 对客户说的话 }
-- 表示转人工：这条消息交给人工客服，流程停在原处，直到人工把对话交回机器人。
--
-- ctx 的内容：
--   ctx.text      这条消息
--   ctx.state     chat.state（只读）：mood 情绪、severity 严重程度、failures 机器人没听懂的次数……
--   ctx.customer  客户资料（只读）：id, name, vip, vip_level, channel, history_count
--   ctx.turn      这是第几条客户消息；ctx.flow / ctx.step 当前流程和步骤
--
-- priority：1 普通，2 优先，3 紧急。

local T, MOOD = lib.text, lib.mood

-- 明确要求人工 / asking for a person
local HUMAN = { "转人工", "人工客服", "人工服务", "找人工", "要人工", "接人工", "人工坐席",
  "真人", "活人", "找你们经理", "找经理", "叫经理", "你们经理", "找领导", "你们领导", "找主管",
  "叫你们负责人", "找负责人" }

local ANGER = 70       -- 情绪分值达到这个数就转人工
local RISING_MIN = 40  -- 连续升高并达到这个数也转人工

return function(ctx)
  local text, s, c = ctx.text, ctx.state, ctx.customer
  local mood = s.mood or {}
  local short = T.trim(text)
  if T.find_any(text, HUMAN) or short == "人工" or short == "人工！" or short == "人工!" then
    return { reason = "human_request", priority = 2,
      message = "好的，正在为您转接人工客服，请稍候。您反映的内容我已经整理好交给同事了。" }
  end
  if mood.threat then
    return { reason = "threat", priority = 3,
      message = "非常理解您的心情。您的问题我已经升级处理，马上安排专人与您联系，请稍候。" }
  end
  if (mood.score or 0) >= ANGER then
    return { reason = "anger", priority = 2,
      message = "非常抱歉让您这么生气，我马上请人工客服来为您处理，请稍候。" }
  end
  if MOOD.rising(mood, RISING_MIN) then
    return { reason = "anger_rising", priority = 2,
      message = "抱歉让您着急了，我请人工客服来协助您，请稍候。" }
  end
  if (s.failures or 0) >= 2 then
    return { reason = "bot_failed", priority = 2,
      message = "抱歉我没能准确理解您的意思，这就为您转接人工客服，请稍候。" }
  end
  if c.vip and (s.severity or 0) >= 2 then
    return { reason = "vip", priority = 2,
      message = "您是我们的VIP客户，我为您转接专属人工客服优先处理，请稍候。" }
  end
  if (s.severity or 0) >= 3 then
    return { reason = "high_severity", priority = 3,
      message = "您反映的问题比较严重，我已为您加急转接人工客服专人处理，请稍候。" }
  end
  return nil
end
