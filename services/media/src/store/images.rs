//! SQL of images and their blobs. A blob is one content hash's bytes (original and thumbnail,
//! in the object store), counted by the images that point at it and by uploads in flight that
//! reserved it; an image is a source's frame at a taken time, pointing at its blob.

use outpost_kit::error::Result;
use outpost_kit::storage::Db;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// A blob: one content's metadata and thumbnail.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobRow {
    pub sha256: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub width: i64,
    pub height: i64,
    pub thumbnail_sha256: String,
    pub thumbnail_content_type: String,
    pub thumbnail_size_bytes: i64,
}

/// What a detector saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub probability: f64,
    pub has_subject: bool,
    /// x, y, width, height as fractions.
    pub bbox: Option<[f64; 4]>,
    pub model: String,
}

/// An image with its blob's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub id: String,
    pub source: String,
    pub taken_at: i64,
    pub sha256: String,
    pub detection: Option<Detection>,
    pub review_state: i64,
    pub reviewed_at: Option<i64>,
    pub filename: String,
    pub created_at: i64,
    pub content_type: String,
    pub size_bytes: i64,
    pub width: i64,
    pub height: i64,
}

/// The columns of an image row joined with its blob, then `$rest`.
macro_rules! select_images {
    ($($rest:expr),*) => {
        concat!(
            "SELECT i.id, i.source, i.taken_at, i.sha256, i.has_detection, i.probability, i.has_subject, \
             i.has_box, i.box_x, i.box_y, i.box_width, i.box_height, i.model, i.review_state, i.reviewed_at, i.filename, \
             i.created_at, b.content_type, b.size_bytes, b.width, b.height \
             FROM images i JOIN blobs b ON b.sha256 = i.sha256 ",
            $($rest),*
        )
    };
}

const BLOB_COLUMNS: &str =
    "sha256, content_type, size_bytes, width, height, thumbnail_sha256, thumbnail_content_type, thumbnail_size_bytes";

fn image_row(row: &AnyRow) -> std::result::Result<ImageRow, sqlx::Error> {
    let has_detection: i64 = row.try_get("has_detection")?;
    let bbox = if row.try_get::<i64, _>("has_box")? != 0 {
        Some([
            row.try_get("box_x")?,
            row.try_get("box_y")?,
            row.try_get("box_width")?,
            row.try_get("box_height")?,
        ])
    } else {
        None
    };
    let detection = (has_detection != 0)
        .then(|| -> std::result::Result<Detection, sqlx::Error> {
            Ok(Detection {
                probability: row.try_get("probability")?,
                has_subject: row.try_get::<i64, _>("has_subject")? != 0,
                bbox,
                model: row.try_get("model")?,
            })
        })
        .transpose()?;
    Ok(ImageRow {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        taken_at: row.try_get("taken_at")?,
        sha256: row.try_get("sha256")?,
        detection,
        review_state: row.try_get("review_state")?,
        reviewed_at: row.try_get("reviewed_at")?,
        filename: row.try_get("filename")?,
        created_at: row.try_get("created_at")?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
    })
}

fn blob_row(row: &AnyRow) -> std::result::Result<BlobRow, sqlx::Error> {
    Ok(BlobRow {
        sha256: row.try_get("sha256")?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
        thumbnail_sha256: row.try_get("thumbnail_sha256")?,
        thumbnail_content_type: row.try_get("thumbnail_content_type")?,
        thumbnail_size_bytes: row.try_get("thumbnail_size_bytes")?,
    })
}

fn rows(found: Vec<AnyRow>) -> Result<Vec<ImageRow>> {
    Ok(found.iter().map(image_row).collect::<std::result::Result<_, _>>()?)
}

/// One image.
pub async fn get(db: &Db, id: &str) -> Result<Option<ImageRow>> {
    let row = sqlx::query(select_images!("WHERE i.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(image_row).transpose()?)
}

/// The image of `source` taken at `taken_at`.
pub async fn find_taken(db: &Db, source: &str, taken_at: i64) -> Result<Option<ImageRow>> {
    let row = sqlx::query(select_images!("WHERE i.source = $1 AND i.taken_at = $2"))
        .bind(source)
        .bind(taken_at)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(image_row).transpose()?)
}

/// The first stored image of `source` with the bytes `sha256`.
pub async fn find_content(db: &Db, source: &str, sha256: &str) -> Result<Option<ImageRow>> {
    let row = sqlx::query(select_images!(
        "WHERE i.sha256 = $1 AND i.source = $2 ORDER BY i.created_at, i.id LIMIT 1"
    ))
    .bind(sha256)
    .bind(source)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(image_row).transpose()?)
}

