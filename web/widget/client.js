/*
 * client.js - the customer side of chat protocol v1 (docs/protocol.md), without any DOM.
 *
 * A ChatClient owns one WebSocket at a time, the outbox of customer messages that the server
 * has not acknowledged yet, and what it keeps in localStorage for one customer id:
 *
 *   key "redress.chat.v1:<customer id>" -> {token, conversation, seenSeq, closed, outbox}
 *
 *   token         the resume token from `welcome` (the only way back into the conversation)
 *   seenSeq       the highest event seq the customer has had on screen (for the unread badge)
 *   closed        the conversation reached status `closed`
 *   outbox        [{id, text, createdAt}] messages typed but not acknowledged: after a page
 *                 reload they are sent again with the same id (the server stores an id once)
 *
 * The transcript itself is not kept in the browser: after a page load the client resumes with
 * last_seq 0 and the server replays the whole conversation; after a lost connection within the
 * page it resumes with the highest seq it received, so only what it missed is replayed.  Every
 * event is reported once: events are deduplicated by seq, and a replayed customer message is
 * matched to its outbox entry or earlier ack by id and seq.
 *
 * Connection states (the `state` event):
 *
 *   idle --connect()--> connecting --socket open, hello sent--> handshaking
 *   handshaking --welcome--> online
 *   connecting | handshaking | online --socket lost, timeout, error--> waiting (backoff timer)
 *   waiting --timer, retryNow(), browser "online", page visible--> connecting
 *   any --close code 4000, or another tab of this browser took the conversation--> superseded
 *   superseded (no automatic retry, so two windows never take turns) --takeOver()--> connecting
 *   any --destroy()--> stopped
 *
 * Backoff: 1 s doubling to a 30 s cap, each delay drawn uniformly from [cap/2, cap] ("equal
 * jitter"), reset by a welcome.  A socket that does not open in 10 s, a hello unanswered for
 * 10 s, or messages unacknowledged for 15 s while the socket looks open, count as lost.
 *
 * Tabs: every welcome is announced on a BroadcastChannel named like the storage key, so the
 * other tabs of the same browser that hold the same conversation step aside at once, whatever
 * close code their socket gets.
 *
 * Outbox message states (the `message-state` event): queued (waiting for a connection or
 * for a rate-limit pause) -> sending (on the wire) -> delivered (ack, with seq) | failed
 * (refused by the server for good, or not stored after several tries).
 */

export const PROTOCOL = 'redress.chat.v1';
export const MAX_TEXT_CHARS = 2000; /* limits.max_text_chars default */
export const CHANNELS = ['web', 'app', 'h5', 'wechat', 'email', 'phone', 'other'];

const STORAGE_PREFIX = 'redress.chat.v1:';
const OPEN_TIMEOUT_MS = 10000;
const HELLO_TIMEOUT_MS = 10000;
const ACK_TIMEOUT_MS = 15000;
const MAX_INTERNAL_RETRIES = 5;
const OUTBOX_MAX = 50;

/* Counts characters the way the server does (Unicode code points). */
export function textLength(text) {
  let n = 0;
  for (const _ of text) n++; // eslint-disable-line no-unused-vars
  return n;
}

/*
 * Opens client.ws (a WebSocket to client.url speaking protocol) and wires it to the client's
 * onOpen / onFrame / onClose, with OPEN_TIMEOUT_MS to connect (then client.lost()); a URL the
 * browser refuses schedules a retry.  Shared with the agent console's client, like
 * scheduleRetry below; `what` names the connection in the console log.
 */
export function openSocket(client, protocol, what) {
  let ws;
  try {
    ws = new WebSocket(client.url, protocol);
  } catch (e) {
    console.error(`[redress] cannot open the ${what} connection:`, e);
    client.scheduleRetry();
    return;
  }
  client.ws = ws;
  client.setState('connecting', { attempt: client.attempt });
  ws.onopen = () => client.onOpen(ws);
  ws.onmessage = (e) => client.onFrame(ws, e.data);
  ws.onclose = (e) => client.onClose(ws, e.code, e.reason);
  ws.onerror = () => {}; /* a close event follows */
  client.timers.open = setTimeout(() => client.lost(ws, 'open timeout'), OPEN_TIMEOUT_MS);
}

