//! SQL of the ingest service: the `runs` table.

use std::collections::BTreeMap;

use anyhow::Context as _;
use outpost_api::ingest::v1::{RunState, Source};
use outpost_kit::error::Result;
use outpost_kit::storage::Db;
use sqlx::Row;

use crate::model::{self, Counts, ItemError, Run};

/// The columns of a run, in `SELECT` lists.
macro_rules! run_columns {
    () => {
        "id, source, parameters, state, progress_done, progress_total, created, updated, skipped, failed, errors, \
         failure, created_at, started_at, ended_at"
    };
}

fn run_row(row: &sqlx::any::AnyRow) -> anyhow::Result<Run> {
    let source: String = row.try_get("source")?;
    let state: String = row.try_get("state")?;
    let parameters: String = row.try_get("parameters")?;
    let errors: String = row.try_get("errors")?;
    Ok(Run {
        id: row.try_get("id")?,
        source: model::source_from_name(&source).with_context(|| format!("unknown stored source {source:?}"))?,
        parameters: serde_json::from_str::<BTreeMap<String, String>>(&parameters).context("stored parameters")?,
        state: model::state_from_name(&state).with_context(|| format!("unknown stored state {state:?}"))?,
        done: row.try_get("progress_done")?,
        total: row.try_get("progress_total")?,
        counts: Counts {
            created: row.try_get("created")?,
            updated: row.try_get("updated")?,
            skipped: row.try_get("skipped")?,
            failed: row.try_get("failed")?,
        },
        errors: serde_json::from_str::<Vec<ItemError>>(&errors).context("stored errors")?,
        failure: row.try_get("failure")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
    })
}

fn errors_json(run: &Run) -> String {
    serde_json::to_string(&run.errors).unwrap_or_else(|_| "[]".into())
}

/// Inserts a new run.
pub async fn insert_run(db: &Db, run: &Run) -> Result<()> {
    let parameters = serde_json::to_string(&run.parameters).map_err(anyhow::Error::from)?;
    sqlx::query(
        "INSERT INTO runs (id, source, parameters, state, errors, failure, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&run.id)
    .bind(model::source_name(run.source))
    .bind(parameters)
    .bind(model::state_name(run.state))
    .bind(errors_json(run))
    .bind(&run.failure)
    .bind(run.created_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// One run.
pub async fn get_run(db: &Db, id: &str) -> Result<Option<Run>> {
    let sql = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");
    let row = sqlx::query(sql).bind(id).fetch_optional(db.pool()).await?;
    Ok(row.as_ref().map(run_row).transpose()?)
}

/// A page of runs, newest first (ties by id, descending), optionally of one source and in one
/// state, after the `(created_at, id)` of the previous page.
pub async fn list_runs(
    db: &Db,
    source: Option<Source>,
    state: Option<RunState>,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Run>> {
    let sql = concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE ($1 = '' OR source = $1) AND ($2 = '' OR state = $2) \
         AND (created_at < $3 OR (created_at = $3 AND id < $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5"
    );
    let (at, id) = after.unwrap_or((i64::MAX, String::new()));
    let rows = sqlx::query(sql)
        .bind(source.map(model::source_name).unwrap_or(""))
        .bind(state.map(model::state_name).unwrap_or(""))
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(run_row).collect::<anyhow::Result<_>>()?)
}

/// Deletes a finished run; false when there is no finished run with this id.
pub async fn delete_finished_run(db: &Db, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM runs WHERE id = $1 AND state IN ('succeeded', 'failed', 'cancelled')")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Moves a pending or running run to CANCELLED; false when it is not pending or running.
pub async fn cancel_run(db: &Db, id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE runs SET state = 'cancelled', ended_at = $2 WHERE id = $1 AND state IN ('pending', 'running')",
    )
    .bind(id)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Moves a pending run to RUNNING; false when it is no longer pending (cancelled meanwhile).
pub async fn start_run(db: &Db, id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query("UPDATE runs SET state = 'running', started_at = $2 WHERE id = $1 AND state = 'pending'")
        .bind(id)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The statement that stores a run's progress, counts and errors (`$1` its id).
macro_rules! progress_update {
    () => {
        "UPDATE runs SET progress_done = $2, progress_total = $3, created = $4, updated = $5, skipped = $6, \
         failed = $7, errors = $8 WHERE id = $1"
    };
}

/// Stores `run`'s progress, counts and errors (only while it is running, with `only_running`);
/// returns the rows changed.
async fn write_progress<'c, E>(executor: E, run: &Run, only_running: bool) -> Result<u64>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = if only_running {
        concat!(progress_update!(), " AND state = 'running'")
    } else {
        progress_update!()
    };
    let done = sqlx::query(sql)
        .bind(&run.id)
        .bind(run.done)
        .bind(run.total)
        .bind(run.counts.created)
        .bind(run.counts.updated)
        .bind(run.counts.skipped)
        .bind(run.counts.failed)
        .bind(errors_json(run))
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Stores a running run's progress, counts and errors; false when it is no longer running
/// (cancelled, possibly by another process).
pub async fn save_progress(db: &Db, run: &Run) -> Result<bool> {
    Ok(write_progress(db.pool(), run, true).await? > 0)
}

/// Ends a run: stores its progress, counts and errors whatever its state, and its end state,
/// failure and end time unless it ended already (cancelled meanwhile); false in that case.
pub async fn finish_run(db: &Db, run: &Run) -> Result<bool> {
    let mut tx = db.pool().begin().await?;
    write_progress(&mut *tx, run, false).await?;
    let done = sqlx::query(
        "UPDATE runs SET state = $2, failure = $3, ended_at = $4 WHERE id = $1 AND state IN ('pending', 'running')",
    )
    .bind(&run.id)
    .bind(model::state_name(run.state))
    .bind(&run.failure)
    .bind(run.ended_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// Marks runs left pending or running (by a process that stopped) as failed; returns how many.
pub async fn fail_unfinished(db: &Db, failure: &str, now: i64) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE runs SET state = 'failed', failure = $1, ended_at = $2 WHERE state IN ('pending', 'running')",
    )
    .bind(failure)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}
