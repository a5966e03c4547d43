//! Helpers of the media suites: media on `127.0.0.1:0` over a test backend, and uploads.

#![allow(dead_code)] // every suite uses a part of it

use outpost_api::media::v1::{self as pb, media_service_client::MediaServiceClient};
use outpost_kit::testing::TestBackend;
use outpost_media::MediaConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Media's client in the tests.
pub type Client = MediaServiceClient<Channel>;

/// A running media service.
pub struct Running {
    pub client: Client,
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts media on `backend` with `settings`.
pub async fn start_with(backend: &TestBackend, settings: MediaConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(outpost_media::serve_on(backend.config(), settings, listener, async {
        let _ = stopped.await;
    }));
    outpost_kit::client::wait_serving(
        &format!("http://{addr}"),
        outpost_api::names::MEDIA,
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap();
    let client = MediaServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_decoding_message_size(32 << 20)
        .max_encoding_message_size(32 << 20);
    Running {
        client,
        addr,
        stop,
        task,
    }
}

/// Starts media on `backend` with the default settings.
pub async fn start(backend: &TestBackend) -> Running {
    start_with(backend, MediaConfig::default()).await
}

impl Running {
    /// The address media listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops media (writing the clicks it holds) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The upload stream of `metadata` then `content` in chunks of `chunk` bytes.
pub fn upload_stream(
    metadata: pb::ImageMetadata,
    content: &[u8],
    chunk: usize,
) -> impl futures::Stream<Item = pb::UploadImageRequest> + Send + 'static {
    let content = bytes::Bytes::copy_from_slice(content);
    futures::stream::iter(outpost_media::testing::upload_messages(metadata, &content, chunk))
}

/// Uploads `content` from `source`, taken at `taken` (seconds), in 1 MiB chunks.
pub async fn upload(
    client: &mut Client,
    source: &str,
    taken: Option<i64>,
    detection: Option<pb::Detection>,
    content: &[u8],
) -> Result<pb::UploadImageResponse, tonic::Status> {
    let metadata = pb::ImageMetadata {
        detection,
        filename: "frame.jpg".into(),
        ..outpost_media::testing::metadata(source, taken)
    };
    Ok(client
        .upload_image(upload_stream(metadata, content, 1 << 20))
        .await?
        .into_inner())
}

/// Downloads an image's bytes (or its thumbnail's): content info and bytes.
pub async fn download(
    client: &mut Client,
    name: &str,
    variant: pb::ImageVariant,
) -> Result<(pb::ContentInfo, Vec<u8>), tonic::Status> {
    use pb::download_image_response::Part;
    let request = pb::DownloadImageRequest {
        name: name.into(),
        variant: variant as i32,
    };
    let mut stream = client.download_image(request).await?.into_inner();
    let Some(Part::Info(info)) = stream.message().await?.and_then(|m| m.part) else {
        panic!("info comes first")
    };
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(Part::Chunk(chunk)) => {
                assert!(chunk.len() <= 64 * 1024, "chunks are at most 64 KiB");
                bytes.extend_from_slice(&chunk);
            }
            other => panic!("unexpected part {other:?}"),
        }
    }
    Ok((info, bytes))
}

/// Every image of a list walked page by page.
pub async fn list_all(client: &mut Client, mut request: pb::ListImagesRequest) -> Vec<pb::Image> {
    let mut all = Vec::new();
    loop {
        let page = client.list_images(request.clone()).await.unwrap().into_inner();
        all.extend(page.images);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}
