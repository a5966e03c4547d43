//! The NASA MMGIS source: waypoints (`SOURCE_MMGIS_WAYPOINTS`) and the traverse
//! (`SOURCE_MMGIS_TRAVERSE`) of a rover, from `{OUTPOST_MMGIS_URL}/M20_waypoints.json` and
//! `…/M20_traverse.json` (only that configured URL, with a deadline and a size bound), or from
//! a file uploaded with UploadSource (kept in ingest's object store under its SHA-256, so a
//! run taken over by another replica reads it too). Each load is a run: features parsed one
//! by one (a bad one is counted failed, the rest load), written to telemetry in batches, and
//! counted created, updated, or skipped when telemetry already had them as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use outpost_api::ingest::v1::Source;
use outpost_kit::error::{Error, Result};
use outpost_kit::storage::Objects;
use prost::Message;
use serde_json::Value as Json;

use crate::fetch;
use crate::mmgis_features::{self, item};
use crate::progress::RunHandle;
use crate::runs::Loader;
use crate::telemetry::{Telemetry, Upserted, is_transient};

/// Largest file taken, fetched or uploaded.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// How long fetching a file may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// The track loaded when a run names none.
pub const DEFAULT_TRACK: &str = "perseverance";
/// Features written to telemetry per call, at most.
const BATCH: usize = 1000;
/// Encoded bytes written to telemetry per call, at most (its messages are bounded).
const BATCH_BYTES: usize = 3 * 1024 * 1024;

/// Which layer a run loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Point features: waypoints.
    Waypoints,
    /// LineString features: traverse segments.
    Traverse,
}

impl Layer {
    /// The file of the layer under the MMGIS URL.
    pub fn file(self) -> &'static str {
        match self {
            Layer::Waypoints => "M20_waypoints.json",
            Layer::Traverse => "M20_traverse.json",
        }
    }

    /// The run source of the layer.
    pub fn source(self) -> Source {
        match self {
            Layer::Waypoints => Source::MmgisWaypoints,
            Layer::Traverse => Source::MmgisTraverse,
        }
    }

    /// The layer of a run source, when it is one.
    pub fn of(source: Source) -> Option<Layer> {
        match source {
            Source::MmgisWaypoints => Some(Layer::Waypoints),
            Source::MmgisTraverse => Some(Layer::Traverse),
            _ => None,
        }
    }
}

/// The object key of an uploaded file with SHA-256 `hash`.
pub fn upload_key(hash: &str) -> String {
    format!("uploads/{hash}.json")
}

/// What both layers share: where files come from, and where they go.
pub struct Mmgis {
    base_url: String,
    http: reqwest::Client,
    telemetry: Telemetry,
    objects: Objects,
}

impl Mmgis {
    /// Files from `base_url` (or uploaded into `objects`), written into `telemetry`.
    pub fn new(base_url: &str, telemetry: Telemetry, objects: Objects) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Mmgis {
            base_url: base_url.trim_end_matches('/').to_string(),
            http: fetch::client(FETCH_TIMEOUT)?,
            telemetry,
            objects,
        }))
    }

    /// The runs' loaders of both layers.
    pub fn loaders(self: &Arc<Self>) -> [(Source, Arc<dyn Loader>); 2] {
        [Layer::Waypoints, Layer::Traverse].map(|layer| {
            let loader: Arc<dyn Loader> = Arc::new(LayerLoader {
                mmgis: self.clone(),
                layer,
            });
            (layer.source(), loader)
        })
    }

    /// The file of a run: uploaded (parameter `upload`), or fetched.
    async fn file(&self, layer: Layer, parameters: &BTreeMap<String, String>) -> anyhow::Result<Bytes> {
        if let Some(hash) = parameters.get("upload") {
            return self
                .objects
                .get(&upload_key(hash))
                .await
                .context("reading the uploaded file")?
                .ok_or_else(|| anyhow::anyhow!("the uploaded file {hash} is no longer stored; upload it again"));
        }
        let url = format!("{}/{}", self.base_url, layer.file());
        fetch::get_bounded(&self.http, &url, "MMGIS", MAX_FILE_BYTES, FETCH_TIMEOUT).await
    }
}

/// Checks an MMGIS run's parameters: `track` (an id) and `upload` (set by UploadSource).
pub fn check_parameters(parameters: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in parameters {
        match key.as_str() {
            "track" if outpost_kit::ids::is_valid_id(value) => {}
            "track" => return Err(Error::invalid("run.parameters.track", outpost_kit::ids::ID_RULE)),
            "upload" if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {}
            "upload" => {
                return Err(Error::invalid(
                    "run.parameters.upload",
                    "must be the SHA-256 of a file sent with UploadSource",
                ));
            }
            _ => {
                return Err(Error::invalid(
                    format!("run.parameters.{key}"),
                    "MMGIS runs take `track` (and `upload`, set by UploadSource)",
                ));
            }
        }
    }
    Ok(())
}

