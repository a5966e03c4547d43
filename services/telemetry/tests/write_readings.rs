//! WriteReadings: out-of-order arrival, duplicates, all-or-nothing validation, sensors created
//! on the way, and the plain-Rust write path with a full batch.

mod common;

use common::{all_readings, current, micros, reading, start_telemetry, write};
use outpost_api::telemetry::v1 as pb;
use outpost_kit::storage::Storage;
use outpost_kit::testing::backends;
use outpost_telemetry::series::{self, SeriesQuery};
use outpost_telemetry::{Reading, Readings, TelemetryConfig};

const T0: i64 = 1_733_054_400_000_000; // 2024-12-01T12:00:00Z

#[tokio::test]
async fn the_newest_time_is_current_whatever_the_arrival_order() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        write(&mut client, vec![reading("box", "t", T0 + 3_000_000, 3.0)]).await;
        write(&mut client, vec![reading("box", "t", T0 + 1_000_000, 1.0)]).await;
        let now = current(&mut client, "box", "t").await.unwrap();
        assert_eq!(
            (now.value, micros(&now.time)),
            (3.0, T0 + 3_000_000),
            "{}",
            backend.label
        );

        // Within one batch too: the newest time wins, not the last position.
        let batch = vec![
            reading("box", "t", T0 + 5_000_000, 5.0),
            reading("box", "t", T0 + 4_000_000, 4.0),
        ];
        assert_eq!(write(&mut client, batch).await, 2);
        let now = current(&mut client, "box", "t").await.unwrap();
        assert_eq!(
            (now.value, micros(&now.time)),
            (5.0, T0 + 5_000_000),
            "{}",
            backend.label
        );

        let device = client
            .get_device(pb::GetDeviceRequest {
                name: "devices/box".into(),
            })
            .await
            .unwrap();
        let device = device.into_inner().device.unwrap();
        assert_eq!(micros(&device.last_seen_time), T0 + 5_000_000, "{}", backend.label);

        let times: Vec<i64> = all_readings(&mut client, "devices/box/sensors/t", 0)
            .await
            .iter()
            .map(|r| micros(&r.time))
            .collect();
        let expected: Vec<i64> = (1..=5).filter(|s| *s != 2).map(|s| T0 + s * 1_000_000).collect();
        assert_eq!(times, expected, "{}", backend.label);
    }
}

#[tokio::test]
async fn a_repeated_reading_replaces_its_value() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        write(&mut client, vec![reading("box", "t", T0, 1.0)]).await;
        write(&mut client, vec![reading("box", "t", T0, 2.0)]).await;
        let rows = all_readings(&mut client, "devices/box/sensors/t", 0).await;
        assert_eq!(
            rows.iter().map(|r| r.value).collect::<Vec<_>>(),
            vec![2.0],
            "{}",
            backend.label
        );

        // Duplicates within one batch: stored once, the last one wins.
        let batch = vec![
            reading("box", "t", T0, 3.0),
            reading("box", "t", T0 + 1, 9.0),
            reading("box", "t", T0, 4.0),
        ];
        assert_eq!(write(&mut client, batch).await, 2, "{}", backend.label);
        let rows = all_readings(&mut client, "devices/box/sensors/t", 0).await;
        assert_eq!(
            rows.iter().map(|r| r.value).collect::<Vec<_>>(),
            vec![4.0, 9.0],
            "{}",
            backend.label
        );
        assert_eq!(
            current(&mut client, "box", "t").await.unwrap().value,
            9.0,
            "{}",
            backend.label
        );
    }
}

#[tokio::test]
async fn one_bad_reading_rejects_the_batch_and_names_its_field() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let good = |i: i64| reading("box", "t", T0 + i, i as f64);
        let cases = [
            (3, reading("box", "bad sensor", T0, 1.0), "readings[3].sensor"),
            (1, reading("box/1", "t", T0, 1.0), "readings[1].device"),
            (2, reading("box", "t", T0, f64::INFINITY), "readings[2].value"),
            (
                4,
                pb::Reading {
                    time: None,
                    ..reading("box", "t", T0, 1.0)
                },
                "readings[4].time",
            ),
        ];
        for (at, bad, field) in cases {
            let mut readings: Vec<pb::Reading> = (0..5).map(good).collect();
            readings[at] = bad;
            let status = client
                .write_readings(pb::WriteReadingsRequest { readings })
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{}: {status:?}",
                backend.label
            );
            assert!(
                status.message().starts_with(field),
                "{}: {}",
                backend.label,
                status.message()
            );
        }
        // Two bad readings: the first is named, whatever is wrong with the second.
        let mut readings: Vec<pb::Reading> = (0..5).map(good).collect();
        readings[1].sensor = "bad sensor".into();
        readings[4].time = None;
        let status = client
            .write_readings(pb::WriteReadingsRequest { readings })
            .await
            .unwrap_err();
        assert!(
            status.message().starts_with("readings[1].sensor"),
            "{}",
            status.message()
        );
        let devices = client
            .list_devices(pb::ListDevicesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(devices.devices.is_empty(), "{}: {:?}", backend.label, devices.devices);
        let status = current(&mut client, "box", "t").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{}", backend.label);
    }
}

