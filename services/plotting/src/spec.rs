//! What a job plots, as the domain and the store see it: validated from the API's message,
//! kept as JSON, and keyed so that identical requests can be recognised.

use outpost_api::plotting::v1 as pb;
use outpost_kit::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::fields;

/// Default width in pixels.
pub const DEFAULT_WIDTH: u32 = 1024;
/// Default height in pixels.
pub const DEFAULT_HEIGHT: u32 = 768;
/// The sizes a plot may have, in pixels, each way.
pub const SIZES: std::ops::RangeInclusive<u32> = 100..=4096;
/// The longest title.
pub const MAX_TITLE: usize = 200;

/// Which records of a track a fields plot reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackData {
    /// Waypoints.
    Waypoints,
    /// Traverse segments.
    Traverse,
}

/// What to plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    /// A waypoint field against another (sol by default), as a line, over sols.
    Track {
        /// The track id.
        track: String,
        /// The x field.
        x_field: String,
        /// The y field.
        y_field: String,
        /// First sol, inclusive.
        start_sol: i32,
        /// Last sol, inclusive.
        end_sol: i32,
    },
    /// Two numeric fields of waypoints or traverse segments, as a scatter, over sols.
    Fields {
        /// The track id.
        track: String,
        /// Which records.
        data: TrackData,
        /// The x field.
        x_field: String,
        /// The y field.
        y_field: String,
        /// First sol, inclusive.
        start_sol: i32,
        /// Last sol, inclusive.
        end_sol: i32,
    },
    /// The latitude/longitude map over sols.
    Map {
        /// The track id.
        track: String,
        /// First sol, inclusive.
        start_sol: i32,
        /// Last sol, inclusive.
        end_sol: i32,
    },
    /// A sensor's readings over a time range.
    Readings {
        /// `devices/{device}/sensors/{sensor}`.
        sensor: String,
        /// Start, µs since the epoch, inclusive.
        start_us: i64,
        /// End, µs since the epoch, exclusive.
        end_us: i64,
    },
}

/// The file format of a plot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// PNG.
    Png,
    /// SVG.
    Svg,
}

impl Format {
    /// The MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Svg => "image/svg+xml",
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }

    /// As stored.
    pub fn as_str(self) -> &'static str {
        self.extension()
    }

    /// From the stored text.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "png" => Some(Format::Png),
            "svg" => Some(Format::Svg),
            _ => None,
        }
    }

    fn to_pb(self) -> pb::PlotFormat {
        match self {
            Format::Png => pb::PlotFormat::Png,
            Format::Svg => pb::PlotFormat::Svg,
        }
    }
}

/// A plot request: what, its title, format and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlotRequest {
    /// What to plot.
    pub spec: Spec,
    /// The title asked for (empty: one made from the spec).
    #[serde(default)]
    pub title: String,
    /// The format.
    pub format: Format,
    /// Pixels wide.
    pub width: u32,
    /// Pixels high.
    pub height: u32,
}

fn track_id(field: &str, name: &str) -> Result<String> {
    match name.strip_prefix("tracks/") {
        Some(id) if outpost_kit::ids::is_valid_id(id) => Ok(id.to_string()),
        _ => Err(Error::invalid(field, "must be tracks/{track}")),
    }
}

fn sols(prefix: &str, start: i32, end: i32) -> Result<()> {
    if start < 0 {
        return Err(Error::invalid(format!("{prefix}.start_sol"), "must not be negative"));
    }
    if end < start {
        return Err(Error::invalid(
            format!("{prefix}.end_sol"),
            format!("must be at least start_sol ({start}), was {end}"),
        ));
    }
    Ok(())
}

fn waypoint_field(field: String, name: &str, empty_is_sol: bool) -> Result<String> {
    let name = if name.is_empty() && empty_is_sol { "sol" } else { name };
    match fields::waypoint_field(name) {
        Some(f) => Ok(f.name.to_string()),
        None => Err(Error::invalid(
            field,
            format!(
                "{:?} is not a numeric waypoint field ({})",
                name,
                fields::waypoint_names()
            ),
        )),
    }
}

fn traverse_field(field: String, name: &str) -> Result<String> {
    match fields::traverse_field(name) {
        Some((f, _)) => Ok(f.to_string()),
        None => Err(Error::invalid(
            field,
            format!(
                "{:?} is not a numeric traverse field ({})",
                name,
                fields::traverse_names()
            ),
        )),
    }
}

