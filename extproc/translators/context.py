"""What the response side needs to know about the request it answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResponseContext:
    model: str  # model name reported to the client (the one it asked for)
    stop_sequences: tuple[str, ...] = ()
    # Names of the tools the client declared as client tools; a backend tool call for any
    # other name must never reach the client as `tool_use`.
    client_tools: frozenset[str] = frozenset()
    # Backend wrote tool calls as text (no tool-call parser): recognise them.
    tool_call_rescue: bool = False
