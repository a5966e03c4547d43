//! Work queues with leases, for work that outlives a request (sensor stream batches, plot
//! jobs, camera loads). A pulled entry belongs to its consumer for a lease; the consumer acks
//! it when done, extends the lease while it works, or gives it back with a delay (nack). An
//! entry whose lease ran out is delivered again, to any consumer: a consumer that dies loses
//! nothing. An entry delivered more than [`QueueOptions::max_deliveries`] times, or that a
//! consumer refuses, goes to the queue's dead-letter stream, which keeps the newest
//! [`QueueOptions::dead_letters`] letters.
//!
//! Two adapters, one behaviour (the suite in `tests/storage_queue.rs` runs on both):
//! - a Redis stream with a consumer group (the cluster): acked entries are trimmed from the
//!   stream, the dead letters are the stream `{key}:dead`, and consumers that died are removed
//!   from the group once they hold nothing;
//! - a table in the service's SQL database (the embedded mode): an entry is committed before
//!   `push` returns, so queued work survives an abrupt stop of the process.
//!
//! [`crate::worker`] runs handlers over a queue (pull, handle, ack; lease extension; retry
//! with a delay; dead-lettering).

use std::time::Duration;

/// How a queue behaves.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// How long a pulled entry belongs to its consumer before it is delivered again, unless
    /// the consumer extends it ([`WorkQueue::extend`]).
    pub lease: Duration,
    /// How many entries (waiting and in flight) the queue holds before `push` fails with
    /// [`QueueError::Full`].
    pub max_len: u64,
    /// An entry due for its delivery number `max_deliveries + 1` goes to the dead-letter
    /// stream instead (a poison entry that kills its consumers, or that fails again and again).
    pub max_deliveries: u64,
    /// How many dead letters are kept; older ones are trimmed away.
    pub dead_letters: u64,
}

/// The default lease: short enough that a dead consumer's work is delivered again within
/// seconds, long enough that a live consumer extends it comfortably (every third of it).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

impl Default for QueueOptions {
    /// A lease of [`DEFAULT_LEASE`], 100,000 entries, 10 deliveries, 10,000 dead letters.
    fn default() -> Self {
        QueueOptions {
            lease: DEFAULT_LEASE,
            max_len: 100_000,
            max_deliveries: 10,
            dead_letters: 10_000,
        }
    }
}

/// One delivered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The entry's id, for [`WorkQueue::ack`] and the others.
    pub id: String,
    /// The entry's bytes. A Redis stream entry without a `payload` field (from a producer
    /// outside Outpost) is delivered as a JSON object of its fields.
    pub payload: Vec<u8>,
    /// How often the entry was delivered, this delivery included (1 the first time).
    pub deliveries: u64,
}

/// An entry in the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The id of the entry in its queue.
    pub entry: String,
    /// Why it is here.
    pub error: String,
    /// How often it was delivered.
    pub deliveries: u64,
    /// Its bytes.
    pub payload: Vec<u8>,
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
///
/// Ids a consumer passes to [`ack`](WorkQueue::ack), [`extend`](WorkQueue::extend) and
/// [`nack`](WorkQueue::nack) are those of its deliveries; unknown ids (acked already, trimmed)
/// are ignored.
#[async_trait::async_trait]
pub trait WorkQueue: Send + Sync {
    /// The queue's name, for logs and metrics.
    fn name(&self) -> &str;
    /// The options the queue was opened with.
    fn options(&self) -> &QueueOptions;
    /// Adds an entry and returns its id, once it is stored; [`QueueError::Full`] when the
    /// queue holds `max_len` entries (backpressure: nothing is ever dropped).
    async fn push(&self, payload: &[u8]) -> Result<String, QueueError> {
        let mut ids = self.push_many(&[payload.to_vec()]).await?;
        ids.pop()
            .ok_or_else(|| QueueError::Other(anyhow::anyhow!("the queue returned no id")))
    }
    /// Adds entries in one round trip, in order; all or none: [`QueueError::Full`] when they
    /// do not all fit under `max_len`.
    async fn push_many(&self, payloads: &[Vec<u8>]) -> Result<Vec<String>, QueueError>;
    /// Up to `max` entries for `consumer`, oldest first: entries whose lease ran out (or whose
    /// nack delay passed) and new ones; waits up to `wait` when there are none. Entries due for
    /// one delivery too many go to the dead-letter stream instead.
    async fn pull(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// Removes entries for good (the work is done).
    async fn ack(&self, ids: &[String]) -> Result<(), QueueError>;
    /// Renews the lease of entries `consumer` holds, for another full lease; returns the ids
    /// it still held (an entry whose lease ran out and that another consumer took is lost).
    async fn extend(&self, consumer: &str, ids: &[String]) -> Result<Vec<String>, QueueError>;
    /// Gives entries `consumer` holds back, to be delivered again (to any consumer) once
    /// `delay` has passed; a delay longer than the lease counts as the lease.
    async fn nack(&self, consumer: &str, ids: &[String], delay: Duration) -> Result<(), QueueError>;
    /// Moves deliveries to the dead-letter stream, each with why, and removes them from the
    /// queue.
    async fn dead_letter(&self, letters: &[(&Delivery, &str)]) -> Result<(), QueueError>;
    /// Up to `max` dead letters, oldest first.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;
    /// How many entries the queue holds: waiting and in flight.
    async fn len(&self) -> Result<u64, QueueError>;
    /// Whether the queue holds nothing, waiting or in flight.
    async fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len().await? == 0)
    }
    /// Checks the backend.
    async fn ping(&self) -> Result<(), QueueError>;
}

/// The error of a dead letter for an entry delivered too often.
pub(crate) fn too_many_deliveries(deliveries: u64) -> String {
    format!("delivered {deliveries} times without being acked")
}
