-- lib.mood：客户情绪（愤怒程度）/ the customer's anger, from lexicon/anger.lua.
--
--   score(text, recent) -> 分值 0..100, 威胁词或 nil, 命中的词表
--       愤怒词加分（同一个词最多计两次）；感叹号 ! 和 ！ 每个 +5（最多 25），连续三个再 +10；
--       两个以上问号每个 +3；“说了多少遍”之类 +分；与之前说过的话完全重复 +15；
--       提到媒体、监管、律师、报警等 +20 并标记威胁；谢谢、理解等缓和词减分。
--   update(m, text) -> m：每条客户消息调用一次，保存在 chat.state.mood：
--       score   当前分值（比上次高就直接取新分，低则与上次取平均，慢慢回落）
--       last    这条消息本身的分值      peak   最高分      trend  与上次相比的变化
--       level   平静 / 不满 / 生气 / 愤怒
--       threat  是否出现过威胁（一旦出现保持为 true）；threat_word 最近的威胁词
--       history 最近 5 次的分值（escalation.lua 用它判断“持续升高”）
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

-- 威胁词；纯数字的（12315、315）只按完整数字匹配，免得订单号里的数字被误认
-- The threat word in t; numbers (12315, 315) count only as whole numbers.
local THREATS = {}
for i, w in ipairs(A.threats) do
  THREATS[i] = { w, string.match(w, "^%d+$") and ("%f[%d]" .. w .. "%f[%D]") or nil }
end

function M.threat(t)
  for _, w in ipairs(THREATS) do
    if w[2] then
      if find(t, w[2]) then return w[1] end
    elseif find(t, w[1], 1, true) then
      return w[1]
    end
  end
  return nil
end

function M.score(text, recent)
  local t = halfwidth(text)
  local score, words = 0, {}
  for _, w in ipairs(A.words) do
    local n = count(t, w[1])
    if n > 0 then
      score = score + w[2] * math.min(n, 2)
      words[#words + 1] = w[1]
    end
  end
  for _, w in ipairs(A.repeats) do
    if find(t, w[1], 1, true) then score = score + w[2] end
  end
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
  for _, w in ipairs(A.soft) do
    if find(t, w[1], 1, true) then score = score - w[2] end
  end
  return math.max(0, math.min(100, score)), threat, words
end

local function push(list, v, keep)
  local out = {}
  for i = math.max(1, #list - keep + 2), #list do out[#out + 1] = list[i] end
  out[#out + 1] = v
  return out
end

function M.update(m, text)
  m = m or {}
  local s, threat = M.score(text, m.recent)
  local prev = m.score or 0
  local score = s
  if s < prev then score = math.floor((prev + s) / 2 + 0.5) end
  m.last = s
  m.trend = score - prev
  m.score = score
  m.peak = math.max(m.peak or 0, score)
  m.level = M.level(score)
  if threat then
    m.threat = true
    m.threat_word = threat
  end
  m.history = push(m.history or {}, score, 5)
  m.recent = push(m.recent or {}, cut(trim(halfwidth(text)), 30), 5)
  return m
end

-- 最近三次分值持续升高且已达到 min / the last three scores rise and reach min
function M.rising(m, min)
  local h = m and m.history or {}
  local n = #h
  return n >= 3 and h[n] > h[n - 1] and h[n - 1] > h[n - 2] and h[n] >= (min or 40)
end

return M
