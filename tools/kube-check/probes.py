"""Probes run the way the kubelet runs them: gRPC health (`grpc:`), `httpGet`, `tcpSocket`,
each attempt bounded by `timeoutSeconds`, attempts `periodSeconds` apart."""

import socket
import time
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def describe(probe: dict) -> str:
    if "grpc" in probe:
        return f"grpc port {probe['grpc']['port']} service {probe['grpc'].get('service', '')!r}"
    if "httpGet" in probe:
        return f"httpGet {probe['httpGet'].get('path', '/')} port {probe['httpGet']['port']}"
    if "tcpSocket" in probe:
        return f"tcpSocket port {probe['tcpSocket']['port']}"
    return "exec " + " ".join(probe.get("exec", {}).get("command", []))


def attempt(probe: dict, port_of) -> tuple[bool, str]:
    """One attempt of `probe`; `port_of(port)` maps the probe's container port (number or name)
    to the loopback port the process listens on. Returns (success, what happened)."""
    timeout = probe.get("timeoutSeconds", 1)
    if "grpc" in probe:
        port = port_of(probe["grpc"]["port"])
        service = probe["grpc"].get("service", "")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout
                )
            except grpc.RpcError as err:
                return False, f"{err.code().name}: {err.details()}"
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return reply.status == health_pb2.HealthCheckResponse.SERVING, status
    if "httpGet" in probe:
        get = probe["httpGet"]
        url = f"http://127.0.0.1:{port_of(get['port'])}{get.get('path', '/')}"
        request = urllib.request.Request(url, headers={h["name"]: h["value"] for h in get.get("httpHeaders", [])})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                code = response.status
        except urllib.error.HTTPError as err:
            code = err.code
        except OSError as err:
            return False, str(err)
        return 200 <= code < 400, f"HTTP {code}"
    if "tcpSocket" in probe:
        try:
            socket.create_connection(("127.0.0.1", port_of(probe["tcpSocket"]["port"])), timeout=timeout).close()
            return True, "connected"
        except OSError as err:
            return False, str(err)
    return False, "exec probes are not run by this check"


def wait_until(probe: dict, port_of, attempts: int, alive=lambda: True) -> tuple[bool, str, float]:
    """Runs `probe` until it succeeds, at most `attempts` times: (success, last result, seconds)."""
    started = time.monotonic()
    time.sleep(probe.get("initialDelaySeconds", 0))
    period = probe.get("periodSeconds", 10)
    last = "not run"
    for _ in range(attempts):
        if not alive():
            return False, "the process exited", time.monotonic() - started
        tried = time.monotonic()
        ok, last = attempt(probe, port_of)
        if ok:
            return True, last, time.monotonic() - started
        time.sleep(max(0.0, period - (time.monotonic() - tried)))
    return False, last, time.monotonic() - started
