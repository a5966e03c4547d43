//! gRPC handlers of the plotting service: validate, call the domain, map errors.

use futures::StreamExt as _;
use outpost_api::plotting::v1::{self as pb, plotting_service_server::PlottingService};
use outpost_kit::error::Error;
use outpost_kit::grpc::{BoxStream, download};
use outpost_kit::paging;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::jobs::{self, Jobs};
use crate::spec::PlotRequest;

/// The plotting service's handlers.
pub struct PlottingApi {
    jobs: Jobs,
}

impl PlottingApi {
    /// Handlers over `jobs`.
    pub fn new(jobs: Jobs) -> Self {
        Self { jobs }
    }
}

#[tonic::async_trait]
impl PlottingService for PlottingApi {
    async fn create_plot_job(
        &self,
        request: Request<pb::CreatePlotJobRequest>,
    ) -> Result<Response<pb::CreatePlotJobResponse>, Status> {
        let job = request
            .into_inner()
            .plot_job
            .ok_or_else(|| Error::invalid("plot_job", "is required"))?;
        let request = PlotRequest::from_pb(&job)?;
        let job = self.jobs.create(request).await?;
        Ok(Response::new(pb::CreatePlotJobResponse {
            plot_job: Some(job.to_pb()),
        }))
    }

    async fn get_plot_job(
        &self,
        request: Request<pb::GetPlotJobRequest>,
    ) -> Result<Response<pb::GetPlotJobResponse>, Status> {
        let id = jobs::parse_name("name", &request.into_inner().name)?;
        Ok(Response::new(pb::GetPlotJobResponse {
            plot_job: Some(self.jobs.get(&id).await?.to_pb()),
        }))
    }

    async fn list_plot_jobs(
        &self,
        request: Request<pb::ListPlotJobsRequest>,
    ) -> Result<Response<pb::ListPlotJobsResponse>, Status> {
        let request = request.into_inner();
        let limit = paging::page_size(request.page_size, 50, 1000)?;
        let state =
            pb::PlotJobState::try_from(request.state).map_err(|_| Error::invalid("state", "unknown plot job state"))?;
        let query = paging::Query::of(format!("plotJobs|{}", request.state));
        let after = paging::decode_time_id(&request.page_token, query)?;
        let rows = self.jobs.list(jobs::state_of(state), after, limit + 1).await?;
        let (rows, next_page_token) =
            paging::split_page(rows, limit, query, |last| paging::time_id(last.created_at, &last.id));
        Ok(Response::new(pb::ListPlotJobsResponse {
            plot_jobs: rows.iter().map(|j| j.to_pb()).collect(),
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

    async fn cancel_plot_job(
        &self,
        request: Request<pb::CancelPlotJobRequest>,
    ) -> Result<Response<pb::CancelPlotJobResponse>, Status> {
        let id = jobs::parse_name("name", &request.into_inner().name)?;
        Ok(Response::new(pb::CancelPlotJobResponse {
            plot_job: Some(self.jobs.cancel(&id).await?.to_pb()),
        }))
    }

    type WatchPlotJobStream = BoxStream<pb::WatchPlotJobResponse>;

    async fn watch_plot_job(
        &self,
        request: Request<pb::WatchPlotJobRequest>,
    ) -> Result<Response<Self::WatchPlotJobStream>, Status> {
        let id = jobs::parse_name("name", &request.into_inner().name)?;
        let changes = self.jobs.watch(&id).await?;
        let stream = ReceiverStream::new(changes).map(|job| {
            Ok(pb::WatchPlotJobResponse {
                plot_job: Some(job.to_pb()),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type DownloadPlotStream = BoxStream<pb::DownloadPlotResponse>;

    async fn download_plot(
        &self,
        request: Request<pb::DownloadPlotRequest>,
    ) -> Result<Response<Self::DownloadPlotStream>, Status> {
        let id = jobs::parse_name("name", &request.into_inner().name)?;
        let (job, bytes) = self.jobs.plot(&id).await?;
        let info = pb::DownloadPlotResponse {
            part: Some(pb::download_plot_response::Part::Info(pb::PlotContentInfo {
                content_type: job.request.format.content_type().to_string(),
                size_bytes: bytes.len() as i64,
                sha256: job.plot_sha256.clone(),
            })),
        };
        Ok(Response::new(download(info, bytes, |chunk| pb::DownloadPlotResponse {
            part: Some(pb::download_plot_response::Part::Chunk(chunk)),
        })))
    }
}
