"""Prometheus metrics, named after the OpenTelemetry gen_ai semantic conventions.

OpenTelemetry names become Prometheus names the usual way: dots become underscores and the
unit becomes a suffix (`gen_ai.server.request.duration` [s] -> `..._duration_seconds`);
attributes become labels the same way (`gen_ai.request.model` -> `gen_ai_request_model`).

| metric | type | labels |
|---|---|---|
| gen_ai_client_token_usage | histogram | SERIES + gen_ai_token_type |
| gen_ai_server_request_duration_seconds | histogram | SERIES + error_type |
| gen_ai_server_time_to_first_token_seconds | histogram | SERIES (streams only) |
| gen_ai_server_time_per_output_token_seconds | histogram | SERIES (streams only) |
| extproc_requests_total | counter | SERIES + status, error_type |
| extproc_inflight_requests | gauge | - |
| extproc_inflight_streams | gauge | - |
| extproc_translation_errors_total | counter | kind |
| extproc_processor_failures_total | counter | phase (our bug: the client got a 500) |

SERIES = api, gen_ai_operation_name, gen_ai_provider_name, gen_ai_request_model,
gen_ai_response_model, backend.

Choices worth knowing:
- `gen_ai_token_type="input"` counts every prompt token, cached ones included, as the
  conventions define `gen_ai.usage.input_tokens`; `cache_read` (a custom value, the
  conventions' `gen_ai.usage.cache_read.input_tokens`) is the cached part of it. Anthropic's
  own `usage.input_tokens` leaves cached tokens out: input = input_tokens + cache_read.
- Client-chosen strings (the requested model name) become labels only for routed requests,
  and at most MAX_SERIES label sets exist per process; past that new ones fold into
  `_other`, so a client cannot grow the scrape without bound.
- Buckets are the conventions' advice, extended at the top for long generations and long
  prefills (Claude Code requests run for minutes).
- Several worker processes: set PROMETHEUS_MULTIPROC_DIR (an empty directory) before the
  workers start (prometheus_client reads it at import); values then live in files there and
  `scrape_registry()` merges them. Serve /metrics from one process only, and call
  `worker_exited(pid)` when a worker ends so its in-flight gauges stop counting. A worker
  writes what it recorded every FLUSH_INTERVAL_S (1 s), so a scrape may lag by that much.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

TOKEN_BUCKETS: Final = tuple(4.0**n for n in range(14))  # 1 .. 67108864
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    163.84, 327.68, 655.36,
)
TTFT_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)
TPOT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

SERIES_LABELS: Final = (
    "api",
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "backend",
)
MAX_SERIES: Final = 256
MAX_LABEL_CHARS: Final = 128
OTHER: Final = "_other"
OPERATION: Final = "chat"

# Translation problem kinds (label `kind` of extproc_translation_errors_total).
TRANSLATION_ERROR_KINDS: Final = (
    "invalid_backend_response",  # a non-streaming body we could not read
    "stream_failed",  # a stream we ended with `event: error` (backend error, cut, unreadable)
    "stream_translation_failed",  # an exception in the stream translator (our bug)
    "invalid_tool_arguments",
    "dropped_tool_deltas",
    "unknown_tool_calls",  # calls to tools the client never declared, held back
    "truncated_tool_calls",  # calls cut by max_tokens, left out
    "sse_garbage_lines",
)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class SeriesKey(NamedTuple):  # a tuple: built and hashed per request, in C
    api: str
    provider: str = ""
    request_model: str = ""
    response_model: str = ""
    backend: str = ""

    def labels(self) -> tuple[str, ...]:
        return (
            self.api, OPERATION, self.provider, self.request_model, self.response_model,
            self.backend,
        )


@dataclass(slots=True)  # per request: not frozen (see processors/base.py Continue)
class Observation:
    """What one finished request contributes; times in seconds, None when not measured."""

    series: SeriesKey
    status: str  # HTTP status as text; "" when the processor never saw the response
    error_type: str  # "" on success
    duration: float | None = None
    time_to_first_token: float | None = None
    time_per_output_token: float | None = None
    input_tokens: int = 0  # all prompt tokens, cached ones included
    output_tokens: int = 0
    cache_read_tokens: int = 0
    usage_known: bool = False


# ---- the request path's instruments ---------------------------------------------------------
# prometheus_client takes a lock per increment and walks a histogram's buckets in Python:
# ~11 µs per request for our five samples, a tenth of translating a small request. Requests
# are recorded on the event loop into plain numbers instead (~1 µs), moved into
# prometheus_client's values whenever its registry is collected (a scrape, a test reading a
# sample) and, with several workers, every FLUSH_INTERVAL_S so the merged scrape sees them.
# Recording and flushing both run on the event loop (the scrape too), so no lock. A histogram
# is flushed into prometheus_client's own bucket values (`_buckets`, `_sum`: private, stable
# for years; tests/test_metrics.py checks the exposition equals observing directly).

FLUSH_INTERVAL_S: Final = 1.0


class _PendingCounter:
    __slots__ = ("_child", "_count")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._count = 0

    def inc(self) -> None:
        self._count += 1

    def flush(self) -> None:
        if self._count:
            self._child.inc(self._count)
            self._count = 0


class _PendingHistogram:
    """Bucket counts as prometheus_client keeps them: each observation in the first bucket
    whose bound is >= it (the last bound is +Inf), plus the sum."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds = child._upper_bounds
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def flush(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        buckets = self._child._buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
                counts[index] = 0
        self._child._sum.inc(self._sum)
        self._sum = 0.0


class _PendingGauge:
    __slots__ = ("_gauge", "_set", "_value")

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._value = 0
        self._set = 0

    def inc(self) -> None:
        self._value += 1

    def dec(self) -> None:
        self._value -= 1

    def flush(self) -> None:
        if self._value != self._set:
            self._gauge.set(self._value)
            self._set = self._value


class _FlushFirst:
    """Registered first in the registry: collecting it moves pending values in."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> list[Any]:
        self._metrics.flush()
        return []


class _Series:
    """Instruments bound once per label set, so recording a request is a few dict hits."""

    __slots__ = (
        "_duration",
        "_metrics",
        "_requests",
        "cache_read",
        "input",
        "labels",
        "output",
        "tpot",
        "ttft",
    )

    def __init__(self, metrics: Metrics, labels: tuple[str, ...]) -> None:
        self._metrics = metrics
        self.labels = labels
        tokens = metrics.token_usage
        self.input = _PendingHistogram(tokens.labels(*labels, "input"))
        self.output = _PendingHistogram(tokens.labels(*labels, "output"))
        self.cache_read = _PendingHistogram(tokens.labels(*labels, "cache_read"))
        self.ttft = _PendingHistogram(metrics.time_to_first_token.labels(*labels))
        self.tpot = _PendingHistogram(metrics.time_per_output_token.labels(*labels))
        self._requests: dict[tuple[str, str], _PendingCounter] = {}
        self._duration: dict[str, _PendingHistogram] = {}

    def requests(self, status: str, error_type: str) -> _PendingCounter:
        counter = self._requests.get((status, error_type))
        if counter is None:
            child = self._metrics.requests.labels(*self.labels, status, error_type)
            counter = self._requests[(status, error_type)] = _PendingCounter(child)
        return counter

    def duration(self, error_type: str) -> _PendingHistogram:
        histogram = self._duration.get(error_type)
        if histogram is None:
            child = self._metrics.request_duration.labels(*self.labels, error_type)
            histogram = self._duration[error_type] = _PendingHistogram(child)
        return histogram

    def flush(self) -> None:
        for histogram in (self.input, self.output, self.cache_read, self.ttft, self.tpot,
                          *self._duration.values()):
            histogram.flush()
        for counter in self._requests.values():
            counter.flush()


class Metrics:
    """All instruments of one process, on their own registry (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, max_series: int = MAX_SERIES):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.max_series = max_series
        reg = self.registry
        reg.register(_FlushFirst(self))
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request (gen_ai.client.token.usage); input includes cache_read.",
            (*SERIES_LABELS, "gen_ai_token_type"), registry=reg, buckets=TOKEN_BUCKETS,
        )
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Request headers to the end of the response (gen_ai.server.request.duration).",
            (*SERIES_LABELS, "error_type"), registry=reg, buckets=DURATION_BUCKETS,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Request body to the first streamed content event (gen_ai.server.time_to_first_token).",
            SERIES_LABELS, registry=reg, buckets=TTFT_BUCKETS,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Stream time after the first token per further output token "
            "(gen_ai.server.time_per_output_token).",
            SERIES_LABELS, registry=reg, buckets=TPOT_BUCKETS,
        )
        self.requests = Counter(
            "extproc_requests",
            "Requests by outcome; status is empty when the response was not processed.",
            (*SERIES_LABELS, "status", "error_type"), registry=reg,
        )
        self.inflight_requests = _PendingGauge(Gauge(
            "extproc_inflight_requests", "Requests between their headers and their end.",
            registry=reg, multiprocess_mode="livesum",
        ))
        self.inflight_streams = _PendingGauge(Gauge(
            "extproc_inflight_streams", "SSE responses being translated now.",
            registry=reg, multiprocess_mode="livesum",
        ))
        self.translation_errors = Counter(
            "extproc_translation_errors", "Backend answers we could not translate faithfully.",
            ("kind",), registry=reg,
        )
        self.processor_failures = Counter(
            "extproc_processor_failures", "Exceptions in a processor (answered with a 500).",
            ("phase",), registry=reg,
        )
        self._errors = {kind: self.translation_errors.labels(kind) for kind in TRANSLATION_ERROR_KINDS}
        self._series: dict[SeriesKey, _Series] = {}

    def series(self, key: SeriesKey) -> _Series:
        found = self._series.get(key)
        if found is not None:
            return found
        if len(self._series) >= self.max_series:
            key = SeriesKey(key.api, key.provider, OTHER, OTHER, key.backend)
            found = self._series.get(key)
            if found is not None:
                return found
        key = SeriesKey(
            key.api, key.provider, key.request_model[:MAX_LABEL_CHARS],
            key.response_model[:MAX_LABEL_CHARS], key.backend,
        )
        found = self._series[key] = _Series(self, key.labels())
        return found

    def observe(self, obs: Observation) -> None:
        series = self.series(obs.series)
        series.requests(obs.status, obs.error_type).inc()
        if obs.duration is not None:
            series.duration(obs.error_type).observe(obs.duration)
        if obs.time_to_first_token is not None:
            series.ttft.observe(obs.time_to_first_token)
        if obs.time_per_output_token is not None:
            series.tpot.observe(obs.time_per_output_token)
        if obs.usage_known:
            series.input.observe(obs.input_tokens)
            series.output.observe(obs.output_tokens)
            series.cache_read.observe(obs.cache_read_tokens)

    def flush(self) -> None:
        """Move what requests recorded into prometheus_client's values (the registry does
        this itself when collected)."""
        self.inflight_requests.flush()
        self.inflight_streams.flush()
        for series in self._series.values():
            series.flush()

    async def flush_periodically(self, interval: float = FLUSH_INTERVAL_S) -> None:
        """With several workers the scrape reads every worker's files: keep ours current."""
        while True:
            await asyncio.sleep(interval)
            self.flush()

    def translation_error(self, kind: str, count: int = 1) -> None:
        if count > 0:
            child = self._errors.get(kind)
            if child is None:
                child = self._errors[kind] = self.translation_errors.labels(kind)
            child.inc(count)

    def processor_failed(self, phase: str) -> None:
        self.processor_failures.labels(phase).inc()

    def scrape_registry(self) -> Any:
        """What /metrics exposes: this registry, or every worker's files in multiprocess mode."""
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return self.registry
        self.flush()  # this process's own values, before its files are read
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return merged

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) for a scrape, in the format the scraper asked for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.scrape_registry()), content_type


