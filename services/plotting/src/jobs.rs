//! Plot jobs as stored: one row a job, its spec kept as the encoded protobuf.

use outpost_api::plotting::v1 as pb;
use outpost_kit::error::{Error, Result};
use outpost_kit::storage::Db;
use outpost_kit::time::to_timestamp_opt;
use prost::Message;
use sqlx::Row;

/// Plot jobs over the service's database.
#[derive(Clone)]
pub struct Jobs {
    db: Db,
}

/// Checks a job name (`plotJobs/{job}`) from `field` and returns the id.
pub fn parse_name(field: &str, name: &str) -> Result<String> {
    match name.strip_prefix("plotJobs/") {
        Some(id) if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Ok(id.to_string())
        }
        _ => Err(Error::invalid(field, "must be plotJobs/{job}")),
    }
}

fn job_from_row(row: &sqlx::any::AnyRow) -> Result<pb::PlotJob> {
    let id: String = row.try_get("id")?;
    let spec: String = row.try_get("spec")?;
    let spec = hex::decode(&spec)
        .ok()
        .and_then(|b| pb::PlotSpec::decode(b.as_slice()).ok())
        .ok_or_else(|| anyhow::anyhow!("spec of plot job {id} is not readable"))?;
    Ok(pb::PlotJob {
        name: format!("plotJobs/{id}"),
        spec: Some(spec),
        format: row.try_get::<i64, _>("format")? as i32,
        state: row.try_get::<i64, _>("state")? as i32,
        error: row.try_get("error")?,
        attempts: row.try_get::<i64, _>("attempts")? as i32,
        plot_size_bytes: row.try_get("plot_size_bytes")?,
        create_time: to_timestamp_opt(Some(row.try_get("created_at")?)),
        start_time: to_timestamp_opt(row.try_get("started_at")?),
        end_time: to_timestamp_opt(row.try_get("ended_at")?),
    })
}

const COLUMNS: &str = "id, spec, format, state, error, attempts, plot_size_bytes, created_at, started_at, ended_at";

impl Jobs {
    /// Jobs over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<pb::PlotJob> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM plot_jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("plotJobs/{id}")))?;
        job_from_row(&row)
    }

    /// A page of jobs, newest first (ties by id, descending), optionally in one state, after
    /// the `(created_at, id)` of the previous page.
    pub async fn list(&self, state: Option<i32>, after: Option<(i64, String)>, limit: i64) -> Result<Vec<pb::PlotJob>> {
        let (at, id) = after.unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {COLUMNS} FROM plot_jobs WHERE ($1 = 0 OR state = $1) \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(state.unwrap_or(0)))
            .bind(at)
            .bind(id)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Deletes a job; NOT_FOUND when there is none.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM plot_jobs WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("plotJobs/{id}")));
        }
        Ok(())
    }
}
