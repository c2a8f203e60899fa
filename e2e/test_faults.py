"""Fault injection through real Envoy and our ext_proc server: every fault ends in a defined
Anthropic error, or a clean `event: error`, or (once the answer has started and the
connection itself is gone) a stream that is visibly broken; never a hang, never something
that looks like a complete answer.

Faults covered elsewhere and not repeated here: backend unreachable, slow backend (504) and
oversized bodies in e2e/test_errors.py; in-stream `{"error": ...}`, a body cut mid-event
without [DONE] and a backend disconnecting mid-stream in e2e/test_streaming.py; HTML error
pages on non-streaming requests in e2e/test_messages.py; ext_proc never started in
e2e/test_foundation.py.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
from extproc.metrics import sample_value

MODEL = "claude-sonnet-4-6"
HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-client-dummy"}
IDLE_S = 1  # the fault gateway's timeouts.stream_idle_s


def body(stream: bool = False, model: str = MODEL, text: str = "hi") -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": text}]}


def anthropic_error(reply: httpx.Response, status: int | None = None) -> dict[str, str]:
    assert reply.headers["content-type"].startswith("application/json"), reply.text
    if status is not None:
        assert reply.status_code == status, reply.text
    payload = reply.json()
    assert set(payload) == {"type", "error"} and payload["type"] == "error", payload
    assert payload["error"]["message"].strip()
    error: dict[str, str] = payload["error"]
    return error


def sse_names(raw: bytes) -> list[str]:
    return [line[len(b"event: "):].decode() for line in raw.split(b"\n") if line.startswith(b"event: ")]


def last_event(raw: bytes) -> dict[str, Any]:
    data = [line for line in raw.split(b"\n") if line.startswith(b"data: ")]
    return dict(json.loads(data[-1][len(b"data: "):]))


def read_stream(url: str, payload: dict[str, Any], timeout: float = 15) -> tuple[int, bytes, bool]:
    """(status, bytes received, whether the connection broke before the body ended).
    A read timeout is a hang: it fails the test."""
    received = b""
    with httpx.stream("POST", url + "/v1/messages", json=payload, headers=HEADERS,
                      timeout=timeout) as reply:
        try:
            for chunk in reply.iter_raw():
                received += chunk
        except httpx.TimeoutException:
            pytest.fail(f"the stream hung after {received[-200:]!r}")
        except httpx.HTTPError:
            return reply.status_code, received, True
        return reply.status_code, received, False


# ---- a backend that hangs up before answering ------------------------------------------------


class HangUpBackend:
    """Reads each request's headers, then closes: with an RST (`reset`) or a plain FIN."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    data += piece
                if self.reset:  # SO_LINGER 0: close() sends RST instead of FIN
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def hang_ups() -> Iterator[dict[str, HangUpBackend]]:
    backends = {"reset": HangUpBackend(reset=True), "fin": HangUpBackend(reset=False)}
    yield backends
    for backend in backends.values():
        backend.close()


@pytest.fixture(scope="module")
def faulty(workdir: Path, mock_backend: MockBackend, hang_ups: dict[str, HangUpBackend]) -> Iterator[Gateway]:
    """A gateway with a short idle timeout, and backends that hang up."""
    config = {
        "backends": [
            backend_config(mock_backend, models=[{"name": "qwen3-coder", "aliases": ["claude-*"]}]),
            *({"name": name, "base_url": f"http://127.0.0.1:{backend.port}/v1",
               "models": [{"name": f"{name}-model"}]} for name, backend in hang_ups.items()),
        ],
        "timeouts": {"stream_idle_s": IDLE_S, "request_s": 10, "connect_s": 1, "drain_s": 1},
    }
    gw = start_gateway(workdir, config)
    yield gw
    gw.process.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("kind", ["reset", "fin"])
def test_backend_hangs_up_before_headers(
    faulty: Gateway, hang_ups: dict[str, HangUpBackend], kind: str, stream: bool
) -> None:
    accepted = hang_ups[kind].accepted
    reply = httpx.post(faulty.url + "/v1/messages", json=body(stream, f"{kind}-model"),
                       headers=HEADERS, timeout=15)
    error = anthropic_error(reply, 502)
    assert error["type"] == "api_error"
    assert "backend failed before answering" in error["message"]
    assert hang_ups[kind].accepted > accepted  # it really reached the backend


