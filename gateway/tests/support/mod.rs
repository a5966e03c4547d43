//! A real tonic server with a fake `PlottingService` and tonic-health on 127.0.0.1:0, and the
//! gateway served on another port in front of it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use outpost_api::plotting::v1::plotting_service_server::{PlottingService, PlottingServiceServer};
use outpost_api::plotting::v1::*;
use outpost_kit::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub const TOKEN: &str = "s3cret-token";
pub const MAX_BODY: u64 = 2048;

/// What the fake saw: the request messages and some of their metadata.
#[derive(Debug, Default)]
pub struct Seen {
    pub get: Vec<GetPlotJobRequest>,
    pub list: Vec<ListPlotJobsRequest>,
    pub create: Vec<CreatePlotJobRequest>,
    pub delete: Vec<DeletePlotJobRequest>,
    /// `x-request-id` of each call (empty when absent).
    pub request_ids: Vec<String>,
    /// Whether each call carried a deadline.
    pub deadlines: Vec<bool>,
}

#[derive(Clone, Default)]
pub struct FakePlotting {
    pub jobs: Arc<Mutex<BTreeMap<String, PlotJob>>>,
    pub seen: Arc<Mutex<Seen>>,
}

impl FakePlotting {
    fn note<T>(&self, request: &Request<T>) {
        let mut seen = self.seen.lock().unwrap();
        let id = request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        seen.request_ids.push(id);
        seen.deadlines.push(request.metadata().get("grpc-timeout").is_some());
    }
}

pub fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

#[tonic::async_trait]
impl PlottingService for FakePlotting {
    async fn create_plot_job(
        &self,
        request: Request<CreatePlotJobRequest>,
    ) -> Result<Response<CreatePlotJobResponse>, Status> {
        self.note(&request);
        let request = request.into_inner();
        self.seen.lock().unwrap().create.push(request.clone());
        let Some(mut job) = request.plot_job else {
            return Err(Status::invalid_argument("plot_job: required"));
        };
        if job.spec.is_none() {
            return Err(Status::invalid_argument("plot_job.spec: required"));
        }
        let mut jobs = self.jobs.lock().unwrap();
        job.name = format!("plotJobs/new{}", jobs.len() + 1);
        job.state = PlotJobState::Queued as i32;
        job.create_time = Some(timestamp(1_733_054_400));
        jobs.insert(job.name.clone(), job.clone());
        Ok(Response::new(CreatePlotJobResponse { plot_job: Some(job) }))
    }

    async fn get_plot_job(&self, request: Request<GetPlotJobRequest>) -> Result<Response<GetPlotJobResponse>, Status> {
        self.note(&request);
        let request = request.into_inner();
        self.seen.lock().unwrap().get.push(request.clone());
        if !request.name.starts_with("plotJobs/") || request.name.contains("bad") {
            return Err(Status::invalid_argument(format!(
                "name: {:?} is not plotJobs/{{job}}",
                request.name
            )));
        }
        match self.jobs.lock().unwrap().get(&request.name) {
            Some(job) => Ok(Response::new(GetPlotJobResponse {
                plot_job: Some(job.clone()),
            })),
            None => Err(Status::not_found(format!("{} not found", request.name))),
        }
    }

    async fn list_plot_jobs(
        &self,
        request: Request<ListPlotJobsRequest>,
    ) -> Result<Response<ListPlotJobsResponse>, Status> {
        self.note(&request);
        let request = request.into_inner();
        self.seen.lock().unwrap().list.push(request.clone());
        if request.page_size > 1000 {
            return Err(Status::invalid_argument("page_size: at most 1000"));
        }
        let plot_jobs = self
            .jobs
            .lock()
            .unwrap()
            .values()
            .filter(|j| request.state == 0 || j.state == request.state)
            .cloned()
            .collect();
        Ok(Response::new(ListPlotJobsResponse {
            plot_jobs,
            next_page_token: String::new(),
        }))
    }

    async fn delete_plot_job(
        &self,
        request: Request<DeletePlotJobRequest>,
    ) -> Result<Response<DeletePlotJobResponse>, Status> {
        self.note(&request);
        let request = request.into_inner();
        self.seen.lock().unwrap().delete.push(request.clone());
        match self.jobs.lock().unwrap().remove(&request.name) {
            Some(_) => Ok(Response::new(DeletePlotJobResponse {})),
            None => Err(Status::not_found(format!("{} not found", request.name))),
        }
    }

    async fn cancel_plot_job(
        &self,
        request: Request<CancelPlotJobRequest>,
    ) -> Result<Response<CancelPlotJobResponse>, Status> {
        self.note(&request);
        let name = request.into_inner().name;
        match self.jobs.lock().unwrap().get_mut(&name) {
            Some(job) => {
                job.state = PlotJobState::Cancelled as i32;
                Ok(Response::new(CancelPlotJobResponse {
                    plot_job: Some(job.clone()),
                }))
            }
            None => Err(Status::not_found(format!("{name} not found"))),
        }
    }

    type WatchPlotJobStream = futures::stream::Empty<Result<WatchPlotJobResponse, Status>>;

    async fn watch_plot_job(
        &self,
        _request: Request<WatchPlotJobRequest>,
    ) -> Result<Response<Self::WatchPlotJobStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    type DownloadPlotStream = futures::stream::Empty<Result<DownloadPlotResponse, Status>>;

    async fn download_plot(
        &self,
        _request: Request<DownloadPlotRequest>,
    ) -> Result<Response<Self::DownloadPlotStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

/// The fake upstream: its address, state, health reporter, and a stop switch.
pub struct Upstream {
    pub addr: SocketAddr,
    pub fake: FakePlotting,
    pub health: HealthReporter,
    _stop: oneshot::Sender<()>,
}

/// Starts the fake plotting service with health: every name in `serving` is SERVING.
pub async fn start_upstream(serving: &[&str]) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = FakePlotting::default();
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in serving {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(PlottingServiceServer::new(fake.clone()));
    tokio::spawn(async move {
        server
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Upstream {
        addr,
        fake,
        health,
        _stop: stop,
    }
}

/// A port nothing listens on.
pub async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A gateway served on 127.0.0.1:0.
pub struct Gateway {
    pub base: String,
    pub client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        json_of(self.client.get(self.url(path)).send().await.unwrap()).await
    }
}

pub async fn json_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}, body not JSON ({e}): {text}"));
    (status, json)
}

/// Starts a gateway whose plotting upstream is `plotting` and whose other upstreams are
/// `others` (a dead port when `None`), with [`TOKEN`] and [`MAX_BODY`] configured.
pub async fn start_gateway(plotting: &str, others: Option<&str>) -> Gateway {
    let dead = dead_endpoint().await;
    let others = others.unwrap_or(&dead);
    let config = Config::from_args([
        "--plotting-url",
        plotting,
        "--ingest-url",
        others,
        "--media-url",
        others,
        "--telemetry-url",
        others,
        "--api-token",
        TOKEN,
        "--max-body-bytes",
        &MAX_BODY.to_string(),
        "--rpc-timeout-ms",
        "3000",
    ])
    .unwrap();
    config.validate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        outpost_gateway::serve(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Gateway {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _stop: stop,
    }
}

/// The fake upstream and a gateway in front of it (other upstreams dead).
pub async fn spawn() -> (Upstream, Gateway) {
    let upstream = start_upstream(&[outpost_api::names::PLOTTING]).await;
    let gateway = start_gateway(&format!("http://{}", upstream.addr), None).await;
    (upstream, gateway)
}
