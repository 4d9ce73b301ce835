// End to end: the real `volley demo` (gateway + demo connector) and Debian's
// Chromium driven by playwright-core. Screenshots go to ../test-artifacts/web/.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { DEFAULTS } from '../src/client.js';
import {
  ensureArtifactsDir, execFileAsync, missingBinaryReason, repoRoot, startConnector, startDemo, startGateway, volleyBin, waitFor, webRoot,
} from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
/** How long the live ticker is watched for growth. */
const LIVE_WATCH_MS = 3_000;
/** How long a live dataset is watched in the explore view (heap test). */
const LIVE_EXPLORE_WATCH_MS = 30_000;
/** Heap samples (after a forced GC) every … */
const HEAP_SAMPLE_MS = 2_000;
/** The page's main-thread JS heap after 30 s of a live explore view stays under this. */
const HEAP_BOUND_MB = 64;
/** … and grows less than this over the last 10 s. */
const HEAP_GROWTH_LAST_10S_MB = 2;
/** The second page of the latency-truth test joins the live stream this long after the first. */
const LATE_JOIN_AFTER_MS = 10_000;
/**
 * Relay p99 must stay under 10 × p50 + this (µs). Measured: p50 about 0.2 ms,
 * p99 0.2–4 ms on an idle 2-core machine, 29 and 164 ms in two of six runs while
 * other builds loaded it
 * (with ~18 samples p99 is their max, so one delayed frame sets it). A
 * replayed frame timed from its arrival would be 1–10 s old.
 */
const RELAY_P99_SLACK_US = 250_000;
/** Rows of the Parquet dataset the explore test loads. */
const BIG_ROWS = 200_000;
/**
 * Writes a seeded Parquet file of argv[2] rows to argv[1] (region: five
 * Spanish regions, unevenly; id; amount; qty) and prints what pyarrow says a
 * sort and a filter of it give.
 */
const BIG_PARQUET_PY = `
import json, random, sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
path, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
regions = ['Norte', 'Sur', 'Este', 'Oeste', 'Centro']
table = pa.table({
    'region': rng.choices(regions, weights=[30, 25, 20, 15, 10], k=n),
    'id': pa.array(range(n), pa.int64()),
    'amount': pa.array([round(rng.uniform(-500, 5000), 2) for _ in range(n)], pa.float64()),
    'qty': pa.array([rng.randint(1, 40) for _ in range(n)], pa.int32()),
})
pq.write_table(table, path, row_group_size=20000)
t = pq.read_table(path)
norte = t.filter(pc.equal(t['region'], 'Norte'))
print(json.dumps({
    'rows': t.num_rows,
    'top_amounts': sorted(t['amount'].to_pylist(), reverse=True)[:3],
    'norte_rows': norte.num_rows,
    'norte_top_amount': pc.max(norte['amount']).as_py(),
}))
`;

const skip = missingBinaryReason()
  ?? (existsSync(CHROMIUM) ? null : `${CHROMIUM} not found (apt-get install chromium)`)
  ?? (existsSync(path.join(webRoot, 'dist', 'index.html')) ? null : 'web/dist is not built (npm run build)');

/**
 * Count painted pixels of a canvas, and those close to an RGB colour.
 * @param {import('playwright-core').Page} page
 * @param {string} selector  a canvas
 * @param {[number, number, number]} rgb
 */
function canvasInk(page, selector, rgb) {
  return page.evaluate(([sel, [r, g, b]]) => {
    const canvas = /** @type {HTMLCanvasElement|null} */ (document.querySelector(sel));
    if (!canvas || canvas.width === 0 || canvas.height === 0) return { painted: 0, colour: 0 };
    const data = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')).getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    let colour = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue;
      painted += 1;
      if (Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40 && Math.abs(data[i + 2] - b) < 40 && data[i + 3] > 128) colour += 1;
    }
    return { painted, colour };
  }, /** @type {const} */ ([selector, rgb]));
}

