// Server-sent events of a run or a job (`/runs/{id}/events`, `/jobs/{id}/events`): `update`
// events carry the run or job as JSON, `end` the final one, `error` the gateway's JSON error;
// after `end` or `error` the stream is closed here (an EventSource would otherwise reconnect).

const EVENT_NAMES = ['message', 'update', 'end'];
const FINAL = /(succeeded|failed|cancelled|canceled|done|finished|error)$/i;

/** The state word of an update (`RUN_STATE_SUCCEEDED` → succeeded), whatever its shape. */
export function stateOf(update) {
  const source = update?.run ?? update?.job ?? update;
  const raw = source?.state ?? source?.status ?? '';
  return String(raw).toLowerCase().replace(/^(run_state_|plot_job_state_|job_state_|state_)/, '');
}

/** Whether an update is the last. */
export function isFinal(update) {
  return FINAL.test(stateOf(update));
}

/**
 * Watches `url`: calls `onUpdate(data)` for each event, `onEnd(last)` once a final state
 * arrives (or the stream ends after one). `onError(message)` when the stream cannot be read.
 * Returns a function that stops watching.
 */
export function watch(url, { onUpdate, onEnd, onError }) {
  const source = new EventSource(url);
  let last = null;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    source.close();
    onEnd?.(last);
  };
  const handle = (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    last = data;
    onUpdate?.(data, event.type);
    if (isFinal(data) || event.type === 'end') finish();
  };
  for (const name of EVENT_NAMES) source.addEventListener(name, handle);
  source.addEventListener('error', (event) => {
    if (done) return;
    if (typeof event.data === 'string' && event.data) {
      // The gateway's error event: its JSON error body.
      done = true;
      source.close();
      let message = event.data;
      try {
        message = JSON.parse(event.data)?.error?.message ?? message;
      } catch { /* not JSON: the text says it */ }
      onError?.(message);
      return;
    }
    if (last && isFinal(last)) {
      finish();
    } else if (source.readyState === EventSource.CLOSED) {
      done = true;
      onError?.(`lost the progress stream of ${url}`);
    }
  });
  return () => {
    done = true;
    source.close();
  };
}
