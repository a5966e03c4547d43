//! One way to answer stored bytes over HTTP: a gRPC download stream (its content info first,
//! then chunks) becomes a streamed response with the headers user content needs. Bytes are
//! immutable by their hash, so the hash is the `ETag`, `If-None-Match` answers 304 and
//! browsers may cache them for a year. The content headers (an allowlisted type or an
//! attachment, `nosniff`, a sandboxing CSP) are [`crate::content::headers`].

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH};
use outpost_api::media::v1 as media;

use crate::error::ApiError;

/// `Cache-Control` of content addressed by its hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// One message of a download stream.
pub enum Part {
    /// The first message: what the bytes are.
    Info {
        /// MIME type, as stored.
        content_type: String,
        /// Total bytes.
        size_bytes: i64,
        /// Hex SHA-256 of the bytes (empty when unknown).
        sha256: String,
    },
    /// A chunk of the bytes.
    Chunk(Bytes),
}

/// A download stream's message (media's images and objects, plotting's plots).
pub trait DownloadMessage: Send + 'static {
    /// Its part; `None` when it has none.
    fn into_part(self) -> Option<Part>;
}

fn info(info: media::ContentInfo) -> Part {
    Part::Info {
        content_type: info.content_type,
        size_bytes: info.size_bytes,
        sha256: info.sha256,
    }
}

impl DownloadMessage for media::DownloadImageResponse {
    fn into_part(self) -> Option<Part> {
        use media::download_image_response::Part as P;
        match self.part? {
            P::Info(i) => Some(info(i)),
            P::Chunk(bytes) => Some(Part::Chunk(bytes)),
        }
    }
}

impl DownloadMessage for media::DownloadObjectResponse {
    fn into_part(self) -> Option<Part> {
        use media::download_object_response::Part as P;
        match self.part? {
            P::Info(i) => Some(info(i)),
            P::Chunk(bytes) => Some(Part::Chunk(bytes)),
        }
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak tags compare by their value.
fn matches(if_none_match: &HeaderValue, etag: &str) -> bool {
    let Ok(text) = if_none_match.to_str() else {
        return false;
    };
    text.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The response of a download stream: 304 when `request`'s `If-None-Match` names the bytes'
/// hash, else the bytes, streamed as they arrive.
pub async fn respond<M: DownloadMessage>(
    mut stream: tonic::Streaming<M>,
    request: &HeaderMap,
) -> Result<Response, ApiError> {
    let Some(Part::Info {
        content_type,
        size_bytes,
        sha256,
    }) = stream.message().await?.and_then(M::into_part)
    else {
        return Err(ApiError::internal("the download did not start with its content info"));
    };
    let etag = (!sha256.is_empty())
        .then(|| HeaderValue::from_str(&format!("\"{sha256}\"")).ok())
        .flatten();
    let mut headers = crate::content::headers(&content_type);
    if let Some(etag) = &etag {
        headers.insert(ETAG, etag.clone());
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        let etag = etag.to_str().unwrap_or_default();
        if request.get(IF_NONE_MATCH).is_some_and(|v| matches(v, etag)) {
            return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
        }
    }
    if let Ok(size) = u64::try_from(size_bytes) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    }
    let chunks = stream.map(|message| match message.map(M::into_part) {
        Ok(Some(Part::Chunk(bytes))) => Ok(bytes),
        Ok(_) => Err(tonic::Status::internal(
            "the download sent something other than a chunk",
        )),
        Err(status) => Err(status),
    });
    Ok((headers, Body::from_stream(chunks)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let etag = "\"abc\"";
        for (header, expected) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("abc", false),
        ] {
            assert_eq!(matches(&HeaderValue::from_static(header), etag), expected, "{header}");
        }
    }
}
