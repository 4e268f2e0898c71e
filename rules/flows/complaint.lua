-- 投诉处理流程 / The complaint flow: the seven standard steps of complaint handling.
--
--   receive      1 接收投诉：问候，了解是谁、发生了什么，判断是否属于受理范围，登记
--   soothe       2 情绪安抚：按严重程度和情绪分级致歉
--   confirm      3 确认问题：补全缺少的信息，询问客户期望，复述并确认
--   investigate  4 查找原因：在知识库中查找解决方案模板和相似的历史案例
--   propose      5 提供解决方案：给出一个或多个方案供选择，说明时限
--   agree        6 达成一致：确认客户接受方案，说明接下来的步骤，安排跟进
--   follow_up    7 跟踪落实：登记“处理中”，告诉客户何时完成；到期由 timers.follow_up 主动回访
--                  （“问题解决了吗？”），客户回复已解决后进入 survey
--   survey       满意度调查（问题解决以后才问）：满意度 1-5 分、推荐意愿 0-10 分、意见建议
--                  （可跳过），答完结案（closed）；人工客服解决问题后（on_handback）也从这里开始
--   closing      结案（主管回访不满意的客户之后）
--   resume       人工交回但没有解决、流程已经结束时：告诉客户接下来怎样
--   after        流程结束后客户又发来消息（回访的答复、进度查询、没答完的评价、新的问题）
--
-- 人工客服结束处理时（on_handback）：解决了（how == "resolved"）就兑现承诺、取消回访，
-- 直接做满意度调查（solved = true）；只是交回（"handback"）就把正在等的问题再问一遍，
-- 流程已经结束的话进入 resume。
-- 客户随时可以问进度（“进度”“到哪一步了”……，在流程结束后和满意度调查中识别）：
-- 按 chat:complaint() 的投诉记录回答编号、状态和下一个时限。
--
-- chat.state 中保存的内容（会被持久化，见 rules/README.md）：
--   slots        收集到的信息（订单号、金额、时间……）
--   category     类别 slug；severity 严重程度 1..3；mood 情绪（lib.mood）
--   complaint    客户对问题的描述；expectation 客户期望的处理方式
--   solutions    提供过的方案；solution 客户选择的方案；agreed 是否同意
--   offered      给客户看过的方案标题；refused 客户拒绝的方案标题（转人工时交给人工客服）
--   satisfaction 满意度 1..5；follow_up_due 承诺回访的时间（秒）
--   follow_up_asked / follow_up_answered / follow_up_title  到期回访问过了没有、答了没有、问的哪个方案
--   resolved     问题已经解决（回访时客户说已解决，或人工解决）；closed 已结案
--   survey       满意度调查 { stage = "csat" | "nps" | "comment" | nil（答完）, solved, csat, nps,
--                comment, asked（已经登记“问过了”）, solved_sent, intro（第一题的开场白） }
--   record_no    投诉记录编号（结案后 chat:complaint() 不再返回记录，进度查询用它回答）
--   deadlines    承诺的时限 { what, due, at, check, done }（lib.handoff.promise，到期前由
--                escalation.lua 的 deadline 规则转人工跟进）
--   failures / failure_log  机器人帮不上忙的次数和记录（chat:failed：没听懂 unclear、
--                知识库没答案 no_match、方案被拒绝 refused）
--   opened_turn  当前这个问题从第几条客户消息开始（转人工规则按问题判断“转过没有”）

local T, X, CL, MOOD, SOL, D = lib.text, lib.extract, lib.classify, lib.mood, lib.solutions, lib.dialog
local H = lib.handoff
local CAT, P, ESC = lexicon.categories, lexicon.phrases, lexicon.escalation

-- 文件顶部的内容每个对话各执行一次：这里只放函数，话术和数据在 lexicon/phrases.lua。
-- This file runs once per conversation: keep it to functions; wording lives in lexicon/phrases.lua.

local function category(s)
  return CAT[s.category or "general"] or CAT.general
