//! ExportSnapshot: the JSON document of the current values lands in media (kind `snapshot`),
//! is listed and downloaded there; media down is UNAVAILABLE.

mod common;

use common::{reading, start_media, start_telemetry, temperature, write};
use outpost_api::media::v1 as media;
use outpost_api::telemetry::v1 as pb;
use outpost_kit::testing::backends;
use outpost_telemetry::TelemetryConfig;

const T0: i64 = 1_733_054_400_000_000; // 2024-12-01T12:00:00Z

async fn download(url: &str, name: &str) -> (media::ContentInfo, serde_json::Value) {
    use media::download_object_response::Part;
    let mut client = common::media_client(url);
    let request = media::DownloadObjectRequest { name: name.into() };
    let mut stream = client
        .download_object(request)
        .await
        .expect("DownloadObject")
        .into_inner();
    let (mut info, mut bytes) = (None, Vec::new());
    while let Some(message) = stream.message().await.expect("a chunk") {
        match message.part.expect("a part") {
            Part::Info(head) => info = Some(head),
            Part::Chunk(chunk) => bytes.extend_from_slice(&chunk),
        }
    }
    (
        info.expect("content info"),
        serde_json::from_slice(&bytes).expect("snapshot JSON"),
    )
}

#[tokio::test]
async fn a_snapshot_of_the_current_values_is_stored_in_media() {
    for backend in backends() {
        let media_url = start_media(&backend).await;
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), Some(media_url.clone())).await;
        let mut batch = vec![
            temperature("a", T0, 19.5),
            temperature("b", T0, 21.25),
            temperature("c", T0 + 1, 5.0),
        ];
        batch.push(temperature("a", T0 - 1_000_000, 99.0)); // older: not current
        batch.push(pb::Reading {
            kind: "humidity".into(),
            unit: "%".into(),
            ..reading("a", "rh", T0, 40.0)
        });
        write(&mut client, batch).await;

        let all = client
            .export_snapshot(pb::ExportSnapshotRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.reading_count, 4, "{}", backend.label);
        assert!(all.object.starts_with("objects/"), "{}: {}", backend.label, all.object);

        let mut media_client = common::media_client(&media_url);
        let stored = media_client
            .get_object(media::GetObjectRequest {
                name: all.object.clone(),
            })
            .await
            .unwrap();
        let stored = stored.into_inner().object.unwrap();
        assert_eq!(
            (stored.kind.as_str(), stored.content_type.as_str()),
            ("snapshot", "application/json")
        );
        assert_eq!(
            stored.labels.get("service").map(String::as_str),
            Some("telemetry"),
            "{}",
            backend.label
        );
        let listed = media::ListObjectsRequest {
            kind: "snapshot".into(),
            ..Default::default()
        };
        let listed = media_client.list_objects(listed).await.unwrap().into_inner().objects;
        assert!(
            listed.iter().any(|o| o.name == all.object),
            "{}: {listed:?}",
            backend.label
        );

        let (info, doc) = download(&media_url, &all.object).await;
        assert_eq!(info.content_type, "application/json");
        assert!(doc["created"].as_str().is_some_and(|t| t.ends_with('Z')), "{doc}");
        assert!(doc["kind"].is_null(), "{doc}");
        let readings = doc["readings"].as_array().unwrap();
        let got: Vec<(&str, &str, f64)> = readings
            .iter()
            .map(|r| {
                (
                    r["device"].as_str().unwrap(),
                    r["sensor"].as_str().unwrap(),
                    r["value"].as_f64().unwrap(),
                )
            })
            .collect();
        let want = [
            ("a", "rh", 40.0),
            ("a", "temperature", 19.5),
            ("b", "temperature", 21.25),
            ("c", "temperature", 5.0),
        ];
        assert_eq!(got, want, "{}", backend.label);
        assert_eq!(readings[1]["time"], "2024-12-01T12:00:00Z");
        assert_eq!(
            (readings[1]["kind"].as_str(), readings[1]["unit"].as_str()),
            (Some("temperature"), Some("°C"))
        );

        let request = pb::ExportSnapshotRequest {
            kind: "temperature".into(),
        };
        let one_kind = client.export_snapshot(request).await.unwrap().into_inner();
        assert_eq!(one_kind.reading_count, 3, "{}", backend.label);
        let (_, doc) = download(&media_url, &one_kind.object).await;
        assert_eq!(doc["kind"], "temperature");
        assert_eq!(doc["readings"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn media_down_is_unavailable() {
    for backend in backends() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let media_url = format!("http://127.0.0.1:{port}");
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), Some(media_url)).await;
        write(&mut client, vec![temperature("a", T0, 19.5)]).await;
        let status = client
            .export_snapshot(pb::ExportSnapshotRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{}: {status:?}", backend.label);
        // Named by the service that answered, and by the dependency it waits for.
        assert!(
            status.message().starts_with("telemetry: media unavailable"),
            "{}",
            status.message()
        );
    }
}
