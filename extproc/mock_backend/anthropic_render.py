"""An `Output` as vLLM's own Anthropic-compatible `/v1/messages` writes it.

vLLM builds these with pydantic and `exclude_unset`/`exclude_none`, which gives quirks we keep:
the id is the `chatcmpl-...` id; `message_start.message` has no `type`/`role` keys; events put
`index` after `content_block`/`delta`; there is no `ping`; thinking blocks close with a
`signature_delta` carrying a random hex signature; `message_delta.usage` has `input_tokens` and
`output_tokens`; stop reasons map stop->end_turn, length->max_tokens, tool_calls->tool_use
(never stop_sequence). Errors are `{"type":"error","error":{"type":<vLLM type>,"message":...}}`;
a failure mid-stream becomes `event: error` with type `internal_error` and the stream ends
without `message_stop`.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import orjson

from extproc.mock_backend.families import Family, group_tokens
from extproc.mock_backend.openai_render import Meta
from extproc.mock_backend.plan import Output

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _input(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


def _usage(meta: Meta, out: Output) -> dict[str, int]:
    return {"input_tokens": meta.prompt_tokens, "output_tokens": out.completion_tokens}


def messages_body(meta: Meta, out: Output) -> bytes:
    content: list[dict[str, Any]] = []
    if out.reasoning:
        content.append(
            {"type": "thinking", "thinking": out.reasoning, "signature": secrets.token_hex(16)}
        )
    if out.content:
        content.append({"type": "text", "text": out.content})
    for call in out.tool_calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        )
    body: dict[str, Any] = {
        "id": meta.response_id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": meta.model,
    }
    stop_reason = STOP_REASONS.get(out.finish_reason)
    if stop_reason is not None:
        body["stop_reason"] = stop_reason
    body["usage"] = _usage(meta, out)
    return orjson.dumps(body)


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def error_body(err_type: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": err_type, "message": message}})


def error_event(message: str) -> bytes:
    return event(
        "error", {"type": "error", "error": {"type": "internal_error", "message": message}}
    )


def _block(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[bytes]:
    start = {"type": "content_block_start", "content_block": block, "index": index}
    events = [event("content_block_start", start)]
    events += [
        event("content_block_delta", {"type": "content_block_delta", "delta": d, "index": index})
        for d in deltas
    ]
    events.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def messages_events(fam: Family, meta: Meta, out: Output) -> list[bytes]:
    """Every event of the stream, `message_stop` included."""
    start_message: dict[str, Any] = {
        "id": meta.response_id,
        "content": [],
        "model": meta.model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": meta.prompt_tokens, "output_tokens": 0},
    }
    events = [event("message_start", {"type": "message_start", "message": start_message})]
    index = 0
    if out.reasoning:
        deltas = [
            {"type": "thinking_delta", "thinking": t}
            for t in group_tokens(out.reasoning, fam.tokens_per_delta)
        ]
        deltas.append({"type": "signature_delta", "signature": secrets.token_hex(16)})
        events += _block(index, {"type": "thinking", "thinking": ""}, deltas)
        index += 1
    if out.content:
        deltas = [
            {"type": "text_delta", "text": t}
            for t in group_tokens(out.content, fam.tokens_per_delta)
        ]
        events += _block(index, {"type": "text", "text": ""}, deltas)
        index += 1
    for call in out.tool_calls:
        pieces = fam.argument_pieces(call.arguments)
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces if p]
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events += _block(index, block, deltas)
        index += 1
    delta = {"stop_reason": STOP_REASONS.get(out.finish_reason, "end_turn")}
    events.append(
        event(
            "message_delta", {"type": "message_delta", "delta": delta, "usage": _usage(meta, out)}
        )
    )
    events.append(event("message_stop", {"type": "message_stop"}))
    return events


def count_tokens_body(input_tokens: int) -> bytes:
    return orjson.dumps(
        {
            "input_tokens": input_tokens,
            "context_management": {"original_input_tokens": input_tokens},
        }
    )
