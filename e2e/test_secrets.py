"""Credentials through the real stack: the client's key never reaches a backend, and the backend
keys (from a secret file and from the environment) never appear in anything the gateway emits.

One canary per credential. A variety of traffic (answers, streams, bad input, backend 401s,
backend errors that quote the key, every route the gateway has), then everything emitted is
searched: each response's headers and body, the gateway's log (ext_proc and Envoy), Envoy's
access log, /metrics, and Envoy's admin config dump. The backend's request log is searched
for the client canary, and must hold the backend canary (so the search can find things).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from e2e.harness import Gateway, MockBackend, start_gateway, start_mock

CLIENT_KEY = "sk-ant-canary-client-7f3a9c"
FILE_KEY = "sk-canary-file-backend-41d2e8"
ENV_KEY = "sk-canary-env-backend-b90c17"
CANARIES = (CLIENT_KEY, FILE_KEY, ENV_KEY)


@pytest.fixture(scope="module")
def keyed_mock(workdir: Path) -> Iterator[MockBackend]:
    """A mock that, like vLLM with --api-key, answers 401 to any other key."""
    mock = start_mock(workdir, "--api-key", FILE_KEY)
    yield mock
    mock.http.close()
    mock.process.stop()


@pytest.fixture(scope="module")
def guarded(workdir: Path, keyed_mock: MockBackend) -> Iterator[tuple[Gateway, Path]]:
    key_file = workdir / "backend.key"
    key_file.write_text(FILE_KEY + "\n")
    access_log = workdir / "secrets-access.log"
    config = {
        "backends": [
            {"name": "filekey", "base_url": keyed_mock.url + "/v1", "api_key_file": str(key_file),
             "models": [{"name": "qwen3-coder", "aliases": ["claude-*"]}]},
            # Same server, the env key: it gets the mock's 401.
            {"name": "envkey", "base_url": keyed_mock.url + "/v1", "api_key_env": "CANARY_ENV_KEY",
             "models": [{"name": "other-model"}]},
        ],
        "access_log": str(access_log),
        "log_level": "debug",
    }
    gw = start_gateway(workdir, config, env={"CANARY_ENV_KEY": ENV_KEY})
    yield gw, access_log
    gw.process.stop()


MESSAGE = {"model": "claude-sonnet-4-6", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
CLIENT_HEADERS = {"x-api-key": CLIENT_KEY, "authorization": f"Bearer {CLIENT_KEY}",
                  "anthropic-version": "2023-06-01"}


def traffic(mock: MockBackend) -> list[tuple[str, str, dict[str, Any] | bytes | None, Any]]:
    """(method, path, JSON body or raw bytes, mock script item or None) for each request."""
    quoting = f"Incorrect API key provided: {FILE_KEY}. You can find your key at ..."
    return [
        ("POST", "/v1/messages", MESSAGE, {"text": "plain answer"}),
        ("POST", "/v1/messages", {**MESSAGE, "stream": True}, {"text": "streamed answer"}),
        ("POST", "/v1/messages", {**MESSAGE, "model": "other-model"}, None),  # backend 401
        ("POST", "/v1/messages", {**MESSAGE, "model": "other-model", "stream": True}, None),
        ("POST", "/v1/messages", b'{"model": "claude-x", "max_tokens": ', None),  # bad JSON
        ("POST", "/v1/messages", {**MESSAGE, "model": "no-such-model"}, None),
        ("POST", "/v1/messages", MESSAGE,
         {"raw_body": orjson.dumps({"error": {"message": quoting, "code": 401}}).decode(), "status": 401}),
        ("POST", "/v1/messages", {**MESSAGE, "stream": True},
         {"text": "a b c d", "stream_error": {"after_chunks": 2, "message": quoting, "code": 500}}),
        ("POST", "/v1/messages", MESSAGE, {"raw_body": "not json " + FILE_KEY, "status": 200,
                                           "content_type": "application/json"}),
        ("POST", "/v1/messages/count_tokens", {k: v for k, v in MESSAGE.items() if k != "max_tokens"}, None),
        ("GET", "/v1/models", None, None),
        ("POST", "/v1/chat/completions",
         {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}, {"text": "openai"}),
        ("POST", "/v1/chat/completions", {"model": "other-model", "messages": []}, None),
        ("GET", "/some/unknown/path", None, None),
    ]


def test_no_canary_escapes(guarded: tuple[Gateway, Path], keyed_mock: MockBackend) -> None:
    gateway, access_log = guarded
    keyed_mock.reset()
    emitted: list[str] = []
    statuses = []
    with httpx.Client(timeout=15) as http:
        for method, path, payload, item in traffic(keyed_mock):
            if item is not None:
                keyed_mock.script(item)
            content = payload if isinstance(payload, bytes) else (
                orjson.dumps(payload) if payload is not None else None)
            reply = http.request(method, gateway.url + path, content=content,
                                 headers={**CLIENT_HEADERS, "content-type": "application/json"})
            statuses.append((path, reply.status_code))
            emitted.append(f"{path} {reply.status_code} {dict(reply.headers)!r} {reply.text}")
        assert gateway.metrics_url is not None
        emitted.append(http.get(gateway.metrics_url + "/metrics").text)
        emitted.append(http.get(gateway.admin_url + "/config_dump").text)
        emitted.append(http.get(gateway.admin_url + "/stats").text)
    # The traffic really exercised the backend both ways (success and 401).
    assert ("/v1/messages", 200) in statuses and ("/v1/messages", 401) in statuses
    gateway.process.stop()  # flush and close every log
    emitted.append(gateway.process.log.read_text(errors="replace"))
    emitted.append(access_log.read_text(errors="replace"))
    assert "request_id" in emitted[-1]  # the access log was written

    everything = "\n".join(emitted)
    for canary in CANARIES:
        assert canary not in everything, f"{canary} leaked:\n" + "\n".join(
            line[:300] for line in everything.splitlines() if canary in line)
    assert "[redacted]" in everything  # the quoted backend key was blanked, not dropped silently

    received = keyed_mock.requests()
    seen = orjson.dumps(received).decode()
    assert CLIENT_KEY not in seen
    for request in received:  # bodies are logged base64-encoded
        assert CLIENT_KEY.encode() not in base64.b64decode(request.get("raw_body") or "")
    sent_keys = {r["headers"].get("authorization") for r in received}
    assert f"Bearer {FILE_KEY}" in sent_keys and f"Bearer {ENV_KEY}" in sent_keys
    assert all(r["headers"].get("x-api-key") is None for r in received)
