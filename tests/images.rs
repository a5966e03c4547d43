//! IMG, the image engine's routes, through the whole mesh on every test backend: multipart
//! upload, list, view, accept, reject, bytes for browsers, health, and their errors.

mod common;

use common::{answer, get, start, start_with};
use outpost_kit::testing::backends;
use outpost_media::testing;
use serde_json::{Value, json};

const TOKEN: &str = "images-test-token";

/// Standard base64, as proto3 JSON carries bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `multipart/form-data` body of `files` in the field `photo` (name, bytes) and `fields`.
fn form(files: &[(&str, &[u8])], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "outpost-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    for (filename, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"{filename}\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_form(
    http: &reqwest::Client,
    url: String,
    files: &[(&str, &[u8])],
    fields: &[(&str, &str)],
) -> (reqwest::StatusCode, Value) {
    let (content_type, body) = form(files, fields);
    let response = http
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn post(http: &reqwest::Client, url: String) -> (reqwest::StatusCode, Value) {
    answer(http.post(url).bearer_auth(TOKEN).send().await.unwrap()).await
}

#[tokio::test]
async fn the_image_engines_routes_work_through_the_mesh() {
    for backend in backends() {
        let label = backend.label;
        let mesh = start_with(&backend, |cli| cli.config.api_token = Some(TOKEN.into())).await;
        let base = mesh.base.clone();
        let http = reqwest::Client::new();

        // Health of everything the engine needs, by name; the sensor hub's route is untouched.
        let (status, health) = get(&http, format!("{base}/healthcheck/")).await;
        assert_eq!(status, 200, "{label}: {health}");
        assert_eq!(health["services"]["media"]["status"], "SERVING");
        assert_eq!(health["services"]["media"]["dependencies"]["sql"], "SERVING");
        assert_eq!(health["services"]["media"]["dependencies"]["objects"], "SERVING");
        assert_eq!(health["services"]["gateway"]["status"], "SERVING");
        let (status, hub) = get(&http, format!("{base}/healthcheck")).await;
        assert_eq!(status, 200, "{label}: {hub}");
        assert!(
            hub["services"]["telemetry"].is_object() && hub["services"]["media"].is_null(),
            "{hub}"
        );

        // Writes need the token.
        let (content_type, body) = form(&[("a.jpg", b"x")], &[]);
        let response = http
            .post(format!("{base}/image_upload"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{label}");

        // Upload: several files in one form, then one.
        let first = testing::jpeg(1024, 768, 1, 85, Some(6));
        let second = testing::png(200, 100, true);
        let third = testing::jpeg(640, 480, 3, 85, None);
        let (status, several) = post_form(
            &http,
            format!("{base}/image_upload"),
            &[("first.jpg", &first), ("second.png", &second)],
            &[("source", "burrow-cam")],
        )
        .await;
        assert_eq!(status, 201, "{label}: {several}");
        let uploaded = several["images"].as_array().unwrap();
        assert_eq!(uploaded.len(), 2);
        assert_eq!(uploaded[0]["content_type"], "image/jpeg");
        assert_eq!(
            uploaded[1]["content_type"], "image/png",
            "sniffed, whatever the part's type said"
        );
        assert_eq!(uploaded[0]["source"], "burrow-cam");
        assert_eq!(uploaded[0]["filename"], "first.jpg");
        assert_eq!(uploaded[0]["review"], json!({"state": "pending", "review_time": null}));
        let (status, one) = post_form(&http, format!("{base}/image_upload"), &[("third.jpg", &third)], &[]).await;
        assert_eq!(status, 201, "{label}: {one}");
        assert_eq!(one["source"], "upload");
        let ids: Vec<String> = uploaded
            .iter()
            .chain(std::iter::once(&one))
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();

        // Refusals name the field and store nothing, not even the good files of the form.
        let html = b"<!doctype html><script>alert(1)</script>".as_slice();
        let (status, refused) = post_form(&http, format!("{base}/image_upload"), &[("evil.png", html)], &[]).await;
        assert_eq!(status, 400, "{label}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("photo: not a JPEG"),
            "{refused}"
        );
        let good = testing::jpeg(64, 64, 99, 80, None);
        let (status, refused) = post_form(
            &http,
            format!("{base}/image_upload"),
            &[("good.jpg", &good), ("empty.jpg", b"")],
            &[],
        )
        .await;
        assert_eq!(status, 400, "{label}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("photo[1]: empty"),
            "{refused}"
        );
        let (status, refused) = post_form(&http, format!("{base}/image_upload"), &[], &[("source", "cam")]).await;
        assert_eq!(status, 400, "{label}: {refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("photo: no file"),
            "{refused}"
        );

        // The list: newest first, a page at a time; nothing refused is in it.
        let (status, page) = get(&http, format!("{base}/image_list?page_size=2")).await;
        assert_eq!(status, 200, "{label}: {page}");
        let mut listed: Vec<String> = page["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let token = page["next_page_token"].as_str().unwrap();
        let (_, rest) = get(&http, format!("{base}/image_list?page_size=2&page_token={token}")).await;
        listed.extend(
            rest["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        assert_eq!(rest["next_page_token"], Value::Null);
        assert_eq!(
            listed,
            ids.iter().rev().cloned().collect::<Vec<_>>(),
            "{label}: newest first"
        );
        let (status, bad) = get(&http, format!("{base}/image_list?page_size=0")).await;
        assert_eq!(status, 400);
        assert!(
            bad["error"]["message"].as_str().unwrap().starts_with("page_size:"),
            "{bad}"
        );

        // The viewer: pending images in review order, with their URLs, and the next one.
        let (status, view) = get(&http, format!("{base}/image_view")).await;
        assert_eq!(status, 200, "{label}: {view}");
        assert_eq!(view["pending"], 3);
        let viewed: Vec<&str> = view["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(viewed, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(view["images"][0]["url"], format!("/images/{}", ids[0]));
        let (status, one_view) = get(&http, format!("{base}/image_view/{}", ids[0])).await;
        assert_eq!(status, 200, "{label}: {one_view}");
        assert_eq!(
            (&one_view["image"]["id"], &one_view["next"]),
            (&json!(ids[0]), &json!(ids[1]))
        );

        // Bytes for browsers: the upload itself, cacheable by hash, never run as a page.
        let response = http.get(format!("{base}/images/{}", ids[0])).send().await.unwrap();
        assert_eq!(response.status(), 200, "{label}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "image/jpeg");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["content-security-policy"], "sandbox");
        assert_eq!(headers["cache-control"], "public, max-age=31536000, immutable");
        let etag = headers["etag"].to_str().unwrap().to_string();
        assert_eq!(etag, format!("\"{}\"", uploaded[0]["sha256"].as_str().unwrap()));
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            first.as_slice(),
            "{label}: byte for byte"
        );
        let cached = http
            .get(format!("{base}/images/{}", ids[0]))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), 304, "{label}");
        assert!(cached.bytes().await.unwrap().is_empty());
        let response = http
            .get(format!("{base}/images/{}/thumbnail", ids[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        let thumbnail = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(
            (thumbnail.width(), thumbnail.height()),
            (240, 320),
            "{label}: EXIF orientation applied"
        );
        let response = http
            .get(format!("{base}/images/{}/thumbnail", ids[1]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "image/png",
            "transparency keeps a png"
        );

        // Review: accept and reject answer the written state; the viewer moves on.
        let (status, accepted) = post(&http, format!("{base}/accept_pic/{}", ids[0])).await;
        assert_eq!(status, 200, "{label}: {accepted}");
        assert_eq!(accepted["review"]["state"], "accepted");
        assert!(accepted["review"]["review_time"].is_string());
        let (status, rejected) = post(&http, format!("{base}/reject_pic/{}", ids[1])).await;
        assert_eq!(
            (status.as_u16(), &rejected["review"]["state"]),
            (200, &json!("rejected")),
            "{rejected}"
        );
        let (_, view) = get(&http, format!("{base}/image_view")).await;
        assert_eq!(view["pending"], 1);
        assert_eq!(view["images"][0]["id"], json!(ids[2]));
        let (_, listed) = get(&http, format!("{base}/image_list?review_state=accepted")).await;
        assert_eq!(listed["images"].as_array().unwrap().len(), 1, "{listed}");
        // The resource route of the same review.
        let response = http
            .post(format!("{base}/api/v1/images/{}:review", ids[2]))
            .bearer_auth(TOKEN)
            .json(&json!({"decision": "REVIEW_STATE_ACCEPTED"}))
            .send()
            .await
            .unwrap();
        let (status, reviewed) = answer(response).await;
        assert_eq!(status, 200, "{label}: {reviewed}");
        assert_eq!(reviewed["review"]["state"], "REVIEW_STATE_ACCEPTED");
        let (_, stats) = get(&http, format!("{base}/api/v1/reviewStats")).await;
        assert_eq!(
            (&stats["accepted"], &stats["rejected"]),
            (&json!("2"), &json!("1")),
            "{stats}"
        );

        // Stored content of a type that is not shown inline is served as a download.
        let csv = "time,value\n2024-12-01 12:00:00,14\n";
        let response = http
            .post(format!("{base}/api/v1/objects"))
            .bearer_auth(TOKEN)
            .json(
                &json!({"object": {"kind": "snapshot", "contentType": "text/csv"}, "content": base64(csv.as_bytes())}),
            )
            .send()
            .await
            .unwrap();
        let (status, object) = answer(response).await;
        assert_eq!(status, 200, "{label}: {object}");
        let id = object["object"]["name"]
            .as_str()
            .unwrap()
            .strip_prefix("objects/")
            .unwrap();
        let response = http.get(format!("{base}/snapshots/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/octet-stream");
        assert_eq!(response.headers()["content-disposition"], "attachment");
        assert_eq!(response.headers()["content-security-policy"], "sandbox");

        // Unknown and malformed ids are 404 with a JSON body, on every image route.
        let unknown = "0".repeat(32);
        for (method, path) in [
            ("POST", format!("/accept_pic/{unknown}")),
            ("POST", format!("/reject_pic/{unknown}")),
            ("POST", "/accept_pic/not-an-id".to_string()),
            ("GET", format!("/image_view/{unknown}")),
            ("GET", format!("/images/{unknown}")),
            ("GET", format!("/images/{unknown}/thumbnail")),
            ("GET", "/images/..%2F..%2Fetc".to_string()),
        ] {
            let request = match method {
                "POST" => http.post(format!("{base}{path}")).bearer_auth(TOKEN),
                _ => http.get(format!("{base}{path}")),
            };
            let (status, body) = answer(request.send().await.unwrap()).await;
            assert_eq!(status, 404, "{label} {method} {path}: {body}");
            assert_eq!(body["error"]["code"], "NOT_FOUND");
        }
        mesh.stop().await;
    }
}

#[tokio::test]
async fn the_image_routes_are_open_without_a_token_when_none_is_set() {
    let backend = backends().remove(0);
    let mesh = start(&backend).await;
    let http = reqwest::Client::new();
    let jpeg = testing::jpeg(120, 90, 5, 80, None);
    let (content_type, body) = form(&[("a.jpg", &jpeg)], &[("source", "cam")]);
    let response = http
        .post(format!("{}/image_upload", mesh.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, image) = answer(response).await;
    assert_eq!(status, 201, "{image}");
    assert_eq!(
        (image["width"].as_i64(), image["height"].as_i64()),
        (Some(120), Some(90))
    );
    mesh.stop().await;
}

/// `outpost media` as a child process on `backend`, listening on `port`.
fn media_process(backend: &outpost_kit::testing::TestBackend, port: u16) -> tokio::process::Child {
    let config = backend.config();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_outpost"));
    command
        .arg("media")
        .arg("--media-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&config.data_dir)
        .arg("--log")
        .arg("warn")
        .env_clear()
        .env("OUTPOST_NAMESPACE", &config.namespace)
        .kill_on_drop(true);
    if let Some(url) = &config.database_url {
        command.env("OUTPOST_DATABASE_URL", url);
    }
    if let Some(endpoint) = &config.s3_endpoint {
        command
            .env("OUTPOST_S3_ENDPOINT", endpoint)
            .env("OUTPOST_S3_BUCKET", &config.s3_bucket)
            .env(
                "OUTPOST_S3_ACCESS_KEY",
                config.s3_access_key.as_deref().unwrap_or_default(),
            )
            .env(
                "OUTPOST_S3_SECRET_KEY",
                config.s3_secret_key.as_deref().unwrap_or_default(),
            );
    }
    command.spawn().expect("starting outpost media")
}

type Media = outpost_api::media::v1::media_service_client::MediaServiceClient<tonic::transport::Channel>;

async fn connect_media(port: u16) -> Media {
    use outpost_api::media::v1 as pb;
    for _ in 0..300 {
        if let Ok(mut client) = Media::connect(format!("http://127.0.0.1:{port}")).await
            && client.list_images(pb::ListImagesRequest::default()).await.is_ok()
        {
            return client;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("media did not start on port {port}");
}

#[tokio::test]
async fn acknowledged_clicks_survive_a_kill_9() {
    use outpost_api::media::v1::{self as pb, ReviewState};
    use std::sync::{Arc, Mutex};
    for backend in backends() {
        let label = backend.label;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = media_process(&backend, port);
        let mut media = connect_media(port).await;
        let mut names = Vec::new();
        for i in 0..40u64 {
            let metadata = testing::metadata("cam", Some(1_700_000_000 + i as i64));
            let bytes = testing::jpeg(16, 16, i, 80, None).into();
            let messages = testing::upload_messages(metadata, &bytes, 1 << 20);
            let response = media.upload_image(futures::stream::iter(messages)).await.unwrap();
            names.push(response.into_inner().image.unwrap().name);
        }

        // Clicks keep coming, each with its own time, until the process is killed mid-stream.
        let acknowledged: Arc<Mutex<Vec<(usize, i64, ReviewState)>>> = Arc::default();
        let clicking: Vec<_> = (0..8)
            .map(|worker| {
                let (mut media, names, acknowledged) = (media.clone(), names.clone(), acknowledged.clone());
                tokio::spawn(async move {
                    for k in 0.. {
                        let click = worker + 8 * k;
                        let image = click % names.len();
                        let state = if click % 2 == 0 {
                            ReviewState::Accepted
                        } else {
                            ReviewState::Rejected
                        };
                        let at = 1_750_000_000 + click as i64;
                        let request = pb::ReviewImageRequest {
                            name: names[image].clone(),
                            decision: state as i32,
                            review_time: Some(prost_types::Timestamp { seconds: at, nanos: 0 }),
                        };
                        match media.review_image(request).await {
                            Ok(_) => acknowledged.lock().unwrap().push((image, at, state)),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        while acknowledged.lock().unwrap().len() < 300 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        child.start_kill().unwrap(); // SIGKILL: no flush, no goodbye
        child.wait().await.unwrap();
        for task in clicking {
            task.await.unwrap();
        }
        let acknowledged = acknowledged.lock().unwrap().clone();

        let mut child = media_process(&backend, port);
        let mut media = connect_media(port).await;
        for (i, name) in names.iter().enumerate() {
            let Some(&(_, at, state)) = acknowledged.iter().filter(|c| c.0 == i).max_by_key(|c| c.1) else {
                continue;
            };
            let request = pb::GetImageRequest { name: name.clone() };
            let review = media
                .get_image(request)
                .await
                .unwrap()
                .into_inner()
                .image
                .unwrap()
                .review
                .unwrap();
            let kept = review.review_time.expect("a reviewed image has its time").seconds;
            // A later click may have been written without its answer arriving; never an earlier state.
            assert!(kept >= at, "{label}: {name} lost an acknowledged click ({kept} < {at})");
            if kept == at {
                assert_eq!(review.state(), state, "{label}: {name}");
            }
        }
        eprintln!(
            "{label}: {} acknowledged clicks kept across a kill -9",
            acknowledged.len()
        );
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
}
