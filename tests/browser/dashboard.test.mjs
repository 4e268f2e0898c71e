/*
 * dashboard.test.mjs - the supervisors' dashboard (web/dashboard/) in a real browser against
 * the real server with the shipped flows: complaints made over the chat protocol (a WebSocket
 * from a page on the server's origin) in three channels, one escalated; an agent account gets
 * the "no permission" view; a supervisor logs in through the form, every chart is drawn (a
 * Chart.js instance on each canvas with pixels on it), each KPI tile shows the API's number
 * (raw value and the formatted text), the top topics table and the CSV link match; no page
 * error and no CSP violation.  A full-page screenshot goes to tests/artifacts/dashboard.png.
 *
 * Needs web/node_modules (npm ci in web/: the page loads Chart.js from there) and
 * tests/browser/node_modules (playwright-core); server/bootstrap.sh test installs both.
 * Run through ctest (tests/dashboard.cmake), or:
 *   REDRESS_BIN=build/redress node --test tests/browser/dashboard.test.mjs
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Server, addUser, artifacts, cleanupTemp, launch, sourceDir, tempDir, waitUntil, watch } from './harness.mjs';

const PASSWORD = 'correct horse battery';
const CHARTS = ['chart-trend', 'chart-channel', 'chart-category', 'chart-reasons', 'chart-sla', 'chart-csat'];
const CHATS = [
  { id: 'u-1', channel: 'web', texts: ['我在你们商城买的手机一直没发货，订单号12345678', '转人工'] },
  { id: 'u-2', channel: 'app', texts: ['我的退款一直没到账，订单号2024030512345，退了58.5元'] },
  { id: 'u-3', channel: 'wechat', texts: ['快递三天了还没送到，单号SF1234567890'] },
];

/* The formatting rules of web/dashboard/dashboard.js, written out again. */
const fmt = {
  int: (n) => (n == null ? '—' : Number(n).toLocaleString('zh-CN')),
  pct: (r) => (r == null ? '—' : `${(r * 100).toFixed(1)}%`),
  avg: (v) => (v == null ? '—' : v.toFixed(2)),
  nps: (v) => (v == null ? '—' : Math.round(v) > 0 ? `+${Math.round(v)}` : String(Math.round(v))),
};

/*
 * One customer conversation over /chat (docs/protocol.md), run inside a page of the server's
 * origin: hello, then each text, waiting for its ack, and for the complaint record's status
 * (and the escalation, for 转人工).  Resolves with the conversation name.
 */
