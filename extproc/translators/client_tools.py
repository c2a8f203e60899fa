"""Anthropic-defined client tools (bash, text editor, memory, computer use) as function tools.

These tools carry a `type` (`bash_20250124`, `text_editor_20250728`, `memory_20250818`,
`computer_20250124`, ...) and no `input_schema`: Anthropic's models know their input by
heart. They are still tools the *client* runs (Claude answers with `tool_use`, the client
sends back `tool_result`), so on an OpenAI backend they become ordinary function tools with
the input schema written out here, and the tool guard treats them like any client tool.

Server tools (web search, web fetch, code execution) are a different thing: see
server_tools.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

_CLIENT_TOOL_TYPE: Final = re.compile(r"^(bash|text_editor|memory|computer)_(\d{8})$")
# Tool definition fields consumed here (the rest of a definition is reported as not carried).
CONSUMED_FIELDS: Final = frozenset(
    {"type", "name", "display_width_px", "display_height_px", "display_number", "enable_zoom",
     "max_characters"}  # max_characters: the client truncates `view` output, not the model
)
_DEFAULT_NAMES: Final = {
    "bash": "bash",
    "text_editor": "str_replace_based_edit_tool",
    "memory": "memory",
    "computer": "computer",
}

_STRING: Final = {"type": "string"}
_POINT: Final = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}

_COMPUTER_ACTIONS_2024: Final = (
    "key", "type", "mouse_move", "left_click", "left_click_drag", "right_click",
    "middle_click", "double_click", "screenshot", "cursor_position",
)
_COMPUTER_ACTIONS_2025: Final = (
    *_COMPUTER_ACTIONS_2024,
    "left_mouse_down", "left_mouse_up", "scroll", "hold_key", "wait", "triple_click",
)


def is_client_tool_type(tool_type: object) -> bool:
    """Whether a `tools[].type` names an Anthropic-defined tool the client runs."""
    return isinstance(tool_type, str) and _CLIENT_TOOL_TYPE.match(tool_type) is not None


def client_tool_function(tool: Mapping[str, Any]) -> dict[str, Any] | None:
    """The OpenAI `function` (name, description, parameters) for an Anthropic-defined
    client tool; None when the tool's type is not one."""
    kind = tool.get("type")
    match = _CLIENT_TOOL_TYPE.match(kind) if isinstance(kind, str) else None
    if match is None:
        return None
    family, version = match.group(1), match.group(2)
    name = tool.get("name") or _DEFAULT_NAMES[family]
    if family == "bash":
        description, parameters = _bash()
    elif family == "text_editor":
        description, parameters = _text_editor(version)
    elif family == "memory":
        description, parameters = _memory()
    else:
        description, parameters = _computer(tool, version)
    return {"name": name, "description": description, "parameters": parameters}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _bash() -> tuple[str, dict[str, Any]]:
    description = (
        "Run a command in a persistent bash shell on the user's machine; working directory,"
        " environment and files persist between calls. Returns the command's output."
    )
    return description, _object({
        "command": {**_STRING, "description": "The bash command to run (omit only to restart)."},
        "restart": {"type": "boolean", "description": "true restarts the shell session."},
    })


def _text_editor(version: str) -> tuple[str, dict[str, Any]]:
    commands = ["view", "create", "str_replace", "insert"]
    if version < "20250429":  # the Claude 4 versions have no undo
        commands.append("undo_edit")
    description = (
        "View, create and edit text files on the user's machine. `view` shows a file with"
        " line numbers (or lists a directory); `create` writes `file_text` to a new file;"
        " `str_replace` replaces the exact, unique text `old_str` with `new_str`; `insert`"
        " puts `new_str` after line `insert_line` (0: at the top)"
        + ("; `undo_edit` reverts the last edit of `path`." if "undo_edit" in commands else ".")
    )
    return description, _object({
        "command": {**_STRING, "enum": commands},
        "path": {**_STRING, "description": "Absolute path of the file or directory."},
        "file_text": {**_STRING, "description": "Content of the new file (create)."},
        "old_str": {**_STRING, "description": "Exact text to replace (str_replace)."},
        "new_str": {**_STRING, "description": "Replacement (str_replace) or text to insert."},
        "insert_line": {"type": "integer", "description": "Insert after this line (insert)."},
        "view_range": {**_POINT, "description": "[first, last] line to view; last -1: to the end."},
    }, ("command", "path"))


def _memory() -> tuple[str, dict[str, Any]]:
    description = (
        "Your memory directory /memories, kept by the user's application across"
        " conversations: view it before starting a task, and record what you learn."
        " Commands: view, create, str_replace, insert, delete, rename."
    )
    return description, _object({
        "command": {**_STRING, "enum": ["view", "create", "str_replace", "insert", "delete",
                                        "rename"]},
        "path": {**_STRING, "description": "Path under /memories (all commands but rename)."},
        "view_range": {**_POINT, "description": "[first, last] line to view (view)."},
        "file_text": {**_STRING, "description": "Content of the new file (create)."},
        "old_str": {**_STRING, "description": "Exact text to replace (str_replace)."},
        "new_str": {**_STRING, "description": "Replacement text (str_replace)."},
        "insert_line": {"type": "integer", "description": "Insert after this line (insert)."},
        "insert_text": {**_STRING, "description": "Text to insert (insert)."},
        "old_path": {**_STRING, "description": "Path to rename (rename)."},
        "new_path": {**_STRING, "description": "New path (rename)."},
    }, ("command",))


def _computer(tool: Mapping[str, Any], version: str) -> tuple[str, dict[str, Any]]:
    actions = list(_COMPUTER_ACTIONS_2024 if version < "20250124" else _COMPUTER_ACTIONS_2025)
    zoom = version >= "20251124" and tool.get("enable_zoom") is True
    if zoom:
        actions.append("zoom")
    screen = ""
    width, height = tool.get("display_width_px"), tool.get("display_height_px")
    if isinstance(width, int) and isinstance(height, int):
        screen = f" The screen is {width}x{height} pixels"
        number = tool.get("display_number")
        screen += f" (X11 display :{number})." if isinstance(number, int) else "."
    description = (
        "Control the user's computer with mouse and keyboard and take screenshots."
        + screen
        + " Coordinates are [x, y] pixels from the top left; take a screenshot to find them."
    )
    properties: dict[str, Any] = {
        "action": {**_STRING, "enum": actions},
        "coordinate": {**_POINT, "description": "[x, y] to move to or click at."},
        "text": {**_STRING, "description": "Text to type, or key(s) in xdotool syntax."},
    }
    if version >= "20250124":
        properties.update({
            "start_coordinate": {**_POINT, "description": "[x, y] a drag starts from."},
            "scroll_direction": {**_STRING, "enum": ["up", "down", "left", "right"]},
            "scroll_amount": {"type": "integer", "description": "Scroll wheel clicks."},
            "duration": {"type": "number", "description": "Seconds to wait or hold a key."},
        })
    if zoom:
        properties["region"] = {
            "type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4,
            "description": "[x1, y1, x2, y2] of the screen area to zoom into.",
        }
    return description, _object(properties, ("action",))
