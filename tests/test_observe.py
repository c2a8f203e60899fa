"""Logging policy (no keys, prompts only on request), CLI switches, optional tracing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from extproc.cli import build_parser, config_from_args, main
from extproc.config import Config, ConfigError, Tracing
from extproc.metrics import Metrics
from extproc.observe import REDACTED, Redactor, configure_logging
from extproc.telemetry import Telemetry
from extproc.tracing import require_tracing

EXPORTER_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def test_credentials_are_blanked_even_when_prompts_may_be_logged() -> None:
    redact = Redactor(log_prompts=True)
    event = redact(None, "info", {
        "event": "x", "authorization": "Bearer sk-1", "X-Api-Key": "sk-2",
        "headers": {"x-api-key": "sk-3", "content-type": "application/json"},
        "prompt": {"messages": []},
    })
    assert event["authorization"] == event["X-Api-Key"] == REDACTED
    assert event["headers"] == {"x-api-key": REDACTED, "content-type": "application/json"}
    assert event["prompt"] == {"messages": []}


def test_prompt_fields_are_blanked_unless_allowed() -> None:
    event = Redactor()(None, "info", {"event": "x", "prompt": "hi", "messages": [1], "model": "m"})
    assert event == {"event": "x", "prompt": REDACTED, "messages": REDACTED, "model": "m"}


@pytest.fixture
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_configured_logging_writes_json_lines_at_the_chosen_level(
    capsys: pytest.CaptureFixture[str], reset_structlog: None
) -> None:
    configure_logging("warning")
    log = structlog.get_logger("t")
    log.info("hidden")
    log.warning("shown", api_key="sk-secret", prompt="words")
    err = capsys.readouterr().err
    assert "hidden" not in err
    [line] = [json.loads(text) for text in err.splitlines()]
    assert line["event"] == "shown" and line["level"] == "warning"
    assert "sk-secret" not in err and "words" not in err


def parse(*argv: str) -> Config:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_log_prompts_flag_turns_prompt_logging_on_and_its_absence_keeps_the_file_setting(
    tmp_path: Path,
) -> None:
    assert parse("--log-prompts").log_prompts is True
    assert parse().log_prompts is False
    config = tmp_path / "c.yaml"
    config.write_text("log_prompts: true\nlog_level: debug\n")
    loaded = parse("--config", str(config))
    assert loaded.log_prompts is True and loaded.log_level == "debug"


def test_tracing_without_the_sdk_is_a_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, EXPORTER_MODULE, None)  # import now fails
    config = tmp_path / "c.yaml"
    config.write_text("tracing: {otlp_endpoint: 'http://127.0.0.1:4318/v1/traces'}\n")
    with pytest.raises(ConfigError, match=r"pip install 'extproc\[otel\]'"):
        require_tracing(parse("--config", str(config)))
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "extproc[otel]" in err


def test_no_tracing_configured_needs_nothing() -> None:
    require_tracing(Config())  # does not raise, imports nothing
    assert Telemetry(Config()).tracer is None


# ---- spans, when the SDK is present ------------------------------------------------------------


def test_a_request_becomes_one_span_with_gen_ai_attributes_under_the_clients_trace() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from extproc.tracing import Tracer

    exporter = InMemorySpanExporter()
    tracer = Tracer(Tracing(otlp_endpoint="http://unused"), exporter, batch=False)
    telemetry = Telemetry(Config(), Metrics(), tracer)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    record = telemetry.start("anthropic_messages", "req-9",
                             {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    record.routed("claude-sonnet-4-5", "qwen3-coder", "vllm", "openai")
    record.streaming()
    record.first_token()
    record.usage = {"input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 10,
                    "cache_creation_input_tokens": 0}
    record.stop_reason = "end_turn"
    record.status = 200
    record.end()
    record.close()
    telemetry.close()

    [span] = exporter.get_finished_spans()
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert span.name == "chat claude-sonnet-4-5"
    assert format(span.context.trace_id, "032x") == trace_id
    assert attributes["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert attributes["gen_ai.response.model"] == "qwen3-coder"
    assert attributes["gen_ai.usage.input_tokens"] == 30
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 10
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["http.response.status_code"] == 200
    assert "error.type" not in attributes
    assert [event.name for event in span.events] == ["first_token"]
    assert span.start_time is not None and span.end_time is not None
    assert span.end_time >= span.start_time


def test_a_failed_request_span_carries_error_type() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from extproc.tracing import Tracer

    exporter = InMemorySpanExporter()
    telemetry = Telemetry(Config(), Metrics(),
                          Tracer(Tracing(otlp_endpoint="http://unused"), exporter, batch=False))
    record = telemetry.start("anthropic_messages", "req-10")
    record.status = 200  # headers seen, the stream never finished
    record.close()
    [span] = exporter.get_finished_spans()
    assert (span.attributes or {})["error.type"] == "incomplete"
    assert span.status.status_code is StatusCode.ERROR


def test_a_busy_metrics_port_is_one_line_not_a_traceback() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "extproc", "serve", "--extproc-listen", "127.0.0.1:0",
             "--metrics-listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert f"metrics_listen 127.0.0.1:{port}" in line and "already in use" in line
