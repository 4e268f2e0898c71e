-- lib.mood：客户情绪（愤怒程度）/ the customer's anger, from lexicon/anger.lua.
--
--   score(text, recent) -> 分值 0..100, 威胁词或 nil, 命中的词表
--       愤怒词加分（同一个词最多计两次）；感叹号 ! 和 ！ 每个 +5（最多 25），连续三个再 +10；
--       两个以上问号每个 +3；“说了多少遍”之类 +分；与之前说过的话完全重复 +15；
--       提到媒体、监管、律师、报警等 +20 并标记威胁（threat(text)）；谢谢、理解等缓和词减分。
--   threat(text) -> 威胁用语或 nil（见下面的说明）
--   update(m, text) -> m：每条客户消息调用一次，保存在 chat.state.mood：
--       score   当前分值（比上次高就直接取新分，低则与上次取平均，慢慢回落）
--       last    这条消息本身的分值      peak   最高分      change  与上次相比的变化
--       level   平静 / 不满 / 生气 / 愤怒
--       threat  是否出现过威胁（一旦出现保持为 true）；threat_word 最近的威胁词；
--               threat_now 这条消息里的威胁词（没有就是 nil）
--       trend   最近 10 次的分值，每条客户消息一个，从旧到新（escalation.lua 用它判断
--               “持续升高”，人工客服工作台画成折线）
--       recent  最近 5 句话的开头（判断重复）

local T = lib.text
-- 常用函数先取出来（经过只读视图查找比局部变量慢）/ cached: lookups through a view cost more
local count, find_any, halfwidth, cut, trim, len =
  T.count, T.find_any, T.halfwidth, T.cut, T.trim, T.len
local A = T.copy(lexicon.anger) -- 每条消息都要扫一遍：加载时拷贝成普通表
local M = {}

local find = string.find

function M.level(score)
  if score >= 70 then return "愤怒" end
  if score >= 40 then return "生气" end
  if score >= 20 then return "不满" end
  return "平静"
end

-- 威胁用语（lexicon/anger.lua）：先去掉 threat_exclude（“工商银行”），再找 threats 里的词、
-- 完整的热线号码（threat_numbers，后面跟“元/块”的是金额）、“发”到社交平台（threat_publish +
-- threat_platforms）、带着“去/找/向……投诉”的机构（threat_bodies）。返回找到的说法或 nil。
-- The threat phrase in text, or nil: plain phrases, whole hotline numbers (not amounts), and
-- publishing verbs right before a platform name.
local THREATS, NUMBERS = A.threats, {}
local PUBLISH, PLATFORMS, EXCLUDE = A.threat_publish or {}, A.threat_platforms or {}, A.threat_exclude or {}
local BODIES, BODY_BEFORE, BODY_AFTER = A.threat_bodies or {}, A.threat_body_before or {},
  A.threat_body_after or {}
for i, n in ipairs(A.threat_numbers or {}) do NUMBERS[i] = { n, "%f[%d]" .. n .. "%f[%D]" } end
local UNITS = { "元", "块", "毛", "rmb" }
-- 长消息里每个词最多看前 MAX_HITS 处，每处只看前后 WINDOW 个字节
local MAX_HITS, WINDOW = 20, 24
local ends_with, replace = T.ends_with, T.replace

-- 每条消息都要扫的词表编成关键词集合（keywords.set）：一遍读完整条消息
-- The lists scanned on every message, as keyword sets: one pass over the text each.
local function words_of(list)
  local out = {}
  for i, w in ipairs(list) do out[i] = type(w) == "table" and w[1] or w end
  return out
end
local WORDS, REPEATS, SOFT = keywords.set(words_of(A.words)), keywords.set(words_of(A.repeats)),
  keywords.set(words_of(A.soft))
local THREAT_SET, EXCLUDE_SET = keywords.set(THREATS), keywords.set(EXCLUDE)
local PLATFORM_SET, BODY_SET = keywords.set(PLATFORMS), keywords.set(BODIES)
local NUMBER_SET = keywords.set(A.threat_numbers or {})

-- 集合里出现的、在列表中最靠前的那一项 / the earliest entry of the list that occurs in t
local function first_listed(set, t)
  local best
  for k in pairs(set:counts(t)) do
    if not best or k < best then best = k end
  end
  return best
end

-- 每条消息会被查两次（情绪分里一次，转人工规则里一次）：记住上一次的结果
-- Each message is checked twice (the mood score, the escalation rules): the last answer is kept.
local threat_in, threat_out = {}, nil -- a table: never equal to a string