def test_backend_stalls_mid_stream(faulty: Gateway, backend: MockBackend) -> None:
    """Envoy's idle timeout cuts a stream whose backend went silent. The response has
    started, so Envoy can only break the connection: the client sees an unfinished stream
    (never message_stop), promptly, not a hang."""
    backend.script({"text": "one two three four five six", "chunk_delay_s": IDLE_S * 4})
    # The read timeout is longer than the backend's pauses: only Envoy can cut this short.
    status, raw, broken = read_stream(faulty.url, body(stream=True), timeout=IDLE_S * 6)
    assert status == 200
    names = sse_names(raw)
    assert names[0] == "message_start"
    assert "message_stop" not in names
    assert broken or names[-1] == "error"


def test_non_sse_body_labelled_event_stream(faulty: Gateway, backend: MockBackend) -> None:
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "plain JSON"}, "finish_reason": "stop"}]}
    backend.script({"raw_body": json.dumps(completion), "content_type": "text/event-stream"})
    status, raw, broken = read_stream(faulty.url, body(stream=True))
    assert (status, broken) == (200, False)
    assert "message_stop" not in sse_names(raw)
    error = last_event(raw)
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert b"chatcmpl" not in raw and b"plain JSON" not in raw


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_success_status_with_an_empty_body(faulty: Gateway, backend: MockBackend, stream: bool) -> None:
    content_type = "text/event-stream" if stream else "application/json"
    backend.script({"raw_body": "", "status": 200, "content_type": content_type})
    reply = httpx.post(faulty.url + "/v1/messages", json=body(stream), headers=HEADERS, timeout=15)
    error = anthropic_error(reply, 502)
    assert error["type"] == "api_error" and "empty body" in error["message"]


def test_html_error_page_on_a_streaming_request(faulty: Gateway, backend: MockBackend) -> None:
    page = "<html><head><title>503 Service Unavailable</title></head><body>nginx</body></html>"
    backend.script({"raw_body": page, "status": 503, "content_type": "text/html"})
    reply = httpx.post(faulty.url + "/v1/messages", json=body(stream=True), headers=HEADERS, timeout=15)
    error = anthropic_error(reply, 503)
    assert error["type"] == "overloaded_error"
    assert "503" in error["message"] and "<html" not in error["message"]


# ---- the client goes away ---------------------------------------------------------------------


def gauges(gateway: Gateway) -> tuple[float, float]:
    assert gateway.metrics_url is not None
    text = httpx.get(gateway.metrics_url + "/metrics", timeout=5).text
    return sample_value(text, "extproc_inflight_streams"), sample_value(text, "extproc_inflight_requests")


def test_client_disconnects_mid_stream_leave_nothing_behind(faulty: Gateway, backend: MockBackend) -> None:
    """Clients that hang up mid-stream: Envoy cancels our gRPC streams, and every per-request
    record is closed (the in-flight gauges return to zero; each leaked processor would hold
    them up)."""
    words = " ".join(f"w{i}" for i in range(400))
    clients = 12
    backend.script(*({"text": words, "chunk_delay_s": 0.02} for _ in range(clients)))

    def hang_up_after_first_bytes(_: int) -> bytes:
        with httpx.stream("POST", faulty.url + "/v1/messages", json=body(stream=True),
                          headers=HEADERS, timeout=15) as reply:
            for chunk in reply.iter_raw():
                if b"content_block_delta" in chunk:
                    return chunk  # leaving the block closes the connection mid-stream
        return b""

    with ThreadPoolExecutor(clients) as pool:
        firsts = list(pool.map(hang_up_after_first_bytes, range(clients)))
    assert all(b"content_block_delta" in first for first in firsts)
    deadline = time.monotonic() + 15
    while gauges(faulty) != (0, 0):
        assert time.monotonic() < deadline, f"in-flight gauges stuck at {gauges(faulty)}"
        time.sleep(0.1)
    # And the gateway still answers.
    backend.script({"text": "still here"})
    reply = httpx.post(faulty.url + "/v1/messages", json=body(), headers=HEADERS, timeout=15)
    assert reply.json()["content"] == [{"type": "text", "text": "still here"}]


