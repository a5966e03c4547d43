//! Files sent with UploadSource: received in chunks up to [`MAX_FILE_BYTES`], checked, kept
//! in ingest's object store under their SHA-256 (so any replica can run the load), and loaded
//! by a run of their source with the parameter `upload`.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use outpost_api::ingest::v1::{self as pb, Source};
use outpost_kit::error::{Error, Result};
use outpost_kit::storage::Objects;
use sha2::{Digest, Sha256};
use tonic::Streaming;

use crate::mmgis::{self, Layer, MAX_FILE_BYTES};
use crate::mmgis_features;
use crate::runs::{Created, Runs};

/// Uploads over `runs`, kept in `objects`.
#[derive(Clone)]
pub struct Uploads {
    runs: Runs,
    objects: Objects,
}

/// A received upload: its metadata and its bytes.
pub struct Received {
    /// The first message.
    pub metadata: pb::UploadSourceMetadata,
    /// The file.
    pub file: Bytes,
}

/// Reads an UploadSource stream: the metadata first, then chunks, at most [`MAX_FILE_BYTES`].
pub async fn receive(mut stream: Streaming<pb::UploadSourceRequest>) -> std::result::Result<Received, tonic::Status> {
    use pb::upload_source_request::Part;
    let metadata = match stream.message().await?.and_then(|m| m.part) {
        Some(Part::Metadata(metadata)) => metadata,
        _ => return Err(Error::invalid("metadata", "the first message must be the metadata").into()),
    };
    let mut file = BytesMut::new();
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(Part::Chunk(chunk)) => {
                if file.len() + chunk.len() > MAX_FILE_BYTES {
                    return Err(Error::invalid(
                        "chunk",
                        format!("the file is larger than {} MiB", MAX_FILE_BYTES >> 20),
                    )
                    .into());
                }
                file.extend_from_slice(&chunk);
            }
            Some(Part::Metadata(_)) => return Err(Error::invalid("metadata", "sent twice; send it first, once").into()),
            None => {}
        }
    }
    Ok(Received {
        metadata,
        file: file.freeze(),
    })
}

impl Uploads {
    /// Uploads starting runs of `runs`, files kept in `objects`.
    pub fn new(runs: Runs, objects: Objects) -> Self {
        Uploads { runs, objects }
    }

    /// Checks the file, keeps it, and starts (or joins) the run that loads it.
    pub async fn start(&self, received: Received) -> Result<Created> {
        let Received { metadata, file } = received;
        let source = Source::try_from(metadata.source).unwrap_or(Source::Unspecified);
        let Some(layer) = Layer::of(source) else {
            return Err(Error::invalid(
                "metadata.source",
                "uploads are MMGIS files: SOURCE_MMGIS_WAYPOINTS or SOURCE_MMGIS_TRAVERSE",
            ));
        };
        if file.is_empty() {
            return Err(Error::invalid("chunk", "the file is empty"));
        }
        mmgis_features::features(&file).map_err(|e| Error::invalid("chunk", format!("the file is {e}")))?;
        let mut parameters: BTreeMap<String, String> = metadata.parameters.into_iter().collect();
        if parameters.contains_key("upload") {
            return Err(Error::invalid(
                "metadata.parameters.upload",
                "is set by the upload itself",
            ));
        }
        let hash = hex::encode(Sha256::digest(&file));
        parameters.insert("upload".into(), hash.clone());
        mmgis::check_parameters(&parameters)?;
        self.objects
            .put(&mmgis::upload_key(&hash), file)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot keep the uploaded file: {e:#}")))?;
        self.runs.create(layer.source(), parameters, None).await
    }
}
