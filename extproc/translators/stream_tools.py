"""One backend tool call as it streams in: its id, name and argument pieces, and how much of
the arguments may go to the client as `input_json_delta`.

Arguments stream raw once they start like a JSON object. A light scanner (it looks only at
quotes, backslashes and brackets) finds where that object closes: the pieces up to there
stream, anything after it (`}`, `</tool_call>`, a repeated object) is held back and judged
when the call closes. Arguments that start otherwise (a double-encoded string, a code fence)
are held whole and repaired at close.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final

import orjson

_STRUCTURAL: Final = re.compile(r'[\\"{}\[\]]')


class ToolCallState(enum.Enum):
    PENDING = "pending"  # gathering; nothing written yet
    STREAMING = "streaming"  # its block is the open block
    EMITTED = "emitted"  # its block is closed
    UNKNOWN = "unknown"  # names no client tool: never written
    CUT = "cut"  # max_tokens cut it before its arguments were whole: left out


@dataclass(slots=True)
class ToolCall:
    index: int  # OpenAI tool_calls[].index
    id: str | None = None
    name: str | None = None
    state: ToolCallState = ToolCallState.PENDING
    arguments: list[str] = field(default_factory=list)
    sent: int = 0  # characters of the arguments streamed to the client
    held: bool = False  # do not start like an object: repaired at close instead
    closed: bool = False  # the streamed object is complete; later pieces are trailing text
    _depth: int = 0
    _in_string: bool = False
    _escape_next: bool = False  # the last piece ended in a backslash inside a string

    def gathered(self) -> str:
        return "".join(self.arguments)

    def take(self, piece: str) -> str:
        """Record a piece of the arguments; return the part of it to stream now."""
        self.arguments.append(piece)
        if self.held or self.closed or not piece:
            return ""
        if not self.sent:
            gathered = self.gathered()
            start = gathered.lstrip()
            if not start:
                return ""
            if start[0] != "{":
                self.held = True
                return ""
            piece = gathered
        end = self._object_end(piece)
        if end is not None:
            piece = piece[:end]
            self.closed = True
        self.sent += len(piece)
        return piece

    def _object_end(self, piece: str) -> int | None:
        """Offset just past the bracket that closes the object, when it is in `piece`."""
        escaped_at = 0 if self._escape_next else -1
        self._escape_next = False
        for match in _STRUCTURAL.finditer(piece):
            position = match.start()
            if position == escaped_at:
                continue
            char = match.group()
            if self._in_string:
                if char == "\\":
                    escaped_at = position + 1
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char == "{" or char == "[":
                self._depth += 1
            elif char == "}" or char == "]":
                self._depth -= 1
                if self._depth == 0:
                    return position + 1
        self._escape_next = escaped_at == len(piece)
        return None


def arguments_piece(arguments: object) -> str:
    if isinstance(arguments, str):
        return arguments
    if isinstance(arguments, dict):  # a few servers send the object itself
        return orjson.dumps(arguments).decode()
    return ""


def is_json_object(text: str) -> bool:
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False
