/*
 * harness.mjs - what the browser tests (widget, agent console) stand on: the real
 * `redress serve` and `redress user add`, Debian's chromium driven by playwright-core, a
 * recorder of WebSocket frames, readers of the widget's shadow DOM, and the hand-off tests'
 * set-up (an agent's desktop and a customer's phone on one server) and widget steps.
 *
 * Environment: REDRESS_BIN (set by ctest, tests/browser.cmake) is the server binary;
 * REDRESS_SOURCE_DIR the repository (default: two levels up); CHROMIUM the browser
 * (default /usr/bin/chromium).  Screenshots go to <repo>/tests/artifacts/.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  throw new Error(`playwright-core is not installed (${e.code || e.message}): run \`npm ci\` in tests/browser (server/bootstrap.sh test does it)`);
}

const here = dirname(fileURLToPath(import.meta.url));
export const sourceDir = process.env.REDRESS_SOURCE_DIR || resolve(here, '..', '..');
export const artifacts = join(sourceDir, 'tests', 'artifacts');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const tmpRoots = [];

/* A fresh temporary directory, removed by cleanupTemp(). */
export function tempDir(prefix) {
  const d = mkdtempSync(join(tmpdir(), `redress-browser-${prefix}-`));
  tmpRoots.push(d);
  return d;
}

export function cleanupTemp() {
  for (const d of tmpRoots.splice(0)) rmSync(d, { recursive: true, force: true });
}

function redressBin() {
  const bin = process.env.REDRESS_BIN;
  if (!bin)
    throw new Error('REDRESS_BIN is not set: run this test through ctest (or set REDRESS_BIN to the redress binary)');
  if (!existsSync(bin)) throw new Error(`REDRESS_BIN=${bin} does not exist`);
  return bin;
}

/*
 * A staff account in dataDir's database, made with `redress user add` (docs/auth.md): the
 * password goes in on stdin.  Throws with the CLI's stderr when it refuses.
 */
export function addUser(dataDir, username, { role = 'agent', name, password }) {
  const args = ['user', 'add', username, `--role=${role}`, '--data.dir', dataDir];
  if (name) args.push(`--name=${name}`);
  const r = spawnSync(redressBin(), args, { input: `${password}\n`, encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0)
    throw new Error(`redress user add ${username} exited with ${r.status ?? r.signal}:\n${r.stderr}`);
  if (/AddressSanitizer|LeakSanitizer|runtime error:/.test(r.stderr))
    throw new Error(`sanitizer report from redress user add:\n${r.stderr}`);
}

/*
 * The real server.  start() resolves once it printed "listening on http://HOST:PORT";
 * stop() sends SIGTERM to its pid and checks that it exited with 0 and without a
 * sanitizer report.  options.args: more settings for `redress serve` (e.g. --rules.dir).
 */
export class Server {
  constructor(dataDir, options = {}) {
    this.dataDir = dataDir;
    this.args = options.args || [];
    this.port = 0;
    this.proc = null;
    this.stderr = '';
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0) {
    const args = ['serve', '--listen.port', String(port), '--data.dir', this.dataDir,
      '--web.root', join(sourceDir, 'web'), ...this.args];
    const proc = spawn(redressBin(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.stderr = '';
    proc.stderr.on('data', (d) => (this.stderr += d));
    let out = '';
    this.port = await new Promise((resolvePort, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${this.stderr}`)), 30000);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = /listening on http:\/\/[^:\s]+:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolvePort(Number(m[1]));
        }
      });
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code} before listening:\n${this.stderr}`));
      });
    });
    return this;
  }

  async stop() {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (proc.exitCode !== null) throw new Error(`server had already exited with ${proc.exitCode}:\n${this.stderr}`);
    const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
    process.kill(proc.pid, 'SIGTERM');
    const { code, signal } = await exited;
    if (code !== 0) throw new Error(`server exited with code ${code} signal ${signal}:\n${this.stderr}`);
    if (/AddressSanitizer|LeakSanitizer|runtime error:/.test(this.stderr))
      throw new Error(`sanitizer report from the server:\n${this.stderr}`);
  }
}

/* A browser context with its own fresh user-data-dir. */
export async function launch(options = {}) {
  if (!existsSync(chromiumPath))
    throw new Error(`${chromiumPath} not found: install Debian's chromium (apt-get install chromium)`);
  const context = await chromium.launchPersistentContext(tempDir('profile'), {
    executablePath: chromiumPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
    ...options,
  });
  context.setDefaultTimeout(20000);
  return context;
}

/*
 * Watches a page: its WebSocket frames (parsed, with direction), page errors, console errors
 * (a CSP violation shows up there), and dialogs (none may open).
 */