end

local function restate(s)
  local parts = {}
  for _, name in ipairs(SOL.ORDER) do
    if s.slots[name] ~= nil then parts[#parts + 1] = SOL.show(name, s.slots[name]) end
  end
  local text = "我跟您确认一下：您反映的是【" .. category(s).label .. "】问题——“"
    .. T.cut(s.complaint or "", 40) .. "”"
  if #parts > 0 then text = text .. "；" .. table.concat(parts, "，") end
  if s.expectation then text = text .. "；您希望：" .. s.expectation end
  return text .. "。"
end

-- 开始处理一个新问题前清空上一个问题的信息（保留情绪和客户资料）
local function reset(s)
  s.slots, s.skipped = {}, {}
  s.category, s.category_score, s.text_all, s.severity = nil, nil, nil, nil
  s.complaint, s.expectation, s.confirmed, s.confirm_rounds = nil, nil, nil, nil
  s.solutions, s.solution, s.agreed, s.rejections = nil, nil, nil, nil
  s.offered, s.refused = nil, nil
  s.idle_end, s.satisfaction = nil, nil
  s.resolved, s.closed, s.survey = nil, nil, nil
  s.follow_up_asked, s.follow_up_answered, s.follow_up_title = nil, nil, nil
end

-- 把方案标题加进 s.offered / s.refused 这样的列表（不重复）
local function note(s, key, title)
  local list = s[key] or {}
  for _, t in ipairs(list) do
    if t == title then return end
  end
  list[#list + 1] = title
  s[key] = list
end

local function classify_now(chat, s, text)
  s.text_all = T.cut(text, 500)
  s.category, s.category_score = CL.category(s.text_all)
  s.severity = CL.severity(text, s.category, s.slots, s.mood, chat.customer)
end

-- 去掉标点和空白，全角转半角
local function bare(text)
  local t = string.lower(T.trim(T.halfwidth(text)))
  return (string.gsub(t, "[%p%s]", ""))
end

-- 整句只由 words 里的词组成（去掉标点、语气词以后）
local function only_words(text, words)
  local t = bare(text)
  if t == "" or T.len(t) > 12 then return false end
  local list = {}
  for _, w in ipairs(words) do list[#list + 1] = w end
  table.sort(list, function(a, b) return #a > #b end)
  local hit = false
  for _, w in ipairs(list) do
    local rest = T.replace(t, w, "")
    if rest ~= t then t, hit = rest, true end
  end
  for _, w in ipairs({ "了", "啊", "呀", "哈", "的", "吧", "呢", "哦", "嗯", "您", "你" }) do
    t = T.replace(t, w, "")
  end
  return hit and t == ""
end

local function is_progress(text)
  return T.find_any(T.halfwidth(text), P.progress) ~= nil
end

-- 这个承诺（方案标题）还没有兑现
local function promised(s, title)
  for _, d in ipairs(type(s.deadlines) == "table" and s.deadlines or {}) do
    if d.what == title and not d.done then return true end
  end
  return false
end

-- 客户问进度：按投诉记录回答编号、状态和下一个时限。已答应客户的处理时限（agreed、
-- in_progress 时的 follow_up_due）优先于记录里的 SLA 时限，免得前后说法不一。
local function progress(chat, s)
  local rec = chat:complaint()
  if not rec then
    -- 没有记录（已结案的记录不再返回；没有投诉记录的环境）：按流程自己知道的回答
    if s.closed and s.record_no then
      chat:say("您的投诉（编号 " .. s.record_no .. "）已经处理完毕并结案。如果还有其他问题，请直接告诉我。")
    elseif s.resolved then
      chat:say("您反映的【" .. category(s).label .. "】问题已经处理完毕。如果还有其他问题，请直接告诉我。")
    elseif s.confirmed then
      chat:say("您反映的【" .. category(s).label .. "】问题正在处理中"
        .. (s.follow_up_due and ("，预计" .. D.due_text(s.follow_up_due, chat:now()) .. "前处理完毕") or "")
        .. "，有进展会第一时间通知您。")
    else
      chat:say(P.progress_none)
    end
    return
  end
  s.record_no = rec.number
  local st = rec.status
  local text = "您的投诉编号是 " .. rec.number .. "，当前状态：" .. (rec.status_text or st) .. "。"
  if st == "resolved" or st == "closed" then
    text = text .. "问题已经处理完毕，如果还有其他问题，请直接告诉我。"
  else
    local working = st == "agreed" or st == "in_progress"
    local due = rec.next_due
    if working and s.follow_up_due then due = s.follow_up_due end
    local now = chat:now()
    if type(due) == "number" and due > now then
      text = text .. "预计" .. D.due_text(due, now) .. "前" .. (working and "处理完毕" or "给您答复")
        .. "，有进展会第一时间通知您。"
    elseif type(due) == "number" then
      text = text .. "已经超过预计的时间，非常抱歉，我们正在加急处理，有进展会第一时间通知您。"
    else
      text = text .. "我们正在处理，有进展会第一时间通知您。"
    end
  end
  chat:say(text)
end

-- ---- 满意度调查 / the satisfaction survey ----

-- 快捷回复要普通的列表（lexicon 是只读的）
local function labels(list)
  local out = {}
  for i, o in ipairs(list or {}) do out[i] = type(o) == "table" and o[1] or o end
  return out
end
local OPTIONS = {
  csat = labels(P.ratings), nps = labels(P.survey.nps.options),
  comment = labels(P.survey.comment.options),
}

local function next_stage(stage)
  if stage == "csat" then return "nps" end
  if stage == "nps" then return "comment" end
  return nil
end

-- 记下一个回答；solved（是否解决）跟第一个回答一起登记
local function record_answer(chat, sv, fields)
  if sv.solved ~= nil and not sv.solved_sent then
    fields.solved = sv.solved
    sv.solved_sent = true
  end
  if next(fields) then chat:record("survey", fields) end
end

-- 0 到 10 分：阿拉伯数字或中文数字（“8分”“十”）
local function nps_of(t)
  local n = tonumber(string.match(t, "%d+"))
  if not n then
    local run = ""
    for _, c in ipairs(T.chars(t)) do
      if T.is_numeral(c) then run = run .. c elseif run ~= "" then break end
    end
    if run ~= "" then n = T.cn_number(run) end
  end
  if n and n >= 0 and n <= 10 and n == math.floor(n) then return math.tointeger(n) end
  return nil
end

-- 当前这一题的回答：认出来（或跳过）就记下、进入下一题，返回 true；认不出返回 false
local function survey_answer(chat, s, text)
  local sv = s.survey
  local t = T.trim(T.halfwidth(text))
  local skip = only_words(t, P.survey_skip)
  if sv.stage == "csat" then
    local label, i = chat:match(t, P.ratings)
    if label then
      sv.csat = 6 - i
      s.satisfaction = sv.csat
      record_answer(chat, sv, { csat = sv.csat })
    elseif not skip then
      return false
    end
  elseif sv.stage == "nps" then
    local n = nps_of(t)
    if n then
      sv.nps = n
      record_answer(chat, sv, { nps = n })
    elseif not skip then
      return false
    end
  elseif sv.stage == "comment" then
    if not skip then
      sv.comment = T.cut(T.trim(text), 500)
      record_answer(chat, sv, { comment = sv.comment })
    end
  end
  sv.stage = next_stage(sv.stage)
  return true
end

-- 调查结束：感谢并结案；评分 2 分及以下请主管回访（先不结案）
local function finish_survey(chat, s)
  local sv = s.survey
  record_answer(chat, sv, {})
  sv.stage = nil
  if sv.csat and sv.csat <= 2 then
    chat:escalate("dissatisfied", 1, P.dissatisfied)
    return nil
  end
  chat:say(P.survey_thanks)
  chat:record("status", "closed")
  s.closed = true
  return nil
end

return {
  default = true,
  start = "receive",
  on_done = "after",

  -- 人工客服结束处理：解决了就做满意度调查；只是交回就接着原来的问题（见文件开头）
  on_handback = function(chat, how)
    local s = chat.state
    if how == "resolved" then
      local last = H.last(chat.escalations)
      H.fulfil(s)
      chat:cancel("follow_up")
      s.resolved = true
      s.follow_up_asked, s.follow_up_answered = nil, nil
      local rec = chat:complaint()
      if rec and rec.number then s.record_no = rec.number end
      -- 主管回访了不满意的客户：不再重复调查，直接结案
      if last and last.reason == "dissatisfied" then return "closing" end
      s.survey = { stage = "csat", solved = true, intro = P.survey_intro_agent }
      return "survey"
    end
    if chat.step == nil then return "resume" end
    return nil
  end,
  error_message = "抱歉，系统处理您的消息时出了点问题。我已为您转接人工客服，请稍候，您反映的内容不会丢失。",

  -- 每条客户消息：更新情绪，顺手提取信息，接收阶段判断类别；随时更新严重程度
  on_message = function(chat, text)
    local s = chat.state
    s.skipped = s.skipped or {}
    s.mood = MOOD.update(s.mood, text)
    D.merge(s, X.all(text, chat:now()), false)
    if chat.step == "receive" then
      s.text_all = T.cut(((s.text_all and (s.text_all .. "\n")) or "") .. text, 500)
      s.category, s.category_score = CL.category(s.text_all)
    end
    local sev = CL.severity(text, s.category or "general", s.slots, s.mood, chat.customer)
    s.severity = math.max(s.severity or 1, sev)
    -- 给出方案时客户说“都不满意，转人工”：记下拒绝了哪些方案（转人工规则会接着转人工）
    if chat.step == "propose" and s.solutions
      and (T.trim(text) == P.human_option or T.find_any(text, P.human_option_match)) then
      for _, o in ipairs(s.solutions) do note(s, "refused", o.title) end
    end
  end,

  steps = {
    -- 1 接收投诉
    receive = function(chat, s)
      s.skipped = s.skipped or {}
      s.round = (s.round or 0) + 1
      local text
      if s.first_text then
        text, s.first_text = s.first_text, nil
      else
        local hello
        if s.round > 1 then
          hello = "好的，请描述一下您要反映的新问题。"
        else
          local name = chat.customer.name
          hello = (name ~= "" and (name .. "，您好！") or "您好！") .. "我是智能客服小安，很高兴为您服务。"
          if chat.customer.history_count > 0 then hello = hello .. "感谢您再次联系我们。" end
          hello = hello .. "请问遇到了什么问题？您可以直接描述经过，有订单号、金额或时间的话也请一起告诉我。"
        end
        text = D.ask(chat, hello)
        if not text then return nil end
      end
      -- 只是打招呼：请客户描述问题
      local tries = 0
      while CL.is_greeting(text) and tries < 3 do
        tries = tries + 1
        text = D.ask(chat, "您好，请问遇到了什么问题呢？简单描述一下就可以。")
        if not text then return nil end
      end
      -- 看不出是投诉：确认是否在受理范围内
      if s.category == "general" and not CL.has_cue(text) then
        local label, idx = D.choose(chat, "请问您是要反映问题或投诉吗？", {
          { "是，我要反映问题", match = { "是", "对", "投诉", "反映", "问题", "嗯" } },
          { "不是，咨询其他事情", match = { "不是", "咨询", "其他", "问一下", "不" } },
        })
        if not label then return D.stop(chat, idx) end
        if idx == 2 then
          chat:say("抱歉，我这里主要负责投诉和售后问题的处理。其他业务可以在“帮助中心”查询，或者拨打客服热线咨询。以后遇到问题，随时来找我。")
          chat:record("status", "out_of_scope")
          s.out_of_scope = true
          return nil
        end
        local more = D.ask(chat, "好的，请具体描述一下遇到的问题：")
        if not more then return nil end
        text = more
        classify_now(chat, s, text)
      end
      -- 描述太简单：请客户说具体一些
      if T.len(text) < 8 and s.category == "general" then
        local more = D.ask(chat, "好的，请具体说说发生了什么，比如哪笔订单或业务、遇到了什么情况？")
        if not more then return nil end
        text = text .. "；" .. more
      end
      s.complaint = T.cut(T.trim(text), 300)
      s.out_of_scope = nil
      chat:record("customer", {
        id = chat.customer.id, name = chat.customer.name, channel = chat.customer.channel,
        vip = chat.customer.vip, history_count = chat.customer.history_count,
      })
      chat:record("description", s.complaint)
      chat:record("category", { slug = s.category, label = category(s).label })
      chat:record("severity", s.severity or 1)
      chat:record("status", "received")
      return "soothe"
    end,

    -- 2 情绪安抚
    soothe = function(chat, s)
      local mood = s.mood or {}
      local tier = s.severity or 1
      if (mood.score or 0) >= 25 then tier = tier + 1 end
      if (mood.score or 0) >= 50 then tier = tier + 1 end
      tier = math.min(tier, #P.apology)
      s.apology_tier = tier
      local msg = P.apology[tier]
      if chat.customer.vip then msg = msg .. P.vip end
      if chat.customer.history_count >= 2 then msg = msg .. P.repeat_customer end
      chat:say(msg .. "您反映的【" .. category(s).label .. "】问题我已经记录下来了。")
      return "confirm"
    end,

    -- 3 确认问题
    confirm = function(chat, s)
      s.confirm_rounds = (s.confirm_rounds or 0) + 1
      local c = category(s)
      for _, name in ipairs(c.slots) do
        if s.slots[name] == nil and not s.skipped[name] then
          if not D.collect(chat, s, name) then return nil end
        end
      end
      if not s.expectation then
        local options = {}
        for i, e in ipairs(c.expect) do options[i] = e end
        options[#options + 1] = "其他要求"
        local label, why = D.choose(chat, "请问您希望我们怎么处理？", options)
        if not label then return D.stop(chat, why) end
        if label == "其他要求" then
          local t = D.ask(chat, "好的，请说说您的具体要求：")
          if not t then return nil end
          label = T.cut(T.trim(t), 100)
        end
        s.expectation = label
      end
      local right, why = D.confirm(chat, restate(s) .. "\n以上信息对吗？", "对，没错", "需要修改")
      if right == nil then return D.stop(chat, why) end
      if right then
        s.confirmed = true
        chat:record("summary", restate(s))
        chat:record("slots", s.slots)
        chat:record("expectation", s.expectation)
        chat:record("category", { slug = s.category, label = c.label })
        return "investigate"
      end
      if s.confirm_rounds >= 3 then
        chat:escalate("cannot_confirm", 2, "抱歉一直没能准确记录您的问题，我为您转接人工客服，请稍候。")
        return nil
      end
      local what, why2 = D.choose(chat, "请问哪里需要修改？", { "问题类型不对", "补充或修改细节", "处理要求不对" })
      if not what then return D.stop(chat, why2) end
      if what == "问题类型不对" then
        local t = D.ask(chat, "好的，请再简单描述一下您遇到的问题：")
        if not t then return nil end
        classify_now(chat, s, t)
        s.complaint = T.cut(T.trim(t), 300)
      elseif what == "处理要求不对" then
        s.expectation = nil
      else
        local t = D.ask(chat, "请直接告诉我需要补充或修改的内容，例如“订单号是 2024030512345”“金额是 58 元”：")
        if not t then return nil end
        local found = X.all(t, chat:now())
        if next(found) then
          D.merge(s, found, true)
        else
          s.complaint = T.cut(s.complaint .. "；" .. T.trim(t), 300)
        end
      end
      return "confirm"
    end,

    -- 4 查找原因
    investigate = function(chat, s)
      chat:say("好的，我正在为您查询处理方案，请稍等……")
      local query = (s.complaint or "") .. " " .. (s.expectation or "")
      local cat = s.category ~= "general" and s.category or nil
      local result = kb.search(query, { category = cat, limit = 5 })
      if result and result.confidence == "none" and cat then
        local wider = kb.search(query, { limit = 5 })
        if wider and wider.confidence == "answer" then result = wider end
      end
      local offers, case = SOL.build(result, s.slots, s.category)
      s.solutions = offers
      s.kb_confidence = result and result.confidence or "error"
      -- 知识库没有答案、也没有具体类别的标准方案：算机器人帮不上忙一次
      if s.kb_confidence ~= "answer" and s.kb_confidence ~= "suggest" and s.category == "general" then
        chat:failed("no_match")
      end
      if case then
        s.similar_case = case.id
        chat:say("我查到了以往类似的情况，当时是这样处理的：" .. T.cut(case.text, 80))
      end
      local keys = {}
      for i, o in ipairs(offers) do keys[i] = o.key or o.title end
      chat:record("kb", { confidence = s.kb_confidence, solutions = keys, case = case and case.id or nil })
      return "propose"
    end,

    -- 5 提供解决方案
    propose = function(chat, s)
      local offers = s.solutions or {}
      if #offers == 0 then
        chat:escalate("no_solution", 2, "抱歉，我暂时没有找到合适的方案，这就为您转接人工客服，请稍候。")
        return nil
      end
      local lines, options = {}, {}
      for i, o in ipairs(offers) do
        local line = string.format("%d. %s（%s）", i, o.title, o.deadline or "尽快处理")
        if o.compensation and o.compensation ~= "" then line = line .. "，" .. o.compensation end
        lines[i] = line
        options[i] = o.title
        note(s, "offered", o.title)
      end
      options[#options + 1] = { P.human_option, match = P.human_option_match }
      local intro = #offers == 1 and "针对您的问题，我们可以这样为您处理：\n"
        or "针对您的问题，我们可以为您提供以下方案：\n"
      local label, i = D.choose(chat, intro .. table.concat(lines, "\n") .. "\n请选择您希望的方案：", options)
      if not label then return D.stop(chat, i) end
      if label == P.human_option then
        for _, o in ipairs(offers) do note(s, "refused", o.title) end
        chat:record("status", "escalated")
        chat:escalate("solution_rejected", 2, "好的，我马上为您转接人工客服，由专人为您制定方案，请稍候。")
        return nil
      end
      s.solution = offers[i]
      chat:record("solution", { title = s.solution.title, deadline = s.solution.deadline, key = s.solution.key, source = s.solution.source })
      return "agree"
    end,

    -- 6 达成一致
    agree = function(chat, s)
      local o = s.solution
      local detail = o.text or ("我们将按照“" .. o.title .. "”为您处理。")
      chat:say("您选择的方案是【" .. o.title .. "】。" .. detail)
      local steps = "接下来：\n1. " .. (o.deadline or "尽快") .. "完成处理"
        .. ((o.compensation and o.compensation ~= "") and ("，" .. o.compensation) or "") .. "；\n"
        .. "2. 处理进度会通过" .. (P.channel[chat.customer.channel] or "消息") .. "通知您；\n"
        .. "3. 到期后我们会主动回访，确认问题已经解决。"
      local yes, why = D.confirm(chat, steps .. "\n请问您同意按这个方案处理吗？", "同意", "不同意")
      if yes == nil then return D.stop(chat, why) end
      if yes then
        s.agreed = true
        local hours = o.hours or SOL.hours(o.deadline)
        s.follow_up_due = chat:now() + hours * 3600
        chat:after(hours * 3600, "follow_up", { title = o.title, label = category(s).label })
        H.promise(chat, o.title, s.follow_up_due)
        chat:record("resolution", { title = o.title, deadline = o.deadline, due = D.stamp(s.follow_up_due) })
        chat:record("follow_up", { due = D.stamp(s.follow_up_due), note = "到期回访：" .. o.title })
        chat:record("status", "agreed")
        return "follow_up"
      end
      s.rejections = (s.rejections or 0) + 1
      note(s, "refused", o.title)
      chat:failed("refused")
      local left = {}
      for _, x in ipairs(s.solutions) do
        if x.title ~= o.title then left[#left + 1] = x end
      end
      s.solutions, s.solution = left, nil
      -- 两次不同意；或者之前已经有没听懂的情况，累计两次帮不上忙（同 escalation.lua 的
      -- bot_failed）；或者没有别的方案了：转人工
      local helpless = H.failures(s, chat.escalations) >= ESC.failures
      if s.rejections >= 2 or helpless or #left == 0 then
        chat:record("status", "escalated")
        if s.rejections < 2 and helpless then
          chat:escalate("bot_failed", ESC.priority.bot_failed, ESC.messages.bot_failed)
        else
          chat:escalate("no_agreement", 2, "抱歉目前的方案没能让您满意，我为您转接人工客服，由专人和您进一步沟通，请稍候。")
        end
        return nil
      end
      chat:say("好的，那我们看看其他方案。")
      return "propose"
    end,

    -- 7 跟踪落实：登记“处理中”，告诉客户何时完成；到期回访见 timers.follow_up
    follow_up = function(chat, s)
      chat:record("status", "in_progress")
      local rec = chat:complaint()
      if rec and rec.number then s.record_no = rec.number end
      chat:say("好的，已经为您登记" .. (s.record_no and ("，投诉编号 " .. s.record_no) or "") .. "。我们会在"
        .. D.due_text(s.follow_up_due, chat:now())
        .. "前完成处理，届时会主动联系您确认结果。想了解处理进度，随时发“进度”给我；如有新情况，也可以在这里留言。")
      return nil
    end,

    -- 满意度调查：问题解决以后才问。没回答（超时）就先结束，评价留空（坐席的回访列表里能看到），
    -- 客户之后再回复分数照样记下（after）；意见建议可以不填，超时算跳过。
    -- 回答不像评分、又像是新的问题时，交给 after 当作新消息处理，不挡着客户反映新问题。
    survey = function(chat, s)
      local sv = s.survey
      if type(sv) ~= "table" then return nil end
      if not sv.asked then
        sv.asked = true
        chat:record("survey", { asked = true })
      end
      local unclear = false
      while sv.stage do
        local q = P.survey[sv.stage]
        local prompt = unclear and q.retry or q.text
        if sv.intro then prompt, sv.intro = sv.intro .. prompt, nil end
        local text = chat:ask(prompt, { options = OPTIONS[sv.stage], timeout = P.idle_seconds })
        if not text then
          if sv.stage ~= "comment" then return nil end
          sv.stage = nil
        elseif sv.stage ~= "comment" and is_progress(text) then
          progress(chat, s)
          unclear = false
        elseif survey_answer(chat, s, text) then
          unclear = false
        elseif not unclear and T.len(text) <= 10 and not CL.has_cue(text) then
          unclear = true
        else
          return "after"
        end
      end
      return finish_survey(chat, s)
    end,

    -- 结案（主管回访不满意的客户、人工解决之后）
    closing = function(chat, s)
      chat:say(P.case_closed)
      chat:record("status", "closed")
      s.closed = true
      return nil
    end,

    -- 人工交回但没有解决、流程已经结束：回访没答的再问一遍，评价没答完的接着问，否则说明接下来怎样
    resume = function(chat, s)
      if s.follow_up_asked and not s.follow_up_answered then
        chat:say("关于您之前反映的问题（" .. (s.follow_up_title or "投诉") .. "），请问问题已经解决了吗？",
          { "已解决", "还没有解决" })
        return nil
      end
      if type(s.survey) == "table" and s.survey.stage then return "survey" end
      chat:say(P.handed_back)
      return nil
    end,

    -- 流程结束后客户又发来消息
    after = function(chat, s)
      local text = chat.last
      -- 到期回访的回答：问题解决了吗
      if s.follow_up_asked and not s.follow_up_answered then
        local label = chat:match(text, P.resolved)
        if label then
          s.follow_up_answered = true
          if label == "已解决" then
            s.resolved = true
            H.fulfil(s, s.follow_up_title)
            chat:record("status", "resolved")
            local rec = chat:complaint()
            if rec and rec.number then s.record_no = rec.number end
            -- 回访的问题（“问过了”已登记）就是调查的第一题：接着问满意度
            s.survey = { stage = "csat", solved = true, asked = true, intro = P.survey_intro_solved }
            record_answer(chat, s.survey, {})
            return "survey"
          end
          chat:record("survey", { solved = false })
          chat:record("status", "reopened")
          chat:escalate("follow_up_unresolved", 2, "非常抱歉问题还没有解决，我马上为您转接人工客服跟进处理，请稍候。")
          return nil
        end
      end
      -- 问进度
      if is_progress(text) then
        progress(chat, s)
        return nil
      end
      -- 没答完的满意度调查（超时以后客户又回来打分）
      if type(s.survey) == "table" and s.survey.stage and survey_answer(chat, s, text) then
        if s.survey.stage then return "survey" end
        return finish_survey(chat, s)
      end
      -- 只是道谢、告别
      if only_words(text, P.thanks) then
        chat:say(P.welcome)
        return nil
      end
      if s.confirmed and not s.resolved and not s.closed then
        local yes, why = D.confirm(chat, "您之前反映的【" .. category(s).label .. "】问题正在处理中"
          .. (s.follow_up_due and ("，预计" .. D.due_text(s.follow_up_due, chat:now()) .. "前完成") or "")
          .. "。请问您是要反映一个新的问题吗？", "是，新问题", "不是")
        if yes == nil then return D.stop(chat, why) end
        if yes then
          reset(s)
          s.opened_turn = chat.turn
          return "receive"
        end
        chat:say("好的，您之前的问题我们会按承诺跟进，有进展会第一时间通知您。")
        return nil
      end
      -- 上次的问题已经解决，或者没有登记完（超时、不在受理范围）：用这条消息开始新的问题
      reset(s)
      s.opened_turn = chat.turn
      s.first_text = text
      D.merge(s, X.all(text, chat:now()), true)
      classify_now(chat, s, text)
      return "receive"
    end,
  },

  timers = {
    -- 承诺的时限快到了：什么都不用做，引擎在每个定时任务之后都会运行 escalation.lua，
    -- 由它的 deadline 规则检查承诺有没有兑现（lib.handoff.promise 安排了这个定时任务）
    deadline = function(chat, arg) end,

    -- 承诺的处理时限到了：主动回访（“问题解决了吗？”就是回访调查的第一题）
    follow_up = function(chat, arg)
      local s = chat.state
      if not promised(s, arg.title) then return end
      -- 人工正在处理：一小时后再来（最多 24 次），不打断人工
      if chat.escalated then
        local tries = (arg.tries or 0) + 1
        if tries <= 24 then
          chat:after(3600, "follow_up", { title = arg.title, label = arg.label, tries = tries })
        end
        return
      end
      s.follow_up_asked = true
      s.follow_up_answered = nil
      s.follow_up_title = arg.title
      chat:say("您好，关于您之前反映的【" .. (arg.label or "投诉") .. "】问题（" .. arg.title
        .. "），承诺的处理时限已到。请问问题已经解决了吗？", { "已解决", "还没有解决" })
      chat:record("follow_up_check", { title = arg.title })
      chat:record("survey", { asked = true })
    end,
  },
}
