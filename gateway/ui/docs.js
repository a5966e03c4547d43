// API docs: the gateway's OpenAPI document, rendered with DOM APIs (no HTML from the document
// is ever parsed). Each operation opens to show its parameters with their constraints, its
// request body and its responses; `$ref`s are resolved where shown.

import { get } from './api.js';
import { $, h, fill, guard } from './dom.js';

const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options'];
let doc = null;

function resolve(schema, depth = 0) {
  if (!schema || typeof schema !== 'object') return schema;
  if (schema.$ref && depth < 8) {
    const target = schema.$ref.replace(/^#\//, '').split('/').reduce((node, key) => node?.[decodeURIComponent(key.replaceAll('~1', '/').replaceAll('~0', '~'))], doc);
    return target ? { title: schema.$ref.split('/').pop(), ...resolve(target, depth + 1) } : schema;
  }
  return schema;
}

/** A schema as compact text: type, format, constraints, and properties one level down. */
function describe(schema, depth = 0) {
  const s = resolve(schema);
  if (!s || typeof s !== 'object') return '';
  const parts = [];
  const type = Array.isArray(s.type) ? s.type.join(' | ') : s.type;
  if (type) parts.push(type);
  if (s.format) parts.push(`(${s.format})`);
  if (s.enum) parts.push(`one of ${s.enum.map((v) => JSON.stringify(v)).join(', ')}`);
  for (const key of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength', 'maxLength', 'minItems', 'maxItems', 'pattern', 'default']) {
    if (s[key] !== undefined) parts.push(`${key} ${JSON.stringify(s[key])}`);
  }
  if (s.type === 'array' && s.items && depth < 3) parts.push(`of ${describe(s.items, depth + 1)}`);
  for (const key of ['oneOf', 'anyOf', 'allOf']) {
    if (Array.isArray(s[key]) && depth < 3) parts.push(`${key}: ${s[key].map((x) => describe(x, depth + 1)).join(' ; ')}`);
  }
  if (!parts.length && s.title) parts.push(s.title);
  return parts.join(' ');
}

function schemaTable(schema) {
  const s = resolve(schema);
  if (!s) return null;
  const props = s.properties ?? {};
  const required = new Set(s.required ?? []);
  const names = Object.keys(props);
  if (!names.length) return h('p', { class: 'muted', text: describe(s) || 'any JSON' });
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Field' }), h('th', { scope: 'col', text: 'Type and constraints' }), h('th', { scope: 'col', text: 'Description' }))),
    h('tbody', {}, names.map((name) => {
      const p = resolve(props[name]);
      return h('tr', {},
        h('td', {}, h('code', { text: name }), required.has(name) ? h('strong', { text: ' required' }) : null),
        h('td', { text: describe(p) }),
        h('td', { text: p?.description ?? '' }));
    }))));
}

function operationBody(op) {
  const body = h('div', { class: 'body' });
  if (op.description) body.append(h('p', { text: op.description }));
  const params = (op.parameters ?? []).map((p) => resolve(p));
  if (params.length) {
    body.append(h('h4', { text: 'Parameters' }), h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Name', 'In', 'Type and constraints', 'Description'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, params.map((p) => h('tr', {},
        h('td', {}, h('code', { text: p.name }), p.required ? h('strong', { text: ' required' }) : null),
        h('td', { text: p.in }),
        h('td', { text: describe(p.schema) }),
        h('td', { text: p.description ?? '' })))))));
  }
  const content = resolve(op.requestBody)?.content ?? {};
  for (const [type, media] of Object.entries(content)) {
    body.append(h('h4', { text: `Request body (${type})${resolve(op.requestBody).required ? ', required' : ''}` }), schemaTable(media.schema));
  }
  const responses = Object.entries(op.responses ?? {});
  if (responses.length) {
    body.append(h('h4', { text: 'Responses' }), h('ul', {}, responses.map(([code, r]) => {
      const res = resolve(r);
      const types = Object.keys(res?.content ?? {}).join(', ');
      return h('li', {}, h('code', { text: code }), ` ${res?.description ?? ''}${types ? ` (${types})` : ''}`);
    })));
  }
  return body;
}

function render() {
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = op.tags?.[0] ?? 'other';
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push({ path, method, op: { ...op, parameters: [...(item.parameters ?? []), ...(op.parameters ?? [])] } });
    }
  }
  const sections = [];
  const links = [];
  let count = 0;
  for (const [tag, ops] of groups) {
    const id = `tag-${tag.replace(/[^A-Za-z0-9_-]/g, '-')}`;
    links.push(h('a', { href: `#${id}`, text: `${tag} (${ops.length})` }));
    sections.push(h('section', { class: 'tag-group', 'aria-labelledby': `${id}-h` },
      h('h2', { id: `${id}-h`, text: tag }),
      h('div', { id }, ops.map(({ path, method, op }) => {
        count += 1;
        const details = h('details', { class: 'op', 'data-search': `${method} ${path} ${op.summary ?? ''} ${op.operationId ?? ''}`.toLowerCase() },
          h('summary', {},
            h('span', { class: `method m-${method}`, text: method.toUpperCase() }),
            h('span', { class: 'path', text: path }),
            h('span', { class: 'muted', text: op.summary ?? op.operationId ?? '' })));
        details.addEventListener('toggle', () => {
          if (details.open && details.children.length === 1) details.append(operationBody(op));
        }, { once: false });
        return details;
      }))));
  }
  fill($('tags'), links);
  fill($('ops'), sections);
  const info = doc.info ?? {};
  $('docs-info').textContent = `${info.title ?? 'API'} ${info.version ?? ''} · OpenAPI ${doc.openapi ?? ''} · ${count} operations${info.description ? ` · ${info.description}` : ''}`;
}

function filter() {
  const needle = $('filter').value.trim().toLowerCase();
  for (const op of document.querySelectorAll('.op')) op.hidden = Boolean(needle) && !op.dataset.search.includes(needle);
  for (const group of document.querySelectorAll('.tag-group')) group.hidden = !group.querySelector('.op:not([hidden])');
}

$('filter').addEventListener('input', filter);
$('docs-filter').addEventListener('submit', (event) => event.preventDefault());
guard(async () => {
  doc = await get('/api/openapi.json');
  render();
});
