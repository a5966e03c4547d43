// Review: `p` accepts and `x` rejects, the counts follow, the stored states change, `u`
// undoes; a run of 200 `x` in a row is timed with the browser's long-task entries.

import assert from 'node:assert/strict';
import { visit, api, giveToken, makeJpegs, TOKEN } from '../harness.mjs';

const IMAGES = 240;
const REJECTS = 200;

/** The first file's name is markup: the page must show it as text. */
const MARKUP = '<img src=x id=injected>';
const name = (i) => (i === 0 ? `${MARKUP}.jpg` : `review-${i + 1}.jpg`);

async function upload(base, jpegs) {
  // The first alone, so that it is the first to review; then the rest, 20 a form.
  const batches = [[0, 1]];
  for (let at = 1; at < jpegs.length; at += 20) batches.push([at, Math.min(at + 20, jpegs.length)]);
  for (const [from, to] of batches) {
    const form = new FormData();
    form.set('source', 'review-test');
    for (let i = from; i < to; i += 1) form.append('photo', new Blob([jpegs[i]], { type: 'image/jpeg' }), name(i));
    const response = await fetch(`${base}/image_upload`, { method: 'POST', body: form, headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(response.status, 201, await response.text());
  }
}

/** The page's main-thread tasks in a trace: the longest by wall time and by CPU time (ms). */
function mainThread(trace) {
  const events = trace.traceEvents ?? trace;
  const mains = new Set(events.filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === 'CrRendererMain').map((e) => `${e.pid}/${e.tid}`));
  const byThread = new Map();
  for (const e of events) {
    if (e.ph !== 'X' || e.name !== 'RunTask' || !mains.has(`${e.pid}/${e.tid}`)) continue;
    const key = `${e.pid}/${e.tid}`;
    if (!byThread.has(key)) byThread.set(key, []);
    byThread.get(key).push(e);
  }
  const tasks = [...byThread.values()].sort((a, b) => b.length - a.length)[0] ?? [];
  const ms = (us) => Math.round((us ?? 0) / 100) / 10;
  return {
    tracedTasks: tasks.length,
    longestTaskWallMs: ms(Math.max(0, ...tasks.map((e) => e.dur ?? 0))),
    longestTaskCpuMs: ms(Math.max(0, ...tasks.map((e) => e.tdur ?? 0))),
    tasksOver50msCpu: tasks.filter((e) => (e.tdur ?? 0) > 50000).length,
  };
}

async function stats(base) {
  const { data } = await api(base, '/api/v1/reviewStats?source=review-test');
  return { pending: Number(data.pending), accepted: Number(data.accepted), rejected: Number(data.rejected) };
}

const counts = (page) => page.evaluate(() => ({
  pending: Number(document.querySelector('#pending').textContent.replace(/\D/g, '')),
  accepted: Number(document.querySelector('#accepted').textContent.replace(/\D/g, '')),
  rejected: Number(document.querySelector('#rejected').textContent.replace(/\D/g, '')),
  inflight: Number(document.querySelector('#inflight').textContent.replace(/\D/g, '')),
}));

export async function run(ctx) {
  await upload(ctx.base, await makeJpegs(ctx.browser, { count: IMAGES, width: 480, height: 360, label: 'review' }));
  const before = await stats(ctx.base);
  assert.equal(before.pending, IMAGES);
  await visit(ctx, 'review', '/review', {
    ready: async (page) => {
      await page.waitForFunction(() => document.querySelector('#current').complete && document.querySelector('#current').naturalWidth > 0 && document.querySelector('#strip li:not([hidden]) img'));
      await page.waitForFunction(() => document.querySelector('#pending').textContent !== '…');
    },
    interact: async (page) => {
      assert.deepEqual(await counts(page), { pending: IMAGES, accepted: 0, rejected: 0, inflight: 0 });
      // API data is text, never markup.
      assert.ok((await page.textContent('#current-meta')).includes(MARKUP), await page.textContent('#current-meta'));
      assert.equal(await page.locator('#injected').count(), 0);
      // One page of the queue is loaded, and the thumbnails after the current image are fetched ahead.
      const resources = () => page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name));
      const loaded = await resources();
      assert.equal(loaded.filter((u) => u.includes('/image_view?')).length, 1, 'one page of the queue at first');
      let pages = 1;
      page.on('request', (request) => { if (request.url().includes('/image_view?')) pages += 1; });
      await page.waitForFunction(() => performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/thumbnail')).length >= 12);
      // p: the first image shows as sending until the server answers (held back here), then as accepted.
      let release;
      const held = new Promise((resolve) => { release = resolve; });
      await page.route('**/accept_pic/**', async (route) => {
        if (route.request().headers().authorization) await held;
        await route.continue();
      });
      const first = await page.getAttribute('#current', 'data-id');
      await page.keyboard.press('p');
      await giveToken(page);
      await page.waitForFunction((id) => document.querySelector(`#strip li[data-id="${id}"]`)?.dataset.state === 'sending', first);
      assert.deepEqual(await counts(page), { pending: IMAGES, accepted: 0, rejected: 0, inflight: 1 });
      release();
      await page.waitForFunction((id) => document.querySelector(`#strip li[data-id="${id}"]`)?.dataset.state === 'accepted', first);
      await page.unroute('**/accept_pic/**');
      assert.deepEqual(await counts(page), { pending: IMAGES - 1, accepted: 1, rejected: 0, inflight: 0 });
      const { data: one } = await api(ctx.base, `/image_view/${first}`);
      assert.equal(one.image.review.state, 'accepted');
      assert.notEqual(await page.getAttribute('#current', 'data-id'), first, 'p moves to the next image');

      // 200 x in a row, timed by the long-task timeline.
      await page.evaluate(() => {
        window.longTasks = [];
        new PerformanceObserver((list) => { for (const e of list.getEntries()) window.longTasks.push(e.duration); }).observe({ type: 'longtask' });
      });
      // A trace of the same run tells a task's CPU time from its wall time: on a busy machine
      // a long task can be a short one whose thread waited for a core.
      await ctx.browser.startTracing(page, { categories: ['toplevel', 'devtools.timeline', 'disabled-by-default-devtools.timeline'] });
      const rejectedIds = [];
      for (let i = 0; i < REJECTS; i += 1) {
        rejectedIds.push(await page.getAttribute('#current', 'data-id'));
        await page.keyboard.press('x');
        // The next key waits for the frame that shows the move, as a reviewer's eye would.
        await page.waitForFunction((id) => document.querySelector('#current').dataset.id !== id, rejectedIds[i], { polling: 'raf' });
      }
      await page.waitForFunction((n) => document.querySelector('#inflight').textContent === '0'
        && Number(document.querySelector('#rejected').textContent.replace(/\D/g, '')) === n, REJECTS, { timeout: 60000 });
      const trace = JSON.parse((await ctx.browser.stopTracing()).toString());
      const tasks = await page.evaluate(() => window.longTasks);
      ctx.figures.review = { rejected: REJECTS, longTasks: tasks.length, longestLongTaskMs: Math.round(Math.max(0, ...tasks)), ...mainThread(trace) };
      assert.equal(new Set(rejectedIds).size, REJECTS, 'each x rejected another image');
      // Pages came as the reviewer went on: enough to reach the current image and 20 ahead.
      assert.equal(pages, Math.ceil((REJECTS + 1 + 20) / 50), `${pages} pages of the queue fetched`);
      assert.deepEqual(await counts(page), { pending: IMAGES - 1 - REJECTS, accepted: 1, rejected: REJECTS, inflight: 0 });
      assert.deepEqual(await stats(ctx.base), { pending: IMAGES - 1 - REJECTS, accepted: 1, rejected: REJECTS });
      const stored = [];
      let token = '';
      do {
        const { data } = await api(ctx.base, `/image_list?review_state=rejected&source=review-test&page_size=1000${token ? `&page_token=${token}` : ''}`);
        stored.push(...data.images.map((i) => i.id));
        token = data.next_page_token;
      } while (token);
      assert.deepEqual(stored.sort(), rejectedIds.slice().sort());

      // u: the last rejection is undone, and the viewer goes back to that image.
      await page.keyboard.press('u');
      const last = rejectedIds[REJECTS - 1];
      await page.waitForFunction((id) => document.querySelector('#current').dataset.id === id
        && document.querySelector(`#strip li[data-id="${id}"]`)?.dataset.state === 'pending', last);
      await page.waitForFunction(() => document.querySelector('#inflight').textContent === '0');
      assert.deepEqual(await stats(ctx.base), { pending: IMAGES - REJECTS, accepted: 1, rejected: REJECTS - 1 });
      const { data: undone } = await api(ctx.base, `/image_view/${last}`);
      assert.equal(undone.image.review.state, 'pending');

      // Arrows move without deciding.
      await page.keyboard.press('ArrowRight');
      await page.waitForFunction((id) => document.querySelector('#current').dataset.id !== id, last);
      await page.keyboard.press('ArrowLeft');
      await page.waitForFunction((id) => document.querySelector('#current').dataset.id === id, last);
      // Scrolling over the viewer moves too, one image per notch.
      await page.hover('#stage');
      await page.mouse.wheel(0, 100);
      await page.waitForFunction((id) => document.querySelector('#current').dataset.id !== id, last);
      await page.mouse.wheel(0, -100);
      await page.waitForFunction((id) => document.querySelector('#current').dataset.id === id, last);
      assert.deepEqual(await stats(ctx.base), { pending: IMAGES - REJECTS, accepted: 1, rejected: REJECTS - 1 });
    },
  });
}
