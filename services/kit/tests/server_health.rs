//! A service's gRPC health follows its dependencies: NOT_SERVING (for the service and for
//! `{service}/{dependency}`) while one fails, SERVING again by itself once it answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outpost_kit::server::{GrpcServer, HEALTH_INTERVAL};
use outpost_kit::storage::Dependency;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SERVICE: &str = "outpost.media.v1.MediaService";

async fn status(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> ServingStatus {
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    ServingStatus::try_from(response.into_inner().status).unwrap()
}

/// Polls until `service` reports `want` (at most three health intervals).
async fn wait_for(client: &mut HealthClient<tonic::transport::Channel>, service: &str, want: ServingStatus) {
    let deadline = tokio::time::Instant::now() + HEALTH_INTERVAL * 3;
    loop {
        let got = status(client, service).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{service} stayed {got:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_follows_a_dependency_down_and_back() {
    let up = Arc::new(AtomicBool::new(true));
    let check = up.clone();
    let dependency = Dependency::new("objects", move || {
        let up = check.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                anyhow::bail!("object store unreachable")
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        GrpcServer::new(SERVICE)
            .dependencies([dependency])
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    wait_for(&mut client, SERVICE, ServingStatus::Serving).await;
    assert_eq!(
        status(&mut client, &format!("{SERVICE}/objects")).await,
        ServingStatus::Serving
    );

    up.store(false, Ordering::SeqCst);
    wait_for(&mut client, SERVICE, ServingStatus::NotServing).await;
    assert_eq!(
        status(&mut client, &format!("{SERVICE}/objects")).await,
        ServingStatus::NotServing
    );
    assert_eq!(
        status(&mut client, "").await,
        ServingStatus::NotServing,
        "the server as a whole"
    );
    assert_eq!(
        status(&mut client, outpost_kit::server::LIVENESS).await,
        ServingStatus::Serving,
        "liveness does not follow dependencies"
    );

    up.store(true, Ordering::SeqCst);
    wait_for(&mut client, SERVICE, ServingStatus::Serving).await;
    assert_eq!(
        status(&mut client, &format!("{SERVICE}/objects")).await,
        ServingStatus::Serving
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
