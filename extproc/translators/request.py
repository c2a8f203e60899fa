"""Anthropic Messages request (parsed JSON) -> OpenAI chat completions request (bytes).

One schema validation pass, then translation straight from the validated dicts. Fields we
cannot carry are named in `TranslatedRequest.dropped`; bad input raises `InvalidRequest`
naming the field.

The body's key order is fixed: settings that stay the same for a whole conversation first,
then `tools`, then `messages`, then the flags that depend on the conversation's tail. Two
turns of one conversation therefore share a byte-identical prefix, which keeps prefix
caches (vLLM's, and any in between) warm. We send `max_tokens`, not
`max_completion_tokens`: every OpenAI-compatible server we target accepts it, while
`max_completion_tokens` is missing from older ones.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final

import orjson
from pydantic import ValidationError

from extproc.errors import InvalidRequest
from extproc.mappings import TOOL_CHOICE
from extproc.schemas.anthropic import KNOWN_REQUEST_FIELDS, REQUEST_VALIDATOR, describe_error
from extproc.translators.client_tools import (
    CONSUMED_FIELDS,
    client_tool_function,
    is_client_tool_type,
)
from extproc.translators.context import ResponseContext
from extproc.translators.conversation import convert_conversation, json_deeper_than
from extproc.translators.options import RequestOptions
from extproc.translators.token_estimate import fit_output

__all__ = ["RequestOptions", "TranslatedRequest", "load_request", "translate_request"]

# Anthropic features an OpenAI backend has no counterpart for.
_ANTHROPIC_ONLY: Final = (
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "cache_control",
    "inference_geo",
    "speed",
    "diagnostics",
)
_CLIENT_TOOL_FIELDS: Final = frozenset({"type", "name", "description", "input_schema"})


@dataclass(slots=True)  # per request: not frozen (see processors/base.py Continue)
class TranslatedRequest:
    body: bytes  # the OpenAI chat completions request, JSON
    stream: bool
    context: ResponseContext
    dropped: tuple[str, ...] = ()  # what the backend will not see, by name, sorted
    server_tools: tuple[str, ...] = ()  # Anthropic server tool types requested, in order


def translate_request(request: dict[str, Any], options: RequestOptions) -> TranslatedRequest:
    if not isinstance(request, dict):
        raise InvalidRequest("request body must be a JSON object")
    _check_counts(request, options)
    raw_tools = request.get("tools")
    seen_tools, tools_json = _seen_tools(raw_tools, options.max_json_depth)
    try:
        # Tools seen before were validated then; they are most of a Claude Code request.
        REQUEST_VALIDATOR.validate_python(
            request if seen_tools is None else {k: v for k, v in request.items() if k != "tools"}
        )
    except ValidationError as exc:
        raise InvalidRequest(describe_error(exc)) from None

    if all(message["role"] == "system" for message in request["messages"]):
        raise InvalidRequest("messages: at least one user or assistant message is required")

    dropped: set[str] = {key for key in request if key not in KNOWN_REQUEST_FIELDS}
    dropped.update(name for name in _ANTHROPIC_ONLY if request.get(name) is not None)
    stream = bool(request.get("stream"))
    stops = request.get("stop_sequences") or []
    tools = seen_tools or _translated_tools(raw_tools or [], tools_json, options.max_json_depth)
    dropped.update(tools.dropped)
    functions, client_tools = tools.functions, tools.client_tools

    max_tokens = _max_tokens(request, options)
    body: dict[str, Any] = {"model": options.model}
    if options.context_window is None:
        body["max_tokens"] = max_tokens
    _sampling(request, options, body, dropped)
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
        if options.vllm_extensions:
            # Usage on every chunk: message_start can report the real input_tokens.
            body["stream_options"]["continuous_usage_stats"] = True
    _thinking(request.get("thinking"), options, body, dropped)
    _output_config(request, body, dropped, options.max_json_depth)
    choice = request.get("tool_choice")
    if functions:
        if _names_server_tool(choice, request.get("tools") or ()):
            dropped.add("tool_choice")  # a server tool: the gateway answers for it
        else:
            _tool_choice(choice, client_tools, body)
        body["tools"] = tools.encoded
    elif choice is not None and choice["type"] in ("any", "tool"):
        dropped.add("tool_choice")  # no client tool to choose from
    messages = convert_conversation(request, options, dropped)
    body["messages"] = messages
    if _is_prefill(request, messages):
        # A final assistant message is a prefix to continue, as Anthropic treats it.
        if options.vllm_extensions:
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        else:
            dropped.add("prefill")  # the backend will answer after it, not continue it
    if options.context_window is not None:
        # Depends on the conversation's length, so it goes last: the prefix stays stable.
        body["max_tokens"] = fit_output(max_tokens, body, options.context_window)

    context = ResponseContext(
        model=request["model"],
        stop_sequences=tuple(stops),
        client_tools=client_tools,
        tool_call_rescue=options.tool_call_rescue,
        think_tags=options.think_tags,
        tool_parameter_types=_parameter_types(functions) if options.tool_call_rescue else {},
    )
    try:
        encoded = orjson.dumps(body)
    except orjson.JSONEncodeError:  # orjson writes at most 254 levels; the checks above cap less
        raise InvalidRequest("request nests too deeply to translate") from None
    return TranslatedRequest(
        body=encoded,
        stream=stream,
        context=context,
        dropped=tuple(sorted(dropped)),
        server_tools=tools.server_tools,
    )


def _parameter_types(functions: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """tool -> parameter -> its JSON schema type (the first non-null one of a type list)."""
    types: dict[str, dict[str, str]] = {}
    for tool in functions:
        properties = tool["function"]["parameters"].get("properties")
        if not isinstance(properties, dict):
            continue
        declared: dict[str, str] = {}
        for name, schema in properties.items():
            kind = schema.get("type") if isinstance(schema, dict) else None
            if isinstance(kind, list):
                kind = next((k for k in kind if isinstance(k, str) and k != "null"), None)
            if isinstance(kind, str):
                declared[name] = kind
        types[tool["function"]["name"]] = declared
    return types


def _check_counts(request: dict[str, Any], options: RequestOptions) -> None:
    """Before validation, so an oversized request costs no validation work."""
    messages, tools = request.get("messages"), request.get("tools")
    if isinstance(messages, list) and len(messages) > options.max_messages:
        raise InvalidRequest(
            f"messages: {len(messages)} messages exceed the limit of {options.max_messages}"
        )
    if isinstance(tools, list) and len(tools) > options.max_tools:
        raise InvalidRequest(f"tools: {len(tools)} tools exceed the limit of {options.max_tools}")


def _max_tokens(request: dict[str, Any], options: RequestOptions) -> int:
    requested: int = request["max_tokens"]
    if requested == 0:
        raise InvalidRequest(
            "max_tokens: 0 (prompt-cache pre-warming) is not supported by this backend;"
            " ask for at least 1 token"
        )
    limit = options.max_output_tokens
    # Claude Code asks for 32000+; more than the model can produce is an error on vLLM.
    return requested if limit is None else min(requested, limit)


def _sampling(
    request: dict[str, Any], options: RequestOptions, body: dict[str, Any], dropped: set[str]
) -> None:
    for name in ("temperature", "top_p"):
        if request.get(name) is not None:
            body[name] = request[name]
    if request.get("top_k") is not None:
        if options.vllm_extensions:
            body["top_k"] = request["top_k"]
        else:
            dropped.add("top_k")
    if request.get("stop_sequences"):
        body["stop"] = request["stop_sequences"]
    user = _user_id(request.get("metadata"), dropped)
    if user:
        body["user"] = user


def _user_id(metadata: dict[str, Any] | None, dropped: set[str]) -> str | None:
    if not metadata:
        return None
    dropped.update(f"metadata.{key}" for key in metadata if key != "user_id")
    user_id = metadata.get("user_id")
    return user_id if isinstance(user_id, str) and user_id else None


@dataclass(slots=True)
class _Tools:
    """A request's `tools`, translated; kept for the next request that sends the same ones."""

    anthropic: bytes  # the client's tools as JSON: what a later request must match
    parsed: list[Any]  # ... and as parsed then (read-only once cached)
    functions: list[dict[str, Any]]  # OpenAI function tools (read-only once cached)
    encoded: orjson.Fragment  # `functions` as JSON, spliced into the body as is
    client_tools: frozenset[str]
    server_tools: tuple[str, ...]
    dropped: frozenset[str]


