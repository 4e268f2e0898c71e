/*
 * handoff.test.mjs - one full hand-off from the customer widget (web/widget/) to the agent
 * console (web/console/) and back, in two browser contexts against the real server with the
 * shipped rules: the agent logs in; the customer (on a phone-sized screen) complains and asks
 * for a human; the chat shows in the agent's queue; the agent claims it and sees its context;
 * inserts a knowledge-base template and sends it; the customer sees the agent join and the
 * reply; the server restarts and both sides reconnect to the same hand-off; the customer
 * answers (also with text that looks like HTML, which must stay text in the console); the
 * agent resolves; the customer sees the bot take over again.  Then: logout (and the 4401 path
 * back to the login form), and a call-back when no agent is online.  The steps share one
 * server and depend on each other, in order.
 *
 * Run through ctest (tests/browser.cmake), or:
 *   REDRESS_BIN=build/redress node --test tests/browser/handoff.test.mjs
 * Screenshots: tests/artifacts/handoff-*.png
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  agentAndCustomer,
  cleanupTemp,
  openAndComplain,
  screenshot,
  waitUntil,
  widgetDriver,
  widgetHost,
} from './harness.mjs';

const AGENT = { username: 'wang', name: '王小明', password: 'correct horse battery staple' };
/* calm on purpose: the chat should go to a human because the customer asks, not for anger */
const COMPLAINT = '我上周买的手机到现在还没发货，订单号 20261126-0042，麻烦帮我查一下。';
const HUMAN = '转人工';
const TEMPLATE_KEY = 'ecom-notrecv-002'; /* kb/sample: 商家超时未发货 */
const THANKS = '好的，那我再等一天，麻烦您帮我盯着点。';
const HOSTILE = '<img src=x onerror=alert(1)><script>alert(2)</script>&lt;b&gt;';
const RESOLUTION = '已催促商家24小时内发货，并为客户申请5元延迟发货补偿。';

/* Chromium reports on the console a failed login (HTTP 401), and the sockets it could not open
 * while the server was down for its restart: those are expected. */
const expectedErrors = (errors) =>
  errors.filter((e) => !/Failed to load resource: .* 401|WebSocket connection to .* failed: .*ERR_CONNECTION_REFUSED/.test(e));

