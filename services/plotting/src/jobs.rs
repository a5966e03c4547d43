//! Plot jobs: created (or joined, when an identical one is queued, running, or succeeded from
//! the same data), queued as a hint for the workers, watched, cancelled, listed, deleted, and
//! their plots read back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use outpost_api::plotting::v1 as pb;
use outpost_kit::error::{Error, Result};
use outpost_kit::storage::{Objects, WorkQueue};
use outpost_kit::time::to_timestamp_opt;
use tokio::sync::{Notify, mpsc};

use crate::spec::PlotRequest;
use crate::store::{Job, State, Store};
use crate::telemetry::Telemetry;

/// The queue that carries job ids to the workers.
pub const QUEUE: &str = "plot-jobs";
/// How often a watcher re-reads a job that another process may be rendering.
const WATCH_POLL: Duration = Duration::from_millis(250);

/// Checks a job name (`plotJobs/{job}`) from `field` and returns the id.
pub fn parse_name(field: &str, name: &str) -> Result<String> {
    match name.strip_prefix("plotJobs/") {
        Some(id) if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Ok(id.to_string())
        }
        _ => Err(Error::invalid(field, "must be plotJobs/{job}")),
    }
}

fn state_pb(state: State) -> pb::PlotJobState {
    match state {
        State::Queued => pb::PlotJobState::Queued,
        State::Running => pb::PlotJobState::Running,
        State::Succeeded => pb::PlotJobState::Succeeded,
        State::Failed => pb::PlotJobState::Failed,
        State::Cancelled => pb::PlotJobState::Cancelled,
    }
}

/// The state of the API, as stored (`None` for unspecified).
pub fn state_of(state: pb::PlotJobState) -> Option<State> {
    match state {
        pb::PlotJobState::Unspecified => None,
        pb::PlotJobState::Queued => Some(State::Queued),
        pb::PlotJobState::Running => Some(State::Running),
        pb::PlotJobState::Succeeded => Some(State::Succeeded),
        pb::PlotJobState::Failed => Some(State::Failed),
        pb::PlotJobState::Cancelled => Some(State::Cancelled),
    }
}

impl Job {
    /// The job as the API answers it.
    pub fn to_pb(&self) -> pb::PlotJob {
        pb::PlotJob {
            name: format!("plotJobs/{}", self.id),
            spec: Some(self.request.spec_pb()),
            format: self.request.format_pb() as i32,
            state: state_pb(self.state) as i32,
            error: self.error.clone(),
            attempts: i32::try_from(self.attempts).unwrap_or(i32::MAX),
            plot_size_bytes: self.plot_size_bytes,
            create_time: to_timestamp_opt(Some(self.created_at)),
            start_time: to_timestamp_opt(self.started_at),
            end_time: to_timestamp_opt(self.ended_at),
            width: self.request.width as i32,
            height: self.request.height as i32,
            point_count: self.point_count,
            plot_sha256: self.plot_sha256.clone(),
        }
    }
}

/// A new job id: 16 random hex digits.
fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The plot jobs of this service.
#[derive(Clone)]
pub struct Jobs {
    pub(crate) store: Store,
    pub(crate) queue: Arc<dyn WorkQueue>,
    pub(crate) objects: Objects,
    pub(crate) telemetry: Telemetry,
    /// Woken whenever this process changes a job.
    pub(crate) changed: Arc<Notify>,
}

impl Jobs {
    /// Jobs over their store, queue, object store and telemetry.
    pub fn new(store: Store, queue: Arc<dyn WorkQueue>, objects: Objects, telemetry: Telemetry) -> Self {
        Jobs {
            store,
            queue,
            objects,
            telemetry,
            changed: Arc::new(Notify::new()),
        }
    }

    /// The version of the data `request` reads, when it has one (tracks do, readings do not).
    pub(crate) async fn data_version(&self, request: &PlotRequest) -> Option<String> {
        let track = request.track()?;
        match self.telemetry.track_version(track).await {
            Ok(version) => Some(version),
            Err(status) => {
                tracing::debug!(track, error = %status.message(), "no version of the track's data");
                None
            }
        }
    }

