// Sensors: the average temperature of the openSenseMap fixture with its status and cache flag,
// current values, a chart of the readings the test wrote, and a snapshot whose link answers.

import assert from 'node:assert/strict';
import { visit, api, giveToken } from '../harness.mjs';

const HOURS = 24;

function hubTime(date) {
  return date.toISOString().slice(0, 19).replace('T', ' ');
}

export async function run(ctx) {
  const now = Date.now();
  for (let i = 0; i < HOURS * 2; i += 1) {
    const when = new Date(now - (i + 1) * 30 * 60000);
    const value = 40 + 10 * Math.sin(i / 6);
    const { status, data } = await api(ctx.base, '/add_rawdata/', { method: 'POST', body: { sensor: 'humidity', value: Number(value.toFixed(2)), timestamp: hubTime(when) } });
    assert.equal(status, 201, JSON.stringify(data));
  }
  await visit(ctx, 'sensors', '/sensors', {
    ready: async (page) => {
      await page.waitForFunction(() => document.querySelector('#avg-value').textContent !== '…', null, { timeout: 30000 });
      await page.locator('#chart svg path.series').waitFor();
    },
    interact: async (page) => {
      assert.equal(await page.textContent('#avg-value'), '19.12 °C');
      assert.equal(await page.textContent('#avg-status'), 'Good');
      assert.match(await page.textContent('#avg-meta'), /25 boxes .* (from the cache|freshly computed)/);
      // Asked again, the average comes from the cache.
      await page.click('#avg-refresh');
      await page.waitForFunction(() => document.querySelector('#avg-meta').dataset.cached === 'true');
      assert.match(await page.textContent('#avg-meta'), /from the cache/);
      const rows = await page.locator('#current tbody tr').count();
      assert.ok(rows >= 26, `${rows} current values (25 boxes and humidity)`);
      assert.equal(await page.inputValue('#chart-sensor'), 'default/humidity');
      assert.match(await page.textContent('#chart-meta'), /^48 readings in \d+ buckets/);
      // Another range: the last 6 hours hold 12 of them.
      const local = (d) => { const p = (n) => String(n).padStart(2, '0'); return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`; };
      await page.fill('#chart-from', local(new Date(now - 6 * 3600000 - 60000)));
      await page.fill('#chart-to', local(new Date(now)));
      await page.click('#chart-form button[type=submit]');
      await page.waitForFunction(() => /^12 readings/.test(document.querySelector('#chart-meta').textContent));
      // The snapshot is a write: the token is asked for once, then the link answers.
      await page.click('#snapshot');
      await giveToken(page);
      const link = page.locator('#snapshot-link');
      await link.waitFor();
      const href = await link.getAttribute('href');
      assert.match(href, /^\/snapshots\//);
      const { status } = await api(ctx.base, href);
      assert.equal(status, 200);
      // Once given, the token is not asked again.
      const [again] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/store') && r.request().method() === 'POST'),
        page.click('#snapshot'),
      ]);
      assert.equal(again.status(), 201);
      assert.equal(again.request().headers().authorization, 'Bearer ui-test-token');
      assert.equal(await page.locator('dialog').count(), 0);
      await link.waitFor();
    },
  });
}
