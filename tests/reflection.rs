//! Every service answers gRPC reflection, v1 and v1alpha, and health.

mod common;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn connect(endpoint: String) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The services a server lists through reflection `$version` (`v1` or `v1alpha`).
macro_rules! listed_services {
    ($version:ident, $endpoint:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(connect($endpoint).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match stream.message().await.unwrap().unwrap().message_response.unwrap() {
            MessageResponse::ListServicesResponse(list) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_service_reflects_and_reports_health() {
    let backend = outpost_kit::testing::backends().into_iter().next().unwrap();
    let mesh = common::start(&backend).await;
    let config = mesh.config.clone();
    let endpoints = [
        (config.ingest_endpoint(), outpost_api::names::INGEST),
        (config.media_endpoint(), outpost_api::names::MEDIA),
        (config.telemetry_endpoint(), outpost_api::names::TELEMETRY),
        (config.plotting_endpoint(), outpost_api::names::PLOTTING),
    ];
    for (endpoint, service) in endpoints {
        for listed in [
            listed_services!(v1, endpoint.clone()),
            listed_services!(v1alpha, endpoint.clone()),
        ] {
            assert!(listed.iter().any(|s| s == service), "{service} not in {listed:?}");
            assert!(listed.iter().any(|s| s == "grpc.health.v1.Health"), "{listed:?}");
            let others = listed
                .iter()
                .filter(|s| s.starts_with("outpost.") && *s != service)
                .count();
            assert_eq!(others, 0, "{service}'s server lists only what it serves: {listed:?}");
        }
        let mut health = HealthClient::new(connect(endpoint.clone()).await);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
        let unknown = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await;
        assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
        let metrics = reqwest::get(format!("{endpoint}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("outpost_grpc_server_handled_total"),
            "{service} /metrics: {metrics}"
        );
    }
    mesh.stop().await;
}
