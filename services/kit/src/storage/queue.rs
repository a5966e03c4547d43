//! A work queue with leases: a pulled entry stays in flight until it is acked; when its lease
//! expires it is delivered again (to any consumer). Backed by a Redis stream with a consumer
//! group in the cluster, and by an in-process queue in the embedded mode.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How a queue behaves.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// How long a pulled entry belongs to its consumer before it is delivered again.
    pub lease: Duration,
    /// How many entries (waiting and in flight) the queue holds before `push` fails with
    /// [`QueueError::Full`].
    pub max_len: u64,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lease: Duration::from_secs(30),
            max_len: 100_000,
        }
    }
}

/// One delivered entry.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The entry's id, for [`WorkQueue::ack`].
    pub id: String,
    /// The entry's bytes. A Redis stream entry without a `payload` field (from a producer
    /// outside Outpost) is delivered as a JSON object of its fields.
    pub payload: Vec<u8>,
    /// How often the entry was delivered, this delivery included (1 the first time).
    pub deliveries: u64,
}

/// Why a queue call failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `max_len` entries: backpressure, nothing was added.
    #[error("queue is full ({0} entries)")]
    Full(u64),
    /// The backend failed.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A work queue with leases; see the module documentation.
#[async_trait::async_trait]
pub trait WorkQueue: Send + Sync {
    /// Adds an entry and returns its id; [`QueueError::Full`] when the queue holds `max_len`
    /// entries (backpressure: nothing is ever dropped).
    async fn push(&self, payload: &[u8]) -> Result<String, QueueError>;
    /// Adds entries in one round trip; all or none: [`QueueError::Full`] when they do not all
    /// fit under `max_len`.
    async fn push_many(&self, payloads: &[Vec<u8>]) -> Result<Vec<String>, QueueError>;
    /// Up to `max` entries for `consumer`: first entries whose lease expired (re-delivery of
    /// un-acked work), then new ones; waits up to `wait` when none.
    async fn pull(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// Removes entries for good; unknown ids are ignored.
    async fn ack(&self, ids: &[String]) -> Result<(), QueueError>;
    /// How many entries the queue holds: waiting and in flight.
    async fn len(&self) -> Result<u64, QueueError>;
    /// Whether the queue holds nothing, waiting or in flight.
    async fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len().await? == 0)
    }
    /// Checks the backend.
    async fn ping(&self) -> Result<(), QueueError>;
}

struct Entry {
    payload: Vec<u8>,
    deliveries: u64,
}

struct InFlight {
    entry: Entry,
    until: Instant,
}

#[derive(Default)]
struct State {
    next_id: u64,
    waiting: VecDeque<(u64, Entry)>,
    in_flight: BTreeMap<u64, InFlight>,
}

impl State {
    fn len(&self) -> u64 {
        (self.waiting.len() + self.in_flight.len()) as u64
    }

    fn add(&mut self, payload: &[u8]) -> String {
        self.next_id += 1;
        let entry = Entry {
            payload: payload.to_vec(),
            deliveries: 0,
        };
        self.waiting.push_back((self.next_id, entry));
        format_id(self.next_id)
    }

    /// Takes up to `max` entries (expired leases first), or returns when the next lease expires.
    fn take(&mut self, max: usize, lease: Duration) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let mut out = Vec::new();
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.until <= now)
            .map(|(id, _)| *id)
            .take(max)
            .collect();
        for id in expired {
            let flight = self.in_flight.get_mut(&id).expect("expired entry is in flight");
            flight.until = now + lease;
            flight.entry.deliveries += 1;
            out.push(delivery(id, &flight.entry));
        }
        while out.len() < max {
            let Some((id, mut entry)) = self.waiting.pop_front() else {
                break;
            };
            entry.deliveries += 1;
            out.push(delivery(id, &entry));
            self.in_flight.insert(
                id,
                InFlight {
                    entry,
                    until: now + lease,
                },
            );
        }
        let next_expiry = self.in_flight.values().map(|f| f.until).min();
        (out, next_expiry)
    }
}

fn format_id(id: u64) -> String {
    // Zero-padded, so ids sort as strings in the order they were pushed.
    format!("{id:020}")
}

fn delivery(id: u64, entry: &Entry) -> Delivery {
    Delivery {
        id: format_id(id),
        payload: entry.payload.clone(),
        deliveries: entry.deliveries,
    }
}

/// The in-process queue of the embedded mode.
pub(crate) struct MemoryQueue {
    opts: QueueOptions,
    state: Mutex<State>,
    notify: Notify,
}

impl MemoryQueue {
    pub(crate) fn new(opts: QueueOptions) -> Self {
        MemoryQueue {
            opts,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl WorkQueue for MemoryQueue {
    async fn push(&self, payload: &[u8]) -> Result<String, QueueError> {
        let id = {
            let mut state = self.state();
            let len = state.len();
            if len >= self.opts.max_len {
                return Err(QueueError::Full(len));
            }
            state.add(payload)
        };
        self.notify.notify_waiters();
        Ok(id)
    }

    async fn push_many(&self, payloads: &[Vec<u8>]) -> Result<Vec<String>, QueueError> {
        let ids = {
            let mut state = self.state();
            let len = state.len();
            if len + payloads.len() as u64 > self.opts.max_len {
                return Err(QueueError::Full(len));
            }
            payloads.iter().map(|p| state.add(p)).collect()
        };
        self.notify.notify_waiters();
        Ok(ids)
    }

    async fn pull(&self, _consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (out, next_expiry) = self.state().take(max, self.opts.lease);
            if !out.is_empty() {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Ok(out);
            }
            let until = next_expiry.map_or(deadline, |e| e.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, ids: &[String]) -> Result<(), QueueError> {
        let mut state = self.state();
        for id in ids {
            let Ok(id) = id.parse::<u64>() else { continue };
            if state.in_flight.remove(&id).is_none() {
                state.waiting.retain(|(waiting, _)| *waiting != id);
            }
        }
        Ok(())
    }

    async fn len(&self) -> Result<u64, QueueError> {
        Ok(self.state().len())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
