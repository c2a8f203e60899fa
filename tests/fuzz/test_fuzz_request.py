"""Fuzzing the request side: any client body becomes a valid OpenAI request or a clean
Anthropic 4xx, never an exception, whatever is wrong with it and wherever.

- Mutations of a rich, valid request (any value anywhere replaced by arbitrary JSON, or removed).
- Hostile bytes through the processor's parse path: invalid UTF-8, cut-off JSON, nesting far
  past every limit, huge strings, objects with thousands of keys.
- The same bytes through the OpenAI pass-through (`/v1/chat/completions`) and the
  Anthropic-schema pass-through, which re-serialize the client's JSON.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import orjson
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse
from fuzz_helpers import (
    INVALID_UTF8,
    JSON,
    anthropic_error,
    corrupt,
    gateway,
    info,
    nested,
    refused,
)
from hypothesis import event, example, given
from hypothesis import strategies as st

from extproc.errors import InvalidRequest
from extproc.processors.base import Continue, Respond
from extproc.processors.messages import MessagesProcessor
from extproc.processors.passthrough import ChatCompletionsProcessor
from extproc.schemas.openai import ChatCompletionRequest
from extproc.service.mutations import render
from extproc.translators.request import RequestOptions, translate_request

BASH = {
    "name": "Bash",
    "description": "Run a command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
        "required": ["command"],
    },
}
# Every feature at once, so a mutation anywhere lands in code that does something with it.
RICH: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    "tools": [BASH, {"type": "web_search_20250305", "name": "web_search"}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "stop_sequences": ["END"],
    "temperature": 0.2,
    "top_k": 20,
    "metadata": {"user_id": "u-1"},
    "stream": True,
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "list files"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "use ls", "signature": "sig"},
            {"type": "text", "text": "Running ls."},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
             "content": [{"type": "text", "text": "a.txt"}]},
            {"type": "text", "text": "and now?"},
        ]},
        {"role": "system", "content": "mid-conversation system note"},
        {"role": "user", "content": "go on"},
    ],
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path inside `value`, parents before children."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


RICH_PATHS = paths(RICH)


def replaced(request: Any, path: tuple[Any, ...], value: Any, remove: bool) -> Any:
    result = copy.deepcopy(request)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if remove and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return result


def check_translation(request: Any, options: RequestOptions) -> None:
    try:
        translated = translate_request(request, options)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.message
        anthropic_error(exc.body())
        return
    ChatCompletionRequest.model_validate_json(translated.body)


@given(
    path=st.sampled_from(RICH_PATHS),
    value=JSON,
    remove=st.booleans(),
    echo=st.sampled_from(["none", "reasoning_content"]),
)
def test_any_value_anywhere_translates_or_is_refused(
    path: tuple[Any, ...], value: Any, remove: bool, echo: str
) -> None:
    options = RequestOptions(model="m", reasoning_echo=echo)  # type: ignore[arg-type]
    check_translation(replaced(RICH, path, value, remove), options)


@given(st.lists(st.tuples(st.sampled_from(RICH_PATHS), JSON), min_size=2, max_size=5))
def test_several_mutations_at_once(mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    request: Any = RICH
    for path, value in mutations:
        try:
            request = replaced(request, path, value, remove=False)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path's parent
    check_translation(request, RequestOptions(model="m"))


# ---- hostile bytes through the processor ------------------------------------------------------

GATEWAY = gateway()
PLACEHOLDER = "\x00slot\x00"


def with_slot(path: tuple[Any, ...], model: str) -> bytes:
    """RICH as bytes with `path`'s value left as a placeholder to splice raw bytes into."""
    request = replaced(RICH, path, PLACEHOLDER, remove=False)
    request["model"] = model
    return orjson.dumps(request)


def splice(template: bytes, raw: bytes) -> bytes:
    return template.replace(orjson.dumps(PLACEHOLDER), raw, 1)


