"""Starts the mesh as the manifests describe it, on this machine: one `outpost` process per
Deployment of the `outpost` image, with that Deployment's args and its container's environment
(ConfigMap and Secret references resolved as the kubelet resolves them), every Service name
mapped to a loopback port, the data stores' Services mapped to local servers. Then probes each
process with its own manifest's probes, sends requests through the gateway that cross every
service, and stops everything with SIGTERM, which must end each process within its
terminationGracePeriodSeconds."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc

import probes
from manifests import CheckError, Manifests, container_env, expand

IMAGE = "outpost"


def image_name(image: str) -> str:
    """`registry/outpost:tag@sha256:…` → `outpost`."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def container_port(container: dict, port) -> int:
    """A container port by number or name."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise CheckError(f"container {container['name']} has no port named {port!r}")


class Pod:
    """One Deployment's process."""

    def __init__(self, workload: dict, container: dict, logs: Path):
        self.workload = workload
        self.name = workload["metadata"]["name"]
        self.container = container
        self.ports = {p["containerPort"]: free_port() for p in container.get("ports", [])}
        self.log_path = logs / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def port_of(self, port) -> int:
        number = container_port(self.container, port)
        if number not in self.ports:
            raise CheckError(f"{self.name}: probe port {port} is not a declared container port")
        return self.ports[number]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Addresses:
    """Service DNS names (in any of their forms) and wildcard listen addresses, rewritten to
    loopback ports."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.services: dict[tuple[str, int], str] = {}

    def add(self, service: str, port: int, target: str):
        self.services[(service, port)] = target

    def rewrite(self, value: str, pod: Pod) -> str:
        suffixes = {"", f".{self.namespace}", f".{self.namespace}.svc", f".{self.namespace}.svc.cluster.local"}

        def replace(match):
            host, port = match.group("host"), int(match.group("port"))
            if host in ("0.0.0.0", "[::]"):
                return f"127.0.0.1:{pod.ports[port]}" if port in pod.ports else match.group(0)
            name, _, rest = host.partition(".")
            if (name, port) in self.services and (("." + rest) if rest else "") in suffixes:
                return self.services[(name, port)]
            return match.group(0)

        return re.sub(r"(?P<host>\[::\]|[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?):(?P<port>\d+)", replace, value)


def prepare_postgres(manifests: Manifests, service: str, address: str, superuser: str) -> str:
    """Does what the PostgreSQL image does on its first start (POSTGRES_USER, POSTGRES_DB) on
    the local server, where they are missing."""
    workloads = manifests.workloads_selected_by(manifests.kind("Service")[service])
    if not workloads:
        return "no StatefulSet behind it"
    container = workloads[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    user, db = env.get("POSTGRES_USER") or "postgres", env.get("POSTGRES_DB") or env.get("POSTGRES_USER")
    host, port = address.rsplit(":", 1)
    psql = ["psql", "-h", host, "-p", port, "-U", superuser, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atqc"]
    if not subprocess.run(psql + [f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'"], capture_output=True, text=True, check=True).stdout.strip():
        subprocess.run(psql + [f'CREATE ROLE "{user}" LOGIN'], check=True)
    if not subprocess.run(psql + [f"SELECT 1 FROM pg_database WHERE datname = '{db}'"], capture_output=True, text=True, check=True).stdout.strip():
        subprocess.run(psql + [f'CREATE DATABASE "{db}" OWNER "{user}"'], check=True)
    return f"role {user}, database {db}"


def http(method: str, url: str, body=None, token: str | None = None, timeout: float = 15):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, text.decode(errors="replace")


class Mesh:
    def __init__(self, manifests: Manifests, binary: Path, backends: dict[str, str], out: Path, superuser: str):
        self.manifests = manifests
        self.binary = binary
        self.backends = backends
        self.superuser = superuser
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pods: list[Pod] = []
        namespace = manifests.kind("Namespace")
        self.addresses = Addresses(next(iter(namespace)) if namespace else "default")

    def plan(self):
        skipped = []
        for workload in self.manifests.kind("Deployment").values():
            containers = workload["spec"]["template"]["spec"]["containers"]
            ours = [c for c in containers if image_name(c["image"]) == IMAGE]
            if not ours:
                skipped.append(workload["metadata"]["name"])
                continue
            if len(containers) != 1:
                raise CheckError(f"{workload['metadata']['name']}: one container per Outpost pod expected")
            self.pods.append(Pod(workload, ours[0], self.logs))
        if not self.pods:
            raise CheckError(f"no Deployment runs the {IMAGE} image")
        for service in self.manifests.kind("Service").values():
            name = service["metadata"]["name"]
            selected = self.manifests.workloads_selected_by(service)
            pods = [p for p in self.pods if p.workload in selected]
            for port in service["spec"]["ports"]:
                if pods:
                    target = container_port(pods[0].container, port.get("targetPort", port["port"]))
                    self.addresses.add(name, port["port"], f"127.0.0.1:{pods[0].ports[target]}")
                elif name in self.backends:
                    self.addresses.add(name, port["port"], self.backends[name])
                else:
                    # Not run here (the collector, Jaeger): a loopback port nothing listens on.
                    self.addresses.add(name, port["port"], f"127.0.0.1:{free_port()}")
            if not pods:
                where = self.backends.get(name, "not run here")
                print(f"  service {name}: {where}")
        print(f"  not run here: Deployments {', '.join(skipped) or '-'}; StatefulSets "
              f"{', '.join(self.manifests.kind('StatefulSet')) or '-'} (their Services go to the local servers)")

    def start(self):
        for name, address in self.backends.items():
            if name in self.manifests.kind("Service") and name.startswith("postgres"):
                print(f"  {name} → {address}: {prepare_postgres(self.manifests, name, address, self.superuser)}")
        for pod in self.pods:
            env = container_env(self.manifests, pod.workload, pod.container)
            pod.env = {k: self.addresses.rewrite(v, pod) for k, v in env.items()}
            args = [expand(str(a), env) for a in (pod.container.get("command", [])[1:] + pod.container.get("args", []))]
            home = tempfile.mkdtemp(prefix=f"kube-check-{pod.name}-")
            process_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, **pod.env}
            print(f"  {pod.name}: outpost {' '.join(args)}; ports "
                  + ", ".join(f"{c}→{l}" for c, l in pod.ports.items()))
            pod.process = subprocess.Popen(
                [str(self.binary), *args], env=process_env, cwd=home,
                stdin=subprocess.DEVNULL, stdout=pod.log_path.open("w"), stderr=subprocess.STDOUT,
            )

    def probe_all(self):
        failures: list[str] = []

        def probe(pod: Pod):
            c = pod.container
            for kind, attempts in (("startupProbe", None), ("readinessProbe", None), ("livenessProbe", None)):
                spec = c.get(kind)
                if spec is None:
                    failures.append(f"{pod.name}: no {kind}")
                    continue
                threshold = spec.get("failureThreshold", 3)
                period = spec.get("periodSeconds", 10)
                # Readiness is probed for as long as the pod lives; here, for up to a minute.
                attempts = max(threshold, int(60 / period)) if kind == "readinessProbe" else threshold
                ok, result, seconds = probes.wait_until(spec, pod.port_of, attempts, pod.alive)
                line = f"  {pod.name} {kind} ({probes.describe(spec)}): {result} after {seconds:.1f}s"
                print(line, flush=True)
                if not ok:
                    failures.append(line.strip())
                    return

        threads = [threading.Thread(target=probe, args=(pod,)) for pod in self.pods]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise CheckError("probes failed:\n" + "\n".join(failures) + self.tails())

    def tails(self) -> str:
        return "".join(f"\n--- {p.name} ({p.log_path}) ---\n{p.log_tail()}" for p in self.pods)

    def pod(self, args0: str) -> Pod:
        for pod in self.pods:
            if pod.container.get("args", [None])[0] == args0:
                return pod
        raise CheckError(f"no Deployment runs `outpost {args0}`")

    def requests(self):
        """Requests through the gateway's Service that reach every service."""
        gateway = self.pod("gateway")
        services = self.manifests.workloads_selected_by
        name = next(
            n for n, s in self.manifests.kind("Service").items() if gateway.workload in services(s)
        )
        port = self.manifests.kind("Service")[name]["spec"]["ports"][0]["port"]
        base = "http://" + self.addresses.services[(name, port)]
        token = gateway.env.get("OUTPOST_API_TOKEN")
        sensor = f"kube_check_{os.getpid()}"
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())

        def expect(what, status, body, want):
            print(f"  {what}: {status}", flush=True)
            if status != want:
                raise CheckError(f"{what}: expected {want}, got {status}: {str(body)[:400]}" + self.tails())

        if token:
            status, body = http("POST", f"{base}/add_rawdata/", {"sensor": sensor, "value": 1, "timestamp": now})
            expect("POST /add_rawdata/ without the Secret's token", status, body, 401)
        status, body = http("POST", f"{base}/add_rawdata/", {"sensor": sensor, "value": 21.5, "timestamp": now}, token)
        expect("POST /add_rawdata/ (gateway → ingest → telemetry → PostgreSQL)", status, body, 201)
        status, body = http("GET", f"{base}/get_current_value/{sensor}")
        expect("GET /get_current_value/… (gateway → telemetry)", status, body, 200)
        if "21.5" not in json.dumps(body):
            raise CheckError(f"current value is not the reading written: {body}")

        # A reading through the Redis stream: Redis → ingest → telemetry, read back via the gateway.
        ingest = self.pod("ingest")
        stream = ingest.env.get("OUTPOST_NAMESPACE", "") + ingest.env.get("OUTPOST_SENSOR_STREAM", "sensor_readings")
        redis = re.match(r"redis://(?:[^@/]*@)?([^:/]+):(\d+)", ingest.env["OUTPOST_REDIS_URL"])
        payload = json.dumps({"sensor": sensor + "_stream", "value": 7.25, "timestamp": now})
        subprocess.run(["redis-cli", "-h", redis.group(1), "-p", redis.group(2), "XADD", stream, "*", "payload", payload],
                       check=True, capture_output=True)
        for _ in range(50):
            status, body = http("GET", f"{base}/get_current_value/{sensor}_stream")
            if status == 200:
                break
            time.sleep(0.2)
        expect("XADD to the sensor stream, then GET /get_current_value/… (Redis → ingest → telemetry)", status, body, 200)

        self.grpc_writes()

        status, body = http("POST", f"{base}/api/v1/snapshots:export", {}, token)
        expect("POST /api/v1/snapshots:export (gateway → telemetry → media → S3)", status, body, 200)
        name = json.dumps(body)
        match = re.search(r'"(objects/[^"]+)"', name)
        if not match:
            raise CheckError(f"the snapshot answer names no object: {body}")
        status, body = http("GET", f"{base}/api/v1/{match.group(1)}")
        expect(f"GET /api/v1/{match.group(1)} (gateway → media)", status, body, 200)
        status, body = http("GET", f"{base}/api/v1/plotJobs")
        expect("GET /api/v1/plotJobs (gateway → plotting)", status, body, 200)

    def grpc_writes(self):
        """Each service's Secret token is in force: a write straight to the service over gRPC is
        refused without it, and passes the check with it (an empty request then fails on its
        content, not its credentials)."""
        writes = {
            "ingest": "/outpost.ingest.v1.IngestService/CreateRun",
            "media": "/outpost.media.v1.MediaService/CreateObject",
            "telemetry": "/outpost.telemetry.v1.TelemetryService/WriteReadings",
            "plotting": "/outpost.plotting.v1.PlottingService/CreatePlotJob",
        }
        for role, method in writes.items():
            pod = self.pod(role)
            token = pod.env.get("OUTPOST_API_TOKEN")
            if not token:
                raise CheckError(f"{pod.name}: no OUTPOST_API_TOKEN, so its gRPC writes are open to anyone who reaches it")
            port = pod.ports[container_port(pod.container, "grpc")]
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(method)
                codes = []
                for metadata in ((), (("authorization", f"Bearer {token}"),)):
                    try:
                        call(b"", timeout=10, metadata=metadata)
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as err:
                        codes.append(err.code())
            print(f"  gRPC {method} without the token: {codes[0].name}; with it: {codes[1].name}", flush=True)
            if codes[0] != grpc.StatusCode.UNAUTHENTICATED or codes[1] == grpc.StatusCode.UNAUTHENTICATED:
                raise CheckError(f"{pod.name}: the token does not guard {method} ({codes})")

    def stop(self, check: bool = True):
        """SIGTERM to every process; each must exit cleanly within the time its pod has left
        after its preStop pause."""
        failures = []
        for pod in self.pods:
            if pod.alive():
                pod.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for pod in self.pods:
            if pod.process is None:
                continue
            spec = pod.workload["spec"]["template"]["spec"]
            grace = spec.get("terminationGracePeriodSeconds", 30)
            pause = pod.container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            budget = grace - pause
            try:
                code = pod.process.wait(timeout=max(0.1, budget - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                pod.process.kill()
                pod.process.wait()
                failures.append(f"{pod.name}: still running {budget}s after SIGTERM (grace {grace}s - preStop {pause}s)")
                continue
            seconds = time.monotonic() - started
            print(f"  {pod.name}: exited {code} {seconds:.1f}s after SIGTERM (budget {budget}s)")
            if code != 0:
                failures.append(f"{pod.name}: exit code {code} after SIGTERM")
        if check and failures:
            raise CheckError("\n".join(failures) + self.tails())


def run(manifests: Manifests, binary: Path, backends: dict[str, str], out: Path, superuser: str):
    mesh = Mesh(manifests, binary, backends, out, superuser)
    mesh.plan()
    try:
        mesh.start()
        mesh.probe_all()
        mesh.requests()
    except BaseException:
        mesh.stop(check=False)
        raise
    mesh.stop()