#[tokio::test]
async fn sensors_are_created_with_their_kind_and_unit() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let sensor = |client: &mut common::Client| {
            let mut client = client.clone();
            async move {
                let name = "devices/box/sensors/t1".to_string();
                client
                    .get_sensor(pb::GetSensorRequest { name })
                    .await
                    .unwrap()
                    .into_inner()
                    .sensor
                    .unwrap()
            }
        };
        write(&mut client, vec![reading("box", "t1", T0, 1.0)]).await;
        let s = sensor(&mut client).await;
        assert_eq!((s.kind.as_str(), s.unit.as_str()), ("t1", ""), "{}", backend.label);

        let given = pb::Reading {
            unit: "°C".into(),
            kind: "temperature".into(),
            ..reading("box", "t1", T0 + 1, 2.0)
        };
        write(&mut client, vec![given]).await;
        let s = sensor(&mut client).await;
        assert_eq!(
            (s.kind.as_str(), s.unit.as_str()),
            ("temperature", "°C"),
            "{}",
            backend.label
        );

        // Not given keeps what is stored.
        write(&mut client, vec![reading("box", "t1", T0 + 2, 3.0)]).await;
        let s = sensor(&mut client).await;
        assert_eq!(
            (s.kind.as_str(), s.unit.as_str()),
            ("temperature", "°C"),
            "{}",
            backend.label
        );
        assert_eq!(s.name, "devices/box/sensors/t1");
        assert_eq!(
            current(&mut client, "box", "t1").await.unwrap().unit,
            "°C",
            "{}",
            backend.label
        );
    }
}

#[tokio::test]
async fn the_domain_writes_a_full_batch_without_a_network() {
    for backend in backends() {
        let storage = Storage::open(&backend.storage, "telemetry", outpost_telemetry::migrations())
            .await
            .unwrap();
        let readings = Readings::new(storage.db.clone());
        let batch: Vec<Reading> = (0..10_000)
            .map(|i| Reading {
                device: format!("box{}", i % 50),
                sensor: "temperature".into(),
                value: f64::from(i) / 10.0,
                time: T0 + i64::from(i / 50) * 1_000_000,
                unit: "°C".into(),
                kind: "temperature".into(),
            })
            .collect();
        assert_eq!(
            readings.write_readings(batch.clone()).await.unwrap(),
            10_000,
            "{}",
            backend.label
        );
        // Again: idempotent, and the cached sensor keys are used.
        assert_eq!(
            readings.write_readings(batch.clone()).await.unwrap(),
            10_000,
            "{}",
            backend.label
        );

        let query = SeriesQuery {
            device: "-",
            sensor: "temperature",
            start: None,
            end: None,
            bucket: None,
        };
        let page = series::list(&storage.db, &query, 10_000, "").await.unwrap();
        assert_eq!(page.readings.len(), 10_000, "{}", backend.label);
        assert!(page.next_page_token.is_empty(), "{}", backend.label);

        let too_many = vec![batch[0].clone(); 10_001];
        let err = readings.write_readings(too_many).await.unwrap_err();
        assert!(err.to_string().starts_with("readings:"), "{err}");
    }
}

#[tokio::test]
async fn concurrent_batches_over_the_same_devices_all_commit() {
    for backend in backends() {
        let client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        // Eight writers, each touching the same ten devices (in different orders), new sensors
        // included, at once.
        let writers = (0..8i64).map(|w| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let batch = (0..200i64)
                    .map(|i| {
                        let device = format!("box{}", (i + w * 3) % 10);
                        let sensor = format!("s{}", (i + w) % 4);
                        reading(&device, &sensor, T0 + w * 1_000 + i, (w * 1000 + i) as f64)
                    })
                    .collect();
                write(&mut client, batch).await
            })
        });
        let written: Vec<i64> = futures::future::try_join_all(writers).await.unwrap();
        assert_eq!(written, vec![200; 8], "{}", backend.label);
        let mut client = client.clone();
        let mut total = 0;
        for sensor in 0..4 {
            total += all_readings(&mut client, &format!("devices/-/sensors/s{sensor}"), 1000)
                .await
                .len();
        }
        assert_eq!(total, 1600, "{}", backend.label);
        let metrics = outpost_kit::metrics::render();
        assert!(
            metrics.contains("outpost_telemetry_readings_written_total"),
            "{metrics}"
        );
        assert!(
            metrics.contains("outpost_telemetry_write_batch_readings_bucket"),
            "{metrics}"
        );
    }
}
