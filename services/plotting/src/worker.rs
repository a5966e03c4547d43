//! The workers: each takes a job id from the queue (kit's worker extends its lease while the
//! job renders), starts an attempt, reads the data, renders off the async runtime, stores the
//! plot under its content hash and ends the job. A transient failure queues the job again
//! until its third attempt fails; a permanent one (no data in the range) fails it at once. A
//! job whose worker stopped mid-job is delivered again and started as the next attempt.

use std::time::Duration;

use bytes::Bytes;
use outpost_kit::storage::Delivery;
use outpost_kit::worker::{Handler, Outcome};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::charts::{self, Failure};
use crate::jobs::Jobs;
use crate::render;
use crate::store::{Plot, Start};

/// Attempts a job gets before it fails for good.
pub const MAX_ATTEMPTS: i64 = 3;

/// Renders the jobs it is handed.
pub struct Renderer {
    /// The jobs.
    pub jobs: Jobs,
}

#[async_trait::async_trait]
impl Handler for Renderer {
    async fn handle(&self, batch: &[Delivery], _stop: &CancellationToken) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch {
            outcomes.push(self.one(delivery).await);
        }
        outcomes
    }
}

impl Renderer {
    async fn one(&self, delivery: &Delivery) -> Outcome {
        let Ok(id) = std::str::from_utf8(&delivery.payload) else {
            return Outcome::DeadLetter("not a plot job id".into());
        };
        let jobs = &self.jobs;
        let job = match jobs.store.start(id, MAX_ATTEMPTS).await {
            Ok(Start::Started(job)) => job,
            Ok(Start::Exhausted(job)) => {
                tracing::warn!(job = id, attempts = job.attempts, "plot job failed: no attempts left");
                jobs.changed.notify_waiters();
                return Outcome::Done;
            }
            Ok(Start::Nothing) => return Outcome::Done,
            Err(err) => {
                tracing::warn!(job = id, error = %err, "cannot start a plot job");
                return Outcome::retry_after_failures(delivery, Duration::from_secs(10));
            }
        };
        jobs.changed.notify_waiters();
        let attempt = job.attempts;
        let result = self.render(&job.request).await;
        let settled = match result {
            Ok(plot) => jobs.store.succeed(id, attempt, &plot).await,
            Err(Failure::Permanent(error)) => jobs.store.fail(id, attempt, &error, true).await,
            Err(Failure::Transient(error)) => {
                let for_good = attempt >= MAX_ATTEMPTS;
                tracing::warn!(job = id, attempt, error, for_good, "plot job attempt failed");
                match jobs.store.fail(id, attempt, &error, for_good).await {
                    Ok(_) if !for_good => {
                        jobs.changed.notify_waiters();
                        return Outcome::retry_after_failures(delivery, Duration::from_secs(5));
                    }
                    other => other,
                }
            }
        };
        jobs.changed.notify_waiters();
        match settled {
            Ok(_) => Outcome::Done,
            Err(err) => {
                // Not recorded: delivered again, and started as the next attempt.
                tracing::warn!(job = id, error = %err, "cannot record the end of a plot job");
                Outcome::retry_after_failures(delivery, Duration::from_secs(10))
            }
        }
    }

    /// Reads, draws and stores the plot of `request`.
    async fn render(&self, request: &crate::spec::PlotRequest) -> Result<Plot, Failure> {
        let jobs = &self.jobs;
        let data_version = jobs.data_version(request).await;
        let drawn = charts::chart(request, &jobs.telemetry).await?;
        let (format, width, height) = (request.format, request.width, request.height);
        let bytes = tokio::task::spawn_blocking(move || {
            render::render(&drawn.chart, format, width, height).map(|b| (b, drawn.points))
        })
        .await
        .map_err(|e| Failure::Transient(format!("rendering stopped: {e}")))?
        .map_err(|e| Failure::Permanent(format!("rendering failed: {e:#}")))?;
        let (bytes, points) = bytes;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let key = format!("plots/{}/{sha256}.{}", &sha256[..2], format.extension());
        let size = bytes.len() as i64;
        jobs.objects
            .put(&key, Bytes::from(bytes))
            .await
            .map_err(|e| Failure::Transient(format!("the object store is unavailable: {e:#}")))?;
        Ok(Plot {
            key,
            sha256,
            size,
            points: points as i64,
            data_version,
        })
    }
}
