"""Metrics, the summary log line and Envoy metadata, driven through the real MessagesProcessor."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from extproc import telemetry
from extproc.config import Config
from extproc.gateway import Gateway
from extproc.metrics import (
    DURATION_BUCKETS,
    MAX_LABEL_CHARS,
    MULTIPROC_ENV,
    OTHER,
    TOKEN_BUCKETS,
    TTFT_BUCKETS,
    Metrics,
    MetricsServer,
    Observation,
    SeriesKey,
    bucket_bounds,
    sample_value,
)
from extproc.processors.base import Continue, RequestInfo, Respond
from extproc.processors.messages import MessagesProcessor

API = "anthropic_messages"
ROUTED = {
    "api": API,
    "gen_ai_operation_name": "chat",
    "gen_ai_provider_name": "openai",
    "gen_ai_request_model": "claude-sonnet-4-5",
    "gen_ai_response_model": "qwen3-coder",
    "backend": "vllm",
}
SSE = b"".join(
    b"data: " + orjson.dumps(chunk) + b"\n\n"
    for chunk in (
        {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"id": "chatcmpl-1", "choices": [], "usage": {
            "prompt_tokens": 30, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 10}}},
    )
) + b"data: [DONE]\n\n"
COMPLETION = orjson.dumps({
    "id": "chatcmpl-2", "object": "chat.completion", "model": "qwen3-coder",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
})


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(telemetry, "clock", fake)
    return fake


@pytest.fixture
def gateway() -> Gateway:
    config = Config.model_validate({
        "backends": [{"name": "vllm", "base_url": "http://127.0.0.1:9/v1",
                      "models": [{"name": "qwen3-coder", "aliases": ["claude-*"]}]}],
    })
    return Gateway(config)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def value(gateway: Gateway, name: str, **labels: str) -> float:
    found = gateway.telemetry.metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def processor(gateway: Gateway, request_id: str = "req-1") -> MessagesProcessor:
    info = RequestInfo(method="POST", path="/v1/messages", query="",
                       headers={"content-type": "application/json", "x-api-key": "sk-client"},
                       request_id=request_id)
    return MessagesProcessor(info, gateway)


def request(stream: bool, model: str = "claude-sonnet-4-5") -> bytes:
    return orjson.dumps({"model": model, "max_tokens": 100, "stream": stream,
                         "messages": [{"role": "user", "content": "a secret prompt"}]})


async def send_request(proc: MessagesProcessor, body: bytes) -> Continue | Respond:
    await proc.request_headers(False)
    return await proc.request_body(body, True)


# ---- streaming ---------------------------------------------------------------------------


async def test_a_stream_records_tokens_ttft_tpot_duration_and_envoy_metadata(
    gateway: Gateway, clock: FakeClock, logs: list[dict[str, Any]]
) -> None:
    proc = processor(gateway)
    clock.now = 100.0
    await proc.request_headers(False)
    clock.now = 100.5
    routed = await proc.request_body(request(stream=True), True)
    assert isinstance(routed, Continue)
    assert routed.metadata == {"extproc": {
        "model": "qwen3-coder", "requested_model": "claude-sonnet-4-5", "backend": "vllm"}}
    await proc.response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    assert value(gateway, "extproc_inflight_streams") == 1
    split = SSE.index(b"Hel") + 20  # past the first content chunk, into the next one
    clock.now = 101.5  # first content leaves one second after the body arrived
    out = await proc.response_body(SSE[:split], False)
    assert isinstance(out, Continue) and out.metadata is None
    clock.now = 103.5
    last = await proc.response_body(SSE[split:], True)
    assert isinstance(last, Continue)
    assert last.metadata == {"extproc": {
        "input_tokens": 20, "cache_read_tokens": 10, "output_tokens": 5, "total_tokens": 35}}
    assert value(gateway, "extproc_inflight_streams") == 0
    clock.now = 104.0
    proc.close()

    assert value(gateway, "extproc_requests_total", **ROUTED, status="200", error_type="") == 1
    tokens = "gen_ai_client_token_usage_sum"
    assert value(gateway, tokens, **ROUTED, gen_ai_token_type="input") == 30  # cached included
    assert value(gateway, tokens, **ROUTED, gen_ai_token_type="cache_read") == 10
    assert value(gateway, tokens, **ROUTED, gen_ai_token_type="output") == 5
    assert value(gateway, "gen_ai_server_time_to_first_token_seconds_sum", **ROUTED) == 1.0
    # (103.5 - 101.5) / (5 - 1)
    assert value(gateway, "gen_ai_server_time_per_output_token_seconds_sum", **ROUTED) == 0.5
    duration = "gen_ai_server_request_duration_seconds_sum"
    assert value(gateway, duration, **ROUTED, error_type="") == 3.5  # headers -> last byte
    assert value(gateway, "extproc_inflight_requests") == 0

    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["request_id"] == "req-1" and line["model"] == "claude-sonnet-4-5"
    assert line["backend"] == "vllm" and line["backend_model"] == "qwen3-coder"
    assert (line["input_tokens"], line["cache_read_tokens"], line["output_tokens"]) == (20, 10, 5)
    assert line["ttft_ms"] == 1000.0 and line["duration_ms"] == 3500.0
    assert line["status"] == 200 and line["stop_reason"] == "end_turn" and line["stream"] is True
    assert "a secret prompt" not in repr(logs) and "sk-client" not in repr(logs)


async def test_a_stream_cut_by_the_client_is_recorded_once_as_incomplete(
    gateway: Gateway, clock: FakeClock
) -> None:
    proc = processor(gateway)
    await send_request(proc, request(stream=True))
    await proc.response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    await proc.response_body(SSE[: SSE.index(b"Hel") + 20], False)
    assert value(gateway, "extproc_inflight_streams") == 1
    clock.now += 2
    proc.close()
    proc.close()  # the servicer's finally may run after an earlier close: still one record

    assert value(gateway, "extproc_inflight_streams") == 0
    assert value(gateway, "extproc_inflight_requests") == 0
    assert value(gateway, "extproc_requests_total", **ROUTED, status="200",
                 error_type="incomplete") == 1
    assert value(gateway, "gen_ai_server_request_duration_seconds_count", **ROUTED,
                 error_type="incomplete") == 1
    assert value(gateway, "gen_ai_server_time_per_output_token_seconds_count", **ROUTED) == 0


async def test_a_stream_ending_in_an_error_counts_its_error_type_and_a_translation_error(
    gateway: Gateway,
) -> None:
    proc = processor(gateway)
    await send_request(proc, request(stream=True))
    await proc.response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    cut = SSE[: SSE.index(b"Hel") + 20]  # no finish_reason, no [DONE]
    await proc.response_body(cut, True)
    proc.close()
    assert value(gateway, "extproc_requests_total", **ROUTED, status="200",
                 error_type="api_error") == 1
    assert value(gateway, "extproc_translation_errors_total", kind="stream_failed") == 1


# ---- non-streaming, errors, refusals -----------------------------------------------------------


async def test_a_json_answer_records_tokens_and_metadata_but_no_stream_timings(
    gateway: Gateway,
) -> None:
    proc = processor(gateway)
    await send_request(proc, request(stream=False))
    await proc.response_headers({":status": "200", "content-type": "application/json"}, False)
    answer = await proc.response_body(COMPLETION, True)
    proc.close()
    assert isinstance(answer, Continue)
    assert answer.metadata == {"extproc": {
        "input_tokens": 12, "cache_read_tokens": 0, "output_tokens": 3, "total_tokens": 15}}
    assert orjson.loads(answer.body or b"")["usage"]["input_tokens"] == 12
    assert value(gateway, "extproc_requests_total", **ROUTED, status="200", error_type="") == 1
    assert value(gateway, "gen_ai_client_token_usage_sum", **ROUTED, gen_ai_token_type="output") == 3
    assert value(gateway, "gen_ai_client_token_usage_count", **ROUTED, gen_ai_token_type="input") == 1
    assert value(gateway, "gen_ai_server_time_to_first_token_seconds_count", **ROUTED) == 0
    assert value(gateway, "gen_ai_server_request_duration_seconds_count", **ROUTED,
                 error_type="") == 1


async def test_a_backend_error_status_is_counted_with_its_anthropic_error_type(
    gateway: Gateway,
) -> None:
    proc = processor(gateway)
    await send_request(proc, request(stream=True))
    await proc.response_headers({":status": "429", "content-type": "application/json"}, False)
    await proc.response_body(b'{"error": {"message": "slow down"}}', True)
    proc.close()
    assert value(gateway, "extproc_requests_total", **ROUTED, status="429",
                 error_type="rate_limit_error") == 1
    assert value(gateway, "gen_ai_client_token_usage_count", **ROUTED, gen_ai_token_type="input") == 0


async def test_an_unreadable_json_answer_is_a_translation_error(gateway: Gateway) -> None:
    proc = processor(gateway)
    await send_request(proc, request(stream=False))
    await proc.response_headers({":status": "200", "content-type": "application/json"}, False)
    answer = await proc.response_body(b"<html>oops</html>", True)
    proc.close()
    assert isinstance(answer, Respond) and answer.status == 502
    assert value(gateway, "extproc_translation_errors_total", kind="invalid_backend_response") == 1
    assert value(gateway, "extproc_requests_total", **ROUTED, status="502", error_type="api_error") == 1


async def test_a_refused_request_has_no_model_labels_and_no_metadata(gateway: Gateway) -> None:
    config = Config.model_validate({
        "backends": [{"name": "vllm", "base_url": "http://127.0.0.1:9/v1",
                      "models": [{"name": "qwen3-coder"}]}],
    })
    gw = Gateway(config)
    proc = processor(gw)
    answer = await send_request(proc, request(stream=False, model="gpt-unknown"))
    proc.close()
    assert isinstance(answer, Respond) and answer.status == 404
    unrouted = {key: "" for key in ROUTED} | {"api": API, "gen_ai_operation_name": "chat"}
    assert value(gw, "extproc_requests_total", **unrouted, status="404",
                 error_type="not_found_error") == 1


async def test_prompts_are_logged_only_when_allowed(gateway: Gateway) -> None:
    with structlog.testing.capture_logs() as quiet:
        proc = processor(gateway)
        await send_request(proc, request(stream=False))
        proc.close()
    assert "a secret prompt" not in repr(quiet)
    loud = Gateway(gateway.config.model_copy(update={"log_prompts": True}))
    with structlog.testing.capture_logs() as captured:
        proc = processor(loud)
        await send_request(proc, request(stream=False))
        proc.close()
    [prompt] = [entry for entry in captured if entry["event"] == "prompt"]
    assert prompt["prompt"]["messages"][0]["content"] == "a secret prompt"


# ---- the Metrics object on its own -------------------------------------------------------------


def test_label_sets_past_the_cap_fold_into_other() -> None:
    metrics = Metrics(max_series=2)
    for n in range(5):
        key = SeriesKey(API, "openai", f"client-model-{n}", f"served-{n}", "vllm")
        metrics.observe(Observation(series=key, status="200", error_type=""))
    samples = metrics.registry.get_sample_value
    assert samples("extproc_requests_total", {
        "api": API, "gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
        "gen_ai_request_model": OTHER, "gen_ai_response_model": OTHER, "backend": "vllm",
        "status": "200", "error_type": ""}) == 3
    assert samples("extproc_requests_total", {
        "api": API, "gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "client-model-0", "gen_ai_response_model": "served-0",
        "backend": "vllm", "status": "200", "error_type": ""}) == 1


def test_recorded_requests_expose_exactly_what_prometheus_client_would() -> None:
    """Requests are recorded in plain numbers and moved into prometheus_client when the
    registry is collected; the exposition equals observing each value directly, boundary
    values (equal to a bucket bound) included, and repeated scrapes count nothing twice."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    durations = [0.0, 0.01, 0.015, 0.32, 0.33, 655.36, 700.0, 0.01, 5.12]
    tokens = [0, 1, 4, 5, 16, 1000, 4.0**13, 4.0**13 + 1]
    metrics = Metrics()
    key = SeriesKey(API, "openai", "m", "served", "vllm")
    expected = CollectorRegistry()
    duration = Histogram("gen_ai_server_request_duration_seconds", "d",
                         ("error_type",), registry=expected, buckets=DURATION_BUCKETS)
    usage = Histogram("gen_ai_client_token_usage", "t", ("gen_ai_token_type",),
                      registry=expected, buckets=TOKEN_BUCKETS)
    requests = Counter("extproc_requests", "r", ("status",), registry=expected)
    for n, seconds in enumerate(durations):
        count = tokens[n % len(tokens)]
        metrics.observe(Observation(series=key, status="200", error_type="", duration=seconds,
                                    input_tokens=count, usage_known=True))
        duration.labels("").observe(seconds)
        usage.labels("input").observe(count)
        requests.labels("200").inc()
        if n == 4:  # a scrape in between
            metrics.exposition()

    def samples(text: str, name: str) -> dict[str, float]:
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (sample.name.startswith(name) and not sample.name.endswith("_created")
                        and sample.labels.get("gen_ai_token_type", "input") == "input"):
                    found[f"{sample.name}{sample.labels.get('le', '')}"] = sample.value
        return found

    ours = metrics.exposition()[0].decode()
    theirs = generate_latest(expected).decode()
    for name in ("gen_ai_server_request_duration_seconds", "gen_ai_client_token_usage",
                 "extproc_requests_total"):
        # Sums may differ in the last bits: the same numbers, added in another order.
        assert samples(ours, name) == pytest.approx(samples(theirs, name), rel=1e-12)
        assert samples(ours, name)
    assert ours == metrics.exposition()[0].decode()  # collecting again adds nothing


