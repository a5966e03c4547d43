//! openSenseMap boxes (`GET /boxes?full=true`): which sensor of a box is its temperature, and
//! what a box becomes (a device with one reading, a skipped box, or a failed item).
//!
//! A temperature sensor is one whose title contains `temp` (any case: `Temperatur`,
//! `Temperature`, `Lufttemperatur`, …) and whose unit, when given, is degrees Celsius. When a
//! box has several, the plain titles (`Temperatur`, `Temperature`, `Lufttemperatur`,
//! `Air temperature`) come first, then the others in their order; the first one with a last
//! measurement is taken. Boxes without one are skipped.

use serde::Deserialize;
use serde_json::Value;

use crate::reading::{self, Reading};

/// The sensor id readings of boxes are stored under.
pub const SENSOR: &str = "temperature";
/// The unit of a temperature sensor that names none.
pub const DEFAULT_UNIT: &str = "°C";
/// Longest display name kept, in characters.
const MAX_NAME_CHARS: usize = 200;

#[derive(Deserialize)]
struct RawBox {
    #[serde(rename = "_id")]
    id: Option<String>,
    name: Option<String>,
    #[serde(rename = "currentLocation")]
    current_location: Option<RawLocation>,
    loc: Option<Vec<RawLoc>>,
    sensors: Option<Vec<RawSensor>>,
}

#[derive(Deserialize)]
struct RawLocation {
    coordinates: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct RawLoc {
    geometry: Option<RawLocation>,
}

#[derive(Deserialize)]
struct RawSensor {
    #[serde(rename = "_id")]
    id: Option<String>,
    title: Option<String>,
    unit: Option<String>,
    #[serde(rename = "lastMeasurement")]
    last: Option<RawMeasurement>,
}

#[derive(Deserialize)]
struct RawMeasurement {
    value: Option<Value>,
    #[serde(rename = "createdAt")]
    created_at: Option<String>,
}

/// A box as a device.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxDevice {
    /// The box's `_id`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Degrees, when known.
    pub latitude: Option<f64>,
    /// Degrees, when known.
    pub longitude: Option<f64>,
}

