//! ListReadings: buckets against statistics computed here, page tokens that walk every row
//! once, time ranges, and the errors.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{Client, all_readings, micros, reading, start_telemetry, ts, write};
use outpost_api::telemetry::v1 as pb;
use outpost_kit::testing::backends;
use outpost_telemetry::TelemetryConfig;

const HOUR: i64 = 3_600_000_000;
const T0: i64 = 1_733_054_400_000_000; // 2024-12-01T12:00:00Z, a whole hour

/// Deterministic values with decimals, so averages are not trivially equal to a reading.
fn value(device: usize, i: i64) -> f64 {
    ((i * 37 + device as i64 * 11) % 97) as f64 / 4.0 - 5.0
}

#[derive(Debug, Default)]
struct Stats {
    count: i64,
    sum: f64,
    min: f64,
    max: f64,
}

/// Buckets of `width` computed here: start (floored, also before the epoch) → statistics.
fn expected(readings: &[(i64, f64)], width: i64) -> BTreeMap<i64, Stats> {
    let mut out: BTreeMap<i64, Stats> = BTreeMap::new();
    for &(time, value) in readings {
        let stats = out.entry(time.div_euclid(width) * width).or_insert(Stats {
            min: f64::MAX,
            max: f64::MIN,
            ..Default::default()
        });
        stats.count += 1;
        stats.sum += value;
        stats.min = stats.min.min(value);
        stats.max = stats.max.max(value);
    }
    out
}

async fn buckets(client: &mut Client, parent: &str, width: i64, page_size: i32) -> Vec<pb::ReadingBucket> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListReadingsRequest {
            parent: parent.into(),
            page_size,
            page_token: page_token.clone(),
            bucket: Some(prost_types::Duration {
                seconds: width / 1_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let page = client.list_readings(request).await.expect("ListReadings").into_inner();
        assert!(page.readings.is_empty());
        out.extend(page.buckets);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

fn assert_buckets(label: &str, got: &[pb::ReadingBucket], want: &BTreeMap<i64, Stats>) {
    assert_eq!(got.len(), want.len(), "{label}: {got:?}");
    for (bucket, (start, stats)) in got.iter().zip(want) {
        assert_eq!(micros(&bucket.start_time), *start, "{label}");
        assert_eq!(bucket.count, stats.count, "{label} at {start}");
        assert!(
            (bucket.avg - stats.sum / stats.count as f64).abs() < 1e-9,
            "{label} at {start}: {bucket:?}"
        );
        assert_eq!((bucket.min, bucket.max), (stats.min, stats.max), "{label} at {start}");
    }
}

#[tokio::test]
async fn buckets_match_statistics_computed_here() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let mut all = Vec::new();
        let mut first = Vec::new();
        // Two devices, a reading every 7 minutes for 5 hours, starting 2.5 hours before the
        // epoch for device 0 (floors of negative times) and at T0 for device 1.
        for device in 0..2 {
            let base = if device == 0 { -5 * HOUR / 2 } else { T0 };
            let readings: Vec<(i64, f64)> = (0..43).map(|i| (base + i * 7 * 60_000_000, value(device, i))).collect();
            let batch = readings
                .iter()
                .map(|&(t, v)| reading(&format!("box{device}"), "t", t, v))
                .collect();
            write(&mut client, batch).await;
            if device == 0 {
                first = readings.clone();
            }
            all.extend(readings);
        }
        let label = backend.label;
        assert_buckets(
            label,
            &buckets(&mut client, "devices/box0/sensors/t", HOUR, 0).await,
            &expected(&first, HOUR),
        );
        assert_buckets(
            label,
            &buckets(&mut client, "devices/-/sensors/t", HOUR, 0).await,
            &expected(&all, HOUR),
        );
        // Small pages walk the same buckets.
        assert_buckets(
            label,
            &buckets(&mut client, "devices/-/sensors/t", HOUR, 2).await,
            &expected(&all, HOUR),
        );
        let width = 90 * 60_000_000;
        assert_buckets(
            label,
            &buckets(&mut client, "devices/-/sensors/t", width, 3).await,
            &expected(&all, width),
        );
    }
}

#[tokio::test]
async fn page_tokens_walk_every_reading_exactly_once() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        // Three devices share times, so pages end in the middle of equal times.
        for device in ["a", "b", "c"] {
            let batch = (0..40)
                .map(|i| reading(device, "t", T0 + (i / 2) * 1_000_000 + i % 2, i as f64))
                .collect();
            write(&mut client, batch).await;
        }
        write(&mut client, vec![reading("a", "other", T0, 1.0)]).await;
        for page_size in [1, 7, 40, 1000] {
            let rows = all_readings(&mut client, "devices/-/sensors/t", page_size).await;
            let keys: Vec<(i64, String)> = rows.iter().map(|r| (micros(&r.time), r.device.clone())).collect();
            let unique: HashSet<&(i64, String)> = keys.iter().collect();
            assert_eq!(
                (keys.len(), unique.len()),
                (120, 120),
                "{} page size {page_size}",
                backend.label
            );
            assert!(
                keys.windows(2).all(|w| w[0].0 <= w[1].0),
                "{}: oldest first",
                backend.label
            );
        }
        let rows = all_readings(&mut client, "devices/b/sensors/t", 3).await;
        assert_eq!(rows.len(), 40, "{}", backend.label);
        assert!(
            rows.iter().all(|r| r.device == "b" && r.sensor == "t"),
            "{}",
            backend.label
        );
    }
}

