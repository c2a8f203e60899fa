"""The servicer over a real grpc.aio server on 127.0.0.1: one answer per message, no leftovers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import grpc
import orjson
import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.config import load_config
from extproc.server import EXT_PROC_SERVICE, ExtProcServer


def headers(**pairs: str) -> ProcessingRequest:
    return ProcessingRequest(
        request_headers=HttpHeaders(
            headers=HeaderMap(
                headers=[HeaderValue(key=k.replace("_", "-") if not k.startswith(":") else k,
                                     raw_value=v.encode()) for k, v in pairs.items()]
            )
        )
    )


def request_headers(path: str, method: str = "POST", **extra: str) -> ProcessingRequest:
    return headers(**{":path": path, ":method": method, **extra})


def body(data: bytes, end: bool = True) -> ProcessingRequest:
    return ProcessingRequest(request_body=HttpBody(body=data, end_of_stream=end))


def mutations(response: ProcessingResponse, phase: str) -> tuple[dict[str, str], list[str]]:
    common = getattr(response, phase).response
    set_headers = {h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers}
    return set_headers, list(common.header_mutation.remove_headers)


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ExtProcServer]:
    monkeypatch.setenv("TEST_BACKEND_KEY", "sk-backend-secret")
    config = load_config(
        overrides={"extproc_listen": "127.0.0.1:0"},
        env={},
    ).model_copy()
    config = config.model_validate(
        {
            **config.model_dump(by_alias=True),
            "backends": [
                {"name": "vllm", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "TEST_BACKEND_KEY",
                 "models": [{"name": "qwen3-coder", "aliases": ["claude-*"]}]},
            ],
        }
    )
    srv = ExtProcServer(config)
    await srv.start()
    yield srv
    await srv.stop(grace=0)


async def exchange(port: int, messages: list[ProcessingRequest]) -> list[ProcessingResponse]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ext_proc_grpc.ExternalProcessorStub(channel)
        call = stub.Process(iter(messages))
        return [response async for response in call]


async def test_unknown_path_passes_untouched_and_skips_the_rest(
    server: ExtProcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_BACKEND_KEY")  # no key sent: nothing to scrub from the answer
    [answer] = await exchange(server.port, [request_headers("/healthz?x=1", "GET")])
    assert answer.WhichOneof("response") == "request_headers"
    set_headers, _removed = mutations(answer, "request_headers")
    assert ":path" not in set_headers and "authorization" not in set_headers
    assert answer.mode_override.response_header_mode == ProcessingMode.SKIP


async def test_unknown_path_strips_a_spoofed_routing_header_and_client_key(server: ExtProcServer) -> None:
    [answer] = await exchange(
        server.port,
        [request_headers("/other", "GET", x_extproc_backend="vllm", x_api_key="sk-client")],
    )
    set_headers, removed = mutations(answer, "request_headers")
    assert "x-extproc-backend" in removed and "x-api-key" in removed
    assert set_headers["authorization"] == "Bearer sk-backend-secret"
    assert answer.request_headers.response.clear_route_cache


async def test_chat_completions_routes_by_model_and_swaps_credentials(server: ExtProcServer) -> None:
    payload = orjson.dumps({"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]})
    answers = await exchange(
        server.port,
        [request_headers("/v1/chat/completions", authorization="Bearer sk-client"), body(payload)],
    )
    assert [a.WhichOneof("response") for a in answers] == ["request_headers", "request_body"]
    set_headers, _removed = mutations(answers[1], "request_body")
    assert set_headers[":path"] == "/v1/chat/completions"
    assert set_headers["x-extproc-backend"] == "vllm"
    assert set_headers["authorization"] == "Bearer sk-backend-secret"
    new_body = orjson.loads(answers[1].request_body.response.body_mutation.body)
    assert new_body["model"] == "qwen3-coder"
    assert set_headers["content-length"] == str(len(answers[1].request_body.response.body_mutation.body))
    assert answers[1].request_body.response.clear_route_cache


def attributed_body(data: bytes, **attributes: str) -> ProcessingRequest:
    """A body message as Envoy sends it when it skipped the headers (messages_routing: metadata)."""
    message = body(data)
    message.attributes["envoy.filters.http.ext_proc"].update(attributes)
    return message


MESSAGES = orjson.dumps({"model": "claude-sonnet-4", "max_tokens": 64,
                         "messages": [{"role": "user", "content": "hi"}]})


async def test_a_body_first_messages_stream_routes_by_metadata(server: ExtProcServer) -> None:
    [answer] = await exchange(server.port, [attributed_body(
        MESSAGES, **{"request.path": "/v1/messages?beta=true", "request.method": "POST",
                     "request.id": "req-7"})])
    assert answer.WhichOneof("response") == "request_body"
    common = answer.request_body.response
    # Envoy applies no header edits to headers it never sent: the backend's route does them.
    set_headers, removed = mutations(answer, "request_body")
    assert set(set_headers) <= {"content-length"} and removed == ["x-extproc-backend"]
    assert common.clear_route_cache
    assert orjson.loads(common.body_mutation.body)["model"] == "qwen3-coder"
    metadata = answer.dynamic_metadata.fields
    assert metadata["extproc"].struct_value.fields["backend"].string_value == "vllm"
    key = metadata["extproc_credentials"].struct_value.fields["authorization"].string_value
    assert key == "Bearer sk-backend-secret"


async def test_a_body_first_stream_is_checked_like_one_with_headers(server: ExtProcServer) -> None:
    [refused] = await exchange(server.port, [attributed_body(
        MESSAGES, **{"request.path": "/v1/messages", "request.method": "PUT"})])
    assert refused.immediate_response.status.code == 405
    [unknown] = await exchange(server.port, [attributed_body(
        orjson.dumps({"model": "gpt-9", "max_tokens": 1, "messages": []}),
        **{"request.path": "/v1/messages", "request.method": "POST"})])
    assert unknown.immediate_response.status.code == 404
    assert orjson.loads(unknown.immediate_response.body)["error"]["type"] == "not_found_error"


async def test_chat_completions_unknown_model_is_an_openai_404(server: ExtProcServer) -> None:
    payload = orjson.dumps({"model": "gpt-9", "messages": []})
    answers = await exchange(server.port, [request_headers("/v1/chat/completions"), body(payload)])
    immediate = answers[1].immediate_response
    assert immediate.status.code == 404
    assert orjson.loads(immediate.body)["error"]["type"] == "not_found_error"


async def test_every_message_gets_exactly_one_answer(server: ExtProcServer) -> None:
    payload = orjson.dumps({"model": "qwen3-coder", "messages": []})
    messages = [request_headers("/v1/chat/completions"), body(payload)]
    answers = await exchange(server.port, messages)
    assert len(answers) == len(messages)


async def test_a_stream_that_ends_early_leaves_nothing_behind(server: ExtProcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = ext_proc_grpc.ExternalProcessorStub(channel)
        call = stub.Process()
        await call.write(request_headers("/v1/chat/completions"))
        await call.read()
        assert server.servicer.open_streams == 1
        call.cancel()
    for _ in range(100):
        if server.servicer.open_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert server.servicer.open_streams == 0


async def test_skip_rest_ends_the_stream_in_any_phase(
    server: ExtProcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Envoy reads a mode_override only in answers to header messages; ending the stream is
    what stops its messages after a body answer (the response headers never come)."""
    monkeypatch.delenv("TEST_BACKEND_KEY")  # no key sent: nothing to scrub from the answer
    payload = orjson.dumps({"model": "qwen3-coder", "messages": []})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = ext_proc_grpc.ExternalProcessorStub(channel).Process()
        await call.write(request_headers("/v1/chat/completions"))
        assert (await call.read()).WhichOneof("response") == "request_headers"
        await call.write(body(payload))
        answer = await call.read()
        assert answer.WhichOneof("response") == "request_body"
        assert not answer.HasField("mode_override")  # Envoy would ignore it here
        assert await call.read() is grpc.aio.EOF  # ended by the server, not by the client
        assert await call.code() == grpc.StatusCode.OK
    assert server.servicer.open_streams == 0


