"""What the bench sends and what the canned backend answers, in one place.

Requests are Anthropic Messages bodies (~1 KB, and a ~80 KB Claude Code first request with its
tools). Responses are OpenAI chat completions, precomputed as raw HTTP/1.1 bytes so the backend
only copies memory. A request may carry a 12-character nonce after `NONCE_TAG`; the backend
echoes it in the answer's first token (text) or tool arguments, so the soak can tell whether each
client got its own answer.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import orjson

FIXTURE = Path(
    os.environ.get(
        "BENCH_FIXTURE", "/work/shared/fixtures/claude-code/01-first-request-tool-turn.json"
    )
)

# Model names pick the backend's behaviour; every target passes them through untouched.
MODEL_TEXT = "bench-text"  # canned text: JSON, or SSE written in one go
MODEL_PACED = "bench-paced"  # SSE chunks spaced like token generation
MODEL_TOOL = "bench-tool"  # a Bash tool call (soak only)

NONCE_TAG = b"bench-nonce-"
NONCE_LEN = 12
DEFAULT_NONCE = b"firsttoken00"
TOKENS = 20  # content chunks per streamed answer
PACE_S = 0.010  # gap between paced chunks
PROMPT_TOKENS = 123
TOOL_NAME = "Bash"
# Every target gets the same key header; LiteLLM uses it as its master key (it refuses to start
# without one), the others ignore it.
API_KEY = "sk-bench-4c1d9e7a2b5f8e3c6a0d9b7e5f2a8c41"


# ---- requests --------------------------------------------------------------------------------


BASH_TOOL = {
    "name": TOOL_NAME,
    "description": "Run a shell command.",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                     "required": ["command"]},
}


def small_request(model: str, stream: bool) -> dict[str, Any]:
    """About 1 KB: a system prompt and a three-turn conversation (plus the Bash tool for the
    tool-calling model: gateways drop calls to tools the client never declared)."""
    filler = "Keep answers short and concrete. " * 6
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 1024,
        "system": "You are a helpful assistant for a benchmark. " + filler,
        "messages": [
            {"role": "user", "content": "Summarise what an Envoy external processor does. " + filler},
            {"role": "assistant", "content": "It lets a gRPC service inspect and rewrite HTTP traffic."},
            {"role": "user", "content": [{"type": "text", "text": "And why would one use it? " + filler}]},
        ],
        "temperature": 0.7,
        "stream": stream,
    }
    if model == MODEL_TOOL:
        body["tools"] = [BASH_TOOL]
    return body


def _synthetic_large() -> dict[str, Any]:
    """~80 KB with 20 tools, for machines without the shared Claude Code fixture."""
    schema = {
        "type": "object",
        "properties": {f"arg{i}": {"type": "string", "description": "x" * 200} for i in range(8)},
        "required": ["arg0"],
    }
    tools = [
        {"name": f"tool_{i}", "description": "Does a thing. " * 120, "input_schema": schema}
        for i in range(20)
    ]
    system = [{"type": "text", "text": "You are a coding agent. " * 400}]
    return {
        "model": MODEL_TEXT,
        "max_tokens": 32000,
        "system": system,
        "tools": tools,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Run the tests."}]}],
    }


def large_request_template() -> tuple[dict[str, Any], str]:
    """(body, where it came from)."""
    try:
        body = orjson.loads(FIXTURE.read_bytes())["body"]
        return body, f"{FIXTURE.name} ({len(body.get('tools', []))} tools)"
    except (OSError, ValueError, KeyError):
        return _synthetic_large(), "synthetic (Claude Code fixture not found)"


def large_request(model: str, stream: bool, template: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body["model"] = model
    body["stream"] = stream
    return body


def with_nonce(body: dict[str, Any], nonce: str) -> dict[str, Any]:
    """Append a text block carrying the nonce to the first user message."""
    body = copy.deepcopy(body)
    tag = (NONCE_TAG + nonce.encode()).decode()
    for message in body["messages"]:
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            message["content"] = [*content, {"type": "text", "text": tag}]
            break
    return body


def http_request(path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    """The raw HTTP/1.1 request the Python client sends (wrk sends the same headers)."""
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"anthropic-version: 2023-06-01\r\nx-api-key: {API_KEY}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# ---- canned OpenAI answers ------------------------------------------------------------------


def token_text(index: int, nonce: bytes = DEFAULT_NONCE) -> str:
    return f"{nonce.decode()} " if index == 0 else f"w{index:02d} "


def expected_text(nonce: bytes = DEFAULT_NONCE) -> str:
    return "".join(token_text(i, nonce) for i in range(TOKENS))


def tool_arguments(nonce: bytes = DEFAULT_NONCE) -> str:
    return orjson.dumps({"command": f"echo {nonce.decode()}"}).decode()


_ID = "chatcmpl-bench0123456789abcdef"
_CREATED = 1_700_000_000


def _usage() -> dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS + TOKENS,
            "completion_tokens": TOKENS}


def _completion(message: dict[str, Any], finish: str) -> bytes:
    return orjson.dumps({
        "id": _ID, "object": "chat.completion", "created": _CREATED, "model": "bench",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish,
                     "stop_reason": None}],
        "usage": _usage(),
    })


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: bool = False) -> bytes:
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    ]
    data: dict[str, Any] = {"id": _ID, "object": "chat.completion.chunk", "created": _CREATED,
                            "model": "bench", "choices": choices}
    if usage:
        data["usage"] = _usage()
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
HTTP_END = b"0\r\n\r\n"


def _json_response(body: bytes) -> bytes:
    return JSON_HEAD % len(body) + body


def text_events() -> list[bytes]:
    """SSE events of a text answer: role + first token, 19 more tokens, finish + usage + DONE."""
    events = [_chunk({"role": "assistant", "content": token_text(0)})]
    events += [_chunk({"content": token_text(i)}) for i in range(1, TOKENS)]
    events.append(_chunk({"content": ""}, finish="stop") + _chunk(None, usage=True)
                  + b"data: [DONE]\n\n")
    return events


def tool_events() -> list[bytes]:
    args = tool_arguments()
    half = len(args) // 2
    call = {"index": 0, "id": "call_bench01", "type": "function",
            "function": {"name": TOOL_NAME, "arguments": ""}}
    return [
        _chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[:half]}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[half:]}}]}),
        _chunk({}, finish="tool_calls") + _chunk(None, usage=True) + b"data: [DONE]\n\n",
    ]


def canned_responses() -> dict[str, bytes | list[bytes]]:
    """Raw HTTP responses by kind; 'paced' is a list of writes, one HTTP chunk each."""
    text_message = {"role": "assistant", "content": expected_text(), "tool_calls": []}
    tool_message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_bench01", "type": "function",
         "function": {"name": TOOL_NAME, "arguments": tool_arguments()}}]}
    events = text_events()
    writes = [*events[:-2], events[-2] + events[-1]]  # the last token carries the finish
    paced = [_http_chunk(e) for e in writes]
    paced[0] = SSE_HEAD + paced[0]
    paced[-1] += HTTP_END
    return {
        "text_json": _json_response(_completion(text_message, "stop")),
        "tool_json": _json_response(_completion(tool_message, "tool_calls")),
        "text_sse": SSE_HEAD + _http_chunk(b"".join(text_events())) + HTTP_END,
        "tool_sse": SSE_HEAD + _http_chunk(b"".join(tool_events())) + HTTP_END,
        "paced": paced,
        "models": _json_response(orjson.dumps({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "bench"}
            for m in (MODEL_TEXT, MODEL_PACED, MODEL_TOOL)]})),
    }
