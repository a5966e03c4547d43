//! SQL of the ingest service: the `runs` table. A pending or running run has an owner (the
//! replica running it) and a lease (`lease_until`, µs): every change a replica makes to a run
//! in progress is conditioned on its still owning it.

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
         failure, created_at, started_at, ended_at, owner, restarts"
    };
}

/// The states of a run in progress, in SQL.
macro_rules! active {
    () => {
        "('pending', 'running')"
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
        owner: row.try_get("owner")?,
        restarts: row.try_get("restarts")?,
    })
}

fn errors_json(run: &Run) -> String {
    serde_json::to_string(&run.errors).unwrap_or_else(|_| "[]".into())
}

/// The stored form of parameters: JSON with the keys sorted, the same for the same parameters.
pub fn parameters_key(parameters: &BTreeMap<String, String>) -> String {
    serde_json::to_string(parameters).unwrap_or_else(|_| "{}".into())
}

/// Inserts a new pending run owned by its `owner` until `lease_until`; false (nothing
/// inserted) when a run of the same source and parameters is pending or running.
pub async fn insert_run(db: &Db, run: &Run, lease_until: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO runs (id, source, parameters, state, errors, failure, created_at, owner, lease_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(&run.id)
    .bind(model::source_name(run.source))
    .bind(parameters_key(&run.parameters))
    .bind(model::state_name(run.state))
    .bind(errors_json(run))
    .bind(&run.failure)
    .bind(run.created_at)
    .bind(&run.owner)
    .bind(lease_until)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// One run.
pub async fn get_run(db: &Db, id: &str) -> Result<Option<Run>> {
    let sql = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");
    let row = sqlx::query(sql).bind(id).fetch_optional(db.pool()).await?;
    Ok(row.as_ref().map(run_row).transpose()?)
}

/// The pending or running run of `source` with `parameters`, if there is one.
pub async fn active_run(db: &Db, source: Source, parameters: &BTreeMap<String, String>) -> Result<Option<Run>> {
    let sql = concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE source = $1 AND parameters = $2 AND state IN ",
        active!()
    );
    let row = sqlx::query(sql)
        .bind(model::source_name(source))
        .bind(parameters_key(parameters))
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(run_row).transpose()?)
}

/// The newest run of `source` with `parameters` created at or after `since` (µs), in any
/// state.
pub async fn run_since(
    db: &Db,
    source: Source,
    parameters: &BTreeMap<String, String>,
    since: i64,
) -> Result<Option<Run>> {
    let sql = concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE source = $1 AND parameters = $2 AND created_at >= $3 ORDER BY created_at DESC LIMIT 1"
    );
    let row = sqlx::query(sql)
        .bind(model::source_name(source))
        .bind(parameters_key(parameters))
        .bind(since)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(run_row).transpose()?)
}

/// The newest run of `source` with `parameters` that ended.
pub async fn last_ended_run(db: &Db, source: Source, parameters: &BTreeMap<String, String>) -> Result<Option<Run>> {
    let sql = concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE source = $1 AND parameters = $2 AND state NOT IN ",
        active!(),
        " ORDER BY created_at DESC LIMIT 1"
    );
    let row = sqlx::query(sql)
        .bind(model::source_name(source))
        .bind(parameters_key(parameters))
        .fetch_optional(db.pool())
        .await?;
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
    let sql = concat!(
        "UPDATE runs SET state = 'cancelled', ended_at = $2 WHERE id = $1 AND state IN ",
        active!()
    );
    let done = sqlx::query(sql).bind(id).bind(now).execute(db.pool()).await?;
    Ok(done.rows_affected() > 0)
}

/// Moves a pending run `owner` owns to RUNNING, from nothing done (a run taken over starts
/// again); false when it is no longer pending or no longer `owner`'s.
pub async fn start_run(db: &Db, id: &str, owner: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE runs SET state = 'running', started_at = $2, progress_done = 0, progress_total = 0, created = 0, \
         updated = 0, skipped = 0, failed = 0, errors = '[]' WHERE id = $1 AND owner = $3 AND state = 'pending'",
    )
    .bind(id)
    .bind(now)
    .bind(owner)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The statement that stores a run's progress, counts and errors (`$1` its id, `$9` its owner).
