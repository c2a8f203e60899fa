"""Graceful shutdown under load: SIGTERM lets in-flight streams finish (bounded by
timeouts.drain_s), refuses new requests promptly, and writes nothing half-way.

`extproc up` (Envoy + ext_proc in one command) and `extproc serve` (ext_proc alone, Envoy
separate, as in a Kubernetes pod) are both covered.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.harness import (
    EnvoyOnly,
    Gateway,
    MockBackend,
    Process,
    backend_config,
    spawn,
    start_envoy_only,
    start_gateway,
)

HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-client-dummy"}
DRAIN_S = 8
WORDS = 30
PACE_S = 0.1  # WORDS * PACE_S: a 3 s answer, well inside the drain window


def body(stream: bool = True) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-6", "max_tokens": 256, "stream": stream,
            "messages": [{"role": "user", "content": "count"}]}


def config(mock: MockBackend) -> dict[str, Any]:
    return {"backends": [backend_config(mock, models=[{"name": "qwen3-coder", "aliases": ["claude-*"]}])],
            "timeouts": {"drain_s": DRAIN_S, "extproc_message_s": 5}}


def events(raw: bytes) -> list[str]:
    return [line[len(b"event: "):].decode() for line in raw.split(b"\n") if line.startswith(b"event: ")]


class SlowStream:
    """A paced streaming request on its own thread; `started` is set at its first bytes."""

    def __init__(self, pool: ThreadPoolExecutor, url: str) -> None:
        self.started = threading.Event()
        self.future: Future[tuple[bytes, str | None]] = pool.submit(self._run, url)

    def _run(self, url: str) -> tuple[bytes, str | None]:
        received = b""
        try:
            with httpx.stream("POST", url + "/v1/messages", json=body(), headers=HEADERS,
                              timeout=DRAIN_S * 2) as reply:
                for chunk in reply.iter_raw():
                    received += chunk
                    self.started.set()
        except httpx.HTTPError as exc:
            return received, type(exc).__name__
        return received, None


def script_slow(mock: MockBackend, count: int) -> str:
    text = " ".join(f"w{n}" for n in range(WORDS))
    mock.script(*({"text": text, "chunk_delay_s": PACE_S} for _ in range(count)))
    return text


def wait_until_closed(port: int, timeout: float = 5) -> None:
    """Until nothing accepts connections on `port` (the signal has been handled)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        assert time.monotonic() < deadline, f"port {port} still accepts connections"
        time.sleep(0.02)


def new_request_refused(url: str) -> str:
    """What a request sent after SIGTERM gets: refused at connect, or a prompt Anthropic error.
    A success or a hang fails the test."""
    try:
        reply = httpx.post(url + "/v1/messages", json=body(stream=False), headers=HEADERS, timeout=5)
    except httpx.ConnectError:
        return "refused"
    except httpx.TimeoutException:
        pytest.fail("a request after SIGTERM hung")
    except httpx.TransportError as exc:
        return type(exc).__name__
    assert reply.status_code >= 500, reply.text
    assert reply.json()["type"] == "error"
    return f"error {reply.status_code}"


def assert_complete(raw: bytes, broken: str | None, text: str) -> None:
    assert broken is None, f"the stream broke ({broken}) after {raw[-200:]!r}"
    names = events(raw)
    assert names[0] == "message_start" and names[-1] == "message_stop", names[-3:]
    assert "error" not in names
    deltas = [json.loads(line[len(b"data: "):]) for line in raw.split(b"\n")
              if line.startswith(b"data: ") and b'"text_delta"' in line]
    assert "".join(delta["delta"]["text"] for delta in deltas) == text  # nothing half-written


# ---- extproc up ------------------------------------------------------------------------------


@pytest.fixture
def up(workdir: Path, mock_backend: MockBackend) -> Iterator[Gateway]:
    mock_backend.reset()
    gw = start_gateway(workdir, config(mock_backend))
    yield gw
    gw.process.stop()


