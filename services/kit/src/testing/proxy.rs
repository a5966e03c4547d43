//! A TCP proxy a test can cut, stop and start again, to play a dependency's network failing
//! or a dependency coming up late.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Forwards every connection to `upstream` until cut or stopped.
pub struct Proxy {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    upstream: SocketAddr,
    accepted: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    listening: Mutex<Option<AbortHandle>>,
}

impl Proxy {
    /// A proxy to `upstream` on a free port of 127.0.0.1.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        Self::serve(listener, upstream)
    }

    /// A proxy to `upstream` that does not listen yet, on a port nothing listens on: a
    /// dependency that is down until [`Proxy::resume`].
    pub async fn stopped(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let proxy = Self::serve(listener, upstream);
        proxy.stop();
        proxy
    }

    fn serve(listener: TcpListener, upstream: SocketAddr) -> Proxy {
        let proxy = Proxy {
            addr: listener.local_addr().expect("a bound address"),
            upstream,
            accepted: Arc::default(),
            connections: Arc::default(),
            listening: Mutex::new(None),
        };
        proxy.listen(listener);
        proxy
    }

    fn listen(&self, listener: TcpListener) {
        let (count, handles, upstream) = (self.accepted.clone(), self.connections.clone(), self.upstream);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                handles
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(task.abort_handle());
            }
        });
        *self.listening.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection (both ends), as a network failure would.
    pub fn cut(&self) {
        for handle in self.connections.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            handle.abort();
        }
    }

    /// Stops listening and cuts every connection: the dependency is down (connections are
    /// refused).
    pub fn stop(&self) {
        if let Some(task) = self.listening.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        self.cut();
    }

    /// Listens again on the same address: the dependency is back.
    pub async fn resume(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                // The stopped listener's socket may take a moment to go.
                Err(err) if tries < 100 => {
                    tries += 1;
                    let _ = err;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(err) => panic!("cannot listen on {} again: {err}", self.addr),
            }
        };
        self.listen(listener);
    }
}
