//! Rover tracks: waypoints keyed by (site, drive) and traverse segments keyed by (sol, from,
//! to). A load again updates what changed and counts the rest unchanged; queries by inclusive
//! sol range with keyset pages, and the track summary.

use outpost_kit::error::{Error, Result};
use outpost_kit::paging;
use outpost_kit::storage::Db;
use serde::Serialize;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::names::check_id;
use crate::store::tracks as store;

/// Default waypoints per page.
pub const DEFAULT_WAYPOINT_PAGE: u32 = 500;
/// Most waypoints per page.
pub const MAX_WAYPOINT_PAGE: u32 = 10_000;
/// Default traverse segments per page.
pub const DEFAULT_SEGMENT_PAGE: u32 = 100;
/// Most traverse segments per page.
pub const MAX_SEGMENT_PAGE: u32 = 1000;
/// Default and most tracks per page.
const TRACK_PAGE: (u32, u32) = (50, 1000);
/// Most waypoints or segments per upsert.
pub const MAX_UPSERT: usize = 10_000;
/// The largest sol taken (about 270 Earth years).
pub const MAX_SOL: i64 = 100_000;
/// The longest text of a waypoint or segment (RMC, note, final), in bytes.
const MAX_TEXT: usize = 4096;

/// A track with its counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Track {
    /// The id.
    pub id: String,
    /// A title for people.
    pub display_name: String,
    /// Waypoints.
    pub waypoint_count: i64,
    /// The smallest sol of its waypoints (0 when none).
    pub first_sol: i64,
    /// The largest sol of its waypoints (0 when none).
    pub latest_sol: i64,
    /// Traverse segments.
    pub traverse_segment_count: i64,
    /// The largest total distance of its waypoints, metres.
    pub total_distance_m: f64,
    /// The last time a load changed it, microseconds.
    pub updated_at: i64,
}

/// A waypoint with every property of its source: the known ones typed, the others in `extra`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Waypoint {
    /// Site number (the key, with the drive).
    pub site: i64,
    /// Drive number.
    pub drive: i64,
    /// The Martian day.
    pub sol: i64,
    /// The source's id, `{site}_{drive}`.
    pub rmc: String,
    /// Degrees east.
    pub lon: f64,
    /// Degrees north.
    pub lat: f64,
    /// Metres above the geoid.
    pub elev_geoid: f64,
    /// Metres above the reference radii.
    pub elev_radii: f64,
    /// Distance from the centre, metres.
    pub radius: f64,
    /// Map easting, metres.
    pub easting: f64,
    /// Map northing, metres.
    pub northing: f64,
    /// Degrees.
    pub roll: f64,
    /// Degrees.
    pub pitch: f64,
    /// Degrees.
    pub yaw: f64,
    /// Radians.
    pub yaw_rad: f64,
    /// Degrees.
    pub tilt: f64,
    /// Metres driven to reach it.
    pub dist_m: f64,
    /// Metres driven in all.
    pub dist_total_m: f64,
    /// Kilometres driven in all.
    pub dist_km: f64,
    /// Miles driven in all.
    pub dist_mi: f64,
    /// Spacecraft clock at the drive's start.
    pub sclk_start: Option<i64>,
    /// Spacecraft clock at the drive's end.
    pub sclk_end: Option<i64>,
    /// Whether the position is final (`y`).
    pub final_: String,
    /// The source's note.
    pub note: String,
    /// The source's images, as they came.
    pub images: Option<Json>,
    /// The source's other properties, as they came.
    pub extra: Map<String, Json>,
}

impl Waypoint {
    /// The waypoint id in names: `{site}_{drive}`.
    pub fn id(&self) -> String {
        format!("{}_{}", self.site, self.drive)
    }
}

