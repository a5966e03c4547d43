//! SQL of a batch of readings: one transaction that creates missing devices (existing device
//! rows are only read, never locked or updated, so writes to one device never queue behind each
//! other), resolves the sensors the key cache does not know, and upserts the readings and the
//! current values. PostgreSQL gets arrays through `UNNEST` on the native pool (and `COPY` for
//! large batches); SQLite gets multi-row `VALUES`. Rows are written in (key, time) order, so
//! concurrent batches lock rows in the same order.

use std::collections::HashMap;

use sqlx::{AnyPool, AssertSqlSafe, PgPool, Postgres, Row, Transaction};

use crate::sensor_keys::SensorEntry;

/// A sensor a batch writes to, with the kind and unit the batch gives (empty: keep).
#[derive(Clone, Debug)]
pub struct SensorWant {
    pub device: String,
    pub sensor: String,
    pub kind: String,
    pub unit: String,
}

/// The statements of a batch, per backend.
pub trait BatchTx {
    /// Inserts missing devices (created at `stamp`) and returns every device's creation time.
    async fn devices(&mut self, devices: &[&str], stamp: i64) -> sqlx::Result<HashMap<String, i64>>;
    /// Creates or updates sensors; returns their entries in the same order.
    async fn resolve_sensors(&mut self, sensors: &[&SensorWant]) -> sqlx::Result<Vec<SensorEntry>>;
    /// Upserts readings `(key, ts, value)`, unique and sorted.
    async fn upsert_readings(&mut self, rows: &[(i64, i64, f64)]) -> sqlx::Result<()>;
    /// Upserts current values `(key, ts, value)`, one per key; an older time never wins.
    async fn upsert_current(&mut self, rows: &[(i64, i64, f64)]) -> sqlx::Result<()>;
    /// Commits.
    async fn commit(self) -> sqlx::Result<()>;
}

/// Rows per multi-row `VALUES` statement on SQLite (well below its variable limit).
const SQLITE_CHUNK: usize = 300;

/// `INSERT … VALUES ($1, $2, …), (…) …` for `rows` rows of `columns` columns.
pub(crate) fn values_sql(head: &str, rows: usize, columns: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * columns * 7);
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { " (" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * columns + column + 1));
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

const DEVICES_HEAD: &str = "INSERT INTO devices (id, created_at) VALUES";
const DEVICES_TAIL: &str = "ON CONFLICT (id) DO NOTHING";
const SENSOR_SQLITE: &str = "INSERT INTO sensors (device, sensor, kind, unit) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (device, sensor) DO UPDATE SET \
     kind = CASE WHEN $5 = '' THEN sensors.kind ELSE excluded.kind END, \
     unit = CASE WHEN excluded.unit = '' THEN sensors.unit ELSE excluded.unit END \
     RETURNING sensor_key, kind, unit";
const READINGS_HEAD: &str = "INSERT INTO readings (sensor_key, ts, value) VALUES";
const READINGS_TAIL: &str = "ON CONFLICT (sensor_key, ts) DO UPDATE SET value = excluded.value";
const CURRENT_HEAD: &str = "INSERT INTO current_values (sensor_key, ts, value) VALUES";
const CURRENT_TAIL: &str = "ON CONFLICT (sensor_key) DO UPDATE SET ts = excluded.ts, value = excluded.value \
     WHERE excluded.ts >= current_values.ts";

/// A batch on SQLite: `BEGIN IMMEDIATE`, so the transaction holds the write lock from the start.
pub struct SqliteBatch(Transaction<'static, sqlx::Any>);

impl SqliteBatch {
    /// Begins the transaction.
    pub async fn begin(pool: &AnyPool) -> sqlx::Result<Self> {
        Ok(SqliteBatch(pool.begin_with("BEGIN IMMEDIATE").await?))
    }

    async fn upsert_triples(&mut self, head: &str, tail: &str, rows: &[(i64, i64, f64)]) -> sqlx::Result<()> {
        for chunk in rows.chunks(SQLITE_CHUNK) {
            let mut query = sqlx::query(AssertSqlSafe(values_sql(head, chunk.len(), 3, tail)));
            for (key, ts, value) in chunk {
                query = query.bind(*key).bind(*ts).bind(*value);
            }
            query.execute(&mut *self.0).await?;
        }
        Ok(())
    }
}

impl BatchTx for SqliteBatch {
    async fn devices(&mut self, devices: &[&str], stamp: i64) -> sqlx::Result<HashMap<String, i64>> {
        let mut created = HashMap::with_capacity(devices.len());
        for chunk in devices.chunks(SQLITE_CHUNK) {
            let mut insert = sqlx::query(AssertSqlSafe(values_sql(DEVICES_HEAD, chunk.len(), 2, DEVICES_TAIL)));
            for id in chunk {
                insert = insert.bind(*id).bind(stamp);
            }
            insert.execute(&mut *self.0).await?;
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, created_at FROM devices WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut select = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                select = select.bind(*id);
            }
            for row in select.fetch_all(&mut *self.0).await? {
                created.insert(row.try_get("id")?, row.try_get("created_at")?);
            }
        }
        Ok(created)
    }

    async fn resolve_sensors(&mut self, sensors: &[&SensorWant]) -> sqlx::Result<Vec<SensorEntry>> {
        let mut entries = Vec::with_capacity(sensors.len());
        for want in sensors {
            let kind = if want.kind.is_empty() { &want.sensor } else { &want.kind };
            let row = sqlx::query(SENSOR_SQLITE)
                .bind(want.device.as_str())
                .bind(want.sensor.as_str())
                .bind(kind.as_str())
                .bind(want.unit.as_str())
                .bind(want.kind.as_str())
                .fetch_one(&mut *self.0)
                .await?;
            entries.push(SensorEntry {
                key: row.try_get(0)?,
                kind: row.try_get(1)?,
                unit: row.try_get(2)?,
            });
        }
        Ok(entries)
    }

    async fn upsert_readings(&mut self, rows: &[(i64, i64, f64)]) -> sqlx::Result<()> {
        self.upsert_triples(READINGS_HEAD, READINGS_TAIL, rows).await
    }

    async fn upsert_current(&mut self, rows: &[(i64, i64, f64)]) -> sqlx::Result<()> {
        self.upsert_triples(CURRENT_HEAD, CURRENT_TAIL, rows).await
    }

    async fn commit(self) -> sqlx::Result<()> {
        self.0.commit().await
    }
}

