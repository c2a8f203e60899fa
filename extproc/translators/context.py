"""What the response side needs to know about the request it answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)  # per request: not frozen (see processors/base.py Continue)
class ResponseContext:
    model: str  # model name reported to the client (the one it asked for)
    stop_sequences: tuple[str, ...] = ()
    # Names of the tools the client declared as client tools; a backend tool call for any
    # other name must never reach the client as `tool_use`. None: not known (no guard);
    # the request translator always sets it, an empty set holding back every call.
    client_tools: frozenset[str] | None = None
    # Backend wrote tool calls as text (no tool-call parser): recognise them.
    tool_call_rescue: bool = False
    # Backend writes its reasoning into content as a leading <think>...</think>: split it off.
    think_tags: bool = False
    # For rescued XML-style calls (GLM, Qwen3-Coder, MiniMax) whose values are bare text:
    # tool name -> parameter name -> JSON schema type, so "5" becomes 5 only where a
    # number is declared. Filled only when tool_call_rescue is on.
    tool_parameter_types: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Blocks the gateway produced before the backend answered (a server tool it ran, e.g.
    # `server_tool_use` + `web_search_tool_result`): they open the answer's content.
    leading_blocks: tuple[Mapping[str, Any], ...] = ()
    # Anthropic usage.server_tool_use counts for those blocks, e.g. {"web_search_requests": 1}.
    server_tool_usage: Mapping[str, int] | None = None