def test_in_flight_gauges_read_current_values() -> None:
    metrics = Metrics()
    metrics.inflight_requests.inc()
    metrics.inflight_requests.inc()
    metrics.inflight_streams.inc()
    assert sample_value(metrics.exposition()[0].decode(), "extproc_inflight_requests") == 2
    metrics.inflight_requests.dec()
    metrics.inflight_streams.dec()
    text = metrics.exposition()[0].decode()
    assert sample_value(text, "extproc_inflight_requests") == 1
    assert sample_value(text, "extproc_inflight_streams") == 0


def test_long_model_names_are_cut_to_a_bounded_label() -> None:
    metrics = Metrics()
    key = SeriesKey(API, "openai", "m" * 1000, "served", "vllm")
    metrics.observe(Observation(series=key, status="200", error_type=""))
    text = metrics.exposition()[0].decode()
    assert "m" * MAX_LABEL_CHARS + '"' in text and "m" * (MAX_LABEL_CHARS + 1) not in text


def test_usage_is_not_recorded_when_the_backend_reported_none() -> None:
    metrics = Metrics()
    key = SeriesKey(API, "openai", "a", "b", "vllm")
    metrics.observe(Observation(series=key, status="200", error_type="", duration=1.0))
    text = metrics.exposition()[0].decode()
    assert sample_value(text, "gen_ai_client_token_usage_count") == 0
    assert sample_value(text, "gen_ai_server_request_duration_seconds_count") == 1


