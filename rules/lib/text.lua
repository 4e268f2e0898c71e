-- lib.text：中文文本小工具 / small helpers for Chinese text.
--
-- Lua 的字符串是字节串，一个汉字占 3 个字节。模式匹配里的 [] 和 * + - ? 只作用于单个字节，
-- 所以汉字不能放进 [] 里，也不能直接跟量词；需要时用本模块的函数（逐个词查找）。
-- Lua strings are bytes and a Chinese character is 3 of them: never put Chinese characters in
-- a [set] or before a quantifier; use these helpers instead.

local M = {}

local find, sub, gsub, byte, char = string.find, string.sub, string.gsub, string.byte, string.char

-- 全角转半角：全角字母数字标点 (U+FF01..U+FF5E) 与全角空格 -> ASCII
-- Full-width forms and the ideographic space -> ASCII.
-- 一条消息会被好几个模块各转一次：记住最近两次的结果 / the last two results are remembered
local hw_in1, hw_out1, hw_in2, hw_out2 = {}, nil, {}, nil -- tables: never equal to a string
local function halfwidth(s)
  if not find(s, "\227\128\128", 1, true) and not find(s, "\239", 1, true) then return s end
  s = gsub(s, "\227\128\128", " ")
  s = gsub(s, "\239\188([\129-\191])", function(c) return char(byte(c) - 0x60) end)
  s = gsub(s, "\239\189([\128-\158])", function(c) return char(byte(c) - 0x20) end)
  s = gsub(s, "\239\191\165", "\194\165") -- ￥ -> ¥
  return s
end

function M.halfwidth(s)
  if s == hw_in1 then return hw_out1 end
  if s == hw_in2 then return hw_out2 end
  local out = halfwidth(s)
  hw_in2, hw_out2, hw_in1, hw_out1 = hw_in1, hw_out1, s, out
  return out
end

function M.trim(s)
  s = gsub(s, "^%s+", "")
  s = gsub(s, "%s+$", "")
  while sub(s, 1, 3) == "\227\128\128" do s = sub(s, 4) end
  while #s >= 3 and sub(s, -3) == "\227\128\128" do s = sub(s, 1, -4) end
  return s
end

-- 字符数（不是字节数）/ length in characters
function M.len(s)
  return utf8.len(s) or #s
end

-- 深拷贝成普通表（lib 模块在加载时把常用的 lexicon 列表拷一份，查找更快；拷贝是模块私有的）
-- A plain deep copy (libs copy the lexicon lists they scan on every message, at load time).
function M.copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = M.copy(v) end
  return out
end

-- 按字符截断，超出时加省略号 / cut to n characters, adding an ellipsis
function M.cut(s, n)
  if M.len(s) <= n then return s end
  local stop = utf8.offset(s, n + 1)
  return sub(s, 1, stop - 1) .. "…"
end

-- 在 s 中查找 words 里的任意一个词，返回最早出现的词和位置
-- The earliest of `words` found in s: word, position (or nil).
function M.find_any(s, words)
  local best, at
  for _, w in ipairs(words) do
    local w1 = type(w) == "table" and w[1] or w
    local i = find(s, w1, 1, true)
    if i and (not at or i < at) then best, at = w1, i end
  end
  return best, at
end

-- s 是否以 w 结尾 / whether s ends with w (bytes)
function M.ends_with(s, w)
  return #w <= #s and sub(s, #s - #w + 1) == w
end

-- 把 s 里所有的 word 换成 repl（按原样查找，不是模式）/ plain (non-pattern) replace-all
function M.replace(s, word, repl)
  if word == "" or not find(s, word, 1, true) then return s end
  local out, i = {}, 1
  while true do
    local a, b = find(s, word, i, true)
    if not a then break end
    out[#out + 1] = sub(s, i, a - 1)
    out[#out + 1] = repl
    i = b + 1
  end
  out[#out + 1] = sub(s, i)
  return table.concat(out)
end

-- 统计 word 在 s 中出现的次数 / occurrences of word in s
function M.count(s, word)
  local n, i = 0, 1
  while true do
    local a, b = find(s, word, i, true)
    if not a then return n end
    n = n + 1
    i = b + 1
  end
end

-- 把字符串拆成字符表 / the characters of s
function M.chars(s)
  local t = {}
  for _, c in utf8.codes(s) do t[#t + 1] = utf8.char(c) end
  return t
end

-- 中文数字 -> 数值，例如 "五十八" -> 58, "两千三百" -> 2300, "一万五" -> 15000
-- Chinese numerals -> number (nil when s is not one).
local DIGITS = { ["零"] = 0, ["〇"] = 0, ["一"] = 1, ["二"] = 2, ["两"] = 2, ["三"] = 3, ["四"] = 4,
  ["五"] = 5, ["六"] = 6, ["七"] = 7, ["八"] = 8, ["九"] = 9 }
local UNITS = { ["十"] = 10, ["百"] = 100, ["千"] = 1000 }
local BIG = { ["万"] = 10000, ["亿"] = 100000000 }
M.NUMERALS = { "零", "〇", "一", "二", "两", "三", "四", "五", "六", "七", "八", "九", "十", "百",
  "千", "万", "亿" }

function M.is_numeral(c)
  return DIGITS[c] ~= nil or UNITS[c] ~= nil or BIG[c] ~= nil
end

function M.cn_number(s)
  local total, section, digit = 0, 0, nil
  local last_unit = 1
  local chars = M.chars(s)
  if #chars == 0 then return nil end
  for i, c in ipairs(chars) do
    if DIGITS[c] then
      digit = DIGITS[c]
    elseif UNITS[c] then
      section = section + (digit or 1) * UNITS[c]
      last_unit = UNITS[c]
      digit = nil
    elseif BIG[c] then
      section = (section + (digit or 0)) * BIG[c]
      total = total + section
      section, digit = 0, nil
      last_unit = BIG[c]
    else
      return nil
    end
  end
  if digit then
    -- "一万五" 的 "五" 表示五千，"三百五" 的 "五" 表示五十
    if #chars >= 2 and last_unit >= 10 and not DIGITS[chars[#chars - 1]] then
      digit = digit * last_unit // 10
    end
    section = section + digit
  end
  return total + section
end

-- 从位置 i（字节）往前取连续的中文数字，返回数字串
-- The run of Chinese numerals that ends just before byte position i.
function M.numerals_before(s, i)
  local j = i
  while j > 3 and M.is_numeral(sub(s, j - 3, j - 1)) do j = j - 3 end
  if j == i then return nil end
  return sub(s, j, i - 1), j
end

return M
