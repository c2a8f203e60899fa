"""answer_server_tools: the immediate answer, and the operator's search hook (a real HTTP
server on loopback) feeding results to the backend request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from extproc.config import Config
from extproc.gateway import Gateway
from extproc.processors.base import Respond
from extproc.processors.server_tools import answer_server_tools
from extproc.sse import SSEDecoder
from extproc.translators.request import RequestOptions, TranslatedRequest, translate_request

WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}


def web_search_request(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 1000,
            "system": "You are an assistant for performing a web search tool use",
            "messages": [{"role": "user",
                          "content": "Perform a web search for the query: envoy ext_proc"}],
            "tools": [WEB_SEARCH], **extra}


Handler = Callable[[web.Request], Any]


class Hook:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reply: Handler = lambda _r: web.json_response({"results": [
            {"url": "https://www.envoyproxy.io/docs/ext_proc", "title": "External Processing",
             "page_age": "1 week ago", "content": "The ext_proc filter calls a gRPC service."},
            {"url": "https://blocked.example.com/x", "title": "Blocked"},
            {"title": "no url"},
        ]})
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(await request.json())
        self.headers.append(dict(request.headers))
        result = self.reply(request)
        return await result if asyncio.iscoroutine(result) else result  # type: ignore[no-any-return]


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    state = Hook()
    app = web.Application()
    app.router.add_post("/search", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/search"  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


async def answer(config: dict[str, Any], request: dict[str, Any]
                 ) -> tuple[Respond | TranslatedRequest, TranslatedRequest]:
    gateway = Gateway(Config.model_validate(
        {"backends": [{"name": "vllm", "base_url": "http://127.0.0.1:9/v1"}], **config}))
    options = RequestOptions(model="qwen3")
    translated = translate_request(request, options)
    try:
        return await answer_server_tools(gateway, request, translated, options), translated
    finally:
        await gateway.aclose()


def message(outcome: Respond | TranslatedRequest) -> dict[str, Any]:
    assert isinstance(outcome, Respond) and outcome.status == 200
    return dict(orjson.loads(outcome.body))


async def test_without_a_hook_the_answer_is_immediate_and_complete() -> None:
    outcome, _ = await answer({}, web_search_request())
    body = message(outcome)
    assert [b["type"] for b in body["content"]] == [
        "server_tool_use", "web_search_tool_result", "text"]
    assert body["content"][0]["input"] == {"query": "envoy ext_proc"}
    assert body["content"][1]["content"] == {"type": "web_search_tool_result_error",
                                             "error_code": "unavailable"}
    assert body["stop_reason"] == "end_turn" and body["model"] == "claude-haiku-4-5"


async def test_streaming_requests_get_sse() -> None:
    outcome, _ = await answer({}, web_search_request(stream=True))
    assert isinstance(outcome, Respond)
    assert dict(outcome.headers)["content-type"].startswith("text/event-stream")
    events = SSEDecoder().feed(outcome.body)
    assert events[0].event == "message_start" and events[-1].event == "message_stop"


async def test_requests_not_about_a_server_tool_go_on_unchanged() -> None:
    bash = {"name": "Bash", "input_schema": {"type": "object"}}
    request = web_search_request(tools=[bash, WEB_SEARCH])
    outcome, translated = await answer({}, request)
    assert outcome is translated


async def test_the_hook_runs_the_search_and_the_backend_gets_the_results(hook: Hook) -> None:
    config = {"web_search": {"url": hook.url, "max_results": 3, "api_key_env": "HOOK_TEST_KEY"}}
    request = web_search_request(tools=[{**WEB_SEARCH, "blocked_domains": ["example.com"]}])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOOK_TEST_KEY", "sk-search")
        outcome, _ = await answer(config, request)
    assert hook.seen == [{"query": "envoy ext_proc", "max_results": 3,
                          "blocked_domains": ["example.com"]}]
    assert hook.headers[0]["Authorization"] == "Bearer sk-search"
    assert isinstance(outcome, TranslatedRequest)
    backend_body = orjson.loads(outcome.body)
    assert "tools" not in backend_body
    context_text = backend_body["messages"][-1]["content"]
    assert "[1] External Processing" in context_text and "blocked.example.com" not in context_text
    use, result = outcome.context.leading_blocks
    assert use["type"] == "server_tool_use" and use["input"] == {"query": "envoy ext_proc"}
    assert result["tool_use_id"] == use["id"]
    assert [r["url"] for r in result["content"]] == ["https://www.envoyproxy.io/docs/ext_proc"]
    assert outcome.context.server_tool_usage == {"web_search_requests": 1,
                                                 "web_fetch_requests": 0}


@pytest.mark.parametrize(("reply", "error_code"), [
    (lambda _r: web.json_response({"error": "slow down"}, status=429), "too_many_requests"),
    (lambda _r: web.Response(status=500, text="boom"), "unavailable"),
    (lambda _r: web.Response(text="<html>"), "unavailable"),
    (lambda _r: web.json_response({"hits": []}), "unavailable"),
])
async def test_hook_failures_become_error_results(hook: Hook, reply: Handler,
                                                  error_code: str) -> None:
    hook.reply = reply
    outcome, _ = await answer({"web_search": {"url": hook.url}}, web_search_request())
    body = message(outcome)
    assert body["content"][1]["content"]["error_code"] == error_code
    assert "failed on this gateway" in body["content"][2]["text"]


async def test_a_slow_hook_times_out(hook: Hook) -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"results": []})

    hook.reply = slow
    outcome, _ = await answer({"web_search": {"url": hook.url, "timeout_s": 0.2}},
                              web_search_request())
    assert message(outcome)["content"][1]["content"]["error_code"] == "unavailable"


async def test_max_uses_zero_and_empty_query_are_answered_without_searching(hook: Hook) -> None:
    config = {"web_search": {"url": hook.url}}
    zero, _ = await answer(config, web_search_request(tools=[{**WEB_SEARCH, "max_uses": 0}]))
    assert message(zero)["content"][1]["content"]["error_code"] == "max_uses_exceeded"
    empty = web_search_request(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}])
    blank, _ = await answer(config, empty)
    assert message(blank)["content"][1]["content"]["error_code"] == "invalid_tool_input"
    assert hook.seen == []


def test_the_search_must_fit_in_the_ext_proc_message_timeout() -> None:
    with pytest.raises(ValueError, match="must be below"):
        Config.model_validate({"web_search": {"url": "http://127.0.0.1:1/s", "timeout_s": 5},
                               "timeouts": {"extproc_message_s": 5}})
