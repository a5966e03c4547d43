//! Runs that a process leaves behind: a graceful shutdown fails them as interrupted (and ends
//! their watches), and runs left pending or running by a crash are failed at the next start.

mod common;

use std::time::Duration;

use futures::StreamExt as _;
use outpost_api::ingest::v1::{self as pb, RunState, Source};
use outpost_ingest::IngestConfig;
use outpost_kit::testing::backends;

use common::{Mesh, eventually, serve_boxes_with, start};

async fn slow_source() -> IngestConfig {
    let url = serve_boxes_with(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        b"[]".to_vec()
    })
    .await;
    IngestConfig {
        opensensemap_url: url,
        ..IngestConfig::default()
    }
}

/// Creates an openSenseMap run and waits until it is running.
async fn running_run(mesh: &Mesh) -> String {
    let run = pb::Run {
        source: Source::Opensensemap as i32,
        ..Default::default()
    };
    let created = mesh
        .ingest
        .clone()
        .create_run(pb::CreateRunRequest { run: Some(run) })
        .await
        .unwrap();
    let name = created.into_inner().run.unwrap().name;
    eventually(Duration::from_secs(10), "the run to start", || async {
        (get(mesh, &name).await.state == RunState::Running as i32).then_some(())
    })
    .await;
    name
}

async fn get(mesh: &Mesh, name: &str) -> pb::Run {
    let request = pb::GetRunRequest { name: name.to_string() };
    mesh.ingest
        .clone()
        .get_run(request)
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_fails_running_runs_and_ends_their_watches() {
    for backend in backends() {
        let mut mesh = start(&backend, slow_source().await).await;
        let name = running_run(&mesh).await;
        let request = pb::WatchRunRequest { name: name.clone() };
        let mut watch = mesh.ingest.clone().watch_run(request).await.unwrap().into_inner();
        let watched = tokio::spawn(async move {
            let mut last = None;
            while let Some(Ok(message)) = watch.next().await {
                last = message.run;
            }
            last
        });

        tokio::time::timeout(Duration::from_secs(20), mesh.stop_ingest())
            .await
            .expect("ingest stops promptly");
        let last = tokio::time::timeout(Duration::from_secs(5), watched)
            .await
            .expect("the watch ends")
            .unwrap();
        let last = last.expect("the watch saw the run");
        assert_eq!(last.state, RunState::Failed as i32, "{}", backend.label);
        assert_eq!(last.failure, "interrupted by a shutdown");

        mesh.restart_ingest().await;
        let stored = get(&mesh, &name).await;
        assert_eq!(
            (stored.state, stored.failure.as_str()),
            (RunState::Failed as i32, "interrupted by a shutdown")
        );
        assert!(stored.end_time.is_some(), "{}", backend.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_left_running_by_a_crash_are_failed_at_the_next_start() {
    for backend in backends() {
        let mut mesh = start(&backend, slow_source().await).await;
        let name = running_run(&mesh).await;
        mesh.crash_ingest().await;
        mesh.restart_ingest().await;
        let stored = get(&mesh, &name).await;
        assert_eq!(stored.state, RunState::Failed as i32, "{}", backend.label);
        assert_eq!(stored.failure, "interrupted by a restart", "{}", backend.label);
        let request = pb::ListRunsRequest {
            state: RunState::Running as i32,
            ..Default::default()
        };
        let running = mesh.ingest.clone().list_runs(request).await.unwrap().into_inner();
        assert!(running.runs.is_empty(), "{}: nothing left running", backend.label);
    }
}
