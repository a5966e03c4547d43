//! NASA MMGIS runs end to end: the fixtures served by a local HTTP server (as OUTPOST_MMGIS_URL)
//! or sent with UploadSource, loaded by ingest into a real telemetry, on every backend: 586
//! waypoints up to sol 1615, every traverse segment, a second load all unchanged; a damaged
//! file loads what it can and counts the rest failed; a file over 64 MiB is refused.

mod common;

use std::time::Duration;

use futures::StreamExt as _;
use outpost_api::ingest::v1::{self as pb, RunState, Source};
use outpost_api::telemetry::v1 as tpb;
use outpost_ingest::IngestConfig;
use outpost_kit::testing::backends;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

use common::{Mesh, fixture_json, fixtures, start, unreachable_url};

/// Serves the fixtures' `rover/` files at `/{file}`; returns the base URL.
async fn serve_mmgis() -> String {
    let dir = fixtures().join("rover");
    let app = axum::Router::new().route(
        "/{file}",
        axum::routing::get(move |axum::extract::Path(file): axum::extract::Path<String>| {
            let dir = dir.clone();
            async move {
                match std::fs::read(dir.join(&file)) {
                    Ok(body) if !file.contains("..") => Ok(body),
                    _ => Err(axum::http::StatusCode::NOT_FOUND),
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn mmgis(url: String) -> IngestConfig {
    IngestConfig {
        mmgis_url: url,
        ..IngestConfig::default()
    }
}

/// Creates a run of `source` and follows it to its end.
async fn load(mesh: &Mesh, source: Source, parameters: &[(&str, &str)]) -> pb::Run {
    let run = pb::Run {
        source: source as i32,
        parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let request = pb::CreateRunRequest {
        run: Some(run),
        min_create_time: None,
    };
    let run = mesh
        .ingest
        .clone()
        .create_run(request)
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    finished(mesh, &run.name).await
}

/// The run once it ended.
async fn finished(mesh: &Mesh, name: &str) -> pb::Run {
    let request = pb::WatchRunRequest { name: name.to_string() };
    let mut stream = mesh.ingest.clone().watch_run(request).await.unwrap().into_inner();
    let mut last = None;
    let collect = async {
        while let Some(message) = stream.next().await {
            last = message.unwrap().run;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), collect)
        .await
        .expect("the run ends");
    last.expect("a watch sends the run")
}

fn counts(run: &pb::Run) -> (i64, i64, i64, i64) {
    let c = run.counts.unwrap();
    (c.created, c.updated, c.skipped, c.failed)
}

async fn upload(mesh: &Mesh, source: Source, track: &str, file: Vec<u8>) -> Result<pb::Run, tonic::Status> {
    let metadata = pb::UploadSourceRequest {
        part: Some(pb::upload_source_request::Part::Metadata(pb::UploadSourceMetadata {
            source: source as i32,
            parameters: [("track".to_string(), track.to_string())].into(),
            filename: "waypoints.json".into(),
        })),
    };
    let chunks: Vec<pb::UploadSourceRequest> = std::iter::once(metadata)
        .chain(file.chunks(1 << 20).map(|c| pb::UploadSourceRequest {
            part: Some(pb::upload_source_request::Part::Chunk(c.to_vec().into())),
        }))
        .collect();
    let response = mesh
        .ingest
        .clone()
        .upload_source(futures::stream::iter(chunks))
        .await?
        .into_inner();
    Ok(response.run.unwrap())
}

async fn summary(mesh: &Mesh, track: &str) -> tpb::GetTrackSummaryResponse {
    mesh.telemetry
        .clone()
        .get_track_summary(tpb::GetTrackSummaryRequest {
            name: format!("tracks/{track}"),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fixtures_load_every_waypoint_and_segment_then_all_unchanged() {
    let waypoints = fixture_json("rover/M20_waypoints.json")["features"]
        .as_array()
        .unwrap()
        .len() as i64;
    let segments = fixture_json("rover/M20_traverse.json")["features"]
        .as_array()
        .unwrap()
        .len() as i64;
    assert_eq!(waypoints, 586);
    for backend in backends() {
        let label = backend.label;
        let mesh = start(&backend, mmgis(serve_mmgis().await)).await;

        let run = load(&mesh, Source::MmgisWaypoints, &[]).await;
        assert_eq!(run.state, RunState::Succeeded as i32, "{label}: {}", run.failure);
        assert_eq!(counts(&run), (586, 0, 0, 0), "{label}");
        assert_eq!(run.progress.unwrap(), pb::Progress { done: 586, total: 586 }, "{label}");
        let track = summary(&mesh, "perseverance").await;
        let t = track.track.unwrap();
        assert_eq!((t.waypoint_count, t.latest_sol), (586, 1615), "{label}");
        assert_eq!(track.latest.unwrap().rmc, "79_198", "{label}");

        let run = load(&mesh, Source::MmgisTraverse, &[]).await;
        assert_eq!(run.state, RunState::Succeeded as i32, "{label}: {}", run.failure);
        assert_eq!(counts(&run), (segments, 0, 0, 0), "{label}");
        let t = summary(&mesh, "perseverance").await.track.unwrap();
        assert_eq!(t.traverse_segment_count, segments, "{label}");

        let again = load(&mesh, Source::MmgisWaypoints, &[]).await;
        assert_eq!(counts(&again), (0, 0, 586, 0), "{label}: a second load changes nothing");
        let again = load(&mesh, Source::MmgisTraverse, &[]).await;
        assert_eq!(counts(&again), (0, 0, segments, 0), "{label}");

        // Another track by parameter; a bad parameter is refused before any run starts.
        let other = load(&mesh, Source::MmgisWaypoints, &[("track", "copy")]).await;
        assert_eq!(counts(&other), (586, 0, 0, 0), "{label}");
        let request = pb::CreateRunRequest {
            run: Some(pb::Run {
                source: Source::MmgisWaypoints as i32,
                parameters: [("url".to_string(), "http://elsewhere".to_string())].into(),
                ..Default::default()
            }),
            min_create_time: None,
        };
        let status = mesh.ingest.clone().create_run(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{label}");
        assert!(
            status.message().starts_with("run.parameters.url:"),
            "{}",
            status.message()
        );
    }
}

/// The fixture's first features, as a client might send them: with a byte order mark and
/// CRLF line endings, numbers as strings, one feature without a sol and one without geometry.
fn damaged_file() -> (Vec<u8>, usize) {
    let mut doc = fixture_json("rover/M20_waypoints.json");
    let features = doc["features"].as_array_mut().unwrap();
    features.truncate(40);
    for f in features.iter_mut().step_by(3) {
        let p = f["properties"].as_object_mut().unwrap();
        for key in ["sol", "lon", "yaw", "dist_total_m"] {
            p[key] = json!(p[key].to_string());
        }
    }
    features[5]["properties"].as_object_mut().unwrap().remove("sol");
    features[7]["geometry"] = Json::Null;
    features[9]["properties"]["images"] = json!([{"url": "x.jpg"}]);
    let text = serde_json::to_string_pretty(&doc).unwrap().replace('\n', "\r\n");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(text.as_bytes());
    (bytes, 40)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uploaded_file_loads_what_it_can_and_counts_the_rest_failed() {
    for backend in backends() {
        let label = backend.label;
        // No MMGIS server: uploads never fetch.
        let mesh = start(&backend, mmgis(unreachable_url().await)).await;
        let (file, total) = damaged_file();
        let run = upload(&mesh, Source::MmgisWaypoints, "uploaded", file.clone())
            .await
            .unwrap();
        let run = finished(&mesh, &run.name).await;
        assert_eq!(run.state, RunState::Succeeded as i32, "{label}: {}", run.failure);
        assert_eq!(counts(&run), (total as i64 - 2, 0, 0, 2), "{label}");
        let items: Vec<_> = run
            .errors
            .iter()
            .map(|e| (e.item.as_str(), e.message.as_str()))
            .collect();
        let fixture = fixture_json("rover/M20_waypoints.json");
        let rmc = fixture["features"][5]["properties"]["RMC"].as_str().unwrap();
        assert_eq!(
            items[0],
            (format!("feature 5 (RMC {rmc})").as_str(), "no sol"),
            "{label}: {items:?}"
        );
        assert!(
            items[1].0.starts_with("feature 7") && items[1].1.starts_with("bad geometry"),
            "{items:?}"
        );

        // Numbers sent as strings are numbers; unknown values come back as they came.
        let waypoints = mesh
            .telemetry
            .clone()
            .list_waypoints(tpb::ListWaypointsRequest {
                parent: "tracks/uploaded".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .waypoints;
        assert_eq!(waypoints.len(), total - 2, "{label}");
        assert_eq!(waypoints[0].sol, 13);
        assert_eq!(waypoints[0].orientation.unwrap().yaw, 130.8816);
        let with_images = waypoints.iter().find(|w| w.images.is_some()).expect("the images kept");
        assert_eq!(
            outpost_kit::json::from_value(with_images.images.clone().unwrap()),
            json!([{"url": "x.jpg"}])
        );

        // The same file again: the same stored waypoints, all unchanged.
        let run = upload(&mesh, Source::MmgisWaypoints, "uploaded", file).await.unwrap();
        let run = finished(&mesh, &run.name).await;
        assert_eq!(counts(&run), (0, 0, total as i64 - 2, 2), "{label}");

        // Not GeoJSON, the wrong source, or too large: refused, and no run.
        let status = upload(&mesh, Source::MmgisWaypoints, "x", b"{\"a\": 1}".to_vec())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{label}");
        assert!(
            status.message().starts_with("chunk: the file is not a GeoJSON"),
            "{}",
            status.message()
        );
        let status = upload(&mesh, Source::Opensensemap, "x", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(status.message().starts_with("metadata.source:"), "{}", status.message());
        let status = upload(&mesh, Source::MmgisTraverse, "x", vec![b' '; (64 << 20) + 1])
            .await
            .unwrap_err();
        assert!(status.message().contains("larger than 64 MiB"), "{}", status.message());
        let runs = mesh
            .ingest
            .clone()
            .list_runs(pb::ListRunsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .runs;
        assert_eq!(runs.len(), 2, "{label}: only the two good uploads made runs");

        // Fetching from a URL where nothing answers fails the run, naming it.
        let run = load(&mesh, Source::MmgisTraverse, &[]).await;
        assert_eq!(run.state, RunState::Failed as i32, "{label}");
        assert!(
            run.failure.contains("cannot reach MMGIS at http://127.0.0.1:"),
            "{}",
            run.failure
        );
        assert!(run.failure.contains("/M20_traverse.json"), "{}", run.failure);
    }
}