export function watch(page) {
  const w = { frames: [], errors: [], dialogs: [] };
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => w.frames.push({ dir: 'out', ...JSON.parse(f.payload) }));
    ws.on('framereceived', (f) => w.frames.push({ dir: 'in', ...JSON.parse(f.payload) }));
  });
  page.on('pageerror', (e) => w.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') w.errors.push(`console: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    w.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  w.sent = (type) => w.frames.filter((f) => f.dir === 'out' && (!type || f.type === type));
  w.received = (type) => w.frames.filter((f) => f.dir === 'in' && (!type || f.type === type));
  return w;
}

/* Polls fn (in node) until it returns a truthy value; fails with `what` after timeoutMs. */
export async function waitUntil(fn, what, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/*
 * The transcript as the customer sees it: one entry per row of the log, in screen order.
 * kind: bot | agent | customer | note | record; text: the message text (screen-reader
 * prefix left out); seq (null while unacknowledged); state (customer rows); id.
 */
export function transcript(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-redress-widget]').shadowRoot;
    return Array.from(root.querySelectorAll('.log > .row'), (row) => {
      const kind = row.classList.contains('msg')
        ? ['bot', 'agent', 'customer', 'system'].find((k) => row.classList.contains(`msg-${k}`))
        : row.classList.contains('record')
          ? 'record'
          : 'note';
      const bubble = row.querySelector('.bubble');
      const text = bubble
        ? Array.from(bubble.childNodes).filter((n) => n.nodeType === 3).map((n) => n.data).join('')
        : row.querySelector('.note-text, .record-card')?.textContent ?? '';
      return {
        kind,
        text,
        seq: row.dataset.seq ? Number(row.dataset.seq) : null,
        state: row.dataset.state || null,
        id: row.dataset.id || null,
      };
    });
  });
}

/* The widget's host element; evaluate((host, arg) => ...) reaches host.shadowRoot. */
export function widgetHost(page) {
  return page.locator('[data-redress-widget]');
}

export async function screenshot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), animations: 'disabled' });
}

/*
 * The hand-off tests' set-up: a server with the shipped rules and agents on duty around the
 * clock, agentUser added as an agent, and two browsers: the agent's desktop (1280x800) and the
 * customer's phone (375x667, touch).  Returns { server, agentCtx, custCtx, agent, cust, aw, cw,
 * close() } (aw and cw: watch() of the two pages); close() closes both and stops the server.
 */
export async function agentAndCustomer(agentUser) {
  const data = tempDir('data');
  addUser(data, agentUser.username, { role: 'agent', name: agentUser.name, password: agentUser.password });
  const rig = {};
  rig.server = await new Server(data, {
    args: ['--rules.dir', join(sourceDir, 'rules'), '--agent.hours', '00:00-24:00'],
  }).start();
  rig.agentCtx = await launch({ viewport: { width: 1280, height: 800 } });
  rig.agent = rig.agentCtx.pages()[0] || (await rig.agentCtx.newPage());
  rig.aw = watch(rig.agent);
  rig.custCtx = await launch({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  rig.cust = rig.custCtx.pages()[0] || (await rig.custCtx.newPage());
  rig.cw = watch(rig.cust);
  rig.close = async () => {
    await rig.agentCtx?.close();
    await rig.custCtx?.close();
    await rig.server?.stop();
  };
  return rig;
}

/*
 * The customer's side of the widget on the page pageOf() returns (a function, so that a test
 * can build its helpers before its before() hook opened the page): rows() is the transcript,
 * waitRow(pred, what) waits for a row, say(text) types a message and resolves on its ack.
 */
export function widgetDriver(pageOf) {
  const rows = () => transcript(pageOf());
  const waitRow = (pred, what) => waitUntil(async () => (await rows()).find(pred), what);
  async function say(text) {
    await pageOf().locator('#rdw-input').fill(text);
    await pageOf().locator('#rdw-input').press('Enter');
    return waitRow((r) => r.kind === 'customer' && r.text === text && r.state === 'delivered', `the ack of "${text}"`);
  }
  return { rows, waitRow, say };
}

/*
 * Opens the widget on the server's home page (tapping the launcher), waits for the greeting,
 * says complaint and waits for the bot's answer to it.  Returns the conversation name from the
 * welcome frame (w: watch() of the page).
 */
export async function openAndComplain(page, w, url, complaint) {
  const { rows, waitRow, say } = widgetDriver(() => page);
  await page.goto(`${url}/`);
  await page.locator('.launcher').waitFor({ state: 'visible' });
  await page.locator('.launcher').tap();
  await page.locator('.panel').waitFor({ state: 'visible' });
  await waitRow((r) => r.kind === 'bot', 'the greeting');
  const conversation = w.received('welcome')[0].conversation;
  await say(complaint);
  await waitUntil(async () => {
    const r = await rows();
    const i = r.findIndex((x) => x.kind === 'customer' && x.text === complaint);
    return i >= 0 && r.slice(i + 1).some((x) => x.kind === 'bot');
  }, 'the bot answering the complaint');
  return conversation;
}