def test_histograms_use_the_semantic_convention_buckets() -> None:
    metrics = Metrics()
    metrics.observe(Observation(series=SeriesKey(API), status="200", error_type="",
                                time_to_first_token=0.2))
    text = metrics.exposition()[0].decode()
    assert list(bucket_bounds(text, "gen_ai_server_time_to_first_token_seconds")) == list(TTFT_BUCKETS)


async def test_metrics_server_serves_the_scrape_over_http() -> None:
    metrics = Metrics()
    metrics.translation_error("unknown_tool_calls", 2)
    server = MetricsServer(metrics, "127.0.0.1", 0)
    await server.start()
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(server.url) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = await reply.text()
    finally:
        await server.stop()
    assert sample_value(text, "extproc_translation_errors_total", {"kind": "unknown_tool_calls"}) == 2
    assert "# TYPE gen_ai_client_token_usage histogram" in text


def test_multiprocess_mode_merges_every_workers_samples(tmp_path: Path) -> None:
    """Several workers write to PROMETHEUS_MULTIPROC_DIR; any one scrape shows their sum. A
    worker records requests in memory and writes them out every FLUSH_INTERVAL_S."""
    script = (
        "import asyncio, sys\n"
        "from extproc.metrics import Metrics, Observation, SeriesKey, sample_value, worker_exited\n"
        "m = Metrics()\n"
        "if sys.argv[1] == 'work':\n"
        "    m.observe(Observation(series=SeriesKey('a', 'openai', 'm', 'n', 'b'), status='200',\n"
        "              error_type='', input_tokens=5, output_tokens=2, usage_known=True))\n"
        "    m.inflight_streams.inc()\n"
        "    async def serve():\n"
        "        flusher = asyncio.create_task(m.flush_periodically(0.01))\n"
        "        await asyncio.sleep(0.2)\n"
        "        flusher.cancel()\n"
        "    asyncio.run(serve())\n"
        "    print(__import__('os').getpid())\n"
        "else:\n"
        "    worker_exited(int(sys.argv[2]))\n"
        "    text = m.exposition()[0].decode()\n"
        "    print(sample_value(text, 'extproc_requests_total'),\n"
        "          sample_value(text, 'gen_ai_client_token_usage_sum', {'gen_ai_token_type': 'input'}),\n"
        "          sample_value(text, 'extproc_inflight_streams'))\n"
    )
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", script, *args], env=env, check=True,
                              capture_output=True, text=True, timeout=60)
        return done.stdout.strip()

    first = run("work")
    run("work")
    assert run("scrape", first).split() == ["2.0", "10.0", "1.0"]  # the exited worker's gauge is gone


