// Browser tests of the web UI: `node run.mjs [suite...]` (default: every suite), against
// OUTPOST_BIN (default target/debug/outpost) in the embedded mode, with a local feed server
// for the loads. Screenshots and the figures (page weights, the review page's longest long
// task) go to target/ui-screenshots/.

import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFeed, cameraDay } from './feed.mjs';
import { startOutpost, launchBrowser, makeJpegs } from './harness.mjs';
import * as overview from './suites/overview.mjs';
import * as sensors from './suites/sensors.mjs';
import * as review from './suites/review.mjs';
import * as docs from './suites/docs.mjs';
import * as camera from './suites/camera.mjs';
import * as rover from './suites/rover.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SUITES = { sensors, review, camera, rover, docs, overview };
const chosen = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(SUITES);
for (const name of chosen) if (!SUITES[name]) throw new Error(`no suite ${name}; suites: ${Object.keys(SUITES).join(', ')}`);

const binary = resolve(root, process.env.OUTPOST_BIN ?? 'target/debug/outpost');
const shots = join(root, 'target/ui-screenshots');
const CAMERA_DATE = '2025-02-05';
/** A day whose frames come slowly: its load runs while the overview watches it. */
const SLOW_DATE = '2025-02-06';

const browser = await launchBrowser();
const frames = await makeJpegs(browser, { count: 12, width: 320, height: 240, label: 'burrow' });
const day = cameraDay({ date: CAMERA_DATE, jpegs: frames, width: 320, height: 240 });
const slowDay = cameraDay({ date: SLOW_DATE, jpegs: frames.slice(0, 8), width: 320, height: 240, delayMs: 1500 });
const feed = await startFeed({ root, camera: { [day.key]: day, [slowDay.key]: slowDay } });
const outpost = await startOutpost({ binary, feed: feed.url, logDir: shots });
const figures = { weights: {}, review: {} };
const ctx = { browser, base: outpost.base, shots, figures, feed, day, cameraDate: CAMERA_DATE, slowDate: SLOW_DATE, root };

let failed = 0;
try {
  for (const name of chosen) {
    const started = Date.now();
    try {
      await SUITES[name].run(ctx);
      console.log(`ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${name}: ${err.stack ?? err}`);
    }
  }
} finally {
  await browser.close();
  await outpost.stop();
  await feed.close();
}

writeFileSync(join(shots, 'figures.json'), `${JSON.stringify(figures, null, 2)}\n`);
console.log('\nfirst load of each page (bytes transferred, images aside):');
for (const [page, w] of Object.entries(figures.weights)) {
  console.log(`  ${page.padEnd(18)} ${String(w.total).padStart(8)}  (${Object.entries(w.byType).map(([t, n]) => `${t} ${n}`).join(', ')}; images ${w.images})`);
}
if (figures.review.longestLongTaskMs !== undefined) {
  const r = figures.review;
  console.log(`review: rejecting ${r.rejected} images with x, longest long task ${r.longestLongTaskMs} ms (${r.longTasks} long tasks); `
    + `traced main-thread tasks: longest ${r.longestTaskWallMs} ms wall, ${r.longestTaskCpuMs} ms CPU, ${r.tasksOver50msCpu} over 50 ms of CPU`);
}
console.log(`screenshots: ${shots}`);
if (failed) {
  console.log(`${failed} suite(s) failed; the gateway's log is ${outpost.log}`);
  process.exit(1);
}
