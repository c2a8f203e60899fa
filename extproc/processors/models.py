"""`GET /v1/models` and `GET /v1/models/{id}`, answered by the gateway itself.

Anthropic clients (the path starts with /anthropic/, or the request carries
`anthropic-version`, as every Anthropic SDK and Claude Code send) get Anthropic's format;
OpenAI clients get OpenAI's. Listed: the configured models and their plain aliases, then
whatever each catch-all backend (no `models` configured) lists at its own model endpoint,
fetched with the backend's credentials and kept for 30 s. One exception keeps the old
behaviour for OpenAI clients of a single catch-all backend: their request goes to that
backend untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

import aiohttp
import orjson
import structlog

from extproc.config import Backend
from extproc.errors import GatewayError, NotFound
from extproc.gateway import Gateway
from extproc.processors import model_catalog as catalog
from extproc.processors.base import Action, RequestInfo, Respond
from extproc.processors.passthrough import UntouchedProcessor, openai_error
from extproc.processors.side_requests import auth_headers, cached, remember, side_timeout

log = structlog.get_logger("extproc.models")

MODELS_PATHS: Final = ("/v1/models", "/anthropic/v1/models")
MODEL_LIST_TTL_S: Final = 30.0


class ModelsProcessor(UntouchedProcessor):
    def __init__(self, info: RequestInfo, gateway: Gateway) -> None:
        super().__init__(info, gateway)
        self.anthropic = info.path.startswith("/anthropic/") or "anthropic-version" in info.headers
        # Metrics and the request log line (api `models`); a request passed to the backend
        # is not processed further, so its status is Envoy's to log.
        self.record = gateway.telemetry.start("models", info.request_id, info.headers)

    async def request_headers(self, end_of_stream: bool) -> Action:
        config = self.gateway.config
        lone = config.backends[0] if len(config.backends) == 1 else None
        if not self.anthropic and lone is not None and not lone.models:
            return await super().request_headers(end_of_stream)
        if self.info.method != "GET":
            return self._error(GatewayError(
                f"{self.info.method} is not allowed on {self.info.path}; use GET",
                status=405, error_type="invalid_request_error"))
        try:
            answer = await self._answer()
        except GatewayError as err:
            return self._error(err)
        self.record.status = answer.status
        self.record.end()
        return answer

    async def _answer(self) -> Respond:
        entries = list(catalog.configured(self.gateway.config))
        for backend in self.gateway.config.backends:
            if not backend.models:
                entries += await self._reported(backend)
        entries = catalog.unique(entries)
        model_id = _model_id(self.info.path)
        if model_id is not None:
            entry = catalog.find(self.gateway.config, entries, model_id)
            if entry is None:
                raise NotFound(f"model: {model_id!r} is not served by this gateway")
            render = catalog.anthropic_model if self.anthropic else catalog.openai_model
            return _json(render(entry))
        if not self.anthropic:
            return _json(catalog.openai_list(entries))
        query = dict(parse_qsl(self.info.query))
        return _json(catalog.anthropic_list(catalog.page(entries, query)))

    async def _reported(self, backend: Backend) -> list[catalog.ModelEntry]:
        key = f"models:{backend.name}"
        hit = cached(self.gateway, key)
        if isinstance(hit, list):
            return hit
        cards = await self._fetch(backend)
        if cards is None:
            return []
        entries = catalog.reported(backend, cards)
        remember(self.gateway, key, entries, MODEL_LIST_TTL_S)
        return entries

    async def _fetch(self, backend: Backend) -> list[Mapping[str, Any]] | None:
        config = self.gateway.config
        if backend.schema_ == "anthropic":
            url = backend.base_url + "/v1/models?limit=1000"
        else:
            url = backend.base_url + "/models"
        try:
            async with self.gateway.http().get(
                url, headers=auth_headers(config, backend, self.info.headers),
                timeout=aiohttp.ClientTimeout(total=side_timeout(config)),
            ) as reply:
                status, body = reply.status, await reply.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("model_list_unreachable", backend=backend.name, error=type(exc).__name__)
            return None
        try:
            data = orjson.loads(body) if status == 200 else None
        except orjson.JSONDecodeError:
            data = None
        cards = data.get("data") if isinstance(data, dict) else None
        if not isinstance(cards, list):
            log.warning("model_list_failed", backend=backend.name, status=status)
            return None
        return [card for card in cards if isinstance(card, dict)]

    def close(self) -> None:
        self.record.close()

    def _error(self, err: GatewayError) -> Respond:
        self.record.fail(err.error_type)
        self.record.status = err.status
        self.record.end()
        if self.anthropic:
            return Respond.error(err)
        return openai_error(err.status, err.message, err.error_type)


def _model_id(path: str) -> str | None:
    """The `{id}` of /v1/models/{id} (ids may hold slashes: `Qwen/Qwen3-8B`)."""
    for base in MODELS_PATHS:
        if path.startswith(base + "/") and len(path) > len(base) + 1:
            return unquote(path[len(base) + 1 :])
    return None


def _json(value: object) -> Respond:
    return Respond(status=200, body=orjson.dumps(value))
