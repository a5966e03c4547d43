//! Resource names through the mesh, on every test backend, as the OpenAPI document states them:
//! on every route with a name in its path, a well-formed name of nothing is 404 and a malformed
//! one 400, and the document's pattern for each segment says which is which.

mod common;

use common::answer;
use regex::Regex;

/// A well-formed id of nothing and a malformed one, by path parameter (percent-encoded).
fn samples(parameter: &str) -> (String, &'static str) {
    match parameter {
        "object" => ("0".repeat(64), "0"),
        "image" => ("0".repeat(32), "0"),
        "run" => ("missing-run".into(), "a.b"),
        "plotJob" => ("missing-job".into(), "a_b"),
        // Waypoints are `{site}_{drive}`.
        "waypoint" => ("7_99".into(), "7-99"),
        // Devices, sensors, tracks: plain ids.
        _ => ("nothing-here".into(), "a%20b"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn well_formed_names_of_nothing_are_404_malformed_ones_400() {
    for backend in outpost_kit::testing::backends() {
        let label = backend.label;
        let mesh = common::start(&backend).await;
        let http = reqwest::Client::new();
        let (_, doc) = answer(
            http.get(format!("{}/api/openapi.json", mesh.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            if !path.starts_with("/api/v1/") || !path.contains('{') {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                let parameters: Vec<&serde_json::Value> = operation["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .collect();
                let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                let send = |url: String| {
                    let mut request = http.request(method.clone(), url);
                    if operation.get("requestBody").is_some() {
                        request = request.json(&serde_json::json!({}));
                    }
                    async move { answer(request.send().await.unwrap()).await }
                };
                let url_with = |bad: Option<usize>| {
                    let mut url = format!("{}{path}", mesh.base);
                    for (i, parameter) in parameters.iter().enumerate() {
                        let name = parameter["name"].as_str().unwrap();
                        let (good, malformed) = samples(name);
                        let value = if Some(i) == bad { malformed.to_string() } else { good };
                        url = url.replace(&format!("{{{name}}}"), &value);
                    }
                    url
                };
                // Every segment well-formed: 404 (an RPC not built yet answers 501 whatever
                // the name; it is checked once built).
                // An upsert creates what it names: only its malformed names are sent.
                if !path.ends_with(":upsert") {
                    let url = url_with(None);
                    let (status, body) = send(url.clone()).await;
                    if status == 501 {
                        continue;
                    }
                    // A required body field the test leaves out may be refused first (400); a
                    // list under a parent of nothing may be an empty page.
                    let body_first = status == 400 && operation.get("requestBody").is_some();
                    let empty_page = status == 200 && body.get("nextPageToken") == Some(&serde_json::json!(""));
                    assert!(
                        status == 404 || body_first || empty_page,
                        "{label}: {method} {url}: {status} {body}"
                    );
                }
                for (i, parameter) in parameters.iter().enumerate() {
                    let name = parameter["name"].as_str().unwrap();
                    let (good, malformed) = samples(name);
                    let pattern = parameter["schema"]["pattern"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{method} {path}: {name} has no pattern"));
                    let pattern = Regex::new(pattern).unwrap();
                    let decoded = malformed.replace("%20", " ");
                    assert!(pattern.is_match(&good), "{method} {path}: {name} {good:?} !~ {pattern}");
                    assert!(
                        !pattern.is_match(&decoded),
                        "{method} {path}: {name} {decoded:?} =~ {pattern}"
                    );
                    // This segment malformed: 400.
                    let url = url_with(Some(i));
                    let (status, body) = send(url.clone()).await;
                    assert_eq!(status, 400, "{label}: {method} {url}: {body}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 15, "{label}: only {checked} malformed names checked");
        mesh.stop().await;
    }
}
