// The review queue: the pending images in review order, a page at a time, with the reviewer's
// position, the decisions waiting for the server and the ones it acknowledged. No DOM here.

import { get, post, query } from './api.js';

export const PAGE = 50;
/** Fetch the next page when the position comes this close to the end of what is loaded. */
const AHEAD = 20;

export class ReviewQueue {
  constructor({ onChange }) {
    this.items = [];
    this.index = 0;
    this.next = undefined; // page token; null at the end
    this.loading = null;
    this.counts = { pending: 0, accepted: 0, rejected: 0 };
    this.inflight = 0;
    this.undo = [];
    this.chains = new Map(); // image id → promise of its last decision (sent in order)
    this.onChange = onChange;
    this.owed = 0;
  }

  get current() {
    return this.items[this.index];
  }

  async start() {
    await Promise.all([this.more(), this.syncCounts()]);
  }

  /** Loads the next page of pending images (once at a time). */
  more() {
    if (this.next === null) return Promise.resolve();
    if (this.loading) return this.loading;
    this.loading = (async () => {
      try {
        const page = await get(`/image_view${query({ page_size: PAGE, page_token: this.next })}`);
        const known = new Set(this.items.map((i) => i.id));
        for (const image of page.images ?? []) {
          if (known.has(image.id)) continue;
          this.items.push({ ...image, state: image.review?.state ?? 'pending', sending: null });
        }
        this.next = page.next_page_token || null;
      } finally {
        this.loading = null;
      }
      this.onChange({ list: true });
      if (this.owed > 0) {
        const steps = this.owed;
        this.owed = 0;
        this.move(steps);
      }
    })();
    return this.loading;
  }

  async syncCounts() {
    const stats = await get('/api/v1/reviewStats');
    // Decisions in flight are counted when acknowledged; a fresh read holds them already, or not.
    if (this.inflight > 0) return;
    this.counts = { pending: Number(stats.pending), accepted: Number(stats.accepted), rejected: Number(stats.rejected) };
    this.onChange({ counts: true });
  }

  move(step) {
    const wanted = this.index + step;
    // Past the end of what is loaded while more is coming: the move happens once it is here.
    this.owed = wanted >= this.items.length && this.next !== null ? wanted - (this.items.length - 1) : 0;
    const to = Math.min(Math.max(wanted, 0), Math.max(this.items.length - 1, 0));
    if (to !== this.index) {
      this.index = to;
      this.onChange({ position: true });
    }
    if (this.items.length - this.index <= AHEAD) this.more().catch((err) => this.onChange({ error: err }));
  }

  /** Decides the current image (accepted or rejected) and moves on; answers once acknowledged. */
  decide(decision) {
    const item = this.current;
    if (!item) return Promise.resolve();
    this.undo.push({ item, before: item.state });
    if (this.undo.length > 1000) this.undo.shift();
    const sent = this.send(item, decision);
    this.move(1);
    return sent;
  }

  /** Undoes the last decision: the image goes back to what it was, and the position to it. */
  revert() {
    const last = this.undo.pop();
    if (!last) return Promise.resolve();
    const at = this.items.indexOf(last.item);
    if (at >= 0 && at !== this.index) {
      this.index = at;
      this.onChange({ position: true });
    }
    return this.send(last.item, last.before);
  }

  send(item, decision) {
    const previous = this.chains.get(item.id) ?? Promise.resolve();
    item.sending = decision;
    this.inflight += 1;
    this.onChange({ item, counts: true });
    const done = previous.catch(() => {}).then(async () => {
      try {
        const answer = decision === 'pending'
          ? await post(`/api/v1/images/${encodeURIComponent(item.id)}:review`, { decision: 'REVIEW_STATE_PENDING' })
          : await post(`/${decision === 'accepted' ? 'accept' : 'reject'}_pic/${encodeURIComponent(item.id)}`);
        const state = stateName(answer?.review?.state) ?? decision;
        if (state !== item.state) {
          this.counts[item.state] = Math.max(0, this.counts[item.state] - 1);
          this.counts[state] += 1;
          item.state = state;
        }
      } finally {
        this.inflight -= 1;
        if (this.chains.get(item.id) === done) this.chains.delete(item.id);
        if (item.sending === decision) item.sending = null;
        this.onChange({ item, counts: true });
      }
    });
    this.chains.set(item.id, done);
    return done;
  }
}

/** `accepted` from `accepted` or `REVIEW_STATE_ACCEPTED`. */
export function stateName(state) {
  if (!state) return undefined;
  const text = String(state).toLowerCase().replace(/^review_state_/, '');
  return ['pending', 'accepted', 'rejected'].includes(text) ? text : undefined;
}
