//! Review clicks, group-committed: a click is queued to one writer, which gathers the clicks
//! that arrive together (up to `OUTPOST_REVIEW_BATCH_MAX`, for at most
//! `OUTPOST_REVIEW_BATCH_MS`), writes the batch in ONE SQL statement, and answers each click
//! only after that commit. Of two clicks on one image, the one with the later click time wins,
//! within a batch and across batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use outpost_kit::error::{Error, Result};
use outpost_kit::group_commit::{Committer, GroupCommit, Options};
use outpost_kit::storage::Db;
use prometheus::{Histogram, HistogramOpts, IntCounter};

use crate::store::review::{self as sql, Decision};

/// The review states, as stored (the proto's numbers).
pub mod state {
    /// Not reviewed.
    pub const PENDING: i64 = 1;
    /// Accepted.
    pub const ACCEPTED: i64 = 2;
    /// Rejected.
    pub const REJECTED: i64 = 3;
}

/// How far ahead of this process's clock a click time may be.
pub const MAX_CLOCK_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;

static STATEMENTS: LazyLock<IntCounter> = LazyLock::new(|| {
    outpost_kit::metrics::register(
        IntCounter::new(
            "outpost_media_review_statements_total",
            "SQL statements the review-click writer ran (one per batch)",
        )
        .expect("valid metric"),
    )
});

static STATEMENTS_PER_BATCH: LazyLock<Histogram> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "outpost_media_review_statements_per_batch",
        "SQL statements of each batch of review clicks",
    )
    .buckets(vec![0.0, 1.0, 2.0, 5.0]);
    outpost_kit::metrics::register(Histogram::with_opts(opts).expect("valid metric"))
});

/// The SQL statements the review writer ran in this process (the metric's value).
pub fn statements() -> u64 {
    STATEMENTS.get()
}

/// One click: an image, a state, and when the reviewer decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Click {
    pub id: String,
    pub state: i64,
    pub at: i64,
}

/// An image's review once a click's batch is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub state: i64,
    /// When the decision that holds was made.
    pub at: Option<i64>,
}

/// Review counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub pending: i64,
    pub accepted: i64,
    pub rejected: i64,
}

impl Counts {
    fn add(&mut self, state: i64, n: i64) {
        match state {
            state::PENDING => self.pending += n,
            state::ACCEPTED => self.accepted += n,
            state::REJECTED => self.rejected += n,
            _ => {}
        }
    }
}

/// Counts in total and per source, and clicks not written yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub total: Counts,
    pub sources: Vec<(String, Counts)>,
    pub queued: i64,
}

struct ClickCommitter {
    db: Db,
}

/// An error for every click of a failed batch (domain errors are not `Clone`).
fn shared(err: &Error) -> Error {
    match err {
        Error::Unavailable(message) => Error::Unavailable(message.clone()),
        other => Error::Internal(anyhow::anyhow!("writing review clicks: {other}")),
    }
}

#[async_trait::async_trait]
impl Committer<Click, Review> for ClickCommitter {
    async fn commit(&self, batch: Vec<Click>) -> Vec<Result<Review>> {
        // The latest click of each image (a later arrival wins a tie): one row per image, as
        // an UPDATE … FROM needs.
        let mut latest: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        for (i, click) in batch.iter().enumerate() {
            latest
                .entry(click.id.as_str())
                .and_modify(|held| {
                    if click.at >= batch[*held].at {
                        *held = i;
                    }
                })
                .or_insert(i);
        }
        let decisions: Vec<Decision<'_>> = latest
            .values()
            .map(|&i| Decision {
                id: &batch[i].id,
                state: batch[i].state,
                at: batch[i].at,
            })
            .collect();
        let applied = sql::apply(&self.db, &decisions).await;
        STATEMENTS.inc();
        STATEMENTS_PER_BATCH.observe(1.0);
        match applied {
            Ok(reviewed) => {
                let by_id: HashMap<&str, Review> = reviewed
                    .iter()
                    .map(|r| {
                        let review = Review {
                            state: r.state,
                            at: r.at,
                        };
                        (r.id.as_str(), review)
                    })
                    .collect();
                batch
                    .iter()
                    .map(|click| {
                        by_id
                            .get(click.id.as_str())
                            .cloned()
                            .ok_or_else(|| Error::NotFound(format!("images/{}", click.id)))
                    })
                    .collect()
            }
            Err(err) => {
                tracing::warn!(error = %err, clicks = batch.len(), "a batch of review clicks failed");
                batch.iter().map(|_| Err(shared(&err))).collect()
            }
        }
    }
}

/// The review writer and counts.
#[derive(Clone)]
pub struct Reviews {
    db: Db,
    writer: GroupCommit<Click, Review>,
    queued: Arc<AtomicI64>,
}

/// Counts a click as queued until it is answered (or its caller gives up).
struct Queued<'a>(&'a AtomicI64);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Reviews {
    /// Starts the writer: batches of at most `batch_max` clicks, each open at most `linger`.
    pub fn new(db: Db, batch_max: usize, linger: Duration) -> Self {
        LazyLock::force(&STATEMENTS);
        LazyLock::force(&STATEMENTS_PER_BATCH);
        let options = Options {
            name: "review_clicks",
            max_weight: batch_max.max(1),
            linger,
            concurrency: 1,
            queue: batch_max.max(1) * 4,
        };
        let writer = GroupCommit::new(ClickCommitter { db: db.clone() }, |_| 1, options);
        Self {
            db,
            writer,
            queued: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Records a click; answers once its batch is committed, with the image's review then
    /// (this click's, or a later one's). An unknown image is `NOT_FOUND`, for this click only.
    pub async fn review(&self, click: Click) -> Result<Review> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _queued = Queued(&self.queued);
        self.writer.submit(click).await
    }

    /// Commits the clicks queued and stops taking more.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    /// Counts by state, in total and per source (of one source when `source` is not empty).
    pub async fn stats(&self, source: &str) -> Result<Stats> {
        let mut stats = Stats {
            queued: self.queued.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for (name, state, n) in sql::counts(&self.db, source).await? {
            stats.total.add(state, n);
            match stats.sources.last_mut() {
                Some((last, counts)) if *last == name => counts.add(state, n),
                _ => {
                    let mut counts = Counts::default();
                    counts.add(state, n);
                    stats.sources.push((name, counts));
                }
            }
        }
        Ok(stats)
    }
}
