//! Times are stored as microseconds since the Unix epoch, UTC, in a BIGINT on both backends;
//! these convert them to and from `google.protobuf.Timestamp`.

use crate::error::{Error, Result};

/// The stored times: years 1 to 9999, in microseconds since the epoch.
pub const STORABLE_MICROS: std::ops::RangeInclusive<i64> = -62_135_596_800_000_000..=253_402_300_799_999_999;

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A stored time as a protobuf timestamp.
pub fn to_timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// An optional stored time as an optional protobuf timestamp.
pub fn to_timestamp_opt(micros: Option<i64>) -> Option<prost_types::Timestamp> {
    micros.map(to_timestamp)
}

/// A protobuf timestamp from `field` as stored microseconds ([`STORABLE_MICROS`]).
pub fn from_timestamp(field: &str, ts: &prost_types::Timestamp) -> Result<i64> {
    let micros = ts
        .seconds
        .checked_mul(1_000_000)
        .map(|m| m + i64::from(ts.nanos) / 1000);
    match micros {
        Some(m) if (0..1_000_000_000).contains(&ts.nanos) && STORABLE_MICROS.contains(&m) => Ok(m),
        _ => Err(Error::invalid(field, "timestamp out of range")),
    }
}

/// A protobuf duration from `field` in microseconds (must be positive).
pub fn from_duration(field: &str, d: &prost_types::Duration) -> Result<i64> {
    let micros = d
        .seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(d.nanos) / 1000));
    match micros {
        Some(m) if m > 0 => Ok(m),
        _ => Err(Error::invalid(field, "must be a positive duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_before_and_after_the_epoch() {
        for micros in [0, 1, -1, 1_733_054_400_123_456, -86_400_000_001] {
            assert_eq!(from_timestamp("t", &to_timestamp(micros)).unwrap(), micros);
        }
        let bad = prost_types::Timestamp { seconds: 0, nanos: -5 };
        assert!(from_timestamp("t", &bad).unwrap_err().to_string().starts_with("t:"));
    }
}
