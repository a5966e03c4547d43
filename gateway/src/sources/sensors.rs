//! SEN, the event-driven sensor hub: `GET /healthcheck`, `POST /add_rawdata/`,
//! `GET /get_current_value/{sensor}`, `GET /sensordata/{sensor}`. Its readings name no device:
//! they are kept under the device `default`. A posted message is read by the same parser as
//! the hub's `sensor_stream` messages ([`outpost_ingest::parse_sensor_message`]).

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use bytes::Bytes;
use http::StatusCode;
use outpost_api::telemetry::v1 as pb;
use outpost_api::telemetry::v1::telemetry_service_client::TelemetryServiceClient;
use outpost_ingest::reading::{DEFAULT_DEVICE, ParseError, Reading, parse_time, valid_id};
use outpost_kit::client::{Traced, retry};
use outpost_kit::time::to_timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{health, reading_json};
use crate::Upstreams;
use crate::error::ApiError;

/// The services the sensor hub needs.
const SERVICES: [&str; 2] = ["telemetry", "ingest"];
/// Readings `/sensordata` answers when no `limit` is given.
const DEFAULT_LIMIT: i32 = 1000;
/// The largest `limit` of `/sensordata`, and the largest batch of `/add_rawdata/`.
const MAX_READINGS: usize = 10_000;

#[derive(Clone)]
struct Sensors {
    upstreams: Upstreams,
    telemetry: TelemetryServiceClient<Traced>,
}

/// The sensor hub's routes (`/add_rawdata` without the slash too).
pub fn routes(upstreams: &Upstreams) -> Router {
    let state = Sensors {
        upstreams: upstreams.clone(),
        telemetry: TelemetryServiceClient::new(upstreams.telemetry.clone()),
    };
    Router::new()
        .route("/healthcheck", get(healthcheck))
        .route("/add_rawdata/", post(add_rawdata))
        .route("/add_rawdata", post(add_rawdata))
        .route("/get_current_value/{sensor}", get(current_value))
        .route("/sensordata/{sensor}", get(sensor_data))
        .with_state(state)
}

async fn healthcheck(State(state): State<Sensors>) -> Result<Json<Value>, ApiError> {
    health(&state.upstreams, &SERVICES).await
}

/// What `/add_rawdata/` takes: one message (a JSON object) or a batch (a JSON array of them).
#[derive(Debug)]
enum Posted {
    One(Reading),
    Batch(Vec<Reading>),
}

impl Posted {
    fn readings(&self) -> &[Reading] {
        match self {
            Posted::One(reading) => std::slice::from_ref(reading),
            Posted::Batch(readings) => readings,
        }
    }
}

/// Reads a posted body with ingest's rules for sensor messages.
fn parse_body(body: &[u8]) -> Result<Posted, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        let reading = outpost_ingest::parse_sensor_message(body).map_err(|e| field_error(None, e))?;
        return Ok(Posted::One(reading));
    }
    let items: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "the body is an empty array: send at least one reading",
        ));
    }
    if items.len() > MAX_READINGS {
        return Err(ApiError::bad_request(format!(
            "{} readings in one request; at most {MAX_READINGS}",
            items.len()
        )));
    }
    let readings = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let bytes =
                serde_json::to_vec(item).map_err(|e| ApiError::internal(format!("re-encoding a reading: {e}")))?;
            outpost_ingest::parse_sensor_message(&bytes).map_err(|e| field_error(Some(i), e))
        })
        .collect::<Result<_, _>>()?;
    Ok(Posted::Batch(readings))
}

/// A 400 naming the field (`[i].field` in a batch); a body that is no message at all is a
/// plain 400.
fn field_error(index: Option<usize>, error: ParseError) -> ApiError {
    match (index, error.field) {
        (None, "message") => ApiError::bad_request(format!("invalid body: {}", error.reason)),
        (Some(i), "message") => ApiError::invalid_field(&format!("[{i}]"), error.reason),
        (None, field) => ApiError::invalid_field(field, error.reason),
        (Some(i), field) => ApiError::invalid_field(&format!("[{i}].{field}"), error.reason),
    }
}

