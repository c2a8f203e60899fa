"""MessagesProcessor and backend statuses: an error keeps its status, a redirect (any status
below 400 that is not a success) becomes 502 for the client, set on the response headers."""

from __future__ import annotations

import orjson
import pytest

from extproc.config import Config
from extproc.gateway import Gateway
from extproc.processors.base import Continue, RequestInfo
from extproc.processors.messages import MessagesProcessor

REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 10,
           "messages": [{"role": "user", "content": "hi"}]}


def gateway() -> Gateway:
    return Gateway(Config.model_validate({"backends": [
        {"name": "vllm", "base_url": "http://127.0.0.1:9/v1"}]}))


async def backend_answers(status: int, body: bytes) -> tuple[Continue, Continue, int]:
    """(response headers answer, response body answer, status the request was recorded with)."""
    processor = MessagesProcessor(RequestInfo("POST", "/v1/messages", "", {}), gateway())
    try:
        await processor.request_headers(end_of_stream=False)
        sent = await processor.request_body(orjson.dumps(REQUEST), end_of_stream=True)
        assert isinstance(sent, Continue)
        headers = await processor.response_headers(
            {":status": str(status), "content-type": "text/html"}, end_of_stream=False)
        answer = await processor.response_body(body, end_of_stream=True)
        assert isinstance(headers, Continue) and isinstance(answer, Continue)
    finally:
        processor.close()
    return headers, answer, processor.record.status


@pytest.mark.parametrize("status", [301, 302, 304, 307, 308])
async def test_redirect_becomes_a_bad_gateway(status: int) -> None:
    headers, answer, recorded = await backend_answers(status, b"moved")
    assert (":status", "502") in headers.set_headers
    assert answer.body is not None
    assert orjson.loads(answer.body) == {"type": "error", "error": {
        "type": "api_error", "message": f"backend returned HTTP {status}: moved"}}
    assert recorded == 502


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
async def test_error_status_is_kept(status: int) -> None:
    headers, answer, recorded = await backend_answers(status, b"")
    assert all(name != ":status" for name, _ in headers.set_headers)
    assert answer.body is not None and orjson.loads(answer.body)["type"] == "error"
    assert recorded == status