def response_headers(status: int) -> ProcessingRequest:
    return ProcessingRequest(response_headers=HttpHeaders(headers=HeaderMap(headers=[
        HeaderValue(key=":status", raw_value=str(status).encode()),
        HeaderValue(key="content-type", raw_value=b"application/json")])))


async def test_with_our_key_sent_a_chat_error_is_scrubbed_and_a_success_streams_past(
    server: ExtProcServer,
) -> None:
    payload = orjson.dumps({"model": "qwen3-coder", "messages": []})
    quoted = b'{"error":{"message":"Incorrect API key provided: sk-backend-secret"}}'
    error = await exchange(server.port, [
        request_headers("/v1/chat/completions"), body(payload), response_headers(401),
        ProcessingRequest(response_body=HttpBody(body=quoted, end_of_stream=True)),
    ])
    assert [a.WhichOneof("response") for a in error] == [
        "request_headers", "request_body", "response_headers", "response_body"]
    assert "content-length" in mutations(error[2], "response_headers")[1]
    scrubbed = error[3].response_body.response.body_mutation.body
    assert b"sk-backend-secret" not in scrubbed and b"[redacted]" in scrubbed
    success = await exchange(server.port, [
        request_headers("/v1/chat/completions"), body(payload), response_headers(200),
    ])
    assert success[2].mode_override.response_header_mode == ProcessingMode.SKIP  # then EOF


async def test_with_our_key_sent_an_unknown_paths_error_is_scrubbed_and_a_success_passes(
    server: ExtProcServer,
) -> None:
    quoted = b'{"error":{"message":"Incorrect API key provided: sk-backend-secret"}}'
    error = await exchange(server.port, [
        request_headers("/v1/completions"), body(b'{"prompt":"hi"}'), response_headers(401),
        ProcessingRequest(response_body=HttpBody(body=quoted, end_of_stream=True)),
    ])
    assert [a.WhichOneof("response") for a in error] == [
        "request_headers", "request_body", "response_headers", "response_body"]
    assert not error[0].HasField("mode_override")  # staying for the status
    assert not error[1].request_body.response.HasField("body_mutation")  # the body as it came
    assert "content-length" in mutations(error[2], "response_headers")[1]
    scrubbed = error[3].response_body.response.body_mutation.body
    assert scrubbed == quoted.replace(b"sk-backend-secret", b"[redacted]")
    success = await exchange(server.port, [
        request_headers("/v1/completions"), body(b'{"prompt":"hi"}'), response_headers(200),
    ])
    assert success[2].mode_override.response_header_mode == ProcessingMode.SKIP  # then EOF


async def test_what_start_up_built_is_kept_out_of_the_garbage_collector() -> None:
    gc.unfreeze()
    srv = ExtProcServer(load_config(overrides={"extproc_listen": "127.0.0.1:0"}, env={}))
    await srv.start()
    try:
        assert gc.get_freeze_count() > 1000  # the gateway's config, schemas and modules
    finally:
        await srv.stop(grace=0)


async def test_health_reports_serving(server: ExtProcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", EXT_PROC_SERVICE):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
