//! ROV, the Perseverance rover tracker: `GET /help`, `POST /load`, `GET /perseverance`,
//! `GET /perseverance/sol`, `GET /perseverance/orientation`, `GET /perseverance/position`
//! (the plot routes are in the plotting routes). Waypoints come from telemetry's track
//! `tracks/perseverance`, loaded by ingest's MMGIS runs; answers keep the tracker's shapes
//! (GeoJSON features with `properties`; `{"sol", "yaw_rad", "pitch", "roll"}` rows), and
//! before any load every read answers 409 saying to `POST /load`.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as ingest, Source};
use outpost_api::telemetry::v1::telemetry_service_client::TelemetryServiceClient;
use outpost_api::telemetry::v1::{self as pb};
use outpost_kit::client::{Traced, retry};
use outpost_kit::json::{from_struct, from_value, number};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Map, Value, json};

use crate::Upstreams;
use crate::error::ApiError;
use crate::openapi::{Route, schemas};

/// The track the tracker's routes read and load.
pub const TRACK: &str = "perseverance";
/// Waypoints `/perseverance` answers when no `limit` is given.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` of `/perseverance`.
const MAX_LIMIT: usize = 1000;
/// Waypoints read from telemetry per call.
const PAGE: i32 = 10_000;
/// Bytes per UploadSource chunk.
const CHUNK: usize = 1 << 20;

/// The tracker's routes, with what each does: `GET /help` answers this table.
pub const ROUTES: [(&str, &str, &str); 17] = [
    (
        "GET",
        "/help",
        "this table, as text (or JSON with Accept: application/json)",
    ),
    (
        "POST",
        "/load",
        "load the waypoints and traverse from NASA MMGIS (or the GeoJSON body: ?source=waypoints|traverse); 202 with the run",
    ),
    (
        "GET",
        "/perseverance?start=N&limit=M",
        "waypoint features from index N (limit 100 by default, at most 1000)",
    ),
    ("GET", "/perseverance/sol", "the latest sol with a waypoint"),
    (
        "GET",
        "/perseverance/orientation",
        "[{sol, yaw_rad, pitch, roll}] of every waypoint",
    ),
    ("GET", "/perseverance/position", "[{sol, lon, lat}] of every waypoint"),
    (
        "POST",
        "/perseverance/orientation/yaw",
        "plot yaw against sol over {\"start\", \"end\"} sols; 202 with the job",
    ),
    (
        "POST",
        "/perseverance/orientation/pitch",
        "plot pitch against sol over {\"start\", \"end\"} sols",
    ),
    (
        "POST",
        "/perseverance/orientation/roll",
        "plot roll against sol over {\"start\", \"end\"} sols",
    ),
    (
        "POST",
        "/perseverance/position/longitude",
        "plot longitude against sol over {\"start\", \"end\"} sols",
    ),
    (
        "POST",
        "/perseverance/position/latitude",
        "plot latitude against sol over {\"start\", \"end\"} sols",
    ),
    (
        "POST",
        "/perseverance/position/map",
        "plot the lat/lon map with the traverse over {\"start\", \"end\"} sols",
    ),
    (
        "POST",
        "/jobs",
        "plot {\"xkey\", \"ykey\", \"type\": \"way\"|\"trav\", \"start\", \"end\", \"format\"}; 202 with the job",
    ),
    ("GET", "/jobs/list", "plot jobs, newest first"),
    ("GET", "/jobs/{id}", "one plot job"),
    ("GET", "/jobs/{id}/events", "a plot job's states as server-sent events"),
    (
        "GET",
        "/download/{jid}",
        "a finished job's plot (PNG or SVG); 409 while unfinished or failed",
    ),
];

#[derive(Clone)]
struct Rover {
    upstreams: Upstreams,
    telemetry: TelemetryServiceClient<Traced>,
    ingest: IngestServiceClient<Traced>,
}

