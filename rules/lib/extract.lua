-- lib.extract：从客户的话里提取投诉信息 / slot extractors for common Chinese formats.
--
-- 每个函数接收客户的一句话，找到就返回值，找不到返回 nil：
--   order_id(text, loose)   订单号：“订单号 2024030512345”；loose = true 时（正在问订单号）接受
--                           单独一串 6 位以上的数字或字母
--   amount(text)            金额（数字）：“¥58.5”“58元”“58块钱”“五十八元”“1.5万”“2000多元”
--   phone(text)             手机号 11 位，或带区号的座机号
--   account(text, loose)    银行卡尾号 4 位：“尾号1234”“卡号后四位1234”，完整卡号取最后 4 位
--   tracking_no(text, loose) 运单号：“运单号SF1234567890”
--   flight(text)            航班号：“CA1234”“MU5101”“3U8888”
--   time(text, now)         时间：“昨天下午3点”“上周三”“3月5日”“2024-03-05 15:30”“3天前”，
--                           按 now（秒）换算成 "2026-03-05" 或 "2026-03-05 15:00"（北京时间）
--   product(text)           商品名称（lexicon 中的常见商品）
--   all(text, now)          以上全部，返回 { 名称 = 值 }
-- Each returns the value found or nil; time() needs the current time (chat:now()).

local T = lib.text
-- 常用函数先取出来（经过只读视图查找比局部变量慢）/ cached: lookups through a view cost more
local find_any, halfwidth, numerals_before, cn_number, trim, len =
  T.find_any, T.halfwidth, T.numerals_before, T.cn_number, T.trim, T.len
local PRODUCTS = T.copy(lexicon.products)
local M = {}

local find, sub, match, gmatch, upper, format =
  string.find, string.sub, string.match, string.gmatch, string.upper, string.format

-- 关键词之后跳过的分隔词 / separators skipped after a keyword
local SEP = { "是", "为", "：", ":", " ", "号码", "号", "编号", "#" }

