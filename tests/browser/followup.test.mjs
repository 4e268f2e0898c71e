/*
 * followup.test.mjs - after a resolved hand-off: the agent console's follow-up list (待回访,
 * web/console/, GET /api/complaints/followups) and the customer's way from the chat widget's
 * complaint card to the progress page (web/status/, GET /api/complaints/status), in two
 * browser contexts against the real server with the shipped rules.
 *
 * The agent logs in and finds the follow-up list empty; the customer (on a phone-sized screen,
 * the demo page web/index.html) complains and asks for a human; the agent claims the chat and
 * resolves it; the bot asks the satisfaction question and the customer does not answer; the
 * console's 待回访 tab lists the complaint record (number, name, category, status, times; not
 * overdue), as the API does; a focus of the window fetches the list again.  The customer's
 * complaint card has a "查看进度" link to the progress page on the server's origin with the
 * conversation's token; it opens in a new tab that shows the number and the status in Chinese
 * (and drops the token from its address).  A wrong token gets the not-found message.  The
 * steps share one server and depend on each other, in order.
 *
 * Run through ctest (tests/browser.cmake), or:
 *   REDRESS_BIN=build/redress node --test tests/browser/followup.test.mjs
 * Screenshots: tests/artifacts/followup-*.png
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import {
  agentAndCustomer,
  cleanupTemp,
  openAndComplain,
  screenshot,
  waitUntil,
  watch,
  widgetDriver,
} from './harness.mjs';

const AGENT = { username: 'li.na', name: '李娜', password: 'correct horse battery staple' };
const COMPLAINT = '我上周买的手机到现在还没发货，订单号 20261126-0042，麻烦帮我查一下。';
const HUMAN = '转人工';
const RESOLUTION = '已催促商家24小时内发货，并为客户申请5元延迟发货补偿。';
const NOT_FOUND = '没有找到这个投诉单，请核对单号和查询码。';

/* Chromium reports a 404 answer on the console (the wrong token): that one is expected. */
const expectedErrors = (errors) => errors.filter((e) => !/Failed to load resource: .* 404/.test(e));

