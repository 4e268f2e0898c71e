/*
 * console.js - the agent console: login, queue, my chats, follow-ups, chat pane, context side
 * panel, knowledge-base search, notes, transfer, resolve, hand back (docs/protocol.md, agent
 * protocol v1; docs/complaints.md for the follow-ups).  Plain ES module, no framework, no build
 * step; Simplified Chinese interface.
 *
 * The skeleton is static markup in index.html; this file fills it.  Every piece of customer or
 * server text goes into the DOM with textContent (el() in format.js): nothing received becomes
 * HTML.  The protocol (socket, backoff, requests) lives in agent-client.js.
 *
 * Views: boot --/agent socket: welcome--> app | --close 4401 (no login) or 4403--> login
 *        login --POST /api/auth/login, then the socket--> boot --welcome--> app
 *        app --logout, close code 4401 (session ended)--> login
 *
 * State (S): the logged-in user, the welcome's groups and canned replies, the queue snapshot,
 * the chats this account owns (S.mine, from `mine` frames, in server order), and a Chat per
 * conversation the console has open.  A Chat keeps its own transcript element (swapped into the
 * chat pane when selected, so scroll position and rows survive switching), its context packet,
 * notes, unread count and reply draft.  A chat leaves when the server releases it (`released`,
 * or missing from a later welcome's `mine`); an ended chat stays on screen, read-only, until
 * the agent opens another one.
 *
 * Transcript rows are keyed by seq: the context packet's transcript and live `message` frames
 * merge without duplicates.  A reply is shown at once as "sending"; its row gets its seq from
 * the `ok` (or from the echo of the stored event, whichever comes first).
 *
 * Follow-ups (待回访, the sidebar's second tab): resolved complaints whose satisfaction survey
 * the customer has not answered, from GET /api/complaints/followups (S.followups), oldest
 * first, the overdue ones marked.  Not on the socket, so the list is fetched: at each welcome,
 * when its tab is opened, every 60 s while the page is visible and when the window gets the
 * focus back (not while the socket is down).  Only the newest answer counts (S.fuSeq).  401
 * goes back to the login form; 403 hides the tab (the role may not see them).
 */

import { AgentClient, MAX_TEXT_CHARS, http, textLength } from './agent-client.js';
import * as F from './format.js';
import { kbHit, priorityBadge, renderInfo, vipBadge } from './panel.js';

const { el } = F;
const $ = (id) => document.getElementById(id);

const ROLE_NAMES = { admin: '管理员', supervisor: '主管', agent: '坐席', editor: '知识库编辑' };

const ERROR_TEXT = {
  not_found: '该会话已不在队列中，或已被处理',
  already_claimed: '该会话已被其他坐席接入',
  not_owner: '只有接入该会话的坐席（或主管）可以这样操作',
  agent_offline: '对方坐席不在线或处于小休状态',
  bad_field: '内容不符合要求',
  missing_field: '缺少必填内容',
  rate_limited: '操作太频繁，请稍后再试',
  internal: '服务器暂时无法保存，请重试',
  offline: '与服务器的连接已断开，请等待重连后再试',
  timeout: '服务器没有应答，结果未知，请稍后确认',
};

function errorText(e) {
  const base = ERROR_TEXT[e?.code] || '操作失败';
  if (e?.code === 'already_claimed' && e.message) return `${base}（${e.message}）`;
  if (!ERROR_TEXT[e?.code] && e?.message) return `${base}：${e.message}`;
  return base;
}

const LOGIN_ERRORS = {
  invalid_credentials: '用户名或密码错误',
  account_disabled: '账号已停用，请联系管理员',
  bad_field: '请输入正确的用户名和密码',
  missing_field: '请输入用户名和密码',
  unavailable: '服务繁忙，请稍后再试',
  network: '无法连接服务器，请检查网络',
};

/* ---- state ---- */

const S = {
  user: null, /* {username, name, role} from the first welcome */
  agent: null, /* welcome.agent */
  supervisor: false,
  groups: [],
  canned: [],
  queue: { items: [], total: 0, at: Date.now() },
  mine: new Map(), /* conversation -> item, server order */
  chats: new Map(), /* conversation -> Chat */
  selected: null, /* Chat */
  presence: 'available',
  groupFilter: null, /* null: all groups */
  welcomed: false,
  kbSeq: 0,
  listTab: 'chats', /* the sidebar's tab: chats | followups */
  followups: { items: [], overdue: 0, after: 72, at: 0 },
  fuSeq: 0, /* the newest follow-up request; older answers are dropped */
  fuForbidden: false, /* 403: this role does not see follow-ups */
};

const FOLLOWUP_REFRESH_MS = 60000;

let client = null;

/* ---- small helpers ---- */

function toast(text, kind = 'info') {
  const t = el('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', text });
  const box = $('toasts');
  box.append(t);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => t.classList.add('leaving'), 4500);
  setTimeout(() => t.remove(), 5000);
}

function customerName(chat) {
  const c = chat.ctx?.customer || chat.item?.customer || {};
  return c.name || c.id || chat.id;
}

function storageKey() {
  return `redress.console.v1:${S.user?.username || ''}`;
}

function loadPrefs() {
  try {
    const p = JSON.parse(sessionStorage.getItem(storageKey()) || '{}');
    S.presence = p.presence === 'away' ? 'away' : 'available';
    S.groupFilter = Array.isArray(p.groups) && p.groups.length ? p.groups.filter((g) => typeof g === 'string') : null;
  } catch {
    S.presence = 'available';
    S.groupFilter = null;
  }
}

function savePrefs() {
  try {
    sessionStorage.setItem(storageKey(), JSON.stringify({ presence: S.presence, groups: S.groupFilter }));
  } catch {
    /* private mode: keep in memory */
  }
}

/* ---- views ---- */

function showView(name) {
  $('boot').hidden = name !== 'boot';
  $('login-view').hidden = name !== 'login';
  $('app').hidden = name !== 'app';
}

function showLogin(notice = '') {
  teardown();
  showView('login');
  const n = $('login-notice');
  n.textContent = notice;
  n.hidden = !notice;
  $('login-error').hidden = true;
  $('login-pass').value = '';
  $('login-submit').disabled = false;
  ($('login-user').value ? $('login-pass') : $('login-user')).focus();
}

/*
 * Start-up: the /agent socket itself says whether the browser has a valid login (welcome) or
 * not (close code 4401), so no separate /api/auth/me round trip is needed.
 */
function boot(text = '正在加载坐席工作台…') {
  showView('boot');
  $('boot-text').textContent = text;
  connect();
}

