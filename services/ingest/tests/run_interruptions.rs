//! Runs across replicas and restarts: a graceful shutdown gives its runs back (ending their
//! watches) for another replica to take over; a crashed replica's runs are taken over once
//! their lease ran out, and failed after too many restarts; a live replica's runs are left
//! alone by one that starts next to it.

mod common;

use std::time::Duration;

use futures::StreamExt as _;
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as pb, RunState, Source};
use outpost_ingest::IngestConfig;
use outpost_kit::testing::backends;
use tonic::transport::Channel;

use common::{eventually, serve_boxes_with, start};

/// An openSenseMap that never answers in time, and runs with a one-second lease.
async fn slow_source() -> IngestConfig {
    let url = serve_boxes_with(|| async {
        tokio::time::sleep(Duration::from_secs(120)).await;
        b"[]".to_vec()
    })
    .await;
    IngestConfig {
        opensensemap_url: url,
        run_lease_seconds: 1,
        ..IngestConfig::default()
    }
}

async fn create(ingest: &IngestServiceClient<Channel>) -> pb::CreateRunResponse {
    let run = pb::Run {
        source: Source::Opensensemap as i32,
        ..Default::default()
    };
    let request = pb::CreateRunRequest {
        run: Some(run),
        ..Default::default()
    };
    ingest.clone().create_run(request).await.unwrap().into_inner()
}

async fn get(ingest: &IngestServiceClient<Channel>, name: &str) -> pb::Run {
    let request = pb::GetRunRequest { name: name.to_string() };
    ingest.clone().get_run(request).await.unwrap().into_inner().run.unwrap()
}

/// Waits until the run is running under an owner other than `not_owner`; returns it.
async fn running(ingest: &IngestServiceClient<Channel>, name: &str, not_owner: &str) -> pb::Run {
    eventually(Duration::from_secs(15), "the run running on a new owner", || async {
        let run = get(ingest, name).await;
        (run.state == RunState::Running as i32 && !run.owner.is_empty() && run.owner != not_owner).then_some(run)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_gives_running_runs_back_for_another_replica() {
    for backend in backends() {
        let label = backend.label;
        let mut mesh = start(&backend, slow_source().await).await;
        let name = create(&mesh.ingest).await.run.unwrap().name;
        let first = running(&mesh.ingest, &name, "").await;
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
            .unwrap()
            .expect("the watch saw the run");
        assert_eq!(
            (last.state, last.owner.as_str()),
            (RunState::Pending as i32, ""),
            "{label}: given back, waiting for a replica"
        );

        // The next replica takes it over at once (no lease to wait for) and runs it.
        mesh.restart_ingest().await;
        let taken = running(&mesh.ingest, &name, &first.owner).await;
        assert_eq!(taken.restarts, 0, "{label}: a run given back is not a restart");
        assert!(taken.failure.is_empty(), "{label}: {}", taken.failure);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_replicas_run_is_taken_over_then_failed_after_too_many_restarts() {
    for backend in backends() {
        let label = backend.label;
        let mut mesh = start(&backend, slow_source().await).await;
        let name = create(&mesh.ingest).await.run.unwrap().name;
        let mut owner = running(&mesh.ingest, &name, "").await.owner;
        for restart in 1..=2 {
            mesh.crash_ingest().await;
            mesh.restart_ingest().await;
            let taken = running(&mesh.ingest, &name, &owner).await;
            assert_eq!(taken.restarts, restart, "{label}");
            owner = taken.owner;
        }
        // The third crash: the run is failed, not started a fourth time.
        mesh.crash_ingest().await;
        mesh.restart_ingest().await;
        let failed = eventually(Duration::from_secs(15), "the run failed", || async {
            let run = get(&mesh.ingest, &name).await;
            (run.state == RunState::Failed as i32).then_some(run)
        })
        .await;
        assert!(
            failed
                .failure
                .starts_with("the replica running it stopped 3 times without ending it"),
            "{label}: {}",
            failed.failure
        );
        assert!(
            failed.failure.contains(&owner),
            "{label}: names the last owner: {}",
            failed.failure
        );
        assert_eq!(failed.owner, "", "{label}");
        let request = pb::ListRunsRequest {
            state: RunState::Running as i32,
            ..Default::default()
        };
        let running = mesh.ingest.clone().list_runs(request).await.unwrap().into_inner();
        assert!(running.runs.is_empty(), "{label}: nothing left running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starting_replica_leaves_a_live_replicas_runs_alone_and_joins_them() {
    for backend in backends() {
        let label = backend.label;
        let mesh = start(&backend, slow_source().await).await;
        let created = create(&mesh.ingest).await;
        assert!(!created.joined, "{label}");
        let name = created.run.unwrap().name;
        let first = running(&mesh.ingest, &name, "").await;

        // A rolling deploy: a new replica starts while the old one still runs the load.
        let replica = mesh.start_replica().await;
        let joined = create(&replica.ingest).await;
        assert!(
            joined.joined,
            "{label}: the same load, in progress on the other replica"
        );
        assert_eq!(joined.run.as_ref().unwrap().name, name, "{label}");
        // Several leases later the run is still the first replica's.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let still = get(&replica.ingest, &name).await;
        assert_eq!(
            (still.state, still.owner.as_str(), still.restarts),
            (RunState::Running as i32, first.owner.as_str(), 0),
            "{label}"
        );
        // Cancelled through the new replica, it stops on the old one.
        let request = pb::CancelRunRequest { name: name.clone() };
        replica.ingest.clone().cancel_run(request).await.unwrap();
        let cancelled = eventually(Duration::from_secs(10), "the run to end", || async {
            let run = get(&mesh.ingest, &name).await;
            (run.state == RunState::Cancelled as i32).then_some(run)
        })
        .await;
        assert!(cancelled.end_time.is_some(), "{label}");
        replica.crash().await;
    }
}
