"""Bad input through real Envoy: a clear 4xx Anthropic error, and the backend never sees it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from e2e.harness import Gateway, MockBackend, backend_config, free_port, start_gateway

GOOD: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01",
           "x-api-key": "sk-client-dummy"}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers=HEADERS) as client:
        yield client


def anthropic_error(reply: httpx.Response, status: int, error_type: str) -> str:
    """Asserts the Anthropic error shape and returns the message."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    message = body["error"]["message"]
    assert isinstance(message, str)
    assert message.strip()
    return message


def with_(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != name}


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return with_(messages=[{"role": "user", "content": list(blocks)}])


# (id, raw body, a word the message must contain)
BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("invalid-json", b'{"model": "claude-sonnet-4-6", "max_tokens": ', "JSON"),
    ("trailing-garbage", orjson.dumps(GOOD) + b"}", "JSON"),
    ("array-body", b"[1, 2, 3]", "object"),
    ("string-body", b'"hello"', "object"),
    ("null-body", b"null", "object"),
]

BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("missing-model", without("model"), "model"),
    ("model-not-string", with_(model=123), "model"),
    ("empty-model", with_(model=""), "model"),
    ("missing-messages", without("messages"), "messages"),
    ("messages-not-list", with_(messages="hi"), "messages"),
    ("messages-empty", with_(messages=[]), "messages"),
    ("message-not-object", with_(messages=["hi"]), "messages"),
    ("missing-max-tokens", without("max_tokens"), "max_tokens"),
    ("negative-max-tokens", with_(max_tokens=-5), "max_tokens"),
    ("string-max-tokens", with_(max_tokens="64"), "max_tokens"),
    ("float-max-tokens", with_(max_tokens=64.5), "max_tokens"),
    ("bad-role", with_(messages=[{"role": "robot", "content": "beep"}]), "role"),
    ("missing-content", with_(messages=[{"role": "user"}]), "content"),
    ("content-number", with_(messages=[{"role": "user", "content": 42}]), "content"),
    ("block-without-type", user({"text": "no type here"}), "messages.0.content.0"),
    ("text-block-without-text", user({"type": "text"}), "text"),
    ("tool-use-in-user", user({"type": "tool_use", "id": "t", "name": "bash", "input": {}}),
     "assistant"),
    ("tool-result-in-assistant",
     with_(messages=[{"role": "user", "content": "x"},
                     {"role": "assistant",
                      "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]),
     "user"),
    ("image-by-file-id", user({"type": "image", "source": {"type": "file", "file_id": "f_1"}}),
     "image"),
    ("image-without-source", user({"type": "image"}), "source"),
    ("pdf-document", user({"type": "document", "source": {
        "type": "base64", "media_type": "application/pdf", "data": PNG}}), "pdf"),
    ("tool-without-schema", with_(tools=[{"name": "bash"}]), "input_schema"),
    ("tool-choice-unknown-tool",
     with_(tools=[{"name": "bash", "input_schema": {"type": "object"}}],
           tool_choice={"type": "tool", "name": "nope"}), "nope"),
    ("temperature-string", with_(temperature="hot"), "temperature"),
    ("stop-sequences-not-list", with_(stop_sequences="END"), "stop_sequences"),
    ("system-number", with_(system=5), "system"),
    ("thinking-bad-type", with_(thinking={"type": "sometimes"}), "thinking"),
]


@pytest.mark.parametrize(("body", "word"), [(b, w) for _, b, w in BAD_BODIES],
                         ids=[i for i, _, _ in BAD_BODIES])
def test_unparseable_body(
    gateway: Gateway, http: httpx.Client, backend: MockBackend, body: bytes, word: str
) -> None:
    message = anthropic_error(http.post(gateway.url + "/v1/messages", content=body), 400,
                              "invalid_request_error")
    assert word.lower() in message.lower()
    assert backend.requests() == []


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("request_body", "word"), [(b, w) for _, b, w in BAD_REQUESTS],
                         ids=[i for i, _, _ in BAD_REQUESTS])
def test_invalid_request(
    gateway: Gateway, http: httpx.Client, backend: MockBackend,
    request_body: dict[str, Any], word: str, stream: bool,
) -> None:
    if stream:
        request_body = {**request_body, "stream": True}
    reply = http.post(gateway.url + "/v1/messages", content=orjson.dumps(request_body))
    message = anthropic_error(reply, 400, "invalid_request_error")
    assert word.lower() in message.lower(), message
    assert backend.requests() == []


def test_empty_body(gateway: Gateway, http: httpx.Client, backend: MockBackend) -> None:
    message = anthropic_error(http.post(gateway.url + "/v1/messages", content=b""), 400,
                              "invalid_request_error")
    assert "empty" in message
    assert backend.requests() == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method(gateway: Gateway, http: httpx.Client, backend: MockBackend, method: str) -> None:
    reply = http.request(method, gateway.url + "/v1/messages")
    message = anthropic_error(reply, 405, "invalid_request_error")
    assert method in message
    assert backend.requests() == []


@pytest.mark.parametrize("path", ["/v1/messages", "/anthropic/v1/messages?beta=true"])
def test_unknown_model_is_not_found(
    gateway: Gateway, http: httpx.Client, backend: MockBackend, path: str
) -> None:
    reply = http.post(gateway.url + path, content=orjson.dumps(with_(model="gpt-4o")))
    message = anthropic_error(reply, 404, "not_found_error")
    assert "gpt-4o" in message
    assert backend.requests() == []


def test_sdk_exceptions_for_bad_input(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        anthropic_client.messages.create(model="gpt-4o", max_tokens=10,
                                         messages=[{"role": "user", "content": "hi"}])
    assert not_found.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        anthropic_client.messages.create(model="claude-sonnet-4-6", max_tokens=-1,
                                         messages=[{"role": "user", "content": "hi"}])
    assert "max_tokens" in bad.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError), \
            anthropic_client.messages.stream(model="claude-sonnet-4-6", max_tokens=10,
                                             messages=[{"role": "robot", "content": "hi"}]) as s:  # type: ignore[typeddict-item]
        s.get_final_message()
    assert backend.requests() == []


def test_chat_completions_bad_json_stays_openai_shaped(
    gateway: Gateway, http: httpx.Client, backend: MockBackend
) -> None:
    reply = http.post(gateway.url + "/v1/chat/completions", content=b"{not json")
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert backend.requests() == []


# ---- a gateway with a 1 MB limit, a 1 s backend timeout and a dead backend --------------------

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def small_gateway(workdir: Path, mock_backend: MockBackend) -> Iterator[Gateway]:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config = {
        "backends": [
            backend_config(mock_backend, models=[{"name": "qwen3-coder", "aliases": ["claude-*"]}]),
            {"name": "dead", "schema": "openai", "base_url": dead, "models": [{"name": "dead-model"}]},
        ],
        "limits": {"max_request_bytes": LIMIT},
        "timeouts": {"request_s": 1, "connect_s": 1},
    }
    gw = start_gateway(workdir, config)
    yield gw
    gw.process.stop()


def _padded(size: int) -> bytes:
    body = with_(messages=[{"role": "user", "content": ""}])
    overhead = len(orjson.dumps(body))
    body["messages"][0]["content"] = "x" * (size - overhead)
    raw = orjson.dumps(body)
    assert len(raw) == size
    return raw


def test_body_over_the_limit_is_413(
    small_gateway: Gateway, http: httpx.Client, backend: MockBackend
) -> None:
    reply = http.post(small_gateway.url + "/v1/messages", content=_padded(2 * LIMIT))
    message = anthropic_error(reply, 413, "request_too_large")
    assert str(LIMIT) in message
    assert backend.requests() == []


def test_sdk_sees_request_too_large(small_gateway: Gateway, backend: MockBackend) -> None:
    client = anthropic.Anthropic(base_url=small_gateway.url, api_key="dummy", max_retries=0,
                                 timeout=10)
    with client, pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=10,
                               messages=[{"role": "user", "content": "y" * (2 * LIMIT)}])
    assert caught.value.status_code == 413
    assert caught.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    assert backend.requests() == []