/// A batch on PostgreSQL, through the native pool: every statement takes arrays (`UNNEST`).
pub struct PgBatch(Transaction<'static, Postgres>);

impl PgBatch {
    /// Begins the transaction.
    pub async fn begin(pool: &PgPool) -> sqlx::Result<Self> {
        Ok(PgBatch(pool.begin().await?))
    }
}

/// PostgreSQL's `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// COPYs `(key, ts, value)` rows into `readings` (text format; values are finite).
async fn copy_readings(tx: &mut Transaction<'static, Postgres>, rows: &[(i64, i64, f64)]) -> sqlx::Result<()> {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(rows.len() * 40);
    for (key, ts, value) in rows {
        let _ = writeln!(text, "{key}\t{ts}\t{value}");
    }
    let mut copy = tx
        .copy_in_raw("COPY readings (sensor_key, ts, value) FROM STDIN")
        .await?;
    if let Err(err) = copy.send(text.into_bytes()).await {
        let _ = copy.abort("send failed").await;
        return Err(err);
    }
    copy.finish().await.map(|_| ())
}

/// Writes readings of sensors whose keys are cached, in ONE statement (its own transaction, one
/// round trip): `(key, ts, value)` rows, unique and sorted, and the newest row of each key for
/// the current values. Each key is checked against `sensors` in the same statement, so rows of
/// a sensor deleted meanwhile are not written; returns how many rows were, which is fewer than
/// given when a cached key went stale.
pub async fn write_known(pg: &PgPool, rows: &[(i64, i64, f64)], current: &[(i64, i64, f64)]) -> sqlx::Result<usize> {
    let (keys, times, values) = columns(rows);
    let (current_keys, current_times, current_values) = columns(current);
    let written: i64 = sqlx::query_scalar(
        "WITH r AS ( \
           INSERT INTO readings (sensor_key, ts, value) \
           SELECT x.k, x.t, x.v FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[]) AS x(k, t, v) \
           JOIN sensors s ON s.sensor_key = x.k \
           ON CONFLICT (sensor_key, ts) DO UPDATE SET value = excluded.value \
           RETURNING 1), \
         c AS ( \
           INSERT INTO current_values (sensor_key, ts, value) \
           SELECT x.k, x.t, x.v FROM UNNEST($4::bigint[], $5::bigint[], $6::float8[]) AS x(k, t, v) \
           JOIN sensors s ON s.sensor_key = x.k \
           ON CONFLICT (sensor_key) DO UPDATE SET ts = excluded.ts, value = excluded.value \
           WHERE excluded.ts >= current_values.ts) \
         SELECT COUNT(*) FROM r",
    )
    .bind(&keys)
    .bind(&times)
    .bind(&values)
    .bind(&current_keys)
    .bind(&current_times)
    .bind(&current_values)
    .fetch_one(pg)
    .await?;
    Ok(usize::try_from(written).unwrap_or_default())
}

/// Batches of at least this many readings go in by COPY.
const COPY_FROM: usize = 1000;

/// Upserts `(key, ts, value)` rows into `readings` in one statement.
async fn upsert_readings(tx: &mut Transaction<'static, Postgres>, rows: &[(i64, i64, f64)]) -> sqlx::Result<()> {
    let (keys, times, values) = columns(rows);
    sqlx::query(
        "INSERT INTO readings (sensor_key, ts, value) \
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[]) \
         ON CONFLICT (sensor_key, ts) DO UPDATE SET value = excluded.value",
    )
    .bind(&keys)
    .bind(&times)
    .bind(&values)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Splits `(key, ts, value)` rows into three arrays.
fn columns(rows: &[(i64, i64, f64)]) -> (Vec<i64>, Vec<i64>, Vec<f64>) {
    let mut keys = Vec::with_capacity(rows.len());
    let mut times = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len());
    for (key, ts, value) in rows {
        keys.push(*key);
        times.push(*ts);
        values.push(*value);
    }
    (keys, times, values)
}

impl BatchTx for PgBatch {
    async fn devices(&mut self, devices: &[&str], stamp: i64) -> sqlx::Result<HashMap<String, i64>> {
        // `DO NOTHING` takes no lock on an existing row; the statement's snapshot does not see
        // its own inserts, so those come from RETURNING.
        let rows = sqlx::query(
            "WITH new AS ( \
               INSERT INTO devices (id, created_at) SELECT id, $2 FROM UNNEST($1::text[]) AS t(id) \
               ON CONFLICT (id) DO NOTHING RETURNING id, created_at) \
             SELECT id, created_at FROM new \
             UNION ALL SELECT id, created_at FROM devices WHERE id = ANY($1::text[])",
        )
        .bind(devices)
        .bind(stamp)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("created_at")?)))
            .collect()
    }

    async fn resolve_sensors(&mut self, sensors: &[&SensorWant]) -> sqlx::Result<Vec<SensorEntry>> {
        let devices: Vec<&str> = sensors.iter().map(|w| w.device.as_str()).collect();
        let ids: Vec<&str> = sensors.iter().map(|w| w.sensor.as_str()).collect();
        let kinds: Vec<&str> = sensors.iter().map(|w| w.kind.as_str()).collect();
        let units: Vec<&str> = sensors.iter().map(|w| w.unit.as_str()).collect();
        sqlx::query(
            "INSERT INTO sensors (device, sensor, kind, unit) \
             SELECT d, s, CASE WHEN k = '' THEN s ELSE k END, u \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS t(d, s, k, u) \
             ON CONFLICT (device, sensor) DO NOTHING",
        )
        .bind(&devices)
        .bind(&ids)
        .bind(&kinds)
        .bind(&units)
        .execute(&mut *self.0)
        .await?;
        let rows = sqlx::query(
            "UPDATE sensors SET kind = CASE WHEN t.k = '' THEN sensors.kind ELSE t.k END, \
             unit = CASE WHEN t.u = '' THEN sensors.unit ELSE t.u END \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS t(d, s, k, u) \
             WHERE sensors.device = t.d AND sensors.sensor = t.s \
             RETURNING sensors.device, sensors.sensor, sensors.sensor_key, sensors.kind, sensors.unit",
        )
        .bind(&devices)
        .bind(&ids)
        .bind(&kinds)
        .bind(&units)
        .fetch_all(&mut *self.0)
        .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            let device: String = row.try_get(0)?;
            let sensor: String = row.try_get(1)?;
            let entry = SensorEntry {
                key: row.try_get(2)?,
                kind: row.try_get(3)?,
                unit: row.try_get(4)?,
            };
            found.insert((device, sensor), entry);
        }
        sensors
            .iter()
            .map(|w| {
                found
                    .remove(&(w.device.clone(), w.sensor.clone()))
                    .ok_or_else(|| sqlx::Error::Protocol(format!("sensor {}/{} was not stored", w.device, w.sensor)))
            })
            .collect()
    }

    /// Large batches of new readings go in by COPY, the fast path; a batch that repeats a
    /// stored reading rolls back to a savepoint and upserts instead, so the outcome is the same
    /// either way. Small batches upsert at once: one statement instead of three.
    async fn upsert_readings(&mut self, rows: &[(i64, i64, f64)]) -> sqlx::Result<()> {
        if rows.len() < COPY_FROM {
            return upsert_readings(&mut self.0, rows).await;
        }
        sqlx::query("SAVEPOINT readings_copy").execute(&mut *self.0).await?;
        match copy_readings(&mut self.0, rows).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT readings_copy")
                    .execute(&mut *self.0)
                    .await?;
                return Ok(());
            }
            Err(err) if err.as_database_error().and_then(|e| e.code()).as_deref() == Some(UNIQUE_VIOLATION) => {
                sqlx::query("ROLLBACK TO SAVEPOINT readings_copy")
                    .execute(&mut *self.0)
                    .await?;
            }
            Err(err) => return Err(err),
        }
        upsert_readings(&mut self.0, rows).await
    }

    async fn upsert_current(&mut self, rows: &[(i64, i64, f64)]) -> sqlx::Result<()> {
        let (keys, times, values) = columns(rows);
        sqlx::query(
            "INSERT INTO current_values (sensor_key, ts, value) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[]) \
             ON CONFLICT (sensor_key) DO UPDATE SET ts = excluded.ts, value = excluded.value \
             WHERE excluded.ts >= current_values.ts",
        )
        .bind(&keys)
        .bind(&times)
        .bind(&values)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn commit(self) -> sqlx::Result<()> {
        self.0.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sql_numbers_placeholders_row_by_row() {
        let sql = values_sql("INSERT INTO t (a, b) VALUES", 2, 2, "ON CONFLICT DO NOTHING");
        assert_eq!(
            sql,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
    }
}
