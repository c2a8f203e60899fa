"""A request's tools are translated once and reused while later requests send the same ones
(Claude Code repeats its ~20 tools on every turn); anything else is translated afresh."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# ---- parsing: a body whose tools were seen before parses to the same request -------------


def seen(tools: list[dict[str, Any]] = TOOLS) -> bytes:
    """Translate a request with `tools` once, so they are known; their JSON."""
    request_module._tools_cache.clear()
    translate_request(body(tools), RequestOptions(model="m"))
    return orjson.dumps(tools)


def test_known_tools_are_not_parsed_again_and_the_request_is_the_same() -> None:
    tools = seen()
    raw = orjson.dumps(body(TOOLS))
    parsed = request_module.load_request(raw)
    assert parsed == orjson.loads(raw)
    [known] = request_module._tools_cache.values()
    assert parsed["tools"] is known.parsed  # reused, not parsed again
    assert list(parsed) == list(orjson.loads(raw))  # key order kept (the prefix stays stable)
    again = translate_request(parsed, RequestOptions(model="m"))
    assert again.body == translate_request(orjson.loads(raw), RequestOptions(model="m")).body
    assert tools in raw


def conversation(turns: int) -> list[dict[str, Any]]:
    """A long conversation whose text quotes the tools key, as code under review may."""
    text = 'config = {"tools": [1, 2]}  # "tools": ' + "x" * 200
    return [{"role": "user" if n % 2 == 0 else "assistant", "content": f"{n} {text}"}
            for n in range(turns)]


@pytest.mark.parametrize("layout", ["tools after a long conversation (Claude Code)",
                                    "tools first, then a long conversation",
                                    "tools key across the head boundary"])
def test_known_tools_are_found_wherever_the_conversation_puts_them(layout: str) -> None:
    """Found at the start or from the end of the body, never by walking a long
    conversation (which costs ~0.5 µs per KB); a key quoted in the text is not taken."""
    seen()
    messages = conversation(200)
    if layout.startswith("tools after"):
        request = {"model": "m", "messages": messages, "tools": TOOLS, "max_tokens": 5}
    elif layout.startswith("tools first"):
        request = {"model": "m", "tools": TOOLS, "messages": messages, "max_tokens": 5}
    else:
        pad = request_module._HEAD_BYTES - len(b'{"model":"m","x":"",') - 3
        request = {"model": "m", "x": "p" * pad, "tools": TOOLS, "messages": messages}
    raw = orjson.dumps(request)
    assert len(raw) > 2 * request_module._HEAD_BYTES
    if layout.startswith("tools key across"):
        key = raw.find(b'"tools":')
        assert key < request_module._HEAD_BYTES < key + len(b'"tools":')
    parsed = request_module.load_request(raw)
    assert parsed == orjson.loads(raw)
    [known] = request_module._tools_cache.values()
    assert parsed["tools"] is known.parsed


@pytest.mark.parametrize("raw", [
    # the known tools under a nested "tools" key, different top-level tools
    orjson.dumps({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}],
        "metadata": {"tools": TOOLS}, "tools": TOOLS[:1]}),
    # ... and no top-level tools at all
    orjson.dumps({"model": "m", "metadata": {"tools": TOOLS}}),
    # a key ending in an escaped quote and "tools", holding the same bytes
    orjson.dumps({"model": "m", 'x"tools': TOOLS, "tools": []}),
    # the key twice: the last one is the request's
    b'{"model":"m","tools":' + orjson.dumps(TOOLS) + b',"tools":[]}',
    b'{"model":"m","tools":[],"tools":' + orjson.dumps(TOOLS) + b"}",
    # not an object
    b'[{"tools":' + orjson.dumps(TOOLS) + b"}]",
])
def test_only_the_top_level_tools_value_is_taken_for_the_known_one(raw: bytes) -> None:
    tools = seen()
    assert b'"tools":' + tools in raw
    assert request_module.load_request(raw) == orjson.loads(raw)


@pytest.mark.parametrize("raw", [
    b'{"model":"m","tools":' + orjson.dumps(TOOLS) + b',"messages":[}',
    b'{"model":"m","tools":' + orjson.dumps(TOOLS) + b"]",
    b'{"model":"m","tools":' + orjson.dumps(TOOLS)[:-1] + b',{"name":}]}',
])
def test_a_broken_body_fails_as_orjson_reads_it(raw: bytes) -> None:
    seen()
    with pytest.raises(orjson.JSONDecodeError) as ours:
        request_module.load_request(raw)
    with pytest.raises(orjson.JSONDecodeError) as plain:
        orjson.loads(raw)
    assert str(ours.value) == str(plain.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([
    b'"tools":', orjson.dumps(TOOLS), b"{", b"}", b"[", b"]", b",", b'"a":', b'"x"', b"1",
    b'\\"', b'"', b" ",
]), max_size=24))
def test_any_body_parses_as_orjson_parses_it(pieces: list[bytes]) -> None:
    seen()
    raw = b"".join(pieces)
    try:
        expected: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        with pytest.raises(orjson.JSONDecodeError):
            request_module.load_request(raw)
    else:
        assert request_module.load_request(raw) == expected