#[tokio::test]
async fn a_time_range_includes_its_start_and_excludes_its_end() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        write(
            &mut client,
            (0..10)
                .map(|i| reading("a", "t", T0 + i * 1_000_000, i as f64))
                .collect(),
        )
        .await;
        let request = pb::ListReadingsRequest {
            parent: "devices/a/sensors/t".into(),
            start_time: Some(ts(T0 + 2_000_000)),
            end_time: Some(ts(T0 + 5_000_000)),
            ..Default::default()
        };
        let page = client.list_readings(request.clone()).await.unwrap().into_inner();
        let values: Vec<f64> = page.readings.iter().map(|r| r.value).collect();
        assert_eq!(values, vec![2.0, 3.0, 4.0], "{}", backend.label);

        let backwards = pb::ListReadingsRequest {
            end_time: Some(ts(T0)),
            ..request.clone()
        };
        let status = client.list_readings(backwards).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{}", backend.label);
        assert!(status.message().starts_with("end_time"), "{}", status.message());

        let narrow = pb::ListReadingsRequest {
            bucket: Some(prost_types::Duration { seconds: 0, nanos: 5 }),
            ..request.clone()
        };
        let status = client.list_readings(narrow).await.unwrap_err();
        assert!(status.message().starts_with("bucket"), "{}", status.message());

        let garbage = pb::ListReadingsRequest {
            page_token: "zz".into(),
            ..request.clone()
        };
        let status = client.list_readings(garbage).await.unwrap_err();
        assert!(status.message().starts_with("page_token"), "{}", status.message());

        let unknown = pb::ListReadingsRequest {
            parent: "devices/a/sensors/nope".into(),
            ..Default::default()
        };
        let status = client.list_readings(unknown).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{}", backend.label);

        let bad = pb::ListReadingsRequest {
            parent: "devices/a".into(),
            ..Default::default()
        };
        let status = client.list_readings(bad).await.unwrap_err();
        assert!(status.message().starts_with("parent"), "{}", status.message());
    }
}

#[tokio::test]
async fn a_page_token_belongs_to_its_query() {
    for backend in backends() {
        let label = backend.label;
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let readings: Vec<pb::Reading> = (0..4)
            .flat_map(|i| [reading("a", "t", T0 + i, 1.0), reading("b", "t", T0 + i, 2.0)])
            .collect();
        write(&mut client, readings).await;
        let first = pb::ListReadingsRequest {
            parent: "devices/a/sensors/t".into(),
            page_size: 2,
            ..Default::default()
        };
        let page = client.list_readings(first.clone()).await.unwrap().into_inner();
        assert!(!page.next_page_token.is_empty(), "{label}");
        // The same token on another sensor's readings, or with another range, is refused.
        for other in [
            pb::ListReadingsRequest {
                parent: "devices/b/sensors/t".into(),
                ..first.clone()
            },
            pb::ListReadingsRequest {
                start_time: Some(ts(T0 + 1)),
                ..first.clone()
            },
        ] {
            let request = pb::ListReadingsRequest {
                page_token: page.next_page_token.clone(),
                ..other
            };
            let refused = client.list_readings(request).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{label}: {refused:?}");
            assert!(
                refused.message().starts_with("page_token:"),
                "{label}: {}",
                refused.message()
            );
        }
        // With its own query it walks on.
        let next = pb::ListReadingsRequest {
            page_token: page.next_page_token,
            ..first
        };
        let page = client.list_readings(next).await.unwrap().into_inner();
        assert_eq!(page.readings.len(), 2, "{label}");
        assert!(page.readings.iter().all(|r| r.device == "a"), "{label}");
    }
}
