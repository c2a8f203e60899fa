"""`messages_routing`: the same answers either way, three ext_proc messages instead of four.

With `metadata` (the default) Envoy skips the request-headers message of `POST /v1/messages`:
the processor answers the body with routing metadata and the backend's route edits path and
headers. With `headers` the processor edits them itself. Envoy's own counters tell how many
messages each request cost.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from e2e.harness import Gateway, MockBackend, backend_config, start_gateway

KEY = "sk-routing-e2e"
MODES = ("metadata", "headers")


@pytest.fixture(scope="module")
def backend(mock_backend: MockBackend) -> MockBackend:
    return mock_backend


@pytest.fixture(scope="module", params=MODES)
def routed(request: pytest.FixtureRequest, workdir: Path, backend: MockBackend
           ) -> Iterator[tuple[str, Gateway]]:
    config = {"backends": [backend_config(backend, api_key_env="ROUTING_KEY",
                                          models=[{"name": "qwen3-coder", "aliases": ["claude-*"]}])],
              "messages_routing": request.param}
    gateway = start_gateway(workdir, config, env={"ROUTING_KEY": KEY})
    yield request.param, gateway
    gateway.process.stop()


def messages_sent(gateway: Gateway) -> int:
    """Envoy's count of messages it sent to the ext_proc server."""
    stats = httpx.get(gateway.admin_url + "/stats", params={"filter": "ext_proc.*stream_msgs_sent"},
                      timeout=5).text
    return sum(int(line.rsplit(":", 1)[1]) for line in stats.splitlines() if line.strip())


def test_answers_and_backend_requests_are_the_same_either_way(
    routed: tuple[str, Gateway], backend: MockBackend
) -> None:
    mode, gateway = routed
    client = anthropic.Anthropic(base_url=gateway.url, api_key="sk-client-own", max_retries=0)
    backend.reset()
    backend.script({"text": f"routed by {mode}"}, {"text": "streamed"})
    message = client.messages.create(model="claude-sonnet-4", max_tokens=32,
                                     messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == f"routed by {mode}"  # type: ignore[union-attr]
    with client.messages.stream(model="claude-sonnet-4", max_tokens=32,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert stream.get_final_text() == "streamed"
    for seen in backend.requests():
        assert seen["path"] == "/v1/chat/completions"
        assert seen["body"]["model"] == "qwen3-coder"
        headers = seen["headers"]
        assert headers["authorization"] == f"Bearer {KEY}"
        assert "x-api-key" not in headers and "anthropic-version" not in headers
        assert headers["content-type"] == "application/json"
        assert int(headers["content-length"]) == len(base64.b64decode(seen["raw_body"]))
    client.close()


def test_a_json_request_costs_three_messages_with_metadata_routing(
    routed: tuple[str, Gateway], backend: MockBackend
) -> None:
    mode, gateway = routed
    backend.reset()
    backend.script(*({"text": "counted"} for _ in range(5)))
    before = messages_sent(gateway)
    for _ in range(5):
        reply = httpx.post(gateway.url + "/v1/messages", timeout=10, json={
            "model": "claude-sonnet-4", "max_tokens": 8, "messages": [{"role": "user", "content": "n"}]})
        assert reply.status_code == 200, reply.text
    per_request = (messages_sent(gateway) - before) / 5
    # request body, response headers, response body; plus the request headers for `headers`
    assert per_request == (3 if mode == "metadata" else 4)


def test_errors_the_gateway_answers_itself_are_anthropic_shaped(routed: tuple[str, Gateway]) -> None:
    _, gateway = routed
    empty = httpx.post(gateway.url + "/v1/messages", content=b"", timeout=10,
                       headers={"content-type": "application/json"})
    assert empty.status_code == 400
    assert empty.json()["error"] == {"type": "invalid_request_error", "message": "request body is empty"}
    unknown = httpx.post(gateway.url + "/v1/messages", timeout=10, headers={"x-request-id": "rid-7"},
                         json={"model": "gpt-9", "max_tokens": 8, "messages": []})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    assert unknown.headers["request-id"] == "rid-7"
    wrong_method = httpx.get(gateway.url + "/v1/messages", timeout=10)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
