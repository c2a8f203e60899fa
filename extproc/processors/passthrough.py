"""Processors that do not translate: unknown paths, and OpenAI clients sharing the gateway."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from extproc.errors import InvalidRequest
from extproc.gateway import Gateway
from extproc.processors.base import (
    BACKEND_HEADER,
    CONTINUE,
    Action,
    Continue,
    RequestInfo,
    Respond,
    redact,
    response_status,
    status_answer,
)
from extproc.processors.routing import CLIENT_CREDENTIALS, renamed_body, to_backend


class UntouchedProcessor:
    """Unknown paths go to the default route as they came, minus client credentials.

    When we send the backend our key, we stay for the response status: an error answer,
    whose text may quote the key, comes to us buffered and is scrubbed; anything else, and
    every answer when no key was sent, passes untouched (the ext_proc stream ends).
    """

    def __init__(self, info: RequestInfo, gateway: Gateway) -> None:
        self.info = info
        self.gateway = gateway
        self.key: str | None = None  # the backend key we sent, if any

    async def request_headers(self, end_of_stream: bool) -> Action:
        remove = [h for h in (BACKEND_HEADER, *CLIENT_CREDENTIALS) if h in self.info.headers]
        set_headers: list[tuple[str, str]] = []
        config = self.gateway.config
        if config.forward_client_api_key:
            remove = [h for h in remove if h == BACKEND_HEADER]
        elif config.backends and (key := config.backends[0].api_key()):
            set_headers.append(("authorization", f"Bearer {key}"))
            self.key = key
        return Continue(
            set_headers=tuple(set_headers),
            remove_headers=tuple(remove),
            # A client-set routing header picked a route already; route again without it.
            clear_route_cache=BACKEND_HEADER in self.info.headers,
            skip_rest=self.key is None,
        )

    async def request_body(self, body: bytes, end_of_stream: bool) -> Action:
        return CONTINUE

    async def response_headers(self, headers: Mapping[str, str], end_of_stream: bool) -> Action:
        return status_answer(response_status(headers), end_of_stream, self.key)

    async def response_body(self, chunk: bytes, end_of_stream: bool) -> Action:
        return Continue(body=redact(chunk, self.key), skip_rest=end_of_stream)

    def close(self) -> None:
        pass


def openai_error(status: int, message: str, error_type: str) -> Respond:
    """OpenAI clients get OpenAI-shaped errors."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": status}}
    return Respond(status=status, body=orjson.dumps(body))


class ChatCompletionsProcessor(UntouchedProcessor):
    """`/v1/chat/completions` for OpenAI clients: route by model, swap credentials, no translation.

    Counted in metrics and the request log (api `openai_chat_completions`). The response is
    not processed (its tokens are Envoy's to log), except when we sent the backend our key:
    then we see the status, and an error answer, whose text may quote the key, is scrubbed.
    """

    def __init__(self, info: RequestInfo, gateway: Gateway) -> None:
        super().__init__(info, gateway)
        self.record = gateway.telemetry.start("openai_chat_completions", info.request_id, info.headers)

    def _refuse(self, status: int, message: str, error_type: str) -> Respond:
        self.record.status = status
        self.record.fail(error_type)
        self.record.end()
        return openai_error(status, message, error_type)

    async def request_headers(self, end_of_stream: bool) -> Action:
        if end_of_stream:
            return self._refuse(400, "request body is empty", "invalid_request_error")
        return CONTINUE

    async def request_body(self, body: bytes, end_of_stream: bool) -> Action:
        self.record.body_received()
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._refuse(400, f"request body is not valid JSON: {exc}", "invalid_request_error")
        model = request.get("model") if isinstance(request, dict) else None
        if not isinstance(model, str) or not model:
            return self._refuse(400, "model: field required", "invalid_request_error")
        plan = self.gateway.plans.get(model)
        if plan is None:
            return self._refuse(404, f"model {model!r} is not served here", "not_found_error")
        if plan.backend.schema_ != "openai":
            return self._refuse(
                400, f"model {model!r} is served by an Anthropic-schema backend", "invalid_request_error"
            )
        try:
            new_body = renamed_body(request, plan.model)
        except InvalidRequest as err:
            return self._refuse(err.status, err.message, err.error_type)
        self.record.routed(model, plan.model, plan.backend.name, plan.backend.schema_)
        if not self.gateway.config.forward_client_api_key:
            self.key = plan.backend.api_key()
        set_headers, remove = to_backend(
            self.gateway.config,
            plan.backend,
            plan.base_path + "/chat/completions",
        )
        return Continue(
            set_headers=set_headers,
            remove_headers=remove,
            body=new_body,
            clear_route_cache=True,
            skip_rest=self.key is None,  # then the answer (SSE included) streams past us
            metadata=plan.metadata,
        )

    async def response_headers(self, headers: Mapping[str, str], end_of_stream: bool) -> Action:
        self.record.status = status = response_status(headers)
        action = status_answer(status, end_of_stream, self.key)
        self.record.passed_through(status, over=action.skip_rest)
        return action

    async def response_body(self, chunk: bytes, end_of_stream: bool) -> Action:
        if end_of_stream:
            self.record.end()
        return await super().response_body(chunk, end_of_stream)

    def close(self) -> None:
        self.record.close()
