/*
 * format.js - what the agent console shows for the server's codes and numbers: Chinese names
 * of escalation reasons, categories, groups, steps and states; times and durations; the DOM
 * helper that builds elements from text only (never HTML); the mood sparkline.
 *
 * Everything here is a pure function of its arguments, no state.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/* ---- DOM, text only ---- */

/*
 * el('div', {class, text, dataset, title, onclick, ...attributes}, ...children)
 * `text` becomes textContent; children are nodes or strings (text nodes).  Attribute values
 * are set with setAttribute, never parsed as markup.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  for (const c of children) if (c != null && c !== false) node.append(c);
  return node;
}

/* A small inline SVG icon from a path. */
export function icon(d, cls = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}

/*
 * The mood trend as a tiny line chart: values 0..100, oldest first.  Returns an <svg> with a
 * <title> naming the values (for screen readers and hover), or null for no data.
 */
export function sparkline(values, width = 96, height = 24) {
  const v = (Array.isArray(values) ? values : []).filter((x) => Number.isFinite(x)).slice(-30);
  if (v.length === 0) return null;
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  const title = document.createElementNS(SVG_NS, 'title');
  title.textContent = `情绪走势：${v.join(' → ')}`;
  svg.append(title);
  const pad = 3;
  const x = (i) => (v.length === 1 ? width / 2 : pad + (i * (width - 2 * pad)) / (v.length - 1));
  const y = (s) => height - pad - (Math.max(0, Math.min(100, s)) / 100) * (height - 2 * pad);
  const base = document.createElementNS(SVG_NS, 'line');
  base.setAttribute('x1', '0');
  base.setAttribute('x2', String(width));
  base.setAttribute('y1', String(y(70)));
  base.setAttribute('y2', String(y(70)));
  base.setAttribute('class', 'spark-limit');
  svg.append(base);
  if (v.length > 1) {
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('points', v.map((s, i) => `${x(i).toFixed(1)},${y(s).toFixed(1)}`).join(' '));
    line.setAttribute('class', 'spark-line');
    svg.append(line);
  }
  const last = document.createElementNS(SVG_NS, 'circle');
  last.setAttribute('cx', x(v.length - 1).toFixed(1));
  last.setAttribute('cy', y(v.at(-1)).toFixed(1));
  last.setAttribute('r', '2.5');
  last.setAttribute('class', `spark-dot mood-${moodLevel(v.at(-1))}`);
  svg.append(last);
  return svg;
}

/* ---- names ---- */

export const REASONS = {
  human_request: '客户要求转人工',
  threat: '客户扬言投诉/曝光',
  anger: '客户情绪激动',
  anger_rising: '客户情绪持续升高',
  bot_failed: '机器人无法理解',
  vip: 'VIP 客户',
  high_severity: '问题严重',
  cannot_confirm: '无法确认问题',
  no_solution: '无可用方案',
  solution_rejected: '客户拒绝方案',
  no_agreement: '方案未达成一致',
  dissatisfied: '客户评价不满意',
  follow_up_unresolved: '回访时问题未解决',
  flow_error: '机器人流程出错',
};

export const CATEGORIES = {
  'bank.fee': '银行误扣费',
  'bank.transfer': '转账未到账',
  'bank.card': '信用卡',
  'ecom.refund': '退款',
  'ecom.not_received': '未收到货',
  'ecom.quality': '商品质量问题',
  'ecom.payment': '支付成功订单未支付',
  'logistics.delay': '物流延误',
  'logistics.lost': '丢件',
  'logistics.damaged': '快递破损',
  'telecom.billing': '话费',
  'telecom.signal': '信号问题',
  'travel.flight': '航班问题',
  'travel.hotel': '酒店问题',
  'service.attitude': '服务态度',
  general: '其他问题',
};

export const GROUPS = {
  bank: '银行业务组',
  ecom: '电商售后组',
  logistics: '物流组',
  telecom: '通信业务组',
  travel: '出行服务组',
  service: '服务质量组',
  general: '综合组',
  vip: 'VIP 专席',
};

