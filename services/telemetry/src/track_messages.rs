//! Tracks, waypoints and traverse segments to and from their messages.

use outpost_api::telemetry::v1 as pb;
use outpost_kit::json::{from_struct, from_value, to_struct, to_value};
use outpost_kit::time::to_timestamp;

use crate::tracks::{Segment, Track, Waypoint, track_name, waypoint_name};

/// A track's message.
pub fn track_to_pb(track: Track) -> pb::Track {
    pb::Track {
        name: track_name(&track.id),
        display_name: track.display_name,
        waypoint_count: track.waypoint_count,
        first_sol: track.first_sol as i32,
        latest_sol: track.latest_sol as i32,
        traverse_segment_count: track.traverse_segment_count,
        update_time: Some(to_timestamp(track.updated_at)),
        total_distance_m: track.total_distance_m,
    }
}

/// A waypoint's message.
pub fn waypoint_to_pb(track: &str, w: Waypoint) -> pb::Waypoint {
    pb::Waypoint {
        name: waypoint_name(track, &w),
        sol: w.sol as i32,
        site: w.site as i32,
        drive: w.drive as i32,
        position: Some(pb::Position {
            longitude: w.lon,
            latitude: w.lat,
            elevation_m: w.elev_geoid,
            easting: w.easting,
            northing: w.northing,
            radius_m: w.radius,
            elevation_radii_m: w.elev_radii,
        }),
        orientation: Some(pb::Orientation {
            roll: w.roll,
            pitch: w.pitch,
            yaw: w.yaw,
            tilt: w.tilt,
            yaw_rad: w.yaw_rad,
        }),
        dist_m: w.dist_m,
        dist_total_m: w.dist_total_m,
        extra: Some(to_struct(w.extra)),
        rmc: w.rmc,
        dist_km: w.dist_km,
        dist_mi: w.dist_mi,
        sclk_start: w.sclk_start,
        sclk_end: w.sclk_end,
        r#final: w.final_,
        note: w.note,
        images: w.images.map(to_value),
    }
}

/// A waypoint of a message (its name is not read).
pub fn waypoint_from_pb(w: pb::Waypoint) -> Waypoint {
    let position = w.position.unwrap_or_default();
    let orientation = w.orientation.unwrap_or_default();
    Waypoint {
        site: i64::from(w.site),
        drive: i64::from(w.drive),
        sol: i64::from(w.sol),
        rmc: w.rmc,
        lon: position.longitude,
        lat: position.latitude,
        elev_geoid: position.elevation_m,
        elev_radii: position.elevation_radii_m,
        radius: position.radius_m,
        easting: position.easting,
        northing: position.northing,
        roll: orientation.roll,
        pitch: orientation.pitch,
        yaw: orientation.yaw,
        yaw_rad: orientation.yaw_rad,
        tilt: orientation.tilt,
        dist_m: w.dist_m,
        dist_total_m: w.dist_total_m,
        dist_km: w.dist_km,
        dist_mi: w.dist_mi,
        sclk_start: w.sclk_start,
        sclk_end: w.sclk_end,
        final_: w.r#final,
        note: w.note,
        images: w.images.map(from_value),
        extra: w.extra.map(from_struct).unwrap_or_default(),
    }
}

/// A segment's message.
pub fn segment_to_pb(s: Segment) -> pb::TraverseSegment {
    pb::TraverseSegment {
        sol: s.sol as i32,
        from_rmc: s.from_rmc,
        to_rmc: s.to_rmc,
        length_m: s.length_m,
        points: s
            .points
            .into_iter()
            .map(|p| pb::PathPoint {
                longitude: p[0],
                latitude: p[1],
                elevation_m: p[2],
            })
            .collect(),
        sclk_start: s.sclk_start,
        sclk_end: s.sclk_end,
        has_elevation: s.has_elevation,
        extra: Some(to_struct(s.extra)),
    }
}

/// A segment of a message; a 2-D path keeps elevations 0.
pub fn segment_from_pb(s: pb::TraverseSegment) -> Segment {
    Segment {
        sol: i64::from(s.sol),
        from_rmc: s.from_rmc,
        to_rmc: s.to_rmc,
        length_m: s.length_m,
        sclk_start: s.sclk_start,
        sclk_end: s.sclk_end,
        has_elevation: s.has_elevation,
        points: s
            .points
            .into_iter()
            .map(|p| {
                let elevation = if s.has_elevation { p.elevation_m } else { 0.0 };
                [p.longitude, p.latitude, elevation]
            })
            .collect(),
        extra: s.extra.map(from_struct).unwrap_or_default(),
    }
}
