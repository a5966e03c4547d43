//! gRPC handlers of the ingest service: validate, call the domain, map errors.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt as _;
use outpost_api::ingest::v1::{self as pb, RunState, Source, ingest_service_server::IngestService};
use outpost_kit::error::Error;
use outpost_kit::group_commit::GroupCommit;
use outpost_kit::grpc::BoxStream;
use outpost_kit::paging;
use outpost_kit::time::from_timestamp;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_types::{ErrorDetail, ErrorInfo, ResourceInfo, RetryInfo, StatusExt as _};

use crate::push::{MAX_PUSH_BATCH, PushSummary};
use crate::reading::Reading;
use crate::runs::{Created, Runs};
use crate::telemetry::Telemetry;
use crate::uploads::{self, Uploads};
use crate::{messages, metrics, model};

/// The ingest service's handlers.
pub struct IngestApi {
    runs: Runs,
    telemetry: Telemetry,
    posts: GroupCommit<Vec<Reading>, ()>,
    uploads: Option<Uploads>,
}

impl IngestApi {
    /// Handlers over `runs`, writing pushed readings to `telemetry`, and posted messages
    /// through `posts` (see [`messages::writer`]).
    pub fn new(runs: Runs, telemetry: Telemetry, posts: GroupCommit<Vec<Reading>, ()>) -> Self {
        IngestApi {
            runs,
            telemetry,
            posts,
            uploads: None,
        }
    }

    /// Takes files with UploadSource through `uploads`.
    pub fn with_uploads(mut self, uploads: Uploads) -> Self {
        self.uploads = Some(uploads);
        self
    }
}

/// The `{run}` of `runs/{run}` in `field`.
fn run_id(field: &str, name: &str) -> Result<String, Error> {
    let id = name.strip_prefix("runs/").unwrap_or_default();
    let valid = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(Error::invalid(
            field,
            format!("{name:?} is not a run name (runs/{{run}})"),
        ));
    }
    Ok(id.to_string())
}

fn source_filter(value: i32) -> Result<Option<Source>, Error> {
    match Source::try_from(value) {
        Ok(Source::Unspecified) => Ok(None),
        Ok(source) => Ok(Some(source)),
        Err(_) => Err(Error::invalid("source", format!("{value} is not a source"))),
    }
}

fn state_filter(value: i32) -> Result<Option<RunState>, Error> {
    match RunState::try_from(value) {
        Ok(RunState::Unspecified) => Ok(None),
        Ok(state) => Ok(Some(state)),
        Err(_) => Err(Error::invalid("state", format!("{value} is not a run state"))),
    }
}

