-- lib.handoff：转人工规则和流程共用的函数 / shared by escalation.lua and the flows.
--
--   human_request(text)           -> 说法 或 nil：客户明确要求人工（怎么判断见 lexicon/escalation.lua
--                                    的 human 一节）
--   last(escalations)             -> 最近一次转人工 { reason, priority, turn, at, by, group, back }
--                                    或 nil；escalations 是 ctx.escalations / chat.escalations
--   failures(state, escalations)  -> 上次转人工之后机器人“帮不上忙”的次数（chat:failed 记在
--                                    chat.state.failure_log 里：没听懂、知识库没答案、方案被拒绝）
--   human_since(escalations, t)   -> t（秒）以后是否有人工接手过（转人工或交回发生在 t 之后）
--   promise(chat, what, due)      -> 记下一个承诺的时限（chat.state.deadlines 里加
--                                    { what, due, at, check }），并在 check（到期前 margin）安排
--                                    定时任务 "deadline"：流程要有 timers.deadline（可以什么都不做），
--                                    到时转人工规则会检查这个承诺
--   fulfil(state [, what])        -> 承诺已兑现（不写 what 表示全部）
--   margin(d)                     -> 承诺 d 提前多久算“快到期”（秒）：deadline_margin，
--                                    但不超过承诺时长的 deadline_fraction
--   deadline(state, now, escalations) -> 已经快到期（或过期）、没有兑现、而且在 check 之后
--                                    还没有人工接手过的承诺，及是否已过期；或 nil

local T = lib.text
local E = T.copy(lexicon.escalation) -- 每条消息都要用：加载时拷贝成普通表
local H = E.human
local find, sub, lower = string.find, string.sub, string.lower
local ends_with, replace, halfwidth = T.ends_with, T.replace, T.halfwidth
local M = {}

