// Requests to the gateway. Every error answer carries `{"error": {"code", "message"}}`: the
// message is what the user sees. Writes carry the bearer token when the gateway asks for one:
// the first 401 asks the user for it once (kept for this browser tab), then the write is sent
// again.

import { h } from './dom.js';

const TOKEN_KEY = 'outpost.token';

/** An error answered by the gateway, or a request that got no answer. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

let asking = null;

/** Asks for the token in a dialog (one dialog however many writes wait for it). */
function askToken(reason) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'current-password', required: true });
    const cancel = h('button', { type: 'button', text: 'Cancel' });
    const form = h('form', { method: 'dialog' },
      h('h2', { text: 'API token' }),
      h('p', { text: `This gateway needs its API token for changes (${reason}). It is kept for this tab only.` }),
      h('label', { for: 'token-input', text: 'Token' }),
      input,
      h('div', { class: 'row' }, h('button', { type: 'submit', text: 'Use this token' }), cancel));
    const dialog = h('dialog', { 'aria-labelledby': 'token-title' }, form);
    form.querySelector('h2').id = 'token-title';
    document.body.append(dialog);
    const done = (value) => {
      dialog.close();
      dialog.remove();
      asking = null;
      resolve(value);
    };
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (value) {
        try { sessionStorage.setItem(TOKEN_KEY, value); } catch { /* private mode: this request only */ }
      }
      done(value);
    });
    cancel.addEventListener('click', () => done(''));
    dialog.addEventListener('cancel', () => done(''));
    dialog.showModal();
    input.focus();
  });
  return asking;
}

async function errorOf(response) {
  let code = `HTTP_${response.status}`;
  let message = `${response.status} ${response.statusText || 'error'}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON: the status says it.
  }
  return new ApiError(response.status, code, message);
}

/**
 * Sends a request and answers `{status, data}` (data: the parsed JSON, or null). Throws an
 * ApiError with the gateway's message for any error status.
 */
export async function request(path, { method = 'GET', body, signal, headers = {} } = {}) {
  const write = method !== 'GET' && method !== 'HEAD';
  for (let attempt = 0; ; attempt += 1) {
    const sent = { ...headers, Accept: 'application/json' };
    if (body !== undefined) sent['Content-Type'] = 'application/json';
    const bearer = write ? token() : '';
    if (bearer) sent.Authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        credentials: 'same-origin',
      });
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'UNAVAILABLE', `the gateway did not answer ${method} ${path}`);
    }
    if (response.status === 401 && write && attempt === 0) {
      const error = await errorOf(response);
      const given = await askToken(error.message);
      if (given) continue;
      throw error;
    }
    if (!response.ok) throw await errorOf(response);
    const type = response.headers.get('content-type') || '';
    const data = type.includes('json') ? await response.json() : null;
    return { status: response.status, data };
  }
}

/** GET a JSON route. */
export async function get(path, options) {
  return (await request(path, options)).data;
}

/** POST a JSON body (or none). */
export async function post(path, body, options = {}) {
  return (await request(path, { ...options, method: 'POST', body })).data;
}

/** A query string of the set values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}
