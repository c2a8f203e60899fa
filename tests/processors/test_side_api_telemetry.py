"""count_tokens and the model list are counted in extproc_requests_total (api
`anthropic_count_tokens` / `models`) and logged in the one-line request summary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from extproc.config import Config
from extproc.gateway import Gateway
from extproc.processors.base import RequestInfo, Respond
from extproc.processors.count_tokens import CountTokensProcessor
from extproc.processors.models import ModelsProcessor

ROUTED = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
          "gen_ai_request_model": "claude-sonnet-4-5", "gen_ai_response_model": "qwen3-coder",
          "backend": "vllm"}
UNROUTED = {key: "" for key in ROUTED} | {"gen_ai_operation_name": "chat"}
ANTHROPIC = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def gateway() -> Gateway:
    return Gateway(Config.model_validate({"backends": [{
        "name": "vllm", "base_url": "http://127.0.0.1:9/v1", "count_tokens": "estimate",
        "models": [{"name": "qwen3-coder", "aliases": ["claude-*"]}]}]}))


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def requests_total(gateway: Gateway, api: str, labels: dict[str, str], status: str,
                   error_type: str = "") -> float:
    found = gateway.telemetry.metrics.registry.get_sample_value(
        "extproc_requests_total",
        {"api": api, **labels, "status": status, "error_type": error_type})
    return 0.0 if found is None else found


async def count(gateway: Gateway, body: bytes | None, method: str = "POST") -> Respond:
    info = RequestInfo(method, "/v1/messages/count_tokens", "", ANTHROPIC, request_id="ct-1")
    processor = CountTokensProcessor(info, gateway)
    try:
        answer = await processor.request_headers(end_of_stream=body is None)
        if body is not None and not isinstance(answer, Respond):
            answer = await processor.request_body(body, end_of_stream=True)
    finally:
        processor.close()
    assert isinstance(answer, Respond)
    return answer


async def test_count_tokens_is_counted_and_logged(
    gateway: Gateway, logs: list[dict[str, Any]]
) -> None:
    body = orjson.dumps({"model": "claude-sonnet-4-5",
                         "messages": [{"role": "user", "content": "count me"}]})
    answer = await count(gateway, body)
    assert answer.status == 200
    assert requests_total(gateway, "anthropic_count_tokens", ROUTED, "200") == 1
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["api"] == "anthropic_count_tokens" and line["status"] == 200
    assert line["request_id"] == "ct-1" and line["backend"] == "vllm"
    duration = gateway.telemetry.metrics.registry.get_sample_value(
        "gen_ai_server_request_duration_seconds_count",
        {"api": "anthropic_count_tokens", **ROUTED, "error_type": ""})
    assert duration == 1
    assert gateway.telemetry.metrics.registry.get_sample_value("extproc_inflight_requests") == 0


@pytest.mark.parametrize(("body", "method", "status", "error_type"), [
    (b"{", "POST", "400", "invalid_request_error"),
    (None, "POST", "400", "invalid_request_error"),
    (b"{}", "GET", "405", "invalid_request_error"),
    (orjson.dumps({"model": "", "messages": []}), "POST", "400", "invalid_request_error"),
])
async def test_count_tokens_refusals_are_counted(
    gateway: Gateway, body: bytes | None, method: str, status: str, error_type: str
) -> None:
    answer = await count(gateway, body, method)
    assert str(answer.status) == status
    assert requests_total(gateway, "anthropic_count_tokens", UNROUTED, status, error_type) == 1


async def models(gateway: Gateway, path: str, method: str = "GET") -> Respond:
    processor = ModelsProcessor(RequestInfo(method, path, "", ANTHROPIC, request_id="m-1"), gateway)
    try:
        answer = await processor.request_headers(end_of_stream=True)
    finally:
        processor.close()
    assert isinstance(answer, Respond)
    return answer


async def test_model_list_is_counted_and_logged(
    gateway: Gateway, logs: list[dict[str, Any]]
) -> None:
    assert (await models(gateway, "/v1/models")).status == 200
    assert (await models(gateway, "/v1/models/no-such-model")).status == 404
    assert (await models(gateway, "/v1/models", method="POST")).status == 405
    assert requests_total(gateway, "models", UNROUTED, "200") == 1
    assert requests_total(gateway, "models", UNROUTED, "404", "not_found_error") == 1
    assert requests_total(gateway, "models", UNROUTED, "405", "invalid_request_error") == 1
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert [(line["api"], line["status"]) for line in lines] == [
        ("models", 200), ("models", 404), ("models", 405)]
