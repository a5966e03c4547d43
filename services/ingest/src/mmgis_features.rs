//! NASA MMGIS GeoJSON as waypoints and traverse segments. Tolerant of what such files hold: a
//! byte order mark, CRLF line endings, numbers sent as strings, `dist_total` for
//! `dist_total_m`. Each feature stands alone: one without a sol, or with bad geometry, is an
//! error of its own and the others still load. Every property is kept: the known ones typed,
//! the others (and known ones whose value does not fit the type) in `extra`, as they came.

use outpost_api::telemetry::v1 as pb;
use outpost_kit::json::{to_struct, to_value};
use serde_json::{Map, Value as Json};

/// The features of a GeoJSON FeatureCollection (a leading byte order mark is skipped).
pub fn features(bytes: &[u8]) -> Result<Vec<Json>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let doc: Json = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match doc {
        Json::Object(mut map) => match map.remove("features") {
            Some(Json::Array(features)) => Ok(features),
            _ => Err("not a GeoJSON FeatureCollection (no `features` array)".into()),
        },
        _ => Err("not a GeoJSON FeatureCollection (not a JSON object)".into()),
    }
}

/// A number, or a string that holds one; finite only.
pub fn number(value: &Json) -> Option<f64> {
    let n = match value {
        Json::Number(n) => n.as_f64()?,
        Json::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A whole number, or a string that holds one.
pub fn integer(value: &Json) -> Option<i64> {
    match value {
        Json::Number(n) => n.as_i64().or_else(|| whole(n.as_f64()?)),
        Json::String(s) => s.trim().parse::<i64>().ok().or_else(|| whole(s.trim().parse().ok()?)),
        _ => None,
    }
}

fn whole(n: f64) -> Option<i64> {
    (n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e15).then_some(n as i64)
}

/// How a feature is named in a run's errors: its index, and its id when it has one.
pub fn item(index: usize, feature: &Json, id_key: &str) -> String {
    match feature["properties"].get(id_key).and_then(Json::as_str) {
        Some(id) => format!("feature {index} ({id_key} {id})"),
        None => format!("feature {index}"),
    }
}

/// Properties taken out one by one; what is left is `extra`.
struct Props(Map<String, Json>);

impl Props {
    fn of(feature: &Json) -> Result<Props, String> {
        match feature.get("properties") {
            Some(Json::Object(map)) => Ok(Props(map.clone())),
            _ => Err("no properties".into()),
        }
    }

    /// A typed number; a value that is not one stays in `extra`.
    fn number(&mut self, key: &str) -> Option<f64> {
        let n = number(self.0.get(key)?)?;
        self.0.remove(key);
        Some(n)
    }

    fn integer(&mut self, key: &str) -> Option<i64> {
        let n = integer(self.0.get(key)?)?;
        self.0.remove(key);
        Some(n)
    }

    fn text(&mut self, key: &str) -> Option<String> {
        let Some(Json::String(_)) = self.0.get(key) else {
            return None;
        };
        match self.0.remove(key) {
            Some(Json::String(s)) => Some(s),
            _ => None,
        }
    }

    fn sol(&mut self) -> Result<i32, String> {
        match self.0.get("sol") {
            None | Some(Json::Null) => Err("no sol".into()),
            Some(value) => {
                let sol = integer(value)
                    .and_then(|s| i32::try_from(s).ok())
                    .filter(|s| *s >= 0)
                    .ok_or_else(|| format!("sol {} is not a whole number of 0 or more", shown(value)))?;
                self.0.remove("sol");
                Ok(sol)
            }
        }
    }

    fn extra(self) -> prost_types::Struct {
        to_struct(self.0)
    }
}

/// At most 64 characters of a value, for an error.
fn shown(value: &Json) -> String {
    value.to_string().chars().take(64).collect()
}

/// `[lon, lat]` or `[lon, lat, z]` of a GeoJSON position.
fn position(value: &Json) -> Option<(f64, f64, Option<f64>)> {
    let items = value.as_array()?;
    if !(2..=4).contains(&items.len()) {
        return None;
    }
    let lon = number(&items[0])?;
    let lat = number(&items[1])?;
    if !(-90.0..=90.0).contains(&lat) || !(-360.0..=360.0).contains(&lon) {
        return None;
    }
    let z = match items.get(2) {
        Some(z) => Some(number(z)?),
        None => None,
    };
    Some((lon, lat, z))
}

fn geometry<'a>(feature: &'a Json, kind: &str) -> Result<&'a Json, String> {
    let geometry = feature
        .get("geometry")
        .filter(|g| !g.is_null())
        .ok_or("bad geometry: none")?;
    match geometry.get("type").and_then(Json::as_str) {
        Some(t) if t == kind => geometry
            .get("coordinates")
            .ok_or_else(|| "bad geometry: no coordinates".into()),
        Some(t) => Err(format!(
            "bad geometry: a {}, not a {kind}",
            t.chars().take(32).collect::<String>()
        )),
        None => Err("bad geometry: no type".into()),
    }
}