/// Sets an image's detection (when given) and file name (when not empty).
pub async fn update_detection(db: &Db, id: &str, detection: Option<&Detection>, filename: &str) -> Result<()> {
    let query = sqlx::query(
        "UPDATE images SET \
         has_detection = CASE WHEN $2 = 1 THEN 1 ELSE has_detection END, \
         probability = CASE WHEN $2 = 1 THEN $3 ELSE probability END, \
         has_subject = CASE WHEN $2 = 1 THEN $4 ELSE has_subject END, \
         has_box = CASE WHEN $2 = 1 THEN $5 ELSE has_box END, \
         box_x = CASE WHEN $2 = 1 THEN $6 ELSE box_x END, \
         box_y = CASE WHEN $2 = 1 THEN $7 ELSE box_y END, \
         box_width = CASE WHEN $2 = 1 THEN $8 ELSE box_width END, \
         box_height = CASE WHEN $2 = 1 THEN $9 ELSE box_height END, \
         model = CASE WHEN $2 = 1 THEN $10 ELSE model END, \
         filename = CASE WHEN $11 = '' THEN filename ELSE $11 END \
         WHERE id = $1",
    )
    .bind(id);
    bind_detection(query, detection)
        .bind(filename)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Binds the nine detection columns (has one, probability, has subject, has a box, box x, y,
/// width, height, model), in that order; never a NULL.
fn bind_detection<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    detection: Option<&'q Detection>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let bbox = detection.and_then(|d| d.bbox);
    let [x, y, w, h] = bbox.unwrap_or_default();
    query
        .bind(i64::from(detection.is_some()))
        .bind(detection.map_or(0.0, |d| d.probability))
        .bind(detection.map_or(0, |d| i64::from(d.has_subject)))
        .bind(i64::from(bbox.is_some()))
        .bind(x)
        .bind(y)
        .bind(w)
        .bind(h)
        .bind(detection.map_or("", |d| d.model.as_str()))
}

/// Reserves a blob already in the object store (one more reference); `None` when there is no
/// such blob, or its bytes are not stored yet.
pub async fn reserve_stored(db: &Db, sha256: &str) -> Result<Option<BlobRow>> {
    let sql = format!("UPDATE blobs SET refs = refs + 1 WHERE sha256 = $1 AND stored = 1 RETURNING {BLOB_COLUMNS}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sha256)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(blob_row).transpose()?)
}

/// Reserves a blob, creating its row (bytes not stored yet) when there is none.
pub async fn reserve(db: &Db, blob: &BlobRow, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO blobs (sha256, content_type, size_bytes, width, height, thumbnail_sha256, \
         thumbnail_content_type, thumbnail_size_bytes, refs, stored, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 0, $9) \
         ON CONFLICT (sha256) DO UPDATE SET refs = blobs.refs + 1",
    )
    .bind(&blob.sha256)
    .bind(&blob.content_type)
    .bind(blob.size_bytes)
    .bind(blob.width)
    .bind(blob.height)
    .bind(&blob.thumbnail_sha256)
    .bind(&blob.thumbnail_content_type)
    .bind(blob.thumbnail_size_bytes)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// One blob.
pub async fn get_blob(db: &Db, sha256: &str) -> Result<Option<BlobRow>> {
    let sql = format!("SELECT {BLOB_COLUMNS} FROM blobs WHERE sha256 = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sha256)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(blob_row).transpose()?)
}

/// A new image row.
#[derive(Debug, Clone)]
pub struct NewImageRow<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub taken_at: i64,
    pub sha256: &'a str,
    pub detection: Option<&'a Detection>,
    pub filename: &'a str,
    pub created_at: i64,
}

/// Inserts an image holding a reservation of its blob (marking the blob stored when
/// `stored_now`), in one transaction. When an image of the same source and taken time exists
/// (stored concurrently), its detection is updated instead; returns the image's id and whether
/// it was created.
pub async fn insert(db: &Db, image: &NewImageRow<'_>, stored_now: bool) -> Result<(String, bool)> {
    let mut tx = db.pool().begin().await?;
    if stored_now {
        sqlx::query("UPDATE blobs SET stored = 1 WHERE sha256 = $1")
            .bind(image.sha256)
            .execute(&mut *tx)
            .await?;
    }
    let query = sqlx::query(
        "INSERT INTO images (id, source, taken_at, sha256, has_detection, probability, has_subject, has_box, \
         box_x, box_y, box_width, box_height, model, review_state, reviewed_at, filename, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, NULL, $14, $15) \
         ON CONFLICT (source, taken_at) DO UPDATE SET \
         has_detection = CASE WHEN excluded.has_detection = 1 THEN 1 ELSE images.has_detection END, \
         probability = CASE WHEN excluded.has_detection = 1 THEN excluded.probability ELSE images.probability END, \
         has_subject = CASE WHEN excluded.has_detection = 1 THEN excluded.has_subject ELSE images.has_subject END, \
         has_box = CASE WHEN excluded.has_detection = 1 THEN excluded.has_box ELSE images.has_box END, \
         box_x = CASE WHEN excluded.has_detection = 1 THEN excluded.box_x ELSE images.box_x END, \
         box_y = CASE WHEN excluded.has_detection = 1 THEN excluded.box_y ELSE images.box_y END, \
         box_width = CASE WHEN excluded.has_detection = 1 THEN excluded.box_width ELSE images.box_width END, \
         box_height = CASE WHEN excluded.has_detection = 1 THEN excluded.box_height ELSE images.box_height END, \
         model = CASE WHEN excluded.has_detection = 1 THEN excluded.model ELSE images.model END, \
         filename = CASE WHEN excluded.filename = '' THEN images.filename ELSE excluded.filename END \
         RETURNING id",
    )
    .bind(image.id)
    .bind(image.source)
    .bind(image.taken_at)
    .bind(image.sha256);
    let row = bind_detection(query, image.detection)
        .bind(image.filename)
        .bind(image.created_at)
        .fetch_one(&mut *tx)
        .await?;
    let id: String = row.try_get("id")?;
    tx.commit().await?;
    let created = id == image.id;
    Ok((id, created))
}

/// Deletes an image in `tx`; its blob's hash, or `None` when there is no such image.
pub async fn delete(tx: &mut Transaction<'_, Any>, id: &str) -> Result<Option<String>> {
    let sha = sqlx::query_scalar("DELETE FROM images WHERE id = $1 RETURNING sha256")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(sha)
}

/// Drops one reference to a blob in `tx`; the blob when that was its last one (then delete its
/// bytes and [`delete_blob`] before committing, so no upload can reserve it meanwhile: the
/// row stays locked until the commit).
pub async fn release(tx: &mut Transaction<'_, Any>, sha256: &str) -> Result<Option<BlobRow>> {
    let sql = format!("UPDATE blobs SET refs = refs - 1 WHERE sha256 = $1 RETURNING refs, {BLOB_COLUMNS}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sha256)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let refs: i64 = row.try_get("refs")?;
    if refs > 0 {
        return Ok(None);
    }
    Ok(Some(blob_row(&row)?))
}

/// Deletes an unreferenced blob row in `tx`.
pub async fn delete_blob(tx: &mut Transaction<'_, Any>, sha256: &str) -> Result<()> {
    sqlx::query("DELETE FROM blobs WHERE sha256 = $1 AND refs <= 0")
        .bind(sha256)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Which images a list shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Empty: every source.
    pub source: String,
    /// 0: every state.
    pub review_state: i64,
    /// Taken at or after.
    pub start: i64,
    /// Taken before.
    pub end: i64,
    pub has_subject: Option<bool>,
    /// -1: no minimum.
    pub min_probability: f64,
}

/// A list's order; ties by id, the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    TakenAsc,
    TakenDesc,
    ProbabilityAsc,
    ProbabilityDesc,
}

/// The sort key of the previous page's last image.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    Taken(i64, String),
    Probability(f64, String),
}

macro_rules! list_sql {
    ($keyset:literal) => {
        select_images!(
            "WHERE ($1 = '' OR i.source = $1) AND ($2 = 0 OR i.review_state = $2) \
             AND i.taken_at >= $3 AND i.taken_at < $4 AND ($5 < 0 OR i.has_subject = $5) \
             AND i.probability >= $6 AND ",
            $keyset,
            " LIMIT $9"
        )
    };
}

/// A page of images matching `filter` in `order`, after the previous page's last one.
pub async fn list(db: &Db, filter: &Filter, order: Order, after: Option<After>, limit: i64) -> Result<Vec<ImageRow>> {
    let sql = match order {
        Order::TakenAsc => list_sql!("(i.taken_at > $7 OR (i.taken_at = $7 AND i.id > $8)) ORDER BY i.taken_at, i.id"),
        Order::TakenDesc => {
            list_sql!("(i.taken_at < $7 OR (i.taken_at = $7 AND i.id < $8)) ORDER BY i.taken_at DESC, i.id DESC")
        }
        Order::ProbabilityAsc => {
            list_sql!("(i.probability > $7 OR (i.probability = $7 AND i.id > $8)) ORDER BY i.probability, i.id")
        }
        Order::ProbabilityDesc => list_sql!(
            "(i.probability < $7 OR (i.probability = $7 AND i.id < $8)) ORDER BY i.probability DESC, i.id DESC"
        ),
    };
    let query = sqlx::query(sql)
        .bind(&filter.source)
        .bind(filter.review_state)
        .bind(filter.start)
        .bind(filter.end)
        .bind(filter.has_subject.map_or(-1, i64::from))
        .bind(filter.min_probability);
    // Before the first row: below (or above) every key, and an empty id.
    let query = match (order, after) {
        (_, Some(After::Taken(at, id))) => query.bind(at).bind(id),
        (_, Some(After::Probability(p, id))) => query.bind(p).bind(id),
        (Order::TakenAsc, None) => query.bind(i64::MIN).bind(String::new()),
        (Order::TakenDesc, None) => query.bind(i64::MAX).bind(String::new()),
        (Order::ProbabilityAsc, None) => query.bind(-1.0f64).bind(String::new()),
        (Order::ProbabilityDesc, None) => query.bind(2.0f64).bind(String::new()),
    };
    rows(query.bind(limit).fetch_all(db.pool()).await?)
}
