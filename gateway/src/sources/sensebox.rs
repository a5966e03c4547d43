//! BOX, the senseBox temperature service: `GET /health`, `GET /temperature`, `POST /store`, and
//! `GET /snapshots/{id}` to fetch a stored snapshot (`/version` and `/metrics` are the
//! gateway's own).
//!
//! `/temperature` answers telemetry's cached aggregate of the boxes' current temperatures. When
//! no box has a fresh reading, it has ingest load openSenseMap (one load at a time per gateway:
//! concurrent requests wait for the same run), waits for it at most [`LOAD_WAIT`], and
//! aggregates again.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt as _;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, HeaderValue};
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as ingest, RunState, Source};
use outpost_api::media::v1::download_object_response::Part;
use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::media::v1::{self as media};
use outpost_api::telemetry::v1::telemetry_service_client::TelemetryServiceClient;
use outpost_api::telemetry::v1::{self as telemetry};
use outpost_kit::client::{Traced, retry};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{health, rfc3339, run_detail};
use crate::Upstreams;
use crate::error::ApiError;

/// The services the senseBox routes need (media keeps the snapshots).
const SERVICES: [&str; 3] = ["telemetry", "ingest", "media"];
/// The sensor kind averaged and stored.
const KIND: &str = "temperature";
/// The media object kind of snapshots (telemetry's `ExportSnapshot` stores them so).
const SNAPSHOT_KIND: &str = "snapshot";
/// How long `/temperature` waits for an openSenseMap load.
pub const LOAD_WAIT: Duration = Duration::from_secs(20);
/// How long a load is followed at most (then the next request starts another).
const LOAD_FOLLOW_LIMIT: Duration = Duration::from_secs(15 * 60);

/// An openSenseMap load in ingest: its run and, once it ended, how.
#[derive(Clone)]
struct Load {
    run: String,
    created: Instant,
    outcome: watch::Receiver<Option<Result<ingest::Run, ApiError>>>,
}

impl Load {
    /// Whether it ended (or is no longer followed).
    fn finished(&self) -> bool {
        self.outcome.borrow().is_some() || self.outcome.has_changed().is_err()
    }

    /// The run once it ended.
    async fn wait(mut self) -> Result<ingest::Run, ApiError> {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().expect("waited for it"),
            Err(_) => Err(ApiError::internal(format!("following the run {} stopped", self.run))),
        }
    }
}

#[derive(Clone)]
struct SenseBox {
    upstreams: Upstreams,
    telemetry: TelemetryServiceClient<Traced>,
    ingest: IngestServiceClient<Traced>,
    media: MediaServiceClient<Traced>,
    load: Arc<Mutex<Option<Load>>>,
}

/// The senseBox routes.
pub fn routes(upstreams: &Upstreams) -> Router {
    let state = SenseBox {
        upstreams: upstreams.clone(),
        telemetry: TelemetryServiceClient::new(upstreams.telemetry.clone()),
        ingest: IngestServiceClient::new(upstreams.ingest.clone()),
        media: MediaServiceClient::new(upstreams.media.clone()),
        load: Arc::new(Mutex::new(None)),
    };
    Router::new()
        .route("/health", get(health_route))
        .route("/temperature", get(temperature))
        .route("/store", post(store))
        .route("/snapshots/{id}", get(snapshot))
        .with_state(state)
}

async fn health_route(State(state): State<SenseBox>) -> Result<Json<Value>, ApiError> {
    health(&state.upstreams, &SERVICES).await
}

impl SenseBox {
    async fn aggregate(&self) -> Result<telemetry::AggregateReadingsResponse, ApiError> {
        let request = telemetry::AggregateReadingsRequest {
            kind: KIND.into(),
            window: None,
        };
        let deadline = self.upstreams.deadline();
        let response = retry(deadline, || {
            let mut telemetry = self.telemetry.clone();
            let request = deadline.request(request.clone());
            async move { telemetry.aggregate_readings(request).await }
        })
        .await?;
        Ok(response.into_inner())
    }

