"""Streaming through real Envoy: the SDK's accumulated message equals the non-streaming one,
the raw bytes are exact Anthropic SSE, and backend failures end in `event: error`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message

from e2e.harness import REPO, Gateway, MockBackend

MODEL = "claude-sonnet-4-6"  # -> qwen3-coder
BASH = {
    "name": "bash",
    "description": "Run a shell command",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
}
READ = {
    "name": "read_file",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}
# A broken HTTP body as the SDK's transport reports it (newer SDKs ship their own httpx fork).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError,)
if importlib.util.find_spec("httpx2") is not None:
    import httpx2

    TRANSPORT_ERRORS += (httpx2.HTTPError,)
OPENAI_LEAKS = (b"chat.completion", b"[DONE]", b'"choices"', b'"finish_reason"', b'"delta":{"content"')


def params(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 512,
            "messages": [{"role": "user", "content": text}], **extra}


def blocks(message: Message) -> list[dict[str, Any]]:
    return [b.model_dump(exclude_none=True, exclude={"parsed_output"}) for b in message.content]


def both_ways(
    client: anthropic.Anthropic, backend: MockBackend, item: dict[str, Any],
    json_item: dict[str, Any] | None = None, **extra: Any,
) -> tuple[Message, Message]:
    """The same backend answer once as JSON, once as SSE: (non-streaming, streamed) messages."""
    backend.script(json_item or item, item)
    plain = client.messages.create(**params(**extra))
    with client.messages.stream(**params(**extra)) as stream:
        streamed = stream.get_final_message()
    first, second = (r["body"] for r in backend.requests())
    assert first["stream"] is False
    assert second["stream"] is True
    return plain, streamed


def assert_same(plain: Message, streamed: Message) -> None:
    assert blocks(streamed) == blocks(plain)
    assert streamed.stop_reason == plain.stop_reason
    assert streamed.stop_sequence == plain.stop_sequence
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert streamed.usage.input_tokens == plain.usage.input_tokens
    assert streamed.model == plain.model == MODEL
    assert streamed.role == "assistant"


# ---- the SDK: streamed == non-streamed ------------------------------------------------------


@pytest.mark.parametrize("family", ["qwen3-coder", "glm", "minimax", "plain"])
def test_text(anthropic_client: anthropic.Anthropic, backend: MockBackend, family: str) -> None:
    item = {"text": "Streaming works: one, two, three, four, five. Done.", "family": family}
    plain, streamed = both_ways(anthropic_client, backend, item)
    assert_same(plain, streamed)
    assert blocks(streamed) == [{"type": "text", "text": item["text"]}]
    assert streamed.stop_reason == "end_turn"


def test_text_stream_yields_the_pieces_in_order(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"text": "alpha beta gamma delta epsilon"})
    with anthropic_client.messages.stream(**params()) as stream:
        pieces = list(stream.text_stream)
    assert len(pieces) > 1  # really streamed, not one collapsed chunk
    assert "".join(pieces) == "alpha beta gamma delta epsilon"


@pytest.mark.parametrize("dialect", ["current", "transitional", "reasoning_content", "legacy"])
def test_thinking(anthropic_client: anthropic.Anthropic, backend: MockBackend, dialect: str) -> None:
    item = {"reasoning": "First I consider the question. Then I answer.", "text": "The answer.",
            "dialect": dialect}
    plain, streamed = both_ways(anthropic_client, backend, item,
                                thinking={"type": "enabled", "budget_tokens": 256})
    assert_same(plain, streamed)
    assert [b["type"] for b in blocks(streamed)] == ["thinking", "text"]
    assert streamed.content[0].thinking == item["reasoning"]  # type: ignore[union-attr]
    assert streamed.content[0].signature  # type: ignore[union-attr]


@pytest.mark.parametrize("family", ["qwen3", "qwen3-coder", "glm", "kimi", "minimax", "plain"])
def test_single_tool_call(anthropic_client: anthropic.Anthropic, backend: MockBackend, family: str) -> None:
    item = {"family": family, "tool_calls": [
        {"name": "bash", "arguments": {"command": "grep -rn \"needle\" src/ | head -5"},
         "id": "call_single"}]}
    plain, streamed = both_ways(anthropic_client, backend, item, tools=[BASH])
    assert_same(plain, streamed)
    tool = blocks(streamed)[-1]
    assert tool == {"type": "tool_use", "id": "call_single", "name": "bash",
                    "input": {"command": "grep -rn \"needle\" src/ | head -5"}}
    assert streamed.stop_reason == "tool_use"


@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("family", ["qwen3", "qwen3-coder", "kimi"])
def test_parallel_tool_calls(
    anthropic_client: anthropic.Anthropic, backend: MockBackend, family: str, interleave: bool
) -> None:
    item = {"family": family, "interleave_tool_calls": interleave, "tool_calls": [
        {"name": "bash", "arguments": {"command": "ls -la"}, "id": "call_a"},
        {"name": "read_file", "arguments": {"path": "README.md"}, "id": "call_b"},
        {"name": "bash", "arguments": {"command": "git status"}, "id": "call_c"},
    ]}
    plain, streamed = both_ways(anthropic_client, backend, item, tools=[BASH, READ])
    assert_same(plain, streamed)
    assert [(b["id"], b["input"]) for b in blocks(streamed) if b["type"] == "tool_use"] == [
        ("call_a", {"command": "ls -la"}),
        ("call_b", {"path": "README.md"}),
        ("call_c", {"command": "git status"}),
    ]


@pytest.mark.parametrize("arguments", [
    json.dumps(json.dumps({"command": "ls -1"})),  # encoded twice
    '```json\n{"command": "ls -1"}\n```',  # in a code fence
    "",  # no arguments at all
], ids=["double-encoded", "code-fence", "empty"])
def test_repairable_tool_arguments(
    anthropic_client: anthropic.Anthropic, backend: MockBackend, arguments: str
) -> None:
    item = {"tool_calls": [{"name": "bash", "arguments": arguments, "id": "call_r"}]}
    plain, streamed = both_ways(anthropic_client, backend, item, tools=[BASH])
    assert_same(plain, streamed)
    expected = {} if not arguments else {"command": "ls -1"}
    assert blocks(streamed)[-1] == {"type": "tool_use", "id": "call_r", "name": "bash",
                                    "input": expected}


def test_unrepairable_tool_arguments_are_reported(
    gateway: Gateway, anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    """Never `{}` standing in for arguments we could not read: an error on both paths."""
    item = {"tool_calls": [{"name": "bash", "arguments": '{"command": "ls"}{"command": "rm"}'}]}
    backend.script(item)
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_client.messages.create(**params(tools=[BASH]))
    assert caught.value.status_code == 502
    assert "bash" in caught.value.body["error"]["message"]  # type: ignore[index]

    backend.script(item)
    error = error_event(raw_stream(gateway, params(tools=[BASH])).content)
    assert error["error"]["type"] == "api_error"
    assert "bash" in error["error"]["message"]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"id": "chatcmpl-raw", "object": "chat.completion.chunk",
                                  "created": 1, "model": "qwen3-coder", "choices": [choice]}) + "\n\n"


def _sse(*deltas: dict[str, Any], finish: str | None = "tool_calls", done: bool = True,
         usage: dict[str, int] | None = None) -> str:
    parts = [_chunk({"role": "assistant", "content": ""})]
    parts += [_chunk(d) for d in deltas]
    if finish is not None:
        parts.append(_chunk({}, finish))
    if usage is not None:
        parts.append("data: " + json.dumps({"id": "chatcmpl-raw", "object": "chat.completion.chunk",
                                            "created": 1, "model": "qwen3-coder", "choices": [],
                                            "usage": usage}) + "\n\n")
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts)


def test_text_after_tool_call(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    """A backend that streams a tool call and then text: nothing is dropped."""
    usage = {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32}
    sse = _sse(
        {"tool_calls": [{"index": 0, "id": "call_t", "type": "function",
                         "function": {"name": "bash", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"command": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"date"}'}}]},
        {"content": "I will run "},
        {"content": "date now."},
        usage=usage,
    )
    completion = {
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": "qwen3-coder",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "I will run date now.",
            "tool_calls": [{"id": "call_t", "type": "function",
                            "function": {"name": "bash", "arguments": '{"command": "date"}'}}]}}],
        "usage": usage,
    }
    sse_item = {"raw_body": sse, "content_type": "text/event-stream"}
    json_item = {"raw_body": json.dumps(completion), "content_type": "application/json"}
    plain, streamed = both_ways(anthropic_client, backend, sse_item, json_item, tools=[BASH])
    # JSON cannot say which came first; the stream keeps the backend's order. Same blocks.
    assert sorted(blocks(streamed), key=lambda b: b["type"]) == sorted(
        blocks(plain), key=lambda b: b["type"])
    assert blocks(streamed) == [
        {"type": "tool_use", "id": "call_t", "name": "bash", "input": {"command": "date"}},
        {"type": "text", "text": "I will run date now."},
    ]
    assert streamed.stop_reason == plain.stop_reason == "tool_use"
    assert streamed.usage.output_tokens == plain.usage.output_tokens == 12


def test_content_before_tool_calls_kimi(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    item = {"family": "kimi", "text": "Let me check the directory.",
            "tool_calls": [{"name": "bash", "arguments": {"command": "ls"}}]}
    plain, streamed = both_ways(anthropic_client, backend, item, tools=[BASH])
    assert_same(plain, streamed)
    assert [b["type"] for b in blocks(streamed)] == ["text", "tool_use"]
    assert streamed.content[1].id == "functions.bash:0"  # type: ignore[union-attr]


def test_stop_sequence(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    item = {"text": "first part ### second part"}
    plain, streamed = both_ways(anthropic_client, backend, item, stop_sequences=["###", "@@@"])
    assert_same(plain, streamed)
    assert streamed.stop_reason == "stop_sequence"
    assert streamed.stop_sequence == "###"
    assert blocks(streamed) == [{"type": "text", "text": "first part "}]


@pytest.mark.parametrize("family", ["qwen3-coder", "minimax"])
def test_max_tokens(anthropic_client: anthropic.Anthropic, backend: MockBackend, family: str) -> None:
    item = {"family": family,
            "text": "one two three four five six seven eight nine ten eleven twelve thirteen"}
    plain, streamed = both_ways(anthropic_client, backend, item, max_tokens=6)
    assert_same(plain, streamed)
    assert streamed.stop_reason == "max_tokens"
    assert streamed.usage.output_tokens == 6


def test_usage_with_cache_read(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    item = {"text": "cached answer", "usage": {"prompt_tokens": 300, "completion_tokens": 2},
            "cached_tokens": 256}
    plain, streamed = both_ways(anthropic_client, backend, item)
    assert_same(plain, streamed)
    assert streamed.usage.input_tokens == 44
    assert streamed.usage.cache_read_input_tokens == plain.usage.cache_read_input_tokens == 256
    assert streamed.usage.output_tokens == 2


def test_stream_request_fields(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "ok"})
    with anthropic_client.messages.stream(**params()) as stream:
        stream.get_final_message()
    body = backend.requests()[0]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


# ---- raw bytes ------------------------------------------------------------------------------


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Strict: every event is exactly one `event:` line and one `data:` line."""
    assert raw.endswith(b"\n\n"), raw[-200:]
    events = []
    for block in raw.decode().split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: "), block
        assert lines[1].startswith("data: "), block
        name = lines[0].removeprefix("event: ")
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


