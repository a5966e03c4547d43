//! The Redis stream of sensor readings, read by the consumer group `ingest`, for producers
//! that need every reading kept: a batch is acked only after telemetry committed it, so a
//! consumer that dies loses nothing (its un-acked entries are delivered again after their
//! lease, and writes are idempotent). Malformed entries go to the dead-letter stream
//! `{stream}:dead` (with the error) and are acked.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use outpost_api::telemetry::v1 as pb;
use outpost_kit::storage::{Delivery, WorkQueue};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::metrics;
use crate::reading::parse_sensor_message;
use crate::telemetry::Telemetry;

/// The consumer group of the sensor stream.
pub const GROUP: &str = "ingest";
/// Batches being written to telemetry at once.
const WRITES_IN_FLIGHT: usize = 2;

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
    /// Batches of up to 10000 entries (telemetry's largest write), pulls waiting up to 1 s, as `consumer`.
    pub fn new(consumer: impl Into<String>) -> Self {
        StreamOptions {
            consumer: consumer.into(),
            batch: crate::telemetry::MAX_WRITE_BATCH,
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

/// Consumes `queue` into telemetry until `stop` resolves. Three stages overlap, so Redis,
/// telemetry and the database work at the same time: pulling and parsing the next batch,
/// writing one (dead-lettering malformed entries), and acking what was committed. A batch is
/// acked only after telemetry committed it; on `stop`, batches already pulled are still
/// written unless telemetry is failing, and what is not acked is delivered again.
pub async fn consume_stream(
    queue: Arc<dyn WorkQueue>,
    dead: Arc<dyn WorkQueue>,
    telemetry: Telemetry,
    options: StreamOptions,
    stop: impl Future<Output = ()> + Send,
) {
    let stop = stop.shared();
    let (to_write, pulled) = mpsc::channel::<Parsed>(1);
    let (to_ack, mut committed) = mpsc::channel::<Vec<String>>(2);
    tracing::info!(consumer = %options.consumer, "consuming the sensor stream");

    let read = async {
        let mut backoff = Backoff::default();
        while stop.peek().is_none() {
            let deliveries = tokio::select! {
                pulled = queue.pull(&options.consumer, options.batch, options.wait) => pulled,
                () = stop.clone() => break,
            };
            match deliveries {
                Ok(deliveries) if deliveries.is_empty() => {}
                Ok(deliveries) => {
                    backoff.reset();
                    metrics::stream_batch(deliveries.len());
                    if to_write.send(parse(deliveries)).await.is_err() {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff.next(), "cannot read the sensor stream");
                    if backoff.sleep_or_stop(stop.clone()).await {
                        break;
                    }
                }
            }
        }
        drop(to_write);
    };
    let write = async {
        // Two batches in flight: one is written while the other's response is on its way.
        let mut written = tokio_stream::wrappers::ReceiverStream::new(pulled)
            .map(|batch| write(&*dead, &telemetry, batch, stop.clone()))
            .buffer_unordered(WRITES_IN_FLIGHT);
        while let Some(ids) = written.next().await {
            let Some(ids) = ids else { break };
            if to_ack.send(ids).await.is_err() {
                break;
            }
        }
        drop(to_ack);
    };
    let ack = async {
        while let Some(ids) = committed.recv().await {
            if let Err(err) = queue.ack(&ids).await {
                // Committed already: delivered again after the lease, and written again idempotently.
                tracing::warn!(error = %err, entries = ids.len(), "cannot ack stream entries");
            }
        }
    };
    tokio::join!(read, write, ack);
    tracing::info!(consumer = %options.consumer, "stopped consuming the sensor stream");
}

/// A pulled batch, parsed: the good entries with their readings, and the malformed ones.
struct Parsed {
    good: Vec<Delivery>,
    readings: Vec<pb::Reading>,
    bad: Vec<(Delivery, String)>,
}

fn parse(deliveries: Vec<Delivery>) -> Parsed {
    let mut parsed = Parsed {
        good: Vec::with_capacity(deliveries.len()),
        readings: Vec::with_capacity(deliveries.len()),
        bad: Vec::new(),
    };
    for delivery in deliveries {
        match parse_sensor_message(&delivery.payload) {
            Ok(reading) => {
                parsed.readings.push(reading.into());
                parsed.good.push(delivery);
            }
            Err(err) => parsed.bad.push((delivery, err.to_string())),
        }
    }
    parsed
}

/// Writes one batch (retrying while telemetry is unavailable) and dead-letters what is
/// malformed or refused; returns the ids to ack, or `None` when `stop` interrupted it.
async fn write(
    dead: &dyn WorkQueue,
    telemetry: &Telemetry,
    batch: Parsed,
    stop: impl Future<Output = ()> + Clone,
) -> Option<Vec<String>> {
    let Parsed {
        good,
        readings,
        mut bad,
    } = batch;
    let mut backoff = Backoff::default();
    let isolated = loop {
        match telemetry.write_isolating(&readings).await {
            Ok(isolated) => break isolated,
            Err(status) => {
                tracing::warn!(entries = readings.len(), error = %status.message(), retry_in = ?backoff.next(), "telemetry write failed");
                if backoff.sleep_or_stop(stop.clone()).await {
                    return None;
                }
            }
        }
    };
    metrics::readings(
        metrics::source::STREAM,
        (readings.len() - isolated.refused.len()) as u64,
    );
    let refused: HashMap<usize, &tonic::Status> = isolated.refused.iter().map(|(i, status)| (*i, status)).collect();
    let mut ack = Vec::with_capacity(good.len() + bad.len());
    for (index, delivery) in good.into_iter().enumerate() {
        match refused.get(&index) {
            Some(status) => bad.push((delivery, format!("telemetry refused it: {}", status.message()))),
            None => ack.push(delivery.id),
        }
    }
    if !bad.is_empty() {
        let letters: Vec<Vec<u8>> = bad
            .iter()
            .map(|(delivery, error)| dead_letter(delivery, error))
            .collect();
        metrics::malformed(metrics::source::STREAM, bad.len() as u64);
        for (delivery, error) in &bad {
            tracing::warn!(entry = %delivery.id, %error, "malformed stream entry dead-lettered");
        }
        match dead.push_many(&letters).await {
            Ok(_) => ack.extend(bad.into_iter().map(|(delivery, _)| delivery.id)),
            // Left un-acked: delivered (and dead-lettered) again later.
            Err(err) => tracing::error!(error = %err, "cannot dead-letter malformed entries"),
        }
    }
    Some(ack)
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
