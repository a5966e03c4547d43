//! Helpers of the plotting suites: telemetry and plotting on `127.0.0.1:0` over a test
//! backend, their clients, and waiting for a job to end.

#![allow(dead_code)] // every suite uses a part of it

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use outpost_api::plotting::v1::{self as pb, plotting_service_client::PlottingServiceClient};
use outpost_api::telemetry::v1::{self as telemetry, telemetry_service_client::TelemetryServiceClient};
use outpost_kit::config::Config;
use outpost_kit::testing::TestBackend;
use outpost_plotting::PlottingConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running service.
pub struct Running {
    /// `http://127.0.0.1:port`.
    pub url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops it and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn wait_serving(url: &str, service: &str) {
    outpost_kit::client::wait_serving(url, service, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{service} is not serving: {e}"));
}

/// Starts telemetry on the backend.
pub async fn start_telemetry(backend: &TestBackend) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(outpost_telemetry::serve_on(
        backend.config(),
        outpost_telemetry::TelemetryConfig::default(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    wait_serving(&url, outpost_api::names::TELEMETRY).await;
    Running { url, stop, task }
}

/// The plotting configuration of the backend, reading from telemetry at `telemetry_url`.
pub fn plotting_config(backend: &TestBackend, telemetry_url: &str) -> Config {
    let mut config = backend.config();
    config.telemetry_url = Some(telemetry_url.to_string());
    config
}

/// Starts plotting on the backend with `settings`, reading from telemetry at `telemetry_url`.
pub async fn start_plotting(backend: &TestBackend, telemetry_url: &str, settings: PlottingConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(outpost_plotting::serve_on(
        plotting_config(backend, telemetry_url),
        settings,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    wait_serving(&url, outpost_api::names::PLOTTING).await;
    Running { url, stop, task }
}

/// A plotting client.
pub fn plotting(url: &str) -> PlottingServiceClient<Channel> {
    PlottingServiceClient::new(Channel::from_shared(url.to_string()).unwrap().connect_lazy())
}

/// A telemetry client.
pub fn telemetry(url: &str) -> TelemetryServiceClient<Channel> {
    TelemetryServiceClient::new(Channel::from_shared(url.to_string()).unwrap().connect_lazy())
}

/// A timestamp of `micros`.
pub fn ts(micros: i64) -> prost_types::Timestamp {
    outpost_kit::time::to_timestamp(micros)
}

/// Writes `values` of `devices/{device}/sensors/{sensor}`, one a minute from `start` µs.
pub async fn write_readings(url: &str, device: &str, sensor: &str, start: i64, values: &[f64]) {
    let readings = values
        .iter()
        .enumerate()
        .map(|(i, value)| telemetry::Reading {
            device: device.into(),
            sensor: sensor.into(),
            value: *value,
            time: Some(ts(start + i as i64 * 60_000_000)),
            unit: "°C".into(),
            kind: "temperature".into(),
        })
        .collect();
    telemetry(url)
        .write_readings(telemetry::WriteReadingsRequest { readings })
        .await
        .unwrap();
}

/// A job plotting the readings of `sensor` in `[start, end)` µs.
pub fn readings_job(sensor: &str, start: i64, end: i64, format: pb::PlotFormat) -> pb::PlotJob {
    pb::PlotJob {
        spec: Some(pb::PlotSpec {
            kind: Some(pb::plot_spec::Kind::Readings(pb::ReadingsPlot {
                sensor: sensor.into(),
                start_time: Some(ts(start)),
                end_time: Some(ts(end)),
            })),
            title: String::new(),
        }),
        format: format as i32,
        ..Default::default()
    }
}

/// Creates a job.
pub async fn create(client: &mut PlottingServiceClient<Channel>, job: pb::PlotJob) -> pb::PlotJob {
    client
        .create_plot_job(pb::CreatePlotJobRequest { plot_job: Some(job) })
        .await
        .unwrap()
        .into_inner()
        .plot_job
        .unwrap()
}

/// Watches a job until it ends (at most 60 s) and returns every state it was seen in, and the
/// job as it ended.
pub async fn until_ended(
    client: &mut PlottingServiceClient<Channel>,
    name: &str,
) -> (Vec<pb::PlotJobState>, pb::PlotJob) {
    let started = Instant::now();
    let mut stream = client
        .watch_plot_job(pb::WatchPlotJobRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    let mut states = Vec::new();
    let mut last = None;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the job ends within 60 s")
    {
        let job = message.unwrap().plot_job.unwrap();
        states.push(job.state());
        last = Some(job);
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    let last = last.expect("the watch sends the job");
    assert!(
        matches!(
            last.state(),
            pb::PlotJobState::Succeeded | pb::PlotJobState::Failed | pb::PlotJobState::Cancelled
        ),
        "the watch ended before the job: {last:?}"
    );
    (states, last)
}

/// Downloads a plot: its content info and bytes.
pub async fn download(
    client: &mut PlottingServiceClient<Channel>,
    name: &str,
) -> Result<(pb::PlotContentInfo, Vec<u8>), tonic::Status> {
    let mut stream = client
        .download_plot(pb::DownloadPlotRequest { name: name.into() })
        .await?
        .into_inner();
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(pb::download_plot_response::Part::Info(i)) => info = Some(i),
            Some(pb::download_plot_response::Part::Chunk(c)) => bytes.extend_from_slice(&c),
            None => {}
        }
    }
    Ok((info.expect("the download starts with its info"), bytes))
}

/// The rover's track in the tests.
pub const TRACK: &str = "tracks/perseverance";
/// NASA's MMGIS waypoints of Perseverance, to sol 1615.
pub const WAYPOINTS: &str = include_str!("../../../../fixtures/rover/M20_waypoints.json");
/// NASA's MMGIS traverse of Perseverance.
pub const TRAVERSE: &str = include_str!("../../../../fixtures/rover/M20_traverse.json");

fn features(text: &str) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap();
    doc["features"].as_array().unwrap().clone()
}

/// The sols of the fixture's waypoints.
pub fn fixture_sols() -> Vec<i32> {
    features(WAYPOINTS)
        .iter()
        .map(|f| f["properties"]["sol"].as_i64().unwrap() as i32)
        .collect()
}

/// The sols of the fixture's traverse segments.
pub fn fixture_traverse_sols() -> Vec<i32> {
    features(TRAVERSE)
        .iter()
        .map(|f| f["properties"]["sol"].as_i64().unwrap() as i32)
        .collect()
}

/// Loads the fixture's waypoints and traverse into telemetry, through `UpsertWaypoints` and
/// `UpsertTraverse`.
pub async fn load_fixture(url: &str) {
    let number = |p: &serde_json::Value, key: &str| p[key].as_f64().unwrap_or_default();
    let waypoints = features(WAYPOINTS)
        .iter()
        .map(|f| {
            let p = &f["properties"];
            telemetry::Waypoint {
                sol: p["sol"].as_i64().unwrap() as i32,
                site: p["site"].as_i64().unwrap() as i32,
                drive: p["drive"].as_i64().unwrap() as i32,
                rmc: p["RMC"].as_str().unwrap_or_default().into(),
                position: Some(telemetry::Position {
                    longitude: number(p, "lon"),
                    latitude: number(p, "lat"),
                    elevation_m: number(p, "elev_geoid"),
                    easting: number(p, "easting"),
                    northing: number(p, "northing"),
                    radius_m: number(p, "radius"),
                    elevation_radii_m: number(p, "elev_radii"),
                }),
                orientation: Some(telemetry::Orientation {
                    roll: number(p, "roll"),
                    pitch: number(p, "pitch"),
                    yaw: number(p, "yaw"),
                    tilt: number(p, "tilt"),
                    yaw_rad: number(p, "yaw_rad"),
                }),
                dist_m: number(p, "dist_m"),
                dist_total_m: number(p, "dist_total_m"),
                dist_km: number(p, "dist_km"),
                dist_mi: number(p, "dist_mi"),
                ..Default::default()
            }
        })
        .collect();
    let mut client = telemetry(url);
    client
        .upsert_waypoints(telemetry::UpsertWaypointsRequest {
            parent: TRACK.into(),
            waypoints,
        })
        .await
        .unwrap();
    let segments: Vec<telemetry::TraverseSegment> = features(TRAVERSE)
        .iter()
        .map(|f| {
            let p = &f["properties"];
            let points = f["geometry"]["coordinates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| telemetry::PathPoint {
                    longitude: c[0].as_f64().unwrap(),
                    latitude: c[1].as_f64().unwrap(),
                    elevation_m: c.get(2).and_then(|e| e.as_f64()).unwrap_or_default(),
                })
                .collect();
            telemetry::TraverseSegment {
                sol: p["sol"].as_i64().unwrap() as i32,
                from_rmc: p["fromRMC"].as_str().unwrap_or_default().into(),
                to_rmc: p["toRMC"].as_str().unwrap_or_default().into(),
                length_m: number(p, "length"),
                points,
                has_elevation: true,
                ..Default::default()
            }
        })
        .collect();
    for chunk in segments.chunks(200) {
        client
            .upsert_traverse(telemetry::UpsertTraverseRequest {
                parent: TRACK.into(),
                segments: chunk.to_vec(),
            })
            .await
            .unwrap();
    }
}

/// A job plotting `y` against sol over `[start, end]`.
pub fn track_job(y: &str, start: i32, end: i32, format: pb::PlotFormat) -> pb::PlotJob {
    pb::PlotJob {
        spec: Some(pb::PlotSpec {
            kind: Some(pb::plot_spec::Kind::Track(pb::TrackPlot {
                track: TRACK.into(),
                x_field: "sol".into(),
                y_field: y.into(),
                start_sol: start,
                end_sol: end,
            })),
            title: String::new(),
        }),
        format: format as i32,
        ..Default::default()
    }
}
