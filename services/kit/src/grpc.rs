//! What gRPC handlers of every service share: the boxed response stream type, the answer of
//! an RPC that is not built yet, and the chunked download stream (a head message, then the
//! bytes in chunks).

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use tonic::Status;

/// A server-streaming response.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Bytes per chunk of a download stream.
pub const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// `UNIMPLEMENTED` for an RPC of the contract that is not built yet.
pub fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not implemented yet"))
}

/// A download: `head` first, then `bytes` in chunks of at most [`DOWNLOAD_CHUNK`], each
/// wrapped by `chunk` (the response's `chunk` part). The chunks share `bytes`' buffer.
pub fn download<T: Send + 'static>(head: T, bytes: Bytes, chunk: fn(Bytes) -> T) -> BoxStream<T> {
    let chunks = (0..bytes.len())
        .step_by(DOWNLOAD_CHUNK)
        .map(move |at| chunk(bytes.slice(at..(at + DOWNLOAD_CHUNK).min(bytes.len()))));
    Box::pin(futures::stream::iter(std::iter::once(head).chain(chunks).map(Ok)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    #[tokio::test]
    async fn a_download_is_its_head_then_bounded_chunks() {
        let bytes = Bytes::from(vec![7u8; DOWNLOAD_CHUNK * 2 + 5]);
        let parts: Vec<(bool, usize)> = download((true, 0), bytes, |b| (false, b.len()))
            .map(|part| part.unwrap())
            .collect()
            .await;
        assert_eq!(
            parts,
            vec![(true, 0), (false, DOWNLOAD_CHUNK), (false, DOWNLOAD_CHUNK), (false, 5)]
        );
    }
}
