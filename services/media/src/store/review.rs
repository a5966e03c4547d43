//! SQL of review decisions: a whole batch of clicks in ONE statement, and the counts.

use std::fmt::Write as _;

use outpost_kit::error::Result;
use outpost_kit::storage::Db;
use sqlx::Row;

/// One image's decision in a batch: its id, the state, and when it was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'a> {
    pub id: &'a str,
    pub state: i64,
    pub at: i64,
}

/// An image's review after a batch: id, state, and the time of the decision that holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    pub id: String,
    pub state: i64,
    pub at: Option<i64>,
}

/// Applies the decisions (at most one per image) in ONE statement: each image takes its
/// decision unless it already holds a later one. Returns the review of every image that
/// exists (after the statement); an id not returned is no image.
pub async fn apply(db: &Db, decisions: &[Decision<'_>]) -> Result<Vec<Reviewed>> {
    if decisions.is_empty() {
        return Ok(Vec::new());
    }
    // `column1..3` name the columns of a VALUES list on both SQLite and PostgreSQL.
    let mut sql = String::from(
        "UPDATE images SET \
         review_state = CASE WHEN images.reviewed_at IS NULL OR images.reviewed_at <= v.column3 \
         THEN v.column2 ELSE images.review_state END, \
         reviewed_at = CASE WHEN images.reviewed_at IS NULL OR images.reviewed_at <= v.column3 \
         THEN v.column3 ELSE images.reviewed_at END \
         FROM (VALUES ",
    );
    for i in 0..decisions.len() {
        let n = i * 3;
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(sql, "{sep}(${}, ${}, ${})", n + 1, n + 2, n + 3);
    }
    sql.push_str(") AS v WHERE images.id = v.column1 RETURNING id, review_state, reviewed_at");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for decision in decisions {
        query = query.bind(decision.id).bind(decision.state).bind(decision.at);
    }
    let rows = query.fetch_all(db.pool()).await?;
    Ok(rows
        .iter()
        .map(|row| {
            Ok(Reviewed {
                id: row.try_get("id")?,
                state: row.try_get("review_state")?,
                at: row.try_get("reviewed_at")?,
            })
        })
        .collect::<std::result::Result<_, sqlx::Error>>()?)
}

/// Image counts by source and review state, of one source or all (empty).
pub async fn counts(db: &Db, source: &str) -> Result<Vec<(String, i64, i64)>> {
    let rows = sqlx::query(
        "SELECT source, review_state, COUNT(*) AS n FROM images WHERE ($1 = '' OR source = $1) \
         GROUP BY source, review_state ORDER BY source, review_state",
    )
    .bind(source)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|row| Ok((row.try_get("source")?, row.try_get("review_state")?, row.try_get("n")?)))
        .collect::<std::result::Result<_, sqlx::Error>>()?)
}
