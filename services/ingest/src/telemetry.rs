//! The telemetry client ingest writes through: readings in batches (idempotent, retried while
//! telemetry is unavailable) and devices.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use outpost_api::telemetry::v1::telemetry_service_client::TelemetryServiceClient;
use outpost_api::telemetry::v1::{self as pb};
use outpost_kit::client::{self, Deadline, Traced};
use outpost_kit::storage::Dependency;
use prost::Message as _;
use tonic::{Code, Status};

/// Most readings telemetry takes in one `WriteReadings` call.
pub const MAX_WRITE_BATCH: usize = 10_000;
/// Most bytes of readings sent in one call (gRPC servers take 4 MiB messages by default).
pub const MAX_WRITE_BYTES: usize = 3 * 1024 * 1024;

/// A client of telemetry; cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    client: TelemetryServiceClient<Traced>,
    channel: tonic::transport::Channel,
    timeout: Duration,
}

impl Telemetry {
    /// A client of telemetry at `endpoint` whose calls have the deadline `timeout` and carry
    /// `token`; connects lazily.
    pub fn connect(endpoint: &str, timeout: Duration, token: &outpost_kit::auth::Token) -> anyhow::Result<Self> {
        let channel = client::channel(endpoint, timeout)?;
        Ok(Telemetry {
            client: TelemetryServiceClient::new(client::outbound(channel.clone(), "ingest", token)),
            channel,
            timeout,
        })
    }

    /// Writes readings (in calls of at most [`MAX_WRITE_BATCH`]). Retried while telemetry is
    /// unavailable: writes are idempotent.
    /// A reading repeated in one call (same device, sensor and time) is written once, the last
    /// one winning, as it would over two calls.
    pub async fn write(&self, readings: &[pb::Reading]) -> Result<(), Status> {
        let readings = dedupe(readings);
        for chunk in chunks(&readings) {
            let deadline = Deadline::after(self.timeout);
            client::retry(deadline, || {
                let mut client = self.client.clone();
                let request = deadline.request(pb::WriteReadingsRequest {
                    readings: chunk.to_vec(),
                });
                async move { client.write_readings(request).await }
            })
            .await?;
        }
        Ok(())
    }

    /// Writes readings like [`Telemetry::write`]; when telemetry refuses the batch (not a
    /// transient failure), finds the readings it refuses by bisection: the batch is split in
    /// halves, and each half that fails is split again, down to single readings (about
    /// 2·log2(n) calls for one bad reading among n). Returns how each reading fared. A
    /// transient failure is returned as is (what was written meanwhile is written again
    /// idempotently on the next try).
    ///
    /// At most [`MAX_BISECT_CALLS`] calls are made: when telemetry fails everything, readings
    /// whose ranges were not tried alone are [`Fate::Failed`], to be tried again later.
    pub async fn write_bisecting(&self, readings: &[pb::Reading]) -> Result<Bisected, Status> {
        let mut fates = vec![Fate::Written; readings.len()];
        let mut ranges = vec![(0, readings.len())];
        let mut calls = 0;
        while let Some((start, end)) = ranges.pop() {
            if start == end {
                continue;
            }
            if calls == MAX_BISECT_CALLS {
                let status = Status::internal("not isolated: telemetry refused too many parts of the batch");
                for fate in &mut fates[start..end] {
                    *fate = Fate::Failed(status.clone());
                }
                continue;
            }
            calls += 1;
            match self.write(&readings[start..end]).await {
                Ok(()) => {}
                Err(status) if is_transient(&status) => return Err(status),
                Err(status) if end - start == 1 => fates[start] = Fate::from_refusal(status),
                Err(status) => {
                    if calls == 1 {
                        tracing::warn!(readings = readings.len(), error = %status.message(), "telemetry refused a batch; bisecting it");
                    }
                    let middle = start + (end - start) / 2;
                    ranges.push((middle, end));
                    ranges.push((start, middle));
                }
            }
        }
        Ok(Bisected { fates, calls })
    }

    /// Creates a device; false when it exists already.
    pub async fn create_device(&self, id: &str, device: pb::Device) -> Result<bool, Status> {
        let deadline = Deadline::after(self.timeout);
        let result = client::retry(deadline, || {
            let mut client = self.client.clone();
            let request = deadline.request(pb::CreateDeviceRequest {
                device_id: id.to_string(),
                device: Some(device.clone()),
            });
            async move { client.create_device(request).await }
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::AlreadyExists => Ok(false),
            Err(status) => Err(status),
        }
    }

    /// Creates or updates waypoints of `track` (`tracks/{track}`); retried while telemetry is
    /// unavailable (idempotent: a repeated write counts unchanged).
    pub async fn upsert_waypoints(&self, track: &str, waypoints: Vec<pb::Waypoint>) -> Result<Upserted, Status> {
        let deadline = Deadline::after(self.timeout);
        let r = client::retry(deadline, || {
            let mut client = self.client.clone();
            let request = deadline.request(pb::UpsertWaypointsRequest {
                parent: track.to_string(),
                waypoints: waypoints.clone(),
            });
            async move { client.upsert_waypoints(request).await }
        })
        .await?
        .into_inner();
        Ok(Upserted {
            created: r.created,
            updated: r.updated,
            unchanged: r.unchanged,
        })
    }

    /// Creates or updates traverse segments of `track`, like [`Telemetry::upsert_waypoints`].
    pub async fn upsert_traverse(&self, track: &str, segments: Vec<pb::TraverseSegment>) -> Result<Upserted, Status> {
        let deadline = Deadline::after(self.timeout);
        let r = client::retry(deadline, || {
            let mut client = self.client.clone();
            let request = deadline.request(pb::UpsertTraverseRequest {
                parent: track.to_string(),
                segments: segments.clone(),
            });
            async move { client.upsert_traverse(request).await }
        })
        .await?
        .into_inner();
        Ok(Upserted {
            created: r.created,
            updated: r.updated,
            unchanged: r.unchanged,
        })
    }

    /// Telemetry as a dependency in health: SERVING when its health check says so.
    pub fn dependency(&self) -> Dependency {
        client::peer_dependency("telemetry", self.channel.clone(), outpost_api::names::TELEMETRY)
    }
}

/// What an upsert of track features did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upserted {
    /// New.
    pub created: i64,
    /// Changed.
    pub updated: i64,
    /// Stored as they are already.
    pub unchanged: i64,
}

