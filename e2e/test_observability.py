"""Observability through real Envoy: /metrics moves by exactly what the backend reported, and
Envoy's access log carries our dynamic metadata (model, backend, token counts)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from e2e.harness import Gateway, MockBackend, backend_config, start_gateway
from extproc.metrics import sample_value

MODEL = "claude-sonnet-4-6"  # alias of qwen3-coder on backend "vllm" (e2e/conftest.py)
SERIES = {
    "api": "anthropic_messages",
    "gen_ai_operation_name": "chat",
    "gen_ai_provider_name": "openai",
    "gen_ai_request_model": MODEL,
    "gen_ai_response_model": "qwen3-coder",
    "backend": "vllm",
}
OK = {**SERIES, "status": "200", "error_type": ""}
# What the scripted backend reports: prompt 321 (100 of them cached), completion 17.
USAGE = {"prompt_tokens": 321, "completion_tokens": 17, "cached_tokens": 100}
SCRIPT = {"text": "Counting tokens for the dashboard.", "usage": USAGE}


def scrape(gateway: Gateway) -> str:
    assert gateway.metrics_url is not None
    reply = httpx.get(gateway.metrics_url + "/metrics", timeout=5)
    reply.raise_for_status()
    return reply.text


def value(text: str, name: str, **labels: str) -> float:
    return sample_value(text, name, labels)


def after_request(gateway: Gateway, before: str, timeout: float = 10) -> str:
    """Scrape until the request is counted: its record closes when Envoy ends the gRPC stream,
    which may be just after the client has read the last byte."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(gateway)
        if value(text, "extproc_requests_total", **OK) > value(before, "extproc_requests_total", **OK):
            return text
        if time.monotonic() > deadline:
            pytest.fail("the request never showed up in extproc_requests_total")
        time.sleep(0.05)


def delta(before: str, after: str, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def request(client: anthropic.Anthropic, *, stream: bool, request_id: str | None = None) -> str:
    """One request; returns the text the client received."""
    extra = {"extra_headers": {"x-request-id": request_id}} if request_id else {}
    params: dict[str, Any] = {
        "model": MODEL, "max_tokens": 256,
        "messages": [{"role": "user", "content": "count my tokens"}], **extra,
    }
    if stream:
        with client.messages.stream(**params) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**params)
    assert message.usage.input_tokens == 221 and message.usage.cache_read_input_tokens == 100
    assert message.usage.output_tokens == 17
    return "".join(block.text for block in message.content if block.type == "text")


def assert_tokens_moved(before: str, after: str) -> None:
    tokens = "gen_ai_client_token_usage"
    for token_type, count in (("input", 321), ("cache_read", 100), ("output", 17)):
        labels = {**SERIES, "gen_ai_token_type": token_type}
        assert delta(before, after, tokens + "_count", **labels) == 1
        assert delta(before, after, tokens + "_sum", **labels) == count
    # 321 input tokens fall in the (256, 1024] bucket: the 1024 bucket moved, 256 did not.
    bucket = {**SERIES, "gen_ai_token_type": "input"}
    assert delta(before, after, tokens + "_bucket", **bucket, le="1024.0") == 1
    assert delta(before, after, tokens + "_bucket", **bucket, le="256.0") == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_metrics_move_by_what_the_backend_reported(
    gateway: Gateway, backend: MockBackend, anthropic_client: anthropic.Anthropic, stream: bool
) -> None:
    backend.script(SCRIPT)
    before = scrape(gateway)
    assert request(anthropic_client, stream=stream) == SCRIPT["text"]
    after = after_request(gateway, before)

    assert delta(before, after, "extproc_requests_total", **OK) == 1
    assert_tokens_moved(before, after)
    duration = "gen_ai_server_request_duration_seconds_count"
    assert delta(before, after, duration, **SERIES, error_type="") == 1
    # Stream timings exist for streams only.
    ttft = "gen_ai_server_time_to_first_token_seconds_count"
    tpot = "gen_ai_server_time_per_output_token_seconds_count"
    assert delta(before, after, ttft, **SERIES) == (1 if stream else 0)
    assert delta(before, after, tpot, **SERIES) == (1 if stream else 0)
    assert value(after, "extproc_inflight_streams") == 0