async def test_openai_clients_are_counted_and_routed_with_metadata(gateway: Gateway) -> None:
    from extproc.processors.passthrough import ChatCompletionsProcessor

    info = RequestInfo(method="POST", path="/v1/chat/completions", query="", headers={},
                       request_id="req-oa")
    proc = ChatCompletionsProcessor(info, gateway)
    await proc.request_headers(False)
    routed = await proc.request_body(orjson.dumps({"model": "claude-x", "messages": []}), True)
    proc.close()
    assert isinstance(routed, Continue) and routed.skip_rest
    assert routed.metadata == {"extproc": {
        "model": "qwen3-coder", "requested_model": "claude-x", "backend": "vllm"}}
    series = ROUTED | {"api": "openai_chat_completions", "gen_ai_request_model": "claude-x"}
    # The response is not processed: no status, no duration.
    assert value(gateway, "extproc_requests_total", **series, status="", error_type="") == 1
    assert value(gateway, "gen_ai_server_request_duration_seconds_count", **series,
                 error_type="") == 0

    refused = ChatCompletionsProcessor(info, gateway)
    answer = await refused.request_body(b"{", True)
    refused.close()
    assert isinstance(answer, Respond) and answer.status == 400
    unrouted = {key: "" for key in ROUTED} | {"api": "openai_chat_completions",
                                              "gen_ai_operation_name": "chat"}
    assert value(gateway, "extproc_requests_total", **unrouted, status="400",
                 error_type="invalid_request_error") == 1
    assert value(gateway, "extproc_inflight_requests") == 0