def worker_exited(pid: int) -> None:
    """Multiprocess mode: drop a dead worker's live gauges (call from the parent on exit)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def sample_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples called `name` whose labels include `labels`, in exposition text.

    For tests and the e2e suite: scrape, act, scrape again, compare.
    """
    from prometheus_client.parser import text_string_to_metric_families

    wanted = labels or {}
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                total += sample.value
    return total


def bucket_bounds(text: str, name: str) -> Sequence[float]:
    """The finite `le` bounds of histogram `name` in exposition text (for tests)."""
    from prometheus_client.parser import text_string_to_metric_families

    bounds: set[float] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name + "_bucket" and sample.labels.get("le") not in (None, "+Inf"):
                bounds.add(float(sample.labels["le"]))
    return sorted(bounds)


class MetricsServer:
    """`GET /metrics` on the asyncio loop the gRPC server runs on (aiohttp, no extra thread)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: Any = None

    async def start(self) -> int:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            server = site._server
            sockets = getattr(server, "sockets", None) or ()
            self.port = int(sockets[0].getsockname()[1]) if sockets else 0
        return self.port

    @property
    def url(self) -> str:
        """Where to scrape; a wildcard bind address is reached over loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/metrics"

    async def _scrape(self, request: Any) -> Any:
        from aiohttp import web

        body, content_type = self.metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