def test_sigterm_to_up_finishes_streams_and_refuses_new_requests(up: Gateway, mock_backend: MockBackend) -> None:
    text = script_slow(mock_backend, 3)
    with ThreadPoolExecutor(3) as pool:
        streams = [SlowStream(pool, up.url) for _ in range(3)]
        assert all(stream.started.wait(10) for stream in streams)
        # The launcher's drain waits on this Envoy stat (it covers every ext_proc worker).
        stat = httpx.get(up.admin_url + "/stats", params={"filter": "^http.ingress.downstream_rq_active$"})
        assert stat.text.strip() == "http.ingress.downstream_rq_active: 3"
        up.process.proc.send_signal(signal.SIGTERM)
        wait_until_closed(int(up.url.rsplit(":", 1)[1]))  # Envoy's listener
        refused = new_request_refused(up.url)
        results = [stream.future.result() for stream in streams]
    for raw, broken in results:
        assert_complete(raw, broken, text)
    assert refused == "refused", refused
    assert up.process.proc.wait(DRAIN_S + 10) == 0
    assert len(mock_backend.requests()) == 3  # the refused request never reached the backend


def test_drain_is_bounded_by_drain_s(workdir: Path, mock_backend: MockBackend) -> None:
    """A stream outliving timeouts.drain_s is cut when the drain ends: the client sees a broken
    stream, never a finished-looking one, and `extproc up` exits."""
    mock_backend.reset()
    gw = start_gateway(workdir, {**config(mock_backend), "timeouts": {"drain_s": 1}})
    try:
        mock_backend.script({"text": " ".join(["slow"] * 40), "chunk_delay_s": 0.25})  # 10 s
        with ThreadPoolExecutor(1) as pool:
            stream = SlowStream(pool, gw.url)
            assert stream.started.wait(10)
            gw.process.proc.send_signal(signal.SIGTERM)
            raw, broken = stream.future.result()
        assert broken is not None
        assert "message_stop" not in events(raw)
        assert gw.process.proc.wait(15) == 0
    finally:
        gw.process.stop()


# ---- extproc serve (Envoy separate) ---------------------------------------------------------


@pytest.fixture
def split(workdir: Path, mock_backend: MockBackend) -> Iterator[tuple[EnvoyOnly, Process]]:
    mock_backend.reset()
    envoy = start_envoy_only(workdir, config(mock_backend))
    assert envoy.config_path is not None
    server = spawn(f"serve-drain-{envoy.extproc_port}",
                   [sys.executable, "-m", "extproc", "serve", "--config", str(envoy.config_path)], workdir)
    deadline = time.monotonic() + 30
    while True:
        assert server.proc.poll() is None, server.log.read_text()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", envoy.extproc_port)) == 0:
                break
        assert time.monotonic() < deadline, "extproc serve did not listen"
        time.sleep(0.05)
    yield envoy, server
    server.stop()
    envoy.process.stop()


def test_sigterm_to_serve_finishes_streams_and_refuses_new_requests(
    split: tuple[EnvoyOnly, Process], mock_backend: MockBackend
) -> None:
    envoy, server = split
    text = script_slow(mock_backend, 2)
    with ThreadPoolExecutor(2) as pool:
        streams = [SlowStream(pool, envoy.url) for _ in range(2)]
        assert all(stream.started.wait(10) for stream in streams)
        server.proc.send_signal(signal.SIGTERM)
        wait_until_closed(envoy.extproc_port)  # the gRPC server takes no new connections
        refused = new_request_refused(envoy.url)
        results = [stream.future.result() for stream in streams]
    for raw, broken in results:
        assert_complete(raw, broken, text)
    assert refused.startswith("error 5"), refused  # Envoy answers for the refusing processor
    assert server.proc.wait(DRAIN_S + 10) == 0
    assert len(mock_backend.requests()) == 2