local function threat(text)
  local t = string.lower(halfwidth(text))
  if EXCLUDE_SET:find(t) then
    for _, w in ipairs(EXCLUDE) do t = replace(t, w, "#") end
  end
  local k = first_listed(THREAT_SET, t)
  if k then return THREATS[k] end
  for _, n in ipairs(NUMBER_SET:find(t) and NUMBERS or {}) do
    local i, j = find(t, n[2])
    local hits = 0
    while i and hits < MAX_HITS do
      hits = hits + 1
      local after = string.sub(t, j + 1, j + 6)
      local amount = false
      for _, u in ipairs(UNITS) do
        if string.sub(after, 1, #u) == u or string.sub(after, 2, #u + 1) == u then amount = true end
      end
      if not amount then return n[1] end
      i, j = find(t, n[2], j + 1)
    end
  end
  for _, p in ipairs(PLATFORM_SET:find(t) and PLATFORMS or {}) do
    local i, hits = find(t, p, 1, true), 0
    while i and hits < MAX_HITS do
      local before = string.sub(t, math.max(1, i - WINDOW), i - 1)
      for _, v in ipairs(PUBLISH) do
        if ends_with(before, v) then return v .. p end
      end
      i, hits = find(t, p, i + 1, true), hits + 1
    end
  end
  for _, b in ipairs(BODY_SET:find(t) and BODIES or {}) do
    local i, j = find(t, b, 1, true)
    local hits = 0
    while i and hits < MAX_HITS do
      hits = hits + 1
      local before, after = string.sub(t, math.max(1, i - WINDOW), i - 1), string.sub(t, j + 1, j + 12)
      for _, v in ipairs(BODY_BEFORE) do
        if ends_with(before, v) then return v .. b end
      end
      for _, v in ipairs(BODY_AFTER) do
        if string.sub(after, 1, #v) == v then return b .. v end
      end
      i, j = find(t, b, j + 1, true)
    end
  end
  return nil
end

function M.threat(text)
  if text ~= threat_in then threat_in, threat_out = text, threat(text) end
  return threat_out
end

function M.score(text, recent)
  local t = halfwidth(text)
  local score, words = 0, {}
  -- 只看出现了的词，按词表顺序（和逐个查词表时的加法顺序、words 的顺序一样）
  -- only the words that occur, in list order (the same sums and the same words list)
  local hit, ks = WORDS:counts(t), {}
  for k in pairs(hit) do ks[#ks + 1] = k end
  table.sort(ks)
  for _, k in ipairs(ks) do
    local w = A.words[k]
    score = score + w[2] * math.min(hit[k], 2)
    words[#words + 1] = w[1]
  end
  for k in pairs(REPEATS:counts(t)) do score = score + A.repeats[k][2] end
  local bangs = count(t, "!")
  score = score + math.min(bangs, 5) * 5
  if find(t, "!!!", 1, true) then score = score + 10 end
  local questions = count(t, "?")
  if questions >= 2 then score = score + math.min(questions, 5) * 3 end
  local key = cut(trim(t), 30)
  if recent and len(key) >= 4 then
    for _, r in ipairs(recent) do
      if r == key then
        score = score + 15
        break
      end
    end
  end
  local threat = M.threat(t)
  if threat then score = score + 20 end
  for k in pairs(SOFT:counts(t)) do score = score - A.soft[k][2] end
  return math.max(0, math.min(100, score)), threat, words
end

local function push(list, v, keep)
  local out = {}
  for i = math.max(1, #list - keep + 2), #list do out[#out + 1] = list[i] end
  out[#out + 1] = v
  return out
end

M.TREND = 10 -- trend 保留最近几次的分值

function M.update(m, text)
  m = m or {}
  local s, threat = M.score(text, m.recent)
  local prev = m.score or 0
  local score = s
  if s < prev then score = math.floor((prev + s) / 2 + 0.5) end
  -- 以前的版本 trend 是一个数、分值列表叫 history：接着用 history
  local trend = type(m.trend) == "table" and m.trend or m.history or {}
  m.last = s
  m.change = score - prev
  m.score = score
  m.peak = math.max(m.peak or 0, score)
  m.level = M.level(score)
  m.threat_now = threat
  if threat then
    m.threat = true
    m.threat_word = threat
  end
  m.trend = push(trend, score, M.TREND)
  m.history = nil
  m.recent = push(m.recent or {}, cut(trim(halfwidth(text)), 30), 5)
  return m
end

-- 最近三次分值持续升高且已达到 min / the last three scores rise and reach min
function M.rising(m, min)
  local h = m and type(m.trend) == "table" and m.trend or {}
  local n = #h
  return n >= 3 and h[n] > h[n - 1] and h[n - 1] > h[n - 2] and h[n] >= (min or 40)
end

return M