impl PlotRequest {
    /// Validates a job of the API (its spec, format and size); each error names its field.
    pub fn from_pb(job: &pb::PlotJob) -> Result<PlotRequest> {
        let spec = job
            .spec
            .as_ref()
            .ok_or_else(|| Error::invalid("plot_job.spec", "is required"))?;
        let spec = match spec.kind.as_ref() {
            None => {
                return Err(Error::invalid(
                    "plot_job.spec.kind",
                    "one of track, fields, map or readings is required",
                ));
            }
            Some(pb::plot_spec::Kind::Track(t)) => {
                let p = "plot_job.spec.track";
                sols(p, t.start_sol, t.end_sol)?;
                Spec::Track {
                    track: track_id(&format!("{p}.track"), &t.track)?,
                    x_field: waypoint_field(format!("{p}.x_field"), &t.x_field, true)?,
                    y_field: waypoint_field(format!("{p}.y_field"), &t.y_field, false)?,
                    start_sol: t.start_sol,
                    end_sol: t.end_sol,
                }
            }
            Some(pb::plot_spec::Kind::Fields(f)) => {
                let p = "plot_job.spec.fields";
                sols(p, f.start_sol, f.end_sol)?;
                let data = match pb::TrackData::try_from(f.data) {
                    Ok(pb::TrackData::Unspecified | pb::TrackData::Waypoints) => TrackData::Waypoints,
                    Ok(pb::TrackData::Traverse) => TrackData::Traverse,
                    Err(_) => return Err(Error::invalid(format!("{p}.data"), "unknown track data")),
                };
                let (x_field, y_field) = match data {
                    TrackData::Waypoints => (
                        waypoint_field(format!("{p}.x_field"), &f.x_field, false)?,
                        waypoint_field(format!("{p}.y_field"), &f.y_field, false)?,
                    ),
                    TrackData::Traverse => (
                        traverse_field(format!("{p}.x_field"), &f.x_field)?,
                        traverse_field(format!("{p}.y_field"), &f.y_field)?,
                    ),
                };
                Spec::Fields {
                    track: track_id(&format!("{p}.track"), &f.track)?,
                    data,
                    x_field,
                    y_field,
                    start_sol: f.start_sol,
                    end_sol: f.end_sol,
                }
            }
            Some(pb::plot_spec::Kind::Map(m)) => {
                let p = "plot_job.spec.map";
                sols(p, m.start_sol, m.end_sol)?;
                Spec::Map {
                    track: track_id(&format!("{p}.track"), &m.track)?,
                    start_sol: m.start_sol,
                    end_sol: m.end_sol,
                }
            }
            Some(pb::plot_spec::Kind::Readings(r)) => {
                let p = "plot_job.spec.readings";
                let sensor = sensor_name(&format!("{p}.sensor"), &r.sensor)?;
                let time = |field: &str, t: Option<&prost_types::Timestamp>| -> Result<i64> {
                    let field = format!("{p}.{field}");
                    let t = t.ok_or_else(|| Error::invalid(&field, "is required"))?;
                    outpost_kit::time::from_timestamp(&field, t)
                };
                let start_us = time("start_time", r.start_time.as_ref())?;
                let end_us = time("end_time", r.end_time.as_ref())?;
                if end_us <= start_us {
                    return Err(Error::invalid(format!("{p}.end_time"), "must be after start_time"));
                }
                Spec::Readings {
                    sensor,
                    start_us,
                    end_us,
                }
            }
        };
        let title = spec_title(job);
        if title.chars().count() > MAX_TITLE {
            return Err(Error::invalid(
                "plot_job.spec.title",
                format!("must be at most {MAX_TITLE} characters"),
            ));
        }
        let format = match pb::PlotFormat::try_from(job.format) {
            Ok(pb::PlotFormat::Unspecified | pb::PlotFormat::Png) => Format::Png,
            Ok(pb::PlotFormat::Svg) => Format::Svg,
            Err(_) => return Err(Error::invalid("plot_job.format", "must be PNG or SVG")),
        };
        let size = |field: &str, value: i32, default: u32| -> Result<u32> {
            match value {
                0 => Ok(default),
                v if v > 0 && SIZES.contains(&(v as u32)) => Ok(v as u32),
                _ => Err(Error::invalid(
                    field,
                    format!(
                        "must be {} to {} pixels (or 0 for {default})",
                        SIZES.start(),
                        SIZES.end()
                    ),
                )),
            }
        };
        Ok(PlotRequest {
            spec,
            title: title.trim().to_string(),
            format,
            width: size("plot_job.width", job.width, DEFAULT_WIDTH)?,
            height: size("plot_job.height", job.height, DEFAULT_HEIGHT)?,
        })
    }

