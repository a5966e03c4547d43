//! The numeric fields a plot may put on an axis, by the names the source (NASA MMGIS) gives
//! them, each with its unit: degrees for orientation and position, radians for `yaw_rad`,
//! metres for elevations and distances.

use outpost_api::telemetry::v1 as telemetry;
use prost_types::value::Kind;

/// How a waypoint field is read.
#[derive(Clone, Copy)]
enum Read {
    /// From the typed waypoint.
    Typed(fn(&telemetry::Waypoint) -> f64),
    /// From a typed field the waypoint may lack.
    Optional(fn(&telemetry::Waypoint) -> Option<f64>),
    /// From the waypoint's other fields, by this name (waypoints without it are left out).
    #[allow(dead_code)] // every known field is typed today; a new source field starts here
    Extra(&'static str),
}

/// A numeric waypoint field.
#[derive(Clone, Copy)]
pub struct Field {
    /// The name, as the source spells it.
    pub name: &'static str,
    /// The unit, empty for counts and numbers.
    pub unit: &'static str,
    read: Read,
}

impl Field {
    /// The axis label: the name with its unit, such as `yaw (deg)`.
    pub fn label(&self) -> String {
        label(self.name, self.unit)
    }

    /// The field's value in `waypoint`, when it has one (and it is a finite number).
    pub fn of(&self, waypoint: &telemetry::Waypoint) -> Option<f64> {
        let value = match self.read {
            Read::Typed(read) => read(waypoint),
            Read::Optional(read) => read(waypoint)?,
            Read::Extra(name) => match waypoint.extra.as_ref()?.fields.get(name)?.kind.as_ref()? {
                Kind::NumberValue(n) => *n,
                Kind::StringValue(s) => s.trim().parse().ok()?,
                _ => return None,
            },
        };
        value.is_finite().then_some(value)
    }
}

/// An axis label: `name (unit)`, or the name alone.
pub fn label(name: &str, unit: &str) -> String {
    if unit.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({unit})")
    }
}

fn position(w: &telemetry::Waypoint) -> telemetry::Position {
    w.position.unwrap_or_default()
}

fn orientation(w: &telemetry::Waypoint) -> telemetry::Orientation {
    w.orientation.unwrap_or_default()
}

/// The waypoint fields.
pub const WAYPOINT_FIELDS: &[Field] = &[
    Field {
        name: "sol",
        unit: "",
        read: Read::Typed(|w| f64::from(w.sol)),
    },
    Field {
        name: "site",
        unit: "",
        read: Read::Typed(|w| f64::from(w.site)),
    },
    Field {
        name: "drive",
        unit: "",
        read: Read::Typed(|w| f64::from(w.drive)),
    },
    Field {
        name: "lon",
        unit: "deg",
        read: Read::Typed(|w| position(w).longitude),
    },
    Field {
        name: "lat",
        unit: "deg",
        read: Read::Typed(|w| position(w).latitude),
    },
    Field {
        name: "elev_geoid",
        unit: "m",
        read: Read::Typed(|w| position(w).elevation_m),
    },
    Field {
        name: "elev_radii",
        unit: "m",
        read: Read::Typed(|w| position(w).elevation_radii_m),
    },
    Field {
        name: "radius",
        unit: "m",
        read: Read::Typed(|w| position(w).radius_m),
    },
    Field {
        name: "easting",
        unit: "m",
        read: Read::Typed(|w| position(w).easting),
    },
    Field {
        name: "northing",
        unit: "m",
        read: Read::Typed(|w| position(w).northing),
    },
    Field {
        name: "roll",
        unit: "deg",
        read: Read::Typed(|w| orientation(w).roll),
    },
    Field {
        name: "pitch",
        unit: "deg",
        read: Read::Typed(|w| orientation(w).pitch),
    },
    Field {
        name: "yaw",
        unit: "deg",
        read: Read::Typed(|w| orientation(w).yaw),
    },
    Field {
        name: "yaw_rad",
        unit: "rad",
        read: Read::Typed(|w| orientation(w).yaw_rad),
    },
    Field {
        name: "tilt",
        unit: "deg",
        read: Read::Typed(|w| orientation(w).tilt),
    },
    Field {
        name: "dist_m",
        unit: "m",
        read: Read::Typed(|w| w.dist_m),
    },
    Field {
        name: "dist_total",
        unit: "m",
        read: Read::Typed(|w| w.dist_total_m),
    },
    Field {
        name: "dist_km",
        unit: "km",
        read: Read::Typed(|w| w.dist_km),
    },
    Field {
        name: "dist_mi",
        unit: "mi",
        read: Read::Typed(|w| w.dist_mi),
    },
    Field {
        name: "SCLK_START",
        unit: "s",
        read: Read::Optional(|w| w.sclk_start.map(|v| v as f64)),
    },
    Field {
        name: "SCLK_END",
        unit: "s",
        read: Read::Optional(|w| w.sclk_end.map(|v| v as f64)),
    },
];