# ---- the ext_proc server dies and comes back ---------------------------------------------------


@pytest.fixture(scope="module")
def split_stack(workdir: Path, mock_backend: MockBackend) -> Iterator[tuple[EnvoyOnly, list[Process]]]:
    """Envoy from `extproc envoy-config`, and `python -m extproc serve` as its own process."""
    config = {"backends": [backend_config(mock_backend, models=[{"name": "qwen3-coder",
                                                                 "aliases": ["claude-*"]}])],
              "timeouts": {"extproc_message_s": 2, "connect_s": 1}}
    envoy = start_envoy_only(workdir, config)
    servers: list[Process] = []
    yield envoy, servers
    for server in servers:
        server.stop()
    envoy.process.stop()


def start_serve(workdir: Path, envoy: EnvoyOnly) -> Process:
    assert envoy.config_path is not None
    server = spawn(f"serve-{time.monotonic_ns()}",
                   [sys.executable, "-m", "extproc", "serve", "--config", str(envoy.config_path)],
                   workdir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, f"extproc serve exited:\n{server.log.read_text()}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", envoy.extproc_port)) == 0:
                return server
        time.sleep(0.05)
    raise TimeoutError("extproc serve did not listen")


def ask(url: str, timeout: float = 10) -> tuple[str, int]:
    """One request -> ("ok" | "anthropic_error" | "broken", status). A hang fails the test."""
    try:
        reply = httpx.post(url + "/v1/messages", json=body(), headers=HEADERS, timeout=timeout)
    except httpx.TimeoutException:
        pytest.fail("a request hung while the ext_proc server was down")
    except httpx.TransportError:
        return "broken", 0
    if reply.status_code == 200:
        assert reply.json()["type"] == "message"
        return "ok", 200
    anthropic_error(reply)
    assert reply.status_code >= 500
    return "anthropic_error", reply.status_code


def test_extproc_killed_and_restarted_under_traffic(
    workdir: Path, split_stack: tuple[EnvoyOnly, list[Process]], backend: MockBackend
) -> None:
    envoy, servers = split_stack
    servers.append(start_serve(workdir, envoy))
    assert ask(envoy.url) == ("ok", 200)

    outcomes: list[tuple[str, int]] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            outcomes.append(ask(envoy.url))

    # A stream in flight when the server dies ends visibly broken, never complete.
    backend.script({"text": " ".join(["word"] * 300), "chunk_delay_s": 0.02})
    streaming = threading.Event()

    def stream_in_flight() -> tuple[bytes, bool]:
        received = b""
        with httpx.stream("POST", envoy.url + "/v1/messages", json=body(stream=True),
                          headers=HEADERS, timeout=15) as reply:
            try:
                for chunk in reply.iter_raw():
                    received += chunk
                    streaming.set()
            except httpx.TimeoutException:
                pytest.fail("the in-flight stream hung when the ext_proc server died")
            except httpx.HTTPError:
                return received, True
        return received, False

    with ThreadPoolExecutor(5) as pool:
        in_flight = pool.submit(stream_in_flight)
        assert streaming.wait(10)
        runners = [pool.submit(traffic) for _ in range(4)]
        time.sleep(0.3)
        servers[-1].proc.send_signal(signal.SIGKILL)
        servers[-1].proc.wait()
        time.sleep(1.0)  # traffic against a dead processor
        dead_count = len(outcomes)
        servers.append(start_serve(workdir, envoy))
        deadline = time.monotonic() + 20
        while not outcomes[-4:] or any(kind != "ok" for kind, _ in outcomes[-4:]):
            assert time.monotonic() < deadline, f"no recovery: {outcomes[-8:]}"
            time.sleep(0.1)
        stop.set()
        for runner in runners:
            runner.result()
        raw, broken = in_flight.result()

    assert "message_stop" not in sse_names(raw)
    assert broken or sse_names(raw)[-1] == "error"
    kinds = {kind for kind, _ in outcomes}
    assert "anthropic_error" in kinds or "broken" in kinds  # the outage was seen ...
    assert dead_count > 4  # ... and answered promptly: several requests per second
    assert all(status in (0, 500, 502, 503, 504) for kind, status in outcomes if kind != "ok")
    assert ask(envoy.url) == ("ok", 200)  # recovered without touching Envoy
