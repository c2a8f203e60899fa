"""The mock tokenizer: deterministic, documented, and the same for prompts, usage and `/tokenize`.

A *token* is one match of `TOKEN_RE` scanned left to right over the text:

- optional leading whitespace plus a run of 1-8 word characters (`\\w`), so `" world"` is one
  token and a long identifier is cut every 8 characters;
- optional leading whitespace plus one other non-space character (punctuation, symbols);
- a run of whitespace that is not followed by anything above (trailing spaces, blank lines).

Every character belongs to exactly one token, so joining the tokens gives the text back; the
streaming renderer relies on that to cut text into deltas. A token's id is a stable hash of its
UTF-8 bytes (CRC-32 modulo a vocabulary size): equal text gives equal ids on every run and host.

Prompts are rendered with a ChatML-like template before counting (`render_openai_prompt`,
`render_anthropic_prompt`), so the count grows with roles, tool definitions and tool calls the
way a real chat template's does; it is not any real model's count.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

TOKEN_RE = re.compile(r"\s*\w{1,8}|\s*[^\w\s]|\s+")
VOCAB_SIZE = 151_000


def tokenize(text: str) -> list[str]:
    """The text cut into tokens; `"".join(tokenize(t)) == t` always holds."""
    return TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return sum(1 for _ in TOKEN_RE.finditer(text))


def token_id(token: str) -> int:
    return zlib.crc32(token.encode("utf-8")) % VOCAB_SIZE


def token_ids(text: str) -> list[int]:
    return [token_id(tok) for tok in tokenize(text)]


def first_tokens(text: str, limit: int) -> str:
    """The prefix of `text` made of its first `limit` tokens."""
    if limit <= 0:
        return ""
    end = 0
    for i, match in enumerate(TOKEN_RE.finditer(text)):
        if i == limit:
            break
        end = match.end()
    return text[:end]


# --- prompt rendering (only for counting; never sent anywhere) --------------------------------


def _text_of(content: Any) -> str:
    """Text of an OpenAI/Anthropic content value: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            parts.append(str(part.get("text", "")))
        elif kind in ("image", "image_url"):
            parts.append("<|image|>")
        elif kind == "tool_result":
            parts.append(_text_of(part.get("content")))
        elif kind == "tool_use":
            parts.append(_json(part.get("input", {})))
        elif kind == "thinking":
            parts.append(str(part.get("thinking", "")))
    return "".join(parts)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _tool_block(tools: Iterable[Any]) -> str:
    lines = [_json(tool) for tool in tools]
    return "# Tools\n<tools>\n" + "\n".join(lines) + "\n</tools>" if lines else ""


def render_openai_prompt(
    messages: Sequence[Any], tools: Sequence[Any] | None = None, add_generation_prompt: bool = True
) -> str:
    """OpenAI chat messages (+ tools) in a ChatML-like template."""
    out: list[str] = []
    tool_text = _tool_block(tools or ())
    if tool_text:
        out.append(f"<|im_start|>system\n{tool_text}<|im_end|>\n")
    for msg in messages:
        if not isinstance(msg, Mapping):
            continue
        body = _text_of(msg.get("content"))
        for key in ("reasoning", "reasoning_content"):
            if isinstance(msg.get(key), str):
                body = f"<think>\n{msg[key]}\n</think>\n{body}"
        for call in msg.get("tool_calls") or ():
            if isinstance(call, Mapping):
                body += "\n<tool_call>\n" + _json(call.get("function", {})) + "\n</tool_call>"
        out.append(f"<|im_start|>{msg.get('role', 'user')}\n{body}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def render_anthropic_prompt(body: Mapping[str, Any]) -> str:
    """An Anthropic Messages request rendered the same way (system first, then turns)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text_of(system)})
    for msg in body.get("messages") or ():
        if isinstance(msg, Mapping):
            messages.append({"role": msg.get("role", "user"), "content": msg.get("content")})
    return render_openai_prompt(messages, body.get("tools"))
