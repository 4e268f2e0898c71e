-- lib.classify：按关键词规则判断投诉类别和严重程度 / category and severity from keyword rules.
--
--   category(text)   -> 类别 slug, 得分：累加 lexicon/categories.lua 中各类别关键词的权重
--                       （同一个词最多计两次；长词优先，被长词用掉的文字不再匹配短词），
--                       得分最高者胜出；低于 MIN_SCORE 时为 "general"
--   label(slug)      -> 中文名称
--   severity(text, slug, slots, mood, customer) -> 1 一般 / 2 较重 / 3 严重：
--                       类别基础分 + 严重情形用语 (HIGH +2) + 金额 1 万以上 (+1)
--                       + 其他加重情形合计最多 +1：一般加重用语 (MID)、金额 1000 到 1 万、
--                         情绪激烈或威胁、多次投诉的老客户
--                       最后限制在 1..3。所以“严重”要有严重用语、大额，或者基础分高的类别；
--                       “3999 元的手机一直没发货”这样几个一般情形凑在一起只算“较重”。
--   is_greeting(text) 只是打招呼（“你好”“在吗”）
--   has_cue(text)     话里有“出了问题”的意思（没到、扣了、坏了、投诉……）

local T = lib.text
-- 常用函数先取出来（经过只读视图查找比局部变量慢）/ cached: lookups through a view cost more
local halfwidth, trim, len = T.halfwidth, T.trim, T.len
local C = lexicon.categories
local ORDER = T.copy(C.order)
local BASE = {}
for slug, c in pairs(C) do
  if type(c) == "table" and c.base then BASE[slug] = c.base end
end
local M = {}

M.MIN_SCORE = 3

M.HIGH = { "盗刷", "诈骗", "被骗", "骗走", "冒用", "泄露", "全部积蓄", "救命", "住院",
  "做手术", "动手术", "孩子生病", "病危" }
M.MID = { "多次", "好几次", "反复", "第三次", "又一次", "一直", "至今", "半个月", "一个月",
  "好几天", "几天了", "一周了", "没人管", "没人处理", "损失", "很急", "着急", "丢失", "冻结",
  "影响工作", "耽误", "急用", "医院", "老人" }

M.CUES = { "投诉", "问题", "不满", "怎么回事", "没有", "没", "不能", "无法", "失败", "错",
  "坏", "差", "一直", "还没", "退", "扣", "丢", "慢", "骗", "不行", "不了", "不给", "不到",
  "怎么办", "为什么", "凭什么", "处理", "解决", "赔", "延误", "取消", "故障", "收费", "被",
  "维权", "反映", "举报" }

M.GREETINGS = { "你好", "您好", "在吗", "在不在", "有人吗", "哈喽", "嗨", "喂", "hello", "hi",
  "早上好", "晚上好", "下午好" }

M.SEVERITY_LABEL = { "一般", "较重", "严重" }

local HIGH, MID, CUES, GREETINGS = keywords.set(M.HIGH), keywords.set(M.MID), keywords.set(M.CUES),
  keywords.set(M.GREETINGS)

-- 每个类别的关键词按长度从长到短排好（长词先匹配并“用掉”那段文字，“没到账”就不会再算一次“到账”）
-- 每个类别编成一个关键词集合（keywords.set），一条消息每个类别只读一遍。
-- Keywords longest first, one keyword set per category: counts(text, true) lets a match use up
-- its text, so 没到账 does not also count as 到账.
-- 所有类别的词再合成一个集合 ANY（OWNERS[k] 是用到第 k 个词的类别）：一条消息先读一遍 ANY，
-- 只有出现了自己的词的类别才需要再按长词优先细算，其余类别得 0 分。
-- ANY holds every category's words once (OWNERS[k]: the categories that use entry k): one pass
-- finds which categories have a word in the text at all; only those are counted longest first.
local SORTED, SETS, ANY, OWNERS, AT = {}, {}, {}, {}, {}
for _, slug in ipairs(ORDER) do
  local list, words = {}, {}
  for _, kw in ipairs(C[slug].keywords) do list[#list + 1] = { string.lower(kw[1]), kw[2] } end
  table.sort(list, function(a, b) return #a[1] > #b[1] end)
  for i, kw in ipairs(list) do
    local w = kw[1]
    words[i] = w
    if not AT[w] then
      ANY[#ANY + 1] = w
      AT[w] = #ANY
      OWNERS[#ANY] = {}
    end
    table.insert(OWNERS[AT[w]], slug)
  end
  SORTED[slug] = list
  SETS[slug] = keywords.set(words)
end
ANY = keywords.set(ANY)

function M.scores(text)
  local base = string.lower(halfwidth(text))
  local out, seen = {}, {}
  for k in pairs(ANY:counts(base)) do
    for _, slug in ipairs(OWNERS[k]) do seen[slug] = true end
  end
  for _, slug in ipairs(ORDER) do
    local s, list = 0, SORTED[slug]
    if seen[slug] then
      for k, n in pairs(SETS[slug]:counts(base, true)) do
        s = s + list[k][2] * math.min(n, 2)
      end
    end
    out[slug] = s
  end
  return out
end

function M.category(text)
  local scores = M.scores(text)
  local best, bs = "general", 0
  for _, slug in ipairs(ORDER) do
    if scores[slug] > bs then best, bs = slug, scores[slug] end
  end
  if bs < M.MIN_SCORE then return "general", bs end
  return best, bs
end

function M.label(slug)
  return (C[slug] or C.general).label
end

function M.is_greeting(text)
  local t = string.lower(trim(halfwidth(text)))
  t = string.gsub(t, "[%p%s]", "")
  if t == "" then return true end
  if len(t) > 6 then return false end
  return GREETINGS:find(t) ~= nil and not M.has_cue(t)
end

function M.has_cue(text)
  return CUES:find(text) ~= nil
end

function M.severity(text, slug, slots, mood, customer)
  local sev = BASE[slug] or BASE.general
  local more = false -- 其他加重情形：合计最多 +1
  if HIGH:find(text) then
    sev = sev + 2
  elseif MID:find(text) then
    more = true
  end
  local amount = slots and tonumber(slots.amount)
  if amount then
    if amount >= 10000 then
      sev = sev + 1
    elseif amount >= 1000 then
      more = true
    end
  end
  if mood and (mood.threat or (mood.score or 0) >= 70) then more = true end
  if customer and (customer.history_count or 0) >= 2 then more = true end
  if more then sev = sev + 1 end
  return math.max(1, math.min(3, sev))
end

return M
