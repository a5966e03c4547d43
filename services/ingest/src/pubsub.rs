//! The Redis pub/sub channel of the sensor hub (`sensor_stream`): messages are parsed, good
//! readings batched (up to [`MAX_BATCH`] or [`MAX_DELAY`]) into telemetry writes; a malformed
//! message is counted, logged and skipped. A lost connection is re-established with backoff.
//!
//! Pub/sub delivers at most once: producers that need every reading kept use the stream
//! (see [`crate::stream`]).

use std::future::Future;
use std::time::Duration;

use deadpool_redis::redis::{self, aio::PubSub};
use futures::{FutureExt as _, StreamExt as _};
use outpost_kit::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics;
use crate::reading::{Reading, parse_sensor_message};
use crate::telemetry::{Fate, Telemetry};

/// Readings per telemetry write, at most.
pub const MAX_BATCH: usize = 1000;
/// How long a reading waits for its batch to fill, at most.
pub const MAX_DELAY: Duration = Duration::from_millis(20);
/// Readings waiting for a write, at most (then reading from Redis waits).
const BUFFER: usize = 10_000;
/// How often a quiet connection is checked.
const PING_EVERY: Duration = Duration::from_secs(15);
/// Deadline of connecting, subscribing and pinging.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Consumes the pub/sub `channel` of the Redis at `url` into telemetry until `stop` resolves,
/// then writes what it holds and returns.
pub async fn consume_channel(
    url: String,
    channel: String,
    telemetry: Telemetry,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let stop = stop.shared();
    let (tx, rx) = mpsc::channel(BUFFER);
    let writer = tokio::spawn(write_batches(rx, telemetry, stop.clone()));
    let mut backoff = Backoff::default();
    loop {
        match subscribe(&url, &channel).await {
            Ok(pubsub) => {
                tracing::info!(%channel, "subscribed to the sensor channel");
                backoff.reset();
                if read(pubsub, &tx, stop.clone()).await.is_break() {
                    break;
                }
                tracing::warn!(%channel, "redis pub/sub connection lost; reconnecting");
            }
            Err(err) => {
                tracing::warn!(%channel, error = %err, retry_in = ?backoff.next(), "cannot subscribe to the sensor channel")
            }
        }
        if backoff.sleep_or_stop(stop.clone()).await {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

async fn subscribe(url: &str, channel: &str) -> anyhow::Result<PubSub> {
    let connect = async {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(CALL_TIMEOUT, connect).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("no answer within {CALL_TIMEOUT:?}"),
    }
}

/// Reads messages until the connection is lost (`Continue`) or `stop` (`Break`).
async fn read(
    pubsub: PubSub,
    tx: &mpsc::Sender<Reading>,
    stop: impl Future<Output = ()> + Clone,
) -> std::ops::ControlFlow<()> {
    use std::ops::ControlFlow::{Break, Continue};
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Continue(()) };
                match parse_sensor_message(message.get_payload_bytes()) {
                    Ok(reading) => {
                        if tx.send(reading).await.is_err() {
                            return Break(());
                        }
                    }
                    Err(err) => {
                        metrics::malformed(metrics::source::PUBSUB, 1);
                        tracing::warn!(error = %err, "malformed sensor message skipped");
                    }
                }
            }
            _ = ping.tick() => {
                let alive = tokio::time::timeout(CALL_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(alive, Ok(Ok(_))) {
                    return Continue(());
                }
            }
            () = stop.clone() => return Break(()),
        }
    }
}

/// Writes readings in batches of up to [`MAX_BATCH`], each sent at most [`MAX_DELAY`] after
/// its first reading arrived, until the channel closes.
async fn write_batches(mut rx: mpsc::Receiver<Reading>, telemetry: Telemetry, stop: impl Future<Output = ()> + Clone) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first.into());
        let deadline = Instant::now() + MAX_DELAY;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(reading)) => batch.push(reading.into()),
                Ok(None) | Err(_) => break,
            }
        }
        write(&telemetry, &batch, stop.clone()).await;
        batch.clear();
    }
}

/// Writes one batch, retrying transient failures with backoff (until `stop`, when the batch
/// is tried once more and then given up); readings telemetry does not take (found by
/// bisection) are counted malformed.
async fn write(telemetry: &Telemetry, batch: &[outpost_api::telemetry::v1::Reading], stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut stopping = false;
    let mut backoff = Backoff::default();
    loop {
        match telemetry.write_bisecting(batch).await {
            Ok(bisected) => {
                let mut written = 0;
                for (index, fate) in bisected.fates.iter().enumerate() {
                    match fate {
                        Fate::Written => written += 1,
                        // Pub/sub delivers once: what telemetry did not take is lost.
                        Fate::Refused(status) | Fate::Failed(status) => {
                            metrics::malformed(metrics::source::PUBSUB, 1);
                            tracing::warn!(reading = ?batch[index], error = %status.message(), "telemetry did not take a reading");
                        }
                    }
                }
                metrics::readings(metrics::source::PUBSUB, written);
                return;
            }
            // write_bisecting fails only with a transient error: try again unless stopping.
            Err(status) if stopping => {
                tracing::error!(readings = batch.len(), error = %status.message(), "sensor readings lost");
                return;
            }
            Err(status) => {
                tracing::warn!(readings = batch.len(), error = %status.message(), retry_in = ?backoff.next(), "telemetry write failed");
                // Asked to stop while waiting: one more try, then the batch is given up.
                stopping = backoff.sleep_or_stop(&mut stop).await;
            }
        }
    }
}
