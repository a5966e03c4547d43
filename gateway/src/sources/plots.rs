//! ROV's plot routes: `POST /perseverance/orientation/{yaw|pitch|roll}` and
//! `POST /perseverance/position/{longitude|latitude|map}` with `{"start", "end"}` (sols, as
//! strings or numbers); `POST /jobs` with `{"xkey", "ykey", "type": "way" | "trav", "start",
//! "end", "format"?}`; `GET /jobs/list`, `GET /jobs/{id}`, `GET /jobs/{id}/events` (server-sent
//! events of the job's states) and `GET /download/{jid}` (the plot; 404 for an unknown job, 409
//! with the state for an unfinished one and with the error for a failed one). A created job is
//! answered 202 `{"id", "status", "download"}`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderMap, StatusCode};
use outpost_api::plotting::v1::plotting_service_client::PlottingServiceClient;
use outpost_api::plotting::v1::{self as pb, PlotJobState};
use outpost_kit::client::{Traced, retry};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::rfc3339;
use crate::Upstreams;
use crate::download::{DownloadMessage, Part};
use crate::error::ApiError;
use crate::openapi::{Route, schemas};

/// The rover's track.
const TRACK: &str = "tracks/perseverance";
/// Jobs per page of `/jobs/list` when the query names no size.
const PAGE_SIZE: i32 = 50;

#[derive(Clone)]
struct Plots {
    upstreams: Upstreams,
    plotting: PlottingServiceClient<Traced>,
}

/// The plot routes, for the OpenAPI document.
pub fn openapi() -> Vec<Route> {
    let sol = json!({ "oneOf": [
        { "type": "integer", "minimum": 0, "maximum": 2_147_483_647 },
        { "type": "string", "pattern": "^[0-9]{1,9}$" },
    ] });
    let format = json!({ "type": "string", "enum": ["png", "svg"] });
    let range = json!({
        "type": "object",
        "required": ["start", "end"],
        "additionalProperties": false,
        "properties": { "start": sol.clone(), "end": sol.clone(), "format": format.clone() },
    });
    let fields = json!({
        "type": "object",
        "required": ["xkey", "ykey", "type", "start", "end"],
        "additionalProperties": false,
        "properties": {
            "xkey": { "type": "string", "minLength": 1, "description": "A numeric waypoint or traverse field, such as `sol` or `dist_total`." },
            "ykey": { "type": "string", "minLength": 1, "description": "A numeric waypoint or traverse field, such as `yaw`." },
            "type": { "type": "string", "enum": ["way", "trav"] },
            "start": sol.clone(),
            "end": sol,
            "format": format,
        },
    });
    let created = json!({
        "type": "object",
        "required": ["id", "status", "download"],
        "properties": {
            "id": { "type": "string" },
            "status": { "type": "string" },
            "download": { "type": "string" },
        },
    });
    let id = json!({ "type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$" });
    let inclusive = "Sols `start` to `end`, inclusive (end at least start).";
    vec![
        Route::post(
            "/perseverance/orientation/{field}",
            "PlotOrientation",
            "Plots yaw, pitch or roll against sol.",
        )
        .tag("Plots")
        .description(inclusive)
        .path(
            "field",
            "What to plot.",
            json!({ "type": "string", "enum": ["yaw", "pitch", "roll"] }),
        )
        .body("application/json", range.clone())
        .answers(202, "The job, and where to download its plot.", created.clone()),
        Route::post(
            "/perseverance/position/{field}",
            "PlotPosition",
            "Plots longitude or latitude against sol, or the lat/lon map with the traverse.",
        )
        .tag("Plots")
        .description(inclusive)
        .path(
            "field",
            "What to plot.",
            json!({ "type": "string", "enum": ["longitude", "latitude", "map"] }),
        )
        .body("application/json", range)
        .answers(202, "The job, and where to download its plot.", created.clone()),
        Route::post("/jobs", "PlotFields", "Plots one numeric field against another.")
            .tag("Plots")
            .description(inclusive)
            .body("application/json", fields)
            .answers(202, "The job, and where to download its plot.", created),
        Route::get("/jobs/list", "PlotJobList", "The plot jobs, newest first.")
            .tag("Plots")
            .query(
                "state",
                "Only jobs in this state.",
                json!({ "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"] }),
            )
            .query(
                "page_size",
                "At most this many (default 50).",
                json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
            )
            .query(
                "page_token",
                "A token from a previous answer.",
                json!({ "type": "string" }),
            )
            .answers(200, "A page of jobs.", schemas::object()),
        Route::get("/jobs/{id}", "PlotJobOne", "One plot job.")
            .tag("Plots")
            .path("id", "The job id.", id.clone())
            .answers(200, "The job.", schemas::object()),
        Route::get(
            "/jobs/{id}/events",
            "PlotJobEvents",
            "A job's states as server-sent events, ending with its final state.",
        )
        .tag("Plots")
        .path("id", "The job id.", id.clone())
        .answers_as(
            200,
            "Events `update`, then `end` (or `error`).",
            "text/event-stream",
            schemas::event(),
        ),
        Route::get("/download/{jid}", "PlotDownload", "A finished job's plot.")
            .tag("Plots")
            .path("jid", "The job id.", id)
            .answers_as(
                200,
                "The plot (`image/png` or `image/svg+xml`).",
                "image/png",
                json!({ "type": "string", "format": "binary" }),
            )
            .answers(
                409,
                "The job has not succeeded: its state, or its error.",
                schemas::object(),
            ),
    ]
}