_NO_TOOLS: Final = _Tools(b"[]", [], [], orjson.Fragment(b"[]"), frozenset(), (), frozenset())
# Claude Code sends the same ~20 tools, 40-60 KB of schemas, with every request of a
# session: validating, checking and converting them once saves ~25% of translating such a
# request.
_TOOLS_CACHE_MAX: Final = 16
_tools_cache: dict[tuple[int, int], _Tools] = {}


def _seen_tools(tools: Any, max_depth: int) -> tuple[_Tools | None, bytes]:
    """(the translation of these exact tools from an earlier request or None, their JSON)."""
    if not tools:
        return None, b""
    for key, known in _tools_cache.items():
        if known.parsed is tools and key[1] == max_depth:  # load_request found them
            return known, known.anthropic
    try:
        anthropic = orjson.dumps(tools)
    except orjson.JSONEncodeError:  # past orjson's 254 levels: validation and checks say why
        return None, b""
    cached = _tools_cache.get((zlib.crc32(anthropic), max_depth))
    return (cached if cached is not None and cached.anthropic == anthropic else None), anthropic


def _translated_tools(tools: list[Any], anthropic: bytes, max_depth: int) -> _Tools:
    """Validated `tools` (their JSON in `anthropic`, empty if unknown), translated and kept."""
    if not tools:
        return _NO_TOOLS
    dropped: set[str] = set()
    functions, server_tools = _tools(tools, max_depth, dropped)
    try:
        encoded = orjson.dumps(functions)
    except orjson.JSONEncodeError:  # a max_json_depth above what orjson writes
        raise InvalidRequest("request nests too deeply to translate") from None
    translated = _Tools(
        anthropic=anthropic,
        parsed=tools,
        functions=functions,
        encoded=orjson.Fragment(encoded),
        client_tools=frozenset(tool["function"]["name"] for tool in functions),
        server_tools=tuple(server_tools),
        dropped=frozenset(dropped),
    )
    if anthropic:
        if len(_tools_cache) >= _TOOLS_CACHE_MAX:
            _tools_cache.clear()
        _tools_cache[zlib.crc32(anthropic), max_depth] = translated
    return translated


