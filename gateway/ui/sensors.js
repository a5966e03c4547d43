// Sensors: current values, the average temperature with its status and cache flag, a chart
// of one sensor's readings over a chosen range (buckets), and a snapshot to the object store.

import { get, post, query } from './api.js';
import { $, h, fill, badge, guard } from './dom.js';
import { time, num, localInput } from './format.js';
import { lineChart } from './chart.js';

/** Points per chart at most: the bucket width follows the range. */
const POINTS = 240;
const STATUS_CLASS = { Good: 'good', 'Too cold': 'warn', 'Too hot': 'bad' };

async function average() {
  const button = $('avg-refresh');
  button.disabled = true;
  $('avg-meta').textContent = 'Asking… (a first load of the boxes can take a few seconds)';
  try {
    const body = await get('/temperature');
    const value = body['Average temperature'];
    $('avg-value').textContent = `${num(value)} ${body.unit ?? ''}`.trim();
    fill($('avg-status'), badge(body.status || 'no status', STATUS_CLASS[body.status] ?? ''));
    $('avg-meta').textContent = `${num(body.boxes)} boxes · computed ${time(body.computed)} · ${body.cached ? 'from the cache' : 'freshly computed (not from the cache)'}`;
    $('avg-meta').dataset.cached = String(Boolean(body.cached));
  } catch (err) {
    $('avg-value').textContent = '—';
    fill($('avg-status'));
    $('avg-meta').textContent = err.message;
    throw err;
  } finally {
    button.disabled = false;
  }
}

const sensors = new Map(); // "device/sensor" → reading

async function current() {
  const rows = [];
  let token = '';
  do {
    const page = await get(`/api/v1/currentValues${query({ pageSize: 1000, pageToken: token })}`);
    rows.push(...(page.readings ?? []));
    token = page.nextPageToken;
  } while (token && rows.length < 5000);
  fill($('current').tBodies[0], rows.map((r) => h('tr', {},
    h('td', { text: r.device }),
    h('td', { text: r.sensor }),
    h('td', { class: 'num', text: `${num(r.value)}${r.unit ? ` ${r.unit}` : ''}` }),
    h('td', { text: time(r.time) }))));
  $('current-empty').hidden = rows.length > 0;
  const select = $('chart-sensor');
  const chosen = select.value;
  sensors.clear();
  const options = [];
  for (const r of rows) {
    const key = `${r.device}/${r.sensor}`;
    sensors.set(key, r);
    options.push(h('option', { value: key, text: `${r.sensor} on ${r.device}${r.unit ? ` (${r.unit})` : ''}` }));
  }
  fill(select, options);
  if (chosen && sensors.has(chosen)) select.value = chosen;
  return rows;
}

async function chart(event) {
  event?.preventDefault();
  const key = $('chart-sensor').value;
  const reading = sensors.get(key);
  if (!reading) {
    $('chart-meta').textContent = 'No sensor to chart yet.';
    return;
  }
  const from = new Date($('chart-from').value);
  const to = new Date($('chart-to').value);
  if (!(to > from)) {
    $('chart-meta').textContent = '"To" must be after "From".';
    $('chart-to').focus();
    return;
  }
  const seconds = Math.max(1, Math.ceil((to - from) / 1000 / POINTS));
  const path = `/api/v1/devices/${encodeURIComponent(reading.device)}/sensors/${encodeURIComponent(reading.sensor)}/readings`;
  $('chart-meta').textContent = 'Loading…';
  const page = await get(`${path}${query({ startTime: from.toISOString(), endTime: to.toISOString(), bucket: `${seconds}s`, pageSize: POINTS + 2 })}`);
  const buckets = page.buckets ?? [];
  const unit = reading.unit ? ` (${reading.unit})` : '';
  if (!buckets.length) {
    fill($('chart'));
    $('chart').setAttribute('aria-label', 'No readings in this range');
    $('chart-meta').textContent = `No readings of ${reading.sensor} between ${time(from.toISOString())} and ${time(to.toISOString())}.`;
    return;
  }
  const points = buckets.map((b) => [new Date(b.startTime).getTime(), Number(b.avg)]);
  const band = buckets.map((b) => [new Date(b.startTime).getTime(), Number(b.min), Number(b.max)]);
  const count = buckets.reduce((sum, b) => sum + Number(b.count), 0);
  lineChart($('chart'), {
    series: [{ name: reading.sensor, points, band }],
    xTime: true,
    xLabel: 'time (local)',
    yLabel: `${reading.sensor}${unit}`,
    title: `${reading.sensor} on ${reading.device}: mean per ${seconds} s, band from min to max`,
    description: `Chart of ${reading.sensor}${unit} on ${reading.device}, ${buckets.length} buckets of ${seconds} seconds, ${count} readings`,
  });
  $('chart-meta').textContent = `${num(count)} readings in ${num(buckets.length)} buckets of ${num(seconds)} s.`;
  $('chart').dataset.buckets = String(buckets.length);
}

async function snapshot() {
  const button = $('snapshot');
  button.disabled = true;
  fill($('snapshot-result'), 'Storing…');
  try {
    const body = await post('/store');
    const link = h('a', { href: body.download, text: `the stored snapshot (${num(body.readings)} readings)` });
    link.id = 'snapshot-link';
    fill($('snapshot-result'), 'Stored: ', link);
  } catch (err) {
    fill($('snapshot-result'));
    throw err;
  } finally {
    button.disabled = false;
  }
}

const now = new Date();
$('chart-to').value = localInput(new Date(now.getTime() + 60000));
$('chart-from').value = localInput(new Date(now.getTime() - 24 * 3600 * 1000));
$('chart-form').addEventListener('submit', (event) => guard(() => chart(event)));
$('avg-refresh').addEventListener('click', () => guard(average));
$('snapshot').addEventListener('click', () => guard(snapshot));

// The first average may load the boxes: their values join the table once it is known.
guard(average).then(() => guard(current));
guard(async () => {
  const rows = await current();
  if (rows.length) {
    // Start on the sensor measured most recently, over the day before its newest reading.
    const newest = rows.reduce((a, b) => (new Date(b.time) > new Date(a.time) ? b : a));
    $('chart-sensor').value = `${newest.device}/${newest.sensor}`;
    const end = new Date(new Date(newest.time).getTime() + 60000);
    $('chart-to').value = localInput(end);
    $('chart-from').value = localInput(new Date(end.getTime() - 24 * 3600 * 1000));
    await chart();
  }
});
