//! Review clicks group-committed, on every test backend: 10,000 clicks from 50 concurrent
//! clients end with every image in the state of its latest click, in at most one SQL statement
//! per 100 clicks.

mod common;

use std::time::Instant;

use common::{start, upload};
use futures::StreamExt as _;
use outpost_api::media::v1::{self as pb, ReviewState, media_service_client::MediaServiceClient};
use outpost_kit::testing::backends;
use outpost_media::testing;
use rand::seq::SliceRandom as _;
use tonic::Code;

const CLICKS: usize = 10_000;
const CLIENTS: usize = 50;
const IMAGES: usize = 100;

fn state_of(i: usize) -> ReviewState {
    [ReviewState::Accepted, ReviewState::Rejected, ReviewState::Pending][i % 3]
}

#[tokio::test]
async fn clicks_are_written_in_batches_and_the_latest_click_wins() {
    for backend in backends() {
        let label = backend.label;
        let mut running = start(&backend).await;
        let mut names = Vec::new();
        for i in 0..IMAGES as u64 {
            let bytes = testing::jpeg(16, 16, 1000 + i, 80, None);
            let image = upload(&mut running.client, "cam", Some(1_700_000_000 + i as i64), None, &bytes)
                .await
                .unwrap();
            names.push(image.image.unwrap().name);
        }
        // Click k is on image k % IMAGES at second 1_750_000_000 + k; clients send theirs
        // shuffled, all in flight at once, so clicks on one image land in any order and batch.
        let base = 1_750_000_000i64;
        let mut clicks: Vec<usize> = (0..CLICKS).collect();
        clicks.shuffle(&mut rand::rng());
        let url = format!("http://{}", running.addr());
        let unknown = format!("images/{}", "f".repeat(32));
        let before = outpost_media::review::statements();
        let started = Instant::now();
        let per_client = CLICKS / CLIENTS;
        let tasks: Vec<_> = clicks
            .chunks(per_client)
            .enumerate()
            .map(|(c, mine)| {
                let (mine, names, url, unknown) = (mine.to_vec(), names.clone(), url.clone(), unknown.clone());
                tokio::spawn(async move {
                    let client = MediaServiceClient::connect(url).await.unwrap();
                    let mut answers = futures::stream::iter(mine.into_iter().map(|k| {
                        let mut client = client.clone();
                        let request = pb::ReviewImageRequest {
                            name: names[k % IMAGES].clone(),
                            decision: state_of(k) as i32,
                            review_time: Some(prost_types::Timestamp {
                                seconds: base + k as i64,
                                nanos: 0,
                            }),
                        };
                        async move { client.review_image(request).await.map(|r| r.into_inner()) }
                    }))
                    .buffer_unordered(per_client);
                    while let Some(answer) = answers.next().await {
                        answer.unwrap();
                    }
                    // One click on an unknown image among them fails alone.
                    if c == 0 {
                        let mut client = client.clone();
                        let request = pb::ReviewImageRequest {
                            name: unknown,
                            decision: 2,
                            review_time: None,
                        };
                        let status = client.review_image(request).await.unwrap_err();
                        assert_eq!(status.code(), Code::NotFound);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed();
        let statements = outpost_media::review::statements() - before;
        eprintln!(
            "{label}: {CLICKS} clicks from {CLIENTS} clients in {elapsed:?}: {statements} SQL statements ({:.0} clicks per statement)",
            CLICKS as f64 / statements as f64
        );
        assert!(
            statements as usize <= CLICKS / 100,
            "{label}: {statements} statements for {CLICKS} clicks"
        );

        let images = common::list_all(
            &mut running.client,
            pb::ListImagesRequest {
                page_size: 1000,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(images.len(), IMAGES);
        for image in images {
            let i = names.iter().position(|n| *n == image.name).unwrap();
            // The latest click on image i is the largest k with k % IMAGES == i.
            let last = (0..CLICKS).rev().find(|k| k % IMAGES == i).unwrap();
            let review = image.review.unwrap();
            assert_eq!(review.state(), state_of(last), "{label}: {}", image.name);
            if state_of(last) != ReviewState::Pending {
                assert_eq!(review.review_time.unwrap().seconds, base + last as i64);
            }
        }
        running.stop().await;
    }
}