/// The plot routes.
pub fn routes(upstreams: &Upstreams) -> Router {
    let state = Plots {
        upstreams: upstreams.clone(),
        plotting: PlottingServiceClient::new(upstreams.plotting.clone()),
    };
    Router::new()
        .route("/perseverance/orientation/{field}", post(orientation))
        .route("/perseverance/position/{field}", post(position))
        .route("/jobs", post(fields_job))
        .route("/jobs/list", get(list))
        .route("/jobs/{id}", get(one))
        .route("/jobs/{id}/events", get(events))
        .route("/download/{jid}", get(download))
        .with_state(state)
}

impl DownloadMessage for pb::DownloadPlotResponse {
    fn into_part(self) -> Option<Part> {
        use pb::download_plot_response::Part as P;
        match self.part? {
            P::Info(info) => Some(Part::Info {
                content_type: info.content_type,
                size_bytes: info.size_bytes,
                sha256: info.sha256,
            }),
            P::Chunk(bytes) => Some(Part::Chunk(bytes)),
        }
    }
}

/// A job's state as these routes name it.
fn status(state: PlotJobState) -> &'static str {
    match state {
        PlotJobState::Unspecified | PlotJobState::Queued => "queued",
        PlotJobState::Running => "running",
        PlotJobState::Succeeded => "succeeded",
        PlotJobState::Failed => "failed",
        PlotJobState::Cancelled => "cancelled",
    }
}

fn id_of(job: &pb::PlotJob) -> &str {
    job.name.strip_prefix("plotJobs/").unwrap_or(&job.name)
}

/// A job as `/jobs/{id}` and `/jobs/list` answer it.
fn job_json(job: &pb::PlotJob) -> Value {
    let id = id_of(job);
    let spec = job
        .spec
        .as_ref()
        .and_then(|s| crate::sse::proto_json("outpost.plotting.v1.PlotSpec", s).ok());
    json!({
        "id": id,
        "status": status(job.state()),
        "error": (!job.error.is_empty()).then_some(&job.error),
        "attempts": job.attempts,
        "points": job.point_count,
        "format": if job.format() == pb::PlotFormat::Svg { "svg" } else { "png" },
        "width": job.width,
        "height": job.height,
        "spec": spec,
        "created_time": job.create_time.as_ref().and_then(rfc3339),
        "start_time": job.start_time.as_ref().and_then(rfc3339),
        "end_time": job.end_time.as_ref().and_then(rfc3339),
        "download": format!("/download/{id}"),
    })
}

