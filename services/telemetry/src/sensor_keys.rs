//! The in-memory map of (device, sensor) to the sensor's surrogate key, so a batch of readings
//! for known sensors needs no lookup. Entries are added only after the transaction that made
//! them committed, under the device's creation time: a batch learns every device's creation
//! time in its transaction, so a device deleted and created again (here or by another replica)
//! never reuses the keys of its former sensors.

use std::collections::HashMap;
use std::sync::RwLock;

/// Entries kept at most; past that the map starts over (it refills from the database).
pub const MAX_CACHED_SENSORS: usize = 100_000;

/// A stored sensor: its key and what it measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorEntry {
    /// The surrogate key of `sensors` that readings refer to.
    pub key: i64,
    /// What it measures.
    pub kind: String,
    /// Its unit, or empty.
    pub unit: String,
}

#[derive(Default)]
struct DeviceSensors {
    created_at: i64,
    sensors: HashMap<String, SensorEntry>,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<String, DeviceSensors>,
    len: usize,
}

/// The (device, sensor) → key map (see the module documentation).
#[derive(Default)]
pub struct SensorKeys {
    inner: RwLock<Inner>,
}

impl SensorKeys {
    /// The cached entry of a sensor of the device created at `created_at`.
    pub fn get(&self, device: &str, created_at: i64, sensor: &str) -> Option<SensorEntry> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let known = inner.devices.get(device).filter(|d| d.created_at == created_at)?;
        known.sensors.get(sensor).cloned()
    }

    /// The cached entry of a sensor, whatever its device's creation time: for a write that
    /// checks the key against `sensors` itself (keys are never handed out again, so a key still
    /// in `sensors` is still this sensor's).
    pub fn known(&self, device: &str, sensor: &str) -> Option<SensorEntry> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.devices.get(device)?.sensors.get(sensor).cloned()
    }

    /// Remembers committed entries `(device, device created_at, sensor, entry)`.
    pub fn insert_all(&self, entries: impl IntoIterator<Item = (String, i64, String, SensorEntry)>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for (device, created_at, sensor, entry) in entries {
            if inner.len >= MAX_CACHED_SENSORS {
                inner.devices.clear();
                inner.len = 0;
            }
            let Inner { devices, len } = &mut *inner;
            let known = devices.entry(device).or_default();
            if known.created_at != created_at {
                *len -= known.sensors.len();
                known.sensors.clear();
                known.created_at = created_at;
            }
            if known.sensors.insert(sensor, entry).is_none() {
                *len += 1;
            }
        }
    }

    /// Forgets every sensor of a device.
    pub fn forget_device(&self, device: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = inner.devices.remove(device) {
            inner.len -= known.sensors.len();
        }
    }

    /// How many sensors are cached.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: i64) -> SensorEntry {
        SensorEntry {
            key,
            kind: "temperature".into(),
            unit: "°C".into(),
        }
    }

    #[test]
    fn remembers_and_forgets_by_device() {
        let keys = SensorKeys::default();
        keys.insert_all([
            ("a".to_string(), 10, "t".to_string(), entry(1)),
            ("a".to_string(), 10, "h".to_string(), entry(2)),
            ("b".to_string(), 20, "t".to_string(), entry(3)),
        ]);
        keys.insert_all([("a".to_string(), 10, "t".to_string(), entry(1))]);
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.get("a", 10, "h").map(|e| e.key), Some(2));
        keys.forget_device("a");
        assert_eq!(keys.get("a", 10, "t"), None);
        assert_eq!(keys.get("b", 20, "t").map(|e| e.key), Some(3));
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn a_device_created_again_does_not_reuse_old_keys() {
        let keys = SensorKeys::default();
        keys.insert_all([("a".to_string(), 10, "t".to_string(), entry(1))]);
        assert_eq!(keys.get("a", 11, "t"), None);
        keys.insert_all([("a".to_string(), 11, "h".to_string(), entry(5))]);
        assert_eq!(keys.get("a", 11, "t"), None);
        assert_eq!(keys.get("a", 11, "h").map(|e| e.key), Some(5));
        assert_eq!(keys.len(), 1);
    }
}