async function onLogin(e) {
  e.preventDefault();
  const user = $('login-user').value.trim();
  const pass = $('login-pass').value;
  const err = $('login-error');
  const fail = (text) => {
    err.textContent = text;
    err.hidden = false;
    $('login-submit').disabled = false;
    $('login-submit').textContent = '登录';
  };
  if (!user || !pass) return fail('请输入用户名和密码');
  $('login-submit').disabled = true;
  $('login-submit').textContent = '正在登录…';
  err.hidden = true;
  try {
    const { user: u } = await http.login(user, pass);
    $('login-submit').textContent = '登录';
    $('login-submit').disabled = false;
    if (!(u.capabilities || []).includes('agent.chat')) {
      fail('该账号没有接待会话的权限（需要坐席或主管角色）');
      return;
    }
    $('login-notice').hidden = true;
    boot('正在进入坐席工作台…');
  } catch (x) {
    if (x.code === 'rate_limited') {
      const wait = x.retryAfter ? ` ${Math.ceil(x.retryAfter / 60)} 分钟后` : '稍后';
      return fail(`登录失败次数过多，请${wait}再试`);
    }
    fail(LOGIN_ERRORS[x.code] || `登录失败（${x.code}）`);
  }
}

/* A fresh AgentClient (the old one, if any, is dropped with every chat). */
function connect() {
  teardown();
  client = new AgentClient();
  client.addEventListener('state', (e) => onState(e.detail));
  client.addEventListener('welcome', (e) => onWelcome(e.detail));
  client.addEventListener('queue', (e) => onQueue(e.detail));
  client.addEventListener('mine', (e) => onMine(e.detail));
  client.addEventListener('assigned', (e) => onAssigned(e.detail));
  client.addEventListener('released', (e) => onReleased(e.detail));
  client.addEventListener('message', (e) => onMessage(e.detail));
  client.addEventListener('note', (e) => onNoteFrame(e.detail));
  client.addEventListener('notice', (e) => toast(errorText(e.detail), 'error'));
  client.connect();
}

/* The first welcome of a login: who is working, and the app on screen. */
function startApp(agent) {
  S.user = { username: agent.username || '', name: agent.name || agent.username || '', role: agent.role || '' };
  loadPrefs();
  showView('app');
  $('me-name').textContent = S.user.name;
  $('me-role').textContent = ROLE_NAMES[S.user.role] || S.user.role;
  $('me-avatar').textContent = S.user.name.slice(0, 1);
  renderPresence();
  renderGroupsText();
  renderLists();
  selectChat(null);
}

/* Drops the socket and every chat (logout, session ended). */
function teardown() {
  if (client) {
    client.destroy();
    client = null;
  }
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  S.user = S.agent = null;
  S.supervisor = false;
  S.groups = [];
  S.canned = [];
  S.queue = { items: [], total: 0, at: Date.now() };
  S.mine.clear();
  S.chats.clear();
  S.selected = null;
  S.welcomed = false;
  S.fuSeq++; /* an answer still on its way belongs to the old session */
  S.fuForbidden = false;
  S.followups = { items: [], overdue: 0, after: 72, at: 0 };
  $('lists-followups-btn').hidden = false;
  selectListTab('chats', false);
  renderFollowups();
  $('queue-list').replaceChildren();
  $('mine-list').replaceChildren();
  $('log-host').replaceChildren();
  $('kb-results').replaceChildren();
  $('kb-status').textContent = '';
  $('kb-q').value = '';
  $('conn-banner').hidden = true;
  document.title = '坐席工作台 - redress';
}

async function logout() {
  $('logout').disabled = true;
  try {
    await http.logout();
  } catch {
    /* the cookie goes with the session anyway; show the form */
  }
  $('logout').disabled = false;
  showLogin('您已退出登录。');
}

/* ---- connection ---- */

const CONN_TEXT = {
  idle: '未连接',
  connecting: '正在连接…',
  handshaking: '正在连接…',
  online: '已连接',
  waiting: '已断开',
  unauthorized: '登录已失效',
  forbidden: '无权限',
};
let bannerTimer = 0;

function onState({ state, retryAt }) {
  $('conn').dataset.state = state;
  $('app').dataset.conn = state;
  $('conn-text').textContent = CONN_TEXT[state] || state;
  clearInterval(bannerTimer);
  const banner = $('conn-banner');
  if (state === 'unauthorized') {
    /* at start-up this just means "not logged in yet" */
    showLogin(S.welcomed ? '登录已失效或已在别处退出，请重新登录。' : '');
    return;
  }
  if (state === 'forbidden') {
    showLogin('该账号没有接待会话的权限（需要坐席或主管角色）。');
    return;
  }
  if (state === 'waiting' && !S.welcomed) {
    $('boot-text').textContent = '暂时无法连接服务器，正在重试…';
    return;
  }
  if (state === 'waiting') {
    const tick = () => {
      const s = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
      $('conn-banner-text').textContent =
        `与服务器的连接已断开，${s} 秒后自动重连。断开期间无法接入或回复。`;
    };
    tick();
    bannerTimer = setInterval(tick, 1000);
    $('conn-retry').hidden = false;
    banner.hidden = false;
  } else if ((state === 'connecting' || state === 'handshaking') && S.welcomed) {
    $('conn-banner-text').textContent = '正在重新连接…';
    $('conn-retry').hidden = true;
    banner.hidden = false;
  } else if (state === 'online') {
    banner.hidden = true;
  }
  updateComposer();
}

function onWelcome(f) {
  const again = S.welcomed;
  S.welcomed = true;
  S.agent = f.agent && typeof f.agent === 'object' ? f.agent : {};
  S.supervisor = !!f.supervisor;
  if (!again || S.agent.username !== S.user?.username) startApp(S.agent);
  S.groups = Array.isArray(f.groups) ? f.groups.filter((g) => typeof g === 'string') : [];
  S.canned = Array.isArray(f.canned) ? f.canned.filter((c) => c && typeof c.text === 'string') : [];
  if (S.groupFilter) S.groupFilter = S.groupFilter.filter((g) => S.groups.includes(g));
  if (S.groupFilter && S.groupFilter.length === 0) S.groupFilter = null;
  buildGroupsPop();
  renderCanned();
  renderGroupsText();
  /* a new socket starts available for every group: say what this agent chose */
  if (S.presence !== 'available' || S.groupFilter) sendReady();
  /* welcome carries the queue and mine as arrays of items (or, tolerated, as {items, total}) */
  const q = Array.isArray(f.queue) ? { items: f.queue, total: f.queue.length } : f.queue || {};
  onQueue(q);
  onMine({ items: Array.isArray(f.mine) ? f.mine : f.mine?.items });
  /* chats this account no longer owns (released while the socket was down) */
  for (const chat of S.chats.values())
    if (!chat.ended && !S.mine.has(chat.id)) markEnded(chat, null);
  /* after a reconnect: fetch what was missed in the chats we kept */
  if (again) for (const chat of S.chats.values()) if (!chat.ended) loadContext(chat);
  loadFollowups();
}

/* ---- presence and groups ---- */

function renderPresence() {
  for (const b of document.querySelectorAll('.presence .seg')) {
    const on = b.dataset.status === S.presence;
    b.setAttribute('aria-checked', String(on));
    b.classList.toggle('on', on);
  }
  $('app').dataset.presence = S.presence;
}

async function sendReady() {
  const fields = { status: S.presence };
  if (S.groupFilter) fields.groups = S.groupFilter;
  try {
    await client.request('ready', fields);
  } catch (e) {
    toast(`接待状态未能更新：${errorText(e)}`, 'error');
  }
}