describe('dashboard against the real volley demo', { skip: skip ?? false }, () => {
  /** @type {import('./helpers.mjs').Demo} */
  let demo;
  /** @type {import('playwright-core').BrowserContext} */
  let context;
  /** @type {string} */
  let profileDir;
  const artifacts = ensureArtifactsDir();
  /** Messages from the page, printed when a test fails. */
  const pageLog = [];

  before(async () => {
    demo = await startDemo();
    profileDir = mkdtempSync(path.join(os.tmpdir(), 'volley-chromium-'));
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: CHROMIUM_ARGS,
    });
  });

  after(async () => {
    await context?.close();
    await demo?.stop();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  });

  /** @param {string} url */
  async function open(url) {
    const page = await context.newPage();
    page.on('console', (m) => pageLog.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
    await page.goto(url);
    return page;
  }

  /** @param {import('playwright-core').Page} page */
  const rowCount = async (page) => Number(await page.textContent('[data-testid=row-count]'));

  /** Rows loaded in the explore view's Perspective table (-1: none yet). @param {import('playwright-core').Page} page */
  const exploreRowCount = async (page) => Number(await page.getAttribute('[data-testid=explore-row-count]', 'data-rows'));

  /** @param {import('playwright-core').Page} page @param {string} name */
  async function openDataset(page, name) {
    await page.click(`[data-testid=dataset][data-name="${name}"]`);
    await waitFor(async () => (await page.textContent('#dataset-title')) === name, { what: `${name} opened` });
  }

  const context_ = () => `\n--- page ---\n${pageLog.slice(-30).join('\n')}\n--- demo ---\n${demo?.log().slice(-4000)}`;

  it('loads with the token and lists the demo datasets', async () => {
    const page = await open(demo.url);
    try {
      await page.waitForSelector('[data-testid=dataset]', { timeout: 15_000 });
      const names = await page.$$eval('[data-testid=dataset]', (els) => els.map((e) => /** @type {HTMLElement} */ (e).dataset.name));
      assert.ok(names.includes('ventas'), `datasets ${names}`);
      assert.ok(names.includes('ticker'), `datasets ${names}`);
      const tickerLive = await page.getAttribute('[data-testid=dataset][data-name="ticker"]', 'data-live');
      assert.equal(tickerLive, 'true', 'ticker is marked live');
      // The first dataset opens on its own: the first screen shows data.
      await waitFor(async () => (await rowCount(page)) > 0, { what: 'first dataset shows rows' });
      await page.screenshot({ path: path.join(artifacts, 'first-screen.png'), fullPage: true });
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'first-screen-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}`);
    } finally {
      await page.close();
    }
  });

  it('keeps the session token out of the address bar and masked, and a reload reconnects', async () => {
    const page = await open(demo.url);
    try {
      await page.waitForSelector('[data-testid=dataset]', { timeout: 15_000 });
      assert.ok(new URL(demo.url).searchParams.has('session'), `the demo link carries the token: ${demo.url}`);
      const shown = new URL(page.url());
      assert.equal(shown.searchParams.has('session'), false, `the token is still in the address bar: ${page.url()}`);
      assert.equal(await page.getAttribute('#session-input', 'type'), 'password', 'the token is masked in the header');
      await page.reload();
      await page.waitForSelector('[data-testid=dataset]', { timeout: 15_000 });
      assert.equal(new URL(page.url()).searchParams.has('session'), false, 'a reload does not put it back');
    } catch (e) {
      throw new Error(`${e}${context_()}`);
    } finally {
      await page.close();
    }
  });

  it('fits a 390 px phone without horizontal scrolling, and follows a dark colour scheme: overview, explore and latency (screenshots of each)', async () => {
    /** @param {import('playwright-core').Page} page */
    const pageBackground = (page) => page.evaluate(() => {
      const [r, g, b] = getComputedStyle(document.documentElement).backgroundColor.match(/\d+/g).map(Number);
      // Relative luminance, roughly: 0 black, 255 white.
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    });
    for (const scheme of ['light', 'dark']) {
      for (const [name, width] of [['desktop', 1280], ['phone', 390]]) {
        const page = await context.newPage();
        page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
        try {
          await page.emulateMedia({ colorScheme: /** @type {'light'|'dark'} */ (scheme) });
          await page.setViewportSize({ width, height: 850 });
          await page.goto(demo.url);
          await page.waitForSelector('[data-testid=dataset]', { timeout: 15_000 });
          await waitFor(async () => (await rowCount(page)) > 0, { what: `${scheme} ${name}: first dataset shows rows` });
          const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
          assert.ok(scrollWidth <= width, `${scheme} ${name}: the page is ${scrollWidth} px wide in a ${width} px window`);
          const luminance = await pageBackground(page);
          if (scheme === 'dark') assert.ok(luminance < 60, `dark scheme, ${name}: page background luminance ${luminance}`);
          else assert.ok(luminance > 200, `light scheme, ${name}: page background luminance ${luminance}`);
          await page.screenshot({ path: path.join(artifacts, `overview-${scheme}-${name}.png`), fullPage: true });
          await page.click('[data-testid=tab-explore]');
          await waitFor(async () => (await page.getAttribute('[data-testid=explore]', 'data-state')) === 'ready' && (await exploreRowCount(page)) > 0, {
            timeoutMs: 30_000, what: `${scheme} ${name}: the explore view ready`,
          });
          await page.waitForTimeout(500); // the grid paints after the view is ready
          const exploreWidth = await page.evaluate(() => document.documentElement.scrollWidth);
          assert.ok(exploreWidth <= width, `${scheme} ${name}: the explore view is ${exploreWidth} px wide in a ${width} px window`);
          await page.screenshot({ path: path.join(artifacts, `explore-${scheme}-${name}.png`), fullPage: true });
          await page.goto(new URL('latency', demo.url).href);
          await page.waitForSelector('[data-testid=latency-chart] canvas', { timeout: 15_000 });
          const latencyWidth = await page.evaluate(() => document.documentElement.scrollWidth);
          assert.ok(latencyWidth <= width, `${scheme} ${name}: the latency page is ${latencyWidth} px wide in a ${width} px window`);
          await page.screenshot({ path: path.join(artifacts, `latency-${scheme}-${name}.png`), fullPage: true });
        } catch (e) {
          await page.screenshot({ path: path.join(artifacts, `layout-${scheme}-${name}-failed.png`), fullPage: true });
          throw new Error(`${e}${context_()}`);
        } finally {
          await page.close();
        }
      }
    }
  });

  it('a connector that comes online shows its dataset without a reload, and leaves the list when it goes', async () => {
    const page = await open(demo.url);
    /** @type {import('node:child_process').ChildProcess|undefined} */
    let extra;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'volley-extra-connector-'));
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="ventas"]', { timeout: 15_000 });
      const names = () => page.$$eval('[data-testid=dataset]', (els) => els.map((e) => /** @type {HTMLElement} */ (e).dataset.name));
      assert.ok(!(await names()).includes('extra'), 'no extra dataset before its connector');
      const secret = demo.log().match(/^secret: (\S+)$/m)?.[1];
      const tenant = demo.log().match(/^tenant: (\S+)$/m)?.[1];
      assert.ok(secret && tenant, `the demo printed no secret/tenant${context_()}`);
      const { stdout: token } = await execFileAsync(volleyBin, ['token', '--connector', '--tenant', tenant], { env: { ...process.env, VOLLEY_SECRET: secret } });
      writeFileSync(path.join(dir, 'extra.csv'), 'n,label\n1,one\n2,two\n');
      writeFileSync(path.join(dir, 'connector.yaml'), JSON.stringify({
        gateway: { uri: new URL('/ws/connect', demo.url.replace(/^http/, 'ws')).href },
        tenant: { id: tenant, token: token.trim() },
        datasets: { extra: { type: 'csv', path: path.join(dir, 'extra.csv') } },
      }));
      extra = spawn(volleyBin, ['connector', '--config', path.join(dir, 'connector.yaml')], { stdio: 'ignore' });
      await waitFor(async () => (await names()).includes('extra'), { timeoutMs: 10_000, what: 'the extra dataset listed without a reload' });
      extra.kill('SIGKILL');
      await waitFor(async () => !(await names()).includes('extra'), { timeoutMs: 15_000, what: 'the extra dataset gone with its connector' });
      assert.ok((await names()).includes('ventas'), 'the demo connector\'s datasets stay');
    } catch (e) {
      throw new Error(`${e}${context_()}`);
    } finally {
      extra?.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      await page.close();
    }
  });

  it('an empty dataset list says why: nothing online that the session may read, or nothing it may read', async () => {
    const secret = demo.log().match(/^secret: (\S+)$/m)?.[1];
    const tenant = demo.log().match(/^tenant: (\S+)$/m)?.[1];
    assert.ok(secret && tenant, `the demo printed no secret/tenant${context_()}`);
    const base64url = (/** @type {string|Buffer} */ data) => Buffer.from(data).toString('base64url');
    /** An HS256 session token with these `permisos`, signed with the demo's secret. @param {string[]} permisos */
    const token = (permisos) => {
      const now = Math.floor(Date.now() / 1000);
      const head = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
      const body = base64url(JSON.stringify({ sub: 'e2e', cuenta_id: tenant, edge_id: '', permisos, jti: `e2e-${permisos.length}`, iat: now, exp: now + 600 }));
      const signature = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
      return `${head}.${body}.${signature}`;
    };
    for (const [permisos, expected] of [
      [['nope'], 'No connector serving your datasets is online right now'],
      [[], 'this session may read no dataset'],
    ]) {
      const url = new URL(demo.url);
      url.searchParams.set('session', token(/** @type {string[]} */ (permisos)));
      const page = await open(url.href);
      try {
        await waitFor(async () => ((await page.textContent('[data-testid=status]')) ?? '').includes(/** @type {string} */ (expected)), {
          what: `status for permisos ${JSON.stringify(permisos)}`,
        });
      } catch (e) {
        throw new Error(`${e}: ${await page.textContent('[data-testid=status]')}${context_()}`);
      } finally {
        await page.close();
      }
    }
  });

  it('ventas: renders a chart and the exact row count', async () => {
    const page = await open(demo.url);
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="ventas"]', { timeout: 15_000 });
      await openDataset(page, 'ventas');
      await waitFor(async () => (await page.getAttribute('.content', 'data-phase')) === 'done', { timeoutMs: 30_000, what: 'ventas query done' });
      const shown = await rowCount(page);
      let expected = demo.datasetRows.get('ventas');
      if (expected === undefined) {
        // The demo did not print `dataset ventas: N rows`: fall back to flight_info's total.
        const total = (await page.textContent('#row-total'))?.match(/(\d+)/);
        expected = total ? Number(total[1]) : undefined;
      }
      assert.ok(expected !== undefined && expected > 0, `no expected row count (demo printed no "dataset ventas: N rows" line)${context_()}`);
      assert.equal(shown, expected, 'row-count equals the rows the demo reports');
      const points = Number(await page.getAttribute('[data-testid=chart] canvas', 'data-points'));
      assert.ok(points > 1, `chart has points (${points})`);
      const ink = await canvasInk(page, '[data-testid=chart] canvas', [47, 111, 237]);
      assert.ok(ink.colour > 500, `chart line drawn (${JSON.stringify(ink)})`);
      const tableRows = await page.$$eval('[data-testid=table] tbody tr', (rows) => rows.length);
      assert.equal(tableRows, Math.min(20, expected));
      await page.screenshot({ path: path.join(artifacts, 'ventas.png'), fullPage: true });
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'ventas-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}`);
    } finally {
      await page.close();
    }
  });

  it('a failed query takes the previous chart and rows off the page and says what happened', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'volley-broken-'));
    const csv = path.join(dir, 'broken.csv');
    writeFileSync(csv, 'n,label\n1,one\n2,two\n');
    const connector = await startConnector(demo, dir, { broken: { type: 'csv', path: csv } });
    const page = await open(demo.url);
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="broken"]', { timeout: 15_000 });
      await openDataset(page, 'ventas');
      await waitFor(async () => (await page.getAttribute('.content', 'data-phase')) === 'done', { timeoutMs: 30_000, what: 'ventas query done' });
      assert.ok(Number(await page.getAttribute('[data-testid=chart] canvas', 'data-points')) > 1, 'ventas drew a chart first');
      // The file goes away after the connector listed it: the query fails with source_error.
      rmSync(csv);
      await openDataset(page, 'broken');
      await waitFor(async () => (await page.getAttribute('.content', 'data-phase')) === 'error', { what: 'the broken query failed' });
      const points = Number(await page.getAttribute('[data-testid=chart] canvas', 'data-points') ?? 0);
      assert.equal(points, 0, 'ventas\' chart points are gone');
      const ink = await canvasInk(page, '[data-testid=chart] canvas', [47, 111, 237]);
      assert.equal(ink.colour, 0, `no chart line stays under the new title (${JSON.stringify(ink)})`);
      assert.equal(await page.$$eval('[data-testid=table] tbody tr', (rows) => rows.length), 0, 'no ventas rows stay in the table');
      assert.match((await page.textContent('[data-testid=chart-empty]')) ?? '', /No data from “broken”/);
      assert.ok(await page.isVisible('[data-testid=chart-empty]'), 'the chart says why it is empty');
      assert.equal(await page.getAttribute('[data-testid=status]', 'data-code'), 'source_error');
      const status = (await page.textContent('[data-testid=status]')) ?? '';
      assert.match(status, /could not read “broken”.*Try again later/, `the status says what happened and what to do: ${status}`);
      await page.screenshot({ path: path.join(artifacts, 'failed-query.png'), fullPage: true });
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'failed-query-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}\n--- connector ---\n${connector.log()}`);
    } finally {
      connector.kill();
      rmSync(dir, { recursive: true, force: true });
      await page.close();
    }
  });

  it('ventas through a compressing gateway: the page decodes zstd', async () => {
    const squeezed = await startDemo(['--compression', 'zstd,lz4']);
    const page = await open(squeezed.url);
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="ventas"]', { timeout: 15_000 });
      await openDataset(page, 'ventas');
      await waitFor(async () => (await page.getAttribute('.content', 'data-phase')) === 'done', { timeoutMs: 30_000, what: 'ventas query done' });
      assert.equal(await rowCount(page), squeezed.datasetRows.get('ventas'), 'every row decoded in the page');
      const status = (await page.textContent('[data-testid=status]')) ?? '';
      assert.match(status, /zstd-compressed/, 'the stream was zstd-compressed');
    } catch (e) {
      throw new Error(`${e}\n--- page ---\n${pageLog.slice(-30).join('\n')}\n--- demo ---\n${squeezed.log().slice(-4000)}`);
    } finally {
      await page.close();
      await squeezed.stop();
    }
  });

  it('ticker: the live row count grows', async () => {
    const page = await open(demo.url);
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="ticker"]', { timeout: 15_000 });
      await openDataset(page, 'ticker');
      const first = await waitFor(async () => rowCount(page), { what: 'first live rows' });
      await page.waitForTimeout(LIVE_WATCH_MS);
      const second = await rowCount(page);
      assert.ok(second > first, `live row count grew: ${first} → ${second}`);
      const ink = await canvasInk(page, '[data-testid=chart] canvas', [47, 111, 237]);
      assert.ok(ink.colour > 300, `live chart drawn (${JSON.stringify(ink)})`);
      await page.screenshot({ path: path.join(artifacts, 'ticker.png'), fullPage: true });
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'ticker-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}`);
    } finally {
      await page.close();
    }
  });

  /**
   * A CSV that keeps growing (two rows every 200 ms, whether or not a
   * connector reads it), served live by a separate `volley connector` of
   * `server` (a demo or a bare gateway).
   * @param {{base: string, secret?: string, tenant?: string, log: () => string}} server
   */
  async function liveFeed(server) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'volley-feed-'));
    const csv = path.join(dir, 'feed.csv');
    let tick = 0;
    const line = () => `${new Date().toISOString().slice(0, 19)},${(tick += 1)}\n`;
    writeFileSync(csv, `ts,n\n${line()}`);
    const appender = setInterval(() => appendFileSync(csv, line() + line()), 200);
    const connector = await startConnector(/** @type {any} */ (server), dir, { feed: { type: 'csv', path: csv, live: { follow: true, poll_ms: 100 } } });
    return {
      connector,
      done: () => {
        clearInterval(appender);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  /**
   * Open `feed` and wait until its live row count grows.
   * @param {import('playwright-core').Page} page
   */
  async function followFeed(page) {
    await page.waitForSelector('[data-testid=dataset][data-name="feed"]', { timeout: 15_000 });
    await openDataset(page, 'feed');
    await page.evaluate(() => { /** @type {any} */ (window).notReloaded = true; });
    const before = await waitFor(async () => rowCount(page), { what: 'first feed rows' });
    await waitFor(async () => (await rowCount(page)) > before, { what: 'feed rows grow' });
  }

  for (const signal of /** @type {const} */ (['SIGKILL', 'SIGTERM'])) {
    it(`a live view waits while its connector is gone (${signal}) and resumes by itself when it is back`, async () => {
      const feed = await liveFeed(demo);
      let { connector } = feed;
      const page = await open(demo.url);
      try {
        await followFeed(page);
        // SIGKILL: a crash, the tunnel just closes. SIGTERM: a clean stop, the
        // connector ends its streams without an error (PROTOCOL.md §5.3).
        await connector.stop(signal);
        await waitFor(async () => (await page.getAttribute('[data-testid=status]', 'data-code')) === 'live_waiting', {
          timeoutMs: 10_000, what: `the waiting message after the connector got ${signal} (a gateway with live_waiting, PROTOCOL.md §5.3)`,
        });
        assert.match((await page.textContent('[data-testid=status]')) ?? '', /went away; this view resumes by itself when it is back/);
        await page.screenshot({ path: path.join(artifacts, `live-waiting-${signal.toLowerCase()}.png`), fullPage: true });

        connector = connector.restart();
        await waitFor(async () => (await page.getAttribute('.content', 'data-phase')) === 'live', { timeoutMs: 20_000, what: 'the view follows feed again' });
        const resumed = await waitFor(async () => rowCount(page), { timeoutMs: 20_000, what: 'rows after resuming' });
        await waitFor(async () => (await rowCount(page)) > resumed, { timeoutMs: 20_000, what: 'the live row count grows again' });
        assert.equal(await page.evaluate(() => /** @type {any} */ (window).notReloaded), true, 'the page was not reloaded');
        assert.match((await page.textContent('[data-testid=status]')) ?? '', /is back; following it again/);
      } catch (e) {
        await page.screenshot({ path: path.join(artifacts, `live-resume-${signal.toLowerCase()}-failed.png`), fullPage: true });
        throw new Error(`${e}\nstatus: ${await page.textContent('[data-testid=status]')}${context_()}\n--- connector ---\n${connector.log()}`);
      } finally {
        connector.kill();
        feed.done();
        await page.close();
      }
    });
  }

  it('a live view resumes by itself after the gateway restarts: the client reconnects and re-subscribes', async (t) => {
    const gateway = await startGateway();
    const feed = await liveFeed(gateway);
    const page = await open(await gateway.sessionUrl());
    try {
      await followFeed(page);
      const downMs = await gateway.restart('SIGTERM');
      const upAt = Date.now();
      // client.js DEFAULTS: the reconnect delay starts at reconnectDelayInitialMs
      // (250 ms) and doubles per failed attempt (at most reconnectDelayMaxMs,
      // 10 s), the delay waited being between half of it and all of it. An
      // attempt that failed while the gateway was down for downMs began at
      // least 125 × (2^k − 1) ms after the drop, so the delay pending when the
      // gateway answers again is at most 2 × downMs + 250 ms.
      const { reconnectDelayInitialMs, reconnectDelayMaxMs } = DEFAULTS;
      const reconnectDelayMs = Math.min(reconnectDelayMaxMs, 2 * downMs + reconnectDelayInitialMs);
      const boundMs = 2 * reconnectDelayMs + 2_000;
      await waitFor(async () => /is back; following it again/.test((await page.textContent('[data-testid=status]')) ?? ''), {
        timeoutMs: boundMs, intervalMs: 50, what: `the view following feed again within 2 × ${reconnectDelayMs} + 2000 ms of the gateway answering (it was down ${downMs} ms)`,
      });
      const resumed = await rowCount(page);
      await waitFor(async () => (await rowCount(page)) > resumed, {
        timeoutMs: Math.max(50, upAt + boundMs - Date.now()), intervalMs: 50, what: `the live row count growing again within ${boundMs} ms of the gateway answering`,
      });
      const tookMs = Date.now() - upAt;
      assert.equal(await page.evaluate(() => /** @type {any} */ (window).notReloaded), true, 'the page was not reloaded');
      t.diagnostic(`gateway restart: down ${downMs} ms, rows growing again ${tookMs} ms after it answered (bound ${boundMs} ms)`);
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'live-gateway-restart-failed.png'), fullPage: true });
      throw new Error(`${e}\nstatus: ${await page.textContent('[data-testid=status]')}${context_()}\n--- gateway ---\n${gateway.log().slice(-4000)}\n--- connector ---\n${feed.connector.log()}`);
    } finally {
      feed.connector.kill();
      feed.done();
      await page.close();
      await gateway.stop();
    }
  });
  it('explore (Perspective): the grid holds every row of ventas, a group-by works, and ticker\'s table grows', async () => {
    const page = await open(demo.url);
    /** Rows of the `<perspective-viewer>`'s own table and of its current view. */
    const viewerRows = () => page.evaluate(async () => {
      const viewer = /** @type {any} */ (document.querySelector('perspective-viewer'));
      if (!viewer) return null;
      const table = await viewer.getTable();
      const view = await viewer.getView();
      return { table: await table.size(), view: await view.num_rows() };
    });
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="ventas"]', { timeout: 15_000 });
      await openDataset(page, 'ventas');
      await waitFor(async () => (await page.getAttribute('.content', 'data-phase')) === 'done', { timeoutMs: 30_000, what: 'ventas query done' });
      const loadedBefore = await page.evaluate(() => performance.getEntriesByType('resource').map((r) => r.name).filter((n) => /perspective|explore/.test(n)));
      assert.deepEqual(loadedBefore, [], 'Perspective is not loaded before the explore view is opened');
      const started = Date.now();
      await page.click('[data-testid=tab-explore]');
      await waitFor(async () => (await page.getAttribute('[data-testid=explore]', 'data-state')) === 'ready', { timeoutMs: 30_000, what: 'the explore view ready' });
      const expected = demo.datasetRows.get('ventas');
      assert.ok(expected, 'the demo printed "dataset ventas: N rows"');
      const rows = await waitFor(async () => {
        const r = await viewerRows();
        return r && r.table === expected ? r : null;
      }, { what: `the Perspective table holds ${expected} rows` });
      assert.equal(rows.view, expected, 'the grid shows every row');
      await waitFor(async () => exploreRowCount(page).then((n) => n === expected), { what: `explore-row-count says ${expected}` });
      assert.equal(await page.textContent('[data-testid=explore-row-count]'), expected.toLocaleString('en'));
      assert.equal(await page.textContent('[data-testid=explore-rows]'), expected.toLocaleString('en'));
      assert.ok(await page.isVisible('[data-testid=explore] [data-testid=perspective-viewer]'), 'the grid is inside the explore view');
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      await page.screenshot({ path: path.join(artifacts, 'explore-ventas.png'), fullPage: true });

      // Group by region: one row per region plus the total.
      await page.selectOption('[data-testid=explore-group]', 'region');
      const grouped = await waitFor(async () => {
        const r = await viewerRows();
        return r && r.view < expected ? r : null;
      }, { what: 'the grouped view' });
      const regions = await page.evaluate(async () => {
        const view = await /** @type {any} */ (document.querySelector('perspective-viewer')).getView();
        const columns = await view.to_columns();
        return columns.__ROW_PATH__.filter((/** @type {any[]} */ p) => p.length === 1).map((/** @type {any[]} */ p) => p[0]);
      });
      assert.deepEqual([...regions].sort(), ['Centro', 'Este', 'Norte', 'Oeste', 'Sur'], `group-by rows: ${JSON.stringify(regions)}`);
      assert.equal(grouped.view, regions.length + 1, 'one row per region and the total');
      await page.selectOption('[data-testid=explore-plugin]', 'Y Bar');
      await page.waitForSelector('perspective-viewer-d3fc-ybar', { state: 'attached', timeout: 15_000 });
      await page.waitForTimeout(1_000);
      await page.screenshot({ path: path.join(artifacts, 'explore-ventas-bars.png'), fullPage: true });

      // A live dataset's explore table grows as rows arrive.
      await openDataset(page, 'ticker');
      await waitFor(async () => (await page.getAttribute('[data-testid=explore]', 'data-state')) === 'ready', { timeoutMs: 30_000, what: 'ticker in the explore view' });
      const first = await waitFor(async () => (await viewerRows())?.table, { what: 'ticker rows in Perspective' });
      const grown = await waitFor(async () => {
        const r = await viewerRows();
        return r && r.table > first ? r.table : null;
      }, { timeoutMs: 10_000, what: 'the live explore table grows' });
      assert.ok(grown > first, `ticker in Perspective: ${first} → ${grown}`);
      assert.match((await page.textContent('[data-testid=explore-note]')) ?? '', /keeps the newest 10,000 rows/);
      await page.screenshot({ path: path.join(artifacts, 'explore-ticker.png'), fullPage: true });
      pageLog.push(`explore opened in ${seconds} s`);
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'explore-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}`);
    } finally {
      await page.close();
    }
  });

  it('explore: a 200,000-row Parquet dataset loads whole, sorts, filters and exports as pyarrow counts it', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'volley-big-'));
    const parquet = path.join(dir, 'big.parquet');
    // 200,000 rows (seeded, so every run is the same data), 10 row groups;
    // pyarrow also says what a sort and a filter must give.
    const { stdout } = await execFileAsync('python3', ['-c', BIG_PARQUET_PY, parquet, String(BIG_ROWS)], { maxBuffer: 1 << 20 });
    const truth = JSON.parse(stdout);
    const connector = await startConnector(demo, dir, { big: { type: 'parquet', path: parquet } });
    const page = await open(demo.url);
    /** @param {string} script  run in the page with `viewer` and `view` (the viewer's current view) */
    const onView = (script) => page.evaluate(`(async () => {
      const viewer = document.querySelector('[data-testid=explore] perspective-viewer');
      const view = await viewer.getView();
      ${script}
    })()`);
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="big"]', { timeout: 15_000 });
      // Perspective loads with the first dataset (the demo's, opened on its own)…
      const tabAt = Date.now();
      await page.click('[data-testid=tab-explore]');
      await waitFor(async () => (await page.getAttribute('[data-testid=explore]', 'data-state')) === 'ready', { timeoutMs: 30_000, what: 'the explore view ready' });
      const perspectiveReadyMs = Date.now() - tabAt;
      // …then the big dataset streams into it, timed from the click.
      const clickAt = Date.now();
      await page.click('[data-testid=dataset][data-name="big"]');
      await waitFor(async () => (await page.textContent('#dataset-title')) === 'big' && (await exploreRowCount(page)) > 0, {
        timeoutMs: 60_000, intervalMs: 20, what: 'the first rows of big in the explore view',
      });
      const firstRowsMs = Date.now() - clickAt;
      await waitFor(async () => (await exploreRowCount(page)) === truth.rows, {
        timeoutMs: 120_000, intervalMs: 50, what: `explore-row-count = ${truth.rows}`,
      });
      const fullyLoadedMs = Date.now() - clickAt;
      assert.equal(await page.textContent('[data-testid=explore-row-count]'), truth.rows.toLocaleString('en'));
      assert.equal(await page.getAttribute('[data-testid=explore]', 'data-state'), 'ready');
      assert.equal(await onView('return view.num_rows();'), truth.rows, 'the grid\'s view holds every row');
      await page.screenshot({ path: path.join(artifacts, 'explore-big.png'), fullPage: true });

      // Sort by amount, descending: the same number of rows, pyarrow's largest first.
      await onView(`await viewer.restore({ sort: [['amount', 'desc']] });`);
      const sorted = /** @type {any} */ (await onView(`
        const v = await viewer.getView();
        return { rows: await v.num_rows(), top: (await v.to_columns({ start_row: 0, end_row: 3 })).amount };`));
      assert.equal(sorted.rows, truth.rows, 'sorting keeps every row');
      assert.deepEqual(sorted.top, truth.top_amounts, 'the largest amounts first, as pyarrow sorts them');

      // Filter region == "Norte" (kept sorted): pyarrow's count and largest Norte amount.
      await onView(`await viewer.restore({ filter: [['region', '==', 'Norte']] });`);
      const norte = /** @type {any} */ (await onView(`
        const v = await viewer.getView();
        const cols = await v.to_columns({ start_row: 0, end_row: 1 });
        return { rows: await v.num_rows(), region: cols.region[0], amount: cols.amount[0] };`));
      assert.equal(norte.rows, truth.norte_rows, 'region == "Norte" rows, as pyarrow counts them');
      assert.deepEqual([norte.region, norte.amount], ['Norte', truth.norte_top_amount]);
      await page.screenshot({ path: path.join(artifacts, 'explore-big-norte.png'), fullPage: true });

      // The page's "Download CSV" exports the current view: every row again once the filter is off.
      await onView(`await viewer.restore({ filter: [], sort: [] });`);
      const download = page.waitForEvent('download', { timeout: 60_000 });
      await page.click('#explore-export');
      const file = await (await download).path();
      const csv = await readFile(/** @type {string} */ (file), 'utf8');
      const lines = csv.split('\n').filter((l) => l.length > 0);
      assert.equal(lines.length - 1, truth.rows, 'CSV export: a header and one line per source row');
      assert.match(lines[0], /region/);

      const perf = {
        date: new Date().toISOString(),
        what: 'explore view: a 200,000-row Parquet dataset (region string, id int64, amount float64, qty int32) from a volley connector through the demo gateway into Perspective, headless Chromium',
        rows: truth.rows,
        parquet_bytes: statSync(parquet).size,
        perspective_ready_ms: perspectiveReadyMs,
        time_to_first_rows_ms: firstRowsMs,
        time_to_fully_loaded_ms: fullyLoadedMs,
        cpus: os.cpus().length,
        chromium: context.browser()?.version() ?? null,
        dist_bytes: Object.fromEntries(readdirSync(path.join(webRoot, 'dist')).filter((f) => !f.endsWith('.map')).sort().map((f) => [f, statSync(path.join(webRoot, 'dist', f)).size])),
      };
      t.diagnostic(`big: Perspective ready ${perspectiveReadyMs} ms, first rows ${firstRowsMs} ms, all ${truth.rows} rows ${fullyLoadedMs} ms`);
      if (process.env.VOLLEY_RECORD_PERF === '1') {
        const out = path.join(repoRoot, 'perf-results', 'web', `explore-${perf.date.slice(0, 10)}.json`);
        mkdirSync(path.dirname(out), { recursive: true });
        writeFileSync(out, `${JSON.stringify(perf, null, 2)}\n`);
        t.diagnostic(`wrote ${out}`);
      }
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'explore-big-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}\n--- connector ---\n${connector.log()}`);
    } finally {
      connector.kill();
      rmSync(dir, { recursive: true, force: true });
      await page.close();
    }
  });

  it('explore: a live dataset keeps updating for 30 s with the page\'s JS heap bounded', async (t) => {
    const page = await open(demo.url);
    const cdp = await context.newCDPSession(page);
    /** The main thread's JS heap after a full GC, in MB (CDP Runtime.getHeapUsage). */
    const heapMB = async () => {
      await cdp.send('HeapProfiler.collectGarbage');
      const { usedSize } = await cdp.send('Runtime.getHeapUsage');
      return usedSize / 2 ** 20;
    };
    const perspectiveRows = () => page.evaluate(async () => {
      const viewer = /** @type {any} */ (document.querySelector('[data-testid=explore] perspective-viewer'));
      return viewer ? (await viewer.getTable()).size() : -1;
    });
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="ticker"]', { timeout: 15_000 });
      await page.click('[data-testid=tab-explore]');
      await openDataset(page, 'ticker');
      await waitFor(async () => (await page.getAttribute('[data-testid=explore]', 'data-state')) === 'ready' && (await exploreRowCount(page)) > 0, {
        timeoutMs: 30_000, what: 'ticker in the explore view',
      });
      /** @type {{s: number, heapMB: number, rows: number, shown: number}[]} */
      const samples = [];
      const start = Date.now();
      for (let second = 0; second <= LIVE_EXPLORE_WATCH_MS / 1000; second += HEAP_SAMPLE_MS / 1000) {
        await page.waitForTimeout(Math.max(0, start + second * 1000 - Date.now()));
        samples.push({ s: second, heapMB: await heapMB(), rows: await perspectiveRows(), shown: await exploreRowCount(page) });
      }
      t.diagnostic(`heap MB / Perspective rows: ${samples.map((x) => `${x.s}s ${x.heapMB.toFixed(1)}/${x.rows}`).join(', ')}`);
      // It kept updating: the Perspective table and the counter grow in every 10 s.
      for (const at of [10, 20, 30]) {
        const then = /** @type {any} */ (samples.find((x) => x.s === at - 10));
        const now = /** @type {any} */ (samples.find((x) => x.s === at));
        assert.ok(now.rows > then.rows, `Perspective rows grew from ${at - 10} s to ${at} s: ${then.rows} → ${now.rows}`);
        assert.ok(now.shown > then.shown, `explore-row-count grew from ${at - 10} s to ${at} s: ${then.shown} → ${now.shown}`);
      }
      const last = /** @type {any} */ (samples.at(-1));
      const at20 = /** @type {any} */ (samples.find((x) => x.s === 20));
      assert.ok(last.rows <= 10_000, `the live table keeps at most LIVE_WINDOW_ROWS rows (${last.rows})`);
      assert.ok(last.heapMB < HEAP_BOUND_MB, `JS heap after 30 s: ${last.heapMB.toFixed(1)} MB (bound ${HEAP_BOUND_MB} MB)`);
      assert.ok(last.heapMB - at20.heapMB < HEAP_GROWTH_LAST_10S_MB,
        `JS heap grew ${(last.heapMB - at20.heapMB).toFixed(2)} MB in the last 10 s (bound ${HEAP_GROWTH_LAST_10S_MB} MB)`);
      await page.screenshot({ path: path.join(artifacts, 'explore-ticker-30s.png'), fullPage: true });
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'explore-live-heap-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}`);
    } finally {
      await cdp.detach().catch(() => {});
      await page.close();
    }
  });

  it('the overview table pages and sorts, and a live table shows its newest rows first', async () => {
    const page = await open(demo.url);
    try {
      await page.waitForSelector('[data-testid=dataset][data-name="ventas"]', { timeout: 15_000 });
      await openDataset(page, 'ventas');
      await waitFor(async () => (await page.getAttribute('.content', 'data-phase')) === 'done', { timeoutMs: 30_000, what: 'ventas query done' });
      const expected = /** @type {number} */ (demo.datasetRows.get('ventas'));
      assert.equal(await page.textContent('[data-testid=table-range]'), `rows 1–20 of ${expected.toLocaleString('en')}`);
      await page.click('[data-testid=table-pager] button[aria-label="Last page"]');
      const lastFirst = Math.floor((expected - 1) / 20) * 20 + 1;
      assert.equal(await page.textContent('[data-testid=table-range]'), `rows ${lastFirst.toLocaleString('en')}–${expected.toLocaleString('en')} of ${expected.toLocaleString('en')}`);
      // Sort by cantidad, descending (two clicks): the first row has the largest value.
      const header = page.locator('[data-testid=table] th', { hasText: 'cantidad' });
      await header.locator('button').click();
      await header.locator('button').click();
      assert.equal(await header.getAttribute('aria-sort'), 'descending');
      const column = await page.$$eval('[data-testid=table] th', (ths) => ths.findIndex((th) => th.textContent?.startsWith('cantidad')));
      const values = await page.$$eval(`[data-testid=table] tbody tr td:nth-child(${column + 1})`, (tds) => tds.map((td) => Number(td.textContent)));
      assert.equal(values.length, 20);
      assert.deepEqual(values, [...values].sort((a, b) => b - a), 'sorted descending');
      assert.equal(values[0], 39, 'the largest cantidad of ventas (1..39) first');

      await openDataset(page, 'ticker');
      await waitFor(async () => (await rowCount(page)) > 20, { timeoutMs: 15_000, what: 'more than a page of ticker rows' });
      await waitFor(async () => /newest first/.test((await page.textContent('[data-testid=table-caption]')) ?? ''), { what: 'the live table says it shows the newest rows first' });
      const newest = async () => {
        const ts = await page.$$eval('[data-testid=table] tbody tr td:first-child', (tds) => tds.map((td) => td.textContent ?? ''));
        return ts;
      };
      const before = await newest();
      await page.waitForTimeout(2_000);
      const after = await newest();
      assert.ok(after[0] > before[0], `the newest row moves to the top: ${before[0]} → ${after[0]}`);
      assert.deepEqual(after, [...after].sort().reverse(), 'newest first');
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'table-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}`);
    } finally {
      await page.close();
    }
  });

  it('the dashboard and the latency page have no serious or critical accessibility violations (axe-core)', async () => {
    const axePath = path.join(webRoot, 'node_modules', 'axe-core', 'axe.min.js');
    /** @param {import('playwright-core').Page} page */
    const audit = async (page) => {
      await page.addScriptTag({ path: axePath });
      const violations = await page.evaluate(async () => {
        const result = await /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] });
        return result.violations.map((/** @type {any} */ v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((/** @type {any} */ n) => n.target.join(' ')) }));
      });
      return violations.filter((/** @type {any} */ v) => v.impact === 'serious' || v.impact === 'critical');
    };
    for (const scheme of ['light', 'dark']) {
      const page = await open(demo.url);
      try {
        await page.emulateMedia({ colorScheme: /** @type {'light'|'dark'} */ (scheme) });
        await page.waitForSelector('[data-testid=dataset][data-name="ventas"]', { timeout: 15_000 });
        await openDataset(page, 'ventas');
        await waitFor(async () => (await page.getAttribute('.content', 'data-phase')) === 'done', { timeoutMs: 30_000, what: 'ventas query done' });
        const dashboard = await audit(page);
        assert.deepEqual(dashboard, [], `dashboard (${scheme}): ${JSON.stringify(dashboard, null, 1)}`);
        await page.goto(new URL('latency', demo.url).href);
        await waitFor(async () => (await page.getAttribute('body', 'data-loaded')) === 'true', { what: '/metrics.json loaded' });
        const latency = await audit(page);
        assert.deepEqual(latency, [], `latency page (${scheme}): ${JSON.stringify(latency, null, 1)}`);
      } finally {
        await page.close();
      }
    }
  });

  it('an expired token shows the token_expired message', async () => {
    assert.ok(demo.secret, `the demo printed no "secret: …" line${context_()}`);
    const tenant = demo.tenant ?? 'demo';
    const { stdout } = await execFileAsync(volleyBin, ['token', '--secret', demo.secret, '--tenant', tenant, '--user', 'u', '--ttl', '-3600']);
    const token = stdout.match(/eyJ[\w-]*\.[\w-]*\.[\w-]*/)?.[0] ?? stdout.trim().split('\n').pop()?.trim();
    assert.ok(token, `volley token printed no token: ${stdout}`);
    const page = await open(`${demo.base}/?session=${encodeURIComponent(token)}`);
    try {
      await waitFor(async () => (await page.getAttribute('[data-testid=status]', 'data-code')) === 'token_expired', { what: 'token_expired status' });
      const text = await page.textContent('[data-testid=status]');
      assert.match(text ?? '', /Your session has expired/);
      await page.screenshot({ path: path.join(artifacts, 'expired.png'), fullPage: true });
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'expired-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}`);
    } finally {
      await page.close();
    }
  });

  it('latency page truth: a late joiner\'s replayed window is not timed as relay latency', async (t) => {
    // A gateway of its own, so its histogram holds only this test's frames.
    const fresh = await startDemo();
    const first = await open(fresh.url);
    /** @type {import('playwright-core').Page|undefined} */
    let second;
    try {
      await first.waitForSelector('[data-testid=dataset][data-name="ticker"]', { timeout: 15_000 });
      await openDataset(first, 'ticker');
      await waitFor(async () => (await rowCount(first)) > 0, { what: 'ticker rows on the first page' });
      await first.waitForTimeout(LATE_JOIN_AFTER_MS);
      // The second page joins 10 s later: the gateway replays the stream's
      // window (§5.2), frames that reached it up to 10 s ago.
      second = await open(fresh.url);
      await second.waitForSelector('[data-testid=dataset][data-name="ticker"]', { timeout: 15_000 });
      await openDataset(second, 'ticker');
      const joined = await waitFor(async () => rowCount(/** @type {any} */ (second)), { what: 'ticker rows on the late page' });
      assert.ok(joined > 20, `the late page got the replayed window first (${joined} rows)`);
      await second.waitForTimeout(2_000);
      await second.goto(new URL('latency', fresh.url).href);
      await waitFor(async () => Number(await second?.getAttribute('[data-testid=latency-relay]', 'data-count')) > 0, { what: 'relay latency on the latency page' });
      const shown = await second.$eval('[data-testid=latency-relay]', (e) => ({ ...(/** @type {HTMLElement} */ (e)).dataset }));
      const metrics = await (await fetch(new URL('metrics.json', fresh.base))).json();
      const relay = metrics.histograms.relay_latency_us;
      t.diagnostic(`relay latency: page p50 ${shown.p50} µs p99 ${shown.p99} µs (count ${shown.count}); /metrics.json p50 ${relay.p50} p99 ${relay.p99} max ${relay.max} count ${relay.count}, frames_in ${metrics.counters.frames_in}, frames_out ${metrics.counters.frames_out}`);
      for (const [where, p50, p99] of [['the latency page', Number(shown.p50), Number(shown.p99)], ['/metrics.json', relay.p50, relay.p99]]) {
        // A replayed frame timed from its arrival would be up to 10 s old
        // (ticker's are about a second apart, so most over a second): p99
        // would be seconds while p50 is a fraction of a millisecond.
        assert.ok(p99 < 10 * p50 + RELAY_P99_SLACK_US, `${where}: relay p99 ${p99} µs within 10 × p50 (${p50} µs) + ${RELAY_P99_SLACK_US / 1000} ms`);
      }
      assert.ok(relay.max < LATE_JOIN_AFTER_MS * 1000 / 2, `no relay sample near the replayed frames' age (max ${relay.max} µs)`);
      // ticker sends about one batch a second; each relayed batch is timed.
      assert.ok(relay.count >= LATE_JOIN_AFTER_MS / 1000, `the live frames were timed (count ${relay.count}, frames_in ${metrics.counters.frames_in})`);
      await second.screenshot({ path: path.join(artifacts, 'latency-after-late-join.png'), fullPage: true });
    } catch (e) {
      throw new Error(`${e}\n--- page ---\n${pageLog.slice(-30).join('\n')}\n--- demo ---\n${fresh.log().slice(-4000)}`);
    } finally {
      await second?.close();
      await first.close();
      await fresh.stop();
    }
  });

  it('the latency page draws', async () => {
    const page = await open(`${demo.base}/latency`);
    try {
      await waitFor(async () => (await page.getAttribute('body', 'data-loaded')) === 'true', { what: '/metrics.json loaded' });
      await page.waitForTimeout(1_500); // a second poll
      for (const id of ['latency-chart', 'latency-series']) {
        const ink = await canvasInk(page, `[data-testid=${id}] canvas`, [47, 111, 237]);
        assert.ok(ink.painted > 1000, `${id} canvas is not blank (${JSON.stringify(ink)})`);
      }
      // Earlier tests relayed frames, so the relay curve (blue) has points.
      const curve = await canvasInk(page, '[data-testid=latency-chart] canvas', [47, 111, 237]);
      assert.ok(curve.colour > 1000, `relay latency curve drawn (${JSON.stringify(curve)})`);
      // The admission queue's figures (waiting now / ever) and its wait histogram.
      const queued = await page.textContent('[data-testid=latency-queued]');
      assert.match(queued ?? '', /^\d+ \/ \d+$/, `queued queries shown: ${queued}`);
      // Shared queries: streams saved, of them reused, and the logs' bytes.
      const shared = await page.textContent('[data-testid=latency-shared]');
      assert.match(shared ?? '', /^\d+ saved \(\d+ reused\) · [\d.]+ (B|KiB|MiB|GiB)/, `shared queries shown: ${shared}`);
      const rows = await page.$$eval('[data-testid=histogram-table] tbody td:first-child', (cells) => cells.map((c) => c.textContent));
      assert.ok(rows.includes('queue_wait_ms'), `the queue wait histogram is listed: ${rows}`);
      await page.screenshot({ path: path.join(artifacts, 'latency.png'), fullPage: true });
    } catch (e) {
      await page.screenshot({ path: path.join(artifacts, 'latency-failed.png'), fullPage: true });
      throw new Error(`${e}${context_()}`);
    } finally {
      await page.close();
    }
  });
});