function chat(page, { id, channel, texts }) {
  return page.evaluate(
    ({ id, channel, texts }) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${location.host}/chat`, 'redress.chat.v1');
        const frames = [];
        let waiter = null;
        const timer = setTimeout(() => reject(new Error(`chat ${id}: timed out; got ${JSON.stringify(frames)}`)), 20000);
        const until = (pred) =>
          new Promise((res) => {
            const hit = frames.find(pred);
            if (hit) res(hit);
            else waiter = { pred, res };
          });
        ws.onmessage = (ev) => {
          const f = JSON.parse(ev.data);
          frames.push(f);
          if (waiter && waiter.pred(f)) {
            const w = waiter;
            waiter = null;
            w.res(f);
          }
        };
        ws.onerror = () => reject(new Error(`chat ${id}: socket error`));
        ws.onopen = async () => {
          ws.send(JSON.stringify({ type: 'hello', customer: { id, name: `客户${id}`, channel } }));
          const welcome = await until((f) => f.type === 'welcome');
          for (const [i, text] of texts.entries()) {
            ws.send(JSON.stringify({ type: 'message', id: `m-${i}`, text }));
            await until((f) => f.type === 'ack' && f.id === `m-${i}`);
            if (text === '转人工') await until((f) => f.type === 'status' && f.state === 'escalated');
          }
          await until((f) => f.type === 'status' && f.state === 'record');
          clearTimeout(timer);
          ws.close();
          resolve(welcome.conversation);
        };
      }),
    { id, channel, texts },
  );
}

async function login(page, username) {
  await page.locator('#login-view').waitFor({ state: 'visible' });
  await page.locator('#login-user').fill(username);
  await page.locator('#login-pass').fill(PASSWORD);
  await page.locator('#login-submit').click();
}

describe('dashboard with the real server', () => {
  let server, context, page, w;

  before(async () => {
    if (!existsSync(join(sourceDir, 'web', 'node_modules', 'chart.js', 'dist', 'chart.umd.min.js')))
      throw new Error('web/node_modules/chart.js is missing: run `npm ci` in web/ (server/bootstrap.sh does it)');
    const data = tempDir('dashboard');
    addUser(data, 'boss', { role: 'supervisor', name: '陈主管', password: PASSWORD });
    addUser(data, 'wang', { role: 'agent', name: '王小明', password: PASSWORD });
    server = await new Server(data, {
      args: ['--rules.dir', join(sourceDir, 'rules'), '--agent.hours', '00:00-24:00'],
    }).start();
    context = await launch({ reducedMotion: 'reduce', viewport: { width: 1440, height: 900 } });
    page = context.pages()[0] || (await context.newPage());
    w = watch(page);
  });

  after(async () => {
    await context?.close();
    await server?.stop();
    cleanupTemp();
  });

  test('complaints over the chat protocol', async () => {
    const origin = await context.newPage();
    await origin.goto(`${server.url}/healthz`);
    for (const c of CHATS) assert.match(await chat(origin, c), /^c-\d+$/);
    await origin.close();
  });

  test('an agent account may not see the dashboard', async () => {
    await page.goto(`${server.url}/dashboard/`);
    await login(page, 'wang');
    await page.locator('#denied-view').waitFor({ state: 'visible' });
    assert.match(await page.locator('#denied-text').textContent(), /王小明/);
    await page.locator('#denied-logout').click();
    await page.locator('#login-view').waitFor({ state: 'visible' });
  });

  test('a supervisor sees the figures and the charts', async () => {
    await login(page, 'boss');
    await page.locator('#app').waitFor({ state: 'visible' });
    await waitUntil(
      () => page.evaluate(() => document.querySelector('[data-kpi="complaints"] [data-value]').dataset.value !== ''),
      'the KPI tiles',
    );
    assert.match(await page.locator('#me').textContent(), /陈主管/);

    // every chart: a Chart.js instance with something drawn on its canvas
    await waitUntil(
      () =>
        page.evaluate((ids) =>
          ids.every((id) => {
            const canvas = document.getElementById(id);
            if (!window.Chart || !window.Chart.getChart(canvas) || !canvas.width || !canvas.height) return false;
            const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) return true;
            return false;
          }),
        CHARTS),
      'every chart drawn',
    );

    // the API with the page's own range and cookie
    const search = await page.evaluate(() => location.search);
    assert.match(search, /^\?from=\d{4}-\d\d-\d\d&to=\d{4}-\d\d-\d\d$/);
    const api = await page.evaluate(async (q) => (await fetch(`/api/dashboard${q}`)).json(), search);
    assert.equal(api.totals.complaints, CHATS.length, JSON.stringify(api.totals));
    assert.ok(api.totals.escalated >= 1, JSON.stringify(api.totals));

    const tiles = await page.evaluate(() =>
      Object.fromEntries(
        Array.from(document.querySelectorAll('[data-kpi]'), (el) => {
          const v = el.querySelector('[data-value]');
          return [el.dataset.kpi, { raw: v.dataset.value, text: v.textContent }];
        }),
      ),
    );
    const want = {
      complaints: [api.totals.complaints, fmt.int(api.totals.complaints)],
      escalation_rate: [api.totals.escalation_rate, fmt.pct(api.totals.escalation_rate)],
      first_contact_resolution_rate: [api.totals.first_contact_resolution_rate,
        fmt.pct(api.totals.first_contact_resolution_rate)],
      ack_compliance: [api.sla.ack.compliance, fmt.pct(api.sla.ack.compliance)],
      resolve_compliance: [api.sla.resolve.compliance, fmt.pct(api.sla.resolve.compliance)],
      csat_avg: [api.satisfaction.csat_avg, fmt.avg(api.satisfaction.csat_avg)],
      nps: [api.satisfaction.nps, fmt.nps(api.satisfaction.nps)],
      followups_pending: [api.followups_pending, fmt.int(api.followups_pending)],
    };
    assert.deepEqual(Object.keys(tiles).sort(), Object.keys(want).sort());
    for (const [key, [raw, text]] of Object.entries(want)) {
      assert.equal(tiles[key].raw, raw === null ? 'null' : String(raw), `tile ${key}`);
      assert.equal(tiles[key].text, text, `tile ${key}`);
    }

    // the top topics table
    const rows = await page.evaluate(() =>
      Array.from(document.querySelectorAll('#topics tr'), (tr) => Array.from(tr.cells, (td) => td.textContent)),
    );
    assert.equal(rows.length, api.top_topics.length);
    assert.ok(rows.length >= 2, JSON.stringify(api.top_topics));
    rows.forEach((r, i) => {
      assert.equal(r[1], api.top_topics[i].label);
      assert.equal(r[2], fmt.int(api.top_topics[i].count));
    });

    // the CSV link: same range, one row per complaint after the BOM and the header
    const href = await page.locator('#export').getAttribute('href');
    assert.equal(href, `/api/dashboard/export.csv${search}`);
    const csv = await page.evaluate(async (u) => {
      const r = await fetch(u);
      return { status: r.status, type: r.headers.get('content-type'), bytes: Array.from(new Uint8Array(await r.arrayBuffer())) };
    }, href);
    assert.equal(csv.status, 200);
    assert.equal(csv.type, 'text/csv; charset=utf-8');
    assert.deepEqual(csv.bytes.slice(0, 3), [0xef, 0xbb, 0xbf]);
    const text = Buffer.from(csv.bytes).toString('utf8');
    assert.equal(text.split('\r\n').filter((l) => l).length, 1 + CHATS.length);

    // a range with nothing in it: zeros, dashes, empty notes, still no error
    await page.locator('#from').fill('2025-01-01');
    await page.locator('#to').fill('2025-01-07');
    await page.locator('#apply').click();
    await waitUntil(
      () => page.evaluate(() => document.querySelector('[data-kpi="complaints"] [data-value]').dataset.value === '0'),
      'the empty range',
    );
    assert.equal(await page.locator('[data-kpi="escalation_rate"] [data-value]').textContent(), '—');
    assert.equal(await page.locator('#topics-empty').isVisible(), true);
    assert.equal(await page.evaluate(() => location.search), '?from=2025-01-01&to=2025-01-07');

    // back to the last 30 days for the picture
    await page.locator('.quick [data-days="30"]').click();
    await waitUntil(
      () => page.evaluate((n) => document.querySelector('[data-kpi="complaints"] [data-value]').dataset.value === String(n), CHATS.length),
      'the 30-day range again',
    );
    assert.equal(await page.locator('.quick [data-days="30"]').getAttribute('aria-pressed'), 'true');
    assert.equal(await page.locator('#error').isVisible(), false);
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true, animations: 'disabled' });
    // the only failed request allowed: GET /api/auth/me before the login (401 by design)
    const errors = w.errors.filter((e) => !/status of 401 \(Unauthorized\)/.test(e));
    assert.deepEqual(errors, []);
    assert.deepEqual(w.dialogs, []);
  });
});
