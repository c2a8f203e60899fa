"""Anthropic-defined client tools (bash, text editor, memory, computer): function tools with
their input schemas written out, and their calls reaching the client as `tool_use`."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.errors import InvalidRequest
from extproc.translators.client_tools import client_tool_function, is_client_tool_type
from extproc.translators.request import RequestOptions, translate_request
from extproc.translators.response import convert_response
from extproc.translators.server_tools import plan_server_tool
from extproc.translators.stream import StreamTranslator

OPTIONS = RequestOptions(model="backend-model")
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}


def request(*tools: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "tools": list(tools),
            "messages": [{"role": "user", "content": "run ls"}], **fields}


def function(tool: dict[str, Any]) -> dict[str, Any]:
    result = client_tool_function(tool)
    assert result is not None
    return result


@pytest.mark.parametrize(("tool_type", "client"), [
    ("bash_20241022", True), ("bash_20250124", True), ("text_editor_20241022", True),
    ("text_editor_20250124", True), ("text_editor_20250429", True),
    ("text_editor_20250728", True), ("memory_20250818", True), ("computer_20241022", True),
    ("computer_20250124", True), ("computer_20251124", True),
    ("web_search_20250305", False), ("web_fetch_20250910", False),
    ("code_execution_20250825", False), ("tool_search_tool_regex_20251119", False),
    ("bash", False), ("custom", False),
])
def test_which_types_are_client_tools(tool_type: str, client: bool) -> None:
    assert is_client_tool_type(tool_type) is client
    assert (client_tool_function({"type": tool_type, "name": "x"}) is not None) is client


def test_bash_takes_a_command_or_a_restart() -> None:
    bash = function({"type": "bash_20250124", "name": "bash"})
    assert bash["name"] == "bash"
    assert bash["parameters"]["properties"].keys() == {"command", "restart"}
    assert bash["parameters"]["properties"]["restart"]["type"] == "boolean"


@pytest.mark.parametrize(("tool_type", "undo"), [
    ("text_editor_20241022", True), ("text_editor_20250124", True),
    ("text_editor_20250429", False), ("text_editor_20250728", False),
])
def test_text_editor_commands_by_version(tool_type: str, undo: bool) -> None:
    editor = function({"type": tool_type, "name": "str_replace_based_edit_tool"})
    schema = editor["parameters"]
    assert schema["required"] == ["command", "path"]
    assert set(schema["properties"]) == {"command", "path", "file_text", "old_str", "new_str",
                                         "insert_line", "view_range"}
    commands = schema["properties"]["command"]["enum"]
    assert commands[:4] == ["view", "create", "str_replace", "insert"]
    assert ("undo_edit" in commands) is undo


def test_memory_commands() -> None:
    memory = function({"type": "memory_20250818", "name": "memory"})
    properties = memory["parameters"]["properties"]
    assert properties["command"]["enum"] == ["view", "create", "str_replace", "insert",
                                             "delete", "rename"]
    assert {"insert_text", "old_path", "new_path"} <= properties.keys()


def test_computer_actions_by_version_and_screen_in_the_description() -> None:
    old = function({"type": "computer_20241022", "name": "computer"})
    assert "scroll" not in old["parameters"]["properties"]["action"]["enum"]
    assert "scroll_direction" not in old["parameters"]["properties"]
    new = function({"type": "computer_20250124", "name": "computer",
                    "display_width_px": 1280, "display_height_px": 800})
    actions = new["parameters"]["properties"]["action"]["enum"]
    assert {"scroll", "triple_click", "hold_key", "wait"} <= set(actions)
    assert "zoom" not in actions
    assert "1280x800 pixels" in new["description"]
    zoom = function({"type": "computer_20251124", "name": "computer", "enable_zoom": True})
    assert "zoom" in zoom["parameters"]["properties"]["action"]["enum"]
    assert zoom["parameters"]["properties"]["region"]["minItems"] == 4


def test_a_missing_name_gets_the_tools_usual_one() -> None:
    assert function({"type": "text_editor_20250728"})["name"] == "str_replace_based_edit_tool"


def test_names_must_stay_unique_across_kinds() -> None:
    custom = {"name": "bash", "input_schema": {"type": "object"}}
    with pytest.raises(InvalidRequest, match="used twice"):
        translate_request(request(custom, {"type": "bash_20250124", "name": "bash"}), OPTIONS)


def test_tool_choice_may_name_a_client_tool_with_a_type() -> None:
    translated = translate_request(
        request({"type": "bash_20250124", "name": "bash"},
                tool_choice={"type": "tool", "name": "bash"}),
        OPTIONS,
    )
    body = orjson.loads(translated.body)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "bash"}}
    assert "tool_choice" not in translated.dropped


def test_with_server_tools_too_the_backend_answers_and_may_call_them() -> None:
    anthropic = request(WEB_SEARCH, {"type": "bash_20250124", "name": "bash"})
    translated = translate_request(anthropic, OPTIONS)
    assert translated.server_tools == ("web_search_20250305",)
    assert translated.context.client_tools == frozenset({"bash"})
    assert plan_server_tool(anthropic, translated.context.client_tools) is None


def completion_calling_bash() -> bytes:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
    })


def test_a_call_comes_back_as_tool_use() -> None:
    context = translate_request(request({"type": "bash_20250124", "name": "bash"}), OPTIONS).context
    message = orjson.loads(convert_response(completion_calling_bash(), context).body)
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "bash", "input": {"command": "ls"}}
    ]


def test_a_streamed_call_comes_back_as_tool_use() -> None:
    context = translate_request(
        request({"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}),
        OPTIONS,
    ).context
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "str_replace_based_edit_tool",
                         "arguments": '{"command": "view", "path": "/tmp"}'}}
    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    body = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks)
    translator = StreamTranslator(context)
    out = translator.feed(body + b"data: [DONE]\n\n")
    assert translator.stop_reason == "tool_use"
    assert translator.unknown_tool_calls == []
    assert b'"name":"str_replace_based_edit_tool"' in out