export const STEPS = {
  receive: '接收投诉',
  soothe: '情绪安抚',
  confirm: '确认问题',
  investigate: '查找原因',
  propose: '提供方案',
  agree: '达成一致',
  follow_up: '跟踪落实',
  after: '后续咨询',
};

export const SLOTS = {
  order_id: '订单号',
  amount: '金额',
  time: '时间',
  account: '卡号尾号',
  phone: '手机号',
  tracking_no: '运单号',
  flight: '航班号',
  product: '商品',
};

/* Template placeholders ({订单号}) that a slot fills (rules/lexicon/slots.lua). */
export const PLACEHOLDERS = {
  订单号: 'order_id',
  金额: 'amount',
  保价金额: 'amount',
  日期: 'time',
  时间: 'time',
  卡号后四位: 'account',
  尾号: 'account',
  手机号: 'phone',
  号码: 'phone',
  运单号: 'tracking_no',
  航班号: 'flight',
  商品: 'product',
  商品名称: 'product',
};

export const CHANNELS = {
  web: '网页',
  app: 'App',
  h5: 'H5',
  wechat: '微信',
  email: '邮件',
  phone: '电话',
  other: '其他',
};

/* complaint record states (server/complaint.c) and the flow's own (rules/flows/complaint.lua) */
export const RECORD_STATUS = {
  received: '已受理',
  acknowledged: '已确认',
  investigating: '调查中',
  solution_offered: '已提供方案',
  agreed: '方案已确认',
  in_progress: '处理中',
  resolved: '已解决',
  closed: '已结案',
  reopened: '重新处理',
  escalated: '已转人工',
  out_of_scope: '不属受理范围',
  callback: '待回电',
};

/* complaint record fields worth showing in the record section (chat:record names) */
export const RECORD_FIELDS = {
  description: '问题描述',
  solution: '选定方案',
  resolution: '处理方案',
  follow_up: '回访安排',
  follow_up_check: '回访结果',
  satisfaction: '满意度',
};

export const HANDOFF_STATE = {
  queued: '排队中',
  callback: '待回电',
  active: '处理中',
  ended: '已结束',
};

export const CALLBACK_REASON = {
  no_agent: '无坐席在线',
  after_hours: '非工作时间',
  wait_timeout: '等待超时',
};

export const RELEASE_REASON = {
  resolved: '已结束处理',
  handed_back: '已交回机器人',
  transferred: '已转接',
  taken: '已被主管接管',
};

export const OUTCOMES = {
  accepted: '客户接受',
  partial: '部分接受',
  refused: '客户不接受',
};

/* A status event's state, as the agent's transcript shows it. */
export const SYSTEM_EVENTS = {
  open: '会话开始',
  escalated: '机器人转人工',
  queued: '进入人工队列',
  agent_joined: '坐席已接入',
  resolved: '坐席已结束处理',
  bot_resumed: '机器人继续服务',
  record: '投诉记录已更新',
  closed: '会话已结束',
};

/* A status event (from "system") as one line for the agent: its state plus what its detail says. */
export function systemText(state, detail) {
  const d = detail && typeof detail === 'object' ? detail : {};
  const base = SYSTEM_EVENTS[state] || state;
  switch (state) {
    case 'escalated':
      return d.reason ? `${base}：${reasonName(d.reason)}` : base;
    case 'queued':
      return Number.isFinite(d.position) && d.position > 0 ? `${base}（第 ${d.position} 位）` : base;
    case 'agent_joined':
      return d.agent ? `坐席 ${d.agent} 已接入` : base;
    case 'resolved':
      return d.resolution ? `${base}：${d.resolution}` : base;
    case 'record': {
      const parts = [d.number, d.status ? name(RECORD_STATUS, d.status) : ''].filter(Boolean);
      const due = d.status === 'callback' && d.due ? `，${when(d.due)} 前回电` : '';
      return parts.length ? `投诉记录 ${parts.join(' ')}${due}` : base;
    }
    case 'closed':
      return d.reason ? `${base}（${d.reason}）` : base;
    default:
      return base;
  }
}