/// The answer to a created job: 202 `{"id", "status", "download"}`.
fn accepted(job: &pb::PlotJob) -> Response {
    let id = id_of(job);
    let body = json!({ "id": id, "status": status(job.state()), "download": format!("/download/{id}") });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// The JSON object of a body; an empty body is an empty object.
fn object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(err) => Err(ApiError::bad_request(format!("the body is not JSON: {err}"))),
    }
}

/// 400 naming the fields of `body` not in `known`.
fn only(body: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    let unknown: Vec<&str> = body.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
    match unknown.as_slice() {
        [] => Ok(()),
        [field, ..] => Err(ApiError::invalid_field(
            field,
            format!(
                "unknown field (known: {}); unknown fields: {}",
                known.join(", "),
                unknown.join(", ")
            ),
        )),
    }
}

/// A sol from `field`: a whole number from 0, as a number or a string.
fn sol(body: &Map<String, Value>, field: &str) -> Result<i32, ApiError> {
    let bad = || ApiError::invalid_field(field, "must be a whole number of sols from 0 (a number or a string)");
    let value = match body.get(field) {
        None | Some(Value::Null) => return Err(ApiError::invalid_field(field, "is required")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.trim().parse::<i64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    i32::try_from(value).ok().filter(|v| *v >= 0).ok_or_else(bad)
}

/// The `start` and `end` sols of a body, `start <= end`.
fn sol_range(body: &Map<String, Value>) -> Result<(i32, i32), ApiError> {
    let (start, end) = (sol(body, "start")?, sol(body, "end")?);
    if start > end {
        return Err(ApiError::invalid_field(
            "end",
            format!("must be at least start ({start}), was {end}"),
        ));
    }
    Ok((start, end))
}

/// The optional `format`: `png` (the default) or `svg`.
fn format(body: &Map<String, Value>) -> Result<pb::PlotFormat, ApiError> {
    match body.get("format") {
        None | Some(Value::Null) => Ok(pb::PlotFormat::Png),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("png") => Ok(pb::PlotFormat::Png),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("svg") => Ok(pb::PlotFormat::Svg),
        Some(_) => Err(ApiError::invalid_field("format", "must be \"png\" or \"svg\"")),
    }
}

impl Plots {
    /// Creates a job (not retried: a call may queue it) and answers 202.
    async fn create(&self, kind: pb::plot_spec::Kind, format: pb::PlotFormat) -> Result<Response, ApiError> {
        let job = pb::PlotJob {
            spec: Some(pb::PlotSpec {
                kind: Some(kind),
                title: String::new(),
            }),
            format: format as i32,
            ..Default::default()
        };
        let deadline = self.upstreams.deadline();
        let created = self
            .plotting
            .clone()
            .create_plot_job(deadline.request(pb::CreatePlotJobRequest { plot_job: Some(job) }))
            .await?
            .into_inner();
        let job = created
            .plot_job
            .ok_or_else(|| ApiError::internal("plotting answered no job"))?;
        Ok(accepted(&job))
    }

    /// A job by the id in a path; unknown (or malformed) is 404.
    async fn get(&self, id: &str) -> Result<pb::PlotJob, ApiError> {
        let deadline = self.upstreams.deadline();
        let name = format!("plotJobs/{id}");
        let answer = retry(deadline, || {
            let mut plotting = self.plotting.clone();
            let request = deadline.request(pb::GetPlotJobRequest { name: name.clone() });
            async move { plotting.get_plot_job(request).await }
        })
        .await;
        match answer {
            Ok(answer) => answer
                .into_inner()
                .plot_job
                .ok_or_else(|| ApiError::internal("plotting answered no job")),
            Err(status)
                if status.code() == tonic::Code::NotFound
                    || (status.code() == tonic::Code::InvalidArgument && status.message().starts_with("name:")) =>
            {
                let id: String = id.chars().take(64).collect();
                Err(ApiError::not_found(format!("no plot job {id:?}")))
            }
            Err(status) => Err(status.into()),
        }
    }
}

/// `POST /perseverance/orientation/{yaw|pitch|roll}`: the field against sol.
async fn orientation(State(state): State<Plots>, Path(field): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    if !matches!(field.as_str(), "yaw" | "pitch" | "roll") {
        return Err(ApiError::not_found(
            "no such plot: orientation plots are yaw, pitch and roll",
        ));
    }
    track_plot(&state, &field, &body).await
}

/// `POST /perseverance/position/{longitude|latitude|map}`: longitude or latitude against sol,
/// or the map.
async fn position(State(state): State<Plots>, Path(field): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    match field.as_str() {
        "longitude" => track_plot(&state, "lon", &body).await,
        "latitude" => track_plot(&state, "lat", &body).await,
        "map" => {
            let body = object(&body)?;
            only(&body, &["start", "end", "format"])?;
            let (start_sol, end_sol) = sol_range(&body)?;
            let kind = pb::plot_spec::Kind::Map(pb::MapPlot {
                track: TRACK.into(),
                start_sol,
                end_sol,
            });
            state.create(kind, format(&body)?).await
        }
        _ => Err(ApiError::not_found(
            "no such plot: position plots are longitude, latitude and map",
        )),
    }
}

async fn track_plot(state: &Plots, y_field: &str, body: &Bytes) -> Result<Response, ApiError> {
    let body = object(body)?;
    only(&body, &["start", "end", "format"])?;
    let (start_sol, end_sol) = sol_range(&body)?;
    let kind = pb::plot_spec::Kind::Track(pb::TrackPlot {
        track: TRACK.into(),
        x_field: "sol".into(),
        y_field: y_field.into(),
        start_sol,
        end_sol,
    });
    state.create(kind, format(&body)?).await
}

/// `POST /jobs`: any two numeric fields of the waypoints (`way`) or the traverse (`trav`).
async fn fields_job(State(state): State<Plots>, body: Bytes) -> Result<Response, ApiError> {
    let body = object(&body)?;
    only(&body, &["xkey", "ykey", "type", "start", "end", "format"])?;
    let key = |field: &str| match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) => Err(ApiError::invalid_field(field, "is required")),
        Some(_) => Err(ApiError::invalid_field(field, "must be a field name")),
    };
    let (x_field, y_field) = (key("xkey")?, key("ykey")?);
    let data = match body.get("type") {
        None | Some(Value::Null) => return Err(ApiError::invalid_field("type", "is required: \"way\" or \"trav\"")),
        Some(Value::String(s)) if s == "way" => pb::TrackData::Waypoints,
        Some(Value::String(s)) if s == "trav" => pb::TrackData::Traverse,
        Some(_) => return Err(ApiError::invalid_field("type", "must be \"way\" or \"trav\"")),
    };
    let (start_sol, end_sol) = sol_range(&body)?;
    let kind = pb::plot_spec::Kind::Fields(pb::FieldsPlot {
        track: TRACK.into(),
        data: data as i32,
        x_field,
        y_field,
        start_sol,
        end_sol,
    });
    // The service names the spec's fields; these routes name the body's.
    state.create(kind, format(&body)?).await.map_err(|err| {
        let renamed = err
            .message
            .replacen("plot_job.spec.fields.x_field", "xkey", 1)
            .replacen("plot_job.spec.fields.y_field", "ykey", 1);
        if renamed == err.message {
            err
        } else {
            let (field, reason) = renamed.split_once(": ").unwrap_or(("", renamed.as_str()));
            ApiError::invalid_field(field, reason)
        }
    })
}