function setPresence(status) {
  if (status === S.presence) return;
  S.presence = status;
  savePrefs();
  renderPresence();
  sendReady();
  toast(status === 'away' ? '已切换为小休' : '已切换为接待中');
}

function renderGroupsText() {
  $('groups-text').textContent = S.groupFilter ? S.groupFilter.map(F.groupName).join('、') : '全部';
}

function buildGroupsPop() {
  const list = $('groups-list');
  list.replaceChildren();
  for (const g of S.groups) {
    const box = el('input', { type: 'checkbox', value: g });
    box.checked = !!S.groupFilter?.includes(g);
    box.addEventListener('change', () => {
      if (box.checked) $('groups-all').checked = false;
    });
    list.append(el('label', { class: 'check' }, box, ` ${F.groupName(g)}`));
  }
  $('groups-all').checked = !S.groupFilter;
}

function applyGroups() {
  const chosen = Array.from($('groups-list').querySelectorAll('input:checked'), (b) => b.value);
  S.groupFilter = $('groups-all').checked || chosen.length === 0 || chosen.length === S.groups.length ? null : chosen;
  savePrefs();
  renderGroupsText();
  closePopover('groups');
  sendReady();
}

/* ---- popovers (groups, canned replies) ---- */

function openPopover(which) {
  const pop = $(`${which}-pop`);
  const btn = $(`${which}-btn`);
  pop.hidden = false;
  btn.setAttribute('aria-expanded', 'true');
  const first = pop.querySelector('input, button');
  first?.focus();
}

function closePopover(which, refocus = false) {
  const pop = $(`${which}-pop`);
  if (pop.hidden) return;
  pop.hidden = true;
  $(`${which}-btn`).setAttribute('aria-expanded', 'false');
  if (refocus) $(`${which}-btn`).focus();
}

function togglePopover(which) {
  if ($(`${which}-pop`).hidden) openPopover(which);
  else closePopover(which);
}

/* ---- queue and my chats ---- */

/* Keeps ul's children in the order of items, reusing each key's <li>. */
function reconcile(ul, items, key, create, update) {
  const old = new Map(Array.from(ul.children, (li) => [li.dataset.key, li]));
  let prev = null;
  for (const it of items) {
    const k = key(it);
    let li = old.get(k);
    if (li) old.delete(k);
    else {
      li = create(it);
      li.dataset.key = k;
    }
    update(li, it);
    const want = prev ? prev.nextSibling : ul.firstChild;
    if (li !== want) ul.insertBefore(li, want);
    prev = li;
  }
  for (const li of old.values()) li.remove();
}

function onQueue(f) {
  const items = Array.isArray(f.items) ? f.items.filter((it) => it && typeof it.conversation === 'string') : [];
  S.queue = { items, total: Number.isInteger(f.total) ? f.total : items.length, at: Date.now() };
  renderQueue();
}

function createQueueItem() {
  const r = {};
  r.prio = el('span');
  r.name = el('span', { class: 'qi-name' });
  r.vip = el('span', { hidden: true });
  r.sla = el('span', { class: 'badge sla', hidden: true });
  r.waited = el('span', { class: 'qi-waited', title: '已等待' });
  r.reason = el('span', { class: 'qi-reason' });
  r.cat = el('span', { class: 'qi-cat' });
  r.group = el('span', { class: 'qi-group' });
  r.last = el('p', { class: 'qi-last' });
  r.due = el('p', { class: 'qi-due' });
  r.claim = el('button', { type: 'button', class: 'btn btn-primary btn-xs claim', text: '接入' });
  const li = el(
    'li',
    { class: 'qitem' },
    el('div', { class: 'qi-top' }, r.prio, r.name, r.vip, r.sla, r.waited),
    el('div', { class: 'qi-tags' }, r.reason, r.cat, r.group),
    r.last,
    el('div', { class: 'qi-bottom' }, r.due, r.claim)
  );
  li._r = r;
  r.claim.addEventListener('click', () => claim(li.dataset.key, r.claim));
  return li;
}

function updateQueueItem(li, it) {
  const r = li._r;
  li.dataset.conversation = it.conversation;
  li.dataset.state = it.state || 'queued';
  li.dataset.priority = String(it.priority || 1);
  r.prio.replaceWith((r.prio = priorityBadge(it.priority)));
  const c = it.customer || {};
  r.name.textContent = c.name || c.id || it.conversation;
  r.name.title = c.id ? `客户编号 ${c.id}` : '';
  const vip = vipBadge(c.vip) || el('span', { hidden: true });
  r.vip.replaceWith((r.vip = vip));
  setSla(r.sla, it.sla);
  li._waited = { s: Number(it.waited_s) || 0, at: S.queue.at };
  r.reason.textContent = F.reasonName(it.reason) || '转人工';
  r.cat.textContent = F.categoryName(it.category);
  r.cat.hidden = !it.category;
  r.group.textContent = F.groupName(it.group);
  r.group.hidden = !it.group;
  r.last.textContent = it.last_text || '';
  r.last.hidden = !it.last_text;
  const due = F.when(it.due);
  const callback = it.state === 'callback';
  if (callback) {
    const why = F.CALLBACK_REASON[it.callback_reason];
    r.due.textContent = `待回电${why ? `（${why}）` : ''}${due ? ` · ${due} 前` : ''}`;
  }
  else r.due.textContent = it.position ? `第 ${it.position} 位` : '';
  r.due.classList.toggle('is-callback', callback);
  r.claim.textContent = callback ? '接入回电' : '接入';
  r.claim.setAttribute('aria-label', `接入 ${r.name.textContent} 的会话`);
  tickItem(li);
}

/* The complaint record's deadline flag (item.sla): warning | breached | null. */
function setSla(badge, sla) {
  badge.hidden = !F.SLA[sla];
  badge.textContent = F.SLA[sla] || '';
  badge.dataset.sla = sla || '';
}

function tickItem(li) {
  const w = li._waited;
  if (!w) return;
  li._r.waited.textContent = F.duration(w.s + (Date.now() - w.at) / 1000);
}

function renderQueue() {
  const items = S.queue.items;
  reconcile($('queue-list'), items, (it) => it.conversation, createQueueItem, updateQueueItem);
  $('queue-count').textContent = String(S.queue.total);
  $('queue-empty').hidden = items.length > 0;
  const tabCount = $('chats-tab-count');
  tabCount.textContent = String(S.queue.total);
  tabCount.title = `${S.queue.total} 位客户排队等待`;
  tabCount.hidden = S.queue.total === 0;
}

function onMine(f) {
  const items = Array.isArray(f.items) ? f.items.filter((it) => it && typeof it.conversation === 'string') : [];
  S.mine = new Map(items.map((it) => [it.conversation, it]));
  for (const it of items) {
    const chat = ensureChat(it.conversation);
    chat.item = it;
    chat.ended = null; /* ours (again, when transferred back) */
    if (!chat.ctx && !chat.loading) loadContext(chat);
  }
  renderMine();
  if (S.selected && S.mine.has(S.selected.id)) renderChatHead(S.selected);
}

