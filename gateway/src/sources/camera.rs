//! CAM, the burrow camera's "process server": `GET /lazyload` (a day's frames, loaded from the
//! camera feed by an ingest run the first time the day is asked for), `GET /process` (the
//! loads), and `GET /runs/{id}/events` (a run's progress as server-sent events).
//!
//! Ingest decides what a day is (`OUTPOST_CAMERA_TIMEZONE`), refuses future dates, and joins
//! concurrent requests for one day into one run across its replicas; a day whose load
//! succeeded is answered by that run. The day's frames are media's images of source
//! `camera` within the run's `start_time` and `end_time` parameters.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as ingest, RunState, Source};
use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::media::v1::{self as media};
use outpost_kit::client::{Traced, retry};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{rfc3339, run_detail};
use crate::Upstreams;
use crate::error::ApiError;
use crate::openapi::{Route, schemas};

/// How long `/lazyload?wait=true` waits for a load, at most.
pub const LOAD_WAIT: Duration = Duration::from_secs(60);
/// The media source of camera frames (ingest stores them so).
const SOURCE: &str = "camera";
/// Images counted per call.
const PAGE: i32 = 1000;

#[derive(Clone)]
struct Camera {
    upstreams: Upstreams,
    ingest: IngestServiceClient<Traced>,
    media: MediaServiceClient<Traced>,
}

/// The camera routes, for the OpenAPI document.
pub fn openapi() -> Vec<Route> {
    let object = schemas::object();
    let date = json!({
        "type": "string",
        "description": "`MM-DD-YYYY` or `YYYY-MM-DD`; default today in the camera's time zone.",
        "pattern": "^(20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])-20[0-9]{2})$",
    });
    let flag = json!({ "type": "string", "enum": ["true", "false"] });
    vec![
        Route::get(
            "/lazyload",
            "CameraLazyload",
            "A camera day: its frames by detection probability once loaded.",
        )
        .tag("Camera")
        .description("Starts or joins the day's load when it is not loaded: 202 with the run and where to watch it.")
        .query("date", "The day.", date)
        .query("wait", "Wait for the load (a bounded time).", flag.clone())
        .query("refresh", "Load a loaded day again.", flag)
        .answers(200, "The loaded day.", object.clone())
        .answers(202, "The load runs.", object.clone()),
        Route::get("/process", "CameraProcess", "The camera day loads, newest first.")
            .tag("Camera")
            .query(
                "page_size",
                "Loads per page.",
                json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
            )
            .query(
                "page_token",
                "A `next_page_token` of the previous page.",
                json!({ "type": "string" }),
            )
            .answers(200, "A page of loads.", object),
        Route::get(
            "/runs/{id}/events",
            "RunEvents",
            "A run's progress as server-sent events, ending with its final state.",
        )
        .tag("Camera")
        .path(
            "id",
            "The run id.",
            json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" }),
        )
        .answers_as(200, "The events.", "text/event-stream", schemas::event()),
    ]
}

/// The camera routes.
pub fn routes(upstreams: &Upstreams) -> Router {
    let state = Camera {
        upstreams: upstreams.clone(),
        ingest: IngestServiceClient::new(upstreams.ingest.clone()),
        media: MediaServiceClient::new(upstreams.media.clone()),
    };
    Router::new()
        .route("/lazyload", get(lazyload))
        .route("/process", get(process))
        .route("/runs/{id}/events", get(events))
        .with_state(state)
}

#[derive(Debug, Default, Deserialize)]
struct LazyQuery {
    date: Option<String>,
    wait: Option<String>,
    refresh: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    page_size: Option<String>,
    page_token: Option<String>,
}

fn flag(field: &str, text: Option<&str>) -> Result<bool, ApiError> {
    match text {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::invalid_field(
            field,
            format!("{other:?} is not true or false"),
        )),
    }
}

fn run_json(run: &ingest::Run) -> Result<Value, ApiError> {
    crate::sse::proto_json("outpost.ingest.v1.Run", run)
}

fn run_id(run: &ingest::Run) -> &str {
    run.name.strip_prefix("runs/").unwrap_or(&run.name)
}

fn is_finished(run: &ingest::Run) -> bool {
    matches!(
        run.state(),
        RunState::Succeeded | RunState::Failed | RunState::Cancelled
    )
}