/// The query of `/jobs/list`.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    state: Option<String>,
    page_size: Option<String>,
    page_token: Option<String>,
}

/// `GET /jobs/list`: jobs newest first, `?state=` one state, pages by `page_token`.
async fn list(State(state): State<Plots>, Query(query): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let filter = match query.state.as_deref() {
        None | Some("") => PlotJobState::Unspecified,
        Some("queued") => PlotJobState::Queued,
        Some("running") => PlotJobState::Running,
        Some("succeeded") => PlotJobState::Succeeded,
        Some("failed") => PlotJobState::Failed,
        Some("cancelled") => PlotJobState::Cancelled,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "state",
                "must be queued, running, succeeded, failed or cancelled",
            ));
        }
    };
    let page_size = match query.page_size.as_deref() {
        None | Some("") => PAGE_SIZE,
        Some(text) => text
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid_field("page_size", "must be a whole number from 1 to 1000"))?,
    };
    let request = pb::ListPlotJobsRequest {
        page_size,
        page_token: query.page_token.unwrap_or_default(),
        state: filter as i32,
    };
    let deadline = state.upstreams.deadline();
    let page = retry(deadline, || {
        let mut plotting = state.plotting.clone();
        let request = deadline.request(request.clone());
        async move { plotting.list_plot_jobs(request).await }
    })
    .await?
    .into_inner();
    Ok(Json(json!({
        "jobs": page.plot_jobs.iter().map(job_json).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })))
}

