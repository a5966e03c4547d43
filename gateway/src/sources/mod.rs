//! The source systems' routes (design section 5), written by hand over the services' typed
//! clients: SEN, the sensor hub, in [`sensors`]; BOX, the senseBox temperature service, in
//! [`sensebox`]; IMG, the image management engine, in [`images`]; CAM, the burrow camera, in
//! [`camera`]; ROV, the rover tracker, in [`rover`] and its plots in [`plots`]. They keep the
//! source systems' paths and methods, take and answer JSON, and answer every error with the
//! gateway's JSON error body.
//!
//! They bring no fallback of their own, so they merge into [`crate::routes`]; their writes pass
//! the bearer-token check of [`crate::layer`] like every other route.

mod camera;
mod images;
mod plots;
mod rover;
mod sensebox;
mod sensors;

use axum::Json;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::Upstreams;
use crate::error::ApiError;
use crate::openapi::Route;
use crate::ops;

/// The SEN, BOX, IMG, CAM and ROV routes (ROV with its plot routes).
pub fn routes(upstreams: &Upstreams) -> Router {
    Router::new()
        .merge(sensors::routes(upstreams))
        .merge(sensebox::routes(upstreams))
        .merge(images::routes(upstreams))
        .merge(camera::routes(upstreams))
        .merge(rover::routes(upstreams))
        .merge(plots::routes(upstreams))
}

/// The SEN, BOX and IMG routes, for the OpenAPI document: each module declares its own next to
/// its handlers, in an `openapi()` beside its `routes()`.
pub fn openapi() -> Vec<Route> {
    [
        sensors::openapi(),
        sensebox::openapi(),
        images::openapi(),
        camera::openapi(),
        rover::openapi(),
        plots::openapi(),
    ]
    .concat()
}

/// 200 `{"status": "ok", "services": …}` when every one of `services` (short names) and its
/// dependencies serve by gRPC health; else 503 naming what does not.
async fn health(upstreams: &Upstreams, services: &[&str]) -> Result<Json<Value>, ApiError> {
    let readiness = ops::check_services(upstreams, services).await;
    let down: Vec<(&str, String)> = readiness
        .services
        .iter()
        .filter_map(|(name, service)| service.problem().map(|problem| (*name, problem)))
        .collect();
    if down.is_empty() {
        return Ok(Json(json!({ "status": "ok", "services": readiness.services })));
    }
    let message = down
        .iter()
        .map(|(name, problem)| format!("{name} ({problem})"))
        .collect::<Vec<_>>()
        .join(", ");
    let metadata: serde_json::Map<String, Value> = down
        .into_iter()
        .map(|(name, problem)| (name.to_string(), Value::String(problem)))
        .collect();
    Err(
        ApiError::unavailable(format!("not serving: {message}")).with_details(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "DEPENDENCY_NOT_SERVING",
            "domain": "outpost",
            "metadata": metadata,
        }])),
    )
}

/// A protobuf timestamp as RFC 3339, UTC (`2024-12-01T12:00:00Z`).
fn rfc3339(time: &prost_types::Timestamp) -> Option<String> {
    let nanos = u32::try_from(time.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(time.seconds, nanos).map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A reading as the sensor hub answered it: exactly `{"sensor", "value", "timestamp"}`, the
/// time as `YYYY-MM-DD HH:MM:SS` UTC; `unit` when the reading has one, `device` when given.
fn hub_reading(
    sensor: &str,
    value: f64,
    time: Option<&prost_types::Timestamp>,
    unit: &str,
    device: Option<&String>,
) -> Value {
    let timestamp = time
        .and_then(|t| outpost_kit::time::from_timestamp("time", t).ok())
        .and_then(outpost_kit::time::format_hub);
    let mut body = json!({ "sensor": sensor, "value": value, "timestamp": timestamp });
    if !unit.is_empty() {
        body["unit"] = Value::String(unit.to_string());
    }
    if let Some(device) = device {
        body["device"] = Value::String(device.clone());
    }
    body
}

/// A `google.rpc.ResourceInfo` detail naming an ingest run.
fn run_detail(run: &str) -> Value {
    json!([{
        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
        "resourceType": "outpost.ingest.v1.Run",
        "resourceName": run,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let time = prost_types::Timestamp {
            seconds: 1_733_054_400,
            nanos: 0,
        };
        assert_eq!(rfc3339(&time).as_deref(), Some("2024-12-01T12:00:00Z"));
        let fraction = prost_types::Timestamp {
            seconds: 1_733_054_400,
            nanos: 250_000_000,
        };
        assert_eq!(rfc3339(&fraction).as_deref(), Some("2024-12-01T12:00:00.250Z"));
        let negative = prost_types::Timestamp { seconds: 0, nanos: -1 };
        assert_eq!(rfc3339(&negative), None);
    }

    #[test]
    fn readings_answer_the_sensor_hubs_shape() {
        let time = prost_types::Timestamp {
            seconds: 1_733_054_460,
            nanos: 0,
        };
        assert_eq!(
            hub_reading("temperature", 15.0, Some(&time), "", None),
            json!({"sensor": "temperature", "value": 15.0, "timestamp": "2024-12-01 12:01:00"})
        );
        let device = "box-1".to_string();
        assert_eq!(
            hub_reading("t", 1.5, Some(&time), "°C", Some(&device)),
            json!({"sensor": "t", "value": 1.5, "timestamp": "2024-12-01 12:01:00", "unit": "°C", "device": "box-1"})
        );
    }
}
