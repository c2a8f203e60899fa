"""`POST /v1/messages`: validate, route by model, translate by backend schema, translate back."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import orjson
import structlog

from extproc.config import Backend
from extproc.errors import BackendError, GatewayError, InvalidRequest, NotFound, RequestTooLarge
from extproc.gateway import Gateway
from extproc.mappings import error_type_for_status
from extproc.processors.base import (
    BACKEND_HEADER,
    CONTINUE,
    SSE_HEADERS,
    Action,
    Continue,
    RequestInfo,
    Respond,
    post_body_problem,
    redact,
    response_status,
    status_answer,
)
from extproc.processors.routing import (
    Plan,
    renamed_body,
    to_backend,
    upstream_path,
    with_credential,
)
from extproc.processors.server_tools import answer_server_tools
from extproc.translators.context import ResponseContext
from extproc.translators.request import load_request, translate_request
from extproc.translators.response import convert_response, translate_error
from extproc.translators.stream import StreamTranslator

log = structlog.get_logger("extproc.messages")

_JSON = ("content-type", "application/json")
_ROUTE_AGAIN = (BACKEND_HEADER,)


class Answer(Enum):
    """How the backend's answer is turned back into an Anthropic answer."""

    PENDING = "pending"
    JSON = "json"
    STREAM = "stream"
    ERROR = "error"
    PASSTHROUGH = "passthrough"
    PASSTHROUGH_ERROR = "passthrough_error"  # an Anthropic-schema backend's error, scrubbed


# orjson refuses to read JSON nested deeper than this, and to write deeper than 254 levels.
PARSER_MAX_DEPTH = 1024

def parse_body(body: bytes, max_bytes: int) -> dict[str, object]:
    if len(body) > max_bytes:
        raise RequestTooLarge(
            f"request body is {len(body)} bytes; the limit is {max_bytes} bytes (max_request_bytes)"
        )
    try:
        request = load_request(body)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):
            raise InvalidRequest(
                f"request body nests deeper than {PARSER_MAX_DEPTH} levels"
            ) from None
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise InvalidRequest("request body must be a JSON object")
    return request


def route_for(gateway: Gateway, request: Mapping[str, object]) -> Plan:
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: field required (a non-empty string)")
    plan = gateway.plans.get(model)
    if plan is None:
        raise NotFound(f"model: {model!r} is not served by this gateway")
    return plan