function createMineItem() {
  const r = {};
  r.name = el('span', { class: 'mi-name' });
  r.vip = el('span', { hidden: true });
  r.sla = el('span', { class: 'badge sla', hidden: true });
  r.unread = el('span', { class: 'unread', hidden: true });
  r.meta = el('span', { class: 'mi-meta' });
  r.last = el('span', { class: 'mi-last' });
  const btn = el(
    'button',
    { type: 'button', class: 'mi-btn' },
    el('span', { class: 'mi-top' }, r.name, r.vip, r.sla, r.unread),
    r.meta,
    r.last
  );
  const li = el('li', { class: 'mitem' }, btn);
  li._r = r;
  btn.addEventListener('click', () => selectChat(S.chats.get(li.dataset.key)));
  return li;
}

function updateMineItem(li, chat) {
  const r = li._r;
  li.dataset.conversation = chat.id;
  const it = chat.item || {};
  r.name.textContent = customerName(chat);
  const vip = vipBadge((chat.ctx?.customer || it.customer || {}).vip) || el('span', { hidden: true });
  r.vip.replaceWith((r.vip = vip));
  setSla(r.sla, (S.mine.get(chat.id) || it).sla);
  r.unread.textContent = chat.unread > 99 ? '99+' : String(chat.unread);
  r.unread.hidden = chat.unread === 0;
  r.unread.setAttribute('aria-label', `${chat.unread} 条未读`);
  const cat = F.categoryName(chat.ctx?.category || it.category);
  r.meta.textContent = [cat, F.reasonName(chat.ctx?.escalation?.reason || it.reason)].filter(Boolean).join(' · ');
  r.last.textContent = chat.lastText || it.last_text || '';
  const current = S.selected === chat;
  li.classList.toggle('selected', current);
  if (current) li.firstChild.setAttribute('aria-current', 'true');
  else li.firstChild.removeAttribute('aria-current');
}

function renderMine() {
  const chats = [];
  for (const id of S.mine.keys()) {
    const chat = S.chats.get(id);
    if (chat && !chat.ended) chats.push(chat);
  }
  reconcile($('mine-list'), chats, (c) => c.id, createMineItem, updateMineItem);
  $('mine-count').textContent = String(chats.length);
  $('mine-empty').hidden = chats.length > 0;
  updateTitle();
}

function renderLists() {
  renderQueue();
  renderMine();
}

function updateTitle() {
  let unread = 0;
  for (const c of S.chats.values()) if (!c.ended) unread += c.unread;
  document.title = `${unread ? `(${unread}) ` : ''}坐席工作台 - redress`;
}

async function claim(conversation, btn) {
  btn.disabled = true;
  btn.textContent = '接入中…';
  try {
    const ok = await client.request('claim', { conversation });
    const chat = ensureChat(conversation);
    chat.ended = null;
    const item = S.queue.items.find((it) => it.conversation === conversation);
    if (item && !chat.item) chat.item = { ...item, state: 'active' };
    if (!S.mine.has(conversation)) S.mine.set(conversation, chat.item || { conversation, state: 'active' });
    S.queue.items = S.queue.items.filter((it) => it.conversation !== conversation);
    if (ok.context) applyContext(chat, ok.context);
    else loadContext(chat);
    renderLists();
    selectChat(chat);
    $('reply').focus();
  } catch (e) {
    toast(`接入失败：${errorText(e)}`, 'error');
    btn.disabled = false;
    btn.textContent = '接入';
  }
}

/* ---- follow-ups (待回访) ---- */

/* Shows the sidebar's tab `name` (chats | followups); opening the follow-ups fetches them. */
function selectListTab(name, load = true) {
  if (name === 'followups' && S.fuForbidden) name = 'chats';
  S.listTab = name;
  for (const t of ['chats', 'followups']) {
    const on = t === name;
    const btn = $(`lists-${t}-btn`);
    btn.setAttribute('aria-selected', String(on));
    btn.tabIndex = on ? 0 : -1;
    $(`lists-${t}`).hidden = !on;
  }
  if (name === 'followups' && load) loadFollowups();
}

/* Fetches the follow-up list; see the file comment for when. */
async function loadFollowups() {
  /* offline: the server is out of reach anyway, and the next welcome fetches the list */
  if (!S.welcomed || S.fuForbidden || client?.state !== 'online') return;
  const seq = ++S.fuSeq;
  $('lists-followups').setAttribute('aria-busy', 'true');
  try {
    const res = await http.followups();
    if (seq !== S.fuSeq) return;
    applyFollowups(res);
  } catch (e) {
    if (seq !== S.fuSeq) return;
    if (e.status === 401) {
      showLogin('登录已失效，请重新登录。');
      return;
    }
    if (e.status === 403) {
      S.fuForbidden = true;
      $('lists-followups-btn').hidden = true;
      if (S.listTab === 'followups') selectListTab('chats');
      return;
    }
    const status = $('followup-status');
    status.textContent = e.code === 'network' ? '无法连接服务器，待回访列表未更新' : '待回访列表未能更新，请稍后再试';
    status.hidden = false;
  } finally {
    if (seq === S.fuSeq) $('lists-followups').removeAttribute('aria-busy');
  }
}

function applyFollowups(res) {
  const ms = (it) => F.toDate(it.asked_at)?.getTime() ?? 0;
  const items = (Array.isArray(res?.items) ? res.items : [])
    .filter((it) => it && typeof it.number === 'string' && it.number !== '')
    .sort((a, b) => ms(a) - ms(b)); /* oldest first (the server's order too) */
  const after = Number.isFinite(res?.pending_after_h) ? res.pending_after_h : 72;
  S.followups = { items, overdue: items.filter((it) => it.overdue === true).length, after, at: Date.now() };
  $('followup-status').hidden = true;
  renderFollowups();
}

function createFollowupItem() {
  const r = {};
  r.number = el('span', { class: 'fu-number' });
  r.overdue = el('span', { class: 'badge fu-overdue', text: '已超期', hidden: true });
  r.waited = el('span', { class: 'fu-waited' });
  r.name = el('span', { class: 'fu-name' });
  r.cat = el('span', { class: 'fu-cat' });
  r.status = el('span', { class: 'fu-state' });
  r.asked = el('span', { class: 'fu-asked' });
  r.owner = el('span', { class: 'fu-owner' });
  const li = el(
    'li',
    { class: 'fuitem' },
    el('div', { class: 'fu-top' }, r.number, r.overdue, r.status),
    el('div', { class: 'fu-tags' }, r.name, r.cat, r.owner),
    el('div', { class: 'fu-bottom' }, r.asked, r.waited)
  );
  li._r = r;
  return li;
}