    /// What identical requests share: the hex SHA-256 of the canonical JSON of the request.
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("a request serializes");
        hex::encode(Sha256::digest(&json))
    }

    /// The track the spec reads, when it reads one.
    pub fn track(&self) -> Option<&str> {
        match &self.spec {
            Spec::Track { track, .. } | Spec::Fields { track, .. } | Spec::Map { track, .. } => Some(track),
            Spec::Readings { .. } => None,
        }
    }

    /// The API's spec of this request.
    pub fn spec_pb(&self) -> pb::PlotSpec {
        use pb::plot_spec::Kind;
        let kind = match &self.spec {
            Spec::Track {
                track,
                x_field,
                y_field,
                start_sol,
                end_sol,
            } => Kind::Track(pb::TrackPlot {
                track: format!("tracks/{track}"),
                x_field: x_field.clone(),
                y_field: y_field.clone(),
                start_sol: *start_sol,
                end_sol: *end_sol,
            }),
            Spec::Fields {
                track,
                data,
                x_field,
                y_field,
                start_sol,
                end_sol,
            } => Kind::Fields(pb::FieldsPlot {
                track: format!("tracks/{track}"),
                data: match data {
                    TrackData::Waypoints => pb::TrackData::Waypoints,
                    TrackData::Traverse => pb::TrackData::Traverse,
                } as i32,
                x_field: x_field.clone(),
                y_field: y_field.clone(),
                start_sol: *start_sol,
                end_sol: *end_sol,
            }),
            Spec::Map {
                track,
                start_sol,
                end_sol,
            } => Kind::Map(pb::MapPlot {
                track: format!("tracks/{track}"),
                start_sol: *start_sol,
                end_sol: *end_sol,
            }),
            Spec::Readings {
                sensor,
                start_us,
                end_us,
            } => Kind::Readings(pb::ReadingsPlot {
                sensor: sensor.clone(),
                start_time: Some(outpost_kit::time::to_timestamp(*start_us)),
                end_time: Some(outpost_kit::time::to_timestamp(*end_us)),
            }),
        };
        pb::PlotSpec {
            kind: Some(kind),
            title: self.title.clone(),
        }
    }

    /// The format of the API.
    pub fn format_pb(&self) -> pb::PlotFormat {
        self.format.to_pb()
    }
}

fn spec_title(job: &pb::PlotJob) -> String {
    job.spec.as_ref().map(|s| s.title.clone()).unwrap_or_default()
}

/// Checks `devices/{device}/sensors/{sensor}` in `field`.
fn sensor_name(field: &str, name: &str) -> Result<String> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["devices", device, "sensors", sensor]
            if outpost_kit::ids::is_valid_id(device) && outpost_kit::ids::is_valid_id(sensor) && *device != "-" =>
        {
            Ok(name.to_string())
        }
        _ => Err(Error::invalid(field, "must be devices/{device}/sensors/{sensor}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaw(start: i32, end: i32) -> pb::PlotJob {
        pb::PlotJob {
            spec: Some(pb::PlotSpec {
                kind: Some(pb::plot_spec::Kind::Track(pb::TrackPlot {
                    track: "tracks/perseverance".into(),
                    x_field: String::new(),
                    y_field: "yaw".into(),
                    start_sol: start,
                    end_sol: end,
                })),
                title: String::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn requests_are_validated_field_by_field() {
        let request = PlotRequest::from_pb(&yaw(0, 400)).unwrap();
        assert_eq!(
            (request.width, request.height, request.format),
            (1024, 768, Format::Png)
        );
        assert!(matches!(&request.spec, Spec::Track { x_field, .. } if x_field == "sol"));
        let err = PlotRequest::from_pb(&yaw(500, 400)).unwrap_err().to_string();
        assert!(
            err.starts_with("plot_job.spec.track.end_sol: must be at least start_sol"),
            "{err}"
        );
        let mut job = yaw(0, 1);
        job.width = 99_999;
        let err = PlotRequest::from_pb(&job).unwrap_err().to_string();
        assert!(err.starts_with("plot_job.width:"), "{err}");
        let mut job = yaw(0, 1);
        if let Some(pb::plot_spec::Kind::Track(t)) = job.spec.as_mut().and_then(|s| s.kind.as_mut()) {
            t.y_field = "colour".into();
        }
        let err = PlotRequest::from_pb(&job).unwrap_err().to_string();
        assert!(
            err.starts_with("plot_job.spec.track.y_field: \"colour\" is not"),
            "{err}"
        );
    }

    #[test]
    fn identical_requests_share_a_key_and_round_trip_through_json() {
        let one = PlotRequest::from_pb(&yaw(0, 400)).unwrap();
        let two = PlotRequest::from_pb(&yaw(0, 400)).unwrap();
        let other = PlotRequest::from_pb(&yaw(0, 401)).unwrap();
        assert_eq!(one.key(), two.key());
        assert_ne!(one.key(), other.key());
        let json = serde_json::to_string(&one).unwrap();
        assert_eq!(serde_json::from_str::<PlotRequest>(&json).unwrap(), one);
        assert_eq!(
            PlotRequest::from_pb(&pb::PlotJob {
                spec: Some(one.spec_pb()),
                ..Default::default()
            })
            .unwrap(),
            one
        );
    }
}
