"""Non-streaming Anthropic Messages through real Envoy with the real `anthropic` SDK.

Each test scripts the mock backend's answer, checks the `Message` the SDK returns, and checks
what reached the backend, field by field (GET /__mock/requests).
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock, ThinkingBlock, ToolUseBlock

from e2e.harness import MockBackend

MODEL = "claude-sonnet-4-6"  # alias of qwen3-coder (max_output_tokens 4096) in conftest
BACKEND_MODEL = "qwen3-coder"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
BASH = {
    "name": "bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}
READ = {
    "name": "read_file",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}


def sent(backend: MockBackend) -> dict[str, Any]:
    """The one chat completions request body the backend received."""
    seen = backend.requests()
    assert len(seen) == 1, seen
    assert seen[0]["path"] == "/v1/chat/completions"
    body = seen[0]["body"]
    assert isinstance(body, dict)
    return body


def ask(client: anthropic.Anthropic, text: str = "hi", **kwargs: Any) -> Message:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 256,
                              "messages": [{"role": "user", "content": text}]}
    params.update(kwargs)
    return client.messages.create(**params)


# ---- responses ------------------------------------------------------------------------------


def test_text(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "Hello from the backend."})
    message = ask(anthropic_client, "say hello")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL  # the name the client asked for, not the backend's
    assert message.id.startswith("msg_")
    assert message.content == [TextBlock(type="text", text="Hello from the backend.",
                                         citations=None)]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    body = sent(backend)
    assert body["model"] == BACKEND_MODEL
    assert body["messages"] == [{"role": "user", "content": "say hello"}]
    assert body["stream"] is False
    assert "stream_options" not in body


def test_exact_backend_body_for_every_scalar_field(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"text": "ok"})
    ask(
        anthropic_client,
        "fields",
        system="You are terse.",
        max_tokens=1000,
        # This SDK version has no sampling keyword arguments; the API still takes them.
        extra_body={"temperature": 0.3, "top_p": 0.9, "top_k": 40},
        stop_sequences=["\n\nHuman:", "END"],
        metadata={"user_id": "user-1234"},
        tools=[BASH, READ],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 512},
    )
    body = sent(backend)
    assert body == {
        "model": BACKEND_MODEL,
        "max_tokens": 1000,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["\n\nHuman:", "END"],
        "user": "user-1234",
        "stream": False,
        "chat_template_kwargs": {"enable_thinking": True, "thinking": True},
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "tools": [
            {"type": "function", "function": {"name": "bash", "description": "Run a shell command",
                                              "parameters": BASH["input_schema"]}},
            {"type": "function", "function": {"name": "read_file", "description": "Read a file",
                                              "parameters": READ["input_schema"]}},
        ],
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "fields"},
        ],
    }
    headers = backend.requests()[0]["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer sk-e2e-backend"
    assert int(headers["content-length"]) == len(json.dumps(body, separators=(",", ":"),
                                                            ensure_ascii=False).encode())


def test_tool_use(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "Let me look.",
                    "tool_calls": [{"name": "bash", "arguments": {"command": "ls -la /tmp"},
                                    "id": "call_abc123"}]})
    message = ask(anthropic_client, "list /tmp", tools=[BASH])
    assert message.stop_reason == "tool_use"
    assert message.content == [
        TextBlock(type="text", text="Let me look.", citations=None),
        ToolUseBlock(type="tool_use", id="call_abc123", name="bash",
                     input={"command": "ls -la /tmp"}),
    ]
    assert isinstance(message.content[1], ToolUseBlock)
    assert isinstance(message.content[1].input, dict)


def test_parallel_tool_calls(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"tool_calls": [
        {"name": "bash", "arguments": {"command": "pwd"}, "id": "call_1"},
        {"name": "read_file", "arguments": {"path": "a.txt"}, "id": "call_2"},
    ]})
    message = ask(anthropic_client, "both", tools=[BASH, READ])
    assert message.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in message.content] == [
        ("tool_use", "call_1", {"command": "pwd"}),
        ("tool_use", "call_2", {"path": "a.txt"}),
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "read_file"},
         {"type": "function", "function": {"name": "read_file"}}),
    ],
)
def test_tool_choice(
    anthropic_client: anthropic.Anthropic, backend: MockBackend, choice: Any, expected: Any
) -> None:
    backend.script({"text": "fine"})
    ask(anthropic_client, "choose", tools=[BASH, READ], tool_choice=choice)
    body = sent(backend)
    assert body["tool_choice"] == expected
    assert "parallel_tool_calls" not in body


def test_multi_turn_tool_results(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "Two files, and the second command failed."})
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[BASH],
        messages=[
            {"role": "user", "content": "list files and show the date"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Running both."},
                {"type": "tool_use", "id": "call_1", "name": "bash", "input": {"command": "ls"}},
                {"type": "tool_use", "id": "call_2", "name": "bash", "input": {"command": "dat"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "a.txt\nb.txt"},
                {"type": "tool_result", "tool_use_id": "call_2", "is_error": True,
                 "content": [{"type": "text", "text": "dat: command not found"}]},
                {"type": "text", "text": "Summarize."},
            ]},
        ],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Two files, and the second command failed."
    assert sent(backend)["messages"] == [
        {"role": "user", "content": "list files and show the date"},
        {"role": "assistant", "content": "Running both.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "bash", "arguments": '{"command":"ls"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "bash", "arguments": '{"command":"dat"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: dat: command not found"},
        {"role": "user", "content": "Summarize."},
    ]


def test_tool_result_image_follows_as_user_message(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"text": "A red pixel."})
    anthropic_client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[BASH],
        messages=[
            {"role": "user", "content": "screenshot"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_s", "name": "bash", "input": {"command": "shot"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_s", "content": [
                    {"type": "text", "text": "saved"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": PNG}},
                ]},
            ]},
        ],
    )
    messages = sent(backend)["messages"]
    assert messages[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_s", "type": "function",
         "function": {"name": "bash", "arguments": '{"command":"shot"}'}}]}
    assert messages[2] == {"role": "tool", "tool_call_id": "call_s", "content": "saved"}
    assert messages[3]["role"] == "user"
    image_parts = [p for p in messages[3]["content"] if p["type"] == "image_url"]
    assert image_parts == [{"type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    assert len(messages) == 4


def test_images(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "Two images."})
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "text", "text": "What are these?"},
        ]}],
    )
    assert message.content[0].type == "text"
    assert sent(backend)["messages"] == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What are these?"},
    ]}]


def test_text_document_becomes_text(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "Read it."})
    anthropic_client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": [
            {"type": "document", "title": "notes.txt",
             "source": {"type": "text", "media_type": "text/plain", "data": "line one"}},
            {"type": "text", "text": "Summarize"},
        ]}],
    )
    assert sent(backend)["messages"] == [{"role": "user", "content": "notes.txt\nline one\nSummarize"}]


@pytest.mark.parametrize("dialect", ["current", "transitional", "reasoning_content", "legacy"])
def test_thinking(anthropic_client: anthropic.Anthropic, backend: MockBackend, dialect: str) -> None:
    """`reasoning` (vLLM >= 0.17), `reasoning_content` (older) or both -> one ThinkingBlock."""
    backend.script({"reasoning": "The user greets; answer briefly.", "text": "Hi!",
                    "dialect": dialect})
    message = ask(anthropic_client, "hello", max_tokens=2048,
                  thinking={"type": "enabled", "budget_tokens": 1024})
    assert len(message.content) == 2
    thinking, text = message.content
    assert isinstance(thinking, ThinkingBlock)
    assert thinking.thinking == "The user greets; answer briefly."
    assert thinking.signature  # Anthropic requires a non-empty signature
    assert text == TextBlock(type="text", text="Hi!", citations=None)
    assert sent(backend)["chat_template_kwargs"] == {"enable_thinking": True, "thinking": True}


def test_thinking_disabled_switch(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "No thoughts."})
    ask(anthropic_client, thinking={"type": "disabled"})
    assert sent(backend)["chat_template_kwargs"] == {"enable_thinking": False, "thinking": False}


def test_no_thinking_switch_when_not_asked(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "plain"})
    ask(anthropic_client)
    assert "chat_template_kwargs" not in sent(backend)


def _history_with_thinking() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "run ls"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should list files.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "tool_use", "id": "functions.bash:0", "name": "bash",
             "input": {"command": "ls"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "functions.bash:0", "content": "a.txt"},
        ]},
    ]


def test_prior_thinking_echoed_as_reasoning_content_for_kimi(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"text": "done"})
    anthropic_client.messages.create(model="kimi-k2", max_tokens=64, tools=[BASH],
                                     messages=_history_with_thinking())
    assistant = sent(backend)["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "I should list files.",
        "tool_calls": [{"id": "functions.bash:0", "type": "function",
                        "function": {"name": "bash", "arguments": '{"command":"ls"}'}}],
    }


def test_prior_thinking_dropped_when_backend_does_not_want_it(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"text": "done"})
    anthropic_client.messages.create(model=MODEL, max_tokens=64, tools=[BASH],
                                     messages=_history_with_thinking())
    assistant = sent(backend)["messages"][1]
    assert set(assistant) == {"role", "content", "tool_calls"}  # never a thinking content part


def test_kimi_tool_ids_round_trip_exactly(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    # The kimi family names calls `functions.NAME:N` (N counts calls over the conversation).
    backend.script({"tool_calls": [{"name": "bash", "arguments": {"command": "ls"}}]})
    first = anthropic_client.messages.create(
        model="kimi-k2", max_tokens=128, tools=[BASH],
        messages=[{"role": "user", "content": "run ls"}],
    )
    call = first.content[-1]
    assert isinstance(call, ToolUseBlock)
    assert call.id == "functions.bash:0"
    assert first.stop_reason == "tool_use"

    backend.reset()
    backend.script({"text": "a.txt"})
    anthropic_client.messages.create(
        model="kimi-k2", max_tokens=128, tools=[BASH],
        messages=[
            {"role": "user", "content": "run ls"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "a.txt"}]},
        ],
    )
    messages = sent(backend)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "functions.bash:0"
    assert messages[1]["tool_calls"][0]["function"]["name"] == "bash"
    assert messages[2] == {"role": "tool", "tool_call_id": "functions.bash:0", "content": "a.txt"}


def test_stop_sequence(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "alpha beta STOP gamma"})
    message = ask(anthropic_client, stop_sequences=["END", "STOP"])
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "STOP"
    assert message.content == [TextBlock(type="text", text="alpha beta ", citations=None)]
    assert sent(backend)["stop"] == ["END", "STOP"]


def test_stop_sequences_requested_but_not_hit(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"text": "no stop here"})
    message = ask(anthropic_client, stop_sequences=["STOP"])
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None


def test_max_tokens_stop(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "one two three four five six seven eight nine ten eleven twelve"})
    message = ask(anthropic_client, max_tokens=5)
    assert message.stop_reason == "max_tokens"
    assert message.stop_sequence is None
    assert message.usage.output_tokens == 5
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("one")
    assert sent(backend)["max_tokens"] == 5


def test_usage_with_cache_read(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "cached", "usage": {"prompt_tokens": 120, "completion_tokens": 7},
                    "cached_tokens": 64})
    usage = ask(anthropic_client).usage
    assert usage.input_tokens == 56
    assert usage.cache_read_input_tokens == 64
    assert usage.cache_creation_input_tokens == 0
    assert usage.output_tokens == 7


def test_system_and_role_system_messages_merge(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"text": "ok"})
    anthropic_client.messages.create(
        model=MODEL,
        max_tokens=64,
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.1; cch=abc123;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {"role": "user", "content": "first"},
            {"role": "system", "content": "The user prefers short answers."},  # type: ignore[misc,list-item]
            {"role": "user", "content": "second"},
        ],
    )
    assert sent(backend)["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\nThe user prefers short answers."},
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ]


def test_max_tokens_clamped_per_model(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": "clamped"}, {"text": "not clamped"})
    ask(anthropic_client, max_tokens=32000)  # qwen3-coder: max_output_tokens 4096
    anthropic_client.messages.create(model="glm-4.6", max_tokens=32000,
                                     messages=[{"role": "user", "content": "hi"}])
    first, second = (r["body"] for r in backend.requests())
    assert first["model"] == BACKEND_MODEL
    assert first["max_tokens"] == 4096
    assert second["model"] == "glm-4.6"
    assert second["max_tokens"] == 32000


def test_assistant_prefill_is_continued(anthropic_client: anthropic.Anthropic, backend: MockBackend) -> None:
    backend.script({"text": " world"})
    anthropic_client.messages.create(model=MODEL, max_tokens=16, messages=[
        {"role": "user", "content": "say hello world"},
        {"role": "assistant", "content": "Hello"},
    ])
    body = sent(backend)
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello"}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False


# ---- backend errors -------------------------------------------------------------------------

ERRORS = [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (401, anthropic.AuthenticationError, "authentication_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
    (404, anthropic.NotFoundError, "not_found_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (503, anthropic.ServiceUnavailableError, "overloaded_error"),
    (529, anthropic.OverloadedError, "overloaded_error"),
]


@pytest.mark.parametrize("dialect", ["current", "legacy"])  # nested and flat vLLM error shapes
@pytest.mark.parametrize(("status", "exc_class", "error_type"), ERRORS)
def test_backend_error_maps_to_sdk_exception(
    anthropic_client: anthropic.Anthropic,
    backend: MockBackend,
    status: int,
    exc_class: type[anthropic.APIStatusError],
    error_type: str,
    dialect: str,
) -> None:
    backend_message = f"backend says no ({status})"
    backend.script({"error": {"status": status, "message": backend_message}, "dialect": dialect})
    with pytest.raises(exc_class) as caught:
        ask(anthropic_client)
    err = caught.value
    assert type(err) is exc_class
    assert err.status_code == status
    assert err.body == {"type": "error", "error": {"type": error_type, "message": backend_message}}
    assert err.response.headers["content-type"].startswith("application/json")


def test_context_overflow_reads_prompt_is_too_long(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    vllm = ("This model's maximum context length is 1000 tokens. However, your request has "
            "2000 input tokens. Please reduce the length of the input messages.")
    backend.script({"error": {"status": 400, "message": vllm}})
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(anthropic_client)
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("prompt is too long: 2000 tokens > 1000 maximum")


def test_html_error_page_names_the_status(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    backend.script({"raw_body": page, "status": 502, "content_type": "text/html"})
    with pytest.raises(anthropic.InternalServerError) as caught:
        ask(anthropic_client)
    err = caught.value
    assert err.status_code == 502
    assert err.body["type"] == "error"  # type: ignore[index]
    assert err.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "502" in err.body["error"]["message"]  # type: ignore[index]
    assert "<html" not in err.body["error"]["message"]  # type: ignore[index]


def test_plain_text_error_keeps_its_text(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"raw_body": "model is loading, retry later", "status": 503})
    with pytest.raises(anthropic.ServiceUnavailableError) as caught:
        ask(anthropic_client)
    assert caught.value.body == {"type": "error", "error": {
        "type": "overloaded_error",
        "message": "backend returned HTTP 503: model is loading, retry later"}}


def test_broken_success_body_is_an_api_error(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"raw_body": "this is not json", "status": 200,
                    "content_type": "application/json"})
    with pytest.raises(anthropic.APIStatusError) as caught:
        ask(anthropic_client)
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert caught.value.status_code >= 500
