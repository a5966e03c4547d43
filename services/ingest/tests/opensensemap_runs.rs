//! openSenseMap runs end to end: boxes served from the fixtures by a local HTTP server,
//! loaded by ingest into a real telemetry, followed through the runs API.

mod common;

use std::time::Duration;

use futures::StreamExt as _;
use outpost_api::ingest::v1::{self as pb, RunState, Source};
use outpost_api::telemetry::v1 as tpb;
use outpost_ingest::IngestConfig;
use outpost_kit::testing::backends;
use tonic::Code;

use common::{Mesh, eventually, fixture_json, readings, serve_boxes, start};

/// What the test expects of a box, decided here independently of ingest: a sensor whose
/// title contains "temp" (unit absent or °C) with a last measurement means a reading.
fn expected_counts(file: &str) -> (i64, i64) {
    let boxes = fixture_json(&format!("sensebox/{file}"));
    let boxes = boxes.as_array().expect("an array of boxes");
    let with_temperature = boxes
        .iter()
        .filter(|b| {
            b["sensors"].as_array().into_iter().flatten().any(|s| {
                let title = s["title"].as_str().unwrap_or("").to_lowercase();
                let unit_ok = s["unit"].as_str().is_none_or(|u| u == "°C");
                title.contains("temp") && unit_ok && !s["lastMeasurement"].is_null()
            })
        })
        .count() as i64;
    (with_temperature, boxes.len() as i64 - with_temperature)
}

fn osem(url: String) -> IngestConfig {
    IngestConfig {
        opensensemap_url: url,
        ..IngestConfig::default()
    }
}