    /// Creates a job for `request` and queues it, or answers an identical job (same request)
    /// that is queued or running, or that succeeded from the same data.
    pub async fn create(&self, request: PlotRequest) -> Result<Job> {
        let key = request.key();
        let version = self.data_version(&request).await;
        if let Some(job) = self.store.reusable(&key, version.as_deref()).await? {
            return Ok(job);
        }
        let id = new_id();
        let job = self.store.insert(&id, &request, &key).await?;
        if let Err(err) = self.queue.push(id.as_bytes()).await {
            // Nothing acknowledged: the row goes too.
            let _ = self.store.delete(&id).await;
            return Err(match err {
                outpost_kit::storage::QueueError::Full(n) => {
                    Error::ResourceExhausted(format!("too many plot jobs are queued ({n}); try again later"))
                }
                other => Error::Unavailable(format!("the plot queue is unavailable: {other}")),
            });
        }
        self.changed.notify_waiters();
        Ok(job)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Job> {
        self.store.get(id).await
    }

    /// A page of jobs, newest first.
    pub async fn list(&self, state: Option<State>, after: Option<(i64, String)>, limit: i64) -> Result<Vec<Job>> {
        self.store.list(state, after, limit).await
    }

    /// Cancels a queued or running job.
    pub async fn cancel(&self, id: &str) -> Result<Job> {
        match self.store.cancel(id).await? {
            Some(job) => {
                self.changed.notify_waiters();
                Ok(job)
            }
            None => {
                let job = self.store.get(id).await?;
                Err(Error::FailedPrecondition(format!(
                    "plotJobs/{id} has ended ({}) and cannot be cancelled",
                    job.state.as_str()
                )))
            }
        }
    }

    /// Deletes a job, and its plot when no other job keeps it.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let job = self.store.delete(id).await?;
        if let Some(key) = job.plot_key
            && !self.store.plot_in_use(&key).await?
            && let Err(err) = self.objects.delete(&key).await
        {
            tracing::warn!(job = id, key, error = %err, "cannot delete a deleted job's plot");
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Follows a job: the job now, then each change, until it has ended.
    pub async fn watch(&self, id: &str) -> Result<mpsc::Receiver<Job>> {
        let mut last = self.store.get(id).await?;
        let (tx, rx) = mpsc::channel(16);
        let jobs = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if tx.send(last.clone()).await.is_err() {
                return;
            }
            while !last.state.ended() {
                let notified = jobs.changed.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                    _ = tx.closed() => return,
                }
                match jobs.store.get(&id).await {
                    Ok(job) if job != last => {
                        last = job;
                        if tx.send(last.clone()).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Deleted meanwhile: the watch ends.
                    Err(Error::NotFound(_)) => return,
                    Err(err) => tracing::warn!(job = %id, error = %err, "re-reading a watched plot job"),
                }
            }
        });
        Ok(rx)
    }

    /// A succeeded job's plot: its content type and bytes. An unfinished job is
    /// FAILED_PRECONDITION naming its state; a failed one, its error.
    pub async fn plot(&self, id: &str) -> Result<(Job, Bytes)> {
        let job = self.store.get(id).await?;
        match job.state {
            State::Succeeded => {}
            State::Failed => {
                return Err(Error::FailedPrecondition(format!(
                    "plotJobs/{id} failed: {}",
                    job.error
                )));
            }
            state => {
                return Err(Error::FailedPrecondition(format!(
                    "plotJobs/{id} is {}: its plot is not ready",
                    state.as_str()
                )));
            }
        }
        let key = job
            .plot_key
            .clone()
            .ok_or_else(|| anyhow::anyhow!("succeeded plot job {id} has no plot"))?;
        let bytes = self
            .objects
            .get(&key)
            .await
            .map_err(|e| Error::Unavailable(format!("the object store is unavailable: {e}")))?
            .ok_or_else(|| anyhow::anyhow!("the plot of job {id} is missing from the object store"))?;
        Ok((job, bytes))
    }
}
