//! CAM through the whole mesh: `/lazyload`, `/process`, `/runs/{id}/events` and the day's
//! frames through `/api/v1/images`, over a camera feed the test serves (rows and JPEGs made
//! here), on every test backend.

mod common;

use std::time::Duration;

use outpost_ingest::camera::testing::{FeedServer, Frame, frame_path, row};
use outpost_kit::testing::backends;
use serde_json::{Value, json};

use common::{get, start_with};

/// 2025-02-05 00:00:00 UTC, ms.
const DAY_START_MS: i64 = 1_738_713_600_000;
const FRAMES: i64 = 30;

fn rows(prob: impl Fn(i64) -> f64) -> Value {
    (0..FRAMES)
        .map(|i| {
            let at = DAY_START_MS + i * 60_000;
            row(at, &frame_path(at), json!(1), prob(i))
        })
        .collect()
}

/// The events of an SSE body: (name, data).
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|event| {
            let name = event.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_string(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_camera_day_loads_once_through_the_gateway() {
    for backend in backends() {
        let label = backend.label;
        let feed = FeedServer::start().await;
        let mut frames = Vec::new();
        for i in 0..FRAMES {
            let at = DAY_START_MS + i * 60_000;
            let bytes = bytes::Bytes::from(outpost_media::testing::jpeg(64, 48, i as u64, 80, None));
            feed.set_frame(&frame_path(at), Frame::Bytes(bytes.clone()));
            frames.push(bytes);
        }
        // Frame 17 is the best.
        feed.set_day("02-05-2025", rows(|i| if i == 17 { 0.97 } else { i as f64 / 100.0 }));
        feed.set_day("02-04-2025", json!([]));
        feed.set_frame_delay(Duration::from_millis(30));
        let mesh = start_with(&backend, |cli| {
            cli.ingest.camera_feed_url = feed.base.clone();
            cli.ingest.camera_concurrency = 2;
        })
        .await;
        let http = reqwest::Client::new();
        let base = &mesh.base;

        // Two requests at once: one run, both told to watch it.
        let url = format!("{base}/lazyload?date=02-05-2025");
        let (a, b) = tokio::join!(get(&http, url.clone()), get(&http, url.clone()));
        assert_eq!((a.0.as_u16(), b.0.as_u16()), (202, 202), "{label}: {a:?} {b:?}");
        let name = a.1["run"]["name"].as_str().unwrap().to_string();
        assert_eq!(b.1["run"]["name"], name.as_str(), "{label}: one run");
        let id = name.strip_prefix("runs/").unwrap();
        assert_eq!(a.1["events"], format!("/runs/{id}/events"), "{label}");

        // Its progress as server-sent events, ending with the final state.
        let response = http.get(format!("{base}/runs/{id}/events")).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream", "{label}");
        let body = tokio::time::timeout(Duration::from_secs(60), response.text())
            .await
            .unwrap()
            .unwrap();
        let events = events(&body);
        let (last, updates) = events.split_last().expect("events");
        assert_eq!(last.0, "end", "{label}: {body}");
        assert_eq!(last.1["state"], "RUN_STATE_SUCCEEDED", "{label}");
        assert_eq!(last.1["progress"], json!({"done": "30", "total": "30"}), "{label}");
        assert_eq!(last.1["counts"]["created"], "30", "{label}");
        assert!(updates.iter().all(|(name, _)| name == "update"), "{label}");
        assert!(
            updates.iter().any(|(_, run)| run["state"] == "RUN_STATE_RUNNING"),
            "{label}: progress is seen while it runs: {body}"
        );

        // Loaded: the day with its best frame, and the same run.
        let (status, day) = get(&http, format!("{url}&wait=true")).await;
        assert_eq!(status, 200, "{label}: {day}");
        assert_eq!(
            (&day["date"], &day["images"], &day["run"]["name"]),
            (&json!("2025-02-05"), &json!(30), &json!(name)),
            "{label}"
        );
        assert_eq!(day["best"]["probability"], 0.97, "{label}");
        assert_eq!(day["best"]["taken_time"], "2025-02-05T00:17:00Z", "{label}");
        let best = http
            .get(format!("{base}{}", day["best"]["url"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            best.bytes().await.unwrap(),
            frames[17],
            "{label}: the best frame byte for byte"
        );

        // The day's frames by probability through the resource API.
        let (status, list) = get(&http, format!("{base}{}", day["list"].as_str().unwrap())).await;
        assert_eq!(status, 200, "{label}: {list}");
        let probabilities: Vec<f64> = list["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["detection"]["probability"].as_f64().unwrap())
            .collect();
        assert_eq!(probabilities.len(), 30, "{label}");
        assert!(
            probabilities.windows(2).all(|w| w[0] >= w[1]),
            "{label}: {probabilities:?}"
        );

        // A reload after the feed's prob changed updates, without new frames.
        feed.set_day(
            "02-05-2025",
            rows(|i| {
                if i == 3 {
                    0.99
                } else if i == 17 {
                    0.97
                } else {
                    i as f64 / 100.0
                }
            }),
        );
        let (status, day) = get(&http, format!("{base}/lazyload?date=2025-02-05&refresh=true&wait=true")).await;
        assert_eq!(status, 200, "{label}: {day}");
        assert_ne!(day["run"]["name"], name.as_str(), "{label}");
        assert_eq!(
            day["run"]["counts"],
            json!({"created": "0", "updated": "1", "skipped": "29", "failed": "0"}),
            "{label}"
        );
        assert_eq!(
            (&day["images"], &day["best"]["probability"]),
            (&json!(30), &json!(0.99)),
            "{label}"
        );

        // A future date, and a date that is none: 400 naming `date`.
        for bad in ["12-31-2999", "02-30-2025"] {
            let (status, body) = get(&http, format!("{base}/lazyload?date={bad}")).await;
            assert_eq!(status, 400, "{label}: {body}");
            assert!(
                body["error"]["message"].as_str().unwrap().starts_with("date: "),
                "{label}: {body}"
            );
        }
        // An empty day: loaded, with no frames.
        let (status, empty) = get(&http, format!("{base}/lazyload?date=2025-02-04&wait=true")).await;
        assert_eq!(status, 200, "{label}: {empty}");
        assert_eq!((&empty["images"], &empty["best"]), (&json!(0), &Value::Null), "{label}");

        // The loads, newest first, with the process server's columns.
        let (status, process) = get(&http, format!("{base}/process")).await;
        assert_eq!(status, 200, "{label}: {process}");
        let loads = process["processes"].as_array().unwrap();
        let dates: Vec<&str> = loads.iter().map(|p| p["data_time"].as_str().unwrap()).collect();
        assert_eq!(dates, ["2025-02-04", "2025-02-05", "2025-02-05"], "{label}");
        assert_eq!(
            (
                &loads[2]["status"],
                &loads[2]["data_length"],
                &loads[2]["processed_rows"],
                &loads[2]["run"]["name"]
            ),
            (&json!("succeeded"), &json!(30), &json!(30), &json!(name)),
            "{label}"
        );
        let (status, first) = get(&http, format!("{base}/process?page_size=1")).await;
        assert_eq!(
            (status.as_u16(), first["processes"].as_array().unwrap().len()),
            (200, 1),
            "{label}"
        );
        assert!(first["next_page_token"].is_string(), "{label}");
        mesh.stop().await;
    }
}
