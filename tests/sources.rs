//! The source systems' routes through the whole mesh, on every test backend: SEN (the sensor
//! hub) and BOX (the senseBox temperature service, fed by a local openSenseMap serving the
//! fixture boxes).

mod common;

use common::{answer, get, post};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Client;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

fn values(readings: &Value) -> Vec<f64> {
    readings
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sensor_hub_routes() {
    for backend in outpost_kit::testing::backends() {
        let mesh = common::start(&backend).await;
        let http = Client::new();
        let base = &mesh.base;
        let label = backend.label;

        let (status, body) = get(&http, format!("{base}/healthcheck")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(body["status"], "ok");

        // The hub's message format, stored under the device `default`; 201 with the reading.
        let (status, body) = post(
            &http,
            format!("{base}/add_rawdata/"),
            &json!({"sensor": "temperature", "value": 14, "timestamp": "2024-12-01 12:00:00"}),
        )
        .await;
        assert_eq!(status, 201, "{label}: {body}");
        // Exactly the hub's shape and time format, nothing more.
        assert_eq!(
            body,
            json!({"sensor": "temperature", "value": 14.0, "timestamp": "2024-12-01 12:00:00"})
        );
        // Newer, then older: the newest timestamp wins, not the newest arrival.
        let (status, body) = post(
            &http,
            format!("{base}/add_rawdata/"),
            &json!({"sensor": "temperature", "value": "20.5", "timestamp": "2024-12-01T15:00:00+01:00"}),
        )
        .await;
        assert_eq!(status, 201, "{label}: {body}");
        assert_eq!(
            body,
            json!({"sensor": "temperature", "value": 20.5, "timestamp": "2024-12-01 14:00:00"})
        );
        let (status, body) = post(
            &http,
            format!("{base}/add_rawdata/"),
            &json!([
                {"sensor": "temperature", "value": 17, "timestamp": "2024-12-01 13:00:00"},
                {"sensor": "humidity", "value": 55, "timestamp": "2024-12-01 13:00:00", "unit": "%"},
            ]),
        )
        .await;
        assert_eq!(status, 201, "{label}: {body}");
        assert_eq!(body, json!({"written": 2}));

        // The hub's own end-to-end tests compare the whole current value.
        let (status, body) = get(&http, format!("{base}/get_current_value/temperature")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(
            body,
            json!({"sensor": "temperature", "value": 20.5, "timestamp": "2024-12-01 14:00:00"}),
            "{label}"
        );
        let (status, body) = get(&http, format!("{base}/get_current_value/humidity")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(
            body,
            json!({"sensor": "humidity", "value": 55.0, "timestamp": "2024-12-01 13:00:00", "unit": "%"}),
            "{label}: a unit the client gave is kept"
        );
        // Asked for a device: it says which.
        let (status, body) = get(&http, format!("{base}/get_current_value/temperature?device=default")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(
            body,
            json!({"sensor": "temperature", "value": 20.5, "timestamp": "2024-12-01 14:00:00", "device": "default"}),
            "{label}"
        );
        let (status, body) = post(
            &http,
            format!("{base}/add_rawdata/"),
            &json!({"sensor": "temperature", "value": 3, "timestamp": "2024-12-01 12:00:00.250", "device": "porch"}),
        )
        .await;
        assert_eq!(status, 201, "{label}: {body}");
        assert_eq!(
            body,
            json!({"sensor": "temperature", "value": 3.0, "timestamp": "2024-12-01 12:00:00.250000", "device": "porch"}),
            "{label}: a message that names its device is answered with it"
        );
        let (status, body) = get(&http, format!("{base}/sensordata/temperature?device=porch")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(
            body,
            json!([{"sensor": "temperature", "value": 3.0, "timestamp": "2024-12-01 12:00:00.250000", "device": "porch"}]),
            "{label}"
        );

        let (status, body) = get(&http, format!("{base}/get_current_value/nope")).await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("nope"), "{body}");

        // Bad input: 400 naming the field, and nothing written (of a batch either).
        let (status, body) = post(
            &http,
            format!("{base}/add_rawdata/"),
            &json!({"sensor": "t", "value": "abc", "timestamp": "x"}),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
        assert!(
            body["error"]["message"].as_str().unwrap().starts_with("value:"),
            "{body}"
        );
        assert_eq!(body["error"]["details"][0]["fieldViolations"][0]["field"], "value");
        let (status, body) = post(
            &http,
            format!("{base}/add_rawdata/"),
            &json!([
                {"sensor": "t", "value": 1, "timestamp": "2024-12-01 12:00:00"},
                {"sensor": "t", "value": 2, "timestamp": "noon"},
            ]),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(
            body["error"]["details"][0]["fieldViolations"][0]["field"],
            "[1].timestamp"
        );
        let (status, body) = get(&http, format!("{base}/get_current_value/t")).await;
        assert_eq!(status, 404, "{label}: nothing of a bad request is written: {body}");
        let response = http
            .post(format!("{base}/add_rawdata/"))
            .header("content-type", "application/json")
            .body("{\"sensor\": ")
            .send()
            .await
            .unwrap();
        let (status, body) = answer(response).await;
        assert_eq!(
            (status.as_u16(), &body["error"]["code"]),
            (400, &json!("INVALID_ARGUMENT"))
        );
        let (status, body) = get(&http, format!("{base}/add_rawdata/")).await;
        assert_eq!(status, 405, "{label}: {body}");
        assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");

        // The series, oldest first, with a limit and a time range.
        let (status, body) = get(&http, format!("{base}/sensordata/temperature")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(
            body,
            json!([
                {"sensor": "temperature", "value": 14.0, "timestamp": "2024-12-01 12:00:00"},
                {"sensor": "temperature", "value": 17.0, "timestamp": "2024-12-01 13:00:00"},
                {"sensor": "temperature", "value": 20.5, "timestamp": "2024-12-01 14:00:00"},
            ]),
            "{label}"
        );
        let (status, body) = get(&http, format!("{base}/sensordata/temperature?limit=2")).await;
        assert_eq!((status.as_u16(), values(&body)), (200, vec![14.0, 17.0]), "{label}");
        let (status, body) = get(
            &http,
            format!("{base}/sensordata/temperature?start=2024-12-01T12:30:00Z&end=2024-12-01T14:00:00Z"),
        )
        .await;
        assert_eq!((status.as_u16(), values(&body)), (200, vec![17.0]), "{label}");
        let (status, body) = get(&http, format!("{base}/sensordata/temperature?limit=0")).await;
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(body["error"]["details"][0]["fieldViolations"][0]["field"], "limit");
        let (status, body) = get(&http, format!("{base}/sensordata/nope")).await;
        assert_eq!(status, 404, "{label}: {body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND");

        mesh.stop().await;
    }
}

/// A local openSenseMap: `GET /boxes` answers the body last set, and is counted.
struct OpenSenseMap {
    url: String,
    boxes: Arc<Mutex<Arc<Vec<u8>>>>,
    hits: Arc<AtomicUsize>,
}

impl OpenSenseMap {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let boxes = Arc::new(Mutex::new(Arc::new(b"[]".to_vec())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (serving, counter) = (boxes.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = serving.lock().unwrap().clone();
                let hits = counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("");
                    let boxes = head.starts_with("GET ") && path.split('?').next() == Some("/boxes");
                    let (status, content) = if boxes {
                        hits.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", &body[..])
                    } else {
                        ("404 Not Found", &b"{}"[..])
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        content.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(content).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, boxes, hits }
    }

    fn serve(&self, boxes: Vec<u8>) {
        *self.boxes.lock().unwrap() = Arc::new(boxes);
    }

    fn loads(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The mean of the fixture boxes' temperatures, computed here from the JSON: each box's
/// `Temperatur`/`Temperature` sensor, else its first sensor whose title mentions temperature.
fn fixture_mean(boxes: &Value) -> (f64, usize) {
    let temperatures: Vec<f64> = boxes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| {
            let sensors = b["sensors"].as_array()?;
            let title = |s: &&Value| s["title"].as_str().unwrap_or("").to_lowercase();
            let sensor = sensors
                .iter()
                .find(|s| matches!(title(s).as_str(), "temperatur" | "temperature"))
                .or_else(|| sensors.iter().find(|s| title(s).contains("temp")))?;
            sensor["lastMeasurement"]["value"].as_str()?.parse().ok()
        })
        .collect();
    let mean = temperatures.iter().sum::<f64>() / temperatures.len() as f64;
    (mean, temperatures.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sensebox_routes() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sensebox/sample_data.json");
    let bytes = std::fs::read(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let (mean, boxes) = fixture_mean(&serde_json::from_slice(&bytes).unwrap());
    assert_eq!(boxes, 25);
    assert!((mean - 19.12).abs() < 0.01, "{mean}");
    let expected = (mean * 100.0).round() / 100.0;
    const TOKEN: &str = "box-s3cret";

    for backend in outpost_kit::testing::backends() {
        let osem = OpenSenseMap::start().await;
        let mesh = common::start_with(&backend, |cli| {
            cli.ingest.opensensemap_url = osem.url.clone();
            // The fixture was measured in 2020.
            cli.telemetry.aggregate_window_seconds = 20 * 365 * 86_400;
            cli.config.api_token = Some(TOKEN.into());
        })
        .await;
        let http = Client::new();
        let base = &mesh.base;
        let label = backend.label;

        let (status, body) = get(&http, format!("{base}/health")).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_eq!(body["status"], "ok");
        // The senseBox service's clients read `Version`: the whole answer is that.
        let (status, body) = get(&http, format!("{base}/version")).await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"Version": env!("CARGO_PKG_VERSION")}), "{label}");

        // No readings, and openSenseMap has no boxes: the load is made, and named in the 503.
        let (status, body) = get(&http, format!("{base}/temperature")).await;
        assert_eq!(status, 503, "{label}: {body}");
        assert_eq!(osem.loads(), 1, "{label}");
        assert_eq!(body["error"]["code"], "UNAVAILABLE");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("no fresh temperature readings"), "{body}");
        let run = body["error"]["details"][0]["resourceName"].as_str().unwrap();
        assert!(run.starts_with("runs/") && message.contains(run), "{body}");

        // Now it has: the next calls load it (once for both), then answer its average.
        osem.serve(bytes.clone());
        let (first, second) = tokio::join!(
            get(&http, format!("{base}/temperature")),
            get(&http, format!("{base}/temperature"))
        );
        assert_eq!(osem.loads(), 2, "{label}: one load for concurrent requests");
        for (status, body) in [&first, &second] {
            assert_eq!(*status, 200, "{label}: {body}");
            assert_eq!(body["Average temperature"], expected, "{label}: {body}");
            assert_eq!(body["status"], "Good", "{body}");
            assert_eq!(body["boxes"], 25, "{body}");
            assert!(body["computed"].as_str().unwrap().ends_with('Z'), "{body}");
        }
        // Then from the cache, without another load.
        let (status, again) = get(&http, format!("{base}/temperature")).await;
        assert_eq!(status, 200, "{label}: {again}");
        assert_eq!(again["cached"], true, "{label}: {again}");
        assert_eq!(again["Average temperature"], expected);
        assert_eq!(osem.loads(), 2, "{label}: no other load");

        // Storing a snapshot is a write: it needs the token.
        let response = http.post(format!("{base}/store")).send().await.unwrap();
        let (status, body) = answer(response).await;
        assert_eq!(status, 401, "{label}: {body}");
        assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
        let response = http
            .post(format!("{base}/store"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let (status, stored) = answer(response).await;
        assert_eq!(status, 201, "{label}: {stored}");
        assert_eq!(stored["readings"], 25, "{stored}");
        let object = stored["object"].as_str().unwrap();
        let id = object.strip_prefix("objects/").unwrap();
        assert_eq!(stored["download"], format!("/snapshots/{id}"));

        let response = http
            .get(format!("{base}{}", stored["download"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{label}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            response.headers()["etag"],
            format!("\"{id}\"").as_str(),
            "snapshots are named by their hash"
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["content-security-policy"], "sandbox");
        let snapshot: Value = response.json().await.unwrap();
        let readings = snapshot["readings"].as_array().unwrap();
        assert_eq!(readings.len(), 25, "{snapshot}");
        assert!(readings.iter().all(|r| r["sensor"] == "temperature"), "{snapshot}");
        let stored_mean = readings.iter().map(|r| r["value"].as_f64().unwrap()).sum::<f64>() / 25.0;
        assert!((stored_mean - mean).abs() < 1e-9, "{stored_mean} vs {mean}");

        let missing = format!("{base}/snapshots/{}", "0".repeat(64));
        let (status, body) = get(&http, missing).await;
        assert_eq!(
            (status.as_u16(), &body["error"]["code"]),
            (404, &json!("NOT_FOUND")),
            "{body}"
        );
        let (status, body) = get(&http, format!("{base}/snapshots/not-an-id")).await;
        assert_eq!(status, 404, "{label}: {body}");

        mesh.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temperature_with_opensensemap_unreachable_makes_one_failed_run() {
    for backend in outpost_kit::testing::backends() {
        let label = backend.label;
        let unreachable = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        let mesh = common::start_with(&backend, |cli| cli.ingest.opensensemap_url = unreachable).await;
        let http = Client::new();
        let base = &mesh.base;
        let mut first_run = None;
        for i in 0..12 {
            let (status, body) = get(&http, format!("{base}/temperature")).await;
            assert_eq!(status, 503, "{label}: {body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("no fresh temperature readings"), "{label}: {body}");
            assert!(
                message.contains("cannot reach openSenseMap"),
                "{label}: says why: {body}"
            );
            let details = body["error"]["details"].as_array().unwrap();
            let run = details
                .iter()
                .find_map(|d| d["resourceName"].as_str())
                .unwrap()
                .to_string();
            assert!(message.contains(&run), "{label}: names the run: {body}");
            if i > 0 {
                let retry = details.iter().find_map(|d| d["retryDelay"].as_str());
                assert!(
                    retry.is_some_and(|r| r.ends_with('s')),
                    "{label}: says when to ask again: {body}"
                );
            }
            assert_eq!(
                first_run.get_or_insert(run.clone()),
                &run,
                "{label}: the same failed run"
            );
        }
        let (status, runs) = get(&http, format!("{base}/api/v1/runs")).await;
        assert_eq!(status, 200, "{label}: {runs}");
        assert_eq!(
            runs["runs"].as_array().unwrap().len(),
            1,
            "{label}: one failed run, not one per request: {runs}"
        );
        mesh.stop().await;
    }
}
