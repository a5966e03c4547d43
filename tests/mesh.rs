//! The whole mesh in one process, through the gateway, on every test backend.

mod common;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_answers_through_the_gateway() {
    for backend in outpost_kit::testing::backends() {
        let mesh = common::start(&backend).await;
        let http = reqwest::Client::new();

        let ready: Value = http
            .get(format!("{}/readyz", mesh.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for service in ["ingest", "media", "telemetry", "plotting"] {
            assert_eq!(
                ready["services"][service]["status"], "SERVING",
                "{}: {ready}",
                backend.label
            );
            assert_eq!(
                ready["services"][service]["dependencies"]["sql"], "SERVING",
                "{}: {ready}",
                backend.label
            );
        }
        assert_eq!(
            ready["services"]["media"]["dependencies"]["objects"], "SERVING",
            "{ready}"
        );
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
            let response = http.get(format!("{}{path}", mesh.base)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{} {path}", backend.label);
            let body: Value = response.json().await.unwrap();
            assert!(body[field].is_array(), "{} {path}: {body}", backend.label);
        }

        // Bad input is a 400 naming the field; a missing resource is a 404; both JSON.
        let response = http
            .get(format!("{}/api/v1/plotJobs?pageSize=-1", mesh.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("page_size"),
            "{body}"
        );
        let response = http
            .get(format!("{}/api/v1/plotJobs/nope", mesh.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);

        // A write through media, read back through the gateway.
        let created: Value = http
            .post(format!("{}/api/v1/objects", mesh.base))
            .json(&serde_json::json!({"object": {"kind": "note", "contentType": "text/plain"}, "content": "aGVsbG8="}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let name = created["object"]["name"].as_str().expect("object name").to_string();
        assert_eq!(created["object"]["sizeBytes"], "5");
        let listed: Value = http
            .get(format!("{}/api/v1/objects?kind=note", mesh.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
    let created: Value = http
        .post(format!("{}/api/v1/objects", mesh.base))
        .json(&serde_json::json!({"object": {"kind": "note"}, "content": "c3Vydml2ZQ=="}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let name = created["object"]["name"].as_str().unwrap().to_string();
    mesh.stop().await;

    let mesh = common::start(&backend).await;
    let got = http.get(format!("{}/api/v1/{name}", mesh.base)).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["object"]["sizeBytes"], "7");
    mesh.stop().await;
}
