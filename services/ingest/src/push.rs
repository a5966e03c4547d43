//! Readings pushed by clients (`PushReadings`): each batch is checked reading by reading; the
//! valid ones are committed, the invalid ones counted with the first few errors.

use outpost_api::ingest::v1 as pb;
use outpost_kit::time::from_timestamp;

use crate::model::ItemError;
use crate::reading::{self, DEFAULT_DEVICE, Reading};

/// Most readings in one pushed batch.
pub const MAX_PUSH_BATCH: usize = 10_000;
/// Errors a push reports, at most.
pub const MAX_PUSH_ERRORS: usize = 10;

/// What a push did so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PushSummary {
    /// Readings committed.
    pub accepted: i64,
    /// Readings rejected.
    pub rejected: i64,
    /// The first few rejections.
    pub errors: Vec<ItemError>,
}

impl PushSummary {
    /// The summary as the RPC's response.
    pub fn to_pb(&self) -> pb::PushReadingsResponse {
        pb::PushReadingsResponse {
            accepted: self.accepted,
            rejected: self.rejected,
            errors: self.errors.iter().map(Into::into).collect(),
        }
    }

    /// Checks batch number `batch` (from 0); returns its valid readings and counts the others
    /// as rejected, each error naming its field (`readings[3].value: …`).
    pub fn check_batch(&mut self, batch: usize, readings: &[pb::PushedReading]) -> Vec<Reading> {
        let mut valid = Vec::with_capacity(readings.len());
        for (index, pushed) in readings.iter().enumerate() {
            match check_pushed(pushed) {
                Ok(reading) => valid.push(reading),
                Err((field, reason)) => {
                    self.rejected += 1;
                    if self.errors.len() < MAX_PUSH_ERRORS {
                        self.errors.push(ItemError {
                            item: format!("batch {batch}, reading {index}"),
                            message: format!("readings[{index}].{field}: {reason}"),
                        });
                    }
                }
            }
        }
        valid
    }
}

fn check_pushed(pushed: &pb::PushedReading) -> Result<Reading, (&'static str, String)> {
    let time = pushed.time.as_ref().ok_or(("time", "required".to_string()))?;
    let time = from_timestamp("time", time).map_err(|_| ("time", "out of range".to_string()))?;
    let device = if pushed.device.is_empty() {
        DEFAULT_DEVICE
    } else {
        pushed.device.as_str()
    };
    let unit = Some(pushed.unit.as_str()).filter(|u| !u.is_empty());
    reading::check(device, &pushed.sensor, pushed.value, unit, time).map_err(|err| {
        let field = match err.field {
            "timestamp" => "time",
            other => other,
        };
        (field, err.reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(sensor: &str, value: f64, seconds: Option<i64>) -> pb::PushedReading {
        pb::PushedReading {
            sensor: sensor.into(),
            value,
            time: seconds.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn invalid_readings_are_rejected_naming_their_field() {
        let mut summary = PushSummary::default();
        let batch = [
            pushed("temperature", 1.0, Some(10)),
            pushed("temperature", f64::NAN, Some(11)),
            pushed("", 1.0, Some(12)),
            pushed("temperature", 1.0, None),
        ];
        let valid = summary.check_batch(2, &batch);
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].device, "default");
        assert_eq!(summary.rejected, 3);
        let messages: Vec<&str> = summary.errors.iter().map(|e| e.message.as_str()).collect();
        assert!(messages[0].starts_with("readings[1].value:"), "{messages:?}");
        assert!(messages[1].starts_with("readings[2].sensor:"), "{messages:?}");
        assert_eq!(messages[2], "readings[3].time: required");
        assert_eq!(summary.errors[0].item, "batch 2, reading 1");
    }
}
