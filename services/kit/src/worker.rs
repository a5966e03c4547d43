//! Workers: a pool of handlers taking entries from a [`WorkQueue`]. Each of
//! [`WorkerOptions::concurrency`] loops pulls a batch, hands it to the [`Handler`], extends the
//! batch's lease every third of it while the handler runs, and settles each entry as the
//! handler says ([`Outcome`]): acked when done, given back with a delay for a transient failure
//! (delivered again, and dead-lettered once delivered too often), or dead-lettered at once when
//! it can never succeed. A handler that panics counts as a transient failure of its batch.
//!
//! Stopping: the loops stop pulling once `stop` is cancelled; a batch already pulled is still
//! handled (the handler sees `stop` and may give its entries back with [`Outcome::Retry`]).
//! What is not acked when the process dies is delivered again after its lease.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::FutureExt as _;
use prometheus::{IntCounterVec, Opts};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, retry_delay};
use crate::storage::{Delivery, WorkQueue};

/// What became of one delivered entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: acked.
    Done,
    /// Failed for now: delivered again (to any consumer) after the delay, at most the lease;
    /// dead-lettered once delivered more than the queue's `max_deliveries` times.
    Retry(Duration),
    /// Can never succeed: moved to the dead-letter stream with this reason.
    DeadLetter(String),
}

impl Outcome {
    /// A retry after a delay that grows with the entry's deliveries (1 s, 2 s, 4 s … at most
    /// `max`).
    pub fn retry_after_failures(delivery: &Delivery, max: Duration) -> Outcome {
        Outcome::Retry(retry_delay(delivery.deliveries, Duration::from_secs(1), max))
    }

    fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retry(_) => "retry",
            Outcome::DeadLetter(_) => "dead_letter",
        }
    }
}

/// Handles batches of entries.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles `batch` and returns one outcome per delivery, in the same order (a missing
    /// outcome counts as a retry). The lease of the batch is extended while this runs, however
    /// long. `stop` is cancelled when the worker is asked to stop: a handler that waits or
    /// retries in place should then give up, answering [`Outcome::Retry`] with no delay for
    /// what it did not finish.
    async fn handle(&self, batch: &[Delivery], stop: &CancellationToken) -> Vec<Outcome>;
}

/// How a worker pool takes entries.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The consumer's name in the queue: unique per process ([`consumer_name`]).
    pub consumer: String,
    /// Loops pulling and handling at once (each handles one batch at a time).
    pub concurrency: usize,
    /// Entries per batch, at most.
    pub batch: usize,
    /// How long a pull waits for entries.
    pub wait: Duration,
}

impl WorkerOptions {
    /// One loop, one entry at a time, pulls waiting up to 1 s, as `consumer`.
    pub fn new(consumer: impl Into<String>) -> Self {
        WorkerOptions {
            consumer: consumer.into(),
            concurrency: 1,
            batch: 1,
            wait: Duration::from_secs(1),
        }
    }
}

/// A name for this process's part in shared work (its consumer name in a queue, the owner of
/// the work it leases): the host name, the process id and a random suffix, so that a
/// restarted process (the same pod, process id 1 again) never takes the name of the one it
/// replaces. Each call makes a new name.
pub fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "outpost".into());
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

static ENTRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::metrics::register(
        IntCounterVec::new(
            Opts::new(
                "outpost_worker_entries_total",
                "queue entries handled by workers, by queue and outcome (done, retry, dead_letter)",
            ),
            &["queue", "outcome"],
        )
        .expect("valid metric"),
    )
});

/// Runs `options.concurrency` loops of `handler` over `queue` until `stop` is cancelled and
/// the batches in hand are settled. A loop whose handler panicked outside a batch is started
/// again.
pub async fn run(
    queue: Arc<dyn WorkQueue>,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
    stop: CancellationToken,
) {
    for outcome in ["done", "retry", "dead_letter"] {
        ENTRIES.with_label_values(&[queue.name(), outcome]);
    }
    tracing::info!(queue = %queue.name(), consumer = %options.consumer, loops = options.concurrency, "worker started");
    let spawn = |loops: &mut JoinSet<()>| {
        loops.spawn(work(queue.clone(), handler.clone(), options.clone(), stop.clone()));
    };
    let mut loops = JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        spawn(&mut loops);
    }
    while let Some(ended) = loops.join_next().await {
        if let Err(err) = ended
            && !stop.is_cancelled()
        {
            tracing::error!(queue = %queue.name(), error = %err, "a worker loop failed; starting it again");
            spawn(&mut loops);
        }
    }
    tracing::info!(queue = %queue.name(), consumer = %options.consumer, "worker stopped");
}

