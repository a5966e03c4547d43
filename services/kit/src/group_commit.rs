//! Group commit: small writes that arrive together are committed together. Callers submit
//! requests; one writer task collects what is queued (up to a weight bound, optionally
//! lingering a few milliseconds for more), commits the batch in ONE statement or transaction,
//! and answers each request only after that commit. Nothing is acknowledged before it is
//! durable, and under load a batch grows by itself while the previous one commits.
//!
//! Telemetry's single readings and media's review clicks go through it.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::error::{Error, Result};

/// Commits a batch of requests.
#[async_trait::async_trait]
pub trait Committer<Req, Out>: Send + Sync + 'static {
    /// Commits `batch` in one statement or transaction and returns one result per request,
    /// in the same order (a request may fail alone, such as a review of an unknown image).
    async fn commit(&self, batch: Vec<Req>) -> Vec<Result<Out>>;
}

/// How a group-commit writer batches.
#[derive(Clone, Debug)]
pub struct Options {
    /// The writer's name, in metrics and logs.
    pub name: &'static str,
    /// A batch closes once its requests weigh this much (see [`GroupCommit::new`]).
    pub max_weight: usize,
    /// How long a batch waits for more requests after its first, at most; zero commits what
    /// is queued at once (batches then grow while the previous one commits). A lingering batch
    /// also closes once no request came for a tenth of it (at least 0.2 ms, at most 2 ms):
    /// when every waiting client's request has arrived, waiting longer only adds latency.
    pub linger: Duration,
    /// Batches committing at once.
    pub concurrency: usize,
    /// Requests queued at most; more wait (backpressure).
    pub queue: usize,
}

static BATCH_WEIGHT: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "outpost_group_commit_batch_weight",
        "weight (readings, clicks) of each group-committed batch",
    )
    .buckets(vec![1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0]);
    crate::metrics::register(HistogramVec::new(opts, &["writer"]).expect("valid metric"))
});

static BATCH_REQUESTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "outpost_group_commit_batch_requests",
        "requests per group-committed batch",
    )
    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0]);
    crate::metrics::register(HistogramVec::new(opts, &["writer"]).expect("valid metric"))
});

static COMMIT_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new("outpost_group_commit_commit_seconds", "time to commit one batch").buckets(vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ]);
    crate::metrics::register(HistogramVec::new(opts, &["writer"]).expect("valid metric"))
});

static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "outpost_group_commit_request_seconds",
        "time from submitting a request to its answer (queued, batched and committed)",
    )
    .buckets(vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ]);
    crate::metrics::register(HistogramVec::new(opts, &["writer"]).expect("valid metric"))
});

struct Item<Req, Out> {
    request: Req,
    weight: usize,
    reply: oneshot::Sender<Result<Out>>,
}

/// A group-commit writer; cheap to clone. [`GroupCommit::close`] (or dropping every clone)
/// commits what is queued and stops the writer.
pub struct GroupCommit<Req, Out> {
    shared: Arc<Shared<Req, Out>>,
}

struct Shared<Req, Out> {
    tx: std::sync::RwLock<Option<mpsc::Sender<Item<Req, Out>>>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    weigh: fn(&Req) -> usize,
    name: &'static str,
}

impl<Req, Out> Clone for GroupCommit<Req, Out> {
    fn clone(&self) -> Self {
        GroupCommit {
            shared: self.shared.clone(),
        }
    }
}

impl<Req: Send + 'static, Out: Send + 'static> GroupCommit<Req, Out> {
    /// Starts a writer that commits through `committer`; `weigh` tells a request's weight
    /// (1 for a click, its readings for a write).
    pub fn new(committer: impl Committer<Req, Out>, weigh: fn(&Req) -> usize, options: Options) -> Self {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let name = options.name;
        for metric in [&*BATCH_WEIGHT, &*BATCH_REQUESTS, &*COMMIT_SECONDS, &*REQUEST_SECONDS] {
            metric.with_label_values(&[name]);
        }
        let task = tokio::spawn(write(Arc::new(committer), rx, options));
        GroupCommit {
            shared: Arc::new(Shared {
                tx: std::sync::RwLock::new(Some(tx)),
                task: tokio::sync::Mutex::new(Some(task)),
                weigh,
                name,
            }),
        }
    }

    fn closed(&self) -> Error {
        Error::Unavailable(format!("{} is shutting down", self.shared.name))
    }

    /// Queues `request` and answers once the batch holding it is committed.
    pub async fn submit(&self, request: Req) -> Result<Out> {
        let started = Instant::now();
        let name = self.shared.name;
        let tx = self
            .shared
            .tx
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| self.closed())?;
        let (reply, answer) = oneshot::channel();
        let weight = (self.shared.weigh)(&request);
        if tx.send(Item { request, weight, reply }).await.is_err() {
            return Err(self.closed());
        }
        drop(tx);
        let result = answer
            .await
            .unwrap_or_else(|_| Err(Error::Unavailable(format!("{name} stopped before committing"))));
        REQUEST_SECONDS
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Stops taking requests, commits every queued one, and waits for the writer to finish;
    /// later submits fail with `UNAVAILABLE`.
    pub async fn close(&self) {
        drop(self.shared.tx.write().unwrap_or_else(|e| e.into_inner()).take());
        let task = self.shared.task.lock().await.take();
        if let Some(task) = task
            && let Err(err) = task.await
        {
            tracing::error!(writer = self.shared.name, error = %err, "group-commit writer failed");
        }
    }
}

