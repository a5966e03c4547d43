//! Starts the whole mesh in-process on 127.0.0.1:0 ports, on one test backend.

#![allow(dead_code)]

use std::time::Duration;

use clap::Parser;
use outpost::{Cli, Listeners};
use outpost_kit::config::Config;
use outpost_kit::testing::TestBackend;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running mesh.
pub struct Mesh {
    /// `http://127.0.0.1:port` of the gateway.
    pub base: String,
    /// The resolved configuration (real ports).
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts the mesh on `backend`, with `adjust` applied to its settings, and waits until it is ready.
pub async fn start_with(backend: &TestBackend, adjust: impl FnOnce(&mut Cli)) -> Mesh {
    let mesh = spawn_with(backend, adjust).await;
    mesh.wait_ready().await;
    mesh
}

/// Starts the mesh on `backend`, with `adjust` applied to its settings, without waiting for it.
pub async fn spawn_with(backend: &TestBackend, adjust: impl FnOnce(&mut Cli)) -> Mesh {
    let mut cli = Cli::try_parse_from(["outpost"]).expect("default arguments parse");
    cli.config = backend.config();
    adjust(&mut cli);
    let listeners = Listeners::bind(&cli.config).await.expect("ports bind");
    let config = listeners.resolve(cli.config.clone()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(outpost::run_all_on(cli, listeners, async {
        let _ = stopped.await;
    }));
    Mesh {
        base: format!("http://{}", config.gateway_addr),
        config,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Starts the mesh on `backend` and waits until it is ready.
pub async fn start(backend: &TestBackend) -> Mesh {
    start_with(backend, |_| {}).await
}

impl Mesh {
    /// Polls `GET {base}{path}` until `done` holds for its status and JSON body (at most 30 s);
    /// returns that body.
    pub async fn wait_for(
        &self,
        path: &str,
        mut done: impl FnMut(reqwest::StatusCode, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        loop {
            if let Ok(response) = client
                .get(format!("{}{path}", self.base))
                .timeout(Duration::from_secs(3))
                .send()
                .await
            {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                if let Ok(body) = serde_json::from_str::<serde_json::Value>(&text)
                    && done(status, &body)
                {
                    return body;
                }
                last = format!("{status} {text}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} did not reach the wanted state within 30 s; last answer: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/readyz` answers 200 with every service and dependency serving (at most 30 s).
    pub async fn wait_ready(&self) {
        self.wait_for("/readyz", |status, body| status == 200 && body["status"] == "ready")
            .await;
    }

    /// Stops the mesh and waits for every part to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("mesh stops within 30 s")
                .unwrap()
                .expect("mesh stops cleanly");
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response's status and JSON body (panics, showing the body, when it is not JSON).
pub async fn answer(response: reqwest::Response) -> (reqwest::StatusCode, serde_json::Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
    (status, body)
}

/// `GET url`: status and JSON body.
pub async fn get(http: &reqwest::Client, url: String) -> (reqwest::StatusCode, serde_json::Value) {
    answer(http.get(url).send().await.unwrap()).await
}

/// `POST url` with a JSON body: status and JSON body.
pub async fn post(
    http: &reqwest::Client,
    url: String,
    body: &serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    answer(http.post(url).json(body).send().await.unwrap()).await
}
