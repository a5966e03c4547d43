//! A run in progress: its in-memory state that watchers follow, its cancellation, and the
//! handle a loader reports through (progress to SQL at most every [`FLUSH_EVERY`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use outpost_kit::error::Result;
use outpost_kit::storage::Db;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::model::Run;
use crate::store;

/// How often a run's progress is written to SQL, at most.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Why a run is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A client cancelled it.
    Cancelled,
    /// The process is shutting down: the run is given back for another replica.
    Shutdown,
    /// This replica no longer owns the run (it could not renew its lease in time and another
    /// replica took it over, or it ended elsewhere).
    Lost,
}

/// A run this process is running or about to run.
#[derive(Debug)]
pub struct LiveRun {
    state: watch::Sender<Run>,
    stop: AtomicU8,
    stopped: Notify,
}

impl LiveRun {
    /// A live run starting as `run`.
    pub fn new(run: Run) -> Self {
        LiveRun {
            state: watch::Sender::new(run),
            stop: AtomicU8::new(0),
            stopped: Notify::new(),
        }
    }

    /// The run as it is now.
    pub fn current(&self) -> Run {
        self.state.borrow().clone()
    }

    /// Follows the run's changes.
    pub fn subscribe(&self) -> watch::Receiver<Run> {
        self.state.subscribe()
    }

    /// Changes the run and tells its watchers.
    pub fn update(&self, change: impl FnOnce(&mut Run)) {
        self.state.send_modify(change);
    }

    /// Replaces the run and tells its watchers.
    pub fn publish(&self, run: Run) {
        self.state.send_replace(run);
    }

    /// Asks the run to stop at its next item (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        let code = match reason {
            StopReason::Cancelled => 1,
            StopReason::Shutdown => 2,
            StopReason::Lost => 3,
        };
        let _ = self.stop.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.stopped.notify_waiters();
    }

    /// Why the run was asked to stop, if it was.
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.stop.load(Ordering::Acquire) {
            1 => Some(StopReason::Cancelled),
            2 => Some(StopReason::Shutdown),
            3 => Some(StopReason::Lost),
            _ => None,
        }
    }

    /// Resolves once the run is asked to stop.
    pub async fn stopped(&self) {
        loop {
            let notified = self.stopped.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stop_reason().is_some() {
                return;
            }
            notified.await;
        }
    }
}

/// What a loader reports through: item counts, errors, progress; and whether to stop.
pub struct RunHandle {
    db: Db,
    live: std::sync::Arc<LiveRun>,
    last_flush: Mutex<Instant>,
}

impl RunHandle {
    /// The handle of a live run stored in `db`.
    pub fn new(db: Db, live: std::sync::Arc<LiveRun>) -> Self {
        RunHandle {
            db,
            live,
            last_flush: Mutex::new(Instant::now()),
        }
    }

    /// Whether the run was asked to stop (cancelled, or the process is shutting down): the
    /// loader returns at its next item.
    pub fn should_stop(&self) -> bool {
        self.live.stop_reason().is_some()
    }

    /// Resolves once the run is asked to stop (to abandon a long wait).
    pub async fn stopped(&self) {
        self.live.stopped().await
    }

    /// The run's parameters.
    pub fn parameters(&self) -> std::collections::BTreeMap<String, String> {
        self.live.current().parameters
    }

    /// Sets how many items there are.
    pub fn set_total(&self, total: i64) {
        self.live.update(|run| run.total = total);
    }

    /// Counts `n` items handled.
    pub fn add_done(&self, n: i64) {
        self.live.update(|run| run.done += n);
    }

    /// Counts `n` items stored.
    pub fn add_created(&self, n: i64) {
        self.live.update(|run| run.counts.created += n);
    }

    /// Counts `n` items that replaced a stored item.
    pub fn add_updated(&self, n: i64) {
        self.live.update(|run| run.counts.updated += n);
    }

    /// Counts `n` items left alone.
    pub fn add_skipped(&self, n: i64) {
        self.live.update(|run| run.counts.skipped += n);
    }

    /// Counts items an upsert created, updated, or found unchanged (skipped).
    pub fn add_upserted(&self, created: i64, updated: i64, unchanged: i64) {
        self.live.update(|run| {
            run.counts.created += created;
            run.counts.updated += updated;
            run.counts.skipped += unchanged;
        });
    }

    /// Counts an item that failed, keeping its error (up to the bound).
    pub fn add_failed(&self, item: impl Into<String>, message: impl Into<String>) {
        self.live.update(|run| {
            run.counts.failed += 1;
            run.push_error(item, message);
        });
    }

    /// Writes the progress to SQL unless that was done less than [`FLUSH_EVERY`] ago. A run
    /// found no longer running in SQL, or no longer this replica's (cancelled, or taken over),
    /// is asked to stop.
    pub async fn checkpoint(&self) -> Result<()> {
        {
            let mut last = self.last_flush.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < FLUSH_EVERY {
                return Ok(());
            }
            *last = Instant::now();
        }
        if !store::save_progress(&self.db, &self.live.current()).await? {
            self.live.stop(StopReason::Cancelled);
        }
        Ok(())
    }
}
