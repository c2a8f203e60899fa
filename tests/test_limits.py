"""Request limits (config `limits`): each over-limit request gets a 413 `request_too_large` or a
400 `invalid_request_error` whose message names the limit, before any backend sees it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from extproc.config import Config
from extproc.gateway import Gateway
from extproc.processors.base import Continue, RequestInfo, Respond
from extproc.processors.messages import PARSER_MAX_DEPTH, MessagesProcessor

LIMITS = {"max_request_bytes": 64 * 1024, "max_messages": 6, "max_tools": 3, "max_json_depth": 10}
GATEWAY = Gateway(Config.model_validate({
    "backends": [{"name": "vllm", "base_url": "http://127.0.0.1:9/v1",
                  "models": [{"name": "qwen3-coder", "aliases": ["claude-*"]}]}],
    "limits": LIMITS,
}))


def tool(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "input_schema": schema or {"type": "object"}}


def nesting(levels: int) -> dict[str, Any]:
    """A JSON object `levels` containers deep (`{}` is one level)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def deep(levels: int) -> dict[str, Any]:
    """A JSON schema `levels` containers deep."""
    return {"type": "object", "properties": nesting(levels - 1)}


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
            **fields}


def send(body: bytes) -> Continue | Respond:
    async def run() -> Continue | Respond:
        processor = MessagesProcessor(
            RequestInfo(method="POST", path="/v1/messages", query="", headers={}), GATEWAY)
        try:
            return await processor.request_body(body, True)
        finally:
            processor.close()

    return asyncio.run(run())


def refusal(body: bytes, status: int, error_type: str) -> str:
    action = send(body)
    assert isinstance(action, Respond), action
    assert action.status == status
    error = orjson.loads(action.body)
    assert error["type"] == "error" and error["error"]["type"] == error_type
    return str(error["error"]["message"])


def turns(count: int) -> list[dict[str, str]]:
    return [{"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n}"}
            for n in range(count)]


def test_body_over_max_request_bytes_is_413_naming_the_limit() -> None:
    body = orjson.dumps(request(system="x" * LIMITS["max_request_bytes"]))
    message = refusal(body, 413, "request_too_large")
    assert f"limit is {LIMITS['max_request_bytes']} bytes" in message


@pytest.mark.parametrize(("fields", "names"), [
    ({"messages": turns(7)}, ("messages", "6")),
    ({"tools": [tool(f"t{n}") for n in range(4)]}, ("tools", "3")),
    ({"tools": [tool("deep", deep(11))]}, ("tools.0.input_schema", "10 levels")),
    ({"messages": [*turns(1), {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "deep", "input": nesting(11)}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}],
      "tools": [tool("deep")]},
     ("messages.1.content.0.input", "10 levels")),
    ({"output_config": {"format": {"type": "json_schema", "schema": deep(11)}}},
     ("output_config.format.schema", "10 levels")),
    ({"output_format": {"type": "json_schema", "schema": deep(11)}},
     ("output_format.schema", "10 levels")),
], ids=["messages", "tools", "tool-schema-depth", "tool-input-depth", "output-schema-depth",
        "output-format-depth"])
def test_over_a_count_or_depth_limit_is_400_naming_it(
    fields: dict[str, Any], names: tuple[str, str]
) -> None:
    message = refusal(orjson.dumps(request(**fields)), 400, "invalid_request_error")
    for name in names:
        assert name in message


@pytest.mark.parametrize("fields", [
    {"messages": turns(5)},
    {"tools": [tool(f"t{n}") for n in range(3)]},
    {"tools": [tool("deep", deep(10))]},
    {"output_config": {"format": {"type": "json_schema", "schema": deep(10)}}},
], ids=["messages", "tools", "tool-schema-depth", "output-schema-depth"])
def test_at_the_limit_passes(fields: dict[str, Any]) -> None:
    assert isinstance(send(orjson.dumps(request(**fields))), Continue)


def test_nesting_past_the_json_parser_is_400_naming_its_depth() -> None:
    body = orjson.dumps(request()).replace(b'"hi"', b"[" * 5000 + b"]" * 5000)
    message = refusal(body, 400, "invalid_request_error")
    assert f"deeper than {PARSER_MAX_DEPTH} levels" in message


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"])
def test_invalid_utf8_is_400_not_a_crash(bad: bytes) -> None:
    body = orjson.dumps(request()).replace(b'"hi"', b'"h' + bad + b'i"')
    assert "UTF-8" in refusal(body, 400, "invalid_request_error")


def test_many_keys_and_long_strings_under_the_size_limit_translate() -> None:
    wide = {f"k{n}": n for n in range(3000)}
    body = orjson.dumps(request(metadata={"user_id": "u", **wide}, system="é" * 10_000))
    assert len(body) < LIMITS["max_request_bytes"]
    action = send(body)
    assert isinstance(action, Continue) and action.body is not None
