//! SQL of tracks, waypoints and traverse segments, on both backends through the `Any` pool.
//! An upsert reads the stored digests of the track, then writes only new and changed rows in
//! multi-row statements, all in one transaction.

use std::collections::HashMap;

use outpost_kit::error::Result;
use outpost_kit::storage::{Backend, Db};
use outpost_kit::time::now_micros;
use serde_json::{Map, Value as Json};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row, Transaction};

use super::batch::values_sql;
use crate::tracks::{Counts, Segment, SolRange, Track, Waypoint};

/// Waypoint rows per statement (29 parameters each).
const WAYPOINT_CHUNK: usize = 200;
/// Segment rows per statement (12 parameters each).
const SEGMENT_CHUNK: usize = 100;

const TRACK_COLUMNS: &str = "t.id, t.display_name, t.updated_at, \
    (SELECT COUNT(*) FROM waypoints w WHERE w.track = t.id) AS waypoint_count, \
    (SELECT COALESCE(MIN(w.sol), 0) FROM waypoints w WHERE w.track = t.id) AS first_sol, \
    (SELECT COALESCE(MAX(w.sol), 0) FROM waypoints w WHERE w.track = t.id) AS latest_sol, \
    (SELECT COALESCE(MAX(w.dist_total_m), 0.0) FROM waypoints w WHERE w.track = t.id) AS total_distance_m, \
    (SELECT COUNT(*) FROM traverse_segments s WHERE s.track = t.id) AS segment_count";

const WAYPOINT_COLUMNS: &str = "site, drive, sol, rmc, lon, lat, elev_geoid, elev_radii, radius, easting, \
    northing, roll, pitch, yaw, yaw_rad, tilt, dist_m, dist_total_m, dist_km, dist_mi, sclk_start, sclk_end, \
    final, note, images, extra";

const SEGMENT_COLUMNS: &str = "sol, from_rmc, to_rmc, length_m, sclk_start, sclk_end, has_elevation, points, extra";

fn track_row(row: &AnyRow) -> sqlx::Result<Track> {
    Ok(Track {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        waypoint_count: row.try_get("waypoint_count")?,
        first_sol: row.try_get("first_sol")?,
        latest_sol: row.try_get("latest_sol")?,
        traverse_segment_count: row.try_get("segment_count")?,
        total_distance_m: row.try_get("total_distance_m")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn decode_err(column: &str, err: serde_json::Error) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(err),
    }
}

fn json_map(row: &AnyRow, column: &str) -> sqlx::Result<Map<String, Json>> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| decode_err(column, e))
}

fn sclk(row: &AnyRow, column: &str) -> sqlx::Result<Option<i64>> {
    let value: i64 = row.try_get(column)?;
    Ok((value >= 0).then_some(value))
}

fn waypoint_row(row: &AnyRow) -> sqlx::Result<Waypoint> {
    let images: String = row.try_get("images")?;
    let images = if images.is_empty() {
        None
    } else {
        Some(serde_json::from_str(&images).map_err(|e| decode_err("images", e))?)
    };
    Ok(Waypoint {
        site: row.try_get("site")?,
        drive: row.try_get("drive")?,
        sol: row.try_get("sol")?,
        rmc: row.try_get("rmc")?,
        lon: row.try_get("lon")?,
        lat: row.try_get("lat")?,
        elev_geoid: row.try_get("elev_geoid")?,
        elev_radii: row.try_get("elev_radii")?,
        radius: row.try_get("radius")?,
        easting: row.try_get("easting")?,
        northing: row.try_get("northing")?,
        roll: row.try_get("roll")?,
        pitch: row.try_get("pitch")?,
        yaw: row.try_get("yaw")?,
        yaw_rad: row.try_get("yaw_rad")?,
        tilt: row.try_get("tilt")?,
        dist_m: row.try_get("dist_m")?,
        dist_total_m: row.try_get("dist_total_m")?,
        dist_km: row.try_get("dist_km")?,
        dist_mi: row.try_get("dist_mi")?,
        sclk_start: sclk(row, "sclk_start")?,
        sclk_end: sclk(row, "sclk_end")?,
        final_: row.try_get("final")?,
        note: row.try_get("note")?,
        images,
        extra: json_map(row, "extra")?,
    })
}