/// A waypoint of a Point feature.
pub fn waypoint(feature: &Json) -> Result<pb::Waypoint, String> {
    let mut p = Props::of(feature)?;
    let sol = p.sol()?;
    let coordinates = geometry(feature, "Point")?;
    let (lon, lat, z) = position(coordinates).ok_or_else(|| {
        format!(
            "bad geometry: {} is not a position [lon, lat] or [lon, lat, elevation]",
            shown(coordinates)
        )
    })?;
    let rmc = p.text("RMC").unwrap_or_default();
    let from_rmc = rmc
        .split_once('_')
        .and_then(|(s, d)| Some((s.parse().ok()?, d.parse().ok()?)));
    let site = p.integer("site");
    let drive = p.integer("drive");
    let (site, drive) = match (site, drive, from_rmc) {
        (Some(site), Some(drive), _) => (site, drive),
        (_, _, Some(pair)) => pair,
        _ => return Err("no site and drive (nor an RMC `{site}_{drive}`)".into()),
    };
    let (site, drive) = match (i32::try_from(site), i32::try_from(drive)) {
        (Ok(site), Ok(drive)) if site >= 0 && drive >= 0 => (site, drive),
        _ => {
            return Err(format!(
                "site {site} and drive {drive} must be whole numbers of 0 or more"
            ));
        }
    };
    let lon = p.number("lon").unwrap_or(lon);
    let lat = p.number("lat").unwrap_or(lat);
    let elevation = p.number("elev_geoid").or(z).unwrap_or_default();
    let dist_total = p
        .number("dist_total_m")
        .or_else(|| p.number("dist_total"))
        .unwrap_or_default();
    Ok(pb::Waypoint {
        name: String::new(),
        sol,
        site,
        drive,
        rmc: if rmc.is_empty() { format!("{site}_{drive}") } else { rmc },
        position: Some(pb::Position {
            longitude: lon,
            latitude: lat,
            elevation_m: elevation,
            easting: p.number("easting").unwrap_or_default(),
            northing: p.number("northing").unwrap_or_default(),
            radius_m: p.number("radius").unwrap_or_default(),
            elevation_radii_m: p.number("elev_radii").unwrap_or_default(),
        }),
        orientation: Some(pb::Orientation {
            roll: p.number("roll").unwrap_or_default(),
            pitch: p.number("pitch").unwrap_or_default(),
            yaw: p.number("yaw").unwrap_or_default(),
            tilt: p.number("tilt").unwrap_or_default(),
            yaw_rad: p.number("yaw_rad").unwrap_or_default(),
        }),
        dist_m: p.number("dist_m").unwrap_or_default(),
        dist_total_m: dist_total,
        dist_km: p.number("dist_km").unwrap_or_default(),
        dist_mi: p.number("dist_mi").unwrap_or_default(),
        sclk_start: p.integer("SCLK_START").filter(|n| *n >= 0),
        sclk_end: p.integer("SCLK_END").filter(|n| *n >= 0),
        r#final: p.text("final").unwrap_or_default(),
        note: p.text("Note").unwrap_or_default(),
        images: p.0.remove("images").filter(|v| !v.is_null()).map(to_value),
        extra: Some(p.extra()),
    })
}

