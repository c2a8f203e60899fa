"""/v1/models, /tokenize, /health, /v1/messages (vLLM's Anthropic endpoint), fast mode, caching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from mock_helpers import BASH_TOOL, script, stream_chat, user

from extproc.mock_backend import running_mock
from extproc.mock_backend.tokenizer import count_tokens, render_openai_prompt


async def test_health(http: Any) -> None:
    response = await http.get("/health")
    assert (response.status_code, response.content) == (200, b"")


async def test_models_lists_served_names_in_vllm_shape(http: Any) -> None:
    await http.post("/__mock/config", json={"models": ["qwen3-coder", "glm-4.6"]})
    body = (await http.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [card["id"] for card in body["data"]] == ["qwen3-coder", "glm-4.6"]
    card = body["data"][0]
    assert list(card) == [
        "id",
        "object",
        "created",
        "owned_by",
        "root",
        "parent",
        "max_model_len",
        "permission",
    ]
    assert (card["object"], card["owned_by"], card["parent"]) == ("model", "vllm", None)
    assert card["max_model_len"] == 131072
    assert card["permission"][0]["object"] == "model_permission"


async def test_unknown_model_is_a_404_with_vllms_message(http: Any) -> None:
    await http.post("/__mock/config", json={"models": ["qwen3-coder"]})
    response = await http.post(
        "/v1/chat/completions", json={"model": "gpt-4", "messages": user("x")}
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `gpt-4` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    ok = await http.post(
        "/v1/chat/completions", json={"model": "qwen3-coder", "messages": user("x")}
    )
    assert ok.status_code == 200


async def test_tokenize_prompt_and_messages(http: Any) -> None:
    body = (await http.post("/tokenize", json={"model": "m", "prompt": "Hello world"})).json()
    assert list(body) == ["count", "max_model_len", "tokens", "token_strs"]
    assert body["count"] == 2 and len(body["tokens"]) == 2 and body["token_strs"] is None
    again = (await http.post("/tokenize", json={"model": "m", "prompt": "Hello world"})).json()
    assert again["tokens"] == body["tokens"]  # deterministic ids

    messages = user("Run the shell command: ls")
    counted = (
        await http.post(
            "/tokenize", json={"model": "m", "messages": messages, "tools": [BASH_TOOL]}
        )
    ).json()["count"]
    completion = (
        await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": messages, "tools": [BASH_TOOL]}
        )
    ).json()
    assert counted == completion["usage"]["prompt_tokens"]
    no_prompt = (
        await http.post(
            "/tokenize", json={"model": "m", "messages": messages, "add_generation_prompt": False}
        )
    ).json()["count"]
    assert no_prompt == count_tokens(render_openai_prompt(messages, None, False))


async def test_cached_tokens_from_the_prefix_cache(http: Any) -> None:
    await http.post("/__mock/config", json={"prompt_tokens_details": True})
    system = {"role": "system", "content": "You are helpful. " * 40}
    first = [system, {"role": "user", "content": "first question"}]
    second = [system, {"role": "user", "content": "second question"}]
    usage1 = (await http.post("/v1/chat/completions", json={"messages": first})).json()["usage"]
    usage2 = (await http.post("/v1/chat/completions", json={"messages": second})).json()["usage"]
    assert usage1["prompt_tokens_details"] == {"cached_tokens": 0}
    cached = usage2["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0 and cached % 16 == 0 and cached < usage2["prompt_tokens"]
    _, data = await stream_chat(http, messages=second, stream_options={"include_usage": True})
    assert data[-2]["usage"]["prompt_tokens_details"]["cached_tokens"] >= cached


async def test_fast_mode_answers_from_precomputed_bytes(http: Any) -> None:
    await http.post("/__mock/config", json={"fast": True})
    one = await http.post("/v1/chat/completions", json={"model": "m", "messages": user("x")})
    two = await http.post("/v1/chat/completions", json={"model": "m", "messages": user("y")})
    assert one.content == two.content
    assert one.json()["choices"][0]["message"]["content"].startswith("Hello!")
    _, data = await stream_chat(http, model="m", messages=user("x"))
    assert data[-1] == "[DONE]" and data[-2]["choices"] == []
    assert (await http.get("/__mock/requests")).json() == []  # fast mode keeps no log


# --- vLLM's Anthropic-compatible endpoint ---------------------------------------------------------


async def test_messages_non_streaming_in_vllm_shape(http: Any) -> None:
    await script(http, {"text": "Hi.", "reasoning": "Be nice."})
    response = await http.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hello"}]},
    )
    body = response.json()
    assert list(body) == ["id", "type", "role", "content", "model", "stop_reason", "usage"]
    assert body["id"].startswith("chatcmpl-")
    thinking, text = body["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "Be nice."
    assert len(thinking["signature"]) == 32
    assert text == {"type": "text", "text": "Hi."}
    assert body["stop_reason"] == "end_turn"
    assert list(body["usage"]) == ["input_tokens", "output_tokens"]


async def test_messages_stream_with_the_anthropic_sdk(mock: Any, http: Any) -> None:
    await script(
        http, {"text": "Sure.", "tool_calls": [{"name": "Bash", "arguments": {"command": "ls"}}]}
    )
    client = anthropic.AsyncAnthropic(base_url=mock.url, api_key="sk-test")
    async with (
        client,
        client.messages.stream(
            model="qwen3-coder",
            max_tokens=200,
            messages=[{"role": "user", "content": "list files"}],
            tools=[{"name": "Bash", "input_schema": {"type": "object"}}],
        ) as stream,
    ):
        message = await stream.get_final_message()
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"command": "ls"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens > 0


async def test_messages_stream_quirks(http: Any) -> None:
    await script(http, {"text": "ok"})
    response = await http.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 10, "stream": True, "messages": user("x")},
    )
    lines = response.text.split("\n")
    assert lines[0] == "event: message_start"
    start = json.loads(lines[1][len("data: ") :])
    assert "type" not in start["message"] and "role" not in start["message"]  # vLLM omits them
    assert "event: ping" not in response.text
    assert response.text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')


async def test_messages_errors_are_anthropic_shaped(http: Any) -> None:
    await http.post("/__mock/config", json={"models": ["m"]})
    response = await http.post(
        "/v1/messages", json={"model": "other", "max_tokens": 10, "messages": user("x")}
    )
    assert response.status_code == 404
    assert response.json() == {
        "type": "error",
        "error": {"type": "NotFoundError", "message": "The model `other` does not exist."},
    }


async def test_messages_in_stream_error_is_an_error_event(http: Any) -> None:
    await script(http, {"text": "a b c", "stream_error": {"after_chunks": 2, "message": "down"}})
    response = await http.post(
        "/v1/messages", json={"model": "m", "max_tokens": 10, "stream": True, "messages": user("x")}
    )
    assert response.text.endswith(
        'event: error\ndata: {"type":"error","error":{"type":"internal_error","message":"down"}}\n\n'
    )
    assert "message_stop" not in response.text


async def test_count_tokens(http: Any) -> None:
    response = await http.post(
        "/v1/messages/count_tokens", json={"model": "m", "messages": user("hello there")}
    )
    body = response.json()
    assert body["input_tokens"] > 0
    assert body["context_management"] == {"original_input_tokens": body["input_tokens"]}


# --- the default rules drive a Claude Code round trip ------------------------------------------


SDK_KEYS = {"model", "messages", "system", "tools", "metadata", "max_tokens", "thinking"}


def _fixture_kwargs(directory: Path, name: str) -> dict[str, Any]:
    """A recorded Claude Code body as SDK arguments (fields the SDK lacks go in extra_body)."""
    body = json.loads((directory / name).read_text())["body"]
    body.pop("stream")
    kwargs = {k: v for k, v in body.items() if k in SDK_KEYS}
    kwargs["extra_body"] = {k: v for k, v in body.items() if k not in SDK_KEYS}
    return kwargs


@pytest.mark.parametrize("stream", [False, True])
async def test_claude_code_tool_turn_and_follow_up(
    claude_code_fixture_dir: Path, stream: bool
) -> None:
    async with running_mock(family="qwen3-coder") as mock:
        # An explicit timeout: the SDK refuses non-streaming calls with max_tokens 32000 otherwise.
        client = anthropic.AsyncAnthropic(base_url=mock.url, api_key="sk-test", timeout=30)
        async with client:
            first = _fixture_kwargs(claude_code_fixture_dir, "01-first-request-tool-turn.json")
            follow = _fixture_kwargs(claude_code_fixture_dir, "02-followup-with-tool-result.json")
            if stream:
                async with client.messages.stream(**first) as s:
                    call_message = await s.get_final_message()
                async with client.messages.stream(**follow) as s:
                    final = await s.get_final_message()
            else:
                call_message = await client.messages.create(**first)
                final = await client.messages.create(**follow)
    [call] = [b for b in call_message.content if b.type == "tool_use"]
    assert call.name == "Bash"
    assert call.input["command"] == "echo acceptance-ok"  # type: ignore[index]
    assert call_message.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "The command printed: acceptance-ok"  # type: ignore[union-attr]


async def test_api_key_guards_v1_paths_like_vllm(http: Any) -> None:
    await http.post("/__mock/config", json={"api_key": "sk-backend"})
    denied = await http.post("/v1/chat/completions", json={"messages": user("x")})
    assert (denied.status_code, denied.content) == (401, b'{"error":"Unauthorized"}')
    allowed = await http.post(
        "/v1/chat/completions",
        json={"messages": user("x")},
        headers={"Authorization": "Bearer sk-backend"},
    )
    assert allowed.status_code == 200
    assert (await http.get("/health")).status_code == 200  # not under /v1
    log = (await http.get("/__mock/requests")).json()
    assert [r["headers"].get("authorization") for r in log[:2]] == [None, "Bearer sk-backend"]


async def test_legacy_unknown_model_error(http: Any) -> None:
    await http.post("/__mock/config", json={"models": ["m"], "dialect": "legacy"})
    response = await http.post("/v1/chat/completions", json={"model": "x", "messages": user("x")})
    assert response.json() == {
        "object": "error",
        "message": "The model `x` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }


async def test_openai_sdk_sees_the_404_as_not_found(mock: Any, http: Any) -> None:
    await http.post("/__mock/config", json={"models": ["qwen3-coder"]})
    client = openai.AsyncOpenAI(base_url=mock.openai_base_url, api_key="sk-test", max_retries=0)
    async with client:
        with pytest.raises(openai.NotFoundError, match=r"The model `gpt-4` does not exist\."):
            await client.chat.completions.create(
                model="gpt-4", messages=[{"role": "user", "content": "x"}]
            )
