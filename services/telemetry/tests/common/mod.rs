//! Helpers of the telemetry suites: the real services on `127.0.0.1:0` over a test backend
//! (`TestBackend::config`), and readings.

#![allow(dead_code)] // every suite uses a part of it

use std::time::{Duration, Instant};

use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::telemetry::v1::telemetry_service_client::TelemetryServiceClient;
use outpost_api::telemetry::v1::{self as pb};
use outpost_kit::testing::TestBackend;
use outpost_telemetry::TelemetryConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The telemetry client of the tests.
pub type Client = TelemetryServiceClient<Channel>;

/// Waits until `probe` answers, failing fast with the server's error when it stopped.
async fn wait_ready<F, Fut>(what: &str, server: &JoinHandle<anyhow::Result<()>>, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), tonic::Status>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(()) => return,
            Err(status) => {
                assert!(!server.is_finished(), "{what} stopped: {status}");
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{what} not ready: {status}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Starts telemetry on the backend (media at `media_url`, when given) and returns a client.
pub async fn start_telemetry(backend: &TestBackend, settings: TelemetryConfig, media_url: Option<String>) -> Client {
    let mut config = backend.config();
    config.media_url = media_url;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding telemetry");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(outpost_telemetry::serve_on(
        config,
        settings,
        listener,
        std::future::pending(),
    ));
    let channel = Channel::from_shared(url).expect("url").connect_lazy();
    let client = TelemetryServiceClient::new(channel);
    wait_ready("telemetry", &server, || {
        let mut client = client.clone();
        async move { client.list_devices(pb::ListDevicesRequest::default()).await.map(|_| ()) }
    })
    .await;
    client
}

/// Starts media on the backend and returns its URL.
pub async fn start_media(backend: &TestBackend) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding media");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(outpost_media::serve_on(
        backend.config(),
        outpost_media::MediaConfig::default(),
        listener,
        std::future::pending(),
    ));
    let client = media_client(&url);
    wait_ready("media", &server, || {
        let mut client = client.clone();
        async move {
            let request = outpost_api::media::v1::ListObjectsRequest::default();
            client.list_objects(request).await.map(|_| ())
        }
    })
    .await;
    url
}

/// A media client.
pub fn media_client(url: &str) -> MediaServiceClient<Channel> {
    MediaServiceClient::new(Channel::from_shared(url.to_string()).expect("url").connect_lazy())
}

/// Now, in microseconds.
pub fn now() -> i64 {
    outpost_kit::time::now_micros()
}

/// A protobuf timestamp.
pub fn ts(micros: i64) -> prost_types::Timestamp {
    outpost_kit::time::to_timestamp(micros)
}

/// Microseconds of a protobuf timestamp.
pub fn micros(ts: &Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.as_ref().expect("a timestamp");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

/// A reading without unit or kind.
pub fn reading(device: &str, sensor: &str, time: i64, value: f64) -> pb::Reading {
    pb::Reading {
        device: device.into(),
        sensor: sensor.into(),
        value,
        time: Some(ts(time)),
        unit: String::new(),
        kind: String::new(),
    }
}

/// A temperature reading in °C (sensor `temperature`).
pub fn temperature(device: &str, time: i64, value: f64) -> pb::Reading {
    pb::Reading {
        unit: "°C".into(),
        kind: "temperature".into(),
        ..reading(device, "temperature", time, value)
    }
}

/// Writes readings and returns how many were committed.
pub async fn write(client: &mut Client, readings: Vec<pb::Reading>) -> i64 {
    let request = pb::WriteReadingsRequest { readings };
    client
        .write_readings(request)
        .await
        .expect("WriteReadings")
        .into_inner()
        .written
}

/// Every reading of `parent`, walking pages of `page_size`.
pub async fn all_readings(client: &mut Client, parent: &str, page_size: i32) -> Vec<pb::Reading> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListReadingsRequest {
            parent: parent.into(),
            page_size,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = client.list_readings(request).await.expect("ListReadings").into_inner();
        out.extend(page.readings);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

/// The current value of a sensor, or the status of the failed call.
pub async fn current(client: &mut Client, device: &str, sensor: &str) -> Result<pb::Reading, tonic::Status> {
    let name = format!("devices/{device}/sensors/{sensor}/currentValue");
    let response = client.get_current_value(pb::GetCurrentValueRequest { name }).await?;
    Ok(response.into_inner().reading.expect("a reading"))
}
