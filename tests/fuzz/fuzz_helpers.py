"""Shared strategies and checks for the fuzz suite: hostile bytes and JSON, and the invariant
"valid Anthropic output or a clean Anthropic error"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import anthropic
import orjson
from hypothesis import strategies as st

from extproc.config import Config
from extproc.gateway import Gateway
from extproc.processors.base import Action, Continue, RequestInfo, Respond
from extproc.schemas.anthropic import ErrorResponse

ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)

# ---- hostile input --------------------------------------------------------------------------

# Text with the characters parsers trip over: quotes, escapes, controls, astral planes, RTL.
TEXT = st.text(
    st.characters(codec="utf-8", blacklist_categories=("Cs",)) | st.sampled_from('"\\\x00\n\u2028😀'),
    max_size=12,
)
KEYS = TEXT | st.sampled_from(
    ["type", "text", "content", "role", "name", "input", "id", "model", "messages", "tools",
     "system", "source", "data", "tool_use_id", "input_schema", "properties", "schema"]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)  # beyond 64 bits: orjson refuses to write those
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)
# Bytes that are never valid UTF-8: lone continuation bytes, overlongs, surrogates, 0xFF.
INVALID_UTF8 = st.sampled_from(
    [b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xf4\x90\x80\x80", b"\xe2\x82"]
)


def nested(depth: int, kind: str = "object", leaf: bytes = b"1") -> bytes:
    """JSON nested `depth` containers deep, written directly (orjson will not write past 254)."""
    if kind == "object":
        return b'{"a":' * depth + leaf + b"}" * depth
    return b"[" * depth + leaf + b"]" * depth


def corrupt(data: bytes, at: int, insert: bytes) -> bytes:
    position = at % (len(data) + 1)
    return data[:position] + insert + data[position:]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# ---- the processor, without gRPC ------------------------------------------------------------


def gateway(**config: Any) -> Gateway:
    base = {
        "backends": [
            {"name": "vllm", "base_url": "http://127.0.0.1:9/v1",
             "models": [{"name": "qwen3-coder", "aliases": ["claude-*"]}]},
            {"name": "native", "schema": "anthropic", "base_url": "http://127.0.0.1:9",
             "models": [{"name": "served-native", "aliases": ["native-*"]}]},
        ],
        **config,
    }
    return Gateway(Config.model_validate(base))


def info(path: str = "/v1/messages", method: str = "POST") -> RequestInfo:
    return RequestInfo(method=method, path=path, query="", headers={":path": path},
                       request_id="fuzz")


# ---- the invariant --------------------------------------------------------------------------


def anthropic_error(body: bytes) -> dict[str, str]:
    """`body` is exactly an Anthropic error object; returns its `error`."""
    ErrorResponse.model_validate_json(body)
    error: dict[str, str] = orjson.loads(body)["error"]
    assert error["type"] in ERROR_TYPES
    assert error["message"]
    return error


def refused(action: Action, statuses: Iterable[int] = (400, 404, 413)) -> dict[str, str] | None:
    """An immediate Anthropic error with one of `statuses`, or None when the action continues."""
    if isinstance(action, Continue):
        return None
    assert isinstance(action, Respond)
    assert action.status in set(statuses), (action.status, action.body[:300])
    assert dict(action.headers)["content-type"] == "application/json"
    return anthropic_error(action.body)


def anthropic_message(body: bytes) -> anthropic.types.Message:
    # Parsed as the SDK does (a JSON parser first, then the model): pydantic's own JSON
    # parser stops at 200 levels, which deep tool input may exceed.
    return anthropic.types.Message.model_validate(orjson.loads(body))


def sse_events(body: bytes) -> list[dict[str, Any]]:
    """Anthropic SSE bytes -> event payloads; every event is `event:` + one `data:` line."""
    if not body:
        return []
    assert body.endswith(b"\n\n"), body[-80:]
    events = []
    for raw in body[:-2].split(b"\n\n"):
        name, data = raw.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: "), raw
        payload = orjson.loads(data[len(b"data: "):])
        assert payload["type"] == name[len(b"event: "):].decode()
        events.append(payload)
    return events


def stream_outcome(body: bytes) -> str:
    """'complete' (message_start ... message_stop) or 'error' (ends in exactly one error event);
    anything else fails. The block grammar itself is checked in tests/translators/test_stream.py."""
    events = sse_events(body)
    assert events, "a stream must say something: a message or an error"
    kinds = [event["type"] for event in events]
    assert kinds.count("message_start") <= 1 and kinds[0] in ("message_start", "error")
    if kinds[-1] == "error":
        assert kinds.count("error") == 1 and "message_stop" not in kinds
        anthropic_error(orjson.dumps(events[-1]))
        return "error"
    assert kinds[-2:] == ["message_delta", "message_stop"], kinds
    assert kinds.count("message_stop") == 1
    return "complete"


def header_map(pairs: Iterable[tuple[str, str]]) -> Mapping[str, str]:
    return {key: value for key, value in pairs}
