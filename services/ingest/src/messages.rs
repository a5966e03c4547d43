//! Sensor messages posted in the sensor hub's own format (`IngestSensorMessages`, behind the
//! gateway's `/add_rawdata/`): one message, a JSON object, or a JSON array of them, read by the
//! same parser as the hub's Redis messages. All or nothing: the first bad message fails the
//! payload, naming its index and field.

use outpost_api::ingest::v1 as pb;
use outpost_kit::error::{Error, Result};
use outpost_kit::group_commit::{GroupCommit, Options};
use outpost_kit::time::to_timestamp;
use serde_json::value::RawValue;

use crate::reading::{ParseError, Reading, parse_sensor_message};
use crate::telemetry::{MAX_WRITE_BATCH, Telemetry};

/// Posted payloads queued for telemetry, at most; more wait (backpressure).
const QUEUED_POSTS: usize = 4096;

/// Writes posted readings to telemetry, payloads that arrive together in one call: many small
/// posts make few `WriteReadings` calls. Each post is answered once telemetry committed it.
pub fn writer(telemetry: Telemetry) -> GroupCommit<Vec<Reading>, ()> {
    let options = Options {
        name: "ingest_posted_messages",
        max_weight: MAX_WRITE_BATCH,
        linger: std::time::Duration::ZERO,
        concurrency: 2,
        queue: QUEUED_POSTS,
    };
    GroupCommit::new(Posts(telemetry), Vec::len, options)
}

struct Posts(Telemetry);

#[async_trait::async_trait]
impl outpost_kit::group_commit::Committer<Vec<Reading>, ()> for Posts {
    async fn commit(&self, batch: Vec<Vec<Reading>>) -> Vec<Result<()>> {
        let write = |posts: &[Vec<Reading>]| {
            let readings: Vec<_> = posts.iter().flatten().map(Reading::to_telemetry).collect();
            async move { self.0.write(&readings).await }
        };
        match write(&batch).await {
            Ok(()) => batch.iter().map(|_| Ok(())).collect(),
            // Telemetry refused one of them: each alone, so the others are still written.
            Err(status) if batch.len() > 1 && !crate::telemetry::is_transient(&status) => {
                let mut results = Vec::with_capacity(batch.len());
                for post in &batch {
                    results.push(write(std::slice::from_ref(post)).await.map_err(status_error));
                }
                results
            }
            Err(status) => batch.iter().map(|_| Err(status_error(status.clone()))).collect(),
        }
    }
}

/// A telemetry status as ingest's answer: its code, and telemetry's message naming it.
fn status_error(status: tonic::Status) -> Error {
    let message = status.message().to_string();
    match status.code() {
        tonic::Code::InvalidArgument => Error::invalid("payload", message),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted => {
            Error::Unavailable(message)
        }
        _ => Error::Internal(anyhow::anyhow!("telemetry: {message}")),
    }
}

/// Messages in one payload, at most.
pub const MAX_MESSAGES: usize = 10_000;

/// A posted payload, read.
#[derive(Debug, PartialEq)]
pub enum Posted {
    /// One message (a JSON object).
    One(Reading),
    /// A JSON array of messages.
    Batch(Vec<Reading>),
}

impl Posted {
    /// Its readings, moved out.
    pub fn into_readings(self) -> Vec<Reading> {
        match self {
            Posted::One(reading) => vec![reading],
            Posted::Batch(readings) => readings,
        }
    }

    /// Its readings, in the order given.
    pub fn readings(&self) -> &[Reading] {
        match self {
            Posted::One(reading) => std::slice::from_ref(reading),
            Posted::Batch(readings) => readings,
        }
    }
}

