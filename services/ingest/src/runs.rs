//! Ingest runs: created pending, run in the background by their source's loader (at most
//! [`MAX_CONCURRENT_RUNS`] at once), watched, cancelled, listed and deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_api::ingest::v1::{RunState, Source};
use outpost_kit::error::{Error, Result};
use outpost_kit::storage::Db;
use outpost_kit::time::now_micros;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::model::{self, Run};
use crate::progress::{LiveRun, RunHandle, StopReason};
use crate::{metrics, store};

/// Runs loading at once, at most; more wait as PENDING.
pub const MAX_CONCURRENT_RUNS: usize = 4;
/// How often a watcher of a run that another process runs re-reads it.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// The failure of runs a stopped process left unfinished.
pub const INTERRUPTED_BY_RESTART: &str = "interrupted by a restart";
/// The failure of runs stopped by a shutdown.
pub const INTERRUPTED_BY_SHUTDOWN: &str = "interrupted by a shutdown";

/// Loads one kind of source.
#[async_trait::async_trait]
pub trait Loader: Send + Sync {
    /// Checks a run's parameters before the run is created.
    fn check_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<()>;
    /// Loads the source, reporting through `run`; returns early when `run.should_stop()`.
    /// An error fails the whole run with its message.
    async fn load(&self, run: &RunHandle) -> anyhow::Result<()>;
}

/// The runs of this service.
#[derive(Clone)]
pub struct Runs {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    loaders: HashMap<Source, Arc<dyn Loader>>,
    live: Mutex<HashMap<String, Arc<LiveRun>>>,
    permits: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
    closing: watch::Sender<bool>,
}

impl Runs {
    /// Runs stored in `db`, loaded by `loaders`.
    pub fn new(db: Db, loaders: HashMap<Source, Arc<dyn Loader>>) -> Self {
        Runs {
            inner: Arc::new(Inner {
                db,
                loaders,
                live: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(MAX_CONCURRENT_RUNS)),
                tasks: Mutex::new(JoinSet::new()),
                closing: watch::Sender::new(false),
            }),
        }
    }

    /// Marks runs that a stopped process left pending or running as FAILED.
    pub async fn fail_interrupted(&self) -> Result<u64> {
        let failed = store::fail_unfinished(&self.inner.db, INTERRUPTED_BY_RESTART, now_micros()).await?;
        if failed > 0 {
            tracing::warn!(runs = failed, "runs left unfinished by a restart are marked failed");
        }
        Ok(failed)
    }

    /// Whether runs of `source` can be created here.
    pub fn supports(&self, source: Source) -> bool {
        self.inner.loaders.contains_key(&source)
    }

    /// Whether a run of `source` is pending or running in this process.
    pub fn is_loading(&self, source: Source) -> bool {
        self.live().values().any(|live| live.current().source == source)
    }

    /// Creates a pending run and starts it in the background.
    pub async fn create(&self, source: Source, parameters: BTreeMap<String, String>) -> Result<Run> {
        let loader = self
            .inner
            .loaders
            .get(&source)
            .cloned()
            .ok_or_else(|| Error::invalid("run.source", "not a source this service loads"))?;
        loader.check_parameters(&parameters)?;
        if *self.inner.closing.borrow() {
            return Err(Error::Unavailable("ingest is shutting down".into()));
        }
        let id = format!("{:016x}", rand::random::<u64>());
        let run = Run::pending(id.clone(), source, parameters, now_micros());
        store::insert_run(&self.inner.db, &run).await?;
        let live = Arc::new(LiveRun::new(run.clone()));
        self.live().insert(id, live.clone());
        let inner = self.inner.clone();
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(execute(inner, live, loader));
        Ok(run)
    }

    /// One run (with its latest progress when it runs here).
    pub async fn get(&self, id: &str) -> Result<Run> {
        if let Some(live) = self.live().get(id) {
            return Ok(live.current());
        }
        store::get_run(&self.inner.db, id).await?.ok_or_else(|| not_found(id))
    }

    /// A page of runs, newest first, after the `(created_at, id)` of the previous page.
    pub async fn list(
        &self,
        source: Option<Source>,
        state: Option<RunState>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Run>> {
        store::list_runs(&self.inner.db, source, state, after, limit).await
    }

    /// Deletes a finished run's record; FAILED_PRECONDITION while it is pending or running.
    pub async fn delete(&self, id: &str) -> Result<()> {
        if store::delete_finished_run(&self.inner.db, id).await? {
            return Ok(());
        }
        let run = store::get_run(&self.inner.db, id).await?.ok_or_else(|| not_found(id))?;
        Err(Error::FailedPrecondition(format!(
            "{} is {}: only finished runs can be deleted (cancel it first)",
            run.name(),
            model::state_name(run.state)
        )))
    }

    /// Cancels a pending or running run (it stops at its next item); FAILED_PRECONDITION when
    /// it has ended.
    pub async fn cancel(&self, id: &str) -> Result<Run> {
        let now = now_micros();
        if store::cancel_run(&self.inner.db, id, now).await? {
            let live = self.live().get(id).cloned();
            if let Some(live) = live {
                live.stop(StopReason::Cancelled);
                live.update(|run| {
                    run.state = RunState::Cancelled;
                    run.ended_at = Some(now);
                });
                return Ok(live.current());
            }
            return store::get_run(&self.inner.db, id).await?.ok_or_else(|| not_found(id));
        }
        let run = store::get_run(&self.inner.db, id).await?.ok_or_else(|| not_found(id))?;
        Err(Error::FailedPrecondition(format!(
            "{} is {}: only pending or running runs can be cancelled",
            run.name(),
            model::state_name(run.state)
        )))
    }

    /// The run now and after each change, until it ends: a stream that ends with the run.
    pub async fn watch(&self, id: &str) -> Result<mpsc::Receiver<Run>> {
        let (tx, rx) = mpsc::channel(16);
        let live = self.live().get(id).cloned();
        match live {
            Some(live) => {
                let mut changes = live.subscribe();
                drop(live);
                tokio::spawn(async move {
                    loop {
                        let run = changes.borrow_and_update().clone();
                        let finished = run.is_finished();
                        if tx.send(run).await.is_err() || finished {
                            return;
                        }
                        if changes.changed().await.is_err() {
                            let last = changes.borrow().clone();
                            if last.is_finished() {
                                let _ = tx.send(last).await;
                            }
                            return;
                        }
                    }
                });
            }
            None => {
                let first = store::get_run(&self.inner.db, id).await?.ok_or_else(|| not_found(id))?;
                let db = self.inner.db.clone();
                let mut closing = self.inner.closing.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        () = poll_run(db, first, tx) => {}
                        _ = closing.wait_for(|closing| *closing) => {}
                    }
                });
            }
        }
        Ok(rx)
    }

    /// Asks every live run to stop (they end FAILED, interrupted by a shutdown) and ends the
    /// watches of runs of other processes; new runs are refused from now on.
    pub fn stop_all(&self) {
        self.inner.closing.send_replace(true);
        for live in self.live().values() {
            live.stop(StopReason::Shutdown);
        }
    }

    /// Stops every live run (see [`Runs::stop_all`]) and waits up to `grace` for them.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop_all();
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!(?grace, "runs did not stop in time");
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveRun>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("runs/{id}"))
}

