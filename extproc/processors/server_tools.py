"""The I/O half of server tools on OpenAI backends: answer for them, or run a web search.

What is answered and why is in extproc/translators/server_tools.py; this module calls the
operator's search hook (config `web_search`) and turns the outcome into either an immediate
answer or the request the backend should answer instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from extproc.config import WebSearchHook
from extproc.gateway import Gateway
from extproc.processors.base import SSE_HEADERS, Respond
from extproc.translators.request import RequestOptions, TranslatedRequest, translate_request
from extproc.translators.server_tools import (
    WEB_SEARCH,
    SearchResult,
    ServerToolCall,
    error_blocks,
    message_body,
    plan_server_tool,
    search_blocks,
    server_usage,
    unavailable_text,
    with_search_results,
)

log = structlog.get_logger("extproc.server_tools")

_HOOK_FIELDS: Final = ("allowed_domains", "blocked_domains", "user_location")


class SearchFailed(Exception):
    def __init__(self, message: str, error_code: str = "unavailable") -> None:
        super().__init__(message)
        self.error_code = error_code


async def answer_server_tools(
    gateway: Gateway,
    request: dict[str, Any],
    translated: TranslatedRequest,
    options: RequestOptions,
) -> Respond | TranslatedRequest:
    """An immediate answer for a request about a server tool, or the request to send on
    (unchanged when the request is not about one)."""
    call = plan_server_tool(request, translated.context.client_tools)
    if call is None:
        if translated.server_tools:
            log.info("server_tools_not_offered", tools=translated.server_tools)
        return translated
    model, stream = translated.context.model, translated.stream
    hook = gateway.config.web_search
    if call.kind is not WEB_SEARCH or hook is None:
        return _respond(model, stream, error_blocks(call, "unavailable", unavailable_text(call)))
    if not call.query:
        text = "Web search needs a query: the request's last user message has no text."
        return _respond(model, stream, error_blocks(call, "invalid_tool_input", text))
    if call.tool.get("max_uses") == 0:
        text = "Web search is limited to 0 uses by this request's max_uses."
        return _respond(model, stream, error_blocks(call, "max_uses_exceeded", text))
    try:
        results = await search(gateway, hook, call)
    except SearchFailed as exc:
        log.warning("web_search_failed", reason=str(exc), error_code=exc.error_code)
        text = f"Web search failed on this gateway ({exc}). Answer without it."
        return _respond(model, stream, error_blocks(call, exc.error_code, text))
    updated = translate_request(with_search_results(request, call, results), options)
    context = dataclasses.replace(
        updated.context,
        leading_blocks=tuple(search_blocks(call, results)),
        server_tool_usage=server_usage(call, 1),
    )
    return dataclasses.replace(updated, context=context, server_tools=translated.server_tools)


def _respond(model: str, stream: bool, blocks: list[dict[str, Any]]) -> Respond:
    body = message_body(model, blocks, stream=stream)
    if stream:
        return Respond(status=200, body=body, headers=SSE_HEADERS)
    return Respond(status=200, body=body)


async def search(gateway: Gateway, hook: WebSearchHook, call: ServerToolCall) -> list[SearchResult]:
    """POST the query to the hook; its results, filtered by the tool's domain rules."""
    payload: dict[str, Any] = {"query": call.query, "max_results": hook.max_results}
    payload.update({k: call.tool[k] for k in _HOOK_FIELDS if call.tool.get(k) is not None})
    headers = {"content-type": "application/json"}
    if key := hook.api_key():
        headers["authorization"] = f"Bearer {key}"
    try:
        async with gateway.http().post(
            hook.url, data=orjson.dumps(payload), headers=headers,
            timeout=aiohttp.ClientTimeout(total=hook.timeout_s),
        ) as reply:
            body = await reply.read()
            status = reply.status
    except TimeoutError:
        raise SearchFailed(f"no answer within {hook.timeout_s}s") from None
    except aiohttp.ClientError as exc:
        raise SearchFailed(f"search hook unreachable: {type(exc).__name__}") from None
    if status == 429:
        raise SearchFailed("search hook is rate limited", "too_many_requests")
    if not 200 <= status < 300:
        raise SearchFailed(f"search hook answered HTTP {status}")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SearchFailed("search hook answered something that is not JSON") from None
    items = data.get("results") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SearchFailed("search hook answer has no results list")
    results = [r for r in map(_result, items) if r is not None and _allowed(r.url, call.tool)]
    return results[: hook.max_results]


def _result(item: object) -> SearchResult | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("url"), str) or not item["url"]:
        return None
    title, age, content = item.get("title"), item.get("page_age"), item.get("content")
    return SearchResult(
        url=item["url"],
        title=title if isinstance(title, str) and title else item["url"],
        page_age=age if isinstance(age, str) and age else None,
        content=content if isinstance(content, str) else "",
    )


def _allowed(url: str, tool: Mapping[str, Any]) -> bool:
    host = (urlsplit(url).hostname or "").lower()

    def within(domains: object) -> bool:
        return isinstance(domains, list) and any(
            isinstance(d, str) and (host == d.lower() or host.endswith("." + d.lower()))
            for d in domains
        )

    if tool.get("allowed_domains") and not within(tool["allowed_domains"]):
        return False
    return not within(tool.get("blocked_domains"))