# Places that take any JSON, so hostile values there get past validation to the depth checks
# and the encoder: an unknown field, a tool schema, a tool_use input, a structured-output schema.
FREE_FORM = [
    ("zzz_unknown_field",),
    ("tools", 0, "input_schema", "properties", "command"),
    ("messages", 1, "content", 2, "input", "command"),
    ("output_config", "format", "schema", "properties"),
]
SLOTS = st.sampled_from(FREE_FORM) | st.sampled_from(RICH_PATHS)
MODELS = st.sampled_from(["claude-x", "native-x"])  # translated, and Anthropic pass-through
DEPTHS = st.sampled_from([127, 128, 129, 200, 253, 254, 255, 256, 300, 1023, 1024, 1025, 20_000])
NESTED = st.builds(nested, DEPTHS, st.sampled_from(["object", "array"]))
HUGE = st.sampled_from([1, 5_000, 300_000]).map(lambda n: orjson.dumps('é"\\x' * n))
MANY_KEYS = st.integers(1, 20_000).map(
    lambda n: b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(n)) + b"}"
)
ANY_JSON = JSON.map(lambda value: json.dumps(value, ensure_ascii=False).encode())  # big ints too


def spliced(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda path, model, raw: splice(with_slot(path, model), raw),
                     SLOTS, MODELS, values)


NESTED_BODIES = spliced(NESTED)
LARGE_BODIES = spliced(HUGE | MANY_KEYS)
DAMAGED_BODIES = st.one_of(
    st.builds(corrupt, spliced(ANY_JSON), st.integers(0, 10**6), INVALID_UTF8),
    st.builds(lambda data, at: data[: at % (len(data) + 1)], spliced(ANY_JSON), st.integers(0, 10**6)),
    st.binary(max_size=200),
    st.sampled_from([b"", b"\xef\xbb\xbf{}", b"[]", b"null", b"1e999", b"-", nested(1025, "array")]),
)
ALL_BODIES = NESTED_BODIES | LARGE_BODIES | DAMAGED_BODIES | spliced(ANY_JSON)
# Found by this suite, kept as fixed examples: orjson writes at most 254 levels.
FOUND = [
    splice(with_slot(("output_config", "format", "schema", "properties"), "claude-x"), nested(300)),
    splice(with_slot(("max_tokens",), "native-x"), nested(300)),
    splice(with_slot(("max_tokens",), "claude-x"), nested(300)),  # as /v1/chat/completions
]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def messages_body(body: bytes) -> Continue | Respond:
    processor = MessagesProcessor(info(), GATEWAY)
    try:
        return await processor.request_body(body, True)
    finally:
        processor.close()


def check_messages_processor(body: bytes) -> None:
    action = run(messages_body(body))
    error = refused(action)
    event(f"refused: {error['message'][:40]}" if error else "forwarded")
    if error is not None:
        return
    assert isinstance(action, Continue)
    if action.body is not None:  # the Anthropic pass-through keeps bytes it need not change
        parsed = orjson.loads(action.body)
        if dict(action.set_headers)[":path"].endswith("/chat/completions"):
            ChatCompletionRequest.model_validate(parsed)
        # The rendered answer carries the new body's length (Envoy refuses a mismatch).
        answer = ProcessingResponse.FromString(render("request_body", action))
        mutation = answer.request_body.response.header_mutation
        lengths = [h.header.raw_value for h in mutation.set_headers if h.header.key == "content-length"]
        assert lengths == [str(len(action.body)).encode()]


@example(FOUND[0])
@given(NESTED_BODIES)
def test_nesting_at_any_depth_anywhere(body: bytes) -> None:
    check_messages_processor(body)


@example(FOUND[1])
@given(LARGE_BODIES)
def test_huge_strings_and_wide_objects(body: bytes) -> None:
    check_messages_processor(body)


@given(DAMAGED_BODIES)
def test_invalid_utf8_cut_off_and_junk_bodies(body: bytes) -> None:
    check_messages_processor(body)


@given(spliced(ANY_JSON))
def test_any_json_value_anywhere(body: bytes) -> None:
    check_messages_processor(body)


async def chat_body(body: bytes) -> Continue | Respond:
    processor = ChatCompletionsProcessor(info("/v1/chat/completions"), GATEWAY)
    return await processor.request_body(body, True)


@example(FOUND[2])
@given(ALL_BODIES)
def test_hostile_bytes_through_the_openai_pass_through(body: bytes) -> None:
    body = body.replace(b'"claude-x"', b'"claude-y"', 1)
    action = run(chat_body(body))
    if isinstance(action, Respond):
        assert action.status in (400, 404, 413)
        error = orjson.loads(action.body)["error"]
        assert error["message"] and error["type"]
        return
    if action.body is not None:
        orjson.loads(action.body)


def test_nesting_past_the_parser_limit_is_a_400_naming_it() -> None:
    action = run(messages_body(splice(with_slot(("metadata",), "claude-x"), nested(5000))))
    error = refused(action, (400,))
    assert error is not None and "nest" in error["message"]
