//! Readings as ingest takes them in: the sensor hub's message format (one parser for Redis
//! pub/sub, Redis streams and HTTP) and the checks every reading passes before telemetry.

use std::borrow::Cow;

use outpost_api::telemetry::v1 as telemetry;
use outpost_kit::time::to_timestamp;
use serde_json::value::RawValue;

/// The device of a reading that names none.
pub use outpost_kit::ids::DEFAULT_DEVICE;

/// Longest unit, in characters.
const MAX_UNIT_CHARS: usize = 32;

/// One reading, checked and ready for telemetry.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The device id.
    pub device: String,
    /// The sensor id, such as `temperature`.
    pub sensor: String,
    /// The value (finite).
    pub value: f64,
    /// The unit, when given.
    pub unit: Option<String>,
    /// When it was measured, µs since the epoch, UTC.
    pub time: i64,
}

impl Reading {
    /// The reading as telemetry writes it, copied (see the `From` conversion to move it).
    pub fn to_telemetry(&self) -> telemetry::Reading {
        self.clone().into()
    }
}

/// The reading as telemetry writes it (the sensor's kind is its id).
impl From<Reading> for telemetry::Reading {
    fn from(reading: Reading) -> Self {
        telemetry::Reading {
            kind: reading.sensor.clone(),
            device: reading.device,
            sensor: reading.sensor,
            value: reading.value,
            time: Some(to_timestamp(reading.time)),
            unit: reading.unit.unwrap_or_default(),
        }
    }
}

/// Why a message is not a reading: the field and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParseError {
    /// The field (`message` when the message as a whole is unreadable).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn error(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError {
        field,
        reason: reason.into(),
    }
}

/// Parses one sensor message: a JSON object such as
/// `{"sensor": "temperature", "value": 14, "timestamp": "2024-12-01 12:00:00"}`.
///
/// `value` is a number or a numeric string; `timestamp` is `YYYY-MM-DD HH:MM:SS[.fff]` (UTC,
/// a `T` instead of the space works too) or RFC 3339 with an offset; `device` (default
/// `default`) and `unit` are optional; other fields are ignored.
pub fn parse_sensor_message(bytes: &[u8]) -> Result<Reading, ParseError> {
    // A derived struct would also take an array (by position): only an object is a message.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(error("message", "not a JSON object"));
    }
    let fields: Fields = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => error("message", format!("not a JSON object of sensor fields: {e}")),
        _ => error("message", format!("not JSON: {e}")),
    })?;
    let sensor = text("sensor", fields.sensor)?.ok_or_else(|| error("sensor", "required"))?;
    let device = text("device", fields.device)?.filter(|d| !d.is_empty());
    let device = device.as_deref().unwrap_or(DEFAULT_DEVICE);
    let unit = text("unit", fields.unit)?.filter(|u| !u.is_empty());
    let value = match fields.value.map(RawValue::get) {
        None | Some("null") => return Err(error("value", "required")),
        Some(raw) if raw.starts_with('"') => {
            let text: Cow<str> = serde_json::from_str(raw).map_err(|e| error("value", e.to_string()))?;
            text.trim()
                .parse::<f64>()
                .map_err(|_| error("value", format!("{text:?} is not a number")))?
        }
        Some(raw) if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            raw.parse::<f64>().map_err(|_| error("value", "not a number"))?
        }
        Some(_) => return Err(error("value", "must be a number or a numeric string")),
    };
    let time = parse_time(&text("timestamp", fields.timestamp)?.ok_or_else(|| error("timestamp", "required"))?)?;
    check(device, sensor.as_ref(), value, unit.as_deref(), time)
}

/// The fields of a sensor message, still as JSON text: read without building a map, each
/// checked on its own so an error names its field. Other fields are ignored.
#[derive(serde::Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    sensor: Option<&'a RawValue>,
    #[serde(borrow, default)]
    device: Option<&'a RawValue>,
    #[serde(borrow, default)]
    unit: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
}

/// A string field, borrowed when it has no escapes; `None` when absent or null.
fn text<'a>(field: &'static str, raw: Option<&'a RawValue>) -> Result<Option<Cow<'a, str>>, ParseError> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(json) if json.starts_with('"') => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| error(field, e.to_string())),
        Some(_) => Err(error(field, "must be a string")),
    }
}

/// A timestamp as µs UTC: RFC 3339, or a naive `YYYY-MM-DD HH:MM:SS[.fff]` taken as UTC.
pub fn parse_time(text: &str) -> Result<i64, ParseError> {
    outpost_kit::time::parse_utc(text).ok_or_else(|| {
        error(
            "timestamp",
            format!("{:?} is not YYYY-MM-DD HH:MM:SS or RFC 3339", text.trim()),
        )
    })
}

