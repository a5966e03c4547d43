//! `TCP_NODELAY` on the PostgreSQL connections.
//!
//! sqlx 0.9.0 opens its TCP sockets without `TCP_NODELAY` (an upstream regression,
//! launchbadge/sqlx#4335, fixed after that release). With Nagle's algorithm on, a message that
//! leaves in two small writes, such as COPY's data and then its end, waits for the server's
//! delayed ACK: about 40 ms on every such transaction. sqlx gives no access to its socket, so
//! each new connection sets the option on this process's sockets connected to the server's
//! port (setting it twice, or on another client socket, is harmless).

/// Sets `TCP_NODELAY` on every TCP socket of this process connected to a peer on `port`.
#[cfg(target_os = "linux")]
pub(crate) fn set_for_peer_port(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};

    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        let is_socket =
            std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is open (it was just listed) and only borrowed for two
        // socket options; should another thread close it meanwhile, the calls fail harmlessly
        // (EBADF), or touch another client socket, for which the option is harmless too.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let to_port = socket
            .peer_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .is_some_and(|addr| addr.port() == port);
        if to_port && !socket.tcp_nodelay().unwrap_or(true) {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}

/// Elsewhere sqlx's sockets keep their defaults.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_for_peer_port(_port: u16) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[tokio::test]
    async fn sets_nodelay_on_sockets_to_the_port_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to_server = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let to_other = tokio::net::TcpStream::connect(other.local_addr().unwrap())
            .await
            .unwrap();
        assert!(!to_server.nodelay().unwrap() && !to_other.nodelay().unwrap());
        super::set_for_peer_port(listener.local_addr().unwrap().port());
        assert!(to_server.nodelay().unwrap(), "the socket to the port has TCP_NODELAY");
        assert!(!to_other.nodelay().unwrap(), "other sockets are left alone");
    }
}