fn segment_row(row: &AnyRow) -> sqlx::Result<Segment> {
    let points: String = row.try_get("points")?;
    let has_elevation = row.try_get::<i64, _>("has_elevation")? != 0;
    let points: Vec<Vec<f64>> = serde_json::from_str(&points).map_err(|e| decode_err("points", e))?;
    let points = points
        .into_iter()
        .map(|p| {
            [
                p.first().copied().unwrap_or_default(),
                p.get(1).copied().unwrap_or_default(),
                p.get(2).copied().unwrap_or_default(),
            ]
        })
        .collect();
    Ok(Segment {
        sol: row.try_get("sol")?,
        from_rmc: row.try_get("from_rmc")?,
        to_rmc: row.try_get("to_rmc")?,
        length_m: row.try_get("length_m")?,
        sclk_start: sclk(row, "sclk_start")?,
        sclk_end: sclk(row, "sclk_end")?,
        has_elevation,
        points,
        extra: json_map(row, "extra")?,
    })
}

fn collect<T>(rows: &[AnyRow], f: fn(&AnyRow) -> sqlx::Result<T>) -> Result<Vec<T>> {
    Ok(rows.iter().map(f).collect::<sqlx::Result<_>>()?)
}

/// A write transaction: SQLite takes the write lock at once.
async fn begin(db: &Db) -> sqlx::Result<Transaction<'static, sqlx::Any>> {
    match db.backend() {
        Backend::Sqlite => db.pool().begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => db.pool().begin().await,
    }
}

/// Creates the track when missing.
async fn ensure_track(tx: &mut Transaction<'static, sqlx::Any>, track: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO tracks (id, display_name, created_at, updated_at) VALUES ($1, '', $2, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(track)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn touch_track(tx: &mut Transaction<'static, sqlx::Any>, track: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE tracks SET updated_at = $2 WHERE id = $1")
        .bind(track)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Splits rows into the ones to write (new or changed) and counts them against `stored`.
fn classify<K: Eq + std::hash::Hash, T>(
    rows: Vec<(String, T)>,
    stored: &HashMap<K, String>,
    key: impl Fn(&T) -> K,
) -> (Vec<(String, T)>, Counts) {
    let mut counts = Counts::default();
    let mut write = Vec::new();
    for (digest, row) in rows {
        match stored.get(&key(&row)) {
            None => counts.created += 1,
            Some(old) if *old == digest => {
                counts.unchanged += 1;
                continue;
            }
            Some(_) => counts.updated += 1,
        }
        write.push((digest, row));
    }
    (write, counts)
}

fn sclk_bind(value: Option<i64>) -> i64 {
    value.unwrap_or(-1)
}

/// Upserts `(digest, waypoint)` rows of `track`, creating it as needed.
pub async fn upsert_waypoints(db: &Db, track: &str, rows: Vec<(String, Waypoint)>) -> Result<Counts> {
    let now = now_micros();
    let mut tx = begin(db).await?;
    ensure_track(&mut tx, track, now).await?;
    let stored = sqlx::query("SELECT site, drive, digest FROM waypoints WHERE track = $1")
        .bind(track)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok((
                (r.try_get::<i64, _>("site")?, r.try_get::<i64, _>("drive")?),
                r.try_get("digest")?,
            ))
        })
        .collect::<sqlx::Result<HashMap<_, String>>>()?;
    let (write, counts) = classify(rows, &stored, |w| (w.site, w.drive));
    let head = format!("INSERT INTO waypoints (track, digest, {WAYPOINT_COLUMNS}) VALUES");
    let updates = WAYPOINT_COLUMNS
        .split(',')
        .map(str::trim)
        .filter(|c| *c != "site" && *c != "drive")
        .chain(["digest"])
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let tail = format!("ON CONFLICT (track, site, drive) DO UPDATE SET {updates}");
    for chunk in write.chunks(WAYPOINT_CHUNK) {
        let sql = values_sql(&head, chunk.len(), 28, &tail);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (digest, w) in chunk {
            let images = w.images.as_ref().map(Json::to_string).unwrap_or_default();
            let extra = Json::Object(w.extra.clone()).to_string();
            query = query
                .bind(track.to_string())
                .bind(digest.clone())
                .bind(w.site)
                .bind(w.drive)
                .bind(w.sol)
                .bind(w.rmc.clone())
                .bind(w.lon)
                .bind(w.lat)
                .bind(w.elev_geoid)
                .bind(w.elev_radii)
                .bind(w.radius)
                .bind(w.easting)
                .bind(w.northing)
                .bind(w.roll)
                .bind(w.pitch)
                .bind(w.yaw)
                .bind(w.yaw_rad)
                .bind(w.tilt)
                .bind(w.dist_m)
                .bind(w.dist_total_m)
                .bind(w.dist_km)
                .bind(w.dist_mi)
                .bind(sclk_bind(w.sclk_start))
                .bind(sclk_bind(w.sclk_end))
                .bind(w.final_.clone())
                .bind(w.note.clone())
                .bind(images)
                .bind(extra);
        }
        query.execute(&mut *tx).await?;
    }
    if !write.is_empty() {
        touch_track(&mut tx, track, now).await?;
    }
    tx.commit().await?;
    Ok(counts)
}

