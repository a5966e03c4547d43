//! Devices and their sensors: create, get, list, delete (with everything they measured).

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_kit::error::{Error, Result};
use outpost_kit::paging;
use outpost_kit::storage::Db;
use outpost_kit::time::now_micros;

use crate::names::{ALL_DEVICES, check_id, check_optional_id, device_name, is_valid_id, sensor_name};
use crate::sensor_keys::SensorKeys;
use crate::store::{self, DeviceRow, SensorRow};

/// Default devices or sensors per page.
pub const DEFAULT_PAGE: u32 = 50;
/// Most devices or sensors per page.
pub const MAX_PAGE: u32 = 1000;
/// Labels per device, at most.
pub const MAX_LABELS: usize = 32;
/// The longest display name or label value, in bytes.
pub const MAX_TEXT: usize = 256;

/// A device.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// The id.
    pub id: String,
    /// A title for people.
    pub display_name: String,
    /// Where it comes from, such as `opensensemap`.
    pub source: String,
    /// Degrees, when known.
    pub latitude: Option<f64>,
    /// Degrees, when known.
    pub longitude: Option<f64>,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time, microseconds.
    pub created_at: i64,
    /// Time of its newest reading, microseconds.
    pub last_seen_at: Option<i64>,
}

impl TryFrom<DeviceRow> for Device {
    type Error = Error;

    fn try_from(row: DeviceRow) -> Result<Self> {
        let labels = serde_json::from_str(&row.labels).map_err(|e| anyhow::anyhow!("labels of {}: {e}", row.id))?;
        Ok(Device {
            id: row.id,
            display_name: row.display_name,
            source: row.source,
            latitude: row.latitude,
            longitude: row.longitude,
            labels,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
        })
    }
}

fn check_text(field: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            "must be at most 256 bytes without control characters",
        ));
    }
    Ok(())
}

/// Checks a new device (fields named as in `CreateDeviceRequest`).
pub fn validate(device: &Device) -> Result<()> {
    check_id("device_id", &device.id)?;
    check_text("device.display_name", &device.display_name)?;
    if !device.source.is_empty() && !is_valid_id(&device.source) {
        return Err(Error::invalid(
            "device.source",
            "must be 1 to 128 of letters, digits, '.', '_', '-'",
        ));
    }
    if device.latitude.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
        return Err(Error::invalid("device.latitude", "must be between -90 and 90"));
    }
    if device.longitude.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
        return Err(Error::invalid("device.longitude", "must be between -180 and 180"));
    }
    if device.labels.len() > MAX_LABELS {
        return Err(Error::invalid("device.labels", "at most 32 labels"));
    }
    for (key, value) in &device.labels {
        if key.len() > 63 || !is_valid_id(key) {
            return Err(Error::invalid(
                "device.labels",
                format!("key {key:?} must be 1 to 63 of letters, digits, '.', '_', '-'"),
            ));
        }
        check_text("device.labels", value)?;
    }
    Ok(())
}

/// A `{device}/{sensor}` cursor.
fn pair_cursor(token: &str, query: paging::Query) -> Result<(String, String)> {
    match paging::decode_token(token, query)? {
        None => Ok((String::new(), String::new())),
        Some(cursor) => cursor
            .split_once('/')
            .map(|(d, s)| (d.to_string(), s.to_string()))
            .ok_or_else(|| Error::invalid("page_token", "not a token from a previous response")),
    }
}

/// The cursor of a page ordered by `{device}/{sensor}`: its last row's pair.
pub(crate) fn pair_key(device: &str, sensor: &str) -> String {
    format!("{device}/{sensor}")
}

/// The limit and the decoded cursor of a page of rows of `query` ordered by `{device}/{sensor}`.
pub(crate) fn pair_page(page_size: i32, page_token: &str, query: paging::Query) -> Result<(i64, (String, String))> {
    Ok((
        paging::page_size(page_size, DEFAULT_PAGE, MAX_PAGE)?,
        pair_cursor(page_token, query)?,
    ))
}

/// Devices and sensors.
#[derive(Clone)]
pub struct Devices {
    db: Db,
    keys: Arc<SensorKeys>,
}

impl Devices {
    /// Devices over `db`, forgetting deleted devices in `keys`.
    pub fn new(db: Db, keys: Arc<SensorKeys>) -> Self {
        Self { db, keys }
    }

