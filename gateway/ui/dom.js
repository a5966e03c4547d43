// DOM helpers. Text from the API only ever goes in as text (textContent, attributes set
// one by one): nothing here parses HTML.

/** An element with attributes, properties and children (strings become text nodes). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === 'text') el.textContent = value;
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** The element with this id (throws when the page lacks it: a bug, not a state). */
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no element #${id}`);
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let noticeTimer = 0;

/** Shows a message in the page's alert region (errors by default). */
export function notify(message, { kind = 'error' } = {}) {
  const box = $('notice');
  const close = h('button', { type: 'button', text: 'Dismiss', onclick: () => { box.hidden = true; } });
  fill(box, h('span', { text: message }), close);
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(noticeTimer);
  if (kind !== 'error') noticeTimer = setTimeout(() => { box.hidden = true; }, 4000);
}

/** Runs `work`, showing its error's message to the user instead of failing silently. */
export async function guard(work) {
  try {
    return await work();
  } catch (err) {
    notify(err && err.message ? err.message : String(err));
    return undefined;
  }
}

/** A badge for a state name. */
export function badge(text, cls = text) {
  return h('span', { class: `badge ${cls}`, text });
}