async def test_a_processor_exception_is_counted_by_phase(gateway: Gateway) -> None:
    from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
    from envoy.service.ext_proc.v3.external_processor_pb2 import (
        HttpHeaders,
        ProcessingRequest,
        ProcessingResponse,
    )

    from extproc.service.registry import Registry
    from extproc.service.servicer import ExtProcServicer

    class Broken(MessagesProcessor):
        async def request_headers(self, end_of_stream: bool) -> Continue | Respond:
            raise RuntimeError("boom")

    registry = Registry()
    registry.add("/boom", Broken)
    gw = Gateway(gateway.config, registry)
    headers = HeaderMap(headers=[HeaderValue(key=":path", raw_value=b"/boom"),
                                 HeaderValue(key=":method", raw_value=b"POST")])

    class Context:  # what the servicer uses of grpc.aio's: read() until EOF, write()
        def __init__(self) -> None:
            self.requests = [ProcessingRequest(request_headers=HttpHeaders(headers=headers))]
            self.answers: list[bytes] = []

        async def read(self) -> Any:
            return self.requests.pop(0) if self.requests else grpc.aio.EOF

        async def write(self, answer: bytes) -> None:
            self.answers.append(answer)

    context = Context()
    with structlog.testing.capture_logs():
        await ExtProcServicer(gw).Process(None, context)
    answers = context.answers
    answer = ProcessingResponse.FromString(answers[0])  # the servicer yields encoded answers
    assert answer.immediate_response.status.code == 500
    assert value(gw, "extproc_processor_failures_total", phase="request_headers") == 1
    assert value(gw, "extproc_inflight_requests") == 0
