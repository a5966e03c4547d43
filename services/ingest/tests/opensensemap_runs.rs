//! openSenseMap runs end to end: boxes served from the fixtures by a local HTTP server,
//! loaded by ingest into a real telemetry, followed through the runs API.

mod common;

use std::time::Duration;

use futures::StreamExt as _;
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as pb, RunState, Source};
use outpost_api::telemetry::v1 as tpb;
use outpost_ingest::IngestConfig;
use outpost_kit::testing::backends;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

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
    Ok(create(&mesh.ingest, parameters, None).await?.run.expect("run"))
}

/// CreateRun of openSenseMap with `parameters`, through `ingest`.
async fn create(
    ingest: &IngestServiceClient<Channel>,
    parameters: &[(&str, &str)],
    min_create_time: Option<prost_types::Timestamp>,
) -> Result<pb::CreateRunResponse, tonic::Status> {
    let run = pb::Run {
        source: Source::Opensensemap as i32,
        parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let request = pb::CreateRunRequest {
        run: Some(run),
        min_create_time,
    };
    Ok(ingest.clone().create_run(request).await?.into_inner())
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
        let upload = pb::Run {
            source: Source::Upload as i32,
            ..Default::default()
        };
        let unsupported = mesh
            .ingest
            .clone()
            .create_run(pb::CreateRunRequest {
                run: Some(upload),
                ..Default::default()
            })
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

async fn list(mesh: &Mesh) -> Vec<pb::Run> {
    let request = pb::ListRunsRequest {
        source: Source::Opensensemap as i32,
        ..Default::default()
    };
    mesh.ingest.clone().list_runs(request).await.unwrap().into_inner().runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_load_is_started_once_across_replicas() {
    for backend in backends() {
        let label = backend.label;
        let slow = common::serve_boxes_with(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            b"[]".to_vec()
        })
        .await;
        let mesh = start(&backend, osem(slow)).await;
        let replica = mesh.start_replica().await;
        // Twenty requests at once, half to each replica: one run, started once.
        let calls = (0..20).map(|i| {
            let ingest = if i % 2 == 0 { &mesh.ingest } else { &replica.ingest };
            create(ingest, &[], None)
        });
        let answers = futures::future::try_join_all(calls).await.unwrap();
        let names: std::collections::BTreeSet<&str> =
            answers.iter().map(|a| a.run.as_ref().unwrap().name.as_str()).collect();
        assert_eq!(names.len(), 1, "{label}: {names:?}");
        assert_eq!(
            answers.iter().filter(|a| !a.joined).count(),
            1,
            "{label}: one call started it, the others joined"
        );
        assert_eq!(list(&mesh).await.len(), 1, "{label}");

        // Once it ended, the same load starts anew.
        let name = names.into_iter().next().unwrap().to_string();
        let request = pb::CancelRunRequest { name: name.clone() };
        mesh.ingest.clone().cancel_run(request).await.unwrap();
        let again = create(&replica.ingest, &[], None).await.unwrap();
        assert!(!again.joined, "{label}");
        assert_ne!(again.run.unwrap().name, name, "{label}");
        replica.crash().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_load_is_not_started_again_before_the_retry_spacing() {
    for backend in backends() {
        let label = backend.label;
        let config = IngestConfig {
            load_retry_seconds: 3,
            ..osem(common::unreachable_url().await)
        };
        let mesh = start(&backend, config).await;
        let run = create_run(&mesh, &[]).await.unwrap();
        let failed = watch_to_end(&mesh, &run.name).await.pop().unwrap();
        assert_eq!(failed.state, RunState::Failed as i32, "{label}");

        // Twelve more requests: none starts a run; each says which run failed, why, and when
        // to ask again.
        for _ in 0..12 {
            let status = create(&mesh.ingest, &[], None).await.unwrap_err();
            assert_eq!(status.code(), Code::Unavailable, "{label}: {status:?}");
            let message = status.message();
            // (Prefixed with the service's name, as every UNAVAILABLE of a service itself.)
            assert!(
                message.starts_with(&format!(
                    "ingest: the last opensensemap load with these parameters ({}) failed: cannot reach openSenseMap",
                    run.name
                )),
                "{label}: {message}"
            );
            assert!(message.ends_with("(OUTPOST_LOAD_RETRY_SECONDS)"), "{message}");
            let retry = status
                .get_details_retry_info()
                .expect("retry info")
                .retry_delay
                .unwrap();
            assert!(retry > Duration::ZERO && retry <= Duration::from_secs(3), "{retry:?}");
            let resource = status.get_details_resource_info().expect("resource info");
            assert_eq!(resource.resource_name, run.name);
            assert_eq!(status.get_details_error_info().unwrap().reason, "LOAD_RECENTLY_FAILED");
        }
        assert_eq!(list(&mesh).await.len(), 1, "{label}: one failed run, not thirteen");

        // After the spacing, it is tried again.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let retried = create(&mesh.ingest, &[], None).await.unwrap();
        assert!(!retried.joined, "{label}");
        assert_ne!(retried.run.unwrap().name, run.name);
        assert_eq!(list(&mesh).await.len(), 2, "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_started_since_a_caller_looked_answers_it() {
    for backend in backends() {
        let label = backend.label;
        let mesh = start(&backend, osem(serve_boxes("sample_data.json").await)).await;
        let looked = outpost_kit::time::to_timestamp(outpost_kit::time::now_micros());
        let first = create(&mesh.ingest, &[], Some(looked)).await.unwrap();
        assert!(!first.joined, "{label}");
        let name = first.run.unwrap().name;
        let ended = watch_to_end(&mesh, &name).await.pop().unwrap();
        assert_eq!(ended.state, RunState::Succeeded as i32, "{label}");

        // A caller that looked before that load started gets it, ended; a later one a new load.
        let joined = create(&mesh.ingest, &[], Some(looked)).await.unwrap();
        assert!(joined.joined, "{label}");
        let joined_run = joined.run.unwrap();
        assert_eq!(
            (joined_run.name.as_str(), joined_run.state),
            (name.as_str(), RunState::Succeeded as i32)
        );
        let later = outpost_kit::time::to_timestamp(outpost_kit::time::now_micros());
        let new = create(&mesh.ingest, &[], Some(later)).await.unwrap();
        assert!(!new.joined, "{label}");
        assert_ne!(new.run.unwrap().name, name);

        let bad_time = prost_types::Timestamp { seconds: 0, nanos: -1 };
        let refused = create(&mesh.ingest, &[], Some(bad_time)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().starts_with("min_create_time:"),
            "{}",
            refused.message()
        );
        let many: Vec<(String, String)> = (0..17).map(|i| (format!("p{i}"), "x".to_string())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let refused = create(&mesh.ingest, &many, None).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().starts_with("run.parameters: 17 parameters"),
            "{}",
            refused.message()
        );
        let long = "v".repeat(300);
        let refused = create(&mesh.ingest, &[("date", &long)], None).await.unwrap_err();
        assert!(
            refused.message().starts_with("run.parameters.date:"),
            "{}",
            refused.message()
        );
    }
}
