/*
 * agent-client.js - the agent side of agent protocol v1 (docs/protocol.md), without any DOM.
 *
 * An AgentClient owns one WebSocket to /agent (subprotocol redress.agent.v1) at a time and the
 * requests in flight on it.  The login is the `redress_session` cookie (POST /api/auth/login,
 * docs/auth.md), which the browser sends with the upgrade; this module never sees it.
 *
 * Connection states (the `state` event):
 *
 *   idle --connect()--> connecting --socket open--> handshaking --welcome--> online
 *   connecting | handshaking | online --socket lost, timeout--> waiting (backoff timer)
 *   waiting --timer, retryNow(), browser "online", page visible--> connecting
 *   any --close code 4401--> unauthorized (no retry: log in again)
 *   any --close code 4403--> forbidden (no retry: the account may not take chats)
 *   any --disconnect()--> idle
 *
 * Backoff: 1 s doubling to a 30 s cap, each delay drawn from [cap/2, cap], reset by a welcome.
 * A socket that does not open in 10 s or sends no welcome within 10 s counts as lost.
 *
 * Requests: request(type, fields) sends {type, id, ...fields} and returns a Promise that
 * resolves with the `ok` frame or rejects with an AgentError {code, message} on `error`, on a
 * lost connection (code "offline") or after 15 s without an answer (code "timeout").  A
 * request made while not online is rejected at once with "offline": nothing is queued, so an
 * agent never sends a reply twice by accident.
 *
 * Server frames other than ok/error are re-dispatched as events named by their type
 * (`welcome`, `queue`, `mine`, `assigned`, `released`, `message`, `note`), detail = the frame.
 */

import { MAX_TEXT_CHARS, openSocket, scheduleRetry, textLength } from '/widget/client.js';

/* the customer widget's text limits (the server applies the same to agents' replies) */
export { MAX_TEXT_CHARS, textLength };

export const PROTOCOL = 'redress.agent.v1';

const WELCOME_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 15000;

