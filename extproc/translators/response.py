"""OpenAI chat.completion JSON -> Anthropic message JSON, and backend errors -> Anthropic errors.

Content order is Anthropic's: thinking, then text, then tool_use; no empty text block.
Tool calls naming a tool the client did not declare are held back (reported in
`TranslatedResponse.unknown_tool_calls`), exactly as the stream translator does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from extproc.errors import BackendError, error_body
from extproc.mappings import error_type_for_status, stop_reason_for
from extproc.translators.common import (
    THINKING_SIGNATURE,
    AnthropicUsage,
    anthropic_usage,
    message_id,
    rescued_tool_id,
    tool_use_id,
)
from extproc.translators.context import ResponseContext
from extproc.translators.think_tags import split_think_tags
from extproc.translators.tool_args import ToolArgumentsError, parse_tool_arguments
from extproc.translators.tool_rescue import rescue_text


@dataclass(frozen=True, slots=True)
class HeldToolCall:
    """A backend tool call for a tool the client never declared (not sent to the client)."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)  # per request: not frozen (see processors/base.py Continue)
class TranslatedResponse:
    body: bytes  # the Anthropic message JSON
    stop_reason: str
    unknown_tool_calls: tuple[HeldToolCall, ...] = ()
    # Tool calls cut off by max_tokens whose arguments were incomplete (left out).
    truncated_tool_calls: tuple[str, ...] = ()
    usage: AnthropicUsage | None = None  # as written in `body`


def translate_response(body: bytes, context: ResponseContext) -> bytes:
    """The Anthropic message for a backend chat.completion body; BackendError (502) if broken."""
    return convert_response(body, context).body


