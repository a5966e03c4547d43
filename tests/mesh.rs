//! The whole mesh in one process, through the gateway, on every test backend.

mod common;

use common::{get, post};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_answers_through_the_gateway() {
    for backend in outpost_kit::testing::backends() {
        let mesh = common::start(&backend).await;
        let http = reqwest::Client::new();
        let label = backend.label;

        let (_, ready) = get(&http, format!("{}/readyz", mesh.base)).await;
        for service in ["ingest", "media", "telemetry", "plotting"] {
            assert_eq!(ready["services"][service]["status"], "SERVING", "{label}: {ready}");
            assert_eq!(
                ready["services"][service]["dependencies"]["sql"], "SERVING",
                "{label}: {ready}"
            );
        }
        assert_eq!(
            ready["services"]["media"]["dependencies"]["objects"], "SERVING",
            "{ready}"
        );
        // Ingest lists the peers it calls: telemetry (required) and media (camera frames).
        for peer in ["telemetry", "media"] {
            assert_eq!(ready["services"]["ingest"]["dependencies"][peer], "SERVING", "{ready}");
        }
        if backend.storage.redis_url.is_some() {
            assert_eq!(
                ready["services"]["telemetry"]["dependencies"]["redis"], "SERVING",
                "{ready}"
            );
        }

        // One RPC of each service, through the generated /api/v1 routes.
        for (path, field) in [
            ("/api/v1/runs", "runs"),
            ("/api/v1/objects", "objects"),
            ("/api/v1/devices", "devices"),
            ("/api/v1/plotJobs", "plotJobs"),
        ] {
            let (status, body) = get(&http, format!("{}{path}", mesh.base)).await;
            assert_eq!(status, 200, "{label} {path}");
            assert!(body[field].is_array(), "{label} {path}: {body}");
        }

        // Bad input is a 400 naming the field; a missing resource is a 404; both JSON.
        let (status, body) = get(&http, format!("{}/api/v1/plotJobs?pageSize=-1", mesh.base)).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("page_size"),
            "{body}"
        );
        let (status, _) = get(&http, format!("{}/api/v1/plotJobs/nope", mesh.base)).await;
        assert_eq!(status, 404);

        // A write through media, read back through the gateway.
        let note = json!({"object": {"kind": "note", "contentType": "text/plain"}, "content": "aGVsbG8="});
        let (_, created) = post(&http, format!("{}/api/v1/objects", mesh.base), &note).await;
        let name = created["object"]["name"].as_str().expect("object name").to_string();
        assert_eq!(created["object"]["sizeBytes"], "5");
        let (_, listed) = get(&http, format!("{}/api/v1/objects?kind=note", mesh.base)).await;
        assert_eq!(listed["objects"][0]["name"], name.as_str());

        mesh.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_data_survives_a_restart() {
    let backend = outpost_kit::testing::backends().into_iter().next().unwrap();
    assert_eq!(backend.label, "embedded");
    let http = reqwest::Client::new();
    let mesh = common::start(&backend).await;
    let note = json!({"object": {"kind": "note"}, "content": "c3Vydml2ZQ=="});
    let (_, created) = post(&http, format!("{}/api/v1/objects", mesh.base), &note).await;
    let name = created["object"]["name"].as_str().unwrap().to_string();
    mesh.stop().await;

    let mesh = common::start(&backend).await;
    let (status, got) = get(&http, format!("{}/api/v1/{name}", mesh.base)).await;
    assert_eq!(status, 200);
    assert_eq!(got["object"]["sizeBytes"], "7");
    mesh.stop().await;
}
