//! Images through media's gRPC API, on every test backend: sniffing and bounds, dedupe by
//! content hash, idempotent re-uploads, keyset pages, downloads and thumbnails.

mod common;

use common::{Client, download, list_all, start, start_with, upload, upload_stream};
use outpost_api::media::v1::{self as pb, ImageVariant, ReviewState};
use outpost_kit::storage::Objects;
use outpost_kit::testing::{TestBackend, backends};
use outpost_media::{MediaConfig, testing};
use sha2::{Digest, Sha256};
use tonic::Code;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The originals media keeps in its object store.
async fn stored_originals(backend: &TestBackend) -> Vec<String> {
    let objects = Objects::open(&backend.storage, "media").await.unwrap();
    objects.list("images/").await.unwrap()
}

fn detection(probability: f64, has_subject: bool) -> Option<pb::Detection> {
    Some(pb::Detection {
        probability,
        has_subject,
        r#box: has_subject.then_some(pb::BoundingBox {
            x: 0.25,
            y: 0.5,
            width: 0.125,
            height: 0.25,
        }),
        model: "megadetector-v5".into(),
    })
}

async fn all_images(client: &mut Client) -> Vec<pb::Image> {
    list_all(client, pb::ListImagesRequest::default()).await
}

#[tokio::test]
async fn uploads_are_sniffed_bounded_and_refused_by_reason_storing_nothing() {
    for backend in backends() {
        let label = backend.label;
        let settings = MediaConfig {
            max_image_bytes: 256 * 1024,
            ..MediaConfig::default()
        };
        let mut running = start_with(&backend, settings).await;
        let client = &mut running.client;

        let jpeg = testing::jpeg(640, 480, 1, 85, None);
        let big = testing::jpeg(2000, 1500, 9, 100, None);
        assert!(big.len() > 256 * 1024, "the big jpeg is over the bound: {}", big.len());
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "html named .png",
                b"<!doctype html><script>alert(1)</script>".to_vec(),
                "content: not a JPEG, PNG, WebP or GIF image",
            ),
            ("zero bytes", Vec::new(), "content: empty"),
            (
                "truncated jpeg",
                jpeg[..jpeg.len() / 2].to_vec(),
                "content: a truncated or corrupt image/jpeg file",
            ),
            (
                "100000 × 100000 png header",
                testing::png_header(100_000, 100_000),
                "content: 100000 × 100000 pixels is more than the 50000000 allowed",
            ),
            (
                "over OUTPOST_MAX_IMAGE_BYTES",
                big,
                "content: larger than the 262144 bytes allowed (OUTPOST_MAX_IMAGE_BYTES)",
            ),
        ];
        for (what, bytes, reason) in cases {
            let status = upload(client, "cam", Some(1_700_000_000), None, &bytes)
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{label} {what}: {}",
                status.message()
            );
            assert!(
                status.message().starts_with(reason),
                "{label} {what}: {}",
                status.message()
            );
        }

        // Metadata is checked before the bytes, and chunks are bounded.
        let bad_metadata = [
            (
                pb::ImageMetadata {
                    source: "no spaces".into(),
                    ..Default::default()
                },
                "metadata.source",
            ),
            (
                pb::ImageMetadata {
                    source: "cam".into(),
                    detection: detection(1.5, true),
                    ..Default::default()
                },
                "metadata.detection.probability",
            ),
        ];
        for (metadata, field) in bad_metadata {
            let status = client
                .upload_image(upload_stream(metadata, &jpeg, 1 << 20))
                .await
                .unwrap_err();
            assert!(status.message().starts_with(field), "{label}: {}", status.message());
        }
        let metadata = pb::ImageMetadata {
            source: "cam".into(),
            ..Default::default()
        };
        let huge_chunk = vec![0xFFu8; (1 << 20) + 1];
        let status = client
            .upload_image(upload_stream(metadata, &huge_chunk, huge_chunk.len()))
            .await
            .unwrap_err();
        assert!(status.message().starts_with("chunk: "), "{label}: {}", status.message());
        let chunk_first = futures::stream::iter(vec![pb::UploadImageRequest {
            part: Some(pb::upload_image_request::Part::Chunk(jpeg.clone().into())),
        }]);
        let status = client.upload_image(chunk_first).await.unwrap_err();
        assert!(
            status.message().starts_with("metadata: "),
            "{label}: {}",
            status.message()
        );

        assert!(all_images(client).await.is_empty(), "{label}: nothing was stored");
        assert!(
            stored_originals(&backend).await.is_empty(),
            "{label}: no bytes were stored"
        );

        // A PNG named .jpg is a PNG: the type comes from the bytes.
        let png = testing::png(300, 200, false);
        let metadata = pb::ImageMetadata {
            source: "cam".into(),
            filename: "photo.jpg".into(),
            ..Default::default()
        };
        let stored = client
            .upload_image(upload_stream(metadata, &png, 1000))
            .await
            .unwrap()
            .into_inner();
        let image = stored.image.unwrap();
        assert!(stored.created);
        assert_eq!(
            (
                image.content_type.as_str(),
                image.width,
                image.height,
                image.filename.as_str()
            ),
            ("image/png", 300, 200, "photo.jpg"),
            "{label}"
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn bytes_are_stored_once_and_kept_while_an_image_has_them() {
    for backend in backends() {
        let label = backend.label;
        let mut running = start(&backend).await;
        let client = &mut running.client;
        let night = testing::jpeg(800, 600, 5, 85, None);

        // The same bytes twice from one source, without a time: one image.
        let first = upload(client, "cam-1", None, None, &night).await.unwrap();
        let again = upload(client, "cam-1", None, None, &night).await.unwrap();
        assert!(first.created && !again.created, "{label}");
        let first = first.image.unwrap();
        assert_eq!(
            again.image.unwrap().name,
            first.name,
            "{label}: the stored image answers"
        );
        assert_eq!(first.sha256, sha256(&night));

        // The same bytes as two frames at different times: two images, one object.
        let frame_a = upload(client, "cam-2", Some(1_700_000_000), None, &night)
            .await
            .unwrap();
        let frame_b = upload(client, "cam-2", Some(1_700_000_060), None, &night)
            .await
            .unwrap();
        assert!(frame_a.created && frame_b.created);
        let (frame_a, frame_b) = (frame_a.image.unwrap(), frame_b.image.unwrap());
        assert_ne!(frame_a.name, frame_b.name);
        assert_eq!(all_images(client).await.len(), 3, "{label}");
        assert_eq!(
            stored_originals(&backend).await.len(),
            1,
            "{label}: one object for three images"
        );

        // A download is the upload, byte for byte; the thumbnail fits 320 px.
        let (info, bytes) = download(client, &frame_a.name, ImageVariant::Original).await.unwrap();
        assert_eq!(sha256(&bytes), sha256(&night), "{label}");
        assert_eq!(
            (info.content_type.as_str(), info.size_bytes, info.sha256.as_str()),
            ("image/jpeg", night.len() as i64, first.sha256.as_str())
        );
        let (info, thumbnail) = download(client, &frame_a.name, ImageVariant::Thumbnail).await.unwrap();
        assert_eq!(info.sha256, sha256(&thumbnail));
        let thumb = image::load_from_memory(&thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 240), "{label}");

        // Deleting images keeps the bytes until the last one goes.
        for name in [&first.name, &frame_a.name] {
            client
                .delete_image(pb::DeleteImageRequest { name: name.clone() })
                .await
                .unwrap();
        }
        let (_, bytes) = download(client, &frame_b.name, ImageVariant::Original).await.unwrap();
        assert_eq!(bytes, night, "{label}: the other image still downloads");
        assert_eq!(stored_originals(&backend).await.len(), 1);
        let gone = client
            .get_image(pb::GetImageRequest {
                name: frame_a.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
        let gone = download(client, &frame_a.name, ImageVariant::Original)
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
        client
            .delete_image(pb::DeleteImageRequest {
                name: frame_b.name.clone(),
            })
            .await
            .unwrap();
        assert!(
            stored_originals(&backend).await.is_empty(),
            "{label}: the last image took its bytes"
        );
        let twice = client
            .delete_image(pb::DeleteImageRequest { name: frame_b.name })
            .await
            .unwrap_err();
        assert_eq!(twice.code(), Code::NotFound);

        // Stored again after that: the bytes come back.
        let back = upload(client, "cam-2", Some(1_700_000_000), None, &night)
            .await
            .unwrap();
        let (_, bytes) = download(client, &back.image.unwrap().name, ImageVariant::Original)
            .await
            .unwrap();
        assert_eq!(bytes, night, "{label}");
        running.stop().await;
    }
}

#[tokio::test]
async fn a_reupload_of_a_source_and_time_updates_its_detection() {
    for backend in backends() {
        let label = backend.label;
        let mut running = start(&backend).await;
        let client = &mut running.client;
        let frame = testing::jpeg(400, 300, 2, 80, None);
        let first = upload(client, "burrow-1", Some(1_733_054_400), detection(0.2, false), &frame)
            .await
            .unwrap();
        assert!(first.created);
        let again = upload(client, "burrow-1", Some(1_733_054_400), detection(0.93, true), &frame)
            .await
            .unwrap();
        assert!(!again.created, "{label}: counted as updated");
        let image = again.image.unwrap();
        assert_eq!(image.name, first.image.unwrap().name);
        let seen = image.detection.unwrap();
        assert_eq!((seen.probability, seen.has_subject), (0.93, true), "{label}");
        assert_eq!(seen.r#box.unwrap().width, 0.125);
        let images = all_images(client).await;
        assert_eq!(images.len(), 1, "{label}: never a second row");
        assert_eq!(images[0].detection.as_ref().unwrap().probability, 0.93);
        running.stop().await;

        // It is all still there after a restart.
        let mut running = start(&backend).await;
        let images = all_images(&mut running.client).await;
        assert_eq!(images[0].detection.as_ref().unwrap().probability, 0.93, "{label}");
        running.stop().await;
    }
}

async fn accept(client: &mut Client, name: &str) {
    let request = pb::ReviewImageRequest {
        name: name.into(),
        decision: ReviewState::Accepted as i32,
        review_time: None,
    };
    let review = client.review_image(request).await.unwrap().into_inner().review.unwrap();
    assert_eq!(review.state(), ReviewState::Accepted);
}

#[tokio::test]
async fn keyset_pages_stay_exact_while_images_leave_the_filter() {
    for backend in backends() {
        let label = backend.label;
        let mut running = start(&backend).await;
        let client = &mut running.client;
        let mut names = Vec::new();
        for i in 0..10u64 {
            let bytes = testing::jpeg(64, 48, i, 80, None);
            // Two images share each time (different sources), so ties break by name.
            let source = if i % 2 == 0 { "cam-a" } else { "cam-b" };
            let probability = [0.9, 0.1, 0.5, 0.5, 0.7, 0.3, 0.5, 0.8, 0.2, 0.6][i as usize];
            let taken = 1_700_000_000 + (i as i64 / 2) * 60;
            let image = upload(
                client,
                source,
                Some(taken),
                detection(probability, probability > 0.5),
                &bytes,
            )
            .await
            .unwrap()
            .image
            .unwrap();
            names.push(image.name);
        }

        // A reviewer walks the pending images two at a time, accepting each page, and one
        // image not seen yet is accepted elsewhere meanwhile.
        let pending = pb::ListImagesRequest {
            page_size: 2,
            review_state: ReviewState::Pending as i32,
            ..Default::default()
        };
        let mut seen: Vec<String> = Vec::new();
        let mut request = pending.clone();
        let mut pages = 0;
        loop {
            let page = client.list_images(request.clone()).await.unwrap().into_inner();
            pages += 1;
            for image in &page.images {
                assert_eq!(image.review.as_ref().unwrap().state(), ReviewState::Pending);
                accept(client, &image.name).await;
                seen.push(image.name.clone());
            }
            if pages == 1 {
                accept(client, &names[7]).await;
            }
            if page.next_page_token.is_empty() {
                break;
            }
            request.page_token = page.next_page_token;
        }
        let mut expected: Vec<String> = all_images(client).await.into_iter().map(|i| i.name).collect();
        expected.retain(|name| *name != names[7]);
        assert_eq!(
            seen, expected,
            "{label}: every pending image exactly once, in taken-time order"
        );

        // Probability order, either way, ties by name; filters.
        let by_probability = list_all(
            client,
            pb::ListImagesRequest {
                page_size: 3,
                order_by: "probability desc".into(),
                ..Default::default()
            },
        )
        .await;
        let keys: Vec<(f64, String)> = by_probability
            .iter()
            .map(|i| (i.detection.as_ref().unwrap().probability, i.name.clone()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        assert_eq!(keys, sorted, "{label}");
        assert_eq!(keys.len(), 10);
        let ascending = list_all(
            client,
            pb::ListImagesRequest {
                page_size: 4,
                order_by: "probability".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            ascending.into_iter().rev().map(|i| i.name).collect::<Vec<_>>(),
            sorted.into_iter().map(|k| k.1).collect::<Vec<_>>()
        );
        let likely = list_all(
            client,
            pb::ListImagesRequest {
                page_size: 2,
                min_probability: Some(0.6),
                has_subject: Some(true),
                source: "cam-a".into(),
                order_by: "taken_time desc".into(),
                ..Default::default()
            },
        )
        .await;
        let probabilities: Vec<f64> = likely
            .iter()
            .map(|i| i.detection.as_ref().unwrap().probability)
            .collect();
        assert_eq!(
            probabilities,
            vec![0.7, 0.9],
            "{label}: cam-a, at least 0.6, newest first"
        );

        // A token belongs to its query.
        let first = client.list_images(pending.clone()).await.unwrap().into_inner();
        let page = client
            .list_images(pb::ListImagesRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let status = client
            .list_images(pb::ListImagesRequest {
                page_token: page.next_page_token,
                ..pending.clone()
            })
            .await
            .unwrap_err();
        assert!(
            status.message().starts_with("page_token: "),
            "{label}: {}",
            status.message()
        );
        assert!(first.images.is_empty(), "{label}: every image was accepted");
        for (request, field) in [
            (
                pb::ListImagesRequest {
                    order_by: "size".into(),
                    ..Default::default()
                },
                "order_by",
            ),
            (
                pb::ListImagesRequest {
                    min_probability: Some(2.0),
                    ..Default::default()
                },
                "min_probability",
            ),
            (
                pb::ListImagesRequest {
                    page_size: -1,
                    ..Default::default()
                },
                "page_size",
            ),
        ] {
            let status = client.list_images(request).await.unwrap_err();
            assert!(status.message().starts_with(field), "{label}: {}", status.message());
        }
        running.stop().await;
    }
}

#[tokio::test]
async fn reviews_answer_after_the_write_and_survive_a_stop() {
    for backend in backends() {
        let label = backend.label;
        let mut running = start(&backend).await;
        let client = &mut running.client;
        let mut names = Vec::new();
        for i in 0..20u64 {
            let bytes = testing::jpeg(32, 32, 100 + i, 80, None);
            let source = if i < 15 { "cam-a" } else { "cam-b" };
            names.push(
                upload(client, source, Some(1_700_000_000 + i as i64), None, &bytes)
                    .await
                    .unwrap()
                    .image
                    .unwrap()
                    .name,
            );
        }
        // Clicks in flight while media is told to stop: every acknowledged one is kept.
        let clicks: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut client = client.clone();
                let request = pb::ReviewImageRequest {
                    name: name.clone(),
                    decision: if i % 3 == 0 {
                        ReviewState::Rejected
                    } else {
                        ReviewState::Accepted
                    } as i32,
                    review_time: None,
                };
                tokio::spawn(async move { client.review_image(request).await })
            })
            .collect();
        tokio::task::yield_now().await;
        running.stop().await;
        let mut acknowledged = Vec::new();
        for (i, click) in clicks.into_iter().enumerate() {
            if let Ok(response) = click.await.unwrap() {
                let review = response.into_inner().review.unwrap();
                assert_ne!(review.state(), ReviewState::Pending, "{label}");
                acknowledged.push((i, review.state()));
            }
        }
        let mut running = start(&backend).await;
        let client = &mut running.client;
        for (i, state) in &acknowledged {
            let image = client
                .get_image(pb::GetImageRequest {
                    name: names[*i].clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .image
                .unwrap();
            let review = image.review.unwrap();
            assert_eq!(review.state(), *state, "{label}: acknowledged clicks are kept");
            assert!(review.review_time.is_some());
        }
        // Counts per state and per source, after every click is written.
        for (i, name) in names.iter().enumerate() {
            let request = pb::ReviewImageRequest {
                name: name.clone(),
                decision: if i % 3 == 0 {
                    ReviewState::Rejected
                } else {
                    ReviewState::Accepted
                } as i32,
                review_time: None,
            };
            client.review_image(request).await.unwrap();
        }
        let undo = pb::ReviewImageRequest {
            name: names[1].clone(),
            decision: ReviewState::Pending as i32,
            review_time: None,
        };
        let review = client.review_image(undo).await.unwrap().into_inner().review.unwrap();
        assert_eq!((review.state(), review.review_time), (ReviewState::Pending, None));
        let stats = client
            .get_review_stats(pb::GetReviewStatsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (stats.pending, stats.accepted, stats.rejected, stats.queued),
            (1, 12, 7, 0),
            "{label}"
        );
        let per_source: Vec<(String, i64, i64, i64)> = stats
            .sources
            .into_iter()
            .map(|s| (s.source, s.pending, s.accepted, s.rejected))
            .collect();
        assert_eq!(
            per_source,
            vec![("cam-a".into(), 1, 9, 5), ("cam-b".into(), 0, 3, 2)],
            "{label}"
        );
        let one = client
            .get_review_stats(pb::GetReviewStatsRequest { source: "cam-b".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((one.pending, one.accepted, one.rejected), (0, 3, 2));

        // Bad clicks name their field; an unknown image is NOT_FOUND.
        let unknown = format!("images/{}", "0".repeat(32));
        let cases = [
            (
                pb::ReviewImageRequest {
                    name: names[0].clone(),
                    decision: 0,
                    review_time: None,
                },
                Code::InvalidArgument,
                "decision",
            ),
            (
                pb::ReviewImageRequest {
                    name: "images/x".into(),
                    decision: 2,
                    review_time: None,
                },
                Code::InvalidArgument,
                "name",
            ),
            (
                pb::ReviewImageRequest {
                    name: names[0].clone(),
                    decision: 2,
                    review_time: Some(prost_types::Timestamp {
                        seconds: 4_000_000_000,
                        nanos: 0,
                    }),
                },
                Code::InvalidArgument,
                "review_time",
            ),
            (
                pb::ReviewImageRequest {
                    name: unknown.clone(),
                    decision: 2,
                    review_time: None,
                },
                Code::NotFound,
                "images/",
            ),
        ];
        for (request, code, start) in cases {
            let status = client.review_image(request).await.unwrap_err();
            assert_eq!(status.code(), code, "{label}: {}", status.message());
            assert!(status.message().starts_with(start), "{label}: {}", status.message());
        }
        running.stop().await;
    }
}