/// What one box becomes.
#[derive(Clone, Debug, PartialEq)]
pub enum BoxOutcome {
    /// A device with its current temperature.
    Reading(BoxDevice, Reading),
    /// No temperature to load (why).
    Skipped(&'static str),
    /// The box could not be read: which item, and why.
    Failed(String, String),
}

/// Whether a sensor with this title and unit measures air temperature in °C.
pub fn is_temperature(title: &str, unit: Option<&str>) -> bool {
    title.to_lowercase().contains("temp") && unit.is_none_or(is_celsius)
}

fn is_celsius(unit: &str) -> bool {
    let unit: String = unit
        .chars()
        .filter(|c| !matches!(c, ' ' | '°' | 'º'))
        .collect::<String>()
        .to_lowercase();
    unit.is_empty() || matches!(unit.as_str(), "c" | "degc" | "celsius" | "℃")
}

fn preference(title: &str) -> u8 {
    match title.trim().to_lowercase().as_str() {
        "temperatur" | "temperature" | "lufttemperatur" | "air temperature" => 0,
        _ => 1,
    }
}

/// What box number `index` of the answer becomes.
pub fn classify(value: &Value, index: usize) -> BoxOutcome {
    let raw = match RawBox::deserialize(value) {
        Ok(raw) => raw,
        Err(err) => return BoxOutcome::Failed(format!("boxes[{index}]"), format!("not a box: {err}")),
    };
    let Some(id) = raw.id.filter(|id| !id.is_empty()) else {
        return BoxOutcome::Failed(format!("boxes[{index}]"), "_id: required".into());
    };
    if !outpost_kit::ids::is_valid_id(&id) {
        return BoxOutcome::Failed(
            format!("boxes[{index}]"),
            format!("_id: {id:?} is not a valid device id"),
        );
    }
    let item = format!("box {id}");
    let mut sensors: Vec<&RawSensor> = raw
        .sensors
        .iter()
        .flatten()
        .filter(|s| s.title.as_deref().is_some_and(|t| is_temperature(t, s.unit.as_deref())))
        .collect();
    if sensors.is_empty() {
        return BoxOutcome::Skipped("no temperature sensor");
    }
    sensors.sort_by_key(|s| preference(s.title.as_deref().unwrap_or_default()));
    let Some((sensor, last)) = sensors.iter().find_map(|s| s.last.as_ref().map(|m| (*s, m))) else {
        return BoxOutcome::Skipped("no temperature measurement");
    };
    let field = format!(
        "sensors[{}].lastMeasurement",
        sensor.id.as_deref().or(sensor.title.as_deref()).unwrap_or("?")
    );
    let value = match &last.value {
        Some(Value::String(text)) => text
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("value: {text:?} is not a number")),
        Some(Value::Number(number)) => number.as_f64().ok_or_else(|| "value: not a number".to_string()),
        Some(Value::Null) | None => return BoxOutcome::Skipped("no temperature measurement"),
        Some(other) => Err(format!("value: {other} is not a number")),
    };
    let value = match value {
        Ok(value) => value,
        Err(message) => return BoxOutcome::Failed(item, format!("{field}.{message}")),
    };
    let Some(created_at) = last.created_at.as_deref() else {
        return BoxOutcome::Failed(item, format!("{field}.createdAt: required"));
    };
    let time = match reading::parse_time(created_at) {
        Ok(time) => time,
        Err(err) => return BoxOutcome::Failed(item, format!("{field}.createdAt: {}", err.reason)),
    };
    let unit = sensor
        .unit
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or(DEFAULT_UNIT);
    let reading = match reading::check(&id, SENSOR, value, Some(unit), time) {
        Ok(reading) => reading,
        Err(err) => return BoxOutcome::Failed(item, format!("{field}: {err}")),
    };
    let coordinates = raw.current_location.and_then(|l| l.coordinates).or_else(|| {
        raw.loc
            .and_then(|l| l.into_iter().next())
            .and_then(|l| l.geometry)
            .and_then(|g| g.coordinates)
    });
    let (longitude, latitude) = match coordinates.as_deref() {
        Some([lon, lat, ..]) => match (lon.as_f64(), lat.as_f64()) {
            (Some(lon), Some(lat)) if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) => {
                (Some(lon), Some(lat))
            }
            _ => (None, None),
        },
        _ => (None, None),
    };
    let name: String = raw
        .name
        .unwrap_or_default()
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    BoxOutcome::Reading(
        BoxDevice {
            id,
            name,
            latitude,
            longitude,
        },
        reading,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sensor(title: &str, unit: Option<&str>, value: Value) -> Value {
        json!({"_id": "s1", "title": title, "unit": unit,
               "lastMeasurement": {"value": value, "createdAt": "2020-03-27T15:47:54.076Z"}})
    }

    #[test]
    fn temperature_titles_and_units() {
        for title in [
            "Temperatur",
            "Temperature",
            "Lufttemperatur",
            "temperature",
            "Temperatur (DHT22)",
        ] {
            assert!(is_temperature(title, None), "{title}");
            assert!(is_temperature(title, Some("°C")), "{title}");
        }
        assert!(is_temperature("Temperatur", Some("C")));
        assert!(!is_temperature("Temperatur", Some("°F")));
        assert!(!is_temperature("Luftdruck", Some("hPa")));
        assert!(!is_temperature("rel. Luftfeuchte", None));
    }

    #[test]
    fn a_box_with_a_temperature_is_a_device_with_a_reading() {
        let record = json!({"_id": "56957f3ab3de1fe0052532da", "name": "WG Wolbecker Str.",
            "currentLocation": {"type": "Point", "coordinates": [7.64, 51.95]},
            "sensors": [sensor("Luftdruck", Some("hPa"), json!("1012.4")), sensor("Temperatur", Some("°C"), json!("19.04"))]});
        let BoxOutcome::Reading(device, reading) = classify(&record, 0) else {
            panic!("not a reading")
        };
        assert_eq!(device.name, "WG Wolbecker Str.");
        assert_eq!((device.latitude, device.longitude), (Some(51.95), Some(7.64)));
        assert_eq!(
            (reading.device.as_str(), reading.sensor.as_str()),
            ("56957f3ab3de1fe0052532da", "temperature")
        );
        assert_eq!((reading.value, reading.unit.as_deref()), (19.04, Some("°C")));
        assert_eq!(reading.time, 1_585_324_074_076_000);
    }

    #[test]
    fn the_plain_title_wins_and_loc_is_a_fallback() {
        let record = json!({"_id": "b2", "name": "x", "loc": [{"geometry": {"coordinates": [1.0, 2.0]}}],
            "sensors": [sensor("Bodentemperatur", None, json!("5")), sensor("Temperature", None, json!(21.5))]});
        let BoxOutcome::Reading(device, reading) = classify(&record, 0) else {
            panic!("not a reading")
        };
        assert_eq!((reading.value, reading.unit.as_deref()), (21.5, Some("°C")));
        assert_eq!((device.latitude, device.longitude), (Some(2.0), Some(1.0)));
    }

    #[test]
    fn boxes_without_a_temperature_are_skipped_and_bad_values_fail() {
        let no_temp = json!({"_id": "b3", "sensors": [sensor("Luftdruck", None, json!("1"))]});
        assert_eq!(classify(&no_temp, 0), BoxOutcome::Skipped("no temperature sensor"));
        let no_measurement =
            json!({"_id": "b4", "sensors": [{"title": "Temperatur", "unit": "°C", "lastMeasurement": null}]});
        assert_eq!(
            classify(&no_measurement, 0),
            BoxOutcome::Skipped("no temperature measurement")
        );
        let bad = json!({"_id": "b5", "sensors": [sensor("Temperatur", None, json!("warm"))]});
        let BoxOutcome::Failed(item, message) = classify(&bad, 0) else {
            panic!("not failed")
        };
        assert_eq!(item, "box b5");
        assert_eq!(message, r#"sensors[s1].lastMeasurement.value: "warm" is not a number"#);
        assert!(matches!(classify(&json!({"name": "no id"}), 7), BoxOutcome::Failed(item, _) if item == "boxes[7]"));
        assert!(matches!(classify(&json!("text"), 1), BoxOutcome::Failed(..)));
    }
}