    /// The openSenseMap load in flight or started since `observed` (when the caller found no
    /// fresh readings), or a new one.
    async fn load(&self, observed: Instant) -> Result<Load, ApiError> {
        let mut slot = self.load.lock().await;
        if let Some(load) = slot.as_ref()
            && (!load.finished() || load.created >= observed)
        {
            return Ok(load.clone());
        }
        let created = Instant::now();
        let request = ingest::CreateRunRequest {
            run: Some(ingest::Run {
                source: Source::Opensensemap as i32,
                ..Default::default()
            }),
        };
        // Not retried: each call starts a run.
        let run = self
            .ingest
            .clone()
            .create_run(request)
            .await?
            .into_inner()
            .run
            .ok_or_else(|| ApiError::internal("ingest created no run"))?;
        tracing::info!(run = %run.name, "loading opensensemap: no fresh temperature readings");
        let (tx, outcome) = watch::channel(None);
        let (ingest, name) = (self.ingest.clone(), run.name.clone());
        tokio::spawn(
            async move {
                let outcome = tokio::time::timeout(LOAD_FOLLOW_LIMIT, follow(ingest, name.clone()))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApiError::new(
                            StatusCode::GATEWAY_TIMEOUT,
                            "DEADLINE_EXCEEDED",
                            format!("the opensensemap load {name} did not end within {LOAD_FOLLOW_LIMIT:?}"),
                        ))
                    });
                let _ = tx.send(Some(outcome));
            }
            .in_current_span(),
        );
        let load = Load {
            run: run.name,
            created,
            outcome,
        };
        *slot = Some(load.clone());
        Ok(load)
    }
}

/// Follows a run until it ends.
async fn follow(mut ingest: IngestServiceClient<Traced>, name: String) -> Result<ingest::Run, ApiError> {
    let request = ingest::WatchRunRequest { name: name.clone() };
    let mut changes = ingest.watch_run(request).await?.into_inner();
    while let Some(change) = changes.message().await? {
        if let Some(run) = change.run
            && is_finished(&run)
        {
            return Ok(run);
        }
    }
    Err(ApiError::unavailable(format!(
        "ingest stopped reporting on {name} before it ended"
    )))
}

fn is_finished(run: &ingest::Run) -> bool {
    matches!(
        run.state(),
        RunState::Succeeded | RunState::Failed | RunState::Cancelled
    )
}

/// The senseBox service's answer: `{"Average temperature", "status", "boxes", "cached", "computed"}`.
fn answer(aggregate: &telemetry::AggregateReadingsResponse) -> Option<Value> {
    let average = aggregate.average.filter(|_| aggregate.device_count > 0)?;
    Some(json!({
        "Average temperature": (average * 100.0).round() / 100.0,
        "status": aggregate.status_text,
        "unit": aggregate.unit,
        "boxes": aggregate.device_count,
        "cached": aggregate.cached,
        "computed": aggregate.compute_time.as_ref().and_then(rfc3339),
    }))
}

/// `GET /temperature`: the average of the boxes' fresh temperatures with its status; loads
/// openSenseMap first when there are none.
async fn temperature(State(state): State<SenseBox>) -> Result<Json<Value>, ApiError> {
    let observed = Instant::now();
    if let Some(body) = answer(&state.aggregate().await?) {
        return Ok(Json(body));
    }
    let load = state.load(observed).await?;
    let run = load.run.clone();
    let ended = match tokio::time::timeout(LOAD_WAIT, load.wait()).await {
        Ok(ended) => ended?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "DEADLINE_EXCEEDED",
                format!(
                    "no fresh temperature readings yet: the opensensemap load {run} is still running; ask again later"
                ),
            )
            .with_details(run_detail(&run)));
        }
    };
    if let Some(body) = answer(&state.aggregate().await?) {
        return Ok(Json(body));
    }
    let how = match ended.state() {
        RunState::Succeeded => {
            let loaded = ended.counts.as_ref().map_or(0, |c| c.created + c.updated);
            format!("loaded {loaded} boxes, none with a fresh temperature")
        }
        RunState::Cancelled => "was cancelled".to_string(),
        _ if ended.failure.is_empty() => "failed".to_string(),
        _ => format!("failed: {}", ended.failure),
    };
    Err(ApiError::unavailable(format!(
        "no fresh temperature readings: the opensensemap load {run} {how}"
    ))
    .with_details(run_detail(&run)))
}

