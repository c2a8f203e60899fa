"""How backend tool calls become `tool_use` blocks in the Anthropic stream.

Part of `StreamTranslator` (stream.py), kept apart for size: gathering each call's deltas,
the tool guard (calls naming no client tool are held back), which call streams and which
wait (interleaved parallel calls), calls rescued from text, and the check of a call's
arguments when its block closes. The block state machine itself (`_open`, `_close_block`)
and the terminal error (`_fail`) stay in stream.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NoReturn

import orjson

from extproc.translators import stream_events as events
from extproc.translators.common import rescued_tool_id, tool_use_id
from extproc.translators.context import ResponseContext
from extproc.translators.stream_events import BlockType
from extproc.translators.stream_tools import (
    ToolCall,
    ToolCallState,
    arguments_piece,
    is_json_object,
)
from extproc.translators.tool_args import ToolArgumentsError, parse_tool_arguments
from extproc.translators.tool_rescue import Piece

if TYPE_CHECKING:
    from extproc.translators.stream import OpenBlock

# Tool-call indices for calls rescued from text, after any the backend itself numbered.
_RESCUED_INDEX_BASE: Final = 1 << 20


class ToolCallBlocks:
    """The tool-call half of StreamTranslator (a mixin: it shares the translator's state)."""

    _context: ResponseContext
    _block: OpenBlock | None
    _out: list[bytes]
    _tools: dict[int, ToolCall]
    _last_tool_index: int
    _finish_reason: str | None
    _tool_use_written: bool
    _rescued: int
    _message_id: str
    truncated_tool_calls: list[str]
    invalid_tool_arguments: int
    dropped_tool_deltas: int

    # The block state machine, in StreamTranslator.
    def _open(self, block_type: BlockType, tool: ToolCall | None = None) -> int:
        raise NotImplementedError

    def _close_block(self) -> None:
        raise NotImplementedError

    def _text(self, text: str) -> None:
        raise NotImplementedError

    def _fail(self, error_type: str, message: str) -> NoReturn:
        raise NotImplementedError

    def _rescue(self, pieces: list[Piece]) -> None:
        """Text and text-written tool calls from the rescuer, as if the backend parsed them."""
        for piece in pieces:
            if isinstance(piece, str):
                if piece:
                    self._text(piece)
                continue
            call_id = piece.id or rescued_tool_id(self._message_id, self._rescued)
            index = _RESCUED_INDEX_BASE + self._rescued
            self._rescued += 1
            function = {"name": piece.name, "arguments": piece.arguments}
            self._tool_delta({"index": index, "id": call_id, "function": function})

    def _tool_delta(self, delta: dict[str, Any]) -> None:
        index = delta.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = self._guess_tool_index(delta.get("id"))
        self._last_tool_index = index
        call = self._tools.get(index)
        if call is None:
            call = self._tools[index] = ToolCall(index)
        function = delta.get("function")
        if not isinstance(function, dict):
            function = {}
        if call.id is None and isinstance(delta.get("id"), str) and delta["id"]:
            call.id = delta["id"]
        if call.name is None and isinstance(function.get("name"), str) and function["name"]:
            call.name = function["name"]
        piece = arguments_piece(function.get("arguments"))
        if call.state is ToolCallState.STREAMING:
            self._stream_arguments(call, piece)
        elif call.state is ToolCallState.PENDING:
            call.arguments.append(piece)
            self._maybe_start(call)
        elif call.state is ToolCallState.UNKNOWN:
            call.arguments.append(piece)
        elif piece.strip():
            self.dropped_tool_deltas += 1

    def _maybe_start(self, call: ToolCall) -> None:
        if call.name is None:
            return  # no block without a name; it may come in a later delta
        tools = self._context.client_tools
        if tools is not None and call.name not in tools:
            call.state = ToolCallState.UNKNOWN
            return
        if self._must_wait(call):
            return  # interleaved: written whole when the streaming call closes
        self._close_block()
        self._open_tool(call)

    def _must_wait(self, call: ToolCall) -> bool:
        """Another call streams and may still grow: its object is open, or calls interleave."""
        streaming = self._block.tool if self._block is not None else None
        if streaming is None:
            return False
        if not streaming.closed:
            return True
        return any(
            other.state is ToolCallState.PENDING and other is not call
            for other in self._tools.values()
        )

    def _guess_tool_index(self, call_id: object) -> int:
        """Servers that omit `index`: a new id starts a new call, otherwise continue the last."""
        known = any(call.id == call_id for call in self._tools.values())
        if isinstance(call_id, str) and call_id and not known:
            return max(self._tools, default=-1) + 1
        return max(self._last_tool_index, 0)

    def _open_tool(self, call: ToolCall) -> None:
        assert call.name is not None
        call.state = ToolCallState.STREAMING
        self._tool_use_written = True
        index = self._open(BlockType.TOOL_USE, call)
        self._out.append(events.tool_use_start(index, tool_use_id(call.id), call.name))
        gathered, call.arguments = call.gathered(), []
        self._stream_arguments(call, gathered)

    def _stream_arguments(self, call: ToolCall, piece: str) -> None:
        part = call.take(piece)
        if part and self._block is not None:
            self._out.append(events.delta(self._block.delta_prefix, part))

    def _flush_tools(self, *, final: bool) -> None:
        """Write the buffered tool calls as whole blocks; no block is open here."""
        cut = self._finish_reason == "length"
        for index in sorted(self._tools):
            call = self._tools[index]
            if call.state is not ToolCallState.PENDING:
                continue
            if call.name is None:
                if final:
                    call.state = ToolCallState.UNKNOWN
                continue
            if cut and not _readable(call.gathered()):
                call.state = ToolCallState.CUT
                self.truncated_tool_calls.append(call.name)
                continue
            self._open_tool(call)
            self._close_block()

    def _finish_arguments(self, call: ToolCall, block: OpenBlock) -> None:
        """Complete a tool_use block's input, or fail the stream when it cannot be read."""
        call.state = ToolCallState.EMITTED
        gathered = call.gathered()
        cut = self._finish_reason == "length"
        if call.sent:
            if is_json_object(gathered[: call.sent]):
                if cut or not gathered[call.sent :].strip():
                    return
                try:  # text after the object: harmless only if the repair rules accept it
                    parse_tool_arguments(gathered)
                    return
                except ToolArgumentsError as exc:
                    problem = str(exc)
            elif cut:
                self.truncated_tool_calls.append(call.name or "")
                return
            else:
                problem = "invalid JSON"
        else:
            try:
                value = parse_tool_arguments(gathered, repair=not cut)
            except ToolArgumentsError as exc:
                if cut:
                    self.truncated_tool_calls.append(call.name or "")
                    return
                problem = str(exc)
            else:
                self._out.append(events.delta(block.delta_prefix, orjson.dumps(value).decode()))
                return
        self.invalid_tool_arguments += 1
        self._fail(
            "api_error", f"backend returned unusable arguments for tool {call.name!r}: {problem}"
        )


def _readable(arguments: str) -> bool:
    try:
        parse_tool_arguments(arguments, repair=False)
    except ToolArgumentsError:
        return False
    return True
