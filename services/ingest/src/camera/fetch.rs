//! Fetching from the camera feed, and only from it: a day's rows, its detector boxes, and
//! frames, each request with a deadline and a size bound; frames are tried again after a
//! timeout, a lost connection or a 5xx ([`FRAME_TRIES`] tries in all, with backoff).

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::day::Day;
use crate::fetch::{BodyError, innermost};

/// How long fetching a day's rows or boxes may take.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one try of fetching a frame may take.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries of a frame, the first included.
pub const FRAME_TRIES: u32 = 3;
/// The wait after a frame's first failed try (doubled after each).
pub const FRAME_BACKOFF: Duration = Duration::from_millis(200);
/// Largest answer of a day's rows or boxes.
pub const MAX_LIST_BYTES: usize = 32 << 20;
/// Largest frame taken from the feed (media's default bound; media applies its own too).
pub const MAX_FRAME_BYTES: usize = 32 << 20;
/// Characters of an unexpected answer's body kept in the error.
const BODY_SHOWN: usize = 200;

/// The camera feed at a base URL.
#[derive(Clone, Debug)]
pub struct Feed {
    base: String,
    http: reqwest::Client,
}

/// Why a frame was not fetched.
#[derive(Debug)]
pub struct FrameError {
    /// Why, for the run's error list.
    pub message: String,
}

impl Feed {
    /// The feed at `base` (an http or https URL).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("outpost-ingest/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the camera feed's http client")?;
        Ok(Feed {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The URL of `path` (which starts with `/`) under the base.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A day's rows; any status but 200 is an error naming it and the start of the body.
    pub async fn rows<T: DeserializeOwned>(&self, day: &Day) -> anyhow::Result<Vec<T>> {
        let url = self.url(&format!("/db/hole_camera/{}", day.feed()));
        let (status, body) = self.get(&url, LIST_TIMEOUT, MAX_LIST_BYTES).await?;
        if status != StatusCode::OK {
            anyhow::bail!("the camera feed answered {status} for {url}: {}", start_of(&body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| anyhow::anyhow!("the camera feed's rows at {url} are not a JSON array of rows: {e}"))
    }

    /// A day's detector boxes; `None` when the feed has none (404). Any other status but 200
    /// is an error.
    pub async fn boxes<T: DeserializeOwned>(&self, day: &Day) -> anyhow::Result<Option<Vec<T>>> {
        let url = self.url(&format!("/db/hole_camera_resnet_detection/{}", day.feed()));
        let (status, body) = self.get(&url, LIST_TIMEOUT, MAX_LIST_BYTES).await?;
        match status {
            StatusCode::OK => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("the camera feed's boxes at {url} are not a JSON array of boxes: {e}")),
            StatusCode::NOT_FOUND => Ok(None),
            _ => anyhow::bail!("the camera feed answered {status} for {url}: {}", start_of(&body)),
        }
    }

    /// A frame's bytes at `path` under the base, tried again after a timeout, a lost
    /// connection or a 5xx.
    pub async fn frame(&self, path: &str) -> Result<Bytes, FrameError> {
        let url = self.url(path);
        let mut wait = FRAME_BACKOFF;
        let mut tries = 1;
        loop {
            let transient = match self.get(&url, FRAME_TIMEOUT, MAX_FRAME_BYTES).await {
                Ok((StatusCode::OK, body)) => return Ok(body),
                Ok((status, _)) if status.is_server_error() => format!("the feed answered {status}"),
                Ok((status, _)) => {
                    return Err(FrameError {
                        message: format!("the feed answered {status}"),
                    });
                }
                Err(err) if err.downcast_ref::<Transient>().is_some() => format!("{err:#}"),
                Err(err) => {
                    return Err(FrameError {
                        message: format!("{err:#}"),
                    });
                }
            };
            if tries >= FRAME_TRIES {
                return Err(FrameError {
                    message: format!("{transient} ({tries} tries)"),
                });
            }
            tracing::debug!(%url, tries, error = %transient, "frame tried again");
            tokio::time::sleep(wait).await;
            wait *= 2;
            tries += 1;
        }
    }

    /// GETs `url` within `timeout`: its status and body (at most `max` bytes).
    async fn get(&self, url: &str, timeout: Duration, max: usize) -> anyhow::Result<(StatusCode, Bytes)> {
        let fetch = async {
            let mut response = self.http.get(url).send().await.map_err(|e| transient(url, &e))?;
            let status = response.status();
            let body = crate::fetch::read_bounded(&mut response, max)
                .await
                .map_err(|error| match error {
                    BodyError::TooLarge => anyhow::anyhow!("{url} is larger than {max} bytes"),
                    BodyError::Read(e) => transient(url, &e),
                })?;
            Ok((status, body))
        };
        match tokio::time::timeout(timeout, fetch).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::Error::new(Transient(format!(
                "no answer from {url} within {}s",
                timeout.as_secs()
            )))),
        }
    }
}

/// An error worth another try: a timeout or a lost connection.
#[derive(Debug)]
struct Transient(String);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transient {}

/// A request error as [`Transient`], with its innermost cause.
fn transient(url: &str, error: &reqwest::Error) -> anyhow::Error {
    anyhow::Error::new(Transient(format!("cannot fetch {url}: {}", innermost(error))))
}

/// The start of a body, for an error message.
fn start_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_SHOWN * 4)]);
    let shown: String = text.chars().take(BODY_SHOWN).collect();
    if shown.is_empty() { "(empty body)".into() } else { shown }
}
