//! SQL of stored objects (snapshots and the like).

use outpost_kit::error::Result;
use outpost_kit::storage::Db;
use sqlx::Row;

/// A stored object's row.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    pub id: String,
    pub kind: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub labels: String,
    pub created_at: i64,
}

fn object_row(row: &sqlx::any::AnyRow) -> std::result::Result<ObjectRow, sqlx::Error> {
    Ok(ObjectRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        labels: row.try_get("labels")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Inserts an object row unless one with the same id exists; returns the stored row.
pub async fn insert_object(db: &Db, row: &ObjectRow) -> Result<ObjectRow> {
    sqlx::query(
        "INSERT INTO objects (id, kind, content_type, size_bytes, labels, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.kind)
    .bind(&row.content_type)
    .bind(row.size_bytes)
    .bind(&row.labels)
    .bind(row.created_at)
    .execute(db.pool())
    .await?;
    get_object(db, &row.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("object row vanished after insert").into())
}

/// One object row.
pub async fn get_object(db: &Db, id: &str) -> Result<Option<ObjectRow>> {
    let row = sqlx::query("SELECT id, kind, content_type, size_bytes, labels, created_at FROM objects WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(object_row).transpose()?)
}

/// A page of object rows, newest first (ties by id, descending), optionally of one kind,
/// after the row `(created_at, id)` of the previous page.
pub async fn list_objects(
    db: &Db,
    kind: Option<&str>,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<ObjectRow>> {
    let (at, id) = after.unwrap_or((i64::MAX, String::new()));
    let rows = sqlx::query(
        "SELECT id, kind, content_type, size_bytes, labels, created_at FROM objects \
         WHERE ($1 = '' OR kind = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(kind.unwrap_or(""))
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(object_row).collect::<std::result::Result<_, _>>()?)
}

/// Deletes an object row; false when there was none.
pub async fn delete_object(db: &Db, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM objects WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}
