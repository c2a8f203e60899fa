"""Every per-model knob (config.ModelOptions), from config through RequestOptions to the body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.config import Backend, Config, ModelOptions, ModelRoute
from extproc.translators.request import RequestOptions, translate_request
from extproc.translators.token_estimate import (
    MIN_OUTPUT_TOKENS,
    estimate_tokens,
    fit_output,
    prompt_bytes,
)

THINKING_TURN = [
    {"role": "user", "content": "hi"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "The user greets me.", "signature": "s"},
            {"type": "text", "text": "Hello."},
        ],
    },
    {"role": "system", "content": "Reminder: be brief."},
    {"role": "user", "content": "again"},
]


def translated(options: dict[str, Any], request: dict[str, Any] | None = None,
               backend_options: dict[str, Any] | None = None, **backend: Any) -> dict[str, Any]:
    """The backend body for `request` sent to model `m` configured with `options`."""
    config = Config(backends=(Backend(
        name="b", base_url="http://127.0.0.1:8000/v1",
        options=ModelOptions(**(backend_options or {})),
        models=(ModelRoute(name="m", options=ModelOptions(**options)),),
        **backend,
    ),))
    body = request or {"model": "m", "max_tokens": 32000, "system": "Be kind.",
                       "messages": THINKING_TURN, "thinking": {"type": "enabled",
                                                               "budget_tokens": 2000}}
    result = translate_request(body, RequestOptions.from_config(config.backends[0], "m", config))
    return dict(orjson.loads(result.body))


def test_max_output_tokens_clamps_and_a_model_overrides_the_backend_default() -> None:
    assert translated({})["max_tokens"] == 32000
    assert translated({}, backend_options={"max_output_tokens": 8192})["max_tokens"] == 8192
    assert translated({"max_output_tokens": 4096},
                      backend_options={"max_output_tokens": 8192})["max_tokens"] == 4096


@pytest.mark.parametrize("echo", ["reasoning", "reasoning_content"])
def test_reasoning_echo_puts_prior_thinking_in_the_named_field(echo: str) -> None:
    assistant = translated({"reasoning_echo": echo})["messages"][2]
    assert assistant == {"role": "assistant", "content": "Hello.", echo: "The user greets me."}


def test_reasoning_echo_none_drops_prior_thinking() -> None:
    assistant = translated({"reasoning_echo": "none"})["messages"][2]
    assert assistant == {"role": "assistant", "content": "Hello."}


def test_system_merge_hoist_and_user() -> None:
    hoisted = translated({"system_merge": "hoist"})["messages"]
    assert hoisted[0] == {"role": "system", "content": "Be kind.\n\nReminder: be brief."}
    assert [m["role"] for m in hoisted] == ["system", "user", "assistant", "user"]
    as_user = translated({"system_merge": "user"})["messages"]
    assert as_user[0] == {"role": "system", "content": "Be kind."}
    assert as_user[3] == {"role": "user",
                          "content": "<system-reminder>\nReminder: be brief.\n</system-reminder>"}


def test_thinking_switch() -> None:
    assert translated({})["chat_template_kwargs"] == {"enable_thinking": True, "thinking": True}
    assert "chat_template_kwargs" not in translated({"thinking_switch": "none"})


def test_vllm_extensions() -> None:
    request = {"model": "m", "max_tokens": 10, "top_k": 5, "stream": True,
               "messages": [{"role": "user", "content": "hi"}]}
    on = translated({}, request)
    assert on["top_k"] == 5 and on["stream_options"]["continuous_usage_stats"] is True
    off = translated({"vllm_extensions": False}, request)
    assert "top_k" not in off and off["stream_options"] == {"include_usage": True}


def test_tool_call_rescue_is_per_backend_and_carries_parameter_types() -> None:
    request = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
               "tools": [{"name": "Bash", "input_schema": {"type": "object", "properties": {
                   "command": {"type": "string"}, "timeout": {"type": ["integer", "null"]},
                   "opaque": {}}}}]}
    config = Config(backends=(Backend(name="b", base_url="http://127.0.0.1:8000/v1",
                                      tool_call_rescue=True),))
    options = RequestOptions.from_config(config.backends[0], "m", config)
    context = translate_request(request, options).context
    assert context.tool_call_rescue is True
    assert context.tool_parameter_types == {"Bash": {"command": "string", "timeout": "integer"}}
    plain = translate_request(request, RequestOptions(model="m")).context
    assert plain.tool_call_rescue is False and plain.tool_parameter_types == {}


# ---- context_window -------------------------------------------------------------------------


def long_request(words: int, max_tokens: int = 32000) -> dict[str, Any]:
    return {"model": "m", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "word " * words}]}


def test_context_window_leaves_room_for_the_prompt() -> None:
    body = translated({"context_window": 40000}, long_request(20000))  # ~100 KB of prompt
    prompt = estimate_tokens(prompt_bytes(body), 3)
    assert body["max_tokens"] == 40000 - prompt
    assert 0 < body["max_tokens"] < 32000


def test_context_window_never_goes_below_the_floor() -> None:
    body = translated({"context_window": 8000}, long_request(20000))
    assert body["max_tokens"] == MIN_OUTPUT_TOKENS
    small = translated({"context_window": 8000}, long_request(20000, max_tokens=100))
    assert small["max_tokens"] == 100  # never more than asked


def test_context_window_and_max_output_tokens_both_bound() -> None:
    body = translated({"context_window": 131072, "max_output_tokens": 16384}, long_request(10))
    assert body["max_tokens"] == 16384


def test_with_a_context_window_max_tokens_goes_last_so_turns_share_a_prefix() -> None:
    options = {"context_window": 65536}
    turn1 = long_request(3000)
    turn2 = {**turn1, "messages": [*turn1["messages"], {"role": "assistant", "content": "ok"},
                                   {"role": "user", "content": "more"}]}
    first = orjson.dumps(translated(options, turn1))
    second = orjson.dumps(translated(options, turn2))
    assert list(translated(options, turn1))[-1] == "max_tokens"
    shared = first[: first.index(b'"}]') + 2]  # up to the end of turn 1's last message
    assert second.startswith(shared)


def test_fit_output_is_pure_arithmetic() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 2990}]}
    size = prompt_bytes(body)
    assert size == len(orjson.dumps(body))
    assert fit_output(5000, body, 6000) == 6000 - estimate_tokens(size, 3)
    assert estimate_tokens(9) == 3 and estimate_tokens(8) == 2
