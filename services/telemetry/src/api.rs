//! gRPC handlers of the telemetry service: validate, call the domain, map errors.

use outpost_api::telemetry::v1::{self as pb, telemetry_service_server::TelemetryService};
use outpost_kit::error::Error;
use outpost_kit::time::{from_duration, from_timestamp, to_timestamp, to_timestamp_opt};
use tonic::{Request, Response, Status};

use crate::aggregate::{Aggregate, Aggregates, Status as AggregateStatus};
use crate::current_values;
use crate::devices::{Device, Devices};
use crate::names::{self, device_name, sensor_name};
use crate::readings::{self, MAX_BATCH, Reading, Readings};
use crate::series::{self, SeriesQuery};
use crate::snapshot::Snapshots;
use crate::store::{BucketRow, CurrentFilter, SensorRow};
use crate::track_messages::{segment_from_pb, segment_to_pb, track_to_pb, waypoint_from_pb, waypoint_to_pb};
use crate::tracks::{self, SolRange, Tracks};

/// The telemetry service's handlers.
pub struct TelemetryApi {
    readings: Readings,
    devices: Devices,
    aggregates: Aggregates,
    snapshots: Snapshots,
    tracks: Tracks,
}

impl TelemetryApi {
    /// Handlers over the domain.
    pub fn new(
        readings: Readings,
        devices: Devices,
        aggregates: Aggregates,
        snapshots: Snapshots,
        tracks: Tracks,
    ) -> Self {
        Self {
            readings,
            devices,
            aggregates,
            snapshots,
            tracks,
        }
    }
}

fn device_to_pb(device: Device) -> pb::Device {
    pb::Device {
        name: device_name(&device.id),
        display_name: device.display_name,
        source: device.source,
        latitude: device.latitude.unwrap_or_default(),
        longitude: device.longitude.unwrap_or_default(),
        labels: device.labels.into_iter().collect(),
        create_time: Some(to_timestamp(device.created_at)),
        last_seen_time: to_timestamp_opt(device.last_seen_at),
    }
}

fn device_from_pb(id: String, device: pb::Device) -> Device {
    // Both coordinates zero is what an unset position looks like in proto3.
    let known = device.latitude != 0.0 || device.longitude != 0.0;
    Device {
        id,
        display_name: device.display_name,
        source: device.source,
        latitude: known.then_some(device.latitude),
        longitude: known.then_some(device.longitude),
        labels: device.labels.into_iter().collect(),
        created_at: 0,
        last_seen_at: None,
    }
}

fn sensor_to_pb(sensor: SensorRow) -> pb::Sensor {
    pb::Sensor {
        name: sensor_name(&sensor.device, &sensor.sensor),
        display_name: sensor.display_name,
        kind: sensor.kind,
        unit: sensor.unit,
    }
}

fn reading_to_pb(reading: Reading) -> pb::Reading {
    pb::Reading {
        device: reading.device,
        sensor: reading.sensor,
        value: reading.value,
        time: Some(to_timestamp(reading.time)),
        unit: reading.unit,
        kind: reading.kind,
    }
}

fn reading_from_pb(i: usize, reading: pb::Reading) -> Result<Reading, Error> {
    let field = format!("readings[{i}].time");
    let time = reading
        .time
        .as_ref()
        .ok_or_else(|| Error::invalid(&field, "is required"))?;
    Ok(Reading {
        time: from_timestamp(&field, time)?,
        device: reading.device,
        sensor: reading.sensor,
        value: reading.value,
        unit: reading.unit,
        kind: reading.kind,
    })
}

fn bucket_to_pb(bucket: BucketRow) -> pb::ReadingBucket {
    pb::ReadingBucket {
        start_time: Some(to_timestamp(bucket.start)),
        count: bucket.count,
        avg: bucket.avg,
        min: bucket.min,
        max: bucket.max,
    }
}

