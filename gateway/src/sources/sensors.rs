//! SEN, the event-driven sensor hub: `GET /healthcheck`, `POST /add_rawdata/`,
//! `GET /get_current_value/{sensor}`, `GET /sensordata/{sensor}`. Its readings name no device:
//! they are kept under the device `default` (a message or a `?device=` query may name
//! another). Posted messages go to ingest as they came (`IngestSensorMessages`), so one parser,
//! in ingest, reads every message of the hub's format. Readings are answered in the hub's own
//! shape, `{"sensor", "value", "timestamp"}` with `YYYY-MM-DD HH:MM:SS` UTC times, and nothing
//! more unless asked (`device` for a `?device=` query).

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use bytes::Bytes;
use http::StatusCode;
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as ingest};
use outpost_api::telemetry::v1 as pb;
use outpost_api::telemetry::v1::telemetry_service_client::TelemetryServiceClient;
use outpost_kit::client::{Traced, retry};
use outpost_kit::ids::{DEFAULT_DEVICE, ID_RULE, is_valid_id};
use outpost_kit::time::{parse_utc, to_timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{health, hub_reading};
use crate::Upstreams;
use crate::error::ApiError;
use crate::openapi::{Route, schemas};

/// The services the sensor hub needs.
const SERVICES: [&str; 2] = ["telemetry", "ingest"];
/// Readings `/sensordata` answers when no `limit` is given.
const DEFAULT_LIMIT: i32 = 1000;
/// The largest `limit` of `/sensordata`.
const MAX_READINGS: usize = 10_000;

#[derive(Clone)]
struct Sensors {
    upstreams: Upstreams,
    telemetry: TelemetryServiceClient<Traced>,
    ingest: IngestServiceClient<Traced>,
}

/// The sensor hub's routes (`/add_rawdata` without the slash too).
pub fn routes(upstreams: &Upstreams) -> Router {
    let state = Sensors {
        upstreams: upstreams.clone(),
        telemetry: TelemetryServiceClient::new(upstreams.telemetry.clone()),
        ingest: IngestServiceClient::new(upstreams.ingest.clone()),
    };
    Router::new()
        .route("/healthcheck", get(healthcheck))
        .route("/add_rawdata/", post(add_rawdata))
        .route("/add_rawdata", post(add_rawdata))
        .route("/get_current_value/{sensor}", get(current_value))
        .route("/sensordata/{sensor}", get(sensor_data))
        .with_state(state)
}

/// The sensor hub's routes, for the OpenAPI document.
pub fn openapi() -> Vec<Route> {
    let reading = json!({
        "type": "object",
        "required": ["sensor", "value", "timestamp"],
        "additionalProperties": false,
        "properties": {
            "sensor": { "type": "string" },
            "value": { "type": "number" },
            "timestamp": { "type": "string", "example": "2024-12-01 12:01:00", "description": "`YYYY-MM-DD HH:MM:SS`, UTC." },
            "unit": { "type": "string" },
            "device": { "type": "string", "description": "Only when the message or the query named a device." },
        },
    });
    let message = json!({
        "type": "object",
        "required": ["sensor", "value", "timestamp"],
        "description": "One message of the hub's format; other keys are ignored.",
        "properties": {
            "sensor": schemas::id(),
            "value": { "type": "number", "minimum": -1.0e12, "maximum": 1.0e12, "description": "Or a numeric string." },
            "timestamp": {
                "type": "string",
                "description": "`YYYY-MM-DD HH:MM:SS[.fff]` UTC, or RFC 3339.",
                "pattern": "^(19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$",
                "example": "2024-12-01 12:01:00",
            },
            "device": schemas::id(),
            "unit": { "type": "string", "pattern": "^[ -~]{0,32}$|^[^\\x00-\\x1f\\x7f-\\x9f]{0,8}$", "description": "At most 32 bytes, no control characters." },
        },
    });
    let limit = format!("How many readings, oldest first (default {DEFAULT_LIMIT}).");
    let time = |what: &str| {
        json!({
            "type": "string",
            "description": format!("{what}: `YYYY-MM-DD HH:MM:SS` UTC or RFC 3339."),
            "pattern": "^(19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$",
        })
    };
    vec![
        Route::get("/healthcheck", "HubHealthcheck", "Health of telemetry and ingest, by name.")
            .tag("SensorHub")
            .answers(200, "Every service the hub needs serves.", schemas::object()),
        Route::post("/add_rawdata/", "HubAddRawdata", "Stores one message of the hub's format, or an array of them.")
            .tag("SensorHub")
            .body(
                "application/json",
                json!({ "oneOf": [message.clone(), { "type": "array", "minItems": 1, "maxItems": 10_000, "items": message }] }),
            )
            .answers(
                201,
                "The stored reading, or `{\"written\": n}` for an array.",
                json!({ "oneOf": [reading.clone(), {
                    "type": "object", "required": ["written"], "additionalProperties": false,
                    "properties": { "written": { "type": "integer" } },
                }] }),
            ),
        Route::get("/get_current_value/{sensor}", "HubGetCurrentValue", "The sensor's reading with the newest timestamp.")
            .tag("SensorHub")
            .path("sensor", "The sensor id.", schemas::id())
            .query("device", "The device id (default: `default`); the answer names it.", schemas::id())
            .answers(200, "The reading.", reading.clone()),
        Route::get("/sensordata/{sensor}", "HubSensorData", "The sensor's readings, oldest first.")
            .tag("SensorHub")
            .path("sensor", "The sensor id.", schemas::id())
            .query("limit", &limit, json!({ "type": "integer", "minimum": 1, "maximum": MAX_READINGS }))
            .query("start", "", time("From this time on"))
            .query("end", "", time("Before this time (after `start`)"))
            .query("device", "The device id (default: `default`); the answers name it.", schemas::id())
            .answers(200, "The readings.", json!({ "type": "array", "items": reading })),
    ]
}

async fn healthcheck(State(state): State<Sensors>) -> Result<Json<Value>, ApiError> {
    health(&state.upstreams, &SERVICES).await
}

/// `POST /add_rawdata/`: one message (a JSON object) or a JSON array of them, as ingest reads
/// them. 201 with the stored reading in the hub's shape (`device` too when the message named
/// one), or `{"written": n}` for an array.
async fn add_rawdata(State(state): State<Sensors>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let payload = String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let batch = payload.trim_start().starts_with('[');
    let request = ingest::IngestSensorMessagesRequest { payload };
    // Idempotent on (device, sensor, time): safe to retry.
    let deadline = state.upstreams.deadline();
    let answer = retry(deadline, || {
        let mut ingest = state.ingest.clone();
        let request = deadline.request(request.clone());
        async move { ingest.ingest_sensor_messages(request).await }
    })
    .await?
    .into_inner();
    let body = match (batch, answer.readings.first()) {
        (false, Some(one)) => {
            let named = one.device != DEFAULT_DEVICE;
            hub_reading(
                &one.sensor,
                one.value,
                one.time.as_ref(),
                &one.unit,
                named.then_some(&one.device),
            )
        }
        _ => json!({ "written": answer.written }),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// The device of a `?device=` query: the one asked for (400 when it cannot be one), else
/// `default`.
fn device_of(asked: Option<&str>) -> Result<&str, ApiError> {
    match asked {
        None => Ok(DEFAULT_DEVICE),
        Some(device) if is_valid_id(device) => Ok(device),
        Some(_) => Err(ApiError::invalid_field("device", ID_RULE)),
    }
}

/// A reading in the hub's shape; `device` when the query asked for one.
fn answer(reading: &pb::Reading, asked_device: bool) -> Value {
    hub_reading(
        &reading.sensor,
        reading.value,
        reading.time.as_ref(),
        &reading.unit,
        asked_device.then_some(&reading.device),
    )
}

/// A sensor id from the path (400 when it cannot be one).
fn sensor_id(sensor: &str) -> Result<&str, ApiError> {
    if !is_valid_id(sensor) {
        return Err(ApiError::invalid_field("sensor", ID_RULE));
    }
    Ok(sensor)
}

/// The query of `/get_current_value/{sensor}`.
#[derive(Debug, Default, Deserialize)]
struct Which {
    device: Option<String>,
}

fn unknown_sensor(sensor: &str) -> ApiError {
    ApiError::not_found(format!("unknown sensor {sensor:?}"))
}

/// Maps NOT_FOUND to the sensor hub's message; other errors pass as they are.
fn or_unknown(sensor: &str) -> impl FnOnce(tonic::Status) -> ApiError + '_ {
    move |status| {
        if status.code() == tonic::Code::NotFound {
            unknown_sensor(sensor)
        } else {
            ApiError::from(status)
        }
    }
}

/// `GET /get_current_value/{sensor}?device=`: the reading with the newest timestamp.
async fn current_value(
    State(state): State<Sensors>,
    Path(sensor): Path<String>,
    Query(which): Query<Which>,
) -> Result<Json<Value>, ApiError> {
    let sensor = sensor_id(&sensor)?;
    let device = device_of(which.device.as_deref())?;
    let request = pb::GetCurrentValueRequest {
        name: format!("devices/{device}/sensors/{sensor}/currentValue"),
    };
    let deadline = state.upstreams.deadline();
    let reading = retry(deadline, || {
        let mut telemetry = state.telemetry.clone();
        let request = deadline.request(request.clone());
        async move { telemetry.get_current_value(request).await }
    })
    .await
    .map_err(or_unknown(sensor))?
    .into_inner()
    .reading
    .ok_or_else(|| unknown_sensor(sensor))?;
    Ok(Json(answer(&reading, which.device.is_some())))
}

/// The query of `/sensordata/{sensor}`.
#[derive(Debug, Default, Deserialize)]
struct Range {
    limit: Option<String>,
    start: Option<String>,
    end: Option<String>,
    device: Option<String>,
}

/// The checked query: at most `limit` readings in `[start, end)`.
#[derive(Debug, PartialEq)]
struct Checked {
    limit: i32,
    start: Option<prost_types::Timestamp>,
    end: Option<prost_types::Timestamp>,
}

impl Range {
    fn check(&self) -> Result<Checked, ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|n| (1..=MAX_READINGS as i32).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_field("limit", format!("must be a whole number from 1 to {MAX_READINGS}"))
                })?,
        };
        let time = |field: &str, text: Option<&str>| -> Result<Option<i64>, ApiError> {
            text.map(|t| {
                parse_utc(t).ok_or_else(|| ApiError::invalid_field(field, "must be YYYY-MM-DD HH:MM:SS or RFC 3339"))
            })
            .transpose()
        };
        let start = time("start", self.start.as_deref())?;
        let end = time("end", self.end.as_deref())?;
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            return Err(ApiError::invalid_field("end", "must be after start"));
        }
        Ok(Checked {
            limit,
            start: start.map(to_timestamp),
            end: end.map(to_timestamp),
        })
    }
}

