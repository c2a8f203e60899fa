"""What vLLM's OpenAI server puts on the wire, by server generation ("dialect").

The JSON shapes below were read from vLLM's protocol/serving code and from captured responses of
real servers. vLLM serializes with pydantic (`model_dump_json(exclude_unset=True)` for stream
chunks, `model_dump()` for whole responses), so field *order* follows the class definitions and
fields that are explicitly set to None appear as `null`. We reproduce that order and those nulls.

Dialects (version ranges are approximate):

`legacy` (~v0.7-0.8)
    message `{"role","reasoning_content","content","tool_calls":[]}`; response without
    `service_tier`/`system_fingerprint`/`kv_transfer_params`; 32-hex ids; errors are the flat
    `{"object":"error","message","type","param","code"}`; stream deltas `reasoning_content`.
`reasoning_content` (~v0.9-0.10)
    message `{"role","content","refusal","annotations","audio","function_call","tool_calls":[],
    "reasoning_content"}`; response with `service_tier`, `system_fingerprint`, `prompt_logprobs`,
    `kv_transfer_params`; flat errors; stream deltas `reasoning_content`.
`transitional` (~v0.11-0.13, when `reasoning` was added and `reasoning_content` kept as a copy)
    message carries both `reasoning` and `reasoning_content`; every stream delta that has no
    reasoning still carries `"reasoning_content":null`, reasoning deltas carry both keys; choices
    carry `"token_ids":null`; the first chunk and the response carry `"prompt_token_ids":null`;
    nested errors `{"error":{"message","type","param","code"}}`; 16-hex ids.
`current` (~v0.14-0.19, after vLLM PR #33402 removed `reasoning_content`)
    like `transitional` but only `reasoning`.

In-stream errors are written with Python's `json.dumps` defaults (`", "` and `": "` separators,
non-ASCII escaped), unlike everything else, which is compact: we keep that difference.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import orjson

ReasoningKeys = Literal["reasoning", "reasoning_content", "both"]


@dataclass(frozen=True)
class Dialect:
    name: str
    reasoning_keys: ReasoningKeys
    message_keys: tuple[str, ...]  # order of the non-streaming message's keys
    response_extras: bool  # service_tier, system_fingerprint, kv_transfer_params
    token_id_nulls: bool  # "token_ids":null in choices, "prompt_token_ids":null up front
    nested_errors: bool  # {"error":{...}} rather than {"object":"error",...}
    id_hex_len: int
    null_reasoning_content_in_deltas: bool = False
    model_error_param: bool = False  # 404 for an unknown model names `"param":"model"`

    def new_id(self, prefix: str = "chatcmpl-") -> str:
        return prefix + secrets.token_hex(self.id_hex_len // 2)


_OPENAI_MESSAGE = (
    "role",
    "content",
    "refusal",
    "annotations",
    "audio",
    "function_call",
    "tool_calls",
)

DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect(
            name="legacy",
            reasoning_keys="reasoning_content",
            message_keys=("role", "reasoning_content", "content", "tool_calls"),
            response_extras=False,
            token_id_nulls=False,
            nested_errors=False,
            id_hex_len=32,
        ),
        Dialect(
            name="reasoning_content",
            reasoning_keys="reasoning_content",
            message_keys=(*_OPENAI_MESSAGE, "reasoning_content"),
            response_extras=True,
            token_id_nulls=False,
            nested_errors=False,
            id_hex_len=32,
        ),
        Dialect(
            name="transitional",
            reasoning_keys="both",
            message_keys=(*_OPENAI_MESSAGE, "reasoning", "reasoning_content"),
            response_extras=True,
            token_id_nulls=True,
            nested_errors=True,
            id_hex_len=16,
            null_reasoning_content_in_deltas=True,
        ),
        Dialect(
            name="current",
            reasoning_keys="reasoning",
            message_keys=(*_OPENAI_MESSAGE, "reasoning"),
            response_extras=True,
            token_id_nulls=True,
            nested_errors=True,
            id_hex_len=16,
            model_error_param=True,
        ),
    )
}
DEFAULT_DIALECT = "current"


def get_dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; known: {', '.join(DIALECTS)}") from None


# --- usage -------------------------------------------------------------------------------------


def usage_dict(
    prompt: int, completion: int, cached: int | None = None, *, details: bool = False
) -> dict[str, Any]:
    """vLLM's UsageInfo; `details` is whether the response carries `prompt_tokens_details`
    (always for whole responses, where it defaults to null; only when enabled in streams)."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    elif details:
        usage["prompt_tokens_details"] = None
    return usage