/// A traverse segment: one drive's path.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Segment {
    /// The Martian day.
    pub sol: i64,
    /// RMC the drive started at.
    pub from_rmc: String,
    /// RMC the drive ended at.
    pub to_rmc: String,
    /// Metres.
    pub length_m: f64,
    /// Spacecraft clock at the drive's start.
    pub sclk_start: Option<i64>,
    /// Spacecraft clock at the drive's end.
    pub sclk_end: Option<i64>,
    /// True when the points have an elevation.
    pub has_elevation: bool,
    /// `[lon, lat, elevation]` (elevation 0 when the path is 2-D).
    pub points: Vec<[f64; 3]>,
    /// The source's other properties, as they came.
    pub extra: Map<String, Json>,
}

/// What an upsert did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// New rows.
    pub created: i64,
    /// Stored rows that changed.
    pub updated: i64,
    /// Stored rows that were the same.
    pub unchanged: i64,
}

/// An inclusive sol range; either end open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SolRange {
    /// The smallest sol, when set.
    pub min: Option<i64>,
    /// The largest sol, when set.
    pub max: Option<i64>,
}

impl SolRange {
    /// Checks the ends (fields `min_sol` and `max_sol`).
    pub fn check(&self) -> Result<()> {
        for (field, sol) in [("min_sol", self.min), ("max_sol", self.max)] {
            if sol.is_some_and(|s| !(0..=MAX_SOL).contains(&s)) {
                return Err(Error::invalid(field, format!("must be between 0 and {MAX_SOL}")));
            }
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            return Err(Error::invalid("min_sol", format!("{min} is above max_sol {max}")));
        }
        Ok(())
    }

    /// The ends as bounds for SQL.
    pub(crate) fn bounds(&self) -> (i64, i64) {
        (self.min.unwrap_or(i64::MIN), self.max.unwrap_or(i64::MAX))
    }

    fn key(&self) -> String {
        format!("{:?}..{:?}", self.min, self.max)
    }
}

/// `tracks/{track}`.
pub fn track_name(track: &str) -> String {
    format!("tracks/{track}")
}

/// `tracks/{track}/waypoints/{site}_{drive}`.
pub fn waypoint_name(track: &str, waypoint: &Waypoint) -> String {
    format!("tracks/{track}/waypoints/{}", waypoint.id())
}

/// The track id of `tracks/{track}` in `field`.
pub fn parse_track<'a>(field: &str, name: &'a str) -> Result<&'a str> {
    let track = name
        .strip_prefix("tracks/")
        .ok_or_else(|| Error::invalid(field, "must be tracks/{track}"))?;
    check_id(field, track)?;
    Ok(track)
}

/// The track id, site and drive of `tracks/{track}/waypoints/{site}_{drive}` in `field`.
pub fn parse_waypoint<'a>(field: &str, name: &'a str) -> Result<(&'a str, i64, i64)> {
    let shape = || Error::invalid(field, "must be tracks/{track}/waypoints/{site}_{drive}");
    let rest = name.strip_prefix("tracks/").ok_or_else(shape)?;
    let (track, id) = rest.split_once("/waypoints/").ok_or_else(shape)?;
    check_id(field, track)?;
    let (site, drive) = id.split_once('_').ok_or_else(shape)?;
    let number = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(shape);
    Ok((track, number(site)?, number(drive)?))
}

fn check_text(field: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT {
        return Err(Error::invalid(field, format!("must be at most {MAX_TEXT} bytes")));
    }
    Ok(())
}

fn check_numbers<'a>(field: &str, numbers: impl IntoIterator<Item = (&'a str, f64)>) -> Result<()> {
    for (name, value) in numbers {
        if !value.is_finite() {
            return Err(Error::invalid(format!("{field}.{name}"), "must be a finite number"));
        }
    }
    Ok(())
}

fn check_sclk(field: &str, start: Option<i64>, end: Option<i64>) -> Result<()> {
    for (name, value) in [("sclk_start", start), ("sclk_end", end)] {
        if value.is_some_and(|v| v < 0) {
            return Err(Error::invalid(format!("{field}.{name}"), "must not be negative"));
        }
    }
    Ok(())
}