/// Reads a payload; the error names the field, `[i].field` in an array (the message as a
/// whole is `[i]`; a payload that is no message at all is `payload`).
pub fn parse_payload(payload: &str) -> Result<Posted> {
    let trimmed = payload.trim_start();
    if !trimmed.starts_with('[') {
        return parse_sensor_message(payload.as_bytes())
            .map(Posted::One)
            .map_err(|e| field_error(None, e));
    }
    let items: Vec<&RawValue> = serde_json::from_str(payload)
        .map_err(|e| Error::invalid("payload", format!("not a JSON array of messages: {e}")))?;
    if items.is_empty() {
        return Err(Error::invalid("payload", "an empty array: send at least one message"));
    }
    if items.len() > MAX_MESSAGES {
        return Err(Error::invalid(
            "payload",
            format!("{} messages in one payload; at most {MAX_MESSAGES}", items.len()),
        ));
    }
    let readings = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_sensor_message(item.get().as_bytes()).map_err(|e| field_error(Some(i), e)))
        .collect::<Result<_>>()?;
    Ok(Posted::Batch(readings))
}

fn field_error(index: Option<usize>, error: ParseError) -> Error {
    match (index, error.field) {
        (None, "message") => Error::invalid("payload", error.reason),
        (Some(i), "message") => Error::invalid(format!("[{i}]"), error.reason),
        (None, field) => Error::invalid(field, error.reason),
        (Some(i), field) => Error::invalid(format!("[{i}].{field}"), error.reason),
    }
}

/// A reading as the response carries it.
pub fn to_pb(reading: &Reading) -> pb::PushedReading {
    pb::PushedReading {
        device: reading.device.clone(),
        sensor: reading.sensor.clone(),
        value: reading.value,
        unit: reading.unit.clone().unwrap_or_default(),
        time: Some(to_timestamp(reading.time)),
    }
}

/// How many distinct (device, sensor, time) `readings` hold: what telemetry commits.
pub fn distinct(readings: &[Reading]) -> i64 {
    let keys: std::collections::HashSet<(&str, &str, i64)> = readings
        .iter()
        .map(|r| (r.device.as_str(), r.sensor.as_str(), r.time))
        .collect();
    keys.len() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(error: Error) -> String {
        match error {
            Error::InvalidArgument { field, .. } => field,
            other => panic!("not invalid input: {other}"),
        }
    }

    #[test]
    fn a_message_or_an_array_of_them() {
        let one =
            parse_payload(r#" {"sensor": "temperature", "value": "14", "timestamp": "2024-12-01 12:00:00"}"#).unwrap();
        let Posted::One(one) = one else {
            panic!("one message is not a batch: {one:?}")
        };
        assert_eq!((one.device.as_str(), one.value), ("default", 14.0));
        assert_eq!(one.time, 1_733_054_400_000_000);

        let two = parse_payload(
            r#"[{"sensor": "t", "value": 1, "timestamp": "2024-12-01T12:00:00Z", "device": "d1", "unit": "C"},
                {"sensor": "t", "value": 2.5, "timestamp": "2024-12-01 13:00:00"}]"#,
        )
        .unwrap();
        let readings = two.readings();
        assert_eq!(readings.len(), 2);
        assert_eq!(
            (readings[0].device.as_str(), readings[0].unit.as_deref()),
            ("d1", Some("C"))
        );
        assert_eq!(readings[1].value, 2.5);
        assert_eq!(distinct(readings), 2);
    }

    #[test]
    fn bad_input_names_its_field() {
        let error = parse_payload(r#"{"sensor":"t","value":"abc","timestamp":"x"}"#).unwrap_err();
        assert!(error.to_string().starts_with("value:"), "{error}");
        assert_eq!(field(error), "value");
        assert_eq!(
            field(parse_payload(r#"{"sensor":"t","value":1,"timestamp":"x"}"#).unwrap_err()),
            "timestamp"
        );
        assert_eq!(
            field(parse_payload(r#"{"value":1,"timestamp":"x"}"#).unwrap_err()),
            "sensor"
        );
        let batch =
            parse_payload(r#"[{"sensor":"t","value":1,"timestamp":"2024-12-01 12:00:00"},{"sensor":"t","value":1}]"#)
                .unwrap_err();
        assert_eq!(field(batch), "[1].timestamp");
        assert_eq!(field(parse_payload("[1]").unwrap_err()), "[0]");
        for payload in ["not json", "42", "[]", "[1"] {
            assert_eq!(field(parse_payload(payload).unwrap_err()), "payload", "{payload}");
        }
    }
}
