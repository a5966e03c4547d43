//! Fetching a source's file over HTTP: one configured URL, a deadline, and a size bound
//! checked while the body streams in.

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
    let cause = |error: reqwest::Error| {
        if error.is_timeout() {
            return format!("no answer within {}s", timeout.as_secs());
        }
        let mut source: &dyn std::error::Error = &error;
        while let Some(next) = source.source() {
            source = next;
        }
        source.to_string()
    };
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {what} at {url}: {}", cause(e)))?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "{what} at {url} answered {status}");
    let too_large = || anyhow::anyhow!("{what}'s answer at {url} is larger than {} MiB", max >> 20);
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| anyhow::anyhow!("reading {what}'s answer at {url}: {}", cause(e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