async fn write<Req: Send + 'static, Out: Send + 'static>(
    committer: Arc<dyn Committer<Req, Out>>,
    mut rx: mpsc::Receiver<Item<Req, Out>>,
    options: Options,
) {
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut commits = JoinSet::new();
    let mut carry: Option<Item<Req, Out>> = None;
    loop {
        // A free commit slot first: while every slot commits, requests queue up and the next
        // batch grows.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let first = match carry.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => break,
            },
        };
        let mut weight = first.weight;
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + options.linger;
        let idle = (options.linger / 10).clamp(Duration::from_micros(200), Duration::from_millis(2));
        while weight < options.max_weight {
            let next = match rx.try_recv() {
                Ok(item) => Some(item),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) if options.linger.is_zero() => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let until = deadline.min(tokio::time::Instant::now() + idle);
                    tokio::time::timeout_at(until, rx.recv()).await.ok().flatten()
                }
            };
            let Some(item) = next else { break };
            if weight + item.weight > options.max_weight {
                carry = Some(item);
                break;
            }
            weight += item.weight;
            batch.push(item);
        }
        while commits.try_join_next().is_some() {}
        let committer = committer.clone();
        let name = options.name;
        commits.spawn(async move {
            commit(committer.as_ref(), name, batch, weight).await;
            drop(slot);
        });
    }
    while commits.join_next().await.is_some() {}
}

async fn commit<Req: Send + 'static, Out: Send + 'static>(
    committer: &dyn Committer<Req, Out>,
    name: &'static str,
    batch: Vec<Item<Req, Out>>,
    weight: usize,
) {
    let count = batch.len();
    BATCH_WEIGHT.with_label_values(&[name]).observe(weight as f64);
    BATCH_REQUESTS.with_label_values(&[name]).observe(count as f64);
    let (requests, replies): (Vec<Req>, Vec<oneshot::Sender<Result<Out>>>) =
        batch.into_iter().map(|item| (item.request, item.reply)).unzip();
    let started = Instant::now();
    let results = committer.commit(requests).await;
    COMMIT_SECONDS
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
    if results.len() != count {
        tracing::error!(
            writer = name,
            requests = count,
            results = results.len(),
            "a committer answered the wrong number of results"
        );
        for reply in replies {
            let _ = reply.send(Err(Error::Internal(anyhow::anyhow!("{name} lost track of a batch"))));
        }
        return;
    }
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Commits sums; remembers each batch; refuses negative numbers alone.
    #[derive(Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<Vec<i64>>>>,
    }

    #[async_trait::async_trait]
    impl Committer<i64, i64> for Recorder {
        async fn commit(&self, batch: Vec<i64>) -> Vec<Result<i64>> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.batches.lock().unwrap().push(batch.clone());
            batch
                .into_iter()
                .map(|n| {
                    if n < 0 {
                        Err(Error::invalid("n", "negative"))
                    } else {
                        Ok(n * 2)
                    }
                })
                .collect()
        }
    }

    fn options(linger: Duration) -> Options {
        Options {
            name: "test",
            max_weight: 10,
            linger,
            concurrency: 1,
            queue: 1000,
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let recorder = Recorder::default();
        let writer = GroupCommit::new(recorder.clone(), |_| 1, options(Duration::ZERO));
        let answers = futures::future::join_all((0..100).map(|n| {
            let writer = writer.clone();
            async move { writer.submit(if n == 7 { -1 } else { n }).await }
        }))
        .await;
        for (n, answer) in answers.into_iter().enumerate() {
            match n {
                7 => assert!(answer.is_err(), "only the bad request fails"),
                n => assert_eq!(answer.unwrap(), n as i64 * 2),
            }
        }
        let batches = recorder.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 100);
        assert!(batches.len() < 100, "requests were grouped: {} batches", batches.len());
        assert!(batches.iter().all(|b| b.len() <= 10), "the weight bound holds");
        writer.close().await;
    }

    #[tokio::test]
    async fn a_linger_gathers_what_arrives_and_closes_once_arrivals_stop() {
        let recorder = Recorder::default();
        let writer = GroupCommit::new(recorder.clone(), |_| 1, options(Duration::from_secs(5)));
        let started = std::time::Instant::now();
        let answers = futures::future::join_all((0..5).map(|n| {
            let writer = writer.clone();
            async move { writer.submit(n).await }
        }))
        .await;
        assert!(answers.iter().all(Result::is_ok));
        // Closed when the arrivals stopped, not after the 5 s linger.
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(recorder.batches.lock().unwrap().clone(), vec![vec![0, 1, 2, 3, 4]]);
    }

    #[tokio::test]
    async fn close_commits_what_is_queued() {
        let recorder = Recorder::default();
        let writer = GroupCommit::new(recorder.clone(), |_| 1, options(Duration::from_millis(50)));
        let pending: Vec<_> = (0..5)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.submit(n).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        writer.close().await;
        for task in pending {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(recorder.batches.lock().unwrap().iter().map(Vec::len).sum::<usize>(), 5);
        assert!(writer.submit(9).await.is_err(), "a closed writer takes nothing");
    }
}