def check_grammar(events: list[tuple[str, dict[str, Any]]]) -> None:
    """message_start, blocks one at a time with indices from 0, message_delta, message_stop."""
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    open_index: int | None = None
    next_index = 0
    for name, data in events[1:-2]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_index is None
            assert data["index"] == next_index
            open_index, next_index = next_index, next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            pytest.fail(f"unexpected event {name} mid-message")
    assert open_index is None


def raw_stream(gateway: Gateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/messages", json={**body, "stream": True},
                      headers={"anthropic-version": "2023-06-01", "x-api-key": "dummy"}, timeout=20)


@pytest.mark.parametrize("item", [
    {"text": "plain text answer with a few words"},
    {"reasoning": "thinking hard", "text": "then text", "dialect": "transitional"},
    {"family": "glm", "text": "calling", "tool_calls": [{"name": "bash", "arguments": {"command": "ls"}}]},
    {"family": "qwen3", "interleave_tool_calls": True, "tool_calls": [
        {"name": "bash", "arguments": {"command": "a"}}, {"name": "bash", "arguments": {"command": "b"}}]},
], ids=["text", "thinking", "tool", "parallel"])
def test_raw_sse_is_exact_anthropic(gateway: Gateway, backend: MockBackend, item: dict[str, Any]) -> None:
    backend.script(item)
    reply = raw_stream(gateway, params(tools=[BASH], thinking={"type": "enabled", "budget_tokens": 100}))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in reply.headers
    for leak in OPENAI_LEAKS:
        assert leak not in reply.content
    events = parse_sse(reply.content)
    check_grammar(events)
    start = events[0][1]["message"]
    assert start["model"] == MODEL
    assert start["content"] == []
    assert start["usage"]["input_tokens"] > 0  # continuous usage stats: the real prompt size
    for name, data in events:
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            assert isinstance(data["delta"]["partial_json"], str)
        if name == "content_block_start" and data["content_block"]["type"] == "tool_use":
            assert data["content_block"]["input"] == {}


