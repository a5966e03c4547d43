//! Writing readings: validate a write, then group-commit it: concurrent writes join one batch,
//! planned (distinct devices and sensors, duplicates removed with the last one winning) and
//! written in one transaction that also keeps the current-value view; each write is answered
//! once that transaction committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_kit::error::{Error, Result};
use outpost_kit::group_commit::{GroupCommit, Options};
use outpost_kit::storage::Db;
use outpost_kit::time::now_micros;

use crate::names::{check_id, is_valid_id};
use crate::sensor_keys::{SensorEntry, SensorKeys};
use crate::store::batch::{BatchTx, PgBatch, SensorWant, SqliteBatch, write_known};

/// Readings per write, at most.
pub const MAX_BATCH: usize = 10_000;
/// The longest unit, in bytes.
pub const MAX_UNIT_LEN: usize = 32;
/// Attempts of a batch that lost a deadlock or a serialization race on PostgreSQL.
const ATTEMPTS: u32 = 3;

/// One reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The device id.
    pub device: String,
    /// The sensor id.
    pub sensor: String,
    /// The value (finite).
    pub value: f64,
    /// When it was measured: microseconds since the epoch, UTC.
    pub time: i64,
    /// The unit; on write, empty keeps the sensor's.
    pub unit: String,
    /// What it measures; on write, empty keeps the sensor's (a new sensor's is its id).
    pub kind: String,
}

/// Checks a batch; the first bad reading fails it with its field, such as `readings[3].sensor`.
pub fn validate(readings: &[Reading]) -> Result<()> {
    if readings.len() > MAX_BATCH {
        return Err(Error::invalid(
            "readings",
            format!("at most {MAX_BATCH} readings per call"),
        ));
    }
    for (i, reading) in readings.iter().enumerate() {
        let field = |name: &str| format!("readings[{i}].{name}");
        if !is_valid_id(&reading.device) {
            check_id(&field("device"), &reading.device)?;
        }
        if !is_valid_id(&reading.sensor) {
            check_id(&field("sensor"), &reading.sensor)?;
        }
        if !reading.value.is_finite() {
            return Err(Error::invalid(field("value"), "must be a finite number"));
        }
        if !outpost_kit::time::STORABLE_MICROS.contains(&reading.time) {
            return Err(Error::invalid(field("time"), "timestamp out of range"));
        }
        if !reading.kind.is_empty() && !is_valid_id(&reading.kind) {
            check_id(&field("kind"), &reading.kind)?;
        }
        if reading.unit.len() > MAX_UNIT_LEN || reading.unit.chars().any(char::is_control) {
            return Err(Error::invalid(
                field("unit"),
                "must be at most 32 bytes without control characters",
            ));
        }
    }
    Ok(())
}

/// A validated batch, ready for its transaction.
#[derive(Debug, Default)]
struct Plan {
    /// Distinct devices by id.
    devices: Vec<String>,
    /// Distinct sensors by (device, sensor), with the last kind and unit given.
    sensors: Vec<SensorWant>,
    /// `(index into sensors, time, value)` in input order.
    readings: Vec<(usize, i64, f64)>,
}

impl Plan {
    fn new(readings: &[Reading]) -> Plan {
        let mut devices: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        let mut sensors: BTreeMap<(&str, &str), (&str, &str)> = BTreeMap::new();
        for r in readings {
            devices.insert(&r.device);
            let given = sensors.entry((&r.device, &r.sensor)).or_default();
            if !r.kind.is_empty() {
                given.0 = &r.kind;
            }
            if !r.unit.is_empty() {
                given.1 = &r.unit;
            }
        }
        let index: BTreeMap<(&str, &str), usize> = sensors.keys().enumerate().map(|(i, k)| (*k, i)).collect();
        Plan {
            devices: devices.into_iter().map(str::to_string).collect(),
            sensors: sensors
                .into_iter()
                .map(|((device, sensor), (kind, unit))| SensorWant {
                    device: device.to_string(),
                    sensor: sensor.to_string(),
                    kind: kind.to_string(),
                    unit: unit.to_string(),
                })
                .collect(),
            readings: readings
                .iter()
                .map(|r| (index[&(r.device.as_str(), r.sensor.as_str())], r.time, r.value))
                .collect(),
        }
    }
}

