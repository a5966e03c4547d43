//! A client in another language: Python code generated from `proto/` with grpcio-tools calls a
//! health check and RPCs of the running mesh, whose `OUTPOST_API_TOKEN` is set: reads are open,
//! a write without the token is UNAUTHENTICATED, with it the write is done.

mod common;

use std::path::Path;
use std::process::Command;

fn python_has_grpc() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, grpc_health.v1.health_pb2"])
        .output()
        .is_ok_and(|o| o.status.success())
}

const SCRIPT: &str = r#"
import json, sys
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from outpost.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

channel = grpc.insecure_channel(sys.argv[1])
token = [("authorization", "Bearer " + sys.argv[2])]
health = health_pb2_grpc.HealthStub(channel).Check(
    health_pb2.HealthCheckRequest(service="outpost.telemetry.v1.TelemetryService"), timeout=5)
stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)
request = telemetry_pb2.CreateDeviceRequest(
    device_id="py-box", device=telemetry_pb2.Device(display_name="from python", source="python"))
try:
    stub.CreateDevice(request, timeout=5)
    without_token = "OK"
except grpc.RpcError as err:
    without_token = err.code().name
try:
    stub.CreateDevice(request, timeout=5, metadata=[("authorization", "Bearer wrong")])
    wrong_token = "OK"
except grpc.RpcError as err:
    wrong_token = err.code().name
created = stub.CreateDevice(request, timeout=5, metadata=token)
listed = stub.ListDevices(telemetry_pb2.ListDevicesRequest(page_size=10), timeout=5)
try:
    stub.GetDevice(telemetry_pb2.GetDeviceRequest(name="devices/absent"), timeout=5)
    missing = "OK"
except grpc.RpcError as err:
    missing = err.code().name
print(json.dumps({
    "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
    "created": created.device.name,
    "listed": [d.name for d in listed.devices],
    "missing": missing,
    "without_token": without_token,
    "wrong_token": wrong_token,
}))
"#;

const TOKEN: &str = "python-s3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generated_python_client_calls_the_mesh() {
    if !python_has_grpc() {
        assert!(
            std::env::var("OUTPOST_TEST_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "python3 with grpcio, grpcio-tools and grpcio-health-checking is required (OUTPOST_TEST_REQUIRE_BACKENDS=1)"
        );
        eprintln!("skipped: python3 lacks grpcio, grpcio-tools or grpcio-health-checking");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut generate = Command::new("python3");
    generate
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", out.path().display()));
    generate.arg(format!("--grpc_python_out={}", out.path().display()));
    for file in [
        "google/api/http.proto",
        "google/api/annotations.proto",
        "google/api/field_behavior.proto",
        "outpost/api/v1/constraints.proto",
    ] {
        generate.arg(proto.join(file));
    }
    for service in ["ingest", "media", "telemetry", "plotting"] {
        generate.arg(proto.join(format!("outpost/{service}/v1/{service}.proto")));
    }
    let generated = generate.output().unwrap();
    assert!(
        generated.status.success(),
        "protoc: {}",
        String::from_utf8_lossy(&generated.stderr)
    );

    let backend = outpost_kit::testing::backends().into_iter().next().unwrap();
    let mesh = common::start_with(&backend, |cli| cli.config.api_token = Some(TOKEN.into())).await;
    let target = mesh.config.telemetry_addr.to_string();
    let script = out.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(target)
            .arg(TOKEN)
            .env("PYTHONPATH", out.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        run.status.success(),
        "python client: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(answer["health"], "SERVING");
    assert_eq!(answer["without_token"], "UNAUTHENTICATED", "{answer}");
    assert_eq!(answer["wrong_token"], "UNAUTHENTICATED", "{answer}");
    assert_eq!(answer["created"], "devices/py-box");
    assert!(
        answer["listed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "devices/py-box"),
        "{answer}"
    );
    assert_eq!(answer["missing"], "NOT_FOUND");
    mesh.stop().await;
}
