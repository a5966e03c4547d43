//! The Redis stream of sensor readings, read by the consumer group `ingest`, for producers
//! that need every reading kept. A kit worker ([`outpost_kit::worker`]) pulls batches, this
//! handler writes them to telemetry, and an entry is acked only after telemetry committed it:
//! a consumer that dies loses nothing (its entries are delivered again after their lease, and
//! writes are idempotent).
//!
//! What cannot be written: a malformed entry goes to the dead-letter stream `{stream}:dead`
//! with why; a batch telemetry refuses is bisected to find the readings it refuses, which are
//! dead-lettered, and those it fails on (`INTERNAL`, `UNKNOWN`) are tried again later, up to
//! the queue's `max_deliveries`, then dead-lettered. While telemetry is unavailable the batch
//! is retried in place with backoff (its lease extended meanwhile).

use std::sync::Arc;
use std::time::Duration;

use outpost_kit::backoff::Backoff;
use outpost_kit::storage::{Delivery, QueueOptions, WorkQueue};
use outpost_kit::worker::{self, Handler, Outcome, WorkerOptions};
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::reading::parse_sensor_message;
use crate::telemetry::{Fate, Telemetry};

/// The consumer group of the sensor stream.
pub const GROUP: &str = "ingest";
/// Batches pulled and written at once: one is written while the next is pulled and parsed.
const LOOPS: usize = 2;
/// The longest wait before a reading telemetry failed on is tried again (at most the lease).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The sensor stream's queue options: the kit defaults (a 10 s lease extended while a batch
/// is written, 10 deliveries at most, 10,000 dead letters kept).
pub fn queue_options() -> QueueOptions {
    QueueOptions::default()
}

/// How the sensor stream is consumed, as `consumer`: two loops, batches of up to 10,000
/// entries (telemetry's largest write), pulls waiting up to 1 s.
pub fn worker_options(consumer: impl Into<String>) -> WorkerOptions {
    WorkerOptions {
        concurrency: LOOPS,
        batch: crate::telemetry::MAX_WRITE_BATCH,
        wait: Duration::from_secs(1),
        ..WorkerOptions::new(consumer)
    }
}

/// Consumes `queue` into telemetry until `stop` is cancelled; batches in hand are still
/// written (unless telemetry is failing: then they are given back at once).
pub async fn consume(queue: Arc<dyn WorkQueue>, telemetry: Telemetry, options: WorkerOptions, stop: CancellationToken) {
    worker::run(queue, Arc::new(SensorStream { telemetry }), options, stop).await
}

/// Writes batches of stream entries to telemetry.
struct SensorStream {
    telemetry: Telemetry,
}

#[async_trait::async_trait]
impl Handler for SensorStream {
    async fn handle(&self, batch: &[Delivery], stop: &CancellationToken) -> Vec<Outcome> {
        metrics::stream_batch(batch.len());
        let mut outcomes = vec![Outcome::Done; batch.len()];
        let mut readings = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (index, delivery) in batch.iter().enumerate() {
            match parse_sensor_message(&delivery.payload) {
                Ok(reading) => {
                    readings.push(reading.into());
                    entries.push(index);
                }
                Err(err) => outcomes[index] = Outcome::DeadLetter(err.to_string()),
            }
        }
        metrics::malformed(metrics::source::STREAM, (batch.len() - entries.len()) as u64);
        if readings.is_empty() {
            return outcomes;
        }
        let mut backoff = Backoff::default();
        let fates = loop {
            match self.telemetry.write_bisecting(&readings).await {
                Ok(bisected) => break bisected.fates,
                Err(status) => {
                    tracing::warn!(entries = readings.len(), error = %status.message(), retry_in = ?backoff.next(), "telemetry write failed");
                    if backoff.sleep_or_stop(stop.cancelled()).await {
                        // Stopping: given back at once, for this or another consumer.
                        for index in entries {
                            outcomes[index] = Outcome::Retry(Duration::ZERO);
                        }
                        return outcomes;
                    }
                }
            }
        };
        let mut written = 0;
        for (fate, index) in fates.into_iter().zip(entries) {
            outcomes[index] = match fate {
                Fate::Written => {
                    written += 1;
                    Outcome::Done
                }
                Fate::Refused(status) => {
                    metrics::malformed(metrics::source::STREAM, 1);
                    Outcome::DeadLetter(format!("telemetry refused it: {}", status.message()))
                }
                Fate::Failed(status) => {
                    tracing::warn!(entry = %batch[index].id, error = %status.message(), "telemetry failed on a reading; it is tried again later");
                    Outcome::retry_after_failures(&batch[index], MAX_RETRY_DELAY)
                }
            };
        }
        metrics::readings(metrics::source::STREAM, written);
        outcomes
    }
}
