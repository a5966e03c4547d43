//! ROV's plot routes through the whole mesh (gateway → plotting → telemetry), on every test
//! backend: NASA's waypoints loaded into telemetry, a yaw plot over sols 0 to 400 drawn from
//! exactly the waypoints in that range, identical requests answered with the same job, the
//! job's events, the PNG and SVG downloads, and an empty range's failure behind a 409.

mod common;

use std::time::Duration;

use common::{get, post};
use outpost_api::telemetry::v1::{self as telemetry, telemetry_service_client::TelemetryServiceClient};
use serde_json::{Value, json};

const WAYPOINTS: &str = include_str!("../fixtures/rover/M20_waypoints.json");

/// The fixture's waypoints (the fields these plots read), and their sols.
fn fixture() -> (Vec<telemetry::Waypoint>, Vec<i32>) {
    let doc: Value = serde_json::from_str(WAYPOINTS).unwrap();
    let number = |p: &Value, key: &str| p[key].as_f64().unwrap_or_default();
    let waypoints: Vec<telemetry::Waypoint> = doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = &f["properties"];
            telemetry::Waypoint {
                sol: p["sol"].as_i64().unwrap() as i32,
                site: p["site"].as_i64().unwrap() as i32,
                drive: p["drive"].as_i64().unwrap() as i32,
                position: Some(telemetry::Position {
                    longitude: number(p, "lon"),
                    latitude: number(p, "lat"),
                    ..Default::default()
                }),
                orientation: Some(telemetry::Orientation {
                    yaw: number(p, "yaw"),
                    pitch: number(p, "pitch"),
                    roll: number(p, "roll"),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    let sols = waypoints.iter().map(|w| w.sol).collect();
    (waypoints, sols)
}

async fn ended(mesh: &common::Mesh, id: &str) -> Value {
    mesh.wait_for(&format!("/jobs/{id}"), |status, body| {
        status == 200 && matches!(body["status"].as_str(), Some("succeeded" | "failed" | "cancelled"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plot_routes_work_through_the_whole_mesh() {
    let (waypoints, sols) = fixture();
    let in_range = sols.iter().filter(|s| (0..=400).contains(*s)).count();
    for backend in outpost_kit::testing::backends() {
        let label = backend.label;
        let mesh = common::start(&backend).await;
        let http = reqwest::Client::new();
        TelemetryServiceClient::connect(mesh.config.telemetry_endpoint())
            .await
            .unwrap()
            .upsert_waypoints(telemetry::UpsertWaypointsRequest {
                parent: "tracks/perseverance".into(),
                waypoints: waypoints.clone(),
            })
            .await
            .unwrap();

        let (status, created) = post(
            &http,
            format!("{}/perseverance/orientation/yaw", mesh.base),
            &json!({"start": "0", "end": "400"}),
        )
        .await;
        assert_eq!(status, 202, "{label}: {created}");
        let id = created["id"].as_str().unwrap().to_string();
        assert_eq!(created["download"], format!("/download/{id}"));
        let events = tokio::time::timeout(
            Duration::from_secs(30),
            http.get(format!("{}/jobs/{id}/events", mesh.base)).send(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(events.headers()["content-type"], "text/event-stream");
        let events = tokio::time::timeout(Duration::from_secs(30), events.text())
            .await
            .expect("the events end with the job")
            .unwrap();
        assert!(events.contains("event: end"), "{label}: {events}");
        assert!(events.contains("\"status\":\"succeeded\""), "{label}: {events}");
        let job = ended(&mesh, &id).await;
        assert_eq!(job["status"], "succeeded", "{label}: {job}");
        assert_eq!(
            job["points"], in_range as i64,
            "{label}: exactly the waypoints of sols 0 to 400"
        );

        let response = http.get(format!("{}/download/{id}", mesh.base)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/png");
        let png = response.bytes().await.unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert_eq!((image.width(), image.height()), (1024, 768), "{label}");

        // The same request: the same job.
        let (status, again) = post(
            &http,
            format!("{}/perseverance/orientation/yaw", mesh.base),
            &json!({"start": 0, "end": 400}),
        )
        .await;
        assert_eq!(
            (status.as_u16(), again["id"].as_str()),
            (202, Some(id.as_str())),
            "{label}"
        );

        // Any two fields, as SVG.
        let (status, svg) = post(
            &http,
            format!("{}/jobs", mesh.base),
            &json!({"xkey": "lon", "ykey": "lat", "type": "way", "start": 0, "end": 1615, "format": "svg"}),
        )
        .await;
        assert_eq!(status, 202, "{label}: {svg}");
        let svg_id = svg["id"].as_str().unwrap();
        assert_eq!(ended(&mesh, svg_id).await["points"], 586);
        let response = http
            .get(format!("{}/download/{svg_id}", mesh.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "image/svg+xml");
        let text = response.text().await.unwrap();
        assert!(text.contains("lon (deg)") && text.contains("lat (deg)"), "{label}");

        // No waypoints in the range: failed, and its download says why.
        let (_, empty) = post(
            &http,
            format!("{}/perseverance/position/longitude", mesh.base),
            &json!({"start": "2000", "end": "2100"}),
        )
        .await;
        let empty_id = empty["id"].as_str().unwrap();
        assert_eq!(ended(&mesh, empty_id).await["status"], "failed");
        let (status, body) = get(&http, format!("{}/download/{empty_id}", mesh.base)).await;
        assert_eq!(status, 409, "{label}: {body}");
        assert_eq!(
            body["error"]["details"][0]["error"],
            "no waypoints between sol 2000 and 2100"
        );
        let (status, _) = get(&http, format!("{}/download/0123456789abcdef", mesh.base)).await;
        assert_eq!(status, 404);

        let (_, list) = get(&http, format!("{}/jobs/list?state=succeeded", mesh.base)).await;
        let ids: Vec<&str> = list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [svg_id, id.as_str()], "{label}: newest first");
        mesh.stop().await;
    }
}
