// Camera: pick a day, start or join its load (`/lazyload`), watch the run's progress live
// (`/runs/{id}/events`), then the day's frames by detection probability, the best one large,
// with detection boxes drawn over frames that have one. The day is in the address
// (`/camera?date=YYYY-MM-DD`), so a day can be bookmarked.

import { request, get, query } from './api.js';
import { $, h, fill, guard, notify } from './dom.js';
import { time, num, idOf, percent } from './format.js';
import { watch, stateOf } from './sse.js';

const PAGE = 48;
let stopWatching = null;
let gallery = { list: null, next: null, shown: 0, params: null };

function today() {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** YYYY-MM-DD from the address (also the source system's MM-DD-YYYY). */
function dateFromAddress() {
  const given = new URLSearchParams(location.search).get('date') ?? '';
  const us = /^(\d{2})-(\d{2})-(\d{4})$/.exec(given);
  if (us) return `${us[3]}-${us[1]}-${us[2]}`;
  return /^\d{4}-\d{2}-\d{2}$/.test(given) ? given : '';
}

/** A frame with its detection box (fractions of the image) drawn over it. */
function frame(image, { large = false } = {}) {
  const img = h('img', {
    src: large ? image.url : image.thumbnail_url,
    alt: `frame taken ${time(image.taken_time)}, detection probability ${percent(image.probability)}`,
    loading: large ? 'eager' : 'lazy',
    decoding: 'async',
  });
  const wrap = h('div', { class: 'frame' }, img);
  const box = image.box;
  if (box && Number(box.width) > 0 && Number(box.height) > 0) {
    const el = h('div', { class: 'box' });
    el.style.left = `${Number(box.x) * 100}%`;
    el.style.top = `${Number(box.y) * 100}%`;
    el.style.width = `${Number(box.width) * 100}%`;
    el.style.height = `${Number(box.height) * 100}%`;
    el.setAttribute('aria-hidden', 'true');
    wrap.append(el);
    wrap.dataset.box = 'true';
  }
  return wrap;
}

/** The gallery's fields of an image of `/api/v1/images` (proto JSON) or of the camera routes. */
function normalize(image) {
  const id = image.id ?? idOf(image.name);
  const detection = image.detection ?? {};
  return {
    id,
    url: image.url ?? `/images/${encodeURIComponent(id)}`,
    thumbnail_url: image.thumbnail_url ?? `/images/${encodeURIComponent(id)}/thumbnail`,
    taken_time: image.taken_time ?? image.takenTime,
    probability: Number(image.probability ?? detection.probability ?? 0),
    has_subject: image.has_subject ?? detection.has_subject ?? detection.hasSubject,
    box: image.box ?? detection.box ?? null,
  };
}

function showProgress(run, text) {
  $('load').hidden = false;
  const done = Number(run?.progress?.done ?? run?.done ?? 0);
  const total = Number(run?.progress?.total ?? run?.total ?? 0);
  const bar = $('load-progress');
  if (total > 0) {
    bar.max = total;
    bar.value = done;
  } else {
    bar.removeAttribute('value');
  }
  const state = stateOf(run) || 'pending';
  $('load-text').textContent = text ?? `Loading the day: ${state}, ${num(done)} of ${total ? num(total) : '?'} frames`;
  $('load').dataset.state = state;
}

function runIdOf(body) {
  const run = body.run;
  if (typeof run === 'string') return idOf(run);
  return run?.id ?? idOf(run?.name ?? body.id ?? '');
}

async function showDay(date) {
  stopWatching?.();
  $('best-section').hidden = true;
  $('gallery-section').hidden = true;
  showProgress(null, `Asking for ${date}…`);
  const { status, data } = await request(`/lazyload${query({ date })}`);
  if (status === 202) {
    const id = runIdOf(data);
    const url = data.events ?? data.watch ?? data.events_url ?? `/runs/${encodeURIComponent(id)}/events`;
    showProgress(data.run);
    await new Promise((resolve, reject) => {
      stopWatching = watch(url, {
        onUpdate: (update) => showProgress(update.run ?? update),
        onEnd: (last) => {
          const run = last?.run ?? last;
          if (stateOf(run) === 'succeeded') resolve();
          else reject(new Error(`the load of ${date} ${stateOf(run) || 'ended'}: ${run?.failure || run?.error || 'no frames stored'}`));
        },
        onError: (message) => reject(new Error(message)),
      });
    });
    return showDay(date);
  }
  showProgress(data.run ?? { state: 'succeeded' }, `Loaded: ${num(Array.isArray(data.images) ? data.images.length : data.images)} frames on ${data.date ?? date}.`);
  $('load-progress').max = 1;
  $('load-progress').value = 1;
  await render(date, data);
}

async function render(date, day) {
  const best = day.best ? normalize(day.best) : null;
  if (best) {
    try {
      // The best frame's detection box comes with the image itself.
      const full = await get(`/api/v1/images/${encodeURIComponent(best.id)}`);
      const image = full.image ?? full;
      best.box = image.detection?.box ?? best.box;
      gallery.source = image.source;
    } catch (err) {
      notify(err.message);
    }
    fill($('best-frame'), frame(best, { large: true }));
    $('best-caption').textContent = `Taken ${time(best.taken_time)} · detection probability ${percent(best.probability)}`;
    $('best-section').hidden = false;
  }
  gallery = { list: null, url: null, next: null, shown: 0, params: null, source: gallery.source };
  fill($('gallery'));
  if (Array.isArray(day.images)) {
    gallery.list = day.images.map(normalize).sort((a, b) => b.probability - a.probability);
  } else if (typeof day.list === 'string' && day.list.startsWith('/api/v1/images?')) {
    // The day's frames as the gateway lists them (its source and the day in the camera's zone).
    gallery.url = day.list;
  } else {
    const start = new Date(`${date}T00:00:00Z`);
    const end = new Date(start.getTime() + 86400000);
    gallery.params = { source: gallery.source, startTime: start.toISOString(), endTime: end.toISOString(), orderBy: 'probability desc', pageSize: PAGE };
  }
  $('gallery-section').hidden = false;
  $('gallery-count').textContent = `${num(Array.isArray(day.images) ? day.images.length : day.images)} frames, most probable first.`;
  await more();
}

async function more() {
  let batch;
  if (gallery.list) {
    batch = gallery.list.slice(gallery.shown, gallery.shown + PAGE);
    gallery.shown += batch.length;
    $('gallery-more').hidden = gallery.shown >= gallery.list.length;
  } else {
    const page = gallery.url
      ? await get(`${gallery.url}&${query({ pageSize: PAGE, pageToken: gallery.next ?? '' }).slice(1)}`)
      : await get(`/api/v1/images${query({ ...gallery.params, pageToken: gallery.next ?? '' })}`);
    batch = (page.images ?? []).map(normalize);
    gallery.next = page.nextPageToken || null;
    gallery.shown += batch.length;
    $('gallery-more').hidden = !gallery.next;
  }
  $('gallery').append(...batch.map((image) => h('li', {},
    h('figure', {}, frame(image),
      h('figcaption', { text: `${percent(image.probability)} · ${time(image.taken_time)}${image.has_subject ? ' · subject seen' : ''}` })))));
}

$('gallery-more').addEventListener('click', () => guard(more));
$('day-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const date = $('day').value;
  if (!date) return;
  history.replaceState(null, '', `/camera${query({ date })}`);
  const button = event.submitter ?? $('day-form').querySelector('button');
  button.disabled = true;
  guard(() => showDay(date)).finally(() => { button.disabled = false; });
});

$('day').max = today();
const initial = dateFromAddress();
$('day').value = initial || today();
if (initial) guard(() => showDay(initial));