def test_a_backend_error_is_counted_with_its_status_and_type(
    gateway: Gateway, backend: MockBackend, anthropic_client: anthropic.Anthropic
) -> None:
    backend.script({"error": {"status": 429, "message": "slow down"}})
    failed = {**SERIES, "status": "429", "error_type": "rate_limit_error"}
    before = scrape(gateway)
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    deadline = time.monotonic() + 10
    while delta(before, after := scrape(gateway), "extproc_requests_total", **failed) < 1:
        assert time.monotonic() < deadline, "the 429 never showed up in extproc_requests_total"
        time.sleep(0.05)
    assert delta(before, after, "extproc_requests_total", **failed) == 1
    assert delta(before, after, "gen_ai_server_request_duration_seconds_count", **SERIES,
                 error_type="rate_limit_error") == 1
    assert delta(before, after, "gen_ai_client_token_usage_count", **SERIES,
                 gen_ai_token_type="input") == 0


def test_every_answer_names_the_request_id_our_logs_use(
    gateway: Gateway, backend: MockBackend, anthropic_client: anthropic.Anthropic
) -> None:
    """Like Anthropic's API, every answer has a `request-id` (the SDK's `_request_id`): ours is
    the x-request-id in our log lines and Envoy's access log, and the one the backend saw."""
    backend.script({"text": "hi"})
    message = anthropic_client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    (seen,) = backend.requests()
    assert message._request_id == seen["headers"]["x-request-id"]

    backend.script({"error": {"status": 429, "message": "slow down"}})
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.request_id == backend.requests()[-1]["headers"]["x-request-id"]

    # Answered by the gateway itself (never reaches the backend), and a client's own id is kept.
    reply = httpx.post(gateway.url + "/v1/messages", content=b"{not json", timeout=10,
                       headers={"content-type": "application/json", "x-request-id": "rid-e2e-1"})
    assert reply.status_code == 400
    assert reply.headers["request-id"] == "rid-e2e-1"
    assert len(backend.requests()) == 2


def test_extproc_up_prints_where_metrics_are(gateway: Gateway) -> None:
    assert f"extproc metrics: {gateway.metrics_url}/metrics" in gateway.logs()


# ---- Envoy's access log ------------------------------------------------------------------------


def access_log_entry(path: Path, request_id: str, timeout: float = 15) -> dict[str, Any]:
    """The JSON access-log line of `request_id` (Envoy flushes the file about every second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                if entry.get("request_id") == request_id:
                    return dict(entry)
        time.sleep(0.1)
    pytest.fail(f"no access-log line for {request_id} in {path}")


def test_envoy_access_log_has_model_backend_and_token_counts_from_our_metadata(
    workdir: Path, mock_backend: MockBackend
) -> None:
    log_path = workdir / f"access-{uuid.uuid4().hex[:8]}.log"
    config = {
        "backends": [backend_config(mock_backend, models=[
            {"name": "qwen3-coder", "aliases": ["claude-*"]}])],
        "access_log": str(log_path),
        "timeouts": {"extproc_message_s": 5, "request_s": 30, "drain_s": 1},
    }
    gw = start_gateway(workdir, config)
    client = anthropic.Anthropic(base_url=gw.url, api_key="sk-client", max_retries=0, timeout=30)
    try:
        mock_backend.reset()
        ids = {stream: f"obs-{'sse' if stream else 'json'}-{uuid.uuid4().hex[:12]}"
               for stream in (False, True)}
        for stream, request_id in ids.items():
            mock_backend.script(SCRIPT)
            request(client, stream=stream, request_id=request_id)
        for request_id in ids.values():
            entry = access_log_entry(log_path, request_id)
            assert entry["status"] == 200
            assert entry["model"] == "qwen3-coder"
            assert entry["requested_model"] == MODEL
            assert entry["backend"] == "vllm"
            assert entry["upstream_cluster"] == "backend_vllm"
            # Anthropic's split: input excludes the 100 cached tokens.
            assert (entry["input_tokens"], entry["cache_read_tokens"]) == (221, 100)
            assert (entry["output_tokens"], entry["total_tokens"]) == (17, 338)
    finally:
        client.close()
        gw.process.stop()
