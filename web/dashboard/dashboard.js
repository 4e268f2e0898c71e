/*
 * dashboard.js - the supervisors' dashboard (web/dashboard/): login, date range, KPI tiles,
 * charts (Chart.js, loaded by index.html from web/node_modules as the global `Chart`), the top
 * topics table and the CSV export link.  docs/complaints.md defines every figure.
 *
 * Views: boot --GET /api/auth/me 200, role has dashboard.view--> app (load)
 *                                --200 without dashboard.view--> denied
 *                                --401--> login
 *        login --POST /api/auth/login--> boot again
 *        app --退出登录, or a 401 from /api/dashboard (session ended)--> login
 *
 * load(): GET /api/dashboard?from&to -> render(): tiles, charts (destroyed and drawn again),
 * table; only the answer to the latest request is drawn.  A 503 (busy) is retried after its
 * Retry-After, at most 3 times.  Every piece of text goes in with textContent.
 */

const $ = (id) => document.getElementById(id);

const ROLE_NAMES = { admin: '管理员', supervisor: '主管', editor: '知识库编辑', agent: '坐席' };
const COLORS = ['#1f6feb', '#12b76a', '#f79009', '#7a5af8', '#ee46bc', '#06aed4', '#f04438',
  '#667085', '#84cc16', '#dd6b20'];
const OK = '#12b76a';
const BAD = '#f04438';
const PENDING = '#d0d5dd';

/* ---- formatting (the browser test formats the API's numbers with the same rules) ---- */

export const format = {
  int: (n) => (n == null ? '—' : Number(n).toLocaleString('zh-CN')),
  pct: (r) => (r == null ? '—' : `${(r * 100).toFixed(1)}%`),
  avg: (v) => (v == null ? '—' : v.toFixed(2)),
  nps: (v) => {
    if (v == null) return '—';
    const n = Math.round(v);
    return n > 0 ? `+${n}` : String(n);
  },
};

/* "2026-03-05" plus n days. */
function addDays(day, n) {
  const t = Date.parse(`${day}T00:00:00Z`) + n * 86400000;
  return new Date(t).toISOString().slice(0, 10);
}

function shortDay(day) {
  return `${day.slice(5, 7)}-${day.slice(8, 10)}`;
}

/* ---- HTTP ---- */

class HttpError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch {
    throw new HttpError(0, 'network', '无法连接服务器，请检查网络后重试', 0);
  }
  let doc = null;
  try {
    doc = await r.json();
  } catch {
    doc = null;
  }
  if (!r.ok) {
    const e = (doc && doc.error) || {};
    throw new HttpError(r.status, e.code || 'http', e.message || `HTTP ${r.status}`,
      Number(r.headers.get('Retry-After')) || Number(doc && doc.retry_after) || 0);
  }
  return doc;
}

/* ---- views ---- */

function showView(name) {
  $('boot').hidden = name !== 'boot';
  $('login-view').hidden = name !== 'login';
  $('denied-view').hidden = name !== 'denied';
  $('app').hidden = name !== 'app';
}

function showLogin() {
  destroyCharts();
  showView('login');
  $('login-error').hidden = true;
  $('login-pass').value = '';
  $('login-submit').disabled = false;
  ($('login-user').value ? $('login-pass') : $('login-user')).focus();
}

async function boot() {
  showView('boot');
  let me;
  try {
    me = await api('GET', '/api/auth/me');
  } catch (e) {
    if (e.status === 401) {
      showLogin();
      return;
    }
    showView('login');
    showLoginError(e.message);
    return;
  }
  const u = me.user;
  if (!u.capabilities || !u.capabilities.includes('dashboard.view')) {
    $('denied-text').textContent = `当前账号（${u.display_name}，${ROLE_NAMES[u.role] || u.role}）没有查看数据看板的权限，请换一个主管或管理员账号登录。`;
    showView('denied');
    return;
  }
  $('me').textContent = `${u.display_name} · ${ROLE_NAMES[u.role] || u.role}`;
  showView('app');
  const q = new URLSearchParams(location.search);
  load(q.get('from') || '', q.get('to') || '');
}

