"""A request's tools are translated once and reused while later requests send the same ones
(Claude Code repeats its ~20 tools on every turn); anything else is translated afresh."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from extproc.errors import InvalidRequest
from extproc.translators import request as request_module
from extproc.translators.request import RequestOptions, translate_request

TOOLS = [
    {"name": "Bash", "description": "Run a command.", "cache_control": {"type": "ephemeral"},
     "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
    {"type": "web_search_20250305", "name": "web_search"},
    {"name": "Read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
]


def body(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 64, "tools": copy.deepcopy(tools),
            "messages": [{"role": "user", "content": "hi"}]}


def test_the_same_tools_are_translated_once_and_give_the_same_bytes() -> None:
    request_module._tools_cache.clear()
    options = RequestOptions(model="m")
    first = translate_request(body(TOOLS), options)
    assert len(request_module._tools_cache) == 1
    [cached] = request_module._tools_cache.values()
    second = translate_request(body(TOOLS), options)
    assert [cached] == list(request_module._tools_cache.values())  # reused, not replaced
    assert second.body == first.body
    assert second.dropped == first.dropped and "cache_control" in second.dropped
    assert second.server_tools == first.server_tools == ("web_search_20250305",)
    assert second.context.client_tools == frozenset({"Bash", "Read"})
    sent = orjson.loads(second.body)["tools"]
    assert [tool["function"]["name"] for tool in sent] == ["Bash", "Read"]


def test_other_tools_or_another_depth_limit_are_translated_afresh() -> None:
    request_module._tools_cache.clear()
    translate_request(body(TOOLS), RequestOptions(model="m"))
    changed = copy.deepcopy(TOOLS)
    changed[2]["description"] = "Read a file."
    out = translate_request(body(changed), RequestOptions(model="m"))
    assert orjson.loads(out.body)["tools"][1]["function"]["description"] == "Read a file."
    translate_request(body(TOOLS), RequestOptions(model="m", max_json_depth=3))
    assert len(request_module._tools_cache) == 3


def test_a_too_deep_schema_is_refused_every_time() -> None:
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(10):
        deep = {"type": "object", "properties": {"x": deep}}
    tools = [{"name": "Deep", "input_schema": deep}]
    for _ in range(2):
        with pytest.raises(InvalidRequest, match="nested deeper than 8 levels"):
            translate_request(body(tools), RequestOptions(model="m", max_json_depth=8))


def test_seen_tools_skip_validation_but_the_rest_of_the_request_does_not() -> None:
    request_module._tools_cache.clear()
    translate_request(body(TOOLS), RequestOptions(model="m"))
    broken = body(TOOLS)
    broken["max_tokens"] = "many"
    with pytest.raises(InvalidRequest, match="max_tokens"):
        translate_request(broken, RequestOptions(model="m"))


def test_invalid_tools_are_never_kept() -> None:
    request_module._tools_cache.clear()
    tools = [{"name": "NoSchema", "description": "input_schema is missing"}]
    for _ in range(2):
        with pytest.raises(InvalidRequest, match="input_schema"):
            translate_request(body(tools), RequestOptions(model="m"))
    assert not request_module._tools_cache
