// Rover: the track summary (latest sol, distance, position), the lat/lon map with the
// traverse, the orientation by sol, a form for plot jobs whose fields show their units, and
// the job list with live states and the plots.

import { get, post, request, query } from './api.js';
import { $, h, fill, badge, guard, notify } from './dom.js';
import { time, num, idOf, enumName } from './format.js';
import { lineChart, pointMap } from './chart.js';
import { watch, stateOf, isFinal } from './sse.js';

const TRACK = 'perseverance';
/** Fields a job can plot, with their units: of waypoints, and of traverse segments. */
const FIELDS = {
  way: [
    ['sol', 'sol'], ['yaw', 'deg'], ['pitch', 'deg'], ['roll', 'deg'], ['yaw_rad', 'rad'], ['tilt', 'deg'],
    ['lon', 'deg'], ['lat', 'deg'], ['elev_geoid', 'm'], ['elev_radii', 'm'], ['radius', 'm'], ['easting', 'm'],
    ['northing', 'm'], ['dist_m', 'm'], ['dist_total', 'm'], ['dist_km', 'km'], ['dist_mi', 'mi'],
    ['site', 'number'], ['drive', 'number'], ['SCLK_START', 's'], ['SCLK_END', 's'],
  ],
  trav: [['sol', 'sol'], ['length', 'm'], ['lon', 'deg'], ['lat', 'deg'], ['elev', 'm']],
};
const jobs = new Map(); // id → job
const watching = new Map();

function fieldOptions(select, type, chosen) {
  const fields = FIELDS[type] ?? FIELDS.way;
  fill(select, fields.map(([name, unit]) => h('option', { value: name, text: `${name} (${unit})` })));
  select.value = fields.some(([name]) => name === chosen) ? chosen : fields[0][0];
}

async function trackLoaded() {
  const page = await get(`/api/v1/tracks${query({ pageSize: 1000 })}`);
  return (page.tracks ?? []).some((t) => t.name === `tracks/${TRACK}` && Number(t.waypointCount) > 0);
}

async function summary() {
  if (!(await trackLoaded())) {
    $('summary-message').textContent = 'No waypoints yet: load the track first.';
    for (const id of ['map', 'orientation']) fill($(id), h('p', { class: 'muted', text: 'No waypoints yet.' }));
    for (const id of ['sum-sol', 'sum-distance', 'sum-position', 'sum-count']) $(id).textContent = '—';
    return false;
  }
  const [sol, sum] = await Promise.all([get('/perseverance/sol'), get(`/api/v1/tracks/${TRACK}:summary`)]);
  const latest = sum.latest ?? {};
  $('sum-sol').textContent = num(sol.sol);
  $('summary-message').textContent = sol.message ?? '';
  $('sum-distance').textContent = `${num(Number(sum.track?.totalDistanceM ?? latest.distTotalM ?? 0) / 1000)} km`;
  const p = latest.position ?? {};
  $('sum-position').textContent = `${num(p.latitude)}° N, ${num(p.longitude)}° E`;
  $('sum-count').textContent = num(sum.track?.waypointCount);
  return true;
}

async function charts() {
  const [positions, orientation] = await Promise.all([get('/perseverance/position'), get('/perseverance/orientation')]);
  const bySol = positions.slice().sort((a, b) => a.sol - b.sol);
  pointMap($('map'), {
    points: bySol.map((w) => [w.lon, w.lat]),
    lines: [bySol.map((w) => [w.lon, w.lat])],
    xLabel: 'longitude (deg)',
    yLabel: 'latitude (deg)',
    title: 'Waypoints and the path between them',
    description: `Map of ${positions.length} waypoints, longitude against latitude in degrees`,
  });
  $('map').dataset.points = String(positions.length);
  const rows = orientation.slice().sort((a, b) => a.sol - b.sol);
  const deg = 180 / Math.PI;
  // One chart per angle: yaw spans the circle, pitch and roll a few degrees.
  const angles = [['yaw', (r) => Number(r.yaw_rad) * deg], ['pitch', (r) => Number(r.pitch)], ['roll', (r) => Number(r.roll)]];
  const charts = angles.map(([name, value], i) => {
    const box = h('div', { class: 'chart', role: 'img' });
    lineChart(box, {
      series: [{ name, points: rows.map((r) => [r.sol, value(r)]) }],
      xLabel: 'sol',
      yLabel: `${name} (deg)`,
      title: `${name[0].toUpperCase()}${name.slice(1)} by sol`,
      description: `${name} in degrees at ${rows.length} waypoints, by sol`,
      height: 240,
      dots: true,
    });
    box.querySelectorAll('circle').forEach((c) => c.setAttribute('class', `legend-${i}`));
    return box;
  });
  fill($('orientation'), charts);
  $('orientation').dataset.points = String(rows.length);
  $('traverse-more').hidden = false;
}