function updateFollowupItem(li, it) {
  const r = li._r;
  const overdue = it.overdue === true;
  li.dataset.number = it.number;
  li.dataset.conversation = typeof it.conversation === 'string' ? it.conversation : '';
  li.dataset.overdue = String(overdue);
  r.number.textContent = it.number;
  r.number.title = li.dataset.conversation ? `会话 ${li.dataset.conversation}` : '';
  r.overdue.hidden = !overdue;
  r.overdue.title = `客户超过 ${S.followups.after} 小时未回复评价`;
  const waited = F.hoursText(it.waited_h);
  r.waited.textContent = waited ? `已等待${/^\d/.test(waited) ? ' ' : ''}${waited}` : '';
  r.waited.title = Number.isFinite(it.waited_h) ? `已等待 ${it.waited_h} 小时` : '';
  r.name.textContent = it.customer_name || '未留姓名';
  r.cat.textContent = F.categoryName(it.category) || '未分类';
  r.cat.title = it.category || '';
  r.status.textContent = F.name(F.RECORD_STATUS, it.status);
  r.status.hidden = !it.status;
  r.status.dataset.status = it.status || '';
  const asked = F.when(it.asked_at);
  r.asked.textContent = asked ? `回访发出 ${asked}` : '';
  const me = it.owner && it.owner === S.user?.username;
  r.owner.textContent = it.owner ? `处理坐席 ${me ? '我' : it.owner}` : '';
  r.owner.hidden = !it.owner;
}

function renderFollowups() {
  const { items, overdue, after, at } = S.followups;
  reconcile($('followup-list'), items, (it) => it.number, createFollowupItem, updateFollowupItem);
  const count = $('followup-count');
  count.textContent = String(items.length);
  count.dataset.overdue = String(overdue > 0);
  count.title = overdue ? `${items.length} 条待回访，其中 ${overdue} 条已超期` : `${items.length} 条待回访`;
  $('followup-empty').hidden = items.length > 0;
  const summary = $('followup-summary');
  summary.textContent = at
    ? `共 ${items.length} 条${overdue ? `，${overdue} 条已超期` : ''} · ${F.clock(new Date(at))} 更新`
    : '';
  summary.title = `已结束处理、客户未回复满意度评价的投诉；超过 ${after} 小时未回复即为超期`;
}

/* ---- chats ---- */