/// UNAVAILABLE for a load that failed less than the retry spacing ago, naming the failed run
/// and its failure, with when to ask again.
fn recently_failed(run: &model::Run, retry_in: Duration) -> Status {
    let retry_in = Duration::from_secs(retry_in.as_secs_f64().ceil() as u64);
    let message = format!(
        "the last {} load with these parameters ({}) failed: {}; it is not started again for {}s \
         (OUTPOST_LOAD_RETRY_SECONDS)",
        model::source_name(run.source),
        run.name(),
        if run.failure.is_empty() {
            "no reason given"
        } else {
            &run.failure
        },
        retry_in.as_secs()
    );
    let details = [
        ErrorDetail::from(ErrorInfo::new(
            "LOAD_RECENTLY_FAILED",
            "outpost",
            HashMap::from([("run".to_string(), run.name())]),
        )),
        ErrorDetail::from(ResourceInfo::new(
            "outpost.ingest.v1.Run",
            run.name(),
            "",
            run.failure.clone(),
        )),
        ErrorDetail::from(RetryInfo::new(Some(retry_in))),
    ];
    Status::with_error_details_vec(tonic::Code::Unavailable, message, details)
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn create_run(
        &self,
        request: Request<pb::CreateRunRequest>,
    ) -> Result<Response<pb::CreateRunResponse>, Status> {
        let request = request.into_inner();
        let run = request.run.ok_or_else(|| Error::invalid("run", "required"))?;
        let source = match source_filter(run.source).map_err(|_| Error::invalid("run.source", "not a source"))? {
            Some(source) => source,
            None => return Err(Error::invalid("run.source", "required").into()),
        };
        if !self.runs.supports(source) {
            return Err(Status::unimplemented(format!(
                "loading {} sources is not implemented yet",
                model::source_name(source)
            )));
        }
        let min_create_time = request
            .min_create_time
            .map(|time| from_timestamp("min_create_time", &time))
            .transpose()?;
        let parameters: BTreeMap<String, String> = run.parameters.into_iter().collect();
        let (run, joined) = match self.runs.create(source, parameters, min_create_time).await? {
            Created::New(run) => (run, false),
            Created::Joined(run) => (run, true),
            Created::RecentlyFailed { run, retry_in } => return Err(recently_failed(&run, retry_in)),
        };
        Ok(Response::new(pb::CreateRunResponse {
            run: Some(run.to_pb()),
            joined,
        }))
    }

    async fn get_run(&self, request: Request<pb::GetRunRequest>) -> Result<Response<pb::GetRunResponse>, Status> {
        let id = run_id("name", &request.into_inner().name)?;
        let run = self.runs.get(&id).await?;
        Ok(Response::new(pb::GetRunResponse { run: Some(run.to_pb()) }))
    }

    async fn list_runs(&self, request: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        let request = request.into_inner();
        let limit = paging::page_size(request.page_size, 50, 1000)?;
        let query = paging::Query::of(format!("runs|{}|{}", request.source, request.state));
        let after = paging::decode_time_id(&request.page_token, query)?;
        let source = source_filter(request.source)?;
        let state = state_filter(request.state)?;
        let rows = self.runs.list(source, state, after, limit + 1).await?;
        let (runs, next_page_token) =
            paging::split_page(rows, limit, query, |last| paging::time_id(last.created_at, &last.id));
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs.iter().map(model::Run::to_pb).collect(),
            next_page_token,
        }))
    }

    async fn delete_run(
        &self,
        request: Request<pb::DeleteRunRequest>,
    ) -> Result<Response<pb::DeleteRunResponse>, Status> {
        let id = run_id("name", &request.into_inner().name)?;
        self.runs.delete(&id).await?;
        Ok(Response::new(pb::DeleteRunResponse {}))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::CancelRunResponse>, Status> {
        let id = run_id("name", &request.into_inner().name)?;
        let run = self.runs.cancel(&id).await?;
        Ok(Response::new(pb::CancelRunResponse { run: Some(run.to_pb()) }))
    }

    type WatchRunStream = BoxStream<pb::WatchRunResponse>;

    async fn watch_run(&self, request: Request<pb::WatchRunRequest>) -> Result<Response<Self::WatchRunStream>, Status> {
        let id = run_id("name", &request.into_inner().name)?;
        let changes = self.runs.watch(&id).await?;
        let stream = ReceiverStream::new(changes).map(|run| Ok(pb::WatchRunResponse { run: Some(run.to_pb()) }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn push_readings(
        &self,
        request: Request<Streaming<pb::PushReadingsRequest>>,
    ) -> Result<Response<pb::PushReadingsResponse>, Status> {
        let mut batches = request.into_inner();
        let mut summary = PushSummary::default();
        let mut batch = 0;
        while let Some(message) = batches.message().await? {
            if message.readings.len() > MAX_PUSH_BATCH {
                return Err(Error::invalid(
                    "readings",
                    format!(
                        "{} readings in one message; at most {MAX_PUSH_BATCH}",
                        message.readings.len()
                    ),
                )
                .into());
            }
            let before = summary.rejected;
            let valid = summary.check_batch(batch, &message.readings);
            metrics::malformed(metrics::source::PUSH, (summary.rejected - before) as u64);
            if !valid.is_empty() {
                let count = valid.len();
                let readings: Vec<_> = valid.into_iter().map(Into::into).collect();
                self.telemetry.write(&readings).await.map_err(|status| {
                    Status::new(
                        status.code(),
                        format!("telemetry did not commit batch {batch}: {}", status.message()),
                    )
                })?;
                summary.accepted += count as i64;
                metrics::readings(metrics::source::PUSH, count as u64);
            }
            batch += 1;
        }
        Ok(Response::new(summary.to_pb()))
    }

    async fn ingest_sensor_messages(
        &self,
        request: Request<pb::IngestSensorMessagesRequest>,
    ) -> Result<Response<pb::IngestSensorMessagesResponse>, Status> {
        let posted = messages::parse_payload(&request.into_inner().payload)?;
        let readings = posted.readings();
        let answer = pb::IngestSensorMessagesResponse {
            readings: readings.iter().map(messages::to_pb).collect(),
            written: messages::distinct(readings),
        };
        let count = readings.len() as u64;
        self.posts.submit(posted.into_readings()).await?;
        metrics::readings(metrics::source::POSTED, count);
        Ok(Response::new(answer))
    }

    async fn upload_source(
        &self,
        request: Request<Streaming<pb::UploadSourceRequest>>,
    ) -> Result<Response<pb::UploadSourceResponse>, Status> {
        let uploads = self
            .uploads
            .as_ref()
            .ok_or_else(|| Status::unimplemented("UploadSource is not implemented yet"))?;
        let received = uploads::receive(request.into_inner()).await?;
        let run = match uploads.start(received).await? {
            Created::New(run) | Created::Joined(run) => run,
            Created::RecentlyFailed { run, retry_in } => return Err(recently_failed(&run, retry_in)),
        };
        Ok(Response::new(pb::UploadSourceResponse { run: Some(run.to_pb()) }))
    }
}
