//! BOX, the senseBox temperature service: `GET /health`, `GET /temperature`, `POST /store`, and
//! `GET /snapshots/{id}` to fetch a stored snapshot (`/version` and `/metrics` are the
//! gateway's own).
//!
//! `/temperature` answers telemetry's cached aggregate of the boxes' current temperatures. When
//! no box has a fresh reading, it asks ingest for an openSenseMap load (ingest runs one load at
//! a time across its replicas: concurrent requests, from any gateway, join the same run, and a
//! load that failed is not started again for `OUTPOST_LOAD_RETRY_SECONDS`), waits for it at
//! most [`LOAD_WAIT`], and aggregates again.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::HeaderMap;
use http::StatusCode;
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as ingest, RunState, Source};
use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::media::v1::{self as media};
use outpost_api::telemetry::v1::telemetry_service_client::TelemetryServiceClient;
use outpost_api::telemetry::v1::{self as telemetry};
use outpost_kit::client::{Traced, retry};
use serde_json::{Value, json};

use super::{health, rfc3339, run_detail};
use crate::Upstreams;
use crate::error::ApiError;
use crate::openapi::{Route, schemas};

/// The services the senseBox routes need (media keeps the snapshots).
const SERVICES: [&str; 3] = ["telemetry", "ingest", "media"];
/// The sensor kind averaged and stored.
const KIND: &str = "temperature";
/// The media object kind of snapshots (telemetry's `ExportSnapshot` stores them so).
const SNAPSHOT_KIND: &str = "snapshot";
/// How long `/temperature` waits for an openSenseMap load.
pub const LOAD_WAIT: Duration = Duration::from_secs(20);

#[derive(Clone)]
struct SenseBox {
    upstreams: Upstreams,
    telemetry: TelemetryServiceClient<Traced>,
    ingest: IngestServiceClient<Traced>,
    media: MediaServiceClient<Traced>,
}

/// The senseBox routes.
pub fn routes(upstreams: &Upstreams) -> Router {
    let state = SenseBox {
        upstreams: upstreams.clone(),
        telemetry: TelemetryServiceClient::new(upstreams.telemetry.clone()),
        ingest: IngestServiceClient::new(upstreams.ingest.clone()),
        media: MediaServiceClient::new(upstreams.media.clone()),
    };
    Router::new()
        .route("/health", get(health_route))
        .route("/temperature", get(temperature))
        .route("/store", post(store))
        .route("/snapshots/{id}", get(snapshot))
        .with_state(state)
}

/// The senseBox routes, for the OpenAPI document.
pub fn openapi() -> Vec<Route> {
    vec![
        Route::get("/health", "BoxHealth", "Health of telemetry, ingest and media, by name.")
            .tag("SenseBox")
            .answers(200, "Every service the routes need serves.", schemas::object()),
        Route::get("/temperature", "BoxTemperature", "The average of the boxes' fresh temperatures, with its status.")
            .tag("SenseBox")
            .description("Loads openSenseMap first when no box has a fresh temperature; 504 when that load takes too long, 503 when it failed or found none.")
            .answers(200, "The average.", json!({
                "type": "object",
                "required": ["Average temperature", "status", "unit", "boxes", "cached", "computed"],
                "additionalProperties": false,
                "properties": {
                    "Average temperature": { "type": "number" },
                    "status": { "type": "string", "example": "Good" },
                    "unit": { "type": "string" },
                    "boxes": { "type": "integer", "minimum": 1 },
                    "cached": { "type": "boolean" },
                    "computed": { "type": "string", "format": "date-time", "nullable": true },
                },
            })),
        Route::post("/store", "BoxStore", "Stores a snapshot of the current temperatures.")
            .tag("SenseBox")
            .answers(201, "The stored snapshot.", json!({
                "type": "object",
                "required": ["object", "readings", "download"],
                "additionalProperties": false,
                "properties": {
                    "object": { "type": "string", "example": "objects/{sha256}" },
                    "readings": { "type": "integer" },
                    "download": { "type": "string", "example": "/snapshots/{id}" },
                },
            })),
        Route::get("/snapshots/{id}", "BoxSnapshot", "A stored snapshot's JSON.")
            .tag("SenseBox")
            .path("id", "The snapshot's object id (64 hex digits).", schemas::hex(64))
            .answers_as(200, "The snapshot.", "application/json", schemas::object()),
    ]
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

    /// The openSenseMap load in progress or started since `observed` (when the caller found
    /// no fresh readings), or a new one: ingest decides, across its replicas.
    async fn load(&self, observed: SystemTime) -> Result<ingest::Run, ApiError> {
        let request = ingest::CreateRunRequest {
            run: Some(ingest::Run {
                source: Source::Opensensemap as i32,
                ..Default::default()
            }),
            min_create_time: Some(observed.into()),
        };
        // Not retried: a call may start a run.
        let created = match self.ingest.clone().create_run(request).await {
            Ok(created) => created.into_inner(),
            // The last load failed moments ago: ingest says which, why, and when to ask again.
            Err(status) if status.code() == tonic::Code::Unavailable && !status.details().is_empty() => {
                let error = ApiError::from(status);
                return Err(ApiError {
                    message: format!("no fresh temperature readings: {}", error.message),
                    ..error
                });
            }
            Err(status) => return Err(status.into()),
        };
        let run = created.run.ok_or_else(|| ApiError::internal("ingest created no run"))?;
        if !created.joined {
            tracing::info!(run = %run.name, "loading opensensemap: no fresh temperature readings");
        }
        Ok(run)
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
    let observed = SystemTime::now();
    if let Some(body) = answer(&state.aggregate().await?) {
        return Ok(Json(body));
    }
    let run = state.load(observed).await?;
    let name = run.name.clone();
    let ended = if is_finished(&run) {
        run
    } else {
        match tokio::time::timeout(LOAD_WAIT, follow(state.ingest.clone(), name.clone())).await {
            Ok(ended) => ended?,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "DEADLINE_EXCEEDED",
                    format!(
                        "no fresh temperature readings yet: the opensensemap load {name} is still running; ask again later"
                    ),
                )
                .with_details(run_detail(&name)));
            }
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
        "no fresh temperature readings: the opensensemap load {name} {how}"
    ))
    .with_details(run_detail(&name)))
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
    let id: String = id.chars().take(64).collect();
    ApiError::not_found(format!("no snapshot {id:?}"))
}

/// `GET /snapshots/{id}`: a stored snapshot's bytes, streamed (see [`crate::download`]).
async fn snapshot(
    State(state): State<SenseBox>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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

    let download = state
        .media
        .clone()
        .download_object(media::DownloadObjectRequest { name })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => no_snapshot(&id),
            _ => ApiError::from(status),
        })?
        .into_inner();
    crate::download::respond(download, &headers).await
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

    #[test]
    fn finished_runs_are_told_apart() {
        let run = |state: RunState| ingest::Run {
            state: state as i32,
            ..Default::default()
        };
        assert!(is_finished(&run(RunState::Failed)) && is_finished(&run(RunState::Succeeded)));
        assert!(!is_finished(&run(RunState::Pending)) && !is_finished(&run(RunState::Running)));
    }
}
