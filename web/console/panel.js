/*
 * panel.js - the agent console's side panel contents: the context packet of a chat (customer
 * profile, escalation, problem, mood sparkline, slots, solutions, complaint record, hand-off,
 * past complaints) and the knowledge-base search hits.  Builds DOM from text only (el() in
 * format.js); holds no state: console.js calls these with the data to show.
 */

import * as F from './format.js';

const { el } = F;

/* The VIP badge for customer.vip (0/false: none; a level above 1 is shown). */
export function vipBadge(vip) {
  if (!vip) return null;
  return el('span', { class: 'badge badge-vip', text: typeof vip === 'number' && vip > 1 ? `VIP${vip}` : 'VIP' });
}

/* 普通 / 优先 / 紧急 for priority 1..3. */
export function priorityBadge(p) {
  const n = Number.isInteger(p) ? Math.min(3, Math.max(1, p)) : 1;
  return el('span', { class: `badge prio prio-${n}`, text: F.PRIORITY[n] });
}

/* A label/value row of a <dl>, or null when there is nothing to show. */
function kv(label, value, field) {
  if (value == null || value === '' || (value instanceof Node && !value.childNodes.length && !value.textContent))
    return null;
  const dd = el('dd', { dataset: field ? { field } : {} });
  if (value instanceof Node) dd.append(value);
  else dd.textContent = String(value);
  return el('div', { class: 'kv' }, el('dt', { text: label }), dd);
}

function section(title, ...rows) {
  const body = rows.filter(Boolean);
  if (!body.length) return null;
  return el(
    'section',
    { class: 'info-section' },
    el('h3', { class: 'info-title', text: title }),
    el('dl', { class: 'kvs' }, ...body)
  );
}

function listOf(values, cls) {
  const v = (Array.isArray(values) ? values : [values]).map(F.plain).filter(Boolean);
  if (!v.length) return null;
  return el('ul', { class: `chips ${cls || ''}` }, ...v.map((x) => el('li', { text: x })));
}

/*
 * Fills panel with what the console knows of chat: "loading" until chat.ctx (the context
 * packet) is there; a hint when chat is null.  Every value is text (textContent).
 */
