//! Rover tracks on every backend: the fixture's waypoints stored with every property, counted
//! created, then unchanged, then updated; inclusive sol ranges in keyset pages; the summary;
//! traverse segments in 2-D and 3-D; bad input named and nothing written.

mod common;

use common::{Client, start_telemetry};
use outpost_api::telemetry::v1 as pb;
use outpost_kit::json::{to_struct, to_value};
use outpost_kit::testing::backends;
use outpost_telemetry::TelemetryConfig;
use serde_json::{Value as Json, json};

const FIXTURE: &str = include_str!("../../../fixtures/rover/M20_waypoints.json");
const TRACK: &str = "tracks/perseverance";

fn number(props: &Json, key: &str) -> f64 {
    props[key].as_f64().unwrap_or_default()
}

/// The fixture's waypoints as messages, each property in its typed field.
fn fixture_waypoints() -> Vec<pb::Waypoint> {
    let doc: Json = serde_json::from_str(FIXTURE).unwrap();
    doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = &f["properties"];
            pb::Waypoint {
                sol: p["sol"].as_i64().unwrap() as i32,
                site: p["site"].as_i64().unwrap() as i32,
                drive: p["drive"].as_i64().unwrap() as i32,
                rmc: p["RMC"].as_str().unwrap().into(),
                position: Some(pb::Position {
                    longitude: number(p, "lon"),
                    latitude: number(p, "lat"),
                    elevation_m: number(p, "elev_geoid"),
                    easting: number(p, "easting"),
                    northing: number(p, "northing"),
                    radius_m: number(p, "radius"),
                    elevation_radii_m: number(p, "elev_radii"),
                }),
                orientation: Some(pb::Orientation {
                    roll: number(p, "roll"),
                    pitch: number(p, "pitch"),
                    yaw: number(p, "yaw"),
                    tilt: number(p, "tilt"),
                    yaw_rad: number(p, "yaw_rad"),
                }),
                dist_m: number(p, "dist_m"),
                dist_total_m: number(p, "dist_total_m"),
                dist_km: number(p, "dist_km"),
                dist_mi: number(p, "dist_mi"),
                r#final: p["final"].as_str().unwrap_or_default().into(),
                note: p["Note"].as_str().unwrap_or_default().into(),
                ..Default::default()
            }
        })
        .collect()
}

async fn upsert(client: &mut Client, waypoints: Vec<pb::Waypoint>) -> Result<(i64, i64, i64), tonic::Status> {
    let r = client
        .upsert_waypoints(pb::UpsertWaypointsRequest {
            parent: TRACK.into(),
            waypoints,
        })
        .await?
        .into_inner();
    Ok((r.created, r.updated, r.unchanged))
}