def test_body_just_under_the_limit_passes(
    small_gateway: Gateway, http: httpx.Client, backend: MockBackend
) -> None:
    backend.script({"text": "fits"})
    reply = http.post(small_gateway.url + "/v1/messages", content=_padded(LIMIT - 4096))
    assert reply.status_code == 200, reply.text
    assert reply.json()["content"] == [{"type": "text", "text": "fits"}]
    assert len(backend.requests()) == 1


# ---- errors Envoy itself produces on this route --------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_backend_unreachable_is_anthropic_502(
    small_gateway: Gateway, http: httpx.Client, stream: bool
) -> None:
    reply = http.post(small_gateway.url + "/v1/messages",
                      content=orjson.dumps(with_(model="dead-model", stream=stream)))
    message = anthropic_error(reply, 502, "api_error")
    assert "unreachable" in message


@pytest.mark.parametrize("stream", [False, True])
def test_backend_timeout_is_anthropic_504(
    small_gateway: Gateway, http: httpx.Client, backend: MockBackend, stream: bool
) -> None:
    backend.script({"text": "too late", "delay_s": 2})
    reply = http.post(small_gateway.url + "/v1/messages", content=orjson.dumps(with_(stream=stream)))
    anthropic_error(reply, 504, "timeout_error")


def test_sdk_exception_for_unreachable_backend(small_gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=small_gateway.url, api_key="dummy", max_retries=0,
                                 timeout=10)
    with client, pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model="dead-model", max_tokens=10,
                               messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