macro_rules! progress_update {
    () => {
        "UPDATE runs SET progress_done = $2, progress_total = $3, created = $4, updated = $5, skipped = $6, \
         failed = $7, errors = $8 WHERE id = $1 AND owner = $9"
    };
}

/// Stores `run`'s progress, counts and errors while its owner still owns it (and only while
/// it is running, with `only_running`); returns the rows changed.
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
        .bind(&run.owner)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// Stores a running run's progress, counts and errors; false when it is no longer running or
/// no longer its owner's (cancelled, or taken over by another replica).
pub async fn save_progress(db: &Db, run: &Run) -> Result<bool> {
    Ok(write_progress(db.pool(), run, true).await? > 0)
}

/// Ends a run its owner still owns: stores its progress, counts and errors whatever its state,
/// and its end state, failure and end time unless it ended already (cancelled meanwhile);
/// false when it did not end it.
pub async fn finish_run(db: &Db, run: &Run) -> Result<bool> {
    let mut tx = db.pool().begin().await?;
    write_progress(&mut *tx, run, false).await?;
    let sql = concat!(
        "UPDATE runs SET state = $2, failure = $3, ended_at = $4 WHERE id = $1 AND owner = $5 AND state IN ",
        active!()
    );
    let done = sqlx::query(sql)
        .bind(&run.id)
        .bind(model::state_name(run.state))
        .bind(&run.failure)
        .bind(run.ended_at)
        .bind(&run.owner)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// Gives a run `owner` stops (at shutdown) back: pending again, with no owner and a lease that
/// ran out, for any replica to take over at once; false when it was not `owner`'s in progress.
pub async fn release_run(db: &Db, id: &str, owner: &str) -> Result<bool> {
    let sql = concat!(
        "UPDATE runs SET state = 'pending', owner = '', lease_until = 0 WHERE id = $1 AND owner = $2 AND state IN ",
        active!()
    );
    let done = sqlx::query(sql).bind(id).bind(owner).execute(db.pool()).await?;
    Ok(done.rows_affected() > 0)
}

/// Renews the lease of a run in progress `owner` owns; false when it is no longer in progress
/// or no longer `owner`'s.
pub async fn renew_run(db: &Db, id: &str, owner: &str, lease_until: i64) -> Result<bool> {
    let sql = concat!(
        "UPDATE runs SET lease_until = $3 WHERE id = $1 AND owner = $2 AND state IN ",
        active!()
    );
    let done = sqlx::query(sql)
        .bind(id)
        .bind(owner)
        .bind(lease_until)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Runs in progress whose lease ran out before `now`.
pub async fn expired_runs(db: &Db, now: i64) -> Result<Vec<Run>> {
    let sql = concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE lease_until < $1 AND state IN ",
        active!(),
        " ORDER BY created_at"
    );
    let rows = sqlx::query(sql).bind(now).fetch_all(db.pool()).await?;
    Ok(rows.iter().map(run_row).collect::<anyhow::Result<_>>()?)
}

/// Takes over a run in progress whose lease ran out before `now`: `owner`'s until
/// `lease_until`, pending (to start again), one restart more when it had been running; false
/// when another replica took it first (or it ended).
pub async fn take_over(db: &Db, id: &str, owner: &str, now: i64, lease_until: i64) -> Result<bool> {
    let sql = concat!(
        "UPDATE runs SET owner = $2, lease_until = $4, state = 'pending', \
         restarts = restarts + CASE WHEN state = 'running' THEN 1 ELSE 0 END \
         WHERE id = $1 AND lease_until < $3 AND state IN ",
        active!()
    );
    let done = sqlx::query(sql)
        .bind(id)
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Fails a run in progress whose lease ran out before `now`; false when another replica took
/// it over first (or it ended).
pub async fn fail_expired(db: &Db, id: &str, failure: &str, now: i64) -> Result<bool> {
    let sql = concat!(
        "UPDATE runs SET state = 'failed', failure = $2, ended_at = $3 WHERE id = $1 AND lease_until < $3 AND state IN ",
        active!()
    );
    let done = sqlx::query(sql)
        .bind(id)
        .bind(failure)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}
