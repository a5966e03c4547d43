//! A batch telemetry refuses is bisected: the readings it refuses or fails on are found in
//! about 2·log2(n) calls per bad reading, not one call per reading, and the rest is written.

mod common;

use std::time::Duration;

use outpost_api::telemetry::v1 as tpb;
use outpost_ingest::IngestConfig;
use outpost_ingest::telemetry::{Fate, Telemetry};
use outpost_kit::testing::backends;
use tonic::Code;

use common::{readings, start};

fn reading(second: i64, value: f64) -> tpb::Reading {
    tpb::Reading {
        device: "bisect-dev".into(),
        sensor: "temperature".into(),
        value,
        time: Some(prost_types::Timestamp {
            seconds: 1_733_054_400 + second,
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_batch_is_bisected_to_its_bad_readings() {
    for backend in backends() {
        let label = backend.label;
        let mesh = start(&backend, IngestConfig::default()).await;
        common::poison_value(&mesh, &backend, 666.0).await;
        let telemetry = Telemetry::connect(&mesh.telemetry_url, Duration::from_secs(5), &Default::default()).unwrap();
        let mut batch: Vec<tpb::Reading> = (0..1000).map(|i| reading(i, 20.0)).collect();
        // Refused as invalid, and failed on by the database.
        batch[3].value = f64::NAN;
        batch[500].value = f64::INFINITY;
        batch[871].value = 666.0;

        let bisected = telemetry.write_bisecting(&batch).await.unwrap();
        let bad: Vec<(usize, Code, bool)> = bisected
            .fates
            .iter()
            .enumerate()
            .filter_map(|(i, fate)| match fate {
                Fate::Written => None,
                Fate::Refused(status) => Some((i, status.code(), true)),
                Fate::Failed(status) => Some((i, status.code(), false)),
            })
            .collect();
        assert_eq!(
            bad,
            [
                (3, Code::InvalidArgument, true),
                (500, Code::InvalidArgument, true),
                (871, Code::Internal, false)
            ],
            "{label}"
        );
        // Three bad readings among 1000: at most 3·2·⌈log2 1000⌉ calls, and the first.
        assert!(bisected.calls <= 61, "{label}: {} calls", bisected.calls);
        let stored = readings(&mesh.telemetry, "bisect-dev", "temperature").await;
        assert_eq!(stored.len(), 997, "{label}: everything else is written");

        let clean: Vec<tpb::Reading> = (2000..2100).map(|i| reading(i, 21.0)).collect();
        let bisected = telemetry.write_bisecting(&clean).await.unwrap();
        assert_eq!(bisected.calls, 1, "{label}: a good batch is one call");
        assert!(bisected.fates.iter().all(Fate::is_written));

        let down = Telemetry::connect(
            &common::unreachable_url().await,
            Duration::from_secs(1),
            &Default::default(),
        )
        .unwrap();
        let status = down.write_bisecting(&clean).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "{label}: transient failures are not bisected"
        );
    }
}
