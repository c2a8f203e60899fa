"""Token estimates from bytes, for when no tokenizer is at hand.

One rule, documented for users: the prompt is the translated OpenAI `messages` and `tools`
as compact JSON, and a token is taken as 4 UTF-8 bytes of it, rounded up. JSON quoting and
keys stand in for the chat template's own tokens. It is an estimate: real tokenizers give
roughly 3-5 bytes per token on English and code, fewer on CJK text.

Fitting `max_tokens` into a context window uses 3 bytes per token instead: overestimating
the prompt costs a little output budget, underestimating it costs a rejected request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

BYTES_PER_TOKEN: Final = 4
PESSIMISTIC_BYTES_PER_TOKEN: Final = 3
# Never squeeze the answer below this (or below what was asked, if less): a prompt that
# truly fills the window is better refused by the backend ("prompt is too long", which
# Claude Code answers by compacting) than answered with a few tokens.
MIN_OUTPUT_TOKENS: Final = 1024


def prompt_bytes(body: Mapping[str, Any]) -> int:
    """Size of what the chat template renders: the request's messages and tools."""
    prompt: dict[str, Any] = {"messages": body.get("messages") or []}
    if body.get("tools"):
        prompt["tools"] = body["tools"]
    return len(orjson.dumps(prompt))


def estimate_tokens(size: int, bytes_per_token: int = BYTES_PER_TOKEN) -> int:
    return -(-size // bytes_per_token)


def fit_output(requested: int, body: Mapping[str, Any], context_window: int) -> int:
    """`requested` max_tokens, lowered so a pessimistic prompt estimate plus it fits."""
    prompt = estimate_tokens(prompt_bytes(body), PESSIMISTIC_BYTES_PER_TOKEN)
    room = max(context_window - prompt, min(requested, MIN_OUTPUT_TOKENS))
    return min(requested, room)
