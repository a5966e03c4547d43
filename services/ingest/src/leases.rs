//! The leases of runs across replicas: each replica renews the lease of the runs it runs
//! (every third of the lease), and takes over runs whose lease ran out, at start and then
//! periodically. A run taken over starts again from the beginning (loads are idempotent); one
//! whose replica stopped while running it [`MAX_RESTARTS`] times already is failed instead (a
//! load that kills its replica is not retried forever). A run another replica took over, or
//! that was cancelled, stops here.

use std::time::Duration;

use outpost_api::ingest::v1::RunState;
use outpost_kit::error::Result;
use outpost_kit::time::now_micros;
use tokio_util::sync::CancellationToken;

use crate::progress::StopReason;
use crate::runs::{Runs, micros};
use crate::store;

/// Times another replica starts a run again after the replica running it stopped, at most.
pub const MAX_RESTARTS: i64 = 2;

impl Runs {
    /// Renews the lease of every run this replica runs; a run it no longer owns (cancelled,
    /// taken over) is asked to stop.
    pub async fn renew_leases(&self) -> Result<()> {
        let owner = self.owner().to_string();
        let lease_until = now_micros() + micros(self.inner.options.lease);
        let live: Vec<_> = self
            .live()
            .iter()
            .map(|(id, live)| (id.clone(), live.clone()))
            .collect();
        for (id, live) in live {
            if !store::renew_run(&self.inner.db, &id, &owner, lease_until).await? && live.stop_reason().is_none() {
                tracing::warn!(run = %id, "run no longer ours (cancelled, or taken over after its lease ran out); stopping it here");
                live.stop(StopReason::Lost);
            }
        }
        Ok(())
    }

    /// Takes over the runs whose lease ran out (a replica stopped without ending or giving
    /// them back) and runs them here, or fails those restarted too often; returns how many runs
    /// it took over or failed.
    pub async fn recover(&self) -> Result<u64> {
        let db = &self.inner.db;
        let now = now_micros();
        let mut recovered = 0;
        for run in store::expired_runs(db, now).await? {
            if *self.inner.closing.borrow() {
                break;
            }
            let Some(loader) = self.loader(run.source) else {
                continue;
            };
            let interrupted = run.state == RunState::Running;
            let previous = if run.owner.is_empty() {
                "none"
            } else {
                run.owner.as_str()
            };
            if interrupted && run.restarts >= MAX_RESTARTS {
                let failure = format!(
                    "the replica running it stopped {} times without ending it (last {previous}); not started again",
                    run.restarts + 1
                );
                if store::fail_expired(db, &run.id, &failure, now).await? {
                    tracing::warn!(run = %run.id, %failure, "run failed");
                    crate::metrics::run_ended(crate::model::source_name(run.source), "failed");
                    recovered += 1;
                }
                continue;
            }
            let lease_until = now_micros() + micros(self.inner.options.lease);
            if store::take_over(db, &run.id, self.owner(), now, lease_until).await? {
                let Some(taken) = store::get_run(db, &run.id).await? else {
                    continue;
                };
                tracing::warn!(
                    run = %run.id, previous, restarts = taken.restarts,
                    "run of a replica that stopped is taken over"
                );
                self.start_here(taken, loader);
                recovered += 1;
            }
        }
        Ok(recovered)
    }

    /// Once the database is ready, recovers runs whose lease ran out, and then every third of
    /// the lease renews this replica's leases and recovers again, until `stop`.
    pub async fn maintain(self, stop: CancellationToken) {
        tokio::select! {
            () = self.inner.db.ready() => {}
            () = stop.cancelled() => return,
        }
        let every = (self.inner.options.lease / 3).max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            if let Err(err) = self.renew_leases().await {
                tracing::warn!(error = %err, "cannot renew the leases of runs");
            }
            if let Err(err) = self.recover().await {
                tracing::warn!(error = %err, "cannot recover runs whose replica stopped");
            }
        }
    }
}
