"""Optional OpenTelemetry trace export: one span per translated request, off by default.

Enabled by config `tracing: {otlp_endpoint: http://collector:4318/v1/traces}` (OTLP over
HTTP/protobuf). The SDK is imported only then; without it `extproc` exits 2 naming the extra
to install (`pip install 'extproc[otel]'`).

The span is written after the request ends, from its RequestRecord, with the request's real
start and end times: nothing runs per chunk. A W3C `traceparent` sent by the client (Envoy
passes it on) becomes the span's parent. Attributes follow the gen_ai conventions;
`gen_ai.usage.input_tokens` counts cached prompt tokens too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from extproc.config import ConfigError

if TYPE_CHECKING:
    from extproc.config import Config, Tracing
    from extproc.telemetry import RequestRecord

INSTALL_HINT: Final = "tracing: needs the OpenTelemetry SDK and OTLP exporter: pip install 'extproc[otel]'"
_MODULES: Final = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)


def require_tracing(config: Config) -> None:
    """Raise ConfigError (exit 2) if tracing is configured but its packages are missing."""
    if config.tracing is None:
        return
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"{INSTALL_HINT} (cannot import {module})") from None


class Tracer:
    """An SDK tracer provider of our own (the global one stays untouched)."""

    def __init__(self, settings: Tracing, exporter: Any = None, *, batch: bool = True) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        if exporter is None:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                raise ConfigError(INSTALL_HINT) from None
            exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("extproc")
        self._propagator = TraceContextTextMapPropagator()

    def record(self, record: RequestRecord, error_type: str, now: float) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        def ns(moment: float) -> int:
            return record.started_ns + int((moment - record.started) * 1e9)

        parent = self._propagator.extract(record.headers or {})
        model = record.request_model or "unknown"
        span = self._tracer.start_span(
            f"chat {model}", context=parent, kind=SpanKind.CLIENT, start_time=record.started_ns,
            attributes=_attributes(record),
        )
        if record.first_token_at is not None:
            span.add_event("first_token", timestamp=ns(record.first_token_at))
        if error_type:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR))
        end = record.ended_at if record.ended_at is not None else now
        span.end(end_time=ns(end))

    def shutdown(self) -> None:
        self.provider.shutdown()


def _attributes(record: RequestRecord) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": record.provider or "unknown",
        "extproc.api": record.api,
        "extproc.request_id": record.request_id,
    }
    if record.request_model:
        attributes["gen_ai.request.model"] = record.request_model
    if record.response_model:
        attributes["gen_ai.response.model"] = record.response_model
    if record.backend:
        attributes["extproc.backend"] = record.backend
    if record.status:
        attributes["http.response.status_code"] = record.status
    if record.stop_reason:
        attributes["gen_ai.response.finish_reasons"] = [record.stop_reason]
    if record.usage is not None:
        cached = record.usage["cache_read_input_tokens"]
        attributes["gen_ai.usage.input_tokens"] = record.usage["input_tokens"] + cached
        attributes["gen_ai.usage.cache_read.input_tokens"] = cached
        attributes["gen_ai.usage.output_tokens"] = record.usage["output_tokens"]
    attributes["extproc.stream"] = record.stream
    return attributes
