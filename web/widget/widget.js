/*
 * widget.js - the customer chat widget: a launcher button and a chat panel, in a shadow root.
 *
 *   import { mountWidget } from '/widget/widget.js';
 *   const chat = mountWidget({ customerId: 'u-10086', name: '张先生', channel: 'web' });
 *
 * The view owns the DOM under one host element (<div data-redress-widget>, open shadow root,
 * styles from widget.css next to this file) and listens to a ChatClient (client.js), which owns
 * the connection, the outbox and what is kept in localStorage.  Server and customer text is
 * only ever set with textContent: nothing received or typed becomes HTML.
 *
 * The transcript (.log, role=log) holds one row per event, ordered by seq (data-seq), followed
 * by rows of customer messages that have no seq yet (sending).  A row is added once per seq;
 * a customer row gets its seq from the ack (or from the replay, when the ack was lost) and
 * moves into place.
 *
 * Panel states: closed (launcher only, unread badge) <-> open (open(), close(), Escape).
 * Service state shown in the header and banner: bot -> queued -> agent -> bot ... -> closed,
 * driven by status events: escalated and queued -> queued; record with status "callback" ->
 * callback (nobody could take the chat in time; an agent may still join); agent_joined ->
 * agent; bot_resumed -> bot (after `resolved`, which is shown as a note); closed -> closed.
 */

import { ChatClient, MAX_TEXT_CHARS, checkCustomer, checkText, textLength } from './client.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  chat: 'M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.2 3.6A.5.5 0 0 1 5 19.2V16h0A2.5 2.5 0 0 1 4 13.5z',
  headset:
    'M12 3a8 8 0 0 0-8 8v5a2 2 0 0 0 2 2h1.5a1 1 0 0 0 1-1v-5a1 1 0 0 0-1-1H6v-0a6 6 0 0 1 12 0v0h-1.5a1 1 0 0 0-1 1v5a1 1 0 0 0 1 1H18v.5a1.5 1.5 0 0 1-1.5 1.5H13a1 1 0 1 0 0 2h3.5a3.5 3.5 0 0 0 3.5-3.5V11a8 8 0 0 0-8-8z',
  down: 'M6.7 8.8a1 1 0 0 1 1.4 0L12 12.6l3.9-3.8a1 1 0 1 1 1.4 1.4l-4.6 4.5a1 1 0 0 1-1.4 0L6.7 10.2a1 1 0 0 1 0-1.4z',
  send: 'M3.4 20.4 21 12.9a1 1 0 0 0 0-1.8L3.4 3.6a.9.9 0 0 0-1.3 1l1.6 6.1 9 1.3-9 1.3-1.6 6.1a.9.9 0 0 0 1.3 1z',
  alert: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 5a1 1 0 0 1 1 1v5a1 1 0 1 1-2 0V8a1 1 0 0 1 1-1zm0 8.5a1.2 1.2 0 1 1 0 2.4 1.2 1.2 0 0 1 0-2.4z',
  out: 'M14 3h6a1 1 0 0 1 1 1v6a1 1 0 1 1-2 0V6.4l-8.3 8.3a1 1 0 0 1-1.4-1.4L17.6 5H14a1 1 0 1 1 0-2zM5 7a1 1 0 0 1 1-1h4a1 1 0 1 1 0 2H7v9h9v-3a1 1 0 1 1 2 0v4a1 1 0 0 1-1 1H6a1 1 0 0 1-1-1z',
  doc: 'M7 2h7l5 5v13a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm6 1.5V8h4.5zM8 12a1 1 0 0 0 0 2h8a1 1 0 1 0 0-2zm0 4a1 1 0 1 0 0 2h5a1 1 0 1 0 0-2z',
};

const RECORD_STATUS = {
  new: '已受理',
  received: '已受理',
  acknowledged: '已确认',
  investigating: '调查中',
  solution_offered: '已提供方案',
  agreed: '方案已确认',
  callback: '等待客服回电',
  reopened: '重新处理',
  out_of_scope: '不属于受理范围',
  open: '已受理',
  accepted: '已受理',
  pending: '待处理',
  assigned: '已分派',
  processing: '处理中',
  in_progress: '处理中',
  escalated: '已升级处理',
  waiting_customer: '待您补充信息',
  resolved: '已解决',
  closed: '已办结',
  rejected: '未予受理',
};

