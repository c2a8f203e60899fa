"""Credentials per processor: the client's key is removed and the backend's key (env at request
time, or a secret file re-read each second) is set, unless `forward_client_api_key` passes the
client's on. Backend error text quoting the backend key is blanked before the client sees it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from extproc.config import Backend, Config
from extproc.gateway import Gateway
from extproc.processors.base import Continue, RequestInfo
from extproc.processors.messages import MessagesProcessor
from extproc.processors.passthrough import ChatCompletionsProcessor, UntouchedProcessor

CLIENT = {"x-api-key": "sk-client", "authorization": "Bearer sk-client"}
BODY = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})


def gateway(tmp_path: Path, forward: bool, schema: str = "openai") -> Gateway:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    return Gateway(Config.model_validate({
        "forward_client_api_key": forward,
        "backends": [{"name": "b", "schema": schema, "base_url": "http://127.0.0.1:9/v1",
                      "api_key_file": str(key_file)}],
    }))


def info(path: str, method: str = "POST") -> RequestInfo:
    return RequestInfo(method=method, path=path, query="", headers={":path": path, **CLIENT})


def headers_of(action: Any) -> tuple[dict[str, str], set[str]]:
    assert isinstance(action, Continue), action
    return dict(action.set_headers), set(action.remove_headers)


async def request_side(processor: Any, body: bytes | None) -> Any:
    action = await processor.request_headers(body is None)
    if body is None:
        return action
    action = await processor.request_body(body, True)
    if isinstance(processor, MessagesProcessor):
        processor.close()
    return action


CASES = [
    ("messages-openai", "openai", MessagesProcessor, "/v1/messages", BODY,
     ("authorization", "Bearer sk-from-file")),
    ("messages-anthropic", "anthropic", MessagesProcessor, "/v1/messages", BODY,
     ("x-api-key", "sk-from-file")),
    ("chat-completions", "openai", ChatCompletionsProcessor, "/v1/chat/completions", BODY,
     ("authorization", "Bearer sk-from-file")),
    ("unknown-path", "openai", UntouchedProcessor, "/other", None,
     ("authorization", "Bearer sk-from-file")),
]


@pytest.mark.parametrize(("schema", "kind", "path", "body", "backend_header"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_client_key_replaced_by_backend_key(
    tmp_path: Path, schema: str, kind: Any, path: str, body: bytes | None,
    backend_header: tuple[str, str],
) -> None:
    processor = kind(info(path), gateway(tmp_path, forward=False, schema=schema))
    set_headers, removed = headers_of(asyncio.run(request_side(processor, body)))
    name, value = backend_header
    assert set_headers[name] == value
    assert {"x-api-key", "authorization"} - {name} <= removed
    assert "sk-client" not in repr(set_headers)


@pytest.mark.parametrize(("schema", "kind", "path", "body", "backend_header"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_forward_client_api_key_passes_the_client_key_on(
    tmp_path: Path, schema: str, kind: Any, path: str, body: bytes | None,
    backend_header: tuple[str, str],
) -> None:
    processor = kind(info(path), gateway(tmp_path, forward=True, schema=schema))
    set_headers, removed = headers_of(asyncio.run(request_side(processor, body)))
    assert not {"x-api-key", "authorization"} & removed
    assert "sk-from-file" not in repr(set_headers)


def test_backend_key_from_env_is_read_at_request_time(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config.model_validate({"backends": [
        {"name": "b", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "ROTATING_KEY"}]})
    monkeypatch.setenv("ROTATING_KEY", "sk-one")
    assert config.backends[0].api_key() == "sk-one"
    monkeypatch.setenv("ROTATING_KEY", "sk-two")  # a rotated secret needs no restart
    assert config.backends[0].api_key() == "sk-two"


async def answer(processor: MessagesProcessor, status: int, body: bytes, stream: bool) -> bytes:
    request = BODY.replace(b'"max_tokens"', b'"stream":true,"max_tokens"') if stream else BODY
    await processor.request_body(request, True)
    content_type = "text/event-stream" if stream else "application/json"
    await processor.response_headers({":status": str(status), "content-type": content_type}, False)
    action = await processor.response_body(body, True)
    processor.close()
    assert isinstance(action, Continue) and action.body is not None
    return action.body


@pytest.mark.parametrize(("status", "body", "stream"), [
    (401, b'{"error":{"message":"Incorrect API key provided: sk-from-file"}}', False),
    (500, b"upstream says sk-from-file is bad", False),
    (200, b'data: {"error":{"message":"key sk-from-file revoked","code":401}}\n\n', True),
], ids=["json-error", "text-error", "in-stream-error"])
def test_backend_errors_quoting_the_backend_key_are_blanked(
    tmp_path: Path, status: int, body: bytes, stream: bool
) -> None:
    processor = MessagesProcessor(info("/v1/messages"), gateway(tmp_path, forward=False))
    out = asyncio.run(answer(processor, status, body, stream))
    assert b"sk-from-file" not in out
    assert b"[redacted]" in out


def test_an_anthropic_backends_error_quoting_the_key_is_blanked_too(tmp_path: Path) -> None:
    processor = MessagesProcessor(info("/v1/messages"), gateway(tmp_path, False, "anthropic"))
    asyncio.run(processor.request_body(BODY, True))
    plan = asyncio.run(processor.response_headers(
        {":status": "401", "content-type": "application/json"}, False))
    assert isinstance(plan, Continue) and not plan.skip_rest  # the error body comes to us
    assert "content-length" in plan.remove_headers
    error = b'{"type":"error","error":{"type":"authentication_error","message":"bad sk-from-file"}}'
    action = asyncio.run(processor.response_body(error, True))
    processor.close()
    assert isinstance(action, Continue) and action.body == error.replace(
        b"sk-from-file", b"[redacted]")


def test_an_anthropic_backends_success_streams_past_untouched(tmp_path: Path) -> None:
    processor = MessagesProcessor(info("/v1/messages"), gateway(tmp_path, False, "anthropic"))
    asyncio.run(processor.request_body(BODY, True))
    plan = asyncio.run(processor.response_headers(
        {":status": "200", "content-type": "text/event-stream"}, False))
    processor.close()
    assert isinstance(plan, Continue) and plan.skip_rest and plan.body is None


def test_a_rotated_key_file_applies_within_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from extproc import config as config_module

    key_file = tmp_path / "rotating.key"
    key_file.write_text("sk-old\n")
    backend = Backend(name="b", base_url="http://127.0.0.1:9/v1", api_key_file=str(key_file))
    now = [1000.0]
    monkeypatch.setattr(config_module.time, "monotonic", lambda: now[0])
    assert backend.api_key() == "sk-old"
    key_file.write_text("sk-new\n")
    assert backend.api_key() == "sk-old"  # a request does not pay a file read
    now[0] += 1.0
    assert backend.api_key() == "sk-new"
    key_file.unlink()
    now[0] += 1.0
    assert backend.api_key() is None  # a vanished secret sends no key, never a stale one