/// Calls [`Telemetry::write_bisecting`] makes for one batch, at most.
pub const MAX_BISECT_CALLS: usize = 256;

/// What [`Telemetry::write_bisecting`] did.
#[derive(Debug)]
pub struct Bisected {
    /// How each reading fared, in the order given.
    pub fates: Vec<Fate>,
    /// `WriteReadings` calls it made (each of at most [`MAX_WRITE_BATCH`] readings).
    pub calls: usize,
}

/// How one reading of a batch fared in [`Telemetry::write_bisecting`].
#[derive(Clone, Debug)]
pub enum Fate {
    /// Committed.
    Written,
    /// Refused for good (telemetry says it is invalid): never to be tried again.
    Refused(Status),
    /// Not written: telemetry failed on it (`INTERNAL`, `UNKNOWN`) or it was not isolated.
    /// Tried again later, a bounded number of times.
    Failed(Status),
}

impl Fate {
    /// Whether the reading was committed.
    pub fn is_written(&self) -> bool {
        matches!(self, Fate::Written)
    }

    /// The fate of a reading telemetry answered `status` for, alone.
    fn from_refusal(status: Status) -> Fate {
        match status.code() {
            Code::Internal | Code::Unknown | Code::DataLoss => Fate::Failed(status),
            _ => Fate::Refused(status),
        }
    }
}

/// The readings in slices telemetry takes in one call: at most [`MAX_WRITE_BATCH`] readings
/// and [`MAX_WRITE_BYTES`] encoded.
fn chunks(readings: &[pb::Reading]) -> Vec<&[pb::Reading]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, reading) in readings.iter().enumerate() {
        let size = reading.encoded_len() + 4;
        if index > start && (index - start >= MAX_WRITE_BATCH || bytes + size > MAX_WRITE_BYTES) {
            out.push(&readings[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < readings.len() {
        out.push(&readings[start..]);
    }
    out
}

/// The readings with each (device, sensor, time) once, the last occurrence winning.
fn dedupe(readings: &[pb::Reading]) -> Cow<'_, [pb::Reading]> {
    fn key(r: &pb::Reading) -> (&str, &str, i64, i32) {
        let time = r.time.unwrap_or_default();
        (r.device.as_str(), r.sensor.as_str(), time.seconds, time.nanos)
    }
    let mut last: HashMap<_, usize> = HashMap::with_capacity(readings.len());
    for (index, reading) in readings.iter().enumerate() {
        last.insert(key(reading), index);
    }
    if last.len() == readings.len() {
        return Cow::Borrowed(readings);
    }
    let kept = readings
        .iter()
        .enumerate()
        .filter(|(index, reading)| last.get(&key(reading)) == Some(index));
    Cow::Owned(kept.map(|(_, reading)| reading.clone()).collect())
}

/// Whether a failed call may succeed when tried again soon, with nothing changed: telemetry
/// (or its database) was unavailable, slow or overloaded. `INTERNAL` and `UNKNOWN` are not:
/// a batch that makes telemetry fail would fail again and again (see
/// [`Telemetry::write_bisecting`]).
pub fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted | Code::Cancelled
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_readings_are_written_once_the_last_winning() {
        let reading = |sensor: &str, seconds: i64, value: f64| pb::Reading {
            device: "d".into(),
            sensor: sensor.into(),
            value,
            time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        };
        let unique = [reading("a", 1, 1.0), reading("a", 2, 2.0), reading("b", 1, 3.0)];
        assert!(matches!(dedupe(&unique), Cow::Borrowed(_)));
        let repeated = [reading("a", 1, 1.0), reading("a", 2, 2.0), reading("a", 1, 9.0)];
        let kept = dedupe(&repeated);
        assert_eq!(kept.iter().map(|r| r.value).collect::<Vec<_>>(), vec![2.0, 9.0]);
        assert!(is_transient(&Status::unavailable("down")) && !is_transient(&Status::invalid_argument("bad")));
        assert!(!is_transient(&Status::internal("poison")) && !is_transient(&Status::unknown("?")));
        let many: Vec<pb::Reading> = (0..25_000).map(|i| reading("a", i, 1.0)).collect();
        let sizes: Vec<usize> = chunks(&many).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
        let mut wide = reading("a", 1, 1.0);
        wide.device = "d".repeat(128);
        wide.unit = "u".repeat(32);
        let wide: Vec<pb::Reading> = (0..10_000)
            .map(|i| pb::Reading {
                sensor: format!("{i:0128}"),
                kind: format!("{i:0128}"),
                ..wide.clone()
            })
            .collect();
        let parts = chunks(&wide);
        assert!(
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|c| c.iter().map(|r| r.encoded_len() + 4).sum::<usize>() <= MAX_WRITE_BYTES)
        );
        assert_eq!(parts.iter().map(|c| c.len()).sum::<usize>(), 10_000);
        assert!(chunks(&[]).is_empty());
    }
}
