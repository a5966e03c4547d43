//! Ingest runs: created pending, run in the background by their source's loader (at most
//! [`MAX_CONCURRENT_RUNS`] at once per replica), watched, cancelled, listed and deleted.
//!
//! One load at a time, across replicas: a request for the same source and parameters as a run
//! in progress joins that run (SQL keeps at most one pending or running run per source and
//! parameters), and after a failed load the same load is not started again sooner than the
//! retry spacing (`OUTPOST_LOAD_RETRY_SECONDS`). Each run in progress is owned by the replica
//! running it under a lease it renews ([`crate::leases`]); a run whose lease ran out is taken
//! over by any replica, never failed wholesale at start.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
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
/// Parameters a run takes, at most, and their sizes.
const MAX_PARAMETERS: usize = 16;
const MAX_PARAMETER_NAME: usize = 64;
const MAX_PARAMETER_VALUE: usize = 256;

/// Loads one kind of source. A load must be idempotent (loading the same source again updates
/// what it stored and never duplicates it): a run taken over by another replica starts again
/// from the beginning.
#[async_trait::async_trait]
pub trait Loader: Send + Sync {
    /// Checks a run's parameters before the run is created.
    fn check_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<()>;
    /// The parameters a run is stored (and its load is told apart) by, one spelling per load,
    /// and whether a load of them that succeeded answers a new request instead of loading
    /// again. By default: the parameters as given, checked; every request loads again.
    fn prepare(&self, parameters: BTreeMap<String, String>) -> Result<Prepared> {
        self.check_parameters(&parameters)?;
        Ok(Prepared {
            parameters,
            keep_succeeded: false,
        })
    }
    /// Loads the source, reporting through `run`; returns early when `run.should_stop()`.
    /// An error fails the whole run with its message.
    async fn load(&self, run: &RunHandle) -> anyhow::Result<()>;
}

/// A run's parameters as its loader prepared them (see [`Loader::prepare`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The parameters the run is stored with.
    pub parameters: BTreeMap<String, String>,
    /// Whether the last run of these parameters, when it succeeded, is returned (joined)
    /// instead of starting another.
    pub keep_succeeded: bool,
}

/// How runs are shared between replicas.
#[derive(Clone, Debug)]
pub struct RunsOptions {
    /// This replica's name: the owner of the runs it runs.
    pub owner: String,
    /// How long a run belongs to its replica without a renewal (renewed every third of it).
    pub lease: Duration,
    /// After a load failed, how long the same load is not started again.
    pub retry_spacing: Duration,
}

/// What [`Runs::create`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    /// Started a new run.
    New(Run),
    /// Returned the run of the same load in progress (or created since `min_create_time`).
    Joined(Run),
    /// Started nothing: the same load failed (this run) less than the retry spacing ago; it
    /// can be started again after `retry_in`.
    RecentlyFailed {
        /// The failed run.
        run: Run,
        /// How long until the load can be started again.
        retry_in: Duration,
    },
}

/// The runs of this service.
#[derive(Clone)]
pub struct Runs {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) options: RunsOptions,
    loaders: HashMap<Source, Arc<dyn Loader>>,
    pub(crate) live: Mutex<HashMap<String, Arc<LiveRun>>>,
    permits: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
    pub(crate) closing: watch::Sender<bool>,
}

