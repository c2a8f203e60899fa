"""The one Server-Sent Events codec: an incremental, sans-IO decoder and the event encoder.

Decoding follows the WHATWG "event stream interpretation" rules: lines end in CRLF, LF or CR
(a CR at the end of one chunk and an LF at the start of the next are one terminator), a blank
line dispatches the pending event, `:` lines are comments, `data` lines join with LF, a field
without a colon has an empty value, a leading BOM is dropped, and an event still pending when
the input ends is discarded (`truncated` says so).

Everything stays bytes: lines are cut with bytes methods before anything is decoded, so a chunk
boundary inside a UTF-8 character is harmless (CR and LF never occur inside one), and the data
goes to the JSON parser without a str round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_BOM: Final = b"\xef\xbb\xbf"

# Far above any real chat-completion chunk; bounds memory when a peer never ends a line.
DEFAULT_MAX_PENDING_BYTES: Final = 16 * 1024 * 1024


class SSEOverflow(ValueError):
    """A line or an event grew past the decoder's limit without being terminated."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str  # "message" when the stream named none
    data: bytes  # data lines joined with LF
    id: str = ""  # the last event id seen so far (it persists across events, per the spec)


class SSEDecoder:
    """Feed bytes in any chunking; get back the events completed so far."""

    __slots__ = (
        "_at_start",
        "_data",
        "_data_size",
        "_event_type",
        "_last_id",
        "_max_pending",
        "_partial",
        "_partial_size",
        "_skip_lf",
        "garbage_lines",
        "retry",
        "truncated",
    )

    def __init__(self, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self._max_pending = max_pending_bytes
        self._partial: list[bytes] = []  # pieces of the line not terminated yet
        self._partial_size = 0
        self._skip_lf = False  # the previous chunk ended in CR: an LF right after it is its pair
        self._at_start = True  # a BOM is only a BOM at the very start
        self._event_type = b""
        self._data: list[bytes] = []
        self._data_size = 0
        self._last_id = ""
        self.retry: int | None = None  # the last valid `retry:` value, in milliseconds
        self.garbage_lines = 0  # lines naming no known field (ignored, as the spec says)
        self.truncated = False  # set by flush() when the input ended inside an event

    def feed(self, data: bytes) -> list[SSEEvent]:
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
                if not data:
                    return []
        if b"\n" not in data and b"\r" not in data:
            self._keep_partial(data)
            return []
        if self._partial:
            data = b"".join(self._partial) + data
            self._partial.clear()
            self._partial_size = 0
        if self._at_start:
            data = self._strip_bom(data)
        if b"\r" in data:
            self._skip_lf = data[-1] == 0x0D
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        tail = lines.pop()
        if tail:
            self._keep_partial(tail)
        return self._interpret(lines)

    def flush(self) -> list[SSEEvent]:
        """End of input. An event without its closing blank line is incomplete: per the spec it
        is dropped, never dispatched, and `truncated` records it. Always returns []."""
        partial = b"".join(self._partial)
        if self._at_start and partial:
            partial = self._strip_bom(partial)
        self.truncated = bool(self._data or self._event_type or (partial and partial[0] != 0x3A))
        self._partial.clear()
        self._partial_size = 0
        self._data = []
        self._data_size = 0
        self._event_type = b""
        self._skip_lf = False
        return []

    def _keep_partial(self, piece: bytes) -> None:
        self._partial.append(piece)
        self._partial_size += len(piece)
        if self._partial_size + self._data_size > self._max_pending:
            raise SSEOverflow(f"SSE line longer than {self._max_pending} bytes")

    def _strip_bom(self, data: bytes) -> bytes:
        # Only called on the first complete line(s), so a BOM split across chunks is whole here.
        self._at_start = False
        return data[len(_BOM) :] if data.startswith(_BOM) else data

    def _interpret(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    event_type = self._event_type.decode("utf-8", "replace") or "message"
                    events.append(SSEEvent(event_type, b"\n".join(self._data), self._last_id))
                    self._data = []
                    self._data_size = 0
                self._event_type = b""
                continue
            if line[0] == 0x3A:  # ":" comment, e.g. a keep-alive
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
                self._data_size += len(value) + 1
                if self._data_size > self._max_pending:
                    raise SSEOverflow(f"SSE event larger than {self._max_pending} bytes")
            elif name == b"event":
                self._event_type = value
            elif name == b"id":
                if b"\x00" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            elif name == b"retry":
                if value.isdigit():
                    self.retry = int(value)
            else:
                self.garbage_lines += 1
        return events


_PREFIXES: dict[str, bytes] = {}


def encode_event(event: str, data: bytes) -> bytes:
    """`event: <name>` and `data: <data>` lines and the blank line ending the event."""
    prefix = _PREFIXES.get(event)
    if prefix is None:
        if "\n" in event or "\r" in event:
            raise ValueError("an SSE event name cannot contain a line break")
        prefix = _PREFIXES.setdefault(event, b"event: " + event.encode() + b"\ndata: ")
    if b"\n" in data or b"\r" in data:  # never for JSON from orjson; kept correct anyway
        data = b"\ndata: ".join(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"))
    return prefix + data + b"\n\n"
