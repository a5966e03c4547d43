"""Rendered manifests: rendering with `kubectl kustomize`, and resolving a container's
environment the way the kubelet does (envFrom, then env; ConfigMap and Secret references;
`$(VAR)` expansion)."""

import base64
import re
import subprocess
from pathlib import Path

import yaml

WORKLOADS = ("Deployment", "StatefulSet")


def render(root: Path, overlay: str) -> str:
    """`kubectl kustomize` of `k8s/<overlay>`."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(root / "k8s" / overlay)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"kubectl kustomize k8s/{overlay} failed:\n{result.stderr}")
    return result.stdout


class Manifests:
    """The documents of one rendering, indexed by kind and name."""

    def __init__(self, text: str):
        self.docs = [d for d in yaml.safe_load_all(text) if d]
        self.by_kind: dict[str, dict[str, dict]] = {}
        for doc in self.docs:
            self.by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    def kind(self, kind: str) -> dict[str, dict]:
        return self.by_kind.get(kind, {})

    def workloads(self):
        for kind in WORKLOADS:
            yield from self.kind(kind).values()

    def workloads_selected_by(self, service: dict) -> list[dict]:
        """The workloads whose pods a Service selects."""
        selector = service["spec"].get("selector") or {}
        if not selector:
            return []
        return [
            w
            for w in self.workloads()
            if all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]

    def config_value(self, kind: str, name: str, key: str | None, optional: bool = False):
        """A key of a ConfigMap or Secret (decoded), or all of its keys when `key` is None.
        A missing object or key fails as it fails the kubelet, unless `optional`."""
        obj = self.kind(kind).get(name)
        if obj is None:
            if optional:
                return {} if key is None else None
            raise CheckError(f"{kind} {name} is referenced but not in the manifests")
        data = {k: str(v) for k, v in (obj.get("data") or {}).items()}
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            data.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        if key is None:
            return data
        if key not in data:
            if optional:
                return None
            raise CheckError(f"{kind} {name} has no key {key!r} (the kubelet would not start the container)")
        return data[key]


class CheckError(Exception):
    """A check that failed, with what a person needs to fix it."""


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` is a `$`, undefined
    references stay as they are."""

    def replace(match):
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REF.sub(replace, value)


def container_env(manifests: Manifests, workload: dict, container: dict) -> dict[str, str]:
    """The environment the kubelet gives `container`: envFrom sources in order, then env entries
    (each may refer to the ones before it with `$(VAR)`)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field in source:
                ref = source[field]
                values = manifests.config_value(kind, ref["name"], None, ref.get("optional", False))
                env.update({prefix + k: v for k, v in values.items()})
    pod_name = workload["metadata"]["name"] + "-0"
    for entry in container.get("env") or []:
        name = entry["name"]
        if "value" in entry:
            env[name] = expand(str(entry["value"]), env)
            continue
        source = entry.get("valueFrom", {})
        if "configMapKeyRef" in source or "secretKeyRef" in source:
            kind, ref = ("ConfigMap", source["configMapKeyRef"]) if "configMapKeyRef" in source else (
                "Secret",
                source["secretKeyRef"],
            )
            value = manifests.config_value(kind, ref["name"], ref["key"], ref.get("optional", False))
            if value is not None:
                env[name] = value
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            env[name] = {
                "metadata.name": pod_name,
                "metadata.namespace": workload["metadata"].get("namespace", "default"),
                "status.podIP": "127.0.0.1",
                "spec.nodeName": "localhost",
            }.get(path, "")
        else:
            raise CheckError(f"{workload['metadata']['name']}: env {name} has a source this check cannot resolve")
    return env