/// Other spellings of waypoint fields: the typed API's names, and the source's other name of
/// the total distance.
const ALIASES: &[(&str, &str)] = &[
    ("longitude", "lon"),
    ("latitude", "lat"),
    ("elevation_m", "elev_geoid"),
    ("radius_m", "radius"),
    ("dist_total_m", "dist_total"),
];

/// The waypoint field called `name` (or one of its other spellings).
pub fn waypoint_field(name: &str) -> Option<&'static Field> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, to)| to);
    WAYPOINT_FIELDS.iter().find(|f| f.name == name)
}

/// The fields of traverse segments: `sol` and `length` (one value per segment), `lon`, `lat`
/// and `elev` (one per path point), with their units.
pub const TRAVERSE_FIELDS: &[(&str, &str)] = &[
    ("sol", ""),
    ("length", "m"),
    ("lon", "deg"),
    ("lat", "deg"),
    ("elev", "m"),
];

/// The traverse field called `name` (`length_m` is `length`), with its unit.
pub fn traverse_field(name: &str) -> Option<(&'static str, &'static str)> {
    let name = if name == "length_m" { "length" } else { name };
    TRAVERSE_FIELDS.iter().copied().find(|(n, _)| *n == name)
}

/// The names of the waypoint fields, for error messages.
pub fn waypoint_names() -> String {
    WAYPOINT_FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// The names of the traverse fields, for error messages.
pub fn traverse_names() -> String {
    TRAVERSE_FIELDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_field() {
        for (name, label) in [
            ("yaw", "yaw (deg)"),
            ("pitch", "pitch (deg)"),
            ("roll", "roll (deg)"),
            ("tilt", "tilt (deg)"),
            ("lon", "lon (deg)"),
            ("latitude", "lat (deg)"),
            ("yaw_rad", "yaw_rad (rad)"),
            ("elev_geoid", "elev_geoid (m)"),
            ("elev_radii", "elev_radii (m)"),
            ("dist_m", "dist_m (m)"),
            ("dist_total_m", "dist_total (m)"),
            ("sol", "sol"),
        ] {
            assert_eq!(waypoint_field(name).unwrap().label(), label);
        }
        assert!(waypoint_field("colour").is_none());
        assert_eq!(traverse_field("length_m"), Some(("length", "m")));
    }

    #[test]
    fn typed_and_optional_fields_are_read() {
        let waypoint = telemetry::Waypoint {
            sol: 7,
            dist_km: 2.25,
            orientation: Some(telemetry::Orientation {
                yaw_rad: 1.5,
                ..Default::default()
            }),
            sclk_start: Some(700),
            ..Default::default()
        };
        assert_eq!(waypoint_field("yaw_rad").unwrap().of(&waypoint), Some(1.5));
        assert_eq!(waypoint_field("dist_km").unwrap().of(&waypoint), Some(2.25));
        assert_eq!(waypoint_field("SCLK_START").unwrap().of(&waypoint), Some(700.0));
        assert_eq!(waypoint_field("SCLK_END").unwrap().of(&waypoint), None);
        assert_eq!(waypoint_field("sol").unwrap().of(&waypoint), Some(7.0));
    }
}