# ---- parsing: tools seen before are not parsed again -------------------------------------

_TOOLS_KEY: Final = b'"tools":'
# Stands for a known tools array while the rest of a body is parsed. Random per process, so
# no client can send it: reading it back as the top-level `tools` proves that the bytes it
# replaced were exactly that value (a "tools" key nested anywhere else would not put it there).
_STAND_IN: Final = secrets.token_hex(16)
_STAND_IN_JSON: Final = orjson.dumps(_STAND_IN)
_KEYS_TRIED: Final = 8
_HEAD_BYTES: Final = 16 * 1024


def load_request(body: bytes) -> Any:
    """`orjson.loads(body)`, except that a tools array sent before, byte for byte, is not parsed
    again: the request gets the one parsed then (read-only). Claude Code's tools are ~80% of
    its request bytes and repeat on every turn; bodies written with other spacing than
    orjson's just parse whole. Errors are orjson's, from parsing the body as it came."""
    if _tools_cache:
        for key in islice(_tools_keys(body), _KEYS_TRIED):
            at = key + len(_TOOLS_KEY)
            for known in _tools_cache.values():
                if body.startswith(known.anthropic, at):
                    request = _load_around(body, at, known)
                    if request is not None:
                        return request
                    break
    return orjson.loads(body)


def _tools_keys(body: bytes) -> Iterator[int]:
    """Where `"tools":` occurs: in the first _HEAD_BYTES, then from the end. Searching costs
    ~0.5 µs per KB of JSON (full of the `"` the key starts with), and Claude Code sends
    `tools` after `messages`: near the start on a first turn, near the end once the
    conversation is long (a forward search took 200 µs on a 460 KB body)."""
    head = min(len(body), _HEAD_BYTES)
    key = body.find(_TOOLS_KEY, 0, head)
    while key >= 0:
        yield key
        key = body.find(_TOOLS_KEY, key + 1, head)
    end, rest = len(body), max(0, head - len(_TOOLS_KEY) + 1)  # a key across `head` too
    while (key := body.rfind(_TOOLS_KEY, rest, end)) >= 0:
        yield key
        end = key


def _load_around(body: bytes, at: int, known: _Tools) -> dict[str, Any] | None:
    try:
        request = orjson.loads(body[:at] + _STAND_IN_JSON + body[at + len(known.anthropic):])
    except orjson.JSONDecodeError:
        return None  # the whole body says what is wrong
    if not isinstance(request, dict) or request.get("tools") != _STAND_IN:
        return None
    request["tools"] = known.parsed
    return request


