// Rover: the track loads from the local MMGIS (the fixture, 586 waypoints up to sol 1615), the
// summary, map and orientation show, a plot job is submitted from the form and its image
// shows once it is done.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { visit, giveToken } from '../harness.mjs';

export async function run(ctx) {
  const fixture = JSON.parse(readFileSync(join(ctx.root, 'fixtures/rover/M20_waypoints.json'), 'utf8'));
  const inRange = fixture.features.filter((f) => f.properties.sol >= 0 && f.properties.sol <= 400).length;
  await visit(ctx, 'rover', '/rover', {
    ready: async (page) => {
      await page.waitForFunction(() => document.querySelector('#sum-sol').textContent !== '…');
    },
    interact: async (page) => {
      await page.click('#load-track');
      await giveToken(page);
      await page.locator('#load').waitFor();
      await page.waitForFunction(() => document.querySelector('#sum-sol').textContent === '1,615' || document.querySelector('#sum-sol').textContent === '1615', null, { timeout: 60000 });
      assert.match(await page.textContent('#summary-message'), /Sol-1615/);
      await page.waitForFunction(() => document.querySelector('#orientation').dataset.points);
      assert.equal(await page.getAttribute('#map', 'data-points'), '586');
      assert.equal(await page.getAttribute('#orientation', 'data-points'), '586');
      // The form's fields show their units.
      assert.match(await page.locator('#job-y option[value=yaw]').textContent(), /\(deg\)/);
      await page.selectOption('#job-y', 'yaw');
      await page.selectOption('#job-x', 'sol');
      await page.fill('#job-start', '0');
      await page.fill('#job-end', '400');
      await page.click('#job-form button[type=submit]');
      const job = page.locator('#jobs li').first();
      await job.waitFor();
      await page.waitForFunction(() => document.querySelector('#jobs li')?.dataset.state === 'succeeded', null, { timeout: 60000 });
      await page.waitForFunction(() => document.querySelector('#jobs li img')?.naturalWidth > 0);
      // The job plotted exactly the waypoints of sols 0 to 400 of the fixture.
      await page.waitForFunction((n) => document.querySelector('#jobs li').textContent.includes(`${n} points`), inRange.toLocaleString('en-US'));
      assert.match(await job.textContent(), /yaw against sol, sols 0 to 400/);
    },
  });
}