/// `POST /add_rawdata/`: 201 with the stored reading, or `{"written": n}` for a batch.
async fn add_rawdata(State(state): State<Sensors>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let posted = parse_body(&body)?;
    let request = pb::WriteReadingsRequest {
        readings: posted.readings().iter().map(Reading::to_telemetry).collect(),
    };
    // Idempotent on (device, sensor, time): safe to retry.
    let deadline = state.upstreams.deadline();
    let written = retry(deadline, || {
        let mut telemetry = state.telemetry.clone();
        let request = deadline.request(request.clone());
        async move { telemetry.write_readings(request).await }
    })
    .await?
    .into_inner()
    .written;
    let body = match posted {
        Posted::One(reading) => reading_json(&reading.to_telemetry()),
        Posted::Batch(_) => json!({ "written": written }),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// A sensor id from the path (400 when it cannot be one).
fn sensor_id(sensor: &str) -> Result<&str, ApiError> {
    if !valid_id(sensor) {
        return Err(ApiError::invalid_field(
            "sensor",
            "must be 1 to 128 of letters, digits, '-', '_', '.'",
        ));
    }
    Ok(sensor)
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

/// `GET /get_current_value/{sensor}`: the reading with the newest timestamp.
async fn current_value(State(state): State<Sensors>, Path(sensor): Path<String>) -> Result<Json<Value>, ApiError> {
    let sensor = sensor_id(&sensor)?;
    let request = pb::GetCurrentValueRequest {
        name: format!("devices/{DEFAULT_DEVICE}/sensors/{sensor}/currentValue"),
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
    Ok(Json(reading_json(&reading)))
}

/// The query of `/sensordata/{sensor}`.
#[derive(Debug, Default, Deserialize)]
struct Range {
    limit: Option<String>,
    start: Option<String>,
    end: Option<String>,
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
            text.map(|t| parse_time(t).map_err(|e| ApiError::invalid_field(field, e.reason)))
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

/// `GET /sensordata/{sensor}?limit=&start=&end=`: readings oldest first.
async fn sensor_data(
    State(state): State<Sensors>,
    Path(sensor): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Value>, ApiError> {
    let sensor = sensor_id(&sensor)?;
    let range = range.check()?;
    let parent = format!("devices/{DEFAULT_DEVICE}/sensors/{sensor}");
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
        readings.extend(page.readings.iter().map(reading_json));
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
    fn a_message_or_a_batch_is_read_with_ingests_rules() {
        let one =
            parse_body(br#" {"sensor": "temperature", "value": "14", "timestamp": "2024-12-01 12:00:00"}"#).unwrap();
        let Posted::One(one) = one else {
            panic!("one message is not a batch: {one:?}")
        };
        assert_eq!((one.device.as_str(), one.value), ("default", 14.0));
        assert_eq!(one.time, 1_733_054_400_000_000);

        let two = parse_body(
            br#"[{"sensor": "t", "value": 1, "timestamp": "2024-12-01T12:00:00Z", "device": "d1", "unit": "C"},
                 {"sensor": "t", "value": 2.5, "timestamp": "2024-12-01 13:00:00"}]"#,
        )
        .unwrap();
        let Posted::Batch(two) = two else {
            panic!("an array is a batch: {two:?}")
        };
        assert_eq!(two.len(), 2);
        assert_eq!((two[0].device.as_str(), two[0].unit.as_deref()), ("d1", Some("C")));
        assert_eq!(two[1].value, 2.5);
    }

    #[test]
    fn bad_input_names_its_field() {
        let error = parse_body(br#"{"sensor":"t","value":"abc","timestamp":"x"}"#).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("value:"), "{error}");
        assert_eq!(field(error), "value");
        assert_eq!(
            field(parse_body(br#"{"sensor":"t","value":1,"timestamp":"x"}"#).unwrap_err()),
            "timestamp"
        );
        assert_eq!(
            field(parse_body(br#"{"value":1,"timestamp":"x"}"#).unwrap_err()),
            "sensor"
        );
        let batch =
            parse_body(br#"[{"sensor":"t","value":1,"timestamp":"2024-12-01 12:00:00"},{"sensor":"t","value":1}]"#)
                .unwrap_err();
        assert_eq!(field(batch), "[1].timestamp");
        assert_eq!(field(parse_body(b"[1]").unwrap_err()), "[0]");
        for body in [&b"not json"[..], b"42", b"[]", b"[1"] {
            let error = parse_body(body).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{error}");
        }
    }

    #[test]
    fn sensordata_queries_are_checked() {
        let range = |limit: Option<&str>, start: Option<&str>, end: Option<&str>| Range {
            limit: limit.map(str::to_string),
            start: start.map(str::to_string),
            end: end.map(str::to_string),
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
    fn path_sensor_ids_are_checked() {
        assert_eq!(sensor_id("temperature").unwrap(), "temperature");
        assert_eq!(field(sensor_id("a b").unwrap_err()), "sensor");
    }
}