function showLoginError(text) {
  const err = $('login-error');
  err.textContent = text;
  err.hidden = false;
}

async function onLogin(ev) {
  ev.preventDefault();
  const username = $('login-user').value.trim();
  const password = $('login-pass').value;
  if (!username || !password) {
    showLoginError('请输入用户名和密码');
    return;
  }
  $('login-submit').disabled = true;
  $('login-submit').textContent = '正在登录…';
  try {
    await api('POST', '/api/auth/login', { username, password });
  } catch (e) {
    $('login-submit').disabled = false;
    $('login-submit').textContent = '登录';
    if (e.status === 401) showLoginError('用户名或密码不正确');
    else if (e.status === 403) showLoginError('账号已停用，请联系管理员');
    else if (e.status === 429) showLoginError(`尝试次数过多，请 ${e.retryAfter || 60} 秒后再试`);
    else showLoginError(e.message);
    return;
  }
  $('login-submit').textContent = '登录';
  $('login-pass').value = '';
  boot();
}

async function onLogout() {
  try {
    await api('POST', '/api/auth/logout');
  } catch {
    /* the cookie is gone either way on the next request */
  }
  showLogin();
}

/* ---- loading ---- */

let seq = 0; // the latest request; older answers are dropped
let today = ''; // the server's local date, from the last answer
let data = null; // the last figures drawn

function setBusy(busy) {
  $('apply').disabled = busy;
  document.body.dataset.loading = busy ? '1' : '';
}

function showError(text) {
  const e = $('error');
  e.textContent = text;
  e.hidden = !text;
}

async function load(from, to, attempt = 0) {
  const mine = ++seq;
  const q = new URLSearchParams();
  if (from) q.set('from', from);
  if (to) q.set('to', to);
  setBusy(true);
  showError('');
  let doc;
  try {
    doc = await api('GET', `/api/dashboard${q.toString() ? `?${q}` : ''}`);
  } catch (e) {
    if (mine !== seq) return;
    setBusy(false);
    if (e.status === 401) {
      showLogin();
    } else if (e.status === 503 && attempt < 3) {
      showError('系统繁忙，稍后自动重试…');
      setTimeout(() => {
        if (mine === seq) load(from, to, attempt + 1);
      }, Math.min(e.retryAfter || 2, 30) * 1000);
    } else if (e.status === 400) {
      showError(`日期范围有误：${e.message}`);
    } else {
      showError(`数据加载失败：${e.message}`);
    }
    return;
  }
  if (mine !== seq) return;
  setBusy(false);
  data = doc;
  today = doc.generated_at.slice(0, 10);
  $('from').value = doc.range.from;
  $('to').value = doc.range.to;
  const range = new URLSearchParams({ from: doc.range.from, to: doc.range.to });
  history.replaceState(null, '', `?${range}`);
  $('export').href = `/api/dashboard/export.csv?${range}`;
  render(doc);
}

function onApply(ev) {
  ev.preventDefault();
  const from = $('from').value;
  const to = $('to').value;
  if (!from || !to) {
    showError('请选择开始和结束日期');
    return;
  }
  if (from > to) {
    showError('开始日期不能晚于结束日期');
    return;
  }
  load(from, to);
}

function onQuick(ev) {
  const b = ev.target.closest('[data-days]');
  if (!b) return;
  const end = today || $('to').value;
  if (!end) return;
  load(addDays(end, -(Number(b.dataset.days) - 1)), end);
}

/* ---- rendering ---- */

