"""Fuzzing the streaming path: the SSE decoder and the stream translator under hostile bytes.

What tests/test_sse.py and tests/translators/test_stream.py already cover (chunking
invariance, damaged and arbitrary streams) is not repeated; this adds decoder limits under
any chunking, hostile values in every field of every chunk, a cut at every byte (a stream
completes only when its `[DONE]` arrived whole), and lines that never end.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from fuzz_helpers import INVALID_UTF8, JSON, corrupt, nested, split_at, stream_outcome
from hypothesis import event, example, given
from hypothesis import strategies as st

from extproc.sse import DEFAULT_MAX_PENDING_BYTES, SSEDecoder, SSEOverflow
from extproc.translators.context import ResponseContext
from extproc.translators.stream import StreamTranslator

CONTEXT = ResponseContext(model="claude-x", stop_sequences=("END",), client_tools=frozenset({"Bash"}))
CHUNKS: list[dict[str, Any]] = [
    {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"content": "héllo 😀 END?"}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": '{"co'}}]}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": 'mmand": "ls"}'}}]}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls", "stop_reason": None}]},
    {"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4,
                                          "prompt_tokens_details": {"cached_tokens": 1}}},
]
SLOT = "\x00slot\x00"


def encode(chunks: list[bytes], end: bytes = b"\n") -> bytes:
    return b"".join(b"data: " + data + end + end for data in [*chunks, b"[DONE]"])


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found: list[tuple[Any, ...]] = []
    for key, child in items:
        found += [(*prefix, key), *paths(child, (*prefix, key))]
    return found


PATHS = [(number, *path) for number, chunk in enumerate(CHUNKS) for path in paths(chunk)]


def with_raw(path: tuple[Any, ...], raw: bytes) -> list[bytes]:
    """CHUNKS as `data:` payloads, the value at `path` (chunk number first) replaced by raw bytes."""
    chunks = orjson.loads(orjson.dumps(CHUNKS))
    parent = chunks
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = SLOT
    return [orjson.dumps(chunk).replace(orjson.dumps(SLOT), raw, 1) for chunk in chunks]


RAW = st.one_of(
    JSON.map(lambda value: json.dumps(value, ensure_ascii=False).encode()),
    st.builds(nested, st.sampled_from([254, 255, 300, 1025]), st.sampled_from(["object", "array"])),
    st.sampled_from([250, 300]).map(lambda n: orjson.dumps(nested(n).decode())),
    st.sampled_from([b'"\xff"', b'"\xed\xa0\x80"', b'"a\\ud800"', b"1e999", b"-0", b'"' + b"x" * 300_000 + b'"']),
)
TOOL_ARGUMENTS = (3, "choices", 0, "delta", "tool_calls", 0, "function", "arguments")


def translate(pieces: list[bytes]) -> bytes:
    translator = StreamTranslator(CONTEXT)
    out = b"".join(translator.feed(piece) for piece in pieces) + translator.finish()
    assert translator.finish() == b""
    return out


@example(TOOL_ARGUMENTS, nested(300), [])  # found: arguments sent as a 300-deep object raised
@given(st.sampled_from(PATHS), RAW, st.lists(st.integers(0, 4000), max_size=6))
def test_hostile_value_in_any_field_of_any_chunk(path: tuple[Any, ...], raw: bytes, cuts: list[int]) -> None:
    body = encode(with_raw(path, raw))
    event(stream_outcome(translate(split_at(body, cuts))))


@example(10**4, b"\r", [], None)  # whole
@given(
    st.integers(0, 1200),  # about the stream's length: a few cuts land past its end
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(0, 4000), max_size=4),
    st.none() | INVALID_UTF8,
)
def test_a_cut_anywhere_never_looks_complete(
    cut: int, end: bytes, cuts: list[int], bad: bytes | None
) -> None:
    whole = encode([orjson.dumps(chunk) for chunk in CHUNKS], end)
    body = whole[:cut]
    if bad is not None:  # and invalid UTF-8 somewhere before the cut
        body = corrupt(body, cut // 3, bad)
    outcome = stream_outcome(translate(split_at(body, cuts)))
    event(outcome)
    done_arrived = b"data: [DONE]" + end + end in body
    assert (outcome == "complete") == (done_arrived and bad is None)


@given(
    st.binary(max_size=300) | st.lists(INVALID_UTF8 | st.sampled_from([b"data: x", b"\n", b"\r", b":", b"event: \xff"]),
                                       max_size=30).map(b"".join),
    st.integers(1, 64),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_decoder_limit_holds_under_any_chunking(data: bytes, limit: int, cuts: list[int]) -> None:
    """A bounded decoder gives what an unbounded one gives, or stops with SSEOverflow only."""
    reference = SSEDecoder()
    expected = [e for piece in split_at(data, cuts) for e in reference.feed(piece)]
    bounded, got = SSEDecoder(max_pending_bytes=limit), []
    try:
        for piece in split_at(data, cuts):
            got += bounded.feed(piece)
    except SSEOverflow:
        event("overflow")
        assert got == expected[: len(got)]
        return
    assert got == expected
    assert all(isinstance(e.event, str) and isinstance(e.data, bytes) for e in got)


@pytest.mark.parametrize("end", [b"", b"\n"], ids=["no-line-end", "data-line-never-ends-event"])
def test_a_line_that_never_ends_is_an_error_not_unbounded_memory(end: bytes) -> None:
    translator = StreamTranslator(CONTEXT)
    out = translator.feed(b"data: " + orjson.dumps(CHUNKS[0]) + b"\n\n")
    piece = b"data: " + b"x" * (1 << 20) + end
    for _ in range(DEFAULT_MAX_PENDING_BYTES // len(piece) + 2):
        out += translator.feed(piece)
        if translator.finished:
            break
    out += translator.finish()
    assert stream_outcome(out) == "error"
    assert b"unreadable" in out