/// Checks a waypoint at `field` (such as `waypoints[3]`).
pub fn validate_waypoint(field: &str, w: &Waypoint) -> Result<()> {
    if !(0..=MAX_SOL).contains(&w.sol) {
        return Err(Error::invalid(
            format!("{field}.sol"),
            format!("must be between 0 and {MAX_SOL}"),
        ));
    }
    for (name, n) in [("site", w.site), ("drive", w.drive)] {
        if !(0..=i64::from(i32::MAX)).contains(&n) {
            return Err(Error::invalid(format!("{field}.{name}"), "must not be negative"));
        }
    }
    check_numbers(
        field,
        [
            ("lon", w.lon),
            ("lat", w.lat),
            ("elev_geoid", w.elev_geoid),
            ("elev_radii", w.elev_radii),
            ("radius", w.radius),
            ("easting", w.easting),
            ("northing", w.northing),
            ("roll", w.roll),
            ("pitch", w.pitch),
            ("yaw", w.yaw),
            ("yaw_rad", w.yaw_rad),
            ("tilt", w.tilt),
            ("dist_m", w.dist_m),
            ("dist_total_m", w.dist_total_m),
            ("dist_km", w.dist_km),
            ("dist_mi", w.dist_mi),
        ],
    )?;
    if !(-90.0..=90.0).contains(&w.lat) {
        return Err(Error::invalid(format!("{field}.lat"), "must be between -90 and 90"));
    }
    if !(-360.0..=360.0).contains(&w.lon) {
        return Err(Error::invalid(format!("{field}.lon"), "must be between -360 and 360"));
    }
    check_sclk(field, w.sclk_start, w.sclk_end)?;
    check_text(&format!("{field}.rmc"), &w.rmc)?;
    check_text(&format!("{field}.note"), &w.note)?;
    check_text(&format!("{field}.final"), &w.final_)?;
    Ok(())
}

/// Checks a traverse segment at `field` (such as `segments[3]`).
pub fn validate_segment(field: &str, s: &Segment) -> Result<()> {
    if !(0..=MAX_SOL).contains(&s.sol) {
        return Err(Error::invalid(
            format!("{field}.sol"),
            format!("must be between 0 and {MAX_SOL}"),
        ));
    }
    for (name, rmc) in [("from_rmc", &s.from_rmc), ("to_rmc", &s.to_rmc)] {
        if rmc.is_empty() {
            return Err(Error::invalid(format!("{field}.{name}"), "is required"));
        }
        check_text(&format!("{field}.{name}"), rmc)?;
    }
    check_numbers(field, [("length_m", s.length_m)])?;
    check_sclk(field, s.sclk_start, s.sclk_end)?;
    if s.points.len() < 2 {
        return Err(Error::invalid(
            format!("{field}.points"),
            "a path needs at least 2 points",
        ));
    }
    for (i, p) in s.points.iter().enumerate() {
        if p.iter().any(|v| !v.is_finite()) || !(-90.0..=90.0).contains(&p[1]) {
            return Err(Error::invalid(
                format!("{field}.points[{i}]"),
                "must be finite, with a latitude between -90 and 90",
            ));
        }
    }
    Ok(())
}

/// The hex SHA-256 of a row's content, to tell a changed row from an unchanged one.
pub(crate) fn digest(row: &impl Serialize) -> Result<String> {
    let bytes = serde_json::to_vec(row).map_err(anyhow::Error::from)?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// Keeps the last of each key, in first-seen order.
fn last_per_key<T, K: Eq + std::hash::Hash>(rows: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut index = std::collections::HashMap::new();
    let mut out: Vec<T> = Vec::with_capacity(rows.len());
    for row in rows {
        match index.entry(key(&row)) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = row,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(row);
            }
        }
    }
    out
}

/// The `{sol}:{site}:{drive}` cursor of a waypoint.
fn waypoint_cursor(w: &Waypoint) -> String {
    format!("{}:{}:{}", w.sol, w.site, w.drive)
}

