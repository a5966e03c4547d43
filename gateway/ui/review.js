// Review: the image viewer. `p` accepts, `x` rejects, arrows or scrolling move, `u` undoes.
// A decision shows as done only once the server acknowledged it; until then it shows as
// sending. Images come a page at a time, thumbnails of the next ones are fetched ahead.

import { $, h, notify } from './dom.js';
import { time, num } from './format.js';
import { ReviewQueue } from './review-queue.js';

const BEFORE = 3;
const AFTER = 6;
const PREFETCH = 12;

const queue = new ReviewQueue({ onChange: schedule });
const strip = $('strip');
const current = $('current');
const prefetched = new Set();
let pending = { counts: false, position: false, list: false, items: new Set() };
let frame = 0;

// Changes are drawn once per animation frame, however many arrive: a run of key presses
// costs one small update each frame.
function schedule(change) {
  if (change.error) notify(change.error.message);
  if (change.counts) pending.counts = true;
  if (change.position) pending.position = true;
  if (change.list) pending.list = true;
  if (change.item) pending.items.add(change.item);
  if (!frame) frame = requestAnimationFrame(draw);
}

function draw() {
  frame = 0;
  const todo = pending;
  pending = { counts: false, position: false, list: false, items: new Set() };
  if (todo.counts) drawCounts();
  if (todo.position || todo.list) drawCurrent();
  else if (todo.items.has(queue.current)) drawMeta();
  if (todo.position || todo.list) drawStrip();
  else for (const item of todo.items) drawStripItem(item);
}

function drawCounts() {
  $('pending').textContent = num(queue.counts.pending);
  $('accepted').textContent = num(queue.counts.accepted);
  $('rejected').textContent = num(queue.counts.rejected);
  $('inflight').textContent = num(queue.inflight);
}

function label(item) {
  if (item.sending) return { cls: 'sending', text: `${item.sending === 'pending' ? 'undoing' : item.sending === 'accepted' ? 'accepting' : 'rejecting'}…` };
  return { cls: item.state, text: item.state };
}

function drawMeta() {
  const item = queue.current;
  if (!item) {
    $('current-meta').textContent = '';
    return;
  }
  const { text } = label(item);
  const where = `${queue.index + 1} of ${queue.items.length}${queue.next ? '+' : ''}`;
  const name = item.filename || item.id;
  $('current-meta').textContent = `${where} · ${name} · taken ${time(item.taken_time)} · ${text}`;
  $('viewer').dataset.state = item.sending ? 'sending' : item.state;
}

function drawCurrent() {
  const item = queue.current;
  $('empty').hidden = Boolean(item);
  current.hidden = !item;
  if (item) {
    if (current.getAttribute('src') !== item.url) current.src = item.url;
    current.alt = `image ${item.filename || item.id}`;
    current.dataset.id = item.id;
  }
  drawMeta();
  prefetch();
}

function prefetch() {
  for (let i = queue.index + 1; i <= queue.index + PREFETCH && i < queue.items.length; i += 1) {
    const url = queue.items[i].thumbnail_url;
    if (prefetched.has(url)) continue;
    prefetched.add(url);
    const img = new Image();
    img.decoding = 'async';
    img.src = url;
  }
}

// The strip keeps one element per image in its window: a move adds one and drops one, so
// only one new thumbnail is laid out per key press.
const nodes = new Map(); // item → { li, state }

function nodeOf(item) {
  let node = nodes.get(item);
  if (!node) {
    const img = h('img', { src: item.thumbnail_url, alt: `thumbnail of ${item.filename || item.id}`, decoding: 'async' });
    const state = h('span', { class: 'state' });
    const li = h('li', { 'data-id': item.id }, img, state);
    node = { li, state };
    nodes.set(item, node);
  }
  return node;
}

function drawStripItem(item) {
  const node = nodes.get(item);
  if (!node) return;
  const { cls, text } = label(item);
  const here = item === queue.current;
  node.li.className = `${cls}${here ? ' current' : ''}`;
  if (here) node.li.setAttribute('aria-current', 'true');
  else node.li.removeAttribute('aria-current');
  node.state.textContent = text;
  node.li.dataset.state = item.sending ? 'sending' : item.state;
}

function drawStrip() {
  const shown = queue.items.slice(Math.max(0, queue.index - BEFORE), queue.index + AFTER + 1);
  const keep = new Set(shown);
  for (const [item, node] of nodes) {
    if (!keep.has(item)) {
      node.li.remove();
      nodes.delete(item);
    }
  }
  let at = strip.firstChild;
  for (const item of shown) {
    const { li } = nodeOf(item);
    if (li === at) at = at.nextSibling;
    else strip.insertBefore(li, at);
    drawStripItem(item);
  }
}

function report(promise) {
  promise.catch((err) => notify(err.message));
}

const actions = {
  accept: () => report(queue.decide('accepted')),
  reject: () => report(queue.decide('rejected')),
  undo: () => report(queue.revert()),
  next: () => queue.move(1),
  prev: () => queue.move(-1),
};

const KEYS = {
  p: 'accept', P: 'accept', x: 'reject', X: 'reject', u: 'undo', U: 'undo',
  ArrowRight: 'next', ArrowDown: 'next', j: 'next', ArrowLeft: 'prev', ArrowUp: 'prev', k: 'prev',
};

document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLElement && target.closest('input, select, textarea, dialog')) return;
  const action = KEYS[event.key];
  if (!action) return;
  // Buttons keep their own Enter/Space; arrows must not scroll the page.
  event.preventDefault();
  actions[action]();
});

for (const id of ['accept', 'reject', 'undo', 'next', 'prev']) $(id).addEventListener('click', actions[id]);

// Scrolling over the viewer moves one image per notch (trackpads: per 60 px of travel).
let travel = 0;
$('viewer').addEventListener('wheel', (event) => {
  event.preventDefault();
  travel += event.deltaMode === 0 ? event.deltaY : event.deltaY * 40;
  while (Math.abs(travel) >= 60) {
    queue.move(Math.sign(travel));
    travel -= Math.sign(travel) * 60;
  }
}, { passive: false });

// The counts follow other reviewers too, while this one is idle.
setInterval(() => { if (!queue.inflight) queue.syncCounts().catch(() => {}); }, 15000);

queue.start().then(() => schedule({ position: true }), (err) => notify(err.message));
$('viewer').focus({ preventScroll: true });