describe('hand-off from the widget to the agent console and back', () => {
  let server, agentCtx, custCtx, agent, cust, aw, cw, conversation, close;
  let reply = ''; /* the text the agent sent */

  before(async () => {
    ({ server, agentCtx, custCtx, agent, cust, aw, cw, close } = await agentAndCustomer(AGENT));
  });

  after(async () => {
    await close?.();
  });

  /* ---- helpers ---- */

  /* the console's own Chinese names (web/console/format.js), asked in the page */
  const names = (fn, key) => agent.evaluate(async ([f, k]) => (await import('/console/format.js'))[f](k), [fn, key]);

  const { rows, waitRow, say } = widgetDriver(() => cust);

  /* the console's transcript: [{from, text, seq}] in screen order */
  const consoleLog = () =>
    agent.evaluate(() =>
      Array.from(document.querySelectorAll('#log-host .log > .row'), (r) => ({
        from: r.dataset.from,
        text: r.querySelector('.bubble')?.textContent ?? r.querySelector('.sys-text')?.textContent ?? '',
        seq: r.dataset.seq ? Number(r.dataset.seq) : null,
        state: r.dataset.state || null,
      }))
    );

  /* ---- the steps ---- */

  test('the agent logs in to the console (a wrong password is refused with a message)', async () => {
    await agent.goto(`${server.url}/console/`);
    await agent.locator('#login-form').waitFor({ state: 'visible' });
    await agent.locator('#login-user').fill(AGENT.username);
    await agent.locator('#login-pass').fill('not the password');
    await agent.locator('#login-submit').click();
    await agent.locator('#login-error').waitFor({ state: 'visible' });
    assert.equal(await agent.locator('#login-error').textContent(), '用户名或密码错误');
    await screenshot(agent, 'handoff-console-login');

    await agent.locator('#login-pass').fill(AGENT.password);
    await agent.locator('#login-pass').press('Enter');
    await agent.locator('#app').waitFor({ state: 'visible' });
    await agent.locator('#conn[data-state="online"]').waitFor();
    assert.equal(await agent.locator('#me-name').textContent(), AGENT.name);
    const hello = aw.received('welcome')[0];
    assert.deepEqual(hello.agent, { username: AGENT.username, name: AGENT.name, role: 'agent' });
    assert.equal(await agent.locator('#presence-available').getAttribute('aria-checked'), 'true');
    assert.deepEqual(expectedErrors(aw.errors), []);
  });

  test('the customer complains and asks for a human; the chat shows in the queue', async () => {
    conversation = await openAndComplain(cust, cw, server.url, COMPLAINT);
    assert.match(conversation, /^c-\d+$/);

    await say(HUMAN);
    const escalated = await waitUntil(
      () => cw.received('status').find((f) => f.state === 'escalated'),
      'the escalated status'
    );
    assert.equal(escalated.detail.reason, 'human_request');
    await waitRow((r) => r.kind === 'note' && r.text.includes('转接人工客服'), 'the escalation note');
    const queued = await waitUntil(() => cw.received('status').find((f) => f.state === 'queued'), 'the queued status');
    assert.equal(queued.detail.position, 1);
    const banner = cust.locator('.banner-queue');
    await banner.waitFor({ state: 'visible' });
    assert.match(await banner.textContent(), /^排队中，下一位就是您/);
    assert.equal(await cust.locator('.service-text').textContent(), '正在排队等待人工客服');
    await screenshot(cust, 'handoff-widget-queued');

    const item = agent.locator(`#queue-list li[data-conversation="${conversation}"]`);
    await item.waitFor();
    assert.equal(await item.locator('.qi-name').textContent(), '张先生');
    assert.equal(await item.locator('.qi-reason').textContent(), '客户要求转人工');
    assert.equal(await item.locator('.prio').textContent(), '优先');
    assert.match(await item.locator('.qi-waited').textContent(), /^\d+:\d\d$/);
    assert.equal(await agent.locator('#queue-count').textContent(), '1');
    await screenshot(agent, 'handoff-console-queue');
  });

  test('the agent claims the chat and sees its context; the customer sees the agent join', async () => {
    const item = agent.locator(`#queue-list li[data-conversation="${conversation}"]`);
    await item.locator('.claim').click();
    await agent.locator('#chat-view').waitFor({ state: 'visible' });
    const ok = await waitUntil(() => aw.received('ok').find((f) => f.context), 'the claim answer');
    const ctx = ok.context;

    /* the queue item went to "my chats" */
    await agent.locator(`#mine-list li[data-conversation="${conversation}"]`).waitFor();
    await item.waitFor({ state: 'detached' });
    assert.match(await agent.locator('#chat-name').textContent(), /张先生/);

    /* context side panel: escalation reason and category */
    const field = (name) => agent.locator(`#tab-info [data-field="${name}"]`);
    await field('reason').waitFor();
    assert.equal(await field('reason').textContent(), '客户要求转人工');
    assert.ok(ctx.category, `the context packet names the category: ${JSON.stringify(ctx)}`);
    const category = await field('category').textContent();
    assert.equal(category, await names('categoryName', ctx.category));
    assert.match(category, /^[\u4e00-\u9fff]+$/, 'a Chinese name, not the slug');
    assert.equal(await field('category').locator('span').getAttribute('title'), ctx.category);

    /* the customer's own words are in the console's transcript */
    const log = await waitUntil(async () => {
      const l = await consoleLog();
      return l.some((r) => r.from === 'customer' && r.text === COMPLAINT) && l;
    }, 'the complaint in the console transcript');
    assert.ok(log.some((r) => r.from === 'customer' && r.text === HUMAN));
    assert.ok(log.some((r) => r.from === 'bot'), 'the bot turns are there too');
    const seqs = log.map((r) => r.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'rows in seq order');
    assert.equal(new Set(seqs).size, seqs.length, 'no duplicate rows');
    await screenshot(agent, 'handoff-console-claimed');

    await waitRow((r) => r.kind === 'note' && r.text === `客服${AGENT.name}已接入，将为您继续服务。`, 'agent_joined');
    const joined = cw.received('status').find((f) => f.state === 'agent_joined');
    assert.equal(joined.detail.agent, AGENT.name);
    assert.match(await cust.locator('.service-text').textContent(), new RegExp(AGENT.name));
    assert.equal(await cust.locator('.banner-queue').isVisible(), false);
  });

  test('the agent inserts a knowledge-base template and sends it; the customer sees it', async () => {
    await agent.locator('#kb-jump').click();
    await agent.locator('#kb-q').fill('商家超时未发货');
    await agent.locator('#kb-q').press('Enter');
    const hit = agent.locator(`#kb-results .kb-hit[data-key="${TEMPLATE_KEY}"]`);
    await hit.waitFor();
    assert.equal(await hit.locator('.kb-title').textContent(), '商家超时未发货');
    await hit.locator('.kb-insert').click();
    reply = await agent.locator('#reply').inputValue();
    assert.match(reply, /商家未在承诺时间内发货/);
    assert.doesNotMatch(reply, /^\n/);
    await screenshot(agent, 'handoff-console-template');

    await agent.locator('#reply').press('Enter');
    const ok = await waitUntil(() => aw.received('ok').find((f) => Number.isInteger(f.seq)), 'the reply answer');
    assert.equal(await agent.locator('#reply').inputValue(), '', 'reply box cleared');
    await waitUntil(async () => {
      const l = await consoleLog();
      return l.find((r) => r.from === 'agent' && r.seq === ok.seq && r.text === reply && r.state !== 'sending');
    }, 'the sent reply in the console');
    const sent = aw.sent('reply')[0];
    assert.deepEqual({ conversation: sent.conversation, text: sent.text }, { conversation, text: reply });

    const row = await waitRow((r) => r.kind === 'agent' && r.text === reply, 'the agent message in the widget');
    assert.equal(row.seq, ok.seq);
    const sender = await widgetHost(cust).evaluate((h) => h.shadowRoot.querySelector('.msg-agent .sender')?.textContent);
    assert.equal(sender, `客服 ${AGENT.name}`);
    await cust.waitForTimeout(300); /* let the scroll settle for the picture */
    await screenshot(cust, 'handoff-widget-agent');
  });

  test('the server restarts mid-chat: both sides reconnect and the chat goes on', async () => {
    const port = server.port;
    await server.stop();
    await agent.locator('#conn-banner').waitFor({ state: 'visible' });
    assert.match(await agent.locator('#conn-banner-text').textContent(), /连接已断开，\d+ 秒后自动重连/);
    assert.equal(await agent.locator('#conn').getAttribute('data-state'), 'waiting');
    assert.equal(await agent.locator('#send').isDisabled(), true, 'no sending while offline');
    await screenshot(agent, 'handoff-console-offline');

    await server.start(port);
    await agent.locator('#conn[data-state="online"]').waitFor({ timeout: 45000 });
    await agent.locator('#conn-banner').waitFor({ state: 'hidden' });
    assert.ok(aw.received('welcome').length >= 2, 'a new welcome after the restart');
    /* the hand-off survived the restart: still this agent's chat, transcript intact */
    await agent.locator(`#mine-list li[data-conversation="${conversation}"]`).waitFor();
    assert.equal(await agent.locator('#chat-ended').isVisible(), false);
    const log = await consoleLog();
    assert.ok(log.some((r) => r.from === 'agent' && r.text === reply));
    assert.equal(new Set(log.map((r) => r.seq)).size, log.length, 'no duplicate rows after the context was fetched again');
    await waitUntil(
      () => widgetHost(cust).evaluate((h) => h.shadowRoot.querySelector('.root').dataset.conn === 'online'),
      'the widget back online',
      45000
    );
  });

  test('the customer answers; the agent sees it, and HTML-looking text stays text', async () => {
    await say(THANKS);
    await say(HOSTILE);
    await waitUntil(async () => {
      const l = await consoleLog();
      return l.some((r) => r.from === 'customer' && r.text === THANKS) && l.some((r) => r.from === 'customer' && r.text === HOSTILE);
    }, 'the customer answers in the console');
    const found = await agent.evaluate(() => ({
      img: document.querySelectorAll('img').length,
      inlineScripts: document.querySelectorAll('script:not([src])').length,
      bold: document.querySelectorAll('#log-host b, #mine-list b').length,
    }));
    assert.deepEqual(found, { img: 0, inlineScripts: 0, bold: 0 });
    assert.equal(await agent.locator(`#mine-list li[data-conversation="${conversation}"] .mi-last`).textContent(), HOSTILE);
    assert.deepEqual(aw.dialogs, [], 'no alert ran in the console');
    assert.deepEqual(cw.dialogs, [], 'no alert ran in the widget');
    await screenshot(agent, 'handoff-console-chat');
  });

  test('the agent resolves the chat; the customer sees the bot take over again', async () => {
    await agent.locator('#act-resolve').click();
    await agent.locator('#dlg-resolve').waitFor({ state: 'visible' });
    await agent.locator('#resolve-text').fill(RESOLUTION);
    await agent.locator('#form-resolve input[name="outcome"][value="accepted"]').check();
    await screenshot(agent, 'handoff-console-resolve');
    await agent.locator('#form-resolve button[type="submit"]').click();
    await agent.locator('#dlg-resolve').waitFor({ state: 'hidden' });
    await agent.locator('#chat-ended').waitFor({ state: 'visible' });
    const sent = aw.sent('resolve')[0];
    assert.deepEqual(
      { conversation: sent.conversation, resolution: sent.resolution, outcome: sent.outcome, save_case: sent.save_case },
      { conversation, resolution: RESOLUTION, outcome: 'accepted', save_case: true }
    );
    assert.ok(aw.received('ok').some((f) => f.id === sent.id), 'resolve answered ok');
    await waitUntil(() => aw.received('released').find((f) => f.conversation === conversation && f.reason === 'resolved'), 'released');
    await agent.locator(`#mine-list li[data-conversation="${conversation}"]`).waitFor({ state: 'detached' });
    assert.equal(await agent.locator('#reply').isDisabled(), true, 'no replies to an ended chat');
    await screenshot(agent, 'handoff-console-resolved');

    await waitRow((r) => r.kind === 'note' && r.text === `客服已处理完毕：${RESOLUTION}`, 'the resolved status');
    await waitRow((r) => r.kind === 'note' && r.text.includes('智能客服继续为您服务'), 'bot_resumed');
    const states = cw.received('status').map((f) => f.state);
    assert.ok(states.indexOf('resolved') < states.lastIndexOf('bot_resumed'), `resolved, then bot_resumed: ${states}`);
    const next = await waitUntil(async () => {
      const r = await rows();
      const i = r.findIndex((x) => x.kind === 'note' && x.text.includes('智能客服继续为您服务'));
      return i >= 0 && r.slice(i + 1).find((x) => x.kind === 'bot');
    }, 'the bot speaking again after bot_resumed');
    assert.equal(await cust.locator('.service-text').textContent(), '智能客服为您服务');
    await cust.waitForTimeout(300);
    await screenshot(cust, 'handoff-widget-resumed');
    /* the flow goes on with its satisfaction question (rules/flows/complaint.lua, follow_up) */
    assert.match(next.text, /打个分/, `the satisfaction question after the hand-off, got: ${next.text}`);
    const chips = await widgetHost(cust).evaluate((h) => Array.from(h.shadowRoot.querySelectorAll('.chip'), (c) => c.textContent));
    assert.ok(chips.includes('5分 非常满意'), `rating buttons: ${chips}`);

    assert.deepEqual(expectedErrors(aw.errors), []);
    assert.deepEqual(expectedErrors(cw.errors), []);
  });

  test('logging out ends the session: the console shows the login form, also after a reload', async () => {
    await agent.locator('#logout').click();
    await agent.locator('#login-form').waitFor({ state: 'visible' });
    assert.equal(await agent.locator('#login-notice').textContent(), '您已退出登录。');
    assert.equal(await agent.locator('#app').isVisible(), false);
    await agent.reload();
    /* the socket is refused with 4401 (no session), which brings the form back */
    await agent.locator('#login-form').waitFor({ state: 'visible' });
    assert.equal(await agent.locator('#app').isVisible(), false);
    assert.deepEqual(expectedErrors(aw.errors), []);
  });

  test('with no agent online the customer gets a call-back, which the console lists', async () => {
    const mark = cw.frames.length;
    await say(HUMAN);
    const record = await waitUntil(
      () => cw.frames.slice(mark).find((f) => f.type === 'status' && f.state === 'record' && f.detail.status === 'callback'),
      'the call-back record'
    );
    assert.equal(record.detail.reason, 'no_agent');
    const card = await waitRow((r) => r.kind === 'record' && r.text.includes('回电登记'), 'the call-back card');
    assert.match(card.text, /等待客服回电/);
    assert.match(card.text, new RegExp(record.detail.number));
    assert.match(card.text, /目前暂无客服可以接待/);
    assert.equal(await cust.locator('.service-text').textContent(), '已登记，客服将回电联系您');
    assert.equal(await cust.locator('.banner-queue').isVisible(), false);
    await cust.waitForTimeout(300);
    await screenshot(cust, 'handoff-widget-callback');

    await agent.locator('#login-user').fill(AGENT.username);
    await agent.locator('#login-pass').fill(AGENT.password);
    await agent.locator('#login-pass').press('Enter');
    const item = agent.locator(`#queue-list li[data-conversation="${conversation}"]`);
    await item.waitFor();
    assert.equal(await item.getAttribute('data-state'), 'callback');
    assert.match(await item.locator('.qi-due').textContent(), /^待回电（无坐席在线） · .+ 前$/);
    assert.equal(await item.locator('.claim').textContent(), '接入回电');
    await screenshot(agent, 'handoff-console-callback');
    assert.deepEqual(expectedErrors(aw.errors), []);
    assert.deepEqual(expectedErrors(cw.errors), []);
  });
});

after(cleanupTemp);
