"""The two completion endpoints: `/v1/chat/completions` (OpenAI) and `/v1/messages` (Anthropic).

Each request takes the next scripted item if one is queued, else the default rules, resolves
family and dialect, checks the model and context length as vLLM does, and renders the output.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from extproc.mock_backend import anthropic_render as anth
from extproc.mock_backend.dialects import (
    SSE_DONE,
    Dialect,
    error_type_for_status,
    get_dialect,
    http_error_body,
    stream_error_event,
)
from extproc.mock_backend.families import DEFAULT_FAMILY, Family, family_for_model, get_family
from extproc.mock_backend.limits import finalize
from extproc.mock_backend.openai_render import Meta, completion_body, stream_events
from extproc.mock_backend.plan import Faults, HttpError, Output, Turn
from extproc.mock_backend.scenarios import (
    Conversation,
    ScriptItem,
    conversation_from_anthropic,
    conversation_from_openai,
    default_turn,
    faults_of,
    turn_from_script,
)
from extproc.mock_backend.state import FAST_CACHE, STATE, MockConfig, MockState
from extproc.mock_backend.tokenizer import (
    count_tokens,
    render_anthropic_prompt,
    render_openai_prompt,
    token_ids,
)
from extproc.mock_backend.wire import SSE, json_response, write_all_at_once, write_stream


class RequestFailed(Exception):
    """An error response to send instead of a completion."""

    def __init__(self, error: HttpError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Job:
    """Everything one completion request resolved to."""

    family: Family
    dialect: Dialect
    turn: Turn
    conv: Conversation
    meta: Meta


# --- shared resolution ---------------------------------------------------------------------------


def _family(item: ScriptItem | None, config: MockConfig, model: str | None) -> Family:
    name = (item.family if item else None) or config.family or family_for_model(model)
    return get_family(name or DEFAULT_FAMILY)


def _dialect(item: ScriptItem | None, config: MockConfig, family: Family) -> Dialect:
    return get_dialect((item.dialect if item else None) or config.dialect or family.dialect)


async def _json_body(request: web.Request) -> Mapping[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise RequestFailed(HttpError(400, f"Invalid JSON body: {exc}")) from None
    if not isinstance(body, dict):
        raise RequestFailed(HttpError(400, "The request body must be a JSON object."))
    return body


def _missing_model(dialect: Dialect, model: str | None) -> HttpError:
    param = "model" if dialect.model_error_param else None
    return HttpError(404, f"The model `{model}` does not exist.", "NotFoundError", param)


def _check_context(
    config: MockConfig, dialect: Dialect, prompt: int, max_tokens: int | None
) -> None:
    """vLLM's 400s for a prompt (or prompt + max_tokens) over the model's context length."""
    limit = config.max_model_len
    if prompt > limit:
        raise RequestFailed(
            HttpError(
                400,
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {prompt} input tokens. Please reduce the length of the input messages.",
            )
        )
    if max_tokens is not None and prompt + max_tokens > limit:
        if dialect.nested_errors:
            message = (
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's "
                f"maximum context length is {limit} tokens and your request has {prompt} input "
                f"tokens ({max_tokens} > {limit} - {prompt})."
            )
        else:
            message = (
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt + max_tokens} tokens ({prompt} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion."
            )
        raise RequestFailed(HttpError(400, message))


def _cached(state: MockState, prompt: str, turn: Turn) -> int | None:
    if turn.cached_tokens is not None:
        return turn.cached_tokens
    config = state.config
    if not config.prompt_tokens_details:
        return None
    return state.prefix_cache.lookup_and_store(token_ids(prompt)) if config.prefix_caching else 0


def _prepare(
    state: MockState,
    item: ScriptItem | None,
    family: Family,
    dialect: Dialect,
    conv: Conversation,
    prompt: str,
) -> Job:
    config = state.config
    faults = faults_of(item) if item else Faults()
    if faults.http_error:
        raise RequestFailed(faults.http_error)
    if not config.serves(conv.model):
        raise RequestFailed(_missing_model(dialect, conv.model))
    prompt_tokens = count_tokens(prompt)
    _check_context(config, dialect, prompt_tokens, conv.max_tokens)
    if item is None or item.default:
        turn = replace(default_turn(conv, family.content_before_tool_calls), faults=faults)
    else:
        turn = turn_from_script(item)
    meta = Meta(
        response_id=dialect.new_id(),
        created=int(time.time()),
        model=conv.model or config.served_names()[0],
        prompt_tokens=prompt_tokens,
        cached_tokens=_cached(state, prompt, turn),
        usage_override=turn.usage,
    )
    return Job(family, dialect, turn, conv, meta)


def _output(job: Job, config: MockConfig) -> Output:
    return finalize(
        job.turn,
        job.conv,
        job.family,
        tool_parser=config.tool_parser,
        reasoning_parser=config.reasoning_parser,
        id_hex_len=job.dialect.id_hex_len,
    )


def _openai_error(dialect: Dialect, error: HttpError) -> web.Response:
    err_type = error.type or error_type_for_status(error.status)
    body = http_error_body(dialect, error.message, err_type, error.status, error.param)
    return json_response(body, error.status)


def _raw(item: ScriptItem | None) -> web.Response | None:
    if item is None or item.raw_body is None:
        return None
    headers = {"Content-Type": item.content_type or "text/plain; charset=utf-8"}
    return web.Response(body=item.raw_body.encode(), status=item.status, headers=headers)


async def _delay(item: ScriptItem | None) -> None:
    if item is not None and item.delay_s > 0:
        await asyncio.sleep(item.delay_s)


def _chunk_delay(faults: Faults, config: MockConfig) -> float:
    return faults.chunk_delay_s if faults.chunk_delay_s is not None else config.chunk_delay_s


def _stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """(include_usage, continuous_usage_stats) as vLLM reads `stream_options`."""
    options = body.get("stream_options")
    if not isinstance(options, Mapping):
        return False, False
    include = options.get("include_usage", True) is True
    return include, include and options.get("continuous_usage_stats") is True


def _model_of(body: Mapping[str, Any]) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) else None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    config = state.config
    if config.fast:
        return await _fast(request, state, anthropic=False)
    item = state.next_script_item()
    await _delay(item)
    if (raw := _raw(item)) is not None:
        return raw
    dialect = _dialect(item, config, _family(item, config, None))
    try:
        body = await _json_body(request)
        family = _family(item, config, _model_of(body))
        dialect = _dialect(item, config, family)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestFailed(HttpError(400, "messages: Field required (a non-empty list)"))
        if body.get("stream_options") and body.get("stream") is not True:
            raise RequestFailed(
                HttpError(400, "Stream options can only be defined when `stream=True`.")
            )
        conv = conversation_from_openai(body)
        prompt = render_openai_prompt(messages, body.get("tools"))
        job = _prepare(state, item, family, dialect, conv, prompt)
    except RequestFailed as failed:
        return _openai_error(dialect, failed.error)
    out = _output(job, config)
    faults = job.turn.faults
    if not conv.stream:
        return json_response(
            completion_body(job.dialect, job.meta, out), content_type=faults.content_type
        )
    include_usage, continuous = _stream_flags(body)
    events = stream_events(
        job.dialect,
        job.family,
        job.meta,
        out,
        include_usage=include_usage,
        continuous_usage=continuous,
    )
    failure = faults.stream_error
    error_event = (
        stream_error_event(job.dialect, failure.message, failure.type, failure.code)
        if failure
        else None
    )
    return await write_stream(
        request,
        events,
        done=SSE_DONE,
        faults=faults,
        error_event=error_event,
        chunk_delay_s=_chunk_delay(faults, config),
    )


def _anthropic_error(error: HttpError) -> web.Response:
    err_type = error.type or error_type_for_status(error.status)
    return json_response(anth.error_body(err_type, error.message), error.status)


async def messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    config = state.config
    if config.fast:
        return await _fast(request, state, anthropic=True)
    item = state.next_script_item()
    await _delay(item)
    if (raw := _raw(item)) is not None:
        return raw
    try:
        body = await _json_body(request)
        family = _family(item, config, _model_of(body))
        dialect = _dialect(item, config, family)
        if not isinstance(body.get("messages"), list) or not isinstance(
            body.get("max_tokens"), int
        ):
            # FastAPI's request validation answers before the Anthropic layer: OpenAI shape.
            error = HttpError(400, "messages and max_tokens are required", "BadRequestError")
            return _openai_error(dialect, error)
        conv = conversation_from_anthropic(body)
        prompt = render_anthropic_prompt(body)
        job = _prepare(state, item, family, dialect, conv, prompt)
    except RequestFailed as failed:
        return _anthropic_error(failed.error)
    out = _output(job, config)
    faults = job.turn.faults
    if not conv.stream:
        return json_response(anth.messages_body(job.meta, out), content_type=faults.content_type)
    events = anth.messages_events(job.family, job.meta, out)
    failure = faults.stream_error
    return await write_stream(
        request,
        events,
        done=None,
        faults=faults,
        error_event=anth.error_event(failure.message) if failure else None,
        chunk_delay_s=_chunk_delay(faults, config),
    )


async def count_tokens_route(request: web.Request) -> web.StreamResponse:
    try:
        body = await _json_body(request)
    except RequestFailed as failed:
        return _anthropic_error(failed.error)
    config = request.app[STATE].config
    model = _model_of(body)
    if not config.serves(model):
        return _anthropic_error(_missing_model(get_dialect("current"), model))
    return json_response(anth.count_tokens_body(count_tokens(render_anthropic_prompt(body))))


# --- fast mode: precomputed answers for benchmarks -------------------------------------------

FAST_TEXT = "Hello! This is the mock backend answering from its fast path."


def _fast_payload(
    state: MockState, model: str | None, stream: bool, anthropic: bool
) -> list[bytes]:
    config = state.config
    family = _family(None, config, model)
    dialect = _dialect(None, config, family)
    conv = Conversation(model=model, user_texts=["benchmark"])
    out = finalize(
        Turn(text=FAST_TEXT),
        conv,
        family,
        tool_parser=True,
        reasoning_parser=True,
        id_hex_len=dialect.id_hex_len,
    )
    meta = Meta(dialect.new_id(), int(time.time()), model or config.served_names()[0], 12, None)
    if anthropic:
        return (
            anth.messages_events(family, meta, out) if stream else [anth.messages_body(meta, out)]
        )
    if not stream:
        return [completion_body(dialect, meta, out)]
    events = stream_events(dialect, family, meta, out, include_usage=True, continuous_usage=False)
    return [*events, SSE_DONE]


async def _fast(request: web.Request, state: MockState, *, anthropic: bool) -> web.StreamResponse:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = {}
    model = _model_of(body) if isinstance(body, dict) else None
    stream = isinstance(body, dict) and body.get("stream") is True
    cache = request.app[FAST_CACHE]
    key = (anthropic, model, stream)
    parts = cache.get(key)
    if parts is None:
        parts = cache[key] = _fast_payload(state, model, stream, anthropic)
    if not stream:
        return json_response(parts[0])
    delay = state.config.chunk_delay_s
    if delay <= 0:
        return await write_all_at_once(request, b"".join(parts), SSE)
    return await write_stream(
        request, parts, done=None, faults=Faults(), error_event=None, chunk_delay_s=delay
    )
