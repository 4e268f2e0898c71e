-- lib.solutions：把知识库的查询结果变成给客户的方案 / solution offers from kb.search results.
--
--   build(result, slots, category) -> offers, case
--       offers：最多 3 个方案 { title, text, deadline, compensation, hours, key, source }
--       source = "kb"（知识库模板）或 "standard"（lexicon/categories.lua 的标准方案）；
--       知识库模板里的 {订单号}{金额}{日期} 等占位符用已收集的信息填写，还不知道的换成
--       lexicon/slots.lua 的 blank 文字；有不认识的占位符时不展示原文，只展示标题和时限。
--       case：最相似的历史案例（可能为 nil）。
--   fill(text, slots) -> 文本, 不认识的占位符个数
--   hours(deadline)   -> 承诺时限（小时）："3个工作日内" 72*7/5、"24小时内" 24、"30分钟内" 0.5
--   show(name, value) -> 展示给客户的信息，例如 "金额 58.5元"
--   value(name, value)-> 只有值，例如 "58.5"

local T = lib.text
local X = lib.extract
local SLOTS = lexicon.slots
local CAT = lexicon.categories
local M = {}

local format, match, gsub = string.format, string.match, string.gsub

M.ORDER = { "order_id", "tracking_no", "flight", "account", "phone", "product", "amount", "time" }
M.MAX_OFFERS = 3

function M.value(name, v)
  if name == "amount" and tonumber(v) then
    local s = format("%.2f", tonumber(v))
    s = gsub(s, "0+$", "")
    s = gsub(s, "%.$", "")
    return s
  end
  if name == "time" then return X.say_time(v) end
  return tostring(v)
end

function M.show(name, v)
  local def = SLOTS[name]
  if not def then return tostring(v) end
  return format(def.format, M.value(name, v))
end

function M.fill(text, slots)
  local missing = 0
  if slots.amount == nil then text = gsub(text, "{金额}元", "") end
  local out = gsub(text, "{([^{}]*)}", function(ph)
    for _, name in ipairs(M.ORDER) do
      local def = SLOTS[name]
      for _, p in ipairs(def.placeholders) do
        if p == ph then
          if slots[name] ~= nil then return M.value(name, slots[name]) end
          return def.blank
        end
      end
    end
    missing = missing + 1
    return nil
  end)
  return out, missing
end

function M.hours(deadline)
  if type(deadline) ~= "string" then return 72 end
  local t = deadline
  local n = match(t, "(%d+)个工作日") or match(t, "(%d+)工作日")
  if n then return math.floor(tonumber(n) * 24 * 7 / 5 + 0.5) end
  n = match(t, "(%d+)小时")
  if n then return tonumber(n) end
  n = match(t, "(%d+)天") or match(t, "(%d+)日")
  if n then return tonumber(n) * 24 end
  n = match(t, "(%d+)分钟")
  if n then return tonumber(n) / 60 end
  -- 中文数字：三个工作日、两小时
  for _, unit in ipairs({ { "个工作日", 24 * 7 / 5 }, { "工作日", 24 * 7 / 5 }, { "小时", 1 },
    { "天", 24 } }) do
    local i = string.find(t, unit[1], 1, true)
    if i then
      local s = T.numerals_before(t, i)
      local v = s and T.cn_number(s)
      if v then return math.floor(v * unit[2] + 0.5) end
    end
  end
  return 72
end

local function from_hit(hit, slots)
  local text, missing = M.fill(hit.text or "", slots)
  return {
    title = hit.title,
    text = missing == 0 and text ~= "" and text or nil,
    deadline = hit.deadline,
    compensation = hit.compensation,
    hours = M.hours(hit.deadline),
    key = hit.key,
    source = "kb",
  }
end

function M.build(result, slots, category)
  local offers, seen, case = {}, {}, nil
  local hits = result and result.hits or {}
  for _, h in ipairs(hits) do
    if h.kind == "template" and #offers < M.MAX_OFFERS and h.title and not seen[h.title] then
      seen[h.title] = true
      offers[#offers + 1] = from_hit(h, slots)
    elseif h.kind == "case" and not case and h.title and h.text then
      case = { id = h.id, title = h.title, text = h.text }
    end
  end
  if #offers == 0 then
    local c = CAT[category or "general"] or CAT.general
    for _, f in ipairs(c.fallback) do
      offers[#offers + 1] = {
        title = f.title, text = f.text, deadline = f.deadline, hours = f.hours,
        source = "standard",
      }
    end
  end
  return offers, case
end

return M
