//! The openSenseMap source: fetches `{OUTPOST_OPENSENSEMAP_URL}/boxes?full=true` (only that
//! configured URL, with a timeout and a size cap), and loads each box's temperature as a
//! device and a reading into telemetry, as one run. Loads on demand and on a schedule.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use outpost_api::ingest::v1::Source;
use outpost_api::telemetry::v1 as pb;
use outpost_kit::error::{Error, Result};
use serde_json::Value;

use crate::boxes::{self, BoxDevice, BoxOutcome};
use crate::metrics;
use crate::progress::RunHandle;
use crate::reading::Reading;
use crate::runs::{Created, Loader, Runs};
use crate::telemetry::{Fate, Telemetry, is_transient};

/// Largest answer taken from openSenseMap.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long fetching the boxes may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Boxes written to telemetry per batch.
const BATCH: usize = 1000;
/// `CreateDevice` calls in flight at once.
const DEVICE_CONCURRENCY: usize = 16;
/// The `source` of devices made from boxes.
pub const DEVICE_SOURCE: &str = "opensensemap";

/// Loads openSenseMap boxes.
pub struct OpenSenseMap {
    url: String,
    http: reqwest::Client,
    telemetry: Telemetry,
    /// Devices this process created already (so a reload creates only new boxes).
    known: Mutex<HashSet<String>>,
}

impl OpenSenseMap {
    /// A loader of `{base_url}/boxes?full=true` writing into `telemetry`.
    pub fn new(base_url: &str, telemetry: Telemetry) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("outpost-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the http client")?;
        let url = format!("{}/boxes?full=true", base_url.trim_end_matches('/'));
        Ok(OpenSenseMap {
            url,
            http,
            telemetry,
            known: Mutex::new(HashSet::new()),
        })
    }

    /// The boxes of the configured URL.
    async fn fetch(&self) -> anyhow::Result<Vec<Value>> {
        let url = &self.url;
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach openSenseMap at {url}: {}", cause(&e)))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "openSenseMap at {url} answered {status}");
        let too_large = || anyhow::anyhow!("openSenseMap's answer is larger than {} MiB", MAX_RESPONSE_BYTES >> 20);
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("reading openSenseMap's answer: {}", cause(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|e| anyhow::anyhow!("openSenseMap's answer is not a JSON array of boxes: {e}"))
    }

    /// Writes a batch: devices new to this process, then the readings.
    async fn write(&self, run: &RunHandle, batch: &mut Vec<(BoxDevice, Reading)>) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let new: Vec<BoxDevice> = {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            batch
                .iter()
                .map(|(device, _)| device)
                .filter(|d| !known.contains(&d.id))
                .cloned()
                .collect()
        };
        let results: Vec<(String, std::result::Result<bool, tonic::Status>)> = futures::stream::iter(new)
            .map(|device| async move {
                let result = self.create_device(&device).await;
                (device.id, result)
            })
            .buffer_unordered(DEVICE_CONCURRENCY)
            .collect()
            .await;
        for (id, result) in results {
            match result {
                Ok(_) => {
                    self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
                }
                Err(status) if is_transient(&status) => {
                    anyhow::bail!("telemetry did not create device {id}: {}", status.message())
                }
                // Readings create the device anyway (without its name and place).
                Err(status) => tracing::warn!(device = %id, error = %status.message(), "device not created"),
            }
        }
        let readings: Vec<pb::Reading> = batch.iter().map(|(_, reading)| reading.to_telemetry()).collect();
        let fates = self
            .telemetry
            .write_bisecting(&readings)
            .await
            .map_err(|s| anyhow::anyhow!("telemetry did not take readings: {}", s.message()))?
            .fates;
        for (index, fate) in fates.iter().enumerate() {
            let why = match fate {
                Fate::Written => continue,
                Fate::Refused(status) => format!("telemetry refused it: {}", status.message()),
                Fate::Failed(status) => format!("telemetry failed on it: {}", status.message()),
            };
            run.add_failed(format!("box {}", batch[index].0.id), why);
        }
        let committed = fates.iter().filter(|fate| fate.is_written()).count() as i64;
        run.add_created(committed);
        metrics::readings(metrics::source::OPENSENSEMAP, committed as u64);
        batch.clear();
        Ok(())
    }

    async fn create_device(&self, device: &BoxDevice) -> std::result::Result<bool, tonic::Status> {
        let pb = pb::Device {
            display_name: device.name.clone(),
            source: DEVICE_SOURCE.to_string(),
            latitude: device.latitude.unwrap_or_default(),
            longitude: device.longitude.unwrap_or_default(),
            ..Default::default()
        };
        self.telemetry.create_device(&device.id, pb).await
    }
}

#[async_trait::async_trait]
impl Loader for OpenSenseMap {
    fn check_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<()> {
        match parameters.keys().next() {
            None => Ok(()),
            Some(key) => Err(Error::invalid(
                format!("run.parameters.{key}"),
                "openSenseMap runs take no parameters (the source URL is configured by OUTPOST_OPENSENSEMAP_URL)",
            )),
        }
    }

    async fn load(&self, run: &RunHandle) -> anyhow::Result<()> {
        let boxes = tokio::select! {
            boxes = self.fetch() => boxes?,
            () = run.stopped() => return Ok(()),
        };
        run.set_total(boxes.len() as i64);
        let mut batch = Vec::with_capacity(BATCH);
        for (index, record) in boxes.iter().enumerate() {
            if run.should_stop() {
                return Ok(());
            }
            match boxes::classify(record, index) {
                BoxOutcome::Reading(device, reading) => batch.push((device, reading)),
                BoxOutcome::Skipped(_) => run.add_skipped(1),
                BoxOutcome::Failed(item, message) => run.add_failed(item, message),
            }
            run.add_done(1);
            if batch.len() >= BATCH {
                self.write(run, &mut batch).await?;
            }
            run.checkpoint().await?;
        }
        self.write(run, &mut batch).await
    }
}

/// The innermost cause of an HTTP error (`connection refused`, `operation timed out`, …).
fn cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {}s", FETCH_TIMEOUT.as_secs());
    }
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// Creates an openSenseMap run every `every` (the first right away) until `stop` resolves. A
/// load in progress, or started by any replica within the last nine tenths of `every`, is
/// joined instead, so replicas with the same schedule load about once per `every` together.
pub async fn schedule(runs: Runs, every: Duration, stop: impl Future<Output = ()> + Send) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => return,
        }
        let since = outpost_kit::time::now_micros() - crate::runs::micros(every * 9 / 10);
        match runs.create(Source::Opensensemap, BTreeMap::new(), Some(since)).await {
            Ok(Created::New(run)) => tracing::info!(run = %run.id, "scheduled openSenseMap load started"),
            Ok(Created::Joined(run)) => {
                tracing::info!(run = %run.id, "scheduled openSenseMap load joins one started already")
            }
            Ok(Created::RecentlyFailed { run, retry_in }) => tracing::info!(
                run = %run.id, ?retry_in, "scheduled openSenseMap load not started: the last one failed recently"
            ),
            Err(err) => tracing::warn!(error = %err, "scheduled openSenseMap load not started"),
        }
    }
}

/// The loader as the runs' loader of its source.
pub fn loader(osem: OpenSenseMap) -> (Source, Arc<dyn Loader>) {
    (Source::Opensensemap, Arc::new(osem))
}