    /// Creates a device; ALREADY_EXISTS when its id is taken.
    pub async fn create(&self, mut device: Device) -> Result<Device> {
        validate(&device)?;
        device.created_at = now_micros();
        device.last_seen_at = None;
        let row = DeviceRow {
            id: device.id.clone(),
            display_name: device.display_name.clone(),
            source: device.source.clone(),
            latitude: device.latitude,
            longitude: device.longitude,
            labels: serde_json::to_string(&device.labels).map_err(anyhow::Error::from)?,
            created_at: device.created_at,
            last_seen_at: None,
        };
        if !store::insert_device(&self.db, &row).await? {
            return Err(Error::AlreadyExists(device_name(&device.id)));
        }
        Ok(device)
    }

    /// One device.
    pub async fn get(&self, id: &str) -> Result<Device> {
        store::get_device(&self.db, id)
            .await?
            .ok_or_else(|| Error::NotFound(device_name(id)))?
            .try_into()
    }

    /// A page of devices by id, optionally of one source, and the next page's token.
    pub async fn list(&self, source: &str, page_size: i32, page_token: &str) -> Result<(Vec<Device>, String)> {
        let limit = paging::page_size(page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let query = paging::Query::of(format!("devices|{source}"));
        let after = paging::decode_token(page_token, query)?.unwrap_or_default();
        let rows = store::list_devices(&self.db, source, &after, limit + 1).await?;
        let (rows, next) = paging::split_page(rows, limit, query, |last| last.id.clone());
        let devices = rows.into_iter().map(Device::try_from).collect::<Result<_>>()?;
        Ok((devices, next))
    }

    /// Deletes a device with its sensors, readings and current values.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let deleted = store::delete_device(&self.db, id).await?;
        self.keys.forget_device(id);
        if !deleted {
            return Err(Error::NotFound(device_name(id)));
        }
        Ok(())
    }

    /// One sensor.
    pub async fn get_sensor(&self, device: &str, sensor: &str) -> Result<SensorRow> {
        store::get_sensor(&self.db, device, sensor)
            .await?
            .ok_or_else(|| Error::NotFound(sensor_name(device, sensor)))
    }

    /// A page of sensors of `device` (`-`: every device), optionally of one kind, by name.
    pub async fn list_sensors(
        &self,
        device: &str,
        kind: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<SensorRow>, String)> {
        check_optional_id("kind", kind)?;
        let query = paging::Query::of(format!("sensors|{device}|{kind}"));
        let (limit, after) = pair_page(page_size, page_token, query)?;
        let device = if device == ALL_DEVICES { "" } else { device };
        let rows = store::list_sensors(&self.db, device, kind, (&after.0, &after.1), limit + 1).await?;
        let (rows, next) = paging::split_page(rows, limit, query, |r| pair_key(&r.device, &r.sensor));
        if rows.is_empty() && !device.is_empty() && page_token.is_empty() {
            self.get(device).await?;
        }
        Ok((rows, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Device {
        Device {
            id: id.into(),
            display_name: "Box".into(),
            source: "opensensemap".into(),
            latitude: Some(51.9),
            longitude: Some(7.6),
            labels: BTreeMap::new(),
            created_at: 0,
            last_seen_at: None,
        }
    }

    #[test]
    fn a_new_device_is_checked_field_by_field() {
        validate(&device("box-1")).unwrap();
        let err = |d: Device| validate(&d).unwrap_err().to_string();
        assert!(err(device("a/b")).starts_with("device_id:"));
        assert!(
            err(Device {
                latitude: Some(91.0),
                ..device("b")
            })
            .starts_with("device.latitude:")
        );
        assert!(
            err(Device {
                source: "a b".into(),
                ..device("b")
            })
            .starts_with("device.source:")
        );
        let labels = BTreeMap::from([("bad key".to_string(), "v".to_string())]);
        assert!(err(Device { labels, ..device("b") }).starts_with("device.labels:"));
    }

    #[test]
    fn pair_tokens_round_trip() {
        let q = paging::Query::of("sensors|-|");
        let pairs = vec![("box", "temperature"), ("box", "x")];
        let (_, token) = paging::split_page(pairs, 1, q, |(d, s)| pair_key(d, s));
        assert_eq!(
            pair_cursor(&token, q).unwrap(),
            ("box".to_string(), "temperature".to_string())
        );
        let (_, token) = paging::split_page(vec![("box", "t")], 1, q, |(d, s)| pair_key(d, s));
        assert_eq!(token, "");
        assert!(pair_cursor(&paging::encode_token(q, "no-slash"), q).is_err());
    }
}