describe('follow-ups in the console and the progress page from the widget', () => {
  let server, agentCtx, custCtx, agent, cust, aw, cw, conversation, close, number, statusUrl;

  before(async () => {
    ({ server, agentCtx, custCtx, agent, cust, aw, cw, close } = await agentAndCustomer(AGENT));
  });

  after(async () => {
    await close?.();
  });

  /* ---- helpers ---- */

  /* a table of the console's Chinese names (web/console/format.js), read in the page */
  const table = (key) => agent.evaluate(async (k) => (await import('/console/format.js'))[k], key);
  const categoryName = (slug) => agent.evaluate(async (s) => (await import('/console/format.js')).categoryName(s), slug);

  const { rows, waitRow, say } = widgetDriver(() => cust);

  /* the follow-up list as the agent sees it */
  const followupRows = () =>
    agent.evaluate(() =>
      Array.from(document.querySelectorAll('#followup-list > li'), (li) => ({
        number: li.dataset.number,
        conversation: li.dataset.conversation,
        overdue: li.dataset.overdue,
        shown: li.querySelector('.fu-number')?.textContent,
        name: li.querySelector('.fu-name')?.textContent,
        category: li.querySelector('.fu-cat')?.textContent,
        status: li.querySelector('.fu-state')?.textContent,
        asked: li.querySelector('.fu-asked')?.textContent,
        waited: li.querySelector('.fu-waited')?.textContent,
        badge: !li.querySelector('.fu-overdue')?.hidden,
      }))
    );

  /* resolves once the element has stayed at the same place for one poll */
  async function settled(locator) {
    let last = null;
    await waitUntil(async () => {
      const now = JSON.stringify(await locator.boundingBox());
      const same = now === last;
      last = now;
      return same;
    }, 'the element to stop moving');
  }

  const followupRequests = [];
  const countRequests = () => followupRequests.length;

  /* ---- the steps ---- */

  test('the agent logs in; the follow-up tab is there and empty', async () => {
    agent.on('request', (r) => {
      if (new URL(r.url()).pathname === '/api/complaints/followups') followupRequests.push(r.url());
    });
    await agent.goto(`${server.url}/console/`);
    await agent.locator('#login-form').waitFor({ state: 'visible' });
    await agent.locator('#login-user').fill(AGENT.username);
    await agent.locator('#login-pass').fill(AGENT.password);
    await agent.locator('#login-pass').press('Enter');
    await agent.locator('#conn[data-state="online"]').waitFor();

    const tab = agent.locator('#lists-followups-btn');
    await tab.waitFor({ state: 'visible' });
    assert.equal(await tab.getAttribute('aria-selected'), 'false', 'the chats are the first tab');
    /* the badge is filled at the welcome, before the tab is opened */
    await waitUntil(() => countRequests() >= 1, 'the follow-ups fetched after the welcome');
    await tab.click();
    assert.equal(await tab.getAttribute('aria-selected'), 'true');
    await agent.locator('#lists-followups').waitFor({ state: 'visible' });
    assert.equal(await agent.locator('#lists-chats').isVisible(), false);
    await agent.locator('#followup-empty').waitFor({ state: 'visible' });
    assert.equal(await agent.locator('#followup-empty').textContent(), '暂无待回访的客户');
    const summary = await waitUntil(() => agent.locator('#followup-summary').textContent(), 'the list fetched');
    assert.match(summary, /^共 0 条 · \d\d:\d\d 更新$/);
    assert.equal(await agent.locator('#followup-count').textContent(), '0');

    await agent.locator('#lists-chats-btn').click();
    await agent.locator('#queue-list').waitFor({ state: 'attached' });
    await agent.locator('#lists-chats').waitFor({ state: 'visible' });
    assert.deepEqual(expectedErrors(aw.errors), []);
  });

  test('the customer complains and asks for a human; the agent claims and resolves the chat', async () => {
    conversation = await openAndComplain(cust, cw, server.url, COMPLAINT);
    assert.match(conversation, /^c-\d+$/);
    await say(HUMAN);

    const item = agent.locator(`#queue-list li[data-conversation="${conversation}"]`);
    await item.waitFor();
    assert.equal(await agent.locator('#chats-tab-count').textContent(), '1', 'the chats tab counts the queue');
    await item.locator('.claim').click();
    await agent.locator('#chat-view').waitFor({ state: 'visible' });
    await agent.locator(`#mine-list li[data-conversation="${conversation}"]`).waitFor();
    await waitRow((r) => r.kind === 'note' && r.text === `客服${AGENT.name}已接入，将为您继续服务。`, 'agent_joined');

    await agent.locator('#act-resolve').click();
    await agent.locator('#dlg-resolve').waitFor({ state: 'visible' });
    await agent.locator('#resolve-text').fill(RESOLUTION);
    await agent.locator('#form-resolve button[type="submit"]').click();
    await agent.locator('#dlg-resolve').waitFor({ state: 'hidden' });
    await agent.locator('#chat-ended').waitFor({ state: 'visible' });

    /* the flow asks its satisfaction question (rules/flows/complaint.lua, survey), which
     * records the survey as asked; the customer does not answer it */
    const question = await waitUntil(async () => {
      const r = await rows();
      const i = r.findIndex((x) => x.kind === 'note' && x.text.includes('智能客服继续为您服务'));
      return i >= 0 && r.slice(i + 1).find((x) => x.kind === 'bot');
    }, 'the satisfaction question after the hand-off');
    assert.match(question.text, /打个分/);

    /* the complaint record's number, from the record status events the customer got */
    const records = cw.received('status').filter((f) => f.state === 'record' && f.detail?.number);
    assert.ok(records.length > 0, 'the customer got the complaint record');
    number = records.at(-1).detail.number;
    assert.match(number, /^TS\d{8}-\d{6,}$/);
    await waitRow((r) => r.kind === 'record' && r.text.includes(number), 'the complaint card');
  });

  test("the console's 待回访 list shows the record, as the API lists it", async () => {
    const before = countRequests();
    await agent.locator('#lists-followups-btn').click(); /* opening the tab fetches the list */
    const li = agent.locator(`#followup-list li[data-number="${number}"]`);
    await waitUntil(() => countRequests() > before, 'a fetch when the tab opens');
    await li.waitFor();

    const api = await (await agent.request.get(`${server.url}/api/complaints/followups`)).json();
    const mine = api.items.find((it) => it.number === number);
    assert.ok(mine, `the API lists ${number}: ${JSON.stringify(api)}`);
    assert.equal(mine.conversation, conversation);
    assert.equal(mine.overdue, false, 'asked just now: not overdue');
    assert.equal(api.overdue, 0);

    const shown = await followupRows();
    assert.deepEqual(shown.map((r) => r.number), api.items.map((it) => it.number), 'the API order: oldest first');
    const row = shown.find((r) => r.number === number);
    const statusNames = await table('RECORD_STATUS');
    assert.deepEqual(row, {
      number,
      conversation,
      overdue: 'false',
      shown: number,
      name: '张先生',
      category: await categoryName(mine.category),
      status: statusNames[mine.status],
      asked: row.asked,
      waited: '已等待不到 1 小时',
      badge: false,
    });
    assert.ok(mine.category, 'the record has a category');
    assert.match(row.category, /^[\u4e00-\u9fff]+$/, 'a Chinese category name, not the slug');
    assert.equal(mine.status, 'resolved');
    assert.equal(row.status, '已解决');
    assert.match(row.asked, /^回访发出 今天 \d\d:\d\d$/);
    assert.equal(await agent.locator('#followup-count').textContent(), String(api.items.length));
    assert.equal(await agent.locator('#followup-count').getAttribute('data-overdue'), 'false');
    assert.equal(await agent.locator('#followup-empty').isVisible(), false);
    await screenshot(agent, 'followup-console-list');

    /* the window getting the focus back fetches the list again */
    const n = countRequests();
    await agent.evaluate(() => window.dispatchEvent(new Event('focus')));
    await waitUntil(() => countRequests() > n, 'a fetch on focus');
    await li.waitFor();
    assert.deepEqual(expectedErrors(aw.errors), []);
  });

  test('the complaint card links to the progress page, which shows the number and status', async () => {
    const resume = await cust.evaluate(() => window.redressChat.client.token);
    assert.match(resume, /^[0-9a-f]{32}$/);
    /* the link carries the record's read-only status code, never the resume token */
    const token = createHash('sha256').update(`redress status ${resume}`).digest('hex').slice(0, 20);
    const link = cust.locator('.record-card .record-link').last();
    await link.scrollIntoViewIfNeeded();
    assert.equal(await link.textContent(), '查看进度');
    assert.equal(await link.getAttribute('target'), '_blank');
    assert.equal(await link.getAttribute('rel'), 'noopener');
    const href = new URL(await link.getAttribute('href'));
    assert.equal(href.origin, server.url, 'an absolute URL on the chat server');
    assert.equal(href.pathname, '/status/');
    assert.deepEqual(Object.fromEntries(href.searchParams), { number, token });
    await settled(link); /* the log scrolls smoothly: a still picture */
    await screenshot(cust, 'followup-widget-card');

    const [page] = await Promise.all([custCtx.waitForEvent('page'), link.tap()]);
    const pw = watch(page);
    await page.locator('#result').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#r-number').textContent(), number);
    const status = await page.locator('#r-status').textContent();
    assert.equal(status, '已解决');
    assert.match(status, /^[\u4e00-\u9fff]+$/);
    assert.ok((await page.locator('#r-history li').count()) > 0, 'the history is listed');
    assert.equal(await page.locator('#error').isVisible(), false);
    /* the token left the address bar (it would be copied with the link) */
    await waitUntil(() => page.url() === `${server.url}/status/?number=${encodeURIComponent(number)}`, 'the address without the token');
    statusUrl = page.url();
    /* from the chat, the answer is all the customer wants: the form is put away */
    assert.equal(await page.locator('#query').isVisible(), false);
    await screenshot(page, 'followup-status-page');
    await page.locator('#again').click();
    await page.locator('#query').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#number').inputValue(), number);
    assert.deepEqual(expectedErrors(pw.errors), []);
    await page.close();
  });

  test('a wrong token gets the not-found message', async () => {
    const page = await custCtx.newPage();
    const pw = watch(page);
    await page.goto(`${statusUrl}&token=${'0'.repeat(32)}`);
    await page.locator('#error').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#error').textContent(), NOT_FOUND);
    assert.equal(await page.locator('#result').isVisible(), false);
    assert.equal(await page.locator('#number').inputValue(), number);
    assert.equal(await page.locator('#query').isVisible(), true, 'the form stays for another try');
    await screenshot(page, 'followup-status-not-found');
    assert.deepEqual(expectedErrors(pw.errors), []);
    assert.deepEqual(expectedErrors(cw.errors), []);
    await page.close();
  });
});

after(cleanupTemp);
