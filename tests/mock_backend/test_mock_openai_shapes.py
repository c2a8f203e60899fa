"""The mock's /v1/chat/completions bytes match vLLM's shapes, per dialect."""

from __future__ import annotations

from typing import Any

import pytest
from mock_helpers import BASH_TOOL, script, sse_data, stream_chat, user
from openai import AsyncOpenAI

MESSAGE_KEYS = {
    "current": [
        "role",
        "content",
        "refusal",
        "annotations",
        "audio",
        "function_call",
        "tool_calls",
        "reasoning",
    ],
    "transitional": [
        "role",
        "content",
        "refusal",
        "annotations",
        "audio",
        "function_call",
        "tool_calls",
        "reasoning",
        "reasoning_content",
    ],
    "reasoning_content": [
        "role",
        "content",
        "refusal",
        "annotations",
        "audio",
        "function_call",
        "tool_calls",
        "reasoning_content",
    ],
    "legacy": ["role", "reasoning_content", "content", "tool_calls"],
}
RESPONSE_KEYS = {
    "current": [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "service_tier",
        "system_fingerprint",
        "usage",
        "prompt_logprobs",
        "prompt_token_ids",
        "kv_transfer_params",
    ],
    "legacy": ["id", "object", "created", "model", "choices", "usage", "prompt_logprobs"],
}


async def test_non_streaming_response_has_vllm_fields_in_order(http: Any) -> None:
    await script(http, {"text": "Hi there.", "reasoning": "Greet back."})
    response = await http.post(
        "/v1/chat/completions", json={"model": "qwen3-8b", "messages": user("hello")}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # Compact JSON, like FastAPI's JSONResponse.
    assert b": " not in response.content and b", " not in response.content
    body = response.json()
    assert list(body) == RESPONSE_KEYS["current"]
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) == len("chatcmpl-") + 16
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert list(choice) == [
        "index",
        "message",
        "logprobs",
        "finish_reason",
        "stop_reason",
        "token_ids",
    ]
    assert list(choice["message"]) == MESSAGE_KEYS["current"]
    assert choice["message"]["content"] == "Hi there."
    assert choice["message"]["reasoning"] == "Greet back."
    assert choice["message"]["tool_calls"] == []
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", None)
    usage = body["usage"]
    assert list(usage) == [
        "prompt_tokens",
        "total_tokens",
        "completion_tokens",
        "prompt_tokens_details",
    ]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] is None


@pytest.mark.parametrize("dialect", sorted(MESSAGE_KEYS))
async def test_message_keys_follow_the_dialect(http: Any, dialect: str) -> None:
    await script(http, {"text": "ok", "reasoning": "why", "dialect": dialect})
    body = (await http.post("/v1/chat/completions", json={"messages": user("x")})).json()
    message = body["choices"][0]["message"]
    assert list(message) == MESSAGE_KEYS[dialect]
    for key in ("reasoning", "reasoning_content"):
        if key in message:
            assert message[key] == "why"
    if dialect == "legacy":
        assert list(body) == RESPONSE_KEYS["legacy"]
        assert len(body["id"]) == len("chatcmpl-") + 32


async def test_tool_call_response(http: Any) -> None:
    await script(http, {"tool_calls": [{"name": "Bash", "arguments": {"command": "ls"}}]})
    body = (
        await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": user("list"), "tools": [BASH_TOOL]},
        )
    ).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert list(call) == ["id", "type", "function"]
    assert call["id"].startswith("chatcmpl-tool-")
    assert call["function"] == {"name": "Bash", "arguments": '{"command": "ls"}'}


async def test_stream_chunk_sequence_with_usage(http: Any) -> None:
    await script(http, {"text": "Hello world"})
    response, data = await stream_chat(
        http, model="m", messages=user("x"), stream_options={"include_usage": True}
    )
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    # Events are `data: {...}\n\n` with no `event:` lines, ending with [DONE].
    assert "event:" not in response.text
    assert response.text.endswith("data: [DONE]\n\n")
    first, *deltas, finish, usage_chunk, done = data
    assert done == "[DONE]"
    assert first["choices"][0] == {
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": None,
    }
    assert list(first) == ["id", "object", "created", "model", "choices", "prompt_token_ids"]
    assert [d["choices"][0]["delta"] for d in deltas] == [
        {"content": "Hello"},
        {"content": " world"},
    ]
    assert all("stop_reason" not in d["choices"][0] for d in deltas)
    assert all(d["choices"][0]["token_ids"] is None for d in deltas)
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {"content": ""},
        "logprobs": None,
        "finish_reason": "stop",
        "stop_reason": None,
        "token_ids": None,
    }
    assert usage_chunk["choices"] == []
    assert list(usage_chunk["usage"]) == ["prompt_tokens", "total_tokens", "completion_tokens"]
    assert usage_chunk["usage"]["completion_tokens"] == 2
    assert len({c["id"] for c in data[:-1]}) == 1
    assert {c["object"] for c in data[:-1]} == {"chat.completion.chunk"}