/// `GET /sensordata/{sensor}?limit=&start=&end=&device=`: readings oldest first.
async fn sensor_data(
    State(state): State<Sensors>,
    Path(sensor): Path<String>,
    Query(query): Query<Range>,
) -> Result<Json<Value>, ApiError> {
    let sensor = sensor_id(&sensor)?;
    let device = device_of(query.device.as_deref())?;
    let asked_device = query.device.is_some();
    let range = query.check()?;
    let parent = format!("devices/{device}/sensors/{sensor}");
    let exists = pb::GetSensorRequest { name: parent.clone() };
    let deadline = state.upstreams.deadline();
    retry(deadline, || {
        let mut telemetry = state.telemetry.clone();
        let request = deadline.request(exists.clone());
        async move { telemetry.get_sensor(request).await }
    })
    .await
    .map_err(or_unknown(sensor))?;

    let mut readings = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListReadingsRequest {
            parent: parent.clone(),
            page_size: range.limit - readings.len() as i32,
            page_token: page_token.clone(),
            start_time: range.start,
            end_time: range.end,
            bucket: None,
        };
        let page = retry(deadline, || {
            let mut telemetry = state.telemetry.clone();
            let request = deadline.request(request.clone());
            async move { telemetry.list_readings(request).await }
        })
        .await?
        .into_inner();
        readings.extend(page.readings.iter().map(|r| answer(r, asked_device)));
        page_token = page.next_page_token;
        if page_token.is_empty() || readings.len() >= range.limit as usize {
            break;
        }
    }
    readings.truncate(range.limit as usize);
    Ok(Json(Value::Array(readings)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(error: ApiError) -> String {
        error.details.unwrap()[0]["fieldViolations"][0]["field"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn sensordata_queries_are_checked() {
        let range = |limit: Option<&str>, start: Option<&str>, end: Option<&str>| Range {
            limit: limit.map(str::to_string),
            start: start.map(str::to_string),
            end: end.map(str::to_string),
            device: None,
        };
        assert_eq!(
            Range::default().check().unwrap(),
            Checked {
                limit: DEFAULT_LIMIT,
                start: None,
                end: None
            }
        );
        let checked = range(Some("10000"), Some("2024-12-01T12:00:00Z"), Some("2024-12-01 13:00:00"))
            .check()
            .unwrap();
        assert_eq!(checked.limit, 10_000);
        assert_eq!(checked.start.unwrap().seconds, 1_733_054_400);
        assert_eq!(checked.end.unwrap().seconds, 1_733_058_000);
        for (query, name) in [
            (range(Some("0"), None, None), "limit"),
            (range(Some("10001"), None, None), "limit"),
            (range(Some("ten"), None, None), "limit"),
            (range(None, Some("yesterday"), None), "start"),
            (range(None, None, Some("2024-13-01")), "end"),
            (
                range(None, Some("2024-12-01T12:00:00Z"), Some("2024-12-01T12:00:00Z")),
                "end",
            ),
        ] {
            assert_eq!(field(query.check().unwrap_err()), name, "{query:?}");
        }
    }

    #[test]
    fn path_sensor_ids_and_devices_are_checked() {
        assert_eq!(sensor_id("temperature").unwrap(), "temperature");
        assert_eq!(field(sensor_id("a b").unwrap_err()), "sensor");
        assert_eq!(device_of(None).unwrap(), "default");
        assert_eq!(device_of(Some("box-1")).unwrap(), "box-1");
        assert_eq!(field(device_of(Some("a/b")).unwrap_err()), "device");
    }
}
