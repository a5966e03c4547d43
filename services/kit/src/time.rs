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

/// A time as the source systems write it, as µs UTC: RFC 3339 with an offset, or a naive
/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (a `T` instead of the space works too) taken as UTC.
pub fn parse_utc(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_micros());
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        .map(|time| time.and_utc().timestamp_micros())
}

/// A stored time as the sensor hub wrote it: `YYYY-MM-DD HH:MM:SS` UTC, with `.ffffff` when it
/// has a fraction of a second (as Python's `str(datetime)`); `None` outside years 1 to 9999.
pub fn format_hub(micros: i64) -> Option<String> {
    let time = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)?;
    Some(if micros.rem_euclid(1_000_000) == 0 {
        time.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        time.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    })
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
        assert_eq!(parse_utc("2024-12-01 12:00:00"), Some(1_733_054_400_000_000));
        assert_eq!(parse_utc("2024-12-01T13:00:00.25+01:00"), Some(1_733_054_400_250_000));
        assert_eq!(parse_utc("yesterday"), None);
        assert_eq!(
            format_hub(1_733_054_460_000_000).as_deref(),
            Some("2024-12-01 12:01:00")
        );
        assert_eq!(
            format_hub(1_733_054_460_000_500).as_deref(),
            Some("2024-12-01 12:01:00.000500")
        );
        let bad = prost_types::Timestamp { seconds: 0, nanos: -5 };
        assert!(from_timestamp("t", &bad).unwrap_err().to_string().starts_with("t:"));
    }
}