/* queue item `sla`: the complaint record's deadline flag */
export const SLA = { warning: '即将超时', breached: '已超时' };

export const PRIORITY = { 1: '普通', 2: '优先', 3: '紧急' };
export const SEVERITY = { 1: '轻微', 2: '一般', 3: '严重', 4: '特别严重' };

export const name = (table, key) => (key == null || key === '' ? '' : table[key] || String(key));
export const groupName = (g) => name(GROUPS, g);
export const categoryName = (c) => name(CATEGORIES, c);
export const reasonName = (r) => name(REASONS[r] ? REASONS : CALLBACK_REASON, r);

export function moodLevel(score) {
  if (!Number.isFinite(score)) return 'none';
  return score >= 70 ? 'high' : score >= 40 ? 'mid' : 'low';
}

/* ---- time ---- */

const pad = (n) => String(n).padStart(2, '0');

/*
 * A time from the server: ISO 8601 text, or epoch seconds (numbers below 1e12) or
 * milliseconds.  Returns a Date or null (0, null, empty or unparsable).
 */
export function toDate(v) {
  if (v == null || v === '' || v === 0) return null;
  let d;
  if (typeof v === 'number') d = new Date(v < 1e12 ? v * 1000 : v);
  else if (typeof v === 'string') d = new Date(v);
  else return null;
  return Number.isNaN(d.getTime()) ? null : d;
}

export function clock(d) {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/* 今天 14:05 / 昨天 09:30 / 3月5日 14:05 / 2025年3月5日 14:05 */
export function when(v) {
  const d = toDate(v);
  if (!d) return '';
  const now = new Date();
  const start = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((start(now) - start(d)) / 86400000);
  const t = clock(d);
  if (days === 0) return `今天 ${t}`;
  if (days === 1) return `昨天 ${t}`;
  if (days === -1) return `明天 ${t}`;
  const md = `${d.getMonth() + 1}月${d.getDate()}日`;
  return d.getFullYear() === now.getFullYear() ? `${md} ${t}` : `${d.getFullYear()}年${md} ${t}`;
}

/* A message time: 14:05 today, else as when(). */
export function stamp(v) {
  const d = toDate(v);
  if (!d) return '';
  return new Date().toDateString() === d.toDateString() ? clock(d) : when(d);
}

/* Seconds as 0:42 / 12:05 / 1:02:05 (for waiting times that tick). */
export function duration(s) {
  const t = Math.max(0, Math.floor(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

/*
 * Hours as the follow-up list shows a wait (waited_h, with one decimal): 不到 1 小时 /
 * 5 小时 / 3 天 2 小时.  '' for anything that is not a number.
 */
export function hoursText(h) {
  if (typeof h !== 'number' || !Number.isFinite(h)) return '';
  if (h < 1) return '不到 1 小时';
  const whole = Math.floor(h);
  if (whole < 24) return `${whole} 小时`;
  const rest = whole % 24;
  return `${Math.floor(whole / 24)} 天${rest ? ` ${rest} 小时` : ''}`;
}

/* Any JSON value as one line of text for the side panel. */
export function plain(v) {
  if (v == null) return '';
  if (typeof v === 'string') return /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v) ? when(v) || v : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.map(plain).filter(Boolean).join('、');
  if (typeof v === 'object') return Object.values(v).map(plain).filter(Boolean).join('；');
  return String(v);
}

/* Fills a template's {占位符} from the conversation's slots; unknown ones stay as they are. */
export function fillTemplate(text, slots) {
  if (typeof text !== 'string') return '';
  return text.replace(/\{([^{}\s]{1,12})\}/g, (whole, key) => {
    const slot = PLACEHOLDERS[key];
    const v = slot && slots ? slots[slot] : null;
    return v == null || v === '' ? whole : plain(v);
  });
}
