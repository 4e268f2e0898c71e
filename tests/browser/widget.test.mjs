/*
 * widget.test.mjs - the customer chat widget (web/widget/) in a real browser against the real
 * server: greeting, a Chinese complaint acknowledged and answered, reload restores the
 * transcript from the server, reconnect and resume after the server restarts, a lost ack,
 * superseding, text never becomes HTML, IME Enter, a phone-sized screen.  The status events
 * the server cannot emit yet (queue, agent, record, closed) and rate limiting are checked
 * against a scripted peer that speaks protocol v1 (docs/protocol.md).
 *
 * Run through ctest (tests/browser.cmake), or: REDRESS_BIN=build/redress node --test tests/browser
 * Screenshots: tests/artifacts/*.png
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  Server,
  cleanupTemp,
  launch,
  screenshot,
  tempDir,
  transcript,
  waitUntil,
  watch,
  widgetHost,
} from './harness.mjs';

const COMPLAINT = '我上周买的手机到现在还没发货，订单号 20261126-0042，客服电话一直打不通，请尽快处理！';
const HOSTILE = '<img src=x onerror=alert(1)><script>alert(2)</script>&lt;b&gt;';

/* ---- helpers on the widget ---- */

async function openWidget(page) {
  await page.locator('.launcher').click();
  await page.locator('.panel').waitFor({ state: 'visible' });
}

async function type(page, text) {
  await page.locator('#rdw-input').fill(text);
  await page.locator('#rdw-input').press('Enter');
}

const connState = (page) => widgetHost(page).evaluate((h) => h.shadowRoot.querySelector('.root').dataset.conn);

function waitConn(page, state) {
  return waitUntil(async () => (await connState(page)) === state, `connection state ${state}`, 45000);
}

async function waitRow(page, pred, what) {
  return waitUntil(async () => (await transcript(page)).find(pred), what);
}

function assertOrdered(rows) {
  const seqs = rows.map((r) => r.seq).filter((s) => s !== null);
  assert.equal(new Set(seqs).size, seqs.length, `duplicate seqs on screen: ${seqs}`);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `rows out of seq order: ${seqs}`);
}

/* waits for a bot (or agent) answer placed after the customer row with this text */
async function waitAnswerAfter(page, text) {
  return waitUntil(async () => {
    const rows = await transcript(page);
    const i = rows.findIndex((r) => r.kind === 'customer' && r.text === text);
    return i >= 0 && rows.slice(i + 1).some((r) => r.kind === 'bot' && r.text.length > 0);
  }, `a bot answer after "${text}"`);
}

/* ---- against the real server ---- */

