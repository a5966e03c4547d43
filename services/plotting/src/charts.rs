//! From a plot request to the chart to draw: reads the data from telemetry, keeps what the
//! range asks for (the sol range filters by sol, whatever the axes), and names the axes with
//! their units.

use outpost_api::telemetry::v1 as telemetry;
use tonic::Code;

use crate::fields::{self, label};
use crate::render::{Chart, XScale};
use crate::spec::{PlotRequest, Spec, TrackData};
use crate::telemetry::Telemetry;

/// Why a chart could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Trying again cannot help (no data in the range, a field no record has).
    Permanent(String),
    /// It may work later (telemetry unreachable).
    Transient(String),
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let message = format!("telemetry: {}", status.message());
        match status.code() {
            Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::PermissionDenied => {
                Failure::Permanent(message)
            }
            _ => Failure::Transient(message),
        }
    }
}

/// A chart and how many data points it draws.
#[derive(Debug)]
pub struct Drawn {
    /// The chart.
    pub chart: Chart,
    /// Data points drawn.
    pub points: usize,
}

fn between(start: i32, end: i32) -> String {
    format!("between sol {start} and {end}")
}

fn title(request: &PlotRequest, default: String) -> String {
    if request.title.is_empty() {
        default
    } else {
        request.title.clone()
    }
}

