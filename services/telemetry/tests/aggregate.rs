//! AggregateReadings: status, the cache and its expiry, the window, and the openSenseMap
//! fixture's mean temperature.

mod common;

use std::time::Duration;

use common::{Client, now, reading, start_telemetry, temperature, write};
use outpost_api::telemetry::v1 as pb;
use outpost_kit::testing::backends;
use outpost_telemetry::TelemetryConfig;

const HOUR: i64 = 3_600_000_000;

async fn aggregate(client: &mut Client, kind: &str, window_seconds: Option<i64>) -> pb::AggregateReadingsResponse {
    let window = window_seconds.map(|seconds| prost_types::Duration { seconds, nanos: 0 });
    let request = pb::AggregateReadingsRequest {
        kind: kind.into(),
        window,
    };
    client
        .aggregate_readings(request)
        .await
        .expect("AggregateReadings")
        .into_inner()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn the_status_is_cached_until_it_expires() {
    for backend in backends() {
        let settings = TelemetryConfig {
            aggregate_cache_seconds: 1,
            ..Default::default()
        };
        let mut client = start_telemetry(&backend, settings, None).await;
        // With no readings there is nothing to average, and nothing is cached.
        let empty = aggregate(&mut client, "", None).await;
        assert_eq!(
            (empty.device_count, empty.average, empty.cached),
            (0, None, false),
            "{}",
            backend.label
        );
        let t = now();
        let cold = vec![
            temperature("a", t, 5.0),
            temperature("b", t, 6.0),
            temperature("c", t, 7.0),
        ];
        write(&mut client, cold).await;
        // Outside the default window of an hour: left out.
        write(&mut client, vec![temperature("old", t - 3 * HOUR / 2, 200.0)]).await;

        let first = aggregate(&mut client, "", None).await;
        assert!(close(first.average, 6.0), "{}: {first:?}", backend.label);
        assert_eq!(
            (first.kind.as_str(), first.unit.as_str(), first.device_count),
            ("temperature", "°C", 3)
        );
        assert_eq!(
            (first.status(), first.status_text.as_str()),
            (pb::AggregateStatus::TooCold, "Too cold")
        );
        assert!(!first.cached, "{}", backend.label);

        // A write does not invalidate the cached answer.
        write(&mut client, vec![temperature("d", now(), 42.0)]).await;
        let second = aggregate(&mut client, "temperature", None).await;
        assert!(second.cached, "{}: {second:?}", backend.label);
        assert_eq!(
            (second.average, second.device_count, second.compute_time),
            (first.average, 3, first.compute_time)
        );

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let third = aggregate(&mut client, "temperature", None).await;
        assert!(!third.cached, "{}: {third:?}", backend.label);
        assert!(close(third.average, 15.0), "{}: {third:?}", backend.label);
        assert_eq!(
            (third.device_count, third.status_text.as_str()),
            (4, "Good"),
            "{}",
            backend.label
        );

        // A wider window is another cache entry, and takes the old device in.
        let wide = aggregate(&mut client, "temperature", Some(2 * 3600)).await;
        assert!(!wide.cached && close(wide.average, 52.0), "{}: {wide:?}", backend.label);
        assert_eq!(
            (wide.status(), wide.status_text.as_str()),
            (pb::AggregateStatus::TooHot, "Too hot")
        );

        // Kinds without thresholds, and kinds without values.
        write(
            &mut client,
            vec![pb::Reading {
                kind: "humidity".into(),
                ..reading("a", "rh", now(), 40.0)
            }],
        )
        .await;
        let humidity = aggregate(&mut client, "humidity", None).await;
        assert!(close(humidity.average, 40.0), "{}: {humidity:?}", backend.label);
        assert_eq!(
            (humidity.status(), humidity.status_text.as_str()),
            (pb::AggregateStatus::Unspecified, "")
        );
        let none = aggregate(&mut client, "pressure", None).await;
        assert_eq!((none.average, none.device_count), (None, 0), "{}", backend.label);

        let request = pb::AggregateReadingsRequest {
            kind: "bad kind".into(),
            window: None,
        };
        let status = client.aggregate_readings(request).await.unwrap_err();
        assert!(status.message().starts_with("kind"), "{}", status.message());
    }
}

/// Each box's temperature (the first sensor titled `Temperatur` or `Temperature`).
fn sensebox_temperatures() -> Vec<(String, f64)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/sensebox/sample_data.json");
    let text = std::fs::read_to_string(path).expect("the senseBox fixture");
    let boxes: Vec<serde_json::Value> = serde_json::from_str(&text).expect("fixture JSON");
    boxes
        .iter()
        .filter_map(|b| {
            let sensors = b["sensors"].as_array()?;
            let sensor = sensors.iter().find(|s| {
                let title = s["title"].as_str().unwrap_or_default();
                title.eq_ignore_ascii_case("temperatur") || title.eq_ignore_ascii_case("temperature")
            })?;
            let value = sensor["lastMeasurement"]["value"].as_str()?.parse().ok()?;
            Some((b["_id"].as_str()?.to_string(), value))
        })
        .collect()
}

#[tokio::test]
async fn the_sensebox_fixture_averages_to_its_mean() {
    let temperatures = sensebox_temperatures();
    assert_eq!(temperatures.len(), 25);
    let mean = temperatures.iter().map(|(_, v)| v).sum::<f64>() / temperatures.len() as f64;
    assert_eq!(format!("{mean:.2}"), "19.12");
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let t = now();
        let batch = temperatures
            .iter()
            .map(|(id, value)| temperature(id, t, *value))
            .collect();
        assert_eq!(write(&mut client, batch).await, 25);
        let got = aggregate(&mut client, "temperature", None).await;
        assert!(close(got.average, mean), "{}: {got:?} vs {mean}", backend.label);
        assert_eq!(
            (got.device_count, got.status_text.as_str(), got.cached),
            (25, "Good", false)
        );
    }
}
