// Camera: a day from the local feed loads through /lazyload, the page shows the run's
// progress live, then the gallery by probability with the best frame large and the detection
// boxes drawn.

import assert from 'node:assert/strict';
import { visit, api } from '../harness.mjs';

export async function run(ctx) {
  const { day, cameraDate } = ctx;
  await visit(ctx, 'camera', `/camera?date=${cameraDate}`, {
    init: RECORD_PROGRESS,
    ready: async (page) => {
      await page.locator('#gallery li').nth(day.rows.length - 1).waitFor({ timeout: 60000 });
      await page.waitForFunction(() => document.querySelector('#best-frame img')?.naturalWidth > 0);
    },
    interact: async (page) => {
      // The load the page started is a run that went to the end, with every frame stored.
      const { status, data } = await api(ctx.base, `/lazyload?date=${cameraDate}`);
      assert.equal(status, 200, JSON.stringify(data));
      assert.equal(Number(Array.isArray(data.images) ? data.images.length : data.images), day.rows.length);
      assert.equal(await page.locator('#gallery li').count(), day.rows.length);
      assert.equal(await page.getAttribute('#load', 'data-state'), 'succeeded');
      // The load's progress showed while it ran: the run's state and the count of frames.
      const texts = await page.evaluate(() => window.loadTexts);
      assert.ok(texts.some((t) => /^Loading the day: (pending|running), \d+ of (\?|\d+) frames$/.test(t)), JSON.stringify(texts));
      assert.ok(texts.some((t) => t === `Loading the day: succeeded, ${day.rows.length} of ${day.rows.length} frames`), JSON.stringify(texts));
      assert.equal(await page.getAttribute('#load-progress', 'value'), await page.getAttribute('#load-progress', 'max'));
      // Most probable first; the best one large, with its probability.
      const captions = await page.locator('#gallery figcaption').allTextContents();
      const probs = captions.map((c) => Number(c.split(' · ')[0].replace(' %', '')));
      assert.deepEqual(probs, probs.slice().sort((a, b) => b - a));
      assert.match(await page.textContent('#best-caption'), new RegExp(`probability ${(day.best.prob * 100).toFixed(1)} %`));
      assert.equal(await page.getAttribute('#best-frame img', 'src'), data.best.url);
      // Boxes over the frames whose detection row had one (every third frame).
      assert.equal(await page.locator('#gallery .frame[data-box]').count(), day.detections.length);
    },
  });
  // Reloading the day again from a fresh page, with progress shown from the start.
  await visit(ctx, 'camera-again', `/camera?date=${cameraDate}`, {
    ready: (page) => page.locator('#gallery li').nth(day.rows.length - 1).waitFor({ timeout: 30000 }),
  });
}

/** Records every text #load-text shows, in order, in `window.loadTexts`. */
function RECORD_PROGRESS() {
  window.loadTexts = [];
  document.addEventListener('DOMContentLoaded', () => {
    const el = document.getElementById('load-text');
    new MutationObserver(() => window.loadTexts.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
  });
}
