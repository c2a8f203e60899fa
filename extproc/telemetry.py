"""One request's measurements: its processor fills a RequestRecord, `close()` reports it once.

Reported three ways from this one place: Prometheus metrics (extproc/metrics.py), one summary
log line, and, when configured, an OpenTelemetry span (extproc/tracing.py). The processor
also hands Envoy the same facts as dynamic metadata (`routing_metadata`, `usage_metadata`).

Envoy dynamic metadata, namespace METADATA_NAMESPACE ("extproc"):

| field | set while answering | value |
|---|---|---|
| model | request body | model name sent to the backend |
| requested_model | request body | model name the client asked for |
| backend | request body | backend name from the config |
| input_tokens | last response body | prompt tokens not read from cache (Anthropic usage) |
| cache_read_tokens | last response body | prompt tokens read from the prefix cache |
| output_tokens | last response body | generated tokens |
| total_tokens | last response body | input + cache_read + output |

Token fields are numbers, set only when the backend reported usage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import structlog

from extproc.mappings import error_type_for_status
from extproc.metrics import Metrics, Observation, SeriesKey
from extproc.translators.common import AnthropicUsage

if TYPE_CHECKING:
    from extproc.config import Config
    from extproc.tracing import Tracer
    from extproc.translators.response import TranslatedResponse
    from extproc.translators.stream import StreamTranslator

log = structlog.get_logger("extproc.requests")

# The one clock for request timings (tests replace it to get exact durations).
clock = time.monotonic

METADATA_NAMESPACE: Final = "extproc"
# Error type of a response that never reached its end (client gone, Envoy timeout).
INCOMPLETE: Final = "incomplete"
# Server-side trouble worth a warning line; client errors (4xx) stay at info.
_WARN_ERRORS: Final = frozenset({"api_error", "overloaded_error", INCOMPLETE})

Metadata = Mapping[str, Mapping[str, object]]


class Telemetry:
    """The process's reporting sinks; one per Gateway."""

    def __init__(
        self, config: Config, metrics: Metrics | None = None, tracer: Tracer | None = None
    ) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        if tracer is None and config.tracing is not None:
            from extproc.tracing import Tracer

            tracer = Tracer(config.tracing)
        self.tracer = tracer
        # The summary line of a request that went well is at info: skip building it when
        # only warnings are logged.
        self.log_successes = config.log_level in ("debug", "info")

    def start(self, api: str, request_id: str = "", headers: Mapping[str, str] | None = None
              ) -> RequestRecord:
        self.metrics.inflight_requests.inc()
        return RequestRecord(self, api, request_id, headers)

    def finish(self, record: RequestRecord, now: float) -> None:
        obs = record.observation(now)
        self.metrics.observe(obs)
        record.log_summary(obs)
        if self.tracer is not None:
            self.tracer.record(record, obs.error_type, now)

    def close(self) -> None:
        if self.tracer is not None:
            self.tracer.shutdown()


