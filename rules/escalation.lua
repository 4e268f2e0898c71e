-- 转人工规则 / Escalation rules.
--
-- 引擎在两种时候调用这里返回的函数：
--   每条客户消息（ctx.event == "message"）：先运行流程的 on_message，再调用本函数；
--   每个到期的定时任务、每次提问超时之后（ctx.event == "timer"，ctx.text 为 nil）。
-- 正在由人工处理时不调用。返回 nil 表示不转人工；返回
--   { reason = 原因, priority = 1/2/3, message = 对客户说的话, group = 坐席组 }
-- 表示转人工：这条消息交给人工客服，流程停在原处，直到人工把对话交回机器人。
--
-- ctx 的内容：
--   ctx.event       "message" 或 "timer"
--   ctx.text        这条消息（定时任务时为 nil）
--   ctx.timer       到期的定时任务的名字（提问超时是 "timeout"；消息时为 nil）
--   ctx.now         当前时间（秒）
--   ctx.state       chat.state（只读）：mood 情绪、severity 严重程度、failure_log 机器人
--                   帮不上忙的记录、deadlines 承诺的时限……
--   ctx.customer    客户资料（只读）：id, name, vip, vip_level, channel, history_count
--   ctx.turn        这是第几条客户消息；ctx.flow / ctx.step 当前流程和步骤
--   ctx.escalations 这次对话以前的转人工记录（只读，从旧到新）：
--                   { reason, priority, turn, at, by = "rule"/"flow"/"error", group, back = 交回时间 }
--
-- 规则按下面的顺序检查，命中第一条就转。阈值、优先级、说的话、坐席组都在
-- lexicon/escalation.lua 里改。人工把对话交回之后，已经处理过的情况不会马上再转一次：
-- 情绪、威胁、要求人工只看新的消息；“帮不上忙”从上次转人工之后重新计数；
-- VIP 和严重问题在同一个问题里只转一次；承诺的时限在“快到期”之后有人工接手过就不再转。
-- Rules in order; the first that fires wins.  Tunables live in lexicon/escalation.lua.

local H, MOOD = lib.handoff, lib.mood
local E = lexicon.escalation

local function escalate(reason, what)
  local msg = E.messages[reason]
  if what then msg = msg:gsub("{what}", function() return what end) end
  return { reason = reason, priority = E.priority[reason], message = msg, group = E.groups[reason] }
end

-- 这个问题开始以后（chat.state.opened_turn，没有就是整个对话）是否已经转过人工
local function escalated_this_problem(ctx)
  local since = ctx.state.opened_turn or 0
  for _, e in ipairs(ctx.escalations) do
    if (e.turn or 0) >= since then return true end
  end
  return false
end

-- 客户发来消息时才看的规则 / rules about the message itself
local function on_message(ctx)
  local s, c = ctx.state, ctx.customer
  local mood = s.mood or {}

  -- 1 明确要求人工（“转人工”“找你们经理”，也包括点了“都不满意，转人工”按钮）
  if H.human_request(ctx.text) then
    return escalate("human_request")
  end
  -- 2 威胁：媒体曝光、12315、监管部门、律师起诉、报警（只看这条消息）
  if MOOD.threat(ctx.text) then
    return escalate("threat")
  end
  -- 3 情绪分超过阈值；人工交回以后，这条消息本身也要达到阈值
  if (mood.score or 0) >= E.anger and (H.last(ctx.escalations) == nil or (mood.last or 0) >= E.anger) then
    return escalate("anger")
  end
  -- 4 情绪连续三条消息升高（三条都在上次转人工之后）
  local last = H.last(ctx.escalations)
  if MOOD.rising(mood, E.rising_min) and (not last or ctx.turn - 2 > (last.turn or 0)) then
    return escalate("anger_rising")
  end
  -- 5 机器人两次帮不上忙：没听懂、知识库没答案、方案被拒绝
  if H.failures(s, ctx.escalations) >= E.failures then
    return escalate("bot_failed")
  end
  -- 6 严重问题（严重程度 3：盗刷、诈骗、大额……；类别 base = 3 的一律算）
  if (s.severity or 0) >= E.high_severity and not escalated_this_problem(ctx) then
    return escalate("high_severity")
  end
  -- 7 VIP 客户的较重问题
  if c.vip and (s.severity or 0) >= E.vip_severity and not escalated_this_problem(ctx) then
    return escalate("vip")
  end
  return nil
end

return function(ctx)
  if ctx.event == "message" then
    local r = on_message(ctx)
    if r then return r end
  end
  -- 8 承诺的时限快到了（或已经过了）还没兑现：消息和定时任务时都检查
  local d, overdue = H.deadline(ctx.state, ctx.now, ctx.escalations)
  if d then
    local r = escalate(overdue and "deadline_overdue" or "deadline", d.what)
    r.reason = "deadline"
    return r
  end
  return nil
end