export function renderInfo(panel, chat) {
  panel.replaceChildren();
  if (!chat) {
    const hint = '接入会话后，这里显示客户资料、转人工原因和问题摘要。';
    panel.append(el('p', { class: 'list-empty', text: hint }));
    return;
  }
  const ctx = chat.ctx;
  if (!ctx) {
    panel.append(el('p', { class: 'list-empty', text: '正在加载会话资料…' }));
    return;
  }
  /* what the packet lacks, the queue item may know */
  const it = chat.item || {};
  const c = ctx.customer || it.customer || {};
  const esc = ctx.escalation || { reason: it.reason, priority: it.priority, group: it.group };
  const category = ctx.category ?? it.category;
  const severity = ctx.severity ?? it.severity;
  const mood = ctx.mood || {};
  const rec = ctx.record || null;
  const hand = ctx.handoff || {};

  const head = el(
    'div',
    { class: 'profile' },
    el('div', { class: 'avatar avatar-lg', 'aria-hidden': 'true', text: (c.name || c.id || '客').slice(0, 1) }),
    el(
      'div',
      { class: 'profile-text' },
      el('p', { class: 'profile-name' }, el('span', { text: c.name || '未留姓名' }), vipBadge(c.vip)),
      el('p', {
        class: 'profile-sub',
        text: [c.id ? `编号 ${c.id}` : '', F.name(F.CHANNELS, c.channel)].filter(Boolean).join(' · '),
      })
    )
  );
  panel.append(head);

  let moodNode = null;
  if (Number.isFinite(mood.score) || (Array.isArray(mood.trend) && mood.trend.length)) {
    moodNode = el('span', { class: `mood mood-${F.moodLevel(mood.score)}` });
    if (Number.isFinite(mood.score)) moodNode.append(el('span', { class: 'mood-score', text: String(mood.score) }));
    const spark = F.sparkline(mood.trend);
    if (spark) moodNode.append(spark);
  }
  const sev = Number.isFinite(severity) && severity > 0 ? `${severity} 级 · ${F.SEVERITY[severity] || ''}` : '';
  const prio = Number.isInteger(esc.priority) ? priorityBadge(esc.priority) : null;

  const sections = [
    section(
      '转人工',
      kv('原因', F.reasonName(esc.reason), 'reason'),
      kv('优先级', prio, 'priority'),
      kv('分组', F.groupName(esc.group), 'group'),
      kv('转入时间', F.when(esc.at), 'escalated-at'),
      kv('所在环节', F.name(F.STEPS, esc.step), 'step')
    ),
    section(
      '问题',
      kv('类别', category ? el('span', { title: category, text: F.categoryName(category) }) : null, 'category'),
      kv('严重程度', sev, 'severity'),
      kv('情绪', moodNode, 'mood'),
      kv('问题摘要', ctx.summary, 'summary'),
      kv('客户期望', ctx.expectation, 'expectation')
    ),
    section(
      '已收集信息',
      ...Object.entries(ctx.slots && typeof ctx.slots === 'object' ? ctx.slots : {}).map(([k, v]) =>
        kv(F.name(F.SLOTS, k), F.plain(v), `slot-${k}`)
      )
    ),
    section(
      '方案',
      kv('已提供', listOf(ctx.solutions?.offered, 'chips-offered'), 'offered'),
      kv('客户拒绝', listOf(ctx.solutions?.refused, 'chips-refused'), 'refused')
    ),
    rec
      ? section(
          '投诉记录',
          kv('编号', rec.number, 'record-number'),
          kv('状态', F.name(F.RECORD_STATUS, rec.status), 'record-status'),
          kv('承诺时限', F.when(rec.due), 'record-due'),
          ...Object.entries(rec.fields && typeof rec.fields === 'object' ? rec.fields : {})
            .filter(([k]) => F.RECORD_FIELDS[k])
            .map(([k, v]) => kv(F.RECORD_FIELDS[k], F.plain(v), `record-${k}`))
        )
      : null,
    section(
      '人工处理',
      kv('状态', F.name(F.HANDOFF_STATE, hand.state), 'handoff-state'),
      kv('排队开始', F.when(hand.queued_at)),
      kv('接入时间', F.when(hand.claimed_at)),
      kv('转接次数', hand.transfers ? String(hand.transfers) : '')
    ),
  ];
  for (const s of sections) if (s) panel.append(s);

  const past = Array.isArray(ctx.past_complaints) ? ctx.past_complaints : [];
  const history = el(
    'section',
    { class: 'info-section' },
    el('h3', {
      class: 'info-title',
      text: `历史投诉（${Number.isInteger(c.history_count) ? c.history_count : past.length}）`,
    })
  );
  if (!past.length) history.append(el('p', { class: 'muted', text: '没有历史投诉' }));
  else {
    const ol = el('ol', { class: 'past' });
    for (const p of past.slice(0, 10))
      ol.append(
        el(
          'li',
          {},
          el(
            'p',
            { class: 'past-top' },
            el('span', { class: 'past-cat', text: F.categoryName(p.category) || '投诉' }),
            el('span', { class: 'muted', text: F.when(p.created_at) })
          ),
          el('p', { class: 'muted', text: [p.record, F.name(F.RECORD_STATUS, p.status)].filter(Boolean).join(' · ') }),
          p.resolution ? el('p', { class: 'past-res', text: p.resolution }) : null
        )
      );
    history.append(ol);
  }
  panel.append(history);
}

/*
 * One search hit as a list item.  Templates get an 插入 button that calls onInsert(text);
 * cases (title = summary, text = resolution) are shown for reference.
 */
export function kbHit(h, onInsert) {
  const isTemplate = h.kind !== 'case';
  const meta = [h.category_name || F.categoryName(h.category)];
  if (h.deadline) meta.push(`时限：${h.deadline}`);
  if (h.compensation) meta.push(`补偿：${h.compensation}`);
  const body = el('p', { class: 'kb-text', text: h.text || h.snippet || '' });
  const actions = el('div', { class: 'kb-actions' });
  if (isTemplate) {
    actions.append(
      el('button', {
        type: 'button',
        class: 'btn btn-primary btn-xs kb-insert',
        text: '插入',
        'aria-label': `插入模板：${h.title || ''}`,
        onclick: () => onInsert(h.text || ''),
      })
    );
  }
  const more = el('button', {
    type: 'button',
    class: 'link-btn',
    text: '展开',
    onclick: () => {
      const open = body.classList.toggle('open');
      more.textContent = open ? '收起' : '展开';
    },
  });
  actions.prepend(more);
  return el(
    'li',
    { class: `kb-hit kb-${isTemplate ? 'template' : 'case'}`, dataset: { key: h.key || '' } },
    el(
      'p',
      { class: 'kb-head' },
      el('span', { class: 'badge kb-kind', text: isTemplate ? '模板' : '案例' }),
      el('span', { class: 'kb-title', text: h.title || '' })
    ),
    el('p', { class: 'kb-meta', text: meta.filter(Boolean).join(' · ') }),
    isTemplate ? null : el('p', { class: 'kb-label', text: '处理结果' }),
    body,
    actions
  );
}