/*
 * Reconnect backoff, shared with the agent console's client (web/console/agent-client.js):
 * after `attempt` failures the wait is random in [cap/2, cap], cap = min(capMs, baseMs * 2^n).
 * Arms client.timers.retry to call client.open(), counts the attempt and reports the state
 * 'waiting' with { retryAt, delay, attempt }.
 */
export function scheduleRetry(client) {
  const cap = Math.min(client.capMs, client.baseMs * 2 ** Math.min(client.attempt, 20));
  const delay = Math.round(cap / 2 + (Math.random() * cap) / 2);
  client.attempt++;
  client.retryAt = Date.now() + delay;
  clearTimeout(client.timers.retry);
  client.timers.retry = setTimeout(() => client.open(), delay);
  client.setState('waiting', { retryAt: client.retryAt, delay, attempt: client.attempt });
}

/* Returns null when text may be sent, else a short Chinese reason. */
export function checkText(text) {
  if (typeof text !== 'string' || text.trim() === '') return '请输入内容';
  if (textLength(text) > MAX_TEXT_CHARS) return `消息太长了，请控制在 ${MAX_TEXT_CHARS} 字以内`;
  return null;
}

/* Checks the customer fields of hello; returns an error message or null. */
export function checkCustomer(customer) {
  const { id, name, channel } = customer || {};
  if (typeof id !== 'string' || id.length === 0) return 'customer id is required';
  if (textLength(id) > 128) return 'customer id is longer than 128 characters';
  if (name != null && (typeof name !== 'string' || textLength(name) > 64))
    return 'customer name must be a string of at most 64 characters';
  if (channel != null && !CHANNELS.includes(channel))
    return `channel must be one of ${CHANNELS.join(', ')}`;
  return null;
}

function newMessageId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes); /* available without a secure context, unlike randomUUID */
  return 'm-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/* localStorage with a memory fallback (private browsing, storage disabled, quota). */
class Store {
  constructor(key, storage) {
    this.key = key;
    this.storage = storage;
    this.memory = null;
  }

  load() {
    let data = this.memory;
    try {
      const text = this.storage ? this.storage.getItem(this.key) : null;
      if (text) data = JSON.parse(text);
    } catch {
      /* unreadable: start afresh */
    }
    const d = data && typeof data === 'object' ? data : {};
    return {
      token: typeof d.token === 'string' && /^[0-9a-f]{32}$/.test(d.token) ? d.token : null,
      conversation: typeof d.conversation === 'string' ? d.conversation : null,
      seenSeq: Number.isInteger(d.seenSeq) && d.seenSeq >= 0 ? d.seenSeq : 0,
      closed: d.closed === true,
      outbox: Array.isArray(d.outbox)
        ? d.outbox.filter(
            (m) => m && typeof m.id === 'string' && typeof m.text === 'string' && !checkText(m.text)
          )
        : [],
    };
  }

  save(data) {
    this.memory = data;
    try {
      if (this.storage) this.storage.setItem(this.key, JSON.stringify(data));
    } catch {
      /* keep the memory copy */
    }
  }
}

export class ChatClient extends EventTarget {
  /*
   * options.url       ws:// or wss:// URL of /chat
   * options.customer  {id, name, channel} for a new conversation (checked by checkCustomer)
   * options.storage   a Storage (default window.localStorage); null keeps state in memory
   * options.backoff   {baseMs, capMs} (default 1000, 30000)
   */
  constructor(options) {
    super();
    const problem = checkCustomer(options.customer);
    if (problem) throw new TypeError(`redress chat: ${problem}`);
    this.url = options.url;
    this.customer = {
      id: options.customer.id,
      name: options.customer.name || undefined,
      channel: options.customer.channel || 'web',
    };
    this.baseMs = options.backoff?.baseMs ?? 1000;
    this.capMs = options.backoff?.capMs ?? 30000;
    let storage = options.storage;
    if (storage === undefined) {
      try {
        storage = window.localStorage;
      } catch {
        storage = null;
      }
    }
    this.store = new Store(STORAGE_PREFIX + this.customer.id, storage);
    const saved = this.store.load();
    this.token = saved.token;
    this.conversation = saved.conversation;
    this.seenSeq = saved.seenSeq;
    this.closed = saved.closed;
    /* outbox: id -> {id, text, createdAt, state, tries}; Map keeps insertion order */
    this.outbox = new Map();
    for (const m of saved.outbox.slice(-OUTBOX_MAX))
      this.outbox.set(m.id, {
        id: m.id,
        text: m.text,
        createdAt: m.createdAt || Date.now(),
        state: 'queued',
        tries: 0,
      });

    this.state = 'idle';
    this.ws = null;
    this.attempt = 0;
    this.retryAt = 0;
    this.lastSeq = 0; /* highest event seq received on this page */
    this.welcomeSeq = 0; /* events up to this seq are the replay of the current hello */
    this.seen = new Set(); /* event seqs already reported */
    this.ackedSeqs = new Set(); /* seqs of customer messages acknowledged on this page */
    this.triedFromZero = false;
    this.pausedUntil = 0; /* rate_limited: hold sends until then */
    this.timers = { retry: 0, open: 0, hello: 0, ack: 0, pause: 0 };

    this.onOnline = () => this.retryNow();
    this.onVisible = () => {
      if (document.visibilityState === 'visible' && this.state === 'waiting') this.retryNow();
    };
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onVisible);

