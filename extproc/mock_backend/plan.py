"""Plain data the mock passes between its parts: what to answer (`Turn`) and how to misbehave."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCallPlan:
    """A tool call the model "decides" to make; `arguments` is the JSON text exactly as sent."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True)
class HttpError:
    status: int
    message: str
    type: str | None = None  # None: vLLM's type for the status
    param: str | None = None


@dataclass(frozen=True)
class StreamError:
    after_chunks: int  # `data:` events written before the error event (the role chunk counts)
    message: str
    type: str = "InternalServerError"
    code: int = 500


@dataclass(frozen=True)
class Faults:
    http_error: HttpError | None = None
    stream_error: StreamError | None = None
    disconnect_after_chunks: int | None = None  # close the connection after N events
    truncate: bool = False  # end the body cleanly but in the middle of the last event, no [DONE]
    delay_s: float = 0.0  # before the response headers
    chunk_delay_s: float | None = None  # between events; None: the app's pacing
    content_type: str | None = None
    raw_body: bytes | None = None  # sent as is instead of any rendering
    raw_status: int = 200


@dataclass(frozen=True)
class Turn:
    """One assistant response before limits (max_tokens, stop) and family rendering apply."""

    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallPlan, ...] = ()
    finish_reason: str | None = None  # None: derived (stop / length / tool_calls)
    stop_reason: str | int | None = None
    usage: dict[str, Any] | None = None  # overrides: prompt_tokens, completion_tokens, ...
    cached_tokens: int | None = None
    family: str | None = None
    dialect: str | None = None
    text_tool_calls: bool | None = None  # None: the app's tool_parser setting decides
    reasoning_in_content: bool | None = None  # None: family and reasoning_parser decide
    interleave_tool_calls: bool = False
    faults: Faults = field(default_factory=Faults)


@dataclass(frozen=True)
class ResolvedCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Output:
    """What the response says after limits: the renderers only format this."""

    reasoning: str
    content: str
    tool_calls: tuple[ResolvedCall, ...]
    finish_reason: str
    stop_reason: str | int | None
    completion_tokens: int
    interleave_tool_calls: bool = False
