"""Coverage-guided fuzzing of the SSE decoder and the stream translator with atheris.

Not run in CI (the hypothesis suite in tests/fuzz is). To hunt for longer:

    pip install atheris
    python fuzz/sse_atheris.py -max_total_time=600 fuzz/corpus

The input's first byte picks the chunk size; the rest is the backend's bytes. Any exception
other than SSEOverflow from the decoder, or any exception at all from the translator, or
translator output that is neither a complete message nor one ending in `event: error`,
is a finding.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    from extproc.sse import SSEDecoder, SSEOverflow
    from extproc.translators.context import ResponseContext
    from extproc.translators.stream import StreamTranslator

CONTEXT = ResponseContext(model="claude-x", client_tools=frozenset({"Bash"}))


def chunks(data: bytes) -> list[bytes]:
    size = (data[0] % 64) + 1 if data else 1
    body = data[1:]
    return [body[i : i + size] for i in range(0, len(body), size)]


def check_output(out: bytes) -> None:
    names = [line[7:] for line in out.split(b"\n") if line.startswith(b"event: ")]
    if not names:
        raise AssertionError("no events at all")
    if names[-1] == b"error":
        if b"message_stop" in names:
            raise AssertionError("message_stop before an error")
    elif names[-2:] != [b"message_delta", b"message_stop"]:
        raise AssertionError(f"stream ends with {names[-2:]!r}")


def test_one(data: bytes) -> None:
    pieces = chunks(data)
    decoder = SSEDecoder(max_pending_bytes=4096)
    try:
        for piece in pieces:
            decoder.feed(piece)
    except SSEOverflow:
        pass
    translator = StreamTranslator(CONTEXT)
    out = b"".join(translator.feed(piece) for piece in pieces) + translator.finish()
    check_output(out)


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
