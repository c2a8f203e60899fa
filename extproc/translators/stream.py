"""OpenAI chat-completion SSE in, Anthropic Messages SSE out: one state machine per response.

`feed()` turns each backend body chunk into the Anthropic events it completes (possibly none);
`finish()` is the explicit end of the backend stream and closes the message exactly once;
`fail()` ends it with `event: error`. After a terminal event nothing more is written.
The tool-call half of the state machine is in stream_tool_blocks.py.

Decisions worth knowing:
- `message_start` and a `ping` go out with the first backend chunk; its `input_tokens` is
  real when the backend reports usage on every chunk (vLLM `continuous_usage_stats`).
- One block is open at a time. A new tool call takes over from the streaming one once the
  latter's arguments form a whole object (sequential parallel calls all stream); when the
  backend interleaves argument deltas, the first call streams and the others are buffered
  and written whole, in index order, when it closes. A delta for a call whose block already
  closed cannot be delivered: `dropped_tool_deltas` counts it.
- `finish_reason` closes the open block at once; `message_delta` waits for `[DONE]` or
  `finish()`, because the usage-only chunk comes after `finish_reason`.
- A stream ending with neither `[DONE]` nor a `finish_reason` ends in `event: error`, so a
  cut answer never looks complete. A `data:` line that is not a JSON object is fatal the same
  way; SSE lines naming no field are ignored (the decoder counts them in `garbage_lines`).
- Whitespace-only text is held until other text follows: no block is only blanks.
- Tool arguments that are not a JSON object after repair end the stream in `event: error`
  where `content_block_stop` would be: a tool must never run on arguments we could not read.
  Under `finish_reason: length` a cut call is not an error (`max_tokens` says it is cut):
  buffered ones are left out and listed in `truncated_tool_calls`, as without streaming.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypedDict

import orjson

from extproc.mappings import error_type_for_status, stop_reason_for
from extproc.sse import SSEDecoder, SSEEvent, SSEOverflow
from extproc.translators import stream_events as events
from extproc.translators.common import AnthropicUsage, anthropic_usage, message_id, tool_use_id
from extproc.translators.context import ResponseContext
from extproc.translators.stream_events import BlockType
from extproc.translators.stream_tool_blocks import ToolCallBlocks
from extproc.translators.stream_tools import ToolCall, ToolCallState
from extproc.translators.think_tags import ThinkPiece, ThinkTagSplitter
from extproc.translators.tool_rescue import ToolCallRescuer

TRUNCATED_MESSAGE: Final = "backend stream ended before completion"


class Phase(enum.Enum):
    WAITING = "waiting"  # no backend chunk yet, nothing written
    STREAMING = "streaming"  # message_start written
    DONE = "done"  # message_stop written
    FAILED = "failed"  # event: error written


@dataclass(slots=True)  # per block: not frozen (see processors/base.py Continue)
class OpenBlock:
    type: BlockType
    index: int
    delta_prefix: bytes
    tool: ToolCall | None = None  # the call streaming in a tool_use block


class UnknownToolCall(TypedDict):
    id: str
    name: str
    arguments: str


class _Ended(Exception):
    """Raised once the terminal error event is written, to stop all further work."""


class StreamTranslator(ToolCallBlocks):
    def __init__(self, context: ResponseContext) -> None:
        self._context = context
        self._decoder = SSEDecoder()
        self._phase = Phase.WAITING
        self._block: OpenBlock | None = None
        self._next_index = 0
        self._tools: dict[int, ToolCall] = {}
        self._last_tool_index = -1
        self._pending_space = ""
        self._finish_reason: str | None = None
        self._matched_stop: object = None
        self._openai_usage: dict[str, Any] | None = None
        self._tool_use_written = False
        self._out: list[bytes] = []
        self._rescuer = (
            ToolCallRescuer(context.tool_parameter_types) if context.tool_call_rescue else None
        )
        self._rescued = 0
        self._think = ThinkTagSplitter() if context.think_tags else None
        self._message_id = ""
        # Read-only progress, for metrics and logs.
        self.first_token_seen = False
        self.output_chunks = 0  # backend chunks that carried thinking, text or tool deltas
        self.stop_reason: str | None = None
        self.error: str | None = None  # Anthropic error type when the stream ended in error
        self.unknown_tool_calls: list[UnknownToolCall] = []
        self.truncated_tool_calls: list[str] = []  # names of calls max_tokens cut short
        self.invalid_tool_arguments = 0
        self.dropped_tool_deltas = 0

    @property
    def usage(self) -> AnthropicUsage:
        usage = anthropic_usage(self._openai_usage)
        if self._context.server_tool_usage:
            usage["server_tool_use"] = dict(self._context.server_tool_usage)
        return usage

    @property
    def finished(self) -> bool:
        return self._phase is Phase.DONE or self._phase is Phase.FAILED

    @property
    def garbage_lines(self) -> int:
        return self._decoder.garbage_lines

    def feed(self, data: bytes) -> bytes:
        """Backend bytes in any chunking -> the Anthropic SSE bytes they complete."""
        if self.finished:
            return b""
        self._out = []
        try:
            try:
                sse_events = self._decoder.feed(data)
            except SSEOverflow as exc:
                self._fail("api_error", f"backend stream unreadable: {exc}")
            for event in sse_events:
                try:
                    self._on_event(event)
                except orjson.JSONEncodeError:  # tool arguments nested past orjson's 254 levels
                    self._fail("api_error", "backend stream nests too deeply to translate")
                if self._phase is Phase.DONE:
                    break
        except _Ended:
            pass
        return b"".join(self._out)

    def finish(self) -> bytes:
        """The backend stream ended: close the message, or report it cut short."""
        if self.finished:
            return b""
        self._out = []
        self._decoder.flush()
        with contextlib.suppress(_Ended):
            # Every OpenAI-compatible server ends a complete stream with [DONE] (handled in
            # feed); ending without it, even after a finish_reason, is a cut-off stream whose
            # usage may be lost: never pass it off as a whole answer.
            self._fail("api_error", TRUNCATED_MESSAGE)
        return b"".join(self._out)

    def fail(self, message: str, error_type: str = "api_error") -> bytes:
        """The backend broke: end the stream with an Anthropic `event: error`."""
        if self.finished:
            return b""
        self._out = []
        self._write_error(error_type, message)
        return b"".join(self._out)

    # -- backend events --------------------------------------------------------------------

    def _on_event(self, event: SSEEvent) -> None:
        if event.data.strip() == b"[DONE]":  # checked first: no failed JSON parse to get here
            self._complete()
            return
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            self._fail("api_error", "backend sent a stream event that is not JSON")
        if not isinstance(chunk, dict):
            self._fail("api_error", "backend sent a stream event that is not a JSON object")
        if (
            chunk.get("error") is not None
            or chunk.get("object") == "error"
            or event.event == "error"
        ):
            self._backend_error(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._openai_usage = usage
        if self._phase is Phase.WAITING:
            self._start(chunk.get("id"))
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                # Only the first choice is translated: Anthropic has no `n`.
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._on_choice(choice)

    def _on_choice(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict) and delta:
            produced = False
            # vLLM sent both names for a while, with the same text: take one, never both.
            reasoning = delta.get("reasoning")
            if not (isinstance(reasoning, str) and reasoning):
                reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                self._thinking(reasoning)
                produced = True
            content = delta.get("content")
            if isinstance(content, str) and content:
                if self._think is None:
                    self._content(content)
                else:
                    self._think_pieces(self._think.feed(content))
                produced = True
            tool_calls = delta.get("tool_calls")
            if isinstance(tool_calls, list):
                for tool_call in tool_calls:
                    if isinstance(tool_call, dict):
                        self._tool_delta(tool_call)
                        produced = True
            if produced:
                self.first_token_seen = True
                self.output_chunks += 1
        finish_reason = choice.get("finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            self._finish_reason = finish_reason
            self._matched_stop = choice.get("stop_reason")
            self._end_content()
            self._close_block()
            self._flush_tools(final=True)

    def _backend_error(self, chunk: dict[str, Any]) -> NoReturn:
        error = chunk.get("error")
        details: dict[str, Any] = error if isinstance(error, dict) else chunk
        message = details.get("message")
        if not isinstance(message, str) or not message:
            message = error if isinstance(error, str) and error else "backend reported an error"
        self._fail(_error_type(details.get("code")), message)

    # -- content ---------------------------------------------------------------------------

    def _content(self, text: str) -> None:
        if self._rescuer is None:
            self._text(text)
        else:
            self._rescue(self._rescuer.feed(text))

    def _think_pieces(self, pieces: list[ThinkPiece]) -> None:
        for piece in pieces:
            if piece.thinking:
                self._thinking(piece.text)
            else:
                self._content(piece.text)

    def _end_content(self) -> None:
        """The content is over: release what the splitter and the rescuer held back."""
        if self._think is not None:
            self._think_pieces(self._think.finish())
        if self._rescuer is not None:
            self._rescue(self._rescuer.finish())

    def _thinking(self, text: str) -> None:
        block = self._block
        if block is None or block.type is not BlockType.THINKING:
            block = self._switch_to(BlockType.THINKING)
        self._out.append(events.delta(block.delta_prefix, text))

    def _text(self, text: str) -> None:
        block = self._block
        if block is None or block.type is not BlockType.TEXT:
            text = self._pending_space + text
            if text.isspace():
                self._pending_space = text
                return
            block = self._switch_to(BlockType.TEXT)
        self._out.append(events.delta(block.delta_prefix, text))

    # -- blocks ----------------------------------------------------------------------------

    def _switch_to(self, block_type: BlockType) -> OpenBlock:
        self._close_block()
        self._flush_tools(final=False)
        index = self._open(block_type)
        start = events.thinking_start if block_type is BlockType.THINKING else events.text_start
        self._out.append(start(index))
        assert self._block is not None
        return self._block

    def _open(self, block_type: BlockType, tool: ToolCall | None = None) -> int:
        index = self._next_index
        self._next_index += 1
        self._pending_space = ""
        self._block = OpenBlock(block_type, index, events.delta_prefix(block_type, index), tool)
        return index

    def _close_block(self) -> None:
        block = self._block
        if block is None:
            return
        if block.type is BlockType.THINKING:
            self._out.append(events.signature_delta(block.index))
        elif block.tool is not None:
            self._finish_arguments(block.tool, block)
        self._out.append(events.block_stop(block.index))
        self._block = None

    # -- the end ---------------------------------------------------------------------------

    def _start(self, backend_id: object) -> None:
        self._phase = Phase.STREAMING
        self._message_id = message_id(backend_id)
        start = events.message_start(self._message_id, self._context.model, self.usage)
        self._out += (start, events.PING)
        for block in self._context.leading_blocks:  # a server tool the gateway ran
            self._out.append(events.whole_block(self._next_index, block))
            self._next_index += 1

    def _complete(self) -> None:
        if self._phase is Phase.WAITING:
            self._start(None)
        self._end_content()
        self._close_block()
        self._flush_tools(final=True)
        self.unknown_tool_calls = [
            {"id": tool_use_id(call.id), "name": call.name or "", "arguments": call.gathered()}
            for call in self._tools.values()
            if call.state is ToolCallState.UNKNOWN
        ]
        stop_reason, stop_sequence = stop_reason_for(
            self._finish_reason, self._matched_stop, list(self._context.stop_sequences)
        )
        if self._tool_use_written and stop_reason in ("end_turn", "stop_sequence"):
            stop_reason, stop_sequence = "tool_use", None
        elif stop_reason == "tool_use" and not self._tool_use_written:
            stop_reason = "end_turn"  # every call was held back by the tool guard
        self.stop_reason = stop_reason
        self._out += (
            events.message_delta(stop_reason, stop_sequence, self.usage),
            events.MESSAGE_STOP,
        )
        self._phase = Phase.DONE

    def _fail(self, error_type: str, message: str) -> NoReturn:
        self._write_error(error_type, message)
        raise _Ended

    def _write_error(self, error_type: str, message: str) -> None:
        self._out.append(events.error(error_type, message))
        self.error = error_type
        self._phase = Phase.FAILED


def _error_type(code: object) -> str:
    """Anthropic error type for an in-stream error's `code` (an HTTP status when numeric)."""
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
        return error_type_for_status(code)
    return "api_error"
