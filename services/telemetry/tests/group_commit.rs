//! Group commit: concurrent WriteReadings calls join one transaction, and each is answered
//! only after the transaction holding it committed. Alone in its test binary, so the writer's
//! batch metric counts this test's batches only.

mod common;

use common::{micros, reading, start_telemetry};
use outpost_api::telemetry::v1 as pb;
use outpost_kit::testing::backends;
use outpost_telemetry::TelemetryConfig;

const T0: i64 = 1_733_054_400_000_000; // 2024-12-01T12:00:00Z
const WRITES: i64 = 200;

/// Batches the readings writer committed so far (`outpost_group_commit_batch_requests` count).
fn batches() -> u64 {
    let text = outpost_kit::metrics::render();
    text.lines()
        .find(|l| l.starts_with("outpost_group_commit_batch_requests_count{writer=\"telemetry_readings\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_transactions_and_are_answered_after_commit() {
    for backend in backends() {
        let client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let before = batches();
        // Every write goes to one sensor of one device: the sensor hub's shape.
        let writes = (0..WRITES).map(|i| {
            let mut client = client.clone();
            async move {
                let time = T0 + i * 1_000_000;
                let request = pb::WriteReadingsRequest {
                    readings: vec![reading("default", "temperature", time, i as f64)],
                };
                let written = client.write_readings(request).await.unwrap().into_inner().written;
                assert_eq!(written, 1);
                // Answered means committed: the reading is there for anyone to read.
                let request = pb::ListReadingsRequest {
                    parent: "devices/default/sensors/temperature".into(),
                    start_time: Some(common::ts(time)),
                    end_time: Some(common::ts(time + 1)),
                    ..Default::default()
                };
                let page = client.list_readings(request).await.unwrap().into_inner();
                assert_eq!(page.readings.len(), 1, "the reading at {time} is visible once answered");
            }
        });
        futures::future::join_all(writes).await;
        let batches = batches() - before;
        eprintln!(
            "{}: {WRITES} concurrent writes in {batches} transactions",
            backend.label
        );
        assert!(
            batches < WRITES as u64,
            "{}: {WRITES} concurrent writes took {batches} transactions",
            backend.label
        );

        let mut client = client;
        let all = common::all_readings(&mut client, "devices/default/sensors/temperature", 0).await;
        assert_eq!(all.len(), WRITES as usize, "{}", backend.label);
        let now = common::current(&mut client, "default", "temperature").await.unwrap();
        assert_eq!(micros(&now.time), T0 + (WRITES - 1) * 1_000_000, "{}", backend.label);
    }
}