describe('widget with the real server', () => {
  let server, context, page, w;

  before(async () => {
    server = await new Server(tempDir('data')).start();
    context = await launch();
    page = context.pages()[0] || (await context.newPage());
    w = watch(page);
  });

  after(async () => {
    await context?.close();
    await server?.stop();
  });

  test('greets, acknowledges a Chinese complaint and shows the bot answer after it', async () => {
    await page.goto(`${server.url}/`);
    assert.equal(await page.locator('.panel').isVisible(), false, 'panel starts closed');
    await openWidget(page);
    await waitRow(page, (r) => r.kind === 'bot', 'the greeting');
    await waitConn(page, 'online');
    assert.equal(await page.locator('.conn-text').textContent(), '在线');

    const hello = w.sent('hello')[0];
    assert.deepEqual(hello.customer, { id: 'demo-u-10086', channel: 'web', name: '张先生' });

    await type(page, COMPLAINT);
    assert.equal(await page.locator('#rdw-input').inputValue(), '', 'composer cleared');
    const row = await waitRow(page, (r) => r.kind === 'customer' && r.state === 'delivered', 'the ack');
    assert.equal(row.text, COMPLAINT);
    const sent = w.sent('message').find((f) => f.text === COMPLAINT);
    assert.match(sent.id, /^m-[0-9a-f]{32}$/);
    const ack = w.received('ack').find((a) => a.id === sent.id);
    assert.ok(ack, 'the server acknowledged the message');
    assert.equal(row.seq, ack.seq);
    assert.equal(row.id, sent.id);
    assert.equal(await page.locator('.msg-customer .status').last().textContent(), '已送达');

    await waitAnswerAfter(page, COMPLAINT);
    assertOrdered(await transcript(page));
    await page.waitForTimeout(300); /* let the typing dots and scroll settle for the picture */
    await screenshot(page, 'desktop-chat');

    /* keyboard and screen readers */
    const a11y = await widgetHost(page).evaluate((h) => {
      const r = h.shadowRoot;
      const log = r.querySelector('.log');
      return {
        role: log.getAttribute('role'),
        live: log.getAttribute('aria-live'),
        dialog: r.querySelector('.panel').getAttribute('role'),
        labelled: r.getElementById(r.querySelector('.panel').getAttribute('aria-labelledby'))?.textContent,
        inputLabel: r.querySelector('label[for=rdw-input]')?.textContent,
        expanded: r.querySelector('.launcher').getAttribute('aria-expanded'),
        unlabelled: Array.from(r.querySelectorAll('button')).filter((b) => !(b.getAttribute('aria-label') || b.textContent.trim())).length,
      };
    });
    assert.deepEqual(a11y, {
      role: 'log', live: 'polite', dialog: 'dialog', labelled: '云帆商城在线客服', inputLabel: '输入您的问题', expanded: 'true', unlabelled: 0,
    });
    await page.locator('#rdw-input').press('Escape');
    assert.equal(await page.locator('.panel').isVisible(), false, 'Escape closes the panel');
    assert.equal(await widgetHost(page).evaluate((h) => h.shadowRoot.activeElement?.className), 'launcher', 'focus back on the launcher');
    await page.keyboard.press('Enter');
    await page.locator('.panel').waitFor({ state: 'visible' });
    assert.equal(await widgetHost(page).evaluate((h) => h.shadowRoot.activeElement?.id), 'rdw-input', 'focus in the composer');
    assert.deepEqual(w.errors, []);
  });

  test('shows hostile text as text, never as HTML', async () => {
    await type(page, HOSTILE);
    const row = await waitRow(page, (r) => r.text === HOSTILE && r.state === 'delivered', 'the ack');
    assert.equal(row.kind, 'customer');
    await waitAnswerAfter(page, HOSTILE);
    const found = await widgetHost(page).evaluate((h) => ({
      elements: h.shadowRoot.querySelectorAll('.log img, .log script, .log b').length,
      pageImgs: document.querySelectorAll('img').length,
    }));
    assert.deepEqual(found, { elements: 0, pageImgs: 0 });
    assert.deepEqual(w.dialogs, [], 'no alert ran');
    assert.deepEqual(w.errors, []);
  });

  test('Enter does not send while an IME is composing; Shift+Enter adds a line', async () => {
    const before = (await transcript(page)).length;
    const sentBefore = w.sent('message').length;
    await page.locator('#rdw-input').fill('tui kuan');
    const r = await widgetHost(page).evaluate((h) => {
      const t = h.shadowRoot.querySelector('#rdw-input');
      const ev = new KeyboardEvent('keydown', {
        key: 'Enter', code: 'Enter', isComposing: true, bubbles: true, cancelable: true, composed: true,
      });
      t.dispatchEvent(ev);
      return { value: t.value, rows: h.shadowRoot.querySelectorAll('.log > .row').length, prevented: ev.defaultPrevented };
    });
    assert.deepEqual(r, { value: 'tui kuan', rows: before, prevented: false });
    assert.equal(w.sent('message').length, sentBefore);

    await page.locator('#rdw-input').fill('第一行');
    await page.locator('#rdw-input').press('Shift+Enter');
    await page.locator('#rdw-input').pressSequentially('第二行');
    assert.equal(await page.locator('#rdw-input').inputValue(), '第一行\n第二行');
    await page.locator('#rdw-input').press('Enter');
    const row = await waitRow(page, (x) => x.text === '第一行\n第二行' && x.state === 'delivered', 'the two-line message');
    assert.equal(row.kind, 'customer');
    await waitAnswerAfter(page, '第一行\n第二行');
  });

  test('a reload restores the transcript from the server, once', async () => {
    const before = (await transcript(page)).map(({ kind, text, seq }) => ({ kind, text, seq }));
    assert.ok(before.every((r) => r.seq !== null), 'everything acknowledged before the reload');
    const token = w.received('welcome')[0].token;
    const mark = w.frames.length;

    await page.reload();
    await page.locator('.launcher').waitFor();
    /* a conversation in progress reconnects at once, before the panel is opened */
    await waitConn(page, 'online');
    assert.equal(await page.locator('.badge').isVisible(), false, 'nothing unread: all of it was seen');
    await openWidget(page);
    const after = await waitUntil(async () => {
      const rows = await transcript(page);
      return rows.length >= before.length && rows;
    }, 'the restored transcript');
    assert.deepEqual(after.map(({ kind, text, seq }) => ({ kind, text, seq })), before);

    const frames = w.frames.slice(mark);
    const hello = frames.find((f) => f.dir === 'out' && f.type === 'hello');
    assert.deepEqual(hello.resume, { token, last_seq: 0 });
    const welcome = frames.find((f) => f.type === 'welcome');
    assert.equal(welcome.resumed, true);
    assert.equal(welcome.conversation, w.received('welcome')[0].conversation);
    await screenshot(page, 'desktop-restored');
    assert.deepEqual(w.errors, []);
  });

  test('reconnects with backoff after the server restarts and sends what was typed meanwhile', async () => {
    const before = (await transcript(page)).map(({ kind, text, seq }) => ({ kind, text, seq }));
    const lastSeq = Math.max(...before.map((r) => r.seq));
    const token = w.received('welcome').at(-1).token;
    const port = server.port;

    await server.stop();
    await waitConn(page, 'waiting');
    const banner = page.locator('.banner-conn');
    await banner.waitFor({ state: 'visible' });
    assert.match(await banner.textContent(), /连接已中断|网络连接不可用/);
    assert.notEqual(await page.locator('.conn-text').textContent(), '在线');

    const OFFLINE = '刚才网络断了，这条消息还能收到吗？';
    await type(page, OFFLINE);
    const queued = await waitRow(page, (r) => r.text === OFFLINE, 'the queued message');
    assert.equal(queued.state, 'queued');
    assert.equal(queued.seq, null);
    await screenshot(page, 'desktop-reconnecting');
    const mark = w.frames.length;

    await server.start(port);
    await waitConn(page, 'online');
    const row = await waitRow(page, (r) => r.text === OFFLINE && r.state === 'delivered', 'delivery after reconnect');
    await waitAnswerAfter(page, OFFLINE);
    assert.equal(await banner.isVisible(), false);

    const frames = w.frames.slice(mark);
    const hello = frames.find((f) => f.dir === 'out' && f.type === 'hello');
    assert.deepEqual(hello.resume, { token, last_seq: lastSeq }, 'resumed from the last seq it had');
    const welcome = frames.find((f) => f.type === 'welcome');
    assert.equal(welcome.resumed, true);
    const sent = frames.filter((f) => f.dir === 'out' && f.type === 'message' && f.text === OFFLINE);
    assert.equal(sent.length, 1);
    assert.equal(row.id, sent[0].id);

    const now = await transcript(page);
    assertOrdered(now);
    assert.deepEqual(now.slice(0, before.length).map(({ kind, text, seq }) => ({ kind, text, seq })), before);
    assert.equal(now.filter((r) => r.text === OFFLINE).length, 1);
  });

  test('a second window supersedes the first, which can take the chat back', async () => {
    const other = await context.newPage();
    const w2 = watch(other);
    await other.goto(`${server.url}/`);
    await waitConn(other, 'online');
    await waitConn(page, 'superseded');
    const banner = page.locator('.banner-conn');
    assert.match(await banner.textContent(), /其他窗口/);
    await screenshot(page, 'desktop-superseded');

    await page.locator('.banner-conn .banner-btn').click();
    await waitConn(page, 'online');
    await waitConn(other, 'superseded');
    const SAY = '我回到第一个窗口了';
    await type(page, SAY);
    await waitRow(page, (r) => r.text === SAY && r.state === 'delivered', 'the ack after taking over');
    await other.close();
    assert.deepEqual(w2.errors, []);
    assertOrdered(await transcript(page));
  });

  test('a message whose ack was lost is sent again with its id and shown once', async () => {
    const ctx = await launch();
    try {
      const p = ctx.pages()[0] || (await ctx.newPage());
      const pw = watch(p);
      const held = [];
      let hold = false;
      let cutNextAck = false;
      /* a proxy between the page and the real server that can hold acks or cut the line */
      await p.routeWebSocket(/\/chat$/, (ws) => {
        const srv = ws.connectToServer();
        ws.onMessage((m) => srv.send(m));
        srv.onMessage((m) => {
          const f = JSON.parse(m);
          if (f.type === 'ack' && cutNextAck) {
            cutNextAck = false;
            ws.close({ code: 4999, reason: 'test: line cut' });
            return;
          }
          if (f.type === 'ack' && hold) {
            held.push(() => ws.send(m));
            return;
          }
          ws.send(m);
        });
      });
      await p.goto(`${server.url}/`);
      await openWidget(p);
      await waitRow(p, (r) => r.kind === 'bot', 'the greeting');

      hold = true;
      const SLOW = '这条消息的确认会晚一点到';
      await type(p, SLOW);
      await waitUntil(() => held.length === 1, 'the held ack');
      const sending = (await transcript(p)).find((r) => r.text === SLOW);
      assert.equal(sending.state, 'sending');
      assert.equal(await p.locator('.msg-customer .status').last().textContent(), '发送中…');
      hold = false;
      held.shift()();
      await waitRow(p, (r) => r.text === SLOW && r.state === 'delivered', 'delivery of the held message');

      cutNextAck = true;
      const LOST = '这条消息的确认在路上丢了';
      await type(p, LOST);
      const row = await waitRow(p, (r) => r.text === LOST && r.state === 'delivered', 'delivery after the cut');
      await waitAnswerAfter(p, LOST);
      const sent = pw.sent('message').filter((f) => f.text === LOST);
      assert.ok(sent.length >= 2, `sent again after reconnecting (${sent.length} times)`);
      assert.equal(new Set(sent.map((f) => f.id)).size, 1, 'always with the same id');
      const acks = pw.received('ack').filter((a) => a.id === sent[0].id);
      assert.ok(acks.length >= 1, 'acknowledged again');
      assert.ok(acks.every((a) => a.seq === row.seq), 'every ack names the same seq');
      const rows = await transcript(p);
      assert.equal(rows.filter((r) => r.text === LOST).length, 1);
      assertOrdered(rows);
      assert.deepEqual(pw.errors, []);
    } finally {
      await ctx.close();
    }
  });

  test('fits a phone-sized screen (375x667)', async () => {
    const ctx = await launch({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    try {
      const p = ctx.pages()[0] || (await ctx.newPage());
      const pw = watch(p);
      await p.goto(`${server.url}/`);
      // the widget mounts asynchronously (embed.js); measure it once it is on screen
      await p.locator('.launcher').waitFor({ state: 'visible' });
      const launcher = await p.locator('.launcher').boundingBox();
      assert.ok(launcher.x + launcher.width <= 375 && launcher.y + launcher.height <= 667, 'launcher on screen');
      assert.ok(launcher.width >= 44 && launcher.height >= 44, 'launcher is a comfortable touch target');
      await screenshot(p, 'phone-page');

      await p.locator('.launcher').tap();
      await p.locator('.panel').waitFor({ state: 'visible' });
      await waitRow(p, (r) => r.kind === 'bot', 'the greeting');
      const LONG = '订单链接https://shop.example.com/orders/' + '0123456789'.repeat(12) + ' 麻烦帮我看看为什么一直显示待发货';
      await type(p, LONG);
      await waitRow(p, (r) => r.text === LONG && r.state === 'delivered', 'the ack');
      await waitAnswerAfter(p, LONG);

      const panel = await p.locator('.panel').boundingBox();
      assert.deepEqual(panel, { x: 0, y: 0, width: 375, height: 667 }, 'the open panel fills the screen');
      assert.equal(await p.locator('.launcher').isVisible(), false);
      for (const sel of ['.header', '.composer', '#rdw-input', '.send']) {
        const b = await p.locator(sel).boundingBox();
        assert.ok(b && b.x >= 0 && b.y >= 0 && b.x + b.width <= 375 && b.y + b.height <= 667, `${sel} on screen: ${JSON.stringify(b)}`);
      }
      const send = await p.locator('.send').boundingBox();
      assert.ok(send.width >= 40 && send.height >= 40, 'send button is a comfortable touch target');
      const overflow = await widgetHost(p).evaluate((h) => {
        const log = h.shadowRoot.querySelector('.log');
        const wide = Array.from(h.shadowRoot.querySelectorAll('.bubble')).filter((b) => b.getBoundingClientRect().right > 375);
        return { scroll: log.scrollWidth - log.clientWidth, wide: wide.length, pageScroll: document.documentElement.scrollWidth - 375 };
      });
      assert.deepEqual(overflow, { scroll: 0, wide: 0, pageScroll: 0 });
      await p.waitForTimeout(300);
      await screenshot(p, 'phone-chat');

      await p.locator('.icon-btn').tap();
      assert.equal(await p.locator('.panel').isVisible(), false);
      assert.equal(await p.locator('.launcher').isVisible(), true);
      assert.deepEqual(pw.errors, []);
    } finally {
      await ctx.close();
    }
  });
});

/* ---- against a scripted peer: the events the server cannot emit yet ---- */

describe('widget with a scripted protocol peer', () => {
  let server, context, page, w, peer;
  const got = []; /* frames the peer received */
  let conversations = 0;
  let refuseNext = null; /* error code for the next customer message */

  const ts = () => new Date().toISOString();
  function push(f) {
    peer.send(JSON.stringify({ ts: ts(), ...f }));
  }

  before(async () => {
    /* the real server only serves the page here; /chat is answered by the script below */
    server = await new Server(tempDir('data')).start();
    context = await launch();
    page = context.pages()[0] || (await context.newPage());
    w = watch(page);
    let rateLimitedOnce = false;
    refuseNext = null;
    await page.routeWebSocket(/\/chat$/, (ws) => {
      peer = ws;
      ws.onMessage((m) => {
        const f = JSON.parse(m);
        got.push(f);
        if (f.type === 'hello' && f.resume) {
          /* this peer's conversations have two events before the customer speaks */
          const conversation = `c-00000000009${conversations}`;
          ws.send(JSON.stringify({ type: 'welcome', conversation, token: f.resume.token, seq: 2, resumed: true }));
          return;
        }
        if (f.type === 'hello') {
          conversations++;
          const conversation = `c-00000000009${conversations}`;
          ws.send(JSON.stringify({ type: 'welcome', conversation, token: String(conversations).repeat(32), seq: 0, resumed: false }));
          push({ type: 'status', seq: 1, state: 'open', detail: {} });
          push({ type: 'message', seq: 2, from: 'bot', text: '您好，请问您遇到了哪类问题？', options: ['申请退款', '继续等待'] });
          return;
        }
        if (f.type === 'message' && !rateLimitedOnce) {
          rateLimitedOnce = true;
          ws.send(JSON.stringify({ type: 'error', code: 'rate_limited', message: 'too many frames; slow down' }));
          return;
        }
        if (f.type === 'message' && refuseNext) {
          ws.send(JSON.stringify({ type: 'error', code: refuseNext, message: 'message.text is not acceptable', id: f.id }));
          refuseNext = null;
          return;
        }
        if (f.type === 'message') {
          ws.send(JSON.stringify({ type: 'ack', id: f.id, seq: 3 }));
          push({ type: 'status', seq: 4, state: 'queued', detail: { position: 3, wait_s: 120 } });
        }
      });
    });
  });

  after(async () => {
    await context?.close();
    await server?.stop();
  });

  test('a quick reply is sent as a message, and sent again with its id after rate_limited', async () => {
    await page.goto(`${server.url}/`);
    await openWidget(page);
    const chips = page.locator('.chip');
    await chips.first().waitFor();
    assert.deepEqual(await chips.allTextContents(), ['申请退款', '继续等待']);
    await chips.first().click();
    assert.equal(await chips.count(), 0, 'quick replies go once answered');
    await page.locator('.toast').waitFor({ state: 'visible' });
    assert.match(await page.locator('.toast').textContent(), /稍候/);

    const row = await waitRow(page, (r) => r.kind === 'customer' && r.state === 'delivered', 'the ack after the pause');
    assert.equal(row.text, '申请退款');
    assert.equal(row.seq, 3);
    const sent = got.filter((f) => f.type === 'message');
    assert.equal(sent.length, 2, 'sent, refused, sent again');
    assert.equal(sent[0].id, sent[1].id);
    assert.equal(sent[0].text, '申请退款');
  });

  test('queue position, agent, complaint record, unread badge and duplicates', async () => {
    const queue = page.locator('.banner-queue');
    await queue.waitFor({ state: 'visible' });
    assert.equal(await queue.textContent(), '排队中，前面还有2位，预计等待2分钟');
    assert.equal(await page.locator('.service-text').textContent(), '正在排队等待人工客服');
    assert.equal(await page.locator('.typing').count(), 0, 'no typing dots while waiting for an agent');
    await screenshot(page, 'desktop-queued');

    push({ type: 'status', seq: 5, state: 'agent_joined', detail: { agent: '小王' } });
    push({ type: 'message', seq: 6, from: 'agent', text: '您好，我是客服小王，已经看到您的订单了，马上为您处理退款。' });
    push({ type: 'message', seq: 6, from: 'agent', text: '您好，我是客服小王，已经看到您的订单了，马上为您处理退款。' });
    push({ type: 'status', seq: 7, state: 'record', detail: { number: 'TS20261126-0042', status: 'processing', due: '2030-01-15T02:00:00.000Z' } });
    const record = await waitRow(page, (r) => r.kind === 'record', 'the record card');
    assert.match(record.text, /TS20261126-0042/);
    assert.match(record.text, /处理中/);
    assert.match(record.text, /2030年1月15日 10:00 前/); /* Asia/Shanghai */
    assert.equal(await queue.isVisible(), false, 'queue banner gone once an agent joined');
    const rows = await transcript(page);
    assert.ok(rows.some((r) => r.kind === 'note' && r.text === '客服小王已接入，将为您继续服务。'));
    assert.equal(rows.filter((r) => r.kind === 'agent').length, 1, 'an event repeated with its seq shows once');
    assert.match(await page.locator('.service-text').textContent(), /小王/);
    assertOrdered(rows);
    await screenshot(page, 'desktop-agent');

    await page.locator('.icon-btn').click();
    push({ type: 'message', seq: 8, from: 'agent', text: '退款已提交，请留意到账通知。' });
    const badge = page.locator('.badge');
    await badge.waitFor({ state: 'visible' });
    assert.equal(await badge.textContent(), '1');
    assert.match(await page.locator('.launcher').getAttribute('aria-label'), /1条未读消息/);
    await screenshot(page, 'desktop-unread');
    await openWidget(page);
    assert.equal(await badge.isVisible(), false);
  });

  test('bot_resumed and closed; a new conversation starts on request', async () => {
    push({ type: 'status', seq: 9, state: 'bot_resumed', detail: {} });
    push({ type: 'status', seq: 10, state: 'closed', detail: { reason: 'resolved' } });
    await page.locator('.closed-bar').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#rdw-input').isDisabled(), true);
    const rows = await transcript(page);
    assert.ok(rows.some((r) => r.kind === 'note' && r.text.includes('智能客服继续为您服务')));
    assert.ok(rows.some((r) => r.kind === 'note' && r.text === '问题已处理完毕，本次会话已结束。'));
    await screenshot(page, 'desktop-closed');

    const hellos = got.filter((f) => f.type === 'hello').length;
    await page.locator('.closed-bar .banner-btn').click();
    await waitUntil(() => got.filter((f) => f.type === 'hello').length === hellos + 1, 'a new hello');
    assert.ok(got.at(-1).customer, 'a new conversation, not a resume');
    await waitUntil(async () => {
      const r = await transcript(page);
      return r.length === 1 && r[0].kind === 'bot';
    }, 'a fresh transcript');
    assert.equal(await page.locator('#rdw-input').isDisabled(), false);
    assert.deepEqual(w.errors, []);
  });

  test('close code 4000 (superseded): no automatic reconnect until the customer asks', async () => {
    await waitConn(page, 'online');
    const hellos = () => got.filter((f) => f.type === 'hello').length;
    const before = hellos();
    await peer.close({ code: 4000, reason: 'superseded' });
    await waitConn(page, 'superseded');
    assert.match(await page.locator('.banner-conn .banner-text').textContent(), /其他窗口/);
    assert.equal(await page.locator('.banner-conn .banner-btn').textContent(), '在此继续');
    assert.equal(hellos(), before, 'no reconnect on its own');

    await page.locator('.banner-conn .banner-btn').click();
    await waitConn(page, 'online');
    assert.equal(hellos(), before + 1);
    assert.deepEqual(got.at(-1).resume, { token: '2'.repeat(32), last_seq: 2 });
    assert.equal(await page.locator('.banner-conn').isVisible(), false);
    assert.deepEqual(w.errors, []);
  });

  test('a refused message is marked, and can be sent again or removed', async () => {
    refuseNext = 'bad_field';
    await type(page, '第一次会被拒绝');
    const failed = await waitRow(page, (r) => r.state === 'failed', 'the refusal');
    assert.equal(failed.text, '第一次会被拒绝');
    const status = page.locator('.msg-customer[data-state=failed] .status');
    assert.match(await status.textContent(), /内容不符合要求，未能发送/);
    await status.getByRole('button', { name: '重发' }).click();
    const row = await waitRow(page, (r) => r.text === '第一次会被拒绝' && r.state === 'delivered', 'the ack after 重发');
    const sent = got.filter((f) => f.type === 'message' && f.text === '第一次会被拒绝');
    assert.equal(sent.length, 2);
    assert.equal(sent[0].id, sent[1].id);
    assert.equal(row.seq, 3);

    refuseNext = 'bad_field';
    await type(page, '这条不要了');
    await waitRow(page, (r) => r.text === '这条不要了' && r.state === 'failed', 'the second refusal');
    await page.locator('.msg-customer[data-state=failed] .status').getByRole('button', { name: '删除' }).click();
    assert.equal((await transcript(page)).some((r) => r.text === '这条不要了'), false);
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('redress.chat.v1:demo-u-10086')));
    assert.deepEqual(stored.outbox, [], 'nothing left to send');
    assert.deepEqual(w.errors, []);
  });
});

after(cleanupTemp);