/// Checks the parts of a reading (ids, a finite value, a short unit, a time in years 1 to 9999)
/// and assembles it.
pub fn check(device: &str, sensor: &str, value: f64, unit: Option<&str>, time: i64) -> Result<Reading, ParseError> {
    use outpost_kit::ids::{ID_RULE, is_valid_id as valid_id};
    if !valid_id(device) {
        return Err(error("device", format!("{device:?} {ID_RULE}")));
    }
    if !valid_id(sensor) {
        return Err(error("sensor", format!("{sensor:?} {ID_RULE}")));
    }
    if !value.is_finite() {
        return Err(error("value", "must be a finite number"));
    }
    if unit.is_some_and(|u| u.chars().count() > MAX_UNIT_CHARS) {
        return Err(error("unit", format!("longer than {MAX_UNIT_CHARS} characters")));
    }
    if !outpost_kit::time::STORABLE_MICROS.contains(&time) {
        return Err(error("timestamp", "out of range"));
    }
    Ok(Reading {
        device: device.to_string(),
        sensor: sensor.to_string(),
        value,
        unit: unit.map(str::to_string),
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Reading, ParseError> {
        parse_sensor_message(text.as_bytes())
    }

    #[test]
    fn the_source_systems_format_is_read_as_utc() {
        let reading = parse(r#"{"sensor": "temperature", "value": 14, "timestamp": "2024-12-01 12:00:00"}"#).unwrap();
        assert_eq!(reading.device, "default");
        assert_eq!(reading.sensor, "temperature");
        assert_eq!(reading.value, 14.0);
        assert_eq!(reading.unit, None);
        assert_eq!(reading.time, 1_733_054_400_000_000);
    }

    #[test]
    fn rfc3339_strings_device_and_unit_are_taken() {
        let reading = parse(
            r#"{"sensor": "t1", "value": " 14.5 ", "timestamp": "2024-12-01T13:00:00.250+01:00",
                "device": "box-7", "unit": "°C", "extra": [1]}"#,
        )
        .unwrap();
        assert_eq!(reading.device, "box-7");
        assert_eq!(reading.value, 14.5);
        assert_eq!(reading.unit.as_deref(), Some("°C"));
        assert_eq!(reading.time, 1_733_054_400_250_000);
        let naive_t = parse(r#"{"sensor": "t", "value": 1, "timestamp": "2024-12-01T12:00:00"}"#).unwrap();
        assert_eq!(naive_t.time, 1_733_054_400_000_000);
        let zulu = parse(r#"{"sensor": "t", "value": -3e2, "timestamp": "2024-12-01T12:00:00Z"}"#).unwrap();
        assert_eq!((zulu.time, zulu.value), (1_733_054_400_000_000, -300.0));
    }

    #[test]
    fn a_malformed_message_names_its_field() {
        let field = |text: &str| parse(text).unwrap_err().field;
        assert_eq!(field("not json"), "message");
        assert_eq!(field("[1, 2]"), "message");
        assert_eq!(field(r#"{"value": 1, "timestamp": "2024-12-01 12:00:00"}"#), "sensor");
        assert_eq!(
            field(r#"{"sensor": 5, "value": 1, "timestamp": "2024-12-01 12:00:00"}"#),
            "sensor"
        );
        assert_eq!(
            field(r#"{"sensor": "a b", "value": 1, "timestamp": "2024-12-01 12:00:00"}"#),
            "sensor"
        );
        assert_eq!(field(r#"{"sensor": "t", "timestamp": "2024-12-01 12:00:00"}"#), "value");
        assert_eq!(
            field(r#"{"sensor": "t", "value": "warm", "timestamp": "2024-12-01 12:00:00"}"#),
            "value"
        );
        assert_eq!(
            field(r#"{"sensor": "t", "value": "NaN", "timestamp": "2024-12-01 12:00:00"}"#),
            "value"
        );
        assert_eq!(
            field(r#"{"sensor": "t", "value": true, "timestamp": "2024-12-01 12:00:00"}"#),
            "value"
        );
        assert_eq!(field(r#"{"sensor": "t", "value": 1}"#), "timestamp");
        assert_eq!(
            field(r#"{"sensor": "t", "value": 1, "timestamp": "yesterday"}"#),
            "timestamp"
        );
        assert_eq!(
            field(r#"{"sensor": "t", "value": 1, "timestamp": "2024-13-01 12:00:00"}"#),
            "timestamp"
        );
        assert_eq!(
            field(r#"{"sensor": "t", "value": 1, "timestamp": "2024-12-01 12:00:00", "device": "x/y"}"#),
            "device"
        );
        let long_unit = format!(
            r#"{{"sensor": "t", "value": 1, "timestamp": "2024-12-01 12:00:00", "unit": "{}"}}"#,
            "u".repeat(40)
        );
        assert_eq!(field(&long_unit), "unit");
        let message = parse(r#"{"sensor": "t", "value": "warm", "timestamp": "2024-12-01 12:00:00"}"#).unwrap_err();
        assert_eq!(message.to_string(), r#"value: "warm" is not a number"#);
    }

    #[test]
    fn a_reading_converts_for_telemetry() {
        let reading = check("d", "temperature", 1.5, Some("°C"), 1_000_001).unwrap();
        let pb = reading.to_telemetry();
        assert_eq!(pb.kind, "temperature");
        assert_eq!(pb.unit, "°C");
        assert_eq!(
            pb.time.unwrap(),
            prost_types::Timestamp {
                seconds: 1,
                nanos: 1000
            }
        );
    }
}
