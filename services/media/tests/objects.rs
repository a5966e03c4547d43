//! Stored objects through the media service's gRPC API, on every test backend.

mod common;

use common::{Client, start};
use outpost_api::media::v1 as pb;
use outpost_kit::testing::backends;
use tonic::Code;

fn new_object(kind: &str, content: &[u8]) -> pb::CreateObjectRequest {
    pb::CreateObjectRequest {
        object: Some(pb::StoredObject {
            kind: kind.into(),
            labels: [("by".into(), "test".into())].into(),
            ..Default::default()
        }),
        content: content.to_vec().into(),
    }
}

async fn download(client: &mut Client, name: &str) -> Result<(pb::ContentInfo, Vec<u8>), tonic::Status> {
    use pb::download_object_response::Part;
    let mut stream = client
        .download_object(pb::DownloadObjectRequest { name: name.into() })
        .await?
        .into_inner();
    let Some(Part::Info(info)) = stream.message().await?.and_then(|m| m.part) else {
        panic!("info comes first")
    };
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(Part::Chunk(chunk)) => bytes.extend_from_slice(&chunk),
            other => panic!("unexpected part {other:?}"),
        }
    }
    Ok((info, bytes))
}

#[tokio::test]
async fn objects_are_stored_once_listed_downloaded_and_deleted() {
    for backend in backends() {
        let mut running = start(&backend).await;
        let client = &mut running.client;
        let label = backend.label;

        let snapshot = br#"{"readings": []}"#;
        let first = client
            .create_object(new_object("snapshot", snapshot))
            .await
            .unwrap()
            .into_inner()
            .object
            .unwrap();
        assert!(first.name.starts_with("objects/"), "{label}");
        assert_eq!(first.size_bytes, snapshot.len() as i64);
        assert_eq!(first.content_type, "application/json", "sniffed from content");
        assert_eq!(first.labels.get("by").map(String::as_str), Some("test"));
        let again = client
            .create_object(new_object("snapshot", snapshot))
            .await
            .unwrap()
            .into_inner()
            .object
            .unwrap();
        assert_eq!(again.name, first.name, "{label}: same bytes, same object");

        // 130 KiB crosses several download chunks.
        let big: Vec<u8> = (0..130 * 1024).map(|i| (i % 251) as u8).collect();
        let other = client
            .create_object(new_object("blob", &big))
            .await
            .unwrap()
            .into_inner()
            .object
            .unwrap();
        let (info, bytes) = download(client, &other.name).await.unwrap();
        assert_eq!(info.size_bytes, big.len() as i64);
        assert_eq!(bytes, big, "{label}: downloaded bytes");

        let snapshots = client
            .list_objects(pb::ListObjectsRequest {
                kind: "snapshot".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            snapshots.objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            vec![first.name.as_str()]
        );

        // Pages walk every object exactly once.
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .list_objects(pb::ListObjectsRequest {
                    page_size: 1,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            seen.extend(page.objects.into_iter().map(|o| o.name));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        seen.sort();
        let mut expected = vec![first.name.clone(), other.name.clone()];
        expected.sort();
        assert_eq!(seen, expected, "{label}");

        client
            .delete_object(pb::DeleteObjectRequest {
                name: other.name.clone(),
            })
            .await
            .unwrap();
        let gone = client
            .get_object(pb::GetObjectRequest {
                name: other.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
        assert_eq!(download(client, &other.name).await.unwrap_err().code(), Code::NotFound);
        assert_eq!(
            client
                .delete_object(pb::DeleteObjectRequest { name: other.name })
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
        running.stop().await;

        // Everything acknowledged is still there after a restart.
        let mut running = start(&backend).await;
        let kept = running
            .client
            .get_object(pb::GetObjectRequest {
                name: first.name.clone(),
            })
            .await
            .unwrap();
        assert_eq!(kept.into_inner().object.unwrap().sha256, first.sha256, "{label}");
        running.stop().await;
    }
}

#[tokio::test]
async fn bad_objects_are_rejected_naming_the_field() {
    for backend in backends() {
        let mut running = start(&backend).await;
        let client = &mut running.client;
        let cases = [
            (new_object("", b"x"), "object.kind"),
            (new_object("no spaces", b"x"), "object.kind"),
            (new_object("note", b""), "content"),
            (
                new_object("note", &vec![7u8; outpost_media::MAX_OBJECT_BYTES + 1]),
                "content",
            ),
        ];
        for (request, field) in cases {
            let status = client.create_object(request).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
            assert!(
                status.message().starts_with(field),
                "{}: {}",
                backend.label,
                status.message()
            );
        }
        for name in ["objects/../etc", "images/abc", "objects/ABC"] {
            let status = client
                .get_object(pb::GetObjectRequest { name: name.into() })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{name}");
        }
        let listed = client
            .list_objects(pb::ListObjectsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.objects.is_empty(), "nothing was half-written");
        running.stop().await;
    }
}
