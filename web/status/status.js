/*
 * status.js - the customer's complaint progress page (docs/complaints.md, "Customer-visible
 * progress").  Reads number and token from the form or the page's query string
 * (?number=...&token=...), asks GET /api/complaints/status and shows the record.  Every value
 * from the server goes into the page with textContent.
 */
const $ = (id) => document.getElementById(id);

function localTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false,
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
}

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = false;
  $('result').hidden = true;
}

async function lookup(number, token) {
  $('error').hidden = true;
  const q = new URLSearchParams({ number, token });
  let res;
  try {
    res = await fetch(`/api/complaints/status?${q}`, { headers: { Accept: 'application/json' } });
  } catch (e) {
    showError('网络连接失败，请稍后再试。');
    return;
  }
  if (res.status === 404) return showError('没有找到这个投诉单，请核对单号和查询码。');
  if (res.status === 400) return showError('请填写投诉单号和查询码。');
  if (!res.ok) return showError('查询暂时不可用，请稍后再试。');
  const r = await res.json();
  $('r-number').textContent = r.number;
  $('r-status').textContent = r.status_text;
  $('r-status').className = 'badge' + (r.status === 'resolved' || r.status === 'closed' ? ' done' : '');
  $('r-created').textContent = localTime(r.created_at);
  $('r-due').textContent = r.next_due ? `${localTime(r.next_due)} 前` : '—';
  const list = $('r-history');
  list.replaceChildren();
  for (const h of r.history) {
    const li = document.createElement('li');
    const t = document.createElement('time');
    t.textContent = localTime(h.at);
    li.append(t, document.createTextNode(h.status_text));
    list.append(li);
  }
  $('result').hidden = false;
}

$('query').addEventListener('submit', (ev) => {
  ev.preventDefault();
  lookup($('number').value.trim(), $('token').value.trim());
});

const params = new URLSearchParams(location.search);
if (params.get('number') && params.get('token')) {
  $('number').value = params.get('number');
  $('token').value = params.get('token');
  lookup(params.get('number'), params.get('token'));
}
