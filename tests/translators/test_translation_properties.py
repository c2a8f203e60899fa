"""Properties over generated input: a valid translation or our own error, never anything else.

- Any JSON-ish request gives an OpenAI body our strict schema accepts, or `InvalidRequest`.
- Any JSON-ish backend body gives an Anthropic message the SDK accepts, or `BackendError`.
- Any backend error body gives an Anthropic error object.
"""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.errors import BackendError, InvalidRequest
from extproc.schemas.anthropic import ErrorResponse
from extproc.schemas.openai import ChatCompletionRequest
from extproc.translators.context import ResponseContext
from extproc.translators.request import RequestOptions, translate_request
from extproc.translators.response import translate_error, translate_response

PROPERTY = settings(derandomize=True, max_examples=200, deadline=None)

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "x", "ls"])
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)
texts = st.text(max_size=8)
cache = st.sampled_from([{}, {"cache_control": {"type": "ephemeral"}}])


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly well-formed values, so translations succeed often enough to be checked."""
    return st.sampled_from(range(6)).flatmap(lambda pick: bad if pick == 5 else good)


def block(kind: str, **fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"type": st.just(kind), **fields}).flatmap(
        lambda value: cache.map(lambda extra: {**value, **extra})
    )


image_sources = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("base64"), "media_type": st.just("image/png"), "data": texts}
    ),
    st.fixed_dictionaries({"type": st.just("url"), "url": texts}),
    st.fixed_dictionaries({"type": st.just("file"), "file_id": texts}),
    junk,
)
doc_sources = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("text"), "media_type": st.just("text/plain"), "data": texts}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("content"),
            "content": texts | st.lists(block("text", text=texts), max_size=2),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("base64"), "media_type": st.just("application/pdf"), "data": texts}
    ),
    junk,
)
simple_blocks = st.one_of(
    block("text", text=texts),
    block("image", source=image_sources),
    block("document", source=doc_sources),
    block(
        "search_result",
        source=texts,
        title=texts,
        content=st.lists(block("text", text=texts), max_size=2),
    ),
    block("tool_reference", tool_name=texts),
    block("brand_new_block", payload=junk),
)
blocks = st.one_of(
    simple_blocks,
    block("tool_use", id=texts, name=texts, input=st.dictionaries(texts, junk, max_size=2) | junk),
    block(
        "tool_result",
        tool_use_id=texts,
        content=texts | st.lists(simple_blocks, max_size=3),
        is_error=st.booleans(),
    ),
    block("thinking", thinking=texts, signature=texts),
    block("redacted_thinking", data=texts),
    block("server_tool_use", id=texts, name=st.just("web_search"), input=st.just({})),
    block("web_search_tool_result", tool_use_id=texts, content=junk),
)
blocks = mostly(blocks, junk)
messages = mostly(
    st.lists(
        st.fixed_dictionaries(
            {
                "role": mostly(st.sampled_from(["user", "assistant", "system"]), st.just("tool")),
                "content": texts | st.lists(blocks, max_size=4),
            }
        ),
        min_size=1,
        max_size=5,
    ),
    st.just([]),
)
tools = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["Bash", "Read", ""]),
                "input_schema": st.just({"type": "object"}),
            },
            optional={"description": texts, "strict": st.booleans()},
        ),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["web_search_20250305", "custom"]), "name": texts}
        ),
        junk,
    ),
    max_size=3,
)
optional_fields = {
    "system": mostly(texts | st.lists(block("text", text=texts), max_size=2), junk),
    "tools": tools,
    "tool_choice": st.fixed_dictionaries(
        {"type": st.sampled_from(["auto", "any", "none", "tool", "bad"])},
        optional={
            "name": st.sampled_from(["Bash", "Edit"]),
            "disable_parallel_tool_use": st.booleans(),
        },
    ),
    "thinking": st.sampled_from(
        [
            {"type": "enabled", "budget_tokens": 2048},
            {"type": "disabled"},
            {"type": "adaptive"},
            {"type": "x"},
        ]
    ),
    "stop_sequences": mostly(st.lists(texts, max_size=2), junk),
    "temperature": mostly(st.floats(0, 1), st.floats(-1, 3) | junk),
    "top_k": st.integers(-1, 50),
    "stream": mostly(st.booleans(), junk),
    "metadata": st.fixed_dictionaries({}, optional={"user_id": texts | st.none()}),
    "output_config": st.fixed_dictionaries({}, optional={"effort": st.just("high")}),
}
requests = st.fixed_dictionaries(
    {
        "model": mostly(st.just("claude-x"), st.just("")),
        "max_tokens": mostly(st.integers(1, 70000), st.integers(-1, 0) | junk),
        "messages": messages,
    },
    optional=optional_fields,
)


@PROPERTY
@given(requests, st.sampled_from(["none", "reasoning", "reasoning_content"]), st.booleans())
def test_any_request_translates_or_is_refused(
    request: dict[str, Any], echo: str, vllm: bool
) -> None:
    options = RequestOptions(
        model="m", reasoning_echo=echo, vllm_extensions=vllm, max_output_tokens=4096
    )  # type: ignore[arg-type]
    try:
        translated = translate_request(request, options)
    except InvalidRequest as exc:
        assert exc.status == 400
        assert exc.message
        return
    ChatCompletionRequest.model_validate_json(translated.body)
    assert list(translated.dropped) == sorted(set(translated.dropped))


tool_calls = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("function")},
        optional={
            "id": st.sampled_from(["call_1", "functions.Bash:0", ""]) | junk,
            "function": st.fixed_dictionaries(
                {"name": mostly(st.sampled_from(["Bash", "web_search"]), st.just("") | junk)},
                optional={
                    "arguments": st.sampled_from(
                        ['{"a": 1}', "", '{"a": 1', "[]", '{"a":1}{"b":2}']
                    )
                    | junk,
                },
            ),
        },
    )
    | junk,
    max_size=3,
)
backend_messages = st.fixed_dictionaries(
    {"role": st.just("assistant")},
    optional={
        "content": mostly(texts | st.none(), junk),
        "reasoning": mostly(texts, junk),
        "reasoning_content": mostly(texts, junk),
        "tool_calls": mostly(tool_calls, junk),
    },
)
choices = st.fixed_dictionaries(
    {"message": mostly(backend_messages, junk)},
    optional={
        "finish_reason": mostly(
            st.sampled_from(["stop", "length", "tool_calls", "content_filter"]), junk
        ),
        "stop_reason": st.sampled_from(["END", 2]) | junk,
    },
)
usage = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": st.integers(-1, 100) | junk,
        "completion_tokens": st.integers(-1, 100) | junk,
        "prompt_tokens_details": st.fixed_dictionaries(
            {}, optional={"cached_tokens": st.integers(-1, 200) | junk}
        )
        | junk,
    },
)
completions = st.fixed_dictionaries(
    {"choices": mostly(st.lists(mostly(choices, junk), min_size=1, max_size=2), junk)},
    optional={"id": st.sampled_from(["chatcmpl-1", ""]) | junk, "usage": mostly(usage, junk)},
)


@PROPERTY
@given(completions, st.sampled_from([frozenset(), frozenset({"Bash"})]))
def test_any_backend_body_gives_a_message_or_a_502(
    completion: dict[str, Any], tools: frozenset[str]
) -> None:
    context = ResponseContext(model="claude-x", stop_sequences=("END",), client_tools=tools)
    try:
        body = translate_response(orjson.dumps(completion), context)
    except BackendError as exc:
        assert (exc.status, exc.error_type) == (502, "api_error")
        return
    message = anthropic.types.Message.model_validate_json(body)
    assert message.model == "claude-x"
    assert message.usage.input_tokens >= 0


@PROPERTY
@given(
    st.integers(100, 599),
    st.binary(max_size=40) | completions.map(orjson.dumps) | junk.map(orjson.dumps),
)
def test_any_error_body_gives_an_anthropic_error(status: int, body: bytes) -> None:
    out_status, out = translate_error(status, body)
    assert out_status >= 400
    error = ErrorResponse.model_validate_json(out)
    assert error.error.message