/// Upserts `(digest, segment)` rows of `track`, creating it as needed.
pub async fn upsert_segments(db: &Db, track: &str, rows: Vec<(String, Segment)>) -> Result<Counts> {
    let now = now_micros();
    let mut tx = begin(db).await?;
    ensure_track(&mut tx, track, now).await?;
    let stored = sqlx::query("SELECT sol, from_rmc, to_rmc, digest FROM traverse_segments WHERE track = $1")
        .bind(track)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let key = (
                r.try_get::<i64, _>("sol")?,
                r.try_get::<String, _>("from_rmc")?,
                r.try_get::<String, _>("to_rmc")?,
            );
            Ok((key, r.try_get("digest")?))
        })
        .collect::<sqlx::Result<HashMap<_, String>>>()?;
    let (write, counts) = classify(rows, &stored, |s| (s.sol, s.from_rmc.clone(), s.to_rmc.clone()));
    let head = format!("INSERT INTO traverse_segments (track, digest, {SEGMENT_COLUMNS}) VALUES");
    let tail = "ON CONFLICT (track, sol, from_rmc, to_rmc) DO UPDATE SET length_m = excluded.length_m, \
        sclk_start = excluded.sclk_start, sclk_end = excluded.sclk_end, has_elevation = excluded.has_elevation, \
        points = excluded.points, extra = excluded.extra, digest = excluded.digest";
    for chunk in write.chunks(SEGMENT_CHUNK) {
        let sql = values_sql(&head, chunk.len(), 11, tail);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (digest, s) in chunk {
            let points: Vec<Json> = s
                .points
                .iter()
                .map(|p| {
                    if s.has_elevation {
                        serde_json::json!([p[0], p[1], p[2]])
                    } else {
                        serde_json::json!([p[0], p[1]])
                    }
                })
                .collect();
            query = query
                .bind(track.to_string())
                .bind(digest.clone())
                .bind(s.sol)
                .bind(s.from_rmc.clone())
                .bind(s.to_rmc.clone())
                .bind(s.length_m)
                .bind(sclk_bind(s.sclk_start))
                .bind(sclk_bind(s.sclk_end))
                .bind(i64::from(s.has_elevation))
                .bind(Json::Array(points).to_string())
                .bind(Json::Object(s.extra.clone()).to_string());
        }
        query.execute(&mut *tx).await?;
    }
    if !write.is_empty() {
        touch_track(&mut tx, track, now).await?;
    }
    tx.commit().await?;
    Ok(counts)
}

