"""Anthropic Messages request -> OpenAI chat completions request.

Golden cases live in tests/golden/request/<case>/: `anthropic.json` (the client's body),
optional `options.json` (RequestOptions fields), `openai.json` (the exact body the backend
gets, key order included) and `report.json` (stream flag, dropped names, server tools,
response context). Adding a case is adding a folder; `UPDATE_GOLDEN=1 pytest` writes the
expected files, which are then reviewed by hand.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from extproc.config import Backend, Config, Limits, ModelOptions, ModelRoute
from extproc.errors import InvalidRequest
from extproc.schemas.openai import ChatCompletionRequest
from extproc.translators.request import RequestOptions, TranslatedRequest, translate_request

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "request"
CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
OPTIONS = RequestOptions(model="backend-model")


def pretty(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def report(translated: TranslatedRequest) -> dict[str, Any]:
    context = translated.context
    return {
        "stream": translated.stream,
        "dropped": list(translated.dropped),
        "server_tools": list(translated.server_tools),
        "context": {
            "model": context.model,
            "stop_sequences": list(context.stop_sequences),
            "client_tools": sorted(context.client_tools),
            "tool_call_rescue": context.tool_call_rescue,
        },
    }


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    folder = GOLDEN / case
    request = orjson.loads((folder / "anthropic.json").read_bytes())
    overrides = folder / "options.json"
    fields = orjson.loads(overrides.read_bytes()) if overrides.exists() else {}
    translated = translate_request(request, RequestOptions(**{"model": "backend-model", **fields}))
    if UPDATE:
        (folder / "openai.json").write_bytes(pretty(orjson.loads(translated.body)))
        (folder / "report.json").write_bytes(pretty(report(translated)))
    expected = orjson.dumps(orjson.loads((folder / "openai.json").read_bytes()))
    assert translated.body == expected  # exact bytes: key order matters for prefix caching
    assert report(translated) == orjson.loads((folder / "report.json").read_bytes())
    ChatCompletionRequest.model_validate_json(translated.body)  # nothing OpenAI would not know


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert (GOLDEN / case / "anthropic.json").is_file(), case


# ---- helpers -----------------------------------------------------------------------------


def request(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": messages if messages is not None else [{"role": "user", "content": "hi"}],
    }
    body.update(fields)
    return body


def translate(body: dict[str, Any], **options: Any) -> dict[str, Any]:
    fields = {"model": "backend-model", **options}
    result: dict[str, Any] = orjson.loads(translate_request(body, RequestOptions(**fields)).body)
    return result


def rejected(body: object, **options: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        translate_request(body, RequestOptions(**{"model": "backend-model", **options}))  # type: ignore[arg-type]
    assert caught.value.status == 400
    assert caught.value.error_type == "invalid_request_error"
    return caught.value.message


TOOL = {"name": "Bash", "input_schema": {"type": "object", "properties": {}}}


# ---- field by field ----------------------------------------------------------------------


def test_model_is_the_backend_name_and_context_keeps_the_client_name() -> None:
    translated = translate_request(request(), OPTIONS)
    assert orjson.loads(translated.body)["model"] == "backend-model"
    assert translated.context.model == "claude-sonnet-4-5"


def test_max_tokens_is_clamped_to_the_model_limit() -> None:
    assert translate(request(max_tokens=32000), max_output_tokens=8192)["max_tokens"] == 8192
    assert translate(request(max_tokens=500), max_output_tokens=8192)["max_tokens"] == 500
    assert translate(request(max_tokens=64000))["max_tokens"] == 64000
    assert "max_completion_tokens" not in translate(request())


def test_stop_sequences_become_stop_and_reach_the_context() -> None:
    translated = translate_request(request(stop_sequences=["###", "END"]), OPTIONS)
    assert orjson.loads(translated.body)["stop"] == ["###", "END"]
    assert translated.context.stop_sequences == ("###", "END")
    assert "stop" not in translate(request(stop_sequences=[]))


def test_sampling_fields() -> None:
    body = translate(request(temperature=0, top_p=1, top_k=3))
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0, 1, 3)
    assert "top_k" not in translate(request(top_k=3), vllm_extensions=False)


def test_metadata_user_id_becomes_user() -> None:
    assert translate(request(metadata={"user_id": "abc"}))["user"] == "abc"
    assert "user" not in translate(request(metadata={"user_id": None}))


def test_stream_options() -> None:
    streamed = translate_request(request(stream=True), OPTIONS)
    body = orjson.loads(streamed.body)
    assert streamed.stream is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    plain = translate(request(stream=True), vllm_extensions=False)
    assert plain["stream_options"] == {"include_usage": True}
    assert translate(request())["stream"] is False
    assert "stream_options" not in translate(request())


@pytest.mark.parametrize(
    ("thinking", "enabled"),
    [
        ({"type": "enabled", "budget_tokens": 4096}, True),
        ({"type": "adaptive"}, True),
        ({"type": "between_tools"}, True),
        ({"type": "disabled"}, False),
    ],
)
def test_thinking_switch(thinking: dict[str, Any], enabled: bool) -> None:
    body = translate(request(thinking=thinking))
    assert body["chat_template_kwargs"] == {"enable_thinking": enabled, "thinking": enabled}


def test_no_thinking_field_leaves_the_backend_default() -> None:
    assert "chat_template_kwargs" not in translate(request())
    dropped = translate_request(
        request(thinking={"type": "enabled", "budget_tokens": 2000}),
        RequestOptions(model="m", thinking_switch="none"),
    ).dropped
    assert dropped == ("thinking",)


def test_tool_definitions() -> None:
    tools = [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}]
    translated = translate_request(request(tools=tools), OPTIONS)
    assert orjson.loads(translated.body)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "description": "Read a file",
                "parameters": {"type": "object"},
            },
        }
    ]
    assert translated.context.client_tools == frozenset({"Read"})


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: object) -> None:
    body = translate(request(tools=[TOOL], tool_choice=choice))
    assert body["tool_choice"] == expected
    assert "parallel_tool_calls" not in body


@pytest.mark.parametrize("kind", ["auto", "any", "tool"])
def test_disable_parallel_tool_use(kind: str) -> None:
    choice = {"type": kind, "name": "Bash", "disable_parallel_tool_use": True}
    assert translate(request(tools=[TOOL], tool_choice=choice))["parallel_tool_calls"] is False


def test_tool_choice_without_tools_is_not_sent() -> None:
    for kind, dropped in (("auto", ()), ("none", ()), ("any", ("tool_choice",))):
        translated = translate_request(request(tool_choice={"type": kind}), OPTIONS)
        body = orjson.loads(translated.body)
        assert "tool_choice" not in body
        assert "tools" not in body
        assert translated.dropped == dropped


def test_server_tools_are_reported_not_sent() -> None:
    tools = [{"type": "web_search_20250305", "name": "web_search"}, TOOL]
    translated = translate_request(request(tools=tools), OPTIONS)
    body = orjson.loads(translated.body)
    assert [tool["function"]["name"] for tool in body["tools"]] == ["Bash"]
    assert translated.server_tools == ("web_search_20250305",)
    assert translated.context.client_tools == frozenset({"Bash"})


def test_tool_use_arguments_are_compact_json_with_id_and_name_as_given() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "functions.bash:0",
                    "name": "bash",
                    "input": {"a": [1, {"b": "ü"}]},
                }
            ],
        },
    ]
    call = translate(request(messages))["messages"][-1]["tool_calls"][0]
    assert call == {
        "id": "functions.bash:0",
        "type": "function",
        "function": {"name": "bash", "arguments": '{"a":[1,{"b":"ü"}]}'},
    }


def test_tool_results_come_before_the_user_text_of_the_same_turn() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "after"},
                {"type": "tool_result", "tool_use_id": "t1", "content": "out"},
            ],
        },
    ]
    roles = [(m["role"], m["content"]) for m in translate(request(messages))["messages"]]
    assert roles[-2:] == [("tool", "out"), ("user", "after")]


def test_tool_references_from_a_client_tool_search_reach_the_model_as_text() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {"query": "weather"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "tool_reference", "tool_name": "get_weather"},
            {"type": "tool_reference", "tool_name": "get_forecast"}]}]},
    ]
    translated = translate_request(request(messages), OPTIONS)
    assert orjson.loads(translated.body)["messages"][-1] == {
        "role": "tool", "tool_call_id": "t1",
        "content": "Tool found: get_weather\nTool found: get_forecast",
    }
    assert translated.dropped == ()


def test_thinking_is_never_a_content_part() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "y"},
            ],
        },
        {"role": "user", "content": "z"},
    ]
    for echo in ("none", "reasoning", "reasoning_content"):
        assistant = translate(request(messages), reasoning_echo=echo)["messages"][1]
        assert assistant["content"] == "y"
        assert b'"type":"thinking"' not in orjson.dumps(assistant)


def test_prefill_continues_the_final_assistant_message() -> None:
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "The answer is"}]
    body = translate(request(messages))
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert list(body)[-3:] == ["messages", "continue_final_message", "add_generation_prompt"]
    assert "continue_final_message" not in translate(request())


def test_dropped_names_are_sorted_and_unique() -> None:
    body = request(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
            }
        ],
        system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        context_management={},
        output_config={"effort": "low", "zzz_knob": 1},
        zzz_new=1,
    )
    assert translate_request(body, OPTIONS).dropped == (
        "cache_control",
        "context_management",
        "output_config.zzz_knob",
        "zzz_new",
    )


@pytest.mark.parametrize(("effort", "sent"), [
    ("low", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "high"), ("max", "high"),
])
def test_effort_becomes_reasoning_effort_within_what_vllm_accepts(effort: str, sent: str) -> None:
    translated = translate_request(request(output_config={"effort": effort}), OPTIONS)
    assert orjson.loads(translated.body)["reasoning_effort"] == sent
    ChatCompletionRequest.model_validate_json(translated.body)  # vLLM's literal: low/medium/high
    assert translated.dropped == ()


def test_an_effort_level_we_do_not_know_is_reported_not_sent() -> None:
    translated = translate_request(request(output_config={"effort": "ludicrous"}), OPTIONS)
    assert "reasoning_effort" not in orjson.loads(translated.body)
    assert translated.dropped == ("output_config.effort",)


def test_unknown_block_types_are_tolerated_and_reported() -> None:
    messages = [
        {"role": "user", "content": [{"type": "hologram", "x": 1}, {"type": "text", "text": "hi"}]}
    ]
    translated = translate_request(request(messages), OPTIONS)
    assert orjson.loads(translated.body)["messages"] == [{"role": "user", "content": "hi"}]
    assert translated.dropped == ("block:hologram",)


def test_input_is_not_mutated_and_output_is_deterministic() -> None:
    body = orjson.loads((GOLDEN / "tool_use_and_results" / "anthropic.json").read_bytes())
    before = copy.deepcopy(body)
    first = translate_request(body, OPTIONS).body
    assert translate_request(body, OPTIONS).body == first
    assert body == before


def test_options_from_config() -> None:
    backend = Backend(
        name="vllm",
        base_url="http://127.0.0.1:8000/v1",
        options=ModelOptions(max_output_tokens=4096, system_merge="user"),
        models=(
            ModelRoute(
                name="kimi-k2",
                options=ModelOptions(reasoning_echo="reasoning", vllm_extensions=False),
            ),
        ),
        tool_call_rescue=True,
    )
    config = Config(
        backends=(backend,),
        limits=Limits(max_messages=7, max_tools=3, max_json_depth=9),
        strip_billing_header=False,
    )
    options = RequestOptions.from_config(backend, "kimi-k2", config)
    assert options == RequestOptions(
        model="kimi-k2",
        max_output_tokens=4096,
        reasoning_echo="reasoning",
        system_merge="user",
        thinking_switch="chat_template_kwargs",
        strip_billing_header=False,
        vllm_extensions=False,
        tool_call_rescue=True,
        max_messages=7,
        max_tools=3,
        max_json_depth=9,
    )
    translated = translate_request(request(), options)
    assert translated.context.tool_call_rescue is True


# ---- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request body must be a JSON object"),
        (
            {"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
            "model: Field required",
        ),
        ({"model": "m", "max_tokens": 1}, "messages: Field required"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Field required",
        ),
        (request(max_tokens="100"), "max_tokens: Input should be a valid integer"),
        (request(max_tokens=-1), "max_tokens: Input should be greater than or equal to 0"),
        (request(messages=[]), "messages: List should have at least 1 item"),
        (
            request([{"role": "system", "content": "only system"}]),
            "messages: at least one user or assistant message is required",
        ),
        (request(model=""), "model: String should have at least 1 character"),
        (request(stream="true"), "stream: Input should be a valid boolean"),
        (request(temperature=1.5), "temperature: Input should be less than or equal to 1"),
        (request(stop_sequences="END"), "stop_sequences: Input should be a valid list"),
        (
            request([{"role": "robot", "content": "x"}]),
            "messages.0.role: Input should be 'user', 'assistant' or 'system'",
        ),
        (request([{"role": "user"}]), "messages.0.content: Field required"),
        (
            request([{"role": "user", "content": 5}]),
            "messages.0.content: Input should be a valid list",
        ),
        (
            request([{"role": "user", "content": [{"text": "no type"}]}]),
            "messages.0.content.0: must be an object with a string `type`",
        ),
        (
            request([{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text: Field required",
        ),
        (
            request([{"role": "user", "content": [{"type": "image", "source": {"type": "ftp"}}]}]),
            "messages.0.content.0.source: unknown type 'ftp' (expected 'base64', 'url', 'file')",
        ),
        (
            request(
                [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "text", "text": 1}],
                            }
                        ],
                    }
                ]
            ),
            "messages.0.content.0.content.0.text: Input should be a valid string",
        ),
        (
            request(
                [
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "x", "input": "{}"}],
                    }
                ]
            ),
            "messages.0.content.0.input: Input should be a valid dictionary",
        ),
        (request(system=[{"type": "image"}]), "system.0.type: Input should be 'text'"),
        (
            request(
                [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {"type": "content", "content": [{"type": "video"}]},
                            }
                        ],
                    }
                ]
            ),
            "messages.0.content.0.source.content.0: unknown type 'video' (expected 'text', 'image')",
        ),
        (request(tools=[{"name": "x"}]), "tools.0.input_schema: Field required"),
        (request(tools=[{"type": 5}]), "tools.0: must be an object with a string `type`"),
        (
            request(tool_choice={"type": "sometimes"}),
            "tool_choice: unknown type 'sometimes' (expected 'auto', 'any', 'tool', 'none')",
        ),
        (request(thinking={"type": "enabled"}), "thinking.budget_tokens: Field required"),
    ],
)
def test_invalid_requests_name_the_field(body: object, message: str) -> None:
    assert rejected(body).startswith(message)


def test_too_many_messages_or_tools() -> None:
    messages = [{"role": "user", "content": "x"}] * 4
    assert (
        rejected(request(messages), max_messages=3) == "messages: 4 messages exceed the limit of 3"
    )
    tools = [{**TOOL, "name": f"t{i}"} for i in range(3)]
    assert rejected(request(tools=tools), max_tools=2) == "tools: 3 tools exceed the limit of 2"


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        value = {"type": "object", "properties": {"x": value}}
    return value


def test_tool_schema_depth_limit() -> None:
    # each wrapping adds two levels (the object and its `properties`)
    ok = {"name": "t", "input_schema": nested(5)}  # depth 9
    assert translate(request(tools=[ok]), max_json_depth=9)["tools"]
    deep = {"name": "t", "input_schema": nested(6)}  # depth 11
    assert rejected(request(tools=[deep]), max_json_depth=10) == (
        "tools.0.input_schema: nested deeper than 10 levels"
    )


def test_tool_use_input_depth_limit() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "n", "input": nested(6)}],
        },
    ]
    assert rejected(request(messages), max_json_depth=10) == (
        "messages.1.content.0.input: nested deeper than 10 levels"
    )


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            },
            "messages.0.content.0: application/pdf documents (base64 source) are not supported",
        ),
        (
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
            "messages.0.content.0: application/pdf documents (url source) are not supported",
        ),
        (
            {"type": "document", "source": {"type": "file", "file_id": "file_1"}},
            "messages.0.content.0.source: documents by file_id need Anthropic's Files API",
        ),
        (
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
            "messages.0.content.0.source: images by file_id need Anthropic's Files API",
        ),
        (
            {"type": "tool_use", "id": "t", "name": "n", "input": {}},
            "messages.0.content.0: a tool_use block belongs in an assistant message",
        ),
        (
            {"type": "thinking", "thinking": "t", "signature": "s"},
            "messages.0.content.0: a thinking block belongs in an assistant message",
        ),
    ],
)
def test_unsupported_user_blocks(block: dict[str, Any], message: str) -> None:
    assert rejected(request([{"role": "user", "content": [block]}])).startswith(message)


def test_blocks_in_the_wrong_role() -> None:
    assistant = {
        "role": "assistant",
        "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}],
    }
    assert rejected(request([assistant])) == (
        "messages.0.content.0: a tool_result block belongs in a user message"
    )
    system = {
        "role": "system",
        "content": [{"type": "image", "source": {"type": "url", "url": "u"}}],
    }
    assert rejected(request([system, {"role": "user", "content": "x"}])) == (
        "messages.0.content.0: a system message may only hold text blocks, got 'image'"
    )


def test_tool_errors() -> None:
    assert rejected(request(tools=[TOOL, TOOL])) == "tools.1.name: tool name 'Bash' is used twice"
    assert rejected(request(tools=[TOOL], tool_choice={"type": "tool", "name": "Edit"})) == (
        "tool_choice.name: 'Edit' is not one of the request's tools"
    )


def test_max_tokens_zero_is_refused() -> None:
    assert rejected(request(max_tokens=0)).startswith("max_tokens: 0 (prompt-cache pre-warming)")


# ---- Claude Code's real requests ---------------------------------------------------------


def claude_code(folder: Path, name: str) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads((folder / f"{name}.json").read_bytes())["body"]
    return body


def test_claude_code_first_request(claude_code_fixture_dir: Path) -> None:
    anthropic = claude_code(claude_code_fixture_dir, "00-first-request-plain-prompt")
    translated = translate_request(
        anthropic, RequestOptions(model="qwen3-coder", max_output_tokens=16384)
    )
    body = orjson.loads(translated.body)
    ChatCompletionRequest.model_validate_json(translated.body)
    assert list(body) == [
        "model", "max_tokens", "user", "stream", "stream_options", "chat_template_kwargs",
        "reasoning_effort", "tools", "messages",
    ]  # fmt: skip
    assert body["max_tokens"] == 16384
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert body["chat_template_kwargs"] == {"enable_thinking": True, "thinking": True}
    assert body["reasoning_effort"] == anthropic["output_config"]["effort"] == "high"
    assert len(body["tools"]) == 24
    assert [tool["function"]["name"] for tool in body["tools"]] == [
        t["name"] for t in anthropic["tools"]
    ]
    system, user = body["messages"]
    assert system["role"] == "system"
    assert "x-anthropic-billing-header" not in system["content"]
    assert system["content"].startswith(
        "You are a Claude agent, built on Anthropic's Claude Agent SDK.\n"
    )
    # the mid-conversation role:"system" entry is hoisted to the end of the system prompt
    assert system["content"].endswith(anthropic["messages"][1]["content"])
    assert user == {
        "role": "user",
        "content": "\n".join(block["text"] for block in anthropic["messages"][0]["content"]),
    }
    assert translated.stream is True
    assert translated.dropped == ("cache_control", "context_management")
    assert translated.server_tools == ()
    assert translated.context.model == "qwen3-coder"
    assert len(translated.context.client_tools) == 24


def test_claude_code_follow_up_with_tool_result(claude_code_fixture_dir: Path) -> None:
    anthropic = claude_code(claude_code_fixture_dir, "02-followup-with-tool-result")
    body = orjson.loads(translate_request(anthropic, OPTIONS).body)
    assert body["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01AcceptanceStub0000001",
                    "type": "function",
                    "function": {
                        "name": "Bash",
                        "arguments": '{"command":"echo acceptance-ok","description":"Print a marker"}',
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "toolu_01AcceptanceStub0000001",
            "content": "acceptance-ok",
        },
    ]


def test_claude_code_turns_share_a_byte_identical_prefix(claude_code_fixture_dir: Path) -> None:
    """Turn 2 starts with turn 1's body minus its closing `]}`: vLLM's prefix cache hits."""
    first = translate_request(
        claude_code(claude_code_fixture_dir, "01-first-request-tool-turn"), OPTIONS
    )
    second = translate_request(
        claude_code(claude_code_fixture_dir, "02-followup-with-tool-result"), OPTIONS
    )
    assert first.body.endswith(b"]}")
    assert second.body.startswith(first.body[:-2] + b",")
    # ... even though the raw requests differ early (billing header, cache_control moves)
    raw_first = orjson.dumps(claude_code(claude_code_fixture_dir, "01-first-request-tool-turn"))
    raw_second = orjson.dumps(claude_code(claude_code_fixture_dir, "02-followup-with-tool-result"))
    assert not raw_second.startswith(raw_first[:-200])


def test_claude_code_with_billing_header_kept(claude_code_fixture_dir: Path) -> None:
    anthropic = claude_code(claude_code_fixture_dir, "01-first-request-tool-turn")
    options = RequestOptions(model="m", strip_billing_header=False)
    system = orjson.loads(translate_request(anthropic, options).body)["messages"][0]["content"]
    assert system.startswith("x-anthropic-billing-header: cc_version=")