/// The tracker's routes, for the OpenAPI document.
pub fn openapi() -> Vec<Route> {
    let whole = json!({ "type": "integer", "minimum": 0, "maximum": 1_000_000 });
    vec![
        Route::get(
            "/help",
            "RoverHelp",
            "The tracker's routes, as text (JSON with `Accept: application/json`).",
        )
        .tag("Rover")
        .answers_as(200, "The routes.", "text/plain", json!({ "type": "string" })),
        Route::post(
            "/load",
            "RoverLoad",
            "Loads the waypoints and the traverse from NASA MMGIS, or the GeoJSON body.",
        )
        .tag("Rover")
        .description("`?source=waypoints|traverse` says what a GeoJSON body holds (only with a body).")
        .answers(202, "The loads run.", schemas::object()),
        Route::get(
            "/perseverance",
            "RoverWaypoints",
            "Waypoint features from index `start`, at most `limit`.",
        )
        .tag("Rover")
        .query("start", "The first index (default 0).", whole.clone())
        .query(
            "limit",
            "At most this many (default 100, at most 1000).",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
        )
        .answers(200, "A GeoJSON FeatureCollection.", schemas::object()),
        Route::get("/perseverance/sol", "RoverSol", "The latest sol with a waypoint.")
            .tag("Rover")
            .answers(200, "`{\"sol\", \"message\"}`.", schemas::object()),
        Route::get(
            "/perseverance/orientation",
            "RoverOrientation",
            "Yaw, pitch and roll by sol.",
        )
        .tag("Rover")
        .answers(
            200,
            "`[{\"sol\", \"yaw_rad\", \"pitch\", \"roll\"}]`.",
            json!({ "type": "array", "items": schemas::object() }),
        ),
        Route::get(
            "/perseverance/position",
            "RoverPosition",
            "Longitude and latitude by sol.",
        )
        .tag("Rover")
        .answers(
            200,
            "`[{\"sol\", \"lon\", \"lat\"}]`.",
            json!({ "type": "array", "items": schemas::object() }),
        ),
    ]
}

/// The tracker's routes.
pub fn routes(upstreams: &Upstreams) -> Router {
    let state = Rover {
        upstreams: upstreams.clone(),
        telemetry: TelemetryServiceClient::new(upstreams.telemetry.clone()),
        ingest: IngestServiceClient::new(upstreams.ingest.clone()),
    };
    Router::new()
        .route("/help", get(help))
        .route("/load", post(load))
        .route("/perseverance", get(waypoints))
        .route("/perseverance/sol", get(sol))
        .route("/perseverance/orientation", get(orientation))
        .route("/perseverance/position", get(position))
        .with_state(state)
}

/// 409 before any load.
fn not_loaded() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "FAILED_PRECONDITION",
        "no rover waypoints are loaded yet: POST /load first",
    )
}

impl Rover {
    /// The track's summary; 409 when it has no waypoints.
    async fn summary(&self) -> Result<pb::GetTrackSummaryResponse, ApiError> {
        let request = pb::GetTrackSummaryRequest {
            name: format!("tracks/{TRACK}"),
        };
        let deadline = self.upstreams.deadline();
        let summary = retry(deadline, || {
            let mut telemetry = self.telemetry.clone();
            let request = deadline.request(request.clone());
            async move { telemetry.get_track_summary(request).await }
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => not_loaded(),
            _ => ApiError::from(status),
        })?
        .into_inner();
        if summary.track.as_ref().is_none_or(|t| t.waypoint_count == 0) {
            return Err(not_loaded());
        }
        Ok(summary)
    }

    /// Up to `count` waypoints by sol, site and drive (all when `None`); 409 before any load.
    async fn waypoints(&self, count: Option<usize>) -> Result<Vec<pb::Waypoint>, ApiError> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let want = count.map_or(PAGE, |c| (c - all.len()).clamp(1, PAGE as usize) as i32);
            let request = pb::ListWaypointsRequest {
                parent: format!("tracks/{TRACK}"),
                page_size: want,
                page_token: page_token.clone(),
                min_sol: None,
                max_sol: None,
            };
            let deadline = self.upstreams.deadline();
            let page = retry(deadline, || {
                let mut telemetry = self.telemetry.clone();
                let request = deadline.request(request.clone());
                async move { telemetry.list_waypoints(request).await }
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => not_loaded(),
                _ => ApiError::from(status),
            })?
            .into_inner();
            all.extend(page.waypoints);
            if page.next_page_token.is_empty() || count.is_some_and(|c| all.len() >= c) {
                break;
            }
            page_token = page.next_page_token;
        }
        if all.is_empty() && page_token.is_empty() {
            // An empty track (a traverse without waypoints) is not loaded either.
            self.summary().await?;
        }
        Ok(all)
    }
}