impl Runs {
    /// Runs stored in `db`, loaded by `loaders`, shared as `options` say.
    pub fn new(db: Db, loaders: HashMap<Source, Arc<dyn Loader>>, options: RunsOptions) -> Self {
        Runs {
            inner: Arc::new(Inner {
                db,
                options,
                loaders,
                live: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(MAX_CONCURRENT_RUNS)),
                tasks: Mutex::new(JoinSet::new()),
                closing: watch::Sender::new(false),
            }),
        }
    }

    /// This replica's name, the owner of the runs it runs.
    pub fn owner(&self) -> &str {
        &self.inner.options.owner
    }

    /// Whether runs of `source` can be created here.
    pub fn supports(&self, source: Source) -> bool {
        self.inner.loaders.contains_key(&source)
    }

    /// Starts a new run of `source` with `parameters`, or returns the same load's run in
    /// progress (or created at or after `min_create_time`, µs), or says that the same load
    /// failed too recently to start it again (see [`Created`]).
    pub async fn create(
        &self,
        source: Source,
        parameters: BTreeMap<String, String>,
        min_create_time: Option<i64>,
    ) -> Result<Created> {
        let loader = self
            .inner
            .loaders
            .get(&source)
            .cloned()
            .ok_or_else(|| Error::invalid("run.source", "not a source this service loads"))?;
        check_parameters(&parameters)?;
        let Prepared {
            parameters,
            keep_succeeded,
        } = loader.prepare(parameters)?;
        if *self.inner.closing.borrow() {
            return Err(Error::Unavailable("ingest is shutting down".into()));
        }
        let db = &self.inner.db;
        // Another replica may start or end the same load between these steps: a lost race
        // to insert is seen as a conflict, and tried again.
        for _ in 0..5 {
            if let Some(active) = store::active_run(db, source, &parameters).await? {
                return Ok(Created::Joined(self.current(active)));
            }
            if let Some(since) = min_create_time
                && let Some(run) = store::run_since(db, source, &parameters, since).await?
            {
                return Ok(Created::Joined(self.current(run)));
            }
            let now = now_micros();
            let ended = store::last_ended_run(db, source, &parameters).await?;
            if keep_succeeded && let Some(run) = ended.as_ref().filter(|run| run.state == RunState::Succeeded) {
                return Ok(Created::Joined(run.clone()));
            }
            if let Some(run) = ended.filter(|run| run.state == RunState::Failed)
                && let Some(retry_in) = self.retry_in(&run, now)
            {
                return Ok(Created::RecentlyFailed { run, retry_in });
            }
            let id = format!("{:016x}", rand::random::<u64>());
            let run = Run::pending(id, source, parameters.clone(), now, self.owner());
            if store::insert_run(db, &run, now + micros(self.inner.options.lease)).await? {
                self.start_here(run.clone(), loader.clone());
                return Ok(Created::New(run));
            }
        }
        Err(Error::Unavailable(format!(
            "the {} load is being started and ended by other replicas at once; try again",
            model::source_name(source)
        )))
    }

    /// How long until a load that failed as `run` may start again, if it may not yet.
    fn retry_in(&self, run: &Run, now: i64) -> Option<Duration> {
        let ended = run.ended_at?;
        let until = ended.saturating_add(micros(self.inner.options.retry_spacing));
        (until > now).then(|| Duration::from_micros((until - now) as u64))
    }

    /// The run with its latest progress when it runs here.
    fn current(&self, run: Run) -> Run {
        match self.live().get(&run.id) {
            Some(live) => live.current(),
            None => run,
        }
    }

    /// Runs `run` (stored, pending, owned by this replica) here, in the background.
    pub(crate) fn start_here(&self, run: Run, loader: Arc<dyn Loader>) {
        let id = run.id.clone();
        let live = Arc::new(LiveRun::new(run));
        self.live().insert(id, live.clone());
        let inner = self.inner.clone();
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(execute(inner, live, loader));
    }

    /// The loader of `source`, when this replica has one.
    pub(crate) fn loader(&self, source: Source) -> Option<Arc<dyn Loader>> {
        self.inner.loaders.get(&source).cloned()
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

    /// Cancels a pending or running run (it stops at its next item, on whichever replica runs
    /// it); FAILED_PRECONDITION when it has ended.
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

    /// The run now and after each change, until it ends: a stream that ends with the run (or
    /// when this replica shuts down).
    pub async fn watch(&self, id: &str) -> Result<mpsc::Receiver<Run>> {
        let (tx, rx) = mpsc::channel(16);
        let live = self.live().get(id).cloned();
        let db = self.inner.db.clone();
        let mut closing = self.inner.closing.subscribe();
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
                            // No longer run here: it ended, or another replica runs it now.
                            let last = changes.borrow().clone();
                            if last.is_finished() {
                                let _ = tx.send(last).await;
                                return;
                            }
                            tokio::select! {
                                () = poll_run(db, last, tx, false) => {}
                                _ = closing.wait_for(|closing| *closing) => {}
                            }
                            return;
                        }
                    }
                });
            }
            None => {
                let first = store::get_run(&db, id).await?.ok_or_else(|| not_found(id))?;
                tokio::spawn(async move {
                    tokio::select! {
                        () = poll_run(db, first, tx, true) => {}
                        _ = closing.wait_for(|closing| *closing) => {}
                    }
                });
            }
        }
        Ok(rx)
    }

    /// Asks every live run to stop (they are given back for another replica to take over)
    /// and ends the watches of runs of other processes; new runs are refused from now on.
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
            tracing::warn!(
                ?grace,
                "runs did not stop in time; another replica takes them over after their lease"
            );
        }
    }

    pub(crate) fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveRun>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Checks the bounds every run's parameters keep, whatever their source.
