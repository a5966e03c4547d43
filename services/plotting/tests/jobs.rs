//! Plot jobs through the plotting service's gRPC API, drawn from a real telemetry service, on
//! every test backend.

mod common;

use common::*;
use outpost_api::plotting::v1 as pb;
use outpost_kit::testing::backends;
use outpost_plotting::PlottingConfig;
use tonic::Code;

const HOUR: i64 = 3_600_000_000;
/// 2024-12-01T00:00:00Z.
const DAY: i64 = 1_733_011_200_000_000;

#[tokio::test]
async fn a_readings_job_is_queued_rendered_listed_and_downloaded() {
    for backend in backends() {
        let label = backend.label;
        let telemetry = start_telemetry(&backend).await;
        let values: Vec<f64> = (0..90).map(|i| 10.0 + f64::from(i % 17)).collect();
        write_readings(&telemetry.url, "burrow", "temperature", DAY, &values).await;
        let service = start_plotting(&backend, &telemetry.url, PlottingConfig::default()).await;
        let mut client = plotting(&service.url);
        let sensor = "devices/burrow/sensors/temperature";

        let created = create(
            &mut client,
            readings_job(sensor, DAY, DAY + 2 * HOUR, pb::PlotFormat::Png),
        )
        .await;
        assert!(created.name.starts_with("plotJobs/"), "{label}: {created:?}");
        assert!(created.create_time.is_some());
        let (states, done) = until_ended(&mut client, &created.name).await;
        assert_eq!(done.state(), pb::PlotJobState::Succeeded, "{label}: {done:?}");
        assert_eq!(states.iter().filter(|s| **s == pb::PlotJobState::Succeeded).count(), 1);
        assert_eq!(done.point_count, 90, "{label}");
        assert_eq!(done.attempts, 1);
        assert!(done.start_time.is_some() && done.end_time.is_some());
        assert_eq!((done.width, done.height), (1024, 768));
        let (info, png) = download(&mut client, &done.name).await.unwrap();
        assert_eq!(info.content_type, "image/png");
        assert_eq!(info.size_bytes as usize, png.len());
        assert_eq!(info.sha256, done.plot_sha256);
        let image = image::load_from_memory(&png).unwrap();
        assert_eq!((image.width(), image.height()), (1024, 768), "{label}");

        // An SVG of another size, and a range with no readings, which fails with why.
        let mut svg = readings_job(sensor, DAY, DAY + HOUR, pb::PlotFormat::Svg);
        svg.width = 640;
        svg.height = 480;
        let svg = create(&mut client, svg).await;
        let empty = create(
            &mut client,
            readings_job(sensor, DAY + 10 * HOUR, DAY + 11 * HOUR, pb::PlotFormat::Png),
        )
        .await;
        let (_, svg) = until_ended(&mut client, &svg.name).await;
        assert_eq!(svg.state(), pb::PlotJobState::Succeeded, "{label}: {svg:?}");
        assert_eq!(svg.point_count, 60);
        let (info, bytes) = download(&mut client, &svg.name).await.unwrap();
        assert_eq!(info.content_type, "image/svg+xml");
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("width=\"640\"") && text.contains("temperature (°C)"),
            "{label}"
        );
        let (_, empty) = until_ended(&mut client, &empty.name).await;
        assert_eq!(empty.state(), pb::PlotJobState::Failed, "{label}");
        assert_eq!(
            empty.error,
            "no readings of devices/burrow/sensors/temperature between 2024-12-01T10:00:00Z and 2024-12-01T11:00:00Z"
        );
        assert_eq!(empty.attempts, 1, "no data is not tried again");
        let refused = download(&mut client, &empty.name).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(
            refused.message().contains("failed: no readings of"),
            "{}",
            refused.message()
        );
        let cancel = client
            .cancel_plot_job(pb::CancelPlotJobRequest {
                name: done.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(cancel.code(), Code::FailedPrecondition);

        // Newest first, by state, in keyset pages.
        let all = client
            .list_plot_jobs(pb::ListPlotJobsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = all.plot_jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            [empty.name.as_str(), svg.name.as_str(), done.name.as_str()],
            "{label}"
        );
        let first = client
            .list_plot_jobs(pb::ListPlotJobsRequest {
                state: pb::PlotJobState::Succeeded as i32,
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.plot_jobs[0].name, svg.name);
        let second = client
            .list_plot_jobs(pb::ListPlotJobsRequest {
                state: pb::PlotJobState::Succeeded as i32,
                page_size: 1,
                page_token: first.next_page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.plot_jobs[0].name, done.name);
        assert!(second.next_page_token.is_empty());
        let wrong = client
            .list_plot_jobs(pb::ListPlotJobsRequest {
                state: pb::PlotJobState::Failed as i32,
                page_size: 1,
                page_token: first.next_page_token,
            })
            .await
            .unwrap_err();
        assert!(wrong.message().starts_with("page_token:"), "{}", wrong.message());

        client
            .delete_plot_job(pb::DeletePlotJobRequest { name: svg.name.clone() })
            .await
            .unwrap();
        let gone = client
            .get_plot_job(pb::GetPlotJobRequest { name: svg.name.clone() })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
        service.stop().await;
        telemetry.stop().await;
    }
}

#[tokio::test]
async fn bad_requests_name_their_field_and_store_nothing() {
    for backend in backends() {
        let telemetry = start_telemetry(&backend).await;
        let service = start_plotting(&backend, &telemetry.url, PlottingConfig::default()).await;
        let mut client = plotting(&service.url);
        let track = |start: i32, end: i32, y: &str| pb::PlotJob {
            spec: Some(pb::PlotSpec {
                kind: Some(pb::plot_spec::Kind::Track(pb::TrackPlot {
                    track: "tracks/perseverance".into(),
                    x_field: String::new(),
                    y_field: y.into(),
                    start_sol: start,
                    end_sol: end,
                })),
                title: String::new(),
            }),
            ..Default::default()
        };
        let mut too_big = track(0, 10, "yaw");
        too_big.width = 10_000;
        for (job, field) in [
            (pb::PlotJob::default(), "plot_job.spec:"),
            (track(400, 0, "yaw"), "plot_job.spec.track.end_sol:"),
            (track(-1, 0, "yaw"), "plot_job.spec.track.start_sol:"),
            (track(0, 10, "colour"), "plot_job.spec.track.y_field:"),
            (too_big, "plot_job.width:"),
            (
                readings_job("devices/x/sensors/t", 10, 5, pb::PlotFormat::Png),
                "plot_job.spec.readings.end_time:",
            ),
            (
                readings_job("sensors/t", 0, 5, pb::PlotFormat::Png),
                "plot_job.spec.readings.sensor:",
            ),
        ] {
            let err = client
                .create_plot_job(pb::CreatePlotJobRequest { plot_job: Some(job) })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
            assert!(err.message().starts_with(field), "{field}: {}", err.message());
        }
        let bad = client
            .get_plot_job(pb::GetPlotJobRequest { name: "jobs/b2".into() })
            .await
            .unwrap_err();
        assert!(bad.message().starts_with("name:"), "{}", bad.message());
        let none = client
            .list_plot_jobs(pb::ListPlotJobsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(none.plot_jobs.is_empty());
        service.stop().await;
        telemetry.stop().await;
    }
}
