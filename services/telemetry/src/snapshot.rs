//! Snapshots: a JSON document of the current values, stored through media's `CreateObject`
//! (kind `snapshot`), which is idempotent by content hash and so retried when media is down.

use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::media::v1::{CreateObjectRequest, StoredObject};
use outpost_kit::client::{Deadline, Traced, retry};
use outpost_kit::error::{Error, Result};
use outpost_kit::storage::Db;
use outpost_kit::time::now_micros;
use serde::Serialize;

use crate::names::check_optional_id;
use crate::readings::Reading;
use crate::store::{self, CurrentFilter};

/// Current values in one snapshot, at most.
pub const MAX_SNAPSHOT_READINGS: i64 = 50_000;
/// The media object kind of snapshots.
pub const OBJECT_KIND: &str = "snapshot";

#[derive(Serialize)]
struct Document<'a> {
    created: String,
    kind: Option<&'a str>,
    readings: Vec<DocumentReading<'a>>,
}

#[derive(Serialize)]
struct DocumentReading<'a> {
    device: &'a str,
    sensor: &'a str,
    kind: &'a str,
    unit: &'a str,
    value: f64,
    time: String,
}

/// A time as RFC 3339, UTC.
pub fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// The snapshot document: `{"created", "kind", "readings": [{"device", "sensor", "kind", "unit",
/// "value", "time"}]}`.
pub fn document(kind: Option<&str>, created: i64, readings: &[Reading]) -> Result<Vec<u8>> {
    let doc = Document {
        created: rfc3339(created),
        kind,
        readings: readings
            .iter()
            .map(|r| DocumentReading {
                device: &r.device,
                sensor: &r.sensor,
                kind: &r.kind,
                unit: &r.unit,
                value: r.value,
                time: rfc3339(r.time),
            })
            .collect(),
    };
    Ok(serde_json::to_vec(&doc).map_err(anyhow::Error::from)?)
}

/// Exports snapshots to media.
#[derive(Clone)]
pub struct Snapshots {
    db: Db,
    media: MediaServiceClient<Traced>,
    timeout: Duration,
}

impl Snapshots {
    /// Snapshots of the current values in `db`, stored through `media` (each call, retries
    /// included, answered within `timeout`).
    pub fn new(db: Db, media: MediaServiceClient<Traced>, timeout: Duration) -> Self {
        Self { db, media, timeout }
    }

    /// Stores a snapshot of the current values (of one kind, when not empty); returns the media
    /// object's name and the number of readings in it.
    pub async fn export(&self, kind: &str) -> Result<(String, i64)> {
        check_optional_id("kind", kind)?;
        let filter = CurrentFilter {
            kind,
            ..Default::default()
        };
        let readings = store::list_current(&self.db, filter, ("", ""), MAX_SNAPSHOT_READINGS + 1).await?;
        if readings.len() as i64 > MAX_SNAPSHOT_READINGS {
            return Err(Error::FailedPrecondition(format!(
                "more than {MAX_SNAPSHOT_READINGS} current values: export one kind at a time"
            )));
        }
        let content = document(Some(kind).filter(|k| !k.is_empty()), now_micros(), &readings)?;
        let request = CreateObjectRequest {
            object: Some(StoredObject {
                kind: OBJECT_KIND.into(),
                content_type: "application/json".into(),
                labels: [("service".to_string(), "telemetry".to_string())].into(),
                ..Default::default()
            }),
            content: content.into(),
        };
        let deadline = Deadline::after(self.timeout);
        let response = retry(deadline, || {
            let mut media = self.media.clone();
            let request = deadline.request(request.clone());
            async move { media.create_object(request).await }
        })
        .await
        .map_err(media_error)?;
        let object = response
            .into_inner()
            .object
            .ok_or_else(|| anyhow::anyhow!("media returned no object"))?;
        Ok((object.name, readings.len() as i64))
    }
}

fn media_error(status: tonic::Status) -> Error {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            Error::Unavailable(format!("media unavailable: {}", status.message()))
        }
        code => Error::Internal(anyhow::anyhow!(
            "media CreateObject failed: {code:?}: {}",
            status.message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_the_documented_shape() {
        let reading = Reading {
            device: "box".into(),
            sensor: "temperature".into(),
            value: 19.5,
            time: 1_733_054_400_000_000,
            unit: "°C".into(),
            kind: "temperature".into(),
        };
        let bytes = document(Some("temperature"), 1_733_054_401_500_000, &[reading]).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["created"], "2024-12-01T12:00:01.500Z");
        assert_eq!(doc["kind"], "temperature");
        assert_eq!(doc["readings"][0]["time"], "2024-12-01T12:00:00Z");
        assert_eq!(doc["readings"][0]["value"], 19.5);
        assert_eq!(doc["readings"][0]["unit"], "°C");
        let all = document(None, 0, &[]).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&all).unwrap()["kind"],
            serde_json::Value::Null
        );
    }
}
