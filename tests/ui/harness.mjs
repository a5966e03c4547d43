// The test harness: the outpost binary (embedded mode) on free loopback ports, headless
// Chromium through playwright-core, and per-page checks: console errors, failed requests,
// error answers, transfer weight of the first load, layout at 375 px, screenshots.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, createWriteStream, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const TOKEN = 'ui-test-token';
export const VIEWPORTS = [{ width: 1280, height: 800 }, { width: 375, height: 800 }];
/** The first load of a page transfers at most this much, images aside. */
export const PAGE_BUDGET = 300 * 1024;

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts `outpost all` with its data in a fresh directory; answers `{ base, stop, log }`. */
export async function startOutpost({ binary, feed, logDir }) {
  const data = mkdtempSync(join(tmpdir(), 'outpost-ui-'));
  const [gateway, ingest, media, telemetry, plotting] = await Promise.all([1, 2, 3, 4, 5].map(freePort));
  const env = {
    ...process.env,
    OUTPOST_DATA_DIR: data,
    OUTPOST_GATEWAY_ADDR: `127.0.0.1:${gateway}`,
    OUTPOST_INGEST_ADDR: `127.0.0.1:${ingest}`,
    OUTPOST_MEDIA_ADDR: `127.0.0.1:${media}`,
    OUTPOST_TELEMETRY_ADDR: `127.0.0.1:${telemetry}`,
    OUTPOST_PLOTTING_ADDR: `127.0.0.1:${plotting}`,
    OUTPOST_API_TOKEN: TOKEN,
    OUTPOST_CAMERA_FEED_URL: feed,
    OUTPOST_MMGIS_URL: `${feed}/mmgis`,
    OUTPOST_OPENSENSEMAP_URL: feed,
    // The openSenseMap fixture was measured in 2020.
    OUTPOST_AGGREGATE_WINDOW_SECONDS: String(20 * 365 * 86400),
    OUTPOST_LOG: process.env.OUTPOST_LOG ?? 'info',
  };
  for (const key of Object.keys(env)) if (key.startsWith('OTEL_')) delete env[key];
  mkdirSync(logDir, { recursive: true });
  const log = join(logDir, 'outpost.log');
  const out = createWriteStream(log);
  const child = spawn(binary, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const base = `http://127.0.0.1:${gateway}`;
  const deadline = Date.now() + 60000;
  for (;;) {
    if (exited) throw new Error(`outpost exited (${JSON.stringify(exited)}); see ${log}`);
    try {
      const response = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (response.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`outpost not ready within 60 s; see ${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    base,
    log,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        await new Promise((resolve) => {
          const timer = setTimeout(() => { child.kill('SIGKILL'); resolve(); }, 15000);
          child.on('exit', () => { clearTimeout(timer); resolve(); });
        });
      }
      rmSync(data, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-dev-shm-usage'],
  });
}

/** JPEGs drawn by the browser (canvas), each different: `count` of `width`×`height`. */
export async function makeJpegs(browser, { count, width, height, label }) {
  const page = await browser.newPage();
  const list = await page.evaluate(async ({ count, width, height, label }) => {
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d');
    const out = [];
    for (let i = 0; i < count; i += 1) {
      const hue = (i * 47) % 360;
      ctx.fillStyle = `hsl(${hue} 45% 40%)`;
      ctx.fillRect(0, 0, width, height);
      ctx.fillStyle = `hsl(${(hue + 180) % 360} 60% 70%)`;
      ctx.beginPath();
      ctx.ellipse(width * (0.3 + (i % 5) / 10), height / 2, width / 6, height / 5, i / 3, 0, Math.PI * 2);
      ctx.fill();
      ctx.fillStyle = '#fff';
      ctx.font = `bold ${Math.round(height / 8)}px sans-serif`;
      ctx.fillText(`${label} ${i + 1}`, 10, height - 12);
      const blob = await new Promise((r) => canvas.toBlob(r, 'image/jpeg', 0.8));
      const bytes = new Uint8Array(await blob.arrayBuffer());
      let text = '';
      for (let j = 0; j < bytes.length; j += 0x8000) text += String.fromCharCode(...bytes.subarray(j, j + 0x8000));
      out.push(btoa(text));
    }
    return out;
  }, { count, width, height, label });
  await page.close();
  return list.map((b64) => Buffer.from(b64, 'base64'));
}

/**
 * Opens `path` in a fresh context (empty cache) at `viewport`, recording console errors,
 * page errors, failed requests and error answers, and the first load's transfer weight by
 * resource type (after the network is idle).
 */
export async function open(browser, base, path, { viewport = VIEWPORTS[0], allow = () => false, init } = {}) {
  const context = await browser.newContext({ viewport, baseURL: base });
  const page = await context.newPage();
  if (init) await page.addInitScript(init);
  const problems = [];
  // A write refused for want of the token is how the page learns it must ask for it: that
  // answer (and the browser's console line about it) is expected, once per tab.
  const challenges = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    if (/status of 401/.test(message.text()) && challenges.length) return;
    problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    const failure = request.failure()?.errorText ?? '';
    // An image whose load the page replaced (the reviewer moved on) is aborted, not failed.
    if (failure === 'net::ERR_ABORTED' && request.resourceType() === 'image') return;
    // A stream the page closed itself.
    if (failure === 'net::ERR_ABORTED' && request.resourceType() === 'eventsource') return;
    problems.push(`request failed: ${request.method()} ${request.url()} ${failure}`);
  });
  page.on('response', (response) => {
    if (response.status() === 401 && response.request().method() !== 'GET') {
      challenges.push(response.url());
      return;
    }
    if (response.status() >= 400 && !allow(response)) problems.push(`answer ${response.status()}: ${response.request().method()} ${response.url()}`);
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const types = new Map();
  const weight = { total: 0, images: 0, byType: {} };
  cdp.on('Network.responseReceived', (e) => types.set(e.requestId, e.type));
  cdp.on('Network.loadingFinished', (e) => {
    const type = types.get(e.requestId) ?? 'Other';
    if (type === 'Image') weight.images += e.encodedDataLength;
    else {
      weight.total += e.encodedDataLength;
      weight.byType[type] = (weight.byType[type] ?? 0) + e.encodedDataLength;
    }
  });
  const document = await page.goto(path, { waitUntil: 'networkidle' });
  const csp = document.headers()['content-security-policy'] ?? '';
  for (const rule of ["default-src 'none'", "script-src 'self'", "img-src 'self'", "connect-src 'self'"]) {
    if (!csp.includes(rule)) problems.push(`${path}: the Content-Security-Policy lacks ${rule}: ${csp}`);
  }
  if (csp.includes('unsafe')) problems.push(`${path}: the Content-Security-Policy allows unsafe sources: ${csp}`);
  const first = { ...weight, byType: { ...weight.byType } };
  return { context, page, problems, challenges, firstLoad: first };
}

/** Fills the token dialog when the page asks for it. */
export async function giveToken(page) {
  const input = page.locator('#token-input');
  await input.waitFor({ state: 'visible', timeout: 10000 });
  await input.fill(TOKEN);
  await input.press('Enter');
}

/** The checks every page passes at both widths, and its screenshots. */
export async function checkLayout(page, name, viewport, shots) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${name} at ${viewport.width} px is ${overflow} px wider than the window`);
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((el) => !el.closest('[hidden]') && !el.labels?.length && !el.getAttribute('aria-label') && !el.textContent.trim())
    .map((el) => el.id || el.outerHTML.slice(0, 60)));
  assert.deepEqual(unlabelled, [], `${name}: controls without a label`);
  mkdirSync(shots, { recursive: true });
  const file = join(shots, `${name}-${viewport.width}x${viewport.height}.png`);
  await page.screenshot({ path: file });
  await page.screenshot({ path: join(shots, `${name}-${viewport.width}x${viewport.height}-full.png`), fullPage: true });
  return file;
}

/** A JSON request to the gateway from the test (writes with the token). */
export async function api(base, path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch { data = text; }
  return { status: response.status, data };
}

/**
 * Opens `path` at each width: waits for `ready(page)`, runs `interact(page)` at the first
 * width only, then checks there were no console errors, failed requests or error answers,
 * the layout, the first load's weight, and takes the screenshots.
 */
export async function visit(ctx, name, path, { ready = async () => {}, interact, allow, init } = {}) {
  for (const [i, viewport] of VIEWPORTS.entries()) {
    const { context, page, problems, challenges, firstLoad } = await open(ctx.browser, ctx.base, path, { viewport, allow, init });
    try {
      // The first width loads the page as the suite found it, the second after its interaction
      // (with the data it made): both are first loads, from an empty cache.
      ctx.figures.weights[`${name} ${viewport.width}px`] = firstLoad;
      assert.ok(firstLoad.total <= PAGE_BUDGET, `${name} at ${viewport.width} px: first load ${firstLoad.total} bytes > ${PAGE_BUDGET}`);
      await ready(page);
      if (i === 0 && interact) await interact(page);
      await page.waitForLoadState('networkidle');
      await checkLayout(page, name, viewport, ctx.shots);
      assert.deepEqual(problems, [], `${name} at ${viewport.width} px`);
      assert.ok(challenges.length <= 1, `${name}: the token was asked for ${challenges.length} times`);
    } finally {
      await context.close();
    }
  }
}
