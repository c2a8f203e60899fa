"""`POST /v1/messages/count_tokens`: never a 404 (Claude Code calls it).

- Anthropic-schema backends count for themselves: the request goes to their
  `/v1/messages/count_tokens` with the model renamed and the backend's credentials.
- OpenAI-schema backends: the request is translated exactly as `/v1/messages` would be,
  then counted with the model's own chat template by vLLM's `POST /tokenize` (at the
  server root: `http://host:8000/tokenize` for a base URL `http://host:8000/v1`), and the
  count is answered at once: `{"input_tokens": N}`. The backend never sees a completion.
- Without `/tokenize` (404/405/501, unreachable; remembered for a minute), on any other
  tokenize failure, or with `count_tokens: estimate` in the backend's config, the answer
  is an estimate: the translated `messages` and `tools` as compact JSON, 4 UTF-8 bytes per
  token, rounded up (translators/token_estimate.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import orjson
import structlog

from extproc.config import Backend
from extproc.errors import GatewayError
from extproc.gateway import Gateway
from extproc.processors.base import (
    CONTINUE,
    Action,
    Continue,
    RequestInfo,
    Respond,
    post_body_problem,
)
from extproc.processors.messages import parse_body, route_for
from extproc.processors.routing import Plan, renamed_body, to_backend
from extproc.processors.side_requests import (
    auth_headers,
    cached,
    remember,
    server_root,
    side_timeout,
)
from extproc.translators.request import translate_request
from extproc.translators.token_estimate import estimate_tokens, prompt_bytes

log = structlog.get_logger("extproc.count_tokens")

COUNT_TOKENS_PATHS: Final = ("/v1/messages/count_tokens", "/anthropic/v1/messages/count_tokens")
# How long a backend without /tokenize is not asked again.
NO_TOKENIZE_TTL_S: Final = 60.0
_UNAVAILABLE: Final = frozenset({404, 405, 501})


class CountTokensProcessor:
    def __init__(self, info: RequestInfo, gateway: Gateway) -> None:
        self.info = info
        self.gateway = gateway
        # Metrics and the request log line (api `anthropic_count_tokens`); an Anthropic
        # backend's own answer is not processed, so its status is Envoy's to log.
        self.record = gateway.telemetry.start("anthropic_count_tokens", info.request_id,
                                              info.headers)

    async def request_headers(self, end_of_stream: bool) -> Action:
        problem = post_body_problem(self.info, end_of_stream)
        return CONTINUE if problem is None else self._refuse(problem)

    async def request_body(self, body: bytes, end_of_stream: bool) -> Action:
        self.record.body_received()
        try:
            return await self._count(body)
        except GatewayError as err:
            return self._refuse(err)

    def _refuse(self, err: GatewayError) -> Respond:
        self.record.fail(err.error_type)
        return self._answer(Respond.error(err))

    def _answer(self, respond: Respond) -> Respond:
        """The gateway answers itself: the request is over."""
        self.record.status = respond.status
        self.record.end()
        return respond

    async def _count(self, body: bytes) -> Action:
        config = self.gateway.config
        request = parse_body(body, config.limits.max_request_bytes)
        plan = route_for(self.gateway, request)
        backend = plan.backend
        self.record.routed(str(request["model"]), plan.model, backend.name, backend.schema_)
        if backend.schema_ == "anthropic":
            return self._pass_through(request, plan)
        # count_tokens takes no max_tokens (and no stream); the translator wants one.
        counted = {k: v for k, v in request.items() if k != "stream"}
        counted.setdefault("max_tokens", 1)
        translated = translate_request(counted, plan.options)
        chat = orjson.loads(translated.body)
        count = None
        if backend.count_tokens == "tokenize":
            count = await self._tokenize(backend, chat)
        if count is None:
            count = estimate_tokens(prompt_bytes(chat))
        return self._answer(Respond(status=200, body=orjson.dumps({"input_tokens": count})))

    def _pass_through(self, request: dict[str, object], plan: Plan) -> Action:
        new_body = renamed_body(request, plan.model)
        set_headers, remove = to_backend(
            self.gateway.config, plan.backend, plan.base_path + "/v1/messages/count_tokens",
            anthropic_schema=True,
        )
        return Continue(set_headers=set_headers, remove_headers=remove,
                        body=new_body, clear_route_cache=True, skip_rest=True)

    async def _tokenize(self, backend: Backend, chat: Mapping[str, Any]) -> int | None:
        """vLLM's count with the chat template, or None (then the caller estimates)."""
        flag = f"no-tokenize:{backend.name}"
        if cached(self.gateway, flag):
            return None
        payload: dict[str, Any] = {
            "model": chat["model"],
            "messages": chat["messages"],
            "add_generation_prompt": chat.get("add_generation_prompt", True),
        }
        for key in ("tools", "chat_template_kwargs", "continue_final_message"):
            if key in chat:
                payload[key] = chat[key]
        config = self.gateway.config
        headers = {"content-type": "application/json",
                   **auth_headers(config, backend, self.info.headers)}
        try:
            async with self.gateway.http().post(
                server_root(backend) + "/tokenize", data=orjson.dumps(payload), headers=headers,
                timeout=aiohttp.ClientTimeout(total=side_timeout(config)),
            ) as reply:
                status, body = reply.status, await reply.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("tokenize_unreachable", backend=backend.name, error=type(exc).__name__)
            remember(self.gateway, flag, True, NO_TOKENIZE_TTL_S)
            return None
        if status in _UNAVAILABLE:
            remember(self.gateway, flag, True, NO_TOKENIZE_TTL_S)
            return None
        count = _count_of(body) if status == 200 else None
        if count is None:
            log.warning("tokenize_failed", backend=backend.name, status=status)
        return count

    async def response_headers(self, headers: Mapping[str, str], end_of_stream: bool) -> Action:
        # Not reached: skip_rest in the request body answer ends the ext_proc stream, so an
        # Anthropic backend's answer passes untouched. Skip again, should it ever come.
        return Continue(skip_rest=True)

    async def response_body(self, chunk: bytes, end_of_stream: bool) -> Action:
        return CONTINUE

    def close(self) -> None:
        self.record.close()


def _count_of(body: bytes) -> int | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    count = data.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    tokens = data.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None
