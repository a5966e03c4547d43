//! gRPC handlers of the plotting service: validate, call the domain, map errors.

use outpost_api::plotting::v1::{self as pb, plotting_service_server::PlottingService};
use outpost_kit::error::Error;
use outpost_kit::grpc::{BoxStream, not_yet};
use outpost_kit::paging;
use tonic::{Request, Response, Status};

use crate::jobs::{self, Jobs};

/// The plotting service's handlers.
pub struct PlottingApi {
    jobs: Jobs,
}

impl PlottingApi {
    pub fn new(jobs: Jobs) -> Self {
        Self { jobs }
    }
}

#[tonic::async_trait]
impl PlottingService for PlottingApi {
    async fn create_plot_job(
        &self,
        _request: Request<pb::CreatePlotJobRequest>,
    ) -> Result<Response<pb::CreatePlotJobResponse>, Status> {
        Err(not_yet("CreatePlotJob"))
    }

    async fn get_plot_job(
        &self,
        request: Request<pb::GetPlotJobRequest>,
    ) -> Result<Response<pb::GetPlotJobResponse>, Status> {
        let id = jobs::parse_name("name", &request.into_inner().name)?;
        Ok(Response::new(pb::GetPlotJobResponse {
            plot_job: Some(self.jobs.get(&id).await?),
        }))
    }

    async fn list_plot_jobs(
        &self,
        request: Request<pb::ListPlotJobsRequest>,
    ) -> Result<Response<pb::ListPlotJobsResponse>, Status> {
        let request = request.into_inner();
        let limit = paging::page_size(request.page_size, 50, 1000)?;
        let query = paging::Query::of(format!("plotJobs|{}", request.state));
        let after = paging::decode_time_id(&request.page_token, query)?;
        let state = match pb::PlotJobState::try_from(request.state) {
            Ok(pb::PlotJobState::Unspecified) => None,
            Ok(state) => Some(state as i32),
            Err(_) => return Err(Error::invalid("state", "unknown plot job state").into()),
        };
        let rows = self.jobs.list(state, after, limit + 1).await?;
        let (plot_jobs, next_page_token) = paging::split_page(rows, limit, query, |last| {
            let created = last
                .create_time
                .map_or(0, |t| outpost_kit::time::from_timestamp("create_time", &t).unwrap_or(0));
            paging::time_id(created, last.name.trim_start_matches("plotJobs/"))
        });
        Ok(Response::new(pb::ListPlotJobsResponse {
            plot_jobs,
            next_page_token,
        }))
    }

    async fn delete_plot_job(
        &self,
        request: Request<pb::DeletePlotJobRequest>,
    ) -> Result<Response<pb::DeletePlotJobResponse>, Status> {
        let id = jobs::parse_name("name", &request.into_inner().name)?;
        self.jobs.delete(&id).await?;
        Ok(Response::new(pb::DeletePlotJobResponse {}))
    }

    type WatchPlotJobStream = BoxStream<pb::WatchPlotJobResponse>;

    async fn watch_plot_job(
        &self,
        _request: Request<pb::WatchPlotJobRequest>,
    ) -> Result<Response<Self::WatchPlotJobStream>, Status> {
        Err(not_yet("WatchPlotJob"))
    }

    type DownloadPlotStream = BoxStream<pb::DownloadPlotResponse>;

    async fn download_plot(
        &self,
        _request: Request<pb::DownloadPlotRequest>,
    ) -> Result<Response<Self::DownloadPlotStream>, Status> {
        Err(not_yet("DownloadPlot"))
    }
}