class Chat {
  constructor(id) {
    this.id = id;
    this.item = null;
    this.ctx = null;
    this.loading = false;
    this.rows = new Map(); /* seq -> row */
    this.pending = new Set(); /* reply rows without a seq */
    this.notes = [];
    this.noteKeys = new Set();
    this.unread = 0;
    this.ended = null; /* null while owned; else a RELEASE_REASON key, or 'gone' */
    this.draft = '';
    this.lastText = '';
    this.older = el('p', { class: 'log-older', hidden: true });
    this.log = el(
      'div',
      { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': '聊天记录', tabindex: '0' },
      this.older
    );
    this.stuck = true;
    this.log.addEventListener('scroll', () => {
      const l = this.log;
      this.stuck = l.scrollHeight - l.scrollTop - l.clientHeight < 60;
    });
  }
}

function ensureChat(id) {
  let chat = S.chats.get(id);
  if (!chat) {
    chat = new Chat(id);
    S.chats.set(id, chat);
  }
  return chat;
}

async function loadContext(chat) {
  if (chat.loading) return;
  chat.loading = true;
  try {
    const ok = await client.request('context', { conversation: chat.id });
    if (ok.context) applyContext(chat, ok.context);
  } catch (e) {
    if (e.code === 'not_found' || e.code === 'not_owner') markEnded(chat, null);
    else if (e.code !== 'offline') toast(`会话资料未能加载：${errorText(e)}`, 'error');
  } finally {
    chat.loading = false;
  }
}

function applyContext(chat, ctx) {
  if (!ctx || typeof ctx !== 'object') return;
  chat.ctx = ctx;
  const events = Array.isArray(ctx.transcript) ? ctx.transcript : [];
  for (const ev of events) addEvent(chat, ev, false);
  const lastCustomer = events.filter((e) => e.from === 'customer').at(-1);
  if (lastCustomer && !chat.lastText) chat.lastText = lastCustomer.text;
  const total = Number(ctx.transcript_total) || 0;
  const hidden = total - events.length;
  chat.older.hidden = hidden <= 0;
  chat.older.textContent = hidden > 0 ? `更早的 ${hidden} 条记录未显示` : '';
  for (const n of Array.isArray(ctx.notes) ? ctx.notes : []) addNote(chat, n);
  scrollLog(chat, true);
  if (S.selected === chat) {
    renderChatHead(chat);
    renderInfo($('tab-info'), chat);
    renderNotes(chat);
  }
  renderMine();
}

/* ---- transcript ---- */

function senderName(chat, from) {
  if (from === 'customer') return customerName(chat);
  if (from === 'bot') return '机器人';
  if (from === 'agent') return '坐席';
  return '';
}

function eventRow(chat, ev) {
  const d = F.toDate(ev.ts);
  const time = d ? el('time', { datetime: d.toISOString(), text: F.stamp(d) }) : null;
  const text = typeof ev.text === 'string' ? ev.text : '';
  if (ev.from === 'system') {
    return el(
      'div',
      { class: 'row sys', dataset: { from: 'system', state: text } },
      el('span', { class: 'sys-text', text: F.systemText(text, ev.detail) }),
      time
    );
  }
  const from = ['customer', 'bot', 'agent'].includes(ev.from) ? ev.from : 'bot';
  return el(
    'div',
    { class: `row msg msg-${from}`, dataset: { from } },
    el('div', { class: 'meta' }, el('span', { class: 'sender', text: senderName(chat, from) }), time),
    el('div', { class: 'bubble', text })
  );
}

/* Inserts row by seq, before the rows of replies still waiting for theirs. */
function placeRow(chat, row, seq) {
  let ref = null;
  for (let n = chat.log.lastElementChild; n && n !== chat.older; n = n.previousElementSibling) {
    const s = n.dataset.seq;
    if (s !== undefined && Number(s) < seq) break;
    ref = n;
  }
  row.dataset.seq = String(seq);
  chat.log.insertBefore(row, ref);
  chat.rows.set(seq, row);
}

/* Adds one event (context transcript or live frame); false when it was there already. */
function addEvent(chat, ev, live) {
  if (!ev || !Number.isInteger(ev.seq) || chat.rows.has(ev.seq)) return false;
  if (ev.from === 'agent') {
    for (const row of chat.pending) {
      if (row._text === ev.text && row.dataset.state === 'sending') {
        /* the echo of our own reply arrived before its ok */
        chat.pending.delete(row);
        row.remove();
        setReplyState(row, 'sent');
        placeRow(chat, row, ev.seq);
        return true;
      }
    }
  }
  placeRow(chat, eventRow(chat, ev), ev.seq);
  if (ev.from === 'customer') chat.lastText = ev.text;
  if (live) scrollLog(chat, false);
  return true;
}

function scrollLog(chat, force) {
  if (force || chat.stuck) {
    requestAnimationFrame(() => {
      chat.log.scrollTop = chat.log.scrollHeight;
    });
    chat.stuck = true;
  }
}

function onMessage(f) {
  if (typeof f.conversation !== 'string') return;
  const chat = ensureChat(f.conversation);
  if (!chat.ctx && !chat.loading) loadContext(chat);
  const added = addEvent(chat, f, true);
  if (!added) return;
  if (f.from === 'customer') {
    const looking = S.selected === chat && document.visibilityState === 'visible';
    if (!looking) chat.unread++;
    renderMine();
  }
}

/* ---- replies ---- */

function setReplyState(row, state, reason) {
  row.dataset.state = state;
  const st = row.querySelector('.reply-state');
  st.replaceChildren();
  if (state === 'sending') st.textContent = '发送中…';
  else if (state === 'sent') st.textContent = '';
  else if (state === 'failed') {
    st.append(
      el('span', { class: 'failed-text', text: reason || '未能发送' }),
      el('button', { type: 'button', class: 'link-btn', text: '重发', onclick: () => resend(row) }),
      el('button', {
        type: 'button',
        class: 'link-btn',
        text: '删除',
        onclick: () => {
          const chat = row._chat;
          chat.pending.delete(row);
          row.remove();
        },
      })
    );
  }
}

function pendingRow(chat, text) {
  const now = new Date();
  const row = el(
    'div',
    { class: 'row msg msg-agent mine', dataset: { from: 'agent' } },
    el(
      'div',
      { class: 'meta' },
      el('span', { class: 'sender', text: '我' }),
      el('time', { datetime: now.toISOString(), text: F.stamp(now) })
    ),
    el('div', { class: 'bubble', text }),
    el('div', { class: 'reply-state' })
  );
  row._text = text;
  row._chat = chat;
  return row;
}

async function deliver(chat, row) {
  setReplyState(row, 'sending');
  try {
    const ok = await client.request('reply', { conversation: chat.id, text: row._text });
    if (!chat.pending.has(row)) return; /* placed by the echo already */
    chat.pending.delete(row);
    row.remove();
    setReplyState(row, 'sent');
    if (Number.isInteger(ok.seq) && !chat.rows.has(ok.seq)) placeRow(chat, row, ok.seq);
    else if (!Number.isInteger(ok.seq)) chat.log.append(row);
  } catch (e) {
    const unknown = e.code === 'offline' || e.code === 'timeout';
    setReplyState(row, 'failed', unknown ? '连接中断，未确认是否送达' : errorText(e));
  }
}

function resend(row) {
  const chat = row._chat;
  if (chat.ended) return;
  deliver(chat, row);
}

function sendReply() {
  const chat = S.selected;
  if (!chat || chat.ended) return;
  const input = $('reply');
  const text = input.value;
  if (text.trim() === '') return;
  if (textLength(text) > MAX_TEXT_CHARS) {
    toast(`回复太长了，请控制在 ${MAX_TEXT_CHARS} 字以内`, 'error');
    return;
  }
  if (client?.state !== 'online') {
    toast(ERROR_TEXT.offline, 'error');
    return;
  }
  const row = pendingRow(chat, text);
  chat.pending.add(row);
  chat.log.append(row);
  scrollLog(chat, true);
  input.value = '';
  chat.draft = '';
  onReplyInput();
  deliver(chat, row);
}

function onReplyInput() {
  const input = $('reply');
  if (S.selected) S.selected.draft = input.value;
  const n = textLength(input.value);
  const counter = $('reply-counter');
  counter.textContent = n > MAX_TEXT_CHARS - 200 ? `${n}/${MAX_TEXT_CHARS}` : '';
  counter.classList.toggle('over', n > MAX_TEXT_CHARS);
  updateComposer();
}

/* Puts text into the reply box at the cursor (templates, canned replies). */
function insertReply(text) {
  const input = $('reply');
  if (input.disabled) {
    toast('请先打开一个进行中的会话', 'error');
    return;
  }
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? start;
  const before = input.value.slice(0, start);
  const sep = before && !before.endsWith('\n') ? '\n' : '';
  input.setRangeText(sep + text, start, end, 'end');
  input.focus();
  onReplyInput();
}

function updateComposer() {
  const chat = S.selected;
  const usable = !!chat && !chat.ended;
  const input = $('reply');
  input.disabled = !usable;
  input.placeholder = !chat ? '' : chat.ended ? '会话已结束' : `回复 ${customerName(chat)}…`;
  const online = client?.state === 'online';
  const n = textLength(input.value);
  $('send').disabled = !usable || !online || n === 0 || n > MAX_TEXT_CHARS;
  for (const id of ['act-transfer', 'act-handback', 'act-resolve']) $(id).disabled = !usable || !online;
  $('canned-btn').disabled = !usable;
}

/* ---- canned replies ---- */

function renderCanned() {
  const q = $('canned-filter').value.trim().toLowerCase();
  const list = $('canned-list');
  list.replaceChildren();
  const group = S.selected?.ctx?.escalation?.group || S.selected?.item?.group || null;
  const shown = S.canned.filter(
    (c) =>
      (!c.group || !group || c.group === group) && (!q || `${c.title || ''} ${c.text}`.toLowerCase().includes(q))
  );
  for (const c of shown)
    list.append(
      el(
        'li',
        {},
        el(
          'button',
          {
            type: 'button',
            class: 'canned-item',
            onclick: () => {
              closePopover('canned');
              insertReply(c.text);
            },
          },
          el('span', { class: 'canned-title', text: c.title || '常用语' }),
          el('span', { class: 'canned-text', text: c.text })
        )
      )
    );
  $('canned-empty').hidden = shown.length > 0;
}

/* ---- selecting a chat ---- */

function selectChat(chat) {
  const prev = S.selected;
  if (prev && prev !== chat) {
    prev.draft = $('reply').value;
    if (prev.ended) S.chats.delete(prev.id); /* an ended chat goes once the agent moves on */
  }
  S.selected = chat || null;
  $('chat-empty').hidden = !!chat;
  $('chat-view').hidden = !chat;
  const host = $('log-host');
  if (!chat) {
    host.replaceChildren();
    renderInfo($('tab-info'), null);
    renderNotes(null);
    $('kb-suggest').hidden = true;
    renderMine();
    updateComposer();
    return;
  }
  host.replaceChildren(chat.log);
  chat.unread = 0;
  $('reply').value = chat.draft;
  onReplyInput();
  renderChatHead(chat);
  renderInfo($('tab-info'), chat);
  renderNotes(chat);
  $('kb-suggest').hidden = false;
  renderMine();
  scrollLog(chat, true);
}

function renderChatHead(chat) {
  const ctx = chat.ctx || {};
  const it = chat.item || {};
  const c = ctx.customer || it.customer || {};
  const name = $('chat-name');
  name.replaceChildren(document.createTextNode(customerName(chat)));
  const vip = vipBadge(c.vip);
  if (vip) name.append(' ', vip);
  const esc = ctx.escalation || {};
  const parts = [
    F.categoryName(ctx.category || it.category),
    F.reasonName(esc.reason || it.reason),
    F.groupName(esc.group || it.group),
    c.id ? `客户编号 ${c.id}` : '',
  ].filter(Boolean);
  $('chat-meta').textContent = parts.join(' · ');
  const ended = $('chat-ended');
  if (chat.ended !== null) {
    ended.replaceChildren(
      el('span', { text: `本会话${F.RELEASE_REASON[chat.ended] || '已不在您名下'}，不能再回复。` }),
      el('button', { type: 'button', class: 'btn btn-sm', text: '关闭', onclick: () => selectChat(null) })
    );
    ended.hidden = false;
  } else ended.hidden = true;
  updateComposer();
}

function markEnded(chat, reason) {
  chat.ended = reason || 'gone';
  chat.unread = 0;
  S.mine.delete(chat.id);
  for (const row of chat.pending) if (row.dataset.state === 'sending') setReplyState(row, 'failed', '会话已结束');
  if (S.selected === chat) {
    renderChatHead(chat);
    renderNotes(chat);
  } else S.chats.delete(chat.id);
  renderMine();
}

function onReleased(f) {
  const chat = S.chats.get(f.conversation);
  if (!chat || chat.ended !== null) return;
  const reason = typeof f.reason === 'string' ? f.reason : '';
  markEnded(chat, reason);
  if (reason === 'taken') toast(`${customerName(chat)} 的会话已被主管接管`);
  else if (reason === 'transferred' && S.selected !== chat) toast(`${customerName(chat)} 的会话已转出`);
}

function onAssigned(f) {
  if (typeof f.conversation !== 'string') return;
  const chat = ensureChat(f.conversation);
  chat.ended = null;
  if (!S.mine.has(chat.id)) S.mine.set(chat.id, chat.item || { conversation: chat.id, state: 'active' });
  if (f.context) applyContext(chat, f.context);
  else loadContext(chat);
  chat.unread = Math.max(chat.unread, 1);
  renderMine();
  toast(`${f.from ? `${f.from} ` : ''}转来一个会话：${customerName(chat)}`);
  if (!S.selected) selectChat(chat);
}

/* ---- notes ---- */

function addNote(chat, n) {
  if (!n || typeof n.text !== 'string') return false;
  const key = `${n.author}|${n.ts}|${n.text}`;
  if (chat.noteKeys.has(key)) return false;
  chat.noteKeys.add(key);
  chat.notes.push(n);
  return true;
}

function renderNotes(chat) {
  const ol = $('notes');
  ol.replaceChildren();
  const notes = chat ? chat.notes : [];
  for (const n of notes.slice().reverse())
    ol.append(
      el(
        'li',
        { class: 'note' },
        el(
          'p',
          { class: 'note-meta' },
          el('span', { class: 'note-author', text: n.author || '' }),
          el('span', { class: 'muted', text: F.when(n.ts) })
        ),
        el('p', { class: 'note-text', text: n.text })
      )
    );
  if (!notes.length)
    ol.append(el('li', { class: 'list-empty', text: chat ? '还没有备注' : '接入会话后可添加内部备注' }));
  const count = $('notes-count');
  count.textContent = String(notes.length);
  count.hidden = notes.length === 0;
  $('note-add').disabled = !chat || chat.ended !== null;
}

function onNoteFrame(f) {
  const chat = S.chats.get(f.conversation);
  if (!chat || !addNote(chat, f.note)) return;
  if (S.selected === chat) renderNotes(chat);
}

async function onAddNote(e) {
  e.preventDefault();
  const chat = S.selected;
  const box = $('note-text');
  const text = box.value.trim();
  if (!chat || !text) return;
  $('note-add').disabled = true;
  try {
    const ok = await client.request('note', { conversation: chat.id, text });
    box.value = '';
    if (ok.note && addNote(chat, ok.note) && S.selected === chat) renderNotes(chat);
  } catch (x) {
    toast(`备注未能保存：${errorText(x)}`, 'error');
  } finally {
    $('note-add').disabled = !S.selected || S.selected.ended !== null;
  }
}

/* ---- knowledge base ---- */

async function kbSearch(q) {
  const status = $('kb-status');
  const list = $('kb-results');
  q = q.trim();
  if (!q) return;
  const seq = ++S.kbSeq;
  status.textContent = '正在搜索…';
  try {
    const res = await http.kbSearch(q, 8);
    if (seq !== S.kbSeq) return;
    const hits = Array.isArray(res.hits) ? res.hits : [];
    const insert = (text) => insertReply(F.fillTemplate(text, S.selected?.ctx?.slots));
    list.replaceChildren(...hits.map((h) => kbHit(h, insert)));
    const sure = res.confidence === 'answer' ? '，第一条高度匹配' : '';
    status.textContent = hits.length ? `找到 ${hits.length} 条${sure}` : '没有找到相关内容，换个说法试试';
  } catch (e) {
    if (seq !== S.kbSeq) return;
    if (e.status === 401) {
      showLogin('登录已失效，请重新登录。');
      return;
    }
    list.replaceChildren();
    status.textContent = e.status === 403 ? '该账号没有查看知识库的权限' : '搜索失败，请稍后再试';
  }
}

/* ---- side panel tabs ---- */

function selectTab(name) {
  for (const t of ['info', 'kb', 'notes']) {
    const on = t === name;
    const btn = $(`tab-${t}-btn`);
    btn.setAttribute('aria-selected', String(on));
    btn.tabIndex = on ? 0 : -1;
    $(`tab-${t}`).hidden = !on;
  }
}

/* ---- dialogs ---- */

function dialogError(dlg, text) {
  const p = dlg.querySelector('.form-error');
  p.textContent = text || '';
  p.hidden = !text;
}

function openDialog(id) {
  const dlg = $(id);
  dialogError(dlg, '');
  for (const b of dlg.querySelectorAll('button')) b.disabled = false;
  dlg.showModal();
  return dlg;
}

/* Runs the request behind a dialog's submit; closes it on success, shows the error if not. */
async function submitDialog(dlg, run) {
  const buttons = dlg.querySelectorAll('button');
  for (const b of buttons) b.disabled = true;
  try {
    await run();
    dlg.close();
  } catch (e) {
    dialogError(dlg, errorText(e));
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

function openTransfer() {
  const chat = S.selected;
  if (!chat || chat.ended) return;
  const sel = $('transfer-group');
  sel.replaceChildren(...S.groups.map((g) => el('option', { value: g, text: F.groupName(g) })));
  const cur = chat.ctx?.escalation?.group || chat.item?.group;
  if (cur && S.groups.includes(cur)) sel.value = cur;
  $('transfer-agent').value = '';
  $('transfer-note').value = '';
  $('form-transfer').elements.target.value = 'agent';
  syncTransferTarget();
  openDialog('dlg-transfer');
  $('transfer-agent').focus();
}

function syncTransferTarget() {
  const toAgent = $('form-transfer').elements.target.value === 'agent';
  $('transfer-agent-field').hidden = !toAgent;
  $('transfer-group-field').hidden = toAgent;
}

function onTransfer(e) {
  e.preventDefault();
  const dlg = $('dlg-transfer');
  const chat = S.selected;
  if (!chat) return dlg.close();
  const toAgent = $('form-transfer').elements.target.value === 'agent';
  const fields = { conversation: chat.id };
  let target;
  if (toAgent) {
    const u = $('transfer-agent').value.trim().toLowerCase();
    if (!/^[a-z0-9][a-z0-9._@-]{1,63}$/.test(u)) return dialogError(dlg, '请输入对方坐席的用户名');
    if (u === S.agent?.username || u === S.user?.username) return dialogError(dlg, '不能转接给自己');
    fields.to_agent = target = u;
  } else {
    const g = $('transfer-group').value;
    if (!g) return dialogError(dlg, '请选择分组');
    fields.to_group = g;
    target = F.groupName(g);
  }
  const note = $('transfer-note').value.trim();
  if (note) fields.note = note;
  submitDialog(dlg, async () => {
    await client.request('transfer', fields);
    markEnded(chat, 'transferred');
    toast(`已转接给 ${target}`);
  });
}

function openResolve() {
  const chat = S.selected;
  if (!chat || chat.ended) return;
  $('resolve-text').value = '';
  $('form-resolve').elements.outcome.value = 'accepted';
  $('resolve-case').checked = true;
  openDialog('dlg-resolve');
  $('resolve-text').focus();
}

function onResolve(e) {
  e.preventDefault();
  const dlg = $('dlg-resolve');
  const chat = S.selected;
  if (!chat) return dlg.close();
  const resolution = $('resolve-text').value.trim();
  if (!resolution) return dialogError(dlg, '请填写处理结果');
  const fields = {
    conversation: chat.id,
    resolution,
    outcome: $('form-resolve').elements.outcome.value,
    save_case: $('resolve-case').checked,
  };
  submitDialog(dlg, async () => {
    const ok = await client.request('resolve', fields);
    markEnded(chat, 'resolved');
    if (ok.case != null) toast(`已结束处理，并保存为历史案例（${ok.case}）`);
    else toast('已结束处理，会话已交回机器人');
  });
}

function onHandback(e) {
  e.preventDefault();
  const dlg = $('dlg-handback');
  const chat = S.selected;
  if (!chat) return dlg.close();
  submitDialog(dlg, async () => {
    await client.request('handback', { conversation: chat.id });
    markEnded(chat, 'handed_back');
    toast('已交回机器人');
  });
}

/* ---- wiring ---- */

function wire() {
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', logout);
  $('conn-retry').addEventListener('click', () => client?.retryNow());
  for (const b of document.querySelectorAll('.presence .seg'))
    b.addEventListener('click', () => setPresence(b.dataset.status));

  $('groups-btn').addEventListener('click', () => togglePopover('groups'));
  $('groups-all').addEventListener('change', () => {
    if ($('groups-all').checked) for (const b of $('groups-list').querySelectorAll('input')) b.checked = false;
  });
  $('groups-apply').addEventListener('click', applyGroups);
  $('canned-btn').addEventListener('click', () => {
    renderCanned();
    togglePopover('canned');
  });
  $('canned-filter').addEventListener('input', renderCanned);
  document.addEventListener('click', (e) => {
    for (const w of ['groups', 'canned'])
      if (!$(`${w}-pop`).hidden && !e.target.closest(`#${w}-pop, #${w}-btn`)) closePopover(w);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    for (const w of ['groups', 'canned']) if (!$(`${w}-pop`).hidden) closePopover(w, true);
  });

  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    sendReply();
  });
  $('reply').addEventListener('keydown', (e) => {
    /* an input method uses Enter to confirm a candidate: never send while composing */
    if (e.key !== 'Enter' || e.shiftKey || e.isComposing || e.keyCode === 229) return;
    e.preventDefault();
    sendReply();
  });
  $('reply').addEventListener('input', onReplyInput);
  $('kb-jump').addEventListener('click', () => {
    selectTab('kb');
    openSide(true);
    $('kb-q').focus();
  });

  $('kb-form').addEventListener('submit', (e) => {
    e.preventDefault();
    kbSearch($('kb-q').value);
  });
  $('kb-suggest').addEventListener('click', () => {
    const ctx = S.selected?.ctx;
    const q = ctx?.summary || S.selected?.lastText || '';
    if (!q) return;
    $('kb-q').value = q.slice(0, 200);
    kbSearch(q);
  });
  $('note-form').addEventListener('submit', onAddNote);

  const tabs = ['info', 'kb', 'notes'];
  for (const t of tabs) {
    const btn = $(`tab-${t}-btn`);
    btn.addEventListener('click', () => selectTab(t));
    btn.addEventListener('keydown', (e) => {
      const d = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (!d) return;
      const next = tabs[(tabs.indexOf(t) + d + tabs.length) % tabs.length];
      selectTab(next);
      $(`tab-${next}-btn`).focus();
    });
  }

  $('act-transfer').addEventListener('click', openTransfer);
  $('act-resolve').addEventListener('click', openResolve);
  $('act-handback').addEventListener('click', () => {
    if (S.selected && !S.selected.ended) openDialog('dlg-handback');
  });
  $('form-transfer').addEventListener('submit', onTransfer);
  $('form-transfer').addEventListener('change', (e) => {
    if (e.target.name === 'target') syncTransferTarget();
  });
  $('form-resolve').addEventListener('submit', onResolve);
  $('form-handback').addEventListener('submit', onHandback);
  for (const b of document.querySelectorAll('dialog [data-close]'))
    b.addEventListener('click', () => b.closest('dialog').close());

  $('side-toggle').addEventListener('click', () => openSide($('side').dataset.open !== 'true'));
  $('side-close').addEventListener('click', () => {
    openSide(false);
    $('side-toggle').focus();
  });

  const listTabs = ['chats', 'followups'];
  for (const t of listTabs) {
    const btn = $(`lists-${t}-btn`);
    btn.addEventListener('click', () => selectListTab(t));
    btn.addEventListener('keydown', (e) => {
      const d = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (!d || S.fuForbidden) return;
      const next = listTabs[(listTabs.indexOf(t) + d + listTabs.length) % listTabs.length];
      selectListTab(next);
      $(`lists-${next}-btn`).focus();
    });
  }
  $('followup-refresh').addEventListener('click', () => loadFollowups());
  setInterval(() => {
    if (document.visibilityState === 'visible') loadFollowups();
  }, FOLLOWUP_REFRESH_MS);
  window.addEventListener('focus', () => loadFollowups());

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && S.selected && S.selected.unread) {
      S.selected.unread = 0;
      renderMine();
    }
  });
  setInterval(() => {
    for (const li of $('queue-list').children) tickItem(li);
  }, 1000);
  /* the ended bar, a taller reply box or a window resize shrink the log: keep its end in view */
  new ResizeObserver(() => {
    const chat = S.selected;
    if (chat?.stuck) chat.log.scrollTop = chat.log.scrollHeight;
  }).observe($('log-host'));
}

/* On narrow screens the side panel slides over the chat. */
function openSide(open) {
  $('side').dataset.open = String(open);
  $('side-toggle').setAttribute('aria-expanded', String(open));
}

wire();
boot();