async function traverse() {
  const button = $('traverse-more');
  button.disabled = true;
  const lines = [];
  let token = '';
  let pages = 0;
  try {
    do {
      const page = await get(`/api/v1/tracks/${TRACK}/traverse${query({ pageSize: 200, pageToken: token })}`);
      for (const s of page.segments ?? []) lines.push((s.points ?? []).map((p) => [p.longitude, p.latitude]));
      token = page.nextPageToken;
      pages += 1;
      button.textContent = `Loading the traverse… ${lines.length} segments`;
    } while (token && pages < 100);
    const positions = await get('/perseverance/position');
    pointMap($('map'), {
      points: positions.map((w) => [w.lon, w.lat]),
      lines,
      xLabel: 'longitude (deg)',
      yLabel: 'latitude (deg)',
      title: `Traverse (${lines.length} segments) and waypoints`,
      description: `Map of the traverse, ${lines.length} segments, and ${positions.length} waypoints`,
    });
    button.hidden = true;
  } finally {
    button.disabled = false;
    button.textContent = 'Draw the detailed traverse';
  }
}

/** Starts the MMGIS load (waypoints and traverse, one run each) and follows every run. */
async function loadTrack() {
  const button = $('load-track');
  button.disabled = true;
  try {
    const body = await post('/load');
    const runs = body.runs ?? [body.run ?? body];
    const latest = new Map(runs.map((run) => [idOf(run.name ?? run.id), run]));
    showLoad([...latest.values()]);
    await Promise.all([...latest.keys()].map((id) => new Promise((resolve, reject) => {
      watch(`/runs/${encodeURIComponent(id)}/events`, {
        onUpdate: (update) => {
          latest.set(id, update.run ?? update);
          showLoad([...latest.values()]);
        },
        onEnd: (last) => (stateOf(last) === 'succeeded' ? resolve() : reject(new Error(`the load ${stateOf(last)}: ${(last?.run ?? last)?.failure ?? ''}`))),
        onError: (message) => reject(new Error(message)),
      });
    })));
    if (await summary()) await charts();
  } finally {
    button.disabled = false;
  }
}

function showLoad(runs) {
  $('load').hidden = false;
  let done = 0;
  let total = 0;
  for (const run of runs) {
    done += Number(run?.progress?.done ?? 0);
    total += Number(run?.progress?.total ?? 0);
  }
  const states = runs.map((run) => `${enumName(run.source, 'SOURCE_MMGIS_')} ${stateOf(run) || 'pending'}`).join(', ');
  const bar = $('load-progress');
  if (total) { bar.max = total; bar.value = done; } else bar.removeAttribute('value');
  $('load-text').textContent = `Loading the track (${states}): ${num(done)} of ${total ? num(total) : '?'} features`;
  $('load').dataset.state = runs.every((run) => stateOf(run) === 'succeeded') ? 'succeeded' : 'running';
}

/** The list's fields of a job, whatever route answered it. */
function normalize(job) {
  const id = job.id ?? idOf(job.name);
  return {
    ...job,
    id,
    // The routes' `status` is fresh; `state` may be this page's own older reading.
    state: stateOf({ status: job.status ?? job.state }) || 'queued',
    download: job.download ?? `/download/${encodeURIComponent(id)}`,
  };
}

/** What a job plots, from the spec the server keeps or the form that sent it. */
function describe(job) {
  const kind = job.spec ? Object.values(job.spec).find((v) => v && typeof v === 'object') : null;
  const x = kind?.xField ?? job.xkey;
  const y = kind?.yField ?? job.ykey;
  const from = kind?.startSol ?? kind?.minSol ?? job.start;
  const to = kind?.endSol ?? kind?.maxSol ?? job.end;
  const what = x && y ? `${y} against ${x}` : job.spec?.title || (job.map ? 'lat/lon map' : '');
  const range = from !== undefined && to !== undefined ? `sols ${from} to ${to}` : '';
  return [what, range, job.points !== undefined ? `${num(job.points)} points` : ''].filter(Boolean).join(', ');
}