/// `GET /help`: the route table, as text, or as JSON for `Accept: application/json`.
async fn help(headers: HeaderMap) -> Response {
    let wants_json = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        let routes: Vec<Value> = ROUTES
            .iter()
            .map(|(method, path, description)| json!({"method": method, "path": path, "description": description}))
            .collect();
        return Json(json!({ "routes": routes })).into_response();
    }
    let width = ROUTES.iter().map(|(_, path, _)| path.len()).max().unwrap_or(0);
    let mut text = String::from("Perseverance rover tracker\n\n");
    for (method, path, description) in ROUTES {
        text.push_str(&format!("{method:<5}{path:<width$}  {description}\n"));
    }
    (
        [(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))],
        text,
    )
        .into_response()
}

/// The descriptors of the services, decoded once.
fn pool() -> Result<&'static DescriptorPool, ApiError> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| crate::descriptor_pool().ok())
        .as_ref()
        .ok_or_else(|| ApiError::internal("the services' descriptors do not decode"))
}

/// A run as `/api/v1/runs/{run}` answers it (proto3 JSON).
fn run_json(run: &ingest::Run) -> Result<Value, ApiError> {
    let descriptor = pool()?
        .get_message_by_name("outpost.ingest.v1.Run")
        .ok_or_else(|| ApiError::internal("no descriptor of outpost.ingest.v1.Run"))?;
    let message = DynamicMessage::decode(descriptor, run.encode_to_vec().as_slice())
        .map_err(|e| ApiError::internal(format!("re-reading a run: {e}")))?;
    message
        .serialize_with_options(
            serde_json::value::Serializer,
            &SerializeOptions::new().skip_default_fields(false),
        )
        .map_err(|e| ApiError::internal(format!("encoding a run: {e}")))
}

/// Which layer a loaded file is: `?source=`, else the first geometry type named in it.
fn layer_of(query: &HashMap<String, String>, body: &[u8]) -> Result<Source, ApiError> {
    match query.get("source").map(String::as_str) {
        Some("waypoints") => return Ok(Source::MmgisWaypoints),
        Some("traverse") => return Ok(Source::MmgisTraverse),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "source",
                format!("{other:?} is not waypoints or traverse"),
            ));
        }
        None => {}
    }
    let find = |needle: &[u8]| body.windows(needle.len()).position(|w| w == needle);
    match (find(b"\"LineString\""), find(b"\"Point\"")) {
        (Some(line), point) if point.is_none_or(|p| line < p) => Ok(Source::MmgisTraverse),
        _ => Ok(Source::MmgisWaypoints),
    }
}

