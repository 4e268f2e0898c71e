/*
 * status.js - the customer's complaint progress page (docs/complaints.md, "Customer-visible
 * progress").  Reads number and token from the form or the page's query string
 * (?number=...&token=..., the chat widget's "查看进度" link), asks GET /api/complaints/status and
 * shows the record: number, status, times, history.  Every value from the server goes into
 * the page with textContent.
 *
 * The token is the record's status code (查询码: derived from the conversation's resume token; it
 * can read the progress but not resume the chat).  It still does not stay in the address bar
 * (where it would be copied along with the link, or kept in the history): once read from the query
 * string it moves to sessionStorage (this tab only, so a reload still works) and the address
 * becomes ?number=... alone.
 *
 * States: idle (form) --submit, or a number and token in the address--> loading
 *         loading --200--> result | --404, 400, network, other--> error (message, form stays)
 * A result reached from the address hides the form (the customer came from the chat and only
 * wants the answer); "查询其他投诉单" brings it back.
 */
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'redress.status.v1:';

let lookupSeq = 0;

function localTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false,
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
}

function busy(on) {
  $('submit').disabled = on;
  $('submit').textContent = on ? '正在查询…' : '查询';
  $('result').setAttribute('aria-busy', String(on));
}

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = false;
  $('result').hidden = true;
}

function keepToken(number, token) {
  try {
    sessionStorage.setItem(TOKEN_KEY + number, token);
  } catch {
    /* storage off: the token only lives in the form */
  }
}

function savedToken(number) {
  try {
    return sessionStorage.getItem(TOKEN_KEY + number) || '';
  } catch {
    return '';
  }
}

/* The query form and its intro, shown or put away (the result stays). */
function showForm(show) {
  $('query').hidden = !show;
  $('intro').hidden = !show;
  $('again').hidden = show;
}

function render(r) {
  $('r-number').textContent = typeof r.number === 'string' ? r.number : '';
  $('r-status').textContent = typeof r.status_text === 'string' && r.status_text ? r.status_text : '处理中';
  $('r-status').className = 'badge' + (r.status === 'resolved' || r.status === 'closed' ? ' done' : '');
  $('r-status').dataset.status = typeof r.status === 'string' ? r.status : '';
  $('r-created').textContent = localTime(r.created_at);
  $('r-due').textContent = r.next_due ? `${localTime(r.next_due)} 前` : '—';
  const list = $('r-history');
  const steps = Array.isArray(r.history) ? r.history : [];
  list.replaceChildren();
  steps.forEach((h, i) => {
    const li = document.createElement('li');
    if (i === steps.length - 1) li.className = 'current';
    const t = document.createElement('time');
    t.textContent = localTime(h.at);
    if (h.at) t.dateTime = h.at;
    li.append(t, document.createTextNode(typeof h.status_text === 'string' ? h.status_text : ''));
    list.append(li);
  });
  $('r-history-empty').hidden = steps.length > 0;
  $('error').hidden = true;
  $('result').hidden = false;
}

async function lookup(number, token, fromAddress = false) {
  const seq = ++lookupSeq;
  $('error').hidden = true;
  busy(true);
  const q = new URLSearchParams({ number, token });
  try {
    let res;
    try {
      res = await fetch(`/api/complaints/status?${q}`, { headers: { Accept: 'application/json' } });
    } catch {
      if (seq === lookupSeq) showError('网络连接失败，请稍后再试。');
      return;
    }
    if (seq !== lookupSeq) return;
    if (res.status === 404) return showError('没有找到这个投诉单，请核对单号和查询码。');
    if (res.status === 400) return showError('请填写投诉单号和查询码。');
    if (!res.ok) return showError('查询暂时不可用，请稍后再试。');
    let r;
    try {
      r = await res.json();
    } catch {
      r = null;
    }
    if (seq !== lookupSeq) return;
    if (!r || typeof r !== 'object') return showError('查询暂时不可用，请稍后再试。');
    keepToken(number, token);
    render(r);
    showForm(!fromAddress);
  } finally {
    if (seq === lookupSeq) busy(false);
  }
}

$('again').addEventListener('click', () => {
  showForm(true);
  $('number').focus();
});

$('query').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const number = $('number').value.trim();
  const token = $('token').value.trim();
  if (!number || !token) return showError('请填写投诉单号和查询码。');
  lookup(number, token);
});

const params = new URLSearchParams(location.search);
const number = (params.get('number') || '').trim();
let token = (params.get('token') || '').trim();
if (number) {
  $('number').value = number;
  if (token) {
    keepToken(number, token);
    history.replaceState(null, '', `${location.pathname}?${new URLSearchParams({ number })}`);
  } else token = savedToken(number);
  $('token').value = token;
  if (token) lookup(number, token, true);
  else $('token').focus();
}
