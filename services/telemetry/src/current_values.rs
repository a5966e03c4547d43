//! The current-value view: per sensor, the reading with the newest time (whatever order the
//! readings came in), kept by the write transaction.

use outpost_kit::error::{Error, Result};
use outpost_kit::storage::Db;

use crate::devices::{pair_key, pair_page};
use crate::names::{check_optional_id, sensor_name};
use crate::readings::Reading;
use crate::store::{self, CurrentFilter};
use outpost_kit::paging;

/// A sensor's current value; NOT_FOUND when it has none.
pub async fn get(db: &Db, device: &str, sensor: &str) -> Result<Reading> {
    store::get_current(db, device, sensor)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{}/currentValue", sensor_name(device, sensor))))
}

/// A page of current values by device, then sensor, and the next page's token. Empty filters
/// match everything.
pub async fn list(
    db: &Db,
    filter: CurrentFilter<'_>,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<Reading>, String)> {
    for (field, value) in [
        ("device", filter.device),
        ("sensor", filter.sensor),
        ("kind", filter.kind),
    ] {
        check_optional_id(field, value)?;
    }
    let query = paging::Query::of(format!("current|{}|{}|{}", filter.device, filter.sensor, filter.kind));
    let (limit, after) = pair_page(page_size, page_token, query)?;
    let rows = store::list_current(db, filter, (&after.0, &after.1), limit + 1).await?;
    Ok(paging::split_page(rows, limit, query, |r| {
        pair_key(&r.device, &r.sensor)
    }))
}