/// `POST /load`: without a body, loads the waypoints and the traverse from NASA MMGIS; with a
/// GeoJSON body, loads that file. 202 `{"run", "runs"}` (`run` is the waypoints' run, or the
/// file's).
async fn load(
    State(state): State<Rover>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let runs = if body.iter().all(u8::is_ascii_whitespace) {
        if let Some(key) = query.keys().next() {
            return Err(ApiError::invalid_field(key, "is only taken with a GeoJSON body"));
        }
        let mut runs = Vec::new();
        for source in [Source::MmgisWaypoints, Source::MmgisTraverse] {
            let request = ingest::CreateRunRequest {
                run: Some(ingest::Run {
                    source: source as i32,
                    ..Default::default()
                }),
                min_create_time: None,
            };
            // Not retried: a call may start a run (a repeated one joins it anyway).
            let created = state.ingest.clone().create_run(request).await?.into_inner();
            runs.push(created.run.ok_or_else(|| ApiError::internal("ingest created no run"))?);
        }
        runs
    } else {
        let source = layer_of(&query, &body)?;
        if let Some(key) = query.keys().find(|k| *k != "source") {
            return Err(ApiError::invalid_field(
                key,
                "is not a parameter of /load (only source)",
            ));
        }
        let metadata = ingest::UploadSourceRequest {
            part: Some(ingest::upload_source_request::Part::Metadata(
                ingest::UploadSourceMetadata {
                    source: source as i32,
                    parameters: HashMap::new(),
                    filename: "load.json".into(),
                },
            )),
        };
        let chunks: Vec<ingest::UploadSourceRequest> = std::iter::once(metadata)
            .chain(body.chunks(CHUNK).map(|chunk| ingest::UploadSourceRequest {
                part: Some(ingest::upload_source_request::Part::Chunk(Bytes::copy_from_slice(
                    chunk,
                ))),
            }))
            .collect();
        let uploaded = state
            .ingest
            .clone()
            .upload_source(futures::stream::iter(chunks))
            .await
            .map_err(|status| {
                let error = ApiError::from(status);
                ApiError {
                    message: format!("the GeoJSON body: {}", error.message),
                    ..error
                }
            })?
            .into_inner();
        vec![
            uploaded
                .run
                .ok_or_else(|| ApiError::internal("ingest created no run"))?,
        ]
    };
    let runs = runs.iter().map(run_json).collect::<Result<Vec<_>, _>>()?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run": runs[0], "runs": runs }))))
}

/// A waypoint as the tracker answered it: a GeoJSON Point feature with every property.
fn feature(w: &pb::Waypoint) -> Value {
    let position = w.position.unwrap_or_default();
    let orientation = w.orientation.unwrap_or_default();
    let mut properties = Map::new();
    let mut put = |key: &str, value: Value| {
        properties.insert(key.to_string(), value);
    };
    put("RMC", json!(w.rmc));
    put("site", json!(w.site));
    put("drive", json!(w.drive));
    put("sol", json!(w.sol));
    put("easting", number(position.easting));
    put("northing", number(position.northing));
    put("elev_geoid", number(position.elevation_m));
    put("elev_radii", number(position.elevation_radii_m));
    put("radius", number(position.radius_m));
    put("lon", number(position.longitude));
    put("lat", number(position.latitude));
    put("roll", number(orientation.roll));
    put("pitch", number(orientation.pitch));
    put("yaw", number(orientation.yaw));
    put("yaw_rad", number(orientation.yaw_rad));
    put("tilt", number(orientation.tilt));
    put("dist_m", number(w.dist_m));
    put("dist_total_m", number(w.dist_total_m));
    put("dist_km", number(w.dist_km));
    put("dist_mi", number(w.dist_mi));
    if let Some(sclk) = w.sclk_start {
        put("SCLK_START", json!(sclk));
    }
    if let Some(sclk) = w.sclk_end {
        put("SCLK_END", json!(sclk));
    }
    put("final", json!(w.r#final));
    put("Note", json!(w.note));
    if let Some(images) = &w.images {
        put("images", from_value(images.clone()));
    }
    if let Some(extra) = &w.extra {
        for (key, value) in from_struct(extra.clone()) {
            properties.entry(key).or_insert(value);
        }
    }
    json!({
        "type": "Feature",
        "properties": properties,
        "geometry": {
            "type": "Point",
            "coordinates": [number(position.longitude), number(position.latitude), number(position.elevation_m)],
        },
    })
}

/// A whole number of 0 or more from the query, or the default.
fn query_count(query: &HashMap<String, String>, key: &str, default: usize) -> Result<usize, ApiError> {
    match query.get(key) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_field(key, format!("{text:?} is not a whole number of 0 or more"))),
    }
}

/// `GET /perseverance?start=N&limit=M`: a FeatureCollection of the waypoints from index N
/// (by sol, site and drive), at most M, with `start`, `limit`, `total` and the `next` page.
async fn waypoints(
    State(state): State<Rover>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(key) = query.keys().find(|k| !matches!(k.as_str(), "start" | "limit")) {
        return Err(ApiError::invalid_field(key, "is not a parameter (start, limit)"));
    }
    let start = query_count(&query, "start", 0)?;
    let limit = query_count(&query, "limit", DEFAULT_LIMIT)?;
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let total = state.summary().await?.track.map_or(0, |t| t.waypoint_count) as usize;
    let end = start.saturating_add(limit).min(total);
    let features: Vec<Value> = if start >= total {
        Vec::new()
    } else {
        state
            .waypoints(Some(end))
            .await?
            .iter()
            .skip(start)
            .map(feature)
            .collect()
    };
    let next = (end < total).then(|| format!("/perseverance?start={end}&limit={limit}"));
    Ok(Json(json!({
        "type": "FeatureCollection",
        "features": features,
        "start": start,
        "limit": limit,
        "total": total,
        "next": next,
    })))
}

