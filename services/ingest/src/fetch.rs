//! Fetching from a source over HTTP: a client with deadlines, and bodies read with a size bound
//! checked while they stream in (every source that fetches reads its bodies here).

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;

/// An HTTP client whose requests end after `timeout`.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("outpost-ingest/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the http client")
}

/// The body of `url` (from the source `what`), at most `max` bytes.
pub async fn get_bounded(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    max: usize,
    timeout: Duration,
) -> anyhow::Result<Bytes> {
    let cause = |error: &reqwest::Error| {
        if error.is_timeout() {
            return format!("no answer within {}s", timeout.as_secs());
        }
        innermost(error)
    };
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {what} at {url}: {}", cause(&e)))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{what} at {url} answered {status}");
    read_bounded(&mut response, max).await.map_err(|error| match error {
        BodyError::TooLarge => anyhow::anyhow!("{what}'s answer at {url} is larger than {} MiB", max >> 20),
        BodyError::Read(e) => anyhow::anyhow!("reading {what}'s answer at {url}: {}", cause(&e)),
    })
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// It is larger than the bound (by its length header, or as it streamed in).
    TooLarge,
    /// The connection failed while it streamed in.
    Read(reqwest::Error),
}

/// The body of `response`, at most `max` bytes: refused from its length header when that is
/// already too large, else checked as each chunk comes in.
pub async fn read_bounded(response: &mut reqwest::Response, max: usize) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The innermost cause of a request error (the part that says what went wrong).
pub fn innermost(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
