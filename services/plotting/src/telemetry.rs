//! The data plots are drawn from, read from telemetry over gRPC: waypoints and traverse
//! segments of a track over a sol range, the track's summary (the data's version), and a
//! sensor's readings, bucketed when there are many.

use std::time::Duration;

use outpost_api::telemetry::v1::telemetry_service_client::TelemetryServiceClient;
use outpost_api::telemetry::v1::{self as pb};
use outpost_kit::client::{self, Deadline, Traced};
use outpost_kit::storage::Dependency;
use tonic::Status;

/// Records per page asked of telemetry.
const PAGE: i32 = 1000;
/// Most raw readings a plot draws; a range with more is drawn as buckets.
pub const MAX_READINGS: i32 = 10_000;
/// Buckets a long range of readings is drawn with, about.
pub const BUCKETS: i64 = 1000;
/// Most records a plot reads (pages × records), a bound on a job's memory.
const MAX_RECORDS: usize = 1_000_000;

/// A sensor's readings as a plot draws them.
#[derive(Debug, Default)]
pub struct Readings {
    /// The sensor's unit.
    pub unit: String,
    /// (µs since the epoch, value), oldest first: readings, or bucket means.
    pub points: Vec<(i64, f64)>,
    /// Whether the points are bucket means.
    pub bucketed: bool,
}

/// A client of telemetry; cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    client: TelemetryServiceClient<Traced>,
    channel: tonic::transport::Channel,
    timeout: Duration,
}

impl Telemetry {
    /// A client of telemetry at `endpoint`, each call with the deadline `timeout`, carrying
    /// `token`; connects lazily.
    pub fn connect(endpoint: &str, timeout: Duration, token: &outpost_kit::auth::Token) -> anyhow::Result<Self> {
        let channel = client::channel(endpoint, timeout)?;
        Ok(Telemetry {
            client: TelemetryServiceClient::new(client::outbound(channel.clone(), "plotting", token)),
            channel,
            timeout,
        })
    }

    /// Telemetry as a dependency in health.
    pub fn dependency(&self) -> Dependency {
        client::peer_dependency("telemetry", self.channel.clone(), outpost_api::names::TELEMETRY)
    }

    /// The version of a track's data: it changes whenever a load changes the track.
    pub async fn track_version(&self, track: &str) -> Result<String, Status> {
        let deadline = Deadline::after(self.timeout);
        let summary = client::retry(deadline, || {
            let mut client = self.client.clone();
            let request = deadline.request(pb::GetTrackSummaryRequest {
                name: format!("tracks/{track}"),
            });
            async move { client.get_track_summary(request).await }
        })
        .await?
        .into_inner();
        let track = summary.track.unwrap_or_default();
        let updated = track.update_time.map_or((0, 0), |t| (t.seconds, t.nanos));
        Ok(format!(
            "{}.{:09}:{}:{}",
            updated.0, updated.1, track.waypoint_count, track.traverse_segment_count
        ))
    }

    /// The waypoints of `track` with `start <= sol <= end`, in telemetry's order.
    pub async fn waypoints(&self, track: &str, start: i32, end: i32) -> Result<Vec<pb::Waypoint>, Status> {
        self.all_pages(|deadline, page_token| {
            let mut client = self.client.clone();
            let request = deadline.request(pb::ListWaypointsRequest {
                parent: format!("tracks/{track}"),
                page_size: PAGE,
                page_token,
                min_sol: Some(start),
                max_sol: Some(end),
            });
            async move {
                let page = client.list_waypoints(request).await?.into_inner();
                Ok((page.waypoints, page.next_page_token))
            }
        })
        .await
    }

    /// The traverse segments of `track` with `start <= sol <= end`.
    pub async fn traverse(&self, track: &str, start: i32, end: i32) -> Result<Vec<pb::TraverseSegment>, Status> {
        self.all_pages(|deadline, page_token| {
            let mut client = self.client.clone();
            let request = deadline.request(pb::ListTraverseSegmentsRequest {
                parent: format!("tracks/{track}"),
                page_size: PAGE,
                page_token,
                min_sol: Some(start),
                max_sol: Some(end),
            });
            async move {
                let page = client.list_traverse_segments(request).await?.into_inner();
                Ok((page.segments, page.next_page_token))
            }
        })
        .await
    }

    /// Every item of a paged list (at most [`MAX_RECORDS`]): `page` fetches one page from a
    /// token, each page within its own deadline and retried while telemetry is unavailable.
    async fn all_pages<T, F, Fut>(&self, page: F) -> Result<Vec<T>, Status>
    where
        F: Fn(Deadline, String) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<T>, String), Status>>,
    {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let deadline = Deadline::after(self.timeout);
            let (items, next) = client::retry(deadline, || page(deadline, token.clone())).await?;
            out.extend(items);
            if next.is_empty() || out.len() >= MAX_RECORDS {
                return Ok(out);
            }
            token = next;
        }
    }

    /// The readings of `sensor` in `[start, end)` µs: every reading when there are at most
    /// [`MAX_READINGS`], else the means of about [`BUCKETS`] buckets.
    pub async fn readings(&self, sensor: &str, start: i64, end: i64) -> Result<Readings, Status> {
        let range = |bucket: Option<prost_types::Duration>, page_size: i32| pb::ListReadingsRequest {
            parent: sensor.to_string(),
            page_size,
            page_token: String::new(),
            start_time: Some(outpost_kit::time::to_timestamp(start)),
            end_time: Some(outpost_kit::time::to_timestamp(end)),
            bucket,
        };
        let deadline = Deadline::after(self.timeout);
        let raw = client::retry(deadline, || {
            let mut client = self.client.clone();
            let request = deadline.request(range(None, MAX_READINGS));
            async move { client.list_readings(request).await }
        })
        .await?
        .into_inner();
        if raw.next_page_token.is_empty() {
            let unit = raw.readings.first().map(|r| r.unit.clone()).unwrap_or_default();
            let points = raw
                .readings
                .iter()
                .filter_map(|r| {
                    Some((
                        outpost_kit::time::from_timestamp("time", r.time.as_ref()?).ok()?,
                        r.value,
                    ))
                })
                .collect();
            return Ok(Readings {
                unit,
                points,
                bucketed: false,
            });
        }
        let unit = raw.readings.first().map(|r| r.unit.clone()).unwrap_or_default();
        // Whole seconds, at least one.
        let width = ((end - start) / BUCKETS / 1_000_000).max(1);
        let mut points = Vec::new();
        let mut token = String::new();
        loop {
            let deadline = Deadline::after(self.timeout);
            let page = client::retry(deadline, || {
                let mut client = self.client.clone();
                let mut request = range(
                    Some(prost_types::Duration {
                        seconds: width,
                        nanos: 0,
                    }),
                    MAX_READINGS,
                );
                request.page_token = token.clone();
                let request = deadline.request(request);
                async move { client.list_readings(request).await }
            })
            .await?
            .into_inner();
            points.extend(page.buckets.iter().filter_map(|b| {
                Some((
                    outpost_kit::time::from_timestamp("start_time", b.start_time.as_ref()?).ok()?,
                    b.avg,
                ))
            }));
            if page.next_page_token.is_empty() || points.len() >= MAX_RECORDS {
                return Ok(Readings {
                    unit,
                    points,
                    bucketed: true,
                });
            }
            token = page.next_page_token;
        }
    }
}
