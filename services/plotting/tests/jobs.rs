//! Plot jobs through the plotting service's gRPC API, on every test backend.

use outpost_api::plotting::v1::{self as pb, plotting_service_client::PlottingServiceClient};
use outpost_kit::storage::Storage;
use outpost_kit::testing::backends;
use prost::Message;
use tokio::net::TcpListener;
use tonic::Code;

#[tokio::test]
async fn stored_jobs_are_listed_newest_first_fetched_and_deleted() {
    for backend in backends() {
        let config = backend.config();
        // Seed the service's own table, as its worker would.
        let storage = Storage::open(&config.storage(), "plotting", outpost_plotting::migrations())
            .await
            .unwrap();
        let spec = pb::PlotSpec {
            kind: Some(pb::plot_spec::Kind::Track(pb::TrackPlot {
                track: "tracks/perseverance".into(),
                x_field: "sol".into(),
                y_field: "yaw".into(),
                min_sol: Some(100),
                max_sol: None,
            })),
            title: String::new(),
        };
        for (id, created, state) in [("a1", 1_000_000i64, 3i64), ("b2", 2_000_000, 1), ("c3", 3_000_000, 3)] {
            sqlx::query("INSERT INTO plot_jobs (id, spec, format, state, created_at) VALUES ($1, $2, 1, $3, $4)")
                .bind(id)
                .bind(hex::encode(spec.encode_to_vec()))
                .bind(state)
                .bind(created)
                .execute(storage.db.pool())
                .await
                .unwrap();
        }

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(outpost_plotting::serve_on(config, listener, async {
            let _ = stopped.await;
        }));
        outpost_kit::client::wait_serving(
            &format!("http://{addr}"),
            outpost_api::names::PLOTTING,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
        let mut client = PlottingServiceClient::connect(format!("http://{addr}")).await.unwrap();

        let all = client
            .list_plot_jobs(pb::ListPlotJobsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let names: Vec<_> = all.plot_jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            ["plotJobs/c3", "plotJobs/b2", "plotJobs/a1"],
            "{}",
            backend.label
        );
        assert_eq!(all.plot_jobs[0].spec.as_ref(), Some(&spec));

        let succeeded = client
            .list_plot_jobs(pb::ListPlotJobsRequest {
                state: pb::PlotJobState::Succeeded as i32,
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(succeeded.plot_jobs.len(), 1);
        assert_eq!(succeeded.plot_jobs[0].name, "plotJobs/c3");
        let rest = client
            .list_plot_jobs(pb::ListPlotJobsRequest {
                state: pb::PlotJobState::Succeeded as i32,
                page_size: 1,
                page_token: succeeded.next_page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rest.plot_jobs[0].name, "plotJobs/a1");
        assert!(rest.next_page_token.is_empty());

        let job = client
            .get_plot_job(pb::GetPlotJobRequest {
                name: "plotJobs/b2".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(job.plot_job.unwrap().state, pb::PlotJobState::Pending as i32);
        client
            .delete_plot_job(pb::DeletePlotJobRequest {
                name: "plotJobs/b2".into(),
            })
            .await
            .unwrap();
        let gone = client
            .get_plot_job(pb::GetPlotJobRequest {
                name: "plotJobs/b2".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);

        let bad = client
            .get_plot_job(pb::GetPlotJobRequest { name: "jobs/b2".into() })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().starts_with("name:"), "{}", bad.message());
        let bad = client
            .list_plot_jobs(pb::ListPlotJobsRequest {
                page_size: -5,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(bad.message().starts_with("page_size:"), "{}", bad.message());
        let bad = client
            .list_plot_jobs(pb::ListPlotJobsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(bad.message().starts_with("page_token:"), "{}", bad.message());

        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