class RequestRecord:
    """Facts about one request, filled as its phases pass; reported exactly once by close()."""

    __slots__ = (
        "_closed", "_streaming", "api", "backend", "body_at", "ended_at", "error_type",
        "first_token_at", "headers", "problems", "provider", "request_id", "request_model",
        "response_model", "started", "started_ns", "status", "stop_reason", "stream",
        "telemetry", "usage",
    )

    def __init__(
        self, telemetry: Telemetry, api: str, request_id: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.api = api
        self.request_id = request_id
        self.headers = headers  # read only by tracing, for an incoming traceparent
        self.started = clock()
        self.started_ns = time.time_ns()
        self.body_at: float | None = None
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.request_model = ""
        self.response_model = ""
        self.backend = ""
        self.provider = ""
        self.stream = False
        self.status = 0
        self.error_type = ""
        self.stop_reason = ""
        self.usage: AnthropicUsage | None = None
        self.problems: dict[str, int] = {}
        self._streaming = False
        self._closed = False

    # ---- filled by the processor -------------------------------------------------------

    def body_received(self) -> None:
        if self.body_at is None:
            self.body_at = clock()

    def routed(self, requested_model: str, backend_model: str, backend: str, provider: str
               ) -> None:
        self.request_model = requested_model
        self.response_model = backend_model
        self.backend = backend
        self.provider = provider

    def streaming(self) -> None:
        """The response is SSE: counted in extproc_inflight_streams until it ends."""
        self.stream = True
        if not self._streaming and self.ended_at is None:
            self._streaming = True
            self.telemetry.metrics.inflight_streams.inc()

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = clock()

    def fail(self, error_type: str) -> None:
        """The first error wins: later ones are consequences."""
        if not self.error_type:
            self.error_type = error_type

    def passed_through(self, status: int, over: bool) -> None:
        """A backend answer we pass on unread: a failure if its status says so; `over` when
        the ext_proc stream ends with it (the body streams past us)."""
        if not 200 <= status < 300:
            self.fail(error_type_for_status(status))
        if over:
            self.end()

    def problem(self, kind: str, count: int = 1) -> None:
        if count > 0:
            self.problems[kind] = self.problems.get(kind, 0) + count
            self.telemetry.metrics.translation_error(kind, count)

    def stream_done(self, stream: StreamTranslator) -> Metadata | None:
        """The translated stream ended: harvest it; the Envoy metadata for the last answer."""
        self.usage = stream.usage
        self.stop_reason = stream.stop_reason or ""
        if stream.error:
            self.fail(stream.error)
            self.problem("stream_failed")
        self.problem("invalid_tool_arguments", stream.invalid_tool_arguments)
        self.problem("dropped_tool_deltas", stream.dropped_tool_deltas)
        self.problem("unknown_tool_calls", len(stream.unknown_tool_calls))
        self.problem("truncated_tool_calls", len(stream.truncated_tool_calls))
        self.problem("sse_garbage_lines", stream.garbage_lines)
        self.end()
        return usage_metadata(self.usage)

    def json_done(self, translated: TranslatedResponse) -> Metadata | None:
        """A whole JSON answer was translated; the Envoy metadata for it."""
        self.usage = translated.usage
        self.stop_reason = translated.stop_reason
        self.problem("unknown_tool_calls", len(translated.unknown_tool_calls))
        self.problem("truncated_tool_calls", len(translated.truncated_tool_calls))
        self.end()
        return usage_metadata(self.usage) if self.usage is not None else None

    def end(self) -> None:
        """The last response byte left (end_of_stream)."""
        if self.ended_at is None:
            self.ended_at = clock()
        self._stop_streaming()

    def close(self) -> None:
        """The ext_proc stream is over, normally or not. Reports once."""
        if self._closed:
            return
        self._closed = True
        now = clock()
        self._stop_streaming()
        self.telemetry.metrics.inflight_requests.dec()
        self.telemetry.finish(self, now)

    def _stop_streaming(self) -> None:
        if self._streaming:
            self._streaming = False
            self.telemetry.metrics.inflight_streams.dec()

    # ---- what gets reported ------------------------------------------------------------

    @property
    def series(self) -> SeriesKey:
        return SeriesKey(self.api, self.provider, self.request_model, self.response_model,
                         self.backend)

    def observation(self, now: float) -> Observation:
        saw_response = self.status != 0
        error_type = self.error_type
        if saw_response and self.ended_at is None and not error_type:
            error_type = INCOMPLETE
        end = self.ended_at if self.ended_at is not None else now
        usage = self.usage
        input_tokens = output_tokens = cache_read = 0
        if usage is not None:
            cache_read = usage["cache_read_input_tokens"]
            input_tokens = usage["input_tokens"] + cache_read
            output_tokens = usage["output_tokens"]
        ttft = tpot = None
        if self.stream and self.first_token_at is not None:
            ttft = self.first_token_at - (self.body_at or self.started)
            if not error_type and output_tokens > 1 and self.ended_at is not None:
                tpot = (self.ended_at - self.first_token_at) / (output_tokens - 1)
        return Observation(
            series=self.series,
            status=str(self.status) if saw_response else "",
            error_type=error_type,
            duration=end - self.started if saw_response else None,
            time_to_first_token=ttft,
            time_per_output_token=tpot,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            usage_known=input_tokens + output_tokens > 0,
        )

    def log_summary(self, obs: Observation) -> None:
        warn = obs.error_type in _WARN_ERRORS or self.status >= 500
        if not (warn or self.telemetry.log_successes):
            return
        fields: dict[str, object] = {
            "request_id": self.request_id,
            "api": self.api,
            "model": self.request_model or None,
            "backend_model": self.response_model or None,
            "backend": self.backend or None,
            "stream": self.stream,
            "status": self.status or None,
            "error_type": obs.error_type or None,
            "stop_reason": self.stop_reason or None,
        }
        if obs.usage_known and self.usage is not None:
            # Anthropic's split, as the client and Envoy's metadata see it (input excludes
            # cache reads); the token metric counts input the gen_ai way, cache included.
            fields["input_tokens"] = self.usage["input_tokens"]
            fields["cache_read_tokens"] = self.usage["cache_read_input_tokens"]
            fields["output_tokens"] = self.usage["output_tokens"]
        if obs.time_to_first_token is not None:
            fields["ttft_ms"] = round(obs.time_to_first_token * 1000, 1)
        if obs.duration is not None:
            fields["duration_ms"] = round(obs.duration * 1000, 1)
        if self.problems:
            fields["problems"] = self.problems
        (log.warning if warn else log.info)("request", **fields)


# ---- Envoy dynamic metadata ----------------------------------------------------------------


def routing_metadata(requested_model: str, backend_model: str, backend: str) -> Metadata:
    return {
        METADATA_NAMESPACE: {
            "model": backend_model,
            "requested_model": requested_model,
            "backend": backend,
        }
    }


def usage_metadata(usage: AnthropicUsage) -> Metadata | None:
    """Token counts for Envoy (access log, rate limits); None when the backend reported none."""
    input_tokens = usage["input_tokens"]
    cache_read = usage["cache_read_input_tokens"]
    output_tokens = usage["output_tokens"]
    total = input_tokens + cache_read + output_tokens
    if total == 0:
        return None
    return {
        METADATA_NAMESPACE: {
            "input_tokens": input_tokens,
            "cache_read_tokens": cache_read,
            "output_tokens": output_tokens,
            "total_tokens": total,
        }
    }
