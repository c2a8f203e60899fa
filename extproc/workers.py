"""Extra ext_proc worker processes on the same port (SO_REUSEPORT) to use more than one core.

Envoy spreads its HTTP/2 connections over them when the ext_proc cluster limits
`max_concurrent_streams` (see the rendered envoy.yaml). The workers are plain
`extproc serve` processes started from the parent's resolved config.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import yaml

from extproc.config import Config

# Set in a worker's environment so it serves instead of starting workers of its own.
CHILD_ENV = "EXTPROC_WORKER_CHILD"


def is_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


class Workers:
    """`config.workers - 1` extra servers; the process that starts them is worker 0."""

    def __init__(self, config: Config) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self._config_path: str | None = None
        if config.workers <= 1 or is_child():
            return
        # Workers share the gRPC port; the metrics port belongs to worker 0.
        data = config.model_dump(mode="json", by_alias=True, exclude={"metrics_listen"})
        with tempfile.NamedTemporaryFile(
            "w", prefix="extproc-worker-", suffix=".yaml", delete=False
        ) as handle:
            yaml.safe_dump(data, handle)
        self._config_path = handle.name
        env = {**os.environ, CHILD_ENV: "1"}
        self.procs = [
            subprocess.Popen([sys.executable, "-m", "extproc", "serve", "--config", handle.name], env=env)
            for _ in range(config.workers - 1)
        ]

    def stop(self, timeout: float) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._config_path is not None and os.path.exists(self._config_path):
            os.unlink(self._config_path)
