"""Fuzzing the response side: whatever a backend answers (any status, content type, bytes,
chunking), the client gets an Anthropic message, Anthropic SSE that either completes or ends
in one `event: error`, or an Anthropic error object. Never an exception.

The processor is driven the way Envoy drives it: a buffered body arrives as one chunk, a
body switched to STREAMED (`stream_response`) in arbitrary chunks, and the end of the body
is sometimes a chunk of its own with no bytes in it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from fuzz_helpers import (
    INVALID_UTF8,
    JSON,
    anthropic_error,
    anthropic_message,
    corrupt,
    gateway,
    info,
    nested,
    split_at,
    stream_outcome,
)
from hypothesis import event, example, given
from hypothesis import strategies as st

from extproc.errors import BackendError
from extproc.processors.base import Continue, Respond
from extproc.processors.messages import MessagesProcessor
from extproc.translators.context import ResponseContext
from extproc.translators.response import convert_response, translate_error

CONTEXT = ResponseContext(model="claude-x", stop_sequences=("END",), client_tools=frozenset({"Bash"}))
COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{
        "index": 0,
        "finish_reason": "tool_calls",
        "stop_reason": None,
        "message": {
            "role": "assistant",
            "content": "Running it.",
            "reasoning": "the user wants ls",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}],
        },
    }],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 2}},
}
SLOT = "\x00slot\x00"


def completion_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found: list[tuple[Any, ...]] = []
    for key, child in items:
        found += [(*prefix, key), *completion_paths(child, (*prefix, key))]
    return found


def with_raw(path: tuple[Any, ...], raw: bytes) -> bytes:
    """COMPLETION as bytes with the value at `path` replaced by raw bytes."""
    copy = orjson.loads(orjson.dumps(COMPLETION))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = SLOT
    return orjson.dumps(copy).replace(orjson.dumps(SLOT), raw, 1)


PATHS = st.sampled_from(completion_paths(COMPLETION))
RAW = st.one_of(
    JSON.map(lambda value: json.dumps(value, ensure_ascii=False).encode()),
    st.builds(nested, st.sampled_from([100, 254, 255, 300, 1000, 1025]), st.sampled_from(["object", "array"])),
    # Tool arguments as a JSON string holding deep JSON.
    st.sampled_from([250, 300, 1000]).map(lambda n: orjson.dumps(nested(n).decode())),
    st.sampled_from([10_000, 200_000]).map(lambda n: orjson.dumps("ü" * n)),
)
BODIES = st.one_of(
    st.builds(with_raw, PATHS, RAW),
    st.builds(corrupt, st.builds(with_raw, PATHS, RAW), st.integers(0, 10**6), INVALID_UTF8),
    st.builds(lambda data, at: data[: at % (len(data) + 1)], st.just(orjson.dumps(COMPLETION)),
              st.integers(0, 10**4)),
    st.binary(max_size=300),
)
DEEP_ARGUMENTS = with_raw(("choices", 0, "message", "tool_calls", 0, "function", "arguments"),
                          orjson.dumps(nested(300).decode()))


@example(DEEP_ARGUMENTS)  # found by this suite: orjson writes at most 254 levels
@given(BODIES)
def test_any_backend_body_gives_a_message_or_a_502(body: bytes) -> None:
    try:
        translated = convert_response(body, CONTEXT)
    except BackendError as exc:
        assert (exc.status, exc.error_type) == (502, "api_error")
        anthropic_error(exc.body())
        event("502")
        return
    event("message")
    assert anthropic_message(translated.body).model == "claude-x"


HTML = st.sampled_from([
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    b"<!DOCTYPE html>" + b"<p>" * 100_000,
    b"\xff\xfe<\x00h\x00t\x00m\x00l\x00",  # UTF-16 with a BOM
])
FASTAPI = st.builds(
    lambda loc: b'{"detail":[{"msg":"field required","loc":' + loc + b"}]}",
    st.sampled_from([b'["body","x"]', nested(1020, "array"), b'"body"', b"null"]),
)
ERROR_BODIES = BODIES | HTML | FASTAPI | st.builds(with_raw, st.just(("error",)), RAW)


@given(st.integers(100, 599), ERROR_BODIES)
def test_any_error_body_gives_an_anthropic_error(status: int, body: bytes) -> None:
    out_status, out = translate_error(status, body)
    assert 400 <= out_status <= 599
    error = anthropic_error(out)
    assert len(error["message"]) <= 4000
    assert "<html" not in error["message"].lower()


def test_deep_fastapi_error_location_is_not_rendered() -> None:
    """Found by this suite (hypothesis raises the recursion limit, so outside it): str() of
    a 1000-deep `loc` overflowed Python's stack."""
    body = b'{"detail":[{"msg":"field required","loc":["body",' + nested(1020, "array") + b"]}]}"
    status, out = translate_error(422, body)
    assert (status, anthropic_error(out)["message"]) == (422, "body: field required")


# ---- the processor, phase by phase ------------------------------------------------------------