impl Camera {
    /// The day's load: the running one, the one that succeeded, or a new one.
    async fn load(&self, date: Option<String>, refresh: bool) -> Result<ingest::Run, ApiError> {
        let mut parameters = std::collections::HashMap::new();
        if let Some(date) = date.filter(|d| !d.is_empty()) {
            parameters.insert("date".to_string(), date);
        }
        if refresh {
            parameters.insert("refresh".to_string(), "true".to_string());
        }
        let request = ingest::CreateRunRequest {
            run: Some(ingest::Run {
                source: Source::CameraDay as i32,
                parameters,
                ..Default::default()
            }),
            min_create_time: None,
        };
        // Not retried: a call may start a run.
        let created = self
            .ingest
            .clone()
            .create_run(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument => {
                    let error = ApiError::from(status);
                    let message = error.message.replacen("run.parameters.", "", 1);
                    ApiError { message, ..error }
                }
                _ => ApiError::from(status),
            })?
            .into_inner();
        created.run.ok_or_else(|| ApiError::internal("ingest created no run"))
    }

    /// The day of a succeeded run: its frame count, best frame and run.
    async fn day(&self, run: &ingest::Run) -> Result<Value, ApiError> {
        let parameter = |name: &str| run.parameters.get(name).cloned().unwrap_or_default();
        let time = |name: &str| -> Result<prost_types::Timestamp, ApiError> {
            let text = parameter(name);
            let micros = outpost_kit::time::parse_utc(&text)
                .ok_or_else(|| ApiError::internal(format!("the run's {name} {text:?} is not a time")))?;
            Ok(outpost_kit::time::to_timestamp(micros))
        };
        let (start, end) = (time("start_time")?, time("end_time")?);
        let mut count = 0usize;
        let mut best = None;
        let mut page_token = String::new();
        loop {
            let request = media::ListImagesRequest {
                page_size: PAGE,
                page_token: page_token.clone(),
                source: SOURCE.into(),
                start_time: Some(start),
                end_time: Some(end),
                order_by: "probability desc".into(),
                ..Default::default()
            };
            let deadline = self.upstreams.deadline();
            let page = retry(deadline, || {
                let mut media = self.media.clone();
                let request = deadline.request(request.clone());
                async move { media.list_images(request).await }
            })
            .await?
            .into_inner();
            count += page.images.len();
            if best.is_none() {
                best = page.images.first().map(best_json);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let (start, end) = (parameter("start_time"), parameter("end_time"));
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("source", SOURCE)
            .append_pair("startTime", &start)
            .append_pair("endTime", &end)
            .append_pair("orderBy", "probability desc")
            .finish();
        Ok(json!({
            "date": parameter("date"),
            "images": count,
            "best": best,
            "list": format!("/api/v1/images?{query}"),
            "run": run_json(run)?,
        }))
    }
}

/// The best frame as the source system showed it.
fn best_json(image: &media::Image) -> Value {
    let id = image.name.strip_prefix("images/").unwrap_or(&image.name);
    json!({
        "id": id,
        "taken_time": image.taken_time.as_ref().and_then(rfc3339),
        "probability": image.detection.as_ref().map_or(0.0, |d| d.probability),
        "url": format!("/images/{id}"),
        "thumbnail_url": format!("/images/{id}/thumbnail"),
    })
}

/// 202: the load runs; where to watch it.
fn accepted(run: &ingest::Run) -> Result<Response, ApiError> {
    let id = run_id(run);
    let body = json!({
        "date": run.parameters.get("date"),
        "run": run_json(run)?,
        "events": format!("/runs/{id}/events"),
        "status": format!("/api/v1/runs/{id}"),
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Follows a run until it ends.
async fn follow(mut ingest: IngestServiceClient<Traced>, name: String) -> Result<ingest::Run, ApiError> {
    let mut changes = ingest
        .watch_run(ingest::WatchRunRequest { name: name.clone() })
        .await?
        .into_inner();
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

/// `GET /lazyload?date=MM-DD-YYYY` (or `YYYY-MM-DD`; default today in the camera's time zone),
/// `wait=true` to wait for a load (at most [`LOAD_WAIT`]), `refresh=true` to load a loaded day
/// again: 200 with the day when it is loaded, 202 with the run while it loads.
async fn lazyload(State(state): State<Camera>, Query(query): Query<LazyQuery>) -> Result<Response, ApiError> {
    let wait = flag("wait", query.wait.as_deref())?;
    let refresh = flag("refresh", query.refresh.as_deref())?;
    let mut run = state.load(query.date, refresh).await?;
    if !is_finished(&run) {
        if !wait {
            return accepted(&run);
        }
        match tokio::time::timeout(LOAD_WAIT, follow(state.ingest.clone(), run.name.clone())).await {
            Ok(ended) => run = ended?,
            Err(_) => return accepted(&run),
        }
    }
    match run.state() {
        RunState::Succeeded => Ok(Json(state.day(&run).await?).into_response()),
        RunState::Cancelled => Err(
            ApiError::unavailable(format!("the camera day load {} was cancelled", run.name))
                .with_details(run_detail(&run.name)),
        ),
        _ => Err(
            ApiError::unavailable(format!("the camera day load {} failed: {}", run.name, run.failure))
                .with_details(run_detail(&run.name)),
        ),
    }
}

/// `GET /process?page_size=&page_token=`: the camera day loads, newest first, with the source
/// system's columns beside the run.
async fn process(State(state): State<Camera>, Query(query): Query<PageQuery>) -> Result<Json<Value>, ApiError> {
    let page_size = match query.page_size.as_deref() {
        None | Some("") => 50,
        Some(text) => match text.parse::<i32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_field(
                    "page_size",
                    "must be a whole number from 1 to 1000",
                ));
            }
        },
    };
    let request = ingest::ListRunsRequest {
        page_size,
        page_token: query.page_token.unwrap_or_default(),
        source: Source::CameraDay as i32,
        state: 0,
    };
    let deadline = state.upstreams.deadline();
    let page = retry(deadline, || {
        let mut ingest = state.ingest.clone();
        let request = deadline.request(request.clone());
        async move { ingest.list_runs(request).await }
    })
    .await?
    .into_inner();
    let processes = page.runs.iter().map(process_json).collect::<Result<Vec<_>, _>>()?;
    let next = Some(page.next_page_token).filter(|t| !t.is_empty());
    Ok(Json(json!({ "processes": processes, "next_page_token": next })))
}

/// A load as the process server listed it, with the run beside.
fn process_json(run: &ingest::Run) -> Result<Value, ApiError> {
    let progress = run.progress.unwrap_or_default();
    let status = match run.state() {
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
        RunState::Unspecified => "unspecified",
    };
    Ok(json!({
        "process_name": "lazyload",
        "status": status,
        "table_name": "hole_camera",
        "data_time": run.parameters.get("date"),
        "data_length": progress.total,
        "processed_rows": progress.done,
        "events": format!("/runs/{}/events", run_id(run)),
        "run": run_json(run)?,
    }))
}

/// `GET /runs/{id}/events`: the run's progress as server-sent events, ending with its final state.
async fn events(State(state): State<Camera>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let request = ingest::WatchRunRequest {
        name: format!("runs/{id}"),
    };
    let stream = state.ingest.clone().watch_run(request).await?.into_inner();
    let runs = futures::StreamExt::filter_map(stream, |change| async move {
        match change {
            Ok(change) => change.run.map(Ok),
            Err(status) => Some(Err(status)),
        }
    });
    Ok(crate::sse::respond(runs, run_json, is_finished))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_name_the_bad_field() {
        assert!(flag("wait", Some("true")).unwrap());
        assert!(!flag("wait", None).unwrap());
        let err = flag("wait", Some("soon")).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.starts_with("wait: "), "{}", err.message);
    }

    #[test]
    fn a_load_keeps_the_process_servers_columns() {
        let run = ingest::Run {
            name: "runs/abc".into(),
            state: RunState::Running as i32,
            parameters: [("date".to_string(), "2025-02-05".to_string())].into(),
            progress: Some(ingest::Progress { done: 7, total: 1440 }),
            ..Default::default()
        };
        let body = process_json(&run).unwrap();
        assert_eq!(
            (
                &body["status"],
                &body["data_time"],
                &body["data_length"],
                &body["processed_rows"]
            ),
            (&json!("running"), &json!("2025-02-05"), &json!(1440), &json!(7))
        );
        assert_eq!(body["run"]["name"], "runs/abc");
        assert_eq!(body["events"], "/runs/abc/events");
    }
}
