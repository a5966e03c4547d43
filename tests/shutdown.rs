//! The binary as Kubernetes runs it: logs are JSON lines when stderr is not a terminal, SIGTERM
//! drains and exits cleanly, and a client that never finishes its request does not hold the
//! process past OUTPOST_DRAIN_SECONDS.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Binary {
    child: Child,
    gateway: String,
    lines: mpsc::Receiver<String>,
    _data: tempfile::TempDir,
}

/// Starts `outpost all` on loopback ports chosen by the system, with stderr piped (so not a
/// terminal), and waits until the gateway is ready.
fn start(drain_seconds: u64) -> Binary {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_outpost"));
    command
        .arg("all")
        .env("OUTPOST_DATA_DIR", data.path())
        .env("OUTPOST_DRAIN_SECONDS", drain_seconds.to_string())
        .env("OUTPOST_OPENSENSEMAP_URL", "http://127.0.0.1:9")
        .env("OUTPOST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for name in ["GATEWAY", "INGEST", "MEDIA", "TELEMETRY", "PLOTTING"] {
        command.env(format!("OUTPOST_{name}_ADDR"), "127.0.0.1:0");
    }
    let mut child = command.spawn().expect("the outpost binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let gateway = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the binary says where the gateway is");
        if let Some(rest) = line.strip_prefix("Outpost is up: ") {
            break rest.trim_end_matches('/').to_string();
        }
    };
    let binary = Binary {
        child,
        gateway,
        lines,
        _data: data,
    };
    let ready = loop {
        if status_line(&binary.gateway, "/readyz").is_some_and(|line| line.contains(" 200 ")) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready, "the mesh is ready within 60 s");
    binary
}

/// The status line of `GET path` (plain HTTP/1.1 over a socket).
fn status_line(base: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: outpost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

impl Binary {
    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits at most `limit` for the process to exit: its status and how long it took.
    fn wait(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("still running {limit:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every stderr line so far.
    fn logged(&self) -> Vec<String> {
        std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_millis(500)).ok()).collect()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn sigterm_drains_and_logs_are_json_lines() {
    let mut binary = start(20);
    binary.sigterm();
    let (status, took) = binary.wait(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(10),
        "an idle mesh stops at once, took {took:?}"
    );

    let logged = binary.logged();
    let events: Vec<serde_json::Value> = logged
        .iter()
        .filter(|line| !line.starts_with("Outpost is up"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "shutting down" && e["level"] == "INFO"),
        "{logged:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["timestamp"].is_string() && e["target"].is_string()),
        "{logged:?}"
    );
}

#[test]
fn a_request_that_never_ends_does_not_hold_the_process_past_its_drain_time() {
    let mut binary = start(2);
    // A write whose body never arrives: the handler waits for it, so the server cannot drain.
    let mut stuck = TcpStream::connect(binary.gateway.trim_start_matches("http://")).unwrap();
    stuck
        .write_all(
            b"POST /add_rawdata/ HTTP/1.1\r\nHost: outpost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    binary.sigterm();
    let (status, took) = binary.wait(Duration::from_secs(15));
    assert!(
        took >= Duration::from_secs(2),
        "the process waited for the request first, took {took:?}"
    );
    assert!(!status.success(), "an unfinished drain is a failure exit: {status}");
    let logged = binary.logged().join("\n");
    assert!(logged.contains("OUTPOST_DRAIN_SECONDS"), "{logged}");
    drop(stuck);
}
