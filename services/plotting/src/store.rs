//! SQL of the plotting service: one row a job, its request (spec, title, format, size) as
//! JSON, its state by name.

use outpost_kit::error::{Error, Result};
use outpost_kit::storage::Db;
use outpost_kit::time::now_micros;
use sqlx::Row;

use crate::spec::PlotRequest;

/// A job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for a worker.
    Queued,
    /// A worker renders it.
    Running,
    /// The plot is stored.
    Succeeded,
    /// It failed for good.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl State {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Result<State> {
        Ok(match text {
            "queued" => State::Queued,
            "running" => State::Running,
            "succeeded" => State::Succeeded,
            "failed" => State::Failed,
            "cancelled" => State::Cancelled,
            other => return Err(anyhow::anyhow!("unknown stored plot job state {other:?}").into()),
        })
    }

    /// Whether the job has ended.
    pub fn ended(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

/// A stored job.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// The id.
    pub id: String,
    /// What it plots.
    pub request: PlotRequest,
    /// The key identical requests share.
    pub spec_key: String,
    /// Its state.
    pub state: State,
    /// The last attempt's error.
    pub error: String,
    /// Attempts started.
    pub attempts: i64,
    /// The version of the data the plot was drawn from.
    pub data_version: Option<String>,
    /// The plot's object key, once succeeded.
    pub plot_key: Option<String>,
    /// Hex SHA-256 of the plot.
    pub plot_sha256: String,
    /// Bytes of the plot.
    pub plot_size_bytes: i64,
    /// Data points drawn.
    pub point_count: i64,
    /// µs.
    pub created_at: i64,
    /// µs.
    pub started_at: Option<i64>,
    /// µs.
    pub ended_at: Option<i64>,
}

const COLUMNS: &str = "id, request, spec_key, state, error, attempts, data_version, plot_key, plot_sha256, \
     plot_size_bytes, point_count, created_at, started_at, ended_at";

fn job(row: &sqlx::any::AnyRow) -> Result<Job> {
    let id: String = row.try_get("id")?;
    let request: String = row.try_get("request")?;
    let request = serde_json::from_str(&request)
        .map_err(|e| anyhow::anyhow!("the request of plot job {id} is not readable: {e}"))?;
    Ok(Job {
        request,
        spec_key: row.try_get("spec_key")?,
        state: State::parse(&row.try_get::<String, _>("state")?)?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        data_version: row.try_get("data_version")?,
        plot_key: row.try_get("plot_key")?,
        plot_sha256: row.try_get("plot_sha256")?,
        plot_size_bytes: row.try_get("plot_size_bytes")?,
        point_count: row.try_get("point_count")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        id,
    })
}

/// What a finished attempt stores.
#[derive(Debug, Clone)]
pub struct Plot {
    /// The object key.
    pub key: String,
    /// Hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
    /// Data points drawn.
    pub points: i64,
    /// The data's version, when known.
    pub data_version: Option<String>,
}

/// What became of a try to start a job.
#[derive(Debug)]
pub enum Start {
    /// The job is now running this attempt.
    Started(Job),
    /// It has no more attempts left (its workers stopped mid-job each time); failed now.
    Exhausted(Job),
    /// It is gone or has ended: nothing to do.
    Nothing,
}

/// The jobs table.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// The table in `db`.
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// Stores a new queued job.
    pub async fn insert(&self, id: &str, request: &PlotRequest, spec_key: &str) -> Result<Job> {
        let json = serde_json::to_string(request).map_err(anyhow::Error::from)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO plot_jobs (id, request, spec_key, state, created_at) VALUES ($1, $2, $3, 'queued', $4) \
             RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(json)
        .bind(spec_key)
        .bind(now_micros())
        .fetch_one(self.db.pool())
        .await?;
        job(&row)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Job> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM plot_jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("plotJobs/{id}")))?;
        job(&row)
    }

    /// The newest job of `spec_key` that an identical request may join: queued or running, or
    /// succeeded from data of `version`.
    pub async fn reusable(&self, spec_key: &str, version: Option<&str>) -> Result<Option<Job>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM plot_jobs WHERE spec_key = $1 AND (state IN ('queued', 'running') \
             OR (state = 'succeeded' AND $2 <> '' AND data_version = $2)) ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(spec_key)
        .bind(version.unwrap_or(""))
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(job).transpose()
    }

    /// A page of jobs, newest first (ties by id, descending), in `state` when set, after the
    /// `(created_at, id)` of the previous page.
    pub async fn list(&self, state: Option<State>, after: Option<(i64, String)>, limit: i64) -> Result<Vec<Job>> {
        let (at, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM plot_jobs WHERE ($1 = '' OR state = $1) \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4"
        )))
        .bind(state.map_or("", State::as_str))
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(job).collect()
    }

    /// Starts an attempt of a queued or running job (a running one's worker stopped) with
    /// attempts left, of `max_attempts`; one without attempts left is failed with its last
    /// error.
    pub async fn start(&self, id: &str, max_attempts: i64) -> Result<Start> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE plot_jobs SET state = 'running', attempts = attempts + 1, started_at = $2 \
             WHERE id = $1 AND state IN ('queued', 'running') AND attempts < $3 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(now_micros())
        .bind(max_attempts)
        .fetch_optional(self.db.pool())
        .await?;
        if let Some(row) = row {
            return Ok(Start::Started(job(&row)?));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE plot_jobs SET state = 'failed', ended_at = $2, \
             error = CASE WHEN error = '' THEN 'its worker stopped while rendering it, every attempt' ELSE error END \
             WHERE id = $1 AND state IN ('queued', 'running') RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(now_micros())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(match row {
            Some(row) => Start::Exhausted(job(&row)?),
            None => Start::Nothing,
        })
    }

    /// Ends attempt `attempt` with its plot; false when the job is no longer in that attempt
    /// (cancelled, or taken over).
    pub async fn succeed(&self, id: &str, attempt: i64, plot: &Plot) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE plot_jobs SET state = 'succeeded', error = '', ended_at = $3, plot_key = $4, plot_sha256 = $5, \
             plot_size_bytes = $6, point_count = $7, data_version = NULLIF($8, '') \
             WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(now_micros())
        .bind(&plot.key)
        .bind(&plot.sha256)
        .bind(plot.size)
        .bind(plot.points)
        .bind(plot.data_version.as_deref().unwrap_or(""))
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends attempt `attempt`: failed with `error` for good, or queued again with it.
    pub async fn fail(&self, id: &str, attempt: i64, error: &str, for_good: bool) -> Result<bool> {
        let state = if for_good { "failed" } else { "queued" };
        let done = sqlx::query(
            "UPDATE plot_jobs SET state = $3, error = $4, ended_at = CASE WHEN $3 = 'failed' THEN $5 ELSE NULL END \
             WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(state)
        .bind(error)
        .bind(now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels a queued or running job; `None` when it has ended (or does not exist).
    pub async fn cancel(&self, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE plot_jobs SET state = 'cancelled', ended_at = $2 WHERE id = $1 AND state IN ('queued', 'running') \
             RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(now_micros())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(job).transpose()
    }

    /// Deletes a job; returns it, or NOT_FOUND.
    pub async fn delete(&self, id: &str) -> Result<Job> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM plot_jobs WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("plotJobs/{id}")))?;
        job(&row)
    }

    /// Whether any job keeps the plot `key`.
    pub async fn plot_in_use(&self, key: &str) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM plot_jobs WHERE plot_key = $1")
            .bind(key)
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }
}