local function skip_sep(rest)
  local changed = true
  while changed do
    changed = false
    for _, s in ipairs(SEP) do
      if sub(rest, 1, #s) == s then
        rest = sub(rest, #s + 1)
        changed = true
      end
    end
  end
  return rest
end

-- keys 中任一关键词之后，按 pattern（锚定开头）取值 / the value after one of the keywords
local function after(text, keys, pattern)
  for _, k in ipairs(keys) do
    local i, j = find(text, k, 1, true)
    while i do
      local v = match(skip_sep(sub(text, j + 1)), "^" .. pattern)
      if v then return v end
      i, j = find(text, k, j + 1, true)
    end
  end
  return nil
end

local function is_phone(s)
  return #s == 11 and match(s, "^1[3-9]%d+$") ~= nil
end

function M.order_id(text, loose)
  local t = halfwidth(text)
  local v = after(t, { "订单号", "订单编号", "订单" }, "(%w[%w%-]*)")
  if v and #v >= 6 and find(v, "%d") then return upper(v) end
  if loose then
    for w in gmatch(t, "%f[%w](%w[%w%-]*%w)%f[%W]") do
      if #w >= 6 and #w <= 40 and find(w, "%d") and not is_phone(w) then return upper(w) end
    end
  end
  return nil
end

local UNIT = { ["元"] = true, ["块"] = true, ["圆"] = true }
local MULT = { ["万"] = 10000, ["千"] = 1000, ["百"] = 100 }

-- 数字之后是否跟着金额单位；返回金额 / the amount when a money unit follows the number
local function money_after(t, n, rest)
  rest = match(rest, "^%s*(.*)$")
  if sub(rest, 1, 3) == "多" then rest = sub(rest, 4) end
  local m = MULT[sub(rest, 1, 3)]
  if m then
    n = n * m
    rest = sub(rest, 4)
    if sub(rest, 1, 3) == "多" then rest = sub(rest, 4) end
    return n
  end
  if UNIT[sub(rest, 1, 3)] then return n end
  return nil
end

function M.amount(text)
  local t = halfwidth(text)
  local v = match(t, "\194\165%s*(%d+%.?%d*)") or match(t, "[Rr][Mm][Bb]%s*(%d+%.?%d*)")
  if v then return tonumber(v) end
  for num, e in gmatch(t, "(%d+%.?%d*)()") do
    local n = tonumber(num)
    if n then
      local a = money_after(t, n, sub(t, e))
      if a then return a end
    end
  end
  -- 中文数字：五十八元、两千块
  for _, unit in ipairs({ "元", "块" }) do
    local i = find(t, unit, 1, true)
    while i do
      local s = numerals_before(t, i)
      if s then
        local n = cn_number(s)
        if n and n > 0 then return n end
      end
      i = find(t, unit, i + 3, true)
    end
  end
  return nil
end

function M.phone(text)
  local t = halfwidth(text)
  for p in gmatch(t, "%f[%d](1[3-9]%d%d%d%d%d%d%d%d%d)%f[%D]") do return p end
  local area, num = match(t, "%f[%d](0%d%d%d?)[%-%s]?(%d%d%d%d%d%d%d%d?)%f[%D]")
  if area then return area .. "-" .. num end
  return nil
end

function M.account(text, loose)
  local t = halfwidth(text)
  local v = after(t, { "尾号", "卡号后四位", "后四位", "末四位", "尾数", "后4位", "末4位" },
    "(%d%d%d%d)")
  if v then return v end
  -- 完整卡号（16 到 19 位）只保留后四位 / a full card number: keep the last four digits
  local digits = match(t, "%f[%d](%d%d%d%d[%d ]+%d)%f[%D]")
  if digits then
    digits = digits:gsub(" ", "")
    if #digits >= 16 and #digits <= 19 then return sub(digits, -4) end
  end
  if loose then return match(t, "^%s*(%d%d%d%d)%s*$") end
  return nil
end

function M.tracking_no(text, loose)
  local t = upper(halfwidth(text))
  local v = after(t, { "运单号", "快递单号", "物流单号", "快递号", "单号" }, "(%w+)")
  if v and #v >= 8 and find(v, "%d") then return v end
  for w in gmatch(t, "%f[%w](%u%u%u?%d%d%d%d%d%d%d%d+)%f[%W]") do return w end
  if loose then
    for w in gmatch(t, "%f[%w](%w+)%f[%W]") do
      if #w >= 10 and find(w, "^%u*%d+$") and not is_phone(w) then return w end
    end
  end
  return nil
end

function M.flight(text)
  local t = upper(halfwidth(text))
  for code in gmatch(t, "%f[%w](%w%w%d%d%d%d?)%f[%W]") do
    if find(sub(code, 1, 2), "%u") then return code end
  end
  return nil
end

-- ---- 时间 / dates and times ----

local OFFSET = 8 -- 北京时间 UTC+8

local WEEKDAY = { ["一"] = 1, ["二"] = 2, ["三"] = 3, ["四"] = 4, ["五"] = 5, ["六"] = 6,
  ["日"] = 7, ["天"] = 7 }
local NOT_MONDAY = { ["直"] = true, ["下"] = true, ["个"] = true, ["次"] = true, ["样"] = true,
  ["定"] = true, ["些"] = true, ["点"] = true, ["起"] = true, ["共"] = true }
local RELATIVE_DAYS = { { "大前天", -3 }, { "前天", -2 }, { "昨天", -1 }, { "昨日", -1 },
  { "昨晚", -1 }, { "今天", 0 }, { "今日", 0 }, { "今早", 0 }, { "今晚", 0 }, { "刚才", 0 },
  { "刚刚", 0 }, { "明天", 1 }, { "后天", 2 } }

local function ymd(now, delta_days)
  local d = clock.date(now, OFFSET)
  local t = clock.time({ year = d.year, month = d.month, day = d.day + delta_days, hour = 12 },
    OFFSET)
  local r = clock.date(t, OFFSET)
  return r.year, r.month, r.day
end

-- 星期几 -> 相对天数 / weekday word -> days from today
local WEEK_PREFIXES = { "上上周", "上上星期", "上周", "上星期", "上个星期", "上礼拜",
  "这周", "本周", "这星期", "这个星期", "这礼拜", "周", "星期", "礼拜" }
local WEEK_SET = keywords.set(WEEK_PREFIXES)

local function weekday_delta(t, now)
  if not WEEK_SET:find(t) then return nil end
  local today = clock.date(now, OFFSET).wday
  for _, prefix in ipairs(WEEK_PREFIXES) do
    local i, j = find(t, prefix, 1, true)
    while i do
      local w = WEEKDAY[sub(t, j + 1, j + 3)]
      -- “这周一直…”“周一下…”里的“一”不是星期一 / not a weekday in 一直, 一下, 一次 ...
      if w == 1 and NOT_MONDAY[sub(t, j + 4, j + 6)] then w = nil end
      if w then
        local monday = 1 - today -- days to this week's Monday
        if find(prefix, "上上", 1, true) then return monday - 14 + (w - 1) end
        if find(prefix, "上", 1, true) then return monday - 7 + (w - 1) end
        if find(prefix, "这", 1, true) or find(prefix, "本", 1, true) then return monday + (w - 1) end
        -- 单说“周三”：最近一个已经到来的周三 / plain weekday: the latest one not in the future
        local delta = monday + (w - 1)
        if delta > 0 then delta = delta - 7 end
        return delta
      end
      i, j = find(t, prefix, j + 1, true)
    end
  end
  return nil
end

local function clock_time(t)
  local h, m = match(t, "%f[%d](%d%d?):(%d%d)%f[%D]")
  if not h then
    h, m = match(t, "(%d%d?)点(%d%d?)分")
    if not h then h, m = match(t, "(%d%d?)点(%d%d?)") end
    if not h then
      h = match(t, "(%d%d?)点半")
      if h then m = "30" end
    end
    if not h then h = match(t, "(%d%d?)点") end
    if not h then
      for _, key in ipairs({ "点半", "点" }) do
        local i = find(t, key, 1, true)
        if i then
          local s = numerals_before(t, i)
          if s then
            h = tostring(cn_number(s))
            m = key == "点半" and "30" or nil
            break
          end
        end
      end
    end
  end
  if not h then return nil end
  h, m = tonumber(h), tonumber(m or 0)
  if not h or h > 24 or (m and m > 59) then return nil end
  if h < 12 and find_any(t, { "下午", "晚上", "傍晚", "今晚", "昨晚" }) then h = h + 12 end
  if h < 6 and find_any(t, { "中午" }) then h = h + 12 end
  return format("%02d:%02d", h % 24, m or 0)
end

-- 没有数字、也没有这些字的话里不会有时间 / no digit and none of these: no time in the text
local TIME_HINTS = keywords.set({ "天", "日", "周", "星期", "礼拜", "月", "年", "点", "刚", "今", "昨",
  "晚", "早" })
local RELATIVE_SET = keywords.set(RELATIVE_DAYS)

function M.time(text, now)
  local t = halfwidth(text)
  if not find(t, "%d") and not TIME_HINTS:find(t) then return nil end
  local y, mo, d
  -- 2024年3月5日 / 2024-03-05 / 2024/3/5 / 2024.3.5
  local Y, MO, D = match(t, "(%d%d%d%d)年(%d%d?)月(%d%d?)")
  if not Y then Y, MO, D = match(t, "%f[%d](%d%d%d%d)[%-/%.](%d%d?)[%-/%.](%d%d?)%f[%D]") end
  if Y then
    y, mo, d = tonumber(Y), tonumber(MO), tonumber(D)
  else
    MO, D = match(t, "(%d%d?)月(%d%d?)日")
    if not MO then MO, D = match(t, "(%d%d?)月(%d%d?)号") end
    if MO then
      local today = clock.date(now, OFFSET)
      y, mo, d = today.year, tonumber(MO), tonumber(D)
      if mo > today.month or (mo == today.month and d > today.day) then y = y - 1 end
    end
  end
  if not y then
    local first -- 词表里靠前的优先 / the earliest entry of RELATIVE_DAYS that occurs
    for k in pairs(RELATIVE_SET:counts(t)) do
      if not first or k < first then first = k end
    end
    if first then y, mo, d = ymd(now, RELATIVE_DAYS[first][2]) end
  end
  if not y then
    local n = match(t, "(%d+)天前") or match(t, "(%d+)天之前")
    if not n then
      local i = find(t, "天前", 1, true) or find(t, "天之前", 1, true)
      if i then n = numerals_before(t, i) and cn_number((numerals_before(t, i))) end
    end
    n = tonumber(n)
    if n and n < 400 then y, mo, d = ymd(now, -n) end
  end
  if not y then
    local delta = weekday_delta(t, now)
    if delta then y, mo, d = ymd(now, delta) end
  end
  if not y then
    if find(t, "上个月", 1, true) or find(t, "上月", 1, true) then
      local today = clock.date(now, OFFSET)
      local m2, y2 = today.month - 1, today.year
      if m2 == 0 then m2, y2 = 12, y2 - 1 end
      return format("%04d-%02d", y2, m2)
    end
  end
  local hm = clock_time(t)
  if not y and hm and (find(t, "今", 1, true) or find(t, "刚", 1, true)) then
    y, mo, d = ymd(now, 0)
  end
  if not y then return nil end
  if mo < 1 or mo > 12 or d < 1 or d > 31 then return nil end
  if hm then return format("%04d-%02d-%02d %s", y, mo, d, hm) end
  return format("%04d-%02d-%02d", y, mo, d)
end

-- 把 "2026-03-05 15:00" 说成 "3月5日 15:00" / a friendly form of a time slot
function M.say_time(v)
  local y, mo, d, rest = match(v or "", "^(%d+)-(%d+)-(%d+)(.*)$")
  if y then return format("%d月%d日%s", tonumber(mo), tonumber(d), rest) end
  local y2, m2 = match(v or "", "^(%d+)-(%d+)$")
  if y2 then return format("%d年%d月", tonumber(y2), tonumber(m2)) end
  return v
end

-- “手机号”“手机银行”里的“手机”不是商品 / 手机 in 手机号 is not a product
local NOT_PRODUCT_AFTER = { "号", "银行", "端", "卡", "支付", "APP", "App", "app", "版" }

local PRODUCT_SET = keywords.set(PRODUCTS)

function M.product(text)
  -- 最早出现、后面不跟“号/银行/……”的商品名；同一位置取词表里靠前的
  -- the earliest product name not followed by one of NOT_PRODUCT_AFTER (same start: list order)
  for _, m in ipairs(PRODUCT_SET:matches(text, 100000)) do
    local j, ok = m[2], true
    for _, n in ipairs(NOT_PRODUCT_AFTER) do
      if sub(text, j + 1, j + #n) == n then ok = false end
    end
    if ok then return PRODUCTS[m[3]] end
  end
  return nil
end

-- 全部提取 / every slot found in text
function M.all(text, now)
  text = halfwidth(text) -- 只做一次全角转半角；各函数对已转换的文字再转一次不会变
  local found = {}
  -- 订单号、手机号、卡号尾号、运单号、航班号都含数字：没有数字的话（常见）就不用逐个找了
  -- order, phone, card, tracking and flight numbers all contain a digit: most messages have none
  local digits = find(text, "%d") ~= nil
  found.order_id = digits and M.order_id(text) or nil
  found.amount = M.amount(text)
  found.phone = digits and M.phone(text) or nil
  found.account = digits and M.account(text) or nil
  found.tracking_no = digits and M.tracking_no(text) or nil
  found.flight = digits and M.flight(text) or nil
  found.time = M.time(text, now)
  found.product = M.product(text)
  -- 订单号和运单号可能是同一串字符：有“运单/快递单”字样时算运单号
  if found.order_id and found.tracking_no and found.order_id == found.tracking_no then
    if find_any(text, { "运单", "快递单", "物流单" }) then found.order_id = nil
    else found.tracking_no = nil end
  end
  if found.flight and (found.flight == found.order_id or found.flight == found.tracking_no) then
    found.flight = nil
  end
  return found
end

-- 某个信息项的宽松提取（正在专门询问这一项时使用）/ extraction while asking for that slot
function M.one(name, text, now)
  if name == "order_id" then return M.order_id(text, true) end
  if name == "tracking_no" then return M.tracking_no(text, true) end
  if name == "account" then return M.account(text, true) end
  if name == "time" then return M.time(text, now) end
  if name == "product" then
    local p = M.product(text)
    if p then return p end
    local s = trim(text)
    if len(s) >= 1 and len(s) <= 20 then return s end
    return nil
  end
  local f = M[name]
  return f and f(text) or nil
end

return M