def convert_response(body: bytes, context: ResponseContext) -> TranslatedResponse:
    completion = _parse_completion(body)
    choice = completion["choices"][0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise BackendError.from_status(502, "backend response has no choices[0].message")
    finish_reason = choice.get("finish_reason")
    cut_off = finish_reason == "length"

    content: list[dict[str, Any]] = [dict(block) for block in context.leading_blocks]
    reasoning = _text(message.get("reasoning")) or _text(message.get("reasoning_content"))
    text = _text(message.get("content"))
    if context.think_tags and text:
        tagged, text = split_think_tags(text)
        reasoning += tagged  # as the stream translator writes both into one thinking block
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": THINKING_SIGNATURE})
    tool_calls = message.get("tool_calls")
    tool_calls = list(tool_calls) if isinstance(tool_calls, list) else []
    anthropic_id = message_id(completion.get("id"))
    if context.tool_call_rescue and text:
        text, rescued = rescue_text(text, context.tool_parameter_types)
        tool_calls += [
            {
                "id": call.id or rescued_tool_id(anthropic_id, number),
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for number, call in enumerate(rescued)
        ]
    if text.strip():
        content.append({"type": "text", "text": text})

    held: list[HeldToolCall] = []
    truncated: list[str] = []
    for call in tool_calls:
        block = _tool_use(call, context, cut_off, held, truncated)
        if block is not None:
            content.append(block)

    has_tool_use = any(block["type"] == "tool_use" for block in content)
    stop_reason, stop_sequence = stop_reason_for(
        finish_reason if isinstance(finish_reason, str) else None,
        choice.get("stop_reason"),
        list(context.stop_sequences),
    )
    if has_tool_use and stop_reason in ("end_turn", "stop_sequence"):
        stop_reason, stop_sequence = "tool_use", None
    elif stop_reason == "tool_use" and not has_tool_use:
        stop_reason = "end_turn"  # every call was held back

    raw_usage = completion.get("usage")
    usage = anthropic_usage(raw_usage if isinstance(raw_usage, dict) else None)
    if context.server_tool_usage:
        usage["server_tool_use"] = dict(context.server_tool_usage)
    anthropic = {
        "id": anthropic_id,
        "type": "message",
        "role": "assistant",
        "model": context.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }
    return TranslatedResponse(
        body=_encode(anthropic),
        stop_reason=stop_reason,
        unknown_tool_calls=tuple(held),
        truncated_tool_calls=tuple(truncated),
        usage=usage,
    )


def _encode(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested past the 254 levels orjson writes
        raise BackendError.from_status(502, "backend response nests too deeply to translate") from None


def _parse_completion(body: bytes) -> dict[str, Any]:
    try:
        completion = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BackendError.from_status(
            502, f"backend returned a body that is not JSON ({len(body)} bytes)"
        ) from None
    if not isinstance(completion, dict):
        raise BackendError.from_status(502, "backend returned JSON that is not an object")
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if "error" in completion or completion.get("object") == "error":
            message = _backend_message(completion, 502)
            raise BackendError.from_status(502, f"backend returned an error: {message}")
        raise BackendError.from_status(502, "backend response has no choices")
    return completion


def _tool_use(
    call: object,
    context: ResponseContext,
    cut_off: bool,
    held: list[HeldToolCall],
    truncated: list[str],
) -> dict[str, Any] | None:
    if not isinstance(call, dict):
        raise BackendError.from_status(502, "backend returned a tool call that is not an object")
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise BackendError.from_status(502, "backend returned a tool call without a name")
    arguments = function.get("arguments")
    if isinstance(arguments, dict):  # a few servers send the object itself
        arguments_text = _encode(arguments).decode()
    else:
        arguments_text = arguments if isinstance(arguments, str) else ""
    call_id = tool_use_id(call.get("id"))
    if context.client_tools is not None and name not in context.client_tools:
        held.append(HeldToolCall(id=call_id, name=name, arguments=arguments_text))
        return None
    try:
        tool_input = parse_tool_arguments(arguments_text, repair=not cut_off)
    except ToolArgumentsError as exc:
        if cut_off:  # max_tokens cut the call short; stop_reason tells the client
            truncated.append(name)
            return None
        raise BackendError.from_status(
            502, f"backend returned invalid arguments for tool {name!r} (call {call_id}): {exc}"
        ) from None
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content given as parts by some servers
        return "".join(
            part["text"]
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


# ---- errors ------------------------------------------------------------------------------

_CONTEXT_LIMIT = re.compile(r"maximum context length is (\d+) tokens")
_REQUESTED = re.compile(r"(?:you requested|request has) (\d+) (?:input )?tokens")
_MAX_MESSAGE_CHARS = 2000


def translate_error(status: int, body: bytes) -> tuple[int, bytes]:
    """A backend error response -> (status for the client, Anthropic error JSON).

    The backend's own message is kept; its payload shape is not. Non-JSON bodies (an HTML
    error page, a proxy's text) become a message naming the status. A status below 400 (a
    redirect, or a success carrying a broken answer) is a bad gateway for the client; the
    message names the status the backend sent.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        message = _text_message(body, status)
    else:
        message = _backend_message(payload, status)
    client_status = status if status >= 400 else 502
    return client_status, error_body(error_type_for_status(client_status), message)


def _backend_message(payload: object, status: int) -> str:
    found: object = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            found = error.get("message")
        elif isinstance(error, str):
            found = error
        else:
            found = payload.get("message")
        if found is None and "detail" in payload:  # FastAPI
            found = _fastapi_detail(payload["detail"])
    if not isinstance(found, str) or not found.strip():
        return f"backend returned HTTP {status} ({_reason(status)})"
    return _prompt_too_long(found.strip()[:_MAX_MESSAGE_CHARS])


def _fastapi_detail(detail: object) -> str | None:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                loc = item.get("loc")
                parts_of_loc = loc if isinstance(loc, list) else ()
                # Scalars only: str() of a deeply nested list would overflow the stack.
                where = ".".join(str(p) for p in parts_of_loc if isinstance(p, str | int))
                parts.append(f"{where}: {item['msg']}" if where else item["msg"])
        return "; ".join(parts) or None
    return None


def _prompt_too_long(message: str) -> str:
    """vLLM's context-overflow message in Anthropic's wording, which Claude Code acts on
    (it compacts the conversation when it reads "prompt is too long")."""
    limit = _CONTEXT_LIMIT.search(message)
    requested = _REQUESTED.search(message)
    if limit is None or requested is None:
        return message
    return f"prompt is too long: {requested[1]} tokens > {limit[1]} maximum ({message})"


def _text_message(body: bytes, status: int) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    if not text or text.startswith("<") or "<html" in text[:512].lower():
        return f"backend returned HTTP {status} ({_reason(status)})"
    return f"backend returned HTTP {status}: {text[:500]}"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