/// `(key, time, value)` rows sorted by (key, time), one per (key, time): the last given wins.
fn unique_rows(mut rows: Vec<(i64, i64, f64)>) -> Vec<(i64, i64, f64)> {
    rows.sort_by_key(|&(key, ts, _)| (key, ts)); // stable: input order within equal keys
    let mut unique: Vec<(i64, i64, f64)> = Vec::with_capacity(rows.len());
    for row in rows {
        match unique.last_mut() {
            Some(last) if (last.0, last.1) == (row.0, row.1) => *last = row,
            _ => unique.push(row),
        }
    }
    unique
}

/// The newest row of each key, from rows sorted by (key, time).
fn newest_per_key(rows: &[(i64, i64, f64)]) -> Vec<(i64, i64, f64)> {
    rows.chunk_by(|a, b| a.0 == b.0)
        .filter_map(|run| run.last().copied())
        .collect()
}

/// Sensor entries a committed batch resolved: `(device, device created_at, sensor, entry)`.
type Resolved = Vec<(String, i64, String, SensorEntry)>;

/// Writes waiting at most in the group-commit queue; more wait for room (backpressure).
const QUEUED_WRITES: usize = 4096;

/// Readings of devices' sensors: the write path (and the key cache it shares with devices).
#[derive(Clone)]
pub struct Readings {
    db: Db,
    writer: GroupCommit<Vec<Reading>, u64>,
}

impl Readings {
    /// Readings over `db`, with an empty key cache.
    pub fn new(db: Db) -> Self {
        Self::with_keys(db, Arc::default())
    }

