-- lib.dialog：对话里常用的问法 / common ways of asking, shared by flows.
--
--   ask(chat, prompt)                 提问；超时先提醒一次（lexicon.phrases.idle_reminder），再超时
--                                     说再见并返回 nil（chat.state.idle_end = true）
--   choose(chat, prompt, options)     选择题，超时处理同上；返回 选项, 序号 或 nil, "timeout"/"unclear"
--   confirm(chat, prompt, yes, no)    是非题（按钮文字 yes/no），返回 true/false 或 nil, 原因
--   stop(chat, why)                   问不下去时：没听懂就转人工（bot_failed），超时就结束；返回 nil
--   collect(chat, s, name)            问一项缺少的信息（lexicon.slots），客户说不知道就跳过；
--                                     会话结束时返回 nil，否则 true
--   merge(s, found, overwrite)        把提取到的信息并入 s.slots
--   due_text(t, now)                  承诺时间：一天以上说日期，一天以内说到几点
--   stamp(t)                          "2026-03-09 10:00"（北京时间）
-- 这些函数可以在步骤里调用（它们会等待客户回复），不能在 on_message 或定时任务里调用。

local T, X = lib.text, lib.extract
local P, SLOT = lexicon.phrases, lexicon.slots
local M = {}

function M.ask(chat, prompt)
  local a = chat:ask(prompt, { timeout = P.idle_seconds })
  if a then return a end
  chat:say(P.idle_reminder)
  a = chat:wait({ timeout = P.give_up_seconds })
  if a then return a end
  chat:say(P.idle_goodbye)
  chat.state.idle_end = true
  return nil
end

function M.choose(chat, prompt, options)
  local label, i = chat:choose(prompt, options, { timeout = P.idle_seconds })
  if label or i ~= "timeout" then return label, i end
  chat:say(P.idle_reminder_choice)
  label, i = chat:choose(prompt, options, { timeout = P.give_up_seconds })
  if label or i ~= "timeout" then return label, i end
  chat:say(P.idle_goodbye)
  chat.state.idle_end = true
  return nil, "timeout"
end

function M.confirm(chat, prompt, yes, no)
  local label, i = M.choose(chat, prompt, {
    { yes, match = P.yes_words },
    { no, match = P.no_words },
  })
  if not label then return nil, i end
  return i == 1
end

function M.stop(chat, why)
  if why == "unclear" then chat:escalate("bot_failed", 2, P.not_understood) end
  return nil
end

function M.merge(s, found, overwrite)
  for k, v in pairs(found) do
    if overwrite or s.slots[k] == nil then s.slots[k] = v end
  end
end

function M.collect(chat, s, name)
  local def = SLOT[name]
  local prompt = def.ask
  s.skipped = s.skipped or {}
  for _ = 1, 2 do
    local a = M.ask(chat, prompt)
    if not a then return nil end
    if T.find_any(a, P.skip) and T.len(a) <= 8 then
      s.skipped[name] = true
      return true
    end
    M.merge(s, X.all(a, chat:now()), false)
    local v = X.one(name, a, chat:now())
    if v ~= nil then
      s.slots[name] = v
      return true
    end
    if s.slots[name] ~= nil then return true end
    prompt = def.retry
  end
  s.skipped[name] = true
  chat:say(P.slot_skipped)
  return true
end

function M.due_text(t, now)
  local d = clock.date(t)
  if t - now >= 24 * 3600 then return string.format("%d月%d日", d.month, d.day) end
  return string.format("%d月%d日 %02d:%02d", d.month, d.day, d.hour, d.min)
end

function M.stamp(t)
  local d = clock.date(t)
  return string.format("%04d-%02d-%02d %02d:%02d", d.year, d.month, d.day, d.hour, d.min)
end

return M
