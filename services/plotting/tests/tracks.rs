//! Plots of the rover's track, drawn from NASA's waypoints and traverse loaded into a real
//! telemetry service, on every test backend: the sol range filters by sol, the point count is
//! the fixture's own, identical requests reuse the finished plot until the data changes, and an
//! empty range fails with why.

mod common;

use common::*;
use outpost_api::plotting::v1 as pb;
use outpost_api::telemetry::v1 as telemetry;
use outpost_kit::testing::backends;
use outpost_plotting::PlottingConfig;

#[tokio::test]
async fn track_plots_count_the_fixtures_sols_and_identical_requests_reuse_the_plot() {
    let in_range =
        |sols: &[i32], start: i32, end: i32| sols.iter().filter(|s| (start..=end).contains(*s)).count() as i64;
    let sols = fixture_sols();
    assert_eq!(sols.len(), 586);
    for backend in backends() {
        let label = backend.label;
        let data = start_telemetry(&backend).await;
        load_fixture(&data.url).await;
        let service = start_plotting(&backend, &data.url, PlottingConfig::default()).await;
        let mut client = plotting(&service.url);

        let yaw = create(&mut client, track_job("yaw", 0, 400, pb::PlotFormat::Png)).await;
        let (_, yaw) = until_ended(&mut client, &yaw.name).await;
        assert_eq!(yaw.state(), pb::PlotJobState::Succeeded, "{label}: {yaw:?}");
        assert_eq!(yaw.point_count, in_range(&sols, 0, 400), "{label}");
        let (_, png) = download(&mut client, &yaw.name).await.unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert_eq!((image.width(), image.height()), (1024, 768));

        // The same request again: the finished plot.
        let again = create(&mut client, track_job("yaw", 0, 400, pb::PlotFormat::Png)).await;
        assert_eq!(again.name, yaw.name, "{label}");
        assert_eq!(again.state(), pb::PlotJobState::Succeeded);

        // An SVG names its axes with their units.
        let svg = create(&mut client, track_job("yaw_rad", 100, 200, pb::PlotFormat::Svg)).await;
        let (_, svg) = until_ended(&mut client, &svg.name).await;
        assert_eq!(svg.point_count, in_range(&sols, 100, 200), "{label}");
        let (_, bytes) = download(&mut client, &svg.name).await.unwrap();
        let text = String::from_utf8(bytes).unwrap();
        for wanted in [
            "perseverance: yaw_rad against sol, sols 100 to 200",
            "\nyaw_rad (rad)\n",
            "\nsol\n",
        ] {
            assert!(text.contains(wanted), "{label}: {wanted:?} not in the SVG");
        }

        // A range with no waypoints fails with why.
        let empty = create(&mut client, track_job("yaw", 2000, 2100, pb::PlotFormat::Png)).await;
        let (_, empty) = until_ended(&mut client, &empty.name).await;
        assert_eq!(empty.state(), pb::PlotJobState::Failed, "{label}");
        assert_eq!(empty.error, "no waypoints between sol 2000 and 2100");

        // The map (waypoints as points over the traverse) and two traverse fields.
        let map = create(
            &mut client,
            pb::PlotJob {
                spec: Some(pb::PlotSpec {
                    kind: Some(pb::plot_spec::Kind::Map(pb::MapPlot {
                        track: TRACK.into(),
                        start_sol: 0,
                        end_sol: 1615,
                    })),
                    title: String::new(),
                }),
                ..Default::default()
            },
        )
        .await;
        let (_, map) = until_ended(&mut client, &map.name).await;
        assert_eq!(map.state(), pb::PlotJobState::Succeeded, "{label}: {map:?}");
        assert_eq!(map.point_count, 586);
        let trav = create(
            &mut client,
            pb::PlotJob {
                spec: Some(pb::PlotSpec {
                    kind: Some(pb::plot_spec::Kind::Fields(pb::FieldsPlot {
                        track: TRACK.into(),
                        data: pb::TrackData::Traverse as i32,
                        x_field: "sol".into(),
                        y_field: "length".into(),
                        start_sol: 0,
                        end_sol: 400,
                    })),
                    title: String::new(),
                }),
                ..Default::default()
            },
        )
        .await;
        let (_, trav) = until_ended(&mut client, &trav.name).await;
        assert_eq!(trav.state(), pb::PlotJobState::Succeeded, "{label}: {trav:?}");
        assert_eq!(trav.point_count, in_range(&fixture_traverse_sols(), 0, 400), "{label}");

        // Changed data: the same request is a new job.
        common::telemetry(&data.url)
            .upsert_waypoints(telemetry::UpsertWaypointsRequest {
                parent: TRACK.into(),
                waypoints: vec![telemetry::Waypoint {
                    sol: 399,
                    site: 9999,
                    drive: 1,
                    orientation: Some(telemetry::Orientation {
                        yaw: 45.0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            })
            .await
            .unwrap();
        let fresh = create(&mut client, track_job("yaw", 0, 400, pb::PlotFormat::Png)).await;
        assert_ne!(fresh.name, yaw.name, "{label}: new data, new plot");
        let (_, fresh) = until_ended(&mut client, &fresh.name).await;
        assert_eq!(fresh.point_count, in_range(&sols, 0, 400) + 1, "{label}");
        service.stop().await;
        data.stop().await;
    }
}
