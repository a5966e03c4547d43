//! SQL of the telemetry service. Every query runs on both backends through the `Any` pool,
//! except the batch write (see [`batch`]).

pub mod batch;
pub mod tracks;

use outpost_kit::error::Result;
use outpost_kit::storage::Db;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::readings::Reading;

/// A device's row.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub id: String,
    pub display_name: String,
    pub source: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// JSON object of the labels.
    pub labels: String,
    pub created_at: i64,
    /// The time of its newest reading (derived from the current values, never written by a
    /// write of readings).
    pub last_seen_at: Option<i64>,
}

/// The columns of a device, `last_seen_at` derived from its sensors' current values.
macro_rules! device_columns {
    () => {
        "id, display_name, source, latitude, longitude, labels, created_at, \
         (SELECT MAX(c.ts) FROM sensors s JOIN current_values c ON c.sensor_key = s.sensor_key \
          WHERE s.device = devices.id) AS last_seen_at"
    };
}

/// A sensor's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorRow {
    /// The device id.
    pub device: String,
    /// The sensor id.
    pub sensor: String,
    /// What it measures.
    pub kind: String,
    /// Its unit, or empty.
    pub unit: String,
    /// A title for people.
    pub display_name: String,
}

/// Per-bucket statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    /// The bucket's start, microseconds (a multiple of the width).
    pub start: i64,
    /// Readings in it.
    pub count: i64,
    /// Their mean.
    pub avg: f64,
    /// Their minimum.
    pub min: f64,
    /// Their maximum.
    pub max: f64,
}

/// Filters of readings: one sensor id, one device or every device (empty), `[lower, end)`.
#[derive(Debug, Clone)]
pub struct SeriesFilter<'a> {
    pub sensor: &'a str,
    pub device: &'a str,
    pub lower: i64,
    pub end: i64,
}

/// Filters of current values; empty matches everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct CurrentFilter<'a> {
    /// Only this device id.
    pub device: &'a str,
    /// Only this sensor id.
    pub sensor: &'a str,
    /// Only this kind.
    pub kind: &'a str,
}