/// `POST /store`: a snapshot of the current temperatures in the object store; 201
/// `{"object", "readings", "download"}`.
async fn store(State(state): State<SenseBox>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = telemetry::ExportSnapshotRequest { kind: KIND.into() };
    // Not retried: each call stores a new snapshot.
    let snapshot = state.telemetry.clone().export_snapshot(request).await?.into_inner();
    let id = snapshot.object.strip_prefix("objects/").unwrap_or(&snapshot.object);
    let body = json!({
        "object": snapshot.object,
        "readings": snapshot.reading_count,
        "download": format!("/snapshots/{id}"),
    });
    Ok((StatusCode::CREATED, Json(body)))
}

fn no_snapshot(id: &str) -> ApiError {
    ApiError::not_found(format!("no snapshot {id:?}"))
}

/// `GET /snapshots/{id}`: a stored snapshot's bytes, streamed, with its content type.
async fn snapshot(State(state): State<SenseBox>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let name = format!("objects/{id}");
    let request = media::GetObjectRequest { name: name.clone() };
    let deadline = state.upstreams.deadline();
    let object = retry(deadline, || {
        let mut media = state.media.clone();
        let request = deadline.request(request.clone());
        async move { media.get_object(request).await }
    })
    .await
    .map_err(|status| match status.code() {
        // Media answers a malformed id as an invalid name: it is no snapshot either.
        tonic::Code::NotFound | tonic::Code::InvalidArgument => no_snapshot(&id),
        _ => ApiError::from(status),
    })?
    .into_inner()
    .object
    .ok_or_else(|| no_snapshot(&id))?;
    if object.kind != SNAPSHOT_KIND {
        return Err(no_snapshot(&id));
    }

    let mut download = state
        .media
        .clone()
        .download_object(media::DownloadObjectRequest { name })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => no_snapshot(&id),
            _ => ApiError::from(status),
        })?
        .into_inner();
    let info = match download.message().await? {
        Some(media::DownloadObjectResponse {
            part: Some(Part::Info(info)),
        }) => info,
        _ => {
            return Err(ApiError::internal(
                "media's download did not start with its content info",
            ));
        }
    };
    let chunks = download.and_then(|message| async move {
        match message.part {
            Some(Part::Chunk(bytes)) => Ok(bytes),
            _ => Err(tonic::Status::internal(
                "media's download sent something other than a chunk",
            )),
        }
    });
    let mut response = (crate::content::headers(&info.content_type), Body::from_stream(chunks)).into_response();
    if let Ok(size) = u64::try_from(info.size_bytes) {
        response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(size));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregate(average: Option<f64>, device_count: i64) -> telemetry::AggregateReadingsResponse {
        telemetry::AggregateReadingsResponse {
            kind: KIND.into(),
            average,
            unit: "°C".into(),
            device_count,
            status: telemetry::AggregateStatus::Good as i32,
            status_text: "Good".into(),
            cached: true,
            compute_time: Some(prost_types::Timestamp {
                seconds: 1_733_054_400,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn the_answer_keeps_the_source_systems_shape() {
        let body = answer(&aggregate(Some(19.124_999), 25)).unwrap();
        assert_eq!(
            body,
            json!({
                "Average temperature": 19.12,
                "status": "Good",
                "unit": "°C",
                "boxes": 25,
                "cached": true,
                "computed": "2024-12-01T12:00:00Z",
            })
        );
        assert_eq!(
            answer(&aggregate(Some(19.125_1), 2)).unwrap()["Average temperature"],
            19.13
        );
    }

    #[test]
    fn no_fresh_boxes_is_no_answer() {
        assert_eq!(answer(&aggregate(None, 0)), None);
        assert_eq!(answer(&aggregate(Some(0.0), 0)), None);
    }

    #[tokio::test]
    async fn a_load_is_finished_once_it_ended_or_is_no_longer_followed() {
        let (tx, outcome) = watch::channel(None);
        let load = Load {
            run: "runs/a".into(),
            created: Instant::now(),
            outcome,
        };
        assert!(!load.finished());
        let ended = ingest::Run {
            name: "runs/a".into(),
            state: RunState::Succeeded as i32,
            ..Default::default()
        };
        tx.send(Some(Ok(ended.clone()))).unwrap();
        assert!(load.finished());
        assert_eq!(load.clone().wait().await.unwrap(), ended);

        let (tx, outcome) = watch::channel(None);
        let abandoned = Load {
            run: "runs/b".into(),
            created: Instant::now(),
            outcome,
        };
        drop(tx);
        assert!(abandoned.finished());
        assert_eq!(
            abandoned.wait().await.unwrap_err().status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
