//! Readings over a time range, one by one or per time bucket (avg/min/max/count), in pages
//! walked by keyset cursors, so every row is returned exactly once even while writes go on.

use outpost_kit::error::{Error, Result};
use outpost_kit::paging;
use outpost_kit::storage::Db;

use crate::names::{ALL_DEVICES, sensor_name};
use crate::readings::Reading;
use crate::store::{self, BucketRow, SeriesFilter};

/// Default readings or buckets per page.
pub const DEFAULT_PAGE: u32 = 500;
/// Most readings or buckets per page.
pub const MAX_PAGE: u32 = 10_000;
/// The narrowest bucket: one second, in microseconds.
pub const MIN_BUCKET: i64 = 1_000_000;

/// What to list.
#[derive(Clone, Debug)]
pub struct SeriesQuery<'a> {
    /// A device id, or `-` for every device.
    pub device: &'a str,
    /// The sensor id.
    pub sensor: &'a str,
    /// Readings at or after this time (microseconds), when set.
    pub start: Option<i64>,
    /// Readings before this time, when set.
    pub end: Option<i64>,
    /// Bucket width in microseconds, when buckets are wanted.
    pub bucket: Option<i64>,
}

/// One page of readings or buckets.
#[derive(Clone, Debug, Default)]
pub struct SeriesPage {
    /// Oldest first, when no bucket width was given.
    pub readings: Vec<Reading>,
    /// Oldest first, when a bucket width was given.
    pub buckets: Vec<BucketRow>,
    /// Empty on the last page.
    pub next_page_token: String,
}

fn bad_token() -> Error {
    Error::invalid("page_token", "not a token from a previous response")
}

/// A reading cursor `r:{time}:{key}`.
fn reading_cursor(token: &str, query: paging::Query) -> Result<Option<(i64, i64)>> {
    let Some(cursor) = paging::decode_token(token, query)? else {
        return Ok(None);
    };
    let (ts, key) = cursor
        .strip_prefix("r:")
        .and_then(|c| c.split_once(':'))
        .ok_or_else(bad_token)?;
    Ok(Some((
        ts.parse().map_err(|_| bad_token())?,
        key.parse().map_err(|_| bad_token())?,
    )))
}

/// A bucket cursor `b:{start}`.
fn bucket_cursor(token: &str, query: paging::Query) -> Result<Option<i64>> {
    let Some(cursor) = paging::decode_token(token, query)? else {
        return Ok(None);
    };
    let start = cursor.strip_prefix("b:").ok_or_else(bad_token)?;
    Ok(Some(start.parse().map_err(|_| bad_token())?))
}

/// Lists a page of readings or buckets.
pub async fn list(db: &Db, query: &SeriesQuery<'_>, page_size: i32, page_token: &str) -> Result<SeriesPage> {
    let limit = paging::page_size(page_size, DEFAULT_PAGE, MAX_PAGE)?;
    let start = query.start.unwrap_or(i64::MIN);
    let end = query.end.unwrap_or(i64::MAX);
    if start >= end {
        return Err(Error::invalid("end_time", "must be after start_time"));
    }
    let device = if query.device == ALL_DEVICES { "" } else { query.device };
    let bound = paging::Query::of(format!(
        "readings|{}|{}|{:?}|{:?}|{:?}",
        query.device, query.sensor, query.start, query.end, query.bucket
    ));
    let mut filter = SeriesFilter {
        sensor: query.sensor,
        device,
        lower: start,
        end,
    };
    let page = match query.bucket {
        None => {
            let cursor = reading_cursor(page_token, bound)?;
            let (after_ts, after_key) = cursor.unwrap_or((i64::MIN, i64::MIN));
            filter.lower = start.max(after_ts);
            let rows = store::list_readings(db, &filter, (after_ts, after_key), limit + 1).await?;
            let (rows, next_page_token) =
                paging::split_page(rows, limit, bound, |(last, key)| format!("r:{}:{key}", last.time));
            SeriesPage {
                readings: rows.into_iter().map(|(r, _)| r).collect(),
                next_page_token,
                ..Default::default()
            }
        }
        Some(width) => {
            if !(MIN_BUCKET..=crate::MAX_SPAN_SECONDS * 1_000_000).contains(&width) {
                return Err(Error::invalid(
                    "bucket",
                    "must be at least 1 second and at most 100 years",
                ));
            }
            if let Some(after) = bucket_cursor(page_token, bound)? {
                filter.lower = start.max(after.checked_add(width).ok_or_else(bad_token)?);
            }
            let rows = store::list_buckets(db, &filter, width, limit + 1).await?;
            let (buckets, next_page_token) = paging::split_page(rows, limit, bound, |last| format!("b:{}", last.start));
            SeriesPage {
                buckets,
                next_page_token,
                ..Default::default()
            }
        }
    };
    let empty = page.readings.is_empty() && page.buckets.is_empty();
    if empty
        && page_token.is_empty()
        && !device.is_empty()
        && store::get_sensor(db, device, query.sensor).await?.is_none()
    {
        return Err(Error::NotFound(sensor_name(device, query.sensor)));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_do_not_mix() {
        let q = paging::Query::of("readings|a|t");
        let token = paging::encode_token(q, "r:-5:7");
        assert_eq!(reading_cursor(&token, q).unwrap(), Some((-5, 7)));
        assert!(bucket_cursor(&token, q).is_err());
        let token = paging::encode_token(q, "b:3600000000");
        assert_eq!(bucket_cursor(&token, q).unwrap(), Some(3_600_000_000));
        assert!(reading_cursor(&token, q).is_err());
        assert_eq!(reading_cursor("", q).unwrap(), None);
        assert!(bucket_cursor(&token, paging::Query::of("readings|b|t")).is_err());
    }
}
