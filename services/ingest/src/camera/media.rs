//! The media client camera loads store frames through: the frames already stored in a time
//! range, and `UploadImage` (idempotent for a source and taken time, so retried while media is
//! unreachable).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::media::v1::{self as pb, upload_image_request::Part};
use outpost_kit::client::{self, Deadline, Traced};
use outpost_kit::time::{from_timestamp, to_timestamp};
use tonic::Status;

/// Chunks of an upload, at most (media's bound).
const CHUNK: usize = 1 << 20;
/// Images listed per call.
const PAGE: i32 = 1000;

/// A stored frame: what decides whether a load changes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// Its detection.
    pub detection: Option<pb::Detection>,
    /// Its size in pixels.
    pub width: u32,
    /// Its size in pixels.
    pub height: u32,
}

/// A client of media; cheap to clone.
#[derive(Clone, Debug)]
pub struct Media {
    client: MediaServiceClient<Traced>,
    channel: tonic::transport::Channel,
    timeout: Duration,
}

impl Media {
    /// A client of media at `endpoint` whose calls have the deadline `timeout`; connects lazily.
    pub fn connect(endpoint: &str, timeout: Duration, token: &outpost_kit::auth::Token) -> anyhow::Result<Self> {
        let channel = client::channel(endpoint, timeout)?;
        let client = MediaServiceClient::new(client::outbound(channel.clone(), "ingest", token))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(2 << 20);
        Ok(Media {
            client,
            channel,
            timeout,
        })
    }

    /// Media as a dependency in health: camera days store their frames there, the rest of
    /// ingest does without it, so it is optional (degraded, not unready, while it is down).
    pub fn dependency(&self) -> outpost_kit::storage::Dependency {
        client::peer_dependency("media", self.channel.clone(), outpost_api::names::MEDIA).optional()
    }

    /// The images of `source` taken in `[start, end)` (µs), by taken time (µs).
    pub async fn stored(&self, source: &str, start: i64, end: i64) -> Result<HashMap<i64, Stored>, Status> {
        let mut stored = HashMap::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListImagesRequest {
                page_size: PAGE,
                page_token: page_token.clone(),
                source: source.to_string(),
                start_time: Some(to_timestamp(start)),
                end_time: Some(to_timestamp(end)),
                ..Default::default()
            };
            let deadline = Deadline::after(self.timeout);
            let page = client::retry(deadline, || {
                let mut media = self.client.clone();
                let request = deadline.request(request.clone());
                async move { media.list_images(request).await }
            })
            .await?
            .into_inner();
            for image in page.images {
                let Some(taken) = image
                    .taken_time
                    .as_ref()
                    .and_then(|t| from_timestamp("taken_time", t).ok())
                else {
                    continue;
                };
                let frame = Stored {
                    detection: image.detection,
                    width: u32::try_from(image.width).unwrap_or(0),
                    height: u32::try_from(image.height).unwrap_or(0),
                };
                stored.insert(taken, frame);
            }
            if page.next_page_token.is_empty() {
                return Ok(stored);
            }
            page_token = page.next_page_token;
        }
    }

    /// Stores a frame (or updates the detection of the one stored with its source and taken
    /// time): the image, and whether it was created.
    pub async fn upload(&self, metadata: pb::ImageMetadata, bytes: Bytes) -> Result<(pb::Image, bool), Status> {
        let mut parts = vec![pb::UploadImageRequest {
            part: Some(Part::Metadata(metadata)),
        }];
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + CHUNK).min(bytes.len());
            parts.push(pb::UploadImageRequest {
                part: Some(Part::Chunk(bytes.slice(at..end))),
            });
            at = end;
        }
        let deadline = Deadline::after(self.timeout);
        let response = client::retry(deadline, || {
            let mut media = self.client.clone();
            let request = deadline.request(futures::stream::iter(parts.clone()));
            async move { media.upload_image(request).await }
        })
        .await?
        .into_inner();
        let image = response
            .image
            .ok_or_else(|| Status::internal("media answered an upload without its image"))?;
        Ok((image, response.created))
    }
}
