//! The Redis stream of sensor readings, read by the consumer group `ingest`, for producers
//! that need every reading kept: a batch is acked only after telemetry committed it, so a
//! consumer that dies loses nothing (its un-acked entries are delivered again after their
//! lease, and writes are idempotent). Malformed entries go to the dead-letter stream
//! `{stream}:dead` (with the error) and are acked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use outpost_kit::storage::{Delivery, WorkQueue};

use crate::metrics;
use crate::reading::parse_sensor_message;
use crate::telemetry::Telemetry;

/// The consumer group of the sensor stream.
pub const GROUP: &str = "ingest";
/// Longest wait between attempts while Redis or telemetry fail.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a stream consumer reads.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// The consumer's name in the group, unique per process.
    pub consumer: String,
    /// Entries per batch, at most.
    pub batch: usize,
    /// How long a pull waits for entries.
    pub wait: Duration,
}

impl StreamOptions {
    /// Batches of up to 5000 entries, pulls waiting up to 1 s, as `consumer`.
    pub fn new(consumer: impl Into<String>) -> Self {
        StreamOptions {
            consumer: consumer.into(),
            batch: 5000,
            wait: Duration::from_secs(1),
        }
    }
}

/// This process's consumer name: host name and process id.
pub fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ingest".into());
    format!("{host}-{}", std::process::id())
}

/// The dead-letter stream of `stream`.
pub fn dead_letter_key(stream: &str) -> String {
    format!("{stream}:dead")
}

/// Consumes `queue` into telemetry until `stop` resolves: pulls a batch, writes its readings,
/// dead-letters malformed entries to `dead`, and acks. A batch interrupted by `stop` stays
/// un-acked and is delivered again.
pub async fn consume_stream(
    queue: Arc<dyn WorkQueue>,
    dead: Arc<dyn WorkQueue>,
    telemetry: Telemetry,
    options: StreamOptions,
    stop: impl Future<Output = ()> + Send,
) {
    let stop = stop.shared();
    let mut backoff = Duration::from_millis(100);
    tracing::info!(consumer = %options.consumer, "consuming the sensor stream");
    while stop.peek().is_none() {
        let pulled = tokio::select! {
            pulled = queue.pull(&options.consumer, options.batch, options.wait) => pulled,
            () = stop.clone() => break,
        };
        let deliveries = match pulled {
            Ok(deliveries) => deliveries,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "cannot read the sensor stream");
                if sleep_or_stop(backoff, stop.clone()).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if deliveries.is_empty() {
            continue;
        }
        metrics::stream_batch(deliveries.len());
        if !handle_batch(&*queue, &*dead, &telemetry, deliveries, stop.clone()).await {
            break;
        }
    }
    tracing::info!(consumer = %options.consumer, "stopped consuming the sensor stream");
}

/// Sleeps `duration`; true when `stop` resolved first.
async fn sleep_or_stop(duration: Duration, stop: impl Future<Output = ()>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = stop => true,
    }
}

/// Writes, dead-letters and acks one batch; false when `stop` interrupted it (nothing acked).
async fn handle_batch(
    queue: &dyn WorkQueue,
    dead: &dyn WorkQueue,
    telemetry: &Telemetry,
    deliveries: Vec<Delivery>,
    stop: impl Future<Output = ()> + Clone,
) -> bool {
    let mut good = Vec::with_capacity(deliveries.len());
    let mut readings = Vec::with_capacity(deliveries.len());
    let mut bad: Vec<(&Delivery, String)> = Vec::new();
    for delivery in &deliveries {
        match parse_sensor_message(&delivery.payload) {
            Ok(reading) => {
                good.push(delivery);
                readings.push(reading.to_telemetry());
            }
            Err(err) => bad.push((delivery, err.to_string())),
        }
    }
    let mut backoff = Duration::from_millis(100);
    let isolated = loop {
        match telemetry.write_isolating(&readings).await {
            Ok(isolated) => break isolated,
            Err(status) => {
                tracing::warn!(entries = readings.len(), error = %status.message(), retry_in = ?backoff, "telemetry write failed");
                if sleep_or_stop(backoff, stop.clone()).await {
                    return false;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    for (index, status) in &isolated.refused {
        bad.push((good[*index], format!("telemetry refused it: {}", status.message())));
    }
    metrics::readings(
        metrics::source::STREAM,
        (readings.len() - isolated.refused.len()) as u64,
    );
    let mut ack: Vec<String> = good.iter().map(|d| d.id.clone()).collect();
    if !bad.is_empty() {
        let letters: Vec<Vec<u8>> = bad
            .iter()
            .map(|(delivery, error)| dead_letter(delivery, error))
            .collect();
        for (delivery, error) in &bad {
            metrics::malformed(metrics::source::STREAM);
            tracing::warn!(entry = %delivery.id, %error, "malformed stream entry dead-lettered");
        }
        match dead.push_many(&letters).await {
            Ok(_) => {}
            Err(err) => {
                // Left un-acked: delivered (and dead-lettered) again later.
                tracing::error!(error = %err, "cannot dead-letter malformed entries");
                let refused: Vec<&str> = bad.iter().map(|(d, _)| d.id.as_str()).collect();
                ack.retain(|id| !refused.contains(&id.as_str()));
                bad.clear();
            }
        }
        ack.extend(bad.iter().map(|(d, _)| d.id.clone()));
    }
    if let Err(err) = queue.ack(&ack).await {
        // Committed already: delivered again after the lease, and written again idempotently.
        tracing::warn!(error = %err, entries = ack.len(), "cannot ack stream entries");
    }
    true
}

/// A dead letter: the entry's id, why it was refused, and its payload.
fn dead_letter(delivery: &Delivery, error: &str) -> Vec<u8> {
    let letter = serde_json::json!({
        "id": delivery.id,
        "error": error,
        "payload": String::from_utf8_lossy(&delivery.payload),
        "deliveries": delivery.deliveries,
    });
    serde_json::to_vec(&letter).unwrap_or_default()
}