function render(d) {
  const t = d.totals;
  const days = d.range.days;
  $('range-text').textContent = `统计范围：${d.range.from} 至 ${d.range.to}（${days} 天，北京时间），上期为 ${d.range.previous.from} 至 ${d.range.previous.to}；数据更新于 ${d.generated_at.slice(0, 16).replace('T', ' ')}`;
  for (const b of document.querySelectorAll('.quick [data-days]')) {
    const on = d.range.to === today && Number(b.dataset.days) === days;
    b.setAttribute('aria-pressed', on ? 'true' : 'false');
  }

  const change = t.previous > 0 ? (t.complaints - t.previous) / t.previous : null;
  tile('complaints', t.complaints, format.int(t.complaints),
    `上期 ${format.int(t.previous)}${change == null ? '' : `，${change >= 0 ? '增加' : '减少'} ${format.pct(Math.abs(change))}`}`,
    change == null ? '' : change > 0 ? 'up' : change < 0 ? 'down' : '');
  tile('escalation_rate', t.escalation_rate, format.pct(t.escalation_rate),
    `转人工 ${format.int(t.escalated)} 件，重新处理 ${format.int(t.reopened)} 件`);
  tile('first_contact_resolution_rate', t.first_contact_resolution_rate,
    format.pct(t.first_contact_resolution_rate),
    `已解决 ${format.int(t.resolved)} 件，其中一次解决 ${format.int(t.first_contact)} 件`);
  for (const step of ['ack', 'resolve']) {
    const s = d.sla[step];
    tile(`${step}_compliance`, s.compliance, format.pct(s.compliance),
      `达标 ${s.met}，超时 ${s.breached}，未到期 ${s.pending}`, s.breached > 0 ? 'warn' : '');
  }
  const sat = d.satisfaction;
  tile('csat_avg', sat.csat_avg, format.avg(sat.csat_avg), `${format.int(sat.csat_responses)} 份评分`);
  tile('nps', sat.nps, format.nps(sat.nps),
    `推荐 ${sat.promoters} · 中立 ${sat.passives} · 贬损 ${sat.detractors}`);
  tile('followups_pending', d.followups_pending, format.int(d.followups_pending), '回访已发出、超时未答复',
    d.followups_pending > 0 ? 'warn' : '');

  renderTopics(d.top_topics);
  drawCharts(d);
}

function tile(key, raw, text, sub, mood = '') {
  const el = document.querySelector(`[data-kpi="${key}"]`);
  const v = el.querySelector('[data-value]');
  v.textContent = text;
  v.dataset.value = raw == null ? 'null' : String(raw);
  el.querySelector('[data-sub]').textContent = sub;
  el.dataset.mood = mood;
}

function renderTopics(topics) {
  const body = $('topics');
  body.replaceChildren();
  topics.forEach((t, i) => {
    const tr = document.createElement('tr');
    const diff = t.count - t.previous;
    const cells = [
      String(i + 1),
      t.label,
      format.int(t.count),
      format.pct(t.share),
      diff === 0 ? '持平' : `${diff > 0 ? '+' : ''}${diff}`,
      format.int(t.escalated),
    ];
    cells.forEach((text, j) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (j >= 2) td.className = 'num';
      if (j === 1) td.title = t.category || '未分类';
      if (j === 4) td.dataset.trend = diff > 0 ? 'up' : diff < 0 ? 'down' : '';
      tr.append(td);
    });
    body.append(tr);
  });
  $('topics-empty').hidden = topics.length > 0;
}

/* ---- charts ---- */

const charts = new Map();

function destroyCharts() {
  for (const c of charts.values()) c.destroy();
  charts.clear();
}

function draw(id, config) {
  const old = charts.get(id);
  if (old) old.destroy();
  charts.set(id, new window.Chart($(id), config));
}

function baseOptions(extra = {}) {
  return {
    responsive: true,
    datasets: { bar: { maxBarThickness: 40 } },
    maintainAspectRatio: false,
    plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
    ...extra,
  };
}

