"""What the mock answers: scripted responses (the control API) or the rule-based default.

Default rules, checked in order (good enough to drive Claude Code through a tool round trip):

1. Tool results after the last assistant turn (OpenAI `role: "tool"` messages, Anthropic
   `tool_result` blocks) -> a final text answer quoting them: `The command printed: <output>`
   (unless user text after them asks for new commands: then rule 2).
2. The last user text asks `Run these shell commands: a ; b` -> parallel tool calls, one per
   `;`-separated command; `Run the shell command: <cmd>` or `run: <cmd>` -> one call. The call
   goes to the request's tool named `bash` (any case) with `{"command": ..., "description": ...}`;
   without such a tool the answer says so in text.
3. The text contains `long answer` (or `long story`) -> a long deterministic answer (about 400
   tokens), to exercise `max_tokens` and `finish_reason: "length"`.
4. Otherwise a short echo: `Hello! You said: <text>` (first 200 characters of the last text part).

Reasoning comes first when `chat_template_kwargs.enable_thinking` (or `thinking`) is true or the
user text contains the word "think". Kimi-family answers put a short sentence in content before
their tool calls, as Kimi-K2 does.

Scripted items (POST /__mock/script, a JSON list queued FIFO, each used by one request to
`/v1/chat/completions` or `/v1/messages`) take these keys, all optional:
`text`, `reasoning`, `tool_calls: [{name, arguments (JSON string or object), id?}]`,
`finish_reason`, `stop_reason`, `usage` (keys override the computed usage), `cached_tokens`,
`family`, `dialect`, `text_tool_calls` (render calls as text, as with no tool parser),
`reasoning_in_content` (`<think>` in content), `interleave_tool_calls`,
`error: {status, message, type?, param?}` (an HTTP error in the dialect's shape),
`stream_error: {after_chunks, message, type?, code?}` (in-stream error event, then [DONE]),
`disconnect_after_chunks`, `truncate` (end mid-event, no [DONE]), `delay_s`, `chunk_delay_s`,
`content_type`, `raw_body` (string sent as is) with `status` (default 200), and `default: true`
(answer with the default rules, still applying the faults above).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from extproc.mock_backend.dialects import get_dialect
from extproc.mock_backend.families import get_family
from extproc.mock_backend.plan import Faults, HttpError, StreamError, ToolCallPlan, Turn

_COMMANDS_RE = re.compile(r"run these shell commands:\s*(.+)", re.IGNORECASE)
_COMMAND_RE = re.compile(r"(?:run the shell command|\brun):\s*(.+)", re.IGNORECASE)
_THINK_RE = re.compile(r"\bthink\b", re.IGNORECASE)
_LONG_RE = re.compile(r"\blong (?:answer|story)\b", re.IGNORECASE)

LONG_ANSWER = " ".join(
    f"Paragraph {n}: the mock backend keeps talking so that limits can be tested, and every "
    "sentence here is the same on each run."
    for n in range(1, 17)
)


@dataclass
class Conversation:
    """The few facts of a request the rules and limits need, from either API."""

    model: str | None = None
    user_texts: list[str] = field(default_factory=list)  # text parts of the current user turn
    tool_outputs: list[str] = field(default_factory=list)
    tool_names: list[str] = field(default_factory=list)
    thinking: bool = False
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    named_tool_choice: bool = False
    prior_tool_calls: int = 0
    stream: bool = False

    @property
    def last_user_text(self) -> str:
        """The instruction: the last text part asking for a command, else the last text part."""
        for text in reversed(self.user_texts):
            if _commands(text):
                return text
        return self.user_texts[-1] if self.user_texts else ""


def _text_parts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [
        str(p.get("text", ""))
        for p in content
        if isinstance(p, Mapping) and p.get("type") == "text"
    ]


def _flag(kwargs: Any) -> bool:
    return isinstance(kwargs, Mapping) and (
        kwargs.get("enable_thinking") is True or kwargs.get("thinking") is True
    )


def _stops(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [s for s in value if isinstance(s, str) and s] if isinstance(value, list) else []


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _current_user_texts(user_parts: list[tuple[int, list[str]]], last_assistant: int) -> list[str]:
    """User text parts after the last assistant turn, else those of the latest user message."""
    current = [p for i, parts in user_parts if i > last_assistant for p in parts if p.strip()]
    if current:
        return current
    earlier = [[p for p in parts if p.strip()] for _, parts in user_parts]
    return next((parts for parts in reversed(earlier) if parts), [])


def _new_instruction_wins(conv: Conversation, parts: list[str], current_turn: bool) -> None:
    """A command asked for after tool results is a new instruction, not a follow-up."""
    if current_turn and conv.tool_outputs and any(_commands(p) for p in parts):
        conv.tool_outputs = []


def conversation_from_openai(body: Mapping[str, Any]) -> Conversation:
    messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
    conv = Conversation(
        model=body.get("model") if isinstance(body.get("model"), str) else None,
        max_tokens=_int_or_none(body.get("max_completion_tokens"))
        or _int_or_none(body.get("max_tokens")),
        stop=_stops(body.get("stop")),
        named_tool_choice=isinstance(body.get("tool_choice"), Mapping),
        stream=body.get("stream") is True,
    )
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            conv.tool_names.append(function["name"])
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
    )
    user_parts: list[tuple[int, list[str]]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role == "assistant":
            conv.prior_tool_calls += len(msg.get("tool_calls") or ())
        elif role == "tool" and i > last_assistant:
            conv.tool_outputs.append("".join(_text_parts(msg.get("content"))))
        elif role == "user":
            user_parts.append((i, _text_parts(msg.get("content"))))
            _new_instruction_wins(conv, user_parts[-1][1], i > last_assistant)
    conv.user_texts = _current_user_texts(user_parts, last_assistant)
    conv.thinking = _flag(body.get("chat_template_kwargs")) or bool(
        _THINK_RE.search(conv.last_user_text)
    )
    return conv


def conversation_from_anthropic(body: Mapping[str, Any]) -> Conversation:
    messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
    choice = body.get("tool_choice")
    conv = Conversation(
        model=body.get("model") if isinstance(body.get("model"), str) else None,
        max_tokens=_int_or_none(body.get("max_tokens")),
        stop=_stops(body.get("stop_sequences")),
        named_tool_choice=isinstance(choice, Mapping) and choice.get("type") == "tool",
        stream=body.get("stream") is True,
        tool_names=[
            t["name"] for t in body.get("tools") or () if isinstance(t, Mapping) and "name" in t
        ],
    )
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
    )
    user_parts: list[tuple[int, list[str]]] = []
    for i, msg in enumerate(messages):
        content = msg.get("content")
        blocks = [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []
        if msg.get("role") == "assistant":
            conv.prior_tool_calls += sum(1 for b in blocks if b.get("type") == "tool_use")
        elif msg.get("role") == "user":
            if i > last_assistant:
                for block in blocks:
                    if block.get("type") == "tool_result":
                        conv.tool_outputs.append("".join(_text_parts(block.get("content"))))
            user_parts.append((i, _text_parts(content)))
            _new_instruction_wins(conv, user_parts[-1][1], i > last_assistant)
    conv.user_texts = _current_user_texts(user_parts, last_assistant)
    conv.thinking = _flag(body.get("chat_template_kwargs")) or bool(
        _THINK_RE.search(conv.last_user_text)
    )
    return conv


# --- the default rules -------------------------------------------------------------------------


def _commands(text: str) -> list[str]:
    if match := _COMMANDS_RE.search(text):
        line = match.group(1).splitlines()[0]
        return [c.strip().strip("`") for c in line.split(";") if c.strip().strip("`")]
    if match := _COMMAND_RE.search(text):
        command = match.group(1).splitlines()[0].strip().strip("`")
        return [command] if command else []
    return []


def default_turn(conv: Conversation, content_before_tool_calls: str = "") -> Turn:
    reasoning = ""
    if conv.thinking:
        topic = conv.last_user_text.strip()[:80] or "the tool output"
        reasoning = f"The user wrote: {topic}. I will answer briefly and precisely."
    if conv.tool_outputs:
        output = "\n".join(conv.tool_outputs).strip()
        return Turn(reasoning=reasoning, text=f"The command printed: {output}")
    commands = _commands(conv.last_user_text)
    if commands:
        bash = next((n for n in conv.tool_names if n.lower() == "bash"), None)
        if bash is None:
            return Turn(reasoning=reasoning, text=f"I cannot run `{commands[0]}`: no Bash tool.")
        calls = tuple(
            ToolCallPlan(
                bash,
                json.dumps({"command": c, "description": f"Run {c}"[:80]}, ensure_ascii=False),
            )
            for c in commands
        )
        return Turn(reasoning=reasoning, text=content_before_tool_calls, tool_calls=calls)
    if _LONG_RE.search(conv.last_user_text):
        return Turn(reasoning=reasoning, text=LONG_ANSWER)
    said = conv.last_user_text.strip()[:200]
    return Turn(reasoning=reasoning, text=f"Hello! You said: {said}" if said else "Hello!")


# --- scripted items (pydantic at the edge of the control API) --------------------------------


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScriptToolCall(_Item):
    name: str
    arguments: str | dict[str, Any] = "{}"
    id: str | None = None


class ScriptHttpError(_Item):
    status: int = Field(ge=400, le=599)
    message: str
    type: str | None = None
    param: str | None = None


class ScriptStreamError(_Item):
    after_chunks: int = Field(default=1, ge=0)
    message: str
    type: str = "InternalServerError"
    code: int = 500


class ScriptItem(_Item):
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ScriptToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    usage: dict[str, Any] | None = None
    cached_tokens: int | None = Field(default=None, ge=0)
    family: str | None = None
    dialect: str | None = None
    text_tool_calls: bool | None = None
    reasoning_in_content: bool | None = None
    interleave_tool_calls: bool = False
    error: ScriptHttpError | None = None
    stream_error: ScriptStreamError | None = None
    disconnect_after_chunks: int | None = Field(default=None, ge=0)
    truncate: bool = False
    delay_s: float = Field(default=0.0, ge=0)
    chunk_delay_s: float | None = Field(default=None, ge=0)
    content_type: str | None = None
    raw_body: str | None = None
    status: int = Field(default=200, ge=100, le=599)
    default: bool = False

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        return get_family(value).name if value is not None else None

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str | None) -> str | None:
        return get_dialect(value).name if value is not None else None


def faults_of(item: ScriptItem) -> Faults:
    return Faults(
        http_error=HttpError(**item.error.model_dump()) if item.error else None,
        stream_error=StreamError(**item.stream_error.model_dump()) if item.stream_error else None,
        disconnect_after_chunks=item.disconnect_after_chunks,
        truncate=item.truncate,
        delay_s=item.delay_s,
        chunk_delay_s=item.chunk_delay_s,
        content_type=item.content_type,
        raw_body=item.raw_body.encode() if item.raw_body is not None else None,
        raw_status=item.status,
    )


def turn_from_script(item: ScriptItem) -> Turn:
    calls = tuple(
        ToolCallPlan(
            name=c.name,
            arguments=c.arguments
            if isinstance(c.arguments, str)
            else json.dumps(c.arguments, ensure_ascii=False),
            id=c.id,
        )
        for c in item.tool_calls
    )
    return Turn(
        text=item.text,
        reasoning=item.reasoning,
        tool_calls=calls,
        finish_reason=item.finish_reason,
        stop_reason=item.stop_reason,
        usage=item.usage,
        cached_tokens=item.cached_tokens,
        family=item.family,
        dialect=item.dialect,
        text_tool_calls=item.text_tool_calls,
        reasoning_in_content=item.reasoning_in_content,
        interleave_tool_calls=item.interleave_tool_calls,
        faults=faults_of(item),
    )
