// Formatting of API values for people.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/** An RFC 3339 time in the reader's locale, or an em dash. */
export function time(text) {
  if (!text) return '—';
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? String(text) : dateTime.format(d);
}

/** A number with at most two decimals. */
export function num(value) {
  if (value === undefined || value === null || value === '') return '—';
  const n = Number(value);
  return Number.isFinite(n) ? number.format(n) : String(value);
}

/** An enum name without its prefix, in lower case: RUN_STATE_RUNNING → running. */
export function enumName(value, prefix) {
  if (!value) return 'unknown';
  const text = String(value);
  return (text.startsWith(prefix) ? text.slice(prefix.length) : text).toLowerCase().replaceAll('_', ' ');
}

/** The last segment of a resource name: runs/abc → abc. */
export function idOf(name) {
  const text = String(name ?? '');
  return text.slice(text.lastIndexOf('/') + 1);
}

/** A value of a `datetime-local` input for a Date (local time, minutes). */
export function localInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A probability (0 to 1) as a percentage with one decimal: 0.965 → 96.5 %. */
export function percent(value) {
  const n = Number(value);
  return Number.isFinite(n) ? `${(n * 100).toFixed(1)} %` : '—';
}
