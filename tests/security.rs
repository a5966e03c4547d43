//! The surface against hostile input, through the whole mesh: stored content never renders as a
//! page, cross-site browser writes and non-JSON bodies are refused, gRPC writes need the token
//! the gateway asks for, and errors echo at most 64 characters of input.

mod common;

use common::{answer, post};
use outpost_api::telemetry::v1::{self as pb, telemetry_service_client::TelemetryServiceClient};
use reqwest::Client;
use serde_json::json;

const READING: &str = r#"{"sensor": "temperature", "value": 14, "timestamp": "2024-12-01 12:00:00"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_content_is_never_served_as_a_page() {
    for backend in outpost_kit::testing::backends() {
        let label = backend.label;
        let mesh = common::start(&backend).await;
        let http = Client::new();
        let script = "<script>alert(document.cookie)</script>";
        let encoded = base64(script.as_bytes());

        // A page is not a type objects are stored as.
        let (status, body) = post(
            &http,
            format!("{}/api/v1/objects", mesh.base),
            &json!({"object": {"kind": "snapshot", "contentType": "text/html"}, "content": encoded}),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(
            body["error"]["details"][0]["fieldViolations"][0]["field"],
            "object.content_type"
        );

        // Text is, and is then served as a download, sandboxed, never sniffed.
        let (status, body) = post(
            &http,
            format!("{}/api/v1/objects", mesh.base),
            &json!({"object": {"kind": "snapshot", "contentType": "text/plain"}, "content": encoded}),
        )
        .await;
        assert_eq!(status, 200, "{label}: {body}");
        let id = body["object"]["name"]
            .as_str()
            .unwrap()
            .trim_start_matches("objects/")
            .to_string();
        let response = http.get(format!("{}/snapshots/{id}", mesh.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{label}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/octet-stream", "{label}");
        assert_eq!(headers["content-disposition"], "attachment", "{label}");
        assert_eq!(headers["content-security-policy"], "sandbox", "{label}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{label}");
        assert_eq!(
            response.text().await.unwrap(),
            script,
            "{label}: the bytes are kept as they are"
        );
        mesh.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_site_writes_and_non_json_bodies_are_refused() {
    let backend = outpost_kit::testing::backends().remove(0);
    let mesh = common::start(&backend).await;
    let http = Client::new();
    let url = format!("{}/add_rawdata/", mesh.base);
    let host = mesh.config.gateway_addr.to_string();
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = http.post(&url).body(READING);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { answer(request.send().await.unwrap()).await }
    };
    let json = ("content-type", "application/json".to_string());

    // A page elsewhere posting here, as browsers tell it.
    for refused in [
        vec![json.clone(), ("sec-fetch-site", "cross-site".to_string())],
        vec![json.clone(), ("sec-fetch-site", "same-site".to_string())],
        vec![json.clone(), ("origin", "https://evil.example".to_string())],
    ] {
        let (status, body) = send(refused.clone()).await;
        assert_eq!(status, 403, "{refused:?}: {body}");
        assert_eq!(body["error"]["code"], "PERMISSION_DENIED");
    }
    // The gateway's own pages, and clients that are no browser.
    for allowed in [
        vec![json.clone(), ("sec-fetch-site", "same-origin".to_string())],
        vec![json.clone(), ("origin", format!("http://{host}"))],
        vec![json.clone()],
    ] {
        let (status, body) = send(allowed.clone()).await;
        assert_eq!(status, 201, "{allowed:?}: {body}");
    }
    // A JSON route takes JSON only: what a form or a text request sends is 415.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = send(vec![("content-type", content_type.to_string())]).await;
        assert_eq!(status, 415, "{content_type}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("application/json"),
            "{body}"
        );
    }
    let (status, body) = answer(http.post(&url).body(READING).send().await.unwrap()).await;
    assert_eq!(status, 415, "no content type: {body}");
    let transcoded = http
        .post(format!("{}/api/v1/devices?device_id=x", mesh.base))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(transcoded.status(), 415, "generic routes too");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_writes_need_the_token_and_calls_between_services_carry_it() {
    let backend = outpost_kit::testing::backends().remove(0);
    let mesh = common::start_with(&backend, |cli| cli.config.api_token = Some("s3cret".into())).await;
    let mut telemetry = TelemetryServiceClient::connect(format!("http://{}", mesh.config.telemetry_addr))
        .await
        .unwrap();
    let create = || pb::CreateDeviceRequest {
        device_id: "grpc-box".into(),
        device: Some(pb::Device::default()),
    };
    let refused = telemetry.create_device(create()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let refused = telemetry
        .delete_device(pb::DeleteDeviceRequest {
            name: "devices/grpc-box".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let mut request = tonic::Request::new(create());
    request
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    telemetry.create_device(request).await.unwrap();
    // Reads stay open.
    let listed = telemetry.list_devices(pb::ListDevicesRequest::default()).await.unwrap();
    assert!(listed.get_ref().devices.iter().any(|d| d.name == "devices/grpc-box"));

    // Through the gateway: its token check, then ingest and telemetry, which see the token
    // the gateway's calls carry.
    let http = Client::new();
    let url = format!("{}/add_rawdata/", mesh.base);
    let (status, _) = answer(
        http.post(&url)
            .header("content-type", "application/json")
            .body(READING)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = answer(
        http.post(&url)
            .header("content-type", "application/json")
            .bearer_auth("s3cret")
            .body(READING)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_echo_at_most_64_characters_of_input() {
    let backend = outpost_kit::testing::backends().remove(0);
    let mesh = common::start(&backend).await;
    let http = Client::new();
    let long = "s".repeat(10_000);
    let (status, body) = post(
        &http,
        format!("{}/add_rawdata/", mesh.base),
        &json!({"sensor": long, "value": 1, "timestamp": "2024-12-01 12:00:00"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(text.len() < 600, "a {}-byte error for a 10 KB name: {text}", text.len());
    assert!(!text.contains(&"s".repeat(65)), "{text}");
    let response = http
        .get(format!("{}/get_current_value/{}", mesh.base, "x".repeat(5000)))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().len() < 600, "{body}");
    let response = http
        .get(format!("{}/{}", mesh.base, "y".repeat(5000)))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.to_string().contains(&"y".repeat(65)), "{body}");
    mesh.stop().await;
}

/// Standard base64 with padding, as proto3 JSON writes bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