/// `GET /jobs/{id}`.
async fn one(State(state): State<Plots>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&state.get(&id).await?)))
}

/// `GET /jobs/{id}/events`: the job now, then each change (`update`), until it ends (`end`).
async fn events(State(state): State<Plots>, Path(id): Path<String>) -> Result<Response, ApiError> {
    // An unknown job is a 404, not an event stream.
    let job = state.get(&id).await?;
    let stream = state
        .plotting
        .clone()
        .watch_plot_job(pb::WatchPlotJobRequest { name: job.name })
        .await?
        .into_inner()
        .map(|message| message.map(|m| m.plot_job.unwrap_or_default()));
    let ended = |job: &pb::PlotJob| {
        matches!(
            job.state(),
            PlotJobState::Succeeded | PlotJobState::Failed | PlotJobState::Cancelled
        )
    };
    Ok(crate::sse::respond(stream, |job| Ok(job_json(job)), ended))
}

/// `GET /download/{jid}`: the plot of a succeeded job.
async fn download(
    State(state): State<Plots>,
    Path(jid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = state.get(&jid).await?;
    let id = id_of(&job).to_string();
    match job.state() {
        PlotJobState::Succeeded => {}
        PlotJobState::Failed => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "FAILED_PRECONDITION",
                format!("plot job {id} failed: {}", job.error),
            )
            .with_details(json!([{ "status": "failed", "error": job.error }])));
        }
        other => {
            let status = status(other);
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "FAILED_PRECONDITION",
                format!("plot job {id} is {status}: its plot is not ready"),
            )
            .with_details(json!([{ "status": status }])));
        }
    }
    let stream = state
        .plotting
        .clone()
        .download_plot(
            state
                .upstreams
                .deadline()
                .request(pb::DownloadPlotRequest { name: job.name }),
        )
        .await?
        .into_inner();
    crate::download::respond(stream, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn sols_are_numbers_or_strings_and_ordered() {
        assert_eq!(sol_range(&body(json!({"start": "0", "end": "400"}))).unwrap(), (0, 400));
        assert_eq!(sol_range(&body(json!({"start": 5, "end": 5}))).unwrap(), (5, 5));
        let err = sol_range(&body(json!({"start": "10", "end": 2}))).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (StatusCode::BAD_REQUEST, "end: must be at least start (10), was 2")
        );
        for bad in [
            json!({"start": "x", "end": 1}),
            json!({"start": 1.5, "end": 2}),
            json!({"start": -1, "end": 2}),
        ] {
            assert!(sol_range(&body(bad)).unwrap_err().message.starts_with("start:"));
        }
        assert!(
            sol_range(&body(json!({"start": 1})))
                .unwrap_err()
                .message
                .starts_with("end: is required")
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = only(&body(json!({"xkey": "sol", "colour": 1})), &["xkey", "ykey"]).unwrap_err();
        assert!(err.message.starts_with("colour: unknown field"), "{}", err.message);
        assert!(only(&body(json!({"xkey": "sol"})), &["xkey"]).is_ok());
    }
}
