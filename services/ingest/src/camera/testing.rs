//! A camera feed served from memory on 127.0.0.1, in the feed's own format, for tests and
//! benchmarks of every crate: a day's rows, its detector boxes (404 when none are set) and
//! frames (bytes, a status, or a status once and then the bytes), with every request kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use super::feed::PATH_PREFIX;

/// What the feed answers for a frame.
#[derive(Clone, Debug)]
pub enum Frame {
    /// 200 with these bytes.
    Bytes(Bytes),
    /// This status, always.
    Status(u16),
    /// This status the first time, then 200 with the bytes.
    FailOnce(u16, Bytes),
}

#[derive(Default)]
struct Feed {
    days: Mutex<HashMap<String, Value>>,
    boxes: Mutex<HashMap<String, Value>>,
    frames: Mutex<HashMap<String, Frame>>,
    requests: Mutex<Vec<String>>,
    frame_delay: Mutex<Duration>,
}

/// A running feed; it stops with the runtime.
#[derive(Clone)]
pub struct FeedServer {
    /// `http://127.0.0.1:port`, the feed's base URL.
    pub base: String,
    feed: Arc<Feed>,
}

impl FeedServer {
    /// Starts an empty feed (every day answers 404 until set).
    pub async fn start() -> FeedServer {
        let feed = Arc::new(Feed::default());
        let app = axum::Router::new()
            .route("/db/hole_camera/{date}", get(day))
            .route("/db/hole_camera_resnet_detection/{date}", get(boxes))
            .route("/hole-cam/static/{*path}", get(frame))
            .layer(axum::middleware::from_fn_with_state(feed.clone(), record))
            .with_state(feed.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the feed");
        let addr = listener.local_addr().expect("the feed's address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FeedServer {
            base: format!("http://{addr}"),
            feed,
        }
    }

    /// Serves `rows` as the day `date` (`MM-DD-YYYY`).
    pub fn set_day(&self, date: &str, rows: Value) {
        self.feed.days.lock().unwrap().insert(date.to_string(), rows);
    }

    /// Serves `rows` as the detector boxes of `date` (`MM-DD-YYYY`).
    pub fn set_boxes(&self, date: &str, rows: Value) {
        self.feed.boxes.lock().unwrap().insert(date.to_string(), rows);
    }

    /// Serves a frame at its camera host `path` (`/mnt/nfs/hole-cam/…`).
    pub fn set_frame(&self, path: &str, frame: Frame) {
        let key = path.strip_prefix(PATH_PREFIX).unwrap_or(path).to_string();
        self.feed.frames.lock().unwrap().insert(key, frame);
    }

    /// Waits this long before answering each frame.
    pub fn set_frame_delay(&self, delay: Duration) {
        *self.feed.frame_delay.lock().unwrap() = delay;
    }

    /// The paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.feed.requests.lock().unwrap().clone()
    }
}

/// The camera host path of the frame taken at `timestamp_ms`.
pub fn frame_path(timestamp_ms: i64) -> String {
    format!(
        "{PATH_PREFIX}frames/snapshot_{}.{:03}.jpg",
        timestamp_ms / 1000,
        timestamp_ms % 1000
    )
}

/// A row of a day, as the feed answers it.
pub fn row(timestamp_ms: i64, path: &str, has_turtle: Value, prob: f64) -> Value {
    json!({
        "timestamp": timestamp_ms,
        "path": path,
        "hasTurtle": has_turtle,
        "xpos": -1,
        "ypos": -1,
        "prob": prob,
        "model_name": "hole-cam-classifier",
        "camera": "hole-cam",
    })
}

async fn record(
    State(feed): State<Arc<Feed>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    feed.requests.lock().unwrap().push(request.uri().path().to_string());
    next.run(request).await
}

async fn day(State(feed): State<Arc<Feed>>, Path(date): Path<String>) -> Response {
    match feed.days.lock().unwrap().get(&date) {
        Some(rows) => axum::Json(rows.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such day").into_response(),
    }
}

async fn boxes(State(feed): State<Arc<Feed>>, Path(date): Path<String>) -> Response {
    match feed.boxes.lock().unwrap().get(&date) {
        Some(rows) => axum::Json(rows.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no detections").into_response(),
    }
}

async fn frame(State(feed): State<Arc<Feed>>, Path(path): Path<String>) -> Response {
    let delay = *feed.frame_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = {
        let mut frames = feed.frames.lock().unwrap();
        match frames.get(&path).cloned() {
            Some(Frame::FailOnce(status, bytes)) => {
                frames.insert(path, Frame::Bytes(bytes));
                Frame::Status(status)
            }
            Some(other) => other,
            None => Frame::Status(404),
        }
    };
    match answer {
        Frame::Bytes(bytes) => ([(axum::http::header::CONTENT_TYPE, "image/jpeg")], bytes).into_response(),
        Frame::Status(code) | Frame::FailOnce(code, _) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    }
}