/// One loop: pull, handle, settle, until `stop`.
async fn work(queue: Arc<dyn WorkQueue>, handler: Arc<dyn Handler>, options: WorkerOptions, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    while !stop.is_cancelled() {
        // A pull is not interrupted: what it took is handled, not left to its lease.
        match queue.pull(&options.consumer, options.batch.max(1), options.wait).await {
            Ok(batch) => {
                backoff.reset();
                if !batch.is_empty() {
                    handle(&*queue, &*handler, &options.consumer, batch, &stop).await;
                }
            }
            Err(err) => {
                tracing::warn!(queue = %queue.name(), error = %err, retry_in = ?backoff.next(), "cannot pull from the queue");
                if backoff.sleep_or_stop(stop.cancelled()).await {
                    break;
                }
            }
        }
    }
}

/// Handles one batch, extending its lease meanwhile, and settles it.
async fn handle(
    queue: &dyn WorkQueue,
    handler: &dyn Handler,
    consumer: &str,
    batch: Vec<Delivery>,
    stop: &CancellationToken,
) {
    let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
    let every = (queue.options().lease / 3).max(Duration::from_millis(10));
    let handling = std::panic::AssertUnwindSafe(handler.handle(&batch, stop)).catch_unwind();
    tokio::pin!(handling);
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcomes = loop {
        tokio::select! {
            outcomes = &mut handling => break outcomes,
            _ = renew.tick() => match queue.extend(consumer, &ids).await {
                Ok(held) if held.len() < ids.len() => tracing::warn!(
                    queue = %queue.name(), lost = ids.len() - held.len(),
                    "entries in hand were taken over by another consumer (their lease ran out)"
                ),
                Ok(_) => {}
                Err(err) => tracing::warn!(queue = %queue.name(), error = %err, "cannot extend the lease of entries in hand"),
            },
        }
    };
    let max = queue.options().lease;
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(_) => {
            tracing::error!(queue = %queue.name(), entries = batch.len(), "the handler panicked; the batch is tried again later");
            batch.iter().map(|d| Outcome::retry_after_failures(d, max)).collect()
        }
    };
    settle(queue, consumer, &batch, outcomes).await;
}

/// Acks, gives back and dead-letters a handled batch. A failure is logged: what is not
/// settled is delivered again after its lease.
async fn settle(queue: &dyn WorkQueue, consumer: &str, batch: &[Delivery], outcomes: Vec<Outcome>) {
    if outcomes.len() != batch.len() {
        tracing::error!(queue = %queue.name(), entries = batch.len(), outcomes = outcomes.len(), "the handler answered the wrong number of outcomes");
    }
    let mut done = Vec::new();
    let mut retries: BTreeMap<Duration, Vec<String>> = BTreeMap::new();
    let mut dead: Vec<(&Delivery, &str)> = Vec::new();
    let missing = Outcome::Retry(Duration::ZERO);
    for (index, delivery) in batch.iter().enumerate() {
        let outcome = outcomes.get(index).unwrap_or(&missing);
        ENTRIES.with_label_values(&[queue.name(), outcome.label()]).inc();
        match outcome {
            Outcome::Done => done.push(delivery.id.clone()),
            Outcome::Retry(delay) => retries.entry(*delay).or_default().push(delivery.id.clone()),
            Outcome::DeadLetter(reason) => {
                tracing::warn!(queue = %queue.name(), entry = %delivery.id, error = %reason, "entry dead-lettered");
                dead.push((delivery, reason.as_str()));
            }
        }
    }
    if let Err(err) = queue.dead_letter(&dead).await {
        tracing::error!(queue = %queue.name(), error = %err, entries = dead.len(), "cannot dead-letter entries");
    }
    for (delay, ids) in retries {
        if let Err(err) = queue.nack(consumer, &ids, delay).await {
            tracing::warn!(queue = %queue.name(), error = %err, entries = ids.len(), "cannot give entries back");
        }
    }
    if let Err(err) = queue.ack(&done).await {
        // Done already: delivered again after the lease, and handled again idempotently.
        tracing::warn!(queue = %queue.name(), error = %err, entries = done.len(), "cannot ack entries");
    }
}