-- 长词在前 / longest first, so 人工客服 is tried before 人工 and 转接 before 转
local function by_length(list)
  table.sort(list, function(a, b) return #a > #b end)
  return list
end
local ALONE, TARGETS, VERBS, WEAK = by_length(H.alone), by_length(H.targets), by_length(H.verbs),
  by_length(H.weak_verbs)
local FILLERS, NEG, RHET = by_length(H.fillers), by_length(H.negators), H.rhetorical
local PERSON = {}
for _, p in ipairs(H.persons) do PERSON[p] = true end
FILLERS[#FILLERS + 1] = ""
-- 每条消息都要查的词表编成关键词集合（keywords.set），先用它判断有没有，再细看
local EXCLUDE_SET, PHRASE_SET, TARGET_SET = keywords.set(H.exclude), keywords.set(H.phrases),
  keywords.set(TARGETS)

-- 长消息里每个词最多看前 MAX_HITS 处，每处只看前面 WINDOW 个字节（动作 + 你们…… + 否定词），
-- 这样再长的消息也不会用完一条消息的指令额度
local MAX_HITS, WINDOW, SHORT = 20, 60, 120

local PUNCT = { "，", "。", "！", "？", "、", "；", "：", "…", "～", "—", "“", "”", "‘", "’", "（",
  "）", "【", "】", "《", "》", "「", "」" }
local TAIL = { "吧", "啊", "呀", "啦", "嘛", "哦", "喔", "呢", "好吗", "行吗", "可以吗" }

local PUNCT_SET, ALONE_SET, IS_ALONE = keywords.set(PUNCT), keywords.set(ALONE), {}
for _, w in ipairs(ALONE) do IS_ALONE[w] = true end

-- 去掉所有中文标点（每个标点是一个完整的字，去掉一个不会拼出另一个，所以一遍就够）
-- every Chinese punctuation mark out, in one pass
local function unpunct(t)
  local hits = PUNCT_SET:matches(t, 100000)
  if #hits == 0 then return t end
  local parts, at = {}, 1
  for _, m in ipairs(hits) do
    parts[#parts + 1] = sub(t, at, m[1] - 1)
    at = m[2] + 1
  end
  parts[#parts + 1] = sub(t, at)
  return table.concat(parts)
end

-- 整句话只是要人工（“人工！”“转人工 转人工”）/ the whole message is just a request
local function alone(t)
  if #t > SHORT then return nil end
  local s = string.gsub(unpunct(t), "[%p%s]", "")
  -- 没有一个要人工的词就不用往下看（去掉结尾的语气词不会凑出新词）
  -- no word of ALONE at all: stripping the tail below cannot make one
  if not ALONE_SET:find(s) then return nil end
  for _, w in ipairs(TAIL) do
    if #s > #w and ends_with(s, w) then s = sub(s, 1, #s - #w) end
  end
  if s == "" then return nil end
  if IS_ALONE[s] then return s end
  -- 同一个词重复几遍
  local rest = s
  for _, w in ipairs(ALONE) do rest = replace(rest, w, "") end
  if rest == "" then return s end
  return nil
end

-- 否定（“不用”“别”）或说的是以前的事，反问（“为什么不”）除外
local function negated(b)
  for round = 1, 2 do
    for _, r in ipairs(RHET) do
      if ends_with(b, r) then return false end
    end
    for _, n in ipairs(NEG) do
      if ends_with(b, n) then return true end
    end
    if round == 1 then
      local stripped = false
      for _, f in ipairs(FILLERS) do
        if f ~= "" and ends_with(b, f) then
          b, stripped = sub(b, 1, #b - #f), true
          break
        end
      end
      if not stripped then return false end
    end
  end
  return false
end

-- 位置 i 上的“人”前面是不是“动作 (+ 你们/个…)”：true 要求人工，false 被否定，nil 没有动作
local function asked_at(t, i, target)
  local before = sub(t, math.max(1, i - WINDOW), i - 1)
  for _, f in ipairs(FILLERS) do
    if ends_with(before, f) then
      local b = sub(before, 1, #before - #f)
      local verb
      for _, v in ipairs(VERBS) do
        if ends_with(b, v) then verb = v break end
      end
      if not verb and PERSON[target] then
        for _, v in ipairs(WEAK) do
          if ends_with(b, v) then verb = v break end
        end
      end
      if verb then return not negated(sub(b, 1, #b - #verb)) end
    end
  end
  return nil
end

function M.human_request(text)
  if type(text) ~= "string" or text == "" then return nil end
  local t = lower(halfwidth(text))
  if EXCLUDE_SET:find(t) then
    for _, w in ipairs(H.exclude) do t = replace(t, w, "#") end
  end
  local w = alone(t)
  if w then return w end
  local _, _, k = PHRASE_SET:find(t)
  if k then
    w = H.phrases[k]
    return type(w) == "table" and w[1] or w
  end
  if not TARGET_SET:find(t) then return nil end
  for _, target in ipairs(TARGETS) do
    local i, hits = find(t, target, 1, true), 0
    while i and hits < MAX_HITS do
      if asked_at(t, i, target) then return target end
      i, hits = find(t, target, i + 1, true), hits + 1
    end
  end
  return nil
end

function M.last(escalations)
  if not escalations then return nil end
  local n = #escalations
  return n > 0 and escalations[n] or nil
end

function M.failures(state, escalations)
  local last = M.last(escalations)
  local log = state.failure_log
  if type(log) ~= "table" then return last and 0 or (tonumber(state.failures) or 0) end
  local since, n = last and last.turn or 0, 0
  for _, f in ipairs(log) do
    if (tonumber(f.turn) or 0) > since then n = n + 1 end
  end
  return n
end

function M.human_since(escalations, t)
  for _, e in ipairs(escalations or {}) do
    if (e.at or 0) >= t or (e.back and e.back >= t) then return true end
  end
  return false
end

function M.margin(d)
  local span = (d.due or 0) - (d.at or d.due or 0)
  local m = E.deadline_margin
  if span > 0 then m = math.min(m, span * E.deadline_fraction) end
  return m
end

function M.promise(chat, what, due)
  local s = chat.state
  local now = chat:now()
  local list = {}
  -- 只留最近的 9 个（先丢已兑现的）
  local old = type(s.deadlines) == "table" and s.deadlines or {}
  for _, d in ipairs(old) do
    if not d.done then list[#list + 1] = d end
  end
  while #list > 9 do table.remove(list, 1) end
  local d = { what = what, due = due, at = now }
  d.check = math.floor(due - M.margin(d))
  list[#list + 1] = d
  s.deadlines = list
  chat:after(math.max(1, d.check - now), "deadline", { what = what })
  return d
end

function M.fulfil(state, what)
  for _, d in ipairs(type(state.deadlines) == "table" and state.deadlines or {}) do
    if what == nil or d.what == what then d.done = true end
  end
end

function M.deadline(state, now, escalations)
  local list = state.deadlines
  if type(list) ~= "table" then return nil end
  for _, d in ipairs(list) do
    if not d.done and type(d.due) == "number" then
      local check = d.check or (d.due - M.margin(d))
      if now >= check and not M.human_since(escalations, check) then
        return d, now >= d.due
      end
    end
  end
  return nil
end

return M
