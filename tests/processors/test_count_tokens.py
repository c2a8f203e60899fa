"""count_tokens: exact via vLLM's /tokenize (the mock backend's), an estimate without it,
pass-through for Anthropic-schema backends, Anthropic errors for bad requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from extproc.config import Config
from extproc.gateway import Gateway
from extproc.mock_backend import MockServer, running_mock
from extproc.mock_backend.tokenizer import count_tokens, render_openai_prompt
from extproc.processors.base import Continue, RequestInfo, Respond
from extproc.processors.count_tokens import CountTokensProcessor
from extproc.translators.token_estimate import estimate_tokens, prompt_bytes

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "Count me, please."}],
    "tools": [{"name": "Bash", "description": "Run a command",
               "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
}


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with running_mock(models=("qwen3",)) as server:
        yield server


def gateway_for(base_url: str, **backend: Any) -> Gateway:
    return Gateway(Config.model_validate({"backends": [{
        "name": "vllm", "base_url": base_url, "api_key_env": "COUNT_TOKENS_TEST_KEY",
        "models": [{"name": "qwen3", "aliases": ["claude-*"]}], **backend}]}))


async def count(gateway: Gateway, body: object, method: str = "POST",
                headers: dict[str, str] | None = None) -> Continue | Respond:
    info = RequestInfo(method, "/v1/messages/count_tokens", "", headers or {})
    processor = CountTokensProcessor(info, gateway)
    try:
        first = await processor.request_headers(end_of_stream=body is None)
        if isinstance(first, Respond) or body is None:
            return first
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return await processor.request_body(raw, end_of_stream=True)
    finally:
        processor.close()


def answer(action: Continue | Respond) -> tuple[int, dict[str, Any]]:
    assert isinstance(action, Respond)
    return action.status, orjson.loads(action.body)


async def test_exact_count_from_tokenize_with_the_chat_template(
    mock: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNT_TOKENS_TEST_KEY", "sk-backend")
    gateway = gateway_for(mock.openai_base_url)
    try:
        status, body = answer(await count(gateway, REQUEST))
    finally:
        await gateway.aclose()
    [seen] = mock.requests()
    assert seen["path"] == "/tokenize"  # the server root, not /v1
    assert seen["headers"]["authorization"] == "Bearer sk-backend"
    sent = seen["body"]
    assert sent["model"] == "qwen3" and sent["add_generation_prompt"] is True
    assert sent["chat_template_kwargs"] == {"enable_thinking": True, "thinking": True}
    assert sent["tools"][0]["function"]["name"] == "Bash"
    assert sent["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Count me, please."}]
    expected = count_tokens(render_openai_prompt(sent["messages"], sent["tools"], True))
    assert (status, body) == (200, {"input_tokens": expected})


async def test_estimate_when_configured(mock: MockServer) -> None:
    gateway = gateway_for(mock.openai_base_url, count_tokens="estimate")
    try:
        status, body = answer(await count(gateway, REQUEST))
    finally:
        await gateway.aclose()
    assert mock.requests() == []  # no side request at all
    assert status == 200 and body["input_tokens"] == estimated(REQUEST)


def estimated(request: dict[str, Any]) -> int:
    """The documented estimate: translated messages + tools as compact JSON, 4 bytes a token."""
    chat = {"messages": [{"role": "system", "content": request["system"]},
                         *request["messages"]],
            "tools": [{"type": "function", "function": {
                "name": t["name"], "description": t["description"],
                "parameters": t["input_schema"]}} for t in request["tools"]]}
    return estimate_tokens(prompt_bytes(chat))


async def test_estimate_when_tokenize_is_missing_and_it_is_not_asked_again() -> None:
    calls: list[str] = []

    async def not_found(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.Response(status=404, text="Not Found")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gateway = gateway_for(f"http://127.0.0.1:{port}/v1")
    try:
        first = answer(await count(gateway, REQUEST))
        second = answer(await count(gateway, REQUEST))
    finally:
        await gateway.aclose()
        await runner.cleanup()
    assert first == second == (200, {"input_tokens": estimated(REQUEST)})
    assert calls == ["/tokenize"]


async def test_estimate_when_the_backend_is_unreachable() -> None:
    gateway = gateway_for("http://127.0.0.1:9/v1")  # discard port: nothing listens
    try:
        assert answer(await count(gateway, REQUEST)) == (200, {"input_tokens": estimated(REQUEST)})
    finally:
        await gateway.aclose()


async def test_anthropic_backends_count_for_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNT_TOKENS_TEST_KEY", "sk-ant-backend")
    gateway = gateway_for("http://127.0.0.1:9", schema="anthropic")
    try:
        action = await count(gateway, REQUEST, headers={"x-api-key": "sk-client"})
    finally:
        await gateway.aclose()
    assert isinstance(action, Continue) and action.clear_route_cache and action.skip_rest
    headers = dict(action.set_headers)
    assert headers[":path"] == "/v1/messages/count_tokens"
    assert headers["x-api-key"] == "sk-ant-backend"
    assert action.body is not None and orjson.loads(action.body)["model"] == "qwen3"


@pytest.mark.parametrize(("body", "method", "status", "error_type"), [
    (REQUEST, "GET", 405, "invalid_request_error"),
    (None, "POST", 400, "invalid_request_error"),
    (b"{not json", "POST", 400, "invalid_request_error"),
    ({**REQUEST, "model": ""}, "POST", 400, "invalid_request_error"),
    ({**REQUEST, "messages": "hi"}, "POST", 400, "invalid_request_error"),
    ({**REQUEST, "model": "gpt-4o"}, "POST", 404, "not_found_error"),
])
async def test_bad_requests_get_anthropic_errors(
    body: object, method: str, status: int, error_type: str
) -> None:
    gateway = gateway_for("http://127.0.0.1:9/v1")
    try:
        got_status, got = answer(await count(gateway, body, method=method))
    finally:
        await gateway.aclose()
    assert got_status == status
    assert got["type"] == "error" and got["error"]["type"] == error_type
