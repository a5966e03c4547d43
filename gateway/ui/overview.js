// Overview: health of every service and dependency (/readyz), counts, recent runs with live
// progress.

import { get, query } from './api.js';
import { $, h, fill, badge, guard, notify } from './dom.js';
import { time, num, enumName, idOf } from './format.js';
import { watch, stateOf } from './sse.js';

const ACTIVE = new Set(['pending', 'running']);
const RUN_PAGE = 10;
/** Plot jobs counted at most (beyond, the count shows as "N+"). */
const JOB_COUNT_LIMIT = 5000;

async function health() {
  let report;
  try {
    const response = await fetch('/readyz', { headers: { Accept: 'application/json' } });
    report = await response.json();
  } catch {
    fill($('health-summary'), 'The gateway did not answer /readyz.');
    return;
  }
  const words = { ready: 'Every service is ready.', degraded: 'Every service serves; some run without an optional dependency.', not_ready: 'Some services are not ready.' };
  fill($('health-summary'), badge(report.status ?? 'unknown', report.status === 'ready' ? 'good' : report.status === 'degraded' ? 'warn' : 'bad'), ' ', words[report.status] ?? '');
  const items = Object.entries(report.services ?? {}).map(([name, service]) => {
    const deps = Object.entries(service.dependencies ?? {}).map(([dep, status]) =>
      h('span', {}, `${dep} `, badge(status.toLowerCase().replace('_', ' '), status)));
    return h('li', { 'data-service': name },
      h('strong', { text: name }), ' ', badge(service.status.toLowerCase().replace('_', ' '), service.status),
      service.error ? h('div', { class: 'muted', text: service.error }) : null,
      deps.length ? h('div', { class: 'deps' }, deps) : null);
  });
  fill($('health'), items);
}

async function countImages() {
  const stats = await get('/api/v1/reviewStats');
  const total = Number(stats.pending) + Number(stats.accepted) + Number(stats.rejected);
  $('count-images').textContent = num(total);
  $('count-images').title = `${num(stats.pending)} pending, ${num(stats.accepted)} accepted, ${num(stats.rejected)} rejected`;
}

async function countReadings() {
  // Every sensor id (all devices at once), then one bucket over all time per sensor id.
  const sensors = new Set();
  let token = '';
  do {
    const page = await get(`/api/v1/currentValues${query({ pageSize: 1000, pageToken: token })}`);
    for (const r of page.readings ?? []) sensors.add(r.sensor);
    token = page.nextPageToken;
  } while (token);
  let total = 0;
  const end = new Date(Date.now() + 86400000).toISOString();
  await Promise.all([...sensors].map(async (sensor) => {
    const path = `/api/v1/devices/-/sensors/${encodeURIComponent(sensor)}/readings`;
    const page = await get(`${path}${query({ startTime: '1970-01-01T00:00:00Z', endTime: end, bucket: `${100 * 365 * 86400}s`, pageSize: 10 })}`);
    for (const b of page.buckets ?? []) total += Number(b.count);
  }));
  $('count-readings').textContent = num(total);
}

async function countWaypoints() {
  const page = await get(`/api/v1/tracks${query({ pageSize: 1000 })}`);
  const total = (page.tracks ?? []).reduce((sum, t) => sum + Number(t.waypointCount ?? 0), 0);
  $('count-waypoints').textContent = num(total);
}

async function countJobs() {
  let total = 0;
  let token = '';
  do {
    const page = await get(`/api/v1/plotJobs${query({ pageSize: 1000, pageToken: token })}`);
    total += (page.plotJobs ?? page.jobs ?? []).length;
    token = page.nextPageToken;
  } while (token && total < JOB_COUNT_LIMIT);
  $('count-jobs').textContent = token ? `${num(total)}+` : num(total);
}

function counts() {
  const each = [['count-images', countImages], ['count-readings', countReadings], ['count-waypoints', countWaypoints], ['count-jobs', countJobs]];
  return Promise.all(each.map(async ([id, work]) => {
    try {
      await work();
    } catch (err) {
      if (err.code === 'UNIMPLEMENTED') {
        $(id).textContent = '—';
        $(id).title = err.message;
        return;
      }
      $(id).textContent = 'unavailable';
      $(id).title = err.message;
      notify(`counts: ${err.message}`);
    }
  }));
}

const watching = new Map();

function progressCell(run) {
  const done = Number(run.progress?.done ?? 0);
  const total = Number(run.progress?.total ?? 0);
  const state = stateOf(run);
  const bar = h('progress', { max: Math.max(total, 1), value: total ? done : (ACTIVE.has(state) ? 0 : 1) });
  bar.setAttribute('aria-label', `run ${idOf(run.name)}: ${done} of ${total}`);
  if (ACTIVE.has(state) && !total) bar.removeAttribute('value');
  return h('td', {}, bar, ` ${num(done)} / ${num(total)}`);
}

function runRow(run) {
  const state = stateOf(run);
  const c = run.counts ?? {};
  return h('tr', { 'data-run': idOf(run.name) },
    h('td', {}, h('code', { text: idOf(run.name) })),
    h('td', { text: `${enumName(run.source, 'SOURCE_')}${run.parameters?.date ? ` ${run.parameters.date}` : ''}` }),
    h('td', {}, badge(state), run.failure ? h('div', { class: 'muted', text: run.failure }) : null),
    progressCell(run),
    h('td', { class: 'num', text: [c.created, c.updated, c.skipped, c.failed].map((v) => num(v ?? 0)).join(' / ') }),
    h('td', { text: time(run.startTime || run.createTime) }));
}

function follow(run) {
  const id = idOf(run.name);
  if (watching.has(id)) return;
  const stop = watch(`/runs/${encodeURIComponent(id)}/events`, {
    onUpdate(update) {
      const fresh = update.run ?? update;
      if (!fresh.name) fresh.name = run.name;
      const row = document.querySelector(`tr[data-run="${CSS.escape(id)}"]`);
      if (row) row.replaceWith(runRow({ ...run, ...fresh }));
    },
    onEnd() { watching.delete(id); counts(); },
    onError() { watching.delete(id); },
  });
  watching.set(id, stop);
}

async function runs() {
  const page = await get(`/api/v1/runs${query({ pageSize: RUN_PAGE })}`);
  const list = page.runs ?? [];
  fill($('runs').tBodies[0], list.map(runRow));
  $('runs-empty').hidden = list.length > 0;
  for (const run of list) if (ACTIVE.has(stateOf(run))) follow(run);
}

guard(health);
counts();
guard(runs);
// New runs (started elsewhere) appear without a reload; running ones stream their progress.
setInterval(() => { guard(runs); guard(health); }, 10000);
