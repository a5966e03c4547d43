//! PushReadings end to end: batches committed to a real telemetry, idempotently, with bad
//! readings rejected by field.

mod common;

use outpost_api::ingest::v1::{self as pb};
use outpost_api::telemetry::v1 as tpb;
use outpost_ingest::IngestConfig;
use outpost_kit::testing::backends;
use tonic::Code;

use common::{micros, readings, start};

const BASE: i64 = 1_733_054_400; // 2024-12-01 12:00:00 UTC

fn reading(device: &str, seconds: i64, value: f64) -> pb::PushedReading {
    pb::PushedReading {
        device: device.into(),
        sensor: "temperature".into(),
        value,
        unit: "°C".into(),
        time: Some(prost_types::Timestamp {
            seconds: BASE + seconds,
            nanos: 0,
        }),
    }
}

fn batches(batches: Vec<Vec<pb::PushedReading>>) -> impl tokio_stream::Stream<Item = pb::PushReadingsRequest> {
    tokio_stream::iter(batches.into_iter().map(|readings| pb::PushReadingsRequest { readings }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_order_and_repeated_readings_are_stored_once_newest_time_current() {
    for backend in backends() {
        let mesh = start(&backend, IngestConfig::default()).await;
        let pushed = batches(vec![
            vec![
                reading("push-a", 30, 3.0),
                reading("push-a", 10, 1.0),
                reading("push-a", 20, 2.0),
            ],
            vec![
                reading("push-a", 20, 2.5),
                reading("push-a", 10, 1.0),
                reading("push-a", 10, 1.0),
            ],
        ]);
        let summary = mesh.ingest.clone().push_readings(pushed).await.unwrap().into_inner();
        assert_eq!(
            (summary.accepted, summary.rejected),
            (6, 0),
            "{}: {:?}",
            backend.label,
            summary.errors
        );

        let stored = readings(&mesh.telemetry, "push-a", "temperature").await;
        let got: Vec<(i64, f64)> = stored
            .iter()
            .map(|r| ((micros(r) / 1_000_000) - BASE, r.value))
            .collect();
        assert_eq!(got, vec![(10, 1.0), (20, 2.5), (30, 3.0)], "{}", backend.label);
        let current = mesh
            .telemetry
            .clone()
            .get_current_value(tpb::GetCurrentValueRequest {
                name: "devices/push-a/sensors/temperature/currentValue".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .reading
            .unwrap();
        assert_eq!(
            (current.value, current.unit.as_str()),
            (3.0, "°C"),
            "{}: newest time wins",
            backend.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_reading_is_rejected_naming_its_field_and_the_rest_is_kept() {
    for backend in backends() {
        let mesh = start(&backend, IngestConfig::default()).await;
        let mut no_time = reading("push-b", 2, 1.0);
        no_time.time = None;
        let mut no_device = reading("", 3, 7.0);
        no_device.sensor = "push_b_sensor".into();
        let pushed = batches(vec![vec![
            reading("push-b", 1, 1.0),
            reading("push-b", 2, f64::INFINITY),
            no_time,
            reading("bad device!", 4, 1.0),
            no_device,
        ]]);
        let summary = mesh.ingest.clone().push_readings(pushed).await.unwrap().into_inner();
        assert_eq!((summary.accepted, summary.rejected), (2, 3), "{}", backend.label);
        let messages: Vec<&str> = summary.errors.iter().map(|e| e.message.as_str()).collect();
        assert!(messages[0].starts_with("readings[1].value:"), "{messages:?}");
        assert_eq!(messages[1], "readings[2].time: required");
        assert!(messages[2].starts_with("readings[3].device:"), "{messages:?}");
        assert_eq!(readings(&mesh.telemetry, "push-b", "temperature").await.len(), 1);
        assert_eq!(
            readings(&mesh.telemetry, "default", "push_b_sensor").await.len(),
            1,
            "device defaults"
        );

        let too_many = batches(vec![(0..10_001).map(|i| reading("push-b", i, 1.0)).collect()]);
        let refused = mesh.ingest.clone().push_readings(too_many).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{}", backend.label);
        assert!(refused.message().starts_with("readings:"), "{}", refused.message());
    }
}