function drawCharts(d) {
  if (!window.Chart) {
    showError('图表组件没有加载（web/node_modules 缺失：在 web/ 目录运行 npm ci）');
    return;
  }
  draw('chart-trend', {
    type: 'line',
    data: {
      labels: d.by_day.map((x) => shortDay(x.date)),
      datasets: [
        { label: '投诉量', data: d.by_day.map((x) => x.count), borderColor: COLORS[0],
          backgroundColor: 'rgba(31, 111, 235, 0.12)', fill: true, tension: 0.25, pointRadius: 2 },
        { label: '转人工', data: d.by_day.map((x) => x.escalated), borderColor: COLORS[2],
          backgroundColor: COLORS[2], tension: 0.25, pointRadius: 2 },
      ],
    },
    options: baseOptions({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }),
  });

  const channels = d.by_channel.filter((x) => x.count > 0);
  draw('chart-channel', {
    type: 'doughnut',
    data: {
      labels: channels.length ? channels.map((x) => x.label) : ['暂无数据'],
      datasets: [{
        data: channels.length ? channels.map((x) => x.count) : [1],
        backgroundColor: channels.length ? channels.map((_, i) => COLORS[i % COLORS.length]) : [PENDING],
      }],
    },
    options: baseOptions({ cutout: '60%' }),
  });

  draw('chart-category', {
    type: 'bar',
    data: {
      labels: d.by_category.map((x) => x.label),
      datasets: [
        { label: '本期', data: d.by_category.map((x) => x.count), backgroundColor: COLORS[0] },
        { label: '上期', data: d.by_category.map((x) => x.previous), backgroundColor: '#b2ccff' },
      ],
    },
    options: baseOptions({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }),
  });

  draw('chart-reasons', {
    type: 'bar',
    data: {
      labels: d.escalation_reasons.map((x) => x.label),
      datasets: [{ label: '次数', data: d.escalation_reasons.map((x) => x.count),
        backgroundColor: COLORS[2] }],
    },
    options: baseOptions({
      indexAxis: 'y',
      plugins: { legend: { display: false } },
      scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
    }),
  });
  $('reasons-empty').hidden = d.escalation_reasons.length > 0;

  const steps = ['ack', 'answer', 'resolve'];
  draw('chart-sla', {
    type: 'bar',
    data: {
      labels: ['确认', '答复', '解决'],
      datasets: [
        { label: '达标', data: steps.map((s) => d.sla[s].met), backgroundColor: OK },
        { label: '超时', data: steps.map((s) => d.sla[s].breached), backgroundColor: BAD },
        { label: '未到期', data: steps.map((s) => d.sla[s].pending), backgroundColor: PENDING },
      ],
    },
    options: baseOptions({
      indexAxis: 'y',
      scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } },
      plugins: {
        legend: { position: 'bottom', labels: { boxWidth: 12 } },
        tooltip: {
          callbacks: {
            footer: (items) => `达成率 ${format.pct(d.sla[steps[items[0].dataIndex]].compliance)}`,
          },
        },
      },
    }),
  });

  const dist = d.satisfaction.csat_dist;
  draw('chart-csat', {
    type: 'bar',
    data: {
      labels: ['1 分', '2 分', '3 分', '4 分', '5 分'],
      datasets: [{ label: '评价数', data: dist,
        backgroundColor: ['#f04438', '#f79009', '#fdb022', '#66c61c', '#12b76a'] }],
    },
    options: baseOptions({
      plugins: { legend: { display: false } },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
    }),
  });
  $('csat-empty').hidden = dist.some((n) => n > 0);
}

/* ---- start ---- */

function start() {
  if (window.Chart) {
    const C = window.Chart;
    C.defaults.font.family = getComputedStyle(document.body).fontFamily;
    C.defaults.color = '#475467';
    if (matchMedia('(prefers-reduced-motion: reduce)').matches) C.defaults.animation = false;
  }
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', onLogout);
  $('denied-logout').addEventListener('click', onLogout);
  $('range-form').addEventListener('submit', onApply);
  document.querySelector('.quick').addEventListener('click', onQuick);
  boot();
}

start();

/* for the browser test and the console: the figures on screen */
window.redressDashboard = { get data() { return data; }, format };