const CLOSE_REASON = {
  resolved: '问题已处理完毕',
  customer: '您已结束本次咨询',
  customer_left: '您已结束本次咨询',
  agent: '客服已结束本次会话',
  idle: '由于长时间没有新消息',
  timeout: '由于长时间没有新消息',
  inactive: '由于长时间没有新消息',
};

/* why a chat became a call-back (record status "callback", detail.reason) */
const CALLBACK_REASON = {
  no_agent: '目前暂无客服可以接待',
  after_hours: '现在不在人工客服服务时间',
  wait_timeout: '排队等待时间较长',
};

const MESSAGE_ERROR = {
  bad_field: '内容不符合要求，未能发送',
  missing_field: '内容不符合要求，未能发送',
  internal: '服务暂时繁忙，消息未能发送',
};

/* ---- small DOM helpers (text only, never HTML) ---- */

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function icon(name, cls = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

const pad = (n) => String(n).padStart(2, '0');

function parseTs(ts) {
  const d = typeof ts === 'string' ? new Date(ts) : ts instanceof Date ? ts : new Date();
  return Number.isNaN(d.getTime()) ? new Date() : d;
}

function clock(d) {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function dayLabel(d) {
  const today = new Date();
  const start = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((start(today) - start(d)) / 86400000);
  if (days === 0) return '今天';
  if (days === 1) return '昨天';
  if (days === -1) return '明天';
  const md = `${d.getMonth() + 1}月${d.getDate()}日`;
  return d.getFullYear() === today.getFullYear() ? md : `${d.getFullYear()}年${md}`;
}

function dayKey(d) {
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function formatDue(due) {
  if (typeof due !== 'string' && typeof due !== 'number') return null;
  const d = new Date(due);
  if (Number.isNaN(d.getTime())) return String(due);
  return `${dayLabel(d)} ${clock(d)} 前`;
}

/* position 1 is the next chat an agent will take (docs/protocol.md, "What the customer sees") */
function queueText(detail) {
  const pos = Number.isFinite(detail.position) ? Math.max(0, Math.floor(detail.position)) : null;
  const wait = Number.isFinite(detail.wait_s) ? detail.wait_s : null;
  let text = '排队中，即将为您接入客服';
  if (pos === 1) text = '排队中，下一位就是您';
  else if (pos > 1) text = `排队中，前面还有${pos - 1}位`;
  if (wait !== null && wait > 0)
    text += wait < 60 ? '，预计等待不到1分钟' : `，预计等待${Math.ceil(wait / 60)}分钟`;
  return text;
}

function defaultServer() {
  const u = new URL('/chat', import.meta.url);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

/* "https://h/x" | "wss://h/chat" | "//h" -> ws(s)://h/chat */
function chatUrl(server) {
  const u = new URL(server, location.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
    throw new TypeError(`server must be an http(s) or ws(s) URL, got "${server}"`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/chat';
  return u.href;
}

/*
 * The progress page of a complaint (web/status/, docs/complaints.md): an absolute URL on the
 * redress server's origin, since the widget may sit on another site's page, e.g.
 * ws://h:8080/chat -> http://h:8080/status/?number=TS...&token=<the record's status code>.  null
 * without a number or a code.
 */
function statusUrl(chat, number, token) {
  if (typeof number !== 'string' || !number || typeof token !== 'string' || !token) return null;
  const server = new URL(chat);
  server.protocol = server.protocol === 'wss:' ? 'https:' : 'http:';
  const page = new URL('/status/', server.origin);
  page.search = new URLSearchParams({ number, token }).toString();
  return page.href;
}

/* ---- the widget ---- */

class Widget {
  constructor(opts) {
    this.opts = opts;
    this.rows = new Map(); /* seq -> row */
    this.pendingRows = new Map(); /* message id -> row without seq yet */
    this.unread = 0;
    this.service = 'bot'; /* bot | queued | callback | agent | closed */
    this.agentName = '';
    this.lastDay = null;
    this.lastDelivered = null;
    this.optionsRow = null;
    this.everOnline = false;
    this.countdown = 0;
    this.typingTimer = 0;
    this.toastTimer = 0;
    this.liveTimer = 0;

    this.client = new ChatClient({
      url: opts.url,
      customer: { id: opts.customerId, name: opts.name, channel: opts.channel },
      storage: opts.storage,
    });
    this.build();
    this.listen();
    for (const m of this.client.pending()) this.addPending(m);
    if (this.client.token && !this.client.closed) this.client.connect(); /* ongoing chat */
    if (opts.open) this.open();
  }

  /* ---- building ---- */

  build() {
    const o = this.opts;
    this.host = el('div', { 'data-redress-widget': true });
    if (o.accent) this.host.style.setProperty('--rdw-accent', o.accent);
    const shadow = this.host.attachShadow({ mode: 'open' });
    const css = el('link', { rel: 'stylesheet', href: new URL('widget.css', import.meta.url).href });
    this.root = el('div', { class: 'root', hidden: true });
    css.addEventListener('load', () => (this.root.hidden = false));
    css.addEventListener('error', () => {
      console.error('[redress] widget.css could not be loaded');
      this.root.hidden = false;
    });

    this.badge = el('span', { class: 'badge', hidden: true, 'aria-hidden': 'true' });
    this.launcher = el(
      'button',
      {
        class: 'launcher',
        type: 'button',
        'aria-expanded': 'false',
        'aria-controls': 'rdw-panel',
        'aria-label': o.title,
        onclick: () => this.toggle(),
      },
      icon('chat', 'icon launcher-icon'),
      el('span', { class: 'launcher-label', text: o.launcherLabel }),
      this.badge
    );

    this.connDot = el('span', { class: 'conn-dot', 'aria-hidden': 'true' });
    this.connText = el('span', { class: 'conn-text', text: '未连接' });
    this.serviceText = el('span', { class: 'service-text', text: `${o.botName}为您服务` });
    this.header = el(
      'header',
      { class: 'header' },
      el('div', { class: 'brand' }, icon('headset', 'icon brand-icon')),
      el(
        'div',
        { class: 'header-text' },
        el('h2', { id: 'rdw-title', class: 'title', text: o.title }),
        el(
          'p',
          { class: 'subtitle' },
          this.connDot,
          this.connText,
          el('span', { class: 'sep', 'aria-hidden': 'true', text: '·' }),
          this.serviceText
        )
      ),
      el(
        'button',
        {
          class: 'icon-btn',
          type: 'button',
          'aria-label': '收起客服窗口',
          title: '收起',
          onclick: () => this.close(true),
        },
        icon('down')
      )
    );

    this.connBannerText = el('span', { class: 'banner-text' });
    this.connBannerBtn = el('button', {
      class: 'banner-btn',
      type: 'button',
      text: '立即重连',
      onclick: () => (this.client.state === 'superseded' ? this.client.takeOver() : this.client.retryNow()),
    });
    this.connBanner = el(
      'div',
      { class: 'banner banner-conn', role: 'status', hidden: true },
      icon('alert', 'icon banner-icon'),
      this.connBannerText,
      this.connBannerBtn
    );
    this.queueBanner = el('div', { class: 'banner banner-queue', role: 'status', hidden: true });

    this.log = el('div', {
      class: 'log',
      role: 'log',
      'aria-live': 'polite',
      'aria-label': '聊天记录',
      tabindex: '0',
    });
    this.placeholder = el(
      'div',
      { class: 'placeholder' },
      el('span', { class: 'spinner', 'aria-hidden': 'true' }),
      el('span', { text: '正在连接客服…' })
    );
    this.log.append(this.placeholder);
    this.typing = el(
      'div',
      { class: 'typing', hidden: true },
      el('span', { class: 'sr-only', text: '对方正在输入' }),
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      el('span', { class: 'dot', 'aria-hidden': 'true' })
    );
    this.jump = el('button', {
      class: 'jump',
      type: 'button',
      hidden: true,
      text: '有新消息',
      onclick: () => this.scrollToEnd(true),
    });
    this.stuck = true; /* follow new rows while the customer has not scrolled up */
    this.log.addEventListener('scroll', () => {
      this.stuck = this.nearEnd();
      if (this.stuck) this.jump.hidden = true;
    });
    /* banners, the growing composer or a phone keyboard shrink the log: keep the end in view */
    this.resizeObserver = new ResizeObserver(() => {
      if (this.stuck) this.log.scrollTop = this.log.scrollHeight;
    });
    this.resizeObserver.observe(this.log);

    this.closedBar = el(
      'div',
      { class: 'closed-bar', hidden: true },
      el('span', { text: '本次会话已结束，感谢您的耐心。' }),
      el('button', {
        class: 'banner-btn',
        type: 'button',
        text: '发起新的咨询',
        onclick: () => this.startNew(),
      })
    );

    this.input = el('textarea', {
      id: 'rdw-input',
      class: 'input',
      rows: '1',
      placeholder: '请描述您遇到的问题…',
      'aria-describedby': 'rdw-hint',
      enterkeyhint: 'send',
      autocomplete: 'off',
    });
    this.sendBtn = el(
      'button',
      { class: 'send', type: 'submit', 'aria-label': '发送', title: '发送' },
      icon('send')
    );
    this.form = el(
      'form',
      { class: 'composer', 'aria-label': '发送消息' },
      el('label', { for: 'rdw-input', class: 'sr-only', text: '输入您的问题' }),
      this.input,
      this.sendBtn
    );
    this.counter = el('span', { class: 'counter', 'aria-live': 'polite' });
    this.foot = el(
      'div',
      { class: 'composer-foot' },
      el('span', { id: 'rdw-hint', class: 'hint', text: 'Enter 发送，Shift + Enter 换行' }),
      this.counter
    );
    this.toastEl = el('div', { class: 'toast', role: 'status', hidden: true });

    this.panel = el(
      'section',
      {
        id: 'rdw-panel',
        class: 'panel',
        role: 'dialog',
        'aria-modal': 'false',
        'aria-labelledby': 'rdw-title',
        hidden: true,
      },
      this.header,
      this.connBanner,
      this.queueBanner,
      el('div', { class: 'log-wrap' }, this.log, this.jump, this.toastEl),
      this.closedBar,
      this.form,
      this.foot
    );
    this.root.append(this.launcher, this.panel);
    shadow.append(css, this.root);
    this.opts.container.append(this.host);
  }

  listen() {
    const c = this.client;
    c.addEventListener('state', (e) => this.onState(e.detail));
    c.addEventListener('welcome', (e) => this.onWelcome(e.detail));
    c.addEventListener('event', (e) => this.onEvent(e.detail.event, e.detail.replay));
    c.addEventListener('message-state', (e) => this.onMessageState(e.detail));
    c.addEventListener('notice', (e) => this.onNotice(e.detail));

    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener('keydown', (e) => {
      /* an IME uses Enter to confirm a candidate: never send while composing */
      if (e.key !== 'Enter' || e.shiftKey || e.isComposing || e.keyCode === 229) return;
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener('input', () => this.onInput());
    this.panel.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.stopPropagation();
        this.close(true);
      }
    });
    this.onVisible = () => {
      if (document.visibilityState === 'visible' && this.isOpen()) this.markRead();
    };
    document.addEventListener('visibilitychange', this.onVisible);
  }

  /* ---- panel ---- */

  isOpen() {
    return !this.panel.hidden;
  }

  open() {
    if (this.isOpen()) return;
    this.panel.hidden = false;
    this.root.classList.add('is-open');
    this.launcher.setAttribute('aria-expanded', 'true');
    this.client.connect();
    this.markRead();
    this.scrollToEnd(true);
    if (!matchMedia('(pointer: coarse)').matches) this.input.focus();
    else this.log.focus();
  }

  close(returnFocus = false) {
    if (!this.isOpen()) return;
    this.panel.hidden = true;
    this.root.classList.remove('is-open');
    this.launcher.setAttribute('aria-expanded', 'false');
    if (returnFocus) this.launcher.focus();
  }

  toggle() {
    if (this.isOpen()) this.close();
    else this.open();
  }

  markRead() {
    this.unread = 0;
    this.updateBadge();
    this.client.markSeen(this.client.lastSeq);
  }

  updateBadge() {
    const n = this.unread;
    this.badge.hidden = n === 0;
    this.badge.textContent = n > 99 ? '99+' : String(n);
    this.launcher.setAttribute('aria-label', n ? `${this.opts.title}，${n}条未读消息` : this.opts.title);
  }

  /* ---- connection ---- */

  onState({ state, retryAt }) {
    clearInterval(this.countdown);
    this.countdown = 0;
    this.root.dataset.conn = state;
    const offline = navigator.onLine === false;
    const texts = {
      idle: '未连接',
      connecting: this.everOnline ? '正在重新连接…' : '正在连接…',
      handshaking: this.everOnline ? '正在重新连接…' : '正在连接…',
      online: '在线',
      waiting: offline ? '网络已断开' : '连接已断开',
      superseded: '已在其他窗口打开',
      stopped: '已断开',
    };
    this.connText.textContent = texts[state] || state;
    if (state === 'online') {
      this.everOnline = true;
      this.connBanner.hidden = true;
      return;
    }
    if (state === 'superseded') {
      this.showConnBanner('对话已在其他窗口或设备上打开。', '在此继续');
      return;
    }
    if (state === 'waiting') {
      const tick = () => {
        const s = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
        this.showConnBanner(
          offline
            ? `网络连接不可用，恢复后将自动重连（${s}秒）`
            : `连接已中断，${s}秒后自动重连，未发送的消息不会丢失。`,
          '立即重连'
        );
      };
      tick();
      this.countdown = setInterval(tick, 1000);
      return;
    }
    if ((state === 'connecting' || state === 'handshaking') && this.everOnline)
      this.showConnBanner('正在重新连接…', null);
  }

  showConnBanner(text, button) {
    this.connBannerText.textContent = text;
    this.connBannerBtn.hidden = !button;
    if (button) this.connBannerBtn.textContent = button;
    this.connBanner.hidden = false;
  }

  onWelcome({ resumed, changed, seq }) {
    this.placeholder.remove();
    if (changed && this.rows.size > 0) {
      /* a different conversation (the old one ended or is gone): start a clean transcript */
      for (const row of this.rows.values()) row.remove();
      this.rows.clear();
      this.lastDay = null;
      this.lastDelivered = null;
      this.optionsRow = null;
      this.setService('bot');
      this.closedBar.hidden = true;
      this.setComposerEnabled(true);
    }
    if (resumed && seq > this.client.lastSeq) {
      /* the replay follows: keep screen readers from reading the whole history aloud */
      this.log.setAttribute('aria-live', 'off');
      this.replayUntil = seq;
      clearTimeout(this.liveTimer);
      this.liveTimer = setTimeout(() => this.log.setAttribute('aria-live', 'polite'), 3000);
    }
  }

  onNotice({ code }) {
    if (code === 'rate_limited') this.toast('您发送得有点快，请稍候，消息会自动重新发送。', code);
    else if (code === 'unknown_token') this.toast('之前的会话已失效，已为您开始新的会话。');
    else this.toast('抱歉，服务暂时出现问题，请稍后再试。');
  }

  /* A short message over the transcript; kind lets a later event take it back early. */
  toast(text, kind = '') {
    this.toastEl.textContent = text;
    this.toastEl.dataset.kind = kind;
    this.toastEl.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => (this.toastEl.hidden = true), 5000);
  }

  /* ---- transcript ---- */

  nearEnd() {
    const l = this.log;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
  }

  scrollToEnd(force) {
    if (force || this.stuck) {
      this.log.scrollTop = this.log.scrollHeight;
      this.stuck = true;
      this.jump.hidden = true;
    } else {
      this.jump.hidden = false;
    }
  }

  /* Inserts row in seq order, before the rows still waiting for their seq. */
  placeRow(row, seq) {
    let ref = null;
    for (let n = this.log.lastElementChild; n; n = n.previousElementSibling) {
      const s = n.dataset.seq;
      if (s !== undefined && Number(s) < seq) break;
      ref = n;
    }
    row.dataset.seq = String(seq);
    this.log.insertBefore(row, ref);
    this.rows.set(seq, row);
  }

  /* A date line above the first row of each day (rows arrive in seq order). */
  dayDivider(row, date) {
    const key = dayKey(date);
    if (key === this.lastDay) return;
    this.lastDay = key;
    row.prepend(el('div', { class: 'day' }, el('span', { text: dayLabel(date) })));
  }

  onEvent(ev, replay) {
    if (this.rows.has(ev.seq)) return;
    this.placeholder.remove();
    let row = null;
    if (ev.type === 'message') row = this.messageRow(ev);
    else if (ev.type === 'status') row = this.statusRow(ev);
    if (row) {
      this.dayDivider(row, parseTs(ev.ts));
      this.placeRow(row, ev.seq);
    }
    if (ev.type === 'message' && ev.from !== 'customer') this.hideTyping();
    if (this.replayUntil && ev.seq >= this.replayUntil) {
      this.replayUntil = 0;
      clearTimeout(this.liveTimer);
      setTimeout(() => this.log.setAttribute('aria-live', 'polite'), 0);
    }
    const fromThem = ev.type === 'message' && ev.from !== 'customer';
    const visible = this.isOpen() && document.visibilityState === 'visible';
    if (visible) this.client.markSeen(ev.seq);
    else if (fromThem && ev.seq > this.client.seenSeq) {
      this.unread++;
      this.updateBadge();
    }
    if (row) this.scrollToEnd(replay || !this.isOpen());
  }

  senderName(from) {
    if (from === 'agent') return this.agentName ? `客服 ${this.agentName}` : '人工客服';
    return this.opts.botName;
  }

  messageRow(ev) {
    const text = typeof ev.text === 'string' ? ev.text : '';
    const when = parseTs(ev.ts);
    if (ev.from === 'customer')
      return this.customerRow({ id: ev.id, text, createdAt: when, state: 'delivered' });
    if (ev.from === 'system') return this.noteRow(text, when);
    const from = ev.from === 'agent' ? 'agent' : 'bot';
    const name = this.senderName(from);
    const avatar =
      from === 'agent'
        ? el('div', { class: 'avatar avatar-agent', 'aria-hidden': 'true', text: (this.agentName || '客')[0] })
        : el('div', { class: 'avatar', 'aria-hidden': 'true' }, icon('headset', 'icon avatar-icon'));
    const body = el(
      'div',
      { class: 'msg-body' },
      el(
        'div',
        { class: 'meta' },
        el('span', { class: 'sender', text: name }),
        el('time', { datetime: when.toISOString(), text: clock(when) })
      ),
      el(
        'div',
        { class: 'bubble' },
        el('span', { class: 'sr-only', text: `${name}说：` }),
        document.createTextNode(text)
      )
    );
    const row = el('div', { class: `row msg msg-${from}` }, avatar, body);
    const options = Array.isArray(ev.options)
      ? ev.options.filter((x) => typeof x === 'string' && x.trim() !== '')
      : [];
    if (options.length) {
      this.retireOptions();
      const group = el('div', { class: 'options', role: 'group', 'aria-label': '快捷回复' });
      for (const label of options)
        group.append(
          el('button', {
            class: 'chip',
            type: 'button',
            text: label,
            onclick: () => this.sendText(label),
          })
        );
      body.append(group);
      this.optionsRow = row;
    }
    return row;
  }

  /* Quick replies belong to the question they answer: once the customer speaks, they go. */
  retireOptions() {
    if (!this.optionsRow) return;
    this.optionsRow.querySelector('.options')?.remove();
    this.optionsRow = null;
  }

  noteRow(text, when) {
    return el(
      'div',
      { class: 'row note' },
      el('span', { class: 'note-text', text }),
      when ? el('time', { class: 'note-time', datetime: when.toISOString(), text: clock(when) }) : null
    );
  }

  statusRow(ev) {
    const d = ev.detail && typeof ev.detail === 'object' ? ev.detail : {};
    const when = parseTs(ev.ts);
    switch (ev.state) {
      case 'open':
        return null;
      case 'escalated': {
        /* the flow handed the chat to a human; `queued` (or a call-back record) follows */
        const first = this.service !== 'queued';
        this.setService('queued');
        this.queueBanner.textContent = '正在为您转接人工客服…';
        this.queueBanner.hidden = false;
        if (!first) return null;
        const urgent = d.priority >= 3;
        return this.noteRow(urgent ? '已为您加急转接人工客服，请稍候。' : '正在为您转接人工客服，请稍候。', when);
      }
      case 'queued': {
        const from = this.service;
        this.setService('queued');
        this.queueBanner.textContent = queueText(d);
        this.queueBanner.hidden = false;
        if (from === 'agent') return this.noteRow('正在为您转接其他客服，请稍候。', when);
        return from !== 'queued' ? this.noteRow('正在为您转接人工客服，请稍候。', when) : null;
      }
      case 'agent_joined': {
        this.agentName = typeof d.agent === 'string' && d.agent.trim() ? d.agent.trim() : '';
        this.setService('agent');
        return this.noteRow(`客服${this.agentName || ''}已接入，将为您继续服务。`, when);
      }
      case 'resolved': {
        const what = typeof d.resolution === 'string' ? d.resolution.trim() : '';
        return this.noteRow(what ? `客服已处理完毕：${what}` : '客服已处理完毕。', when);
      }
      case 'bot_resumed':
        this.setService('bot');
        return this.noteRow(`人工服务已结束，${this.opts.botName}继续为您服务。`, when);
      case 'record':
        if (d.status === 'callback') this.setService('callback');
        return this.recordRow(d, when);
      case 'closed': {
        const why = CLOSE_REASON[d.reason];
        this.setService('closed');
        this.closedBar.hidden = false;
        this.setComposerEnabled(false);
        this.retireOptions();
        return this.noteRow(why ? `${why}，本次会话已结束。` : '本次会话已结束。', when);
      }
      default:
        return null; /* a state this widget does not know yet */
    }
  }

  recordRow(d, when) {
    const dl = el('dl', { class: 'record-fields' });
    const add = (k, v) => {
      if (v == null || v === '') return;
      dl.append(el('div', {}, el('dt', { text: k }), el('dd', { text: String(v) })));
    };
    const callback = d.status === 'callback';
    add('投诉编号', d.number);
    if (d.status != null) add('当前状态', RECORD_STATUS[d.status] || String(d.status));
    add(callback ? '预计回电时间' : '承诺处理时限', formatDue(d.due));
    if (callback) add('登记原因', CALLBACK_REASON[d.reason]);
    const note = callback
      ? '客服会在上述时间前与您联系，您也可以继续在这里留言补充情况。'
      : '请保存投诉编号，以便查询处理进度。';
    /* the record's status code (read-only: it cannot resume the chat, unlike the token) */
    const progress = statusUrl(this.opts.url, d.number, d.code);
    return el(
      'div',
      { class: `row record${callback ? ' record-callback' : ''}` },
      el(
        'div',
        { class: 'record-card' },
        el(
          'div',
          { class: 'record-head' },
          icon('doc', 'icon record-icon'),
          el('span', { text: callback ? '回电登记' : '投诉工单' }),
          el('time', { datetime: when.toISOString(), text: clock(when) })
        ),
        dl,
        el('p', { class: 'record-note', text: note }),
        progress
          ? el(
              'a',
              {
                class: 'record-link',
                href: progress,
                target: '_blank',
                rel: 'noopener',
                'aria-label': `查看进度：投诉 ${d.number}（在新窗口打开）`,
              },
              el('span', { text: '查看进度' }),
              icon('out', 'icon record-link-icon')
            )
          : null
      )
    );
  }

  setService(service) {
    this.service = service;
    this.root.dataset.service = service;
    if (service !== 'queued') this.queueBanner.hidden = true;
    if (service !== 'bot') this.hideTyping(); /* the bot is not the one answering now */
    const texts = {
      bot: `${this.opts.botName}为您服务`,
      queued: '正在排队等待人工客服',
      agent: `客服${this.agentName ? ' ' + this.agentName : ''}为您服务`,
      callback: '已登记，客服将回电联系您',
      closed: '会话已结束',
    };
    this.serviceText.textContent = texts[service];
  }

  /* ---- customer messages ---- */

  customerRow(m) {
    const when = m.createdAt instanceof Date ? m.createdAt : new Date(m.createdAt);
    const status = el('div', { class: 'status' });
    const row = el(
      'div',
      { class: 'row msg msg-customer', dataset: { id: m.id || '', state: m.state } },
      el(
        'div',
        { class: 'msg-body' },
        el(
          'div',
          { class: 'bubble' },
          el('span', { class: 'sr-only', text: '我说：' }),
          document.createTextNode(m.text)
        ),
        el(
          'div',
          { class: 'meta' },
          status,
          el('time', { datetime: when.toISOString(), text: clock(when) })
        )
      )
    );
    this.setRowState(row, m.state);
    return row;
  }

  setRowState(row, state, reason) {
    row.dataset.state = state;
    const status = row.querySelector('.status');
    status.replaceChildren();
    status.className = `status status-${state}`;
    if (state === 'queued')
      status.textContent = reason === 'rate_limited' ? '稍后自动重发' : '等待发送';
    else if (state === 'sending') status.textContent = '发送中…';
    else if (state === 'delivered') {
      status.textContent = '已送达';
      if (this.lastDelivered && this.lastDelivered !== row) this.lastDelivered.classList.add('older');
      this.lastDelivered = row;
    } else if (state === 'failed') {
      const id = row.dataset.id;
      status.append(
        el('span', { class: 'failed-text', text: MESSAGE_ERROR[reason] || '消息未能发送' }),
        el('button', {
          class: 'link-btn',
          type: 'button',
          text: '重发',
          onclick: () => this.client.retry(id),
        }),
        el('button', {
          class: 'link-btn',
          type: 'button',
          text: '删除',
          onclick: () => {
            this.client.discard(id);
            this.pendingRows.delete(id);
            row.remove();
          },
        })
      );
    }
  }

  addPending(m) {
    this.placeholder.remove();
    const row = this.customerRow(m);
    this.pendingRows.set(m.id, row);
    this.log.insertBefore(row, this.typing.isConnected ? this.typing : null);
    this.scrollToEnd(true);
  }

  onMessageState({ id, state, seq, reason }) {
    const row = this.pendingRows.get(id);
    if (!row) return;
    if (state === 'delivered') {
      this.pendingRows.delete(id);
      row.remove();
      if (this.rows.has(seq)) return;
      this.placeRow(row, seq);
      this.setRowState(row, 'delivered');
      if (this.toastEl.dataset.kind === 'rate_limited') this.toastEl.hidden = true;
      if (this.service === 'bot' && this.client.state === 'online') this.showTyping();
      this.client.markSeen(seq);
      this.scrollToEnd(false);
      return;
    }
    this.setRowState(row, state, reason);
  }

  sendText(text) {
    let m;
    try {
      m = this.client.send(text);
    } catch (e) {
      this.toast(e.message);
      return false;
    }
    this.retireOptions();
    this.addPending(m);
    return true;
  }

  submit() {
    const text = this.input.value;
    if (text.trim() === '' || this.service === 'closed') return;
    const problem = checkText(text);
    if (problem) {
      this.toast(problem);
      return;
    }
    if (this.sendText(text)) {
      this.input.value = '';
      this.onInput();
    }
  }

  onInput() {
    const n = textLength(this.input.value);
    const near = n > MAX_TEXT_CHARS - 200;
    this.counter.textContent = near ? `${n}/${MAX_TEXT_CHARS}` : '';
    this.counter.classList.toggle('over', n > MAX_TEXT_CHARS);
    this.sendBtn.disabled = n > MAX_TEXT_CHARS || this.service === 'closed';
    if (!CSS.supports('field-sizing', 'content')) {
      this.input.style.height = 'auto';
      this.input.style.height = `${Math.min(this.input.scrollHeight, 120)}px`;
    }
  }

  setComposerEnabled(on) {
    this.input.disabled = !on;
    this.sendBtn.disabled = !on;
    this.input.placeholder = on ? '请描述您遇到的问题…' : '会话已结束';
  }

  startNew() {
    this.closedBar.hidden = true;
    this.setComposerEnabled(true);
    this.client.startNew();
    this.input.focus();
  }

  showTyping() {
    this.log.append(this.typing);
    this.typing.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.hideTyping(), 10000);
    this.scrollToEnd(false);
  }

  hideTyping() {
    clearTimeout(this.typingTimer);
    this.typing.hidden = true;
    this.typing.remove();
  }

  destroy() {
    clearInterval(this.countdown);
    clearTimeout(this.typingTimer);
    clearTimeout(this.toastTimer);
    clearTimeout(this.liveTimer);
    document.removeEventListener('visibilitychange', this.onVisible);
    this.resizeObserver.disconnect();
    this.client.destroy();
    this.host.remove();
  }
}

/*
 * Mounts the widget and returns its controller, or throws a TypeError naming the bad option.
 *
 *   customerId  required: the company's id for this customer (1 to 128 characters)
 *   name        the customer's display name (at most 64 characters)
 *   channel     web | app | h5 | wechat | email | phone | other (default web)
 *   server      URL of the redress server (default: the origin this file was loaded from)
 *   title       panel title (default 在线客服); botName (default 智能客服)
 *   accent      brand colour, #rgb or #rrggbb
 *   open        open the panel at once
 *   container   element to append the widget to (default document.body)
 *   storage     a Storage for the resume state (default localStorage; null = memory only)
 *
 * Controller: open(), close(), toggle(), send(text) -> boolean, destroy(), client (ChatClient).
 */
export function mountWidget(options = {}) {
  const problem = checkCustomer({
    id: options.customerId,
    name: options.name || undefined,
    channel: options.channel || undefined,
  });
  if (problem) throw new TypeError(`redress widget: ${problem}`);
  if (options.accent && !/^#(?:[0-9a-fA-F]{3}){1,2}$/.test(options.accent))
    throw new TypeError(`redress widget: accent must be a colour like #1f6feb, got "${options.accent}"`);
  const opts = {
    customerId: options.customerId,
    name: options.name || undefined,
    channel: options.channel || 'web',
    url: options.server ? chatUrl(options.server) : defaultServer(),
    title: options.title || '在线客服',
    botName: options.botName || '智能客服',
    launcherLabel: options.launcherLabel || '在线客服',
    accent: options.accent || null,
    open: !!options.open,
    container: options.container || document.body,
    storage: options.storage,
  };
  const w = new Widget(opts);
  return {
    client: w.client,
    open: () => w.open(),
    close: () => w.close(),
    toggle: () => w.toggle(),
    send: (text) => w.sendText(text),
    destroy: () => w.destroy(),
  };
}