def test_first_event_leaves_before_the_backend_finishes(
    gateway: Gateway, backend: MockBackend
) -> None:
    """Chunks are translated as they arrive, not collected: events come in several reads."""
    backend.script({"text": "slow stream of words to pace out", "chunk_delay_s": 0.05})
    reads = []
    with httpx.stream("POST", gateway.url + "/v1/messages",
                      json={**params(), "stream": True}, timeout=20) as reply:
        for chunk in reply.iter_raw():
            reads.append(chunk)
    assert len(reads) > 3
    assert reads[0].startswith(b"event: message_start\n")
    check_grammar(parse_sse(b"".join(reads)))


# ---- failures ------------------------------------------------------------------------------


def error_event(raw: bytes) -> dict[str, Any]:
    """The stream ends with exactly one `event: error`, after which nothing follows."""
    for leak in OPENAI_LEAKS:
        assert leak not in raw
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert names[-1] == "error", names
    assert names.count("error") == 1
    assert "message_stop" not in names
    return events[-1][1]


def test_in_stream_error_event(gateway: Gateway, anthropic_client: anthropic.Anthropic,
                               backend: MockBackend) -> None:
    failure = {"text": "this answer will break midway through", "family": "qwen3",
               "stream_error": {"after_chunks": 3, "message": "CUDA out of memory", "code": 500}}
    backend.script(failure)
    error = error_event(raw_stream(gateway, params()).content)
    assert error == {"type": "error", "error": {"type": "api_error", "message": "CUDA out of memory"}}

    backend.script(failure)
    with pytest.raises(anthropic.APIStatusError) as caught, \
            anthropic_client.messages.stream(**params()) as stream:
        stream.get_final_message()
    assert "CUDA out of memory" in str(caught.value)
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_in_stream_error_legacy_shape(gateway: Gateway, backend: MockBackend) -> None:
    backend.script({"text": "x y z w", "dialect": "legacy",
                    "stream_error": {"after_chunks": 2, "message": "engine dead", "code": 503}})
    error = error_event(raw_stream(gateway, params()).content)
    assert error["error"] == {"type": "overloaded_error", "message": "engine dead"}


