"""Small conversions shared by the non-streaming and the streaming response translators."""

from __future__ import annotations

import secrets
from typing import Any, NotRequired, TypedDict

# Anthropic requires a non-empty signature on thinking blocks. Backends have none; this marks
# thinking that came from an OpenAI-compatible backend (and is ignored when it comes back).
THINKING_SIGNATURE = "extproc-openai-reasoning"


class AnthropicUsage(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    # Server tools the gateway ran for this answer, e.g. {"web_search_requests": 1}.
    server_tool_use: NotRequired[dict[str, int]]


def anthropic_usage(usage: dict[str, Any] | None) -> AnthropicUsage:
    """OpenAI usage -> Anthropic usage; cached prompt tokens are reported apart, as Anthropic does."""
    usage = usage or {}
    prompt = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    cached = min(cached, prompt)
    return {
        "input_tokens": prompt - cached,
        "output_tokens": _int(usage.get("completion_tokens")),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def message_id(openai_id: object) -> str:
    """Anthropic-style message id, keeping the backend's id visible for correlation."""
    if isinstance(openai_id, str) and openai_id:
        return "msg_" + openai_id.removeprefix("chatcmpl-")
    return "msg_" + secrets.token_hex(12)


def tool_use_id(openai_id: object) -> str:
    """Backend tool-call ids go back exactly as sent (Kimi-K2's `functions.bash:0` included)."""
    if isinstance(openai_id, str) and openai_id:
        return openai_id
    return "toolu_" + secrets.token_hex(12)


def rescued_tool_id(anthropic_message_id: str, number: int) -> str:
    """Id for the `number`th tool call recovered from a message's text: unique per message
    (the backend's id is in it), and the same on every run of the same backend answer."""
    return f"toolu_{anthropic_message_id.removeprefix('msg_')}_{number}"