/// Follows a run that is not live here by reading it now and then, until it ends.
async fn poll_run(db: Db, mut run: Run, tx: mpsc::Sender<Run>) {
    loop {
        let finished = run.is_finished();
        if tx.send(run.clone()).await.is_err() || finished {
            return;
        }
        loop {
            tokio::time::sleep(POLL_EVERY).await;
            match store::get_run(&db, &run.id).await {
                Ok(Some(now)) if now != run => {
                    run = now;
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(err) => tracing::warn!(run = %run.id, error = %err, "re-reading a watched run"),
            }
            if tx.is_closed() {
                return;
            }
        }
    }
}

/// Runs one run: waits for a permit, loads, and ends it.
async fn execute(inner: Arc<Inner>, live: Arc<LiveRun>, loader: Arc<dyn Loader>) {
    let id = live.current().id;
    let permit = tokio::select! {
        permit = inner.permits.clone().acquire_owned() => permit.ok(),
        () = live.stopped() => None,
    };
    let mut result = Ok(());
    if permit.is_some() && live.stop_reason().is_none() {
        let now = now_micros();
        match store::start_run(&inner.db, &id, now).await {
            Ok(true) => {
                live.update(|run| {
                    run.state = RunState::Running;
                    run.started_at = Some(now);
                });
                tracing::info!(run = %id, "run started");
                let handle = RunHandle::new(inner.db.clone(), live.clone());
                result = loader.load(&handle).await;
            }
            Ok(false) => live.stop(StopReason::Cancelled),
            Err(err) => result = Err(anyhow::anyhow!("starting the run: {err}")),
        }
    }
    finish(&inner, &live, result).await;
    drop(permit);
    inner.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
}

/// Ends a run in the state its result and stop reason call for, stores it and tells watchers.
async fn finish(inner: &Inner, live: &LiveRun, result: anyhow::Result<()>) {
    let mut run = live.current();
    run.ended_at = Some(now_micros());
    (run.state, run.failure) = match (live.stop_reason(), result) {
        (Some(StopReason::Shutdown), _) => (RunState::Failed, INTERRUPTED_BY_SHUTDOWN.to_string()),
        (Some(StopReason::Cancelled), _) => (RunState::Cancelled, String::new()),
        (None, Ok(())) => (RunState::Succeeded, String::new()),
        (None, Err(err)) => (RunState::Failed, format!("{err:#}")),
    };
    match store::finish_run(&inner.db, &run).await {
        Ok(true) => {}
        Ok(false) => match store::get_run(&inner.db, &run.id).await {
            Ok(Some(stored)) => run = stored,
            Ok(None) => {}
            Err(err) => tracing::warn!(run = %run.id, error = %err, "re-reading a cancelled run"),
        },
        Err(err) => tracing::error!(run = %run.id, error = %err, "storing the end of a run"),
    }
    let state = model::state_name(run.state);
    metrics::run_ended(model::source_name(run.source), state);
    tracing::info!(
        run = %run.id, state, created = run.counts.created, skipped = run.counts.skipped,
        failed = run.counts.failed, failure = %run.failure, "run ended"
    );
    live.publish(run);
}
