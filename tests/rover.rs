//! ROV, the rover tracker's routes, through the whole mesh on every test backend: 409 before
//! any load, `POST /load` from a local MMGIS serving the fixtures (586 waypoints, latest sol
//! 1615, every traverse segment; a second load all unchanged), a GeoJSON body loaded instead,
//! and the tracker's answer shapes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{answer, get};
use reqwest::Client;
use serde_json::{Value, json};
use tokio::net::TcpListener;

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/rover")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// A local MMGIS: `GET /{file}` answers the fixture `rover/{file}`.
async fn serve_mmgis() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rover");
    let app = axum::Router::new().route(
        "/{file}",
        axum::routing::get(move |axum::extract::Path(file): axum::extract::Path<String>| {
            let dir = dir.clone();
            async move {
                match std::fs::read(dir.join(&file)) {
                    Ok(body) if !file.contains("..") => Ok(body),
                    _ => Err(http::StatusCode::NOT_FOUND),
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Waits until the run `name` (`runs/{id}`) ended; returns it.
async fn ended(http: &Client, base: &str, name: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let (status, body) = get(http, format!("{base}/api/v1/{name}")).await;
        assert_eq!(status, 200, "{body}");
        let run = body["run"].clone();
        last = run.clone();
        if matches!(
            run["state"].as_str(),
            Some("RUN_STATE_SUCCEEDED" | "RUN_STATE_FAILED" | "RUN_STATE_CANCELLED")
        ) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not end: {last}");
}

/// `(created, updated, skipped, failed)` of a run's proto3 JSON (64-bit integers as strings).
fn counts(run: &Value) -> (i64, i64, i64, i64) {
    let n = |k: &str| run["counts"][k].as_str().unwrap_or("0").parse().unwrap();
    (n("created"), n("updated"), n("skipped"), n("failed"))
}

/// `POST /load` (with a body when given); waits for every run it started.
async fn load(http: &Client, base: &str, body: Option<Vec<u8>>) -> Vec<Value> {
    let mut request = http.post(format!("{base}/load"));
    if let Some(body) = body {
        request = request.header("content-type", "application/geo+json").body(body);
    }
    let (status, started) = answer(request.send().await.unwrap()).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["run"], started["runs"][0]);
    let mut runs = Vec::new();
    for run in started["runs"].as_array().unwrap() {
        let run = ended(http, base, run["name"].as_str().unwrap()).await;
        assert_eq!(run["state"], "RUN_STATE_SUCCEEDED", "{run}");
        runs.push(run);
    }
    runs
}

fn keys(row: &Value) -> BTreeSet<&str> {
    row.as_object().unwrap().keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rover_routes_through_the_mesh() {
    let waypoints = fixture("M20_waypoints.json");
    let features = waypoints["features"].as_array().unwrap();
    let segments = fixture("M20_traverse.json")["features"].as_array().unwrap().len() as i64;
    let mut sorted: Vec<&Value> = features.iter().collect();
    let order = |f: &&Value| {
        let p = &f["properties"];
        (p["sol"].as_i64(), p["site"].as_i64(), p["drive"].as_i64())
    };
    sorted.sort_by_key(order);
    let mmgis = serve_mmgis().await;

    for backend in outpost_kit::testing::backends() {
        let label = backend.label;
        let mesh = common::start_with(&backend, |cli| cli.ingest.mmgis_url = mmgis.clone()).await;
        let http = Client::new();
        let base = &mesh.base;

        // The route table, as text and as JSON, the plot routes included.
        let text = http
            .get(format!("{base}/help"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("POST /load") && text.contains("/download/{jid}"),
            "{text}"
        );
        let response = http
            .get(format!("{base}/help"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let (status, table) = answer(response).await;
        assert_eq!(status, 200);
        let paths: Vec<&str> = table["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        for path in [
            "/perseverance/sol",
            "/perseverance/orientation/yaw",
            "/jobs/list",
            "/jobs/{id}/events",
        ] {
            assert!(paths.contains(&path), "{label}: {path} in {paths:?}");
        }

        // Before any load: 409, saying to POST /load.
        for path in [
            "/perseverance",
            "/perseverance/sol",
            "/perseverance/orientation",
            "/perseverance/position",
        ] {
            let (status, body) = get(&http, format!("{base}{path}")).await;
            assert_eq!(status, 409, "{label} {path}: {body}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains("POST /load"),
                "{body}"
            );
        }

        let runs = load(&http, base, None).await;
        assert_eq!(runs[0]["source"], "SOURCE_MMGIS_WAYPOINTS");
        assert_eq!(counts(&runs[0]), (586, 0, 0, 0), "{label}");
        assert_eq!(counts(&runs[1]), (segments, 0, 0, 0), "{label}");

        let (status, body) = get(&http, format!("{base}/perseverance/sol")).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"sol": 1615, "message": "Most recent data waypoint is at Sol-1615"})
        );

        // Every waypoint, in the tracker's feature shape, every property as it came.
        let (status, page) = get(&http, format!("{base}/perseverance?start=0&limit=1000")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!((page["total"].clone(), page["next"].clone()), (json!(586), Value::Null));
        let got = page["features"].as_array().unwrap();
        assert_eq!(got.len(), 586, "{label}");
        for (got, want) in got.iter().zip(&sorted) {
            assert_eq!(got["type"], "Feature");
            let (g, w) = (&got["properties"], &want["properties"]);
            assert_eq!(keys(g), keys(w), "{label}: {}", w["RMC"]);
            for (key, value) in w.as_object().unwrap() {
                match value.as_f64() {
                    Some(n) => assert_eq!(g[key].as_f64(), Some(n), "{label}: {} {key}", w["RMC"]),
                    None => assert_eq!(&g[key], value, "{label}: {} {key}", w["RMC"]),
                }
            }
            assert_eq!(
                got["geometry"]["coordinates"][0].as_f64(),
                want["geometry"]["coordinates"][0].as_f64()
            );
        }
        let (status, page) = get(&http, format!("{base}/perseverance?start=580")).await;
        assert_eq!(status, 200);
        assert_eq!(page["features"].as_array().unwrap().len(), 6, "{label}");
        assert_eq!(page["features"][5]["properties"]["sol"], 1615);
        let (status, page) = get(&http, format!("{base}/perseverance?start=10&limit=5")).await;
        assert_eq!(
            (status.as_u16(), page["next"].clone()),
            (200, json!("/perseverance?start=15&limit=5"))
        );
        assert_eq!(
            page["features"][0]["properties"]["RMC"],
            sorted[10]["properties"]["RMC"]
        );
        for bad in ["start=abc", "start=-1", "limit=0", "begin=3"] {
            let (status, body) = get(&http, format!("{base}/perseverance?{bad}")).await;
            assert_eq!(status, 400, "{label} {bad}: {body}");
            let field = bad.split('=').next().unwrap();
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{field}:")),
                "{body}"
            );
        }

        // Exactly the tracker's keys.
        let (status, rows) = get(&http, format!("{base}/perseverance/orientation")).await;
        assert_eq!(status, 200);
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 586);
        assert_eq!(keys(&rows[0]), BTreeSet::from(["sol", "yaw_rad", "pitch", "roll"]));
        assert_eq!(rows[0]["yaw_rad"].as_f64(), sorted[0]["properties"]["yaw_rad"].as_f64());
        let (status, rows) = get(&http, format!("{base}/perseverance/position")).await;
        assert_eq!(status, 200);
        let rows = rows.as_array().unwrap();
        assert_eq!(keys(&rows[585]), BTreeSet::from(["sol", "lon", "lat"]));
        assert_eq!(rows[585]["lon"].as_f64(), Some(77.26435779));

        // The same track on /api/v1: an inclusive sol range, and the summary.
        let in_range = features
            .iter()
            .filter(|f| (100..=400).contains(&f["properties"]["sol"].as_i64().unwrap()))
            .count();
        let (status, body) = get(
            &http,
            format!("{base}/api/v1/tracks/perseverance/waypoints?minSol=100&maxSol=400&pageSize=1000"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["waypoints"].as_array().unwrap().len(), in_range, "{label}");
        let (status, body) = get(&http, format!("{base}/api/v1/tracks/perseverance:summary")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (
                body["track"]["latestSol"].clone(),
                body["track"]["waypointCount"].clone()
            ),
            (json!(1615), json!("586"))
        );
        assert_eq!(body["latest"]["rmc"], "79_198");

        // Loading again changes nothing.
        let runs = load(&http, base, None).await;
        assert_eq!(counts(&runs[0]), (0, 0, 586, 0), "{label}");
        assert_eq!(counts(&runs[1]), (0, 0, segments, 0), "{label}");

        // A GeoJSON body is loaded instead of the URL: one changed waypoint is updated.
        let mut edited = waypoints.clone();
        edited["features"][3]["properties"]["Note"] = json!("Edited");
        let runs = load(&http, base, Some(serde_json::to_vec(&edited).unwrap())).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(counts(&runs[0]), (0, 1, 585, 0), "{label}");
        let rmc = features[3]["properties"]["RMC"].as_str().unwrap();
        let (_, page) = get(&http, format!("{base}/perseverance?limit=1000")).await;
        let note = page["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["properties"]["RMC"] == rmc)
            .map(|f| f["properties"]["Note"].clone());
        assert_eq!(note, Some(json!("Edited")), "{label}");
        let response = http
            .post(format!("{base}/load"))
            .header("content-type", "application/json")
            .body("{\"not\": \"geojson\"}")
            .send()
            .await
            .unwrap();
        let (status, body) = answer(response).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("FeatureCollection"),
            "{body}"
        );

        mesh.stop().await;
    }
}