def test_truncated_stream_without_finish_or_done(
    gateway: Gateway, anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    cut = _sse({"content": "half an ans"}, finish=None, done=False)
    item = {"raw_body": cut, "content_type": "text/event-stream"}
    backend.script(item)
    error = error_event(raw_stream(gateway, params()).content)
    assert error["error"]["type"] == "api_error"

    backend.script(item)
    with pytest.raises(anthropic.APIStatusError), \
            anthropic_client.messages.stream(**params()) as stream:
        stream.get_final_message()


def test_truncated_mid_event(gateway: Gateway, backend: MockBackend) -> None:
    """The mock's `truncate`: the body ends cleanly in the middle of the last event, no [DONE]."""
    backend.script({"text": "cut short answer", "truncate": True})
    raw = raw_stream(gateway, params()).content
    error = error_event(raw)
    assert error["error"]["type"] == "api_error"


def test_truncated_before_finish_reason(gateway: Gateway, backend: MockBackend) -> None:
    cut = _sse({"content": "partial "}, {"content": "words"}, finish=None, done=False)
    cut += 'data: {"id":"chatcmpl-raw","object":"chat.completion.chunk","choi'
    backend.script({"raw_body": cut, "content_type": "text/event-stream"})
    error_event(raw_stream(gateway, params()).content)


@pytest.mark.parametrize("pace", [0.0, 0.05], ids=["burst", "paced"])
def test_backend_disconnect_mid_stream(
    gateway: Gateway, anthropic_client: anthropic.Anthropic, backend: MockBackend, pace: float
) -> None:
    """The backend drops the connection after a few chunks: the client never sees a
    complete-looking message. In a burst the drop may beat the response headers: an Anthropic
    5xx from Envoy. Paced, the response has started; Envoy resets the client's stream (an
    upstream reset reaches no filter, so no `event: error` can be written): a broken body."""
    item = {"text": "a long answer that the backend never finishes sending", "family": "qwen3",
            "disconnect_after_chunks": 4, "chunk_delay_s": pace}
    backend.script(item)
    received = b""
    broken = False
    with httpx.stream("POST", gateway.url + "/v1/messages", json={**params(), "stream": True},
                      timeout=20) as reply:
        try:
            for chunk in reply.iter_raw():
                received += chunk
        except httpx.HTTPError:
            broken = True
    for leak in OPENAI_LEAKS:
        assert leak not in received
    if reply.status_code == 200:
        assert b"message_stop" not in received
        if pace:
            assert b"content_block_delta" in received  # it really broke mid-stream
        if not broken:
            error_event(received)
    else:
        assert pace == 0.0
        assert reply.status_code in (502, 503)
        assert json.loads(received)["type"] == "error"

    backend.script(item)
    with pytest.raises((anthropic.APIError, *TRANSPORT_ERRORS)), \
            anthropic_client.messages.stream(**params()) as stream:
        stream.get_final_message()


@pytest.mark.parametrize(("status", "exc_class", "error_type"), [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (503, anthropic.ServiceUnavailableError, "overloaded_error"),
])
def test_non_2xx_answer_to_streaming_request(
    gateway: Gateway, anthropic_client: anthropic.Anthropic, backend: MockBackend,
    status: int, exc_class: type[anthropic.APIStatusError], error_type: str,
) -> None:
    item = {"error": {"status": status, "message": f"refused with {status}"}}
    backend.script(item)
    reply = raw_stream(gateway, params())
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == {"type": "error",
                            "error": {"type": error_type, "message": f"refused with {status}"}}

    backend.script(item)
    with pytest.raises(exc_class) as caught, \
            anthropic_client.messages.stream(**params()) as stream:
        stream.get_final_message()
    assert caught.value.status_code == status
    assert caught.value.body["error"]["message"] == f"refused with {status}"  # type: ignore[index]


# ---- real Claude Code requests, replayed verbatim ------------------------------------------

CLAUDE_CODE = REPO.parent / "shared" / "fixtures" / "claude-code"  # as tests/conftest.py
_HOP_HEADERS = {"host", "content-length", "connection"}


def _fixtures() -> list[Path]:
    return sorted(CLAUDE_CODE.glob("*.json")) if CLAUDE_CODE.is_dir() else []


@pytest.mark.skipif(not _fixtures(), reason="no Claude Code fixtures")
@pytest.mark.parametrize("fixture", _fixtures(), ids=lambda p: p.stem)
def test_claude_code_request_replayed(gateway: Gateway, backend: MockBackend, fixture: Path) -> None:
    """Claude Code's own bytes and headers (path `?beta=true`); the mock's default rules answer."""
    captured = json.loads(fixture.read_text())
    headers = {k: v for k, v in captured["headers"].items() if k.lower() not in _HOP_HEADERS}
    reply = httpx.request(captured["method"], gateway.url + captured["path"],
                          content=json.dumps(captured["body"]).encode(), headers=headers, timeout=20)
    assert reply.status_code == 200, reply.text
    for leak in OPENAI_LEAKS:
        assert leak not in reply.content
    events = parse_sse(reply.content)
    check_grammar(events)

    seen = backend.requests()
    assert len(seen) == 1
    sent = seen[0]
    assert sent["path"] == "/v1/chat/completions"
    assert not any(name.startswith("anthropic-") or name == "x-api-key" for name in sent["headers"])
    body = sent["body"]
    assert body["model"] == "qwen3-coder"
    assert body["max_tokens"] == 4096  # Claude Code asks 32000; the model's limit is 4096
    assert body["stream"] is True
    roles = [m["role"] for m in body["messages"]]
    assert roles[0] == "system"
    assert "system" not in roles[1:]  # mid-conversation system entries hoisted
    assert "x-anthropic-billing-header" not in body["messages"][0]["content"]
    assert len(body["tools"]) == len(captured["body"]["tools"])
    assert all(t["type"] == "function" for t in body["tools"])
    assert all(isinstance(m.get("content"), str | list | None) for m in body["messages"])
    assert '"type":"thinking"' not in json.dumps(body["messages"], separators=(",", ":"))

    stop = next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"]
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    conversation = json.dumps(captured["body"]["messages"])
    if "Run the shell command" in conversation and '"tool_result"' not in conversation:
        assert stop == "tool_use"
        tool = starts[-1]
        assert tool["type"] == "tool_use"
        assert tool["name"] == "Bash"
        partial = "".join(d["delta"]["partial_json"] for n, d in events
                          if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        assert json.loads(partial)["command"] == "echo acceptance-ok"
    else:
        assert stop == "end_turn"
        assert starts[-1]["type"] == "text"
        text = "".join(d["delta"]["text"] for n, d in events
                       if n == "content_block_delta" and d["delta"]["type"] == "text_delta")
        # The mock quotes a tool result, or echoes the prompt.
        assert ("acceptance-ok" if '"tool_result"' in conversation else "Hello! You said:") in text
    if roles.count("tool"):
        tool_message = body["messages"][roles.index("tool")]
        tool_use_ids = [b["id"] for m in captured["body"]["messages"] if m["role"] == "assistant"
                        and isinstance(m["content"], list) for b in m["content"]
                        if b["type"] == "tool_use"]
        assert tool_message["tool_call_id"] in tool_use_ids
