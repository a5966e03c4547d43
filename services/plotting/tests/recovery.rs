//! Jobs outlive their workers: a job queued while no plotting service runs is rendered once
//! one starts; a job whose worker stopped mid-job (it had taken the job from the queue and
//! started its attempt) is delivered again after its lease and succeeds once; a job whose data
//! cannot be read fails after three attempts with the last error. On every test backend.

mod common;

use std::time::{Duration, Instant};

use common::*;
use outpost_api::plotting::v1 as pb;
use outpost_kit::storage::Storage;
use outpost_kit::testing::{Proxy, backends};
use outpost_plotting::PlottingConfig;
use outpost_plotting::spec::PlotRequest;
use outpost_plotting::store::{Start, Store};

const HOUR: i64 = 3_600_000_000;
/// 2024-12-01T00:00:00Z.
const DAY: i64 = 1_733_011_200_000_000;

fn settings() -> PlottingConfig {
    PlottingConfig {
        plot_workers: Some(2),
        plot_lease_seconds: 1,
    }
}

#[tokio::test]
async fn a_job_whose_worker_stopped_mid_job_is_delivered_again_and_succeeds_once() {
    for backend in backends() {
        let label = backend.label;
        let telemetry = start_telemetry(&backend).await;
        write_readings(&telemetry.url, "burrow", "t", DAY, &[1.0, 2.0, 3.0]).await;
        let config = plotting_config(&backend, &telemetry.url);
        let storage = Storage::open(&config.storage(), "plotting", outpost_plotting::migrations())
            .await
            .unwrap();
        let jobs = outpost_plotting::open_jobs(&config, &settings(), &storage)
            .await
            .unwrap();
        let request = |end| {
            PlotRequest::from_pb(&readings_job("devices/burrow/sensors/t", DAY, end, pb::PlotFormat::Png)).unwrap()
        };
        // Queued while no plotting service runs.
        let waiting = jobs.create(request(DAY + HOUR)).await.unwrap();
        let killed = jobs.create(request(DAY + 2 * HOUR)).await.unwrap();
        // A worker takes the second job, starts its attempt, and dies without a word.
        let queue = storage.queue(outpost_plotting::jobs::QUEUE, settings().queue_options());
        let mut taken = Vec::new();
        while taken.len() < 2 {
            taken.extend(queue.pull("killed-worker", 2, Duration::from_secs(1)).await.unwrap());
        }
        let held = taken
            .iter()
            .find(|d| d.payload == killed.id.as_bytes())
            .expect("the job is in the queue");
        let other: Vec<String> = taken.iter().filter(|d| d.id != held.id).map(|d| d.id.clone()).collect();
        queue.nack("killed-worker", &other, Duration::ZERO).await.unwrap();
        match Store::new(storage.db.clone()).start(&killed.id, 3).await.unwrap() {
            Start::Started(job) => assert_eq!(job.attempts, 1),
            other => panic!("{label}: not started: {other:?}"),
        }

        let service = start_plotting(&backend, &telemetry.url, settings()).await;
        let mut client = plotting(&service.url);
        let (_, waiting) = until_ended(&mut client, &format!("plotJobs/{}", waiting.id)).await;
        assert_eq!(waiting.state(), pb::PlotJobState::Succeeded, "{label}: {waiting:?}");
        assert_eq!(waiting.attempts, 1);
        let (states, killed) = until_ended(&mut client, &format!("plotJobs/{}", killed.id)).await;
        assert_eq!(killed.state(), pb::PlotJobState::Succeeded, "{label}: {killed:?}");
        assert_eq!(
            killed.attempts, 2,
            "{label}: the stopped attempt and the one that succeeded"
        );
        assert_eq!(states.iter().filter(|s| **s == pb::PlotJobState::Succeeded).count(), 1);
        assert_eq!(killed.point_count, 3);
        let (_, png) = download(&mut client, &killed.name).await.unwrap();
        assert_eq!(image::load_from_memory(&png).unwrap().width(), 1024);
        // Both entries are acked: nothing is delivered a third time.
        let started = Instant::now();
        while !queue.is_empty().await.unwrap() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{label}: the queue keeps the jobs"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service.stop().await;
        telemetry.stop().await;
    }
}

#[tokio::test]
async fn a_job_that_fails_three_times_is_failed_with_its_last_error() {
    for backend in backends() {
        let label = backend.label;
        let telemetry = start_telemetry(&backend).await;
        // Telemetry unreachable: every attempt fails for now.
        let down = Proxy::stopped(telemetry.url.trim_start_matches("http://").parse().unwrap()).await;
        let service = start_plotting(&backend, &format!("http://{}", down.addr), settings()).await;
        let mut client = plotting(&service.url);
        let job = create(
            &mut client,
            readings_job("devices/burrow/sensors/t", DAY, DAY + HOUR, pb::PlotFormat::Png),
        )
        .await;
        let (states, job) = until_ended(&mut client, &job.name).await;
        assert_eq!(job.state(), pb::PlotJobState::Failed, "{label}: {job:?}");
        assert_eq!(job.attempts, 3, "{label}");
        assert!(job.error.starts_with("telemetry:"), "{label}: {}", job.error);
        assert!(states.contains(&pb::PlotJobState::Running));
        let refused = download(&mut client, &job.name).await.unwrap_err();
        assert!(refused.message().contains(&job.error), "{}", refused.message());
        service.stop().await;
        telemetry.stop().await;
    }
}