class MessagesProcessor:
    def __init__(self, info: RequestInfo, gateway: Gateway) -> None:
        self.info = info
        self.gateway = gateway
        self.answer = Answer.PENDING
        self.context: ResponseContext | None = None
        self.backend: Backend | None = None
        self.status = 0  # the status the client gets
        self.backend_status = 0  # the backend's, when it answered with an error or a redirect
        self.stream: StreamTranslator | None = None
        # Metrics, the summary log line and the trace span all come from this record.
        self.record = gateway.telemetry.start("anthropic_messages", info.request_id, info.headers)

    # ---- request side --------------------------------------------------------------

    async def request_headers(self, end_of_stream: bool) -> Action:
        problem = post_body_problem(self.info, end_of_stream)
        return CONTINUE if problem is None else self._refuse(problem)

    async def request_body(self, body: bytes, end_of_stream: bool) -> Action:
        self.record.body_received()
        try:
            return await self._to_backend(body)
        except GatewayError as err:
            return self._refuse(err)

    def _refuse(self, err: GatewayError) -> Respond:
        self.status = err.status
        self.record.fail(err.error_type)
        self.record.end()
        return Respond(status=err.status, body=self._scrub(err.body()))

    def _backend_key(self) -> str | None:
        return self.backend.api_key() if self.backend is not None else None

    def _scrub(self, data: bytes) -> bytes:
        return redact(data, self._backend_key())

    async def _to_backend(self, body: bytes) -> Action:
        config = self.gateway.config
        request = parse_body(body, config.limits.max_request_bytes)
        plan = route_for(self.gateway, request)
        backend = self.backend = plan.backend
        self.record.routed(str(request["model"]), plan.model, backend.name, backend.schema_)
        if config.log_prompts:
            log.info("prompt", request_id=self.info.request_id, prompt=request)
        if backend.schema_ == "anthropic":
            return self._pass_through(request, plan)
        options = plan.options
        translated = translate_request(request, options)
        if translated.server_tools:
            outcome = await answer_server_tools(self.gateway, request, translated, options)
            if isinstance(outcome, Respond):  # the gateway answered for a server tool
                self.status = outcome.status
                self.record.end()
                return outcome
            translated = outcome
        if translated.dropped:
            log.info("fields_not_carried", request_id=self.info.request_id, fields=translated.dropped)
        self.context = translated.context
        return self._route(plan, translated.body, anthropic_schema=False)

    def _pass_through(self, request: dict[str, object], plan: Plan) -> Action:
        """Anthropic-schema backends speak our client's language: only route and rename."""
        self.answer = Answer.PASSTHROUGH
        return self._route(plan, renamed_body(request, plan.model), anthropic_schema=True)

    def _route(self, plan: Plan, body: bytes | None, *, anthropic_schema: bool) -> Continue:
        """Send `body` (None: the client's bytes) to the plan's backend."""
        config = self.gateway.config
        if not self.info.headers_editable:
            # Envoy's route for the backend named in the metadata edits the headers. The
            # removal is for Envoy's sake: it clears the route cache only for an answer that
            # carries a header mutation (and applies none to headers it did not send).
            return Continue(remove_headers=_ROUTE_AGAIN, body=body, clear_route_cache=True,
                            metadata=with_credential(config, plan, anthropic_schema))
        # The client's query string goes along, as it does through the metadata route.
        path = upstream_path(plan.base_path, anthropic_schema=anthropic_schema)
        if self.info.query:
            path += "?" + self.info.query
        set_headers, remove = to_backend(config, plan.backend, path,
                                         anthropic_schema=anthropic_schema)
        return Continue(
            set_headers=set_headers,
            remove_headers=remove,
            body=body,
            clear_route_cache=True,
            metadata=plan.metadata,
        )

    # ---- response side -------------------------------------------------------------
    # The answer is planned here, at the response headers: JSON buffered whole, SSE
    # STREAMED, an error status translated. Measured with Envoy 1.40, this message cannot
    # be skipped without losing that control: a mode_override counts only in answers to
    # header messages (the request body answer, which knows `stream`, cannot plan the
    # response), and with response_header_mode SKIP Envoy sends the headers on before the
    # first body message, ignores header mutations in body answers, and offers no content
    # type (only `response.code` among the response_attributes). A broken 200 could then
    # no longer become a 502, nor an HTML error page `application/json`.

    async def response_headers(self, headers: Mapping[str, str], end_of_stream: bool) -> Action:
        self.status = response_status(headers)
        if self.answer is Answer.PASSTHROUGH:
            # An Anthropic-schema backend's answer needs no change: this message is only for
            # the status in metrics; then the stream ends and the body streams past us. An
            # error stays with us (buffered) when its text could quote the key we sent.
            action = status_answer(self.status, end_of_stream, self._backend_key())
            self.record.passed_through(self.status, over=action.skip_rest)
            if not action.skip_rest:
                self.answer = Answer.PASSTHROUGH_ERROR
            return action
        content_type = headers.get("content-type", "")
        if not 200 <= self.status < 300:
            self.answer = Answer.ERROR
            self.backend_status = self.status
            set_headers: tuple[tuple[str, str], ...] = (_JSON,)
            if self.status < 400:  # a redirect is no answer: a bad gateway for the client
                self.status = 502
                set_headers = ((":status", "502"), _JSON)
            self.record.fail(error_type_for_status(self.status))
            if end_of_stream:
                self.record.end()
                _, body = translate_error(self.backend_status, b"")
                return Continue(set_headers=set_headers, remove_headers=("content-length",),
                                body=self._scrub(body), skip_rest=True)
            return Continue(set_headers=set_headers, remove_headers=("content-length",))
        if end_of_stream:  # a success status and no body at all: no answer to translate
            return self._refuse(BackendError.from_status(
                502, f"backend answered HTTP {self.status} with an empty body"))
        if content_type.startswith("text/event-stream"):
            assert self.context is not None
            self.answer = Answer.STREAM
            self.stream = StreamTranslator(self.context)
            self.record.streaming()
            return Continue(
                set_headers=SSE_HEADERS, remove_headers=("content-length",), stream_response=True
            )
        self.answer = Answer.JSON
        return Continue(set_headers=(_JSON,), remove_headers=("content-length",))

    async def response_body(self, chunk: bytes, end_of_stream: bool) -> Action:
        if self.answer is Answer.STREAM:
            assert self.stream is not None
            try:
                out = self.stream.feed(chunk)
                if end_of_stream:
                    out += self.stream.finish()
            except Exception:
                # The headers are gone, so an immediate reply is too late: a translator bug
                # must still end the stream the Anthropic way, with `event: error`.
                log.exception("stream_translation_failed", request_id=self.info.request_id)
                self.record.problem("stream_translation_failed")
                out = self.stream.fail("the gateway failed to translate the backend stream")
            if out and self.stream.error is not None:  # this chunk ended in `event: error`
                out = self._scrub(out)
            if self.stream.first_token_seen:
                self.record.first_token()
            if end_of_stream:
                return Continue(body=out, metadata=self.record.stream_done(self.stream))
            if self.stream.stop_reason is not None:
                # [DONE] closed the message: nothing the backend sends after it reaches the
                # client, so end the ext_proc stream instead of waiting for Envoy's empty
                # end_of_stream chunk (one gRPC message fewer per stream). A stream that
                # ended in `event: error` keeps listening: its backend may still be talking.
                return Continue(body=out, metadata=self.record.stream_done(self.stream),
                                skip_rest=True)
            return Continue(body=out)
        if self.answer is Answer.ERROR or self.answer is Answer.PASSTHROUGH_ERROR:
            if self.answer is Answer.ERROR:
                _, chunk = translate_error(self.backend_status, chunk)
            if end_of_stream:
                self.record.end()
            return Continue(body=self._scrub(chunk), skip_rest=end_of_stream)
        if self.answer is Answer.JSON:
            assert self.context is not None
            try:
                translated = convert_response(chunk, self.context)
            except GatewayError as err:
                self.record.problem("invalid_backend_response")
                # The headers are still held (buffered body): answer with the error's status,
                # never a 200 carrying an error object the SDK would read as a Message.
                return self._refuse(err)
            # The buffered body is the answer's last message: end the ext_proc stream with it
            # rather than wait for Envoy to close its side (one wake-up fewer per request).
            return Continue(body=translated.body, metadata=self.record.json_done(translated),
                            skip_rest=end_of_stream)
        return CONTINUE

    def close(self) -> None:
        self.record.status = self.status
        if self.stream is not None and self.record.usage is None:
            self.record.usage = self.stream.usage  # cut short: what the backend counted so far
        self.record.close()