fn bad_token() -> Error {
    Error::invalid("page_token", "not a token from a previous response")
}

/// Tracks with their waypoints and traverse.
#[derive(Clone)]
pub struct Tracks {
    db: Db,
}

impl Tracks {
    /// Tracks over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// One track with its counts.
    pub async fn get(&self, id: &str) -> Result<Track> {
        store::get_track(&self.db, id)
            .await?
            .ok_or_else(|| Error::NotFound(track_name(id)))
    }

    /// A page of tracks by id and the next page's token.
    pub async fn list(&self, page_size: i32, page_token: &str) -> Result<(Vec<Track>, String)> {
        let limit = paging::page_size(page_size, TRACK_PAGE.0, TRACK_PAGE.1)?;
        let query = paging::Query::of("tracks");
        let after = paging::decode_token(page_token, query)?.unwrap_or_default();
        let rows = store::list_tracks(&self.db, &after, limit + 1).await?;
        Ok(paging::split_page(rows, limit, query, |t| t.id.clone()))
    }

    /// Deletes a track with its waypoints and traverse.
    pub async fn delete(&self, id: &str) -> Result<()> {
        if !store::delete_track(&self.db, id).await? {
            return Err(Error::NotFound(track_name(id)));
        }
        Ok(())
    }

    /// Creates or updates waypoints of `track` (created as needed), counting what changed.
    pub async fn upsert_waypoints(&self, track: &str, waypoints: Vec<Waypoint>) -> Result<Counts> {
        check_id("parent", track)?;
        if waypoints.len() > MAX_UPSERT {
            return Err(Error::invalid("waypoints", format!("at most {MAX_UPSERT} per call")));
        }
        for (i, w) in waypoints.iter().enumerate() {
            validate_waypoint(&format!("waypoints[{i}]"), w)?;
        }
        let waypoints = last_per_key(waypoints, |w| (w.site, w.drive));
        let rows = waypoints
            .into_iter()
            .map(|w| Ok((digest(&w)?, w)))
            .collect::<Result<Vec<_>>>()?;
        store::upsert_waypoints(&self.db, track, rows).await
    }

    /// One waypoint.
    pub async fn get_waypoint(&self, track: &str, site: i64, drive: i64) -> Result<Waypoint> {
        store::get_waypoint(&self.db, track, site, drive)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tracks/{track}/waypoints/{site}_{drive}")))
    }

    /// A page of waypoints of `track` over `range`, by sol, site and drive.
    pub async fn list_waypoints(
        &self,
        track: &str,
        range: SolRange,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Waypoint>, String)> {
        range.check()?;
        let limit = paging::page_size(page_size, DEFAULT_WAYPOINT_PAGE, MAX_WAYPOINT_PAGE)?;
        let query = paging::Query::of(format!("waypoints|{track}|{}", range.key()));
        let after = match paging::decode_token(page_token, query)? {
            None => None,
            Some(cursor) => {
                let parts: Vec<i64> = cursor
                    .split(':')
                    .map(|p| p.parse().map_err(|_| bad_token()))
                    .collect::<Result<_>>()?;
                let [sol, site, drive] = parts[..] else {
                    return Err(bad_token());
                };
                Some((sol, site, drive))
            }
        };
        let rows = store::list_waypoints(&self.db, track, range, after, limit + 1).await?;
        let (rows, next) = paging::split_page(rows, limit, query, waypoint_cursor);
        if rows.is_empty() && page_token.is_empty() {
            self.get(track).await?;
        }
        Ok((rows, next))
    }

    /// Creates or updates traverse segments of `track` (created as needed), counting what changed.
    pub async fn upsert_traverse(&self, track: &str, segments: Vec<Segment>) -> Result<Counts> {
        check_id("parent", track)?;
        if segments.len() > MAX_UPSERT {
            return Err(Error::invalid("segments", format!("at most {MAX_UPSERT} per call")));
        }
        for (i, s) in segments.iter().enumerate() {
            validate_segment(&format!("segments[{i}]"), s)?;
        }
        let segments = last_per_key(segments, |s| (s.sol, s.from_rmc.clone(), s.to_rmc.clone()));
        let rows = segments
            .into_iter()
            .map(|s| Ok((digest(&s)?, s)))
            .collect::<Result<Vec<_>>>()?;
        store::upsert_segments(&self.db, track, rows).await
    }