async fn list_all(client: &mut Client, min: Option<i32>, max: Option<i32>, page_size: i32) -> Vec<pb::Waypoint> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_waypoints(pb::ListWaypointsRequest {
                parent: TRACK.into(),
                page_size,
                page_token,
                min_sol: min,
                max_sol: max,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.waypoints);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

fn sort_key(w: &pb::Waypoint) -> (i32, i32, i32) {
    (w.sol, w.site, w.drive)
}

#[tokio::test]
async fn the_fixture_loads_once_then_counts_unchanged_and_updated() {
    let fixture = fixture_waypoints();
    assert_eq!(fixture.len(), 586);
    for backend in backends() {
        let label = backend.label;
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        assert_eq!(
            upsert(&mut client, fixture.clone()).await.unwrap(),
            (586, 0, 0),
            "{label}"
        );
        assert_eq!(
            upsert(&mut client, fixture.clone()).await.unwrap(),
            (0, 0, 586),
            "{label}"
        );
        let mut changed = fixture.clone();
        changed[10].note = "Moved".into();
        changed[20].orientation.as_mut().unwrap().yaw += 1.0;
        assert_eq!(
            upsert(&mut client, changed.clone()).await.unwrap(),
            (0, 2, 584),
            "{label}"
        );

        let summary = client
            .get_track_summary(pb::GetTrackSummaryRequest { name: TRACK.into() })
            .await
            .unwrap()
            .into_inner();
        let track = summary.track.unwrap();
        assert_eq!(track.name, TRACK);
        assert_eq!(
            (track.waypoint_count, track.first_sol, track.latest_sol),
            (586, 13, 1615),
            "{label}"
        );
        assert_eq!(track.total_distance_m, 37139.099, "{label}");
        let latest = summary.latest.unwrap();
        assert_eq!(latest.name, "tracks/perseverance/waypoints/79_198", "{label}");
        assert_eq!(latest.position.unwrap().longitude, 77.26435779);
        assert_eq!(latest.orientation.unwrap().yaw_rad, 0.364231756);

        // Every waypoint, in order, whatever the page size; the stored one is the changed one.
        let all = list_all(&mut client, None, None, 0).await;
        let mut expected = changed.clone();
        expected.sort_by_key(sort_key);
        let strip = |mut w: pb::Waypoint| {
            w.name.clear();
            w.extra = None;
            w
        };
        assert_eq!(all.into_iter().map(strip).collect::<Vec<_>>(), expected, "{label}");
        let paged = list_all(&mut client, None, None, 7).await;
        assert_eq!(paged.len(), 586, "{label}");
        assert!(paged.windows(2).all(|w| sort_key(&w[0]) < sort_key(&w[1])), "{label}");

        // Inclusive at both ends, counted from the fixture itself.
        let in_range = fixture.iter().filter(|w| (100..=400).contains(&w.sol)).count();
        let ranged = list_all(&mut client, Some(100), Some(400), 13).await;
        assert_eq!(ranged.len(), in_range, "{label}");
        assert!(ranged.iter().all(|w| (100..=400).contains(&w.sol)), "{label}");
        assert!(ranged.iter().any(|w| w.sol == 400) || !fixture.iter().any(|w| w.sol == 400));
        let one_sol = list_all(&mut client, Some(1615), Some(1615), 0).await;
        assert_eq!(
            one_sol.len(),
            fixture.iter().filter(|w| w.sol == 1615).count(),
            "{label}"
        );
        let none = list_all(&mut client, Some(2000), Some(2100), 0).await;
        assert!(none.is_empty(), "{label}");
    }
}

#[tokio::test]
async fn every_property_round_trips_and_bad_input_changes_nothing() {
    for backend in backends() {
        let label = backend.label;
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let extra = json!({"SCLK_NOTE": "x", "nested": {"a": [1, 2.5, null]}, "flag": true});
        let Json::Object(extra) = extra else { unreachable!() };
        let images = json!([{"url": "https://example.org/a.jpg", "sol": 14}]);
        let waypoint = pb::Waypoint {
            sol: 14,
            site: 3,
            drive: 110,
            rmc: "3_110".into(),
            sclk_start: Some(668_099_149),
            sclk_end: Some(0),
            extra: Some(to_struct(extra)),
            images: Some(to_value(images)),
            ..fixture_waypoints()[1].clone()
        };
        assert_eq!(upsert(&mut client, vec![waypoint.clone()]).await.unwrap(), (1, 0, 0));
        let got = client
            .get_waypoint(pb::GetWaypointRequest {
                name: "tracks/perseverance/waypoints/3_110".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .waypoint
            .unwrap();
        assert_eq!(
            got,
            pb::Waypoint {
                name: "tracks/perseverance/waypoints/3_110".into(),
                ..waypoint.clone()
            },
            "{label}"
        );

        // A bad waypoint anywhere in the batch names itself and writes nothing.
        let mut bad = waypoint.clone();
        bad.sol = -5;
        let fresh = pb::Waypoint {
            site: 4,
            ..waypoint.clone()
        };
        let status = upsert(&mut client, vec![fresh, bad]).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{label}");
        assert!(
            status.message().starts_with("waypoints[1].sol:"),
            "{}",
            status.message()
        );
        assert_eq!(list_all(&mut client, None, None, 0).await.len(), 1, "{label}");

        let status = client
            .list_waypoints(pb::ListWaypointsRequest {
                parent: TRACK.into(),
                min_sol: Some(10),
                max_sol: Some(5),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(status.message().starts_with("min_sol:"), "{}", status.message());
        let status = client
            .list_waypoints(pb::ListWaypointsRequest {
                parent: "tracks/unknown".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{label}");
        let status = client
            .get_track(pb::GetTrackRequest {
                name: "rovers/x".into(),
            })
            .await
            .unwrap_err();
        assert!(status.message().starts_with("name:"), "{}", status.message());

        // A token belongs to its range.
        let page = client
            .list_waypoints(pb::ListWaypointsRequest {
                parent: TRACK.into(),
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.next_page_token.is_empty(), "one waypoint, one page");

        let tracks = client
            .list_tracks(pb::ListTracksRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(tracks.tracks.len(), 1, "{label}");
        client
            .delete_track(pb::DeleteTrackRequest { name: TRACK.into() })
            .await
            .unwrap();
        let status = client
            .get_track(pb::GetTrackRequest { name: TRACK.into() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{label}");
    }
}

fn segment(sol: i32, from: &str, to: &str, three_d: bool) -> pb::TraverseSegment {
    let point = |i: f64| pb::PathPoint {
        longitude: 77.45 + i / 1000.0,
        latitude: 18.44,
        elevation_m: if three_d { -2569.9 + i } else { 0.0 },
    };
    pb::TraverseSegment {
        sol,
        from_rmc: from.into(),
        to_rmc: to.into(),
        length_m: 6.25,
        points: (0..3).map(|i| point(f64::from(i))).collect(),
        sclk_start: Some(668_099_149),
        sclk_end: None,
        has_elevation: three_d,
        extra: Some(to_struct(json!({"source": "mmgis"}).as_object().cloned().unwrap())),
    }
}

#[tokio::test]
async fn traverse_segments_keep_their_paths_and_count_changes() {
    for backend in backends() {
        let label = backend.label;
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let segments: Vec<_> = (0..25)
            .map(|i| segment(14 + i, &format!("3_{i}"), &format!("3_{}", i + 1), i % 2 == 0))
            .collect();
        let writer = client.clone();
        let upsert = |segments: Vec<pb::TraverseSegment>| {
            let mut client = writer.clone();
            async move {
                let r = client
                    .upsert_traverse(pb::UpsertTraverseRequest {
                        parent: TRACK.into(),
                        segments,
                    })
                    .await?
                    .into_inner();
                Ok::<_, tonic::Status>((r.created, r.updated, r.unchanged))
            }
        };
        assert_eq!(upsert(segments.clone()).await.unwrap(), (25, 0, 0), "{label}");
        assert_eq!(upsert(segments.clone()).await.unwrap(), (0, 0, 25), "{label}");
        let mut changed = segments.clone();
        let first = changed[3].points[0];
        changed[3].points.push(first);
        assert_eq!(upsert(changed.clone()).await.unwrap(), (0, 1, 24), "{label}");

        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_traverse_segments(pb::ListTraverseSegmentsRequest {
                    parent: TRACK.into(),
                    page_size: 4,
                    page_token,
                    min_sol: Some(20),
                    max_sol: Some(30),
                })
                .await
                .unwrap()
                .into_inner();
            all.extend(page.segments);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let expected: Vec<_> = changed.iter().filter(|s| (20..=30).contains(&s.sol)).cloned().collect();
        assert_eq!(all, expected, "{label}");

        let mut bad = segment(14, "3_0", "", true);
        bad.points.truncate(1);
        let status = upsert(vec![bad]).await.unwrap_err();
        assert!(
            status.message().starts_with("segments[0].to_rmc:"),
            "{}",
            status.message()
        );
        let track = client
            .get_track(pb::GetTrackRequest { name: TRACK.into() })
            .await
            .unwrap()
            .into_inner()
            .track
            .unwrap();
        assert_eq!((track.traverse_segment_count, track.waypoint_count), (25, 0), "{label}");
    }
}