fn device_row(row: &AnyRow) -> sqlx::Result<DeviceRow> {
    Ok(DeviceRow {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        source: row.try_get("source")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        labels: row.try_get("labels")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

fn sensor_row(row: &AnyRow) -> sqlx::Result<SensorRow> {
    Ok(SensorRow {
        device: row.try_get("device")?,
        sensor: row.try_get("sensor")?,
        kind: row.try_get("kind")?,
        unit: row.try_get("unit")?,
        display_name: row.try_get("display_name")?,
    })
}

/// A reading from columns `device, sensor, kind, unit, ts, value`.
fn reading_row(row: &AnyRow) -> sqlx::Result<Reading> {
    Ok(Reading {
        device: row.try_get("device")?,
        sensor: row.try_get("sensor")?,
        kind: row.try_get("kind")?,
        unit: row.try_get("unit")?,
        time: row.try_get("ts")?,
        value: row.try_get("value")?,
    })
}

fn collect<T>(rows: &[AnyRow], f: fn(&AnyRow) -> sqlx::Result<T>) -> Result<Vec<T>> {
    Ok(rows.iter().map(f).collect::<sqlx::Result<_>>()?)
}

/// Inserts a device; false when one with its id exists.
pub async fn insert_device(db: &Db, row: &DeviceRow) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO devices (id, display_name, source, latitude, longitude, labels, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.display_name)
    .bind(&row.source)
    .bind(row.latitude)
    .bind(row.longitude)
    .bind(&row.labels)
    .bind(row.created_at)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// One device.
pub async fn get_device(db: &Db, id: &str) -> Result<Option<DeviceRow>> {
    let row = sqlx::query(concat!("SELECT ", device_columns!(), " FROM devices WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(device_row).transpose()?)
}

/// Devices by id after `after`, optionally of one source.
pub async fn list_devices(db: &Db, source: &str, after: &str, limit: i64) -> Result<Vec<DeviceRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        device_columns!(),
        " FROM devices WHERE ($1 = '' OR source = $1) AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(source)
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    collect(&rows, device_row)
}

/// Deletes a device with its sensors, readings and current values in one transaction; false
/// when there was none. Writes of readings never lock the device row, so a batch racing this
/// delete may still commit readings under the deleted sensors' keys: they are unreachable
/// (every read joins `sensors`, and keys are never handed out again), and a later write for
/// the device creates it and its sensors anew.
pub async fn delete_device(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.pool().begin().await?;
    let done = sqlx::query("DELETE FROM devices WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM readings WHERE sensor_key IN (SELECT sensor_key FROM sensors WHERE device = $1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM current_values WHERE sensor_key IN (SELECT sensor_key FROM sensors WHERE device = $1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sensors WHERE device = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// One sensor.
pub async fn get_sensor(db: &Db, device: &str, sensor: &str) -> Result<Option<SensorRow>> {
    let row =
        sqlx::query("SELECT device, sensor, kind, unit, display_name FROM sensors WHERE device = $1 AND sensor = $2")
            .bind(device)
            .bind(sensor)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.as_ref().map(sensor_row).transpose()?)
}

/// Sensors by (device, sensor) after `after`, of one device (or all: empty), optionally of one kind.
pub async fn list_sensors(
    db: &Db,
    device: &str,
    kind: &str,
    after: (&str, &str),
    limit: i64,
) -> Result<Vec<SensorRow>> {
    let rows = sqlx::query(
        "SELECT device, sensor, kind, unit, display_name FROM sensors \
         WHERE ($1 = '' OR device = $1) AND ($2 = '' OR kind = $2) \
         AND (device > $3 OR (device = $3 AND sensor > $4)) ORDER BY device, sensor LIMIT $5",
    )
    .bind(device)
    .bind(kind)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    collect(&rows, sensor_row)
}

/// Readings oldest first (then by sensor key) after the cursor `(ts, key)`.
pub async fn list_readings(
    db: &Db,
    filter: &SeriesFilter<'_>,
    cursor: (i64, i64),
    limit: i64,
) -> Result<Vec<(Reading, i64)>> {
    let rows = sqlx::query(
        "SELECT s.device, s.sensor, s.kind, s.unit, r.ts, r.value, r.sensor_key \
         FROM readings r JOIN sensors s ON s.sensor_key = r.sensor_key \
         WHERE s.sensor = $1 AND ($2 = '' OR s.device = $2) AND r.ts >= $3 AND r.ts < $4 \
         AND (r.ts > $5 OR r.sensor_key > $6) ORDER BY r.ts, r.sensor_key LIMIT $7",
    )
    .bind(filter.sensor)
    .bind(filter.device)
    .bind(filter.lower)
    .bind(filter.end)
    .bind(cursor.0)
    .bind(cursor.1)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|row| Ok((reading_row(row)?, row.try_get("sensor_key")?)))
        .collect::<sqlx::Result<_>>()?)
}

/// Buckets of `width` microseconds (starts aligned to multiples of it), oldest first.
pub async fn list_buckets(db: &Db, filter: &SeriesFilter<'_>, width: i64, limit: i64) -> Result<Vec<BucketRow>> {
    let rows = sqlx::query(
        "SELECT r.ts - (((r.ts % $1) + $1) % $1) AS bucket, COUNT(*) AS n, AVG(r.value) AS avg_value, \
         MIN(r.value) AS min_value, MAX(r.value) AS max_value \
         FROM readings r JOIN sensors s ON s.sensor_key = r.sensor_key \
         WHERE s.sensor = $2 AND ($3 = '' OR s.device = $3) AND r.ts >= $4 AND r.ts < $5 \
         GROUP BY bucket ORDER BY bucket LIMIT $6",
    )
    .bind(width)
    .bind(filter.sensor)
    .bind(filter.device)
    .bind(filter.lower)
    .bind(filter.end)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let bucket = |row: &AnyRow| -> sqlx::Result<BucketRow> {
        Ok(BucketRow {
            start: row.try_get("bucket")?,
            count: row.try_get("n")?,
            avg: row.try_get("avg_value")?,
            min: row.try_get("min_value")?,
            max: row.try_get("max_value")?,
        })
    };
    Ok(rows.iter().map(bucket).collect::<sqlx::Result<_>>()?)
}

/// One sensor's current value.
pub async fn get_current(db: &Db, device: &str, sensor: &str) -> Result<Option<Reading>> {
    let row = sqlx::query(
        "SELECT s.device, s.sensor, s.kind, s.unit, c.ts, c.value \
         FROM current_values c JOIN sensors s ON s.sensor_key = c.sensor_key \
         WHERE s.device = $1 AND s.sensor = $2",
    )
    .bind(device)
    .bind(sensor)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(reading_row).transpose()?)
}

/// Current values by (device, sensor) after `after`.
pub async fn list_current(db: &Db, filter: CurrentFilter<'_>, after: (&str, &str), limit: i64) -> Result<Vec<Reading>> {
    let rows = sqlx::query(
        "SELECT s.device, s.sensor, s.kind, s.unit, c.ts, c.value \
         FROM current_values c JOIN sensors s ON s.sensor_key = c.sensor_key \
         WHERE ($1 = '' OR s.device = $1) AND ($2 = '' OR s.sensor = $2) AND ($3 = '' OR s.kind = $3) \
         AND (s.device > $4 OR (s.device = $4 AND s.sensor > $5)) ORDER BY s.device, s.sensor LIMIT $6",
    )
    .bind(filter.device)
    .bind(filter.sensor)
    .bind(filter.kind)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    collect(&rows, reading_row)
}

/// Over devices with a current value of `kind` at or after `since`: how many, the mean of
/// their per-device means, and the most common unit.
pub async fn aggregate_current(db: &Db, kind: &str, since: i64) -> Result<(i64, Option<f64>, String)> {
    // One scan of the current values, shared by the average and the unit.
    let row = sqlx::query(
        "WITH cur AS ( \
           SELECT s.device, s.unit, c.value FROM current_values c JOIN sensors s ON s.sensor_key = c.sensor_key \
           WHERE s.kind = $1 AND c.ts >= $2), \
         per_device AS (SELECT AVG(value) AS v FROM cur GROUP BY device) \
         SELECT COUNT(*) AS devices, AVG(v) AS average, \
           COALESCE((SELECT unit FROM cur WHERE unit <> '' GROUP BY unit ORDER BY COUNT(*) DESC, unit LIMIT 1), '') \
             AS unit \
         FROM per_device",
    )
    .bind(kind)
    .bind(since)
    .fetch_one(db.pool())
    .await?;
    Ok((row.try_get("devices")?, row.try_get("average")?, row.try_get("unit")?))
}