async fn create_run(mesh: &Mesh, parameters: &[(&str, &str)]) -> Result<pb::Run, tonic::Status> {
    let run = pb::Run {
        source: Source::Opensensemap as i32,
        parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let response = mesh
        .ingest
        .clone()
        .create_run(pb::CreateRunRequest { run: Some(run) })
        .await?;
    Ok(response.into_inner().run.expect("run"))
}

/// Every message of WatchRun until the stream ends.
async fn watch_to_end(mesh: &Mesh, name: &str) -> Vec<pb::Run> {
    let request = pb::WatchRunRequest { name: name.to_string() };
    let mut stream = mesh.ingest.clone().watch_run(request).await.unwrap().into_inner();
    let mut seen = Vec::new();
    let collect = async {
        while let Some(message) = stream.next().await {
            seen.push(message.unwrap().run.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(120), collect)
        .await
        .expect("the watch ends with the run");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_of_the_boxes_succeeds_with_counts() {
    let file = "osem_boxes_derived_2020-03-27.json";
    let (created, skipped) = expected_counts(file);
    assert_eq!(created + skipped, 2870);
    for backend in backends() {
        let mesh = start(&backend, osem(serve_boxes(file).await)).await;
        let run = create_run(&mesh, &[]).await.unwrap();
        assert_eq!(run.state, RunState::Pending as i32, "{}", backend.label);

        let seen = watch_to_end(&mesh, &run.name).await;
        let last = seen.last().expect("a watch sends the run");
        assert_eq!(
            last.state,
            RunState::Succeeded as i32,
            "{}: {:?}",
            backend.label,
            last.failure
        );
        assert!(
            seen[..seen.len() - 1]
                .iter()
                .all(|r| r.state != RunState::Succeeded as i32)
        );
        let counts = last.counts.unwrap();
        assert_eq!(
            (counts.created, counts.skipped, counts.failed),
            (created, skipped, 0),
            "{}",
            backend.label
        );
        assert_eq!(
            last.progress.unwrap(),
            pb::Progress {
                done: 2870,
                total: 2870
            }
        );
        assert!(last.start_time.is_some() && last.end_time.is_some());

        let got = mesh
            .ingest
            .clone()
            .get_run(pb::GetRunRequest { name: run.name.clone() })
            .await
            .unwrap();
        assert_eq!(
            got.into_inner().run.unwrap().counts,
            Some(counts),
            "{}: stored counts",
            backend.label
        );
        let listed = mesh
            .ingest
            .clone()
            .list_runs(pb::ListRunsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.runs.first().map(|r| r.name.as_str()), Some(run.name.as_str()));

        // The first box of the file, its temperature and its place.
        let value = mesh
            .telemetry
            .clone()
            .get_current_value(tpb::GetCurrentValueRequest {
                name: "devices/56957f3ab3de1fe0052532da/sensors/temperature/currentValue".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .reading
            .unwrap();
        assert_eq!(value.value, 19.04);
        let device = mesh
            .telemetry
            .clone()
            .get_device(tpb::GetDeviceRequest {
                name: "devices/56957f3ab3de1fe0052532da".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .device
            .unwrap();
        assert_eq!(
            (device.display_name.as_str(), device.source.as_str()),
            ("WG Wolbecker Str.", "opensensemap")
        );
        assert!((device.latitude - 51.957).abs() < 0.01 && (device.longitude - 7.64).abs() < 0.01);

        let cancel = mesh
            .ingest
            .clone()
            .cancel_run(pb::CancelRunRequest { name: run.name.clone() })
            .await;
        assert_eq!(
            cancel.unwrap_err().code(),
            Code::FailedPrecondition,
            "{}",
            backend.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_updates_and_never_duplicates() {
    let file = "sample_data.json";
    let (created, skipped) = expected_counts(file);
    for backend in backends() {
        let mesh = start(&backend, osem(serve_boxes(file).await)).await;
        for _ in 0..2 {
            let run = create_run(&mesh, &[]).await.unwrap();
            let last = watch_to_end(&mesh, &run.name).await.pop().unwrap();
            assert_eq!(
                last.state,
                RunState::Succeeded as i32,
                "{}: {}",
                backend.label,
                last.failure
            );
            let counts = last.counts.unwrap();
            assert_eq!((counts.created, counts.skipped), (created, skipped));
        }
        let stored = readings(&mesh.telemetry, "56957f3ab3de1fe0052532da", "temperature").await;
        assert_eq!(stored.len(), 1, "{}: one reading per box and time", backend.label);
        let mut telemetry = mesh.telemetry.clone();
        let listed = telemetry.list_devices(tpb::ListDevicesRequest {
            page_size: 1000,
            source: "opensensemap".into(),
            ..Default::default()
        });
        assert_eq!(
            listed.await.unwrap().into_inner().devices.len() as i64,
            created,
            "{}",
            backend.label
        );

        let request = pb::ListRunsRequest {
            page_size: 1,
            state: RunState::Succeeded as i32,
            ..Default::default()
        };
        let page = mesh.ingest.clone().list_runs(request).await.unwrap().into_inner();
        assert_eq!(page.runs.len(), 1);
        // A token belongs to its filters: used without them, it is refused.
        let other = pb::ListRunsRequest {
            page_size: 1,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        };
        let refused = mesh.ingest.clone().list_runs(other).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{}", refused.message());
        let request = pb::ListRunsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            state: RunState::Succeeded as i32,
            ..Default::default()
        };
        let page = mesh.ingest.clone().list_runs(request).await.unwrap().into_inner();
        assert_eq!(
            (page.runs.len(), page.next_page_token.as_str()),
            (1, ""),
            "{}: two runs in all",
            backend.label
        );

        let name = page.runs[0].name.clone();
        mesh.ingest
            .clone()
            .delete_run(pb::DeleteRunRequest { name: name.clone() })
            .await
            .unwrap();
        let gone = mesh
            .ingest
            .clone()
            .get_run(pb::GetRunRequest { name })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_source_fails_the_run_with_a_clear_failure() {
    for backend in backends() {
        let mesh = start(&backend, osem(common::unreachable_url().await)).await;
        let run = create_run(&mesh, &[]).await.unwrap();
        let last = watch_to_end(&mesh, &run.name).await.pop().unwrap();
        assert_eq!(last.state, RunState::Failed as i32, "{}", backend.label);
        assert!(
            last.failure
                .starts_with("cannot reach openSenseMap at http://127.0.0.1:"),
            "{}",
            last.failure
        );
        assert!(last.failure.to_lowercase().contains("refused"), "{}", last.failure);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_load_can_be_cancelled_and_bad_requests_are_refused() {
    for backend in backends() {
        let slow = common::serve_boxes_with(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            b"[]".to_vec()
        })
        .await;
        let mesh = start(&backend, osem(slow)).await;
        let run = create_run(&mesh, &[]).await.unwrap();
        let name = run.name.clone();
        eventually(Duration::from_secs(10), "the run to start", || {
            let mut ingest = mesh.ingest.clone();
            let name = name.clone();
            async move {
                let run = ingest
                    .get_run(pb::GetRunRequest { name })
                    .await
                    .unwrap()
                    .into_inner()
                    .run
                    .unwrap();
                (run.state == RunState::Running as i32).then_some(())
            }
        })
        .await;
        let delete = mesh
            .ingest
            .clone()
            .delete_run(pb::DeleteRunRequest { name: name.clone() })
            .await;
        assert_eq!(
            delete.unwrap_err().code(),
            Code::FailedPrecondition,
            "{}",
            backend.label
        );
        let cancelled = mesh
            .ingest
            .clone()
            .cancel_run(pb::CancelRunRequest { name: name.clone() })
            .await
            .unwrap();
        assert_eq!(cancelled.into_inner().run.unwrap().state, RunState::Cancelled as i32);
        let last = watch_to_end(&mesh, &name).await.pop().unwrap();
        assert_eq!(last.state, RunState::Cancelled as i32, "{}", backend.label);

        let bad = create_run(&mesh, &[("url", "http://169.254.169.254/")])
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().starts_with("run.parameters.url:"), "{}", bad.message());
        let camera = pb::Run {
            source: Source::CameraDay as i32,
            ..Default::default()
        };
        let unsupported = mesh
            .ingest
            .clone()
            .create_run(pb::CreateRunRequest { run: Some(camera) })
            .await;
        assert_eq!(unsupported.unwrap_err().code(), Code::Unimplemented);
        let missing = mesh
            .ingest
            .clone()
            .get_run(pb::GetRunRequest {
                name: "runs/nope".into(),
            })
            .await;
        assert_eq!(missing.unwrap_err().code(), Code::NotFound);
        let garbled = mesh
            .ingest
            .clone()
            .get_run(pb::GetRunRequest { name: "jobs/1".into() })
            .await;
        assert_eq!(garbled.unwrap_err().code(), Code::InvalidArgument);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boxes_are_loaded_on_the_configured_schedule() {
    for backend in backends() {
        let config = IngestConfig {
            opensensemap_interval_seconds: 1,
            ..osem(serve_boxes("sample_data.json").await)
        };
        let mesh = start(&backend, config).await;
        let succeeded = pb::ListRunsRequest {
            source: Source::Opensensemap as i32,
            state: RunState::Succeeded as i32,
            ..Default::default()
        };
        let runs = eventually(Duration::from_secs(30), "two scheduled loads", || {
            let mut ingest = mesh.ingest.clone();
            let request = succeeded.clone();
            async move {
                let runs = ingest.list_runs(request).await.unwrap().into_inner().runs;
                (runs.len() >= 2).then_some(runs)
            }
        })
        .await;
        assert!(
            runs.iter().all(|r| r.counts.unwrap().created == 25),
            "{}",
            backend.label
        );
    }
}
