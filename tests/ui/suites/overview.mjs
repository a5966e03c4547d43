// Overview: every service by name with its status and dependencies (from /readyz), the counts
// as the API gives them, and the recent runs.

import assert from 'node:assert/strict';
import { visit, api } from '../harness.mjs';

export async function run(ctx) {
  const { data: ready } = await api(ctx.base, '/readyz');
  const { data: stats } = await api(ctx.base, '/api/v1/reviewStats');
  const images = Number(stats.pending) + Number(stats.accepted) + Number(stats.rejected);
  const { data: runs } = await api(ctx.base, '/api/v1/runs?pageSize=10');
  await visit(ctx, 'overview', '/', {
    ready: async (page) => {
      await page.locator('#health li').first().waitFor();
      await page.waitForFunction(() => [...document.querySelectorAll('#counts dd')].every((dd) => dd.textContent !== '…'));
    },
    interact: async (page) => {
      for (const [name, service] of Object.entries(ready.services)) {
        const item = page.locator(`#health li[data-service="${name}"]`);
        assert.match(await item.textContent(), new RegExp(`${name}.*${service.status.toLowerCase().replace('_', ' ')}`, 's'));
        for (const dep of Object.keys(service.dependencies)) assert.match(await item.textContent(), new RegExp(dep));
      }
      assert.equal((await page.textContent('#count-images')).replace(/\D/g, ''), String(images));
      // Three more readings show as three more on the next load.
      const before = Number((await page.textContent('#count-readings')).replace(/\D/g, ''));
      for (const minute of [1, 2, 3]) {
        const timestamp = new Date(Date.now() - minute * 60000).toISOString().slice(0, 19).replace('T', ' ');
        const { status } = await api(ctx.base, '/add_rawdata/', { method: 'POST', body: { sensor: 'overview-check', value: minute, timestamp } });
        assert.equal(status, 201);
      }
      await page.reload({ waitUntil: 'networkidle' });
      await page.waitForFunction(() => document.querySelector('#count-readings').textContent !== '…');
      assert.equal(Number((await page.textContent('#count-readings')).replace(/\D/g, '')), before + 3);
      assert.equal(await page.locator('#runs tbody tr').count(), (runs.runs ?? []).length);

      // A load started elsewhere shows up running, and its row follows the run's events to the end.
      const { status, data } = await api(ctx.base, `/lazyload?date=${ctx.slowDate}`);
      assert.equal(status, 202, JSON.stringify(data));
      const id = data.run.name.replace('runs/', '');
      const streams = [];
      page.on('request', (r) => { if (r.resourceType() === 'eventsource') streams.push(new URL(r.url()).pathname); });
      await page.reload({ waitUntil: 'domcontentloaded' });
      const row = page.locator(`#runs tr[data-run="${id}"]`);
      await row.waitFor();
      assert.match(await row.textContent(), /pending|running/);
      await page.waitForFunction((run) => /succeeded/.test(document.querySelector(`#runs tr[data-run="${run}"]`)?.textContent ?? ''), id, { timeout: 30000 });
      assert.deepEqual(streams, [`/runs/${id}/events`]);
      assert.match(await row.textContent(), /8 \/ 8/);
    },
  });
}
