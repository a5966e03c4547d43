// Small SVG charts drawn with DOM APIs: lines over time or over a number, and point maps.

import { svg, fill } from './dom.js';

const W = 720;
const PAD = { left: 76, right: 16, top: 30, bottom: 54 };

/** About `count` round tick values covering [lo, hi]. */
export function ticks(lo, hi, count = 6) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.04;
  return [lo - pad, hi + pad];
}

const dayTick = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const clockTick = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const S = 1000;
const TIME_STEPS = [S, 5 * S, 15 * S, 30 * S, 60 * S, 300 * S, 900 * S, 1800 * S, 3600 * S, 3 * 3600 * S,
  6 * 3600 * S, 12 * 3600 * S, 86400 * S, 2 * 86400 * S, 7 * 86400 * S, 30 * 86400 * S, 91 * 86400 * S, 365 * 86400 * S];

/** Ticks at round local times (whole hours, midnights, …) covering [lo, hi] ms. */
export function timeTicks(lo, hi, count = 5) {
  const step = TIME_STEPS.find((s) => s >= (hi - lo) / count) ?? TIME_STEPS[TIME_STEPS.length - 1];
  const offset = -new Date(lo).getTimezoneOffset() * 60000;
  const out = [];
  for (let t = Math.ceil((lo + offset) / step) * step - offset; t <= hi; t += step) out.push(t);
  return { ticks: out, step };
}

function timeLabel(t, step) {
  const d = new Date(t);
  if (step >= 86400 * S) return dayTick.format(d);
  const midnight = d.getHours() === 0 && d.getMinutes() === 0;
  return midnight ? `${dayTick.format(d)} ${clockTick.format(d)}` : clockTick.format(d);
}
const numTick = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 6 });

function frame(xs, ys, { xLabel, yLabel, title, xTime, H = 360 }) {
  const [x0, x1] = extent(xs);
  const [y0, y1] = extent(ys);
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, 'aria-hidden': 'true', focusable: 'false' });
  for (const t of ticks(y0, y1, 6)) {
    root.append(svg('line', { class: 'grid-line', x1: PAD.left, x2: W - PAD.right, y1: py(t), y2: py(t) }));
    root.append(svg('text', { x: PAD.left - 6, y: py(t) + 5, 'text-anchor': 'end', text: numTick.format(t) }));
  }
  const xt = xTime ? timeTicks(x0, x1, 6) : { ticks: ticks(x0, x1, 6) };
  for (const t of xt.ticks) {
    root.append(svg('line', { class: 'axis', x1: px(t), x2: px(t), y1: H - PAD.bottom, y2: H - PAD.bottom + 4 }));
    const label = xTime ? timeLabel(t, xt.step) : numTick.format(t);
    root.append(svg('text', { x: px(t), y: H - PAD.bottom + 20, 'text-anchor': 'middle', text: label }));
  }
  root.append(svg('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
  root.append(svg('line', { class: 'axis', x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
  if (xLabel) root.append(svg('text', { x: (PAD.left + W - PAD.right) / 2, y: H - 8, 'text-anchor': 'middle', text: xLabel }));
  if (yLabel) {
    root.append(svg('text', {
      x: 14, y: (PAD.top + H - PAD.bottom) / 2, 'text-anchor': 'middle',
      transform: `rotate(-90 14 ${(PAD.top + H - PAD.bottom) / 2})`, text: yLabel,
    }));
  }
  if (title) root.append(svg('text', { class: 'title', x: PAD.left, y: 18, text: title }));
  return { root, px, py, H };
}

/**
 * Lines: `series` of `{name, points: [[x, y]], band: [[x, lo, hi]]}` (band optional) in
 * `container`, with a text description for screen readers.
 */
export function lineChart(container, { series, xLabel, yLabel, title, xTime = false, description, height = 360, dots = false }) {
  const xs = [];
  const ys = [];
  for (const s of series) {
    for (const [x, y] of s.points) { xs.push(x); ys.push(y); }
    for (const [x, lo, hi] of s.band ?? []) { xs.push(x); ys.push(lo, hi); }
  }
  const { root, px, py } = frame(xs, ys, { xLabel, yLabel, title, xTime, H: height });
  series.forEach((s, i) => {
    if (s.band && s.band.length > 1) {
      const top = s.band.map(([x, , hi]) => `${px(x).toFixed(1)},${py(hi).toFixed(1)}`);
      const bottom = s.band.slice().reverse().map(([x, lo]) => `${px(x).toFixed(1)},${py(lo).toFixed(1)}`);
      root.append(svg('polygon', { class: 'band', points: top.concat(bottom).join(' ') }));
    }
    if (dots) {
      for (const [x, y] of s.points) root.append(svg('circle', { class: `legend-${i % 3}`, cx: px(x).toFixed(1), cy: py(y).toFixed(1), r: 2 }));
    } else {
      const d = s.points.map(([x, y], j) => `${j ? 'L' : 'M'}${px(x).toFixed(1)} ${py(y).toFixed(1)}`).join('');
      root.append(svg('path', { class: `series s${i % 3}`, d }));
    }
    if (s.points.length === 1 && !dots) {
      const [[x, y]] = s.points;
      root.append(svg('circle', { class: `legend-${i % 3}`, cx: px(x), cy: py(y), r: 3 }));
    }
    if (series.length > 1) {
      root.append(svg('rect', { class: `legend-${i % 3}`, x: W - PAD.right - 120, y: PAD.top + i * 16, width: 10, height: 10 }));
      root.append(svg('text', { x: W - PAD.right - 105, y: PAD.top + i * 16 + 9, text: s.name }));
    }
  });
  fill(container, root);
  container.setAttribute('aria-label', description ?? title ?? 'chart');
}

/** Points (and optional polylines under them) on x/y axes, such as longitude/latitude. */
export function pointMap(container, { points, lines = [], xLabel, yLabel, title, description }) {
  const xs = points.map((p) => p[0]).concat(lines.flat().map((p) => p[0]));
  const ys = points.map((p) => p[1]).concat(lines.flat().map((p) => p[1]));
  const { root, px, py } = frame(xs, ys, { xLabel, yLabel, title });
  for (const line of lines) {
    if (line.length < 2) continue;
    const d = line.map(([x, y], j) => `${j ? 'L' : 'M'}${px(x).toFixed(1)} ${py(y).toFixed(1)}`).join('');
    root.append(svg('path', { class: 'series s0', d }));
  }
  for (const [x, y] of points) root.append(svg('circle', { class: 'dot', cx: px(x).toFixed(1), cy: py(y).toFixed(1), r: 2.5 }));
  fill(container, root);
  container.setAttribute('aria-label', description ?? title ?? 'map');
}
