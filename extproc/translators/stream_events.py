"""The Anthropic Messages streaming events, as SSE bytes written through the one codec.

Deltas are the per-token hot path: each open block keeps its JSON prefix, so a delta costs
one `orjson.dumps` of the new text and a few concatenations.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

import orjson

from extproc.errors import error_body
from extproc.sse import encode_event
from extproc.translators.common import THINKING_SIGNATURE, AnthropicUsage


class BlockType(enum.Enum):
    THINKING = "thinking"
    TEXT = "text"
    TOOL_USE = "tool_use"


PING: Final = encode_event("ping", b'{"type":"ping"}')
MESSAGE_STOP: Final = encode_event("message_stop", b'{"type":"message_stop"}')

_DELTA_FIELD: Final = {
    BlockType.THINKING: b'thinking_delta","thinking":',
    BlockType.TEXT: b'text_delta","text":',
    BlockType.TOOL_USE: b'input_json_delta","partial_json":',
}


def message_start(message_id: str, model: str, usage: AnthropicUsage) -> bytes:
    message: dict[str, object] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return _event("message_start", {"type": "message_start", "message": message})


def thinking_start(index: int) -> bytes:
    return _block_start(index, {"type": "thinking", "thinking": "", "signature": ""})


def text_start(index: int) -> bytes:
    return _block_start(index, {"type": "text", "text": ""})


def tool_use_start(index: int, tool_id: str, name: str) -> bytes:
    return _block_start(index, {"type": "tool_use", "id": tool_id, "name": name, "input": {}})


def delta_prefix(block: BlockType, index: int) -> bytes:
    """The JSON of a content_block_delta up to its value, fixed for the life of a block."""
    return b'{"type":"content_block_delta","index":%d,"delta":{"type":"%s' % (
        index,
        _DELTA_FIELD[block],
    )


def delta(prefix: bytes, value: str) -> bytes:
    return encode_event("content_block_delta", prefix + orjson.dumps(value) + b"}}")


def signature_delta(index: int) -> bytes:
    signature = {"type": "signature_delta", "signature": THINKING_SIGNATURE}
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": signature}
    )


def block_stop(index: int) -> bytes:
    return encode_event("content_block_stop", b'{"type":"content_block_stop","index":%d}' % index)


def message_delta(stop_reason: str, stop_sequence: str | None, usage: AnthropicUsage) -> bytes:
    # Anthropic's message_delta usage is cumulative; sending the input and cache counts too
    # corrects a message_start sent before the backend reported them.
    payload = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": usage,
    }
    return _event("message_delta", payload)


def whole_block(index: int, block: Mapping[str, Any]) -> bytes:
    """A content block known in full, streamed the way Anthropic streams it: blocks with an
    `input` (tool_use, server_tool_use) start empty and get it in one input_json_delta,
    text comes as one text_delta, result blocks start complete."""
    if "input" in block:
        start = _block_start(index, {**block, "input": {}})
        partial = orjson.dumps(block["input"]).decode()
        body = delta(delta_prefix(BlockType.TOOL_USE, index), partial)
    elif block["type"] == "text":
        start = text_start(index)
        body = delta(delta_prefix(BlockType.TEXT, index), block["text"])
    else:
        start, body = _block_start(index, dict(block)), b""
    return start + body + block_stop(index)


def error(error_type: str, message: str) -> bytes:
    return encode_event("error", error_body(error_type, message))


def _block_start(index: int, content_block: dict[str, object]) -> bytes:
    start = {"type": "content_block_start", "index": index, "content_block": content_block}
    return _event("content_block_start", start)


def _event(name: str, payload: object) -> bytes:
    return encode_event(name, orjson.dumps(payload))