    /// A page of traverse segments of `track` over `range`, by sol, from and to.
    pub async fn list_traverse(
        &self,
        track: &str,
        range: SolRange,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Segment>, String)> {
        range.check()?;
        let limit = paging::page_size(page_size, DEFAULT_SEGMENT_PAGE, MAX_SEGMENT_PAGE)?;
        let query = paging::Query::of(format!("traverse|{track}|{}", range.key()));
        let after = match paging::decode_token(page_token, query)? {
            None => None,
            Some(cursor) => {
                let (sol, from, to): (i64, String, String) = serde_json::from_str(&cursor).map_err(|_| bad_token())?;
                Some((sol, from, to))
            }
        };
        let rows = store::list_segments(&self.db, track, range, after, limit + 1).await?;
        let (rows, next) = paging::split_page(rows, limit, query, |s| {
            serde_json::json!([s.sol, s.from_rmc, s.to_rmc]).to_string()
        });
        if rows.is_empty() && page_token.is_empty() {
            self.get(track).await?;
        }
        Ok((rows, next))
    }

    /// The track with its counts, and its latest waypoint (by sol, site and drive).
    pub async fn summary(&self, track: &str) -> Result<(Track, Option<Waypoint>)> {
        let summary = self.get(track).await?;
        let latest = store::latest_waypoint(&self.db, track).await?;
        Ok((summary, latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_name_the_field() {
        assert_eq!(parse_track("name", "tracks/perseverance").unwrap(), "perseverance");
        assert!(
            parse_track("name", "track/x")
                .unwrap_err()
                .to_string()
                .starts_with("name:")
        );
        assert_eq!(
            parse_waypoint("name", "tracks/m20/waypoints/79_198").unwrap(),
            ("m20", 79, 198)
        );
        assert!(parse_waypoint("name", "tracks/m20/waypoints/79-198").is_err());
    }

    #[test]
    fn a_sol_range_is_checked() {
        SolRange {
            min: Some(0),
            max: Some(400),
        }
        .check()
        .unwrap();
        let err = SolRange {
            min: Some(5),
            max: Some(4),
        }
        .check()
        .unwrap_err();
        assert!(err.to_string().starts_with("min_sol:"), "{err}");
        assert!(
            SolRange {
                min: Some(-1),
                max: None
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn waypoints_are_checked_field_by_field() {
        let w = Waypoint {
            sol: 13,
            site: 3,
            lat: 18.4,
            lon: 77.4,
            ..Default::default()
        };
        validate_waypoint("waypoints[0]", &w).unwrap();
        let err = validate_waypoint("waypoints[2]", &Waypoint { sol: -1, ..w.clone() }).unwrap_err();
        assert!(err.to_string().starts_with("waypoints[2].sol:"), "{err}");
        let err = validate_waypoint("waypoints[0]", &Waypoint { yaw: f64::NAN, ..w }).unwrap_err();
        assert!(err.to_string().starts_with("waypoints[0].yaw:"), "{err}");
    }

    #[test]
    fn the_last_of_a_key_wins_and_digests_see_every_field() {
        let rows = last_per_key(vec![(1, "a"), (2, "b"), (1, "c")], |r| r.0);
        assert_eq!(rows, vec![(1, "c"), (2, "b")]);
        let w = Waypoint::default();
        let mut other = w.clone();
        other.extra.insert("x".into(), Json::from(1));
        assert_ne!(digest(&w).unwrap(), digest(&other).unwrap());
        assert_eq!(digest(&w).unwrap(), digest(&w.clone()).unwrap());
    }
}
