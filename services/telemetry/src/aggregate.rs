//! Aggregates: the mean of each device's current value of a sensor kind, over devices seen
//! within a window, with a status against the kind's thresholds. Answers are cached for a
//! configured time; writes do not invalidate them (the source system's documented behaviour).

use std::sync::Arc;
use std::time::Duration;

use outpost_kit::error::{Error, Result};
use outpost_kit::storage::{Cache, Db};
use outpost_kit::time::now_micros;
use serde::{Deserialize, Serialize};

use crate::names::check_id;
use crate::store;

/// The kind aggregated when none is asked for.
pub const DEFAULT_KIND: &str = "temperature";
/// Temperatures at or below this (°C) are too cold.
pub const TOO_COLD_AT_OR_BELOW: f64 = 10.0;
/// Temperatures above the cold threshold and at or below this (°C) are good; above, too hot.
pub const GOOD_AT_OR_BELOW: f64 = 36.0;

/// How an aggregate compares with its kind's thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// No average, or no thresholds for the kind.
    Unspecified,
    /// At or below the low threshold.
    TooCold,
    /// Between the thresholds.
    Good,
    /// Above the high threshold.
    TooHot,
}

impl Status {
    /// The source system's wording: `Too cold`, `Good`, `Too hot`, or empty.
    pub fn text(self) -> &'static str {
        match self {
            Status::Unspecified => "",
            Status::TooCold => "Too cold",
            Status::Good => "Good",
            Status::TooHot => "Too hot",
        }
    }
}

/// The status of an average of `kind` (thresholds exist for `temperature` only, in °C).
pub fn status(kind: &str, average: Option<f64>) -> Status {
    match average {
        Some(value) if kind == DEFAULT_KIND => {
            if value <= TOO_COLD_AT_OR_BELOW {
                Status::TooCold
            } else if value <= GOOD_AT_OR_BELOW {
                Status::Good
            } else {
                Status::TooHot
            }
        }
        _ => Status::Unspecified,
    }
}

/// An aggregate of current values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// The sensor kind.
    pub kind: String,
    /// The mean of the devices' current values; `None` when there are none.
    pub average: Option<f64>,
    /// The (most common) unit of the values.
    pub unit: String,
    /// Devices averaged.
    pub device_count: i64,
    /// Against the kind's thresholds.
    pub status: Status,
    /// When it was computed, microseconds.
    pub compute_time: i64,
    /// Whether it came from the cache.
    #[serde(skip)]
    pub cached: bool,
}

/// Computes and caches aggregates.
#[derive(Clone)]
pub struct Aggregates {
    db: Db,
    cache: Arc<dyn Cache>,
    ttl: Duration,
    default_window: i64,
}

impl Aggregates {
    /// Aggregates over `db`, cached in `cache` for `ttl` (zero: not cached), over
    /// `default_window` microseconds when a request gives none.
    pub fn new(db: Db, cache: Arc<dyn Cache>, ttl: Duration, default_window: i64) -> Self {
        Self {
            db,
            cache,
            ttl,
            default_window,
        }
    }

    /// The aggregate of `kind` (default `temperature`) over devices whose current value is
    /// within `window` microseconds of now (default: configured). Answers over at least one
    /// device are cached; a cache that fails is logged and bypassed.
    pub async fn aggregate(&self, kind: &str, window: Option<i64>) -> Result<Aggregate> {
        let kind = if kind.is_empty() { DEFAULT_KIND } else { kind };
        check_id("kind", kind)?;
        let window = window.unwrap_or(self.default_window);
        if !(1..=crate::MAX_SPAN_SECONDS * 1_000_000).contains(&window) {
            return Err(Error::invalid("window", "must be positive and at most 100 years"));
        }
        let key = format!("aggregate:v1:{kind}:{window}");
        if !self.ttl.is_zero() {
            match self.cache.get(&key).await {
                Ok(Some(bytes)) => match serde_json::from_slice::<Aggregate>(&bytes) {
                    Ok(hit) => return Ok(Aggregate { cached: true, ..hit }),
                    Err(err) => tracing::warn!(%key, error = %err, "ignoring an unreadable cached aggregate"),
                },
                Ok(None) => {}
                Err(err) => tracing::warn!(%key, error = format!("{err:#}"), "aggregate cache unavailable"),
            }
        }
        let now = now_micros();
        let (device_count, average, unit) =
            store::aggregate_current(&self.db, kind, now.saturating_sub(window)).await?;
        let aggregate = Aggregate {
            kind: kind.to_string(),
            average,
            unit,
            device_count,
            status: status(kind, average),
            compute_time: now,
            cached: false,
        };
        // An empty answer is not cached: the next load of readings must show at once.
        if !self.ttl.is_zero() && device_count > 0 {
            let bytes = serde_json::to_vec(&aggregate).map_err(anyhow::Error::from)?;
            if let Err(err) = self.cache.set(&key, &bytes, self.ttl).await {
                tracing::warn!(%key, error = format!("{err:#}"), "aggregate not cached");
            }
        }
        Ok(aggregate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_thresholds_at_their_boundaries() {
        let t = |v: f64| status("temperature", Some(v));
        assert_eq!(t(-5.0), Status::TooCold);
        assert_eq!(t(10.0), Status::TooCold);
        assert_eq!(t(10.0001), Status::Good);
        assert_eq!(t(19.12), Status::Good);
        assert_eq!(t(36.0), Status::Good);
        assert_eq!(t(36.0001), Status::TooHot);
        assert_eq!(status("temperature", None), Status::Unspecified);
        assert_eq!(status("humidity", Some(50.0)), Status::Unspecified);
    }

    #[test]
    fn status_texts_are_the_source_systems() {
        assert_eq!(Status::TooCold.text(), "Too cold");
        assert_eq!(Status::Good.text(), "Good");
        assert_eq!(Status::TooHot.text(), "Too hot");
        assert_eq!(Status::Unspecified.text(), "");
    }
}