    this.tabId = newMessageId();
    this.channel = null;
    if (typeof BroadcastChannel === 'function') {
      this.channel = new BroadcastChannel(STORAGE_PREFIX + this.customer.id);
      this.channel.onmessage = (e) => this.onOtherTab(e.data);
    }
  }

  /* ---- public API ---- */

  /* Starts connecting (no-op unless idle). */
  connect() {
    if (this.state === 'idle') this.open();
  }

  /* Messages typed but not acknowledged, oldest first: [{id, text, createdAt, state}]. */
  pending() {
    return Array.from(this.outbox.values(), (m) => ({ ...m }));
  }

  /*
   * Queues text as a customer message and sends it when possible.  Returns the message
   * {id, text, createdAt, state}, or throws a TypeError with a Chinese reason for bad text.
   */
  send(text) {
    const problem = checkText(text);
    if (problem) throw new TypeError(problem);
    if (this.outbox.size >= OUTBOX_MAX) throw new TypeError('未发送的消息太多了，请等网络恢复后再试');
    const m = { id: newMessageId(), text, createdAt: Date.now(), state: 'queued', tries: 0 };
    this.outbox.set(m.id, m);
    this.persist();
    this.flush();
    return { ...m };
  }

  /* Sends a failed message again with its id. */
  retry(id) {
    const m = this.outbox.get(id);
    if (!m || m.state !== 'failed') return;
    m.tries = 0;
    this.setMessageState(m, 'queued');
    this.persist();
    this.flush();
  }

  /* Gives up on a failed message. */
  discard(id) {
    const m = this.outbox.get(id);
    if (!m || m.state !== 'failed') return;
    this.outbox.delete(id);
    this.persist();
  }

  /* Marks events up to seq as seen by the customer (persisted; drives the unread badge). */
  markSeen(seq) {
    if (seq > this.seenSeq) {
      this.seenSeq = seq;
      this.persist();
    }
  }

  /* Reconnects now instead of waiting for the backoff timer. */
  retryNow() {
    if (this.state !== 'waiting') return;
    clearTimeout(this.timers.retry);
    this.open();
  }

  /* After close code 4000: takes the conversation back into this page. */
  takeOver() {
    if (this.state === 'superseded') {
      this.attempt = 0;
      this.open();
    }
  }

  /* Forgets the current conversation and starts a new one (after `closed`, say). */
  startNew() {
    this.dropSocket();
    this.token = null;
    this.conversation = null;
    this.closed = false;
    this.seenSeq = 0;
    this.lastSeq = 0;
    this.welcomeSeq = 0;
    this.seen.clear();
    this.ackedSeqs.clear();
    for (const m of this.outbox.values()) if (m.state === 'failed') this.outbox.delete(m.id);
    this.persist();
    this.attempt = 0;
    this.open();
  }

  /* Closes the socket and removes every listener and timer.  The stored state stays. */
  destroy() {
    this.dropSocket();
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onVisible);
    this.channel?.close();
    this.channel = null;
    this.setState('stopped');
  }

  /* Another tab of this browser took our conversation: step aside like on close code 4000. */
  onOtherTab(d) {
    if (!d || d.type !== 'took' || d.tab === this.tabId || d.conversation !== this.conversation) return;
    if (this.state === 'idle' || this.state === 'stopped' || this.state === 'superseded') return;
    this.dropSocket();
    this.setState('superseded');
  }

  /* ---- events out ---- */

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit('state', { state, ...extra });
  }

  setMessageState(m, state, extra = {}) {
    m.state = state;
    this.emit('message-state', { id: m.id, state, ...extra });
  }

  persist() {
    this.store.save({
      token: this.token,
      conversation: this.conversation,
      seenSeq: this.seenSeq,
      closed: this.closed,
      outbox: Array.from(this.outbox.values())
        .filter((m) => m.state !== 'failed')
        .map(({ id, text, createdAt }) => ({ id, text, createdAt })),
    });
  }

  /* ---- the socket ---- */

  open() {
    this.dropSocket();
    openSocket(this, PROTOCOL, 'chat');
  }

  /* Detaches and closes the current socket without waiting for its close event. */
  dropSocket() {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      this.timers[k] = 0;
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
    for (const m of this.outbox.values())
      if (m.state === 'sending') this.setMessageState(m, 'queued');
  }

  lost(ws, why) {
    if (ws !== this.ws) return;
    console.info(`[redress] chat connection lost (${why}); reconnecting`);
    this.dropSocket();
    this.scheduleRetry();
  }

  scheduleRetry() {
    scheduleRetry(this);
  }

  onOpen(ws) {
    if (ws !== this.ws) return;
    clearTimeout(this.timers.open);
    this.setState('handshaking');
    this.sendHello();
  }

  sendHello(fromZero = false) {
    const ws = this.ws;
    let hello;
    if (this.token) {
      /* within the page: only what we missed; after a page load: everything */
      const last = fromZero ? 0 : this.lastSeq;
      hello = { type: 'hello', resume: { token: this.token, last_seq: last } };
    } else {
      const customer = { id: this.customer.id, channel: this.customer.channel };
      if (this.customer.name) customer.name = this.customer.name;
      hello = { type: 'hello', customer };
    }
    this.sendFrame(hello);
    clearTimeout(this.timers.hello);
    this.timers.hello = setTimeout(() => this.lost(ws, 'no welcome'), HELLO_TIMEOUT_MS);
  }

  sendFrame(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    if (code === 4000) {
      this.dropSocket();
      this.setState('superseded');
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
      console.warn('[redress] ignoring a frame that is not JSON');
      return;
    }
    if (!f || typeof f !== 'object') return;
    switch (f.type) {
      case 'welcome':
        return this.onWelcome(f);
      case 'ack':
        return this.onAck(f);
      case 'error':
        return this.onError(f);
      case 'message':
      case 'status':
        return this.onEvent(f);
      default:
        console.warn('[redress] ignoring a frame of unknown type', f.type);
    }
  }

  onWelcome(f) {
    clearTimeout(this.timers.hello);
    const fresh = !f.resumed;
    const changed = this.conversation !== f.conversation;
    if (changed) {
      this.seen.clear();
      this.ackedSeqs.clear();
      this.lastSeq = 0;
      if (fresh) this.seenSeq = 0;
    }
    this.token = f.token;
    this.conversation = f.conversation;
    if (fresh) this.closed = false;
    this.welcomeSeq = Number.isInteger(f.seq) ? f.seq : 0;
    this.triedFromZero = false;
    this.attempt = 0;
    this.persist();
    this.channel?.postMessage({ type: 'took', tab: this.tabId, conversation: f.conversation });
    this.emit('welcome', {
      conversation: f.conversation,
      resumed: !!f.resumed,
      changed,
      seq: this.welcomeSeq,
    });
    this.setState('online');
    for (const m of this.outbox.values()) if (m.state === 'sending') m.state = 'queued';
    this.flush();
  }

  onEvent(f) {
    if (!Number.isInteger(f.seq) || f.seq < 1) {
      console.warn('[redress] ignoring an event without a valid seq');
      return;
    }
    if (this.seen.has(f.seq)) return;
    this.seen.add(f.seq);
    if (f.seq > this.lastSeq) this.lastSeq = f.seq;
    const replay = f.seq <= this.welcomeSeq;
    if (f.type === 'message' && f.from === 'customer' && typeof f.id === 'string') {
      const m = this.outbox.get(f.id);
      if (m) {
        /* stored before the connection was lost; its ack never arrived */
        this.delivered(m, f.seq);
        return;
      }
      if (this.ackedSeqs.has(f.seq)) return; /* already on screen from its ack */
    }
    if (f.type === 'status' && f.state === 'closed') {
      this.closed = true;
      this.persist();
    }
    this.emit('event', { event: f, replay });
  }

  onAck(f) {
    const m = this.outbox.get(f.id);
    if (Number.isInteger(f.seq)) this.ackedSeqs.add(f.seq);
    if (!m) return; /* a second ack for a message sent twice */
    this.delivered(m, f.seq);
  }

  delivered(m, seq) {
    this.outbox.delete(m.id);
    this.ackedSeqs.add(seq);
    this.persist();
    this.setMessageState(m, 'delivered', { seq, text: m.text });
    this.armAckTimer();
  }

  onError(f) {
    const code = typeof f.code === 'string' ? f.code : 'internal';
    const m = typeof f.id === 'string' ? this.outbox.get(f.id) : null;
    if (this.state === 'handshaking') return this.onHelloError(code, f.message);
    if (m) return this.onMessageError(m, code, f.message);
    if (code === 'rate_limited') {
      /* a dropped frame does not say which: every unacknowledged message goes again later,
       * and the server acknowledges an id it already stored without storing it twice */
      this.pause();
      return;
    }
    console.warn(`[redress] server error ${code}: ${f.message || ''}`);
    this.emit('notice', { code, message: f.message || '' });
  }

  onHelloError(code, message) {
    if (code === 'unknown_token') {
      /* the conversation is gone (data removed): start a new one on this socket */
      this.token = null;
      this.conversation = null;
      this.closed = false;
      this.persist();
      this.emit('notice', { code, message });
      this.sendHello();
      return;
    }
    if (code === 'bad_field' && this.token && !this.triedFromZero) {
      /* our last_seq is beyond the server's log: take the whole log again */
      this.triedFromZero = true;
      this.seen.clear();
      this.ackedSeqs.clear();
      this.lastSeq = 0;
      this.sendHello(true);
      return;
    }
    console.warn(`[redress] hello refused: ${code} ${message || ''}`);
    this.lost(this.ws, `hello refused: ${code}`);
  }

  onMessageError(m, code, message) {
    if (code === 'rate_limited' || code === 'not_ready') {
      this.setMessageState(m, 'queued', { reason: code });
      this.pause();
      return;
    }
    if (code === 'internal' && ++m.tries < MAX_INTERNAL_RETRIES) {
      this.setMessageState(m, 'queued', { reason: code });
      this.pause(1000 * 2 ** m.tries);
      return;
    }
    this.setMessageState(m, 'failed', { reason: code, message: message || '' });
    this.persist();
    this.armAckTimer();
  }

  /* Holds sending for a while (rate limit), then sends every unacknowledged message again. */
  pause(ms = 2000) {
    const until = Date.now() + ms + Math.round(Math.random() * 500);
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    this.emit('notice', { code: 'rate_limited', message: '' });
    clearTimeout(this.timers.pause);
    this.timers.pause = setTimeout(() => {
      this.pausedUntil = 0;
      for (const m of this.outbox.values()) if (m.state === 'sending') m.state = 'queued';
      this.flush();
    }, until - Date.now());
  }

  /* Sends queued messages while online and not paused. */
  flush() {
    if (this.state !== 'online' || Date.now() < this.pausedUntil) return;
    for (const m of this.outbox.values()) {
      if (m.state !== 'queued') continue;
      if (!this.sendFrame({ type: 'message', id: m.id, text: m.text })) return;
      this.setMessageState(m, 'sending');
    }
    this.armAckTimer();
  }

  /* A socket that swallows messages without acknowledging them is treated as lost. */
  armAckTimer() {
    clearTimeout(this.timers.ack);
    this.timers.ack = 0;
    const waiting = Array.from(this.outbox.values()).some((m) => m.state === 'sending');
    if (!waiting || !this.ws) return;
    const ws = this.ws;
    this.timers.ack = setTimeout(() => this.lost(ws, 'no ack'), ACK_TIMEOUT_MS);
  }
}
