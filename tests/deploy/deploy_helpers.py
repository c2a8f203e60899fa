"""Shared readers for the deployment tests: YAML documents, Kubernetes schema checks, commands."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc import launcher

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
ENVOY_GATEWAY_DIR = REPO / "deploy" / "envoy-gateway"
COMPOSE_FILE = REPO / "docker-compose.yaml"

# The oldest Kubernetes we support (native sidecars are on by default from 1.29, gRPC probes
# are GA since 1.27) and the newest schema kubernetes-validate ships.
OLDEST_KUBERNETES = "1.30.0"


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def load_one(path: Path) -> dict[str, Any]:
    docs = load_documents(path)
    assert len(docs) == 1, f"{path} should hold one document"
    return docs[0]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kubernetes_versions() -> list[str]:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    return [OLDEST_KUBERNETES, kubernetes_validate.latest_version()]


def validate_kubernetes(resource: dict[str, Any], version: str) -> None:
    """Strict schema validation (unknown fields are errors), with a readable failure."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        pytest.fail(f"{name} invalid for Kubernetes {version} at {where}: {exc.message}")


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def all_containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in all_containers(spec) if c["name"] == name]
    assert len(matches) == 1, f"expected one container named {name}"
    return matches[0]


def python_snippet(command: list[str]) -> str:
    """The code of a `python -c CODE` command (exec probes, hooks, healthchecks)."""
    assert command[0] in ("python", "python3") and command[1] == "-c", command
    return command[2]


def snippet_constant(code: str, name: str) -> str:
    match = re.search(rf"^{name} = (.+)$", code, re.MULTILINE)
    assert match, f"{name} not set in snippet"
    return match.group(1)


def run_snippet(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )


def envoy_binary() -> str:
    try:
        return launcher.envoy_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def envoy_validate(config_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "envoy.yaml"
    config.write_text(config_text)
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def parse_duration_s(value: str) -> float:
    """Gateway API / Envoy style durations: '600s', '10m', '1h30m', '500ms'."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)
