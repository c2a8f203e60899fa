"""A backend answer with a status below 400 that is not a success (a redirect, a 304) is no
answer: through real Envoy the client gets 502 with an Anthropic `api_error` naming the
backend's status, streamed request or not (Envoy 1.40 lets ext_proc rewrite `:status`)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from e2e.harness import Gateway, MockBackend

MODEL = "claude-sonnet-4-6"


def ask(client: anthropic.Anthropic, stream: bool) -> Any:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 64,
                              "messages": [{"role": "user", "content": "hi"}]}
    if not stream:
        return client.messages.create(**params)
    with client.messages.stream(**params) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("status", "body", "reason"), [
    (302, "Found. Redirecting to /login", "backend returned HTTP 302: Found. Redirecting to /login"),
    (301, "<html><body>Moved</body></html>", "backend returned HTTP 301 (Moved Permanently)"),
    (307, "", "backend returned HTTP 307 (Temporary Redirect)"),
])
def test_redirect_is_a_bad_gateway(
    anthropic_client: anthropic.Anthropic, backend: MockBackend,
    status: int, body: str, reason: str, stream: bool,
) -> None:
    backend.script({"raw_body": body, "status": status, "content_type": "text/html"})
    with pytest.raises(anthropic.InternalServerError) as caught:
        ask(anthropic_client, stream)
    err = caught.value
    assert err.status_code == 502
    assert err.body == {"type": "error", "error": {"type": "api_error", "message": reason}}
    assert err.response.headers["content-type"].startswith("application/json")


def test_raw_bytes_of_a_redirect(gateway: Gateway, backend: MockBackend) -> None:
    backend.script({"raw_body": "moved", "status": 302, "content_type": "text/plain"})
    reply = httpx.post(
        gateway.url + "/v1/messages", timeout=30,
        headers={"x-api-key": "sk-client-dummy", "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.status_code == 502
    assert reply.json() == {"type": "error", "error": {
        "type": "api_error", "message": "backend returned HTTP 302: moved"}}
    assert reply.headers["content-type"].startswith("application/json")
