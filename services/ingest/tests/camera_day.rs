//! Camera day loads end to end: a camera feed served by the test (rows, detector boxes and
//! JPEGs made here), loaded by ingest into a real media, followed through the runs API, on
//! every test backend.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as pb, RunState, Source};
use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::media::v1::{self as mpb, download_image_response::Part};
use outpost_ingest::IngestConfig;
use outpost_ingest::camera::testing::{FeedServer, Frame, frame_path, row};
use outpost_kit::testing::{TestBackend, backends};
use serde_json::{Value, json};
use tokio::sync::watch;
use tonic::transport::Channel;

use common::{Mesh, eventually, start_with};

/// 2025-02-05 00:00:00 UTC, ms.
const DAY_START_MS: i64 = 1_738_713_600_000;
const DAY: &str = "02-05-2025";

/// Media on the backend, then telemetry and ingest pointing at it and at `feed`.
async fn start(
    backend: &TestBackend,
    feed: &FeedServer,
    tweak: impl FnOnce(&mut IngestConfig),
) -> (Mesh, MediaServiceClient<Channel>, watch::Sender<bool>) {
    let stop = watch::Sender::new(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let media_url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = backend.config();
    config.media_addr = listener.local_addr().unwrap();
    let mut rx = stop.subscribe();
    tokio::spawn(outpost_media::serve_on(
        config,
        outpost_media::MediaConfig::default(),
        listener,
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    outpost_kit::client::wait_serving(&media_url, outpost_api::names::MEDIA, Duration::from_secs(30))
        .await
        .unwrap();
    let media = MediaServiceClient::new(
        Channel::from_shared(media_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .max_decoding_message_size(64 << 20);
    let mut ingest = IngestConfig {
        camera_feed_url: feed.base.clone(),
        load_retry_seconds: 0,
        ..IngestConfig::default()
    };
    tweak(&mut ingest);
    let mesh = start_with(backend, ingest, |config| config.media_url = Some(media_url)).await;
    (mesh, media, stop)
}

/// A distinct small JPEG for frame `i`.
fn jpeg(i: u64) -> Bytes {
    Bytes::from(outpost_media::testing::jpeg(64, 48, i, 80, None))
}

/// Serves a day of `n` frames (one a minute from the day's start) with probability `i / n`;
/// returns each frame's bytes by timestamp (ms).
fn serve_day(feed: &FeedServer, n: i64) -> HashMap<i64, Bytes> {
    let mut rows = Vec::new();
    let mut frames = HashMap::new();
    for i in 0..n {
        let at = DAY_START_MS + i * 60_000;
        let bytes = jpeg(i as u64);
        feed.set_frame(&frame_path(at), Frame::Bytes(bytes.clone()));
        rows.push(row(at, &frame_path(at), json!(i % 2), i as f64 / n as f64));
        frames.insert(at, bytes);
    }
    feed.set_day(DAY, Value::Array(rows));
    frames
}

async fn create(
    ingest: &IngestServiceClient<Channel>,
    parameters: &[(&str, &str)],
) -> Result<pb::CreateRunResponse, tonic::Status> {
    let run = pb::Run {
        source: Source::CameraDay as i32,
        parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let request = pb::CreateRunRequest {
        run: Some(run),
        min_create_time: None,
    };
    Ok(ingest.clone().create_run(request).await?.into_inner())
}

/// Waits until the run ended; returns it.
async fn ended(ingest: &IngestServiceClient<Channel>, name: &str) -> pb::Run {
    eventually(Duration::from_secs(60), "the run to end", || async {
        let request = pb::GetRunRequest { name: name.to_string() };
        let run = ingest.clone().get_run(request).await.unwrap().into_inner().run.unwrap();
        matches!(
            run.state(),
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
        .then_some(run)
    })
    .await
}

async fn load(ingest: &IngestServiceClient<Channel>, parameters: &[(&str, &str)]) -> pb::Run {
    let run = create(ingest, parameters).await.unwrap().run.unwrap();
    ended(ingest, &run.name).await
}

fn counts(run: &pb::Run) -> (i64, i64, i64, i64) {
    let c = run.counts.unwrap();
    (c.created, c.updated, c.skipped, c.failed)
}

/// Every camera image of the day, by taken time (ms).
async fn stored(media: &MediaServiceClient<Channel>) -> HashMap<i64, mpb::Image> {
    let request = mpb::ListImagesRequest {
        page_size: 1000,
        source: "camera".into(),
        start_time: Some(prost_types::Timestamp {
            seconds: DAY_START_MS / 1000,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: DAY_START_MS / 1000 + 86_400,
            nanos: 0,
        }),
        ..Default::default()
    };
    let page = media.clone().list_images(request).await.unwrap().into_inner();
    assert!(page.next_page_token.is_empty(), "one page");
    page.images
        .into_iter()
        .map(|image| {
            let t = image.taken_time.unwrap();
            (t.seconds * 1000 + i64::from(t.nanos) / 1_000_000, image)
        })
        .collect()
}

async fn download(media: &MediaServiceClient<Channel>, name: &str) -> Vec<u8> {
    let request = mpb::DownloadImageRequest {
        name: name.to_string(),
        variant: 0,
    };
    let mut stream = media.clone().download_image(request).await.unwrap().into_inner();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(Part::Chunk(chunk)) = message.part {
            bytes.extend_from_slice(&chunk);
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_day_of_200_frames_loads_once_and_reloads_only_changes() {
    for backend in backends() {
        let label = backend.label;
        let feed = FeedServer::start().await;
        let frames = serve_day(&feed, 200);
        let (mesh, media, _stop) = start(&backend, &feed, |_| {}).await;

        let run = load(&mesh.ingest, &[("date", DAY)]).await;
        assert_eq!(run.state(), RunState::Succeeded, "{label}: {}", run.failure);
        assert_eq!(counts(&run), (200, 0, 0, 0), "{label}: {:?}", run.errors);
        assert_eq!(
            (run.progress.unwrap().done, run.progress.unwrap().total),
            (200, 200),
            "{label}"
        );
        assert_eq!(run.parameters["date"], "2025-02-05", "{label}: stored in one spelling");
        let images = stored(&media).await;
        assert_eq!(images.len(), 200, "{label}");
        for (at, image) in &images {
            assert_eq!(
                download(&media, &image.name).await,
                frames[at].to_vec(),
                "{label}: frame {at} byte for byte"
            );
            let i = (at - DAY_START_MS) / 60_000;
            let detection = image.detection.clone().unwrap();
            assert_eq!(
                (detection.probability, detection.has_subject),
                (i as f64 / 200.0, i % 2 == 1),
                "{label}"
            );
            assert_eq!(detection.model, "hole-cam-classifier");
        }

        // The same day again, in the other spelling: the succeeded load answers, nothing is fetched.
        let before = feed.requests().len();
        let again = create(&mesh.ingest, &[("date", "2025-02-05")]).await.unwrap();
        assert!(again.joined, "{label}");
        assert_eq!(again.run.unwrap().name, run.name, "{label}");
        assert_eq!(
            feed.requests().len(),
            before,
            "{label}: a loaded day is not fetched again"
        );

        // A refresh after the feed changed three probabilities: three updated, no new rows,
        // and unchanged frames are not downloaded again.
        let mut rows: Vec<Value> = (0..200)
            .map(|i| {
                let at = DAY_START_MS + i * 60_000;
                let prob = if i < 3 { 0.99 } else { i as f64 / 200.0 };
                row(at, &frame_path(at), json!(i % 2), prob)
            })
            .collect();
        rows.push(rows[10].clone()); // a repeated row is stored once
        feed.set_day(DAY, Value::Array(rows));
        let before = feed.requests().len();
        let refreshed = load(&mesh.ingest, &[("date", DAY), ("refresh", "true")]).await;
        assert_ne!(refreshed.name, run.name, "{label}");
        assert_eq!(counts(&refreshed), (0, 3, 198, 0), "{label}: {:?}", refreshed.errors);
        let fetched: Vec<String> = feed.requests()[before..]
            .iter()
            .filter(|p| p.starts_with("/hole-cam/"))
            .cloned()
            .collect();
        assert_eq!(
            fetched.len(),
            3,
            "{label}: only changed frames are downloaded: {fetched:?}"
        );
        let images = stored(&media).await;
        assert_eq!(images.len(), 200, "{label}: no new rows");
        assert_eq!(
            images[&DAY_START_MS].detection.clone().unwrap().probability,
            0.99,
            "{label}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_frames_are_counted_and_named_while_the_run_succeeds() {
    for backend in backends() {
        let label = backend.label;
        let feed = FeedServer::start().await;
        let mut rows = Vec::new();
        for i in 0..6 {
            let at = DAY_START_MS + i * 60_000;
            rows.push(row(at, &frame_path(at), json!(0), 0.1));
        }
        for i in [0, 1] {
            let at = DAY_START_MS + i * 60_000;
            feed.set_frame(&frame_path(at), Frame::Bytes(jpeg(i as u64)));
        }
        let at = |i: i64| DAY_START_MS + i * 60_000;
        // 2: nothing there (404); 3: 500 once, then the bytes; 4: not an image.
        feed.set_frame(&frame_path(at(3)), Frame::FailOnce(500, jpeg(3)));
        feed.set_frame(
            &frame_path(at(4)),
            Frame::Bytes(Bytes::from_static(b"<html>not a picture</html>")),
        );
        // 5: a path that climbs out of the frames.
        rows[5]["path"] = json!("/mnt/nfs/hole-cam/../../../etc/passwd");
        feed.set_day(DAY, Value::Array(rows));
        let (mesh, media, _stop) = start(&backend, &feed, |_| {}).await;

        let run = load(&mesh.ingest, &[("date", DAY)]).await;
        assert_eq!(run.state(), RunState::Succeeded, "{label}: {}", run.failure);
        assert_eq!(counts(&run), (3, 0, 0, 3), "{label}: {:?}", run.errors);
        let errors: HashMap<String, String> = run.errors.iter().map(|e| (e.item.clone(), e.message.clone())).collect();
        assert!(errors[&frame_path(at(2))].contains("404"), "{label}: {errors:?}");
        assert!(
            errors[&frame_path(at(4))].contains("media refused it"),
            "{label}: {errors:?}"
        );
        assert!(
            errors["/mnt/nfs/hole-cam/../../../etc/passwd"].contains("not fetched"),
            "{label}: {errors:?}"
        );
        let requests = feed.requests();
        assert!(
            requests.iter().all(|p| !p.contains("..") && !p.contains("passwd")),
            "{label}: {requests:?}"
        );
        let tries_of_3 = requests
            .iter()
            .filter(|p| p.ends_with(&frame_path(at(3))["/mnt/nfs/hole-cam/".len()..]))
            .count();
        assert_eq!(tries_of_3, 2, "{label}: the 500 is tried again once");
        let images = stored(&media).await;
        assert_eq!(images.len(), 3, "{label}");
        assert!(images.contains_key(&at(3)), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_has_turtle_shapes_and_detector_boxes_are_stored() {
    for backend in backends() {
        let label = backend.label;
        let feed = FeedServer::start().await;
        let shapes = [
            json!(1),
            json!({"value": 1}),
            json!({"value": 0}),
            Value::Null,
            json!(-1),
            json!(0),
        ];
        let mut rows = Vec::new();
        for (i, shape) in shapes.iter().enumerate() {
            let at = DAY_START_MS + i as i64 * 60_000;
            feed.set_frame(&frame_path(at), Frame::Bytes(jpeg(i as u64)));
            rows.push(row(at, &frame_path(at), shape.clone(), if i == 5 { -1.0 } else { 0.5 }));
        }
        feed.set_day(DAY, Value::Array(rows));
        // Frames are 64 × 48: the better box of frame 0 is its middle quarter.
        feed.set_boxes(
            DAY,
            json!([
                {"timestamp": DAY_START_MS, "model_name": "resnet", "path": "p", "prob": 0.3, "class_name": "turtle",
                 "class_number": 1, "x1": 0, "y1": 0, "x2": 8, "y2": 8},
                {"timestamp": DAY_START_MS, "model_name": "resnet", "path": "p", "prob": 0.9, "class_name": "turtle",
                 "class_number": 1, "x1": 16, "y1": 12, "x2": 48, "y2": 36},
            ]),
        );
        let (mesh, media, _stop) = start(&backend, &feed, |_| {}).await;

        let run = load(&mesh.ingest, &[("date", "2025-02-05")]).await;
        assert_eq!(counts(&run), (6, 0, 0, 0), "{label}: {:?} {}", run.errors, run.failure);
        let images = stored(&media).await;
        let subject: Vec<bool> = (0..6)
            .map(|i| {
                images[&(DAY_START_MS + i * 60_000)]
                    .detection
                    .clone()
                    .unwrap()
                    .has_subject
            })
            .collect();
        assert_eq!(subject, [true, true, false, false, false, false], "{label}");
        let first = images[&DAY_START_MS].detection.clone().unwrap();
        let b = first.r#box.unwrap();
        assert_eq!((b.x, b.y, b.width, b.height), (0.25, 0.25, 0.5, 0.5), "{label}");
        assert!(
            images[&(DAY_START_MS + 60_000)]
                .detection
                .clone()
                .unwrap()
                .r#box
                .is_none(),
            "{label}"
        );
        assert_eq!(
            images[&(DAY_START_MS + 5 * 60_000)]
                .detection
                .clone()
                .unwrap()
                .probability,
            0.0,
            "{label}: -1 is unknown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn future_dates_and_non_dates_are_refused_and_an_empty_day_is_zero() {
    for backend in backends() {
        let label = backend.label;
        let feed = FeedServer::start().await;
        feed.set_day(DAY, json!([]));
        feed.set_day("02-06-2025", json!({"error": "database down"}));
        let (mesh, _media, _stop) = start(&backend, &feed, |_| {}).await;

        for bad in ["12-31-2999", "2025-02-30", "yesterday"] {
            let status = create(&mesh.ingest, &[("date", bad)]).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{label}: {bad}");
            assert!(
                status.message().starts_with("run.parameters.date: "),
                "{label}: {}",
                status.message()
            );
        }
        let status = create(&mesh.ingest, &[("day", DAY)]).await.unwrap_err();
        assert!(
            status.message().starts_with("run.parameters.day: "),
            "{label}: {}",
            status.message()
        );

        let run = load(&mesh.ingest, &[("date", DAY)]).await;
        assert_eq!(run.state(), RunState::Succeeded, "{label}: {}", run.failure);
        assert_eq!(
            (counts(&run), run.progress.unwrap().total),
            ((0, 0, 0, 0), 0),
            "{label}"
        );

        // Not rows: the run fails, saying what the feed answered.
        let run = load(&mesh.ingest, &[("date", "02-06-2025")]).await;
        assert_eq!(run.state(), RunState::Failed, "{label}");
        assert!(
            run.failure.contains("not a JSON array of rows"),
            "{label}: {}",
            run.failure
        );
        // A day the feed does not know: its status and the start of its body.
        let run = load(&mesh.ingest, &[("date", "02-07-2025")]).await;
        assert_eq!(run.state(), RunState::Failed, "{label}");
        assert!(
            run.failure.contains("404 Not Found") && run.failure.contains("no such day"),
            "{label}: {}",
            run.failure
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_join_one_load_and_a_crashed_load_completes_without_duplicates() {
    for backend in backends() {
        let label = backend.label;
        let feed = FeedServer::start().await;
        serve_day(&feed, 40);
        feed.set_frame_delay(Duration::from_millis(100));
        let (mut mesh, media, _stop) = start(&backend, &feed, |config| {
            config.run_lease_seconds = 1;
            config.camera_concurrency = 2;
        })
        .await;
        let replica = mesh.start_replica().await;

        // Two replicas asked at once: one run.
        let (a, b) = tokio::join!(
            create(&mesh.ingest, &[("date", DAY)]),
            create(&replica.ingest, &[("date", DAY)])
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.run.as_ref().unwrap().name, b.run.as_ref().unwrap().name, "{label}");
        assert!(a.joined != b.joined, "{label}: one started it, the other joined");
        let name = a.run.unwrap().name;
        drop(replica);

        // The replica running it may be either; crash ours mid-load, then start again.
        eventually(Duration::from_secs(30), "some frames stored", || async {
            (stored(&media).await.len() >= 4).then_some(())
        })
        .await;
        mesh.crash_ingest().await;
        mesh.restart_ingest().await;
        let run = ended(&mesh.ingest, &name).await;
        assert_eq!(run.state(), RunState::Succeeded, "{label}: {}", run.failure);
        let (created, updated, skipped, failed) = counts(&run);
        assert_eq!(
            (created + updated + skipped, failed),
            (40, 0),
            "{label}: {:?}",
            run.counts
        );
        assert_eq!(stored(&media).await.len(), 40, "{label}: no duplicates");
    }
}