export class AgentError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/* ws(s)://<this page's host>/agent */
export function defaultAgentUrl() {
  const u = new URL('/agent', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

export class AgentClient extends EventTarget {
  /*
   * options.url      ws:// or wss:// URL of /agent (default: this page's host)
   * options.backoff  {baseMs, capMs} (default 1000, 30000)
   */
  constructor(options = {}) {
    super();
    this.url = options.url || defaultAgentUrl();
    this.baseMs = options.backoff?.baseMs ?? 1000;
    this.capMs = options.backoff?.capMs ?? 30000;
    this.state = 'idle';
    this.ws = null;
    this.attempt = 0;
    this.retryAt = 0;
    this.nextId = 1;
    this.pending = new Map(); /* id -> {resolve, reject, timer, type} */
    this.timers = { retry: 0, open: 0, welcome: 0 };
    this.onOnline = () => this.retryNow();
    this.onVisible = () => {
      if (document.visibilityState === 'visible') this.retryNow();
    };
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onVisible);
  }

  /* ---- public API ---- */

  /* Starts connecting (no-op unless idle, unauthorized or forbidden). */
  connect() {
    if (this.state === 'idle' || this.state === 'unauthorized' || this.state === 'forbidden') {
      this.attempt = 0;
      this.open();
    }
  }

  /* Reconnects now instead of waiting for the backoff timer. */
  retryNow() {
    if (this.state !== 'waiting') return;
    clearTimeout(this.timers.retry);
    this.open();
  }

  /* Closes the socket and stays idle (logout). */
  disconnect() {
    this.dropSocket('offline');
    this.setState('idle');
  }

  /* Closes the socket and removes every listener and timer. */
  destroy() {
    this.disconnect();
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onVisible);
  }

  /* Sends a request; see the file comment.  Returns a Promise of the `ok` frame. */
  request(type, fields = {}) {
    if (this.state !== 'online' || !this.ws || this.ws.readyState !== WebSocket.OPEN)
      return Promise.reject(new AgentError('offline', '连接已断开'));
    const id = `r-${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AgentError('timeout', '服务器没有应答'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer, type });
      this.ws.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  /* ---- events out ---- */

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit('state', { state, ...extra });
  }

  /* ---- the socket ---- */

  open() {
    this.dropSocket('offline');
    openSocket(this, PROTOCOL, 'agent');
  }

  /* Detaches and closes the current socket; requests in flight fail with `code`. */
  dropSocket(code) {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      this.timers[k] = 0;
    }
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new AgentError(code, '连接已断开，请求结果未知'));
      this.pending.delete(id);
    }
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000, 'client closing');
    } catch {
      /* already closing */
    }
  }

  lost(ws, why) {
    if (ws !== this.ws) return;
    console.info(`[redress] agent connection lost (${why}); reconnecting`);
    this.dropSocket('offline');
    this.scheduleRetry();
  }

  scheduleRetry() {
    scheduleRetry(this);
  }

  onOpen(ws) {
    if (ws !== this.ws) return;
    clearTimeout(this.timers.open);
    this.setState('handshaking');
    this.timers.welcome = setTimeout(() => this.lost(ws, 'no welcome'), WELCOME_TIMEOUT_MS);
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    if (code === 4401 || code === 4403) {
      this.dropSocket('offline');
      this.setState(code === 4401 ? 'unauthorized' : 'forbidden', { code, reason });
      return;
    }
    this.lost(ws, `closed ${code}${reason ? ' ' + reason : ''}`);
  }

  onFrame(ws, data) {
    if (ws !== this.ws) return;
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      console.warn('[redress] ignoring an agent frame that is not JSON');
      return;
    }
    if (!f || typeof f !== 'object' || typeof f.type !== 'string') return;
    if (f.type === 'ok' || f.type === 'error') {
      const p = typeof f.id === 'string' ? this.pending.get(f.id) : null;
      if (!p) {
        if (f.type === 'error') {
          console.warn(`[redress] agent error ${f.code}: ${f.message || ''}`);
          this.emit('notice', { code: f.code, message: f.message || '' });
        }
        return;
      }
      this.pending.delete(f.id);
      clearTimeout(p.timer);
      if (f.type === 'ok') p.resolve(f);
      else p.reject(new AgentError(typeof f.code === 'string' ? f.code : 'internal', f.message || ''));
      return;
    }
    if (f.type === 'welcome') {
      clearTimeout(this.timers.welcome);
      this.attempt = 0;
      this.setState('online'); /* first, so that welcome handlers may send requests */
      this.emit('welcome', f);
      return;
    }
    this.emit(f.type, f);
  }
}

/*
 * The HTTP side (docs/auth.md, kb/README.md, docs/complaints.md).  Each returns the parsed
 * JSON body, or throws an AgentError whose code is the server's error code (or "network" /
 * "http_<status>") and which carries `status` and, for 429, `retryAfter` in seconds.
 */
async function api(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new AgentError('network', '无法连接服务器');
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    /* not JSON */
  }
  if (res.ok) return json || {};
  const err = new AgentError(json?.error?.code || `http_${res.status}`, json?.error?.message || '');
  err.status = res.status;
  const retry = Number(json?.retry_after ?? json?.error?.retry_after ?? res.headers.get('Retry-After'));
  if (Number.isFinite(retry)) err.retryAfter = retry;
  throw err;
}

export const http = {
  login: (username, password) => api('POST', '/api/auth/login', { username, password }),
  logout: () => api('POST', '/api/auth/logout'),
  me: () => api('GET', '/api/auth/me'),
  kbSearch: (q, limit = 8) =>
    api('GET', `/api/kb/search?q=${encodeURIComponent(q)}&limit=${encodeURIComponent(limit)}`),
  /* {items: [{number, conversation, category, status, owner, customer_name, asked_at,
   * waited_h, overdue}], overdue, pending_after_h} (docs/complaints.md, "Follow-up") */
  followups: () => api('GET', '/api/complaints/followups'),
};
