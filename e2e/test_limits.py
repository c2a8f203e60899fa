"""Limits through real Envoy: over-limit requests get 413/400 Anthropic errors naming the limit,
and pathological bodies (invalid UTF-8, extreme nesting, huge strings, many keys) neither crash
nor stall the server. Body size against a 1 MB gateway is in e2e/test_errors.py; here the
default 32 MiB, counts and depths."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from e2e.harness import Gateway, MockBackend, backend_config, start_gateway

HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01",
           "x-api-key": "sk-client-dummy"}
LIMITS = {"max_messages": 10, "max_tools": 4, "max_json_depth": 12, "max_request_bytes": 8 << 20}
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-6", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}], **fields}


def nesting(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.fixture(scope="module")
def limited(workdir: Path, mock_backend: MockBackend) -> Iterator[Gateway]:
    config = {
        "backends": [backend_config(mock_backend, models=[{"name": "qwen3-coder", "aliases": ["claude-*"]}])],
        "limits": LIMITS,
    }
    gw = start_gateway(workdir, config)
    yield gw
    gw.process.stop()


def post(gateway: Gateway, body: bytes) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/messages", content=body, headers=HEADERS, timeout=30)


def error_of(reply: httpx.Response, status: int, error_type: str) -> str:
    assert reply.status_code == status, reply.text[:300]
    assert reply.headers["content-type"].startswith("application/json")
    payload = reply.json()
    assert payload["type"] == "error" and payload["error"]["type"] == error_type
    return str(payload["error"]["message"])


def test_default_body_limit_is_32_mib(gateway: Gateway, backend: MockBackend) -> None:
    body = orjson.dumps(request(system="x" * DEFAULT_MAX_BYTES))
    message = error_of(post(gateway, body), 413, "request_too_large")
    assert str(DEFAULT_MAX_BYTES) in message
    assert backend.requests() == []


TOOLS = [{"name": f"t{n}", "input_schema": {"type": "object"}} for n in range(5)]
OVER = [
    ("messages", request(messages=[{"role": "user", "content": str(n)} for n in range(11)]),
     "limit of 10"),
    ("tools", request(tools=TOOLS), "limit of 4"),
    ("tool-schema-depth",
     request(tools=[{"name": "t", "input_schema": {"type": "object", "properties": nesting(12)}}]),
     "tools.0.input_schema: nested deeper than 12 levels"),
    ("output-schema-depth",
     request(output_config={"format": {"type": "json_schema", "schema": {"properties": nesting(12)}}}),
     "output_config.format.schema: nested deeper than 12 levels"),
]


@pytest.mark.parametrize(("body", "named"), [(b, n) for _, b, n in OVER], ids=[i for i, _, _ in OVER])
def test_over_a_limit_is_a_400_naming_it(
    limited: Gateway, backend: MockBackend, body: dict[str, Any], named: str
) -> None:
    assert named in error_of(post(limited, orjson.dumps(body)), 400, "invalid_request_error")
    assert backend.requests() == []


HOSTILE = [
    ("invalid-utf8", orjson.dumps(request()).replace(b'"hi"', b'"h\xff\xfei"'), "UTF-8"),
    ("surrogate-escape", orjson.dumps(request()).replace(b'"hi"', b'"\\ud800"'), "JSON"),
    ("nested-100k", orjson.dumps(request()).replace(b'"hi"', b"[" * 100_000 + b"]" * 100_000),
     "deeper than 1024 levels"),
    ("nested-at-orjson-write-limit",
     orjson.dumps(request(metadata={"user_id": "u"})).replace(
         b'"u"', b'"u","x":' + b'{"a":' * 300 + b"1" + b"}" * 300), None),
    ("many-keys", orjson.dumps(request(metadata={f"k{n}": n for n in range(100_000)})), None),
    # 3 MB of escapes and multi-byte text in a field the gateway drops (a prompt that long
    # would only hit the model's context limit).
    ("huge-string", orjson.dumps(request(zzz_unknown="é\\\"" * 1_000_000)), None),
]


@pytest.mark.parametrize(("body", "named"), [(b, n) for _, b, n in HOSTILE], ids=[i for i, _, _ in HOSTILE])
def test_pathological_bodies_get_an_answer(
    limited: Gateway, backend: MockBackend, body: bytes, named: str | None
) -> None:
    """A clean 400, or (for valid JSON whose extremes the gateway drops or carries) an answer."""
    backend.script({"text": "fine"})
    reply = post(limited, body)
    if named is None:
        assert reply.status_code == 200, reply.text[:300]
        assert reply.json()["content"] == [{"type": "text", "text": "fine"}]
    else:
        assert named in error_of(reply, 400, "invalid_request_error")
        assert backend.requests() == []


def test_a_burst_of_pathological_bodies_leaves_the_server_serving(
    limited: Gateway, backend: MockBackend
) -> None:
    bodies = [body for _, body, named in HOSTILE if named is not None] * 8
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda body: post(limited, body).status_code, bodies))
    assert statuses == [400] * len(bodies)
    backend.script({"text": "still serving"})
    reply = post(limited, orjson.dumps(request()))
    assert reply.json()["content"] == [{"type": "text", "text": "still serving"}]
    assert limited.process.proc.poll() is None