/// A traverse segment of a LineString feature.
pub fn segment(feature: &Json) -> Result<pb::TraverseSegment, String> {
    let mut p = Props::of(feature)?;
    let sol = p.sol()?;
    let coordinates = geometry(feature, "LineString")?;
    let positions = coordinates
        .as_array()
        .ok_or_else(|| format!("bad geometry: {} is not a list of positions", shown(coordinates)))?;
    if positions.len() < 2 {
        return Err("bad geometry: a LineString needs at least 2 positions".into());
    }
    let mut points = Vec::with_capacity(positions.len());
    let mut three_d = true;
    for (i, value) in positions.iter().enumerate() {
        let (lon, lat, z) = position(value).ok_or_else(|| {
            format!(
                "bad geometry: position {i} ({}) is not [lon, lat] or [lon, lat, z]",
                shown(value)
            )
        })?;
        three_d &= z.is_some();
        points.push(pb::PathPoint {
            longitude: lon,
            latitude: lat,
            elevation_m: z.unwrap_or_default(),
        });
    }
    if !three_d {
        points.iter_mut().for_each(|p| p.elevation_m = 0.0);
    }
    let from_rmc = p.text("fromRMC").ok_or("no fromRMC")?;
    let to_rmc = p.text("toRMC").ok_or("no toRMC")?;
    Ok(pb::TraverseSegment {
        sol,
        from_rmc,
        to_rmc,
        length_m: p.number("length").unwrap_or_default(),
        points,
        sclk_start: p.integer("SCLK_START").filter(|n| *n >= 0),
        sclk_end: p.integer("SCLK_END").filter(|n| *n >= 0),
        has_elevation: three_d,
        extra: Some(p.extra()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bom_crlf_and_strings_for_numbers_are_taken() {
        let text = "\u{feff}{\r\n\"type\": \"FeatureCollection\",\r\n\"features\": [{\"type\": \"Feature\", \
            \"properties\": {\"sol\": \"14\", \"RMC\": \"3_110\", \"yaw\": \" -15.1 \", \"dist_total\": \"6.255\", \
            \"SCLK_START\": \"668099149\", \"odd\": [1], \"roll\": \"n/a\"}, \
            \"geometry\": {\"type\": \"Point\", \"coordinates\": [\"77.45\", 18.44, -2569.86]}}]\r\n}";
        let features = features(text.as_bytes()).unwrap();
        let w = waypoint(&features[0]).unwrap();
        assert_eq!((w.sol, w.site, w.drive, w.rmc.as_str()), (14, 3, 110, "3_110"));
        assert_eq!(w.orientation.unwrap().yaw, -15.1);
        assert_eq!(w.dist_total_m, 6.255);
        assert_eq!(w.sclk_start, Some(668_099_149));
        let position = w.position.unwrap();
        assert_eq!((position.longitude, position.elevation_m), (77.45, -2569.86));
        let extra = outpost_kit::json::from_struct(w.extra.unwrap());
        assert_eq!(Json::Object(extra), json!({"odd": [1], "roll": "n/a"}));
    }

    #[test]
    fn a_feature_without_sol_or_with_bad_geometry_is_an_error_of_its_own() {
        let point = json!({"type": "Point", "coordinates": [77.4, 18.4]});
        let f = json!({"properties": {"site": 1, "drive": 2}, "geometry": point});
        assert_eq!(waypoint(&f).unwrap_err(), "no sol");
        let f = json!({"properties": {"sol": 3, "site": 1, "drive": 2}, "geometry": {"type": "Point", "coordinates": [77.4]}});
        assert!(waypoint(&f).unwrap_err().starts_with("bad geometry"));
        let f = json!({"properties": {"sol": 3, "site": 1, "drive": 2}, "geometry": null});
        assert!(waypoint(&f).unwrap_err().starts_with("bad geometry"));
        let f = json!({"properties": {"sol": "x", "site": 1, "drive": 2}, "geometry": point});
        assert!(waypoint(&f).unwrap_err().starts_with("sol \"x\""));
        let line = json!({"properties": {"sol": 14, "fromRMC": "3_0", "toRMC": "3_110"},
            "geometry": {"type": "LineString", "coordinates": [[77.4, 18.4], [77.5, 18.5]]}});
        let s = segment(&line).unwrap();
        assert!(!s.has_elevation && s.points.len() == 2);
        assert!(waypoint(&line).unwrap_err().contains("a LineString, not a Point"));
        assert!(features(b"[1, 2]").unwrap_err().contains("FeatureCollection"));
        assert!(features(b"{").unwrap_err().starts_with("not JSON"));
    }
}