async def test_stream_without_stream_options_has_no_usage(http: Any) -> None:
    _, data = await stream_chat(http, messages=user("hi"))
    assert all("usage" not in chunk for chunk in data[:-1])
    assert data[-2]["choices"][0]["finish_reason"] == "stop"


async def test_continuous_usage_stats_on_every_chunk(http: Any) -> None:
    await script(http, {"text": "one two three"})
    _, data = await stream_chat(
        http,
        messages=user("x"),
        stream_options={"include_usage": True, "continuous_usage_stats": True},
    )
    chunks = data[:-1]
    assert all("usage" in chunk for chunk in chunks)
    prompt = chunks[0]["usage"]["prompt_tokens"]
    running = [c["usage"]["completion_tokens"] for c in chunks]
    assert running == [0, 1, 2, 3, 3, 3]
    assert all(c["usage"]["prompt_tokens"] == prompt for c in chunks)
    assert all(
        c["usage"]["total_tokens"] == prompt + c["usage"]["completion_tokens"] for c in chunks
    )


async def test_transitional_dialect_pads_deltas_with_null_reasoning_content(http: Any) -> None:
    await script(http, {"text": "A", "reasoning": "R", "dialect": "transitional"})
    _, data = await stream_chat(http, messages=user("x"))
    deltas = [c["choices"][0]["delta"] for c in data[:-1]]
    assert deltas == [
        {"role": "assistant", "content": "", "reasoning_content": None},
        {"reasoning": "R", "reasoning_content": "R"},
        {"content": "A", "reasoning_content": None},
        {"content": "", "reasoning_content": None},
    ]


async def test_legacy_dialect_stream_has_no_token_id_fields(http: Any) -> None:
    await script(http, {"text": "A", "reasoning": "R", "dialect": "legacy"})
    _, data = await stream_chat(http, messages=user("x"))
    assert list(data[0]) == ["id", "object", "created", "model", "choices"]
    assert data[1]["choices"][0] == {
        "index": 0,
        "delta": {"reasoning_content": "R"},
        "logprobs": None,
        "finish_reason": None,
    }


async def test_openai_sdk_reads_text_reasoning_and_usage(mock: Any, http: Any) -> None:
    await script(http, {"text": "Hi!", "reasoning": "r"})
    client = AsyncOpenAI(base_url=mock.openai_base_url, api_key="sk-test")
    async with client:
        completion = await client.chat.completions.create(
            model="qwen3-8b", messages=[{"role": "user", "content": "hello"}]
        )
    message = completion.choices[0].message
    assert message.content == "Hi!"
    assert (message.model_extra or {})["reasoning"] == "r"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_openai_sdk_streams_tool_calls(mock: Any) -> None:
    client = AsyncOpenAI(base_url=mock.openai_base_url, api_key="sk-test")
    async with client:
        stream = await client.chat.completions.create(
            model="qwen3-coder-30b",
            messages=[{"role": "user", "content": "Run the shell command: echo hi"}],
            tools=[BASH_TOOL],  # type: ignore[list-item]
            stream=True,
            stream_options={"include_usage": True},
        )
        names: dict[int, str] = {}
        arguments: dict[int, str] = {}
        finish = None
        usage = None
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for call in choice.delta.tool_calls or ():
                    if call.function and call.function.name:
                        names[call.index] = call.function.name
                    if call.function and call.function.arguments:
                        arguments[call.index] = (
                            arguments.get(call.index, "") + call.function.arguments
                        )
    assert names == {0: "Bash"}
    assert arguments == {0: '{"command": "echo hi", "description": "Run echo hi"}'}
    assert finish == "tool_calls"
    assert usage is not None and usage.prompt_tokens > 0


def test_sse_helper_parses_done() -> None:
    assert sse_data('data: {"a":1}\n\ndata: [DONE]\n\n') == [{"a": 1}, "[DONE]"]
