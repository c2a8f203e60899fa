"""Start real processes on free loopback ports: the mock backend, and `extproc up` (Envoy + ext_proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from extproc.launcher import free_port

REPO = Path(__file__).resolve().parents[1]


def wait_until(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{tail(log)}")


def wait_for_log(process: Process, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in process.log.read_text(errors="replace"):
            return
        if process.proc.poll() is not None:
            raise RuntimeError(f"{process.name} exited {process.proc.returncode}:\n{tail(process.log)}")
        time.sleep(0.05)
    raise TimeoutError(f"{process.name}: no {text!r} after {timeout}s:\n{tail(process.log)}")


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spawn(name: str, args: list[str], workdir: Path, env: dict[str, str] | None = None) -> Process:
    log = workdir / f"{name}.log"
    handle = log.open("wb")
    proc = subprocess.Popen(
        args, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True,
    )
    handle.close()
    return Process(name, proc, log)


@dataclass
class MockBackend:
    process: Process
    url: str  # base URL without /v1
    # One kept-alive client: a new httpx client per call costs ~45 ms (TLS context setup).
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5))

    def script(self, *responses: dict[str, Any]) -> None:
        self.http.post(self.url + "/__mock/script", json=list(responses)).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        reply = self.http.get(self.url + "/__mock/requests")
        reply.raise_for_status()
        data = reply.json()
        return data["requests"] if isinstance(data, dict) else data

    def reset(self) -> None:
        self.http.post(self.url + "/__mock/reset").raise_for_status()


def start_mock(workdir: Path, *extra: str) -> MockBackend:
    port = free_port()
    process = spawn(
        f"mock-{port}", [sys.executable, "-m", "extproc.mock_backend", "--listen", f"127.0.0.1:{port}", *extra],
        workdir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(url + "/health", process.proc, process.log)
    return MockBackend(process, url)


@dataclass
class Gateway:
    process: Process
    url: str
    admin_url: str
    metrics_url: str | None
    config_path: Path
    workdir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def logs(self) -> str:
        return tail(self.process.log, 400)


def start_gateway(workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> Gateway:
    """`extproc up --config` with free ports filled in; waits for Envoy's /ready."""
    listen, admin, grpc_port, metrics = free_port(), free_port(), free_port(), free_port()
    config = {
        "listen": f"127.0.0.1:{listen}",
        "admin_listen": f"127.0.0.1:{admin}",
        "extproc_listen": f"127.0.0.1:{grpc_port}",
        "metrics_listen": f"127.0.0.1:{metrics}",
        **config,
    }
    path = workdir / f"gateway-{listen}.yaml"
    path.write_text(yaml.safe_dump(config))
    process = spawn(
        f"gateway-{listen}", [sys.executable, "-m", "extproc", "up", "--config", str(path)], workdir, env
    )
    admin_url = f"http://127.0.0.1:{admin}"
    wait_until(admin_url + "/ready", process.proc, process.log, timeout=60)
    # Envoy is forked (and ready) before the ext_proc server listens; until then a request
    # gets Envoy's 500. `extproc up` announces readiness once both serve.
    wait_for_log(process, "extproc gateway ready", timeout=60)
    metrics_url = f"http://{config['metrics_listen']}" if config.get("metrics_listen") else None
    return Gateway(process, f"http://127.0.0.1:{listen}", admin_url, metrics_url, path, workdir)


def backend_config(mock: MockBackend, **extra: Any) -> dict[str, Any]:
    """One OpenAI-schema backend entry pointing at the mock (keyword args add/override fields)."""
    return {"name": "vllm", "schema": "openai", "base_url": mock.url + "/v1", **extra}


@dataclass
class EnvoyOnly:
    """Envoy alone, rendered by `extproc envoy-config` (no ext_proc server unless you start one)."""

    process: Process
    url: str
    admin_url: str
    extproc_port: int
    config_path: Path | None = None  # the extproc config (for `extproc serve --config`)


def start_envoy_only(workdir: Path, config: dict[str, Any]) -> EnvoyOnly:
    """`extproc envoy-config --config` + the `envoy` binary; ext_proc_listen is a free port
    where nothing listens (the caller may start something there)."""
    listen, admin, grpc_port = free_port(), free_port(), free_port()
    config = {
        "listen": f"127.0.0.1:{listen}",
        "admin_listen": f"127.0.0.1:{admin}",
        "extproc_listen": f"127.0.0.1:{grpc_port}",
        **config,
    }
    path = workdir / f"envoy-only-{listen}.yaml"
    path.write_text(yaml.safe_dump(config))
    rendered = subprocess.run(
        [sys.executable, "-m", "extproc", "envoy-config", "--config", str(path)],
        cwd=REPO, capture_output=True, check=True, timeout=60,
    ).stdout
    envoy_yaml = workdir / f"envoy-only-{listen}.envoy.yaml"
    envoy_yaml.write_bytes(rendered)
    process = spawn(
        f"envoy-only-{listen}",
        ["envoy", "-c", str(envoy_yaml), "--use-dynamic-base-id", "--log-level", "warning"],
        workdir,
    )
    admin_url = f"http://127.0.0.1:{admin}"
    wait_until(admin_url + "/ready", process.proc, process.log, timeout=60)
    return EnvoyOnly(process, f"http://127.0.0.1:{listen}", admin_url, grpc_port, path)


@contextlib.contextmanager
def stopping(*processes: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()