/// Reads the data of `request` and makes its chart.
pub async fn chart(request: &PlotRequest, telemetry: &Telemetry) -> Result<Drawn, Failure> {
    match &request.spec {
        Spec::Track {
            track,
            x_field,
            y_field,
            start_sol,
            end_sol,
        } => {
            let waypoints = telemetry.waypoints(track, *start_sol, *end_sol).await?;
            let (x, y) = (known(x_field)?, known(y_field)?);
            let mut points = waypoint_points(&waypoints, *start_sol, *end_sol, x, y, track)?;
            if x.name == "sol" {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            let name = format!("{track}: {} against {}, sols {start_sol} to {end_sol}", y.name, x.name);
            Ok(Drawn {
                points: points.len(),
                chart: Chart {
                    title: title(request, name),
                    x_label: x.label(),
                    y_label: y.label(),
                    x_scale: XScale::Number,
                    lines: vec![points.clone()],
                    points,
                },
            })
        }
        Spec::Fields {
            track,
            data: TrackData::Waypoints,
            x_field,
            y_field,
            start_sol,
            end_sol,
        } => {
            let waypoints = telemetry.waypoints(track, *start_sol, *end_sol).await?;
            let (x, y) = (known(x_field)?, known(y_field)?);
            let points = waypoint_points(&waypoints, *start_sol, *end_sol, x, y, track)?;
            let name = format!(
                "{track} waypoints: {} against {}, sols {start_sol} to {end_sol}",
                y.name, x.name
            );
            Ok(Drawn {
                points: points.len(),
                chart: Chart {
                    title: title(request, name),
                    x_label: x.label(),
                    y_label: y.label(),
                    x_scale: XScale::Number,
                    lines: Vec::new(),
                    points,
                },
            })
        }
        Spec::Fields {
            track,
            data: TrackData::Traverse,
            x_field,
            y_field,
            start_sol,
            end_sol,
        } => {
            let segments = telemetry.traverse(track, *start_sol, *end_sol).await?;
            let segments: Vec<_> = segments
                .into_iter()
                .filter(|s| (*start_sol..=*end_sol).contains(&s.sol))
                .collect();
            if segments.is_empty() {
                return Err(Failure::Permanent(format!(
                    "no traverse segments {}",
                    between(*start_sol, *end_sol)
                )));
            }
            let points = traverse_points(&segments, x_field, y_field);
            let unit = |f: &str| fields::traverse_field(f).map_or("", |(_, u)| u);
            let name = format!("{track} traverse: {y_field} against {x_field}, sols {start_sol} to {end_sol}");
            Ok(Drawn {
                points: points.len(),
                chart: Chart {
                    title: title(request, name),
                    x_label: label(x_field, unit(x_field)),
                    y_label: label(y_field, unit(y_field)),
                    x_scale: XScale::Number,
                    lines: Vec::new(),
                    points,
                },
            })
        }
        Spec::Map {
            track,
            start_sol,
            end_sol,
        } => {
            let (waypoints, segments) = tokio::try_join!(
                telemetry.waypoints(track, *start_sol, *end_sol),
                telemetry.traverse(track, *start_sol, *end_sol)
            )?;
            let (lon, lat) = (known("lon")?, known("lat")?);
            let in_range = |sol: i32| (*start_sol..=*end_sol).contains(&sol);
            let points: Vec<(f64, f64)> = waypoints
                .iter()
                .filter(|w| in_range(w.sol))
                .filter_map(|w| Some((lon.of(w)?, lat.of(w)?)))
                .collect();
            let lines: Vec<Vec<(f64, f64)>> = segments
                .iter()
                .filter(|s| in_range(s.sol))
                .map(|s| s.points.iter().map(|p| (p.longitude, p.latitude)).collect::<Vec<_>>())
                .filter(|line| !line.is_empty())
                .collect();
            if points.is_empty() && lines.is_empty() {
                return Err(Failure::Permanent(format!(
                    "no waypoints {}",
                    between(*start_sol, *end_sol)
                )));
            }
            Ok(Drawn {
                points: points.len(),
                chart: Chart {
                    title: title(request, format!("{track}: map, sols {start_sol} to {end_sol}")),
                    x_label: lon.label(),
                    y_label: lat.label(),
                    x_scale: XScale::Number,
                    lines,
                    points,
                },
            })
        }
        Spec::Readings {
            sensor,
            start_us,
            end_us,
        } => {
            let readings = telemetry.readings(sensor, *start_us, *end_us).await?;
            if readings.points.is_empty() {
                let time = |us: i64| {
                    chrono::DateTime::from_timestamp_micros(us)
                        .map_or_else(String::new, |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                };
                return Err(Failure::Permanent(format!(
                    "no readings of {sensor} between {} and {}",
                    time(*start_us),
                    time(*end_us)
                )));
            }
            let points: Vec<(f64, f64)> = readings.points.iter().map(|(t, v)| (*t as f64 / 1e6, *v)).collect();
            let short = sensor.rsplit('/').next().unwrap_or(sensor);
            let what = if readings.bucketed {
                "mean of buckets"
            } else {
                "readings"
            };
            Ok(Drawn {
                points: points.len(),
                chart: Chart {
                    title: title(request, format!("{sensor}: {what}")),
                    x_label: "time (UTC)".into(),
                    y_label: label(short, &readings.unit),
                    x_scale: XScale::Time,
                    lines: vec![points.clone()],
                    points: if points.len() <= 2000 { points } else { Vec::new() },
                },
            })
        }
    }
}

fn known(name: &str) -> Result<&'static fields::Field, Failure> {
    fields::waypoint_field(name).ok_or_else(|| Failure::Permanent(format!("{name:?} is not a waypoint field")))
}

/// The (x, y) of the waypoints in the sol range that have both fields.
fn waypoint_points(
    waypoints: &[telemetry::Waypoint],
    start: i32,
    end: i32,
    x: &fields::Field,
    y: &fields::Field,
    track: &str,
) -> Result<Vec<(f64, f64)>, Failure> {
    let in_range: Vec<&telemetry::Waypoint> = waypoints.iter().filter(|w| (start..=end).contains(&w.sol)).collect();
    if in_range.is_empty() {
        return Err(Failure::Permanent(format!("no waypoints {}", between(start, end))));
    }
    let points: Vec<(f64, f64)> = in_range.iter().filter_map(|w| Some((x.of(w)?, y.of(w)?))).collect();
    if points.is_empty() {
        return Err(Failure::Permanent(format!(
            "no waypoints of {track} with {} and {} {}",
            x.name,
            y.name,
            between(start, end)
        )));
    }
    Ok(points)
}

/// The (x, y) of traverse segments: per segment for `sol` and `length` alone, per path point
/// when either field is a point's (`lon`, `lat`, `elev`).
fn traverse_points(segments: &[telemetry::TraverseSegment], x: &str, y: &str) -> Vec<(f64, f64)> {
    let per_point = |f: &str| matches!(f, "lon" | "lat" | "elev");
    let segment_value = |s: &telemetry::TraverseSegment, f: &str| match f {
        "sol" => f64::from(s.sol),
        _ => s.length_m,
    };
    let value = |s: &telemetry::TraverseSegment, p: &telemetry::PathPoint, f: &str| match f {
        "lon" => p.longitude,
        "lat" => p.latitude,
        "elev" => p.elevation_m,
        other => segment_value(s, other),
    };
    if per_point(x) || per_point(y) {
        segments
            .iter()
            .flat_map(|s| s.points.iter().map(move |p| (value(s, p, x), value(s, p, y))))
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .collect()
    } else {
        segments
            .iter()
            .map(|s| (segment_value(s, x), segment_value(s, y)))
            .collect()
    }
}