/// One track with its counts.
pub async fn get_track(db: &Db, id: &str) -> Result<Option<Track>> {
    let sql = format!("SELECT {TRACK_COLUMNS} FROM tracks t WHERE t.id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(track_row).transpose()?)
}

/// Tracks by id after `after`.
pub async fn list_tracks(db: &Db, after: &str, limit: i64) -> Result<Vec<Track>> {
    let sql = format!("SELECT {TRACK_COLUMNS} FROM tracks t WHERE t.id > $1 ORDER BY t.id LIMIT $2");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(after)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    collect(&rows, track_row)
}

/// Deletes a track with its waypoints and traverse; false when there was none.
pub async fn delete_track(db: &Db, id: &str) -> Result<bool> {
    let mut tx = begin(db).await?;
    let done = sqlx::query("DELETE FROM tracks WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for sql in [
        "DELETE FROM waypoints WHERE track = $1",
        "DELETE FROM traverse_segments WHERE track = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// One waypoint.
pub async fn get_waypoint(db: &Db, track: &str, site: i64, drive: i64) -> Result<Option<Waypoint>> {
    let sql = format!("SELECT {WAYPOINT_COLUMNS} FROM waypoints WHERE track = $1 AND site = $2 AND drive = $3");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(track)
        .bind(site)
        .bind(drive)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(waypoint_row).transpose()?)
}

/// Waypoints of `track` in `range` by (sol, site, drive) after the cursor.
pub async fn list_waypoints(
    db: &Db,
    track: &str,
    range: SolRange,
    after: Option<(i64, i64, i64)>,
    limit: i64,
) -> Result<Vec<Waypoint>> {
    let (min, max) = range.bounds();
    let (sol, site, drive) = after.unwrap_or((i64::MIN, 0, 0));
    let sql = format!(
        "SELECT {WAYPOINT_COLUMNS} FROM waypoints WHERE track = $1 AND sol >= $2 AND sol <= $3 \
         AND (sol > $4 OR (sol = $4 AND (site > $5 OR (site = $5 AND drive > $6)))) \
         ORDER BY sol, site, drive LIMIT $7"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(track)
        .bind(min)
        .bind(max)
        .bind(sol)
        .bind(site)
        .bind(drive)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    collect(&rows, waypoint_row)
}

/// The waypoint of `track` with the largest (sol, site, drive).
pub async fn latest_waypoint(db: &Db, track: &str) -> Result<Option<Waypoint>> {
    let sql = format!(
        "SELECT {WAYPOINT_COLUMNS} FROM waypoints WHERE track = $1 ORDER BY sol DESC, site DESC, drive DESC LIMIT 1"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(track)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(waypoint_row).transpose()?)
}

/// Traverse segments of `track` in `range` by (sol, from, to) after the cursor.
pub async fn list_segments(
    db: &Db,
    track: &str,
    range: SolRange,
    after: Option<(i64, String, String)>,
    limit: i64,
) -> Result<Vec<Segment>> {
    let (min, max) = range.bounds();
    let (sol, from, to) = after.unwrap_or((i64::MIN, String::new(), String::new()));
    let sql = format!(
        "SELECT {SEGMENT_COLUMNS} FROM traverse_segments WHERE track = $1 AND sol >= $2 AND sol <= $3 \
         AND (sol > $4 OR (sol = $4 AND (from_rmc > $5 OR (from_rmc = $5 AND to_rmc > $6)))) \
         ORDER BY sol, from_rmc, to_rmc LIMIT $7"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(track)
        .bind(min)
        .bind(max)
        .bind(sol)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    collect(&rows, segment_row)
}