    /// Readings over `db` sharing `keys` (with device deletion). Starts the group-commit writer:
    /// concurrent writes commit together, one transaction at a time, so writes never wait on
    /// each other's row locks and a batch grows while the previous one commits.
    pub fn with_keys(db: Db, keys: Arc<SensorKeys>) -> Self {
        let options = Options {
            name: "telemetry_readings",
            max_weight: MAX_BATCH,
            linger: std::time::Duration::ZERO,
            concurrency: 1,
            queue: QUEUED_WRITES,
        };
        let committer = Committer { db: db.clone(), keys };
        Self {
            db,
            writer: GroupCommit::new(committer, Vec::len, options),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Writes a batch (at most [`MAX_BATCH`]), creating devices and sensors as needed;
    /// idempotent on (device, sensor, time). A bad reading fails the whole write and nothing
    /// is written. Answered once the transaction holding it committed (other concurrent
    /// writes may share it). Returns the readings committed (duplicates in the write count once).
    pub async fn write_readings(&self, readings: Vec<Reading>) -> Result<u64> {
        validate(&readings)?;
        if readings.is_empty() {
            return Ok(0);
        }
        self.writer.submit(readings).await
    }

    /// Commits what is queued and stops taking writes (at shutdown).
    pub async fn close(&self) {
        self.writer.close().await
    }
}

/// How many distinct (device, sensor, time) a write holds.
fn distinct(readings: &[Reading]) -> u64 {
    let keys: std::collections::HashSet<(&str, &str, i64)> = readings
        .iter()
        .map(|r| (r.device.as_str(), r.sensor.as_str(), r.time))
        .collect();
    keys.len() as u64
}

/// Commits batches of writes for the group-commit writer.
struct Committer {
    db: Db,
    keys: Arc<SensorKeys>,
}

#[async_trait::async_trait]
impl outpost_kit::group_commit::Committer<Vec<Reading>, u64> for Committer {
    async fn commit(&self, batch: Vec<Vec<Reading>>) -> Vec<Result<u64>> {
        let counts: Vec<u64> = batch.iter().map(|w| distinct(w)).collect();
        let result = match batch.as_slice() {
            [one] => self.write(one).await,
            // Later writes come later, so a repeated reading's last value wins, as over two calls.
            many => self.write(&many.concat()).await,
        };
        let err = match result {
            Ok(()) => return counts.into_iter().map(Ok).collect(),
            Err(err) => Error::from(err),
        };
        match err {
            // The database is down: every write of the batch says so.
            Error::Unavailable(message) => counts
                .iter()
                .map(|_| Err(Error::Unavailable(message.clone())))
                .collect(),
            // One write the database refuses must not fail the others: each alone, then.
            err if batch.len() > 1 => {
                tracing::warn!(error = %err, writes = batch.len(), "a batch of readings failed; writing each write alone");
                let mut results = Vec::with_capacity(batch.len());
                for (write, count) in batch.iter().zip(counts) {
                    results.push(self.write(write).await.map(|()| count).map_err(Error::from));
                }
                results
            }
            err => vec![Err(err)],
        }
    }
}

impl Committer {
    /// Writes readings in one transaction, retried when PostgreSQL aborted it for a race. On
    /// PostgreSQL, a batch whose sensors are all known goes in one statement.
    async fn write(&self, readings: &[Reading]) -> sqlx::Result<()> {
        let plan = Plan::new(readings);
        if let (Some(pg), Some(keys)) = (self.db.pg(), self.known_keys(&plan)) {
            let rows = unique_rows(
                plan.readings
                    .iter()
                    .map(|&(i, ts, value)| (keys[i], ts, value))
                    .collect(),
            );
            let written = write_known(pg, &rows, &newest_per_key(&rows)).await?;
            if written == rows.len() {
                crate::metrics::record_batch(written);
                return Ok(());
            }
            // A cached key went stale (its device was deleted, here or elsewhere): forget the
            // batch's devices and write it the long way, which makes them anew. Upserts, so the
            // rows already written are written again unchanged.
            for device in &plan.devices {
                self.keys.forget_device(device);
            }
        }
        let mut attempt = 1;
        loop {
            let result = match self.db.pg() {
                Some(pg) => match PgBatch::begin(pg).await {
                    Ok(tx) => self.run(tx, &plan).await,
                    Err(err) => Err(err),
                },
                None => match SqliteBatch::begin(self.db.pool()).await {
                    Ok(tx) => self.run(tx, &plan).await,
                    Err(err) => Err(err),
                },
            };
            match result {
                Ok((written, resolved)) => {
                    self.keys.insert_all(resolved);
                    crate::metrics::record_batch(written);
                    return Ok(());
                }
                Err(err) if attempt < ATTEMPTS && lost_a_race(&err) => {
                    tracing::debug!(attempt, error = %err, "retrying a batch of readings");
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Every sensor's cached key, when all are cached with the kind and unit the batch gives.
    fn known_keys(&self, plan: &Plan) -> Option<Vec<i64>> {
        plan.sensors
            .iter()
            .map(|want| {
                self.keys
                    .known(&want.device, &want.sensor)
                    .filter(|known| {
                        (want.kind.is_empty() || want.kind == known.kind)
                            && (want.unit.is_empty() || want.unit == known.unit)
                    })
                    .map(|known| known.key)
            })
            .collect()
    }

    async fn run<T: BatchTx>(&self, mut tx: T, plan: &Plan) -> sqlx::Result<(usize, Resolved)> {
        let ids: Vec<&str> = plan.devices.iter().map(String::as_str).collect();
        let created = tx.devices(&ids, now_micros()).await?;
        let created_at = |device: &str| created.get(device).copied().unwrap_or_default();
        let mut keys = vec![0i64; plan.sensors.len()];
        let mut todo = Vec::new();
        for (i, want) in plan.sensors.iter().enumerate() {
            match self.keys.get(&want.device, created_at(&want.device), &want.sensor) {
                Some(known)
                    if (want.kind.is_empty() || want.kind == known.kind)
                        && (want.unit.is_empty() || want.unit == known.unit) =>
                {
                    keys[i] = known.key
                }
                _ => todo.push(i),
            }
        }
        let mut resolved = Vec::with_capacity(todo.len());
        if !todo.is_empty() {
            let wants: Vec<&SensorWant> = todo.iter().map(|&i| &plan.sensors[i]).collect();
            let entries = tx.resolve_sensors(&wants).await?;
            for (&i, entry) in todo.iter().zip(entries) {
                let want = &plan.sensors[i];
                keys[i] = entry.key;
                resolved.push((
                    want.device.clone(),
                    created_at(&want.device),
                    want.sensor.clone(),
                    entry,
                ));
            }
        }
        let rows = unique_rows(
            plan.readings
                .iter()
                .map(|&(i, ts, value)| (keys[i], ts, value))
                .collect(),
        );
        tx.upsert_readings(&rows).await?;
        tx.upsert_current(&newest_per_key(&rows)).await?;
        tx.commit().await?;
        Ok((rows.len(), resolved))
    }
}

/// Whether PostgreSQL aborted the transaction for a deadlock or a serialization failure.
fn lost_a_race(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(device: &str, sensor: &str, time: i64, value: f64) -> Reading {
        Reading {
            device: device.into(),
            sensor: sensor.into(),
            value,
            time,
            unit: String::new(),
            kind: String::new(),
        }
    }

    #[test]
    fn the_bad_field_is_named() {
        let mut batch = vec![reading("a", "t", 1, 1.0); 4];
        batch[3].sensor = "bad sensor".into();
        assert!(
            validate(&batch)
                .unwrap_err()
                .to_string()
                .starts_with("readings[3].sensor:")
        );
        batch[3] = reading("a", "t", 1, f64::NAN);
        assert!(
            validate(&batch)
                .unwrap_err()
                .to_string()
                .starts_with("readings[3].value:")
        );
        batch[3] = reading("", "t", 1, 1.0);
        assert!(
            validate(&batch)
                .unwrap_err()
                .to_string()
                .starts_with("readings[3].device:")
        );
        batch[3] = Reading {
            unit: "x".repeat(33),
            ..reading("a", "t", 1, 1.0)
        };
        assert!(
            validate(&batch)
                .unwrap_err()
                .to_string()
                .starts_with("readings[3].unit:")
        );
        let too_many = vec![reading("a", "t", 1, 1.0); MAX_BATCH + 1];
        assert!(validate(&too_many).unwrap_err().to_string().starts_with("readings:"));
    }

    #[test]
    fn plans_distinct_devices_and_sensors() {
        let mut batch = vec![
            reading("b", "t", 5, 1.0),
            reading("a", "t", 9, 2.0),
            reading("b", "t", 7, 3.0),
        ];
        batch[0].unit = "°C".into();
        batch[2].kind = "temperature".into();
        let plan = Plan::new(&batch);
        assert_eq!(plan.devices, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(plan.sensors.len(), 2);
        assert_eq!(
            (plan.sensors[1].kind.as_str(), plan.sensors[1].unit.as_str()),
            ("temperature", "°C")
        );
        assert_eq!(plan.readings, vec![(1, 5, 1.0), (0, 9, 2.0), (1, 7, 3.0)]);
    }

    #[test]
    fn duplicates_keep_the_last_and_the_newest_time_is_current() {
        let rows = unique_rows(vec![(2, 10, 1.0), (1, 5, 2.0), (2, 10, 3.0), (2, 4, 4.0), (1, 5, 5.0)]);
        assert_eq!(rows, vec![(1, 5, 5.0), (2, 4, 4.0), (2, 10, 3.0)]);
        assert_eq!(newest_per_key(&rows), vec![(1, 5, 5.0), (2, 10, 3.0)]);
    }
}