fn check_parameters(parameters: &BTreeMap<String, String>) -> Result<()> {
    if parameters.len() > MAX_PARAMETERS {
        return Err(Error::invalid(
            "run.parameters",
            format!("{} parameters; at most {MAX_PARAMETERS}", parameters.len()),
        ));
    }
    for (name, value) in parameters {
        let shown: String = name.chars().take(64).collect();
        let valid_name = (1..=MAX_PARAMETER_NAME).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_name {
            return Err(Error::invalid(
                "run.parameters",
                format!("{shown:?} is not a parameter name (1 to {MAX_PARAMETER_NAME} of a-z, 0-9, '_')"),
            ));
        }
        if value.chars().count() > MAX_PARAMETER_VALUE {
            return Err(Error::invalid(
                format!("run.parameters.{name}"),
                format!("longer than {MAX_PARAMETER_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("runs/{id}"))
}

/// Follows a run that is not live here by reading it now and then, until it ends (sending it
/// first when `send_first`).
async fn poll_run(db: Db, mut run: Run, tx: mpsc::Sender<Run>, send_first: bool) {
    let mut send = send_first;
    loop {
        let finished = run.is_finished();
        if send && tx.send(run.clone()).await.is_err() || finished {
            return;
        }
        send = true;
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
    let owner = inner.options.owner.clone();
    let permit = tokio::select! {
        permit = inner.permits.clone().acquire_owned() => permit.ok(),
        () = live.stopped() => None,
    };
    let mut result = Ok(());
    if permit.is_some() && live.stop_reason().is_none() {
        let now = now_micros();
        match store::start_run(&inner.db, &id, &owner, now).await {
            Ok(true) => {
                live.update(|run| {
                    run.state = RunState::Running;
                    run.started_at = Some(now);
                    run.done = 0;
                    run.total = 0;
                    run.counts = model::Counts::default();
                    run.errors.clear();
                });
                tracing::info!(run = %id, "run started");
                let handle = RunHandle::new(inner.db.clone(), live.clone());
                result = std::panic::AssertUnwindSafe(loader.load(&handle))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the loader failed unexpectedly (it panicked)")));
            }
            // Cancelled, or no longer ours: `finish` reads what it became.
            Ok(false) => live.stop(StopReason::Lost),
            Err(err) => result = Err(anyhow::anyhow!("starting the run: {err}")),
        }
    }
    finish(&inner, &live, result).await;
    drop(permit);
    inner.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
}

/// Ends a run in the state its result and stop reason call for, stores it and tells watchers.
/// A run stopped by a shutdown is given back for another replica instead.
async fn finish(inner: &Inner, live: &LiveRun, result: anyhow::Result<()>) {
    let mut run = live.current();
    let owner = &inner.options.owner;
    let reason = live.stop_reason();
    if reason == Some(StopReason::Shutdown) {
        match store::release_run(&inner.db, &run.id, owner).await {
            Ok(true) => tracing::info!(run = %run.id, "run given back at shutdown, for another replica to take over"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(run = %run.id, error = %err, "cannot give a run back; it is taken over after its lease")
            }
        }
        publish_stored(inner, live, run).await;
        return;
    }
    run.ended_at = Some(now_micros());
    (run.state, run.failure) = match (reason, result) {
        (Some(_), _) => (RunState::Cancelled, String::new()),
        (None, Ok(())) => (RunState::Succeeded, String::new()),
        (None, Err(err)) => (RunState::Failed, format!("{err:#}")),
    };
    match store::finish_run(&inner.db, &run).await {
        Ok(true) => {}
        // Cancelled meanwhile, or another replica runs it now.
        Ok(false) => return publish_stored(inner, live, run).await,
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

/// Tells the watchers of a run this replica no longer runs what it is now.
async fn publish_stored(inner: &Inner, live: &LiveRun, run: Run) {
    match store::get_run(&inner.db, &run.id).await {
        Ok(Some(stored)) => {
            if stored.is_finished() {
                metrics::run_ended(model::source_name(stored.source), model::state_name(stored.state));
            }
            live.publish(stored);
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(run = %run.id, error = %err, "re-reading a run"),
    }
}
