"""The aiohttp application: vLLM's endpoints plus the control API used by tests.

vLLM-compatible: POST /v1/chat/completions, POST /v1/messages, POST /v1/messages/count_tokens,
GET /v1/models, POST /tokenize, GET /health.

Control API (not part of vLLM; paths start with /__mock/ and are not recorded):
- POST /__mock/script   JSON list of scripted responses (or one object), queued FIFO;
                        answers {"queued": <items now waiting>}; 400 with the reason if invalid.
- GET  /__mock/script   {"pending": n}
- GET  /__mock/requests every request received, in order:
                        [{"method","path","query","headers":{lower-case name: value},"body"}]
                        (`body` is the parsed JSON, else text, else {"base64": ...});
                        `raw_body` is the exact bytes, base64-encoded.
- POST /__mock/reset    clears the script queue, the request log and the prefix cache.
- GET  /__mock/config   the current settings; POST /__mock/config changes some (MockConfig
                        fields: family, dialect, models, tool_parser, chunk_delay_s, fast, ...).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from extproc.mock_backend.completions import chat_completions, count_tokens_route, messages
from extproc.mock_backend.dialects import get_dialect, http_error_body, model_not_found_body
from extproc.mock_backend.families import DEFAULT_FAMILY, family_for_model, get_family
from extproc.mock_backend.scenarios import ScriptItem
from extproc.mock_backend.state import (
    FAST_CACHE,
    STATE,
    ConfigUpdate,
    MockConfig,
    MockState,
    RecordedRequest,
)
from extproc.mock_backend.tokenizer import render_openai_prompt, token_ids, tokenize
from extproc.mock_backend.wire import json_response

_SCRIPT = TypeAdapter(list[ScriptItem])
_MAX_BODY = 64 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(config: MockConfig | None = None, **overrides: Any) -> web.Application:
    """The mock backend as an aiohttp app; `overrides` are MockConfig fields."""
    app = web.Application(client_max_size=_MAX_BODY, middlewares=[_record])
    app.on_response_prepare.append(_anthropic_request_id)
    app[STATE] = MockState(replace(config or MockConfig(), **overrides))
    app[FAST_CACHE] = {}
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens_route)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/tokenize", tokenize_route)
    app.router.add_get("/health", health)
    app.router.add_post("/__mock/script", post_script)
    app.router.add_get("/__mock/script", get_script)
    app.router.add_get("/__mock/requests", get_requests)
    app.router.add_post("/__mock/reset", reset)
    app.router.add_get("/__mock/config", get_config)
    app.router.add_post("/__mock/config", post_config)
    return app


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    if not request.path.startswith("/__mock/") and not state.config.fast:
        body = await request.read()
        headers = list(request.headers.items())
        state.record(
            RecordedRequest(request.method, request.path, request.query_string, headers, body)
        )
    if _unauthorized(request, state.config.api_key):
        return json_response(b'{"error":"Unauthorized"}', 401)
    return await handler(request)


async def _anthropic_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Anthropic's API names each answer in a `request-id` header; so does our Messages API."""
    if request.path.startswith("/v1/messages"):
        response.headers["request-id"] = "req_mock_" + secrets.token_hex(12)


def _unauthorized(request: web.Request, api_key: str | None) -> bool:
    """vLLM's --api-key check: only /v1 paths, never OPTIONS."""
    if not api_key or not request.path.startswith("/v1") or request.method == "OPTIONS":
        return False
    return request.headers.get("Authorization") != f"Bearer {api_key}"


def _default_dialect(config: MockConfig, model: str | None = None) -> str:
    family = get_family(config.family or family_for_model(model) or DEFAULT_FAMILY)
    return config.dialect or family.dialect


def _model_error(config: MockConfig, model: str) -> web.Response:
    dialect = get_dialect(_default_dialect(config, model))
    return json_response(model_not_found_body(dialect, model), 404)


# --- vLLM endpoints besides completions -------------------------------------------------------


async def health(_request: web.Request) -> web.Response:
    return web.Response(status=200)


async def models(request: web.Request) -> web.Response:
    config = request.app[STATE].config
    created = int(time.time())
    cards = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": config.max_model_len,
            "permission": [
                {
                    "id": "modelperm-" + secrets.token_hex(16),
                    "object": "model_permission",
                    "created": created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        for name in config.served_names()
    ]
    return json_response(orjson.dumps({"object": "list", "data": cards}))


async def tokenize_route(request: web.Request) -> web.Response:
    """vLLM's /tokenize: {model, prompt} or {model, messages, add_generation_prompt?, tools?}."""
    config = request.app[STATE].config
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    dialect = get_dialect(_default_dialect(config))
    if not isinstance(body, dict):
        return json_response(
            http_error_body(dialect, "Invalid JSON body", "BadRequestError", 400), 400
        )
    model = body.get("model") if isinstance(body.get("model"), str) else None
    if not config.serves(model):
        return _model_error(config, str(model))
    if isinstance(body.get("messages"), list):
        add_prompt = body.get("add_generation_prompt", True) is not False
        text = render_openai_prompt(body["messages"], body.get("tools"), add_prompt)
    elif isinstance(body.get("prompt"), str):
        text = body["prompt"]
    else:
        message = "Either `prompt` or `messages` is required."
        return json_response(http_error_body(dialect, message, "BadRequestError", 400), 400)
    ids = token_ids(text)
    result: dict[str, Any] = {
        "count": len(ids),
        "max_model_len": config.max_model_len,
        "tokens": ids,
    }
    if body.get("return_token_strs") is True:
        result["token_strs"] = tokenize(text)
    elif dialect.token_id_nulls:
        result["token_strs"] = None
    return json_response(orjson.dumps(result))


# --- control API -------------------------------------------------------------------------------


async def post_script(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        raw = orjson.loads(await request.read())
        items = _SCRIPT.validate_python(raw if isinstance(raw, list) else [raw])
    except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
        return json_response(orjson.dumps({"error": str(exc)}), 400)
    state.script.extend(items)
    return json_response(orjson.dumps({"queued": len(state.script)}))


async def get_script(request: web.Request) -> web.Response:
    return json_response(orjson.dumps({"pending": len(request.app[STATE].script)}))


async def get_requests(request: web.Request) -> web.Response:
    state: MockState = request.app[STATE]
    return json_response(orjson.dumps([r.as_json() for r in state.requests]))


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    request.app[FAST_CACHE].clear()
    return json_response(b'{"reset":true}')


async def get_config(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(asdict(request.app[STATE].config)))


async def post_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        update = ConfigUpdate.model_validate_json(await request.read())
        state.config = update.apply(state.config)
    except (ValidationError, ValueError) as exc:
        return json_response(orjson.dumps({"error": str(exc)}), 400)
    request.app[FAST_CACHE].clear()
    return json_response(orjson.dumps(asdict(state.config)))