# --- whole (non-streaming) responses ---------------------------------------------------------


def tool_call_dict(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def message_dict(
    d: Dialect, content: str | None, reasoning: str | None, tool_calls: list[dict[str, Any]]
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": None,
        "annotations": None,
        "audio": None,
        "function_call": None,
        "tool_calls": tool_calls,
        "reasoning": reasoning,
        "reasoning_content": reasoning,
    }
    return {key: values[key] for key in d.message_keys}


def completion_dict(
    d: Dialect,
    *,
    response_id: str,
    created: int,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    stop_reason: str | int | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason,
        "stop_reason": stop_reason,
    }
    if d.token_id_nulls:
        choice["token_ids"] = None
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
    }
    if d.response_extras:
        body["service_tier"] = None
        body["system_fingerprint"] = None
    body["usage"] = usage
    body["prompt_logprobs"] = None
    if d.token_id_nulls:
        body["prompt_token_ids"] = None
    if d.response_extras:
        body["kv_transfer_params"] = None
    return body


# --- stream chunks -------------------------------------------------------------------------------


def delta_dict(
    d: Dialect,
    *,
    role: str | None = None,
    content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A DeltaMessage as vLLM dumps it: only the fields it set, in class order."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        if d.reasoning_keys in ("reasoning", "both"):
            delta["reasoning"] = reasoning
        if d.reasoning_keys in ("reasoning_content", "both"):
            delta["reasoning_content"] = reasoning
    elif d.null_reasoning_content_in_deltas:
        delta["reasoning_content"] = None
    if tool_calls:
        delta["tool_calls"] = tool_calls
    return delta


def chunk_dict(
    d: Dialect,
    *,
    response_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    stop_reason: str | int | None = None,
    first: bool = False,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; `delta=None` makes the usage-only chunk (`"choices":[]`)."""
    choices: list[dict[str, Any]] = []
    if delta is not None:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        if finish_reason is not None:
            choice["stop_reason"] = stop_reason
        if d.token_id_nulls and not first:
            choice["token_ids"] = None
        choices.append(choice)
    chunk: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    if first and d.token_id_nulls:
        chunk["prompt_token_ids"] = None
    return chunk


def sse_data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


# --- errors ------------------------------------------------------------------------------------


def error_dict(
    d: Dialect, message: str, err_type: str, code: int, param: str | None = None
) -> dict[str, Any]:
    if d.nested_errors:
        return {"error": {"message": message, "type": err_type, "param": param, "code": code}}
    return {"object": "error", "message": message, "type": err_type, "param": param, "code": code}


def model_not_found_body(d: Dialect, model: str | None) -> bytes:
    message = f"The model `{model}` does not exist."
    param = "model" if d.model_error_param else None
    return http_error_body(d, message, "NotFoundError", 404, param)


def http_error_body(
    d: Dialect, message: str, err_type: str, code: int, param: str | None = None
) -> bytes:
    return orjson.dumps(error_dict(d, message, err_type, code, param))


def stream_error_event(d: Dialect, message: str, err_type: str, code: int) -> bytes:
    """The `data: {"error": ...}` event vLLM writes when generation fails mid-stream."""
    inner = error_dict(d, message, err_type, code)
    wrapped = inner if d.nested_errors else {"error": inner}
    return b"data: " + json.dumps(wrapped).encode() + b"\n\n"


def error_type_for_status(status: int) -> str:
    """The exception-class-like type names vLLM uses in error bodies."""
    return {
        400: "BadRequestError",
        401: "Unauthorized",
        404: "NotFoundError",
        413: "BadRequestError",
        429: "TooManyRequests",
        501: "NotImplementedError",
        503: "ServiceUnavailableError",
    }.get(status, "InternalServerError" if status >= 500 else "BadRequestError")
