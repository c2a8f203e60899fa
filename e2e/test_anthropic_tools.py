"""Anthropic-defined client tools (`bash_20250124`, `text_editor_20250728`, ...) through real
Envoy: the backend gets them as function tools with their input schema written out, and the
model's calls reach the client as `tool_use`, streamed or not."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from e2e.harness import MockBackend

MODEL = "claude-sonnet-4-6"
TOOLS: list[Any] = [
    {"type": "bash_20250124", "name": "bash"},
    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
    {"type": "web_search_20250305", "name": "web_search"},
]


@pytest.mark.parametrize("stream", [False, True])
def test_bash_tool_call_comes_back(
    anthropic_client: anthropic.Anthropic, backend: MockBackend, stream: bool
) -> None:
    backend.script({"default": True})  # the mock calls the request's `bash` tool
    params: dict[str, Any] = {
        "model": MODEL, "max_tokens": 256, "tools": TOOLS,
        "messages": [{"role": "user", "content": "Run the shell command: ls -la"}],
    }
    if stream:
        with anthropic_client.messages.stream(**params) as events:
            message = events.get_final_message()
    else:
        message = anthropic_client.messages.create(**params)
    assert message.stop_reason == "tool_use"
    [tool_use] = [block for block in message.content if block.type == "tool_use"]
    assert tool_use.name == "bash"
    assert isinstance(tool_use.input, dict) and tool_use.input["command"] == "ls -la"

    [seen] = backend.requests()
    functions = {t["function"]["name"]: t["function"] for t in seen["body"]["tools"]}
    assert set(functions) == {"bash", "str_replace_based_edit_tool"}  # no server tool
    assert set(functions["bash"]["parameters"]["properties"]) == {"command", "restart"}
    editor = functions["str_replace_based_edit_tool"]["parameters"]
    assert editor["properties"]["command"]["enum"] == ["view", "create", "str_replace", "insert"]
