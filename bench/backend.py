"""A fast canned OpenAI-compatible backend for the bench (raw asyncio protocol + uvloop).

Any POST gets a canned chat completion, chosen by the body's `model` (`bench-text`,
`bench-paced`, `bench-tool`) and `stream` values. Any GET gets a model list.
Answers are precomputed bytes, so one process serves far more than the targets it sits behind.

    python bench/backend.py --listen 127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from payloads import (
    DEFAULT_NONCE,
    MODEL_PACED,
    MODEL_TOOL,
    NONCE_LEN,
    NONCE_TAG,
    PACE_S,
    canned_responses,
)

_CANNED = canned_responses()
_PACED: list[bytes] = _CANNED["paced"]  # type: ignore[assignment]
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)
# Every client we sit behind puts `model` (and mostly `stream`) within the first or last few
# KB of the body; looking there first keeps an 80 KB body from costing several full scans.
_WINDOW = 4096


def _value(body: bytes, key: bytes, accept: tuple[bytes, ...]) -> bytes | None:
    """The start of the value after `"key":` that begins with one of `accept`, or None."""
    size = len(body)
    for start, end in ((0, min(size, _WINDOW)), (max(0, size - _WINDOW), size), (0, size)):
        at = body.find(key, start, end)
        while at >= 0:
            value = body[at + len(key) : at + len(key) + 24].lstrip()
            if value.startswith(accept):
                return value
            at = body.find(key, at + 1, end)
    return None


def _nonce(body: bytes) -> bytes | None:
    at = body.find(NONCE_TAG)
    if at < 0:
        return None
    start = at + len(NONCE_TAG)
    nonce = body[start : start + NONCE_LEN]
    return nonce if len(nonce) == NONCE_LEN else None


def answer(body: bytes, echo_nonce: bool = False) -> bytes | list[bytes]:
    """The canned HTTP response (or paced list of writes) for one POST body."""
    stream = (_value(body, b'"stream":', (b"true", b"false")) or b"").startswith(b"true")
    model = _value(body, b'"model":', (b'"bench-',)) or b""
    if model.startswith(_TOOL):
        response = _CANNED["tool_sse" if stream else "tool_json"]
    elif stream and model.startswith(_PACED_MODEL):
        response = _PACED
    else:
        response = _CANNED["text_sse" if stream else "text_json"]
    nonce = _nonce(body) if echo_nonce else None
    if nonce is None:
        return response
    if isinstance(response, list):
        return [part.replace(DEFAULT_NONCE, nonce) for part in response]
    return response.replace(DEFAULT_NONCE, nonce)


_TOOL = b'"' + MODEL_TOOL.encode() + b'"'
_PACED_MODEL = b'"' + MODEL_PACED.encode() + b'"'


class _Chunked:
    """Incremental decoder for a chunked request body; returns the body when complete."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def feed(self, buf: bytearray) -> tuple[bytes | None, int]:
        """(body or None, bytes consumed from buf)."""
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None, pos
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:
                end = buf.find(b"\r\n\r\n", eol)  # trailers (none in practice) end with a blank line
                if end < 0:
                    return None, pos
                return b"".join(self.parts), end + 4
            if len(buf) < eol + 2 + size + 2:
                return None, pos
            self.parts.append(bytes(buf[eol + 2 : eol + 2 + size]))
            pos = eol + 2 + size + 2


class Connection(asyncio.Protocol):
    echo_nonce = False  # set by --echo-nonce (the soak): scan each body for a nonce

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a paced answer is still being written
        self.chunked: _Chunked | None = None
        self.head: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        while not self.busy:
            request = self._next_request()
            if request is None:
                return
            method, body = request
            if method != b"POST":
                self._write(_CANNED["models"])  # type: ignore[arg-type]
                continue
            response = answer(body, self.echo_nonce)
            if isinstance(response, list):
                self._pace(response)
            else:
                self._write(response)

    def _next_request(self) -> tuple[bytes, bytes] | None:
        if self.head is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            self.head = bytes(self.buf[: end + 2])
            del self.buf[: end + 4]
            self.chunked = _Chunked() if _CHUNKED.search(self.head) else None
        method = self.head.split(b" ", 1)[0]
        if self.chunked is not None:
            body, used = self.chunked.feed(self.buf)
            del self.buf[:used]
            if body is None:
                return None
        else:
            match = _CONTENT_LENGTH.search(self.head)
            length = int(match.group(1)) if match else 0
            if len(self.buf) < length:
                return None
            body = bytes(self.buf[:length])
            del self.buf[:length]
        self.head = None
        self.chunked = None
        return method, body

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _pace(self, writes: list[bytes]) -> None:
        self.busy = True
        loop = asyncio.get_running_loop()
        self._write(writes[0])

        def step(index: int) -> None:
            self._write(writes[index])
            if index + 1 < len(writes):
                loop.call_later(PACE_S, step, index + 1)
            else:
                self.busy = False
                self._serve()

        loop.call_later(PACE_S, step, 1)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", metavar="HOST:PORT")
    parser.add_argument("--echo-nonce", action="store_true",
                        help="echo the request's nonce in the answer (the soak checks it)")
    args = parser.parse_args(argv)
    Connection.echo_nonce = args.echo_nonce
    host, _, port = args.listen.rpartition(":")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(host, int(port)))
    else:
        uvloop.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