GATEWAY = gateway()
REQUEST = orjson.dumps({"model": "claude-x", "max_tokens": 100, "tools": [
    {"name": "Bash", "input_schema": {"type": "object"}}], "messages": [{"role": "user", "content": "hi"}]})
CONTENT_TYPES = st.sampled_from([
    "application/json", "text/event-stream", "text/event-stream; charset=utf-8", "text/html", "",
])


def sse(*chunks: Any) -> bytes:
    return b"".join(b"data: " + (c if isinstance(c, bytes) else orjson.dumps(c)) + b"\n\n" for c in chunks)


GOOD_STREAM = sse(
    {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"reasoning": "hmm "}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"content": "héllo 😀"}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": '{"command": "ls"}'}}]}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    b"[DONE]",
)
STREAM_BODIES = st.one_of(
    st.just(GOOD_STREAM),
    st.builds(corrupt, st.just(GOOD_STREAM), st.integers(0, 10**4), INVALID_UTF8),
    st.builds(lambda cut: GOOD_STREAM[:cut], st.integers(0, len(GOOD_STREAM))),
    st.builds(lambda raw: sse(raw), RAW),
    st.builds(lambda raw: sse({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "Bash", "arguments": "SLOT"}}]}}]}
    ).replace(b'"SLOT"', raw) + sse(b"[DONE]"), RAW),
    st.binary(max_size=300),
)


async def drive(status: int, content_type: str, body: bytes, cuts: list[int],
                empty_last: bool, stream: bool) -> tuple[Continue | Respond, bytes, bool]:
    """Request, then the response as Envoy would deliver it. Returns (headers action,
    bytes the client gets after the headers, whether the body was streamed)."""
    processor = MessagesProcessor(info(), GATEWAY)
    try:
        request = REQUEST if not stream else REQUEST.replace(b'"max_tokens"', b'"stream":true,"max_tokens"')
        sent = await processor.request_body(request, True)
        assert isinstance(sent, Continue)
        headers = {":status": str(status), "content-type": content_type}
        head = await processor.response_headers(headers, not body and not empty_last)
        if isinstance(head, Respond) or (not body and not empty_last):
            return head, head.body or b"" if isinstance(head, Continue) else b"", False
        streamed = head.stream_response
        # Buffered: the whole body in one message. Streamed: any chunking, and the end of the
        # body possibly a message of its own.
        chunks = split_at(body, cuts) if streamed else [body]
        if empty_last and streamed:
            chunks.append(b"")
        out = b""
        for number, chunk in enumerate(chunks):
            action = await processor.response_body(chunk, number == len(chunks) - 1)
            if isinstance(action, Respond):
                assert not streamed, "headers already went out: too late for an immediate reply"
                return action, action.body, False
            out += action.body if action.body is not None else chunk
            if action.skip_rest:  # the ext_proc stream ends: Envoy passes the rest untouched
                return head, out + b"".join(chunks[number + 1:]), streamed
        return head, out, streamed
    finally:
        processor.close()


def check_client_view(status: int, head: Continue | Respond, out: bytes, body: bytes,
                      streamed: bool) -> None:
    if isinstance(head, Respond):
        anthropic_error(head.body)
        event("respond")
    elif streamed:
        outcome = stream_outcome(out)
        event(f"stream {outcome}")
        # A stream is complete only if the backend's [DONE] arrived whole.
        assert (outcome == "complete") <= (b"data: [DONE]\n\n" in body)
    elif not 200 <= status < 300:
        anthropic_error(out)
        event("error")
    else:
        event("message")
        assert anthropic_message(out).model == "claude-x"


@example(200, "text/event-stream", GOOD_STREAM[:-3], [], True, True)  # cut inside [DONE]
@example(200, "text/event-stream", GOOD_STREAM, [], False, True)
@given(
    status=st.sampled_from([200, 201]),
    content_type=st.sampled_from(["text/event-stream", "text/event-stream; charset=utf-8"]),
    body=STREAM_BODIES,
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    empty_last=st.booleans(),
    stream=st.booleans(),
)
def test_any_backend_stream_through_the_processor(
    status: int, content_type: str, body: bytes, cuts: list[int], empty_last: bool, stream: bool
) -> None:
    head, out, streamed = asyncio.run(drive(status, content_type, body, cuts, empty_last, stream))
    check_client_view(status, head, out, body, streamed)


@example(200, "application/json", b"", [], False, False)  # a success status with no body
@example(200, "text/event-stream", b"", [], False, True)
@given(
    status=st.sampled_from([200, 201, 400, 401, 404, 429, 500, 502, 503, 529, 599]),
    content_type=CONTENT_TYPES,
    body=STREAM_BODIES | BODIES | HTML | FASTAPI,
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    empty_last=st.booleans(),
    stream=st.booleans(),
)
def test_any_backend_answer_through_the_processor(
    status: int, content_type: str, body: bytes, cuts: list[int], empty_last: bool, stream: bool
) -> None:
    head, out, streamed = asyncio.run(drive(status, content_type, body, cuts, empty_last, stream))
    check_client_view(status, head, out, body, streamed)
