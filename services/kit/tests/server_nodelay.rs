//! Accepted gRPC connections have TCP_NODELAY: a response's headers, data and trailers leave in
//! separate writes, which Nagle's algorithm would hold for the client's delayed ACK (~40 ms).

use std::os::fd::{BorrowedFd, RawFd};

use outpost_kit::server::GrpcServer;

/// Whether every socket of this process bound to local `port` (the server's side of each
/// accepted connection) has TCP_NODELAY, and there is at least one.
fn accepted_sockets_have_nodelay(port: u16) -> (usize, usize) {
    let (mut accepted, mut nodelay) = (0, 0);
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        // SAFETY: only socket options of a descriptor this test process holds are read.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        let connected = socket.peer_addr().is_ok();
        if local.is_some_and(|a| a.port() == port) && connected {
            accepted += 1;
            if socket.tcp_nodelay().unwrap_or(false) {
                nodelay += 1;
            }
        }
    }
    (accepted, nodelay)
}

#[tokio::test]
async fn accepted_connections_have_nodelay() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(GrpcServer::new("outpost.media.v1.MediaService").serve(listener, async {
        let _ = stopped.await;
    }));
    let endpoint = format!("http://{addr}");
    outpost_kit::client::wait_answering(&endpoint, "").await.unwrap();
    // A connection held open while its server side is looked at.
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    let (accepted, nodelay) = accepted_sockets_have_nodelay(addr.port());
    assert!(accepted >= 1, "no accepted connection found");
    assert_eq!(
        nodelay, accepted,
        "{nodelay} of {accepted} accepted connections have TCP_NODELAY"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