fn aggregate_to_pb(aggregate: Aggregate) -> pb::AggregateReadingsResponse {
    let status = match aggregate.status {
        AggregateStatus::Unspecified => pb::AggregateStatus::Unspecified,
        AggregateStatus::TooCold => pb::AggregateStatus::TooCold,
        AggregateStatus::Good => pb::AggregateStatus::Good,
        AggregateStatus::TooHot => pb::AggregateStatus::TooHot,
    };
    pb::AggregateReadingsResponse {
        kind: aggregate.kind,
        average: aggregate.average,
        unit: aggregate.unit,
        device_count: aggregate.device_count,
        status: status as i32,
        status_text: aggregate.status.text().to_string(),
        cached: aggregate.cached,
        compute_time: Some(to_timestamp(aggregate.compute_time)),
    }
}

fn sol_range(min: Option<i32>, max: Option<i32>) -> SolRange {
    SolRange {
        min: min.map(i64::from),
        max: max.map(i64::from),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl TelemetryService for TelemetryApi {
    async fn create_device(&self, request: Request<pb::CreateDeviceRequest>) -> Reply<pb::CreateDeviceResponse> {
        let request = request.into_inner();
        let device = device_from_pb(request.device_id, request.device.unwrap_or_default());
        let device = self.devices.create(device).await?;
        Ok(Response::new(pb::CreateDeviceResponse {
            device: Some(device_to_pb(device)),
        }))
    }

    async fn get_device(&self, request: Request<pb::GetDeviceRequest>) -> Reply<pb::GetDeviceResponse> {
        let request = request.into_inner();
        let id = names::parse_device("name", &request.name, false)?;
        let device = self.devices.get(id).await?;
        Ok(Response::new(pb::GetDeviceResponse {
            device: Some(device_to_pb(device)),
        }))
    }

    async fn list_devices(&self, request: Request<pb::ListDevicesRequest>) -> Reply<pb::ListDevicesResponse> {
        let request = request.into_inner();
        let (devices, next_page_token) = self
            .devices
            .list(&request.source, request.page_size, &request.page_token)
            .await?;
        let devices = devices.into_iter().map(device_to_pb).collect();
        Ok(Response::new(pb::ListDevicesResponse {
            devices,
            next_page_token,
        }))
    }

    async fn delete_device(&self, request: Request<pb::DeleteDeviceRequest>) -> Reply<pb::DeleteDeviceResponse> {
        let request = request.into_inner();
        let id = names::parse_device("name", &request.name, false)?;
        self.devices.delete(id).await?;
        Ok(Response::new(pb::DeleteDeviceResponse {}))
    }

    async fn get_sensor(&self, request: Request<pb::GetSensorRequest>) -> Reply<pb::GetSensorResponse> {
        let request = request.into_inner();
        let (device, sensor) = names::parse_sensor("name", &request.name, false)?;
        let sensor = self.devices.get_sensor(device, sensor).await?;
        Ok(Response::new(pb::GetSensorResponse {
            sensor: Some(sensor_to_pb(sensor)),
        }))
    }

    async fn list_sensors(&self, request: Request<pb::ListSensorsRequest>) -> Reply<pb::ListSensorsResponse> {
        let request = request.into_inner();
        let device = names::parse_device("parent", &request.parent, true)?;
        let (sensors, next_page_token) = self
            .devices
            .list_sensors(device, &request.kind, request.page_size, &request.page_token)
            .await?;
        let sensors = sensors.into_iter().map(sensor_to_pb).collect();
        Ok(Response::new(pb::ListSensorsResponse {
            sensors,
            next_page_token,
        }))
    }

    async fn write_readings(&self, request: Request<pb::WriteReadingsRequest>) -> Reply<pb::WriteReadingsResponse> {
        let request = request.into_inner();
        if request.readings.len() > MAX_BATCH {
            return Err(Error::invalid("readings", format!("at most {MAX_BATCH} readings per call")).into());
        }
        let mut readings = Vec::with_capacity(request.readings.len());
        for (i, reading) in request.readings.into_iter().enumerate() {
            match reading_from_pb(i, reading) {
                Ok(reading) => readings.push(reading),
                Err(err) => {
                    // An earlier bad reading is the one to name.
                    readings::validate(&readings)?;
                    return Err(err.into());
                }
            }
        }
        let written = self.readings.write_readings(readings).await?;
        Ok(Response::new(pb::WriteReadingsResponse {
            written: written as i64,
        }))
    }

    async fn list_readings(&self, request: Request<pb::ListReadingsRequest>) -> Reply<pb::ListReadingsResponse> {
        let request = request.into_inner();
        let (device, sensor) = names::parse_sensor("parent", &request.parent, true)?;
        let query = SeriesQuery {
            device,
            sensor,
            start: request
                .start_time
                .as_ref()
                .map(|t| from_timestamp("start_time", t))
                .transpose()?,
            end: request
                .end_time
                .as_ref()
                .map(|t| from_timestamp("end_time", t))
                .transpose()?,
            bucket: request
                .bucket
                .as_ref()
                .map(|d| from_duration("bucket", d))
                .transpose()?,
        };
        let page = series::list(self.readings.db(), &query, request.page_size, &request.page_token).await?;
        Ok(Response::new(pb::ListReadingsResponse {
            readings: page.readings.into_iter().map(reading_to_pb).collect(),
            buckets: page.buckets.into_iter().map(bucket_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_current_value(
        &self,
        request: Request<pb::GetCurrentValueRequest>,
    ) -> Reply<pb::GetCurrentValueResponse> {
        let request = request.into_inner();
        let (device, sensor) = names::parse_current_value("name", &request.name)?;
        let reading = current_values::get(self.readings.db(), device, sensor).await?;
        Ok(Response::new(pb::GetCurrentValueResponse {
            reading: Some(reading_to_pb(reading)),
        }))
    }

    async fn list_current_values(
        &self,
        request: Request<pb::ListCurrentValuesRequest>,
    ) -> Reply<pb::ListCurrentValuesResponse> {
        let request = request.into_inner();
        let filter = CurrentFilter {
            device: &request.device,
            sensor: &request.sensor,
            kind: &request.kind,
        };
        let (readings, next_page_token) =
            current_values::list(self.readings.db(), filter, request.page_size, &request.page_token).await?;
        let readings = readings.into_iter().map(reading_to_pb).collect();
        Ok(Response::new(pb::ListCurrentValuesResponse {
            readings,
            next_page_token,
        }))
    }

    async fn aggregate_readings(
        &self,
        request: Request<pb::AggregateReadingsRequest>,
    ) -> Reply<pb::AggregateReadingsResponse> {
        let request = request.into_inner();
        let window = request
            .window
            .as_ref()
            .map(|d| from_duration("window", d))
            .transpose()?;
        let aggregate = self.aggregates.aggregate(&request.kind, window).await?;
        Ok(Response::new(aggregate_to_pb(aggregate)))
    }

    async fn export_snapshot(&self, request: Request<pb::ExportSnapshotRequest>) -> Reply<pb::ExportSnapshotResponse> {
        let request = request.into_inner();
        let (object, reading_count) = self.snapshots.export(&request.kind).await?;
        Ok(Response::new(pb::ExportSnapshotResponse { object, reading_count }))
    }

    async fn get_track(&self, request: Request<pb::GetTrackRequest>) -> Reply<pb::GetTrackResponse> {
        let request = request.into_inner();
        let id = tracks::parse_track("name", &request.name)?;
        let track = self.tracks.get(id).await?;
        Ok(Response::new(pb::GetTrackResponse {
            track: Some(track_to_pb(track)),
        }))
    }

    async fn list_tracks(&self, request: Request<pb::ListTracksRequest>) -> Reply<pb::ListTracksResponse> {
        let request = request.into_inner();
        let (tracks, next_page_token) = self.tracks.list(request.page_size, &request.page_token).await?;
        Ok(Response::new(pb::ListTracksResponse {
            tracks: tracks.into_iter().map(track_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn delete_track(&self, request: Request<pb::DeleteTrackRequest>) -> Reply<pb::DeleteTrackResponse> {
        let request = request.into_inner();
        let id = tracks::parse_track("name", &request.name)?;
        self.tracks.delete(id).await?;
        Ok(Response::new(pb::DeleteTrackResponse {}))
    }

    async fn upsert_waypoints(
        &self,
        request: Request<pb::UpsertWaypointsRequest>,
    ) -> Reply<pb::UpsertWaypointsResponse> {
        let request = request.into_inner();
        let track = tracks::parse_track("parent", &request.parent)?;
        let waypoints = request.waypoints.into_iter().map(waypoint_from_pb).collect();
        let counts = self.tracks.upsert_waypoints(track, waypoints).await?;
        Ok(Response::new(pb::UpsertWaypointsResponse {
            created: counts.created,
            updated: counts.updated,
            unchanged: counts.unchanged,
        }))
    }

    async fn get_waypoint(&self, request: Request<pb::GetWaypointRequest>) -> Reply<pb::GetWaypointResponse> {
        let request = request.into_inner();
        let (track, site, drive) = tracks::parse_waypoint("name", &request.name)?;
        let waypoint = self.tracks.get_waypoint(track, site, drive).await?;
        Ok(Response::new(pb::GetWaypointResponse {
            waypoint: Some(waypoint_to_pb(track, waypoint)),
        }))
    }

    async fn list_waypoints(&self, request: Request<pb::ListWaypointsRequest>) -> Reply<pb::ListWaypointsResponse> {
        let request = request.into_inner();
        let track = tracks::parse_track("parent", &request.parent)?;
        let range = sol_range(request.min_sol, request.max_sol);
        let (waypoints, next_page_token) = self
            .tracks
            .list_waypoints(track, range, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListWaypointsResponse {
            waypoints: waypoints.into_iter().map(|w| waypoint_to_pb(track, w)).collect(),
            next_page_token,
        }))
    }

    async fn upsert_traverse(&self, request: Request<pb::UpsertTraverseRequest>) -> Reply<pb::UpsertTraverseResponse> {
        let request = request.into_inner();
        let track = tracks::parse_track("parent", &request.parent)?;
        let segments = request.segments.into_iter().map(segment_from_pb).collect();
        let counts = self.tracks.upsert_traverse(track, segments).await?;
        Ok(Response::new(pb::UpsertTraverseResponse {
            created: counts.created,
            updated: counts.updated,
            unchanged: counts.unchanged,
        }))
    }

    async fn list_traverse_segments(
        &self,
        request: Request<pb::ListTraverseSegmentsRequest>,
    ) -> Reply<pb::ListTraverseSegmentsResponse> {
        let request = request.into_inner();
        let track = tracks::parse_track("parent", &request.parent)?;
        let range = sol_range(request.min_sol, request.max_sol);
        let (segments, next_page_token) = self
            .tracks
            .list_traverse(track, range, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListTraverseSegmentsResponse {
            segments: segments.into_iter().map(segment_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn get_track_summary(
        &self,
        request: Request<pb::GetTrackSummaryRequest>,
    ) -> Reply<pb::GetTrackSummaryResponse> {
        let request = request.into_inner();
        let id = tracks::parse_track("name", &request.name)?;
        let (track, latest) = self.tracks.summary(id).await?;
        Ok(Response::new(pb::GetTrackSummaryResponse {
            track: Some(track_to_pb(track)),
            latest: latest.map(|w| waypoint_to_pb(id, w)),
        }))
    }
}