/// `GET /perseverance/sol`: `{"sol", "message"}` of the latest waypoint.
async fn sol(State(state): State<Rover>) -> Result<Json<Value>, ApiError> {
    let latest = state.summary().await?.track.map_or(0, |t| t.latest_sol);
    Ok(Json(json!({
        "sol": latest,
        "message": format!("Most recent data waypoint is at Sol-{latest}"),
    })))
}

/// `GET /perseverance/orientation`: `[{"sol", "yaw_rad", "pitch", "roll"}]`.
async fn orientation(State(state): State<Rover>) -> Result<Json<Value>, ApiError> {
    let rows = state
        .waypoints(None)
        .await?
        .iter()
        .map(|w| {
            let o = w.orientation.unwrap_or_default();
            json!({"sol": w.sol, "yaw_rad": number(o.yaw_rad), "pitch": number(o.pitch), "roll": number(o.roll)})
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// `GET /perseverance/position`: `[{"sol", "lon", "lat"}]`.
async fn position(State(state): State<Rover>) -> Result<Json<Value>, ApiError> {
    let rows = state
        .waypoints(None)
        .await?
        .iter()
        .map(|w| {
            let p = w.position.unwrap_or_default();
            json!({"sol": w.sol, "lon": number(p.longitude), "lat": number(p.latitude)})
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waypoint_answers_the_trackers_feature() {
        let w = pb::Waypoint {
            name: "tracks/perseverance/waypoints/3_110".into(),
            sol: 14,
            site: 3,
            drive: 110,
            rmc: "3_110".into(),
            position: Some(pb::Position {
                longitude: 77.45094676,
                latitude: 18.44454339,
                elevation_m: -2569.86,
                ..Default::default()
            }),
            orientation: Some(pb::Orientation {
                yaw_rad: -0.2638,
                ..Default::default()
            }),
            dist_total_m: 6.255,
            sclk_start: Some(668_099_149),
            extra: Some(outpost_kit::json::to_struct(
                json!({"custom": "kept"}).as_object().cloned().unwrap(),
            )),
            ..Default::default()
        };
        let f = feature(&w);
        assert_eq!(
            f["geometry"]["coordinates"],
            json!([77.45094676, 18.44454339, -2569.86])
        );
        let p = &f["properties"];
        assert_eq!(
            (p["RMC"].clone(), p["sol"].clone(), p["drive"].clone()),
            (json!("3_110"), json!(14), json!(110))
        );
        assert_eq!(p["yaw_rad"], json!(-0.2638));
        assert_eq!(p["SCLK_START"], json!(668_099_149));
        assert_eq!(p["custom"], json!("kept"));
        assert!(p.get("SCLK_END").is_none());
    }

    #[test]
    fn a_loaded_file_is_told_by_its_geometry_or_the_query() {
        let none = HashMap::new();
        let line = br#"{"features": [{"geometry": {"type": "LineString"}}]}"#;
        let point = br#"{"features": [{"geometry": {"type": "Point"}}]}"#;
        assert_eq!(layer_of(&none, line).unwrap(), Source::MmgisTraverse);
        assert_eq!(layer_of(&none, point).unwrap(), Source::MmgisWaypoints);
        let query = HashMap::from([("source".to_string(), "traverse".to_string())]);
        assert_eq!(layer_of(&query, point).unwrap(), Source::MmgisTraverse);
        let query = HashMap::from([("source".to_string(), "x".to_string())]);
        assert!(layer_of(&query, point).unwrap_err().message.starts_with("source:"));
        assert!(ROUTES.iter().any(|(m, p, _)| *m == "GET" && *p == "/download/{jid}"));
    }
}