def _tools(tools: Any, max_depth: int, dropped: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    functions: list[dict[str, Any]] = []
    server_tools: list[str] = []
    names: set[str] = set()
    for number, tool in enumerate(tools):
        kind = tool.get("type")
        function: dict[str, Any] | None
        if kind is None or kind == "custom":
            function, consumed = {"name": tool["name"]}, _CLIENT_TOOL_FIELDS
            schema = tool["input_schema"]
            if json_deeper_than(schema, max_depth):
                raise InvalidRequest(
                    f"tools.{number}.input_schema: nested deeper than {max_depth} levels"
                )
            if tool.get("description"):
                function["description"] = tool["description"]
            function["parameters"] = schema
        else:
            # Anthropic-defined tools the client runs (bash, text editor, ...) get their
            # schema written out; the others Anthropic runs itself (web search, ...): they
            # are not functions the backend may call.
            function, consumed = client_tool_function(tool), CONSUMED_FIELDS
            if function is None:
                server_tools.append(kind)
                continue
        name = function["name"]
        if name in names:
            raise InvalidRequest(f"tools.{number}.name: tool name {name!r} is used twice")
        names.add(name)
        functions.append({"type": "function", "function": function})
        extra = tool.keys() - consumed
        if extra:
            dropped.update(
                "cache_control" if key == "cache_control" else f"tools.{key}"
                for key in extra
                if tool[key] is not None and tool[key] is not False
            )
    return functions, server_tools


def _names_server_tool(choice: dict[str, Any] | None, tools: Any) -> bool:
    if choice is None or choice["type"] != "tool":
        return False
    return any(
        tool.get("name") == choice["name"]
        and tool.get("type") not in (None, "custom")
        and not is_client_tool_type(tool.get("type"))
        for tool in tools
    )


def _tool_choice(
    choice: dict[str, Any] | None, client_tools: frozenset[str], body: dict[str, Any]
) -> None:
    if choice is None:
        return  # the backend's default with tools is "auto", as Anthropic's is
    kind = choice["type"]
    if kind == "tool":
        name = choice["name"]
        if name not in client_tools:
            raise InvalidRequest(f"tool_choice.name: {name!r} is not one of the request's tools")
        body["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        body["tool_choice"] = TOOL_CHOICE[kind]
    if kind != "none" and choice.get("disable_parallel_tool_use"):
        body["parallel_tool_calls"] = False


def _thinking(
    thinking: dict[str, Any] | None,
    options: RequestOptions,
    body: dict[str, Any],
    dropped: set[str],
) -> None:
    """Anthropic's thinking switch -> the chat template's (Qwen3, GLM, DeepSeek, ... read
    `enable_thinking` or `thinking`). Left out when the client did not ask either way."""
    if thinking is None:
        return
    if options.thinking_switch == "none":
        dropped.add("thinking")
        return
    enabled = thinking["type"] != "disabled"
    body["chat_template_kwargs"] = {"enable_thinking": enabled, "thinking": enabled}
    if thinking.get("budget_tokens") is not None:
        dropped.add("thinking.budget_tokens")  # no portable budget knob on OpenAI servers
    if thinking.get("display") is not None:
        dropped.add("thinking.display")


# Anthropic `output_config.effort` -> OpenAI `reasoning_effort`. vLLM takes low/medium/high
# only (gpt-oss reads it; other models ignore it), so the levels above high become high.
_EFFORT: Final = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def _output_config(
    request: dict[str, Any], body: dict[str, Any], dropped: set[str], max_depth: int
) -> None:
    """`output_config.effort` -> `reasoning_effort`; structured outputs
    (`output_config.format`, formerly `output_format`) -> `response_format` json_schema, which
    vLLM enforces with guided decoding."""
    config = request.get("output_config") or {}
    carried = {"format"}
    if config.get("effort") in _EFFORT:
        body["reasoning_effort"] = _EFFORT[config["effort"]]
        carried.add("effort")
    dropped.update(
        f"output_config.{key}"
        for key, value in config.items()
        if key not in carried and value is not None
    )
    output_format = config.get("format") or request.get("output_format")
    if config.get("format") and request.get("output_format"):
        dropped.add("output_format")  # the older spelling loses to output_config.format
    if output_format:
        if json_deeper_than(output_format["schema"], max_depth):
            where = "output_config.format" if config.get("format") else "output_format"
            raise InvalidRequest(f"{where}.schema: nested deeper than {max_depth} levels")
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output_format["schema"]},
        }


def _is_prefill(request: dict[str, Any], messages: list[dict[str, Any]]) -> bool:
    last = messages[-1] if messages else None
    return (
        request["messages"][-1]["role"] == "assistant"
        and last is not None
        and last["role"] == "assistant"
        and "tool_calls" not in last
        and bool(last["content"])
    )