function jobItem(job) {
  const parts = [h('strong', {}, h('code', { text: job.id })), ' ', badge(job.state)];
  const spec = describe(job);
  if (spec) parts.push(h('div', { class: 'muted', text: spec }));
  const created = job.created_time ?? job.createTime;
  if (created) parts.push(h('div', { class: 'muted', text: `created ${time(created)}` }));
  if (job.error) parts.push(h('div', { text: `error: ${job.error}` }));
  if (!isFinal(job)) parts.push(h('progress', { 'aria-label': `job ${job.id} ${job.state}` }));
  if (job.state === 'succeeded') {
    parts.push(h('a', { href: job.download, text: 'Download' }),
      h('img', { src: job.download, alt: `plot of job ${job.id}${spec ? `: ${spec}` : ''}`, loading: 'lazy', decoding: 'async' }));
  }
  return h('li', { 'data-job': job.id, 'data-state': job.state }, parts);
}

function drawJobs() {
  const when = (job) => String(job.created_time ?? job.createTime ?? '');
  const list = [...jobs.values()].sort((a, b) => when(b).localeCompare(when(a)) || String(b.id).localeCompare(String(a.id)));
  fill($('jobs'), list.map(jobItem));
  $('jobs-empty').hidden = list.length > 0;
}

function follow(job) {
  if (isFinal(job) || watching.has(job.id)) return;
  const stop = watch(`/jobs/${encodeURIComponent(job.id)}/events`, {
    onUpdate: (update) => {
      const fresh = normalize({ ...jobs.get(job.id), ...(update.job ?? update), id: job.id });
      jobs.set(job.id, fresh);
      drawJobs();
    },
    onEnd: async () => {
      watching.delete(job.id);
      await guard(async () => {
        jobs.set(job.id, normalize({ ...jobs.get(job.id), ...(await get(`/jobs/${encodeURIComponent(job.id)}`)) }));
        drawJobs();
      });
    },
    onError: (message) => { watching.delete(job.id); notify(message); },
  });
  watching.set(job.id, stop);
}

async function jobList() {
  const body = await get('/jobs/list');
  const list = Array.isArray(body) ? body : body.jobs ?? [];
  for (const job of list.map(normalize)) {
    jobs.set(job.id, { ...jobs.get(job.id), ...job });
    follow(jobs.get(job.id));
  }
  drawJobs();
}

function range() {
  const start = Number($('job-start').value);
  const end = Number($('job-end').value);
  return { start, end };
}

async function submit(path, body, extra = {}) {
  const { data } = await request(path, { method: 'POST', body });
  const job = normalize({ ...body, ...extra, ...data, created_time: new Date().toISOString() });
  jobs.set(job.id, { ...jobs.get(job.id), ...job });
  drawJobs();
  follow(job);
  notify(`Job ${job.id} ${job.state}.`, { kind: 'info' });
}

function fieldsOfType() {
  const type = $('job-type').value;
  fieldOptions($('job-x'), type, $('job-x').value || 'sol');
  fieldOptions($('job-y'), type, $('job-y').value || (type === 'way' ? 'yaw' : 'lat'));
}
$('job-type').addEventListener('change', fieldsOfType);
fieldsOfType();
$('job-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = $('job-form');
  if (!form.reportValidity()) return;
  guard(() => submit('/jobs', {
    xkey: $('job-x').value, ykey: $('job-y').value, type: $('job-type').value, ...range(), format: $('job-format').value,
  }));
});
$('map-job').addEventListener('click', () => guard(() => submit('/perseverance/position/map', range(), { map: true })));
$('load-track').addEventListener('click', () => guard(loadTrack));
const more = h('button', { type: 'button', id: 'traverse-more', hidden: true, text: 'Draw the detailed traverse' });
$('map').after(more);
more.addEventListener('click', () => guard(traverse));

guard(async () => {
  if (await summary()) await charts();
});
guard(jobList);