struct LayerLoader {
    mmgis: Arc<Mmgis>,
    layer: Layer,
}

#[async_trait::async_trait]
impl Loader for LayerLoader {
    fn check_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<()> {
        check_parameters(parameters)
    }

    async fn load(&self, run: &RunHandle) -> anyhow::Result<()> {
        let parameters = run.parameters();
        let track = format!(
            "tracks/{}",
            parameters.get("track").map_or(DEFAULT_TRACK, String::as_str)
        );
        let file = tokio::select! {
            file = self.mmgis.file(self.layer, &parameters) => file?,
            () = run.stopped() => return Ok(()),
        };
        let features =
            mmgis_features::features(&file).map_err(|e| anyhow::anyhow!("the {} file is {e}", self.layer.file()))?;
        drop(file);
        run.set_total(features.len() as i64);
        let telemetry = &self.mmgis.telemetry;
        match self.layer {
            Layer::Waypoints => {
                load_features(run, &features, "RMC", mmgis_features::waypoint, |batch| {
                    telemetry.upsert_waypoints(&track, batch)
                })
                .await
            }
            Layer::Traverse => {
                load_features(run, &features, "toRMC", mmgis_features::segment, |batch| {
                    telemetry.upsert_traverse(&track, batch)
                })
                .await
            }
        }
    }
}

/// Parses each feature (failing the bad ones alone) and writes the others in batches. A
/// batch telemetry refuses is written again one by one, so only the refused features fail.
async fn load_features<T, F, Fut>(
    run: &RunHandle,
    features: &[Json],
    id_key: &str,
    parse: fn(&Json) -> std::result::Result<T, String>,
    write: F,
) -> anyhow::Result<()>
where
    T: Message + Clone,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = std::result::Result<Upserted, tonic::Status>>,
{
    let mut batch: Vec<(usize, T)> = Vec::new();
    let mut bytes = 0;
    for (index, feature) in features.iter().enumerate() {
        if run.should_stop() {
            return Ok(());
        }
        match parse(feature) {
            Ok(parsed) => {
                bytes += parsed.encoded_len() + 8;
                batch.push((index, parsed));
            }
            Err(message) => {
                run.add_failed(item(index, feature, id_key), message);
                run.add_done(1);
            }
        }
        if batch.len() >= BATCH || bytes >= BATCH_BYTES || index + 1 == features.len() {
            write_batch(run, features, id_key, std::mem::take(&mut batch), &write).await?;
            bytes = 0;
            run.checkpoint().await?;
        }
    }
    write_batch(run, features, id_key, batch, &write).await
}

async fn write_batch<T, F, Fut>(
    run: &RunHandle,
    features: &[Json],
    id_key: &str,
    batch: Vec<(usize, T)>,
    write: &F,
) -> anyhow::Result<()>
where
    T: Clone,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = std::result::Result<Upserted, tonic::Status>>,
{
    if batch.is_empty() {
        return Ok(());
    }
    let count = batch.len() as i64;
    match write(batch.iter().map(|(_, t)| t.clone()).collect()).await {
        Ok(done) => run.add_upserted(done.created, done.updated, done.unchanged),
        Err(status) if is_transient(&status) => {
            anyhow::bail!("telemetry did not take the features: {}", status.message())
        }
        Err(_) => {
            for (index, one) in batch {
                match write(vec![one]).await {
                    Ok(done) => run.add_upserted(done.created, done.updated, done.unchanged),
                    Err(status) if is_transient(&status) => {
                        anyhow::bail!("telemetry did not take the features: {}", status.message())
                    }
                    Err(status) => run.add_failed(
                        item(index, &features[index], id_key),
                        format!("telemetry refused it: {}", status.message()),
                    ),
                }
            }
        }
    }
    run.add_done(count);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_a_track_and_an_upload() {
        let params = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        check_parameters(&params("track", "perseverance")).unwrap();
        check_parameters(&params("upload", &"ab".repeat(32))).unwrap();
        let err = check_parameters(&params("upload", "../x")).unwrap_err();
        assert!(err.to_string().starts_with("run.parameters.upload:"), "{err}");
        let err = check_parameters(&params("url", "http://x")).unwrap_err();
        assert!(err.to_string().starts_with("run.parameters.url:"), "{err}");
        assert_eq!(Layer::of(Source::MmgisTraverse), Some(Layer::Traverse));
        assert_eq!(Layer::of(Source::Opensensemap), None);
    }
}
